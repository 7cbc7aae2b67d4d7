//! Housekeeping on SQLite (SPEC §12 "Retention", "Bounded maintenance"): every statement
//! removes a bounded number of rows, so the writer is never held for long and admissions
//! queued behind it are not held up.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

use super::current::{Current, now_ms};
use super::writer::Batch;
use crate::store::*;

/// Most rows one housekeeping statement touches.
pub(super) const BATCH: i64 = 500;

pub(super) fn sweep(
    b: &mut Batch<'_>,
    keep_keys: Duration,
    abandon_sync: Duration,
) -> StoreResult<SweepStats> {
    let now = now_ms();
    let c = b.conn;
    let expired_keys = c
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE rowid IN
                 (SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT ?2)",
        )?
        .execute(params![now - keep_keys.as_millis() as i64, BATCH])?;
    let abandoned_sync = close_abandoned_sync(b, now - abandon_sync.as_millis() as i64)?;
    let c = b.conn;
    let hour_ago = now.div_euclid(60_000) - 120;
    let old_minutes = c
        .prepare_cached(
            "DELETE FROM callback_minutes WHERE (minute, tenant, shard) IN
                 (SELECT minute, tenant, shard FROM callback_minutes WHERE minute < ?1 LIMIT ?2)",
        )?
        .execute(params![hour_ago, BATCH])?;
    let idle_destinations = c
        .prepare_cached(
            "DELETE FROM destinations WHERE id IN (
                 SELECT d.id FROM destinations d
                 WHERE d.blocked_until IS NULL AND d.deliver_due_at IS NULL
                   AND d.paused_since IS NULL AND d.rate_limit_per_s IS NULL
                   AND NOT EXISTS (SELECT 1 FROM jobs WHERE phase = 0 AND destination_id = d.id)
                   AND NOT EXISTS (SELECT 1 FROM jobs WHERE phase = 1 AND destination_id = d.id)
                 LIMIT ?1)",
        )?
        .execute(params![BATCH])?;
    Ok(SweepStats {
        expired_keys: expired_keys as u64,
        abandoned_sync,
        old_minutes: old_minutes as u64,
        idle_destinations: idle_destinations as u64,
    })
}

/// Every /sync record still `processing`, at start: their work died with the process
/// that ran it (SPEC §16). One batch per call; returns how many.
pub(super) fn fail_interrupted_sync(b: &mut Batch<'_>) -> StoreResult<u64> {
    close_abandoned_sync(b, i64::MAX)
}

/// /sync requests still `processing` long after they started lost their process.
fn close_abandoned_sync(b: &mut Batch<'_>, started_before: i64) -> StoreResult<u64> {
    let processing = state_code(Mode::Sync, RequestStatus::Processing, None);
    let ids: Vec<String> = b
        .conn
        .prepare_cached("SELECT id FROM requests WHERE state = ?1 AND started_at < ?2 LIMIT ?3")?
        .query_map(params![processing, started_before, BATCH], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        let Some(before) = Current::read(b.conn, id)? else {
            continue;
        };
        b.conn
            .prepare_cached(
                "UPDATE requests SET status = 'failed', completed_at = ?1, error = ?3 WHERE id = ?2",
            )?
            .execute(params![now_ms(), id, INTERRUPTED])?;
        before.moved_to(b, RequestStatus::Failed, None);
    }
    Ok(ids.len() as u64)
}

/// Writer time one pruning batch may spend: it stops after the record that uses it up
/// (or at `limit`), so an admission that queues meanwhile waits about this long at most.
const PRUNE_BUDGET: Duration = Duration::from_millis(1);

/// Deletes up to `limit` terminal records created before `cutoff` (oldest first within
/// each terminal state), with their attempts and idempotency keys, until
/// [`PRUNE_BUDGET`] is spent.
pub(super) fn prune(b: &mut Batch<'_>, cutoff: i64, limit: usize) -> StoreResult<u64> {
    let started = Instant::now();
    let mut pruned = 0;
    'states: for state in terminal_states() {
        let left = limit - pruned;
        if left == 0 {
            break;
        }
        let victims: Vec<(String, String, Option<String>)> = b
            .conn
            .prepare_cached(
                "SELECT id, tenant, work FROM requests WHERE state = ?1 AND created_at < ?2
                 ORDER BY created_at LIMIT ?3",
            )?
            .query_map(params![state, cutoff, left as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (id, tenant, work) in &victims {
            delete_record(b.conn, id)?;
            b.deltas.removed(tenant, work.as_deref(), state);
            pruned += 1;
            if started.elapsed() >= PRUNE_BUDGET {
                break 'states;
            }
        }
    }
    Ok(pruned as u64)
}

fn delete_record(c: &Connection, id: &str) -> StoreResult<()> {
    c.prepare_cached("DELETE FROM attempts WHERE request_id = ?1")?
        .execute(params![id])?;
    c.prepare_cached("DELETE FROM idempotency_keys WHERE request_id = ?1")?
        .execute(params![id])?;
    c.prepare_cached("DELETE FROM requests WHERE id = ?1")?
        .execute(params![id])?;
    Ok(())
}

/// A real write of a few bytes (SPEC §9 "Readiness").
pub(super) fn heartbeat(c: &Connection, now: &str) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO settings (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![HEARTBEAT_SETTING, now])?;
    Ok(())
}
