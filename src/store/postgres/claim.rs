//! Claiming on PostgreSQL, fairly across destinations (SPEC §8): the shapes of
//! `sqlite/claim.rs`, shared by every instance.
//!
//! - **Deliveries** are found through `destinations.deliver_due_at`. Claims on one
//!   destination take turns (its claim guard, taken in id order before they read the
//!   destinations). A claim recomputes each served destination's due time at its end,
//!   after taking its delivery guard in exclusive mode (in id order), which waits for the
//!   writes in flight that make a delivery due: each takes the guard in shared mode first
//!   ([`share_deliveries`](super::guard::share_deliveries)) and lowers the due time in a later statement. So a claim never
//!   overwrites a due time with one that misses a job committed meanwhile, and records
//!   wait for a claim only while it settles, not while it picks and hands out jobs.
//!   Both guards are transaction-scoped advisory locks, not row locks: an admission's foreign
//!   key takes the destination row `FOR KEY SHARE`, and a row lock strong enough to
//!   exclude the delivery writers would also make every claim wait for every admission
//!   in flight (at 2,000 admissions a second, claims waited 14 ms each and admissions
//!   queued behind them).
//! - **Work** is found by a skip scan over `jobs_queue` (a recursive query, one index
//!   seek per destination), round-robin after the last destination served.
//! - Jobs are picked `FOR UPDATE SKIP LOCKED` — one statement per round of the
//!   [`SharePlan`], every queue's share in it — and leased in the same statement.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};
use uuid::Uuid;

use super::duration_ms;
use super::guard::{CLAIM_GUARD, DELIVERY_GUARD, guard};
use crate::store::claim_plan::{Queue, SharePlan};
use crate::store::counts::Deltas;
use crate::store::*;

const DELIVERY_QUEUES: i64 = 1024;
const WORK_QUEUES: i64 = 256;

pub(super) async fn claim(
    c: &mut PgConnection,
    d: &mut Deltas,
    req: &ClaimRequest,
) -> StoreResult<ClaimBatch> {
    let token = Uuid::new_v4();
    let (mut destinations, rated) = delivery_destinations(c, req).await?;
    let mut queues: Vec<Queue> = destinations
        .values()
        .map(|dest| {
            let mut slots = req.slots_left.get(&dest.id).copied().unwrap_or(req.cap);
            if let Some(&(rate, ahead_ms)) = rated.get(&dest.id) {
                slots = slots.min(rate::allowed(rate, ahead_ms));
            }
            match dest.blocked_until.is_some() {
                true => Queue::delivery(dest.id, 1, true),
                false => Queue::delivery(dest.id, slots, false),
            }
        })
        .collect();
    queues.sort_by_key(|q| q.destination);
    let served = req.works.names();
    let work = work_queues(c, req.work_after, served).await?;
    queues.extend(work.iter().map(|&id| Queue::work(id)));
    let mut plan = SharePlan::new(queues, req.limit);
    let mut leased: Vec<(Queue, Taken)> = Vec::new();
    let mut work_after = req.work_after;
    loop {
        let round = plan.round();
        if round.is_empty() {
            break;
        }
        let rows = take_round(c, &plan, &round, &token, req.lease_for, served).await?;
        for (i, n) in round {
            let q = plan.queue(i).clone();
            let mine: Vec<Taken> = rows
                .iter()
                .filter(|t| t.destination == q.destination && t.phase == q.phase as i16)
                .cloned()
                .collect();
            plan.took(i, n, mine.len());
            if q.phase == Phase::Work && !mine.is_empty() {
                work_after = q.destination;
            }
            leased.extend(mine.into_iter().map(|r| (q.clone(), r)));
        }
    }
    settle_delivery_queues(c, plan.into_queues(), &rated).await?;
    let missing: Vec<i64> = work
        .iter()
        .copied()
        .filter(|id| !destinations.contains_key(id))
        .collect();
    for dest in load_destinations(c, &missing).await? {
        destinations.insert(dest.id, dest);
    }
    hand_out(c, d, leased, &destinations, token)
        .await
        .map(|jobs| ClaimBatch { jobs, work_after })
}

/// A rate-limited destination's rate, and how far its theoretical arrival time lies
/// ahead of now (ms; 0 when past), by id.
type Rated = HashMap<i64, (f64, f64)>;

