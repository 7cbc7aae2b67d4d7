#!/usr/bin/env bash
# Scale-out benchmark (issue: PostgreSQL backend): accept rate and end-to-end throughput
# with one and with two instances on one PostgreSQL database, beside one instance on
# SQLite, in the same run. On a 2-core machine shared by PostgreSQL, the instances and
# the load generators, this measures contention more than scale-out.
#
#   accept rate: wrk on POST /async against accept-only instances (--workers 0);
#                with two instances, one wrk per instance at once, rates summed.
#   end to end:  consuma load --mode async, 8,000 requests in all, closed loop (256 in
#                flight in all), 200 ms work delay: callbacks received per second, from
#                the first request to the last callback.
#
# Usage: bench/postgres.sh [seconds per run, default 20]
# Needs wrk, curl, psql, python3, and PostgreSQL at 127.0.0.1:5432 (user postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
pg="postgres://postgres@127.0.0.1:5432"
export PGOPTIONS="-c client_min_messages=warning"
servers=()
stop() { for s in "${servers[@]}"; do kill "$s" 2>/dev/null; wait "$s" 2>/dev/null || true; done; servers=(); }
trap 'stop; rm -rf "$dir"' EXIT

fresh_pg() {
  psql "$pg/test" -qc "DROP DATABASE IF EXISTS consuma_bench WITH (FORCE)" -c "CREATE DATABASE consuma_bench" >/dev/null
}
# start <db url> <port> [flags…]: one instance, waits until ready.
start() {
  local url=$1 port=$2; shift 2
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "$url" \
    --allow-callback-cidr 127.0.0.0/8 "$@" 2>>"$dir/server-$port.log" &
  servers+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
}
accept() { # ports…: one wrk per port at once; prints the summed rate
  local conns=$((64 / $#)) p
  for p in "$@"; do
    wrk -t1 -c"$conns" -d"${secs}s" -s bench/wrk-async.lua "http://127.0.0.1:$p/async" >"$dir/wrk-$p" &
  done
  wait $(jobs -p | grep -v -F -f <(printf '%s\n' "${servers[@]}")) 2>/dev/null || true
  for p in "$@"; do awk '/Requests\/sec/ {print $2}' "$dir/wrk-$p"; done | paste -sd+ | bc
}
e2e() { # ports…: one closed-loop load per port at once; prints callbacks/s summed
  local conc=$((256 / $#)) n=$((8000 / $#)) p pids=()
  for p in "$@"; do
    "$bin" load --target "http://127.0.0.1:$p" --mode async --concurrency "$conc" --requests "$n" \
      --callback-timeout 300s --callback-port 0 --json >"$dir/load-$p.json" 2>/dev/null &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 - "$@" <<PY
import json, sys
rate = acks = exp = 0.0
worst = 0.0
for p in sys.argv[1:]:
    r = json.load(open("$dir/load-%s.json" % p))["async"]
    rate += r["callbacks_received"] / json.load(open("$dir/load-%s.json" % p))["total_time_s"]
    acks += r["successful"]; exp += r["callbacks_expected"]
    worst = max(worst, r["callback_latency_ms"]["p99"] if r["callback_latency_ms"] else 0)
print("%.0f callbacks/s (%d acknowledged, %d called back, callback p99 %.0f ms)" % (rate, acks, sum(json.load(open("$dir/load-%s.json" % p))["async"]["callbacks_received"] for p in sys.argv[1:]), worst))
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  run: ${secs} s  PostgreSQL: $(psql "$pg/test" -Atc 'show server_version')"
printf '%-34s %-18s %s\n' setup "accept (req/s)" "end to end"
rm -f "$dir"/s.db*
start "sqlite://$dir/s.db" 18401 --workers 0; a=$(accept 18401); stop
rm -f "$dir"/s.db*
start "sqlite://$dir/s.db" 18401; e=$(e2e 18401); stop
printf '%-34s %-18s %s\n' "SQLite, 1 instance" "$a" "$e"
fresh_pg; start "$pg/consuma_bench" 18411 --workers 0; a=$(accept 18411); stop
fresh_pg; start "$pg/consuma_bench" 18411; e=$(e2e 18411); stop
printf '%-34s %-18s %s\n' "PostgreSQL, 1 instance" "$a" "$e"
fresh_pg; start "$pg/consuma_bench" 18421 --workers 0; start "$pg/consuma_bench" 18422 --workers 0
a=$(accept 18421 18422); stop
fresh_pg; start "$pg/consuma_bench" 18421; start "$pg/consuma_bench" 18422; e=$(e2e 18421 18422); stop
printf '%-34s %-18s %s\n' "PostgreSQL, 2 instances" "$a" "$e"
psql "$pg/test" -qc "DROP DATABASE IF EXISTS consuma_bench WITH (FORCE)" >/dev/null
