//! The authentication layer (SPEC §10 "When auth applies", Part two's check order): the
//! one place a request's caller is resolved.
//!
//! It sits just inside the observing middleware (so a 401 still gets its request id,
//! span and metrics) and before every handler and extractor, so on the submit routes the
//! 401 comes before 415, 413, 400 and 422. A public route passes untouched; any other
//! request gets the [`Caller`] of its key as a request extension, or a 401
//! `/problems/unauthorized` with `WWW-Authenticate: Bearer`. While no key exists every
//! request passes as [`Caller::open`]. Handlers take the [`Caller`] as an extractor.
//!
//! A refused request's body is read and dropped when it is small and arrives at once
//! (`DRAIN_LIMIT`, `DRAIN_TIME`), so that the client can send its next request on the
//! same connection; otherwise the 401 says `Connection: close`, so that no client reuses
//! a connection whose unread body the server is about to cut off.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::{Caller, KeyRing};

/// The most of a refused request's body read to keep its connection.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long a refused request's body may take to arrive before its connection is closed.
const DRAIN_TIME: Duration = Duration::from_millis(500);

/// Routes that never require a key: probes, metrics, documentation, problem texts and the
/// console's pages and assets (whose data comes from the protected JSON routes).
pub fn is_public(path: &str) -> bool {
    let under = |root: &str| {
        path == root
            || path
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
        || under("/docs")
        || under("/ui")
        || path.starts_with("/problems/")
}

/// The middleware: `axum::middleware::from_fn_with_state(ring, authenticate)`.
pub async fn authenticate(
    State(ring): State<Arc<KeyRing>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    match ring.caller(req.headers().get(AUTHORIZATION)) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(refusal) => {
            tracing::debug!(reason = ?refusal, "unauthorized");
            let mut response = ApiError::Unauthorized(refusal.detail()).into_response();
            if !drained(req).await {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

/// Reads and drops the body of `req`; `false` when it is too large or too slow for that.
async fn drained(req: Request) -> bool {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT as u64) {
        return false;
    }
    let body: Body = req.into_body();
    let read = Limited::new(body, DRAIN_LIMIT).collect();
    matches!(tokio::time::timeout(DRAIN_TIME, read).await, Ok(Ok(_)))
}

/// A handler's caller, as the layer above resolved it.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "no caller: the route is not behind the authentication layer"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn probes_docs_problems_and_the_console_are_public_and_nothing_else() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/docs/",
            "/docs/swagger-ui.css",
            "/problems/unauthorized",
            "/ui",
            "/ui/",
            "/ui/requests/0190",
        ] {
            assert!(is_public(path), "{path}");
        }
        for path in [
            "/sync",
            "/async",
            "/requests",
            "/requests/x",
            "/requests/redeliver",
            "/stats/callbacks",
            "/",
            "/problems",
            "/docsx",
            "/uix",
            "/healthz/x",
            "/metrics2",
            "/nothing",
        ] {
            assert!(!is_public(path), "{path}");
        }
    }
}