/// Destinations with deliveries due and room here, guarded in id order; and the rates of
/// those with a rate limit.
async fn delivery_destinations(
    c: &mut PgConnection,
    req: &ClaimRequest,
) -> StoreResult<(HashMap<i64, Destination>, Rated)> {
    let due: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM destinations WHERE deliver_due_at <= now() AND paused_since IS NULL
         ORDER BY deliver_due_at LIMIT $1",
    )
    .bind(DELIVERY_QUEUES)
    .fetch_all(&mut *c)
    .await?;
    let mut with_room: Vec<i64> = due
        .into_iter()
        .filter(|id| req.slots_left.get(id).copied().unwrap_or(req.cap) > 0)
        .collect();
    if with_room.is_empty() {
        return Ok((HashMap::new(), Rated::new()));
    }
    with_room.sort_unstable();
    guard(c, CLAIM_GUARD, &with_room, false).await?;
    let rows = sqlx::query(
        "SELECT id, tenant, origin, blocked_until, cooldown_ms, paused_since IS NOT NULL AS paused,
                rate_limit_per_s IS NOT NULL AS rate_limited, rate_limit_per_s,
                (extract(epoch FROM greatest(rate_tat, now()) - now()) * 1000)::float8 AS ahead_ms
         FROM destinations
         WHERE id = ANY($1) AND deliver_due_at <= now() AND paused_since IS NULL
         ORDER BY id",
    )
    .bind(&with_room)
    .fetch_all(&mut *c)
    .await?;
    let mut rated = Rated::new();
    let mut found = HashMap::new();
    for r in &rows {
        let d = destination_from_row(r)?;
        if let Some(rate) = r.try_get::<Option<f64>, _>("rate_limit_per_s")? {
            rated.insert(d.id, (rate, r.try_get("ahead_ms")?));
        }
        found.insert(d.id, d);
    }
    Ok((found, rated))
}

pub(super) fn destination_from_row(r: &PgRow) -> StoreResult<Destination> {
    Ok(Destination {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        origin: r.try_get("origin")?,
        blocked_until: r.try_get("blocked_until")?,
        cooldown: r
            .try_get::<Option<i64>, _>("cooldown_ms")?
            .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
        paused: r.try_get("paused")?,
        rate_limited: r.try_get("rate_limited")?,
    })
}

async fn load_destinations(c: &mut PgConnection, ids: &[i64]) -> StoreResult<Vec<Destination>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT id, tenant, origin, blocked_until, cooldown_ms, paused_since IS NOT NULL AS paused,
                rate_limit_per_s IS NOT NULL AS rate_limited FROM destinations WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *c)
    .await?;
    rows.iter().map(destination_from_row).collect()
}

/// The condition "the work of job `j` is one this instance has" (SPEC §17), with the
/// served names bound as `param` (a `text[]`, NULL for every work).
fn served_filter(param: &str) -> String {
    format!(
        "({param}::text[] IS NULL OR NOT EXISTS (
             SELECT 1 FROM requests r WHERE r.id = j.request_id
             AND r.work IS NOT NULL AND r.work <> ALL({param}::text[])))"
    )
}

/// The destinations with work waiting that this instance has, round-robin after
/// `after`, wrapping round once: one skip scan over `jobs_queue` (a recursive query, one
/// index seek per destination) from `after` up, then one from the start up to `after`,
/// in one statement.
async fn work_queues(
    c: &mut PgConnection,
    after: i64,
    served: Option<&[String]>,
) -> StoreResult<Vec<i64>> {
    let next = |from: &str| {
        format!(
            "SELECT destination_id FROM jobs j WHERE phase = 0 AND destination_id > {from}
               AND {served} ORDER BY destination_id LIMIT 1",
            served = served_filter("$3")
        )
    };
    let sql = format!(
        "WITH RECURSIVE up(d) AS (
             ({first_up})
             UNION ALL
             SELECT ({next_up}) FROM up WHERE up.d IS NOT NULL),
         wrapped(d) AS (
             ({first_wrapped})
             UNION ALL
             SELECT ({next_wrapped}) FROM wrapped WHERE wrapped.d < $1)
         SELECT d FROM (
             (SELECT d, 0 AS turn FROM up WHERE d IS NOT NULL LIMIT $2)
             UNION ALL
             (SELECT d, 1 AS turn FROM wrapped WHERE d <= $1 LIMIT $2)) AS found
         ORDER BY turn, d LIMIT $2",
        first_up = next("$1"),
        next_up = next("up.d"),
        first_wrapped = next("(-9223372036854775807 - 1)"),
        next_wrapped = next("wrapped.d"),
    );
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(after)
        .bind(WORK_QUEUES)
        .bind(served)
        .fetch_all(&mut *c)
        .await?)
}

/// A job a round leased.
#[derive(Debug, Clone)]
struct Taken {
    request_id: Uuid,
    destination: i64,
    phase: i16,
    attempt_base: i32,
    manual: bool,
    expires_at: Option<DateTime<Utc>>,
}

