# Sourced by bench/join.sh and bench/join-ab.sh inside their throw-away namespaces, as
# the test user with HOME the work directory and a tmpfs at $HOME/run: starts the
# built-in virtual peer and the session "bench" with the wg-wrap binary $1, ends both
# on exit, and sets $tmp (the tmpfs) and $pid (the supervisor).
start_bench_session() {
  bench_bin=$1
  tmp=$HOME/run
  export WG_WRAP_CONFIG_DIR=$tmp/config WG_WRAP_RUNTIME_DIR=$tmp/runtime
  mkdir -p "$WG_WRAP_CONFIG_DIR"
  "$bench_bin" __virtual-peer 127.0.0.1:0 "$WG_WRAP_CONFIG_DIR/bench.conf" >/dev/null &
  bench_peer=$!
  trap '"$bench_bin" down --now bench >/dev/null 2>&1 || true; kill "$bench_peer" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do [ -s "$WG_WRAP_CONFIG_DIR/bench.conf" ] && break; sleep 0.05; done
  "$bench_bin" up --wait-timeout 10 bench >/dev/null
  pid=$(sed -n 's/^supervisor_pid=//p' "$WG_WRAP_RUNTIME_DIR/profiles/bench/state")
}
