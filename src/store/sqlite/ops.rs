//! The engine's write operations after a claim, each run by the [writer](super::writer)
//! inside the transaction of its batch: keeping a lease, storing the work and each
//! attempt (with the circuit changes they cause), giving a job back, expiring deliveries.
//! They check before they write, so an outcome such as a lost lease is an `Ok` answer,
//! and an `Err` means the database failed (the batch rolls back).
//!
//! Statements are prepared once per connection (`prepare_cached`). Times are INTEGER
//! milliseconds since the Unix epoch, compared with this process's clock, the only clock
//! a single-instance SQLite store has. A job is leased while `lease_token` is set and
//! `run_at` (the lease's end) is ahead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::admit::{destination_id, store_work};
use super::current::{Current, after, ms, now_ms};
use super::writer::Batch;
use crate::store::*;

/// A job its lease still holds (same token, not expired): its destination and its
/// `run_at` (the lease's end).
struct Held {
    destination: Option<i64>,
    run_at: i64,
}

fn held_job(c: &Connection, lease: Lease) -> StoreResult<Option<Held>> {
    Ok(c.prepare_cached(
        "SELECT destination_id, run_at FROM jobs
         WHERE request_id = ?1 AND lease_token = ?2 AND run_at > ?3",
    )?
    .query_row(
        params![
            lease.request_id.to_string(),
            lease.token.to_string(),
            now_ms()
        ],
        |r| {
            Ok(Held {
                destination: r.get(0)?,
                run_at: r.get(1)?,
            })
        },
    )
    .optional()?)
}

pub(super) fn renew(c: &Connection, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
    let renewed = c
        .prepare_cached(
            "UPDATE jobs SET run_at = ?1 WHERE request_id = ?2 AND lease_token = ?3 AND run_at > ?4",
        )?
        .execute(params![
            after(lease_for),
            lease.request_id.to_string(),
            lease.token.to_string(),
            now_ms()
        ])?;
    Ok(renewed == 1)
}

/// [`renew`] for many leases in one operation; returns the requests whose lease is lost.
/// A lease is ours while its job carries its token (every claim writes a new one), so a
/// lease past its end that no claim took yet is renewed too.
pub(super) fn renew_all(
    c: &Connection,
    leases: &[Lease],
    lease_for: Duration,
) -> StoreResult<Vec<uuid::Uuid>> {
    let until = after(lease_for);
    let mut stmt =
        c.prepare_cached("UPDATE jobs SET run_at = ?1 WHERE request_id = ?2 AND lease_token = ?3")?;
    let mut lost = Vec::new();
    for lease in leases {
        let renewed = stmt.execute(params![
            until,
            lease.request_id.to_string(),
            lease.token.to_string()
        ])?;
        if renewed == 0 {
            lost.push(lease.request_id);
        }
    }
    Ok(lost)
}

/// Makes a destination's deliveries due no later than `at` (never before its block ends).
pub(super) fn lower_deliver_due(c: &Connection, destination: i64, at: i64) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE destinations SET deliver_due_at = max(?2, coalesce(blocked_until, 0))
         WHERE id = ?1 AND (deliver_due_at IS NULL OR deliver_due_at > max(?2, coalesce(blocked_until, 0)))",
    )?
    .execute(params![destination, at])?;
    Ok(())
}

/// See [`JobStore::mark_processing`].
pub(super) fn mark_processing(
    b: &mut Batch<'_>,
    lease: Lease,
    started_at: DateTime<Utc>,
) -> StoreResult<bool> {
    if held_job(b.conn, lease)?.is_none() {
        return Ok(false);
    }
    let id = lease.request_id.to_string();
    if let Some(before) = Current::read(b.conn, &id)?
        && before.status == RequestStatus::Pending
    {
        b.conn
            .prepare_cached(
                "UPDATE requests SET status = 'processing', started_at = coalesce(started_at, ?1)
                 WHERE id = ?2",
            )?
            .execute(params![ms(started_at), id])?;
        before.moved_to(b, RequestStatus::Processing, before.callback);
    }
    Ok(true)
}

