//! Delivery isolation (SPEC §8): caps, fair claiming, circuits and expiry, with real
//! receivers on loopback. Delays are asserted from below only; the upper bounds here are
//! functional (without isolation they would be exceeded many times over), not timings.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::both_backends;
use crate::helpers::receiver::{BlackHole, Receiver, Reply};
use crate::helpers::{Backend, TestApp};

/// Submits `n` async requests for `url`; returns their ids.
async fn submit(app: &TestApp, n: usize, url: &str) -> Vec<String> {
    let texts: Vec<String> = (0..n).map(|i| format!("job {i}")).collect();
    let sends = texts.iter().map(|t| app.submit_async(t, url));
    futures::future::join_all(sends).await
}

/// 150 callbacks for a receiver that never answers (2 s per attempt, at most 4 at once)
/// would keep the workers busy for over a minute in due order; the healthy receiver's
/// callbacks, submitted after them, arrive meanwhile, and the black hole never sees more
/// than the cap at once.
async fn a_black_hole_neither_delays_a_healthy_receiver_nor_gets_more_than_its_cap(
    backend: Backend,
) {
    let hole = BlackHole::start("127.0.0.1").await;
    let healthy = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-timeout-ms", 2000)
        .arg("--callback-max-in-flight-per-destination", 4)
        .arg("--work-delay-ms", 20)
        .spawn()
        .await;
    submit(&app, 150, &hole.url("/hook")).await;
    let started = Instant::now();
    let ids = submit(&app, 20, &healthy.url("/hook")).await;
    healthy.wait_for(20, Duration::from_secs(30)).await;
    for id in &ids {
        let record = app.wait_terminal(id, Duration::from_secs(10)).await;
        assert_eq!(record["callback_status"], "sent");
    }
    let waited = started.elapsed();
    assert!(hole.accepted() >= 1, "the black hole was tried");
    // An attempt that timed out closes its connection as it ends, but the black hole
    // sees the close a moment later, when the next attempt may already have connected:
    // one connection more than the cap can be open for that moment. Without the cap it
    // would be up to the 256 workers.
    assert!(
        hole.max_open() <= 4 + 1,
        "at most the cap at once; saw {}",
        hole.max_open()
    );
    eprintln!("healthy callbacks all arrived {waited:?} after submission");
}

