//! `consuma load --work NAME --body-file FILE` (SPEC §13) on the wire: a real loopback
//! HTTP server records each request's path and body, so what the tool sends is checked
//! byte for byte (the service's work routes are tested with the works themselves).

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::load::load;

/// (path, body) of every POST the recorder received.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// Answers /sync/{work} with a result and /async/{work} with a 202 and a fresh id.
async fn recorder(seen: Seen) -> String {
    async fn work(State(seen): State<Seen>, uri: Uri, body: Bytes) -> (StatusCode, Json<Value>) {
        let mut seen = seen.lock().unwrap();
        seen.push((
            uri.path().to_owned(),
            String::from_utf8_lossy(&body).into_owned(),
        ));
        let id = format!("req-{}", seen.len());
        match uri.path().starts_with("/async/") {
            true => (
                StatusCode::ACCEPTED,
                Json(json!({"request_id": id, "status": "pending"})),
            ),
            false => (
                StatusCode::OK,
                Json(json!({"request_id": id, "status": "completed"})),
            ),
        }
    }
    async fn named(
        state: State<Seen>,
        _name: Path<String>,
        uri: Uri,
        body: Bytes,
    ) -> (StatusCode, Json<Value>) {
        work(state, uri, body).await
    }
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/sync/{name}", post(named))
        .route("/async/{name}", post(named))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_work_gets_the_body_file_as_written_and_async_adds_the_callback_url() {
    let seen = Seen::default();
    let target = recorder(seen.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    let input = "{\"url\": \"https://example.com/a.pdf\", \"pages\": [1, 2], \"dpi\": 150.0}";
    std::fs::write(&file, format!("{input}\n")).unwrap();
    let args = [
        "--work",
        "pdf",
        "--body-file",
        file.to_str().unwrap(),
        "--requests",
        "4",
        "--callback-timeout",
        "0s",
    ];
    let out = load(&target, &args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let callback_url = report["async"]["callback_url"]
        .as_str()
        .expect("callback_url");
    let seen = seen.lock().unwrap().clone();
    let on = |path: &str| {
        seen.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(on("/sync/pdf"), [input, input], "{seen:?}");
    let with_callback = format!(
        "{{\"url\": \"https://example.com/a.pdf\", \"pages\": [1, 2], \"dpi\": 150.0,\"callback_url\":\"{callback_url}\"}}"
    );
    assert_eq!(
        on("/async/pdf"),
        [with_callback.clone(), with_callback],
        "{seen:?}"
    );
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn without_a_body_file_a_work_gets_text_and_count() {
    let seen = Seen::default();
    let target = recorder(seen.clone()).await;
    let args = [
        "--work",
        "text",
        "--mode",
        "sync",
        "--requests",
        "1",
        "--text",
        "hi",
        "--count",
        "2",
    ];
    let out = load(&target, &args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/sync/text");
    let body: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(body, json!({"text": "hi", "count": 2}));
}
