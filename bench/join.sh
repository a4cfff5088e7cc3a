#!/usr/bin/env bash
# Join speed (sessions issue): how long `wg-wrap exec P -- true` takes against a
# running session, next to `nsenter` into the same namespaces and a bare `/bin/true`;
# and a cold `exec` (no session yet) until the first packet is answered by a local
# peer, next to the same ping through an already-running session.
#
# Run as root: it builds a throw-away network and mount namespace and runs everything
# as the user `wgwrap-test` that .ci/setup creates. Everything talks over loopback
# only. The binary is laid out as a package installs it (bin/wg-wrap beside
# libexec/wg-wrap/launcher) and the runtime directory is a tmpfs, as
# $XDG_RUNTIME_DIR is on a systemd system; a second copy with no launcher beside it
# shows the built-in launcher's cost (written to a memfd on each run).
# Prints a markdown table; needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${WG_WRAP_INNER:-}" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "$0: run as root (it makes throw-away namespaces and runs as wgwrap-test)" >&2
    exit 2
  fi
  # WG_WRAP_BIN: measure that binary instead of building this tree (A/B runs).
  if [ -z "${WG_WRAP_BIN:-}" ]; then
    cargo build --release --quiet
    WG_WRAP_BIN=target/release/wg-wrap
  fi
  work=$(mktemp -d /tmp/wg-wrap-bench.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  chmod 755 "$work"
  mkdir -p "$work/prefix/bin" "$work/prefix/libexec/wg-wrap" "$work/run"
  cp "$WG_WRAP_BIN" "$work/prefix/bin/wg-wrap"
  "$WG_WRAP_BIN" __dump-launcher "$work/prefix/libexec/wg-wrap/launcher"
  cp "$WG_WRAP_BIN" "$work/wg-wrap"
  cp "$0" "$work/join.sh"
  cp bench/join-session.sh "$work/"
  chown -R wgwrap-test "$work"
  # A throw-away network namespace, so even the loopback traffic stays private, and
  # a mount namespace for the tmpfs.
  unshare --net --mount -- sh -c 'ip link set lo up && mount -t tmpfs -o mode=0700,uid=$(id -u wgwrap-test) wg-wrap-bench "$1/run" && exec setpriv --reuid=wgwrap-test --regid=wgwrap-test --clear-groups -- env -i PATH=/usr/bin:/bin HOME="$1" WG_WRAP_INNER=1 bash "$1/join.sh"' sh "$work"
  exit
fi
bin=$HOME/prefix/bin/wg-wrap
. "$HOME/join-session.sh"
start_bench_session "$bin"

hyperfine -N --warmup 20 --runs 300 --export-json "$tmp/warm.json" \
  -n '/bin/true' '/bin/true' \
  -n 'nsenter -U -m -n --preserve-credentials' "nsenter -U -m -n --preserve-credentials -t $pid true" \
  -n 'wg-wrap exec (join)' "$bin exec bench -- true" \
  -n 'wg-wrap exec (join, built-in launcher)' "$HOME/wg-wrap exec bench -- true" >/dev/null
hyperfine -N --warmup 5 --runs 100 --export-json "$tmp/ping.json" \
  -n 'ping through a running session' "$bin exec bench -- ping -c1 -W2 -q 10.77.0.1" >/dev/null
"$bin" down bench >/dev/null
# Paced (unmeasured --prepare pause): each cold start is a new handshake, and a
# WireGuard peer answers more than ~10 initiations a second with cookies instead.
hyperfine -N --warmup 3 --runs 60 --prepare 'sleep 0.25' --export-json "$tmp/cold.json" \
  -n 'cold exec + first ping answered' "$bin exec bench -- ping -c1 -W2 -q 10.77.0.1" >/dev/null

python3 - "$tmp" <<'PY'
import json, sys
tmp = sys.argv[1]
rows = []
for name in ("warm", "ping", "cold"):
    for r in json.load(open(f"{tmp}/{name}.json"))["results"]:
        rows.append((r["command"], r["median"] * 1000, r["mean"] * 1000, r["stddev"] * 1000))
ref = {c: m for c, m, _, _ in rows}
nsenter = ref["nsenter -U -m -n --preserve-credentials"]
ping = ref["ping through a running session"]
print("| command | median ms | mean ms | stddev ms | ratio |")
print("|---|---|---|---|---|")
for c, med, mean, sd in rows:
    ratio = ""
    if c.startswith("wg-wrap exec (join"):
        ratio = f"{med / nsenter:.2f}x nsenter" + (" (target <= 1.3x)" if c.endswith("(join)") else "")
    if c == "cold exec + first ping answered":
        ratio = f"{med / ping:.2f}x warm ping (target < 25 ms absolute)"
    print(f"| {c} | {med:.2f} | {mean:.2f} | {sd:.2f} | {ratio} |")
PY
