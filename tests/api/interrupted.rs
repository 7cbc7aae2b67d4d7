//! No record stays `processing` (SPEC §16, §17 "Processing records"): a /sync request
//! whose client goes away still ends, and the /sync records a killed process left
//! behind are failed (SQLite: at the next start; PostgreSQL: once the dead instance's
//! heartbeat is older than 30 s, by housekeeping on any instance).

use std::time::Duration;

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, work};

const INTERRUPTED: &str = "interrupted: the service stopped before the work ended";

/// The only /sync record, once it exists (an unkeyed /sync logs "request accepted" as
/// its record is written, not after: no line says it is stored).
async fn the_sync_record(app: &TestApp, within: Duration) -> Value {
    app.eventually("a /sync record", within, async || {
        let page = app.get_json("/requests?mode=sync").await;
        page["requests"].as_array()?.first().cloned()
    })
    .await
}

/// The kept count of records with this status.
async fn total(app: &TestApp, status: &str) -> u64 {
    app.get_json(&format!("/requests?status={status}")).await["total"]
        .as_u64()
        .expect("total")
}

/// Sends a /sync request from a client that gives up (drops the connection) after
/// `patience`, long before the work ends.
async fn impatient_sync(app: &TestApp, patience: Duration) {
    let client = reqwest::Client::builder()
        .timeout(patience)
        .build()
        .unwrap();
    let sent = client
        .post(app.url("/sync"))
        .json(&work("walk away", 2))
        .send()
        .await;
    assert!(sent.is_err(), "the client gave up before the answer");
}

/// A client that disconnects mid-/sync does not cancel the work: the record ends
/// `completed` with its result, and the kept counts follow it.
async fn a_sync_request_whose_client_disconnects_still_ends(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    impatient_sync(&app, Duration::from_millis(400)).await;
    let first = the_sync_record(&app, Duration::from_secs(5)).await;
    let id = first["id"].as_str().expect("id").to_owned();
    let record = app.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(record["status"], "completed", "{record:#}");
    assert_eq!(record["output_data"]["word_count"], 2, "{record:#}");
    assert_eq!(total(&app, "processing").await, 0);
    assert_eq!(total(&app, "completed").await, 1);
}

/// SIGKILL mid-/sync: after a restart the record is `failed` with the interrupted error
/// (at start on SQLite; on PostgreSQL once the killed instance's heartbeat is 30 s old),
/// and the kept counts add up.
async fn a_sync_record_left_processing_by_a_killed_process_is_failed(backend: Backend) {
    let mut app = TestApp::builder(backend)
        .arg("--work-delay-ms", 60_000)
        .spawn()
        .await;
    let (client, url) = (app.client.clone(), app.url("/sync"));
    let pending = tokio::spawn(async move { client.post(url).json(&work("cut", 1)).send().await });
    let first = the_sync_record(&app, Duration::from_secs(10)).await;
    assert_eq!(first["status"], "processing");
    let id = first["id"].as_str().expect("id").to_owned();
    app.kill().await;
    let _ = pending.await;
    app.restart().await;
    let within = match backend {
        Backend::Sqlite => Duration::from_secs(5),
        Backend::Postgres => Duration::from_secs(75),
    };
    let record = app.wait_terminal(&id, within).await;
    assert_eq!(record["status"], "failed", "{record:#}");
    assert_eq!(record["error"], INTERRUPTED, "{record:#}");
    assert_eq!(total(&app, "processing").await, 0);
    assert_eq!(total(&app, "failed").await, 1);
}

both_backends!(
    a_sync_request_whose_client_disconnects_still_ends,
    a_sync_record_left_processing_by_a_killed_process_is_failed,
);
