//! Claiming, fairly across destinations (SPEC §8 "Fair claiming"), and the engine's
//! next wake-up. The shapes are the same on PostgreSQL (see `postgres/claim.rs`).
//!
//! A claim never walks the jobs of a destination it will not serve:
//! - **Deliveries** are found through `destinations.deliver_due_at` (an index on a table
//!   of destinations, not of jobs). An open circuit is one row: its due time is pushed to
//!   the block's end, so its waiting jobs are not looked at until then; a destination at
//!   this instance's cap is passed over by its id, a paused one is not found at all, and a
//!   rate-limited one gives what its GCRA reservation allows ([`crate::store::rate`]),
//!   its due time then moving to its next send time.
//! - **Work** is never blocked or capped, but it is shared too: the destinations with
//!   work waiting are visited round-robin (a skip scan over `jobs_queue`, one index seek
//!   per destination), starting after the last one served.
//!
//! Every queue found gets a share of the free workers, and each share is that queue's
//! earliest due jobs (one index range each). So however many jobs one destination has,
//! another destination's first due job is leased in the same claim.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::current::now_ms;
use super::writer::Batch;
use crate::store::claim_plan::{Queue, SharePlan};
use crate::store::*;

/// Most destinations with deliveries due looked at in one claim: enough to pass over the
/// ones at this instance's cap (at most one per worker) and still find others.
const DELIVERY_QUEUES: usize = 1024;
/// The destinations with deliveries due (`?1`: now). The limit is written into the
/// statement: SQLite (3.51) prepares a statement again at every binding of a `LIMIT ?`,
/// and every claim runs this one.
static DELIVERY_DUE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT id, tenant, origin, blocked_until, cooldown_ms, paused_since IS NOT NULL,
                rate_limit_per_s IS NOT NULL, rate_limit_per_s, rate_tat FROM destinations
         WHERE deliver_due_at <= ?1 AND paused_since IS NULL ORDER BY deliver_due_at
         LIMIT {DELIVERY_QUEUES}"
    )
});
/// Most due jobs one queue gives in one claim, written into the statements (see
/// [`DELIVERY_DUE`]); a queue's share is read off their first rows.
const TAKE_MAX: usize = 1024;
/// Most destinations with work waiting served in one claim.
const WORK_QUEUES: usize = 256;

pub(super) fn claim(b: &mut Batch<'_>, req: &ClaimRequest) -> StoreResult<ClaimBatch> {
    let now = now_ms();
    let lease_end = now + req.lease_for.as_millis() as i64;
    let token = Uuid::new_v4();
    let mut destinations = HashMap::new();
    let mut rated = HashMap::new();
    let served = served_json(&req.works);
    let mut queues = delivery_queues(b.conn, req, now, &mut destinations, &mut rated)?;
    queues.extend(
        work_queues(b.conn, req.work_after, served.as_deref())?
            .into_iter()
            .map(Queue::work),
    );
    let mut plan = SharePlan::new(queues, req.limit);
    let mut leased = Vec::new();
    let mut work_after = req.work_after;
    loop {
        let round = plan.round();
        if round.is_empty() {
            break;
        }
        for (i, n) in round {
            let queue = plan.queue(i).clone();
            let jobs = take_due(
                b.conn,
                &queue,
                n,
                (now, lease_end),
                &token,
                served.as_deref(),
            )?;
            plan.took(i, n, jobs.len());
            if queue.phase == Phase::Work && !jobs.is_empty() {
                work_after = queue.destination;
            }
            leased.extend(jobs.into_iter().map(|j| (queue.clone(), j)));
        }
    }
    for queue in plan.into_queues() {
        let delivery = queue.phase == Phase::Delivery;
        let rate = rated.get(&queue.destination).filter(|_| delivery);
        if let Some(&(rate, base)) = rate
            && queue.taken > 0
        {
            reserve(
                b.conn,
                queue.destination,
                base + rate::advance_ms(rate, queue.taken),
            )?;
        }
        if delivery && (queue.slots > 0 || rate.is_some()) {
            settle_delivery_queue(b.conn, &queue, now)?;
        }
    }
    let mut jobs = Vec::with_capacity(leased.len());
    for (queue, job) in leased {
        let destination = match destinations.get(&queue.destination) {
            Some(d) => Destination::clone(d),
            None => {
                let d = load_destination(b.conn, queue.destination)?;
                destinations.insert(queue.destination, d.clone());
                d
            }
        };
        jobs.push(hand_out(b.conn, job, &queue, destination, token)?);
    }
    Ok(ClaimBatch { jobs, work_after })
}

