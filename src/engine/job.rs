//! One job: run the work if it is not done yet, then — when the destination's cap and
//! circuit allow — make one delivery attempt ([`attempt`](super::attempt)), and record
//! each step only while the lease is still ours.
//!
//! The HTTP call happens outside any database transaction: claim (transaction 1) →
//! work and callback (no transaction) → record (transaction 2). If the process dies in
//! between, the lease expires and the job runs again; the callback body was fixed when
//! the work ended, so a repeated delivery sends the same bytes with the same `webhook-id`.

use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;

use super::Engine;
use super::destinations::Admit;
use crate::delivery;
use crate::intake::run_work;
use crate::store::{AfterWork, ClaimedJob, FinishedWork, Mode, Phase, RequestStatus, StoreError};
use crate::telemetry::metrics as m;
use crate::telemetry::trace_context;
use crate::work::StoredInput;

/// How long a work runs before its request is marked `processing`, unless the claim did
/// it (PostgreSQL): a record reads `pending` until then. Most works of a
/// busy service end sooner, and their records are written once, at their end.
const PROCESSING_AFTER: Duration = Duration::from_millis(50);

/// A slot of a destination's cap held by this job; given back if the job ends without
/// reporting an outcome (a lost lease, a failed write, an abort at shutdown).
pub(super) struct Slot<'a> {
    engine: &'a Engine,
    destination: i64,
    held: bool,
}

impl<'a> Slot<'a> {
    fn new(engine: &'a Engine, destination: i64) -> Self {
        Self {
            engine,
            destination,
            held: true,
        }
    }

    /// The attempt ended; its outcome gives the slot back.
    pub(super) fn release(mut self) {
        self.held = false;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if self.held {
            let mut book = self.engine.destinations();
            let was_full = book.full(self.destination);
            book.abandon(self.destination);
            if was_full {
                self.engine.wake.notify_one();
            }
        }
    }
}

/// One claimed job as it runs here: the engine it runs in, and the job. Its steps — the
/// work, then one delivery attempt ([`attempt`](super::attempt)) — are its methods.
pub(super) struct JobRun<'a> {
    engine: &'a Engine,
    job: ClaimedJob,
}

impl Engine {
    /// Runs one claimed job as far as it goes now.
    pub(super) async fn run_job(&self, job: ClaimedJob) {
        JobRun { engine: self, job }.run().await
    }
}

