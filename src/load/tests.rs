//! Whole runs against stand-in services on loopback: a deliberately slow one (the
//! open loop must report its queueing) and a fake async one whose callbacks go missing,
//! repeat, and are signed.
//!
//! Assertions on time are lower bounds only: a busy machine can make anything slower,
//! never faster.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::interrupt::Interrupt;
use super::test_support::{KEY, http, load_args, sign, spawn_service, whsec};
use super::{Report, measure, run};

/// Service time of the slow stand-in, one request at a time.
const SERVICE: Duration = Duration::from_millis(100);

async fn measure_ok(argv: &[&str]) -> Report {
    measure_args(load_args(argv), Interrupt::default())
        .await
        .expect("the run starts")
}

/// [`measure`] with the body `--text` and `--count` make and no progress line.
async fn measure_args(args: super::LoadArgs, interrupt: Interrupt) -> Result<Report, String> {
    let input = super::client::text_input(args.text(), args.count());
    measure(args, input, ProgressBar::hidden(), interrupt).await
}

/// /sync takes 100 ms and serves one request at a time: at most 10 requests/s.
async fn slow_service() -> String {
    let one_at_a_time = Arc::new(Semaphore::new(1));
    let sync = move || {
        let permit = one_at_a_time.clone();
        async move {
            let _serving = permit.acquire().await.expect("never closed");
            tokio::time::sleep(SERVICE).await;
            Json(json!({"request_id": "x", "status": "completed"}))
        }
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/sync", post(sync));
    spawn_service(app).await
}

#[tokio::test]
async fn the_open_loop_reports_the_queueing_of_a_server_that_cannot_keep_up() {
    let target = slow_service().await;
    // 50 requests/s offered to a server that does 10/s: request i (from 0) is due at
    // i·20 ms and cannot finish before (i+1)·100 ms, so its latency from the intended
    // send time is at least 100 + 80·i ms; the last one's at least 1,620 ms.
    let report = measure_ok(&[
        "--target",
        &target,
        "--mode",
        "sync",
        "--rate",
        "50",
        "--requests",
        "20",
    ])
    .await;
    let sync = report.sync.expect("sync ran");
    assert_eq!(sync.counts.successful, 20);
    let latency = sync.latency_ms.expect("samples");
    assert!(
        latency.max >= 1600.0,
        "max {} ms hides the queueing",
        latency.max
    );
    assert!(
        latency.p99 >= 1500.0,
        "p99 {} ms hides the queueing",
        latency.p99
    );
    assert!(latency.p99 >= 10.0 * SERVICE.as_millis() as f64);
    assert!(
        latency.mean >= 850.0,
        "mean {} ms hides the queueing",
        latency.mean
    );
}

#[tokio::test]
async fn a_duration_run_sends_for_at_least_that_long_and_counts_everything() {
    let target = slow_service().await;
    let report = measure_ok(&[
        "--target",
        &target,
        "--mode",
        "sync",
        "--concurrency",
        "2",
        "--duration",
        "300ms",
    ])
    .await;
    assert!(report.sending_time_s >= 0.3, "{}", report.sending_time_s);
    let sync = report.sync.expect("sync ran");
    assert!(sync.counts.total >= 3, "{sync:?}");
    assert_eq!(sync.counts.total, sync.counts.successful);
    assert!(report.r#async.is_none());
}

/// A fake /async: acknowledges with ids `req-0`, `req-1`, …; request n gets no callback
/// when n % 5 == 4, two deliveries when n % 3 == 0, one otherwise. /sync answers 200.
/// Runs against it wait their whole `--callback-timeout` (some callbacks never come), so
/// that is the time every delivery has to arrive: 3 s, room for a busy shared machine.
async fn fake_async_service() -> String {
    let next = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/sync",
            post(|| async { Json(json!({"request_id": "s", "status": "completed"})) }),
        )
        .route("/async", post(fake_async))
        .with_state(next);
    spawn_service(app).await
}

async fn fake_async(
    State(next): State<Arc<AtomicU64>>,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    let n = next.fetch_add(1, Ordering::Relaxed);
    let id = format!("req-{n}");
    let url = body["callback_url"]
        .as_str()
        .expect("callback_url")
        .to_string();
    let deliveries = match n {
        n if n % 5 == 4 => 0,
        n if n % 3 == 0 => 2,
        _ => 1,
    };
    tokio::spawn(deliver(url, id.clone(), deliveries));
    let ack = json!({"request_id": id, "status": "pending"});
    (StatusCode::ACCEPTED, [("x-request-id", id)], Json(ack))
}

async fn deliver(url: String, id: String, times: u32) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let body = json!({"request_id": id, "status": "completed", "result": null,
        "error": null, "timestamp": "2025-01-01T00:00:00Z"})
    .to_string();
    let ts = chrono::Utc::now().timestamp();
    for _ in 0..times {
        let _ = http()
            .post(&url)
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(KEY, &id, ts, &body))
            .body(body.clone())
            .send()
            .await;
    }
}

