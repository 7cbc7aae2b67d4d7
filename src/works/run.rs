//! An async request's work phase for a named work (SPEC §13 "Async"): up to
//! `max_attempts` attempts, each holding a slot of the work's `max_in_flight`, retried
//! after §2's backoff (base `--callback-base-delay-ms`) or the upstream's `Retry-After`,
//! never past the request's expiry. Every attempt sends the same input and
//! `idempotency-key`, so a repeat after a crash is one the upstream can recognise.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::registry::RegisteredWork;
use super::work::{WorkCall, WorkError, WorkErrorKind};

/// Attempts of each work by outcome; `work` is a configured name only.
pub const WORK_ATTEMPTS: &str = "consuma_work_attempts_total";
/// Seconds per work attempt, by work.
pub const WORK_ATTEMPT_DURATION: &str = "consuma_work_attempt_duration_seconds";
/// Longest wait between two attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One upstream attempt as `GET /requests/{id}` shows it in `work_attempts`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkAttempt {
    pub attempt: u32,
    /// RFC 3339, milliseconds, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl WorkAttempt {
    /// The attempt `n` that started at `started_at`, took `took` and ended with `outcome`.
    pub fn of(
        n: u32,
        started_at: chrono::DateTime<chrono::Utc>,
        took: Duration,
        outcome: &Result<Value, WorkError>,
    ) -> Self {
        Self {
            attempt: n,
            started_at: started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: took.as_millis() as u64,
            status_code: outcome.as_ref().err().and_then(|e| e.status_code),
            error: outcome.as_ref().err().map(|e| e.message.clone()),
        }
    }
}

/// The attempts as the record keeps them.
pub fn attempts_json(attempts: &[WorkAttempt]) -> String {
    serde_json::to_string(attempts).expect("attempts serialise")
}

/// Runs `call` on `work` until it completes, fails for good, runs out of attempts, or
/// `deadline` passes: the result's JSON text or the last error, and every attempt made.
pub async fn run_attempts(
    work: &RegisteredWork,
    mut call: WorkCall,
    base_delay: Duration,
    deadline: Instant,
    pool: &tokio::sync::Semaphore,
) -> (Result<String, String>, Vec<WorkAttempt>) {
    let attempts = work.settings.max_attempts.max(1);
    let mut log = Vec::new();
    let mut last = String::from("expired: the work did not start before the request expired");
    for attempt in 1..=attempts {
        call.attempt = attempt;
        let slots = async { (work.slots.acquire().await, pool.acquire().await) };
        let Ok(slot) = tokio::time::timeout_at(deadline, slots).await else {
            break;
        };
        let (started_at, clock) = (chrono::Utc::now(), Instant::now());
        let outcome = attempt_once(work, &call, deadline).await;
        drop(slot);
        log.push(WorkAttempt::of(
            attempt,
            started_at,
            clock.elapsed(),
            &outcome,
        ));
        let e = match outcome {
            Ok(result) => {
                let json = serde_json::to_string(&result).expect("JSON serialises");
                return (Ok(json), log);
            }
            Err(e) => e,
        };
        last = e.message.clone();
        if !e.is_retryable() || attempt == attempts {
            break;
        }
        let wait = e
            .retry_after
            .unwrap_or_else(|| backoff(base_delay, attempt));
        if Instant::now() + wait >= deadline {
            last = format!("expired: {last}");
            break;
        }
        tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
    }
    (Err(last), log)
}

/// One attempt within the work's timeout and the request's deadline, with its metrics.
pub async fn attempt_once(
    work: &RegisteredWork,
    call: &WorkCall,
    deadline: Instant,
) -> Result<Value, WorkError> {
    let started = Instant::now();
    let until = deadline.min(started + work.settings.timeout);
    let performed = tokio::time::timeout_at(until, work.work.perform(call)).await;
    let outcome = performed.unwrap_or_else(|_| {
        let timeout = super::upstream::human(work.settings.timeout);
        Err(WorkError::new(
            WorkErrorKind::Timeout,
            format!("upstream timed out after {timeout}"),
        ))
    });
    let label = outcome
        .as_ref()
        .map_or_else(WorkError::outcome, |_| "completed");
    let name = work.name.clone();
    metrics::counter!(WORK_ATTEMPTS, "work" => name.clone(), "outcome" => label).increment(1);
    metrics::histogram!(WORK_ATTEMPT_DURATION, "work" => name)
        .record(started.elapsed().as_secs_f64());
    outcome
}

/// §2's schedule: `base × 2^(attempt-1)`, capped.
fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32 << (attempt - 1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::works::registry::WorkSettings;
    use crate::works::{Work, WorkCall};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails with `kind` until its `n`th call, then answers `{"n": n}`.
    struct FlakyUntil(u32, WorkErrorKind, AtomicU32);

    #[async_trait::async_trait]
    impl Work for FlakyUntil {
        async fn perform(&self, call: &WorkCall) -> Result<Value, WorkError> {
            let n = self.2.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(call.attempt, n);
            match n >= self.0 {
                true => Ok(serde_json::json!({ "n": n })),
                false => Err(WorkError::new(self.1, format!("attempt {n} failed"))),
            }
        }
    }

    fn work(w: FlakyUntil, max_attempts: u32) -> RegisteredWork {
        let settings = WorkSettings {
            max_attempts,
            ..WorkSettings::default()
        };
        RegisteredWork::new("flaky", Arc::new(w), settings)
    }

    fn pool() -> tokio::sync::Semaphore {
        tokio::sync::Semaphore::new(4)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_failures_are_retried_up_to_max_attempts() {
        let w = work(
            FlakyUntil(3, WorkErrorKind::Unavailable, AtomicU32::new(0)),
            3,
        );
        let out = run_attempts(
            &w,
            WorkCall::new("{}", "t"),
            Duration::from_millis(10),
            far(),
            &pool(),
        )
        .await;
        assert_eq!(out.0.as_deref(), Ok(r#"{"n":3}"#));
        let numbers: Vec<u32> = out.1.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(out.1[0].error.as_deref(), Some("attempt 1 failed"));
        assert_eq!(out.1[2].error, None);
        let w = work(FlakyUntil(4, WorkErrorKind::Timeout, AtomicU32::new(0)), 3);
        let out = run_attempts(
            &w,
            WorkCall::new("{}", "t"),
            Duration::from_millis(10),
            far(),
            &pool(),
        )
        .await;
        assert_eq!(out.0, Err("attempt 3 failed".into()));
        assert_eq!(out.1.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_retried() {
        let w = work(FlakyUntil(2, WorkErrorKind::Rejected, AtomicU32::new(0)), 5);
        let out = run_attempts(
            &w,
            WorkCall::new("{}", "t"),
            Duration::from_millis(10),
            far(),
            &pool(),
        )
        .await;
        assert_eq!(out.0, Err("attempt 1 failed".into()));
        assert_eq!(out.1.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_bounds_the_retries() {
        let w = work(
            FlakyUntil(9, WorkErrorKind::Unavailable, AtomicU32::new(0)),
            9,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = run_attempts(
            &w,
            WorkCall::new("{}", "t"),
            Duration::from_secs(1),
            deadline,
            &pool(),
        )
        .await;
        let error = out.0.unwrap_err();
        assert!(error.starts_with("expired: attempt "), "{error}");
        assert!(Instant::now() <= deadline);
    }

    #[test]
    fn backoff_doubles_from_the_base() {
        let base = Duration::from_millis(100);
        let got: Vec<u128> = (1..=4).map(|n| backoff(base, n).as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800]);
        assert_eq!(backoff(base, 30), MAX_BACKOFF);
    }
}
