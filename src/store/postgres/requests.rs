//! Requests on their way in and their state changes: admission (its key is settled by
//! [`keys`]), the end of the work, and the one statement shape every state change goes
//! through so that the kept counts follow it.

use chrono::Utc;
use sqlx::postgres::PgConnection;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::{keys, ms};
use crate::store::counts::Deltas;
use crate::store::*;

/// Stores the request, its job (async) and its key in the caller's transaction, or says
/// why the key forbids it (see [`Store::admit`]).
pub(super) async fn admit_with_key(
    c: &mut PgConnection,
    d: &mut Deltas,
    req: NewRequest,
    destination: Option<i64>,
    claim: IdempotencyClaim,
    instance: Uuid,
) -> StoreResult<Admission> {
    let verdict = keys::take(c, &claim, req.id).await?;
    if verdict != Admission::Admitted {
        return Ok(verdict);
    }
    insert_with_job(&mut *c, &req, destination, None, instance).await?;
    d.added(&req.tenant, req.work.as_deref(), state_of_new(&req));
    Ok(Admission::Admitted)
}

pub(super) fn state_of_new(req: &NewRequest) -> i64 {
    let callback = (req.mode == Mode::Async).then_some(CallbackStatus::Pending);
    state_code(req.mode, req.status, callback)
}

/// Stores a request and, for async, its job (due at once, by the database clock) in ONE
/// statement: atomic by itself, so an admission without a key needs no BEGIN/COMMIT
/// round trips. With `count_shard`, the statement also adds the record to the kept
/// counts (a keyed admission counts through its transaction instead). A /sync record
/// (started at once) names `instance`, whose heartbeat vouches for its work.
/// The destination's
/// `FOR KEY SHARE` (the job's foreign key) is taken before the count row is locked, in
/// the order of every other writer (destinations, then count rows). A claim never waits
/// for it: claims exclude delivery writers by an advisory guard, not a row lock.
pub(super) async fn insert_with_job(
    e: impl PgExecutor<'_>,
    req: &NewRequest,
    destination: Option<i64>,
    count_shard: Option<i16>,
    instance: Uuid,
) -> StoreResult<()> {
    let callback_status = (req.mode == Mode::Async).then_some(CallbackStatus::Pending.as_str());
    let started = req.status == RequestStatus::Processing;
    sqlx::query(
        "WITH request AS (
             INSERT INTO requests (id, tenant, mode, status, input_data, created_at, started_at,
                                   trace_id, callback_url, callback_status, work, upstream_key,
                                   instance_id)
             VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END, $8, $9, $10, $13, $14,
                     CASE WHEN $7 THEN $15::uuid END)
             RETURNING id, mode, tenant, state, work
         ), job AS (
             INSERT INTO jobs (request_id, destination_id, phase, run_at)
             SELECT id, $11, 0, now() FROM request WHERE mode = 'async'
         ), destination AS (
             SELECT id FROM destinations WHERE id = $11 FOR KEY SHARE
         ), counted AS (
             INSERT INTO request_counts (tenant, state, shard, n)
             SELECT tenant, state, $12, 1 FROM request
             WHERE $12 IS NOT NULL AND ($11::bigint IS NULL OR EXISTS (SELECT 1 FROM destination))
             ON CONFLICT (tenant, state, shard) DO UPDATE SET n = request_counts.n + 1
             RETURNING 1
         ), work_counted AS (
             -- Reads `counted`, so its row is locked first: every writer locks
             -- request_counts rows before work_counts rows (no deadlock).
             INSERT INTO work_counts (tenant, work, state, shard, n)
             SELECT tenant, coalesce(work, 'text'), state, $12, 1 FROM request
             WHERE EXISTS (SELECT 1 FROM counted)
             ON CONFLICT (tenant, work, state, shard) DO UPDATE SET n = work_counts.n + 1
         )
         SELECT 1",
    )
    .bind(req.id)
    .bind(&req.tenant)
    .bind(req.mode.as_str())
    .bind(req.status.as_str())
    .bind(&req.input_data)
    .bind(ms(req.created_at))
    .bind(started)
    .bind(&req.trace_id)
    .bind(&req.callback_url)
    .bind(callback_status)
    .bind(destination)
    .bind(count_shard)
    .bind(&req.work)
    .bind(&req.upstream_key)
    .bind(instance)
    .execute(e)
    .await?;
    Ok(())
}

