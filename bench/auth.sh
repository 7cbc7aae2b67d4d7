#!/usr/bin/env bash
# Cost of API keys (SPEC §10): the accept rate of POST /async with a key must stay within
# 10 % of the rate without one. Two accept-only instances (--workers 0) on fresh SQLite
# files, one without any key (open) and one with a key; `consuma load --mode async
# --api-key` against each in turn, the order alternating round by round, callbacks not
# awaited (--callback-timeout 0: only the 202s are counted). Prints each run's rate, ack
# latency and the server's CPU time per request (from /proc/<pid>/stat: less disturbed by
# other work on the machine than the rate), then the medians and their ratios. The backlog
# limit is off (--max-pending-jobs 0): accept-only instances never work their backlog off. The load
# generator and both servers share the machine.
#
# Usage: bench/auth.sh [rounds=6] [requests per run=100000]
# Needs python3 and curl. Builds the release binary first (set CARGO_TARGET_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-6}"
requests="${2:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
bin="$CARGO_TARGET_DIR/release/consuma"
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT

key=$("$bin" keys create --tenant default --database-url "sqlite://$dir/keyed.db" 2>/dev/null)
serve() { # port name
  RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$1" --database-url "sqlite://$dir/$2.db" \
    --workers 0 --max-pending-jobs 0 --allow-callback-cidr 127.0.0.0/8 2>>"$dir/$2.log" &
  pids+=($!)
}
serve 18301 open
serve 18302 keyed
for port in 18301 18302; do
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.1; done
done
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:18302/requests)" = 401 ]

ticks() { # pid: user + system CPU time in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)

run() { # port requests [--api-key KEY]
  "$bin" load --target "http://127.0.0.1:$1" --mode async --requests "$2" --concurrency 50 \
    --callback-port 0 --callback-timeout 0 --json "${@:3}" 2>/dev/null \
  | python3 -c 'import json, sys
d = json.load(sys.stdin); a = d["async"]
other = {k: v for k, v in a["failures"].items() if k != "callback_missing"}
print(round(d["requests_per_s"]), a["successful"], a["ack_latency_ms"]["p50"], a["ack_latency_ms"]["p99"], other or "")'
}
run 18301 2000 >/dev/null; run 18302 2000 --api-key "$key" >/dev/null  # warm-up
results="$dir/results"
for i in $(seq 1 "$rounds"); do
  order=(open keyed); [ $((i % 2)) = 0 ] && order=(keyed open)
  for which in "${order[@]}"; do
    case $which in
      open) pid=${pids[0]}; before=$(ticks "$pid"); line=$(run 18301 "$requests") ;;
      keyed) pid=${pids[1]}; before=$(ticks "$pid"); line=$(run 18302 "$requests" --api-key "$key") ;;
    esac
    cpu_us=$(( ($(ticks "$pid") - before) * 1000000 / hz / requests ))
    echo "round $i $which: req/s acked ack_p50_ms ack_p99_ms = $line; server CPU ${cpu_us} µs/request"
    echo "$which ${line%% *} $cpu_us" >>"$results"
  done
done
python3 - "$results" <<'PY'
import statistics, sys
rates = {"open": [], "keyed": []}
cpu = {"open": [], "keyed": []}
for line in open(sys.argv[1]):
    which, rate, us = line.split()
    rates[which].append(float(rate))
    cpu[which].append(float(us))
o, k = statistics.median(rates["open"]), statistics.median(rates["keyed"])
print(f"median rate without a key {o:.0f} req/s, with a key {k:.0f} req/s, ratio {k / o:.3f}")
o, k = statistics.median(cpu["open"]), statistics.median(cpu["keyed"])
print(f"median server CPU without a key {o:.0f} µs/request, with a key {k:.0f} µs/request, ratio {k / o:.3f}")
PY
