//! GET /requests and GET /requests/{id}: records, filters, paging, query errors.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::{Backend, TestApp, work};

const WAIT: Duration = Duration::from_secs(30);

fn is_rfc3339_millis_utc(s: &str) -> bool {
    // 2026-01-31T12:00:00.123Z
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

async fn a_sync_request_is_recorded_with_input_output_and_timestamps(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app
        .post_sync(json!({"text": "Hello world", "ignored": true}))
        .await;
    assert_eq!(r.status(), 200);
    let header_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    let id = body["request_id"].as_str().unwrap();
    assert_eq!(header_id, id);
    let rec = app.record(id).await;
    assert_eq!(rec["id"], id);
    assert_eq!(rec["mode"], "sync");
    assert_eq!(rec["status"], "completed");
    assert_eq!(
        rec["input_data"],
        json!({"text": "Hello world", "count": 1}),
        "default applied, unknown dropped"
    );
    assert_eq!(rec["output_data"], body["result"]);
    assert!(rec["error"].is_null());
    assert!(
        is_rfc3339_millis_utc(rec["created_at"].as_str().unwrap()),
        "{}",
        rec["created_at"]
    );
    assert!(is_rfc3339_millis_utc(rec["completed_at"].as_str().unwrap()));
    assert!(rec["created_at"].as_str() <= rec["completed_at"].as_str());
    assert_eq!(rec["trace_id"].as_str().unwrap().len(), 32);
    assert!(
        rec["callback_url"].is_null()
            && rec["callback_status"].is_null()
            && rec["callback_sent_at"].is_null()
    );
    assert_eq!(rec["callback_attempts"], 0);
    assert_eq!(rec["attempts"], json!([]));
}

async fn the_list_is_newest_first_paged_and_filtered(backend: Backend) {
    let app = TestApp::builder(backend).arg("--workers", 0).spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let body: Value = app
            .post_sync(work(&format!("t{i}"), 1))
            .await
            .json()
            .await
            .unwrap();
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    // An async request (accepted, never worked: --workers 0).
    let a = app
        .post_json(
            "/async",
            &json!({"text": "x", "callback_url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!(a.status(), 202);
    let async_id = a.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let all = app.get_json("/requests").await;
    assert_eq!(all["total"], 6);
    assert_eq!(
        (all["limit"].as_u64(), all["offset"].as_u64()),
        (Some(50), Some(0))
    );
    let listed: Vec<&str> = all["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.push(&async_id);
    expected.reverse();
    assert_eq!(listed, expected, "newest first");
    let first = &all["requests"][0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "id",
        "mode",
        "status",
        "created_at",
        "completed_at",
        "callback_status",
    ] {
        assert!(keys.contains(&k), "summary has {k}");
    }

    let page = app.get_json("/requests?limit=2&offset=1").await;
    assert_eq!(page["total"], 6);
    let page_ids: Vec<&str> = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(page_ids, &expected[1..3]);

    let sync = app.get_json("/requests?mode=sync&status=completed").await;
    assert_eq!(sync["total"], 5);
    let pending = app
        .get_json("/requests?mode=async&callback_status=pending")
        .await;
    assert_eq!(pending["total"], 1);
    assert_eq!(pending["requests"][0]["status"], "pending");
    let none = app.get_json("/requests?callback_status=sent").await;
    assert_eq!(
        (
            none["total"].as_u64(),
            none["requests"].as_array().unwrap().len()
        ),
        (Some(0), 0)
    );
    let beyond = app.get_json("/requests?offset=100").await;
    assert_eq!(beyond["total"], 6);
    assert!(beyond["requests"].as_array().unwrap().is_empty());
}

async fn bad_query_values_get_a_422_per_parameter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (query, expected) in [
        ("limit=0", vec!["limit"]),
        ("limit=101", vec!["limit"]),
        ("limit=abc", vec!["limit"]),
        ("offset=-1", vec!["offset"]),
        (
            "mode=batch&status=done&callback_status=maybe",
            vec!["mode", "status", "callback_status"],
        ),
    ] {
        let r = app.get(&format!("/requests?{query}")).await;
        assert_eq!(r.status(), 422, "{query}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let p: Value = r.json().await.unwrap();
        let got: Vec<&str> = p["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(got, expected, "{query}");
    }
    assert_eq!(
        app.get("/requests?limit=100&offset=0&unknown=1")
            .await
            .status(),
        200
    );
}

async fn an_incoming_traceparent_sets_the_records_trace_id(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let r = app
        .client
        .post(app.url("/sync"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .json(&work("trace me", 1))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.record(&id).await["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    // A malformed one is ignored: a new trace starts.
    let r = app
        .client
        .post(app.url("/sync"))
        .header("traceparent", "garbage")
        .json(&work("x", 1))
        .send()
        .await
        .unwrap();
    let id = r.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let trace = app.record(&id).await["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(trace.len() == 32 && trace != "4bf92f3577b34da6a3ce929d0e0e4736");
}

/// SPEC §3: an async record goes `pending → processing → completed`. It is marked
/// `processing` once its work has run for 50 ms (README), and the counts by status
/// follow it there and out again.
async fn an_async_record_is_processing_while_its_long_work_runs(backend: Backend) {
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    let id = app.submit_async("slow", &receiver.url("/hook")).await;
    let running = |r: &Value| r["status"] == "processing";
    app.wait_json(&format!("/requests/{id}"), "processing", WAIT, running)
        .await;
    assert_eq!(
        app.get_json("/requests?status=processing").await["total"],
        1
    );
    assert_eq!(app.get_json("/requests?status=pending").await["total"], 0);
    let done = app.wait_terminal(&id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        app.get_json("/requests?status=processing").await["total"],
        0
    );
    assert_eq!(app.get_json("/requests?status=completed").await["total"], 1);
}

/// A work faster than 50 ms goes from `pending` to its end in one write: every record
/// ends `completed` and `sent`, and the counts by status add up with nothing left
/// `pending` or `processing`.
async fn fast_works_end_completed_with_exact_counts(backend: Backend) {
    const N: usize = 40;
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 0)
        .spawn()
        .await;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(
            app.submit_async(&format!("t{i}"), &receiver.url("/hook"))
                .await,
        );
    }
    for id in &ids {
        let done = app.wait_terminal(id, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["callback_status"], "sent", "{done}");
    }
    for (filter, total) in [
        ("status=completed", N),
        ("status=pending", 0),
        ("status=processing", 0),
        ("callback_status=sent", N),
        ("callback_status=pending", 0),
    ] {
        let page = app
            .get_json(&format!("/requests?mode=async&{filter}"))
            .await;
        assert_eq!(page["total"], total, "{filter}");
    }
}

both_backends!(
    an_async_record_is_processing_while_its_long_work_runs,
    fast_works_end_completed_with_exact_counts,
    a_sync_request_is_recorded_with_input_output_and_timestamps,
    the_list_is_newest_first_paged_and_filtered,
    bad_query_values_get_a_422_per_parameter,
    an_incoming_traceparent_sets_the_records_trace_id,
);
