//! What the generator sends and how each answer counts: request bodies built once, one
//! keep-alive [`Transport`], and every outcome classified into a success or a failure
//! reason (SPEC §7).
//!
//! Failure reasons are report keys: `http_<status>` for a non-2xx answer, `timeout` (no
//! complete answer within `--timeout`), `connect`, `body` (the response broke off),
//! `request` (any other transport error), `no_request_id` (a 2xx from /async without a
//! request id to match a callback to); one more, `interrupted`, is given by the run to a
//! request abandoned in flight by a second Ctrl-C ([`super::interrupt`]). A request
//! counts as successful only on a 2xx whose whole body arrived.

use std::time::Duration;

use axum::body::Bytes;
use hyper::{Method, StatusCode};

use super::transport::{Answer, Endpoint, Transport};

/// Time allowed for GET /healthz before the run.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

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
    transport: Transport,
    health: Endpoint,
    sync: Endpoint,
    r#async: Endpoint,
    sync_body: Bytes,
    async_body: Bytes,
    timeout: Duration,
}

impl Client {
    /// A client for `base` (no trailing slash) loading `work` (`None`: the plain /sync
    /// and /async routes) with `input` as every request's body, a JSON object's text;
    /// /async bodies get `callback_url` added. `timeout` bounds each request from
    /// sending to the end of the response body.
    pub fn new(
        base: &str,
        work: Option<&str>,
        input: &str,
        callback_url: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let health = Endpoint::new(base, "/healthz")?;
        let route = |mode: &str| match work {
            Some(work) => format!("/{mode}/{work}"),
            None => format!("/{mode}"),
        };
        Ok(Self {
            transport: Transport::for_target(&health)?,
            health,
            sync: Endpoint::new(base, &route("sync"))?,
            r#async: Endpoint::new(base, &route("async"))?,
            sync_body: Bytes::from(input.trim().to_owned()),
            async_body: Bytes::from(with_callback_url(input, callback_url)),
            timeout,
        })
    }

    /// Sends `Authorization: Bearer <key>` on every request from now on (`--api-key`).
    pub fn with_api_key(mut self, key: Option<&str>) -> anyhow::Result<Self> {
        if let Some(key) = key {
            for endpoint in [&mut self.health, &mut self.sync, &mut self.r#async] {
                *endpoint = endpoint.clone().with_api_key(key)?;
            }
        }
        Ok(self)
    }

    /// GET /healthz: `Err` with a one-line reason when the target cannot be reached or is
    /// not healthy.
    pub async fn check_health(&self) -> Result<(), String> {
        let request = self.transport.request(Method::GET, &self.health, None);
        match tokio::time::timeout(HEALTH_TIMEOUT, request).await {
            Err(_) => Err(format!(
                "timeout: no answer to GET /healthz within {HEALTH_TIMEOUT:?}"
            )),
            Ok(Err(failure)) => Err(format!("{}: {}", failure.reason, failure.detail)),
            Ok(Ok(answer)) if answer.status.is_success() => Ok(()),
            Ok(Ok(answer)) => Err(format!("GET /healthz answered {}", answer.status)),
        }
    }

