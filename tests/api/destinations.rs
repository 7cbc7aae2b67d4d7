//! Destinations as a resource (SPEC §14, §17): the list and one destination, scoped like
//! GET /requests; pause and resume; bad PATCH bodies. Receivers on loopback count what
//! arrives; nothing here depends on the machine's speed beyond generous upper bounds.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::{Backend, TestApp};

async fn send(
    app: &TestApp,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app.client.request(method, app.url(path));
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    if let Some(body) = body {
        r = r.json(&body);
    }
    let r = r.send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Submits an async request for `url` with `key`; its id.
async fn submit(app: &TestApp, key: Option<&str>, url: &str) -> String {
    let body = json!({"text": "hello world", "callback_url": url});
    let (status, answer) = send(app, key, Method::POST, "/async", Some(body)).await;
    assert_eq!(status, 202, "{answer}");
    answer["request_id"].as_str().unwrap().to_owned()
}

const WAIT: Duration = Duration::from_secs(30);

/// Waits until the work of request `id` is done (the server logs "work done" once it
/// recorded it).
async fn work_done(app: &TestApp, id: &str) -> Value {
    let done = |r: &Value| r["status"] == "completed";
    app.wait_record(id, "work done", WAIT, done).await
}

/// Paused, a destination gets no attempt: its deliveries wait, their work done, without
/// spending attempts; resumed, every one of them arrives.
async fn pause_holds_every_attempt_and_resume_delivers_them_all(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .spawn()
        .await;
    let first = submit(&app, None, &receiver.url("/hook")).await;
    app.wait_terminal(&first, Duration::from_secs(30)).await;
    let id = app.record(&first).await["destination_id"]
        .as_str()
        .expect("destination_id")
        .to_owned();
    let path = format!("/destinations/{id}");
    let (status, d) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["paused"], true);
    assert_eq!(d["origin"], format!("http://{}", receiver.addr));
    let url = receiver.url("/hook");
    let held: Vec<String> =
        futures::future::join_all((0..10).map(|_| submit(&app, None, &url))).await;
    for id in &held {
        work_done(&app, id).await;
    }
    let listed = app
        .wait_json("/destinations?state=paused", "10 pending", WAIT, |l| {
            l["destinations"][0]["pending"] == 10
        })
        .await;
    assert_eq!(listed["destinations"][0]["id"], id.as_str());
    // A lower bound: the held deliveries would have gone out by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.hits().len(), 1, "no attempt while paused");
    for id in &held {
        let r = app.record(id).await;
        assert_eq!(
            (
                r["callback_status"].as_str(),
                r["callback_attempts"].as_u64()
            ),
            (Some("pending"), Some(0)),
            "{r:#}"
        );
    }
    let (status, d) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": false})),
    )
    .await;
    assert_eq!((status, d["paused"].as_bool()), (200, Some(false)), "{d}");
    receiver.wait_for(11, Duration::from_secs(30)).await;
    for id in &held {
        let r = app.wait_terminal(id, Duration::from_secs(30)).await;
        assert_eq!(r["callback_status"], "sent", "{r:#}");
    }
    assert_eq!(
        app.metric("consuma_destination_changes_total").await,
        Some(2.0)
    );
}

/// A tenant sees its own destinations only; another tenant's id is a 404 to read and to
/// change; an admin sees all and may filter by tenant.
async fn destinations_are_scoped_like_requests(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .spawn()
        .await;
    let acme = app.create_key("acme", false).await;
    let globex = app.create_key("globex", false).await;
    let admin = app.create_key("ops", true).await;
    app.wait_keys(&[&acme, &globex, &admin]).await;
    for key in [&acme, &globex] {
        let id = submit(&app, Some(key), &receiver.url("/a")).await;
        receiver
            .wait_for_request(&id, Duration::from_secs(30))
            .await;
    }
    let (_, mine) = send(&app, Some(&acme), Method::GET, "/destinations", None).await;
    let mine = mine["destinations"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["tenant"], "acme");
    let (_, other) = send(
        &app,
        Some(&acme),
        Method::GET,
        "/destinations?tenant=globex",
        None,
    )
    .await;
    assert_eq!(other["destinations"], json!([]));
    let (_, all) = send(&app, Some(&admin), Method::GET, "/destinations", None).await;
    let tenants: Vec<&str> = all["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(
        tenants,
        ["acme", "globex"],
        "ordered by tenant, then origin"
    );
    let globex_id = all["destinations"][1]["id"].as_str().unwrap().to_owned();
    let (_, one) = send(
        &app,
        Some(&admin),
        Method::GET,
        "/destinations?tenant=globex&limit=1",
        None,
    )
    .await;
    assert_eq!(one["destinations"][0]["id"], globex_id.as_str());
    let path = format!("/destinations/{globex_id}");
    let (status, _) = send(&app, Some(&acme), Method::GET, &path, None).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &app,
        Some(&acme),
        Method::PATCH,
        &path,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, d) = send(&app, Some(&globex), Method::GET, &path, None).await;
    assert_eq!(
        (status, d["paused"].as_bool()),
        (200, Some(false)),
        "never paused by acme"
    );
    let (_, page) = send(
        &app,
        Some(&admin),
        Method::GET,
        "/destinations?limit=1",
        None,
    )
    .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, next) = send(
        &app,
        Some(&admin),
        Method::GET,
        &format!("/destinations?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(next["destinations"][0]["id"], globex_id.as_str());
    assert_eq!(next["next_cursor"], Value::Null);
}

/// `{}`, unknown members, wrong types and out-of-range rates are 422; a body that is no
/// object is 400; an unknown id is 404.
async fn bad_patch_bodies_are_refused(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .spawn()
        .await;
    let first = submit(&app, None, &receiver.url("/")).await;
    let id = app.record(&first).await["destination_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/destinations/{id}");
    for body in [
        json!({}),
        json!({"paused": true, "colour": "red"}),
        json!({"paused": "yes"}),
        json!({"rate_limit_per_s": 0}),
        json!({"rate_limit_per_s": 100_001}),
        json!({"rate_limit_per_s": "fast"}),
    ] {
        let (status, problem) = send(&app, None, Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("/problems/validation-error"),
            "{problem}"
        );
    }
    let (status, _) = send(&app, None, Method::PATCH, &path, Some(json!([1]))).await;
    assert_eq!(status, 400);
    let (status, _) = send(
        &app,
        None,
        Method::PATCH,
        "/destinations/bm9wZQ",
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, d) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"rate_limit_per_s": 2.5})),
    )
    .await;
    assert_eq!(
        (status, d["rate_limit_per_s"].as_f64()),
        (200, Some(2.5)),
        "{d}"
    );
    let (_, limited) = send(&app, None, Method::GET, "/destinations?state=limited", None).await;
    assert_eq!(limited["destinations"][0]["id"], id.as_str());
    let (status, d) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"rate_limit_per_s": null})),
    )
    .await;
    assert_eq!(
        (status, d["rate_limit_per_s"].clone()),
        (200, Value::Null),
        "{d}"
    );
    let (status, problem) = send(&app, None, Method::GET, "/destinations?state=sleepy", None).await;
    assert_eq!(status, 422, "{problem}");
}

