//! The outermost middleware: gives each request its id, span and trace, counts and times
//! it, and turns the framework's own bare errors (unknown route, wrong method) into
//! problem+json like every other error. Metric labels come from fixed sets
//! ([`route_label`], [`method_label`]): no client can create a new series.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;
use uuid::Uuid;

use super::error::{ApiError, PROBLEM_JSON};
use super::request_id::{X_REQUEST_ID, incoming_request_id, set_request_id};
use crate::telemetry::metrics as m;
use crate::telemetry::trace_context::{self, TraceParent};

/// What the handlers learn about the request from this middleware.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// A fresh UUID v7: the `request_id` of a request POST /sync or /async accepts.
    pub id: Uuid,
    /// 32 lowercase hex digits.
    pub trace_id: String,
}

pub async fn observe(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = route_label(req.uri().path());
    let fresh = Uuid::now_v7();
    let submit = method == Method::POST
        && matches!(route, "/sync" | "/async" | "/sync/{work}" | "/async/{work}");
    // Submissions are known by the id of their record; other requests echo the caller's.
    let request_id = match incoming_request_id(req.headers()) {
        Some(id) if !submit => id,
        _ => fresh.to_string(),
    };
    let span = tracing::info_span!(
        "request",
        method = %method,
        route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let trace_id = trace_context::adopt(&span, incoming);
    span.record("trace_id", trace_id.as_str());
    req.extensions_mut().insert(RequestContext {
        id: fresh,
        trace_id,
    });

    let mut response = next.run(req).instrument(span.clone()).await;
    if needs_problem_body(&response) {
        response = problem_for(response, route);
    }
    if !response.headers().contains_key(X_REQUEST_ID) {
        set_request_id(response.headers_mut(), &request_id);
    }
    let labels = [
        ("route", route.into()),
        ("method", method_label(&method).into()),
        ("status", status_label(response.status())),
    ];
    metrics::counter!(m::HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(m::HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            "response"
        );
    });
    response
}

/// The status code as a metric label, without an allocation for the common ones.
fn status_label(status: StatusCode) -> metrics::SharedString {
    const COMMON: [(u16, &str); 16] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (400, "400"),
        (401, "401"),
        (404, "404"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    match COMMON.iter().find(|(code, _)| *code == status.as_u16()) {
        Some((_, label)) => (*label).into(),
        None => status.as_u16().to_string().into(),
    }
}

/// A bounded set of route labels for metrics and logs (never the raw path).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/sync" => "/sync",
        "/async" => "/async",
        "/works" => "/works",
        "/destinations" => "/destinations",
        p if p.starts_with("/destinations/") => "/destinations/{id}",
        p if is_work_route(p, "/sync/") => "/sync/{work}",
        p if is_work_route(p, "/async/") => "/async/{work}",
        "/requests" => "/requests",
        "/requests/redeliver" => "/requests/redeliver",
        "/stats/callbacks" => "/stats/callbacks",
        "/me" => "/me",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p == "/docs" || p.starts_with("/docs/") => "/docs",
        p if p == "/ui" || p.starts_with("/ui/") => "/ui",
        p if p.starts_with("/requests/") && p.ends_with("/redeliver") => "/requests/{id}/redeliver",
        p if p.starts_with("/requests/") && p.ends_with("/attempts") => "/requests/{id}/attempts",
        p if p.starts_with("/requests/") => "/requests/{id}",
        p if p.starts_with("/problems/") => "/problems/{slug}",
        _ => "unmatched",
    }
}

/// `/sync/NAME` or `/async/NAME`: one non-empty segment after `prefix`.
fn is_work_route(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// A bounded set of method labels for metrics: the standard methods, else `other`, so
/// that no client can create new series (SPEC §9 "Bounded metrics").
pub fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

/// An error the router produced itself, with a plain or empty body.
fn needs_problem_body(response: &Response) -> bool {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    (status.is_client_error() || status.is_server_error()) && !is_problem
}

/// The methods a route answers, for the `Allow` header of a 405.
fn allowed_methods(route: &str) -> &'static str {
    match route {
        "/sync"
        | "/async"
        | "/sync/{work}"
        | "/async/{work}"
        | "/requests/redeliver"
        | "/requests/{id}/redeliver" => "POST",
        "/destinations/{id}" => "GET, HEAD, PATCH",
        _ => "GET, HEAD",
    }
}

fn problem_for(response: Response, route: &'static str) -> Response {
    let (parts, _) = response.into_parts();
    let error = match parts.status {
        StatusCode::NOT_FOUND => ApiError::NotFound("no such route".into()),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::MethodNotAllowed(allowed_methods(route).to_owned())
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge { limit: 0 },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        other if other.is_server_error() => {
            ApiError::Internal(anyhow::anyhow!("{other} from the framework"))
        }
        _ => ApiError::MalformedJson("the request could not be read".into()),
    };
    let mut out = error.into_response();
    for (name, value) in parts.headers.iter() {
        let ours = [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::ALLOW];
        if !ours.contains(name) && !out.headers().contains_key(name) {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_label_is_its_code_whether_common_or_not() {
        for code in [200, 202, 204, 301, 404, 418, 429, 503, 599] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(&*status_label(status), code.to_string(), "{code}");
        }
    }

    #[test]
    fn standard_methods_are_their_own_label_and_any_other_is_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for odd in ["FOO", "get", "PROPFIND", "X-12345678"] {
            let method = Method::from_bytes(odd.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{odd}");
        }
    }

    #[test]
    fn unknown_paths_are_unmatched_and_ids_share_one_route() {
        assert_eq!(route_label("/requests/0190-abc"), "/requests/{id}");
        assert_eq!(route_label("/wp-admin/x.php"), "unmatched");
        assert_eq!(route_label("/sync/"), "unmatched");
        assert_eq!(route_label("/sync/pdf-render"), "/sync/{work}");
        assert_eq!(route_label("/async/anything-at-all"), "/async/{work}");
        assert_eq!(route_label("/sync/a/b"), "unmatched");
        assert_eq!(route_label("/ui/requests/0190-abc"), "/ui");
        assert_eq!(route_label("/uix"), "unmatched");
    }
}
