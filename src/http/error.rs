//! `ApiError`: every way a request can fail, and the one place that maps it to an HTTP
//! status and an RFC 9457 `application/problem+json` body.
//!
//! Policy: client errors say precisely what is wrong (`detail`, and `errors` per field);
//! server errors (5xx) answer with a generic text and log the cause chain instead, so no
//! internal detail (SQL, paths) reaches a client. Each kind has a stable `type` URI,
//! `/problems/<slug>`, served as a short text by `GET /problems/{slug}` and listed in the
//! README; those texts are the catalogue in `error/problems.rs` ([`PROBLEMS`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

mod problems;
pub use problems::{PROBLEMS, WORK_PROBLEMS, problem_description};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One wrong field of a body, query string or header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The body key, query parameter or header at fault.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of every error response (RFC 9457).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<slug>`: one URI per kind of problem, documented in the README.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// One entry per wrong field (422 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// The 503 of every operation that needs the database, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "The database does not answer, or the service is shutting down; nothing was acknowledged",
    content_type = "application/problem+json",
    headers(("Retry-After" = String, description = "Seconds to wait before trying again"))
)]
#[allow(dead_code)] // Only its derived description is used.
pub struct ServiceUnavailable(Problem);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no API key, or not a valid one, while the service requires keys (SPEC §10).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 415: the body is not declared as `application/json`.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// 413: the body is longer than the configured limit.
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 408: the body did not arrive within `--http-body-timeout-ms` of the headers.
    #[error("the request body did not arrive within {} ms of its headers", .0.as_millis())]
    RequestTimeout(std::time::Duration),
    /// 400: the body is not JSON at all.
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 400: the body is JSON but not an object.
    #[error("the body must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// 422: one or more body fields are missing, mistyped or out of range.
    #[error("invalid body field(s): {}", summarise(.0))]
    Validation(Vec<FieldError>),
    /// 422: one or more query parameters are not acceptable.
    #[error("invalid query parameter(s): {}", summarise(.0))]
    InvalidQuery(Vec<FieldError>),
    /// 400: the `callback_url` is not a URL, or the callback policy refuses it.
    #[error("callback_url refused: {0}")]
    CallbackRefused(String),
    /// 400: the `Idempotency-Key` header is empty, too long or not printable ASCII.
    #[error("Idempotency-Key {0}")]
    InvalidIdempotencyKey(&'static str),
    /// 422: the key was used before with a different input.
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    /// 409: the first request with this key has not finished yet.
    #[error("a request with this Idempotency-Key is still in progress; retry later")]
    IdempotencyKeyInFlight,
    /// 409: a delivery of the request is pending or running; redeliver it afterwards.
    #[error("a delivery of this request is pending or running; redeliver it once it has ended")]
    DeliveryInProgress,
    /// 422: a sync request has no callback to redeliver.
    #[error("this is a sync request: it has no callback to redeliver")]
    NotAsync,
    /// 404: no such request, or no such route.
    #[error("{0}")]
    NotFound(String),
    /// 421: open mode (no API key) and a Host this instance does not answer (SPEC §16).
    #[error(
        "this instance has no API key and answers only IP addresses, localhost and the names --allowed-host lists; {0:?} is not one of them"
    )]
    Misdirected(String),
    /// 400: no Host header (HTTP/1.1 requires one).
    #[error("the request has no Host header")]
    MissingHost,
    /// 405: the route exists but not for this method.
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(String),
    /// 503: the database does not answer, the write queue is full, or the service is
    /// shutting down. Nothing was acknowledged.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// 503: the backlog of callbacks not yet delivered is at `--max-pending-jobs`.
    #[error(
        "overloaded: {0} callbacks are waiting to be delivered (--max-pending-jobs); nothing was stored"
    )]
    Overloaded(u64),
    /// 429: the tenant's backlog is at `--max-pending-jobs-per-tenant`.
    #[error(
        "quota exceeded: this tenant has {0} callbacks waiting to be delivered (--max-pending-jobs-per-tenant); nothing was stored"
    )]
    QuotaExceeded(u64),
    /// 429: a redelivery over the tenant's backlog or `--max-redeliveries` (SPEC §16);
    /// no `Retry-After`: waiting does not make the second one pass.
    #[error("quota exceeded: {0}")]
    RedeliveryRefused(String),
    /// 500: the work itself failed on /sync (the record says `failed`).
    #[error("the work failed: {error}")]
    WorkFailed {
        request_id: uuid::Uuid,
        error: String,
    },
    /// 500: a bug or an unexpected fault; the cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The one status map of the service.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            MalformedJson(_)
            | NotAnObject(_)
            | CallbackRefused(_)
            | InvalidIdempotencyKey(_)
            | MissingHost => StatusCode::BAD_REQUEST,
            Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Validation(_) | InvalidQuery(_) | IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            IdempotencyKeyInFlight | DeliveryInProgress => StatusCode::CONFLICT,
            NotAsync => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Unavailable(_) | Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            QuotaExceeded(_) | RedeliveryRefused(_) => StatusCode::TOO_MANY_REQUESTS,
            WorkFailed { .. } | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `/problems/<slug>` of this kind of problem.
    pub fn slug(&self) -> &'static str {
        use ApiError::*;
        match self {
            Unauthorized(_) => "unauthorized",
            UnsupportedMediaType => "unsupported-media-type",
            PayloadTooLarge { .. } => "payload-too-large",
            RequestTimeout(_) => "request-timeout",
            MalformedJson(_) | NotAnObject(_) => "malformed-body",
            Validation(_) => "validation-error",
            InvalidQuery(_) => "invalid-query",
            CallbackRefused(_) => "callback-refused",
            InvalidIdempotencyKey(_) => "invalid-idempotency-key",
            IdempotencyKeyReused => "idempotency-key-reused",
            IdempotencyKeyInFlight => "idempotency-key-in-flight",
            DeliveryInProgress => "delivery-in-progress",
            NotAsync => "not-async",
            NotFound(_) => "not-found",
            Misdirected(_) => "misdirected-request",
            MissingHost => "missing-host",
            MethodNotAllowed(_) => "method-not-allowed",
            Unavailable(_) => "service-unavailable",
            Overloaded(_) => "overloaded",
            QuotaExceeded(_) | RedeliveryRefused(_) => "quota-exceeded",
            WorkFailed { .. } => "work-failed",
            Internal(_) => "internal-error",
        }
    }

    fn field_errors(&self) -> Option<Vec<FieldError>> {
        match self {
            ApiError::Validation(e) | ApiError::InvalidQuery(e) => Some(e.clone()),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".into(),
            other => other.to_string(),
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            type_: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            errors: self.field_errors(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::Overloaded => ApiError::Unavailable("the write queue is full"),
            StoreError::Unavailable(_) => ApiError::Unavailable("the database does not answer"),
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::intake::IntakeError> for ApiError {
    fn from(e: crate::intake::IntakeError) -> Self {
        use crate::intake::IntakeError;
        match e {
            IntakeError::KeyReused => ApiError::IdempotencyKeyReused,
            IntakeError::InFlight => ApiError::IdempotencyKeyInFlight,
            IntakeError::Overloaded(n) => ApiError::Overloaded(n),
            IntakeError::QuotaExceeded(n) => ApiError::QuotaExceeded(n),
            IntakeError::WorkFailed { request_id, error } => {
                ApiError::WorkFailed { request_id, error }
            }
            IntakeError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?anyhow_chain(&self), status = status.as_u16(), "request failed");
        }
        let mut response = (status, axum::Json(self.problem())).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::Unavailable(_) | ApiError::IdempotencyKeyInFlight => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::Overloaded(_) | ApiError::QuotaExceeded(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::RequestTimeout(_) => {
                // The rest of the body is not waited for: the connection ends here.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MethodNotAllowed(allow) => {
                if let Ok(v) = HeaderValue::from_str(allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            ApiError::WorkFailed { request_id, .. } => {
                super::request_id::set_request_id(headers, &request_id.to_string());
            }
            _ => {}
        }
        response
    }
}

/// `field: message; field: message`, for a problem's `detail`.
fn summarise(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    parts.join("; ")
}

/// Formats an error with its whole `source()` chain, for logs.
pub fn anyhow_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