/// Destinations with deliveries due now, with how many jobs each may give this instance:
/// one (the probe) for an open circuit whose cool-down has ended, else its free slots,
/// and no more than its rate limit allows now. `rated` gets each rate-limited
/// destination's rate and the time its reservations start from (Unix ms).
fn delivery_queues(
    c: &Connection,
    req: &ClaimRequest,
    now: i64,
    seen: &mut HashMap<i64, Destination>,
    rated: &mut HashMap<i64, (f64, i64)>,
) -> StoreResult<Vec<Queue>> {
    let mut stmt = c.prepare_cached(&DELIVERY_DUE)?;
    let rows = stmt
        .query_map(params![now], |r| {
            let rate: Option<f64> = r.get(7)?;
            let tat: Option<i64> = r.get(8)?;
            Ok((destination_row(r)?, rate, tat))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut queues = Vec::new();
    for (d, rate, tat) in rows {
        let mut slots = req.slots_left.get(&d.id).copied().unwrap_or(req.cap);
        if let Some(rate) = rate {
            let base = tat.unwrap_or(now).max(now);
            slots = slots.min(rate::allowed(rate, (base - now) as f64));
            rated.insert(d.id, (rate, base));
        }
        let probe = d.blocked_until.is_some();
        let queue = match probe {
            // One probe per destination, and only by an instance with room for it.
            true if slots > 0 => Queue::delivery(d.id, 1, true),
            _ => Queue::delivery(d.id, slots, false),
        };
        seen.insert(d.id, d);
        queues.push(queue);
    }
    Ok(queues)
}

fn destination_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Destination> {
    Ok(Destination {
        id: r.get(0)?,
        tenant: r.get(1)?,
        origin: r.get(2)?,
        blocked_until: r
            .get::<_, Option<i64>>(3)?
            .and_then(chrono::DateTime::from_timestamp_millis),
        cooldown: r
            .get::<_, Option<i64>>(4)?
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        paused: r.get(5)?,
        rate_limited: r.get(6)?,
    })
}

fn load_destination(c: &Connection, id: i64) -> StoreResult<Destination> {
    Ok(c.prepare_cached(
        "SELECT id, tenant, origin, blocked_until, cooldown_ms, paused_since IS NOT NULL,
                rate_limit_per_s IS NOT NULL FROM destinations WHERE id = ?1",
    )?
    .query_row(params![id], destination_row)?)
}

/// The works an instance has as a JSON array for [`SERVED`] (`None`: every work).
fn served_json(works: &Served) -> Option<String> {
    works
        .names()
        .map(|names| serde_json::to_string(names).expect("names serialize"))
}

/// A job's work is one this instance has (`?9`: a JSON array of names, NULL for all;
/// SPEC §17). A request of `text` may name no work.
const SERVED: &str = "(?9 IS NULL OR NOT EXISTS (
    SELECT 1 FROM requests r WHERE r.id = jobs.request_id
    AND r.work IS NOT NULL AND r.work NOT IN (SELECT value FROM json_each(?9))))";

/// The destinations with work waiting that this instance has, round-robin from the one
/// after `after`, wrapping round once: one index seek each.
fn work_queues(c: &Connection, after: i64, served: Option<&str>) -> StoreResult<Vec<i64>> {
    let mut next = c.prepare_cached(&format!(
        "SELECT destination_id FROM jobs WHERE phase = 0 AND destination_id > ?1 AND {SERVED}
         ORDER BY destination_id LIMIT 1"
    ))?;
    let mut found = Vec::new();
    let mut cursor = after;
    let mut wrapped = false;
    while found.len() < WORK_QUEUES {
        match next
            .query_row(rusqlite::named_params! {"?1": cursor, "?9": served}, |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
        {
            Some(id) if wrapped && id > after => break,
            Some(id) => {
                found.push(id);
                cursor = id;
            }
            None if wrapped || after == i64::MIN => break,
            None => {
                wrapped = true;
                cursor = i64::MIN;
            }
        }
    }
    Ok(found)
}

/// A job as a claim found it, before it is handed out.
pub(super) struct DueJob {
    id: String,
    attempt_base: i64,
    manual: bool,
    expires_at: Option<i64>,
}

/// Leases up to `n` of the queue's earliest due jobs.
/// The due jobs of one queue of work, of the works served (`?9`, see [`SERVED`]).
static TAKE_DUE_WORK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT request_id, attempt_base, manual, expires_at FROM jobs
         WHERE phase = 0 AND destination_id = ?2 AND run_at <= ?3 AND {SERVED}
         ORDER BY run_at LIMIT {TAKE_MAX}"
    )
});
/// The due jobs of one queue of deliveries.
static TAKE_DUE_DELIVERY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT request_id, attempt_base, manual, expires_at FROM jobs
         WHERE phase = 1 AND destination_id = ?2 AND run_at <= ?3 ORDER BY run_at
         LIMIT {TAKE_MAX}"
    )
});

