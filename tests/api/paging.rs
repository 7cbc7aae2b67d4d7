//! Stored data at scale (SPEC §12): keyset pages, exact totals from kept counts, the
//! offset limit, retention.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::{Receiver, Reply};
use crate::helpers::{Backend, TestApp, work};

async fn sync_ids(app: &TestApp, n: usize, tag: &str) -> Vec<String> {
    let posts = (0..n).map(|i| app.post_sync(work(&format!("{tag} {i}"), 1)));
    let mut ids = Vec::new();
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        ids.push(body["request_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Every id on every page of `query`, following `next_cursor`.
async fn all_pages(app: &TestApp, query: &str) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut page = app.get_json(&format!("/requests?{query}")).await;
    let total = page["total"].as_u64().unwrap();
    loop {
        for r in page["requests"].as_array().unwrap() {
            ids.push(r["id"].as_str().unwrap().to_owned());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            return (ids, total);
        };
        page = app
            .get_json(&format!("/requests?{query}&cursor={cursor}"))
            .await;
    }
}

/// Paging with cursors while new requests arrive visits every record that existed at the
/// first page exactly once.
async fn cursor_pages_visit_every_old_record_once_while_the_table_grows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let old: HashSet<String> = sync_ids(&app, 30, "old").await.into_iter().collect();
    let mut seen = Vec::new();
    let mut page = app.get_json("/requests?limit=7").await;
    loop {
        sync_ids(&app, 3, "new").await;
        seen.extend(
            page["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        page = app
            .get_json(&format!("/requests?limit=7&cursor={cursor}"))
            .await;
        assert_eq!(page["offset"], 0);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no record twice");
    assert!(old.iter().all(|id| unique.contains(id)), "every old record");
    assert_eq!(seen.len(), 30, "the new ones came after the first page");
}

async fn cursors_belong_to_their_filters_and_offsets_stop_at_ten_thousand(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    sync_ids(&app, 3, "x").await;
    let page = app.get_json("/requests?limit=1&mode=sync").await;
    let cursor = page["next_cursor"].as_str().expect("more pages");
    for (query, field) in [
        (format!("limit=1&cursor={cursor}"), "cursor"),
        (format!("limit=1&mode=async&cursor={cursor}"), "cursor"),
        (format!("mode=sync&offset=1&cursor={cursor}"), "cursor"),
        ("cursor=garbage".to_owned(), "cursor"),
        ("offset=10001".to_owned(), "offset"),
    ] {
        let r = app.get(&format!("/requests?{query}")).await;
        assert_eq!(r.status(), 422, "{query}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
    }
    let r = app.get("/requests?offset=10001").await;
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cursor")
    );
    let deep = app.get_json("/requests?offset=10000").await;
    assert_eq!(deep["requests"], json!([]));
    assert_eq!(deep["total"], 3);
    let last = app.get_json("/requests?limit=3").await;
    assert!(last["next_cursor"].is_null(), "null on the last page");
}

/// After a mixed run (sync done and failed, callbacks sent, retried, failed, redelivered),
/// the kept totals equal what paging through every filter finds.
async fn totals_equal_the_records_after_a_mixed_run(backend: Backend) {
    let receiver = Receiver::scripted("127.0.0.1", |n| match n {
        0 => Reply::status(500),
        _ => Reply::status(200),
    })
    .await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--callback-base-delay-ms", 50)
        .arg("--callback-max-attempts", 2)
        .spawn()
        .await;
    sync_ids(&app, 4, "ok").await;
    let failed = app.post_sync(work("consuma-fault: boom", 1)).await;
    assert_eq!(failed.status(), 500);
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.submit_async(&format!("cb {i}"), &receiver.url("/"))
                .await,
        );
    }
    let one_shot = Receiver::scripted("127.0.0.1", |_| Reply::status(500)).await;
    let doomed = app.submit_async("doomed", &one_shot.url("/")).await;
    ids.push(doomed.clone());
    for id in &ids {
        app.wait_terminal(id, Duration::from_secs(30)).await;
    }
    let r = app
        .client
        .post(app.url(&format!("/requests/{doomed}/redeliver")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    app.wait_terminal(&doomed, Duration::from_secs(30)).await;
    let filters = [
        "",
        "mode=sync",
        "mode=async",
        "status=completed",
        "status=failed",
        "callback_status=sent",
        "callback_status=failed",
        "mode=async&status=completed",
        "mode=sync&status=failed",
        "mode=async&callback_status=failed&status=completed",
        "mode=sync&callback_status=sent",
    ];
    for filter in filters {
        let (ids, total) = all_pages(&app, &format!("limit=2&{filter}")).await;
        assert_eq!(ids.len() as u64, total, "{filter}");
    }
    assert_eq!(all_pages(&app, "").await.1, 10);
}

/// Retention deletes terminal records older than it (with attempts and keys) and keeps
/// records whose callback is not terminal.
async fn retention_prunes_old_terminal_records_and_keeps_pending_ones(backend: Backend) {
    let hole = crate::helpers::receiver::BlackHole::start("127.0.0.1").await;
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--retention", "3s")
        .arg("--callback-timeout-ms", 60_000)
        .spawn()
        .await;
    let keyed = app
        .client
        .post(app.url("/sync"))
        .header("idempotency-key", "k1")
        .json(&work("keyed", 1))
        .send()
        .await
        .unwrap();
    let keyed: Value = keyed.json().await.unwrap();
    let keyed = keyed["request_id"].as_str().unwrap().to_owned();
    let sent = app.submit_async("sent", &receiver.url("/")).await;
    app.wait_terminal(&sent, Duration::from_secs(20)).await;
    let pending = app.submit_async("pending", &hole.url("/")).await;
    // Pruned (woken by "old terminal records deleted").
    app.wait_status(&format!("/requests/{sent}"), 404, Duration::from_secs(30))
        .await;
    assert_eq!(app.get(&format!("/requests/{keyed}")).await.status(), 404);
    assert_eq!(app.record(&pending).await["callback_status"], "pending");
    assert_eq!(app.get_json("/requests").await["total"], 1);
    assert!(app.metric("consuma_pruned_total").await.unwrap_or(0.0) >= 2.0);
    // Its key went with it: the same key now makes a new request.
    let again = app
        .client
        .post(app.url("/sync"))
        .header("idempotency-key", "k1")
        .json(&work("keyed", 1))
        .send()
        .await
        .unwrap();
    assert!(!again.headers().contains_key("idempotent-replayed"));
    let logs = app.logs().join("\n");
    assert!(
        logs.contains("retention"),
        "the start-up log states the retention"
    );
}

both_backends!(
    cursor_pages_visit_every_old_record_once_while_the_table_grows,
    cursors_belong_to_their_filters_and_offsets_stop_at_ten_thousand,
    totals_equal_the_records_after_a_mixed_run,
    retention_prunes_old_terminal_records_and_keeps_pending_ones,
);
