-- Works (SPEC §13, §17): the work a request names. NULL means the built-in `text` (every
-- record made before works existed). A nullable column without a default: no table
-- rewrite on either backend.
ALTER TABLE requests ADD COLUMN work TEXT;
-- Each upstream attempt of a work (SPEC §13 "Async"): a JSON array of {attempt,
-- started_at, duration_ms, status_code, error}, written with the work's end; NULL for
-- `text` and for records made before works.
ALTER TABLE requests ADD COLUMN work_attempts TEXT;
-- The idempotency-key a work's upstream receives when the caller sent an Idempotency-Key
-- (a hex SHA-256 of tenant, work and that key, SPEC §17); NULL: the request id.
ALTER TABLE requests ADD COLUMN upstream_key TEXT;
