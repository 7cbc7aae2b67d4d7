#!/usr/bin/env bash
# The SQLite engine's drain rate (issue: delivery under control), without a load tool
# sending beside it: an accept-only instance (--workers 0) is filled by wrk for FILL
# seconds with POST /async whose callbacks go to nginx (answering 200 at once); then a
# normal instance (work delay 0, default flags plus any given) starts on that database,
# and the time until no callback is pending gives jobs per second, with the server's CPU
# (perf stat) and each thread's CPU.
#
# Usage: bench/drain.sh [fill seconds, default 2] [extra serve flags…]
# Needs wrk, nginx (Debian: nginx-light), curl, python3, perf. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
fill="${1:-2}"; shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="${BIN:-$CARGO_TARGET_DIR/release/consuma}"
port=18304; up=18305
dir=$(mktemp -d)
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; pids=(); }
trap 'stop; rm -rf "$dir"' EXIT
cat >"$dir/nginx.conf" <<NG
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $dir;
  server { listen 127.0.0.1:$up; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NG
nginx -c "$dir/nginx.conf" & pids+=($!)
ready() { for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && return; sleep 0.05; done; }
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/c.db" --workers 0 \
  --max-pending-jobs 0 --allow-callback-cidr 127.0.0.0/8 2>"$dir/fill.log" &
filler=$!
ready
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  store: SQLite WAL synchronous=NORMAL  fill: ${fill} s"
CALLBACK_URL="http://127.0.0.1:$up/hook" wrk -t2 -c64 -d"${fill}s" -s bench/wrk-async.lua \
  "http://127.0.0.1:$port/async" | grep -E "Requests/sec|Non-2xx" | sed 's/^/  fill: /'
kill "$filler"; wait "$filler" || true
"$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/c.db" \
  --allow-callback-cidr 127.0.0.0/8 --work-delay-ms 0 "$@" 2>"$dir/drain.log" &
server=$!; pids+=($server)
ready
pending() {
  curl -s "http://127.0.0.1:$port/requests?callback_status=pending&limit=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'
}
start=$(date +%s.%N)
perf stat -e task-clock -p "$server" -o "$dir/stat" 2>/dev/null & stat=$!
total=$(pending)
while [ "$(pending)" != "0" ]; do sleep 0.2; done
end=$(date +%s.%N)
kill -INT "$stat"; wait "$stat" || true
awk -v n="$total" -v s="$start" -v e="$end" '/task-clock/ {gsub(",","",$1);
  printf "  drained %d in %.2f s = %.0f jobs/s; server CPU %.1f s (%.0f us per job)\n", n, e-s, n/(e-s), $1/1000, $1*1000/n}' "$dir/stat"
for t in /proc/"$server"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done |
  awk '{a[$1]+=$2} END {for (k in a) printf "  thread %s: %.2f s CPU\n", k, a[k]/100}'
