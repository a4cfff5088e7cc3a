#!/usr/bin/env bash
# Join speed of two wg-wrap builds, A/B: `exec P -- true` into one running session by
# build A and by build B, next to `nsenter -U -m -n` into the same namespaces, in
# ROUNDS (default 8) alternating hyperfine rounds of RUNS (default 150) runs each, so a
# noisy machine moves all three alike. Prints each round's ratio to nsenter and the
# medians.
#
#   sudo bench/join-ab.sh OLD_WG_WRAP NEW_WG_WRAP
#
# As root it builds a throw-away network namespace and runs everything as the user
# `wgwrap-test` (.ci/setup creates it), like bench/join.sh; the session's peer is the
# built-in virtual peer on loopback. Needs hyperfine and python3.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 WG_WRAP_A WG_WRAP_B" >&2
  exit 2
fi
ROUNDS=${ROUNDS:-8}
RUNS=${RUNS:-150}
if [ "$(id -u)" = 0 ]; then
  work=$(mktemp -d /tmp/wg-wrap-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work"
  cp "$1" "$work/a"
  cp "$2" "$work/b"
  cp "$0" "$work/join-ab.sh"
  chown -R wgwrap-test "$work"
  unshare --net -- sh -c 'ip link set lo up && exec setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- env -i PATH=/usr/bin:/bin HOME="$1" ROUNDS="$2" RUNS="$3" bash "$1/join-ab.sh" "$1/a" "$1/b"' sh "$work" "$ROUNDS" "$RUNS"
  exit
fi
a=$1 b=$2
tmp=$(mktemp -d)
export WG_WRAP_CONFIG_DIR=$tmp/config WG_WRAP_RUNTIME_DIR=$tmp/runtime
mkdir -p "$WG_WRAP_CONFIG_DIR"
"$a" __virtual-peer 127.0.0.1:0 "$WG_WRAP_CONFIG_DIR/bench.conf" >/dev/null &
peer=$!
cleanup() { "$a" down --now bench >/dev/null 2>&1 || true; kill "$peer" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$WG_WRAP_CONFIG_DIR/bench.conf" ] && break; sleep 0.05; done
"$a" up --wait-timeout 10 bench >/dev/null
pid=$(sed -n 's/^supervisor_pid=//p' "$WG_WRAP_RUNTIME_DIR/profiles/bench/state")
for round in $(seq "$ROUNDS"); do
  hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$tmp/round$round.json" \
    -n nsenter "nsenter -U -m -n --preserve-credentials -t $pid true" \
    -n A "$a exec bench -- true" \
    -n B "$b exec bench -- true" >/dev/null 2>&1
done
python3 - "$tmp" "$ROUNDS" <<'PY'
import json, statistics as st, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
rows = {}
for r in range(1, rounds + 1):
    for x in json.load(open(f"{tmp}/round{r}.json"))["results"]:
        rows.setdefault(x["command"], []).append((x["median"] * 1000, (x["user"] + x["system"]) * 1000))
ref = [m for m, _ in rows["nsenter"]]
print("| command | median of round medians, ms | CPU ms (user+sys) | ratio to nsenter, each round | median ratio |")
print("|---|---|---|---|---|")
for name, v in rows.items():
    meds, cpu = [m for m, _ in v], [c for _, c in v]
    ratios = [m / n for m, n in zip(meds, ref)]
    print(f"| {name} | {st.median(meds):.2f} | {st.median(cpu):.2f} | {' '.join(f'{x:.2f}' for x in ratios)} | {st.median(ratios):.2f}x |")
PY
