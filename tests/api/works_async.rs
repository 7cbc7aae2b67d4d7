//! `POST /async/{work}` (SPEC §13 "Async", §17) against a real upstream on loopback: the
//! stored input without `callback_url`, retries and Retry-After, failures at once, the
//! callback with its `work`, and a crash in the middle of an upstream call.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Backend, TestApp};

async fn start(backend: Backend, up: &Upstream, dir: &std::path::Path) -> TestApp {
    let mut text = String::new();
    for path in ["ok", "reject", "busy", "html", "gate"] {
        text.push_str(&format!(
            "[works.{path}]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"20s\"\nmax_attempts = 3\nmax_response_bytes = 1024\n\n",
            up.url(&format!("/{path}"))
        ));
    }
    text.push_str(
        "[works.refused]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\nmax_attempts = 2\n\n",
    );
    text.push_str("[works.shapes]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\ninput_schema = { type = \"object\", required = [\"items\"] }\n");
    let file = dir.join("works.toml");
    std::fs::write(&file, text).unwrap();
    TestApp::builder(backend)
        .allow_loopback()
        .arg("--works", file.display())
        .arg("--callback-base-delay-ms", 50)
        .arg("--lease-secs", 2)
        .spawn()
        .await
}

async fn submit(app: &TestApp, work: &str, body: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = app
        .request(Method::POST, &format!("/async/{work}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn an_async_work_calls_back_with_the_upstream_json_and_its_work(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let app = start(backend, &up, dir.path()).await;
    let hook = receiver.url("/hook");
    let body = format!(r#"{{"z": 1.50, "callback_url": "{hook}", "a": [1, "é"]}}"#);
    let (status, headers, ack) = submit(&app, "ok", &body).await;
    assert_eq!(status, 202, "{ack}");
    let id = ack["request_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/requests/{id}").as_str());
    let hits = receiver.wait_for(1, Duration::from_secs(20)).await;
    let callback = hits[0].json();
    assert_eq!(callback["status"], "completed");
    assert_eq!(callback["work"], "ok");
    assert_eq!(
        callback["result"],
        json!({"echo": {"z": 1.5, "a": [1, "é"]}})
    );
    let seen = &up.seen()[0];
    assert_eq!(
        &seen.body[..],
        r#"{"z":1.50,"a":[1, "é"]}"#.as_bytes(),
        "members in order, values as written, callback_url removed"
    );
    assert_eq!(seen.headers["idempotency-key"], id.as_str());
    assert_eq!(seen.headers["x-consuma-tenant"], "default");
    let record = app.wait_terminal(&id, Duration::from_secs(10)).await;
    assert_eq!(
        (record["work"].as_str(), record["status"].as_str()),
        (Some("ok"), Some("completed"))
    );
    assert_eq!(record["input_data"], json!({"z": 1.5, "a": [1, "é"]}));
    let attempts = &record["work_attempts"];
    assert_eq!(
        (
            attempts[0]["attempt"].as_u64(),
            attempts[0]["error"].is_null()
        ),
        (Some(1), true)
    );
    // text's callbacks name their work too.
    let text = app.submit_async("hi", &receiver.url("/text")).await;
    let hits = receiver.wait_for(2, Duration::from_secs(20)).await;
    let text_hit = hits.iter().find(|h| h.request_id() == text).unwrap();
    assert_eq!(text_hit.json()["work"], "text");
}

/// (work, calls our upstream receives, error in the callback); `refused` has no
/// upstream listening.
const ASYNC_FAILURES: &[(&str, usize, &str)] = &[
    ("reject", 1, "upstream answered 422: {\"why\":\"no pages\"}"),
    (
        "html",
        1,
        "upstream answered 200 with a body that is not JSON",
    ),
    ("busy", 3, "upstream answered 503"),
    ("refused", 0, "upstream connection refused"),
];

async fn async_failures_are_retried_only_when_retryable(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let app = start(backend, &up, dir.path()).await;
    for (n, (work, calls, error)) in ASYNC_FAILURES.iter().enumerate() {
        let body = json!({"callback_url": receiver.url(&format!("/{work}"))}).to_string();
        let (status, _, ack) = submit(&app, work, &body).await;
        assert_eq!(status, 202, "{ack}");
        let hits = receiver.wait_for(n + 1, Duration::from_secs(30)).await;
        let hit = hits
            .iter()
            .find(|h| h.path == format!("/{work}"))
            .unwrap()
            .json();
        assert_eq!(
            (hit["status"].as_str(), hit["error"].as_str()),
            (Some("failed"), Some(*error)),
            "{work}"
        );
        assert_eq!(hit["work"], *work);
        let made = up
            .seen()
            .iter()
            .filter(|s| s.path == format!("/{work}"))
            .count();
        assert_eq!(made, *calls, "{work}: upstream calls");
        let id = ack["request_id"].as_str().unwrap();
        let record = app.wait_terminal(id, Duration::from_secs(10)).await;
        let attempts = record["work_attempts"].as_array().unwrap();
        // `refused` has no listener to count its 2 attempts.
        let recorded = if *work == "refused" { 2 } else { *calls };
        assert_eq!(attempts.len(), recorded, "{work}: {record}");
        let last = attempts.last().unwrap();
        assert_eq!(
            (&last["error"], &last["attempt"]),
            (&json!(error), &json!(recorded))
        );
        assert!(last["started_at"].is_string() && last["duration_ms"].is_u64());
    }
    let busy: Vec<_> = up
        .seen()
        .into_iter()
        .filter(|s| s.path == "/busy")
        .collect();
    let keys: Vec<_> = busy
        .iter()
        .map(|s| s.headers["idempotency-key"].clone())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] == w[1]),
        "the same key on every attempt"
    );
    // A caller's Idempotency-Key reaches the upstream as the digest the sync route sends.
    let keyed = |path: &'static str, body: Value| {
        app.request(Method::POST, path)
            .header("idempotency-key", "order-9")
            .json(&body)
            .send()
    };
    let ack: Value = keyed("/async/ok", json!({"callback_url": receiver.url("/keyed")}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    receiver
        .wait_for(ASYNC_FAILURES.len() + 1, Duration::from_secs(30))
        .await;
    assert_eq!(keyed("/sync/ok", json!({})).await.unwrap().status(), 200);
    let ok: Vec<_> = up.seen().into_iter().filter(|s| s.path == "/ok").collect();
    let (async_key, sync_key) = (
        &ok[0].headers["idempotency-key"],
        &ok[1].headers["idempotency-key"],
    );
    assert_ne!(async_key, ack["request_id"].as_str().unwrap());
    assert_eq!(async_key.len(), 64);
    assert_eq!(
        async_key, sync_key,
        "one digest of (tenant, work, key) for both routes"
    );
    let logs = app.logs();
    assert!(
        logs.iter().all(|l| !l.contains("no pages")),
        "no upstream body in the logs"
    );
}

async fn bad_async_bodies_are_refused_in_order(backend: Backend) {
    let (up, dir) = (Upstream::start().await, tempfile::tempdir().unwrap());
    let app = start(backend, &up, dir.path()).await;
    let (status, _, problem) = submit(&app, "nope", "not even json").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (404, Some("/problems/unknown-work"))
    );
    assert_eq!(submit(&app, "ok", "[1]").await.0, 400);
    let (status, _, problem) = submit(&app, "shapes", r#"{"callback_url": 5}"#).await;
    assert_eq!(status, 422, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["", "/callback_url"]);
    let (status, _, problem) = submit(
        &app,
        "ok",
        r#"{"callback_url": "http://169.254.169.254/x"}"#,
    )
    .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("/problems/callback-refused"))
    );
    assert_eq!(app.get_json("/requests").await["total"], 0);
    assert!(up.seen().is_empty());
}

