#!/usr/bin/env bash
# PostgreSQL delivery (issue: delivery under control): open-loop async requests to one
# healthy receiver, every instance with default settings (work delay 0), on one fresh
# PostgreSQL database; callbacks counted and timed by `consuma load`.
#
#   1. one instance, RATE requests/s for SECS s;
#   2. INSTANCES instances on the same database, RATE requests/s to each.
#
# Prints each load's summary and the delivered rate (callbacks received / time from the
# first request to the last callback), summed over the instances.
#
# BIN=path runs that binary instead of building one (to compare two builds).
# Usage: bench/postgres-delivery.sh [rate per instance, default 2000] [secs, default 30]
#                                   [instances, default 3; 1 runs only the first]
# Needs curl, psql, python3, and PostgreSQL at 127.0.0.1:5432 (user postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-2000}"; secs="${2:-30}"; many="${3:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
[ -n "${BIN:-}" ] || cargo build --release --quiet
bin="${BIN:-$CARGO_TARGET_DIR/release/consuma}"
dir=$(mktemp -d)
pg="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
servers=()
stop() { for s in "${servers[@]}"; do kill "$s" 2>/dev/null; wait "$s" 2>/dev/null || true; done; servers=(); }
# CPU seconds: of the running instances; of every local postgres process (0 if not local).
cpu_of() { awk '{t += $14 + $15} END {printf "%.1f", t / 100}' "${@/%//stat}" /dev/null 2>/dev/null; }
instances_cpu() { local p=(); for s in "${servers[@]}"; do p+=("/proc/$s"); done; cpu_of "${p[@]}"; }
postgres_cpu() { local p=(); for s in $(pgrep -x postgres); do p+=("/proc/$s"); done; cpu_of "${p[@]}"; }
trap 'stop; rm -rf "$dir"' EXIT

fresh_pg() {
  psql "$pg/test" -qc "DROP DATABASE IF EXISTS consuma_delivery WITH (FORCE)" \
    -c "CREATE DATABASE consuma_delivery" >/dev/null
}
start() { # port
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$1" --database-url "$pg/consuma_delivery" \
    --allow-callback-cidr 127.0.0.0/8 --work-delay-ms 0 2>>"$dir/server-$1.log" &
  servers+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/readyz" >/dev/null && break; sleep 0.1; done
}
load() { # ports…: one open-loop load per port at once
  local p pids=() pg0 pg1
  pg0=$(postgres_cpu)
  for p in "$@"; do
    "$bin" load --target "http://127.0.0.1:$p" --mode async --rate "$rate" --duration "${secs}s" \
      --callback-timeout 120s --callback-port 0 --quiet --json >"$dir/load-$p.json" &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  pg1=$(postgres_cpu)
  echo "  CPU: instances $(instances_cpu) s, PostgreSQL $(python3 -c "print(f'{$pg1 - $pg0:.1f}')") s (during the load)"
  python3 - "$dir" "$@" <<'PY'
import json, sys
d, ports = sys.argv[1], sys.argv[2:]
got = sent = acked = dup = 0; rate = 0.0; worst = {}
for p in ports:
    r = json.load(open(f"{d}/load-{p}.json"))
    a = r["async"]
    got += a["callbacks_received"]; acked += a["successful"]; dup += a["duplicates"]; sent += a["total"]
    rate += a["callbacks_received"] / r["total_time_s"]
    for k in ("ack_latency_ms", "callback_latency_ms"):
        v = a.get(k) or {}
        for q in ("p50", "p99"):
            worst[(k, q)] = max(worst.get((k, q), 0), v.get(q, 0))
print(f"  sent {sent}, acknowledged {acked}, called back {got}, duplicates {dup}; delivered {rate:,.0f}/s")
print(f"  ack p50 {worst[('ack_latency_ms','p50')]:.1f} ms, p99 {worst[('ack_latency_ms','p99')]:.1f} ms;"
      f" callback p50 {worst[('callback_latency_ms','p50')]:.1f} ms, p99 {worst[('callback_latency_ms','p99')]:.1f} ms"
      f" (worst instance)")
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  PostgreSQL: $(psql "$pg/test" -Atc 'show server_version') (synchronous_commit=$(psql "$pg/test" -Atc 'show synchronous_commit'))"
echo "commit: $(git rev-parse --short HEAD)  rate: $rate/s per instance  run: ${secs} s  work delay 0, default flags"
echo "== 1 instance"
fresh_pg; start 18601; load 18601; stop
[ "$many" -gt 1 ] || exit 0
ports=(); for i in $(seq 1 "$many"); do ports+=($((18610 + i))); done
echo "== $many instances, one database"
fresh_pg; for p in "${ports[@]}"; do start "$p"; done; load "${ports[@]}"; stop
