#!/usr/bin/env bash
# Data-plane speed (issue 5): iperf3 TCP and ping through three tunnel pairs, measured
# in one run on one machine so the ratios mean something:
#
#   1. wg-wrap <-> wg-wrap    two rootless sessions over loopback; one profile has
#                             ListenPort, the other dials 127.0.0.1:that port;
#   2. wg-wrap -> wireguard-go  a rootless session dialing wireguard-go in another
#                             network namespace over a veth;
#   3. wireguard-go pair      the reference: wireguard-go <-> wireguard-go in two
#                             namespaces over a veth.
#
# For each pair: iperf3 TCP Gbit/s with 1 and 4 streams in both directions
# (-> client sends, <- client receives), the sender's retransmits, ping RTT through the
# tunnel, CPU% of each tunnel process while it runs and each one's peak RSS (VmHWM).
# Each wg-wrap row also gets its ratio to the reference row.
#
# Run as root: it builds throw-away network namespaces (named wgb<PID>-*), runs wg-wrap
# as the unprivileged user `wgwrap-test` (.ci/setup creates it) and wireguard-go as
# root. Only loopback and private namespace addresses are used; every iperf3 run is
# bounded (-t SECONDS); everything started is killed by PID on exit.
#
# Environment: SECONDS_PER_RUN (default 10), REPEAT (default 1: the whole measurement
# is repeated and every repetition printed), KEEP_JSON=dir to keep iperf3's output,
# PERF_OUT=file to record a system-wide `perf record -g` of pair 1's first upload,
# WG_WRAP_BIN to measure that wg-wrap binary instead of building this tree (A/B).
# Needs iperf3, wireguard-go, wg (wireguard-tools), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "run as root: the reference pair needs namespaces and wireguard-go" >&2
  exit 1
fi
for tool in iperf3 wireguard-go wg python3 ip setpriv; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iperf3 wireguard-go wireguard-tools)" >&2; exit 1; }
done
id -u wgwrap-test >/dev/null 2>&1 || { echo "missing user wgwrap-test (run .ci/setup)" >&2; exit 1; }
T=${SECONDS_PER_RUN:-10}
REPEAT=${REPEAT:-1}

if [ -z "${WG_WRAP_BIN:-}" ]; then
  cargo build --release --quiet
  WG_WRAP_BIN=target/release/wg-wrap
fi
tag=wgb$$
work=$(mktemp -d /tmp/wg-wrap-bench.XXXXXX)
chmod 755 "$work"
cp "$WG_WRAP_BIN" "$work/wg-wrap"
mkdir -p "$work/config" "$work/runtime" "$work/json"
chown -R wgwrap-test:wgwrap-test "$work"
chmod 700 "$work/config" "$work/runtime"

NS_HOST=$tag-host   # where the wg-wrap CLI runs: its host sockets live here
NS_SRV=$tag-srv     # wireguard-go serving wg-wrap (pair 2)
NS_RA=$tag-ra       # reference pair, client side
NS_RB=$tag-rb       # reference pair, server side
pids=()
declare -A wggo_pids   # interface name -> wireguard-go PID

user_env=(env -i PATH=/usr/bin:/bin HOME="$work" WG_WRAP_CONFIG_DIR="$work/config"
  WG_WRAP_RUNTIME_DIR="$work/runtime")
# wg-wrap as the unprivileged user in the host namespace.
wgwrap() {
  ip netns exec "$NS_HOST" setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- \
    "${user_env[@]}" "$work/wg-wrap" "$@"
}

