//! Jobs after their claim: keeping a lease, recording the work and each attempt (with
//! the circuit changes they cause) while the lease is held, giving a job back, expiring
//! deliveries, adopting jobs of an earlier version.
//!
//! Lock order is always the job row first, then its destination's delivery guard (see
//! [`claim`](super::claim)), then its request, then the count rows; a claim and a late
//! record by a worker whose lease expired cannot deadlock. (A batch of records takes the
//! guards after the requests instead, `record/mod.rs`: a request is only ever locked
//! by the holder of its job row, so two records never wait for each other there, nor
//! does a claim, which marks only the requests of the jobs it has just leased.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnection;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use super::requests::{store_work, transition};
use super::{duration_ms, ms, ms_from_now};
use crate::store::counts::Deltas;
use crate::store::*;

/// Extends the lease if it is still ours; one statement, so it cannot race a claim.
pub(super) async fn renew_lease(
    e: impl PgExecutor<'_>,
    lease: Lease,
    lease_for: Duration,
) -> StoreResult<bool> {
    let renewed = sqlx::query(
        "UPDATE jobs SET run_at = now() + $3::bigint * interval '1 millisecond'
         WHERE request_id = $1 AND lease_token = $2 AND run_at > now()",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .bind(duration_ms(lease_for))
    .execute(e)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

/// [`renew_lease`] for many leases; returns the requests whose lease is lost.
///
/// Never waits for a row lock: a job row locked by its owner's record (which checked
/// the lease when it took the lock, and no claim can take a locked row) is skipped this
/// time, neither renewed nor lost. Otherwise one renewal would wait for every record
/// in flight, and those wait behind claims (their destination's delivery guard).
/// A lease is ours while its job row carries its token: every claim writes a new one,
/// so a lease past its end that no claim took yet is still ours, and renewed.
pub(super) async fn renew_leases(
    c: &mut PgConnection,
    leases: &[Lease],
    lease_for: Duration,
) -> StoreResult<Vec<uuid::Uuid>> {
    let ids: Vec<uuid::Uuid> = leases.iter().map(|l| l.request_id).collect();
    let tokens: Vec<uuid::Uuid> = leases.iter().map(|l| l.token).collect();
    sqlx::query(
        "UPDATE jobs SET run_at = now() + $3::bigint * interval '1 millisecond'
         WHERE request_id IN (
             SELECT j.request_id FROM jobs j
             JOIN unnest($1::uuid[], $2::uuid[]) AS held(id, token)
               ON j.request_id = held.id AND j.lease_token = held.token
             FOR UPDATE OF j SKIP LOCKED)",
    )
    .bind(&ids)
    .bind(&tokens)
    .bind(duration_ms(lease_for))
    .execute(&mut *c)
    .await?;
    // Reads take no lock: a lease is lost when its job row no longer carries its token.
    let lost: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT held.id FROM unnest($1::uuid[], $2::uuid[]) AS held(id, token)
         WHERE NOT EXISTS (SELECT 1 FROM jobs j
                           WHERE j.request_id = held.id AND j.lease_token = held.token)",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_all(&mut *c)
    .await?;
    Ok(lost)
}

/// The job's destination when `lease` still holds it (same token, not expired). Locks the
/// job row until the transaction ends, so no claim can take the job while we record, and
/// then the destination's delivery guard in shared mode (see the claim's protocol).
async fn hold_lease(c: &mut PgConnection, lease: Lease) -> StoreResult<Option<Option<i64>>> {
    let row = sqlx::query(
        "SELECT destination_id FROM jobs
         WHERE request_id = $1 AND lease_token = $2 AND run_at > now()
         FOR UPDATE",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let destination: Option<i64> = row.try_get("destination_id")?;
    if let Some(id) = destination {
        share_destination(c, id).await?;
    }
    Ok(Some(destination))
}

/// Takes a destination's delivery guard before making one of its deliveries due.
async fn share_destination(c: &mut PgConnection, id: i64) -> StoreResult<()> {
    super::guard::share_deliveries(c, &[id]).await
}

/// Makes a destination's deliveries due no later than `now() + offset_ms` (never before
/// its block ends); a statement of its own, after the key share, so it sees the latest
/// due time.
async fn lower_deliver_due(c: &mut PgConnection, id: i64, offset_ms: i64) -> StoreResult<()> {
    sqlx::query(
        "UPDATE destinations
         SET deliver_due_at = greatest(now() + $2::bigint * interval '1 millisecond', blocked_until)
         WHERE id = $1 AND (deliver_due_at IS NULL OR deliver_due_at >
               greatest(now() + $2::bigint * interval '1 millisecond', blocked_until))",
    )
    .bind(id)
    .bind(offset_ms)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn record_work(
    c: &mut PgConnection,
    d: &mut Deltas,
    lease: Lease,
    done: FinishedWork,
    after: AfterWork,
    expires_at: DateTime<Utc>,
) -> StoreResult<bool> {
    let Some(destination) = hold_lease(c, lease).await? else {
        return Ok(false);
    };
    store_work(c, d, lease.request_id, &done).await?;
    let wait = after == AfterWork::Wait;
    let offset: f64 = sqlx::query_scalar(
        "UPDATE jobs SET phase = 1, expires_at = now() + $2::bigint * interval '1 millisecond',
                lease_token = CASE WHEN $3 THEN NULL ELSE lease_token END,
                run_at = CASE WHEN $3 THEN now() ELSE run_at END,
                paused_base_ms = coalesce((SELECT d.paused_total_ms
                     + CASE WHEN d.paused_since IS NULL THEN 0
                            ELSE (extract(epoch FROM now() - d.paused_since) * 1000)::bigint END
                     FROM destinations d WHERE d.id = jobs.destination_id), 0)
         WHERE request_id = $1
         RETURNING (extract(epoch FROM run_at - now()) * 1000)::float8",
    )
    .bind(lease.request_id)
    .bind(ms_from_now(expires_at))
    .bind(wait)
    .fetch_one(&mut *c)
    .await?;
    if let Some(id) = destination {
        lower_deliver_due(c, id, offset.ceil() as i64).await?;
    }
    Ok(true)
}

pub(super) async fn record_attempt(
    c: &mut PgConnection,
    d: &mut Deltas,
    lease: Lease,
    attempt: AttemptRecord,
    next: NextStep,
    circuit: Option<CircuitChange>,
) -> StoreResult<bool> {
    let Some(destination) = hold_lease(c, lease).await? else {
        return Ok(false);
    };
    let id = lease.request_id;
    insert_attempt(c, id, &attempt).await?;
    if let Some(change) = &circuit {
        apply_circuit(c, change).await?;
    }
    if let (Some(dest), Some(error), false) = (
        destination,
        &attempt.error,
        matches!(next, NextStep::Delivered),
    ) {
        note_errors(c, &[dest], std::slice::from_ref(error)).await?;
    }
    let (status, sent, last_error) = match &next {
        NextStep::Delivered => (CallbackStatus::Sent, true, None),
        NextStep::RetryAt(_) => (CallbackStatus::Pending, false, attempt.error.clone()),
        NextStep::GiveUp => (CallbackStatus::Failed, false, attempt.error.clone()),
        NextStep::Expired(why) => (CallbackStatus::Failed, false, Some(why.clone())),
    };
    set_callback(c, d, id, attempt.attempt, status, sent, last_error).await?;
    match next {
        NextStep::RetryAt(at) => {
            // clock_timestamp(), not now() (the transaction's start): the offset was taken
            // just now, so the retry is due at `at`, not earlier by the transaction's age.
            sqlx::query(
                "UPDATE jobs SET run_at = clock_timestamp() + $2::bigint * interval '1 millisecond',
                                 lease_token = NULL, manual = false
                 WHERE request_id = $1",
            )
            .bind(id)
            .bind(ms_from_now(at))
            .execute(&mut *c)
            .await?;
            if let Some(dest) = destination {
                lower_deliver_due(c, dest, ms_from_now(at)).await?;
            }
        }
        NextStep::Delivered | NextStep::GiveUp | NextStep::Expired(_) => {
            sqlx::query("DELETE FROM jobs WHERE request_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(true)
}

/// A request's callback fields after an attempt or an expiry, counted.
async fn set_callback(
    c: &mut PgConnection,
    d: &mut Deltas,
    id: Uuid,
    attempts: u32,
    status: CallbackStatus,
    sent: bool,
    last_error: Option<String>,
) -> StoreResult<()> {
    let sent_at = sent.then(|| ms(Utc::now()));
    transition(
        c,
        d,
        id,
        "callback_attempts = greatest(r.callback_attempts, $2), callback_last_error = $3,
         callback_status = $4, callback_sent_at = coalesce($5, r.callback_sent_at)",
        |q| {
            q.bind(attempts as i32)
                .bind(last_error)
                .bind(status.as_str())
                .bind(sent_at)
        },
    )
    .await?;
    Ok(())
}

async fn insert_attempt(c: &mut PgConnection, id: Uuid, a: &AttemptRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error, triggered_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(a.attempt as i32)
    .bind(ms(a.started_at))
    .bind(a.duration_ms)
    .bind(a.status_code.map(i32::from))
    .bind(&a.error)
    .bind(a.trigger.as_str())
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Keeps each destination's failed attempt's error (ids ascending), at most once a second
/// per destination (SPEC §14).
pub(super) async fn note_errors(
    c: &mut PgConnection,
    destinations: &[i64],
    errors: &[String],
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE destinations d SET last_error = u.error, last_error_at = now()
         FROM unnest($1::bigint[], $2::text[]) AS u(id, error)
         WHERE d.id = u.id
           AND (d.last_error_at IS NULL OR d.last_error_at <= now() - interval '1 second')",
    )
    .bind(destinations)
    .bind(errors)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Stores an opened (or re-opened) or a closed circuit; every instance honours it.
async fn apply_circuit(c: &mut PgConnection, change: &CircuitChange) -> StoreResult<()> {
    match change {
        CircuitChange::Open {
            destination,
            until,
            cooldown,
            reason,
        } => sqlx::query(
            "UPDATE destinations
             SET blocked_until = now() + $2::bigint * interval '1 millisecond',
                 cooldown_ms = $3, blocked_reason = $4,
                 deliver_due_at = greatest(deliver_due_at, now() + $2::bigint * interval '1 millisecond')
             WHERE id = $1",
        )
        .bind(destination)
        .bind(ms_from_now(*until))
        .bind(duration_ms(*cooldown))
        .bind(reason)
        .execute(&mut *c)
        .await?,
        CircuitChange::Close { destination } => sqlx::query(
            "UPDATE destinations
             SET blocked_until = NULL, cooldown_ms = NULL, blocked_reason = NULL,
                 deliver_due_at = CASE WHEN deliver_due_at IS NULL THEN NULL ELSE now() END
             WHERE id = $1",
        )
        .bind(destination)
        .execute(&mut *c)
        .await?,
    };
    Ok(())
}

/// A work-phase job given back, due after `wait` (its work is at `max_in_flight`).
pub(super) async fn defer_work(
    c: &mut PgConnection,
    lease: Lease,
    wait: std::time::Duration,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE jobs SET lease_token = NULL,
                run_at = clock_timestamp() + make_interval(secs => $3)
         WHERE request_id = $1 AND lease_token = $2 AND phase = 0",
    )
    .bind(lease.request_id)
    .bind(lease.token)
    .bind(wait.as_secs_f64())
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Gives the job back, claimable at once by any instance.
pub(super) async fn release_lease(c: &mut PgConnection, lease: Lease) -> StoreResult<()> {
    let Some(destination) = hold_lease(c, lease).await? else {
        return Ok(());
    };
    let phase: i16 = sqlx::query_scalar(
        "UPDATE jobs SET lease_token = NULL, run_at = now() WHERE request_id = $1 RETURNING phase",
    )
    .bind(lease.request_id)
    .fetch_one(&mut *c)
    .await?;
    if let (Some(id), 1) = (destination, phase) {
        lower_deliver_due(c, id, 0).await?;
    }
    Ok(())
}

/// Ends deliveries whose time ran out and that have no attempt running.
pub(super) async fn expire(
    c: &mut PgConnection,
    d: &mut Deltas,
    limit: usize,
    reason: &str,
) -> StoreResult<u64> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "DELETE FROM jobs WHERE request_id IN (
             SELECT request_id FROM jobs
             WHERE expires_at <= now() AND (lease_token IS NULL OR run_at <= now())
               AND expires_at + least($2, greatest(0, coalesce((SELECT d.paused_total_ms
                     + CASE WHEN d.paused_since IS NULL THEN 0
                            ELSE (extract(epoch FROM now() - d.paused_since) * 1000)::bigint END
                     FROM destinations d WHERE d.id = jobs.destination_id), 0) - paused_base_ms))
                   * interval '1 millisecond' <= now()
             LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING request_id",
    )
    .bind(limit as i64)
    .bind(MAX_PAUSE_CREDIT_MS)
    .fetch_all(&mut *c)
    .await?;
    for id in &ids {
        transition(
            c,
            d,
            *id,
            "callback_status = 'failed', callback_last_error = $2",
            |q| q.bind(reason.to_owned()),
        )
        .await?;
    }
    Ok(ids.len() as u64)
}

/// See [`JobStore::expire_works`]: each job is leased by this transaction, then recorded as
/// a failed work whose callback waits, due now.
pub(super) async fn expire_works(
    c: &mut PgConnection,
    d: &mut Deltas,
    limit: usize,
    created_before: DateTime<Utc>,
    reason: &str,
    expire_after: Duration,
) -> StoreResult<u64> {
    let token = Uuid::new_v4();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE jobs SET lease_token = $3, run_at = now() + interval '1 minute'
         WHERE request_id IN (
             SELECT request_id FROM jobs
             WHERE phase = 0 AND request_id < $1 AND (lease_token IS NULL OR run_at <= now())
             ORDER BY request_id LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING request_id",
    )
    .bind(first_id_at(created_before))
    .bind(limit as i64)
    .bind(token)
    .fetch_all(&mut *c)
    .await?;
    let now = Utc::now();
    let failed = FinishedWork {
        status: RequestStatus::Failed,
        output_data: None,
        error: Some(reason.to_owned()),
        completed_at: now,
        work_attempts: None,
    };
    let expires_at = now + expire_after;
    for &request_id in &ids {
        let lease = Lease { request_id, token };
        record_work(c, d, lease, failed.clone(), AfterWork::Wait, expires_at).await?;
    }
    Ok(ids.len() as u64)
}

/// Jobs stored before destinations existed get theirs; in batches of `limit`.
pub(super) async fn adopt_legacy(
    c: &mut PgConnection,
    limit: usize,
    expire_after: Duration,
) -> StoreResult<u64> {
    let rows = sqlx::query(
        "SELECT j.request_id, r.tenant, r.callback_url, j.phase FROM jobs j
         JOIN requests r ON r.id = j.request_id
         WHERE j.destination_id IS NULL LIMIT $1 FOR UPDATE OF j SKIP LOCKED",
    )
    .bind(limit as i64)
    .fetch_all(&mut *c)
    .await?;
    for row in &rows {
        let id: Uuid = row.try_get("request_id")?;
        let tenant: String = row.try_get("tenant")?;
        let url: Option<String> = row.try_get("callback_url")?;
        let origin = url
            .as_deref()
            .and_then(crate::store::origin_of_str)
            .unwrap_or_else(|| "unknown://invalid:0".to_owned());
        let destination = super::requests::destination_id(c, &tenant, &origin).await?;
        share_destination(c, destination).await?;
        sqlx::query(
            "UPDATE jobs j SET destination_id = $2,
                    expires_at = CASE WHEN j.phase = 1
                        THEN coalesce(r.completed_at, now()) + $3::bigint * interval '1 millisecond' END
             FROM requests r WHERE r.id = j.request_id AND j.request_id = $1",
        )
        .bind(id)
        .bind(destination)
        .bind(duration_ms(expire_after))
        .execute(&mut *c)
        .await?;
        if row.try_get::<i16, _>("phase")? == 1 {
            lower_deliver_due(c, destination, 0).await?;
        }
    }
    Ok(rows.len() as u64)
}

/// See `Store::waiting_deliveries`.
pub(super) async fn waiting_deliveries(
    e: impl PgExecutor<'_>,
    destination: i64,
    until: DateTime<Utc>,
) -> StoreResult<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs
         WHERE phase = 1 AND destination_id = $1 AND lease_token IS NULL
           AND run_at < now() + $2::bigint * interval '1 millisecond'",
    )
    .bind(destination)
    .bind(ms_from_now(until))
    .fetch_one(e)
    .await?;
    Ok(n as u64)
}

/// Destinations whose circuit is open or being probed.
pub(super) async fn circuits_open(e: impl PgExecutor<'_>) -> StoreResult<u64> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM destinations WHERE blocked_until > now()")
            .fetch_one(e)
            .await?;
    Ok(n as u64)
}
