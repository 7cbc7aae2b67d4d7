//! `consuma load` (SPEC §7) against the real service: the generator runs as a child
//! process with `--json --callback-port 0`, and its report is checked against what the
//! service recorded (GET /requests). Loopback only, a few dozen requests per test.

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::both_backends;
use crate::helpers::{BIN, Backend, TestApp};

/// `consuma load --target <target> --json --callback-port 0 <args>`, not yet started.
pub(crate) fn load_command(target: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["load", "--target", target, "--json", "--callback-port", "0"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    command
}

/// Runs `consuma load --target <target> --json --callback-port 0 <args>`.
pub(crate) async fn load(target: &str, args: &[&str]) -> Output {
    let run = load_command(target, args).output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("consuma load finishes")
        .expect("consuma load starts")
}

/// The JSON report of a run that must have exited 0.
async fn report(target: &str, args: &[&str]) -> Value {
    let out = load(target, args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A service with a small work delay and loopback callbacks allowed.
pub(crate) async fn service(backend: Backend) -> TestApp {
    TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 5)
        .spawn()
        .await
}

/// `total` of GET /requests for one mode.
pub(crate) async fn recorded(app: &TestApp, mode: &str) -> u64 {
    let page = app
        .get_json(&format!("/requests?mode={mode}&limit=1"))
        .await;
    page["total"].as_u64().expect("total")
}

async fn a_sync_run_counts_every_request_the_service_recorded(backend: Backend) {
    let app = service(backend).await;
    let r = report(
        &app.base,
        &["--mode", "sync", "--requests", "30", "--concurrency", "4"],
    )
    .await;
    assert_eq!(r["mode"], "sync");
    assert!(r["async"].is_null());
    let sync = &r["sync"];
    assert_eq!(
        (sync["total"].as_u64(), sync["successful"].as_u64()),
        (Some(30), Some(30))
    );
    assert_eq!(sync["failed"], 0);
    assert!(
        sync["latency_ms"]["p99"].as_f64().expect("p99") >= 5.0,
        "below the work delay"
    );
    assert_eq!(recorded(&app, "sync").await, 30);
}

async fn an_async_run_receives_every_callback_with_a_good_signature(backend: Backend) {
    let app = service(backend).await;
    let secret = app.secret().await;
    let args = [
        "--mode",
        "async",
        "--requests",
        "20",
        "--callback-timeout",
        "60s",
        "--signing-secret",
        &secret,
    ];
    let r = report(&app.base, &args).await;
    assert!(r["sync"].is_null());
    let a = &r["async"];
    assert_eq!(
        (a["total"].as_u64(), a["successful"].as_u64()),
        (Some(20), Some(20))
    );
    assert_eq!(a["callbacks_expected"], 20);
    assert_eq!(a["callbacks_received"], 20, "{a:#}");
    assert_eq!(
        (a["duplicates"].as_u64(), a["bad_signatures"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(a["failures"], serde_json::json!({}));
    assert!(a["callback_latency_ms"]["p50"].as_f64().expect("p50") >= 5.0);
    assert_eq!(recorded(&app, "async").await, 20);
}

async fn a_both_run_alternates_and_agrees_with_the_records(backend: Backend) {
    let app = service(backend).await;
    let r = report(
        &app.base,
        &["--requests", "21", "--callback-timeout", "60s"],
    )
    .await;
    assert_eq!(r["mode"], "both");
    assert_eq!(r["sync"]["total"], 11);
    assert_eq!(r["async"]["total"], 10);
    assert_eq!(r["async"]["callbacks_received"], 10, "{r:#}");
    assert_eq!(recorded(&app, "sync").await, 11);
    assert_eq!(recorded(&app, "async").await, 10);
    let all = app.get_json("/requests?limit=1").await;
    assert_eq!(all["total"], 21);
}

async fn a_wrong_signing_secret_makes_every_callback_a_bad_signature(backend: Backend) {
    let app = service(backend).await;
    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let args = [
        "--mode",
        "async",
        "--requests",
        "8",
        "--callback-timeout",
        "60s",
        "--signing-secret",
        wrong,
    ];
    let r = report(&app.base, &args).await;
    let a = &r["async"];
    assert_eq!(a["callbacks_received"], 8, "{a:#}");
    assert_eq!(a["bad_signatures"], 8);
}

async fn a_server_refusing_loopback_callbacks_gets_the_hint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let out = load(&app.base, &["--mode", "async", "--requests", "3"]).await;
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--allow-callback-cidr 127.0.0.0/8"),
        "stderr: {stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(r["async"]["failures"]["http_400"], 3);
    assert_eq!(r["async"]["callbacks_expected"], 0);
    assert_eq!(recorded(&app, "async").await, 0);
}

/// Ctrl-C (SIGINT) in the middle of a 60 s run: it stops sending, still waits for the
/// callbacks of what it sent, reports it, and exits 130.
async fn an_interrupted_run_reports_what_it_sent_and_exits_130(backend: Backend) {
    let app = service(backend).await;
    let args = [
        "--mode",
        "async",
        "--rate",
        "50",
        "--duration",
        "60s",
        "--callback-timeout",
        "60s",
    ];
    let child = load_command(&app.base, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("consuma load starts");
    until_recorded(&app, "async").await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("consuma load ends after SIGINT")
        .expect("consuma load's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(r["interrupted"], true);
    let a = &r["async"];
    let total = a["total"].as_u64().expect("async.total");
    assert!(total >= 1, "{a:#}");
    // It stopped sending: the whole run would be 3,000. (A count, not a timing: 10 s
    // worth is a generous margin for the SIGINT to arrive.)
    assert!(total < 50 * 10, "sent {total}, more than 10 s worth: {a:#}");
    assert_eq!(total, recorded(&app, "async").await, "{a:#}");
    assert_eq!(a["callbacks_received"], total, "{a:#}");
}

/// Waits (at most 30 s) until the service has recorded a request of `mode` (woken by
/// its "request accepted").
pub(crate) async fn until_recorded(app: &TestApp, mode: &str) {
    let what = format!("a request of {mode} recorded");
    app.eventually(&what, Duration::from_secs(30), async || {
        (recorded(app, mode).await > 0).then_some(())
    })
    .await;
}

both_backends!(
    a_sync_run_counts_every_request_the_service_recorded,
    an_async_run_receives_every_callback_with_a_good_signature,
    a_both_run_alternates_and_agrees_with_the_records,
    a_wrong_signing_secret_makes_every_callback_a_bad_signature,
    a_server_refusing_loopback_callbacks_gets_the_hint,
    an_interrupted_run_reports_what_it_sent_and_exits_130,
);

#[tokio::test]
async fn an_unreachable_target_exits_1_with_one_line() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", listener.local_addr().expect("bound"));
    drop(listener);
    let out = load(&dead, &["--mode", "sync"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn requests_with_duration_is_a_usage_error() {
    let out = load(
        "http://127.0.0.1:9",
        &["--requests", "5", "--duration", "1s"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
}
