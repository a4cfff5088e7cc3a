#!/usr/bin/env bash
# Join speed of two wg-wrap builds, A/B: `exec P -- true` into one running session by
# build A and by build B, next to `nsenter -U -m -n` into the same namespaces, in
# ROUNDS (default 40) alternating hyperfine rounds of RUNS (default 30) runs each: short
# rounds, so the bursts of CPU steal on a shared VM (seconds long) move all three
# alike. Prints the median of the round medians, and of each round's ratio to nsenter
# with its quartiles.
#
#   sudo bench/join-ab.sh OLD_WG_WRAP NEW_WG_WRAP
#
# As root it builds a throw-away network and mount namespace and runs everything as
# the user `wgwrap-test` (.ci/setup creates it), like bench/join.sh, with each build
# laid out as a package installs it (bin/wg-wrap beside libexec/wg-wrap/launcher) and
# the runtime directory on a tmpfs; the session's peer is the built-in virtual peer
# on loopback. Needs hyperfine and python3.
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 WG_WRAP_A WG_WRAP_B" >&2
  exit 2
fi
ROUNDS=${ROUNDS:-40}
RUNS=${RUNS:-30}
if [ -z "${WG_WRAP_INNER:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "$0: run as root (it makes throw-away namespaces and runs as wgwrap-test)" >&2
    exit 2
  fi
  work=$(mktemp -d /tmp/wg-wrap-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work"
  for build in a:"$1" b:"$2"; do
    mkdir -p "$work/${build%%:*}/bin" "$work/${build%%:*}/libexec/wg-wrap"
    cp "${build#*:}" "$work/${build%%:*}/bin/wg-wrap"
    "${build#*:}" __dump-launcher "$work/${build%%:*}/libexec/wg-wrap/launcher"
  done
  mkdir "$work/run"
  cp "$0" "$work/join-ab.sh"
  cp "$(dirname "$0")/join-session.sh" "$work/"
  chown -R wgwrap-test "$work"
  unshare --net --mount -- sh -c 'ip link set lo up && mount -t tmpfs -o mode=0700,uid=$(id -u wgwrap-test) wg-wrap-bench "$1/run" && exec setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- env -i PATH=/usr/bin:/bin HOME="$1" ROUNDS="$2" RUNS="$3" WG_WRAP_INNER=1 bash "$1/join-ab.sh" "$1/a/bin/wg-wrap" "$1/b/bin/wg-wrap"' sh "$work" "$ROUNDS" "$RUNS"
  exit
fi
a=$1 b=$2
. "$HOME/join-session.sh"
start_bench_session "$a"
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
print("| command | median of round medians, ms | CPU ms (user+sys) | ratio to nsenter: median (quartiles) |")
print("|---|---|---|---|")
for name, v in rows.items():
    meds, cpu = [m for m, _ in v], [c for _, c in v]
    q = st.quantiles([m / n for m, n in zip(meds, ref)], n=4)
    print(f"| {name} | {st.median(meds):.2f} | {st.median(cpu):.2f} | {q[1]:.2f}x ({q[0]:.2f}-{q[2]:.2f}) |")
PY
