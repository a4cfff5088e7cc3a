#!/usr/bin/env bash
# Efficiency at the speeds users have (issue 15): what a tunnel client costs per byte
# and when idle, measured in one run on one machine so the ratios mean something.
#
#   - CPU seconds (user + system, all threads) of the client's tunnel process per GiB
#     moved, iperf3 TCP paced at $PACE (default 400M) and unpaced, upload (->) and
#     download (<-), for three clients of the SAME wireguard-go server:
#       wg-wrap (rootless session, user `wgwrap-test`), wireguard-go, boringtun-cli;
#   - the cipher's own floor in the same run: `openssl speed -evp chacha20-poly1305
#     -bytes 1420`, as seconds per GiB;
#   - idle wake-ups per second of the wg-wrap supervisor (voluntary + involuntary
#     context switches of all its threads over $IDLE_SECONDS, default 20 s), without
#     and with PersistentKeepalive = 25, next to the wireguard-go client idle;
#   - peak RSS (VmHWM) of each client after the load;
#   - $SESSIONS (default 50) concurrent idle wg-wrap sessions: total PSS of their
#     supervisors (/proc/PID/smaps_rollup) and their CPU time over $IDLE_SECONDS.
#
# Topology (throw-away namespaces named wge<PID>-*; TEST-NET addresses only, which
# exist nowhere but in these namespaces): a server namespace holds wireguard-go
# (192.0.2.1, one interface with one peer per client) and the iperf3 server; each
# client has its own namespace joined to the server by a veth on 198.51.100.0/24.
#
# Run as root (`sudo bench/efficiency.sh`). Needs iperf3, wireguard-go, wg,
# boringtun-cli (.ci/setup builds it), openssl, python3. Every iperf3 run is bounded
# (-t); everything started is killed by PID on exit, even on failure.
# Environment: SECONDS_PER_RUN (default 10), PACE (default 400M), IDLE_SECONDS (20),
# SESSIONS (50), CLIENTS (default "wgwrap wggo btun"), WG_WRAP_BIN (a wg-wrap binary to
# measure instead of building this tree: A/B comparisons), PERF_OUT (a file prefix:
# `perf record -g` of the wg-wrap supervisor during its paced runs, when perf exists).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run as root: the peers need namespaces, wireguard-go and boringtun-cli" >&2
  exit 1
fi
for tool in iperf3 wireguard-go wg boringtun-cli openssl python3 ip setpriv; do
  command -v "$tool" >/dev/null || {
    echo "missing $tool (apt-get install iperf3 wireguard-go wireguard-tools openssl; boringtun-cli: sudo .ci/setup)" >&2
    exit 1
  }
done
id -u wgwrap-test >/dev/null 2>&1 || { echo "missing user wgwrap-test (run .ci/setup)" >&2; exit 1; }
T=${SECONDS_PER_RUN:-10}
PACE=${PACE:-400M}
IDLE=${IDLE_SECONDS:-20}
SESSIONS=${SESSIONS:-50}
CLIENTS=${CLIENTS:-wgwrap wggo btun}

if [ -z "${WG_WRAP_BIN:-}" ]; then
  cargo build --release --quiet
  WG_WRAP_BIN=target/release/wg-wrap
fi
tag=wge$$
work=$(mktemp -d /tmp/wg-wrap-eff.XXXXXX)
chmod 755 "$work"
cp "$WG_WRAP_BIN" "$work/wg-wrap"
mkdir -p "$work/config" "$work/runtime" "$work/out"
chown -R wgwrap-test:wgwrap-test "$work"
chmod 700 "$work/config" "$work/runtime"

NS_SRV=$tag-srv
declare -A NS=([wgwrap]=$tag-w [wggo]=$tag-g [btun]=$tag-b)
declare -A LINK=([wgwrap]=1 [wggo]=2 [btun]=3)       # veth subnet 198.51.100.(4N)/30
declare -A TUNADDR=([wgwrap]=192.0.2.2 [wggo]=192.0.2.3 [btun]=192.0.2.4)
declare -A PROC                                      # client -> tunnel process PID
pids=()

user_env=(env -i PATH=/usr/bin:/bin HOME="$work" WG_WRAP_CONFIG_DIR="$work/config"
  WG_WRAP_RUNTIME_DIR="$work/runtime")