/// Time paused does not count towards expiry: a delivery held for longer than
/// `--callback-expire-after-secs` is still delivered once resumed.
async fn paused_time_does_not_count_towards_expiry(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .arg("--callback-expire-after-secs", 1)
        .spawn()
        .await;
    let first = submit(&app, None, &receiver.url("/hook")).await;
    app.wait_terminal(&first, Duration::from_secs(30)).await;
    let id = app.record(&first).await["destination_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/destinations/{id}");
    let (status, _) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200);
    let held = submit(&app, None, &receiver.url("/hook")).await;
    work_done(&app, &held).await;
    // A lower bound: twice the expiry, and the sweeper runs every 250 ms.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = app.record(&held).await;
    assert_eq!(
        r["callback_status"], "pending",
        "not expired while paused: {r:#}"
    );
    let (status, _) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": false})),
    )
    .await;
    assert_eq!(status, 200);
    let r = app.wait_terminal(&held, Duration::from_secs(30)).await;
    assert_eq!(r["callback_status"], "sent", "{r:#}");
}

/// A pause that lands while a request's work runs holds its first attempt too (the
/// claim that started the work saw the destination unpaused).
async fn a_pause_during_the_work_holds_its_first_attempt(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    let first = submit(&app, None, &receiver.url("/hook")).await;
    app.wait_terminal(&first, Duration::from_secs(30)).await;
    let id = app.record(&first).await["destination_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let held = submit(&app, None, &receiver.url("/hook")).await;
    // Claimed: no log line says so.
    let running = |r: &Value| r["status"] == "processing";
    app.wait_json(
        &format!("/requests/{held}"),
        "its work running",
        WAIT,
        running,
    )
    .await;
    let path = format!("/destinations/{id}");
    let (status, _) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": true})),
    )
    .await;
    assert_eq!(status, 200);
    work_done(&app, &held).await;
    // A lower bound: its first attempt would have gone out by now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        receiver.hits().len(),
        1,
        "the work's first attempt waits too"
    );
    let (status, _) = send(
        &app,
        None,
        Method::PATCH,
        &path,
        Some(json!({"paused": false})),
    )
    .await;
    assert_eq!(status, 200);
    let r = app.wait_terminal(&held, Duration::from_secs(30)).await;
    assert_eq!(r["callback_status"], "sent", "{r:#}");
}

/// A destination shows the most recent failed attempt's error with its circuit closed,
/// and keeps it after a later success.
async fn a_destination_shows_its_last_failed_attempts_error(backend: Backend) {
    use crate::helpers::receiver::Reply;
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(503),
        _ => Reply::status(200),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-base-delay-ms", 50)
        .spawn()
        .await;
    let id = submit(&app, None, &receiver.url("/hook")).await;
    let record = app.wait_terminal(&id, Duration::from_secs(30)).await;
    assert_eq!(record["callback_status"], "sent", "{record:#}");
    let failed = record["attempts"][0]["error"].clone();
    assert!(failed.is_string(), "{record:#}");
    let list = app.get_json("/destinations").await;
    let d = &list["destinations"][0];
    assert_eq!(d["circuit"], "closed", "{list:#}");
    assert_eq!(d["last_error"], failed, "{list:#}");
}

both_backends!(
    a_destination_shows_its_last_failed_attempts_error,
    a_pause_during_the_work_holds_its_first_attempt,
    paused_time_does_not_count_towards_expiry,
    pause_holds_every_attempt_and_resume_delivers_them_all,
    destinations_are_scoped_like_requests,
    bad_patch_bodies_are_refused,
);
