//! POST /sync and POST /async: unpack and check the request, hand it to
//! [`Intake`](crate::intake::Intake), shape the answer.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, Problem};
use super::extract::{Fields, IdempotencyKey, JsonObject};
use super::observe::RequestContext;
use super::request_id::set_request_id;
use super::state::AppState;
use crate::auth::Caller;
use crate::intake::{AsyncAccepted, IntakeError, Submitted, SyncResponse};
use crate::store::StoredResponse;
use crate::telemetry::metrics as m;
use crate::work::{self, WorkInput};

/// Body of POST /sync. Unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; the handler reads it field by field.
pub struct SyncRequest {
    /// 1 to 10,000 Unicode scalar values.
    #[schema(example = "Hello world", min_length = 1, max_length = 10000)]
    text: String,
    /// A JSON integer from 1 to 100 (`"3"`, `3.0`, `true` and `null` are refused).
    #[schema(example = 3, minimum = 1, maximum = 100, default = 1, nullable = false)]
    count: Option<i64>,
}

/// Body of POST /async. Unknown fields are ignored.
#[derive(Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Documents the body; the handler reads it field by field.
pub struct AsyncRequest {
    #[schema(example = "Hello world", min_length = 1, max_length = 10000)]
    text: String,
    #[schema(example = 3, minimum = 1, maximum = 100, default = 1, nullable = false)]
    count: Option<i64>,
    /// An http(s) URL the callback policy accepts (no loopback, private, link-local or
    /// metadata destinations unless opened with --allow-callback-cidr).
    #[schema(
        example = "https://example.com/hook",
        max_length = 2048,
        format = "uri"
    )]
    callback_url: String,
}

/// The refusals POST /sync and /async share, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its derived description is used.
enum SubmitRefusals {
    /// Not JSON, not an object, callback_url refused by the callback policy (async), or a malformed Idempotency-Key
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// The first request with this Idempotency-Key is still running (async: not committed yet)
    #[response(status = 409, content_type = "application/problem+json",
        headers(("Retry-After" = String, description = "Seconds to wait before trying again")))]
    Conflict(Problem),
    /// The body did not arrive within --http-body-timeout-ms of the headers; the connection is closed
    #[response(status = 408, content_type = "application/problem+json")]
    Timeout(Problem),
    /// Body over the limit
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// Content-Type is not application/json
    #[response(status = 415, content_type = "application/problem+json")]
    MediaType(Problem),
    /// A field is missing, mistyped or out of range (one `errors` entry per field), or the Idempotency-Key was used with another input
    #[response(status = 422, content_type = "application/problem+json")]
    Unprocessable(Problem),
    /// POST /async: the tenant's backlog is at --max-pending-jobs-per-tenant; nothing was stored
    #[response(status = 429, content_type = "application/problem+json",
        headers(("Retry-After" = String, description = "Seconds to wait before trying again")))]
    QuotaExceeded(Problem),
    /// Database unavailable, the backlog at --max-pending-jobs (POST /async, `/problems/overloaded`), or shutting down; nothing was acknowledged
    #[response(status = 503, content_type = "application/problem+json",
        headers(("Retry-After" = String, description = "Seconds to wait before trying again")))]
    Unavailable(Problem),
}

/// The optional `Idempotency-Key` header of POST /sync and /async, for the OpenAPI
/// document: 1–255 printable ASCII (what [`IdempotencyKey`] accepts). The pattern leaves
/// out leading and trailing spaces, which HTTP strips from every header value.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only its derived description is used.
struct IdempotencyKeyHeader {
    /// 1–255 printable ASCII; a repeat with the same key and input replays the first
    /// response.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]([ -~]*[!-~])?$",
        nullable = false
    )]
    key: Option<String>,
}

/// Reads `text` and `count` into a [`WorkInput`], reporting every wrong field.
fn work_input(fields: &mut Fields<'_>) -> Option<WorkInput> {
    let text = fields.string("text");
    let text = text.and_then(|t| fields.check("text", work::check_text(&t).map(|()| t)));
    let count = fields.integer_or("count", 1, &work::count_range_message());
    let count = count.and_then(|n| fields.check("count", work::check_count(n)));
    WorkInput::new(text?, count?).ok()
}

