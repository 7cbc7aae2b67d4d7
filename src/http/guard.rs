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

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::auth::KeyRing;

/// The Content-Security-Policy of the Swagger UI under /docs: scripts and styles from its
/// own files (Swagger UI sets inline style attributes; its icons are data: URIs), requests
/// to this origin only (the OpenAPI document, "try it out"), and no framing.
pub const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One allowed host pattern: an exact name, or `*.suffix` (any name ending in `.suffix`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    Exact(String),
    /// The suffix with its leading dot: `.example.com`.
    Wildcard(String),
}

impl AllowedHost {
    /// Parses `--allowed-host NAME` (`*.example.com` allowed); lower case, without a
    /// trailing dot or a port.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = normalise(raw.trim());
        let (wild, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, name.clone()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if rest.is_empty() || rest.len() > 253 || !rest.split('.').all(label_ok) {
            return Err(format!(
                "{raw:?} is not a host name (e.g. consuma.internal or *.example.com)"
            ));
        }
        Ok(match wild {
            true => AllowedHost::Wildcard(format!(".{rest}")),
            false => AllowedHost::Exact(rest),
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            AllowedHost::Exact(name) => host == name,
            AllowedHost::Wildcard(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

/// Lower case, without a port or a trailing dot.
fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a `Host` value: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn host_of(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// Whether a request naming `host` (a `Host` value) may reach an open instance.
pub fn host_allowed(value: &str, allowed: &[AllowedHost]) -> bool {
    let host = normalise(host_of(value.trim()));
    if host.parse::<IpAddr>().is_ok() || host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|a| a.matches(&host))
}

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
            let name = normalise(host_of(h.trim()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str]) -> Vec<AllowedHost> {
        list.iter()
            .map(|s| AllowedHost::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn ip_literals_and_localhost_always_pass() {
        for host in [
            "127.0.0.1:8000",
            "10.1.2.3",
            "[::1]:8000",
            "[fe80::1]",
            "localhost",
            "LOCALHOST:80",
            "localhost.",
            "app.localhost:3000",
            "A.B.Localhost.",
        ] {
            assert!(host_allowed(host, &[]), "{host}");
        }
    }

    #[test]
    fn other_names_pass_only_when_listed_ignoring_case_port_and_a_trailing_dot() {
        let list = allowed(&["consuma.internal", "*.example.com"]);
        for host in [
            "consuma.internal",
            "Consuma.Internal.:8000",
            "api.example.com",
            "a.b.EXAMPLE.com.:443",
        ] {
            assert!(host_allowed(host, &list), "{host}");
        }
        for host in [
            "evil.test",
            "example.com",
            "notexample.com",
            "consuma.internal.evil.test",
            "localhost.evil.test",
        ] {
            assert!(!host_allowed(host, &list), "{host}");
        }
        assert!(!host_allowed("consuma.internal", &[]));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for raw in ["", "*.", "a..b", "exa mple.com", "*", "a/b"] {
            assert!(AllowedHost::parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(
            AllowedHost::parse("API.Example.com.").unwrap(),
            AllowedHost::Exact("api.example.com".into())
        );
    }
}
