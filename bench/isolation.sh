#!/usr/bin/env bash
# Delivery isolation (SPEC §8), on one instance with default settings and
# --work-delay-ms 50, SQLite (WAL, synchronous=NORMAL):
#   1. 20,000 POST /async for a destination that accepts connections and never answers,
#      then 200 for a healthy receiver (consuma load): healthy callbacks received, and
#      their latency from the send (the 202 follows within milliseconds);
#   2. then the black hole starts answering: time until the 20,000 deferred callbacks
#      are all delivered, with nobody doing anything;
#   3. the same as 1 with a destination that answers 200 after 9 s (the circuit never
#      opens there; only the per-destination cap protects the others).
# The receivers (python3 asyncio), the load tools and the service share the machine.
#
# Usage: bench/isolation.sh [flood size, default 20000]
# Needs wrk, curl, python3. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
flood="${1:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18184
hole_port=18185
pids=()
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
api="http://127.0.0.1:$port"

start() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  rm -f "$dir"/consuma.db*
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
    --allow-callback-cidr 127.0.0.0/8 --work-delay-ms 50 2>"$dir/server.log" &
  server=$!
  for _ in $(seq 1 50); do curl -fs "$api/readyz" >/dev/null && break; sleep 0.1; done
}
receiver() { # kind
  rm -f "$dir/control" "$dir/control.count"
  python3 bench/receivers.py "$1" "$hole_port" "$dir/control" >"$dir/receiver.out" &
  pids+=($!)
  for _ in $(seq 1 50); do grep -q ready "$dir/receiver.out" 2>/dev/null && break; sleep 0.1; done
}
flood() { # submits $flood POST /async for the receiver on $hole_port
  local t0=$(date +%s.%N)
  CALLBACK_URL="http://127.0.0.1:$hole_port/hook" \
    wrk -t2 -c32 -d600s -s bench/wrk-async.lua "$api/async" >"$dir/wrk.out" 2>&1 &
  local w=$!
  while [ "$(total)" -lt "$flood" ]; do sleep 0.05; done
  kill "$w" 2>/dev/null; wait "$w" 2>/dev/null || true
  echo "  flood: $(total) accepted in $(echo "$(date +%s.%N) - $t0" | bc) s"
}
total() { curl -fs "$api/requests?limit=1&mode=async" | sed 's/.*"total":\([0-9]*\).*/\1/'; }
healthy() {
  "$bin" load --target "$api" --mode async --requests 200 --concurrency 20 --callback-port 0 \
    --callback-timeout 60s | grep -E "Requests |Ack latency|Callback lat|Callbacks|Failed" | sed 's/^/  healthy /'
}
pending() {
  curl -fs "$api/requests?limit=1&callback_status=pending" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}
metric() { curl -fs "$api/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  flood: $flood  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== 1. black hole: $flood callbacks that are never answered, then 200 healthy ones"
receiver blackhole
start
flood
healthy
echo "  circuits open: $(metric consuma_callback_circuits_open)  deferred: $(metric consuma_callback_deferred_total)  pending callbacks: $(pending)"
t0=$(date +%s.%N)
while [ "$(metric consuma_callback_circuits_open)" != "1" ]; do sleep 0.2; done
echo "  the black hole's circuit opened $(echo "$(date +%s.%N) - $t0" | bc) s later; 200 healthy ones again:"
healthy
echo "  circuits open: $(metric consuma_callback_circuits_open)  deferred: $(metric consuma_callback_deferred_total)  pending callbacks: $(pending)"
echo
echo "== 2. the black hole starts answering"
t0=$(date +%s.%N)
touch "$dir/control"
while [ "$(pending)" -gt 0 ]; do sleep 0.5; done
echo "  all $flood deferred callbacks delivered $(echo "$(date +%s.%N) - $t0" | bc) s after the destination came back"
kill "${pids[-1]}" 2>/dev/null || true
echo
echo "== 3. a destination answering after 9 s: $flood callbacks, then 200 healthy ones"
receiver slow
start
flood
healthy
echo "  circuits open: $(metric consuma_callback_circuits_open)  pending callbacks: $(pending)"
