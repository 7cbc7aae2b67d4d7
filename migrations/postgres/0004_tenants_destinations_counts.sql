-- Part two of the contract (SPEC §8–§12), PostgreSQL dialect of
-- migrations/sqlite/0004 (same tables, same meaning; see there for the comments).
-- Existing data is kept: every existing record belongs to the tenant 'default'; jobs
-- made before this version get their destination when the engine first starts.

ALTER TABLE requests ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- 16 × mode + 4 × status + callback_status; `store::model::state_code` in Rust.
ALTER TABLE requests ADD COLUMN state smallint GENERATED ALWAYS AS (
    (CASE mode WHEN 'async' THEN 16 ELSE 0 END)
  + (CASE status WHEN 'processing' THEN 4 WHEN 'completed' THEN 8 WHEN 'failed' THEN 12 ELSE 0 END)
  + (CASE callback_status WHEN 'pending' THEN 1 WHEN 'sent' THEN 2 WHEN 'failed' THEN 3 ELSE 0 END)
) STORED;

DROP INDEX requests_by_status;
DROP INDEX requests_by_mode;
DROP INDEX requests_by_callback_status;
DROP INDEX requests_newest;
CREATE INDEX requests_by_state ON requests (state, created_at DESC, id DESC);
CREATE INDEX requests_by_tenant_state ON requests (tenant, state, created_at DESC, id DESC);

CREATE TABLE destinations (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text        NOT NULL,
    origin         text        NOT NULL,
    deliver_due_at timestamptz,
    blocked_until  timestamptz,
    cooldown_ms    bigint,
    blocked_reason text,
    UNIQUE (tenant, origin)
);

CREATE INDEX destinations_deliver_due ON destinations (deliver_due_at) WHERE deliver_due_at IS NOT NULL;
CREATE INDEX destinations_blocked ON destinations (blocked_until) WHERE blocked_until IS NOT NULL;

-- `run_at` becomes "claimable from": the lease's end while leased.
ALTER TABLE jobs ADD COLUMN destination_id bigint REFERENCES destinations (id);
ALTER TABLE jobs ADD COLUMN phase smallint NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN expires_at timestamptz;
ALTER TABLE jobs ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN manual boolean NOT NULL DEFAULT false;
UPDATE jobs SET run_at = greatest(run_at, lease_until) WHERE lease_until IS NOT NULL;
UPDATE jobs j SET phase = 1 FROM requests r WHERE r.id = j.request_id AND r.callback_body IS NOT NULL;
DROP INDEX jobs_due;
DROP INDEX jobs_lease;
ALTER TABLE jobs DROP COLUMN lease_until;
CREATE INDEX jobs_queue ON jobs (phase, destination_id, run_at);
CREATE INDEX jobs_work_due ON jobs (run_at) WHERE phase = 0;
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_destination ON jobs (destination_id);

ALTER TABLE attempts ADD COLUMN triggered_by text NOT NULL DEFAULT 'scheduled'
    CHECK (triggered_by IN ('scheduled', 'manual'));

ALTER TABLE idempotency_keys ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (tenant, scope, key);
CREATE INDEX idempotency_keys_request ON idempotency_keys (request_id);

CREATE TABLE request_counts (
    tenant text     NOT NULL,
    state  smallint NOT NULL,
    shard  smallint NOT NULL,
    n      bigint   NOT NULL,
    PRIMARY KEY (tenant, state, shard)
);
INSERT INTO request_counts (tenant, state, shard, n)
SELECT tenant, state, 0, count(*) FROM requests GROUP BY tenant, state;

CREATE TABLE callback_minutes (
    tenant    text     NOT NULL,
    minute    bigint   NOT NULL,
    shard     smallint NOT NULL,
    delivered bigint   NOT NULL DEFAULT 0,
    failed    bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant, shard)
);

CREATE TABLE bulk_redeliveries (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant           text,
    since            timestamptz NOT NULL,
    until            timestamptz NOT NULL,
    after_state      smallint    NOT NULL DEFAULT 0,
    after_created_at timestamptz,
    after_id         uuid,
    created_at       timestamptz NOT NULL
);
