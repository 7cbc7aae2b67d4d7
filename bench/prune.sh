#!/usr/bin/env bash
# Retention under load (SPEC §12): a SQLite database holding N finished records all older
# than 90 days, started with the default --retention 90d, so the first pass prunes them
# all while `consuma load --mode async --rate 1000` runs. Reports the ack latency during
# pruning beside the same load on an empty database, and how fast records were deleted.
#
# Usage: bench/prune.sh [N, default 1000000] [seconds of load, default 30]
# Needs sqlite3, curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000000}"; secs="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18187
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$dir"' EXIT
api="http://127.0.0.1:$port"
start() {
  RUST_LOG=info "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
    --allow-callback-cidr 127.0.0.0/8 --log-format json 2>"$dir/server.log" &
  server=$!
  for _ in $(seq 1 100); do curl -fs "$api/readyz" >/dev/null && break; sleep 0.1; done
}
pruned() { curl -fs "$api/metrics" | awk '$1 == "consuma_pruned_total" {print $2}'; }
load() {
  "$bin" load --target "$api" --mode async --rate 1000 --duration "${secs}s" --callback-port 0 \
    | grep -E "Requests |Failed|Ack latency|Callback lat|Callbacks" | sed 's/^/  /'
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  records: $n  load: async 1,000/s for ${secs}s  SQLite WAL synchronous=NORMAL"
echo
echo "== 1. the same load on an empty database (no pruning)"
start
load
stop
rm -f "$dir"/consuma.db*
echo
echo "== 2. with $n finished records older than 90 days, pruned while the load runs"
t0=$(date +%s)
bench/fill.sh "sqlite://$dir/consuma.db" "$n" 100 200 >/dev/null
echo "  filled in $(( $(date +%s) - t0 )) s: $(du -cb "$dir"/consuma.db* | tail -n 1 | cut -f1) bytes"
sync  # the fill's own write-back is done before the load starts, not during it
start
t0=$(date +%s.%N)
load
echo "  pruned during the load: $(pruned)"
while [ "$(pruned)" != "$n" ]; do sleep 0.5; done
echo "  all $n pruned $(echo "$(date +%s.%N) - $t0" | bc) s after the start ($(echo "$n / ($(date +%s.%N) - $t0)" | bc) records/s, the load included)"
grep -m1 '"retention' "$dir/server.log" | cut -c1-220