#[tokio::test]
async fn async_runs_match_callbacks_and_count_missing_and_duplicate_ones() {
    let target = fake_async_service().await;
    let secret = whsec(KEY);
    let argv = [
        "--target",
        &target,
        "--mode",
        "async",
        "--requests",
        "10",
        "--concurrency",
        "3",
        "--callback-timeout",
        "3s",
        "--signing-secret",
        &secret,
    ];
    let a = measure_ok(&argv).await.r#async.expect("async ran");
    // Requests 4 and 9 get no callback; 0, 3 and 6 get two deliveries.
    assert_eq!((a.counts.total, a.counts.successful), (10, 10));
    assert_eq!((a.callbacks_expected, a.callbacks_received), (10, 8));
    assert_eq!(a.duplicates, 3);
    assert_eq!(a.bad_signatures, 0);
    assert_eq!(a.counts.failures.get("callback_missing"), Some(&2));
    assert_eq!(a.unmatched_callbacks, 0);
    assert!(a.callback_latency_ms.expect("samples").p50 >= 20.0);
}

#[tokio::test]
async fn a_wrong_secret_makes_every_delivery_a_bad_signature() {
    let target = fake_async_service().await;
    let wrong = whsec(b"not the key the service signs with");
    let argv = [
        "--target",
        &target,
        "--mode",
        "async",
        "--requests",
        "10",
        "--callback-timeout",
        "3s",
        "--signing-secret",
        &wrong,
    ];
    let a = measure_ok(&argv).await.r#async.expect("async ran");
    assert_eq!(a.callbacks_received, 8);
    assert_eq!(
        a.bad_signatures,
        8 + 3,
        "every delivery, duplicates included"
    );
}

#[tokio::test]
async fn both_alternates_and_reports_both_sections() {
    let target = fake_async_service().await;
    let r = measure_ok(&[
        "--target",
        &target,
        "--requests",
        "7",
        "--callback-timeout",
        "3s",
    ])
    .await;
    assert_eq!(r.mode, "both");
    assert_eq!(r.sync.expect("sync ran").counts.total, 4);
    let a = r.r#async.expect("async ran");
    assert_eq!(a.counts.total, 3);
    assert!(!a.signatures_verified);
}

#[tokio::test]
async fn a_policy_refusal_of_every_async_request_is_recognised() {
    let refuse = || async {
        (
            StatusCode::BAD_REQUEST,
            "callback_url: loopback address refused",
        )
    };
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/async", post(refuse));
    let target = spawn_service(app).await;
    let r = measure_ok(&["--target", &target, "--mode", "async", "--requests", "4"]).await;
    assert!(r.callbacks_refused_by_policy());
    let a = r.r#async.expect("async ran");
    assert_eq!((a.counts.successful, a.callbacks_expected), (0, 0));
    assert_eq!(a.counts.failures.get("http_400"), Some(&4));
    assert!(a.ack_latency_ms.is_none() && a.callback_latency_ms.is_none());
}

#[tokio::test]
async fn an_unreachable_target_exits_1_before_sending() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let code = run(load_args(&["--target", &dead, "--mode", "sync"]))
        .await
        .expect("no error");
    assert_eq!(code, 1);
}

#[tokio::test]
async fn a_taken_callback_port_is_a_start_failure() {
    let target = fake_async_service().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("bound").port().to_string();
    let args = load_args(&[
        "--target",
        &target,
        "--mode",
        "async",
        "--callback-port",
        &port,
    ]);
    let err = measure_args(args, Interrupt::default())
        .await
        .expect_err("port taken");
    assert!(err.contains("cannot listen for callbacks"), "{err}");
    assert!(err.contains("--callback-port 0"), "{err}");
}

