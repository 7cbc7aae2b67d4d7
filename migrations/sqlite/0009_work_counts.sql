-- §13 "Everything else holds per work": exact `work=` totals on GET /requests without
-- counting rows (§12), kept like request_counts: records per tenant, work and state,
-- changed in the same transaction as the records. Records that name no work (made before
-- works existed) count as `text`.
CREATE TABLE work_counts (
    tenant TEXT    NOT NULL,
    work   TEXT    NOT NULL,
    state  INTEGER NOT NULL,
    shard  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (tenant, work, state, shard)
) WITHOUT ROWID;
INSERT INTO work_counts (tenant, work, state, shard, n)
SELECT tenant, coalesce(work, 'text'), state, 0, count(*) FROM requests
GROUP BY tenant, coalesce(work, 'text'), state;

-- The `work=` filter: one index range per (work, state), as the state indexes do for the
-- other filters (a tenant's own list, and an admin's across tenants). New indexes, no
-- change to the records.
CREATE INDEX requests_by_work_state ON requests (work, state, created_at DESC, id DESC);
CREATE INDEX requests_by_tenant_work_state
    ON requests (tenant, work, state, created_at DESC, id DESC);
