//! The job queue kept clean on PostgreSQL: an instance vacuums `jobs` once its dead rows
//! pile up, instead of leaving them to autovacuum's once-a-minute visits (claims read the
//! queue's indexes from the end where the dead entries are), and analyses the records
//! once they have doubled since their last analysis (a plan made while the table was empty
//! reads all of it). Skipped like the other PostgreSQL tests when no server answers.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::helpers::{Backend, PG_ADDR, TestApp, postgres_available};

/// `(vacuum_count, n_dead_tup)` of `jobs`: manual vacuums only (autovacuum counts apart).
async fn jobs_vacuums(c: &mut PgConnection) -> (i64, i64) {
    sqlx::query_as(
        "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'jobs'",
    )
    .fetch_one(c)
    .await
    .expect("jobs statistics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_vacuums_the_job_queue_once_its_dead_rows_pile_up() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let name = app.db.pg_name().expect("a PostgreSQL database").to_owned();
    let url = format!("postgres://postgres@{PG_ADDR}/{name}");
    let mut c = PgConnection::connect(&url).await.expect("connect");

    // An idle queue is left alone.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(jobs_vacuums(&mut c).await.0, 0);

    // 12,000 finished jobs, as the engine leaves them: inserted, then deleted. Due in an
    // hour, so the engine claims none of them meanwhile.
    for sql in [
        "INSERT INTO requests (id, mode, status, input_data, created_at, trace_id)
         SELECT gen_random_uuid(), 'async', 'completed', '{}', now(), 'dead-jobs'
         FROM generate_series(1, 12000)",
        "INSERT INTO jobs (request_id, phase, run_at)
         SELECT id, 1, now() + interval '1 hour' FROM requests WHERE trace_id = 'dead-jobs'",
        "DELETE FROM jobs
         WHERE request_id IN (SELECT id FROM requests WHERE trace_id = 'dead-jobs')",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    c.close().await.expect("close");

    let mut c = PgConnection::connect(&url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (vacuums, dead) = loop {
        let (vacuums, dead) = jobs_vacuums(&mut c).await;
        if vacuums > 0 || Instant::now() > deadline {
            break (vacuums, dead);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        vacuums >= 1,
        "no vacuum of jobs within 20 s ({dead} dead rows)"
    );
    assert!(dead < 10_000, "{dead} dead rows left after the vacuum");
}

/// `(analyze_count, reltuples)` of `requests`: the service's analyses only (autovacuum's
/// count apart), and the size the planner now knows.
async fn requests_analyses(c: &mut PgConnection) -> (i64, f32) {
    sqlx::query_as(
        "SELECT s.analyze_count, c.reltuples FROM pg_stat_user_tables s
         JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'requests'",
    )
    .fetch_one(c)
    .await
    .expect("requests statistics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_analyses_the_records_once_they_have_doubled_since_their_last_analysis() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::spawn(Backend::Postgres).await;
    let name = app.db.pg_name().expect("a PostgreSQL database").to_owned();
    let url = format!("postgres://postgres@{PG_ADDR}/{name}");
    let mut c = PgConnection::connect(&url).await.expect("connect");

    // Empty and unchanged: nothing to analyse.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(requests_analyses(&mut c).await.0, 0);

    // 1,500 records written behind the service's back: more than the 1,000 rows it
    // waits for, and more than twice what the table held (nothing).
    for sql in [
        "INSERT INTO requests (id, mode, status, input_data, created_at, trace_id)
         SELECT gen_random_uuid(), 'async', 'completed', '{}', now(), 'grown'
         FROM generate_series(1, 1500)",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    c.close().await.expect("close");

    let mut c = PgConnection::connect(&url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (analyses, rows) = loop {
        let (analyses, rows) = requests_analyses(&mut c).await;
        if analyses > 0 || Instant::now() > deadline {
            break (analyses, rows);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(analyses, 1, "no analysis of requests within 20 s");
    assert_eq!(rows, 1500.0, "the planner knows the table's size");

    // Changed since, every row, but not grown: not analysed again.
    for sql in [
        "UPDATE requests SET status = 'failed' WHERE trace_id = 'grown'",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(requests_analyses(&mut c).await.0, 1);

    // Grown to twice its size at the last analysis: analysed again.
    for sql in [
        "INSERT INTO requests (id, mode, status, input_data, created_at, trace_id)
         SELECT gen_random_uuid(), 'async', 'completed', '{}', now(), 'grown'
         FROM generate_series(1, 1500)",
        "SELECT pg_stat_force_next_flush()",
    ] {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while requests_analyses(&mut c).await.0 < 2 {
        assert!(Instant::now() < deadline, "not analysed again within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
