//! Jobs: claiming with a lease, keeping it, and recording outcomes while it is held.
//!
//! Lock order is always the job row first, then its request, so a claim and a late
//! record by a worker whose lease expired cannot deadlock; the later one waits for the
//! other and then sees the lease token it must match.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::{duration_ms, ms, ms_from_now, requests};
use crate::store::*;

/// Leases up to `limit` due jobs in one statement, marks their requests `processing`, and
/// returns what the workers need.
///
/// `due` locks the chosen rows `FOR UPDATE SKIP LOCKED`: rows another instance is
/// claiming or recording right now are passed over, never waited for. A CTE that locks is
/// evaluated once, so exactly the rows it picked are leased.
pub(super) async fn claim(
    c: &mut PgConnection,
    limit: usize,
    lease_for: Duration,
) -> StoreResult<Vec<ClaimedJob>> {
    let token = Uuid::new_v4();
    let rows = sqlx::query(
        "WITH due AS (
             SELECT request_id FROM jobs
             WHERE run_at <= now() AND (lease_until IS NULL OR lease_until <= now())
             ORDER BY run_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), leased AS (
             UPDATE jobs j SET lease_token = $1,
                               lease_until = now() + $2::bigint * interval '1 millisecond'
             FROM due WHERE j.request_id = due.request_id
             RETURNING j.request_id
         ), started AS (
             UPDATE requests SET status = 'processing', started_at = now()
             WHERE status = 'pending' AND id IN (SELECT request_id FROM leased)
         )
         SELECT r.id, r.input_data, r.callback_url, r.trace_id, r.created_at,
                r.callback_attempts, r.callback_body
         FROM leased JOIN requests r ON r.id = leased.request_id",
    )
    .bind(token)
    .bind(duration_ms(lease_for))
    .bind(limit.min(i64::MAX as usize) as i64)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|row| claimed_from_row(row, token))
        .collect()
}

fn claimed_from_row(row: &PgRow, token: Uuid) -> StoreResult<ClaimedJob> {
    Ok(ClaimedJob {
        lease: Lease {
            request_id: row.try_get("id")?,
            token,
        },
        input_data: row.try_get("input_data")?,
        callback_url: row
            .try_get::<Option<String>, _>("callback_url")?
            .unwrap_or_default(),
        trace_id: row.try_get("trace_id")?,
        created_at: row.try_get("created_at")?,
        attempts_made: row.try_get::<i32, _>("callback_attempts")? as u32,
        callback_body: row.try_get("callback_body")?,
    })
}

/// The earliest time a job becomes claimable: an unleased job at its `run_at`, a leased
/// one when its lease expires. Computed on the database clock and returned as an offset
/// from this process's now, which is what the engine sleeps against.
pub(super) async fn next_due_at(e: impl PgExecutor<'_>) -> StoreResult<Option<DateTime<Utc>>> {
    let from_now_ms: Option<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM min(CASE WHEN lease_until IS NULL THEN run_at
                                             ELSE greatest(run_at, lease_until) END) - now())
                 * 1000)::float8
         FROM jobs",
    )
    .fetch_one(e)
    .await?;
    Ok(from_now_ms.map(|ms| Utc::now() + TimeDelta::milliseconds(ms.ceil() as i64)))
}

/// Extends the lease if it is still ours; one statement, so it cannot race a claim.
pub(super) async fn renew_lease(
    e: impl PgExecutor<'_>,
    lease: Lease,
    lease_for: Duration,
) -> StoreResult<bool> {
    let renewed = sqlx::query(
        "UPDATE jobs SET lease_until = now() + $3::bigint * interval '1 millisecond'
         WHERE request_id = $1 AND lease_token = $2 AND lease_until > now()",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .bind(duration_ms(lease_for))
    .execute(e)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// `true` when `lease` still holds its job (same token, not expired). Locks the job row
/// until the transaction ends, so no claim can take the job while we record.
async fn hold_lease(c: &mut PgConnection, lease: Lease) -> StoreResult<bool> {
    let row = sqlx::query(
        "SELECT 1 FROM jobs
         WHERE request_id = $1 AND lease_token = $2 AND lease_until > now()
         FOR UPDATE",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.is_some())
}

pub(super) async fn record_work(
    c: &mut PgConnection,
    lease: Lease,
    done: FinishedWork,
) -> StoreResult<bool> {
    if !hold_lease(c, lease).await? {
        return Ok(false);
    }
    requests::store_work(c, lease.request_id, &done).await?;
    Ok(true)
}

/// Stores the attempt, updates the request's callback fields, then reschedules the job
/// (`RetryAt`, with a NOTIFY so an idle instance wakes for it) or deletes it.
pub(super) async fn record_attempt(
    c: &mut PgConnection,
    lease: Lease,
    attempt: AttemptRecord,
    next: NextStep,
) -> StoreResult<bool> {
    if !hold_lease(c, lease).await? {
        return Ok(false);
    }
    let id = lease.request_id;
    insert_attempt(c, id, &attempt).await?;
    let (callback_status, sent_at) = match next {
        NextStep::Delivered => (CallbackStatus::Sent, Some(ms(Utc::now()))),
        NextStep::RetryAt(_) => (CallbackStatus::Pending, None),
        NextStep::GiveUp => (CallbackStatus::Failed, None),
    };
    sqlx::query(
        "UPDATE requests SET callback_attempts = $1, callback_last_error = $2,
                callback_status = $3, callback_sent_at = $4
         WHERE id = $5",
    )
    .bind(attempt.attempt as i32)
    .bind(&attempt.error)
    .bind(callback_status.as_str())
    .bind(sent_at)
    .bind(id)
    .execute(&mut *c)
    .await?;
    match next {
        NextStep::RetryAt(at) => reschedule(c, id, at).await?,
        NextStep::Delivered | NextStep::GiveUp => {
            sqlx::query("DELETE FROM jobs WHERE request_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(true)
}

async fn insert_attempt(c: &mut PgConnection, id: Uuid, a: &AttemptRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(a.attempt as i32)
    .bind(ms(a.started_at))
    .bind(a.duration_ms)
    .bind(a.status_code.map(i32::from))
    .bind(&a.error)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Unleases the job and makes it due at `at` (a process-clock time, moved onto the
/// database clock by its distance from now).
async fn reschedule(c: &mut PgConnection, id: Uuid, at: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET run_at = now() + $2::bigint * interval '1 millisecond',
                         lease_token = NULL, lease_until = NULL
         WHERE request_id = $1",
    )
    .bind(id)
    .bind(ms_from_now(at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Gives the job back, claimable at once by any instance.
pub(super) async fn release_lease(c: &mut PgConnection, lease: Lease) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET lease_token = NULL, lease_until = NULL
         WHERE request_id = $1 AND lease_token = $2",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn counts(e: impl PgExecutor<'_>) -> StoreResult<JobCounts> {
    let row = sqlx::query(
        "SELECT count(*) FILTER (WHERE lease_until > now()) AS processing,
                count(*) FILTER (WHERE lease_until IS NULL OR lease_until <= now()) AS pending
         FROM jobs",
    )
    .fetch_one(e)
    .await?;
    Ok(JobCounts {
        pending: row.try_get::<i64, _>("pending")? as u64,
        processing: row.try_get::<i64, _>("processing")? as u64,
    })
}
