#!/usr/bin/env bash
# SQLite delivery (issue: delivery under control): open-loop async requests to one
# healthy receiver, one instance with default flags and logs (work delay 0) on a fresh
# SQLite database; callbacks counted and timed by `consuma load`.
#
# Prints, per run: the service's CPU seconds (read from /proc before it stops) and the
# load tool's, the load's summary, and the callback p99 of each second, which shows
# whether a run fell behind at its start or later.
#
# BIN=path runs that binary instead of building one; BIN2=path alternates it with a
# second one, run after run (to compare two builds in the same minutes).
# Usage: bench/sqlite-delivery.sh [rate, default 10000] [secs, default 30] [runs, default 1]
# Needs curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-10000}"; secs="${2:-30}"; runs="${3:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
[ -n "${BIN:-}" ] || cargo build --release --quiet
bins=("${BIN:-$CARGO_TARGET_DIR/release/consuma}")
[ -z "${BIN2:-}" ] || bins+=("$BIN2")
dir=$(mktemp -d)
port=18620
server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap 'stop; rm -rf "$dir"' EXIT
cpu_of() { awk '{printf "%.1f", ($14 + $15) / 100}' "/proc/$1/stat"; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  store: SQLite WAL synchronous=NORMAL"
echo "rate: $rate/s  run: ${secs} s  work delay 0, default flags"
for run in $(seq 1 "$runs"); do
  for bin in "${bins[@]}"; do
    rm -f "$dir"/c.db*
    "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/c.db" \
      --allow-callback-cidr 127.0.0.0/8 --work-delay-ms 0 2>"$dir/server.log" &
    server=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
    started=$(date -u +%H:%M:%S)
    "$bin" load --target "http://127.0.0.1:$port" --mode async --rate "$rate" --duration "${secs}s" \
      --callback-timeout 120s --callback-port 0 --quiet --json >"$dir/load.json" &
    loader=$!
    load_cpu=0
    while kill -0 "$loader" 2>/dev/null; do
      load_cpu=$(cpu_of "$loader" 2>/dev/null || echo "$load_cpu"); sleep 0.2
    done
    wait "$loader" || true
    echo "== run $run, $bin, $started: CPU: the service $(cpu_of "$server") s, the load tool ≥ $load_cpu s"
    stop
    python3 - "$dir/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); a = r["async"]
ack, cb = a["ack_latency_ms"] or {}, a["callback_latency_ms"] or {}
failed = f" (failed: {a['failures']})" if a["failures"] else ""
print(f"  sent {a['total']}, acknowledged {a['successful']}{failed}, "
      f"called back {a['callbacks_received']}, duplicates {a['duplicates']}")
print(f"  ack p50 {ack.get('p50', 0):.1f} ms, p99 {ack.get('p99', 0):.1f} ms; "
      f"callback p50 {cb.get('p50', 0):.1f} ms, p99 {cb.get('p99', 0):.1f} ms")
print("  callback p99 by second (ms):", " ".join(f"{t['callback_p99'] or 0:.0f}" for t in r["timeseries"]))
PY
  done
done
