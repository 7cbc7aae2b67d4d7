//! Outcome records in batches (SPEC §14, "claims and outcomes batched").
//!
//! Every worker used to record its job's work and each attempt in a transaction of its
//! own: eight statements and a commit per record, on the engine's few connections, so
//! the engine delivered a few hundred callbacks a second however fast the receiver was.
//! Now the [`recorder`] queues the record and one task writes everything queued
//! meanwhile in one transaction of set-based statements (at most [`BATCH`] records, at
//! most [`IN_FLIGHT`] transactions at once), answering each worker on its own.
//!
//! The transaction keeps the per-record protocol (`jobs.rs`), in this lock order: the job
//! rows first (in id order, `FOR UPDATE`), then the requests (in id order), then their
//! destinations' delivery guards (shared, in id order) and rows, then the count rows. The
//! guards come after the writes no claim waits for, so that a claim, which takes them in
//! exclusive mode, waits for a batch's last statements only. A record whose lease is
//! gone is answered `false` and writes nothing, as before. A record that opens or closes
//! a circuit is written alone. When a batch fails for any reason but an unavailable
//! database (a deadlock with a rare writer, say), each of its records is written alone,
//! so one bad record never fails the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

mod attempts;

use super::batch::{Batcher, Reply, together_or_alone};
use super::{Writer, jobs, ms, ms_from_now};
use crate::store::counts::Deltas;
use crate::store::*;

/// Records written in one transaction at most.
const BATCH: usize = 256;
/// Batch transactions at once (each holds one of the engine's connections).
const IN_FLIGHT: usize = 2;

/// One outcome to record while its lease is held.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Work {
        lease: Lease,
        done: FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    },
    Attempt {
        lease: Lease,
        attempt: AttemptRecord,
        next: NextStep,
        circuit: Option<CircuitChange>,
    },
}

impl Outcome {
    fn lease(&self) -> Lease {
        match self {
            Outcome::Work { lease, .. } | Outcome::Attempt { lease, .. } => *lease,
        }
    }

    /// Written alone, by the per-record statements of `jobs.rs`.
    async fn write_alone(self, c: &mut PgConnection, d: &mut Deltas) -> StoreResult<bool> {
        match self {
            Outcome::Work {
                lease,
                done,
                after,
                expires_at,
            } => jobs::record_work(c, d, lease, done, after, expires_at).await,
            Outcome::Attempt {
                lease,
                attempt,
                next,
                circuit,
            } => jobs::record_attempt(c, d, lease, attempt, next, circuit).await,
        }
    }
}

/// Spawns the batching task of the engine's records.
pub(super) fn recorder(engine: PgPool, writer: Writer) -> Batcher<Outcome, bool> {
    Batcher::spawn(
        BATCH,
        IN_FLIGHT,
        Arc::new(move |batch| {
            let (engine, writer) = (engine.clone(), writer.clone());
            Box::pin(async move { write(&engine, &writer, batch).await })
        }),
    )
}

/// Writes a batch and answers every record in it; a record that opens or closes a
/// circuit is written alone.
async fn write(engine: &PgPool, writer: &Writer, batch: Vec<(Outcome, Reply<bool>)>) {
    let alone = |outcome: Outcome| async move {
        writer
            .run(engine, move |c, d| -> BoxFuture<'_, StoreResult<bool>> {
                Box::pin(outcome.write_alone(c, d))
            })
            .await
    };
    let (circuits, together): (Vec<_>, Vec<_>) = batch.into_iter().partition(|(o, _)| {
        matches!(
            o,
            Outcome::Attempt {
                circuit: Some(_),
                ..
            }
        )
    });
    for (outcome, reply) in circuits {
        let _ = reply.send(alone(outcome).await);
    }
    if !together.is_empty() {
        let write_all = |outcomes: Vec<Outcome>| {
            writer.run(engine, move |c, d| Box::pin(write_together(c, d, outcomes)))
        };
        together_or_alone(together, "record", write_all, alone).await;
    }
}

