//! Admissions without an idempotency key, in batches (SPEC §14's throughput work).
//!
//! Each admission used to be a statement and a commit of its own: at 2,000 requests a
//! second on PostgreSQL that was 2,000 WAL flushes and 2,000 executions of a five-part
//! statement a second, most of the database's CPU. Now the [`admitter`] writes the
//! admissions queued meanwhile as one multi-row insert and one commit; alone, an
//! admission is still the single statement of [`requests::insert_with_job`]. The 202
//! follows the commit either way.
//!
//! A batch that fails (a destination deleted as unused since its id was remembered, say)
//! is written again one admission at a time, so each caller hears its own answer.

use std::sync::Arc;

use sqlx::postgres::{PgConnection, PgPool};
use uuid::Uuid;

use super::batch::{Batcher, Reply, together_or_alone};
use super::{Writer, classify, counts, ms, requests};
use crate::store::counts::Deltas;
use crate::store::*;

/// Admissions written in one transaction at most.
const BATCH: usize = 128;
/// Batch transactions at once (each holds one of the API's connections).
const IN_FLIGHT: usize = 4;

/// A request to store, with its destination's id (async only).
#[derive(Debug, Clone)]
pub(super) struct Admit {
    pub req: NewRequest,
    pub destination: Option<i64>,
}

/// Spawns the batching task of keyless admissions on `pool`; /sync records name
/// `instance`.
pub(super) fn admitter(pool: PgPool, writer: Writer, instance: Uuid) -> Batcher<Admit, ()> {
    Batcher::spawn(
        BATCH,
        IN_FLIGHT,
        Arc::new(move |batch| {
            let (pool, writer) = (pool.clone(), writer.clone());
            Box::pin(async move { write(&pool, &writer, instance, batch).await })
        }),
    )
}

async fn write(pool: &PgPool, writer: &Writer, instance: Uuid, batch: Vec<(Admit, Reply<()>)>) {
    let alone = |a: Admit| async move { insert_one(pool, writer, instance, &a).await };
    if batch.len() == 1 {
        // Alone, an admission is its one statement, without BEGIN and COMMIT.
        for (a, reply) in batch {
            let _ = reply.send(alone(a).await);
        }
        return;
    }
    let together = |items: Vec<Admit>| async move {
        let n = items.len();
        writer
            .run(pool, move |c, d| {
                Box::pin(insert_many(c, d, items, instance))
            })
            .await
            .map(|()| vec![(); n])
    };
    together_or_alone(batch, "admission", together, alone).await;
}

/// One admission in one statement, counted.
async fn insert_one(pool: &PgPool, writer: &Writer, instance: Uuid, a: &Admit) -> StoreResult<()> {
    let done =
        requests::insert_with_job(pool, &a.req, a.destination, Some(counts::shard()), instance)
            .await
            .map_err(classify);
    writer.health.note(&done);
    if done.is_ok() {
        let mut d = Deltas::default();
        d.added(
            &a.req.tenant,
            a.req.work.as_deref(),
            requests::state_of_new(&a.req),
        );
        writer.counts.write().expect("counts lock").apply(&d);
    }
    done
}

/// Many admissions in one multi-row insert (requests, then the jobs of async ones).
async fn insert_many(
    c: &mut PgConnection,
    d: &mut Deltas,
    items: Vec<Admit>,
    instance: Uuid,
) -> StoreResult<()> {
    let n = items.len();
    let mut ids = Vec::with_capacity(n);
    let mut tenants = Vec::with_capacity(n);
    let mut modes = Vec::with_capacity(n);
    let mut statuses = Vec::with_capacity(n);
    let mut inputs = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut started = Vec::with_capacity(n);
    let mut traces = Vec::with_capacity(n);
    let mut urls = Vec::with_capacity(n);
    let mut callback_statuses = Vec::with_capacity(n);
    let mut works = Vec::with_capacity(n);
    let mut upstream_keys = Vec::with_capacity(n);
    let mut destinations = Vec::with_capacity(n);
    for Admit { req, destination } in &items {
        ids.push(req.id);
        tenants.push(req.tenant.as_str());
        modes.push(req.mode.as_str());
        statuses.push(req.status.as_str());
        inputs.push(req.input_data.as_str());
        created.push(ms(req.created_at));
        started.push(req.status == RequestStatus::Processing);
        traces.push(req.trace_id.as_str());
        urls.push(req.callback_url.as_deref());
        callback_statuses
            .push((req.mode == Mode::Async).then_some(CallbackStatus::Pending.as_str()));
        works.push(req.work.as_deref());
        upstream_keys.push(req.upstream_key.as_deref());
        destinations.push(*destination);
        d.added(
            &req.tenant,
            req.work.as_deref(),
            requests::state_of_new(req),
        );
    }
    sqlx::query(
        "WITH new AS (
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::timestamptz[], $7::bool[], $8::text[], $9::text[],
                                  $10::text[], $11::text[], $12::text[], $13::bigint[])
                 AS u(id, tenant, mode, status, input, created, started, trace, url,
                      callback_status, work, upstream_key, destination)
         ), request AS (
             INSERT INTO requests (id, tenant, mode, status, input_data, created_at, started_at,
                                   trace_id, callback_url, callback_status, work, upstream_key,
                                   instance_id)
             SELECT id, tenant, mode, status, input, created, CASE WHEN started THEN now() END,
                    trace, url, callback_status, work, upstream_key,
                    CASE WHEN started THEN $14::uuid END
             FROM new
             RETURNING id
         )
         INSERT INTO jobs (request_id, destination_id, phase, run_at)
         SELECT new.id, new.destination, 0, now() FROM request JOIN new ON new.id = request.id
         WHERE new.mode = 'async'",
    )
    .bind(&ids)
    .bind(&tenants)
    .bind(&modes)
    .bind(&statuses)
    .bind(&inputs)
    .bind(&created)
    .bind(&started)
    .bind(&traces)
    .bind(&urls)
    .bind(&callback_statuses)
    .bind(&works)
    .bind(&upstream_keys)
    .bind(&destinations)
    .bind(instance)
    .execute(&mut *c)
    .await?;
    Ok(())
}
