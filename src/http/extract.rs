//! Extractors that turn raw requests into checked values, or into an [`ApiError`].
//!
//! The order of the checks is SPEC §2's: 415 (content type), 413 (size), 400 (not JSON,
//! not an object), then 422 (fields, done by the handlers on the returned object). A body
//! that has not arrived `--http-body-timeout-ms` after the end of the headers is a 408
//! before any of them (SPEC §9): there is no complete request to judge.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use futures::StreamExt;
use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};
use super::server::HeadersReceived;
use super::state::AppState;

/// Past the limit, at most this much more of an oversized body is read and discarded so
/// that the client gets to read its 413 instead of a connection reset.
const DRAIN_CAP: usize = 16 * 1024 * 1024;

/// A JSON object body, checked for content type and size.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    /// [`RawJsonObject`]'s checks, keeping only the object.
    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let raw = RawJsonObject::from_request(req, state).await?;
        Ok(JsonObject(raw.map))
    }
}

/// A JSON object body with its exact bytes, for a work's upstream (SPEC §17): read within
/// the body timeout (408), then checked for content type (415), size (413) and being a
/// JSON object (400).
pub struct RawJsonObject {
    pub bytes: Vec<u8>,
    pub map: Map<String, Value>,
}

impl FromRequest<AppState> for RawJsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let json = is_json(req.headers());
        let declared = content_length(req.headers());
        let timeout = state.config.http.body_timeout;
        let deadline = body_deadline(&req, timeout);
        let body =
            tokio::time::timeout_at(deadline, read_limited(req.into_body(), limit, declared))
                .await
                .map_err(|_| ApiError::RequestTimeout(timeout))?;
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = body.ok_or(ApiError::PayloadTooLarge { limit })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(RawJsonObject { bytes, map }),
            Ok(other) => Err(ApiError::NotAnObject(json_kind(&other))),
            Err(e) => Err(ApiError::MalformedJson(e.to_string())),
        }
    }
}

/// When the body must have arrived: `timeout` after the end of the headers, as stamped by
/// the [server](super::server) (or from now, for a router served some other way).
fn body_deadline(req: &Request, timeout: std::time::Duration) -> tokio::time::Instant {
    let received = req.extensions().get::<HeadersReceived>();
    received.map_or_else(tokio::time::Instant::now, |r| r.0) + timeout
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads the body if it fits in `limit`; otherwise drains (a bounded amount of) the rest
/// and returns `None`.
async fn read_limited(body: Body, limit: usize, declared: Option<usize>) -> Option<Vec<u8>> {
    if declared.is_some_and(|n| n > DRAIN_CAP) {
        return None; // Too big to drain politely; the connection will be closed.
    }
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else { return None };
        seen += chunk.len();
        if seen > DRAIN_CAP {
            return None;
        }
        if seen <= limit {
            buf.extend_from_slice(&chunk);
        }
    }
    (seen <= limit).then_some(buf)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The optional `Idempotency-Key` header (SPEC §2 "Idempotency"): 1–255 printable ASCII.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(raw) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let bytes = raw.as_bytes();
        if bytes.is_empty() {
            return Err(ApiError::InvalidIdempotencyKey("must not be empty"));
        }
        if bytes.len() > 255 {
            return Err(ApiError::InvalidIdempotencyKey(
                "must be at most 255 characters",
            ));
        }
        if !bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(ApiError::InvalidIdempotencyKey("must be printable ASCII"));
        }
        Ok(Self(Some(String::from_utf8_lossy(bytes).into_owned())))
    }
}

/// Field checks for the body of POST /sync and /async; collects one error per field.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            map,
            errors: Vec::new(),
        }
    }

    /// A required string field.
    pub fn string(&mut self, name: &str) -> Option<String> {
        match self.map.get(name) {
            None => self.fail(name, "field required"),
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => self.fail(name, &format!("must be a string, got {}", json_kind(other))),
        }
    }

    /// An optional string field (absent or `null`).
    pub fn optional_string(&mut self, name: &str) -> Option<String> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => self.fail(name, &format!("must be a string, got {}", json_kind(other))),
        }
    }

    /// An optional integer field: a JSON integer literal only (`"3"`, `3.0`, `1e1` and
    /// `true` are refused).
    pub fn integer_or(&mut self, name: &str, default: i64, range_msg: &str) -> Option<i64> {
        match self.map.get(name) {
            None => Some(default),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                // A u64 above i64::MAX is out of range anyway.
                Some(n.as_i64().unwrap_or(i64::MAX))
            }
            Some(Value::Number(_)) => self.fail(name, range_msg),
            Some(other) => self.fail(
                name,
                &format!("must be an integer, got {}", json_kind(other)),
            ),
        }
    }

    /// Passes `checked` on, or records its error for `name`.
    pub fn check<T>(&mut self, name: &str, checked: Result<T, String>) -> Option<T> {
        match checked {
            Ok(value) => Some(value),
            Err(message) => self.fail(name, &message),
        }
    }

    /// Records an error for `name` found after typing (a range check, say).
    pub fn push(&mut self, name: &str, message: impl Into<String>) {
        if !self.errors.iter().any(|e| e.field == name) {
            self.errors.push(FieldError::new(name, message));
        }
    }

    fn fail<T>(&mut self, name: &str, message: &str) -> Option<T> {
        self.push(name, message);
        None
    }

    pub fn finish(self) -> Result<(), ApiError> {
        match self.errors.is_empty() {
            true => Ok(()),
            false => Err(ApiError::Validation(self.errors)),
        }
    }
}
