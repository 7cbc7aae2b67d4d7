//! `POST /sync/{work}` beside a busy work (SPEC §17 "Routes, in order"): the idempotency
//! look-up comes before a slot of `max_in_flight`; and a client that hangs up does not
//! stop the work (§13 "Sync answers", §16).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Backend, TestApp};

/// One work, `gate`: one slot, answering once the upstream is released.
async fn start(backend: Backend) -> (TestApp, Upstream, tempfile::TempDir) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    let text = format!(
        "[works.gate]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"5s\"\nmax_in_flight = 1\n",
        up.url("/gate")
    );
    std::fs::write(&file, text).unwrap();
    let app = TestApp::builder(backend)
        .arg("--works", file.display())
        .spawn()
        .await;
    (app, up, dir)
}

/// Sends `POST /sync/gate` in the background, with an Idempotency-Key if given.
fn send(app: &TestApp, key: Option<&str>) -> tokio::task::JoinHandle<reqwest::Response> {
    let mut request = app
        .request(Method::POST, "/sync/gate")
        .json(&json!({"page": 1}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    tokio::spawn(async move { request.send().await.unwrap() })
}

async fn a_replay_against_a_busy_work_gets_its_replay(backend: Backend) {
    let (app, up, _dir) = start(backend).await;
    let first = send(&app, Some("order-1"));
    up.wait_for(1).await;
    up.release();
    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    // Another request holds the only slot until the upstream is released.
    let holder = send(&app, None);
    up.wait_for(2).await;
    let again = send(&app, Some("order-1")).await.unwrap();
    assert!(
        !holder.is_finished(),
        "answered while the slot was still held"
    );
    assert_eq!(again.status(), 200, "a replay needs no slot");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    // The same key with other input is refused before a slot, too.
    let other = app
        .request(Method::POST, "/sync/gate")
        .header("idempotency-key", "order-1")
        .json(&json!({"page": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 422);
    assert_eq!(up.seen().len(), 2, "neither did any work");
    up.release();
    assert_eq!(holder.await.unwrap().status(), 200);
}

async fn a_client_that_hangs_up_does_not_stop_the_work(backend: Backend) {
    let (app, up, _dir) = start(backend).await;
    let client = send(&app, None);
    up.wait_for(1).await;
    let listed = app.get_json("/requests").await;
    let id = listed["requests"][0]["id"]
        .as_str()
        .expect("the record")
        .to_owned();
    assert_eq!(app.record(&id).await["status"], "processing");
    // The client hangs up while the upstream still works; give the server time to see it
    // (a lower bound: the service logs no line when a client goes away).
    client.abort();
    let _ = client.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    up.release();
    // The outcome is logged once it is stored ("request completed", in the request's span).
    let record = app.wait_terminal(&id, Duration::from_secs(10)).await;
    assert_eq!(record["status"], "completed", "{record:#}");
    assert_eq!(record["work"], "gate", "{record:#}");
}

both_backends!(
    a_replay_against_a_busy_work_gets_its_replay,
    a_client_that_hangs_up_does_not_stop_the_work,
);
