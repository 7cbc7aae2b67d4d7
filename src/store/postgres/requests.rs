//! Requests and what comes with them: admission (its key is settled by [`keys`]), the end
//! of a /sync request, reading and listing records, the housekeeping sweep and settings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::{duration_ms, keys, ms};
use crate::store::*;

/// Stores the request, its job (async) and its key in the caller's transaction, or says
/// why the key forbids it (see [`Store::admit`]).
pub(super) async fn admit_with_key(
    c: &mut PgConnection,
    req: NewRequest,
    claim: IdempotencyClaim,
) -> StoreResult<Admission> {
    let verdict = keys::take(c, &claim, req.id).await?;
    if verdict != Admission::Admitted {
        return Ok(verdict);
    }
    insert_with_job(&mut *c, &req).await?;
    Ok(Admission::Admitted)
}

/// Stores a request and, for async, its job (due at once, by the database clock) in ONE
/// statement: atomic by itself, so an admission without a key needs no BEGIN/COMMIT
/// round trips — the common admission is a single round trip.
pub(super) async fn insert_with_job(e: impl PgExecutor<'_>, req: &NewRequest) -> StoreResult<()> {
    let callback_status = (req.mode == Mode::Async).then_some(CallbackStatus::Pending.as_str());
    let started = req.status == RequestStatus::Processing;
    sqlx::query(
        "WITH request AS (
             INSERT INTO requests (id, mode, status, input_data, created_at, started_at, trace_id,
                                   callback_url, callback_status)
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $6 THEN now() END, $7, $8, $9)
             RETURNING id, mode)
         INSERT INTO jobs (request_id, run_at)
         SELECT id, now() FROM request WHERE mode = 'async'",
    )
    .bind(req.id)
    .bind(req.mode.as_str())
    .bind(req.status.as_str())
    .bind(&req.input_data)
    .bind(ms(req.created_at))
    .bind(started)
    .bind(&req.trace_id)
    .bind(&req.callback_url)
    .bind(callback_status)
    .execute(e)
    .await?;
    Ok(())
}

/// Stores the end of the work on a request (sync or async).
pub(super) async fn store_work(
    c: &mut PgConnection,
    id: Uuid,
    done: &FinishedWork,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE requests SET status = $1, output_data = $2, error = $3, completed_at = $4,
                callback_body = COALESCE($5, callback_body)
         WHERE id = $6",
    )
    .bind(done.status.as_str())
    .bind(&done.output_data)
    .bind(&done.error)
    .bind(ms(done.completed_at))
    .bind(&done.callback_body)
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn finish_sync(
    c: &mut PgConnection,
    id: Uuid,
    done: FinishedWork,
    key: Option<(&'static str, String, Option<StoredResponse>)>,
) -> StoreResult<()> {
    store_work(c, id, &done).await?;
    match key {
        Some((scope, key, Some(resp))) => {
            sqlx::query(
                "UPDATE idempotency_keys SET response_status = $1, response_body = $2
                 WHERE scope = $3 AND key = $4",
            )
            .bind(i32::from(resp.status))
            .bind(resp.body)
            .bind(scope)
            .bind(key)
            .execute(&mut *c)
            .await?;
        }
        // Only successes are kept: a repeat may try again.
        Some((scope, key, None)) => {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2")
                .bind(scope)
                .bind(key)
                .execute(&mut *c)
                .await?;
        }
        None => {}
    }
    Ok(())
}

/// The record and its attempts, read in one transaction so they agree.
pub(super) async fn get(c: &mut PgConnection, id: Uuid) -> StoreResult<Option<RequestRecord>> {
    let Some(row) = sqlx::query("SELECT * FROM requests WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let mut record = record_from_row(&row)?;
    let attempts = sqlx::query("SELECT * FROM attempts WHERE request_id = $1 ORDER BY attempt")
        .bind(id)
        .fetch_all(&mut *c)
        .await?;
    record.attempts = attempts
        .iter()
        .map(attempt_from_row)
        .collect::<StoreResult<_>>()?;
    Ok(Some(record))
}

/// One page, newest first (`created_at`, then `id`, descending), and the matching total.
pub(super) async fn list(c: &mut PgConnection, f: ListFilter) -> StoreResult<Page> {
    // Each filter is `($n IS NULL OR col = $n)`, so one statement serves every combination.
    const WHERE: &str =
        "WHERE ($1::text IS NULL OR mode = $1) AND ($2::text IS NULL OR status = $2)
                           AND ($3::text IS NULL OR callback_status = $3)";
    let mode = f.mode.map(Mode::as_str);
    let status = f.status.map(RequestStatus::as_str);
    let cb = f.callback_status.map(CallbackStatus::as_str);
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM requests {WHERE}"
    )))
    .bind(mode)
    .bind(status)
    .bind(cb)
    .fetch_one(&mut *c)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id, mode, status, created_at, completed_at, callback_status FROM requests {WHERE}
         ORDER BY created_at DESC, id DESC LIMIT $4 OFFSET $5"
    )))
    .bind(mode)
    .bind(status)
    .bind(cb)
    .bind(i64::from(f.limit))
    .bind(f.offset.min(i64::MAX as u64) as i64)
    .fetch_all(&mut *c)
    .await?;
    let requests = rows
        .iter()
        .map(summary_from_row)
        .collect::<StoreResult<_>>()?;
    Ok(Page {
        requests,
        total: total as u64,
    })
}

