#!/usr/bin/env bash
# Works (SPEC §13, issue 20): an HTTP work whose upstream answers at once, beside the
# built-in `text` (work delay 0) on the same instance, in the same run; then the isolation
# measurement of §13: 2,000 async requests to a work whose upstream accepts connections
# and never answers (timeout 30s), then 200 `text` and 200 healthy-work requests, whose
# callbacks must arrive with p99 ≤ work time + 1 s.
#
# The 0 ms upstream is nginx answering `{"ok":true}` to every request (one worker
# process); the hung upstream is a python listener that accepts and never reads. The
# service, nginx, the listener and the load generator (`consuma load`, closed loop, 64
# workers, 10 s per run) share the machine. SQLite WAL, synchronous=NORMAL.
#
# Usage: bench/works.sh [seconds per run, default 10]
# Needs nginx (Debian: nginx-light), python3, curl. Builds the release binary first,
# unless BIN names a binary.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
bin="${BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="$CARGO_TARGET_DIR/release/consuma"
fi
command -v nginx >/dev/null || { echo "needs nginx (apt-get install nginx-light)"; exit 1; }
dir=$(mktemp -d)
port=18290
up_port=18291
hung_port=18292
pids=()
stop() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT

cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir;
  server {
    listen 127.0.0.1:$up_port;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
EOF
nginx -c "$dir/nginx.conf" &
pids+=($!)
python3 - "$hung_port" <<'EOF' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)  # accepted, never read, never answered
EOF
pids+=($!)

cat >"$dir/works.toml" <<EOF
[works.echo]
kind = "http"
url = "http://127.0.0.1:$up_port/"
max_in_flight = 256

[works.hung]
kind = "http"
url = "http://127.0.0.1:$hung_port/"
timeout = "30s"
max_in_flight = 64
max_attempts = 1
EOF
echo '{"document": "invoice-7", "pages": 2}' >"$dir/body.json"

RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
  --works "$dir/works.toml" --work-delay-ms 0 --allow-callback-cidr 127.0.0.0/8 \
  --max-pending-jobs 0 2>"$dir/server.log" &
pids+=($!)
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
curl -fs "http://127.0.0.1:$up_port/" -d '{}' >/dev/null

load() { "$bin" load --target "http://127.0.0.1:$port" --callback-port 0 --quiet --json "$@"; }
cat >"$dir/figures.py" <<'PYEOF'
import json, sys
r = json.load(sys.stdin)
kind = sys.argv[1]
sec = r["sync"] if kind == "sync" else r["async"]
lat = (sec.get("latency_ms") if kind == "sync" else sec.get("callback_latency_ms")) or {}
c = sec
line = f"{r['requests_per_s']:8.0f} req/s  {kind} p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  {c['successful']}/{c['total']} ok"
if kind != "sync":
    line += f"  callbacks {sec['callbacks_received']}/{sec['callbacks_expected']}, {sec['duplicates']} duplicates"
print(line)
PYEOF
figures() { python3 "$dir/figures.py" "$1"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  run: ${secs} s each, closed loop, 64 workers"
for mode in sync async; do
  kind=$([ "$mode" = sync ] && echo sync || echo callback)
  printf '%-6s %-5s ' "$mode" text
  load --mode "$mode" --concurrency 64 --duration "${secs}s" --text hi --count 1 | figures "$kind"
  printf '%-6s %-5s ' "$mode" echo
  load --mode "$mode" --concurrency 64 --duration "${secs}s" --work echo --body-file "$dir/body.json" | figures "$kind"
done

echo
echo "== isolation: 2,000 async requests to the hung work, then 200 text and 200 echo"
load --mode async --work hung --body-file "$dir/body.json" --rate 1000 --requests 2000 \
  --callback-timeout 1s >"$dir/hung.json" || true
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["async"]; print("  hung:", c["successful"], "of", c["total"], "acknowledged")' "$dir/hung.json"
printf '  text: '
load --mode async --rate 100 --requests 200 --text hi --count 1 | figures callback
printf '  echo: '
load --mode async --rate 100 --requests 200 --work echo --body-file "$dir/body.json" | figures callback
open=$(ss -tn state established "( dport = :$hung_port )" | tail -n +2 | wc -l)
echo "  connections to the hung upstream still open after the healthy runs: $open"
