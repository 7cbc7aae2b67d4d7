#!/usr/bin/env bash
# PostgreSQL restarted under load (SPEC §9 "Faults"): one consuma instance on PostgreSQL,
# `consuma load` sending POST /async at a steady rate with its own receiver, and the
# cluster restarted (pg_ctlcluster restart) in the middle. Expected: 503s while it is
# down, recovery without restarting consuma, and every acknowledged request called back
# (callbacks received = requests acknowledged, 0 missing).
#
# It restarts the machine's PostgreSQL cluster: do not run it while anything else uses it.
# Usage: bench/fault-postgres-restart.sh [rate, default 200] [seconds, default 30]
# Needs pg_ctlcluster, psql, curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-200}"; secs="${2:-30}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
version=$(ls /etc/postgresql | sort -V | tail -n 1)
db="consuma_fault_$$"
admin="postgres://postgres@127.0.0.1:5432/test"
port=18186
dir=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  pg_isready -h 127.0.0.1 -q || pg_ctlcluster --skip-systemctl-redirect "$version" main start
  psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$dir"
}
trap cleanup EXIT
psql -q "$admin" -c "CREATE DATABASE $db"
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "postgres://postgres@127.0.0.1:5432/$db" \
  --allow-callback-cidr 127.0.0.0/8 --work-delay-ms 50 2>"$dir/server.log" &
server=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  rate: $rate/s for ${secs}s  PostgreSQL $version restarted after $((secs / 3)) s"
"$bin" load --target "http://127.0.0.1:$port" --mode async --rate "$rate" --duration "${secs}s" \
  --callback-port 0 --callback-timeout 120s --timeout 60s >"$dir/load.out" &
load=$!
sleep $((secs / 3))
t0=$(date +%s.%N)
pg_ctlcluster --skip-systemctl-redirect "$version" main restart
echo "  restart took $(echo "$(date +%s.%N) - $t0" | bc) s"
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
echo "  /readyz 200 again $(echo "$(date +%s.%N) - $t0" | bc) s after the restart began"
wait "$load" || true
grep -E "Requests |Failed|http_|Ack latency|Callback lat|Callbacks" "$dir/load.out" | sed 's/^/  /'
echo "  server warnings/errors: $(grep -c -E '"level":"(WARN|ERROR)"|WARN|ERROR' "$dir/server.log" || true)"