impl<'a> JobRun<'a> {
    /// The engine it runs in.
    pub(super) fn engine(&self) -> &'a Engine {
        self.engine
    }

    /// The job as claimed.
    pub(super) fn job(&self) -> &ClaimedJob {
        &self.job
    }

    /// Runs the job in its span, its lease kept with every other running job's, and logs
    /// why it stopped early when it did.
    async fn run(self) {
        let job = &self.job;
        let lease = job.lease;
        let span = tracing::info_span!(
            "job",
            request_id = %lease.request_id,
            trace_id = %job.trace_id,
            attempt = job.attempts_made + 1,
        );
        trace_context::resume(&span, &job.trace_id);
        // Renewed by the keeper, with every other running job's lease, until dropped. A
        // lost lease shows when the job records its progress (the store checks it):
        // the job's own record may end the lease in the very commit a renewal shares.
        let kept = self.engine.leases.keep(lease);
        let outcome = self.work_and_deliver().instrument(span.clone()).await;
        drop(kept);
        if let Err(e) = outcome {
            span.in_scope(|| match e {
                JobError::LeaseLost => tracing::warn!("lease lost; another worker owns this job now"),
                JobError::Store(e) => {
                    metrics::counter!(m::DB_ERRORS, "op" => "record").increment(1);
                    tracing::warn!(error = %e, "could not record the job's progress; it will run again when its lease expires")
                }
            });
        }
    }

    async fn work_and_deliver(&self) -> Result<(), JobError> {
        let job = &self.job;
        let (body, expires_at, slot) = match (job.phase, stored_body(job), job.expires_at) {
            (Phase::Delivery, Some(body), Some(expires_at)) => {
                let Some(slot) = self.take_slot() else {
                    // Work that ended since the claim took the last slot, or this
                    // instance has just opened the circuit: wait.
                    self.engine.store.release_lease(job.lease).await?;
                    return Ok(());
                };
                (body, expires_at, slot)
            }
            _ => match self.work().await? {
                Some(ready) => ready,
                None => return Ok(()),
            },
        };
        self.attempt(&body, expires_at, slot).await
    }

    /// A slot of the destination's cap for an attempt now, if one is free and this
    /// instance has not just opened the circuit (a probe always gets one).
    fn take_slot(&self) -> Option<Slot<'a>> {
        let id = self.job.destination.id;
        let begun = self
            .engine
            .destinations()
            .begin(id, self.job.probe, Utc::now());
        begun.then(|| Slot::new(self.engine, id))
    }

    /// Runs the work and stores its end with the callback body. Returns the body and the
    /// delivery's expiry when this worker attempts it now (holding a slot of the
    /// destination's cap), `None` when the job waits for the cap or the circuit.
    async fn work(&self) -> Result<Option<(String, chrono::DateTime<Utc>, Slot<'a>)>, JobError> {
        let job = &self.job;
        if let Some(wait) = self.work_is_full() {
            // SPEC §13 "Isolation": over its work's max_in_flight a job waits in the store,
            // holding no worker and no lease, so a hung upstream cannot fill the pools.
            tracing::debug!(work = ?job.work, "work at max_in_flight; the job waits");
            self.engine.store.defer_work(job.lease, wait).await?;
            return Ok(None);
        }
        let (done, body) = self.work_seen_running().await?;
        let expires_at = done.completed_at + self.engine.config.expire_after;
        let admit = self
            .engine
            .destinations()
            .admits(&job.destination, Utc::now());
        let after = match admit {
            Admit::Attempt => AfterWork::Deliver,
            Admit::AtCap | Admit::CircuitOpen | Admit::Held => AfterWork::Wait,
        };
        let recorded = until_recorded(|| {
            self.engine
                .store
                .record_work(job.lease, &done, after, expires_at)
        })
        .await?;
        if !recorded {
            return Err(JobError::LeaseLost);
        }
        let named = job
            .work
            .as_deref()
            .is_some_and(|w| w != crate::works::registry::TEXT);
        match &done.error {
            None => tracing::info!(status = "completed", "work done"),
            // A named work's error may quote its upstream's body, which logs never carry.
            Some(_) if named => {
                tracing::warn!(status = "failed", work = ?job.work, "work done; the work failed")
            }
            Some(error) => tracing::warn!(status = "failed", %error, "work done; the work failed"),
        }
        match admit {
            // The slot is taken only now, so the cap counts attempts under way rather
            // than records being written; should the last have gone meanwhile, the
            // delivery waits for a claim like any other.
            Admit::Attempt => match self.take_slot() {
                Some(slot) => Ok(Some((body, expires_at, slot))),
                None => {
                    self.engine.store.release_lease(job.lease).await?;
                    Ok(None)
                }
            },
            why => {
                if why == Admit::CircuitOpen {
                    metrics::counter!(m::CALLBACK_DEFERRED).increment(1);
                }
                tracing::debug!(reason = ?why, origin = %job.destination.origin, "delivery waits");
                Ok(None)
            }
        }
    }

    /// Runs the work; once it has run for [`PROCESSING_AFTER`], its request is marked
    /// `processing` while it goes on (`JobStore::mark_processing`). On SQLite a faster
    /// work's record goes from `pending` to its end in one write (README, "Choices where
    /// the spec is silent").
    async fn work_seen_running(&self) -> Result<(FinishedWork, String), JobError> {
        let started_at = Utc::now();
        let work = self.do_the_work();
        if self.job.marked_processing {
            return Ok(work.await);
        }
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => Ok(out),
            () = tokio::time::sleep(PROCESSING_AFTER) => {
                let mark = self.engine.store.mark_processing(self.job.lease, started_at);
                let (out, marked) = tokio::join!(work, mark);
                match marked {
                    Ok(true) => Ok(out),
                    Ok(false) => Err(JobError::LeaseLost),
                    // Only what a reader sees meanwhile: the work's end is still recorded.
                    Err(e) => {
                        metrics::counter!(m::DB_ERRORS, "op" => "record").increment(1);
                        tracing::warn!(error = %e, "could not mark the request processing");
                        Ok(out)
                    }
                }
            }
        }
    }

    /// For a job of a named work whose slots (its `max_in_flight`, or its share of
    /// `--work-workers`) are all taken here: how long it waits before it is claimed again,
    /// a quarter of the work's timeout, from 100 ms to 2 s.
    fn work_is_full(&self) -> Option<std::time::Duration> {
        let name = self
            .job
            .work
            .as_deref()
            .filter(|w| *w != crate::works::registry::TEXT)?;
        let work = self.engine.config.works.named(name)?;
        let full = work.slots.available_permits() == 0
            || self.engine.config.works.pool().available_permits() == 0;
        let wait = (work.settings.timeout / 4).clamp(
            std::time::Duration::from_millis(100),
            std::time::Duration::from_secs(2),
        );
        full.then_some(wait)
    }

    /// The work itself, and the finished record and callback body it makes.
    async fn do_the_work(&self) -> (FinishedWork, String) {
        let job = &self.job;
        let input = serde_json::from_str::<StoredInput>(&job.input_data)
            .map_err(|e| e.to_string())
            .and_then(|i| {
                i.into_input()
                    .map_err(|_| "stored input out of range".to_owned())
            });
        let (result, work_attempts) = match (job.work.as_deref(), input) {
            (Some(name), _) if name != crate::works::registry::TEXT => {
                let (result, attempts) = self.run_named_work(name).await;
                (result, Some(crate::works::run::attempts_json(&attempts)))
            }
            (_, Ok(input)) => (
                run_work(&input, self.engine.config.work_delay, Mode::Async)
                    .await
                    .map(|r| delivery::payload::result_json(&r)),
                None,
            ),
            (_, Err(e)) => (Err(format!("the stored input cannot be read: {e}")), None),
        };
        let completed_at = Utc::now();
        let done = FinishedWork {
            status: match result.is_ok() {
                true => RequestStatus::Completed,
                false => RequestStatus::Failed,
            },
            output_data: result.as_ref().ok().cloned(),
            error: result.as_ref().err().cloned(),
            completed_at,
            work_attempts,
        };
        let body = body_of(
            job.lease.request_id,
            &done.output_data,
            &done.error,
            completed_at,
            job.work.as_deref(),
        );
        (done, body)
    }

    /// A named work's attempts (SPEC §13 "Async"), bounded by the request's expiry
    /// counted from its creation (§17). The idempotency-key is the request id.
    async fn run_named_work(
        &self,
        name: &str,
    ) -> (Result<String, String>, Vec<crate::works::run::WorkAttempt>) {
        let job = &self.job;
        let Some(work) = self.engine.config.works.named(name) else {
            let error = format!("this instance does not serve the work {name:?}");
            return (Err(error), Vec::new());
        };
        let call = crate::works::WorkCall {
            request_id: job.lease.request_id,
            input: job.input_data.clone(),
            tenant: job.destination.tenant.clone(),
            traceparent: Some(trace_context::outgoing(
                &tracing::Span::current(),
                &job.trace_id,
            )),
            idempotency_key: job
                .upstream_key
                .clone()
                .unwrap_or_else(|| job.lease.request_id.to_string()),
            attempt: 1,
        };
        let expires = job.created_at + self.engine.config.expire_after;
        let left = (expires - Utc::now()).to_std().unwrap_or_default();
        let deadline = tokio::time::Instant::now() + left;
        let attempts = crate::works::run::run_attempts(
            work,
            call,
            self.engine.config.base_delay,
            deadline,
            self.engine.config.works.pool(),
        );
        self.engine.without_seat(attempts).await
    }
}