/// Writes outcomes without circuit changes in one transaction; whether each one's lease
/// held, in order.
async fn write_together(
    c: &mut PgConnection,
    d: &mut Deltas,
    outcomes: Vec<Outcome>,
) -> StoreResult<Vec<bool>> {
    let leases: Vec<Lease> = outcomes.iter().map(Outcome::lease).collect();
    let held = hold_leases(c, &leases).await?;
    let mut lower: BTreeMap<i64, i64> = BTreeMap::new();
    let mut works = Vec::new();
    let mut attempts = Vec::new();
    for o in &outcomes {
        if !held.contains_key(&o.lease().request_id) {
            continue;
        }
        match o {
            Outcome::Work { .. } => works.push(o),
            Outcome::Attempt { .. } => attempts.push(o),
        }
    }
    store_works(c, d, &works).await?;
    for (destination, offset) in move_to_delivery(c, &works).await? {
        lower_min(&mut lower, destination, offset);
    }
    attempts::store(c, d, &attempts).await?;
    for (destination, offset) in attempts::reschedule_or_end(c, &attempts, &held).await? {
        lower_min(&mut lower, destination, offset);
    }
    // The delivery guards last, held from here to the commit only: what makes a delivery
    // due on the destinations' rows is written under them, after the jobs (see
    // `share_deliveries_of`).
    share_deliveries_of(c, &held).await?;
    attempts::note_errors(c, &attempts, &held).await?;
    lower_deliver_due(c, &lower).await?;
    Ok(leases
        .iter()
        .map(|l| held.contains_key(&l.request_id))
        .collect())
}

fn lower_min(lower: &mut BTreeMap<i64, i64>, destination: Option<i64>, offset: i64) {
    if let Some(id) = destination {
        let e = lower.entry(id).or_insert(offset);
        *e = (*e).min(offset);
    }
}

/// The jobs whose lease still holds, locked in id order, with their destinations.
async fn hold_leases(
    c: &mut PgConnection,
    leases: &[Lease],
) -> StoreResult<HashMap<Uuid, Option<i64>>> {
    let ids: Vec<Uuid> = leases.iter().map(|l| l.request_id).collect();
    let tokens: Vec<Uuid> = leases.iter().map(|l| l.token).collect();
    let rows = sqlx::query(
        "SELECT j.request_id, j.destination_id FROM jobs j
         JOIN unnest($1::uuid[], $2::uuid[]) AS held(id, token)
           ON j.request_id = held.id AND j.lease_token = held.token
         WHERE j.run_at > now()
         ORDER BY j.request_id FOR UPDATE OF j",
    )
    .bind(&ids)
    .bind(&tokens)
    .fetch_all(&mut *c)
    .await?;
    let mut held = HashMap::with_capacity(rows.len());
    for r in &rows {
        held.insert(
            r.try_get::<Uuid, _>("request_id")?,
            r.try_get::<Option<i64>, _>("destination_id")?,
        );
    }
    Ok(held)
}

/// Shares the delivery guards of the held jobs' destinations, in id order, until the
/// commit. A claim recomputes a destination's due time under the guard in exclusive mode
/// (`claim.rs`), so either it ran first and this batch's lowering of the due time comes
/// after it, or it waits for this batch's commit and sees its jobs. The guards are taken
/// after the batch's writes to jobs, requests and attempts (none of which a claim waits
/// for: it skips locked jobs), so a claim waits for a batch's last statements and its
/// commit, not for the whole batch.
async fn share_deliveries_of(
    c: &mut PgConnection,
    held: &HashMap<Uuid, Option<i64>>,
) -> StoreResult<()> {
    let mut destinations: Vec<i64> = held.values().flatten().copied().collect();
    destinations.sort_unstable();
    destinations.dedup();
    if !destinations.is_empty() {
        super::guard::share_deliveries(c, &destinations).await?;
    }
    Ok(())
}

/// Counts the moves of requests updated with `RETURNING tenant, work, before, after`.
pub(super) fn count_moves(d: &mut Deltas, rows: &[sqlx::postgres::PgRow]) -> StoreResult<()> {
    let now = Utc::now();
    for row in rows {
        let tenant: &str = row.try_get("tenant")?;
        let work: Option<&str> = row.try_get("work")?;
        let before: i16 = row.try_get("before")?;
        let after: i16 = row.try_get("after")?;
        d.moved(tenant, work, before.into(), after.into());
        if let (Some(CallbackStatus::Pending), Some(ended)) = (
            callback_of_state(before.into()),
            callback_of_state(after.into()),
        ) && ended != CallbackStatus::Pending
        {
            d.ended(tenant, now, ended == CallbackStatus::Sent);
        }
    }
    Ok(())
}

