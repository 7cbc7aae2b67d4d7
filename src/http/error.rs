//! `ApiError`: every way a request can fail, and the one place that maps it to an HTTP
//! status and an RFC 9457 `application/problem+json` body.
//!
//! Policy: client errors say precisely what is wrong (`detail`, and `errors` per field);
//! server errors (5xx) answer with a generic text and log the cause chain instead, so no
//! internal detail (SQL, paths) reaches a client. Each kind has a stable `type` URI,
//! `/problems/<slug>`, served as a short text by `GET /problems/{slug}` and listed in the
//! README.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

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

/// Every kind of problem: its slug (the last segment of `type`) and the human text served
/// at `/problems/<slug>`. `GET /problems/{slug}` documents exactly these slugs.
pub const PROBLEMS: &[(&str, &str)] = &[
    (
        "unauthorized",
        "401: an API key is required (the service holds at least one), and the request sent none, a malformed one, or one that is unknown or revoked. Send Authorization: Bearer <key>.",
    ),
    (
        "unsupported-media-type",
        "415: send the body with Content-Type: application/json.",
    ),
    (
        "payload-too-large",
        "413: the body is larger than the configured limit (default 256 KiB).",
    ),
    (
        "request-timeout",
        "408: the body did not arrive within the body timeout (default 30 s) counted from the end of the headers; the connection is closed. Send the whole body promptly.",
    ),
    (
        "malformed-body",
        "400: the body is not valid JSON, or is JSON but not an object.",
    ),
    (
        "validation-error",
        "422: a body field is missing, of the wrong type or out of range; `errors` lists each field.",
    ),
    (
        "invalid-query",
        "422: a query parameter is not acceptable; `errors` lists each parameter.",
    ),
    (
        "callback-refused",
        "400: callback_url is not an http(s) URL, or points at an address or name the callback policy refuses (loopback, private, link-local, metadata, ...).",
    ),
    (
        "invalid-idempotency-key",
        "400: Idempotency-Key must be 1 to 255 printable ASCII characters.",
    ),
    (
        "idempotency-key-reused",
        "422: the Idempotency-Key was already used with a different body.",
    ),
    (
        "idempotency-key-in-flight",
        "409: the first request with this Idempotency-Key has not finished; retry after Retry-After.",
    ),
    (
        "delivery-in-progress",
        "409: a delivery of this request's callback is pending or running; redeliver it once it has ended (sent or failed).",
    ),
    (
        "not-async",
        "422: the request is a sync request; it has no callback to redeliver.",
    ),
    (
        "not-found",
        "404: no such request id (or another tenant's), or no such route.",
    ),
    (
        "misdirected-request",
        "421: the instance is open (no API key exists) and the request's Host is a DNS name it does not answer: only IP addresses, localhost, *.localhost and the names of --allowed-host pass, so that a web page cannot reach it through a rebound DNS name. Start it with --allowed-host NAME, use an IP address, or create an API key.",
    ),
    ("missing-host", "400: the request has no Host header."),
    (
        "method-not-allowed",
        "405: the route does not accept this method; see the Allow header.",
    ),
    (
        "service-unavailable",
        "503: the database does not answer, the service is overloaded or shutting down; nothing was acknowledged. Retry after Retry-After.",
    ),
    (
        "overloaded",
        "503: the backlog of async requests whose callback is not yet delivered is at --max-pending-jobs; nothing was stored. Retry after Retry-After.",
    ),
    (
        "quota-exceeded",
        "429: this tenant's backlog of callbacks not yet delivered is at --max-pending-jobs-per-tenant (POST /async: retry after Retry-After), or a request was redelivered --max-redeliveries times; nothing was stored.",
    ),
    (
        "work-failed",
        "500: the work itself failed; the request is recorded with status failed.",
    ),
    (
        "internal-error",
        "500: an unexpected error; details are in the service log.",
    ),
];