/// The cap also holds for a slow receiver that does answer.
async fn at_most_the_cap_of_attempts_reach_one_destination_at_once(backend: Backend) {
    let slow = Receiver::scripted("127.0.0.1", |_| {
        Reply::status(200).after(Duration::from_millis(300))
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-min-in-flight-per-destination", 3)
        .arg("--callback-max-in-flight-per-destination", 3)
        .spawn()
        .await;
    let ids = submit(&app, 30, &slow.url("/")).await;
    slow.wait_for(30, Duration::from_secs(60)).await;
    for id in &ids {
        app.wait_terminal(id, Duration::from_secs(30)).await;
    }
    assert!(slow.max_concurrent() <= 3, "saw {}", slow.max_concurrent());
    assert!(
        slow.max_concurrent() >= 2,
        "attempts did overlap: {}",
        slow.max_concurrent()
    );
}

/// Five counted failures in a row open the circuit: the destination's other callbacks
/// wait without spending attempts and say why; probes follow the cool-down; once the
/// receiver recovers, a probe closes the circuit and everything waiting is delivered.
async fn the_circuit_opens_defers_probes_and_closes_on_recovery(backend: Backend) {
    let healthy = Arc::new(AtomicBool::new(false));
    let up = healthy.clone();
    let receiver = Receiver::scripted("127.0.0.1", move |_| match up.load(Ordering::SeqCst) {
        true => Reply::status(200),
        false => Reply::status(503),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-min-in-flight-per-destination", 1)
        .arg("--callback-max-in-flight-per-destination", 1)
        .arg("--callback-breaker-cooldown-ms", 1500)
        .arg("--callback-base-delay-ms", 100)
        .arg("--callback-max-attempts", 50)
        .spawn()
        .await;
    let ids = submit(&app, 8, &receiver.url("/hook?secret=x")).await;
    receiver.wait_for(5, Duration::from_secs(30)).await;
    let opened = Instant::now();
    // The fifth failure opened it: nothing more goes out during the cool-down (a lower
    // bound: 900 ms of its 1,500).
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(receiver.hits().len(), 5, "no attempt during the cool-down");
    assert_eq!(
        app.metric("consuma_callback_circuits_open").await,
        Some(1.0)
    );
    assert!(
        app.metric("consuma_callback_deferred_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    let untried = {
        let mut untried = None;
        for id in &ids {
            let r = app.record(id).await;
            if r["callback_attempts"] == 0 {
                untried = Some(r);
            }
        }
        untried.expect("some callbacks were never attempted")
    };
    let why = untried["callback_last_error"].as_str().unwrap_or_default();
    assert!(why.starts_with("circuit open: "), "{untried:#}");
    assert!(!why.contains("/hook") && !why.contains("secret"), "{why}");
    assert!(
        untried["callback_next_attempt_at"].is_string(),
        "{untried:#}"
    );
    assert_eq!(
        untried["status"], "completed",
        "the work itself is not touched"
    );

    // The first probe comes no earlier than the cool-down, and fails.
    receiver.wait_for(6, Duration::from_secs(30)).await;
    assert!(opened.elapsed() >= Duration::from_millis(1400));
    healthy.store(true, Ordering::SeqCst);
    for id in &ids {
        let r = app.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(r["callback_status"], "sent", "{r:#}");
    }
    assert_eq!(
        app.metric("consuma_callback_circuits_open").await,
        Some(0.0)
    );
    let logs = app.logs().join("\n");
    assert!(logs.contains("circuit opened") && logs.contains("circuit closed"));
    assert!(
        !logs.contains("secret=x"),
        "logs never show the URL's query"
    );
}

/// A destination is a tenant and an origin with its port and scheme: the circuit of one
/// port (or of https on that port) does not hold back another.
async fn circuits_do_not_leak_between_origins_that_differ_by_port_or_scheme(backend: Backend) {
    let failing = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let healthy = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-min-in-flight-per-destination", 1)
        .arg("--callback-max-in-flight-per-destination", 1)
        .arg("--callback-breaker-cooldown-ms", 60_000)
        .arg("--callback-base-delay-ms", 50)
        .arg("--callback-max-attempts", 50)
        .spawn()
        .await;
    submit(&app, 6, &failing.url("/")).await;
    failing.wait_for(5, Duration::from_secs(30)).await;
    // https on the healthy receiver's own port fails (it speaks plain HTTP) and opens
    // that origin's circuit too.
    let https = format!("https://{}/", healthy.addr);
    submit(&app, 6, &https).await;
    let opened = app
        .wait_logs("both circuits opened", 2, Duration::from_secs(30), |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("circuit opened"))
        })
        .await;
    let origins: std::collections::HashSet<&str> =
        opened.iter().filter_map(|v| v["origin"].as_str()).collect();
    assert_eq!(origins.len(), 2, "{opened:#?}");
    assert_eq!(
        app.metric("consuma_callback_circuits_open").await,
        Some(2.0)
    );
    let ids = submit(&app, 5, &healthy.url("/")).await;
    for id in &ids {
        let r = app.wait_terminal(id, Duration::from_secs(20)).await;
        assert_eq!(r["callback_status"], "sent");
    }
}

/// A delivery that never succeeds ends, `failed` with `expired: …`, once its time is up,
/// whatever attempts are left.
async fn an_expired_delivery_ends_failed_whatever_attempts_are_left(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |_| Reply::status(404)).await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-expire-after-secs", 2)
        .arg("--callback-base-delay-ms", 300)
        .arg("--callback-max-attempts", 100)
        .spawn()
        .await;
    let id = app.submit_async("expire me", &receiver.url("/")).await;
    let record = app
        .wait_record(&id, "failed", Duration::from_secs(30), |r| {
            r["callback_status"] == "failed"
        })
        .await;
    let why = record["callback_last_error"].as_str().unwrap();
    assert!(why.starts_with("expired: "), "{why}");
    let seen = chrono::Utc::now();
    let attempts = record["callback_attempts"].as_u64().unwrap();
    assert!((2..100).contains(&attempts), "{attempts} attempts");
    let done =
        chrono::DateTime::parse_from_rfc3339(record["completed_at"].as_str().unwrap()).unwrap();
    assert!(
        seen.signed_duration_since(done) >= chrono::TimeDelta::milliseconds(1900),
        "not before its time"
    );
    assert!(record["callback_next_attempt_at"].is_null());
    assert_eq!(record["status"], "completed");
}

/// The record shows when the next attempt is planned while a retry waits.
async fn the_record_shows_the_next_planned_attempt(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(404),
        _ => Reply::status(200),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-base-delay-ms", 3000)
        .spawn()
        .await;
    let id = app.submit_async("later", &receiver.url("/")).await;
    let record = app
        .wait_record(&id, "attempted once", Duration::from_secs(20), |r| {
            r["callback_attempts"] == 1
        })
        .await;
    let next = record["callback_next_attempt_at"]
        .as_str()
        .expect("planned");
    let first = record["attempts"][0]["started_at"].as_str().unwrap();
    let gap = chrono::DateTime::parse_from_rfc3339(next).unwrap()
        - chrono::DateTime::parse_from_rfc3339(first).unwrap();
    assert!(gap >= chrono::TimeDelta::milliseconds(2900), "{gap}");
    let done = app.wait_terminal(&id, Duration::from_secs(30)).await;
    assert!(done["callback_next_attempt_at"].is_null());
    let sync = app.post_sync(json!({"text": "x"})).await;
    let sync: serde_json::Value = sync.json().await.unwrap();
    let sync = app.record(sync["request_id"].as_str().unwrap()).await;
    assert!(sync["callback_next_attempt_at"].is_null());
}

both_backends!(
    a_black_hole_neither_delays_a_healthy_receiver_nor_gets_more_than_its_cap,
    at_most_the_cap_of_attempts_reach_one_destination_at_once,
    the_circuit_opens_defers_probes_and_closes_on_recovery,
    circuits_do_not_leak_between_origins_that_differ_by_port_or_scheme,
    an_expired_delivery_ends_failed_whatever_attempts_are_left,
    the_record_shows_the_next_planned_attempt,
);
