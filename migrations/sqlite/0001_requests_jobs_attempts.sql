-- Requests, their jobs and their delivery attempts (SPEC §3).
-- Times are INTEGER milliseconds since the Unix epoch (UTC): cheap to compare for due
-- times and leases, converted to RFC 3339 only at the API edge.

-- Every accepted request, sync or async: the record that GET /requests shows.
CREATE TABLE requests (
    id                  TEXT    PRIMARY KEY,       -- UUID v7: time-ordered
    mode                TEXT    NOT NULL CHECK (mode IN ('sync', 'async')),
    status              TEXT    NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
    input_data          TEXT    NOT NULL,          -- JSON object, defaults applied
    output_data         TEXT,                      -- JSON WorkResult, NULL until done or on failure
    error               TEXT,
    created_at          INTEGER NOT NULL,
    started_at          INTEGER,
    completed_at        INTEGER,
    trace_id            TEXT    NOT NULL,
    callback_url        TEXT,                      -- async only
    callback_status     TEXT    CHECK (callback_status IN ('pending', 'sent', 'failed')),
    callback_attempts   INTEGER NOT NULL DEFAULT 0,
    callback_last_error TEXT,
    callback_sent_at    INTEGER,
    callback_body       TEXT                       -- fixed when the work ends: same bytes on every attempt
);

-- GET /requests pages newest first, optionally filtered by one of these columns.
CREATE INDEX requests_newest ON requests (created_at DESC, id DESC);
CREATE INDEX requests_by_status ON requests (status, created_at DESC, id DESC);
CREATE INDEX requests_by_mode ON requests (mode, created_at DESC, id DESC);
CREATE INDEX requests_by_callback_status ON requests (callback_status, created_at DESC, id DESC)
    WHERE callback_status IS NOT NULL;

-- One row per async request that still has something to do (work, or a delivery).
-- Deleted when the request becomes terminal, so this table stays small: it is WITHOUT
-- ROWID and has a single index, because every write to it is in the hot path (each
-- tree a commit touches is one more page appended to the WAL).
CREATE TABLE jobs (
    request_id  TEXT    PRIMARY KEY REFERENCES requests (id),
    run_at      INTEGER NOT NULL,   -- due time: now for new jobs, the backoff for retries
    lease_token TEXT,               -- changes on every claim; NULL when unleased
    lease_until INTEGER             -- a lease past this is expired and may be claimed again
) WITHOUT ROWID;

CREATE INDEX jobs_due ON jobs (run_at);

-- Every delivery attempt of a callback, kept for GET /requests/{id}.
CREATE TABLE attempts (
    request_id  TEXT    NOT NULL REFERENCES requests (id),
    attempt     INTEGER NOT NULL,   -- 1-based
    started_at  INTEGER NOT NULL,
    duration_ms REAL    NOT NULL,
    status_code INTEGER,
    error       TEXT,
    PRIMARY KEY (request_id, attempt)
) WITHOUT ROWID;