/// The problem types of the work routes (SPEC §13, §17), answered by [`crate::http::works`]
/// from an upstream's outcome rather than from an [`ApiError`]; served with the others.
pub const WORK_PROBLEMS: &[(&str, &str)] = &[
    (
        "unknown-work",
        "404: no work of this name exists, the name is not a work name, or your tenant may not call it. GET /works lists the works you may call.",
    ),
    (
        "work-rejected",
        "422: the work's upstream refused the input (it answered a 4xx other than 408, 409, 425 and 429). `detail` quotes the start of its answer. The record says `failed`; retrying the same input fails the same way.",
    ),
    (
        "upstream-failed",
        "502: the work's upstream could not be reached, answered 5xx, 408, 409, 425 or 429, or answered a 2xx whose body is not JSON or is over the work's max_response_bytes. The record says `failed`.",
    ),
    (
        "upstream-timeout",
        "504: the work's upstream did not complete its answer within the work's timeout. The record says `failed`; a retry with the same Idempotency-Key reaches the upstream with the same idempotency-key header.",
    ),
    (
        "work-busy",
        "503: the work is at its max_in_flight on this instance and no slot freed within its timeout. Nothing was recorded; retry after Retry-After.",
    ),
];

/// The human text served at `/problems/<slug>`; `None` for an unknown slug.
pub fn problem_description(slug: &str) -> Option<&'static str> {
    PROBLEMS
        .iter()
        .chain(WORK_PROBLEMS)
        .find(|(known, _)| *known == slug)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each kind of [`ApiError`]; the `match` fails to compile when a kind is added.
    fn one_of_each() -> Vec<ApiError> {
        use ApiError::*;
        let all = vec![
            Unauthorized("x"),
            UnsupportedMediaType,
            PayloadTooLarge { limit: 1 },
            RequestTimeout(std::time::Duration::from_secs(1)),
            MalformedJson("x".into()),
            NotAnObject("null"),
            Validation(Vec::new()),
            InvalidQuery(Vec::new()),
            CallbackRefused("x".into()),
            InvalidIdempotencyKey("x"),
            IdempotencyKeyReused,
            IdempotencyKeyInFlight,
            DeliveryInProgress,
            NotAsync,
            NotFound("x".into()),
            Misdirected("x".into()),
            MissingHost,
            MethodNotAllowed("GET".into()),
            Unavailable("x"),
            Overloaded(1),
            QuotaExceeded(1),
            RedeliveryRefused("x".into()),
            WorkFailed {
                request_id: uuid::Uuid::nil(),
                error: "x".into(),
            },
            Internal(anyhow::anyhow!("x")),
        ];
        for e in &all {
            match e {
                Unauthorized(_)
                | UnsupportedMediaType
                | PayloadTooLarge { .. }
                | RequestTimeout(_)
                | MalformedJson(_)
                | NotAnObject(_)
                | Validation(_)
                | InvalidQuery(_)
                | CallbackRefused(_)
                | InvalidIdempotencyKey(_)
                | IdempotencyKeyReused
                | IdempotencyKeyInFlight
                | DeliveryInProgress
                | NotAsync
                | NotFound(_)
                | Misdirected(_)
                | MissingHost
                | MethodNotAllowed(_)
                | Unavailable(_)
                | Overloaded(_)
                | QuotaExceeded(_)
                | RedeliveryRefused(_)
                | WorkFailed { .. }
                | Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_problem_type_is_documented_and_every_documented_one_is_used() {
        let used: std::collections::BTreeSet<&str> =
            one_of_each().iter().map(ApiError::slug).collect();
        let documented: std::collections::BTreeSet<&str> =
            PROBLEMS.iter().map(|(slug, _)| *slug).collect();
        assert_eq!(used, documented);
        for (slug, text) in PROBLEMS {
            let status = one_of_each()
                .into_iter()
                .find(|e| e.slug() == *slug)
                .map(|e| e.status().as_u16())
                .unwrap();
            assert!(text.starts_with(&format!("{status}: ")), "{slug}: {text}");
        }
    }
}
