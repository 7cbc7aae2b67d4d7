-- The most recent failed attempt's error per destination (SPEC §14 "last_error"), and
-- when it was written (Unix ms): written at most once a second per destination, so a
-- failing receiver does not turn its destination row into a hot row.
ALTER TABLE destinations ADD COLUMN last_error TEXT;
ALTER TABLE destinations ADD COLUMN last_error_at INTEGER;
