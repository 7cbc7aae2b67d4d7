#!/usr/bin/env bash
# Compares `consuma load` with wrk on POST /sync (the generator must not be the
# bottleneck: it should reach at least 80 % of wrk's request rate).
#
# Usage: bench/load-vs-wrk.sh [rounds=2] [seconds=10] [connections=64]
# Needs a release build (cargo build --release) and wrk. Starts its own server on
# 127.0.0.1:18080 with --work-delay-ms 0 on a fresh SQLite file, runs wrk and
# consuma load alternately (wrk, load, wrk, load, …), prints each rate and the ratio
# of the means, then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-2}"
SECONDS_PER_RUN="${2:-10}"
CONNECTIONS="${3:-64}"
ADDR="127.0.0.1:18080"
BIN="${CARGO_TARGET_DIR:-target}/release/consuma"
DATA="/tmp/loadbench"

[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }

rm -rf "$DATA" && mkdir -p "$DATA"
"$BIN" serve --bind "$ADDR" --work-delay-ms 0 --database-url "sqlite://$DATA/consuma.db" \
  >"$DATA/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://$ADDR/healthz" >/dev/null && break; sleep 0.2; done

# A short warm-up so neither tool pays for the first connections and page cache.
wrk -t2 -c"$CONNECTIONS" -d2s -s bench/wrk-sync.lua "http://$ADDR/sync" >/dev/null

run_wrk() {
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" -s bench/wrk-sync.lua "http://$ADDR/sync" |
    awk '/^Requests\/sec:/ { print $2 }'
}

run_load() {
  "$BIN" load --target "http://$ADDR" --mode sync --concurrency "$CONNECTIONS" \
    --duration "${SECONDS_PER_RUN}s" --text "hello world" --count 3 --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["requests_per_s"]); f=r["sync"]["failed"]; sys.exit(f != 0)'
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(uname -n)  cores: $(nproc)  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk:  wrk -t2 -c$CONNECTIONS -d${SECONDS_PER_RUN}s -s bench/wrk-sync.lua http://$ADDR/sync"
echo "load: consuma load --target http://$ADDR --mode sync --concurrency $CONNECTIONS --duration ${SECONDS_PER_RUN}s --text 'hello world' --count 3"
wrk_rates=() load_rates=()
for round in $(seq 1 "$ROUNDS"); do
  w=$(run_wrk); wrk_rates+=("$w"); echo "round $round  wrk   $w req/s"
  l=$(run_load); load_rates+=("$l"); echo "round $round  load  $l req/s"
done
python3 - "${wrk_rates[*]}" "${load_rates[*]}" <<'PY'
import sys
wrk = [float(x) for x in sys.argv[1].split()]
load = [float(x) for x in sys.argv[2].split()]
mw, ml = sum(wrk) / len(wrk), sum(load) / len(load)
print(f"mean wrk {mw:.0f} req/s, mean load {ml:.0f} req/s, ratio {ml / mw:.2f}")
PY
