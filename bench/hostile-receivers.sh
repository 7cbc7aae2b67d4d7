#!/usr/bin/env bash
# Hostile receivers (SPEC §9 "Bounded delivery", "Faults"): does memory stay flat while
# the engine calls receivers that answer with a 1 GiB body, a body that never ends,
# headers that never end, a TLS handshake that never starts, and a name whose DNS server
# never answers?
#
# One release instance on SQLite, 256 workers, --callback-timeout-ms 300, one attempt per
# callback, callback lookups sent to the silent DNS server (--callback-dns-server). The
# driver (bench/hostile-receivers.py) posts ROUNDS × PER_ROUND async requests spread evenly
# over the five receivers, waits for each round to end, and prints every attempt's outcome
# by receiver. The server's VmRSS (/proc/<pid>/status) is sampled every 200 ms from start
# to 5 s after the last round. Everything listens on 127.0.0.1.
#
# Usage: bench/hostile-receivers.sh [ROUNDS, default 5] [PER_ROUND, default 1000]
# Needs python3 and curl. Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
per_round="${2:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
dir=$(mktemp -d)
cargo build --release --quiet
# A copy, in case another checkout sharing CARGO_TARGET_DIR rebuilds the binary meanwhile.
cp "$CARGO_TARGET_DIR/release/consuma" "$dir/consuma"
bin="$dir/consuma"
port=18190
base=18191 # receivers on base..base+3 (TCP), silent DNS on base+4 (UDP)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

python3 bench/hostile-receivers.py receivers "$base" >"$dir/receivers.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q ready "$dir/receivers.out" && break; sleep 0.1; done

flags=(--workers 256 --work-delay-ms 0 --callback-timeout-ms 300 --callback-max-attempts 1
  --allow-callback-cidr 127.0.0.0/8 --callback-dns-server "127.0.0.1:$((base + 4))")
RUST_LOG=warn "$bin" serve --bind "127.0.0.1:$port" --database-url "sqlite://$dir/consuma.db" \
  "${flags[@]}" 2>"$dir/server.log" &
server=$!
pids+=($server)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done

(while kill -0 "$server" 2>/dev/null; do
  echo "$(date +%s.%N) $(awk '/^VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null)"
  sleep 0.2
done) >"$dir/rss.log" &
pids+=($!)

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git rev-parse --short HEAD 2>/dev/null || echo ?)  cores: $(nproc)  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server flags: ${flags[*]}"
echo "rounds: $rounds × $per_round attempts"
echo
start=$(date +%s.%N)
python3 bench/hostile-receivers.py drive "127.0.0.1:$port" "$base" "$rounds" "$per_round" "$server"
end=$(date +%s.%N)
sleep 5
echo
echo "rss 5 s after the last round: $(awk '/^VmRSS/ {print $2}' "/proc/$server/status") KiB"
awk -v s="$start" -v e="$end" '
  $1 < s { before = $2 }
  $1 >= s && $1 <= e { n++; if ($2 > max) max = $2; if (min == "" || $2 < min) min = $2 }
  END { printf "rss samples during the rounds: %d, min %d KiB, max %d KiB (before: %d KiB)\n", n, min, max, before }
' "$dir/rss.log"
echo "server threads: $(awk '/^Threads/ {print $2}' "/proc/$server/status"), open fds: $(ls "/proc/$server/fd" | wc -l)"
echo "server log lines at warn or above: $(wc -l <"$dir/server.log")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
