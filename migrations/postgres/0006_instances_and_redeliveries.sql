-- Issue 19 (SPEC §16, §17 "Review findings"): no record stays 'processing', and
-- redelivery is bounded. Neither change rewrites the records table: a nullable column
-- without a default, and a constant default, are catalogue changes only.

-- Every running instance, with the last time it said it was alive (every few seconds).
-- Housekeeping on any instance fails the /sync records of an instance whose heartbeat
-- is older than 30 s: their work died with it.
CREATE TABLE instances (
    id           uuid        PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The instance running a /sync request's work (NULL for async requests and for records
-- of earlier versions).
ALTER TABLE requests ADD COLUMN instance_id uuid;

-- How many times the request's callback was redelivered (--max-redeliveries).
ALTER TABLE requests ADD COLUMN redeliveries integer NOT NULL DEFAULT 0;
