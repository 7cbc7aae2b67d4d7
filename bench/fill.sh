#!/usr/bin/env bash
# Fills a consuma database with N terminal records quickly (SPEC §12 benchmarks), with
# SQL straight into the tables the service migrated, and the kept counts rebuilt to
# match. The records look like the service's own: 4 tenants, a third sync, the rest
# async with one delivery attempt each; 2 % of the work failed, 5 % of the callbacks
# failed; created_at spread evenly over the DAYS days before now (default 100, so about
# a tenth is older than the default retention of 90 days).
#
# Usage: bench/fill.sh DATABASE_URL N [DAYS] [OLDEST_DAYS_AGO]
#   DATABASE_URL  sqlite:///abs/path.db or postgres://…  (migrated first by the binary)
#   N             records to add
#   DAYS          span of created_at (default 100)
#   OLDEST_DAYS_AGO  where the span starts, in days before now (default DAYS)
# Needs sqlite3 or psql. Builds the release binary first (to migrate).
set -euo pipefail
cd "$(dirname "$0")/.."
url="$1"; n="$2"; days="${3:-100}"; oldest="${4:-$days}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/consuma-target}"
cargo build --release --quiet
"$CARGO_TARGET_DIR/release/consuma" secret --database-url "$url" >/dev/null  # migrates

now_ms=$(($(date +%s) * 1000))
start_ms=$((now_ms - oldest * 86400000))
step_ms=$((days * 86400000 / n)); [ "$step_ms" -gt 0 ] || step_ms=1

case "$url" in
sqlite://*)
  path="${url#sqlite://}"
  sqlite3 "$path" <<SQL
PRAGMA journal_mode=WAL;
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < $n - 1),
rows AS (
  SELECT i, $start_ms + i * $step_ms AS at,
         'tenant-' || (i % 4) AS tenant,
         CASE WHEN i % 3 = 0 THEN 'sync' ELSE 'async' END AS mode,
         CASE WHEN i % 50 = 7 THEN 'failed' ELSE 'completed' END AS status,
         CASE WHEN i % 3 = 0 THEN NULL WHEN i % 20 = 1 THEN 'failed' ELSE 'sent' END AS cb
  FROM seq)
INSERT INTO requests (id, tenant, mode, status, input_data, output_data, error, created_at,
                      started_at, completed_at, trace_id, callback_url, callback_status,
                      callback_attempts, callback_last_error, callback_sent_at, callback_body)
SELECT printf('%08x-%04x-7%03x-%04x-%012x', at >> 16, at & 65535, i & 4095,
              32768 | ((i >> 12) & 16383), i),
       tenant, mode, status,
       CASE mode WHEN 'sync' THEN '{"text":"bench record ' || i || '","count":1}'
            ELSE '{"text":"bench record ' || i || '","count":1,"callback_url":"https://hooks.example.com/' || tenant || '/cb"}' END,
       CASE status WHEN 'completed' THEN '{"input_hash":"' || printf('%016x', i) || '","word_count":3,"character_count":' || length('bench record ' || i) || ',"processed_text":"BENCH RECORD ' || i || '","iterations":1,"processing_time_ms":200.12}' END,
       CASE status WHEN 'failed' THEN 'the work failed' END,
       at, at, at + 201,
       printf('%032x', i),
       CASE mode WHEN 'async' THEN 'https://hooks.example.com/' || tenant || '/cb' END,
       cb,
       CASE mode WHEN 'async' THEN 1 ELSE 0 END,
       CASE cb WHEN 'failed' THEN 'HTTP 500' END,
       CASE cb WHEN 'sent' THEN at + 220 END,
       CASE mode WHEN 'async' THEN '{"request_id":"x","status":"' || status || '","result":null,"error":null,"timestamp":"2026-01-01T00:00:00.000Z"}' END
