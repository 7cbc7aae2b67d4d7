#!/usr/bin/env bash
# Slow clients (SPEC §9): POST /sync latency at 100 requests/s, open loop (consuma load
# --rate, latency from the intended send time), first on its own, then while N
# half-open connections each hold half a request head (bench/slow-clients.py opens them
# again as the server closes them, so N are held for the whole run). Then: how long the
# server took to close the first N (expect about --http-header-timeout-ms, default 10 s).
#
# Usage: bench/slow-clients.sh [half-open connections=5000] [seconds=20]
#
# Needs a release build (cargo build --release; set CARGO_TARGET_DIR if it lives
# elsewhere), curl and python3. The server runs with its defaults except
# --work-delay-ms 0 (so the latency is the service's own, not the simulated work) on a
# fresh SQLite file. Raises this shell's open-file limit to the hard limit; the server
# raises its own. Prints the load average and the compilers running before each run:
# the cores may be shared.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-5000}"
SECS="${2:-20}"
ADDR="127.0.0.1:18090"
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release/consuma}"
DATA=$(mktemp -d)

[ -x "$BIN" ] || { echo "no release binary at $BIN: run cargo build --release" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((N + 200)) ] || { echo "open-file limit $(ulimit -n) too low for $N" >&2; exit 1; }

server="" holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$DATA"
}
trap cleanup EXIT

RUST_LOG=warn "$BIN" serve --bind "$ADDR" --database-url "sqlite://$DATA/consuma.db" \
  --work-delay-ms 0 2>"$DATA/server.log" &
server=$!
for _ in $(seq 1 100); do curl -fs "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done

neighbours() {
  echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg); compilers running: $(pgrep -c -x rustc || true)"
}
latency() {
  "$BIN" load --target "http://$ADDR" --mode sync --rate 100 --duration "${SECS}s" --json >"$DATA/load.json"
  python3 - "$DATA/load.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["sync"]
l = s["latency_ms"]
print(f"  POST /sync: {s['successful']}/{s['total']} ok, failures {s['failures']}, "
      f"p50 {l['p50']:.2f} ms, p99 {l['p99']:.2f} ms, max {l['max']:.2f} ms")
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  binary: $BIN"
echo "server: consuma serve --work-delay-ms 0 (other settings default: header timeout 10 s,"
echo "        max connections 10,000)  open-file limit of this shell: $(ulimit -n)"
echo
echo "== without slow clients: 100 requests/s for ${SECS} s"
neighbours
latency
echo
echo "== with $N half-open connections held: 100 requests/s for ${SECS} s"
python3 bench/slow-clients.py "${ADDR%:*}" "${ADDR#*:}" "$N" "$DATA/stop" >"$DATA/holder.out" &
holder=$!
opening=$(date +%s.%N)
until grep -q ready "$DATA/holder.out" 2>/dev/null; do
  kill -0 "$holder" 2>/dev/null || { echo "the holder died" >&2; exit 1; }
  sleep 0.1
done
echo "  $N half-open connections opened in $(python3 -c "import time; print(round(time.time() - $opening, 1))") s"
neighbours
latency
touch "$DATA/stop"
echo
echo "== how long the server keeps them (from half a head to its close)"
wait "$holder"
holder=""
python3 - "$DATA/holder.out" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().splitlines()[-1])
o = r["first_wave_open_s"]
print(f"  first {r['connections']}: open {o['min']}-{o['max']} s (p50 {o['p50']} s); "
      f"all closed {r['first_wave_all_closed_after_s']} s after the last was opened")
PY
echo "  server log lines at warn or above: $(grep -c . "$DATA/server.log" || true)"
