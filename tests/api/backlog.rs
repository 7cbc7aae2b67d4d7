//! The bounded backlog (SPEC §9, §10): at the limit POST /async is refused and nothing is
//! stored, replays are still answered, and POST /sync is not affected.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, work};

fn body(i: usize) -> Value {
    json!({"text": format!("job {i}"), "callback_url": "https://example.com/hook"})
}

/// An accept-only instance never works off its backlog, so the limit is reached exactly.
async fn at_the_limit_async_is_refused_with_503_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--workers", 0)
        .arg("--max-pending-jobs", 5)
        .spawn()
        .await;
    let keyed = app
        .client
        .post(app.url("/async"))
        .header("idempotency-key", "first")
        .json(&body(0))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 202);
    for i in 1..5 {
        assert_eq!(app.post_json("/async", &body(i)).await.status(), 202);
    }
    let refused = app.post_json("/async", &body(5)).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/overloaded");
    assert_eq!(
        app.get_json("/requests").await["total"],
        5,
        "nothing stored"
    );

    let replay = app
        .client
        .post(app.url("/async"))
        .header("idempotency-key", "first")
        .json(&body(0))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 202, "a replay is answered when full");
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(
        app.post_sync(work("sync still works", 1)).await.status(),
        200
    );
    assert_eq!(
        app.metric("consuma_jobs{state=\"pending\"}").await,
        Some(5.0)
    );
}

/// The per-tenant limit answers 429 before the global one (open mode: tenant `default`).
async fn a_tenant_at_its_quota_gets_429(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--workers", 0)
        .arg("--max-pending-jobs-per-tenant", 2)
        .spawn()
        .await;
    for i in 0..2 {
        assert_eq!(app.post_json("/async", &body(i)).await.status(), 202);
    }
    let refused = app.post_json("/async", &body(2)).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/quota-exceeded");
    assert_eq!(app.get_json("/requests").await["total"], 2);
}

/// The backlog counts callbacks that are not terminal: once delivered, room returns.
async fn delivered_callbacks_free_the_backlog(backend: Backend) {
    let receiver = crate::helpers::receiver::Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--max-pending-jobs", 3)
        .spawn()
        .await;
    for i in 0..3 {
        let id = app
            .submit_async(&format!("a {i}"), &receiver.url("/"))
            .await;
        app.wait_terminal(&id, std::time::Duration::from_secs(30))
            .await;
    }
    // On PostgreSQL the count may be up to a second stale (SPEC §9): no log line says
    // when it is refreshed.
    let more = json!({"text": "more", "callback_url": receiver.url("/")});
    let within = std::time::Duration::from_secs(10);
    app.eventually("room returned", within, async || {
        let r = app.post_json("/async", &more).await;
        if r.status() != 202 {
            assert_eq!(r.status(), 503);
        }
        (r.status() == 202).then_some(())
    })
    .await;
}

both_backends!(
    at_the_limit_async_is_refused_with_503_and_nothing_is_stored,
    a_tenant_at_its_quota_gets_429,
    delivered_callbacks_free_the_backlog,
);
