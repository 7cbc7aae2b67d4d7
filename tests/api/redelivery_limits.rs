//! Redelivery is bounded (SPEC §16, §17; issue 19, item 3): a redelivery counts against
//! the backlog limits of POST /async, and one request may be redelivered at most
//! `--max-redeliveries` times.

use std::time::Duration;

use serde_json::Value;

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp};

const WAIT: Duration = Duration::from_secs(30);

async fn redeliver(app: &TestApp, id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/requests/{id}/redeliver")))
        .send()
        .await
        .unwrap()
}

/// A 429 `quota-exceeded` problem without `Retry-After`, whose detail names `flag`.
async fn assert_refused(r: reqwest::Response, flag: &str) {
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none(), "no Retry-After");
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/problems/quota-exceeded"),
        "{problem}"
    );
    assert!(
        problem["detail"].as_str().unwrap().contains(flag),
        "{problem}"
    );
}

/// An async request whose only callback attempt fails.
async fn failed_request(app: &TestApp, receiver: &Receiver) -> String {
    let id = app.submit_async("fails", &receiver.url("/cb")).await;
    let record = app.wait_terminal(&id, WAIT).await;
    assert_eq!(record["callback_status"], "failed");
    id
}

async fn a_request_is_redelivered_at_most_max_redeliveries_times(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .arg("--max-redeliveries", 2)
        .spawn()
        .await;
    let id = failed_request(&app, &receiver).await;
    for _ in 0..2 {
        assert_eq!(redeliver(&app, &id).await.status(), 202);
        let record = app.wait_terminal(&id, WAIT).await;
        assert_eq!(record["callback_status"], "failed");
    }
    assert_refused(redeliver(&app, &id).await, "--max-redeliveries").await;
    assert_eq!(receiver.hits_for(&id).len(), 3, "no fourth attempt");
}

async fn max_redeliveries_0_turns_redelivery_off(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .arg("--max-redeliveries", 0)
        .spawn()
        .await;
    let id = failed_request(&app, &receiver).await;
    assert_refused(redeliver(&app, &id).await, "--max-redeliveries").await;
    assert_eq!(app.record(&id).await["callback_status"], "failed");
}

/// With the backlog at a limit (one callback held open by a slow receiver), a
/// redelivery is refused as POST /async would be: 429 for the tenant's limit, 503 for
/// the global one; nothing is queued.
async fn a_redelivery_counts_against_the_backlog_limits(backend: Backend) {
    let failing = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let slow = Receiver::scripted("127.0.0.1", |_| {
        Reply::status(200).after(Duration::from_secs(30))
    })
    .await;
    for (flag, status) in [
        ("--max-pending-jobs-per-tenant", 429),
        ("--max-pending-jobs", 503),
    ] {
        let app = TestApp::builder(backend)
            .allow_loopback()
            .arg("--callback-max-attempts", 1)
            .arg(flag, 1)
            .spawn()
            .await;
        let id = failed_request(&app, &failing).await;
        let held = app.submit_async("held open", &slow.url("/slow")).await;
        slow.wait_for_request(&held, Duration::from_secs(30)).await;
        if backend == Backend::Postgres {
            // A lower bound: PostgreSQL judges the backlog on counts refreshed every
            // second, and no log line says when.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let r = redeliver(&app, &id).await;
        assert_eq!(r.status(), status, "{flag}");
        if status == 429 {
            assert_refused(r, flag).await;
        }
        assert_eq!(app.record(&id).await["callback_status"], "failed", "{flag}");
    }
}

/// A bulk redelivery queues only what the tenant's backlog limit leaves, and says that
/// more matching failed callbacks remain.
async fn a_bulk_redelivery_stops_at_the_backlog_limit_and_says_more(backend: Backend) {
    // Each request's first attempt fails; its redelivery is held open, so it stays
    // pending. (The script counts the hits of each request: a redelivery is hit 1.)
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(500),
        _ => Reply::status(200).after(Duration::from_secs(30)),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 1)
        .arg("--max-pending-jobs-per-tenant", 2)
        .spawn()
        .await;
    let since = (chrono::Utc::now() - chrono::TimeDelta::seconds(5)).to_rfc3339();
    let mut failed = Vec::new();
    for _ in 0..3 {
        failed.push(failed_request(&app, &receiver).await);
    }
    let r = app
        .post_json(
            "/requests/redeliver",
            &serde_json::json!({"callback_status": "failed", "since": since}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"redelivered": 2, "more": true}));
    let pending = app.get_json("/requests?callback_status=pending").await["total"].clone();
    assert_eq!(pending, 2, "two queued, the third left for a later call");
    assert_eq!(app.record(&failed[2]).await["callback_status"], "failed");
}

both_backends!(
    attempts_are_paged_with_a_cursor,
    a_bulk_redelivery_stops_at_the_backlog_limit_and_says_more,
    a_request_is_redelivered_at_most_max_redeliveries_times,
    max_redeliveries_0_turns_redelivery_off,
    a_redelivery_counts_against_the_backlog_limits,
);

/// GET /requests/{id}/attempts pages through every attempt; the record says how many
/// there are; a cursor of another request is a 422 problem.
async fn attempts_are_paged_with_a_cursor(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 3)
        .arg("--callback-base-delay-ms", 10)
        .spawn()
        .await;
    let id = app.submit_async("three tries", &receiver.url("/cb")).await;
    let other = app.submit_async("another", &receiver.url("/cb")).await;
    let record = app.wait_terminal(&id, WAIT).await;
    app.wait_terminal(&other, WAIT).await;
    assert_eq!(record["attempts_total"], 3, "{record:#}");
    assert_eq!(record["attempts"].as_array().unwrap().len(), 3);

    let first = app
        .get_json(&format!("/requests/{id}/attempts?limit=2"))
        .await;
    let numbers = |page: &Value| -> Vec<u64> {
        page["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["attempt"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&first), [1, 2]);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = app
        .get_json(&format!("/requests/{id}/attempts?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(numbers(&second), [3]);
    assert!(second["next_cursor"].is_null());

    let r = app
        .get(&format!("/requests/{other}/attempts?cursor={cursor}"))
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/requests/{unknown}/attempts"))
            .await
            .status(),
        404
    );
}
