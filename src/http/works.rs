//! Work routes (SPEC §13, §17 "Works"): `POST /sync/{work}` and `GET /works`. `text`
//! under its name is `/sync` itself; another work is one upstream attempt under the
//! work's deadline: the idempotency look-up (a replay needs no slot), a slot of its
//! `max_in_flight` (none in time: 503 `work-busy`, no record), the record, the attempt
//! (in a task of its own: a client that hangs up does not stop it), the recorded outcome,
//! the answer.

use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tracing::Instrument as _;
use uuid::Uuid;

use super::error::{ApiError, FieldError, PROBLEM_JSON, Problem};
use super::extract::{IdempotencyKey, JsonObject, RawJsonObject};
use super::observe::RequestContext;
use super::request_id::set_request_id;
use super::state::AppState;
use super::submit;
use crate::auth::Caller;
use crate::store::{
    Admission, AdmissionLimits, FinishedWork, Mode, NewRequest, RequestStatus, StoredResponse,
};
use crate::works::registry::{RegisteredWork, TEXT};
use crate::works::run::WorkAttempt;
use crate::works::{WorkCall, WorkError, WorkErrorKind};

/// One entry of `GET /works`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkInfo {
    #[schema(example = "pdf-render")]
    pub name: String,
    /// `text`, `http`, or an embedder's kind.
    #[schema(example = "http")]
    pub kind: String,
    /// The work's input schema (JSON Schema 2020-12), or `null`: any object.
    #[schema(value_type = Option<Object>)]
    pub input_schema: Option<Value>,
}

/// The body of `GET /works`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkList {
    pub works: Vec<WorkInfo>,
}

/// The works the caller's tenant may call (never their URLs or headers).
#[utoipa::path(
    get, path = "/works", tag = "work",
    responses((status = 200, description = "The works this caller may call", body = WorkList))
)]
pub async fn list_works(caller: Caller, State(state): State<AppState>) -> Json<WorkList> {
    let works = state
        .works
        .visible(&caller.tenant)
        .map(|w| WorkInfo {
            name: w.name.clone(),
            kind: w.work.kind().to_owned(),
            input_schema: w
                .settings
                .input_schema
                .as_ref()
                .map(|s| s.document().clone()),
        })
        .collect();
    Json(WorkList { works })
}

/// Run the work `work` and wait for its result (`/sync/text` is `/sync`).
#[utoipa::path(
    post, path = "/sync/{work}", tag = "work",
    params(("work" = String, Path, description = "A work's name: `text` or one of GET /works", pattern = "^[a-z][a-z0-9-]{0,62}$")),
    request_body(content = Object, content_type = "application/json", description = "The work's input: a JSON object (its input_schema, if it has one)"),
    responses(
        (status = 200, description = "The work is done and recorded: {request_id, status: completed, result}", body = Object),
        (status = 404, description = "No such work for this caller (`/problems/unknown-work`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The body violates the work's input_schema (`errors[].field` are JSON Pointers), or the upstream refused the input (`/problems/work-rejected`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream failed: transport error, 5xx, 408/409/425/429, or a non-JSON or oversized 2xx (`/problems/upstream-failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No slot of the work's max_in_flight within its timeout (`/problems/work-busy`, nothing recorded), the database unavailable, or shutting down", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 400, description = "Not JSON or not an object, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this Idempotency-Key is still running", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 413, description = "Body over --max-body-bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`text` under its name: the built-in work failed (`/problems/work-failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The upstream did not answer within the work's timeout (`/problems/upstream-timeout`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_sync_work(
    caller: Caller,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<RawJsonObject, ApiError>,
) -> Result<Response, ApiError> {
    if name == TEXT {
        let body = body.map(|b| JsonObject(b.map));
        return submit::post_sync(caller, State(state), Extension(ctx), key, body).await;
    }
    let Some(work) = state.works.get(&name, &caller.tenant).cloned() else {
        return Ok(unknown_work(&name));
    };
    let body = body?;
    if let Some(schema) = &work.settings.input_schema {
        let violations = schema.violations(&Value::Object(body.map));
        if !violations.is_empty() {
            let errors = violations.into_iter();
            return Err(ApiError::Validation(
                errors
                    .map(|v| FieldError::new(v.pointer, v.message))
                    .collect(),
            ));
        }
    }
    let key = key?.0;
    state.refuse_when_draining()?;
    let input = String::from_utf8_lossy(&body.bytes).into_owned();
    // §17 "Routes, in order": the look-up before a slot, so a replay needs none.
    if let Some(verdict) = looked_up(&state, &caller.tenant, &work, key.as_ref(), &input).await? {
        return verdict;
    }
    let deadline = Instant::now() + work.settings.timeout;
    let pool = state.works.pool_handle();
    let slots = async {
        (
            work.slots.clone().acquire_owned().await,
            pool.acquire_owned().await,
        )
    };
    let Ok((Ok(slot), Ok(pooled))) = tokio::time::timeout_at(deadline, slots).await else {
        return Ok(work_busy(&work));
    };
    let job = SyncAttempt {
        state,
        tenant: caller.tenant,
        request_id: ctx.id,
        trace_id: ctx.trace_id,
        input,
        key,
        deadline,
        work,
    };
    // Spawned, so a client that hangs up does not stop the work: its record still ends.
    // In the request's span, so its lines name the request.
    let outcome = tokio::spawn(
        async move {
            let outcome = job.run().await;
            drop((slot, pooled));
            outcome
        }
        .in_current_span(),
    );
    outcome
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the sync work task ended: {e}")))?
}

/// The stored key's verdict, when it settles the request before any slot: a replay,
/// 409 while its first request runs, 422 for other input.
async fn looked_up(
    state: &AppState,
    tenant: &str,
    work: &RegisteredWork,
    key: Option<&String>,
    input: &str,
) -> Result<Option<Result<Response, ApiError>>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let claim = crate::idempotency::claim(
        tenant,
        work.sync_scope,
        key.clone(),
        input,
        None,
        Duration::ZERO,
    );
    Ok(match state.store.idempotency_verdict(&claim).await? {
        Some(Admission::Replay(stored)) => Some(Ok(replayed(stored))),
        Some(Admission::InFlight) => Some(Err(ApiError::IdempotencyKeyInFlight)),
        Some(Admission::KeyReused) => Some(Err(ApiError::IdempotencyKeyReused)),
        _ => None,
    })
}

