//! The HTTP side of the generator: one keep-alive client, request bodies built once,
//! and every outcome classified into a success or a failure reason (SPEC §7).
//!
//! Failure reasons are report keys: `http_<status>` for a non-2xx answer, `timeout`,
//! `connect`, `body` (the response broke off), `request` (any other transport error),
//! `no_request_id` (a 2xx from /async without a request id to match a callback to).
//! A request counts as successful only on a 2xx whose whole body arrived.
//! The client never retries and never follows redirects: what the server did is what is
//! counted.

use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

/// Which endpoint a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sync,
    Async,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx; for /async, with the request id its callback will carry.
    Ok { request_id: Option<String> },
    /// An answer other than 2xx.
    Status(StatusCode),
    /// No (complete) answer: `timeout`, `connect`, `body` or `request`.
    Transport(&'static str),
    /// A 2xx from /async without a request id to match a callback to.
    NoRequestId,
}

impl Outcome {
    /// The report key when the request failed, `None` when it succeeded.
    pub fn failure_reason(&self) -> Option<String> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Status(status) => Some(status_reason(*status)),
            Outcome::Transport(reason) => Some((*reason).to_string()),
            Outcome::NoRequestId => Some("no_request_id".to_string()),
        }
    }

    /// Whether the server answered at all (`requests_per_s` counts answers).
    pub fn answered(&self) -> bool {
        !matches!(self, Outcome::Transport(_))
    }
}

/// Sends /sync and /async requests over pooled keep-alive connections.
pub struct Client {
    http: reqwest::Client,
    base: String,
    // Parsed once: parsing a URL (IDNA included) per request showed in profiles.
    sync_url: reqwest::Url,
    async_url: reqwest::Url,
    sync_body: Bytes,
    async_body: Bytes,
}

impl Client {
    /// A client for `base` (no trailing slash). `callback_url` is put in /async bodies;
    /// `timeout` bounds each request from sending to the end of the response body.
    pub fn new(
        base: &str,
        text: &str,
        count: i64,
        callback_url: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        // reqwest's TLS needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .context("cannot build the HTTP client")?;
        let sync_body = serde_json::json!({ "text": text, "count": count });
        let async_body =
            serde_json::json!({ "text": text, "count": count, "callback_url": callback_url });
        Ok(Self {
            http,
            base: base.to_string(),
            sync_url: endpoint(base, "/sync")?,
            async_url: endpoint(base, "/async")?,
            sync_body: Bytes::from(sync_body.to_string()),
            async_body: Bytes::from(async_body.to_string()),
        })
    }

    /// GET /healthz: `Err` with a one-line reason when the target cannot be reached or is
    /// not healthy.
    pub async fn check_health(&self) -> Result<(), String> {
        let url = format!("{}/healthz", self.base);
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("{}: {}", failure_reason(&e), root_cause(&e)))?;
        match response.status() {
            s if s.is_success() => Ok(()),
            s => Err(format!("GET /healthz answered {s}")),
        }
    }

    /// Sends one request and reads its whole response (so the connection is reused).
    pub async fn send(&self, kind: Kind) -> Outcome {
        let (url, body) = match kind {
            Kind::Sync => (&self.sync_url, &self.sync_body),
            Kind::Async => (&self.async_url, &self.async_body),
        };
        let sent = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => read_response(kind, response).await,
            Err(e) => Outcome::Transport(failure_reason(&e)),
        }
    }
}

async fn read_response(kind: Kind, response: reqwest::Response) -> Outcome {
    let status = response.status();
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Outcome::Transport(failure_reason(&e)),
    };
    if !status.is_success() {
        return Outcome::Status(status);
    }
    match kind {
        Kind::Sync => Outcome::Ok { request_id: None },
        // SPEC §2: X-Request-Id equals the body's request_id; the body is the fallback.
        Kind::Async => match header_id.or_else(|| body_request_id(&body)) {
            Some(id) => Outcome::Ok {
                request_id: Some(id),
            },
            None => Outcome::NoRequestId,
        },
    }
}

fn endpoint(base: &str, path: &str) -> anyhow::Result<reqwest::Url> {
    let url = format!("{base}{path}");
    reqwest::Url::parse(&url).with_context(|| format!("`{url}` is not a URL"))
}

/// `http_503` and the like.
pub fn status_reason(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
}

/// The report key of a transport error.
fn failure_reason(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// The innermost cause, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn body_request_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("request_id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_http_keys() {
        assert_eq!(status_reason(StatusCode::SERVICE_UNAVAILABLE), "http_503");
        assert_eq!(status_reason(StatusCode::BAD_REQUEST), "http_400");
    }

    #[test]
    fn the_request_id_can_come_from_the_body() {
        let body = br#"{"request_id":"abc","status":"pending"}"#;
        assert_eq!(body_request_id(body).as_deref(), Some("abc"));
        assert_eq!(body_request_id(b"not json"), None);
        assert_eq!(body_request_id(br#"{"request_id":7}"#), None);
    }

    #[test]
    fn bodies_are_the_documented_json() {
        let c = Client::new(
            "http://h:1",
            "hi \"x\"",
            3,
            "http://127.0.0.1:9/callback",
            Duration::from_secs(1),
        )
        .unwrap();
        let sync: serde_json::Value = serde_json::from_slice(&c.sync_body).unwrap();
        assert_eq!(sync, serde_json::json!({"text": "hi \"x\"", "count": 3}));
        let asynch: serde_json::Value = serde_json::from_slice(&c.async_body).unwrap();
        assert_eq!(asynch["callback_url"], "http://127.0.0.1:9/callback");
        assert_eq!(c.sync_url.as_str(), "http://h:1/sync");
    }

    #[tokio::test]
    async fn an_unreachable_target_is_a_connect_failure() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            "x",
            1,
            "",
            Duration::from_secs(2),
        )
        .unwrap();
        let reason = c.check_health().await.unwrap_err();
        assert!(reason.starts_with("connect"), "{reason}");
        assert_eq!(c.send(Kind::Sync).await, Outcome::Transport("connect"));
    }
}
