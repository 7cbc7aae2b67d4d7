//! Idempotency-Key (SPEC §2): replays, a different input, a request still in flight.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::{Backend, TestApp};

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn a_sync_replay_returns_the_first_response_and_does_no_new_work(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let first = post_with_key(
        &app,
        "/sync",
        "order-1",
        &json!({"text": "abc", "count": 1}),
    )
    .await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.text().await.unwrap();
    // Same validated input (the default count spelled out, an unknown field added).
    let again = post_with_key(
        &app,
        "/sync",
        "order-1",
        &json!({"count": 1, "text": "abc", "x": 0}),
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let id = serde_json::from_str::<Value>(&first_body).unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(again.headers()["x-request-id"], id.as_str());
    assert_eq!(
        again.text().await.unwrap(),
        first_body,
        "the first response, byte for byte"
    );
    assert_eq!(
        app.get_json("/requests").await["total"],
        1,
        "a replay is not a new record"
    );
    let replays = app
        .metric(r#"consuma_idempotent_replays_total{route="/sync"}"#)
        .await;
    assert_eq!(replays, Some(1.0));
}

async fn the_same_key_with_another_input_is_a_422(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        post_with_key(&app, "/sync", "k", &json!({"text": "abc"}))
            .await
            .status(),
        200
    );
    let r = post_with_key(&app, "/sync", "k", &json!({"text": "abc", "count": 2})).await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "/problems/idempotency-key-reused"
    );
    // Keys are scoped by method and path: the same key on /async is a different key.
    let app2 = TestApp::builder(backend).arg("--workers", 0).spawn().await;
    assert_eq!(
        post_with_key(&app2, "/sync", "shared", &json!({"text": "abc"}))
            .await
            .status(),
        200
    );
    let body = json!({"text": "abc", "callback_url": "https://example.com/hook"});
    assert_eq!(
        post_with_key(&app2, "/async", "shared", &body)
            .await
            .status(),
        202
    );
}

async fn a_repeat_while_the_first_is_running_is_a_409(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    let (client, url) = (app.client.clone(), app.url("/sync"));
    let first = tokio::spawn(async move {
        client
            .post(url)
            .header("idempotency-key", "slow")
            .json(&json!({"text": "abc"}))
            .send()
            .await
            .unwrap()
    });
    // Wait until the first is recorded (a keyed /sync logs "request accepted" once its
    // key and record are stored), then repeat it.
    app.wait_log("the first admitted", Duration::from_secs(10), |v| {
        v["message"] == "request accepted"
    })
    .await;
    assert_eq!(
        app.get_json("/requests?status=processing").await["total"],
        1
    );
    let r = post_with_key(&app, "/sync", "slow", &json!({"text": "abc"})).await;
    assert_eq!(r.status(), 409);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["type"],
        "/problems/idempotency-key-in-flight"
    );
    let first = first.await.unwrap();
    assert_eq!(first.status(), 200);
    let id = first.json::<Value>().await.unwrap()["request_id"].clone();
    let replay = post_with_key(&app, "/sync", "slow", &json!({"text": "abc"})).await;
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.json::<Value>().await.unwrap()["request_id"], id);
}

async fn an_async_replay_returns_the_same_202_and_calls_back_once(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend).allow_loopback().spawn().await;
    let body = json!({"text": "pay", "callback_url": receiver.url("/")});
    let first = post_with_key(&app, "/async", "pay-7", &body).await;
    assert_eq!(first.status(), 202);
    let location = first.headers()["location"].clone();
    let first_body: Value = first.json().await.unwrap();
    let again = post_with_key(&app, "/async", "pay-7", &body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location);
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    let id = first_body["request_id"].as_str().unwrap();
    app.wait_terminal(id, Duration::from_secs(30)).await;
    // A lower bound: a second callback would have followed the first by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.hits().len(), 1, "one request, one callback");
    let other = json!({"text": "pay", "count": 2, "callback_url": receiver.url("/")});
    assert_eq!(
        post_with_key(&app, "/async", "pay-7", &other)
            .await
            .status(),
        422
    );
}

both_backends!(
    a_sync_replay_returns_the_first_response_and_does_no_new_work,
    the_same_key_with_another_input_is_a_422,
    a_repeat_while_the_first_is_running_is_a_409,
    an_async_replay_returns_the_same_202_and_calls_back_once,
);