/// A sync request of a work, holding a slot.
struct SyncAttempt {
    state: AppState,
    work: RegisteredWork,
    tenant: String,
    request_id: Uuid,
    trace_id: String,
    input: String,
    key: Option<String>,
    deadline: Instant,
}

impl SyncAttempt {
    async fn run(self) -> Result<Response, ApiError> {
        let hold = self.work.settings.timeout * 2 + Duration::from_secs(60);
        let claim = self.key.clone().map(|k| {
            let scope = self.work.sync_scope;
            crate::idempotency::claim(&self.tenant, scope, k, &self.input, None, hold)
        });
        let record = NewRequest {
            id: self.request_id,
            tenant: self.tenant.clone(),
            mode: Mode::Sync,
            status: RequestStatus::Processing,
            input_data: self.input.clone(),
            callback_url: None,
            origin: None,
            trace_id: self.trace_id.clone(),
            created_at: Utc::now(),
            work: Some(self.work.name.clone()),
            upstream_key: None,
        };
        let admitted = self
            .state
            .store
            .admit(record, claim.clone(), AdmissionLimits::default());
        match admitted.await? {
            Admission::Admitted => {}
            Admission::Replay(stored) => return Ok(replayed(stored)),
            Admission::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
            Admission::KeyReused => return Err(ApiError::IdempotencyKeyReused),
            Admission::Overloaded | Admission::QuotaExceeded => {
                return Err(ApiError::Unavailable("the service is overloaded"));
            }
        }
        tracing::info!(mode = "sync", work = %self.work.name, "request accepted");
        let (outcome, attempt) = self.attempt().await;
        let (stored, mut done, ended) = self.outcome(outcome);
        done.work_attempts = Some(crate::works::run::attempts_json(&[attempt]));
        let kept = claim.map(|c| {
            (
                c,
                (done.status == RequestStatus::Completed).then(|| stored.clone()),
            )
        });
        self.state
            .store
            .finish_sync(self.request_id, done, kept)
            .await?;
        // Logged once stored, as `text` does: whoever reads the line finds the record ended.
        ended.log(&self.work.name);
        Ok(answer(&stored, &self.request_id.to_string()))
    }

    /// One attempt within the deadline, with its metrics.
    async fn attempt(&self) -> (Result<Value, WorkError>, WorkAttempt) {
        let call = WorkCall {
            request_id: self.request_id,
            input: self.input.clone(),
            tenant: self.tenant.clone(),
            traceparent: Some(crate::telemetry::trace_context::outgoing(
                &tracing::Span::current(),
                &self.trace_id,
            )),
            idempotency_key: upstream_key(&self.tenant, &self.work.name, self.key.as_deref())
                .unwrap_or_else(|| self.request_id.to_string()),
            attempt: 1,
        };
        let (started_at, clock) = (Utc::now(), Instant::now());
        let outcome = crate::works::run::attempt_once(&self.work, &call, self.deadline).await;
        let attempt = WorkAttempt::of(1, started_at, clock.elapsed(), &outcome);
        (outcome, attempt)
    }