    /// Sends one request and reads its whole response (so the connection is reused).
    pub async fn send(&self, kind: Kind) -> Outcome {
        let (to, body) = match kind {
            Kind::Sync => (&self.sync, &self.sync_body),
            Kind::Async => (&self.r#async, &self.async_body),
        };
        let request = self.transport.request(Method::POST, to, Some(body.clone()));
        match tokio::time::timeout(self.timeout, request).await {
            Err(_) => Outcome::Transport("timeout"),
            Ok(Err(failure)) => Outcome::Transport(failure.reason),
            Ok(Ok(answer)) => outcome_of(kind, answer),
        }
    }
}

fn outcome_of(kind: Kind, answer: Answer) -> Outcome {
    if !answer.status.is_success() {
        return Outcome::Status(answer.status);
    }
    match kind {
        Kind::Sync => Outcome::Ok { request_id: None },
        // SPEC §2: X-Request-Id equals the body's request_id; the body is the fallback.
        Kind::Async => match answer.request_id.or_else(|| body_request_id(&answer.body)) {
            Some(id) => Outcome::Ok {
                request_id: Some(id),
            },
            None => Outcome::NoRequestId,
        },
    }
}

/// The text of the JSON object `input` with a last member `callback_url` added; the
/// other members keep their order and exact text (SPEC §17).
fn with_callback_url(input: &str, callback_url: &str) -> String {
    let inner = input.trim().trim_end_matches('}').trim_end();
    let member = format!("\"callback_url\":{}", serde_json::Value::from(callback_url));
    match inner.ends_with('{') {
        true => format!("{inner}{member}}}"),
        false => format!("{inner},{member}}}"),
    }
}

/// The body of the `text` work: `{"text": …, "count": …}`.
pub fn text_input(text: &str, count: i64) -> String {
    serde_json::json!({ "text": text, "count": count }).to_string()
}

/// Reads `--body-file`: `Err` with a one-line reason unless it holds a JSON object
/// (without `callback_url` when `adds_callback` is set: the tool adds its own).
pub fn read_input(path: &std::path::Path, adds_callback: bool) -> Result<String, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--body-file {shown}: cannot read it: {e}"))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => {
            match adds_callback && map.contains_key("callback_url") {
                true => Err(format!(
                    "--body-file {shown}: has a callback_url; the tool adds its receiver's"
                )),
                false => Ok(text.trim().to_owned()),
            }
        }
        Ok(_) => Err(format!("--body-file {shown}: is not a JSON object")),
        Err(e) => Err(format!("--body-file {shown}: is not JSON: {e}")),
    }
}

/// `http_503` and the like.
pub fn status_reason(status: StatusCode) -> String {
    format!("http_{}", status.as_u16())
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
            None,
            &text_input("hi \"x\"", 3),
            "http://127.0.0.1:9/callback",
            Duration::from_secs(1),
        )
        .unwrap();
        let sync: serde_json::Value = serde_json::from_slice(&c.sync_body).unwrap();
        assert_eq!(sync, serde_json::json!({"text": "hi \"x\"", "count": 3}));
        let asynch: serde_json::Value = serde_json::from_slice(&c.async_body).unwrap();
        assert_eq!(asynch["callback_url"], "http://127.0.0.1:9/callback");
    }

    #[test]
    fn the_callback_url_is_added_last_keeping_the_members_as_written() {
        let url = "http://127.0.0.1:9/callback";
        let added = with_callback_url(" {\"z\": 1.50, \"a\": [ 1 ]}\n", url);
        assert_eq!(
            added,
            format!("{{\"z\": 1.50, \"a\": [ 1 ],\"callback_url\":\"{url}\"}}")
        );
        assert_eq!(
            with_callback_url("{ }", url),
            format!("{{\"callback_url\":\"{url}\"}}")
        );
    }

    #[test]
    fn a_body_file_must_hold_a_json_object() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ok = write("ok.json", "{\"url\": \"https://example.com/a.pdf\"}\n");
        assert_eq!(
            read_input(&ok, true).unwrap(),
            "{\"url\": \"https://example.com/a.pdf\"}"
        );
        for (name, text) in [("a.json", "[1]"), ("b.json", "7"), ("c.json", "{nope")] {
            let e = read_input(&write(name, text), false).unwrap_err();
            assert!(e.starts_with("--body-file"), "{e}");
        }
        let own = write("d.json", "{\"callback_url\": \"http://x/\"}");
        assert!(read_input(&own, true).is_err());
        assert!(read_input(&own, false).is_ok());
        assert!(read_input(&dir.path().join("missing.json"), false).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_target_is_a_connect_failure() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = Client::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            &text_input("x", 1),
            "",
            Duration::from_secs(2),
        )
        .unwrap();
        let reason = c.check_health().await.unwrap_err();
        assert!(reason.starts_with("connect"), "{reason}");
        assert_eq!(c.send(Kind::Sync).await, Outcome::Transport("connect"));
    }
}
