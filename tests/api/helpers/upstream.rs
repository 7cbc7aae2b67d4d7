//! An operator's service for works tests (SPEC §13): a real HTTP server on loopback whose
//! paths answer each row of the judging table, recording every request it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::Notify;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone, Default)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    release: Arc<Notify>,
    /// How many requests arrived: waiters wake on each one instead of polling.
    arrived: Arc<tokio::sync::watch::Sender<usize>>,
}

/// The running upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    shared: Shared,
}

impl Upstream {
    /// Paths: `/ok` (200 `{"echo": <body>}`), `/empty` (200, no body), `/reject` (422
    /// `{"why":"no pages"}`), `/busy` (503, Retry-After 1), `/conflict` (409), `/html` (200
    /// `<html>`), `/big` (200, 2 KiB of JSON), `/hang` (never answers), `/gate` (answers
    /// 200 `{}` once [`Upstream::release`] is called), `/redirect` (302 to `/ok`).
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/{*path}", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (woken by each arrival), or panics after 10 s.
    pub async fn wait_for(&self, n: usize) {
        let mut arrivals = self.shared.arrived.subscribe();
        let reached = tokio::time::timeout(
            Duration::from_secs(10),
            arrivals.wait_for(|count| *count >= n),
        )
        .await;
        assert!(
            matches!(reached, Ok(Ok(_))),
            "the upstream received {} requests, not {n}",
            self.seen().len()
        );
    }

    /// Lets every request waiting on `/gate` answer.
    pub fn release(&self) {
        self.shared.release.notify_waiters();
    }
}

async fn answer(
    State(s): State<Shared>,
    axum::extract::Path(path): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let released = s.release.notified();
    s.seen.lock().unwrap().push(Seen {
        path: format!("/{path}"),
        headers,
        body: body.clone(),
    });
    s.arrived.send_modify(|count| *count += 1);
    let json = |code: StatusCode, text: String| {
        (code, [("content-type", "application/json")], text).into_response()
    };
    match path.as_str() {
        "ok" => {
            let input: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            json(
                StatusCode::OK,
                serde_json::json!({ "echo": input }).to_string(),
            )
        }
        "empty" => StatusCode::OK.into_response(),
        "reject" => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"why":"no pages"}"#.into(),
        ),
        "busy" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "try later",
        )
            .into_response(),
        "conflict" => StatusCode::CONFLICT.into_response(),
        "html" => (StatusCode::OK, "<html></html>").into_response(),
        "big" => json(StatusCode::OK, format!("\"{}\"", "x".repeat(2048))),
        "hang" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "gate" => {
            released.await;
            json(StatusCode::OK, "{}".into())
        }
        "redirect" => (StatusCode::FOUND, [("location", "/ok")]).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
