//! `POST /async/{work}` (SPEC §13 "Async", §17 "Routes"): the request is checked in
//! §17's order (404 → 415 → 413 → 400 → 422 schema, then `callback_url` → callback policy
//! → Idempotency-Key → lookup → 429/503 backlog), stored with its job before the 202, and
//! worked by the engine. The upstream receives the body without `callback_url`.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use super::error::{ApiError, FieldError, Problem};
use super::extract::{IdempotencyKey, JsonObject, RawJsonObject};
use super::observe::RequestContext;
use super::request_id::set_request_id;
use super::state::AppState;
use super::submit;
use super::works::{replayed, unknown_work};
use crate::auth::Caller;
use crate::intake::{ACCEPTED_MESSAGE, AsyncAccepted, origin_of};
use crate::store::{Admission, Mode, NewRequest, RequestStatus, StoredResponse};
use crate::works::registry::{RegisteredWork, TEXT};

/// Accept the work `work` now; POST its result to `callback_url` later (`/async/text`
/// is `/async`).
#[utoipa::path(
    post, path = "/async/{work}", tag = "work",
    params(("work" = String, Path, description = "A work's name: `text` or one of GET /works", pattern = "^[a-z][a-z0-9-]{0,62}$")),
    request_body(content = Object, content_type = "application/json", description = "The work's input with a top-level `callback_url` (removed before the upstream sees the input)"),
    responses(
        (status = 202, description = "Stored durably with its job; the callback follows", body = AsyncAccepted,
            headers(("Location" = String, description = "/requests/{request_id}"), ("X-Request-Id" = String, description = "Equal to request_id"))),
        (status = 400, description = "Not JSON or not an object, callback_url refused by the callback policy, or a malformed Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such work for this caller (`/problems/unknown-work`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The first request with this Idempotency-Key is not committed yet", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 413, description = "Body over --max-body-bytes", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The input violates the work's input_schema, or callback_url is missing (`errors[].field` are JSON Pointers)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The tenant's backlog is full; nothing stored", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
        (status = 503, description = "The backlog is full, the database unavailable, or shutting down; nothing stored", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn post_async_work(
    caller: Caller,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    Path(name): Path<String>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<RawJsonObject, ApiError>,
) -> Result<Response, ApiError> {
    if name == TEXT {
        let body = body.map(|b| JsonObject(b.map));
        return submit::post_async(caller, State(state), Extension(ctx), key, body).await;
    }
    let Some(work) = state.works.get(&name, &caller.tenant).cloned() else {
        return Ok(unknown_work(&name));
    };
    let mut body = body?;
    let callback = body.map.remove("callback_url");
    let input = crate::works::input::without_member(&body.bytes, "callback_url")
        .map_err(ApiError::MalformedJson)?;
    check_input(&work, Value::Object(body.map), callback.as_ref())?;
    let callback = callback.and_then(|c| c.as_str().map(str::to_owned));
    let url = state
        .policy
        .check_url(callback.as_deref().unwrap_or_default())
        .map_err(|r| ApiError::CallbackRefused(r.to_string()))?;
    let key = key?.0;
    state.refuse_when_draining()?;
    let accepted = AsyncAccepted {
        request_id: ctx.id,
        status: RequestStatus::Pending,
        message: ACCEPTED_MESSAGE,
    };
    let stored = StoredResponse {
        status: state.intake.async_ack_status,
        body: serde_json::to_string(&accepted).expect("serialisable"),
    };
    let claim = key.clone().map(|k| {
        let (scope, reply) = (work.async_scope, Some(stored.clone()));
        crate::idempotency::claim(&caller.tenant, scope, k, &input, reply, Default::default())
    });
    let record = NewRequest {
        id: ctx.id,
        tenant: caller.tenant.clone(),
        mode: Mode::Async,
        status: RequestStatus::Pending,
        input_data: input,
        callback_url: Some(url.to_string()),
        origin: Some(origin_of(&url)),
        trace_id: ctx.trace_id.clone(),
        created_at: Utc::now(),
        work: Some(work.name.clone()),
        upstream_key: super::works::upstream_key(&caller.tenant, &work.name, key.as_deref()),
    };
    let limits = state.intake.limits;
    match state.store.admit(record, claim, limits).await? {
        Admission::Admitted => {}
        Admission::Replay(r) => return Ok(with_location(replayed(r))),
        Admission::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
        Admission::KeyReused => return Err(ApiError::IdempotencyKeyReused),
        Admission::Overloaded => return Err(ApiError::Overloaded(limits.max_pending)),
        Admission::QuotaExceeded => {
            return Err(ApiError::QuotaExceeded(limits.max_pending_per_tenant));
        }
    }
    tracing::info!(mode = "async", work = %work.name, "request accepted");
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    set_request_id(response.headers_mut(), &ctx.id.to_string());
    Ok(with_location(response))
}

/// 422: schema violations of the input (without `callback_url`), then a `callback_url`
/// that is missing or not a string; every `field` a JSON Pointer, at most 50.
fn check_input(
    work: &RegisteredWork,
    input: Value,
    callback: Option<&Value>,
) -> Result<(), ApiError> {
    let mut errors: Vec<FieldError> = match &work.settings.input_schema {
        Some(schema) => schema
            .violations(&input)
            .into_iter()
            .map(|v| FieldError::new(v.pointer, v.message))
            .collect(),
        None => Vec::new(),
    };
    match callback {
        Some(Value::String(_)) => {}
        Some(_) => errors.push(FieldError::new("/callback_url", "must be a string")),
        None => errors.push(FieldError::new("/callback_url", "is required")),
    }
    errors.truncate(crate::works::schema::MAX_VIOLATIONS);
    match errors.is_empty() {
        true => Ok(()),
        false => Err(ApiError::Validation(errors)),
    }
}

/// Every acknowledgement of an async request carries `Location: /requests/{id}`.
fn with_location(mut response: Response) -> Response {
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(Ok(location)) = id.map(|id| HeaderValue::from_str(&format!("/requests/{id}"))) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}