pub(super) fn record_work(
    b: &mut Batch<'_>,
    lease: Lease,
    done: &FinishedWork,
    after_work: AfterWork,
    expires_at: DateTime<Utc>,
) -> StoreResult<bool> {
    let Some(Held {
        destination,
        run_at: lease_end,
    }) = held_job(b.conn, lease)?
    else {
        return Ok(false);
    };
    let id = lease.request_id.to_string();
    store_work(b, &id, done)?;
    let c = b.conn;
    // Delivered by this worker now: the lease is kept, due again at its end. Waiting:
    // the job is given back, due now. (Not `RETURNING run_at`: SQLite gathers a
    // RETURNING statement's rows in a table made for each execution.)
    let now = now_ms();
    let (run_at, give_back) = match after_work {
        AfterWork::Deliver => (lease_end, false),
        AfterWork::Wait => (now, true),
    };
    c.prepare_cached(
        "UPDATE jobs SET phase = 1, expires_at = ?2, run_at = ?4,
             lease_token = CASE WHEN ?5 THEN NULL ELSE lease_token END,
             paused_base_ms = coalesce((
                 SELECT d.paused_total_ms + CASE WHEN d.paused_since IS NULL THEN 0
                                                 ELSE max(?3 - d.paused_since, 0) END
                 FROM destinations d WHERE d.id = jobs.destination_id), 0)
         WHERE request_id = ?1",
    )?
    .execute(params![id, ms(expires_at), now, run_at, give_back])?;
    // Found again at once if it waits, or when the lease ends if this process dies.
    if let Some(destination) = destination {
        lower_deliver_due(c, destination, run_at)?;
    }
    Ok(true)
}

pub(super) fn record_attempt(
    b: &mut Batch<'_>,
    lease: Lease,
    a: &AttemptRecord,
    next: &NextStep,
    circuit: Option<&CircuitChange>,
) -> StoreResult<bool> {
    let Some(Held { destination, .. }) = held_job(b.conn, lease)? else {
        return Ok(false);
    };
    let id = lease.request_id.to_string();
    let c = b.conn;
    c.prepare_cached(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error, triggered_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        id,
        a.attempt as i64,
        ms(a.started_at),
        a.duration_ms,
        a.status_code.map(i64::from),
        a.error,
        a.trigger.as_str()
    ])?;
    if let Some(change) = circuit {
        apply_circuit(c, change)?;
    }
    let now = now_ms();
    if let (Some(destination), Some(error), false) =
        (destination, &a.error, matches!(next, NextStep::Delivered))
    {
        note_error(c, destination, error, now)?;
    }
    let (status, sent_at, last_error) = match next {
        NextStep::Delivered => (CallbackStatus::Sent, Some(now), None),
        NextStep::RetryAt(_) => (CallbackStatus::Pending, None, a.error.as_deref()),
        NextStep::GiveUp => (CallbackStatus::Failed, None, a.error.as_deref()),
        NextStep::Expired(why) => (CallbackStatus::Failed, None, Some(why.as_str())),
    };
    set_callback(b, &id, a.attempt, status, sent_at, last_error)?;
    let c = b.conn;
    match next {
        NextStep::RetryAt(at) => {
            c.prepare_cached(
                "UPDATE jobs SET run_at = ?1, lease_token = NULL, manual = 0 WHERE request_id = ?2",
            )?
            .execute(params![ms(*at), id])?;
            if let Some(destination) = destination {
                lower_deliver_due(c, destination, ms(*at))?;
            }
        }
        NextStep::Delivered | NextStep::GiveUp | NextStep::Expired(_) => {
            c.prepare_cached("DELETE FROM jobs WHERE request_id = ?1")?
                .execute(params![id])?;
        }
    }
    Ok(true)
}

/// Keeps a failed attempt's error on its destination, at most once a second (SPEC §14).
fn note_error(c: &Connection, destination: i64, error: &str, now: i64) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE destinations SET last_error = ?2, last_error_at = ?3
         WHERE id = ?1 AND (last_error_at IS NULL OR last_error_at <= ?3 - 1000)",
    )?
    .execute(params![destination, error, now])?;
    Ok(())
}

