#!/usr/bin/env bash
# The engine before the door, and the bounded backlog (SPEC §9), SQLite:
#   1. 1,000 running jobs whose work outlasts their lease (--lease-secs 3, work 6 s, so
#      each lease is renewed twice) while wrk floods POST /async (accept-only jobs for a
#      port where nothing listens): duplicate deliveries counted by `consuma load`'s
#      receiver (must be 0), and the flood's accept rate;
#   2. the backlog limit reached (--max-pending-jobs 100000, --workers 0): accept rate and
#      503 rate of a flood against a full backlog, and the server's memory.
#
# Usage: bench/door.sh [flood seconds, default 20]
# Needs wrk, curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18188
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$dir"' EXIT
api="http://127.0.0.1:$port"
start() {
  stop
  rm -f "$dir"/consuma.db*
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
    --allow-callback-cidr 127.0.0.0/8 "$@" 2>"$dir/server.log" &
  server=$!
  for _ in $(seq 1 100); do curl -fs "$api/readyz" >/dev/null && break; sleep 0.1; done
}
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$server/status"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "== 1. 1,000 running jobs (work 6 s, lease 3 s) under an admission flood of ${secs} s"
start --workers 1100 --lease-secs 3 --work-delay-ms 6000 --max-pending-jobs 0
"$bin" load --target "$api" --mode async --requests 1000 --concurrency 200 --callback-port 0 \
  --callback-timeout 120s >"$dir/load.out" &
loadpid=$!
sleep 2
wrk -t2 -c64 -d"${secs}s" -s bench/wrk-async.lua "$api/async" | grep -E "Requests/sec|Non-2xx" | sed 's/^/  flood: /'
wait "$loadpid"
grep -E "Requests |Callbacks|Failed" "$dir/load.out" | sed 's/^/  running jobs: /'
echo "  lease warnings in the log: $(grep -c 'lease lost' "$dir/server.log" || true)"
echo
echo "== 2. a full backlog (--max-pending-jobs 100000, --workers 0)"
start --workers 0 --max-pending-jobs 100000
echo "  RSS at start: $(rss)"
wrk -t2 -c64 -d8s -s bench/wrk-async.lua "$api/async" | grep -E "Requests/sec|Non-2xx" | sed 's/^/  filling: /'
echo "  RSS with 100,000 pending: $(rss)"
wrk -t2 -c64 -d"${secs}s" --latency -s bench/wrk-async.lua "$api/async" \
  | grep -E "Requests/sec|Non-2xx|^ +(50|99)%" | sed 's/^/  flood against a full backlog: /'
echo "  RSS after: $(rss)   total stored: $(curl -fs "$api/requests?limit=1" | sed 's/.*"total":\([0-9]*\).*/\1/')"