wgwrap() { # wg-wrap as the unprivileged user in the wg-wrap client's namespace
  ip netns exec "${NS[wgwrap]}" setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- \
    "${user_env[@]}" "$work/wg-wrap" "$@"
}

cleanup() {
  set +e
  for f in "$work"/config/*.conf; do
    [ -e "$f" ] && wgwrap down --now "$(basename "$f" .conf)" >/dev/null 2>&1
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for ns in "$NS_SRV" "${NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- topology -------------------------------------------------------------------------
ip netns add "$NS_SRV"
ip -n "$NS_SRV" link set lo up
for c in wgwrap wggo btun; do
  ns=${NS[$c]} n=${LINK[$c]}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "$tag${n}a" type veth peer name "$tag${n}b"
  ip link set "$tag${n}a" netns "$NS_SRV"
  ip link set "$tag${n}b" netns "$ns"
  ip -n "$NS_SRV" addr add "198.51.100.$((4 * n + 1))/30" dev "$tag${n}a"
  ip -n "$ns" addr add "198.51.100.$((4 * n + 2))/30" dev "$tag${n}b"
  ip -n "$NS_SRV" link set "$tag${n}a" up
  ip -n "$ns" link set "$tag${n}b" up
done
endpoint() { echo "198.51.100.$((4 * ${LINK[$1]} + 1)):51820"; }

key() { wg genkey; }
pub() { printf '%s' "$1" | wg pubkey; }
uapi_wait() { # IFNAME: wait for a userspace WireGuard's UAPI socket
  for _ in $(seq 200); do [ -S "/var/run/wireguard/$1.sock" ] && return 0; sleep 0.05; done
  echo "no UAPI socket for $1" >&2
  return 1
}
# userspace NS IMPL IFNAME PRIVATE ADDRESS PEER_PUB ALLOWED [ENDPOINT] [PORT]
# `ip netns exec` shares /var/run/wireguard, so every interface name is unique ($tag).
userspace() {
  local ns=$1 impl=$2 ifname=$3 priv=$4 addr=$5 peer=$6 allowed=$7 ep=${8:-} port=${9:-}
  case $impl in
    wggo) ip netns exec "$ns" wireguard-go -f "$ifname" >"$work/$ifname.log" 2>&1 & ;;
    btun) ip netns exec "$ns" boringtun-cli --foreground --disable-drop-privileges "$ifname" \
            >"$work/$ifname.log" 2>&1 & ;;
  esac
  pids+=($!)
  PROC[$ifname]=$!
  uapi_wait "$ifname"
  printf '%s' "$priv" >"$work/$ifname.key"
  local conf="[Interface]
PrivateKey = $priv"
  [ -n "$port" ] && conf+="
ListenPort = $port"
  conf+="

[Peer]
PublicKey = $peer
AllowedIPs = $allowed"
  [ -n "$ep" ] && conf+="
Endpoint = $ep"
  # setconf, not `wg set … endpoint`: boringtun's UAPI refuses the latter.
  printf '%s\n' "$conf" | ip netns exec "$ns" wg setconf "$ifname" /dev/stdin
  ip -n "$ns" addr add "$addr/24" dev "$ifname"
  ip -n "$ns" link set "$ifname" up
}
profile() { # name private address peer_pub endpoint [keepalive]
  {
    echo "[Interface]"
    echo "PrivateKey = $2"
    echo "Address = $3/24"
    echo "DNS = 192.0.2.1"   # nothing answers; it only keeps the no-DNS warning quiet
    echo
    echo "[Peer]"
    echo "PublicKey = $4"
    echo "AllowedIPs = 192.0.2.1/32"
    echo "Endpoint = $5"
    [ -n "${6:-}" ] && echo "PersistentKeepalive = $6"
  } >"$work/config/$1.conf"
  chown wgwrap-test:wgwrap-test "$work/config/$1.conf"
  chmod 600 "$work/config/$1.conf"
}
supervisor_pid() { sed -n 's/^supervisor_pid=//p' "$work/runtime/profiles/$1/state"; }

# The server: one wireguard-go interface, one peer per client (more are added below).
k_srv=$(key)
srv_if=${tag}s
declare -A KEY
for c in wgwrap wggo btun; do KEY[$c]=$(key); done
userspace "$NS_SRV" wggo "$srv_if" "$k_srv" 192.0.2.1 "$(pub "${KEY[wgwrap]}")" 192.0.2.2/32 "" 51820
for c in wggo btun; do
  ip netns exec "$NS_SRV" wg set "$srv_if" peer "$(pub "${KEY[$c]}")" allowed-ips "${TUNADDR[$c]}/32"
done
ip netns exec "$NS_SRV" iperf3 -s -B 192.0.2.1 >/dev/null 2>&1 &
pids+=($!)

# The clients.
profile eff "${KEY[wgwrap]}" 192.0.2.2 "$(pub "$k_srv")" "$(endpoint wgwrap)"
wgwrap up eff --wait >/dev/null
PROC[wgwrap]=$(supervisor_pid eff)
for c in wggo btun; do
  userspace "${NS[$c]}" "$c" "$tag$c" "${KEY[$c]}" "${TUNADDR[$c]}" "$(pub "$k_srv")" 192.0.2.1/32 "$(endpoint "$c")"
  PROC[$c]=${PROC[$tag$c]}
done
client() { # CLIENT CMD...: run CMD inside CLIENT's tunnel
  local c=$1; shift
  case $c in
    wgwrap) wgwrap exec eff -- "$@" ;;
    *) ip netns exec "${NS[$c]}" "$@" ;;
  esac
}
for c in $CLIENTS; do # first contact (handshake) outside the measurements
  client "$c" ping -c 3 -i 0.2 -W 2 -q 192.0.2.1 >/dev/null || { echo "no tunnel for $c" >&2; exit 1; }
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, all threads
ctxsw() { # voluntary + involuntary context switches of every thread of PID
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}

# --- the cipher's floor -----------------------------------------------------------------
openssl speed -evp chacha20-poly1305 -bytes 1420 -seconds 3 2>/dev/null |
  awk '/^[Cc]ha[Cc]ha20-[Pp]oly1305/ {v = $NF} END {sub(/k$/, "", v); print v * 1000}' >"$work/out/cipher.txt"

# --- CPU per GiB --------------------------------------------------------------------------
RUNS=("paced up:-b $PACE" "paced down:-b $PACE -R" "unpaced up:" "unpaced down:-R")
for run in "${RUNS[@]}"; do
  name=${run%%:*} flags=${run#*:}
  for c in $CLIENTS; do # the clients take turns run by run
    p=${PROC[$c]}
    t0=$(ticks "$p") w0=$(ctxsw "$p")
    perf_pid=
    if [ -n "${PERF_OUT:-}" ] && [ "$c" = wgwrap ] && [ "${name%% *}" = paced ]; then
      perf record -g -o "$PERF_OUT-${name// /-}.data" -p "$p" -- sleep "$T" >/dev/null 2>&1 &
      perf_pid=$!
      pids+=("$perf_pid")
    fi
    # shellcheck disable=SC2086
    client "$c" iperf3 -c 192.0.2.1 -t "$T" -J $flags >"$work/out/$c-${name// /-}.json" || true
    [ -n "$perf_pid" ] && wait "$perf_pid" 2>/dev/null
    t1=$(ticks "$p") w1=$(ctxsw "$p")
    echo "$c|$name|$t0|$t1|$((w1 - w0))" >>"$work/out/cpu.txt"
  done
done
for c in $CLIENTS; do echo "$c|rss|$(awk '/VmHWM/ {print $2}' "/proc/${PROC[$c]}/status")" >>"$work/out/cpu.txt"; done

# --- idle ---------------------------------------------------------------------------------
idle() { # LABEL PID...: context switches per second and CPU ticks over $IDLE s
  local label=$1 s0=0 s1=0 t0=0 t1=0 p; shift
  for p in "$@"; do s0=$((s0 + $(ctxsw "$p"))); t0=$((t0 + $(ticks "$p"))); done
  sleep "$IDLE"
  for p in "$@"; do s1=$((s1 + $(ctxsw "$p"))); t1=$((t1 + $(ticks "$p"))); done
  echo "$label|$#|$((s1 - s0))|$((t1 - t0))|$IDLE" >>"$work/out/idle.txt"
}
sleep 2 # let iperf3's last connection close
idle "wg-wrap, no keepalive" "${PROC[wgwrap]}"
idle "wireguard-go client, no keepalive" "${PROC[wggo]}"
wgwrap down --now eff >/dev/null
profile effka "${KEY[wgwrap]}" 192.0.2.2 "$(pub "$k_srv")" "$(endpoint wgwrap)" 25
wgwrap up effka --wait >/dev/null
idle "wg-wrap, PersistentKeepalive = 25" "$(supervisor_pid effka)"
wgwrap down --now effka >/dev/null

# --- many idle sessions --------------------------------------------------------------------
many=()
for i in $(seq "$SESSIONS"); do
  k=$(key)
  ip netns exec "$NS_SRV" wg set "$srv_if" peer "$(pub "$k")" allowed-ips "192.0.2.$((100 + i))/32"
  profile "idle$i" "$k" "192.0.2.$((100 + i))" "$(pub "$k_srv")" "$(endpoint wgwrap)"
  wgwrap up "idle$i" >/dev/null
  many+=("$(supervisor_pid "idle$i")")
done
sleep 2
idle "$SESSIONS idle wg-wrap sessions (total)" "${many[@]}"
pss=0
for p in "${many[@]}"; do pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
echo "$pss" >"$work/out/pss.txt"

# --- the table ------------------------------------------------------------------------------
echo "### bench/efficiency.sh — $(date -u +%Y-%m-%d), $(nproc) CPUs, ${T} s per iperf3 run, paced at $PACE"
python3 - "$work/out" "$CLIENTS" "$SESSIONS" <<'PY'
import json, os, sys
out, clients, sessions = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
tck = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30
label = {"wgwrap": "wg-wrap", "wggo": "wireguard-go", "btun": "boringtun-cli"}
cipher = float(open(f"{out}/cipher.txt").read() or 0)
floor = GiB / cipher if cipher else None
cpu, rss, wakes = {}, {}, {}
for line in open(f"{out}/cpu.txt"):
    f = line.strip().split("|")
    if f[1] == "rss":
        rss[f[0]] = int(f[2]) / 1024
    else:
        cpu[(f[0], f[1])] = (float(f[3]) - float(f[2])) / tck
        wakes[(f[0], f[1])] = int(f[4])
def moved(c, run):
    try:
        e = json.load(open(f"{out}/{c}-{run.replace(' ', '-')}.json"))["end"]
        return e["sum_received"]["bytes"], e["sum_received"]["bits_per_second"] / 1e6
    except Exception:
        return None, None
runs = ["paced up", "paced down", "unpaced up", "unpaced down"]
spg = {}
print("| client | " + " | ".join(f"{r} s/GiB (Mbit/s)" for r in runs) + " | peak RSS MiB |")
print("|---|" + "---|" * (len(runs) + 1))
for c in clients:
    cells = []
    for r in runs:
        b, mbps = moved(c, r)
        if b:
            spg[(c, r)] = cpu[(c, r)] / (b / GiB)
            cells.append(f"{spg[(c, r)]:.2f} ({mbps:.0f})")
        else:
            cells.append("n/a")
    print(f"| {label[c]} | " + " | ".join(cells) + f" | {rss.get(c, 0):.1f} |")
for c in clients:
    cells = []
    for r in runs:
        b, _ = moved(c, r)
        cells.append(f"{wakes[(c, r)] / (b / (1 << 20)):.1f}" if b else "n/a")
    print(f"| {label[c]}: context switches per MiB | " + " | ".join(cells) + " | |")
if floor:
    print(f"| ChaCha20-Poly1305 alone (openssl, 1420 B) | " + " | ".join(f"{floor:.2f}" for _ in runs) + " | |")
print()
if floor and "wgwrap" in clients:
    for r in runs:
        w = spg.get(("wgwrap", r))
        g = spg.get(("wggo", r))
        if w is None:
            continue
        extra = f", {w / g:.2f}x wireguard-go's client" if g else ""
        print(f"- {r}: wg-wrap {w / floor:.1f}x the cipher's cost{extra}")
print()
print("| idle | processes | wake-ups/s | CPU s over the window |")
print("|---|---|---|---|")
for line in open(f"{out}/idle.txt"):
    name, n, sw, t, secs = line.strip().split("|")
    print(f"| {name} | {n} | {int(sw) / float(secs):.2f} | {int(t) / tck:.2f} |")
pss = int(open(f"{out}/pss.txt").read()) / 1024
print()
print(f"- {sessions} idle sessions: total PSS {pss:.1f} MiB ({pss / sessions:.2f} MiB each)")
PY