/// Updates a request's callback fields after an attempt (or an expiry) and notes the
/// change in the counts, and in the chart when the callback ended.
fn set_callback(
    b: &mut Batch<'_>,
    id: &str,
    attempts: u32,
    status: CallbackStatus,
    sent_at: Option<i64>,
    last_error: Option<&str>,
) -> StoreResult<()> {
    let Some(before) = Current::read(b.conn, id)? else {
        return Ok(());
    };
    b.conn
        .prepare_cached(
            "UPDATE requests SET callback_attempts = max(callback_attempts, ?1),
                    callback_last_error = ?2, callback_status = ?3,
                    callback_sent_at = coalesce(?4, callback_sent_at)
             WHERE id = ?5",
        )?
        .execute(params![
            attempts as i64,
            last_error,
            status.as_str(),
            sent_at,
            id
        ])?;
    before.moved_to(b, before.status, Some(status));
    if status != CallbackStatus::Pending {
        b.deltas
            .ended(&before.tenant, Utc::now(), status == CallbackStatus::Sent);
    }
    Ok(())
}

/// Stores an opened (or re-opened) or a closed circuit.
fn apply_circuit(c: &Connection, change: &CircuitChange) -> StoreResult<()> {
    match change {
        CircuitChange::Open {
            destination,
            until,
            cooldown,
            reason,
        } => c
            .prepare_cached(
                "UPDATE destinations SET blocked_until = ?2, cooldown_ms = ?3, blocked_reason = ?4,
                        deliver_due_at = CASE WHEN deliver_due_at IS NULL THEN NULL
                                              ELSE max(deliver_due_at, ?2) END
                 WHERE id = ?1",
            )?
            .execute(params![
                destination,
                ms(*until),
                cooldown.as_millis() as i64,
                reason
            ])?,
        // Whatever waited goes out now (an early due time only costs one empty look).
        CircuitChange::Close { destination } => c
            .prepare_cached(
                "UPDATE destinations SET blocked_until = NULL, cooldown_ms = NULL, blocked_reason = NULL,
                        deliver_due_at = CASE WHEN deliver_due_at IS NULL THEN NULL ELSE ?2 END
                 WHERE id = ?1",
            )?
            .execute(params![destination, now_ms()])?,
    };
    Ok(())
}

/// A work-phase job given back, due after `wait` (its work is at `max_in_flight`).
pub(super) fn defer_work(c: &Connection, lease: Lease, wait: Duration) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE jobs SET lease_token = NULL, run_at = ?3
         WHERE request_id = ?1 AND lease_token = ?2 AND phase = ?4",
    )?
    .execute(params![
        lease.request_id.to_string(),
        lease.token.to_string(),
        after(wait),
        Phase::Work as i64
    ])?;
    Ok(())
}

pub(super) fn release(c: &Connection, lease: Lease) -> StoreResult<()> {
    let now = now_ms();
    let released = c
        .prepare_cached(
            "UPDATE jobs SET lease_token = NULL, run_at = ?3
             WHERE request_id = ?1 AND lease_token = ?2
             RETURNING destination_id, phase",
        )?
        .query_row(
            params![lease.request_id.to_string(), lease.token.to_string(), now],
            |r| Ok((r.get::<_, Option<i64>>(0)?, Phase::from_code(r.get(1)?))),
        )
        .optional()?;
    if let Some((Some(destination), Phase::Delivery)) = released {
        lower_deliver_due(c, destination, now)?;
    }
    Ok(())
}