cleanup() {
  set +e
  for p in srv cli gcli; do wgwrap down --now "$p" >/dev/null 2>&1; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  sleep 0.3
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  for ns in "$NS_HOST" "$NS_SRV" "$NS_RA" "$NS_RB"; do ip netns del "$ns" 2>/dev/null; done
  if [ -n "${KEEP_JSON:-}" ]; then mkdir -p "$KEEP_JSON" && cp -r "$work"/json/. "$KEEP_JSON"/; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- topology -------------------------------------------------------------------------
for ns in "$NS_HOST" "$NS_SRV" "$NS_RA" "$NS_RB"; do
  ip netns add "$ns"
  ip -n "$ns" link set lo up
done
veth() { # ns1 ns2 addr1 addr2 name
  ip link add "$5a" type veth peer name "$5b"
  ip link set "$5a" netns "$1"
  ip link set "$5b" netns "$2"
  ip -n "$1" addr add "$3/24" dev "$5a"
  ip -n "$2" addr add "$4/24" dev "$5b"
  ip -n "$1" link set "$5a" up
  ip -n "$2" link set "$5b" up
}
veth "$NS_HOST" "$NS_SRV" 192.168.231.1 192.168.231.2 "${tag}g"
veth "$NS_RA" "$NS_RB" 192.168.232.1 192.168.232.2 "${tag}r"

key() { wg genkey; }
pub() { printf '%s' "$1" | wg pubkey; }

# wireguard-go: wggo NS IFNAME PRIVATE PORT ADDRESS PEER_PUB PEER_ALLOWED [ENDPOINT]
wggo() {
  local ns=$1 ifname=$2 priv=$3 port=$4 addr=$5 peer=$6 allowed=$7 endpoint=${8:-}
  # `ip netns exec` and wireguard-go -f both stay in the one process we started.
  ip netns exec "$ns" wireguard-go -f "$ifname" >"$work/$ifname.log" 2>&1 &
  pids+=($!)
  wggo_pids[$ifname]=$!
  for _ in $(seq 100); do [ -S "/var/run/wireguard/$ifname.sock" ] && break; sleep 0.05; done
  printf '%s' "$priv" >"$work/$ifname.key"
  local args=(set "$ifname" private-key "$work/$ifname.key" listen-port "$port" peer "$peer" allowed-ips "$allowed")
  [ -n "$endpoint" ] && args+=(endpoint "$endpoint")
  ip netns exec "$ns" wg "${args[@]}"
  ip -n "$ns" addr add "$addr/24" dev "$ifname"
  ip -n "$ns" link set "$ifname" up
}
wggo_pid() { echo "${wggo_pids[$1]}"; }

profile() { # name private address peer_pub allowed [listen_port] [endpoint]
  {
    echo "[Interface]"
    echo "PrivateKey = $2"
    echo "Address = $3/24"
    [ -n "${6:-}" ] && echo "ListenPort = $6"
    echo
    echo "[Peer]"
    echo "PublicKey = $4"
    echo "AllowedIPs = $5"
    [ -n "${7:-}" ] && echo "Endpoint = $7"
  } >"$work/config/$1.conf"
  chown wgwrap-test:wgwrap-test "$work/config/$1.conf"
  chmod 600 "$work/config/$1.conf"
}

# Pair 1: two wg-wrap sessions over the host namespace's loopback.
k_srv=$(key); k_cli=$(key)
profile srv "$k_srv" 10.99.0.1 "$(pub "$k_cli")" 10.99.0.2/32 51820
profile cli "$k_cli" 10.99.0.2 "$(pub "$k_srv")" 10.99.0.1/32 "" 127.0.0.1:51820
# Pair 2: wg-wrap dialing wireguard-go over a veth.
k_gsrv=$(key); k_gcli=$(key)
wggo "$NS_SRV" "${tag}s" "$k_gsrv" 51821 10.98.0.1 "$(pub "$k_gcli")" 10.98.0.2/32
profile gcli "$k_gcli" 10.98.0.2 "$(pub "$k_gsrv")" 10.98.0.1/32 "" 192.168.231.2:51821
# Pair 3: the reference.
k_ra=$(key); k_rb=$(key)
wggo "$NS_RB" "${tag}b" "$k_rb" 51822 10.97.0.1 "$(pub "$k_ra")" 10.97.0.2/32
wggo "$NS_RA" "${tag}a" "$k_ra" 51823 10.97.0.2 "$(pub "$k_rb")" 10.97.0.1/32 192.168.232.2:51822

# srv only listens (nobody to handshake with until cli dials); the others must connect.
wgwrap up srv >/dev/null 2>"$work/up.log"
for p in cli gcli; do wgwrap up --wait-timeout 10 "$p" >/dev/null 2>>"$work/up.log" || { cat "$work/up.log" >&2; exit 1; }; done
supervisor_pid() { sed -n 's/^supervisor_pid=//p' "$work/runtime/profiles/$1/state"; }

# iperf3 servers, one per pair, each inside the server side's tunnel namespace.
wgwrap exec srv -- iperf3 -s -B 10.99.0.1 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$NS_SRV" iperf3 -s -B 10.98.0.1 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$NS_RB" iperf3 -s -B 10.97.0.1 >/dev/null 2>&1 &
pids+=($!)
sleep 1

cpu_ticks() { # utime + stime of every process given, in clock ticks
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

PAIRS="wgwrap wgwrap-wggo wggo"
TESTS=("1 up:-P 1" "1 down:-P 1 -R" "4 up:-P 4" "4 down:-P 4 -R")
client() { # PAIR CMD... : run CMD on PAIR's client side, inside its tunnel
  local pair=$1; shift
  case $pair in
    wgwrap) wgwrap exec cli -- "$@" ;;
    wgwrap-wggo) wgwrap exec gcli -- "$@" ;;
    wggo) ip netns exec "$NS_RA" "$@" ;;
  esac
}
server_addr() {
  case $1 in wgwrap) echo 10.99.0.1 ;; wgwrap-wggo) echo 10.98.0.1 ;; wggo) echo 10.97.0.1 ;; esac
}
tunnel_pids() { # the client's and the server's tunnel process
  case $1 in
    wgwrap) echo "$(supervisor_pid cli) $(supervisor_pid srv)" ;;
    wgwrap-wggo) echo "$(supervisor_pid gcli) $(wggo_pid "${tag}s")" ;;
    wggo) echo "$(wggo_pid "${tag}a") $(wggo_pid "${tag}b")" ;;
  esac
}