/// A stand-in that counts in `seen` every request it receives: /sync answers at once,
/// or never when the text is `hang`; /async acknowledges with a fresh id and never
/// calls back.
async fn counting_service(seen: Arc<AtomicU64>) -> String {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/sync", post(counted_sync))
        .route("/async", post(counted_async))
        .with_state(seen);
    spawn_service(app).await
}

async fn counted_sync(State(seen): State<Arc<AtomicU64>>, Json(body): Json<Value>) -> Json<Value> {
    seen.fetch_add(1, Ordering::Relaxed);
    if body["text"] == "hang" {
        std::future::pending::<()>().await;
    }
    Json(json!({"request_id": "s", "status": "completed"}))
}

async fn counted_async(State(seen): State<Arc<AtomicU64>>) -> impl IntoResponse {
    let n = seen.fetch_add(1, Ordering::Relaxed);
    let ack = json!({"request_id": format!("req-{n}"), "status": "pending"});
    (StatusCode::ACCEPTED, Json(ack))
}

/// Runs `argv` against `target`, calling `escalate` on the run's interrupt `times` times
/// once the service has seen `after` requests. Bounded, so a run that ignores the
/// interrupt fails the test instead of hanging it.
async fn interrupted_run(argv: &[&str], seen: Arc<AtomicU64>, after: u64, times: u32) -> Report {
    let interrupt = Interrupt::default();
    let signal = interrupt.clone();
    tokio::spawn(async move {
        while seen.load(Ordering::Relaxed) < after {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..times {
            signal.escalate();
        }
    });
    let run = measure_args(load_args(argv), interrupt);
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("an interrupted run ends long before its duration")
        .expect("the run starts")
}

#[tokio::test]
async fn an_interrupt_stops_sending_and_counts_every_request_sent() {
    let seen = Arc::new(AtomicU64::new(0));
    let target = counting_service(seen.clone()).await;
    let argv = [
        "--target",
        &target,
        "--mode",
        "sync",
        "--rate",
        "50",
        "--duration",
        "60s",
    ];
    let report = interrupted_run(&argv, seen.clone(), 5, 1).await;
    assert!(report.interrupted);
    let sync = report.sync.expect("sync ran");
    assert_eq!(sync.counts.total, seen.load(Ordering::Relaxed));
    assert_eq!(sync.counts.total, sync.counts.successful);
    assert!(
        sync.counts.total >= 5 && sync.counts.total < 50 * 60,
        "{sync:?}"
    );
}

#[tokio::test]
async fn a_second_interrupt_abandons_requests_in_flight_and_counts_them() {
    let seen = Arc::new(AtomicU64::new(0));
    let target = counting_service(seen.clone()).await;
    let argv = [
        "--target",
        &target,
        "--mode",
        "sync",
        "--text",
        "hang",
        "--requests",
        "3",
        "--concurrency",
        "3",
        "--timeout",
        "3600",
    ];
    let report = interrupted_run(&argv, seen, 3, 2).await;
    assert!(report.interrupted);
    let sync = report.sync.expect("sync ran");
    assert_eq!((sync.counts.total, sync.counts.successful), (3, 0));
    assert_eq!(sync.counts.failures.get("interrupted"), Some(&3));
}

#[tokio::test]
async fn a_second_interrupt_stops_waiting_and_counts_callbacks_missing() {
    let seen = Arc::new(AtomicU64::new(0));
    let target = counting_service(seen.clone()).await;
    let argv = [
        "--target",
        &target,
        "--mode",
        "async",
        "--requests",
        "5",
        "--callback-timeout",
        "3600",
    ];
    let report = interrupted_run(&argv, seen, 5, 2).await;
    assert!(report.interrupted);
    let a = report.r#async.expect("async ran");
    // The acknowledgement of the last requests may be abandoned in flight; either way
    // each request is counted once, and each acknowledged one's callback as missing.
    let abandoned = a.counts.failures.get("interrupted").copied().unwrap_or(0);
    assert_eq!(a.counts.total, 5);
    assert_eq!(a.callbacks_expected + abandoned, 5);
    assert_eq!(a.callbacks_received, 0);
    assert_eq!(
        a.counts
            .failures
            .get("callback_missing")
            .copied()
            .unwrap_or(0),
        a.callbacks_expected
    );
}
