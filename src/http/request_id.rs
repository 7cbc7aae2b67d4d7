//! The `X-Request-Id` header: which incoming ids are echoed, and setting it on a
//! response (a leaf: the error type and the observing middleware both use it).

use axum::http::{HeaderMap, HeaderValue};

pub const X_REQUEST_ID: &str = "x-request-id";

/// An incoming `X-Request-Id` worth echoing: 1–128 visible ASCII characters.
pub fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(X_REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_owned())
}

pub fn set_request_id(headers: &mut HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(X_REQUEST_ID, v);
    }
}