/// Ends deliveries whose time ran out and that have no attempt running (SPEC §8).
pub(super) fn expire(b: &mut Batch<'_>, limit: usize, reason: &str) -> StoreResult<u64> {
    let now = now_ms();
    let ids: Vec<String> = b
        .conn
        .prepare_cached(
            "SELECT request_id FROM jobs
             WHERE expires_at <= ?1 AND (lease_token IS NULL OR run_at <= ?1)
               AND expires_at + min(?3, max(0, coalesce((SELECT (d.paused_total_ms
                     + CASE WHEN d.paused_since IS NULL THEN 0 ELSE ?1 - d.paused_since END)
                     FROM destinations d WHERE d.id = jobs.destination_id), 0) - paused_base_ms)) <= ?1
             LIMIT ?2",
        )?
        .query_map(params![now, limit as i64, MAX_PAUSE_CREDIT_MS], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let attempts: i64 = b
            .conn
            .prepare_cached("SELECT callback_attempts FROM requests WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))?;
        set_callback(
            b,
            id,
            attempts as u32,
            CallbackStatus::Failed,
            None,
            Some(reason),
        )?;
        b.conn
            .prepare_cached("DELETE FROM jobs WHERE request_id = ?1")?
            .execute(params![id])?;
    }
    Ok(ids.len() as u64)
}

/// See [`JobStore::expire_works`]: each job is leased by this batch, then recorded as a
/// failed work whose callback waits, due now.
pub(super) fn expire_works(
    b: &mut Batch<'_>,
    limit: usize,
    created_before: DateTime<Utc>,
    reason: &str,
    expire_after: Duration,
) -> StoreResult<u64> {
    let now = now_ms();
    let token = uuid::Uuid::new_v4();
    let ids: Vec<String> = b
        .conn
        .prepare_cached(
            "UPDATE jobs SET lease_token = ?3, run_at = ?4
             WHERE request_id IN (
                 SELECT request_id FROM jobs
                 WHERE phase = 0 AND request_id < ?1 AND (lease_token IS NULL OR run_at <= ?5)
                 ORDER BY request_id LIMIT ?2)
             RETURNING request_id",
        )?
        .query_map(
            params![
                first_id_at(created_before).to_string(),
                limit as i64,
                token.to_string(),
                now + 60_000,
                now
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    let at = Utc::now();
    let failed = FinishedWork {
        status: RequestStatus::Failed,
        output_data: None,
        error: Some(reason.to_owned()),
        completed_at: at,
        work_attempts: None,
    };
    for id in &ids {
        let request_id = uuid::Uuid::parse_str(id)
            .map_err(|e| StoreError::Corrupt(format!("job id {id}: {e}")))?;
        let lease = Lease { request_id, token };
        record_work(b, lease, &failed, AfterWork::Wait, at + expire_after)?;
    }
    Ok(ids.len() as u64)
}

/// Jobs stored before destinations existed get theirs (from the callback URL's origin),
/// a phase-true expiry, and are made findable; in batches of `limit`.
pub(super) fn adopt_legacy(
    c: &Connection,
    limit: usize,
    expire_after: Duration,
) -> StoreResult<u64> {
    /// id, tenant, callback_url, phase, completed_at, run_at.
    type Legacy = (String, String, Option<String>, i64, Option<i64>, i64);
    let rows: Vec<Legacy> = c
        .prepare_cached(
            "SELECT j.request_id, r.tenant, r.callback_url, j.phase, r.completed_at, j.run_at
             FROM jobs j JOIN requests r ON r.id = j.request_id
             WHERE j.destination_id IS NULL LIMIT ?1",
        )?
        .query_map(params![limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let expire_ms = expire_after.as_millis() as i64;
    for (id, tenant, url, phase, completed_at, run_at) in &rows {
        let origin = url
            .as_deref()
            .and_then(crate::store::origin_of_str)
            .unwrap_or_else(|| "unknown://invalid:0".to_owned());
        let destination = destination_id(c, tenant, &origin)?;
        let expires_at = (*phase == 1).then(|| completed_at.unwrap_or_else(now_ms) + expire_ms);
        c.prepare_cached(
            "UPDATE jobs SET destination_id = ?2, expires_at = ?3 WHERE request_id = ?1",
        )?
        .execute(params![id, destination, expires_at])?;
        if *phase == 1 {
            lower_deliver_due(c, destination, *run_at)?;
        }
    }
    Ok(rows.len() as u64)
}
