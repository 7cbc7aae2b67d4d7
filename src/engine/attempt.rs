//! One delivery attempt of a claimed job: send, judge (the retry schedule, the attempt
//! budget of this delivery, its expiry, the destination's circuit), record, report.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::destinations::Health;
use super::job::{JobError, JobRun, Slot, until_recorded};
use crate::delivery::{self, AttemptOutcome, Delivery, Verdict};
use crate::store::{AttemptRecord, CircuitChange, NextStep, Trigger};
use crate::telemetry::metrics as m;
use crate::telemetry::trace_context;

/// How an attempt's outcome bears on its destination's health (SPEC §8): the rule of
/// [`AttemptOutcome::counts_against_destination`], with a policy refusal (no request was
/// made) neither counting nor resetting the count.
pub(super) fn health_of(outcome: &AttemptOutcome) -> Health {
    match (&outcome.verdict, outcome.counts_against_destination()) {
        (Verdict::Permanent, _) => Health::Neutral,
        (_, true) => Health::Failed,
        (_, false) => Health::Answered,
    }
}

impl JobRun<'_> {
    /// Makes one attempt holding `slot`, and records it with what follows.
    pub(super) async fn attempt(
        &self,
        body: &str,
        expires_at: DateTime<Utc>,
        slot: Slot<'_>,
    ) -> Result<(), JobError> {
        let job = self.job();
        let lease = job.lease;
        let attempt = job.attempts_made + 1;
        let traceparent = trace_context::outgoing(&tracing::Span::current(), &job.trace_id);
        let webhook_id = lease.request_id.to_string();
        let outcome = self
            .engine()
            .client
            .attempt(Delivery {
                url: &job.callback_url,
                webhook_id: &webhook_id,
                body,
                traceparent: &traceparent,
                secrets: &self.engine().secrets.for_tenant(&job.destination.tenant),
            })
            .await;
        let now = Utc::now();
        let (circuit, was_full) = {
            let mut book = self.engine().destinations();
            slot.release();
            let was_full = book.full(job.destination.id);
            let change = book.finish(
                &job.destination,
                job.probe,
                (health_of(&outcome), outcome.duration),
                outcome.error.as_deref(),
                now,
            );
            (change, was_full)
        };
        if was_full {
            // Deliveries waiting for this destination's cap are not in the dispatcher's
            // next due time: tell it a slot is free.
            self.engine().wake.notify_one();
        }
        let next = self.next_step(&outcome, attempt, expires_at, now);
        let record = AttemptRecord {
            attempt,
            started_at: outcome.started_at,
            duration_ms: outcome.duration.as_secs_f64() * 1e3,
            status_code: outcome.status_code,
            error: outcome.error.clone(),
            trigger: match job.manual {
                true => Trigger::Manual,
                false => Trigger::Scheduled,
            },
        };
        let recorded = until_recorded(|| {
            self.engine()
                .store
                .record_attempt(lease, &record, &next, circuit.as_ref())
        })
        .await?;
        if !recorded {
            return Err(JobError::LeaseLost);
        }
        self.report_attempt(&record, &next);
        if let Some(change) = &circuit {
            self.report_circuit(change).await;
        }
        if matches!(next, NextStep::RetryAt(_))
            || matches!(circuit, Some(CircuitChange::Close { .. }))
        {
            self.engine().wake.notify_one();
        }
        Ok(())
    }

    /// What follows attempt number `attempt`: done, again later, or never again.
    fn next_step(
        &self,
        outcome: &AttemptOutcome,
        attempt: u32,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> NextStep {
        // Attempts of this delivery only: a redelivery has a fresh budget (SPEC §11).
        let made = attempt.saturating_sub(self.job().attempt_base);
        match &outcome.verdict {
            Verdict::Delivered => NextStep::Delivered,
            Verdict::Permanent => NextStep::GiveUp,
            Verdict::Retry { .. } if now >= expires_at => NextStep::Expired(format!(
                "expired: not delivered within {} s of the end of its work or of its last redelivery (last: {})",
                self.engine().config.expire_after.as_secs(),
                outcome.error.as_deref().unwrap_or("no response")
            )),
            Verdict::Retry { .. } if made >= self.engine().config.max_attempts => NextStep::GiveUp,
            Verdict::Retry { retry_after } => {
                let ended = outcome.started_at + outcome.duration;
                NextStep::RetryAt(
                    ended
                        + delivery::next_delay(made, self.engine().config.base_delay, *retry_after),
                )
            }
        }
    }

    /// Logs a circuit change (the origin only, never a path or query) and counts the
    /// deliveries it postpones.
    async fn report_circuit(&self, change: &CircuitChange) {
        let job = self.job();
        let d = &job.destination;
        match change {
            CircuitChange::Open {
                until, cooldown, ..
            } => {
                tracing::warn!(
                    origin = %d.origin,
                    tenant = %d.tenant,
                    cooldown_ms = cooldown.as_millis() as u64,
                    until = %until,
                    probe = job.probe,
                    "circuit opened: deliveries to this destination wait for the cool-down"
                );
                match self.engine().store.waiting_deliveries(d.id, *until).await {
                    Ok(n) => metrics::counter!(m::CALLBACK_DEFERRED).increment(n),
                    Err(e) => {
                        tracing::debug!(error = %e, "could not count the postponed deliveries")
                    }
                }
            }
            CircuitChange::Close { .. } => tracing::info!(
                origin = %d.origin,
                tenant = %d.tenant,
                "circuit closed: deliveries to this destination resume"
            ),
        }
    }

    fn report_attempt(&self, a: &AttemptRecord, next: &NextStep) {
        let job = self.job();
        let outcome = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt(_) => "retry",
            NextStep::GiveUp => "failed",
            NextStep::Expired(_) => "expired",
        };
        metrics::counter!(m::CALLBACK_ATTEMPTS, "outcome" => outcome).increment(1);
        let status = a.status_code;
        let error = a.error.as_deref().unwrap_or_default();
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
                    trigger = a.trigger.as_str(),
                    "callback delivered"
                );
            }
            NextStep::RetryAt(at) => tracing::info!(
                attempt = a.attempt,
                status_code = status,
                error,
                retry_at = %at,
                "callback attempt failed; will retry"
            ),
            NextStep::GiveUp => tracing::warn!(
                attempt = a.attempt,
                status_code = status,
                error,
                "callback failed for good"
            ),
            NextStep::Expired(why) => tracing::warn!(
                attempt = a.attempt,
                status_code = status,
                error = %why,
                "callback expired"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status_code: Option<u16>, verdict: Verdict) -> AttemptOutcome {
        AttemptOutcome {
            started_at: Utc::now(),
            duration: Duration::ZERO,
            status_code,
            error: None,
            verdict,
        }
    }

    #[test]
    fn transport_failures_5xx_and_429_count_other_answers_do_not() {
        let retry = || Verdict::Retry { retry_after: None };
        #[rustfmt::skip]
        let table = [
            (outcome(Some(200), Verdict::Delivered), Health::Answered),
            (outcome(Some(302), retry()), Health::Answered),
            (outcome(Some(404), retry()), Health::Answered),
            (outcome(Some(429), retry()), Health::Failed),
            (outcome(Some(500), retry()), Health::Failed),
            (outcome(Some(503), retry()), Health::Failed),
            (outcome(None, retry()), Health::Failed),
            (outcome(None, Verdict::Permanent), Health::Neutral),
        ];
        for (o, expected) in table {
            assert_eq!(health_of(&o), expected, "{:?}", o.status_code);
        }
    }
}