FROM rows;
INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error)
SELECT id, 1, completed_at + 5, 12.5, CASE callback_status WHEN 'sent' THEN 200 ELSE 500 END,
       callback_last_error
FROM requests WHERE mode = 'async' AND callback_status IN ('sent', 'failed')
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.request_id = requests.id);
DELETE FROM request_counts;
INSERT INTO request_counts (tenant, state, shard, n)
SELECT tenant, state, 0, count(*) FROM requests GROUP BY tenant, state;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
  ;;
postgres://*|postgresql://*)
  psql -q -v ON_ERROR_STOP=1 "$url" <<SQL
SET synchronous_commit = off;
BEGIN;
WITH rows AS (
  SELECT i, $start_ms::bigint + i * $step_ms::bigint AS at,
         'tenant-' || (i % 4) AS tenant,
         CASE WHEN i % 3 = 0 THEN 'sync' ELSE 'async' END AS mode,
         CASE WHEN i % 50 = 7 THEN 'failed' ELSE 'completed' END AS status,
         CASE WHEN i % 3 = 0 THEN NULL WHEN i % 20 = 1 THEN 'failed' ELSE 'sent' END AS cb
  FROM generate_series(0, $n - 1) AS i)
INSERT INTO requests (id, tenant, mode, status, input_data, output_data, error, created_at,
                      started_at, completed_at, trace_id, callback_url, callback_status,
                      callback_attempts, callback_last_error, callback_sent_at, callback_body)
SELECT (lpad(to_hex(at >> 16), 8, '0') || '-' || lpad(to_hex(at & 65535), 4, '0') || '-7'
        || lpad(to_hex(i & 4095), 3, '0') || '-' || to_hex(32768 | ((i >> 12) & 16383)) || '-'
        || lpad(to_hex(i), 12, '0'))::uuid,
       tenant, mode, status,
       CASE mode WHEN 'sync' THEN '{"text":"bench record ' || i || '","count":1}'
            ELSE '{"text":"bench record ' || i || '","count":1,"callback_url":"https://hooks.example.com/' || tenant || '/cb"}' END,
       CASE status WHEN 'completed' THEN '{"input_hash":"' || lpad(to_hex(i), 16, '0') || '","word_count":3,"character_count":' || length('bench record ' || i) || ',"processed_text":"BENCH RECORD ' || i || '","iterations":1,"processing_time_ms":200.12}' END,
       CASE status WHEN 'failed' THEN 'the work failed' END,
       to_timestamp(at / 1000.0), to_timestamp(at / 1000.0), to_timestamp((at + 201) / 1000.0),
       lpad(to_hex(i), 32, '0'),
       CASE mode WHEN 'async' THEN 'https://hooks.example.com/' || tenant || '/cb' END,
       cb,
       CASE mode WHEN 'async' THEN 1 ELSE 0 END,
       CASE cb WHEN 'failed' THEN 'HTTP 500' END,
       CASE cb WHEN 'sent' THEN to_timestamp((at + 220) / 1000.0) END,
       CASE mode WHEN 'async' THEN '{"request_id":"x","status":"' || status || '","result":null,"error":null,"timestamp":"2026-01-01T00:00:00.000Z"}' END
FROM rows;
INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error)
SELECT r.id, 1, r.completed_at, 12.5, CASE r.callback_status WHEN 'sent' THEN 200 ELSE 500 END,
       r.callback_last_error
FROM requests r WHERE r.mode = 'async' AND r.callback_status IN ('sent', 'failed')
  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.request_id = r.id);
DELETE FROM request_counts;
INSERT INTO request_counts (tenant, state, shard, n)
SELECT tenant, state, 0, count(*) FROM requests GROUP BY tenant, state;
COMMIT;
VACUUM ANALYZE requests;
VACUUM ANALYZE attempts;
SQL
  ;;
*) echo "unknown database URL: $url" >&2; exit 2 ;;
esac
echo "filled $url with $n records over $days days"