/// Forgets old keys and closes /sync requests whose process died mid-work.
pub(super) async fn sweep(
    c: &mut PgConnection,
    keep_keys: Duration,
    abandon_sync: Duration,
) -> StoreResult<SweepStats> {
    let keys = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::bigint * interval '1 millisecond'",
    )
    .bind(duration_ms(keep_keys))
    .execute(&mut *c)
    .await?;
    let stale = sqlx::query(
        "UPDATE requests SET status = 'failed', completed_at = $1,
                error = 'interrupted: the service stopped before the work finished'
         WHERE mode = 'sync' AND status = 'processing'
           AND started_at < now() - $2::bigint * interval '1 millisecond'",
    )
    .bind(ms(Utc::now()))
    .bind(duration_ms(abandon_sync))
    .execute(&mut *c)
    .await?;
    Ok(SweepStats {
        expired_keys: keys.rows_affected(),
        abandoned_sync: stale.rows_affected(),
    })
}

/// The first value stored under `name` wins; a racing INSERT waits for it on the primary
/// key, does nothing, and the SELECT that follows sees the winner.
pub(super) async fn get_or_insert_setting(
    c: &mut PgConnection,
    name: String,
    candidate: String,
) -> StoreResult<String> {
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(&name)
        .bind(&candidate)
        .execute(&mut *c)
        .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(&name)
            .fetch_one(&mut *c)
            .await?,
    )
}

/// Whether the schema is in place and the database accepts writes (not a standby, not
/// read-only).
pub(super) async fn writable(e: impl PgExecutor<'_>) -> StoreResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'
         FROM (SELECT count(*) FROM settings) AS schema_present",
    )
    .fetch_one(e)
    .await?)
}

fn summary_from_row(row: &PgRow) -> StoreResult<RequestSummary> {
    Ok(RequestSummary {
        id: row.try_get("id")?,
        mode: parse_enum(row.try_get("mode")?, Mode::parse)?,
        status: parse_enum(row.try_get("status")?, RequestStatus::parse)?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get::<Option<DateTime<Utc>>, _>("completed_at")?,
        callback_status: row
            .try_get::<Option<&str>, _>("callback_status")?
            .map(|s| parse_enum(s, CallbackStatus::parse))
            .transpose()?,
    })
}

fn record_from_row(row: &PgRow) -> StoreResult<RequestRecord> {
    let s = summary_from_row(row)?;
    Ok(RequestRecord {
        id: s.id,
        mode: s.mode,
        status: s.status,
        created_at: s.created_at,
        completed_at: s.completed_at,
        callback_status: s.callback_status,
        input_data: row.try_get("input_data")?,
        output_data: row.try_get("output_data")?,
        error: row.try_get("error")?,
        callback_url: row.try_get("callback_url")?,
        callback_attempts: row.try_get::<i32, _>("callback_attempts")? as u32,
        callback_last_error: row.try_get("callback_last_error")?,
        callback_sent_at: row.try_get("callback_sent_at")?,
        trace_id: row.try_get("trace_id")?,
        attempts: Vec::new(),
    })
}

fn attempt_from_row(row: &PgRow) -> StoreResult<AttemptRecord> {
    Ok(AttemptRecord {
        attempt: row.try_get::<i32, _>("attempt")? as u32,
        started_at: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        status_code: row
            .try_get::<Option<i32>, _>("status_code")?
            .map(|c| c as u16),
        error: row.try_get("error")?,
    })
}
