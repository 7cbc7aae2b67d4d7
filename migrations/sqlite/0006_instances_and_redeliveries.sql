-- Issue 19 (SPEC §16, §17 "Review findings"), SQLite dialect of migrations/postgres/0006.
-- One instance owns a SQLite file, so there is no instances table: the /sync records
-- it left 'processing' are failed when it starts again.

-- How many times the request's callback was redelivered (--max-redeliveries).
ALTER TABLE requests ADD COLUMN redeliveries INTEGER NOT NULL DEFAULT 0;