/// The id of the destination `(tenant, origin)`, created on first use. A concurrent first
/// use by another transaction may hide the row from this statement's snapshot for a
/// moment; the next statement sees it.
pub(super) async fn destination_id(
    c: &mut PgConnection,
    tenant: &str,
    origin: &str,
) -> StoreResult<i64> {
    for _ in 0..5 {
        let id: Option<i64> = sqlx::query_scalar(
            "WITH ins AS (
                 INSERT INTO destinations (tenant, origin) VALUES ($1, $2)
                 ON CONFLICT (tenant, origin) DO NOTHING RETURNING id)
             SELECT id FROM ins
             UNION ALL SELECT id FROM destinations WHERE tenant = $1 AND origin = $2
             LIMIT 1",
        )
        .bind(tenant)
        .bind(origin)
        .fetch_optional(&mut *c)
        .await?;
        if let Some(id) = id {
            return Ok(id);
        }
    }
    Err(StoreError::Unavailable(
        "the destination row could not be read back".into(),
    ))
}

/// Moves a request to a new state with `set` (an assignment list over `requests`, its
/// parameters numbered from $2), and notes the change in `d`. `false` when there is no
/// such request.
pub(super) async fn transition(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    set: &str,
    bind: impl FnOnce(
        sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> StoreResult<bool> {
    let sql = format!(
        "UPDATE requests r SET {set}
         FROM (SELECT id, state FROM requests WHERE id = $1 FOR UPDATE) old
         WHERE r.id = old.id
         RETURNING r.tenant, r.work, old.state AS before, r.state AS after"
    );
    let query = bind(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id));
    let Some(row) = query.fetch_optional(&mut *c).await? else {
        return Ok(false);
    };
    let tenant: String = row.try_get("tenant")?;
    let before: i16 = row.try_get("before")?;
    let after: i16 = row.try_get("after")?;
    let work: Option<String> = row.try_get("work")?;
    d.moved(&tenant, work.as_deref(), before.into(), after.into());
    if let (Some(CallbackStatus::Pending), Some(ended)) = (
        callback_of_state(before.into()),
        callback_of_state(after.into()),
    ) && ended != CallbackStatus::Pending
    {
        d.ended(&tenant, Utc::now(), ended == CallbackStatus::Sent);
    }
    Ok(true)
}

/// Stores the end of the work on a request (sync or async).
pub(super) async fn store_work(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    done: &FinishedWork,
) -> StoreResult<()> {
    transition(
        c,
        d,
        id,
        "status = $2, output_data = $3, error = $4, completed_at = $5, work_attempts = $6",
        |q| {
            q.bind(done.status.as_str())
                .bind(done.output_data.clone())
                .bind(done.error.clone())
                .bind(ms(done.completed_at))
                .bind(done.work_attempts.clone())
        },
    )
    .await?;
    Ok(())
}

pub(super) async fn finish_sync(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    done: FinishedWork,
    key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
) -> StoreResult<()> {
    store_work(c, d, id, &done).await?;
    match key {
        Some((claim, Some(resp))) => {
            sqlx::query(
                "UPDATE idempotency_keys SET response_status = $1, response_body = $2
                 WHERE tenant = $3 AND scope = $4 AND key = $5",
            )
            .bind(i32::from(resp.status))
            .bind(resp.body)
            .bind(&claim.tenant)
            .bind(claim.scope)
            .bind(&claim.key)
            .execute(&mut *c)
            .await?;
        }
        // Only successes are kept: a repeat may try again.
        Some((claim, None)) => keys::release(c, &claim).await?,
        None => {}
    }
    Ok(())
}

/// An existing key's verdict for a refused admission: a replay is answered even when
/// the backlog is full (SPEC Part two, check order).
pub(super) async fn replay_of(
    c: &mut PgConnection,
    claim: &IdempotencyClaim,
) -> StoreResult<Option<Admission>> {
    Ok(keys::existing(c, claim)
        .await?
        .and_then(|stored| stored.verdict(claim)))
}

/// See `JobStore::mark_processing`: the job row first, then its request (the lock order
/// of `jobs.rs`); the request changes only if it is still `pending`.
pub(super) async fn mark_processing(
    c: &mut PgConnection,
    d: &mut Deltas,
    lease: Lease,
    started_at: chrono::DateTime<Utc>,
) -> StoreResult<bool> {
    let held = sqlx::query(
        "SELECT 1 FROM jobs WHERE request_id = $1 AND lease_token = $2 AND run_at > now()
         FOR UPDATE",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .fetch_optional(&mut *c)
    .await?;
    if held.is_none() {
        return Ok(false);
    }
    let set = "status = CASE WHEN r.status = 'pending' THEN 'processing' ELSE r.status END,
               started_at = coalesce(r.started_at, $2)";
    transition(c, d, lease.request_id, set, |q| q.bind(started_at)).await?;
    Ok(true)
}
