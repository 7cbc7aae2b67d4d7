//! The request lifecycle on the way in (SPEC §2, §3): admit, work (sync), answer.
//!
//! - `/sync`: the record is stored `processing` (while the work runs, unless an
//!   idempotency key must be checked first), the work runs, the record is completed (with
//!   the response kept for idempotent replays) and only then is the 200 sent.
//! - `/async`: the record, its job and the key are stored in one transaction, and only
//!   then is the 202 sent; the engine takes it from there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::FutureExt;
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::idempotency::{self, ASYNC_SCOPE, SYNC_SCOPE};
use crate::store::{
    Admission, AdmissionLimits, FinishedWork, Mode, NewRequest, RequestStatus, Store, StoreError,
    StoredResponse,
};
use crate::telemetry::metrics as m;
use crate::work::{self, StoredInput, WorkInput, WorkResult};

/// A callback URL's origin, kept with the store's model (the destination's key).
pub use crate::store::{origin_of, origin_of_str};

/// The body of a 200 from POST /sync.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SyncResponse {
    pub request_id: Uuid,
    /// Always `completed`.
    #[schema(example = "completed")]
    pub status: RequestStatus,
    pub result: WorkResult,
}

/// The body of a 202 from POST /async.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AsyncAccepted {
    pub request_id: Uuid,
    /// Always `pending`.
    #[schema(example = "pending")]
    pub status: RequestStatus,
    pub message: &'static str,
}

pub const ACCEPTED_MESSAGE: &str = "Request accepted. Result will be sent to callback URL.";

/// How a submission ended, when it did not fail.
#[derive(Debug)]
pub enum Submitted {
    /// A new request: its id, status code and body.
    New {
        request_id: Uuid,
        response: StoredResponse,
    },
    /// A repeat of an earlier request with the same key: its response, unchanged.
    Replayed(StoredResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("idempotency key reused with another input")]
    KeyReused,
    #[error("idempotency key in flight")]
    InFlight,
    #[error("the backlog of pending callbacks is full ({0})")]
    Overloaded(u64),
    #[error("the tenant's backlog of pending callbacks is full ({0})")]
    QuotaExceeded(u64),
    #[error("the work failed: {error}")]
    WorkFailed { request_id: Uuid, error: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What submissions need besides the request itself.
#[derive(Clone)]
pub struct Intake {
    pub store: Arc<dyn Store>,
    pub work_delay: Duration,
    /// Backlog limits for POST /async (SPEC §9, §10).
    pub limits: AdmissionLimits,
    /// 202, or 200 with `--async-ack-status 200`; kept with an idempotency key, so a
    /// replay answers what was sent.
    pub async_ack_status: u16,
}

impl Intake {
    fn new_request(
        &self,
        request_id: Uuid,
        tenant: &str,
        mode: Mode,
        input_data: String,
        url: Option<&url::Url>,
        trace_id: &str,
    ) -> NewRequest {
        NewRequest {
            id: request_id,
            tenant: tenant.to_owned(),
            mode,
            status: match mode {
                // A sync request starts its work at once; only async requests wait.
                Mode::Sync => RequestStatus::Processing,
                Mode::Async => RequestStatus::Pending,
            },
            input_data,
            callback_url: url.map(url::Url::to_string),
            origin: url.map(origin_of),
            trace_id: trace_id.to_owned(),
            created_at: Utc::now(),
            // Records made before works name none; their callbacks keep the old shape.
            work: Some(crate::works::registry::TEXT.to_owned()),
            upstream_key: None,
        }
    }

    /// POST /sync: admit, work, record, answer. The work and its record run in a task of
    /// their own, which this awaits: a client that disconnects drops this future, not
    /// the work, so the record still ends `completed` or `failed` (SPEC §16).
    pub async fn submit_sync(
        &self,
        request_id: Uuid,
        tenant: &str,
        input: WorkInput,
        key: Option<String>,
        trace_id: &str,
    ) -> Result<Submitted, IntakeError> {
        let (this, tenant, trace_id) = (self.clone(), tenant.to_owned(), trace_id.to_owned());
        let to_the_end = async move {
            this.sync_to_the_end(request_id, &tenant, input, key, &trace_id)
                .await
        };
        tokio::spawn(to_the_end.in_current_span())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the /sync task ended without an answer");
                IntakeError::Store(StoreError::Unavailable("the /sync task failed".into()))
            })?
    }

