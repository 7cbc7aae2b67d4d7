//! The authentication layer (SPEC §10 "When auth applies", Part two's check order): the
//! one place a request's caller is resolved.
//!
//! It sits just inside the observing middleware (so a 401 still gets its request id,
//! span and metrics) and before every handler and extractor, so on the submit routes the
//! 401 comes before 415, 413, 400 and 422. A public route passes untouched; any other
//! request gets the [`Caller`](super::Caller) of its key as a request extension, or a 401
//! `/problems/unauthorized` with `WWW-Authenticate: Bearer`. While no key exists every
//! request passes as [`Caller::open`](super::Caller::open).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ring::KeyRing;
use crate::http::error::ApiError;

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
            ApiError::Unauthorized(refusal.detail()).into_response()
        }
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
