//! One job: run the work if it is not done yet, then make one delivery attempt, and
//! record each step only while the lease is still ours.
//!
//! The HTTP call happens outside any database transaction: claim (transaction 1) →
//! work and callback (no transaction) → record (transaction 2). If the process dies in
//! between, the lease expires and the job runs again; the callback body was fixed when
//! the work ended, so a repeated delivery sends the same bytes with the same `webhook-id`.

use std::time::Duration;

use chrono::Utc;
use tracing::Instrument;

use super::Engine;
use crate::auth::DEFAULT_TENANT;
use crate::delivery::{self, Delivery, Verdict};
use crate::intake::run_work;
use crate::store::{
    AttemptRecord, ClaimedJob, FinishedWork, Lease, Mode, NextStep, RequestStatus, StoreError,
};
use crate::telemetry::metrics as m;
use crate::telemetry::trace_context;
use crate::work::WorkInput;

/// The stored input as the intake wrote it.
#[derive(serde::Deserialize)]
struct StoredInput {
    text: String,
    count: i64,
}

impl Engine {
    pub(super) async fn run_job(&self, job: ClaimedJob) {
        let lease = job.lease;
        let span = tracing::info_span!(
            "job",
            request_id = %lease.request_id,
            trace_id = %job.trace_id,
            attempt = job.attempts_made + 1,
        );
        trace_context::resume(&span, &job.trace_id);
        let renewal = self.keep_lease(lease);
        let outcome = tokio::select! {
            outcome = self.work_and_deliver(job).instrument(span.clone()) => outcome,
            lost = renewal => Err(lost),
        };
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

    /// Renews the lease every third of its length; returns only if it is lost.
    async fn keep_lease(&self, lease: Lease) -> JobError {
        let period = self.config.lease / 3;
        loop {
            tokio::time::sleep(period).await;
            match self.store.renew_lease(lease, self.config.lease).await {
                Ok(true) => {}
                Ok(false) => return JobError::LeaseLost,
                Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
            }
        }
    }

    async fn work_and_deliver(&self, job: ClaimedJob) -> Result<(), JobError> {
        let lease = job.lease;
        let body = match job.callback_body.clone() {
            Some(body) => body,
            None => self.work(&job).await?,
        };
        let attempt = job.attempts_made + 1;
        let traceparent = trace_context::outgoing(&tracing::Span::current(), &job.trace_id);
        let webhook_id = lease.request_id.to_string();
        let outcome = self
            .client
            .attempt(Delivery {
                url: &job.callback_url,
                webhook_id: &webhook_id,
                body: &body,
                traceparent: &traceparent,
                // Every request is `default`'s until records carry their tenant.
                secrets: &self.secrets.for_tenant(DEFAULT_TENANT),
            })
            .await;
        let next = match &outcome.verdict {
            Verdict::Delivered => NextStep::Delivered,
            Verdict::Permanent => NextStep::GiveUp,
            Verdict::Retry { .. } if attempt >= self.config.max_attempts => NextStep::GiveUp,
            Verdict::Retry { retry_after } => {
                let ended = outcome.started_at + outcome.duration;
                NextStep::RetryAt(
                    ended + delivery::next_delay(attempt, self.config.base_delay, *retry_after),
                )
            }
        };
        let record = AttemptRecord {
            attempt,
            started_at: outcome.started_at,
            duration_ms: outcome.duration.as_secs_f64() * 1e3,
            status_code: outcome.status_code,
            error: outcome.error.clone(),
        };
        if !self.store.record_attempt(lease, &record, &next).await? {
            return Err(JobError::LeaseLost);
        }
        self.report_attempt(&job, &record, &next);
        if matches!(next, NextStep::RetryAt(_)) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Runs the work and stores its end with the callback body; returns the body.
    async fn work(&self, job: &ClaimedJob) -> Result<String, JobError> {
        let input = serde_json::from_str::<StoredInput>(&job.input_data)
            .map_err(|e| e.to_string())
            .and_then(|i| {
                WorkInput::new(i.text, i.count).map_err(|_| "stored input out of range".to_owned())
            });
        let result = match input {
            Ok(input) => run_work(&input, self.config.work_delay, Mode::Async).await,
            Err(e) => Err(format!("the stored input cannot be read: {e}")),
        };
        let completed_at = Utc::now();
        let request_id = job.lease.request_id;
        let body = delivery::callback_body(
            request_id,
            result.as_ref().map_err(String::as_str),
            completed_at,
        );
        let done = FinishedWork {
            status: if result.is_ok() {
                RequestStatus::Completed
            } else {
                RequestStatus::Failed
            },
            output_data: result
                .as_ref()
                .ok()
                .map(|r| serde_json::to_string(r).expect("serialisable")),
            error: result.as_ref().err().cloned(),
            completed_at,
            callback_body: Some(body.clone()),
        };
        if !self.store.record_work(job.lease, &done).await? {
            return Err(JobError::LeaseLost);
        }
        match &done.error {
            None => tracing::info!(status = "completed", "work done"),
            Some(error) => tracing::warn!(status = "failed", %error, "work failed"),
        }
        Ok(body)
    }

    fn report_attempt(&self, job: &ClaimedJob, a: &AttemptRecord, next: &NextStep) {
        let outcome = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "retry",
            NextStep::GiveUp => "failed",
        };
        metrics::counter!(m::CALLBACK_ATTEMPTS, "outcome" => outcome).increment(1);
        let status = a.status_code;
        match next {
            NextStep::Delivered => {
                let latency = (Utc::now() - job.created_at)
                    .to_std()
                    .unwrap_or(Duration::ZERO);
                metrics::histogram!(m::DELIVERY_LATENCY).record(latency.as_secs_f64());
                tracing::info!(
                    attempt = a.attempt,
                    status_code = status,
                    duration_ms = a.duration_ms,
                    "callback delivered"
                );
            }
            NextStep::RetryAt(at) => tracing::info!(
                attempt = a.attempt,
                status_code = status,
                error = a.error.as_deref().unwrap_or_default(),
                retry_at = %at,
                "callback attempt failed; will retry"
            ),
            NextStep::GiveUp => tracing::warn!(
                attempt = a.attempt,
                status_code = status,
                error = a.error.as_deref().unwrap_or_default(),
                "callback failed for good"
            ),
        }
    }
}

enum JobError {
    LeaseLost,
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> Self {
        JobError::Store(e)
    }
}
