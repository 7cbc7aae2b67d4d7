//! Redelivery and the chart data (SPEC §11), through the durable engine.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, work};

const WAIT: Duration = Duration::from_secs(30);

async fn redeliver(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/requests/{id}/redeliver")))
        .send()
        .await
        .unwrap()
}

/// A failed callback sent again: same webhook-id and body bytes, numbering continues,
/// the first new attempt is `manual`, with a fresh budget.
async fn a_failed_callback_is_redelivered_with_the_same_id_and_body(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    let id = app.submit_async("again", &receiver.url("/cb")).await;
    let failed = app.wait_terminal(&id, WAIT).await;
    assert_eq!(failed["callback_status"], "failed");

    let r = redeliver(&app, &id).await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["location"], format!("/requests/{id}").as_str());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"request_id": id, "callback_status": "pending"})
    );

    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["callback_status"], "sent");
    let hits = receiver.hits_for(&id);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].body, hits[1].body, "the same bytes");
    assert_eq!(hits[0].header("webhook-id"), hits[1].header("webhook-id"));
    assert_eq!(hits[1].header("x-request-id"), id);
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (
            attempts[0]["attempt"].clone(),
            attempts[0]["trigger"].clone()
        ),
        (json!(1), json!("scheduled"))
    );
    assert_eq!(
        (
            attempts[1]["attempt"].clone(),
            attempts[1]["trigger"].clone()
        ),
        (json!(2), json!("manual"))
    );
    assert_eq!(done["callback_attempts"], 2);

    // A sent callback may be asked for again too.
    assert_eq!(redeliver(&app, &id).await.status(), 202);
    receiver.wait_for(3, WAIT).await;
}

async fn redelivery_refuses_pending_sync_and_unknown_requests(backend: Backend) {
    let slow = Receiver::scripted("127.0.0.1", |_| {
        Reply::status(200).after(Duration::from_secs(2))
    })
    .await;
    let app = TestApp::builder(backend).allow_loopback().spawn().await;
    let id = app.submit_async("busy", &slow.url("/")).await;
    let busy = redeliver(&app, &id).await;
    assert_eq!(busy.status(), 409);
    let problem: Value = busy.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/delivery-in-progress");

    let sync: Value = app.post_sync(work("inline", 1)).await.json().await.unwrap();
    let sync = redeliver(&app, sync["request_id"].as_str().unwrap()).await;
    assert_eq!(sync.status(), 422);
    let problem: Value = sync.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/not-async");

    let unknown = redeliver(&app, &uuid::Uuid::now_v7().to_string()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(redeliver(&app, "not-a-uuid").await.status(), 404);

    let wrong_method = app.get("/requests/redeliver").await;
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
}

/// Every failed callback since a time goes out again; the call says how many matched.
async fn failed_callbacks_since_a_time_are_redelivered_in_bulk(backend: Backend) {
    let flaky = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    let ok = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    let before = Utc::now() - chrono::TimeDelta::seconds(1);
    let mut failed = Vec::new();
    for i in 0..3 {
        failed.push(app.submit_async(&format!("f {i}"), &flaky.url("/")).await);
    }
    let sent = app.submit_async("fine", &ok.url("/")).await;
    for id in failed.iter().chain([&sent]) {
        app.wait_terminal(id, WAIT).await;
    }
    let post = |body: Value| {
        let (client, url) = (app.client.clone(), app.url("/requests/redeliver"));
        async move { client.post(url).json(&body).send().await.unwrap() }
    };
    let later = (Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let none: Value = post(json!({"callback_status": "failed", "since": later}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["redelivered"], 0);
    let r = post(json!({"callback_status": "failed", "since": before.to_rfc3339()})).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["redelivered"], 3);
    for id in &failed {
        let sent = |r: &Value| r["callback_status"] == "sent";
        let done = app.wait_record(id, "redelivered", WAIT, sent).await;
        assert_eq!(done["attempts"][1]["trigger"], "manual");
    }
    assert_eq!(ok.hits().len(), 1, "the sent one was left alone");
    for bad in [
        json!({"since": before.to_rfc3339()}),
        json!({"callback_status": "sent", "since": before.to_rfc3339()}),
        json!({"callback_status": "failed", "since": "yesterday"}),
        json!({"callback_status": "failed"}),
    ] {
        assert_eq!(post(bad.clone()).await.status(), 422, "{bad}");
    }
}

/// A redelivery is a job like any other: a crash during it resumes it.
async fn a_crash_during_a_redelivery_resumes_it(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(500),
        1 => Reply::status(200).after(Duration::from_secs(30)),
        _ => Reply::status(200),
    })
    .await;
    let mut app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .arg("--lease-secs", 2)
        .spawn()
        .await;
    let id = app.submit_async("crash", &receiver.url("/")).await;
    app.wait_terminal(&id, WAIT).await;
    assert_eq!(redeliver(&app, &id).await.status(), 202);
    receiver.wait_for(2, WAIT).await;
    app.kill().await;
    app.restart().await;
    let done = app.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(done["callback_status"], "sent");
    assert!(receiver.hits_for(&id).len() >= 3);
}

/// The chart counts endings per minute, the last hour oldest first.
async fn the_chart_counts_callbacks_that_ended_per_minute(backend: Backend) {
    let ok = Receiver::ok().await;
    let bad = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(app.submit_async(&format!("ok {i}"), &ok.url("/")).await);
    }
    ids.push(app.submit_async("bad", &bad.url("/")).await);
    for id in &ids {
        app.wait_terminal(id, WAIT).await;
    }
    let stats = app.get_json("/stats/callbacks").await;
    let minutes = stats["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let sum = |k: &str| minutes.iter().map(|m| m[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("delivered"), sum("failed")), (3, 1));
    let first = minutes[0]["minute"].as_str().unwrap();
    let last = minutes[59]["minute"].as_str().unwrap();
    assert!(first < last, "oldest first");
}

both_backends!(
    a_failed_callback_is_redelivered_with_the_same_id_and_body,
    redelivery_refuses_pending_sync_and_unknown_requests,
    failed_callbacks_since_a_time_are_redelivered_in_bulk,
    a_crash_during_a_redelivery_resumes_it,
    the_chart_counts_callbacks_that_ended_per_minute,
);