    /// The response to send (and keep, on success), the record's end, and its log line.
    fn outcome(&self, outcome: Result<Value, WorkError>) -> (StoredResponse, FinishedWork, Ended) {
        let completed_at = Utc::now();
        match outcome {
            Ok(result) => {
                let output = serde_json::to_string(&result).expect("a JSON value serialises");
                let body = serde_json::json!({
                    "request_id": self.request_id,
                    "status": "completed",
                    "result": result,
                });
                let stored = StoredResponse {
                    status: 200,
                    body: body.to_string(),
                };
                let done = FinishedWork {
                    status: RequestStatus::Completed,
                    output_data: Some(output),
                    error: None,
                    completed_at,
                    work_attempts: None,
                };
                (stored, done, Ended::Completed)
            }
            Err(e) => {
                let ended = Ended::Failed {
                    outcome: e.outcome(),
                    status_code: e.status_code,
                };
                let stored = failure_body(&e, self.request_id);
                let done = FinishedWork {
                    status: RequestStatus::Failed,
                    output_data: None,
                    error: Some(e.message),
                    completed_at,
                    work_attempts: None,
                };
                (stored, done, ended)
            }
        }
    }
}

/// How a named work's /sync request ended, for its log line.
enum Ended {
    Completed,
    Failed {
        outcome: &'static str,
        status_code: Option<u16>,
    },
}

impl Ended {
    fn log(&self, work: &str) {
        match self {
            Ended::Completed => {
                tracing::info!(status = "completed", work, "request completed")
            }
            // The outcome, not the message: a 4xx's message quotes the upstream's body,
            // which logs never carry (§17).
            Ended::Failed {
                outcome,
                status_code,
            } => {
                tracing::warn!(status = "failed", work, outcome, status_code = ?status_code, "request failed")
            }
        }
    }
}

/// §17: the request id, or, when the caller sent an Idempotency-Key, a hex SHA-256 of
/// (tenant, work, key), so a caller's retry reaches the upstream with the same key.
pub fn upstream_key(tenant: &str, work: &str, key: Option<&str>) -> Option<String> {
    let key = key?;
    let digest = Sha256::new()
        .chain_update(tenant)
        .chain_update([0])
        .chain_update(work)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    Some(hex::encode(digest))
}

/// The problem a failed sync attempt answers (§17 "Sync answers").
fn failure_body(e: &WorkError, request_id: Uuid) -> StoredResponse {
    let (status, slug, title) = match e.kind {
        WorkErrorKind::Rejected => (422, "work-rejected", "The work rejected the input"),
        WorkErrorKind::BadAnswer | WorkErrorKind::Unavailable => {
            (502, "upstream-failed", "The work's upstream failed")
        }
        WorkErrorKind::Timeout => (504, "upstream-timeout", "The work's upstream timed out"),
        WorkErrorKind::Failed => (500, "work-failed", "The work failed"),
    };
    let body = serde_json::json!({
        "type": format!("/problems/{slug}"),
        "title": title,
        "status": status,
        "detail": e.message,
        "request_id": request_id,
    });
    StoredResponse {
        status,
        body: body.to_string(),
    }
}

/// The stored response as sent: JSON or problem+json, with `x-request-id`.
fn answer(stored: &StoredResponse, request_id: &str) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let media = match status.is_success() {
        true => "application/json",
        false => PROBLEM_JSON,
    };
    let mut response =
        (status, [(header::CONTENT_TYPE, media)], stored.body.clone()).into_response();
    set_request_id(response.headers_mut(), request_id);
    response
}

pub(super) fn replayed(stored: StoredResponse) -> Response {
    let id = serde_json::from_str::<Value>(&stored.body)
        .ok()
        .and_then(|v| v["request_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut response = answer(&stored, &id);
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    let body = Problem {
        type_: format!("/problems/{slug}"),
        title: title.to_owned(),
        status: status.as_u16(),
        detail,
        errors: None,
    };
    let text = serde_json::to_string(&body).expect("a problem serialises");
    (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], text).into_response()
}

/// 404 `/problems/unknown-work`: also for a name outside the grammar or a work the
/// caller's tenant may not call.
pub fn unknown_work(name: &str) -> Response {
    let shown: String = name.chars().take(64).collect();
    let detail = format!("no work named {shown:?}; GET /works lists the works you may call");
    problem(
        StatusCode::NOT_FOUND,
        "unknown-work",
        "Unknown work",
        detail,
    )
}

/// 503 `/problems/work-busy` with `Retry-After: 1`; nothing was recorded.
fn work_busy(work: &RegisteredWork) -> Response {
    let detail = format!(
        "work {:?} is at its max_in_flight ({}) and no slot freed within its timeout; nothing was recorded",
        work.name, work.settings.max_in_flight
    );
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "work-busy",
        "Work busy",
        detail,
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