async fn a_crash_mid_work_runs_it_again_with_the_same_key_and_calls_back_once(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let mut app = start(backend, &up, dir.path()).await;
    let body = json!({"n": 1, "callback_url": receiver.url("/hook")}).to_string();
    let (status, _, ack) = submit(&app, "gate", &body).await;
    assert_eq!(status, 202);
    let id = ack["request_id"].as_str().unwrap().to_owned();
    up.wait_for(1).await;
    app.kill().await;
    app.restart().await;
    up.wait_for(2).await;
    up.release();
    let hits = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(hits[0].json()["status"], "completed");
    let keys: Vec<_> = up
        .seen()
        .iter()
        .map(|s| s.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(keys[0], id.as_str());
    assert_eq!(keys[1], id.as_str(), "the repeat carries the same key");
    // A lower bound: a third run would need another 2 s lease to lapse.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.hits_for(&id).len(), 1, "one callback");
}

both_backends!(
    an_async_work_calls_back_with_the_upstream_json_and_its_work,
    async_failures_are_retried_only_when_retryable,
    bad_async_bodies_are_refused_in_order,
    a_crash_mid_work_runs_it_again_with_the_same_key_and_calls_back_once,
);

/// §13 "Isolation", the scenario both tests below share: a `hang` work whose upstream
/// never answers (with `max_in_flight`) and a healthy `ok` work, on an instance with
/// `--workers 4` and `flags`. `hung` requests of `hang` go first; once `calling` of them
/// reached the upstream, 10 `text` and 10 `ok` requests follow, and all 20 are called
/// back while no hung attempt has ended. Returns the upstream's `/hang` calls.
async fn hung_beside_healthy(
    backend: Backend,
    max_in_flight: u32,
    flags: &[(&str, i64)],
    hung: usize,
    calling: usize,
) -> usize {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let text = format!(
        "[works.hang]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"60s\"\nmax_in_flight = {max_in_flight}\n\n[works.ok]\nkind = \"http\"\nurl = \"{}\"\n",
        up.url("/hang"),
        up.url("/ok")
    );
    std::fs::write(dir.path().join("works.toml"), text).unwrap();
    let mut builder = TestApp::builder(backend)
        .allow_loopback()
        .arg("--works", dir.path().join("works.toml").display())
        .arg("--workers", 4)
        .arg("--work-delay-ms", 0);
    for (flag, value) in flags {
        builder = builder.arg(flag, value);
    }
    let app = builder.spawn().await;
    for _ in 0..hung {
        let body = json!({"callback_url": receiver.url("/hung")}).to_string();
        assert_eq!(submit(&app, "hang", &body).await.0, 202);
    }
    up.wait_for(calling).await;
    for i in 0..10 {
        app.submit_async(&format!("t{i}"), &receiver.url("/text"))
            .await;
        let body = json!({"i": i, "callback_url": receiver.url("/healthy")}).to_string();
        assert_eq!(submit(&app, "ok", &body).await.0, 202);
    }
    let hits = receiver.wait_for(20, Duration::from_secs(50)).await;
    assert!(
        hits.iter().all(|h| h.path != "/hung"),
        "no hung attempt has ended"
    );
    assert_eq!(hits.iter().filter(|h| h.path == "/healthy").count(), 10);
    assert_eq!(hits.iter().filter(|h| h.path == "/text").count(), 10);
    up.seen().iter().filter(|s| s.path == "/hang").count()
}

/// Jobs of a work whose upstream never answers hold no delivery worker, so healthy works
/// and `text` are called back while the hung attempts (more than the 4 workers) are
/// still open.
async fn a_hung_upstream_costs_other_works_and_callbacks_nothing(backend: Backend) {
    let calls = hung_beside_healthy(backend, 64, &[], 30, 30).await;
    assert_eq!(calls, 30, "all 30 hung attempts are still open");
}

both_backends!(a_hung_upstream_costs_other_works_and_callbacks_nothing);

/// At scale: far more jobs of a hung work than both pools hold (40 > 2 × --work-workers
/// away from their seats + --workers seats). Jobs over the work's `max_in_flight` wait in
/// the store (holding no worker, no lease, no slot of the work pool), so the healthy ones
/// are called back while the hung work's two calls are open and its other jobs have not
/// called the upstream at all.
async fn jobs_over_max_in_flight_wait_in_the_store(backend: Backend) {
    let calls = hung_beside_healthy(backend, 2, &[("--work-workers", 4)], 40, 2).await;
    assert_eq!(calls, 2, "the hung work made only its max_in_flight calls");
}

both_backends!(jobs_over_max_in_flight_wait_in_the_store);

/// §17 "Two pools" and "Sync answers": with `--work-workers 2` no work holds more than
/// one call; two hung works hold both, so a sync request of a third finds no slot within
/// its timeout: 503 work-busy, `Retry-After: 1`, and no record.
async fn a_full_work_pool_answers_sync_503_work_busy_without_a_record(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let hang = up.url("/hang");
    let text = format!(
        "[works.x]\nkind = \"http\"\nurl = \"{hang}\"\ntimeout = \"60s\"\n\n[works.z]\nkind = \"http\"\nurl = \"{hang}\"\ntimeout = \"60s\"\n\n[works.y]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"1s\"\n",
        up.url("/ok")
    );
    std::fs::write(dir.path().join("works.toml"), text).unwrap();
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--works", dir.path().join("works.toml").display())
        .arg("--work-workers", 2)
        .spawn()
        .await;
    for work in ["x", "x", "z"] {
        let body = json!({"callback_url": receiver.url("/hung")}).to_string();
        assert_eq!(submit(&app, work, &body).await.0, 202);
    }
    up.wait_for(2).await;
    let r = app
        .request(Method::POST, "/sync/y")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/work-busy");
    assert_eq!(
        app.get_json("/requests").await["total"],
        3,
        "the 503 stored nothing"
    );
    let calls: Vec<String> = up.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        calls,
        ["/hang", "/hang"],
        "one call of x (half the pool), one of z"
    );
}

