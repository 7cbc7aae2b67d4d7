//! `work=` on GET /requests (SPEC §13 "Everything else holds per work", §12): the filter
//! alone and with the others, exact totals from the kept counts after a mixed run, paging
//! by cursor within one work, and a value that names no work refused like other filters.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::receiver::Receiver;
use crate::helpers::upstream::Upstream;
use crate::helpers::{Backend, TestApp};

async fn start(backend: Backend, up: &Upstream, dir: &std::path::Path) -> TestApp {
    let mut text = String::new();
    for path in ["ok", "reject"] {
        text.push_str(&format!(
            "[works.{path}]\nkind = \"http\"\nurl = \"{}\"\n\n",
            up.url(&format!("/{path}"))
        ));
    }
    let file = dir.join("works.toml");
    std::fs::write(&file, text).unwrap();
    TestApp::builder(backend)
        .allow_loopback()
        .arg("--works", file.display())
        .spawn()
        .await
}

/// `POST path` with `body`; the request id of the answer.
async fn post(app: &TestApp, path: &str, body: Value, expect: u16) -> String {
    let r = app
        .request(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), expect, "{path}");
    let body: Value = r.json().await.unwrap();
    body["request_id"].as_str().expect("request_id").to_owned()
}

/// The ids and total of one filtered listing.
async fn listed(app: &TestApp, query: &str) -> (BTreeSet<String>, u64) {
    let page = app.get_json(&format!("/requests?{query}")).await;
    let ids = page["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["total"].as_u64().unwrap())
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn the_work_filter_lists_one_work_with_exact_totals(backend: Backend) {
    let (up, receiver, dir) = (
        Upstream::start().await,
        Receiver::ok().await,
        tempfile::tempdir().unwrap(),
    );
    let app = start(backend, &up, dir.path()).await;
    let text_a = post(&app, "/sync", json!({"text": "a b"}), 200).await;
    let text_b = post(&app, "/sync/text", json!({"text": "c"}), 200).await;
    let ok_sync = post(&app, "/sync/ok", json!({"n": 1}), 200).await;
    let rejected = post(&app, "/sync/reject", json!({"n": 2}), 422).await;
    let hook = receiver.url("/hook");
    let ok_async = post(
        &app,
        "/async/ok",
        json!({"n": 3, "callback_url": hook}),
        202,
    )
    .await;
    let record = app.wait_terminal(&ok_async, Duration::from_secs(20)).await;
    assert_eq!(record["status"], "completed", "{record:#}");

    assert_eq!(listed(&app, "").await.1, 5);
    assert_eq!(
        listed(&app, "work=ok").await,
        (set(&[&ok_sync, &ok_async]), 2)
    );
    assert_eq!(
        listed(&app, "work=ok&mode=sync").await,
        (set(&[&ok_sync]), 1)
    );
    assert_eq!(
        listed(&app, "work=ok&mode=async").await,
        (set(&[&ok_async]), 1)
    );
    assert_eq!(
        listed(&app, "work=ok&status=completed").await,
        (set(&[&ok_sync, &ok_async]), 2)
    );
    assert_eq!(listed(&app, "work=reject").await, (set(&[&rejected]), 1));
    assert_eq!(listed(&app, "work=reject&status=completed").await.1, 0);
    assert_eq!(
        listed(&app, "work=text").await,
        (set(&[&text_a, &text_b]), 2)
    );

    // A cursor pages within the work, and belongs to its filters.
    let first = app.get_json("/requests?work=ok&limit=1").await;
    assert_eq!(first["total"], 2);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (second, total) = listed(&app, &format!("work=ok&limit=1&cursor={cursor}")).await;
    assert_eq!(total, 2);
    assert_eq!(
        second,
        set(&[&ok_sync]),
        "newest first: the async one came last"
    );
    let other = app
        .get(&format!("/requests?work=text&cursor={cursor}"))
        .await;
    assert_eq!(other.status(), 422);

    // A value that names no work is a bad filter.
    let bad = app.get("/requests?work=nope&mode=x").await;
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.unwrap();
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["mode", "work"], "{problem:#}");
}

/// On PostgreSQL the filter's indexes are built concurrently after the migrations
/// (no migration locks the records): both exist and are valid.
async fn the_filter_indexes_are_built_valid(backend: Backend) {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = start(backend, &up, dir.path()).await;
    if backend != Backend::Postgres {
        return;
    }
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&app.db.url)
        .await
        .unwrap();
    let valid: Vec<(String, bool)> = sqlx::query_as(
        "SELECT x.relname::text, i.indisvalid FROM pg_index i
         JOIN pg_class x ON x.oid = i.indexrelid
         WHERE x.relname IN ('requests_by_work_state', 'requests_by_tenant_work_state')
         ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        valid,
        [
            ("requests_by_tenant_work_state".to_owned(), true),
            ("requests_by_work_state".to_owned(), true)
        ]
    );
}

both_backends!(
    the_work_filter_lists_one_work_with_exact_totals,
    the_filter_indexes_are_built_valid,
);