fn take_due(
    c: &Connection,
    queue: &Queue,
    n: usize,
    (now, lease_end): (i64, i64),
    token: &Uuid,
    served: Option<&str>,
) -> StoreResult<Vec<DueJob>> {
    // The phase and the limit are written into the statements (one per phase): SQLite
    // prepares a statement again when a value its plan depends on is bound anew, and a
    // bound phase decides whether the partial index `jobs_work_due` applies; a bound
    // limit made every claim prepare this query again for each of its queues.
    let due = |r: &rusqlite::Row<'_>| {
        Ok(DueJob {
            id: r.get(0)?,
            attempt_base: r.get(1)?,
            manual: r.get::<_, i64>(2)? != 0,
            expires_at: r.get(3)?,
        })
    };
    let destination = queue.destination;
    let jobs: Vec<DueJob> = match queue.phase {
        Phase::Work => c
            .prepare_cached(&TAKE_DUE_WORK)?
            .query_map(
                rusqlite::named_params! {"?2": destination, "?3": now, "?9": served},
                due,
            )?
            .take(n)
            .collect::<Result<_, _>>()?,
        Phase::Delivery => c
            .prepare_cached(&TAKE_DUE_DELIVERY)?
            .query_map(rusqlite::named_params! {"?2": destination, "?3": now}, due)?
            .take(n)
            .collect::<Result<_, _>>()?,
    };
    let mut lease =
        c.prepare_cached("UPDATE jobs SET lease_token = ?1, run_at = ?2 WHERE request_id = ?3")?;
    for job in &jobs {
        lease.execute(params![token.to_string(), lease_end, job.id])?;
    }
    Ok(jobs)
}

/// After a claim: the destination's deliveries are next due at their earliest job (a
/// leased one counts from its lease's end), never before the block ends; a probe holds
/// the block for one more cool-down while it runs.
fn settle_delivery_queue(c: &Connection, queue: &Queue, now: i64) -> StoreResult<()> {
    if queue.probe && queue.taken > 0 {
        c.prepare_cached(
            "UPDATE destinations SET blocked_until = ?2 + coalesce(cooldown_ms, 0) WHERE id = ?1",
        )?
        .execute(params![queue.destination, now])?;
    }
    c.prepare_cached(
        "UPDATE destinations SET deliver_due_at = (
             SELECT CASE WHEN min(j.run_at) IS NULL THEN NULL
                         ELSE max(min(j.run_at), coalesce(destinations.blocked_until, 0),
                                  coalesce(destinations.rate_tat, 0)) END
             FROM jobs j WHERE j.phase = 1 AND j.destination_id = ?1)
         WHERE id = ?1",
    )?
    .execute(params![queue.destination])?;
    Ok(())
}

/// Moves a rate-limited destination's theoretical arrival time to `tat` (Unix ms).
fn reserve(c: &Connection, destination: i64, tat: i64) -> StoreResult<()> {
    c.prepare_cached("UPDATE destinations SET rate_tat = ?2 WHERE id = ?1")?
        .execute(params![destination, tat])?;
    Ok(())
}

/// Builds what the worker needs. The request is not marked `processing` here: the
/// worker does that once its work has run for a while (`JobStore::mark_processing`).
fn hand_out(
    c: &Connection,
    job: DueJob,
    queue: &Queue,
    destination: Destination,
    token: Uuid,
) -> StoreResult<ClaimedJob> {
    let mut stmt = c.prepare_cached(
        "SELECT input_data, callback_url, trace_id, created_at, callback_attempts, callback_body,
                output_data, error, completed_at, work, upstream_key, status = 'processing'
         FROM requests WHERE id = ?1",
    )?;
    let mut rows = stmt.query(params![job.id])?;
    let r = rows
        .next()?
        .ok_or_else(|| StoreError::Corrupt(format!("job {} without its request", job.id)))?;
    Ok(ClaimedJob {
        lease: Lease {
            request_id: parse_uuid(&job.id)?,
            token,
        },
        phase: queue.phase,
        destination,
        probe: queue.probe,
        input_data: r.get(0)?,
        callback_url: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        trace_id: r.get(2)?,
        created_at: from_millis(r.get(3)?)?,
        attempts_made: r.get::<_, i64>(4)? as u32,
        attempt_base: job.attempt_base as u32,
        manual: job.manual,
        callback_body: r.get(5)?,
        output_data: r.get(6)?,
        error: r.get(7)?,
        completed_at: r.get::<_, Option<i64>>(8)?.map(from_millis).transpose()?,
        expires_at: job.expires_at.map(from_millis).transpose()?,
        work: r.get(9)?,
        upstream_key: r.get(10)?,
        marked_processing: r.get(11)?,
    })
}

/// The earliest time a job may become claimable (see `Store::next_due_at`).
pub(super) fn next_due_at(
    c: &Connection,
    at_cap: &[i64],
    works: &Served,
) -> StoreResult<Option<i64>> {
    let work: Option<i64> = c
        .prepare_cached(&format!(
            "SELECT run_at FROM jobs WHERE phase = 0 AND {SERVED} ORDER BY run_at LIMIT 1"
        ))?
        .query_row(rusqlite::named_params! {"?9": served_json(works)}, |r| {
            r.get(0)
        })
        .optional()?;
    let mut stmt = c.prepare_cached(
        "SELECT id, deliver_due_at FROM destinations
         WHERE deliver_due_at IS NOT NULL AND paused_since IS NULL ORDER BY deliver_due_at",
    )?;
    let mut rows = stmt.query([])?;
    let mut delivery = None;
    while let Some(row) = rows.next()? {
        if !at_cap.contains(&row.get::<_, i64>(0)?) {
            delivery = Some(row.get::<_, i64>(1)?);
            break;
        }
    }
    Ok([work, delivery].into_iter().flatten().min())
}
