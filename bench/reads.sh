#!/usr/bin/env bash
# Reads at scale (SPEC §12): GET /requests for every filter combination, first page,
# page at offset 10,000 and a cursor page deep in the table, and GET /metrics, on a
# database of N records (bench/fill.sh), with an idle server and the client on loopback
# (wrk, one connection: each request waits for the previous one), after one unmeasured
# second per query.
#
# Usage: bench/reads.sh sqlite|postgres N [seconds per query, default 3]
# Needs wrk, curl, python3, sqlite3 or psql. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
backend="$1"; n="$2"; secs="${3:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18190
server=""
pgdb=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
cleanup() {
  stop
  [ -n "$pgdb" ] && psql -q "postgres://postgres@127.0.0.1:5432/test" -c "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" || true
  rm -rf "$dir"
}
trap cleanup EXIT
case "$backend" in
sqlite) url="sqlite://$dir/consuma.db" ;;
postgres)
  pgdb="consuma_bench_$$"
  psql -q "postgres://postgres@127.0.0.1:5432/test" -c "CREATE DATABASE $pgdb"
  url="postgres://postgres@127.0.0.1:5432/$pgdb" ;;
esac
t0=$(date +%s)
bench/fill.sh "$url" "$n" >/dev/null
echo "filled $n records in $(( $(date +%s) - t0 )) s"
# Retention 0: nothing is pruned while we measure (the records span 100 days).
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "$url" --retention 0 \
  2>"$dir/server.log" &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
case "$backend" in
sqlite) bytes=$(du -cb "$dir"/consuma.db* | tail -n 1 | cut -f1) ;;
postgres) bytes=$(psql -At "$url" -c "SELECT pg_database_size(current_database())") ;;
esac
echo "database: $bytes bytes = $((bytes / n)) bytes per record (with indexes)"

# A cursor in the middle of the table's time span, as the API makes them.
deep=$(python3 - "$n" <<'PY'
import base64, json, sys, time
n = int(sys.argv[1])
mid = int(time.time() * 1000) - 50 * 86400000
body = {"t": mid, "i": "ffffffff-ffff-7fff-bfff-ffffffffffff", "f": {}}
print(base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("="))
PY
)
measure() {
  local label="$1" path="$2"
  local out
  # A second first, unmeasured: each pooled connection prepares the statement once.
  wrk -t1 -c1 -d1s "http://127.0.0.1:$port$path" >/dev/null
  out=$(wrk -t1 -c1 -d"${secs}s" --latency "http://127.0.0.1:$port$path")
  local p50 p99 rps
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  printf "| %-58s | %8s | %8s | %8s |\n" "$label" "$p50" "$p99" "$rps"
}
echo
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  backend: $backend  records: $n  per query: ${secs} s, wrk -t1 -c1"
printf "| %-58s | %8s | %8s | %8s |\n" "GET" "p50" "p99" "req/s"
echo "|---|---|---|---|"
for filter in "" "mode=sync" "mode=async" "status=completed" "status=failed" \
  "callback_status=sent" "callback_status=failed" "mode=async&status=completed" \
  "mode=async&callback_status=failed" "status=completed&callback_status=sent" \
  "mode=async&status=failed&callback_status=failed" "tenant=tenant-1" \
  "tenant=tenant-1&status=failed" "tenant=tenant-2&mode=sync&status=completed"; do
  sep=""; [ -n "$filter" ] && sep="&"
  measure "/requests?limit=50${sep}${filter}" "/requests?limit=50${sep}${filter}"
  measure "  … offset=10000" "/requests?limit=50&offset=10000${sep}${filter}"
done
measure "/requests?limit=50&cursor=<middle of the table>" "/requests?limit=50&cursor=$deep"
measure "/metrics" "/metrics"