both_backends!(a_full_work_pool_answers_sync_503_work_busy_without_a_record);

/// §17 "Instances with different files": an instance claims only the jobs of works it
/// has, and at start counts the pending jobs of those it does not have. Such a job waits
/// (for an instance that has its work) until the delivery's expiry, counted from its
/// creation, ends it: the request fails `expired: …` and its failure callback goes out.
async fn jobs_of_a_work_not_served_wait_then_expire(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let file = dir.path().join("works.toml");
    let ok = format!("[works.ok]\nkind = \"http\"\nurl = \"{}\"\n", up.url("/ok"));
    let gone = format!(
        "[works.gone]\nkind = \"http\"\nurl = \"{}\"\ntimeout = \"60s\"\n",
        up.url("/hang")
    );
    std::fs::write(&file, format!("{ok}\n{gone}")).unwrap();
    let mut app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--works", file.display())
        .arg("--lease-secs", 2)
        .spawn()
        .await;
    let body = json!({"callback_url": receiver.url("/gone")}).to_string();
    let (status, _, ack) = submit(&app, "gone", &body).await;
    assert_eq!(status, 202);
    let id = ack["request_id"].as_str().unwrap().to_owned();
    up.wait_for(1).await;
    // Its work hangs, so the record is soon marked running.
    let running = |r: &Value| r["status"] == "processing";
    app.wait_json(
        &format!("/requests/{id}"),
        "processing",
        Duration::from_secs(30),
        running,
    )
    .await;
    app.kill().await;

    // Restarted without `gone`: it says so, works (a `text` callback arrives), and leaves
    // the `gone` job alone, also once the killed instance's 2 s lease has lapsed.
    std::fs::write(&file, &ok).unwrap();
    app.restart().await;
    let line = "pending jobs name a work this instance does not serve";
    let logged = app.logs().into_iter().find(|l| l.contains(line));
    assert!(
        logged.as_deref().is_some_and(|l| l.contains("gone=1")),
        "{logged:?}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let text = app.submit_async("beside", &receiver.url("/text")).await;
    let hits = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(hits[0].request_id(), text);
    let record = app.record(&id).await;
    assert_eq!(record["status"], "processing", "{record}");
    assert_eq!(record["callback_status"], "pending");
    assert!(receiver.hits_for(&id).is_empty());
    app.kill().await;

    // An instance whose expiry is 1 s ends it: failed, and the failure callback goes out.
    let _expiring = TestApp::builder_on(app.db.clone())
        .allow_loopback()
        .arg("--works", file.display())
        .arg("--callback-expire-after-secs", 1)
        .spawn()
        .await;
    receiver.wait_for(2, Duration::from_secs(30)).await;
    let callback = receiver.hits_for(&id)[0].json();
    assert_eq!(callback["status"], "failed", "{callback}");
    assert_eq!(
        callback["error"],
        "expired: work not finished within 1 s of the request's creation"
    );
    assert_eq!(callback["work"], "gone");
}

both_backends!(jobs_of_a_work_not_served_wait_then_expire);
