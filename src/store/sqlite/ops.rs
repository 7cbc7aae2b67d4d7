//! The write operations, each run by the [writer](super::writer) inside the transaction of
//! its batch. They check before they write, so an outcome such as a taken key or a lost
//! lease is an `Ok` answer, and an `Err` means the database failed (the batch rolls back).
//!
//! Statements are prepared once per connection (`prepare_cached`). Times are INTEGER
//! milliseconds since the Unix epoch; the lease checks compare them with this process's
//! clock, which is the only clock a single-instance SQLite store has.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::store::*;

pub(super) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn after(d: Duration) -> i64 {
    now_ms() + d.as_millis().min(i64::MAX as u128) as i64
}

/// What a stored idempotency key says about a new admission with the same key.
fn existing_key(c: &Connection, claim: &IdempotencyClaim) -> StoreResult<Option<Admission>> {
    let row = c
        .prepare_cached(
            "SELECT fingerprint, response_status, response_body, held_until
             FROM idempotency_keys WHERE scope = ?1 AND key = ?2",
        )?
        .query_row(params![claim.scope, claim.key], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((fingerprint, status, body, held_until)) = row else {
        return Ok(None);
    };
    let stored = StoredKey {
        fingerprint,
        response: status.map(|status| StoredResponse {
            status: status as u16,
            body: body.unwrap_or_default(),
        }),
        held: held_until > now_ms(),
    };
    let verdict = stored.verdict(claim);
    if verdict.is_none() {
        // Its first holder died mid-work: the key is free again.
        c.prepare_cached("DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2")?
            .execute(params![claim.scope, claim.key])?;
    }
    Ok(verdict)
}

pub(super) fn admit(
    c: &Connection,
    req: NewRequest,
    claim: Option<IdempotencyClaim>,
) -> StoreResult<Admission> {
    if let Some(claim) = &claim
        && let Some(verdict) = existing_key(c, claim)?
    {
        return Ok(verdict);
    }
    let id = req.id.to_string();
    let is_async = req.mode == Mode::Async;
    let started_at = (req.status == RequestStatus::Processing).then_some(ms(req.created_at));
    c.prepare_cached(
        "INSERT INTO requests (id, mode, status, input_data, created_at, started_at, trace_id,
                               callback_url, callback_status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id,
        req.mode.as_str(),
        req.status.as_str(),
        req.input_data,
        ms(req.created_at),
        started_at,
        req.trace_id,
        req.callback_url,
        is_async.then_some(CallbackStatus::Pending.as_str()),
    ])?;
    if is_async {
        c.prepare_cached("INSERT INTO jobs (request_id, run_at) VALUES (?1, ?2)")?
            .execute(params![id, ms(req.created_at)])?;
    }
    if let Some(claim) = claim {
        let (status, body) = claim.response.map(|r| (r.status as i64, r.body)).unzip();
        c.prepare_cached(
            "INSERT INTO idempotency_keys
                 (scope, key, fingerprint, request_id, response_status, response_body, held_until, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            claim.scope,
            claim.key,
            claim.fingerprint,
            id,
            status,
            body,
            ms(claim.held_until),
            now_ms()
        ])?;
    }
    Ok(Admission::Admitted)
}

fn store_work(c: &Connection, id: &str, done: &FinishedWork) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE requests SET status = ?1, output_data = ?2, error = ?3, completed_at = ?4,
                callback_body = COALESCE(?5, callback_body)
         WHERE id = ?6",
    )?
    .execute(params![
        done.status.as_str(),
        done.output_data,
        done.error,
        ms(done.completed_at),
        done.callback_body,
        id
    ])?;
    Ok(())
}

