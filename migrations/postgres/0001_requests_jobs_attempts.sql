-- Requests, their jobs and their delivery attempts (SPEC §3), PostgreSQL dialect of
-- migrations/sqlite/0001 (same tables, same meaning).
-- Times are timestamptz. Those the API shows (created_at, completed_at, callback_sent_at,
-- attempts.started_at) are written by the service, truncated to milliseconds, so they read
-- back exactly as on SQLite. Scheduling times (run_at, lease_until) are compared with the
-- database's now(), so that every instance sharing the database agrees on what is due.
-- JSON stays text: PostgreSQL text cannot hold NUL, which JSON escapes (\u0000).

-- Every accepted request, sync or async: the record that GET /requests shows.
CREATE TABLE requests (
    id                  uuid        PRIMARY KEY,   -- UUID v7: time-ordered
    mode                text        NOT NULL CHECK (mode IN ('sync', 'async')),
    status              text        NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    input_data          text        NOT NULL,      -- JSON object, defaults applied
    output_data         text,                      -- JSON WorkResult, NULL until done or on failure
    error               text,
    created_at          timestamptz NOT NULL,
    started_at          timestamptz,
    completed_at        timestamptz,
    trace_id            text        NOT NULL,
    callback_url        text,                      -- async only
    callback_status     text        CHECK (callback_status IN ('pending', 'sent', 'failed')),
    callback_attempts   integer     NOT NULL DEFAULT 0,
    callback_last_error text,
    callback_sent_at    timestamptz,
    callback_body       text                       -- fixed when the work ends: same bytes on every attempt
);

-- GET /requests pages newest first, optionally filtered by one of these columns.
CREATE INDEX requests_newest ON requests (created_at DESC, id DESC);
CREATE INDEX requests_by_status ON requests (status, created_at DESC, id DESC);
CREATE INDEX requests_by_mode ON requests (mode, created_at DESC, id DESC);
CREATE INDEX requests_by_callback_status ON requests (callback_status, created_at DESC, id DESC)
    WHERE callback_status IS NOT NULL;

-- One row per async request that still has something to do (work, or a delivery).
-- Deleted when the request becomes terminal, so this table stays small. Workers of every
-- instance claim from it with FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs (
    request_id  uuid        PRIMARY KEY REFERENCES requests (id),
    run_at      timestamptz NOT NULL,   -- due time: now() for new jobs, the backoff for retries
    lease_token uuid,                   -- changes on every claim; NULL when unleased
    lease_until timestamptz             -- a lease past this is expired and may be claimed again
);

CREATE INDEX jobs_due ON jobs (run_at);
CREATE INDEX jobs_lease ON jobs (lease_until) WHERE lease_until IS NOT NULL;

-- Every delivery attempt of a callback, kept for GET /requests/{id}.
CREATE TABLE attempts (
    request_id  uuid             NOT NULL REFERENCES requests (id),
    attempt     integer          NOT NULL,   -- 1-based
    started_at  timestamptz      NOT NULL,
    duration_ms double precision NOT NULL,
    status_code integer,
    error       text,
    PRIMARY KEY (request_id, attempt)
);
