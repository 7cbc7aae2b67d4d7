//! The `http` kind (SPEC §13 "The upstream request", §17): one POST to the operator's
//! service, judged into a result or a [`WorkError`]. The error text never carries the
//! upstream's URL or origin (reqwest's does), only fixed words and, for a 4xx, the first
//! 512 bytes of its body.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::file::WorkSpec;
use super::work::{Work, WorkCall, WorkError, WorkErrorKind};

/// Bytes of a 4xx body quoted in the error.
pub const EXCERPT_BYTES: usize = 512;
const AGENT: &str = concat!("consuma/", env!("CARGO_PKG_VERSION"));

/// A configured `[works.NAME]` of kind `http`.
pub struct HttpWork {
    spec: WorkSpec,
    client: reqwest::Client,
}

impl HttpWork {
    /// The work of `spec`; the client follows no redirect and uses no proxy.
    pub fn new(spec: WorkSpec) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        Ok(Self { spec, client })
    }

    pub fn spec(&self) -> &WorkSpec {
        &self.spec
    }

    async fn exchange(&self, call: &WorkCall) -> Result<Value, WorkError> {
        let mut request = self
            .client
            .post(self.spec.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, AGENT)
            .header("x-request-id", call.request_id.to_string())
            .header("idempotency-key", &call.idempotency_key)
            .header("x-consuma-tenant", &call.tenant);
        if let Some(tp) = &call.traceparent {
            request = request.header("traceparent", tp);
        }
        for (name, value) in &self.spec.headers {
            request = request.header(name.clone(), value.clone());
        }
        let response = request
            .body(call.input.clone())
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        judge(response, self.spec.max_response_bytes).await
    }
}

#[async_trait::async_trait]
impl Work for HttpWork {
    fn kind(&self) -> &str {
        "http"
    }

    /// One attempt; `timeout` covers the complete response.
    async fn perform(&self, call: &WorkCall) -> Result<Value, WorkError> {
        match tokio::time::timeout(self.spec.timeout, self.exchange(call)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(WorkError::new(
                WorkErrorKind::Timeout,
                format!("upstream timed out after {}", human(self.spec.timeout)),
            )),
        }
    }
}

/// The judging table of §13 as amended by §17.
async fn judge(response: Response, max_bytes: u64) -> Result<Value, WorkError> {
    let status = response.status();
    let code = status.as_u16();
    if status.is_success() {
        let body = read_bounded(response, max_bytes).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&body).map_err(|_| {
            WorkError::new(
                WorkErrorKind::BadAnswer,
                format!("upstream answered {code} with a body that is not JSON"),
            )
            .with_status(code)
        });
    }
    if is_retryable_status(status) {
        let after = retry_after(response.headers());
        return Err(WorkError::retryable(format!("upstream answered {code}"))
            .with_status(code)
            .with_retry_after(after));
    }
    if status.is_client_error() {
        let excerpt = read_excerpt(response).await;
        return Err(
            WorkError::rejected(format!("upstream answered {code}: {excerpt}")).with_status(code),
        );
    }
    // 1xx or 3xx: redirects are not followed, so this is not an answer.
    Err(WorkError::new(
        WorkErrorKind::BadAnswer,
        format!("upstream answered {code}"),
    )
    .with_status(code))
}

/// 408, 409, 425, 429 and every 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || matches!(status.as_u16(), 408 | 409 | 425 | 429)
}

/// The body, refused as soon as it passes `max_bytes`.
async fn read_bounded(mut response: Response, max_bytes: u64) -> Result<Vec<u8>, WorkError> {
    let code = response.status().as_u16();
    let too_big = || {
        WorkError::new(
            WorkErrorKind::BadAnswer,
            format!("upstream answered {code} with a body over max_response_bytes ({max_bytes})"),
        )
        .with_status(code)
    };
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e).with_status(code))?
    {
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most [`EXCERPT_BYTES`] of the body, cut at a UTF-8 boundary; what arrived when the
/// rest fails.
async fn read_excerpt(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt(&body)
}

/// `bytes` cut to at most [`EXCERPT_BYTES`] at a UTF-8 boundary (invalid bytes replaced).
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES + 4)]);
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Fixed words for a transport failure: never reqwest's text, which names the URL.
fn transport_error(e: &reqwest::Error) -> WorkError {
    let io = io_kind(e);
    let words = match io {
        Some(std::io::ErrorKind::ConnectionRefused) => "upstream connection refused",
        Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) => {
            "upstream connection reset"
        }
        _ if e.is_connect() => "upstream connection failed",
        _ if e.is_body() || e.is_decode() => "upstream response could not be read",
        _ => "upstream request failed",
    };
    WorkError::retryable(words)
}

fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// `30 s`, `250 ms`, `15 min`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        ms if ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{} s", ms / 1_000),
        ms => format!("{ms} ms"),
    }
}

#[cfg(test)]
#[path = "upstream_tests.rs"]
mod tests;