/// Run the work and wait for its result.
#[utoipa::path(
    post, path = "/sync", tag = "work",
    request_body(content = SyncRequest, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, description = "The work is done and recorded", body = SyncResponse,
            headers(("X-Request-Id" = String, description = "Equal to request_id"))),
        (status = 500, description = "The work itself failed (recorded as failed)", body = Problem, content_type = "application/problem+json"),
        SubmitRefusals,
    )
)]
pub async fn post_sync(
    caller: Caller,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(map) = body?;
    let mut fields = Fields::new(&map);
    let input = work_input(&mut fields);
    fields.finish()?;
    let key = key?.0;
    state.refuse_when_draining()?;
    let input = input.expect("no field errors means the input was built");
    let outcome = state
        .intake
        .submit_sync(ctx.id, &caller.tenant, input, key, &ctx.trace_id)
        .await;
    respond(outcome, "/sync")
}

/// Accept the work now; POST the result to `callback_url` later.
#[utoipa::path(
    post, path = "/async", tag = "work",
    request_body(content = AsyncRequest, content_type = "application/json"),
    params(IdempotencyKeyHeader),
    responses(
        (status = 202, description = "Stored durably with its job; the callback follows", body = AsyncAccepted,
            headers(("Location" = String, description = "/requests/{request_id}"), ("X-Request-Id" = String, description = "Equal to request_id"))),
        (status = 200, description = "As 202, from a service started with --async-ack-status 200 (a migration aid)", body = AsyncAccepted,
            headers(("Location" = String, description = "/requests/{request_id}"), ("X-Request-Id" = String, description = "Equal to request_id"))),
        SubmitRefusals,
    )
)]
pub async fn post_async(
    caller: Caller,
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<JsonObject, ApiError>,
) -> Result<Response, ApiError> {
    let JsonObject(map) = body?;
    let mut fields = Fields::new(&map);
    let input = work_input(&mut fields);
    let callback = fields.string("callback_url");
    fields.finish()?;
    let callback = callback.expect("no field errors means callback_url is a string");
    let url = state
        .policy
        .check_url(&callback)
        .map_err(|r| ApiError::CallbackRefused(format!("{r}{}", local_hint(&callback, &r))))?;
    let key = key?.0;
    state.refuse_when_draining()?;
    let input = input.expect("no field errors means the input was built");
    let outcome = state
        .intake
        .submit_async(ctx.id, &caller.tenant, input, &url, key, &ctx.trace_id)
        .await;
    respond(outcome, "/async")
}

fn respond(
    outcome: Result<Submitted, IntakeError>,
    route: &'static str,
) -> Result<Response, ApiError> {
    let (response, replayed) = match outcome? {
        Submitted::New { response, .. } => (response, false),
        Submitted::Replayed(response) => {
            metrics::counter!(m::IDEMPOTENT_REPLAYS, "route" => route).increment(1);
            tracing::info!("idempotent replay");
            (response, true)
        }
    };
    Ok(stored_response(response, replayed, route))
}

/// Builds the HTTP response for a (possibly replayed) stored response; every
/// acknowledgement of /async (202, or 200 with `--async-ack-status 200`) has a `Location`.
fn stored_response(stored: StoredResponse, replayed: bool, route: &'static str) -> Response {
    #[derive(Deserialize)]
    struct Id {
        request_id: String,
    }
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let request_id = serde_json::from_str::<Id>(&stored.body)
        .map(|b| b.request_id)
        .unwrap_or_default();
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    let headers = response.headers_mut();
    set_request_id(headers, &request_id);
    if route == "/async"
        && let Ok(location) = HeaderValue::from_str(&format!("/requests/{request_id}"))
    {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// A receiver on the same machine is the first thing a new user tries (SPEC §17): a
/// refusal of loopback says how to open it; `localhost` stays reserved, so it points at
/// the address instead.
fn local_hint(raw: &str, refusal: &crate::ssrf::Refusal) -> &'static str {
    let host = url::Url::parse(raw).ok().and_then(|u| {
        u.host_str()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    });
    match host {
        Some(h) if h == "localhost" || h.ends_with(".localhost") => {
            "; for a receiver on this machine use http://127.0.0.1:PORT/… and start consuma with --allow-callback-cidr 127.0.0.0/8"
        }
        _ if refusal.0.contains("loopback") => {
            "; for a receiver on this machine start consuma with --allow-callback-cidr 127.0.0.0/8 (IPv6: ::1/128)"
        }
        _ => "",
    }
}
