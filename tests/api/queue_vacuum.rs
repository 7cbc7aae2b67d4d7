//! The job queue kept clean on PostgreSQL: an instance vacuums `jobs` once its dead rows
//! pile up, instead of leaving them to autovacuum's once-a-minute visits (claims read the
//! queue's indexes from the end where the dead entries are), and analyses the records
//! once they have doubled since their last analysis (a plan made while the table was empty
//! reads all of it). Skipped like the other PostgreSQL tests when no server answers.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::helpers::{Backend, PG_ADDR, TestApp, postgres_available};

/// What PostgreSQL's statistics say of a table.
#[derive(Debug, sqlx::FromRow)]
struct Stats {
    /// Manual vacuums and analyses only: autovacuum's are counted apart.
    vacuum_count: i64,
    analyze_count: i64,
    n_dead_tup: i64,
    /// The size the planner knows.
    reltuples: f32,
}

async fn stats(c: &mut PgConnection, table: &str) -> Stats {
    sqlx::query_as(
        "SELECT s.vacuum_count, s.analyze_count, s.n_dead_tup, c.reltuples
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = $1",
    )
    .bind(table)
    .fetch_one(c)
    .await
    .expect("table statistics")
}

/// `table`'s statistics once `done` holds of them, or as they are after 20 s.
async fn stats_once(c: &mut PgConnection, table: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = stats(c, table).await;
        if done(&now) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `sqls` in turn, then makes their counts visible to the instance at once.
async fn run(c: &mut PgConnection, sqls: &[&'static str]) {
    for &sql in sqls.iter().chain(&["SELECT pg_stat_force_next_flush()"]) {
        sqlx::query(sql).execute(&mut *c).await.expect(sql);
    }
}

/// An instance on a fresh PostgreSQL database, with a connection of the test's own to it.
async fn instance() -> (TestApp, PgConnection) {
    let app = TestApp::spawn(Backend::Postgres).await;
    let c = instance_connection(&app).await;
    (app, c)
}

/// A connection of the test's own to `app`'s database.
async fn instance_connection(app: &TestApp) -> PgConnection {
    let name = app.db.pg_name().expect("a PostgreSQL database");
    let url = format!("postgres://postgres@{PG_ADDR}/{name}");
    PgConnection::connect(&url).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_vacuums_the_job_queue_once_its_dead_rows_pile_up() {
    if !postgres_available().await {
        return;
    }
    let (app, mut c) = instance().await;

    // An idle queue is left alone.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stats(&mut c, "jobs").await.vacuum_count, 0);

    // 12,000 finished jobs, as the engine leaves them: inserted, then deleted. Due in an
    // hour, so the engine claims none of them meanwhile.
    run(
        &mut c,
        &[
            "INSERT INTO requests (id, mode, status, input_data, created_at, trace_id)
             SELECT gen_random_uuid(), 'async', 'completed', '{}', now(), 'dead-jobs'
             FROM generate_series(1, 12000)",
            "INSERT INTO jobs (request_id, phase, run_at)
             SELECT id, 1, now() + interval '1 hour' FROM requests WHERE trace_id = 'dead-jobs'",
            "DELETE FROM jobs
             WHERE request_id IN (SELECT id FROM requests WHERE trace_id = 'dead-jobs')",
        ],
    )
    .await;

    // Another session holds a lock a vacuum needs: the instance's vacuums give way, and
    // say nothing of it (PostgreSQL warns of every skipped vacuum).
    let mut holder = instance_connection(&app).await;
    run(
        &mut holder,
        &["BEGIN", "LOCK TABLE jobs IN SHARE UPDATE EXCLUSIVE MODE"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stats(&mut c, "jobs").await.vacuum_count, 0);
    run(&mut holder, &["COMMIT"]).await;

    let jobs = stats_once(&mut c, "jobs", |s| s.vacuum_count > 0).await;
    assert!(
        jobs.vacuum_count >= 1,
        "no vacuum of jobs within 20 s: {jobs:?}"
    );
    let skipped = app.logs_containing("skipping");
    assert!(skipped.is_empty(), "a skipped vacuum logged: {skipped:?}");
    assert!(
        jobs.n_dead_tup < 10_000,
        "dead rows left after the vacuum: {jobs:?}"
    );
}

/// 1,500 records written behind the service's back.
const RECORDS: &str = "INSERT INTO requests (id, mode, status, input_data, created_at, trace_id)
    SELECT gen_random_uuid(), 'async', 'completed', '{}', now(), 'grown'
    FROM generate_series(1, 1500)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_analyses_the_records_once_they_have_doubled_since_their_last_analysis() {
    if !postgres_available().await {
        return;
    }
    let (_app, mut c) = instance().await;

    // Empty and unchanged: nothing to analyse.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stats(&mut c, "requests").await.analyze_count, 0);

    // 1,500 rows: more than the 1,000 it waits for, and more than twice what the table
    // held (nothing).
    run(&mut c, &[RECORDS]).await;
    let requests = stats_once(&mut c, "requests", |s| s.analyze_count > 0).await;
    assert_eq!(requests.analyze_count, 1, "no analysis within 20 s");
    assert_eq!(
        requests.reltuples, 1500.0,
        "the planner knows the table's size"
    );

    // Changed since, every row, but not grown: not analysed again.
    run(
        &mut c,
        &["UPDATE requests SET status = 'failed' WHERE trace_id = 'grown'"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stats(&mut c, "requests").await.analyze_count, 1);

    // Grown to twice its size at the last analysis: analysed again.
    run(&mut c, &[RECORDS]).await;
    let requests = stats_once(&mut c, "requests", |s| s.analyze_count > 1).await;
    assert_eq!(requests.analyze_count, 2, "not analysed again within 20 s");
    assert_eq!(requests.reltuples, 3000.0);
}