/// Picks and leases every queue's share of one round in one statement.
async fn take_round(
    c: &mut PgConnection,
    plan: &SharePlan,
    round: &[(usize, usize)],
    token: &Uuid,
    lease_for: std::time::Duration,
    served: Option<&[String]>,
) -> StoreResult<Vec<Taken>> {
    let dests: Vec<i64> = round
        .iter()
        .map(|(i, _)| plan.queue(*i).destination)
        .collect();
    let phases: Vec<i16> = round
        .iter()
        .map(|(i, _)| plan.queue(*i).phase as i16)
        .collect();
    let takes: Vec<i32> = round.iter().map(|(_, n)| *n as i32).collect();
    let sql = format!(
        "WITH asks AS (
             SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::int[]) AS a(d, p, n)
         ), picked AS (
             SELECT j.request_id FROM asks a CROSS JOIN LATERAL (
                 SELECT request_id FROM jobs j
                 WHERE phase = a.p AND destination_id = a.d AND run_at <= now()
                   AND (a.p = 1 OR {served})
                 ORDER BY run_at LIMIT a.n
                 FOR UPDATE SKIP LOCKED) j
         )
         UPDATE jobs SET lease_token = $4, run_at = now() + $5::bigint * interval '1 millisecond'
         FROM picked WHERE jobs.request_id = picked.request_id
         RETURNING jobs.request_id, jobs.destination_id, jobs.phase, jobs.attempt_base,
                   jobs.manual, jobs.expires_at",
        served = served_filter("$6")
    );
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&dests)
        .bind(&phases)
        .bind(&takes)
        .bind(token)
        .bind(duration_ms(lease_for))
        .bind(served)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok(Taken {
                request_id: r.try_get("request_id")?,
                destination: r.try_get("destination_id")?,
                phase: r.try_get("phase")?,
                attempt_base: r.try_get("attempt_base")?,
                manual: r.try_get("manual")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?)
}

/// Probes hold the block for one more cool-down while they run; every delivery queue
/// served is next due at its earliest job, never before its block ends.
async fn settle_delivery_queues(
    c: &mut PgConnection,
    queues: Vec<Queue>,
    rated: &Rated,
) -> StoreResult<()> {
    let served: Vec<i64> = queues
        .iter()
        .filter(|q| {
            q.phase == Phase::Delivery && (q.slots > 0 || rated.contains_key(&q.destination))
        })
        .map(|q| q.destination)
        .collect();
    // Waits for the delivery writes in flight; the statements below see them all. Taken
    // before any destination row is written: a record batch takes the guard before it
    // writes those rows, so the other order could deadlock with it.
    let mut guarded = served.clone();
    guarded.sort_unstable();
    guard(c, DELIVERY_GUARD, &guarded, false).await?;
    let mut reserved: Vec<i64> = Vec::new();
    let mut advance_ms: Vec<i64> = Vec::new();
    for q in queues
        .iter()
        .filter(|q| q.phase == Phase::Delivery && q.taken > 0)
    {
        if let Some(&(rate, _)) = rated.get(&q.destination) {
            reserved.push(q.destination);
            advance_ms.push(rate::advance_ms(rate, q.taken));
        }
    }
    if !reserved.is_empty() {
        sqlx::query(
            "UPDATE destinations d
             SET rate_tat = greatest(d.rate_tat, now()) + u.ms * interval '1 millisecond'
             FROM unnest($1::bigint[], $2::bigint[]) AS u(id, ms) WHERE d.id = u.id",
        )
        .bind(&reserved)
        .bind(&advance_ms)
        .execute(&mut *c)
        .await?;
    }
    let probed: Vec<i64> = queues
        .iter()
        .filter(|q| q.probe && q.taken > 0)
        .map(|q| q.destination)
        .collect();
    if !probed.is_empty() {
        sqlx::query(
            "UPDATE destinations
             SET blocked_until = now() + coalesce(cooldown_ms, 0) * interval '1 millisecond'
             WHERE id = ANY($1)",
        )
        .bind(&probed)
        .execute(&mut *c)
        .await?;
    }
    if !served.is_empty() {
        sqlx::query(
            "UPDATE destinations d SET deliver_due_at = (
                 SELECT CASE WHEN min(j.run_at) IS NULL THEN NULL
                             ELSE greatest(min(j.run_at), d.blocked_until, d.rate_tat) END
                 FROM jobs j WHERE j.phase = 1 AND j.destination_id = d.id)
             WHERE d.id = ANY($1)",
        )
        .bind(&served)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Marks the pending requests among `ids` (those of work-phase jobs) `processing`,
/// counted, and reads every one of them, in one statement. The SELECT reads the rows as
/// they were before its UPDATE: a row the UPDATE moved reads `pending` and is in `marked`.
async fn mark_and_read(
    c: &mut PgConnection,
    d: &mut Deltas,
    ids: &[Uuid],
) -> StoreResult<Vec<PgRow>> {
    let rows = sqlx::query(
        "WITH marked AS (
             UPDATE requests SET status = 'processing', started_at = now()
             WHERE id = ANY($1) AND status = 'pending'
             RETURNING id)
         SELECT r.id, r.input_data, r.callback_url, r.trace_id, r.created_at,
                r.callback_attempts, r.callback_body, r.output_data, r.error, r.completed_at,
                r.work, r.upstream_key, r.tenant, m.id IS NOT NULL AS moved,
                r.status = 'processing' OR m.id IS NOT NULL AS marked_processing
         FROM requests r LEFT JOIN marked m ON m.id = r.id
         WHERE r.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *c)
    .await?;
    let (from, to) = (
        state_code(
            Mode::Async,
            RequestStatus::Pending,
            Some(CallbackStatus::Pending),
        ),
        state_code(
            Mode::Async,
            RequestStatus::Processing,
            Some(CallbackStatus::Pending),
        ),
    );
    for row in &rows {
        if row.try_get("moved")? {
            let work: Option<&str> = row.try_get("work")?;
            d.moved(row.try_get::<&str, _>("tenant")?, work, from, to);
        }
    }
    Ok(rows)
}

