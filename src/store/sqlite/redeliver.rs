//! Redelivery and the per-minute chart on SQLite (SPEC §11).

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::admit::destination_id;
use super::current::{Current, now_ms};
use super::ops::lower_deliver_due;
use super::writer::Batch;
use crate::store::*;

/// See `Store::redeliver`.
pub(super) fn redeliver(
    b: &mut Batch<'_>,
    id: Uuid,
    scope: &Scope,
    expire_after: Duration,
    limits: RedeliveryLimits,
) -> StoreResult<Redelivery> {
    let id = id.to_string();
    let Some(before) = Current::read(b.conn, &id)?.filter(|c| scope.sees(&c.tenant)) else {
        return Ok(Redelivery::NotFound);
    };
    if before.mode == Mode::Sync {
        return Ok(Redelivery::NotAsync);
    }
    if before.callback == Some(CallbackStatus::Pending) {
        return Ok(Redelivery::InProgress);
    }
    let done: i64 = b
        .conn
        .prepare_cached("SELECT redeliveries FROM requests WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))?;
    let (pending, tenant_pending) = b.backlog(&before.tenant);
    if let Some(refused) = limits.refusal(done.max(0) as u64, pending, tenant_pending) {
        return Ok(refused);
    }
    queue_again(b, &id, &before, expire_after)?;
    Ok(Redelivery::Queued)
}

/// The new delivery of a terminal callback: pending again, a job due now in the
/// delivery phase whose attempts count from the ones already made.
fn queue_again(
    b: &mut Batch<'_>,
    id: &str,
    before: &Current,
    expire_after: Duration,
) -> StoreResult<()> {
    let (url, attempts): (Option<String>, i64) = b
        .conn
        .prepare_cached("SELECT callback_url, callback_attempts FROM requests WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    b.conn
        .prepare_cached(
            "UPDATE requests SET callback_status = 'pending', redeliveries = redeliveries + 1
             WHERE id = ?1",
        )?
        .execute(params![id])?;
    before.moved_to(b, before.status, Some(CallbackStatus::Pending));
    let origin = url
        .as_deref()
        .and_then(crate::store::origin_of_str)
        .unwrap_or_else(|| "unknown://invalid:0".to_owned());
    let c = b.conn;
    let destination = destination_id(c, &before.tenant, &origin)?;
    let now = now_ms();
    c.prepare_cached(
        "INSERT INTO jobs (request_id, destination_id, phase, run_at, expires_at, attempt_base, manual)
         VALUES (?1, ?2, 1, ?3, ?4, ?5, 1)",
    )?
    .execute(params![
        id,
        destination,
        now,
        now + expire_after.as_millis() as i64,
        attempts
    ])?;
    lower_deliver_due(c, destination, now)
}

/// See `Store::bulk_redeliver`: failed state after failed state, oldest record first,
/// until [`BULK_REDELIVERY_MOST`] are queued or a limit stops it.
pub(super) fn bulk_redeliver(
    b: &mut Batch<'_>,
    tenant: Option<&str>,
    since: i64,
    expire_after: Duration,
    limits: RedeliveryLimits,
) -> StoreResult<BulkRedelivery> {
    let until = now_ms();
    let mut done = BulkRedelivery::default();
    for state in failed_callback_states() {
        let mut after = (since - 1, String::new());
        loop {
            let left = BULK_REDELIVERY_MOST - done.redelivered as usize;
            // One more than may be queued: whether any is left over.
            let ids = next_failed(
                b.conn,
                tenant,
                state,
                (since, until),
                (after.0, &after.1),
                (left + 1, limits.max_redeliveries),
            )?;
            let Some((last_id, last_at)) = ids.last().cloned() else {
                break;
            };
            after = (last_at, last_id);
            for (id, _) in &ids {
                let Some(before) = Current::read(b.conn, id)? else {
                    continue;
                };
                let (pending, tenant_pending) = b.backlog(&before.tenant);
                // Redeliveries so far are below the limit (the query's filter).
                if done.redelivered as usize >= BULK_REDELIVERY_MOST
                    || limits.refusal(0, pending, tenant_pending).is_some()
                {
                    done.more = true;
                    return Ok(done);
                }
                queue_again(b, id, &before, expire_after)?;
                done.redelivered += 1;
            }
        }
    }
    Ok(done)
}

/// See `Store::advance_bulk_redeliveries`: the oldest task's next batch, one failed state
/// after the other, oldest record first.
pub(super) fn advance_bulk(
    b: &mut Batch<'_>,
    batch: usize,
    expire_after: Duration,
) -> StoreResult<u64> {
    type Task = (
        i64,
        Option<String>,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<String>,
    );
    let task: Option<Task> = b
        .conn
        .prepare_cached(
            "SELECT id, tenant, since, until, after_state, after_created_at, after_id
             FROM bulk_redeliveries ORDER BY id LIMIT 1",
        )?
        .query_row([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .optional()?;
    let Some((task, tenant, since, until, after_state, after_at, after_id)) = task else {
        return Ok(0);
    };
    let states = failed_callback_states();
    for state in states.into_iter().filter(|s| *s >= after_state) {
        let (from_at, from_id) = match state == after_state {
            true => (
                after_at.unwrap_or(since - 1),
                after_id.clone().unwrap_or_default(),
            ),
            false => (since - 1, String::new()),
        };
        let ids = next_failed(
            b.conn,
            tenant.as_deref(),
            state,
            (since, until),
            (from_at, &from_id),
            (batch, u32::MAX),
        )?;
        for (id, _) in &ids {
            if let Some(before) = Current::read(b.conn, id)? {
                queue_again(b, id, &before, expire_after)?;
            }
        }
        if let Some((last_id, last_at)) = ids.last() {
            b.conn
                .prepare_cached(
                    "UPDATE bulk_redeliveries SET after_state = ?2, after_created_at = ?3, after_id = ?4
                     WHERE id = ?1",
                )?
                .execute(params![task, state, last_at, last_id])?;
            return Ok(ids.len() as u64);
        }
    }
    b.conn
        .prepare_cached("DELETE FROM bulk_redeliveries WHERE id = ?1")?
        .execute(params![task])?;
    Ok(0)
}

/// The next records in `state` created within `window`, after `(created_at, id)`.
fn next_failed(
    c: &Connection,
    tenant: Option<&str>,
    state: i64,
    (since, until): (i64, i64),
    (after_at, after_id): (i64, &str),
    (limit, max_redeliveries): (usize, u32),
) -> StoreResult<Vec<(String, i64)>> {
    let sql = match tenant {
        Some(_) => {
            "SELECT id, created_at FROM requests
             WHERE tenant = ?6 AND state = ?1 AND created_at >= ?2 AND created_at <= ?3
               AND (created_at, id) > (?4, ?5) AND redeliveries < ?8
             ORDER BY created_at, id LIMIT ?7"
        }
        None => {
            "SELECT id, created_at FROM requests
             WHERE ?6 IS NULL AND state = ?1 AND created_at >= ?2 AND created_at <= ?3
               AND (created_at, id) > (?4, ?5) AND redeliveries < ?8
             ORDER BY created_at, id LIMIT ?7"
        }
    };
    Ok(c.prepare_cached(sql)?
        .query_map(
            params![
                state,
                since,
                until,
                after_at,
                after_id,
                tenant,
                limit as i64,
                max_redeliveries
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .collect::<Result<_, _>>()?)
}

/// See `Store::callback_stats`.
pub(super) fn callback_stats(
    c: &Connection,
    scope: &Scope,
    from_minute: i64,
) -> StoreResult<Vec<MinuteStats>> {
    let tenant = match scope {
        Scope::Tenant(t) => Some(t.as_str()),
        Scope::All => None,
    };
    let mut stmt = c.prepare_cached(
        "SELECT minute, sum(delivered), sum(failed) FROM callback_minutes
         WHERE minute >= ?1 AND (?2 IS NULL OR tenant = ?2)
         GROUP BY minute ORDER BY minute",
    )?;
    let rows = stmt
        .query_map(params![from_minute, tenant], |r| {
            Ok(MinuteStats {
                minute: r.get(0)?,
                delivered: r.get::<_, i64>(1)?.max(0) as u64,
                failed: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
