#!/usr/bin/env bash
# Port publishing (issue 12): throughput through a published TCP port, next to the
# same iperf3 run on the namespace's own loopback (no relay), with the supervisor's
# CPU time per GiB relayed and its peak RSS (VmHWM).
#
#   - iperf3 server inside the session (`wg-wrap exec bench -- iperf3 -s`), reached
#     from the "host" through `up -p 15201:5201`: upload (client -> service), download
#     (-R), and $STREAMS parallel streams (default 100);
#   - the same client run inside the session against 127.0.0.1:5201 directly: the
#     ceiling without the relay.
#
# Run as root (`sudo bench/publish.sh`): the script builds a throw-away network
# namespace (the "host"; everything talks over its loopback only) and runs everything
# as the unprivileged `wgwrap-test` user that .ci/setup creates. Needs iperf3 and
# python3. Every iperf3 run is bounded (-t); everything started is killed on exit.
# Environment: SECONDS_PER_RUN (default 5), STREAMS (default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  for tool in iperf3 python3 unshare setpriv; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install iperf3 python3)" >&2; exit 1; }
  done
  id -u wgwrap-test >/dev/null 2>&1 || { echo "missing user wgwrap-test (run .ci/setup)" >&2; exit 1; }
  cargo build --release --quiet
  work=$(mktemp -d /tmp/wg-wrap-bench.XXXXXX)
  chmod 755 "$work"
  cp target/release/wg-wrap "$work/wg-wrap"
  cp "$0" "$work/publish.sh"
  chown -R wgwrap-test "$work"
  exec unshare --net -- sh -c 'ip link set lo up && exec setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- env -i PATH=/usr/bin:/bin HOME="$1" WG_WRAP_BIN="$1/wg-wrap" SECONDS_PER_RUN="$2" STREAMS="$3" bash "$1/publish.sh"' sh "$work" "${SECONDS_PER_RUN:-5}" "${STREAMS:-100}"
fi
bin=${WG_WRAP_BIN:-$PWD/target/release/wg-wrap}
T=${SECONDS_PER_RUN:-5}
STREAMS=${STREAMS:-100}
tmp=$(mktemp -d)
export WG_WRAP_CONFIG_DIR=$tmp/config WG_WRAP_RUNTIME_DIR=$tmp/runtime
mkdir -p "$WG_WRAP_CONFIG_DIR"
"$bin" __virtual-peer 127.0.0.1:0 "$WG_WRAP_CONFIG_DIR/bench.conf" >/dev/null &
peer=$!
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  "$bin" down --now bench >/dev/null 2>&1 || true
  kill "$peer" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WG_WRAP_CONFIG_DIR/bench.conf" ] && break; sleep 0.05; done
"$bin" up -q -p 15201:5201 bench
pid=$(sed -n 's/^supervisor_pid=//p' "$WG_WRAP_RUNTIME_DIR/profiles/bench/state")
"$bin" exec bench -- iperf3 -s -p 5201 >/dev/null 2>&1 &
server=$!
for _ in $(seq 100); do "$bin" exec bench -- python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5201)).close()' 2>/dev/null && break; sleep 0.1; done

cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
run() { # name, then the client command
  local name=$1; shift
  local before after
  before=$(cpu)
  "$@" -t "$T" -J >"$tmp/$name.json"
  after=$(cpu)
  echo "$name $before $after" >>"$tmp/cpu"
}
run upload iperf3 -c 127.0.0.1 -p 15201
run download iperf3 -c 127.0.0.1 -p 15201 -R
run parallel iperf3 -c 127.0.0.1 -p 15201 -P "$STREAMS"
run inside "$bin" exec bench -- iperf3 -c 127.0.0.1 -p 5201
hwm=$(sed -n 's/^VmHWM:[[:space:]]*//p' "/proc/$pid/status")

python3 - "$tmp" "$(getconf CLK_TCK)" "$hwm" <<'PY'
import json, sys
tmp, hz, hwm = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cpu = {}
for line in open(f"{tmp}/cpu"):
    name, before, after = line.split()
    cpu[name] = (int(after) - int(before)) / hz
rows = {
    "upload": "published port, host -> service",
    "download": "published port, service -> host (-R)",
    "parallel": "published port, parallel streams (-P)",
    "inside": "namespace loopback, no relay",
}
print("| run | Gbit/s | supervisor CPU s/GiB |")
print("|---|---|---|")
for name, label in rows.items():
    end = json.load(open(f"{tmp}/{name}.json"))["end"]
    bits = end["sum_received"]["bits_per_second"]
    gib = end["sum_received"]["bytes"] / 2**30
    per = f"{cpu[name] / gib:.3f}" if name != "inside" else "-"
    print(f"| {label} | {bits / 1e9:.2f} | {per} |")
print(f"\nsupervisor VmHWM after the runs: {hwm}")
PY
