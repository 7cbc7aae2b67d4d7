//! What every response and every open-mode request goes through at the edge (SPEC §16):
//! the Host rule that keeps an open instance from being read through a rebound DNS name,
//! and the headers that keep browsers from sniffing or framing what we serve.
//!
//! - [`host_rule`]: while no API key exists, a request whose `Host` is a DNS name other
//!   than `localhost` (or `*.localhost`) gets 421 `/problems/misdirected-request` unless
//!   `--allowed-host` lists it; IP literals always pass; `/healthz`, `/readyz` and
//!   `/metrics` are exempt; a request without Host is 400. Once keys exist, Host is not
//!   checked: a page cannot read a key it does not have.
//! - [`edge_headers`]: `X-Content-Type-Options: nosniff` on every response, and on /docs a
//!   Content-Security-Policy of its own (its assets only, never framed); the redirect
//!   from `/docs` to `/docs/` gets a body that says where to go.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::KeyRing;
use crate::config::allowed_host::{AllowedHost, host_allowed, shown_host};

/// The Content-Security-Policy of the Swagger UI under /docs: scripts and styles from its
/// own files (Swagger UI sets inline style attributes; its icons are data: URIs), requests
/// to this origin only (the OpenAPI document, "try it out"), and no framing.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What [`host_rule`] needs: the key ring (open or not) and `--allowed-host`.
#[derive(Clone)]
pub struct HostRule {
    pub keys: Arc<KeyRing>,
    pub allowed: Arc<[AllowedHost]>,
}

/// Routes a load balancer or a scraper reaches by whatever name: never checked.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The middleware: `axum::middleware::from_fn_with_state(rule, host_rule)`.
pub async fn host_rule(State(rule): State<HostRule>, req: Request, next: Next) -> Response {
    if rule.keys.requires_key() || exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        None => ApiError::MissingHost.into_response(),
        Some(h) if host_allowed(&h, &rule.allowed) => next.run(req).await,
        Some(h) => {
            let name = shown_host(&h);
            tracing::info!(host = %name, "refused: open mode answers only listed host names");
            ApiError::Misdirected(name).into_response()
        }
    }
}

/// The middleware: `axum::middleware::from_fn(edge_headers)`, outermost.
pub async fn edge_headers(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let docs = path == "/docs" || path.starts_with("/docs/");
    let bare_docs = path == "/docs";
    let mut response = next.run(req).await;
    if bare_docs && response.status().is_redirection() {
        // `curl localhost:8000/docs` would otherwise print nothing at all.
        *response.body_mut() = axum::body::Body::from("The API documentation is at /docs/\n");
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if docs {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DOCS_CSP),
        );
    }
    response
}