/// `requests::store_work` for many requests.
async fn store_works(c: &mut PgConnection, d: &mut Deltas, works: &[&Outcome]) -> StoreResult<()> {
    if works.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut statuses = Vec::new();
    let mut outputs = Vec::new();
    let mut errors = Vec::new();
    let mut completed = Vec::new();
    let mut work_attempts = Vec::new();
    for o in works {
        if let Outcome::Work { lease, done, .. } = o {
            ids.push(lease.request_id);
            statuses.push(done.status.as_str());
            outputs.push(done.output_data.as_deref());
            errors.push(done.error.as_deref());
            completed.push(ms(done.completed_at));
            work_attempts.push(done.work_attempts.as_deref());
        }
    }
    let rows = sqlx::query(
        "UPDATE requests r
         SET status = old.status_new, output_data = old.output, error = old.err,
             completed_at = old.done_at, work_attempts = old.attempts
         FROM (SELECT o.id, o.state, u.status_new, u.output, u.err, u.done_at, u.attempts
               FROM requests o
               JOIN unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                           $6::text[]) AS u(id, status_new, output, err, done_at, attempts)
                 ON o.id = u.id
               ORDER BY o.id FOR UPDATE OF o) old
         WHERE r.id = old.id
         RETURNING r.tenant, r.work, old.state AS before, r.state AS after",
    )
    .bind(&ids)
    .bind(&statuses)
    .bind(&outputs)
    .bind(&errors)
    .bind(&completed)
    .bind(&work_attempts)
    .fetch_all(&mut *c)
    .await?;
    count_moves(d, &rows)
}

/// `jobs::record_work`'s move of each job to its delivery phase; the destinations whose
/// deliveries become due, with the offset from now (ms).
async fn move_to_delivery(
    c: &mut PgConnection,
    works: &[&Outcome],
) -> StoreResult<Vec<(Option<i64>, i64)>> {
    if works.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    let mut expires = Vec::new();
    let mut waits = Vec::new();
    for o in works {
        if let Outcome::Work {
            lease,
            after,
            expires_at,
            ..
        } = o
        {
            ids.push(lease.request_id);
            expires.push(ms_from_now(*expires_at));
            waits.push(*after == AfterWork::Wait);
        }
    }
    let rows = sqlx::query(
        "UPDATE jobs SET phase = 1, expires_at = now() + u.expires_ms * interval '1 millisecond',
                lease_token = CASE WHEN u.wait THEN NULL ELSE lease_token END,
                run_at = CASE WHEN u.wait THEN now() ELSE run_at END,
                paused_base_ms = coalesce((SELECT d.paused_total_ms
                     + CASE WHEN d.paused_since IS NULL THEN 0
                            ELSE (extract(epoch FROM now() - d.paused_since) * 1000)::bigint END
                     FROM destinations d WHERE d.id = jobs.destination_id), 0)
         FROM unnest($1::uuid[], $2::bigint[], $3::bool[]) AS u(id, expires_ms, wait)
         WHERE jobs.request_id = u.id
         RETURNING jobs.destination_id, (extract(epoch FROM jobs.run_at - now()) * 1000)::float8 AS offset_ms",
    )
    .bind(&ids)
    .bind(&expires)
    .bind(&waits)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<Option<i64>, _>("destination_id")?,
                r.try_get::<f64, _>("offset_ms")?.ceil() as i64,
            ))
        })
        .collect()
}

/// `jobs::lower_deliver_due` for many destinations, in id order.
async fn lower_deliver_due(c: &mut PgConnection, lower: &BTreeMap<i64, i64>) -> StoreResult<()> {
    if lower.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = lower.keys().copied().collect();
    let offsets: Vec<i64> = lower.values().copied().collect();
    sqlx::query(
        "UPDATE destinations d
         SET deliver_due_at = greatest(now() + u.ms * interval '1 millisecond', d.blocked_until)
         FROM unnest($1::bigint[], $2::bigint[]) AS u(id, ms)
         WHERE d.id = u.id AND (d.deliver_due_at IS NULL OR d.deliver_due_at >
               greatest(now() + u.ms * interval '1 millisecond', d.blocked_until))",
    )
    .bind(&ids)
    .bind(&offsets)
    .execute(&mut *c)
    .await?;
    Ok(())
}
