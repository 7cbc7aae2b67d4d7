#!/usr/bin/env bash
# Benchmarks of the async path (issue: durable async engine), on the default SQLite
# store (WAL, synchronous=NORMAL: every 202 follows a commit):
#   1. accept rate: wrk at 64 connections on POST /async against an accept-only
#      instance (--workers 0), beside GET /healthz measured on the same instance;
#   2. ack latency at 1,000 requests/s, open loop (consuma load --rate, latency from
#      the intended send time), with the engine working and calling back;
#   3. end-to-end callback latency at 500 requests/s with the default 200 ms delay.
# The load generator, its callback receiver and the service share the machine.
#
# Usage: bench/async.sh [seconds per run, default 20]
# Needs wrk and curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18182
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$dir"' EXIT
start() {
  stop
  rm -f "$dir"/consuma.db*
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
    --allow-callback-cidr 127.0.0.0/8 "$@" 2>"$dir/server.log" &
  server=$!
  for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
}
summary() { grep -E "Requests/s|Requests |Ack latency|Callback lat|Callbacks|Failed"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  store: SQLite WAL synchronous=NORMAL  run: ${secs} s"
echo
echo "== 1. accept rate, accept-only instance (--workers 0, no backlog limit: every answer must be a 202), wrk -t2 -c64"
start --workers 0 --max-pending-jobs 0
wrk -t2 -c64 -d"${secs}s" --latency -s bench/wrk-async.lua "http://127.0.0.1:$port/async" \
  | grep -E "Requests/sec|Non-2xx|Socket errors|^ +(50|99)%" | sed 's/^/  POST \/async  /'
wrk -t2 -c64 -d"${secs}s" --latency "http://127.0.0.1:$port/healthz" \
  | grep -E "Requests/sec|^ +(50|99)%" | sed 's/^/  GET \/healthz /'
echo
echo "== 2. ack latency at 1,000 requests/s, open loop, engine on (256 workers, 200 ms delay)"
start
"$bin" load --target "http://127.0.0.1:$port" --mode async --rate 1000 --duration "${secs}s" --callback-port 0 | summary
echo
echo "== 3. callback latency at 500 requests/s, open loop, 200 ms delay"
start
"$bin" load --target "http://127.0.0.1:$port" --mode async --rate 500 --duration "${secs}s" --callback-port 0 | summary
