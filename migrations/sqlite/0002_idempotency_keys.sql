-- Idempotency keys (SPEC §2 "Idempotency"), scoped by method and path.
CREATE TABLE idempotency_keys (
    scope           TEXT    NOT NULL,   -- 'POST /sync' or 'POST /async'
    key             TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,   -- SHA-256 of the validated input
    request_id      TEXT    NOT NULL,
    response_status INTEGER,            -- NULL while the first request is in flight
    response_body   TEXT,
    held_until      INTEGER NOT NULL,   -- an unfinished claim older than this is abandoned
    created_at      INTEGER NOT NULL,   -- kept at least 24 hours from here
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