    /// [`Intake::submit_sync`]'s steps, whatever the client does meanwhile.
    async fn sync_to_the_end(
        &self,
        request_id: Uuid,
        tenant: &str,
        input: WorkInput,
        key: Option<String>,
        trace_id: &str,
    ) -> Result<Submitted, IntakeError> {
        let json = StoredInput::of(&input, None).to_json();
        // An unfinished /sync key is presumed abandoned once the work should long be done
        // (SPEC §17: twice the work's delay, and a minute).
        let hold = self.work_delay * 2 + Duration::from_secs(60);
        let claim = key
            .clone()
            .map(|k| idempotency::claim(tenant, SYNC_SCOPE, k, &json, None, hold));
        let record = self.new_request(request_id, tenant, Mode::Sync, json, None, trace_id);
        let admission = self
            .store
            .admit(record, claim.clone(), AdmissionLimits::default());
        let outcome = if key.is_some() {
            // The key decides whether to work at all: a replay or a 409 does no work.
            if let Some(replay) = check_admission(admission.await?, AdmissionLimits::default())? {
                return Ok(Submitted::Replayed(replay));
            }
            tracing::info!(mode = "sync", count = input.count(), "request accepted");
            run_work(&input, self.work_delay, Mode::Sync).await
        } else {
            // Nothing to decide: the record is written while the work runs. The response
            // still waits for both, and for the completed record below.
            tracing::info!(mode = "sync", count = input.count(), "request accepted");
            let (admitted, outcome) =
                tokio::join!(admission, run_work(&input, self.work_delay, Mode::Sync));
            check_admission(admitted?, AdmissionLimits::default())?;
            outcome
        };
        let completed_at = Utc::now();
        match outcome {
            Ok(result) => {
                let body = SyncResponse {
                    request_id,
                    status: RequestStatus::Completed,
                    result,
                };
                let response = StoredResponse {
                    status: 200,
                    body: serde_json::to_string(&body).expect("serialisable"),
                };
                let done = FinishedWork {
                    status: RequestStatus::Completed,
                    output_data: Some(serde_json::to_string(&body.result).expect("serialisable")),
                    error: None,
                    completed_at,
                    work_attempts: None,
                };
                let key = claim.map(|c| (c, Some(response.clone())));
                self.store.finish_sync(request_id, done, key).await?;
                tracing::info!(status = "completed", "request completed");
                Ok(Submitted::New {
                    request_id,
                    response,
                })
            }
            Err(error) => {
                let done = FinishedWork {
                    status: RequestStatus::Failed,
                    output_data: None,
                    error: Some(error.clone()),
                    completed_at,
                    work_attempts: None,
                };
                // Only successes are kept: a retry with this key may try again.
                self.store
                    .finish_sync(request_id, done, claim.map(|c| (c, None)))
                    .await?;
                tracing::warn!(status = "failed", %error, "request failed");
                Err(IntakeError::WorkFailed { request_id, error })
            }
        }
    }

    /// POST /async: store the request, its job and the key in one transaction; answer 202
    /// (or the configured acknowledgement status).
    pub async fn submit_async(
        &self,
        request_id: Uuid,
        tenant: &str,
        input: WorkInput,
        callback_url: &url::Url,
        key: Option<String>,
        trace_id: &str,
    ) -> Result<Submitted, IntakeError> {
        let json = StoredInput::of(&input, Some(callback_url.as_str())).to_json();
        let body = AsyncAccepted {
            request_id,
            status: RequestStatus::Pending,
            message: ACCEPTED_MESSAGE,
        };
        let response = StoredResponse {
            status: self.async_ack_status,
            body: serde_json::to_string(&body).expect("serialisable"),
        };
        let claim = key.map(|k| {
            idempotency::claim(
                tenant,
                ASYNC_SCOPE,
                k,
                &json,
                Some(response.clone()),
                Duration::ZERO,
            )
        });
        let record = self.new_request(
            request_id,
            tenant,
            Mode::Async,
            json,
            Some(callback_url),
            trace_id,
        );
        let admission = self.store.admit(record, claim, self.limits).await?;
        if let Some(replay) = check_admission(admission, self.limits)? {
            return Ok(Submitted::Replayed(replay));
        }
        tracing::info!(
            mode = "async",
            count = input.count(),
            callback = %crate::telemetry::redact_url(callback_url),
            "request accepted"
        );
        Ok(Submitted::New {
            request_id,
            response,
        })
    }
}

fn check_admission(
    a: Admission,
    limits: AdmissionLimits,
) -> Result<Option<StoredResponse>, IntakeError> {
    match a {
        Admission::Admitted => Ok(None),
        Admission::Replay(r) => Ok(Some(r)),
        Admission::InFlight => Err(IntakeError::InFlight),
        Admission::KeyReused => Err(IntakeError::KeyReused),
        Admission::Overloaded => Err(IntakeError::Overloaded(limits.max_pending)),
        Admission::QuotaExceeded => Err(IntakeError::QuotaExceeded(limits.max_pending_per_tenant)),
    }
}

/// Runs the work with its metrics; a panic inside it becomes a failure, not a crash.
pub async fn run_work(
    input: &WorkInput,
    delay: Duration,
    mode: Mode,
) -> Result<WorkResult, String> {
    let started = Instant::now();
    let in_flight = metrics::gauge!(m::WORK_IN_FLIGHT, "mode" => mode.as_str());
    in_flight.increment(1.0);
    let outcome = std::panic::AssertUnwindSafe(work::perform(input, delay))
        .catch_unwind()
        .await;
    in_flight.decrement(1.0);
    let outcome = match outcome {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(failed)) => Err(failed.to_string()),
        Err(panic) => Err(format!("the work panicked: {}", panic_message(&panic))),
    };
    let label = if outcome.is_ok() {
        "completed"
    } else {
        "failed"
    };
    metrics::histogram!(m::WORK_DURATION, "mode" => mode.as_str(), "outcome" => label)
        .record(started.elapsed().as_secs_f64());
    outcome
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}