pub(super) fn finish_sync(
    c: &Connection,
    id: Uuid,
    done: FinishedWork,
    key: Option<(&'static str, String, Option<StoredResponse>)>,
) -> StoreResult<()> {
    store_work(c, &id.to_string(), &done)?;
    match key {
        Some((scope, key, Some(response))) => {
            c.prepare_cached(
                "UPDATE idempotency_keys SET response_status = ?1, response_body = ?2
                 WHERE scope = ?3 AND key = ?4",
            )?
            .execute(params![response.status as i64, response.body, scope, key])?;
        }
        // Only successes are kept: the key is released for a retry.
        Some((scope, key, None)) => {
            c.prepare_cached("DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2")?
                .execute(params![scope, key])?;
        }
        None => {}
    }
    Ok(())
}

/// Leases up to `limit` due jobs (unleased and due, or with an expired lease).
pub(super) fn claim(
    c: &Connection,
    limit: usize,
    lease_for: Duration,
) -> StoreResult<Vec<ClaimedJob>> {
    let now = now_ms();
    let token = Uuid::new_v4();
    let ids: Vec<String> = c
        .prepare_cached(
            "UPDATE jobs SET lease_token = ?1, lease_until = ?2
             WHERE request_id IN (
                 SELECT request_id FROM jobs
                 WHERE run_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)
                 ORDER BY run_at LIMIT ?4)
             RETURNING request_id",
        )?
        .query_map(
            params![token.to_string(), after(lease_for), now, limit as i64],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    // The requests of the claimed jobs start processing now, and are handed out.
    let mut start = c.prepare_cached(
        "UPDATE requests SET status = CASE status WHEN 'pending' THEN 'processing' ELSE status END,
                             started_at = COALESCE(started_at, ?1)
         WHERE id = ?2
         RETURNING input_data, callback_url, trace_id, created_at, callback_attempts, callback_body",
    )?;
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let (input_data, url, trace_id, created_at, attempts, body) =
            start.query_row(params![now, id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
        jobs.push(ClaimedJob {
            lease: Lease {
                request_id: parse_uuid(&id)?,
                token,
            },
            input_data,
            callback_url: url.unwrap_or_default(),
            trace_id,
            created_at: from_millis(created_at)?,
            attempts_made: attempts as u32,
            callback_body: body,
        });
    }
    Ok(jobs)
}

/// `true` when `lease` still holds its job: same token, not expired.
fn lease_held(c: &Connection, lease: Lease) -> StoreResult<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM jobs WHERE request_id = ?1 AND lease_token = ?2 AND lease_until > ?3",
    )?
    .exists(params![
        lease.request_id.to_string(),
        lease.token.to_string(),
        now_ms()
    ])?)
}

pub(super) fn renew(c: &Connection, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
    let renewed = c
        .prepare_cached(
            "UPDATE jobs SET lease_until = ?1
             WHERE request_id = ?2 AND lease_token = ?3 AND lease_until > ?4",
        )?
        .execute(params![
            after(lease_for),
            lease.request_id.to_string(),
            lease.token.to_string(),
            now_ms()
        ])?;
    Ok(renewed == 1)
}

pub(super) fn record_work(c: &Connection, lease: Lease, done: &FinishedWork) -> StoreResult<bool> {
    if !lease_held(c, lease)? {
        return Ok(false);
    }
    store_work(c, &lease.request_id.to_string(), done)?;
    Ok(true)
}

pub(super) fn record_attempt(
    c: &Connection,
    lease: Lease,
    a: &AttemptRecord,
    next: &NextStep,
) -> StoreResult<bool> {
    if !lease_held(c, lease)? {
        return Ok(false);
    }
    let id = lease.request_id.to_string();
    c.prepare_cached(
        "INSERT INTO attempts (request_id, attempt, started_at, duration_ms, status_code, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        a.attempt as i64,
        ms(a.started_at),
        a.duration_ms,
        a.status_code.map(i64::from),
        a.error
    ])?;
    let (status, sent_at) = match next {
        NextStep::Delivered => (CallbackStatus::Sent, Some(now_ms())),
        NextStep::RetryAt(_) => (CallbackStatus::Pending, None),
        NextStep::GiveUp => (CallbackStatus::Failed, None),
    };
    c.prepare_cached(
        "UPDATE requests SET callback_attempts = ?1, callback_last_error = ?2, callback_status = ?3,
                callback_sent_at = ?4
         WHERE id = ?5",
    )?
    .execute(params![a.attempt as i64, a.error, status.as_str(), sent_at, id])?;
    match next {
        NextStep::RetryAt(at) => c
            .prepare_cached("UPDATE jobs SET run_at = ?1, lease_token = NULL, lease_until = NULL WHERE request_id = ?2")?
            .execute(params![ms(*at), id])?,
        NextStep::Delivered | NextStep::GiveUp => {
            c.prepare_cached("DELETE FROM jobs WHERE request_id = ?1")?.execute(params![id])?
        }
    };
    Ok(true)
}

pub(super) fn release(c: &Connection, lease: Lease) -> StoreResult<()> {
    c.prepare_cached(
        "UPDATE jobs SET lease_token = NULL, lease_until = NULL WHERE request_id = ?1 AND lease_token = ?2",
    )?
    .execute(params![lease.request_id.to_string(), lease.token.to_string()])?;
    Ok(())
}

pub(super) fn sweep(
    c: &Connection,
    keep_keys: Duration,
    abandon_sync: Duration,
) -> StoreResult<SweepStats> {
    let now = now_ms();
    let expired_keys = c
        .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?1")?
        .execute(params![now - keep_keys.as_millis() as i64])?;
    let abandoned_sync = c
        .prepare_cached(
            "UPDATE requests SET status = 'failed', completed_at = ?1,
                    error = 'interrupted: the service stopped before the work finished'
             WHERE mode = 'sync' AND status = 'processing' AND started_at < ?2",
        )?
        .execute(params![now, now - abandon_sync.as_millis() as i64])?;
    Ok(SweepStats {
        expired_keys: expired_keys as u64,
        abandoned_sync: abandoned_sync as u64,
    })
}

pub(super) fn setting(c: &Connection, name: &str, candidate: &str) -> StoreResult<String> {
    c.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![name, candidate])?;
    Ok(
        c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))?,
    )
}