# One iperf3 run of TEST for PAIR, with the tunnel processes' CPU time around it.
# The pairs take turns test by test, so each comparison is made minutes apart at most.
measure() {
  local pair=$1 run=$2 out=$3 name flags cp sp c0 s0 t0 c1 s1 t1
  name=${run%%:*}; flags=${run#*:}
  read -r cp sp <<<"$(tunnel_pids "$pair")"
  c0=$(cpu_ticks "$cp"); s0=$(cpu_ticks "$sp"); t0=$(date +%s.%N)
  if [ -n "${PERF_OUT:-}" ] && [ "$pair" = wgwrap ] && [ "$name" = "1 up" ]; then
    perf record -q -a -g -o "$PERF_OUT" -- sleep "$T" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  # shellcheck disable=SC2086
  client "$pair" iperf3 -c "$(server_addr "$pair")" -t "$T" -J $flags >"$out/$pair-${name// /-}.json" || true
  if [ -n "${perf_pid:-}" ]; then wait "$perf_pid" || true; perf_pid=; fi
  c1=$(cpu_ticks "$cp"); s1=$(cpu_ticks "$sp"); t1=$(date +%s.%N)
  echo "$pair|$name|$c0|$c1|$s0|$s1|$t0|$t1" >>"$out/cpu.txt"
}

for rep in $(seq "$REPEAT"); do
  out=$work/json/rep$rep
  mkdir -p "$out"
  for run in "${TESTS[@]}"; do
    for pair in $PAIRS; do measure "$pair" "$run" "$out"; done
  done
  for pair in $PAIRS; do
    client "$pair" ping -c 50 -i 0.2 -q "$(server_addr "$pair")" >"$out/$pair-ping.txt" 2>&1 || true
    read -r cp sp <<<"$(tunnel_pids "$pair")"
    echo "$pair|rss|$(awk '/VmHWM/{print $2}' "/proc/$cp/status")|$(awk '/VmHWM/{print $2}' "/proc/$sp/status")" >>"$out/cpu.txt"
  done
  echo "### repetition $rep of $REPEAT (${T} s per iperf3 run)"
  python3 - "$out" <<'PY'
import json, os, re, sys
out = sys.argv[1]
tck = os.sysconf("SC_CLK_TCK")
pairs = [("wgwrap", "wg-wrap <-> wg-wrap (loopback)"),
         ("wgwrap-wggo", "wg-wrap -> wireguard-go (veth)"),
         ("wggo", "wireguard-go <-> wireguard-go (veth, reference)")]
cpu, rss = {}, {}
for line in open(f"{out}/cpu.txt"):
    f = line.strip().split("|")
    if f[1] == "rss":
        rss[f[0]] = (int(f[2]) / 1024, int(f[3]) / 1024)
    else:
        c0, c1, s0, s1, t0, t1 = map(float, f[2:])
        wall = t1 - t0
        cpu[(f[0], f[1])] = (100 * (c1 - c0) / tck / wall, 100 * (s1 - s0) / tck / wall)
def iperf(pair, name):
    try:
        j = json.load(open(f"{out}/{pair}-{name.replace(' ', '-')}.json"))
        e = j["end"]
        return e["sum_received"]["bits_per_second"] / 1e9, e["sum_sent"].get("retransmits", 0)
    except Exception:
        return None, None
def ping(pair):
    try:
        m = re.search(r"= [\d.]+/([\d.]+)/", open(f"{out}/{pair}-ping.txt").read())
        return float(m.group(1))
    except Exception:
        return None
runs = ["1 up", "1 down", "4 up", "4 down"]
res = {p: {r: iperf(p, r) for r in runs} for p, _ in pairs}
ref = res["wggo"]
fmt = lambda v, f="{:.2f}": "n/a" if v is None else f.format(v)
print("| pair | 1 stream -> | 1 stream <- | 4 streams -> | 4 streams <- | retransmits (1->, 1<-, 4->, 4<-) | ping avg ms | CPU% client/server (1 stream ->) | peak RSS MiB client/server |")
print("|---|---|---|---|---|---|---|---|---|")
for p, label in pairs:
    r = res[p]
    gb = [fmt(r[x][0]) for x in runs]
    rt = ", ".join(fmt(r[x][1], "{}") for x in runs)
    c = cpu.get((p, "1 up"), (0, 0))
    m = rss.get(p, (0, 0))
    print(f"| {label} | {' | '.join(gb)} | {rt} | {fmt(ping(p), '{:.3f}')} | {c[0]:.0f} / {c[1]:.0f} | {m[0]:.1f} / {m[1]:.1f} |")
print()
print("Ratio to the reference pair (same run):")
summary = {}
for p, label in pairs[:2]:
    ratios = []
    for x in runs:
        a, b = res[p][x][0], ref[x][0]
        ratios.append(f"{x}: {a / b:.2f}x" if a and b else f"{x}: n/a")
        if a and b:
            summary[f"{p}|{x}"] = a / b
    pr = ping(p), ping("wggo")
    if all(pr):
        summary[f"{p}|rtt"] = pr[0] / pr[1]
    rtt = f"; RTT {pr[0] / pr[1]:.2f}x" if all(pr) else ""
    print(f"- {label}: " + ", ".join(ratios) + rtt)
print()
json.dump(summary, open(f"{out}/ratios.json", "w"))
PY
done
if [ "$REPEAT" -gt 1 ]; then
  echo "### median over $REPEAT repetitions"
  python3 - "$work/json" "$REPEAT" <<'PY'
import json, statistics, sys
base, n = sys.argv[1], int(sys.argv[2])
reps = [json.load(open(f"{base}/rep{i}/ratios.json")) for i in range(1, n + 1)]
for pair, label in [("wgwrap", "wg-wrap <-> wg-wrap"), ("wgwrap-wggo", "wg-wrap -> wireguard-go")]:
    parts = []
    for x in ["1 up", "1 down", "4 up", "4 down", "rtt"]:
        vals = [r[f"{pair}|{x}"] for r in reps if f"{pair}|{x}" in r]
        if vals:
            name = "RTT" if x == "rtt" else x
            parts.append(f"{name}: {statistics.median(vals):.2f}x (range {min(vals):.2f}-{max(vals):.2f})")
    print(f"- {label} / reference: " + ", ".join(parts))
PY
fi
