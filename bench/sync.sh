#!/usr/bin/env bash
# Benchmark of POST /sync (issue: foundation): throughput against the ideal
# (concurrency ÷ delay) and latency p50/p99 at concurrency 10, 100 and 1,000, with the
# default 200 ms work delay, on the default SQLite store (WAL, synchronous=NORMAL).
#
# Usage: bench/sync.sh [seconds per run, default 20]
# Needs: wrk (Debian package `wrk`). Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
delay_ms=200
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
port=18181
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --work-delay-ms "$delay_ms" \
  --database-url "sqlite://$dir/consuma.db" 2>"$dir/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  delay: ${delay_ms} ms  run: ${secs} s each  store: SQLite WAL synchronous=NORMAL"
printf '%-6s %12s %12s %8s %10s %10s %8s\n' conc req/s ideal "%ideal" p50_ms p99_ms errors
for c in 10 100 1000; do
  out=$(wrk -t2 -c"$c" -d"${secs}s" --timeout 10s --latency -s bench/wrk-sync.lua "http://127.0.0.1:$port/sync")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  ideal=$(awk -v c="$c" -v d="$delay_ms" 'BEGIN {printf "%.1f", c * 1000 / d}')
  pct=$(awk -v r="$rps" -v i="$ideal" 'BEGIN {printf "%.1f", 100 * r / i}')
  to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.1f", v}' <<<"$1"; }
  printf '%-6s %12s %12s %8s %10s %10s %8s\n' "$c" "$rps" "$ideal" "$pct" "$(to_ms "$p50")" "$(to_ms "$p99")" "${errs:-0}"
  sleep 2
done
