//! Logs name origins only (SPEC §16): a callback URL's path and query (where Slack-style
//! URLs carry their token) never reach a log line, at debug level included; the policy's
//! refusals name the refused range, never the address a name resolved to.

use std::time::Duration;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, receiver::Receiver};

const WAIT: Duration = Duration::from_secs(30);
/// A path and a query shaped like a Slack webhook's token.
const PATH_SECRET: &str = "T0SECRETPATH/B0SECRETPATH/xoxbPathToken123";
const QUERY_SECRET: &str = "query-token-456";

/// A whole run at debug level — accepted, delivered, failed, retried — scanned for the
/// callback's path and query, as `nothing_secret_reaches_the_logs` scans for keys.
async fn callback_paths_and_queries_never_reach_the_logs(backend: Backend) {
    let receiver = Receiver::ok().await;
    let mut app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-max-attempts", 2)
        .arg("--callback-base-delay-ms", 10)
        .env("RUST_LOG", "debug")
        .spawn()
        .await;
    let hook = receiver.url(&format!("/services/{PATH_SECRET}?token={QUERY_SECRET}"));
    let delivered = app.submit_async("to a secret path", &hook).await;
    // A port nobody listens on: connection refused, retried, failed for good.
    let closed = format!("http://127.0.0.1:1/services/{PATH_SECRET}?token={QUERY_SECRET}");
    let failed = app.submit_async("to a closed port", &closed).await;
    let record = app.wait_terminal(&delivered, WAIT).await;
    assert_eq!(record["callback_status"], "sent", "{record}");
    let record = app.wait_terminal(&failed, WAIT).await;
    assert_eq!(record["callback_status"], "failed", "{record}");
    app.terminate().await;

    let logs = app.logs();
    for needle in [PATH_SECRET, "SECRETPATH", QUERY_SECRET, "/services/"] {
        if let Some(line) = logs.iter().find(|l| l.contains(needle)) {
            panic!("{needle:?} is in the logs: {line}");
        }
    }
    // The run was logged, with origins.
    let accepted = logs
        .iter()
        .find(|l| l.contains("request accepted") && l.contains("callback"))
        .expect("an accepted request is logged");
    assert!(accepted.contains(&receiver.url("")), "{accepted}");
    assert!(logs.iter().any(|l| l.contains("sending callback")));
    assert!(logs.iter().any(|l| l.contains("callback failed for good")));
}

/// A name that resolves into a refused range: the attempt's error (shown to the caller in
/// the record) and the logs name the range, not the address.
async fn a_refused_name_shows_its_range_not_its_address(backend: Backend) {
    let mut app = TestApp::builder(backend)
        .arg("--callback-resolve", "hooks.test=10.9.8.7")
        .arg("--callback-max-attempts", 1)
        .env("RUST_LOG", "debug")
        .spawn()
        .await;
    let id = app
        .submit_async("to a private name", "http://hooks.test/hook")
        .await;
    let record = app.wait_terminal(&id, WAIT).await;
    let error = record["callback_last_error"].as_str().unwrap_or_default();
    assert!(error.contains("10.0.0.0/8"), "{record}");
    assert!(!error.contains("10.9.8.7"), "{record}");
    app.terminate().await;
    let refused = app.logs_containing("10.0.0.0/8");
    assert!(!refused.is_empty(), "the refusal is logged");
    for line in refused {
        assert!(!line.contains("10.9.8.7"), "{line}");
    }
}

both_backends!(
    callback_paths_and_queries_never_reach_the_logs,
    a_refused_name_shows_its_range_not_its_address,
);
