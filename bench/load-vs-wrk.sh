#!/usr/bin/env bash
# Compares `consuma load` with wrk on POST /sync: the generator must not be the
# bottleneck, i.e. it should reach at least 80 % of wrk's request rate.
#
# Usage: bench/load-vs-wrk.sh [rounds=3] [seconds=10] [connections=64]
#
# Needs a release build (cargo build --release; set CARGO_TARGET_DIR if it lives
# elsewhere), wrk, curl and python3. Starts its own server on 127.0.0.1:18080 with
# --work-delay-ms 0 on a fresh SQLite file in /tmp/loadbench, warms up, then runs wrk
# and consuma load alternately (wrk, load, wrk, load, …). For every run it prints the
# rate and the CPU seconds used by the tool, by the server and by everything else on
# the machine (from /proc/stat), since the cores are shared. Ends with the means and
# their ratio, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${1:-3}"
SECS="${2:-10}"
CONNECTIONS="${3:-64}"
ADDR="127.0.0.1:18080"
BIN="${CARGO_TARGET_DIR:-target}/release/consuma"
DATA="/tmp/loadbench"
TICKS=$(getconf CLK_TCK)

[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed" >&2; exit 1; }

rm -rf "$DATA" && mkdir -p "$DATA"
"$BIN" serve --bind "$ADDR" --work-delay-ms 0 --database-url "sqlite://$DATA/consuma.db" \
  >"$DATA/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -fs "http://$ADDR/healthz" >/dev/null && break; sleep 0.2; done

# CPU ticks spent by the whole machine (not idle) and by the server so far.
machine_ticks() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
server_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }

WRK_CMD=(wrk -t2 -c"$CONNECTIONS" -d"${SECS}s" -s bench/wrk-sync.lua "http://$ADDR/sync")
LOAD_CMD=("$BIN" load --target "http://$ADDR" --mode sync --concurrency "$CONNECTIONS"
  --duration "${SECS}s" --text "hello world" --count 3 --json)

# Runs one tool; prints "<rate> <tool cpu s> <server cpu s> <other cpu s>".
measure() {
  local tool=$1 out="$DATA/$1.out" m0 s0 m1 s1 rate
  m0=$(machine_ticks) s0=$(server_ticks)
  if [ "$tool" = wrk ]; then
    /usr/bin/time -f "%U %S" -o "$DATA/time" "${WRK_CMD[@]}" >"$out"
    rate=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  else
    /usr/bin/time -f "%U %S" -o "$DATA/time" "${LOAD_CMD[@]}" >"$out" 2>/dev/null
    rate=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["sync"]["failed"] == 0, r; print(r["requests_per_s"])' "$out")
  fi
  m1=$(machine_ticks) s1=$(server_ticks)
  awk -v rate="$rate" -v t="$TICKS" -v m="$((m1 - m0))" -v s="$((s1 - s0))" '
    { tool = $1 + $2; server = s / t; other = m / t - tool - server
      printf "%s %.1f %.1f %.1f\n", rate, tool, server, (other < 0 ? 0 : other) }' "$DATA/time"
}

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  cores: $(nproc)  load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk:  ${WRK_CMD[*]}"
echo "load: consuma load --target http://$ADDR --mode sync --concurrency $CONNECTIONS --duration ${SECS}s --text 'hello world' --count 3 --json"
wrk -t2 -c"$CONNECTIONS" -d2s -s bench/wrk-sync.lua "http://$ADDR/sync" >/dev/null # warm-up
printf "%-6s %-5s %10s %9s %11s %10s\n" round tool "req/s" "tool cpu" "server cpu" "other cpu"
results=""
for round in $(seq 1 "$ROUNDS"); do
  for tool in wrk load; do
    line=$(measure "$tool")
    results+="$tool $line"$'\n'
    read -r rate tool_cpu server_cpu other_cpu <<<"$line"
    printf "%-6s %-5s %10s %8ss %10ss %9ss\n" "$round" "$tool" "$rate" "$tool_cpu" "$server_cpu" "$other_cpu"
  done
done
printf "%s" "$results" | awk '
  { sum[$1] += $2; n[$1]++ }
  END { w = sum["wrk"] / n["wrk"]; l = sum["load"] / n["load"]
        printf "mean wrk %.0f req/s, mean consuma load %.0f req/s, ratio %.2f\n", w, l, l / w }'
