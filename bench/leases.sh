#!/usr/bin/env bash
# The lease scenario of SPEC §16 (issue 19, item 1): --lease-secs 3, 500 async requests
# to a receiver that takes 2 s per callback, beside a 15 s flood of POST /async at full
# speed (consuma load, closed loop, 64 workers, its own fast receiver). Reports the
# receiver's deliveries (duplicates, missing) and the "lease lost" lines in the log.
#
# Usage: bench/leases.sh [DATABASE_URL] (default: a fresh SQLite file)
# BIN=path uses that binary; LOG_OUT=file keeps the server log; RUST_LOG as usual;
# SERVE_FLAGS adds flags to the instance (e.g. `--callback-min-in-flight-per-destination
# 16`: with the adaptive limit of SPEC §14 a 2 s receiver is held near the minimum of 4,
# so 500 callbacks take about 250 s, longer than the 75 s this waits).
# Needs python3 and curl. Builds the release binary first, unless BIN names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$CARGO_TARGET_DIR/release/consuma"
fi
dir=$(mktemp -d)
port=18190
receiver_port=18191
db="${1:-sqlite://$dir/consuma.db}"
server=""
flood=""
stop() {
  [ -n "$flood" ] && kill "$flood" 2>/dev/null && wait "$flood" 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
}
trap 'stop; rm -rf "$dir"' EXIT
RUST_LOG="${RUST_LOG:-warn}" "$bin" serve --bind "127.0.0.1:$port" --database-url "$db" \
  --allow-callback-cidr 127.0.0.0/8 --lease-secs 3 ${SERVE_FLAGS:-} 2>"$dir/server.log" &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  store: ${db%%:*}  --lease-secs 3"
"$bin" load --target "http://127.0.0.1:$port" --mode async --duration 15s --concurrency 64 \
  --callback-port 0 --callback-timeout 60s >"$dir/flood.txt" 2>&1 &
flood=$!
status=0
python3 bench/leases.py "http://127.0.0.1:$port" "$receiver_port" 500 75 || status=$?
wait "$flood" || true
flood=""
echo "flood: $(grep -E '^ *Requests' "$dir/flood.txt" | head -2 | tr -s ' ' | tr '\n' ' ')"
echo "lease lost lines in the log: $(grep -c 'lease lost' "$dir/server.log" || true)"
[ -n "${LOG_OUT:-}" ] && cp "$dir/server.log" "$LOG_OUT"
exit "$status"
