//! A destination's rate limit (SPEC §14, §17), counted at the receiver: over any window
//! of W seconds it sees at most limit × W × 1.05 + 1 attempts — on one instance, and on
//! three instances sharing one PostgreSQL database. Without the limit the same
//! deliveries arrive many times faster, so the bounds below are functional.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::{Backend, TestApp, postgres_available, submit_async_spread};

/// The most hits in any window of `window` among `hits` (arrival instants, in order).
fn busiest(hits: &[std::time::Instant], window: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, at) in hits.iter().enumerate() {
        while *at - hits[start] >= window {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

/// Delivers one callback to `receiver` (creating its destination), sets the rate limit,
/// and returns the destination's id.
async fn limit(app: &TestApp, receiver: &Receiver, per_s: f64) -> String {
    let first = app.submit_async("first", &receiver.url("/hook")).await;
    app.wait_terminal(&first, Duration::from_secs(30)).await;
    let id = app.record(&first).await["destination_id"]
        .as_str()
        .expect("destination_id")
        .to_owned();
    let r = app
        .request(Method::PATCH, &format!("/destinations/{id}"))
        .json(&json!({"rate_limit_per_s": per_s}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["rate_limit_per_s"].as_f64(), Some(per_s));
    id
}

/// 120 deliveries at 20/s: at most 20 × 5 × 1.05 + 1 in any 5 s, and all arrive.
async fn a_rate_limit_spaces_the_attempts_a_receiver_sees(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .spawn()
        .await;
    limit(&app, &receiver, 20.0).await;
    submit_async_spread(&[&app], 120, &receiver.url("/hook")).await;
    let hits = receiver.wait_for(121, Duration::from_secs(60)).await;
    let at: Vec<_> = hits[1..].iter().map(|h| h.at).collect();
    let most = busiest(&at, Duration::from_secs(5));
    assert!(most <= 106, "{most} attempts in a 5 s window at 20/s");
    assert!(
        at[119] - at[0] >= Duration::from_secs(5),
        "120 attempts at 20/s take at least 5 s: {:?}",
        at[119] - at[0]
    );
}

/// Three instances on one PostgreSQL database share one limit of 30/s: the receiver sees
/// at most 30 × 10 × 1.05 + 1 in any 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_three_instances() {
    if !postgres_available().await {
        return;
    }
    let receiver = Receiver::ok().await;
    let start = |app: crate::helpers::AppBuilder| app.allow_loopback().arg("--work-delay-ms", 0);
    let a = start(TestApp::builder(Backend::Postgres)).spawn().await;
    let b = start(TestApp::builder_on(a.db.clone())).spawn().await;
    let c = start(TestApp::builder_on(a.db.clone())).spawn().await;
    limit(&a, &receiver, 30.0).await;
    for _ in 0..4 {
        submit_async_spread(&[&a, &b, &c], 120, &receiver.url("/hook")).await;
    }
    let hits = receiver.wait_for(481, Duration::from_secs(90)).await;
    let at: Vec<_> = hits[1..].iter().map(|h| h.at).collect();
    let most = busiest(&at, Duration::from_secs(10));
    assert!(most <= 316, "{most} attempts in a 10 s window at 30/s");
    for app in [&a, &b, &c] {
        let attempts = app.logs_containing("\"callback delivered\"").len();
        assert!(attempts > 0, "every instance delivered some");
    }
}

both_backends!(a_rate_limit_spaces_the_attempts_a_receiver_sees);