/// Marks the requests of work-phase jobs `processing` and builds what the workers need:
/// one statement per claim (see `JobStore::mark_processing` for why SQLite waits).
async fn hand_out(
    c: &mut PgConnection,
    d: &mut Deltas,
    leased: Vec<(Queue, Taken)>,
    destinations: &HashMap<i64, Destination>,
    token: Uuid,
) -> StoreResult<Vec<ClaimedJob>> {
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = leased.iter().map(|(_, t)| t.request_id).collect();
    let rows = mark_and_read(c, d, &ids).await?;
    let by_id: HashMap<Uuid, &PgRow> = rows
        .iter()
        .map(|r| r.try_get::<Uuid, _>("id").map(|id| (id, r)))
        .collect::<Result<_, _>>()?;
    let mut jobs = Vec::with_capacity(leased.len());
    for (queue, job) in leased {
        let id = job.request_id;
        let (Some(r), Some(destination)) = (by_id.get(&id), destinations.get(&queue.destination))
        else {
            return Err(StoreError::Corrupt(format!(
                "job {id} without its request or destination"
            )));
        };
        jobs.push(ClaimedJob {
            lease: Lease {
                request_id: id,
                token,
            },
            phase: queue.phase,
            destination: destination.clone(),
            probe: queue.probe,
            input_data: r.try_get("input_data")?,
            callback_url: r
                .try_get::<Option<String>, _>("callback_url")?
                .unwrap_or_default(),
            trace_id: r.try_get("trace_id")?,
            created_at: r.try_get("created_at")?,
            attempts_made: r.try_get::<i32, _>("callback_attempts")? as u32,
            attempt_base: job.attempt_base as u32,
            manual: job.manual,
            callback_body: r.try_get("callback_body")?,
            output_data: r.try_get("output_data")?,
            error: r.try_get("error")?,
            completed_at: r.try_get("completed_at")?,
            expires_at: job.expires_at,
            work: r.try_get("work")?,
            upstream_key: r.try_get("upstream_key")?,
            marked_processing: r.try_get("marked_processing")?,
        });
    }
    Ok(jobs)
}

/// See `Store::next_due_at`; computed on the database clock and returned as an offset
/// from this process's now, which is what the engine sleeps against.
pub(super) async fn next_due_at(
    c: &mut PgConnection,
    at_cap: &[i64],
    works: &Served,
) -> StoreResult<Option<DateTime<Utc>>> {
    let sql = format!(
        "SELECT (extract(epoch FROM least(
                    (SELECT run_at FROM jobs j WHERE phase = 0 AND {served}
                     ORDER BY run_at LIMIT 1),
                    (SELECT deliver_due_at FROM destinations
                     WHERE deliver_due_at IS NOT NULL AND paused_since IS NULL
                       AND NOT (id = ANY($1))
                     ORDER BY deliver_due_at LIMIT 1)) - now()) * 1000)::float8",
        served = served_filter("$2")
    );
    let from_now_ms: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(at_cap)
        .bind(works.names())
        .fetch_one(&mut *c)
        .await?;
    Ok(from_now_ms.map(|ms| Utc::now() + chrono::TimeDelta::milliseconds(ms.ceil() as i64)))
}
