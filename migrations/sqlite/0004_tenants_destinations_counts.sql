-- Part two of the contract (SPEC §8–§12): tenants on every record, delivery isolation by
-- destination, counts kept with the rows they count, keyset paging, redelivery.
-- Existing data is kept: every existing record belongs to the tenant 'default'; jobs
-- made before this version get their destination when the engine first starts.

-- §10: every request belongs to a tenant.
ALTER TABLE requests ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';

-- §12: mode, status and callback_status folded into one small code, so that every filter
-- of GET /requests is an equality (or a short list of them) on one indexed column:
-- 16 × mode (sync 0, async 1) + 4 × status (pending 0, processing 1, completed 2,
-- failed 3) + callback_status (none 0, pending 1, sent 2, failed 3). The same formula is
-- `store::model::state_code` in Rust.
ALTER TABLE requests ADD COLUMN state INTEGER GENERATED ALWAYS AS (
    (CASE mode WHEN 'async' THEN 16 ELSE 0 END)
  + (CASE status WHEN 'processing' THEN 4 WHEN 'completed' THEN 8 WHEN 'failed' THEN 12 ELSE 0 END)
  + (CASE callback_status WHEN 'pending' THEN 1 WHEN 'sent' THEN 2 WHEN 'failed' THEN 3 ELSE 0 END)
) VIRTUAL;

-- GET /requests: newest first, within a tenant or across all (admin), in the states the
-- filters match (all 16 without a filter). Each state is a range of one of these two
-- indexes, and a page merges the ranges in order; the entries cover (state, created_at,
-- id), so a page is found without reading rows, and only the page's own rows are read.
-- Two indexes instead of one per filter column and one per scope: each entry costs
-- about a hundred bytes per record.
DROP INDEX requests_by_status;
DROP INDEX requests_by_mode;
DROP INDEX requests_by_callback_status;
DROP INDEX requests_newest;
CREATE INDEX requests_by_state ON requests (state, created_at DESC, id DESC);
CREATE INDEX requests_by_tenant_state ON requests (tenant, state, created_at DESC, id DESC);

-- §8: a destination is a tenant with the origin (scheme://host:port) of its callback URLs.
-- Caps are kept in memory per instance; what every instance must honour is stored here.
CREATE TABLE destinations (
    id             INTEGER PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    origin         TEXT    NOT NULL,
    -- The earliest time one of its jobs in the delivery phase may be claimed; never
    -- before blocked_until. May be early (a claim then finds nothing and corrects it),
    -- never late. NULL: no delivery job.
    deliver_due_at INTEGER,
    -- Circuit open until then (NULL: closed). Once it has passed, one job is tried as a
    -- probe, and blocked_until moves on by the cool-down while the probe runs.
    blocked_until  INTEGER,
    cooldown_ms    INTEGER,             -- the current cool-down (doubles while probes fail)
    blocked_reason TEXT,                -- why it opened, shown as 'circuit open: …'
    UNIQUE (tenant, origin)
);

CREATE INDEX destinations_deliver_due ON destinations (deliver_due_at) WHERE deliver_due_at IS NOT NULL;
CREATE INDEX destinations_blocked ON destinations (blocked_until) WHERE blocked_until IS NOT NULL;

-- Jobs, rebuilt around destinations. `run_at` is when the job may be claimed: its due
-- time, or while it is leased the lease's end (a lease is held while run_at is ahead), so
-- one column answers "what is claimable now" and expired leases need no second look.
CREATE TABLE jobs_new (
    request_id     TEXT    PRIMARY KEY REFERENCES requests (id),
    -- No REFERENCES: deleting an unused destination would then scan this table; the
    -- single writer upserts the destination in the job's own transaction instead.
    destination_id INTEGER,              -- NULL only for jobs made before this version, until adopted
    phase          INTEGER NOT NULL DEFAULT 0,             -- 0: the work, 1: the delivery
    run_at         INTEGER NOT NULL,
    lease_token    TEXT,
    expires_at     INTEGER,              -- the delivery ends 'expired: …' after this (set when the work ends, or on redelivery)
    attempt_base   INTEGER NOT NULL DEFAULT 0,  -- attempts made before this delivery (a redelivery gets a fresh budget)
    manual         INTEGER NOT NULL DEFAULT 0   -- 1: the next attempt is the first of a redelivery
) WITHOUT ROWID;

INSERT INTO jobs_new (request_id, phase, run_at, lease_token)
SELECT j.request_id,
       CASE WHEN r.callback_body IS NULL THEN 0 ELSE 1 END,
       CASE WHEN j.lease_until IS NULL THEN j.run_at ELSE max(j.run_at, j.lease_until) END,
       j.lease_token
FROM jobs j JOIN requests r ON r.id = j.request_id;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

-- Claims walk destinations with work waiting (phase 0), then each one's earliest jobs.
CREATE INDEX jobs_queue ON jobs (phase, destination_id, run_at);
-- The earliest claimable job of the work phase (the engine sleeps until then).
CREATE INDEX jobs_work_due ON jobs (run_at) WHERE phase = 0;
CREATE INDEX jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;

-- §11: which attempts an operator asked for.
ALTER TABLE attempts ADD COLUMN triggered_by TEXT NOT NULL DEFAULT 'scheduled'
    CHECK (triggered_by IN ('scheduled', 'manual'));

-- §10: idempotency keys are scoped by tenant as well; §12: they go with their record.
CREATE TABLE idempotency_keys_new (
    tenant          TEXT    NOT NULL DEFAULT 'default',
    scope           TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    request_id      TEXT    NOT NULL,
    response_status INTEGER,
    response_body   TEXT,
    held_until      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, scope, key)
);
INSERT INTO idempotency_keys_new (scope, key, fingerprint, request_id, response_status,
                                  response_body, held_until, created_at)
SELECT scope, key, fingerprint, request_id, response_status, response_body, held_until, created_at
FROM idempotency_keys;
DROP TABLE idempotency_keys;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_request ON idempotency_keys (request_id);

-- §12: exact totals without counting rows at request time: the number of records per
-- tenant and state, changed in the same transaction as the records. `shard` spreads one
-- hot counter over several rows (PostgreSQL); SQLite, with one writer, uses shard 0.
CREATE TABLE request_counts (
    tenant TEXT    NOT NULL,
    state  INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, state, shard)
) WITHOUT ROWID;
INSERT INTO request_counts (tenant, state, shard, n)
SELECT tenant, state, 0, count(*) FROM requests GROUP BY tenant, state;

-- §11: callbacks that ended sent or failed, per tenant and minute (Unix minutes), kept
-- apart from the records so that retention does not change the chart.
CREATE TABLE callback_minutes (
    tenant    TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    shard     INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant, shard)
) WITHOUT ROWID;

-- §11: a bulk redelivery, worked through in bounded batches after its 202. `tenant` NULL
-- means every tenant (an admin's call). It goes through the failed states one after the
-- other, oldest record first; the cursor is the last record handled.
CREATE TABLE bulk_redeliveries (
    id               INTEGER PRIMARY KEY,
    tenant           TEXT,
    since            INTEGER NOT NULL,
    until            INTEGER NOT NULL,
    after_state      INTEGER NOT NULL DEFAULT 0,
    after_created_at INTEGER,
    after_id         TEXT,
    created_at       INTEGER NOT NULL
);