/// The callback body of a job whose work is done: the one an earlier version stored, or
/// made from the stored outcome (the same bytes on every attempt).
fn stored_body(job: &ClaimedJob) -> Option<String> {
    if let Some(body) = &job.callback_body {
        return Some(body.clone());
    }
    let completed_at = job.completed_at?;
    Some(body_of(
        job.lease.request_id,
        &job.output_data,
        &job.error,
        completed_at,
        job.work.as_deref(),
    ))
}

fn body_of(
    request_id: uuid::Uuid,
    output: &Option<String>,
    error: &Option<String>,
    completed_at: chrono::DateTime<Utc>,
    work: Option<&str>,
) -> String {
    let result = match (output, error) {
        (Some(json), _) => Ok(json.as_str()),
        (None, Some(e)) => Err(e.as_str()),
        (None, None) => Err("the work ended without a result"),
    };
    // Whole milliseconds, as the record keeps the time: later attempts match the first.
    let at = chrono::DateTime::from_timestamp_millis(completed_at.timestamp_millis())
        .unwrap_or(completed_at);
    delivery::payload::work_callback_body(request_id, result, at, work)
}

/// How long a record of a job's progress is retried while the database is unavailable.
const RECORD_RETRY_FOR: Duration = Duration::from_secs(120);
/// Longest pause between two tries.
const RECORD_RETRY_MAX_WAIT: Duration = Duration::from_secs(2);

/// Runs `record` until it lands: a database briefly unavailable (a connection pool
/// exhausted beside a flood of admissions) must not turn an attempt already made into
/// one made again by the next owner (SPEC §16). The lease stays ours meanwhile (the
/// keeper renews it); other errors, and an outage past [`RECORD_RETRY_FOR`], end the
/// job as before (its lease then expires and it runs again).
pub(super) async fn until_recorded<F, Fut>(mut record: F) -> Result<bool, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    let give_up = tokio::time::Instant::now() + RECORD_RETRY_FOR;
    let mut wait = Duration::from_millis(100);
    loop {
        match record().await {
            Err(StoreError::Unavailable(e)) if tokio::time::Instant::now() < give_up => {
                metrics::counter!(m::DB_ERRORS, "op" => "record").increment(1);
                tracing::debug!(error = %e, retry_in_ms = wait.as_millis() as u64, "could not record the job's progress yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RECORD_RETRY_MAX_WAIT);
            }
            other => return other,
        }
    }
}

pub(super) enum JobError {
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Store(e)
    }
}
