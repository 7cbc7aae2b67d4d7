-- §13 "Everything else holds per work": exact `work=` totals on GET /requests without
-- counting rows (§12), kept like request_counts: records per tenant, work and state,
-- spread over shards, changed in the same transaction as the records. Records that name
-- no work (made before works existed) count as `text`.
--
-- The indexes that serve the filter are not made here: a migration runs in a
-- transaction, and CREATE INDEX there would block writes to the records for the whole
-- build. The store builds them after migrating, with CREATE INDEX CONCURRENTLY
-- (src/store/postgres/indexes.rs).
CREATE TABLE work_counts (
    tenant TEXT     NOT NULL,
    work   TEXT     NOT NULL,
    state  SMALLINT NOT NULL,
    shard  SMALLINT NOT NULL,
    n      BIGINT   NOT NULL,
    PRIMARY KEY (tenant, work, state, shard)
);
INSERT INTO work_counts (tenant, work, state, shard, n)
SELECT tenant, coalesce(work, 'text'), state, 0, count(*) FROM requests
GROUP BY tenant, coalesce(work, 'text'), state;
