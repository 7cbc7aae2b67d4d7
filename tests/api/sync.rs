//! POST /sync behaviour beyond validation: the non-blocking delay and the logs.

use std::time::Duration;

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, work};

/// 1,000 requests sleeping in the work at the same moment: the delay blocks no thread
/// and nothing queues them (behind each other or behind the database). Proven with the
/// in-flight gauge, not with wall-clock time.
async fn a_thousand_sync_requests_are_in_flight_at_once(backend: Backend) {
    const N: usize = 1000;
    let app = TestApp::builder(backend)
        .arg("--work-delay-ms", 8000)
        .spawn()
        .await;
    let mut requests = Vec::with_capacity(N);
    for i in 0..N {
        let (client, url) = (app.client.clone(), app.url("/sync"));
        requests.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&work(&format!("r{i}"), 1))
                .send()
                .await
        }));
    }
    let gauge = r#"consuma_work_in_flight{mode="sync"}"#;
    // Sampled as the requests are accepted (each logs it), until all are in flight or
    // all have been answered.
    let peak = app
        .eventually("the works in flight", Duration::from_secs(30), async || {
            let now = app.metric(gauge).await.unwrap_or(0.0);
            (now >= N as f64 || requests.iter().all(|r| r.is_finished())).then_some(now)
        })
        .await;
    assert_eq!(peak, N as f64, "all {N} works were in flight together");
    for r in requests {
        assert_eq!(r.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(app.metric(gauge).await, Some(0.0));
}

async fn processing_time_includes_the_simulated_delay(backend: Backend) {
    let app = TestApp::builder(backend)
        .arg("--work-delay-ms", 120)
        .spawn()
        .await;
    let body: Value = app.post_sync(work("slow", 2)).await.json().await.unwrap();
    assert!(
        body["result"]["processing_time_ms"].as_f64().unwrap() >= 120.0,
        "{body}"
    );
}

async fn every_log_line_about_a_request_carries_its_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret_text = "do-not-log-this-text";
    let body: Value = app
        .post_sync(work(secret_text, 1))
        .await
        .json()
        .await
        .unwrap();
    let id = body["request_id"].as_str().unwrap();
    let trace_id = app.record(id).await["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lines: Vec<Value> = app
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let about: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == id)
        .collect();
    assert!(
        about.len() >= 2,
        "accept and completion are logged: {about:?}"
    );
    for line in &about {
        assert_eq!(line["span"]["trace_id"], trace_id.as_str(), "{line}");
    }
    assert!(
        app.logs().iter().all(|l| !l.contains(secret_text)),
        "the text never reaches the logs"
    );
}

both_backends!(
    a_thousand_sync_requests_are_in_flight_at_once,
    processing_time_includes_the_simulated_delay,
    every_log_line_about_a_request_carries_its_ids,
);
