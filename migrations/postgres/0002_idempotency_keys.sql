-- Idempotency keys (SPEC §2 "Idempotency"), scoped by method and path.
-- The primary key is what makes concurrent admissions with one key safe: the second
-- INSERT … ON CONFLICT DO NOTHING waits on the unique index until the first commits,
-- then sees its row.
CREATE TABLE idempotency_keys (
    scope           text        NOT NULL,   -- 'POST /sync' or 'POST /async'
    key             text        NOT NULL,
    fingerprint     text        NOT NULL,   -- SHA-256 of the validated input
    request_id      uuid        NOT NULL,
    response_status integer,                -- NULL while the first request is in flight
    response_body   text,
    held_until      timestamptz NOT NULL,   -- an unfinished claim older than this is abandoned
    created_at      timestamptz NOT NULL,   -- kept at least 24 hours from here
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
