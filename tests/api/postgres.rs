//! What only PostgreSQL can show: several instances on one database (migrating together,
//! waking each other, sharing idempotency keys) and a database that stops answering.
//! Each test is skipped like the `both_backends!` ones when no server answers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, admin_connection, postgres_available, work};

/// Runs one administrative statement on the test server.
async fn admin(sql: String) {
    let mut conn = admin_connection().await.expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Polls GET /readyz until it answers `status`, or panics after `within`.
async fn wait_ready_status(app: &TestApp, status: u16, within: Duration) -> reqwest::Response {
    let deadline = Instant::now() + within;
    loop {
        let r = app.get("/readyz").await;
        if r.status() == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} after {within:?}",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_while_the_database_refuses_connections_and_recovers() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    let name = app.db.pg_name().expect("a PostgreSQL database").to_owned();

    // The database refuses new sessions and its current ones are cut.
    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
    admin(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .await;
    let r = wait_ready_status(&app, 503, Duration::from_secs(10)).await;
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    // Work is refused the same way: 503, nothing acknowledged, never a 500.
    let r = app.post_sync(work("while down", 1)).await;
    assert_eq!(r.status(), 503, "{}", r.text().await.unwrap());
    let r = app
        .post_json(
            "/async",
            &json!({"text": "while down", "callback_url": "https://example.com/hook"}),
        )
        .await;
    assert_eq!(r.status(), 503);

    admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
    wait_ready_status(&app, 200, Duration::from_secs(15)).await;
    assert_eq!(app.post_sync(work("after", 1)).await.status(), 200);
    assert_eq!(app.get_json("/requests").await["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_migrating_one_fresh_database_at_once_all_become_ready() {
    if !postgres_available().await {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let (a, b, c) = tokio::join!(
        TestApp::builder_on(db.clone()).spawn(),
        TestApp::builder_on(db.clone()).spawn(),
        TestApp::builder_on(db.clone()).spawn(),
    );
    for app in [&a, &b, &c] {
        assert_eq!(app.get_json("/readyz").await["database"], "postgres");
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied, [(1, true), (2, true), (3, true)]);
    // They agree on the signing secret generated at first start.
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM settings")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(secrets, 1);
}

/// An accept-only instance stores a job; an idle worker elsewhere starts it at once,
/// woken by NOTIFY rather than by its 2 s poll. Five in a row, each well under the
/// poll interval: a broken wake-up would miss at least one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_by_one_instance_wakes_an_idle_worker_of_another() {
    if !postgres_available().await {
        return;
    }
    let api = TestApp::builder(Backend::Postgres)
        .arg("--workers", 0)
        .allow_loopback()
        .spawn()
        .await;
    let _worker = TestApp::builder_on(api.db.clone())
        .allow_loopback()
        .spawn()
        .await;
    // Nothing listens on the discard port: the callback fails, but the work is done first.
    let body = json!({"text": "wake up", "callback_url": "http://127.0.0.1:9/hook"});
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await; // the worker is idle again
        let r = api.post_json("/async", &body).await;
        assert_eq!(r.status(), 202);
        let accepted = Instant::now();
        let id = r.json::<Value>().await.unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned();
        while api.record(&id).await["status"] != "completed" {
            assert!(
                accepted.elapsed() < Duration::from_millis(900),
                "the worker did not start the job at once"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Two instances, one key, twenty concurrent submissions: exactly one request is
/// admitted; the others replay its 202 or hear that it is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_with_one_key_on_two_instances_admit_one_request() {
    if !postgres_available().await {
        return;
    }
    let a = TestApp::builder(Backend::Postgres)
        .arg("--workers", 0)
        .spawn()
        .await;
    let b = TestApp::builder_on(a.db.clone())
        .arg("--workers", 0)
        .spawn()
        .await;
    let body = json!({"text": "once", "callback_url": "https://example.com/hook"});
    let sends = (0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.client
            .post(app.url("/async"))
            .header("idempotency-key", "shared-key")
            .json(&body)
            .send()
    });
    let responses = futures::future::join_all(sends).await;
    let mut first = 0;
    for r in responses {
        let r = r.expect("POST /async");
        match (
            r.status().as_u16(),
            r.headers().contains_key("idempotent-replayed"),
        ) {
            (202, false) => first += 1,
            (202, true) | (409, _) => {}
            (status, _) => panic!("unexpected {status}"),
        }
    }
    assert_eq!(first, 1, "exactly one submission is admitted");
    assert_eq!(a.get_json("/requests").await["total"], 1);
}
