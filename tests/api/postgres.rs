//! What only PostgreSQL can show: several instances on one database (migrating together,
//! waking each other, sharing idempotency keys) and a database that stops answering.
//! Each test is skipped like the `both_backends!` ones when no server answers.

use std::time::Duration;

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

/// Waits until GET /readyz answers `status`, or panics after `within`.
async fn wait_ready_status(app: &TestApp, status: u16, within: Duration) -> reqwest::Response {
    app.wait_status("/readyz", status, within).await
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
    let expected = std::fs::read_dir("migrations/postgres").unwrap().count();
    assert_eq!(applied.len(), expected, "{applied:?}");
    assert!(applied.iter().all(|(_, success)| *success), "{applied:?}");
    // They agree on the signing secret generated at first start.
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_secrets")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(secrets, 1);
}

/// An accept-only instance stores a job; an idle worker elsewhere runs it, woken by
/// NOTIFY: its fallback poll is ten minutes, and with one attempt per callback it has no
/// retry to wake for, so nothing else could start the job within the test. Five in a row.
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
        .arg("--job-poll-ms", 600_000)
        .arg("--callback-max-attempts", 1)
        .spawn()
        .await;
    // Nothing listens on the discard port: the callback fails, but the work is done first.
    let body = json!({"text": "wake up", "callback_url": "http://127.0.0.1:9/hook"});
    for _ in 0..5 {
        let r = api.post_json("/async", &body).await;
        assert_eq!(r.status(), 202);
        let id = r.json::<Value>().await.unwrap()["request_id"]
            .as_str()
            .unwrap()
            .to_owned();
        // The worker logs its "work done" (the instances share the log bus of their
        // database).
        let done = |r: &Value| r["status"] == "completed";
        api.wait_record(
            &id,
            "worked, woken by NOTIFY",
            Duration::from_secs(60),
            done,
        )
        .await;
        // Its callback failed for good: the worker has nothing left to do, idle again.
        let record = api.wait_terminal(&id, Duration::from_secs(60)).await;
        assert_eq!(record["callback_status"], "failed", "{record:#}");
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
    let mut ids = std::collections::HashSet::new();
    for r in responses {
        let r = r.expect("POST /async");
        let status = r.status().as_u16();
        let replayed = r.headers().contains_key("idempotent-replayed");
        match (status, replayed) {
            (202, false) => first += 1,
            (202, true) | (409, _) => {}
            (status, _) => panic!("unexpected {status}"),
        }
        if status == 202 {
            ids.insert(r.json::<Value>().await.unwrap()["request_id"].clone());
        }
    }
    assert_eq!(first, 1, "exactly one submission is admitted");
    assert_eq!(ids.len(), 1, "every instance replays the same request_id");
    assert_eq!(a.get_json("/requests").await["total"], 1);
}

// The store itself, without HTTP: what several instances claiming from one database
// must never do, and what an expired lease must no longer do.

mod store {
    use std::collections::HashSet;
    use std::time::Duration;

    use chrono::Utc;
    use consuma::store::postgres::PgStore;
    use consuma::store::{
        Admission, AdmissionLimits, AfterWork, AttemptRecord, ClaimRequest, ClaimedJob,
        FinishedWork, JobStore, Mode, NewRequest, NextStep, Phase, RecordStore, RequestStatus,
        Scope, Store, Trigger,
    };
    use uuid::Uuid;

    use crate::helpers::{Backend, TestDb, postgres_available};

    const LONG: Duration = Duration::from_secs(30);

    async fn open(db: &TestDb) -> PgStore {
        PgStore::open(&db.url, consuma::store::DEFAULT_PG_MAX_CONNECTIONS)
            .await
            .expect("open the store")
    }

    fn async_request() -> NewRequest {
        NewRequest {
            id: Uuid::now_v7(),
            tenant: "default".into(),
            origin: Some("http://127.0.0.1:9".into()),
            mode: Mode::Async,
            status: RequestStatus::Pending,
            input_data: r#"{"text":"a","count":1}"#.into(),
            callback_url: Some("http://127.0.0.1:9/hook".into()),
            trace_id: "0".repeat(32),
            created_at: Utc::now(),
            work: None,
            upstream_key: None,
        }
    }

    fn finished() -> FinishedWork {
        FinishedWork {
            status: RequestStatus::Completed,
            output_data: Some("{}".into()),
            error: None,
            completed_at: Utc::now(),
            work_attempts: None,
        }
    }

    fn claim(limit: usize, lease_for: Duration) -> ClaimRequest {
        ClaimRequest {
            limit,
            lease_for,
            cap: 16,
            slots_left: Default::default(),
            work_after: i64::MIN,
            works: Default::default(),
        }
    }

    async fn claim_some(store: &PgStore, limit: usize, lease_for: Duration) -> Vec<ClaimedJob> {
        store
            .claim_due_jobs(claim(limit, lease_for))
            .await
            .expect("claim")
            .jobs
    }

    async fn admit(store: &PgStore, req: NewRequest) {
        let admitted = store.admit(req, None, AdmissionLimits::default()).await;
        assert_eq!(admitted.unwrap(), Admission::Admitted);
    }

    /// Claims until a claim comes back empty; returns the request ids leased.
    async fn claim_all(store: &PgStore) -> Vec<Uuid> {
        let mut leased = Vec::new();
        loop {
            let jobs = claim_some(store, 7, LONG).await;
            if jobs.is_empty() {
                return leased;
            }
            leased.extend(jobs.iter().map(|j| j.lease.request_id));
        }
    }

    fn expiry() -> chrono::DateTime<Utc> {
        Utc::now() + Duration::from_secs(3600)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_claiming_at_once_never_lease_the_same_job() {
        if !postgres_available().await {
            return;
        }
        let db = TestDb::new(Backend::Postgres).await;
        let (a, b) = (open(&db).await, open(&db).await);
        for _ in 0..60 {
            admit(&a, async_request()).await;
        }
        let (from_a, from_b) = tokio::join!(claim_all(&a), claim_all(&b));
        let all: HashSet<Uuid> = from_a.iter().chain(&from_b).copied().collect();
        assert_eq!(from_a.len() + from_b.len(), 60, "every job leased once");
        assert_eq!(all.len(), 60);
        let record = b
            .get_request(from_a[0], &Scope::All)
            .await
            .unwrap()
            .unwrap();
        // On PostgreSQL the claim marks its records `processing`, in its transaction.
        assert_eq!(record.status, RequestStatus::Processing);
        // The admitting instance counts its own admissions at once. A refresh of the
        // shared counts that read the table just as an admission committed can count that
        // one twice until the next refresh (SPEC §9: up to 1 s stale): exact within 2 s.
        assert!(a.job_counts().await.unwrap().pending >= 60);
        crate::helpers::eventually(
            "the count settles at 60",
            Duration::from_secs(2),
            async || (a.job_counts().await.unwrap().pending == 60).then_some(()),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_records_nothing_and_its_job_is_claimed_again() {
        if !postgres_available().await {
            return;
        }
        let db = TestDb::new(Backend::Postgres).await;
        let store = open(&db).await;
        admit(&store, async_request()).await;
        let first = claim_some(&store, 1, Duration::from_millis(200)).await;
        let first = first.first().expect("a job").lease;
        assert!(claim_some(&store, 1, LONG).await.is_empty());
        // A lower bound: the 200 ms lease lapses.
        tokio::time::sleep(Duration::from_millis(300)).await;

        assert!(!store.renew_lease(first, LONG).await.unwrap());
        let second = claim_some(&store, 1, LONG).await;
        let second = second.first().expect("claimed again").lease;
        assert_eq!(second.request_id, first.request_id);
        assert_ne!(second.token, first.token);
        let deliver = AfterWork::Deliver;
        assert!(
            !store
                .record_work(first, &finished(), deliver, expiry())
                .await
                .unwrap()
        );
        assert!(
            store
                .record_work(second, &finished(), deliver, expiry())
                .await
                .unwrap()
        );
        assert!(store.renew_lease(second, LONG).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scheduled_retry_wakes_other_instances_and_is_due_at_its_time() {
        if !postgres_available().await {
            return;
        }
        let db = TestDb::new(Backend::Postgres).await;
        let (a, b) = (open(&db).await, open(&db).await);
        let signal = b.job_signal();
        admit(&a, async_request()).await;
        let lease = claim_some(&a, 1, LONG).await.first().unwrap().lease;
        let deliver = AfterWork::Deliver;
        assert!(
            a.record_work(lease, &finished(), deliver, expiry())
                .await
                .unwrap()
        );
        // Let the admission's NOTIFY arrive, and consume the wake-up it left: a quiet
        // window (wake-ups carry nothing to tell one from another, and coalesce).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = tokio::time::timeout(Duration::from_millis(50), signal.notified()).await;

        let retry_at = Utc::now() + Duration::from_millis(500);
        let attempt = AttemptRecord {
            attempt: 1,
            // Whole milliseconds, as both stores keep times.
            started_at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap(),
            duration_ms: 1.5,
            status_code: Some(503),
            error: Some("HTTP 503".into()),
            trigger: Trigger::Scheduled,
        };
        let next = NextStep::RetryAt(retry_at);
        assert!(
            a.record_attempt(lease, &attempt, &next, None)
                .await
                .unwrap()
        );
        tokio::time::timeout(Duration::from_secs(20), signal.notified())
            .await
            .expect("the other instance hears of the retry");

        let due = b
            .next_due_at(&[], &Default::default())
            .await
            .unwrap()
            .expect("a job is waiting");
        let off = (due - retry_at).num_milliseconds().abs();
        assert!(off < 100, "due {off} ms away from the retry time");
        assert!(claim_some(&b, 1, LONG).await.is_empty());
        // A lower bound: not before its due time.
        tokio::time::sleep((due - Utc::now()).to_std().unwrap_or_default()).await;
        // Due from now on: claimed as soon as a claim runs (on a busy machine the first
        // one may still see the database's clock just short of the due time).
        let job = crate::helpers::eventually("due now", Duration::from_secs(10), async || {
            claim_some(&b, 1, LONG).await.pop()
        })
        .await;
        assert_eq!(job.attempts_made, 1);
        assert_eq!(job.phase, Phase::Delivery);
        let record = b.get_request(job.lease.request_id, &Scope::All).await;
        let record = record.unwrap().unwrap();
        assert_eq!(record.attempts, vec![attempt.clone()]);
    }

    /// Admissions are written in batches; a batch that fails is written again one by
    /// one, so each admission hears its own answer. Here half the admissions name a
    /// destination deleted (as unused) since its id was remembered: their batches fail
    /// on the foreign key, and every admission is still admitted, each job with a
    /// destination that exists.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn admissions_beside_a_vanished_destination_are_each_admitted() {
        if !postgres_available().await {
            return;
        }
        let db = TestDb::new(Backend::Postgres).await;
        let store = open(&db).await;
        admit(&store, async_request()).await; // remembers the destination's id
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query("DELETE FROM jobs")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query("DELETE FROM destinations")
            .execute(&mut c)
            .await
            .unwrap();
        let requests: Vec<NewRequest> = (0..200)
            .map(|i| {
                let mut req = async_request();
                if i % 2 == 1 {
                    req.origin = Some("http://127.0.0.1:10".into());
                    req.callback_url = Some("http://127.0.0.1:10/hook".into());
                }
                req
            })
            .collect();
        let answers = futures::future::join_all(
            requests
                .into_iter()
                .map(|r| store.admit(r, None, AdmissionLimits::default())),
        )
        .await;
        for answer in answers {
            assert_eq!(answer.expect("admitted, not an error"), Admission::Admitted);
        }
        let orphans: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs j
             WHERE NOT EXISTS (SELECT 1 FROM destinations d WHERE d.id = j.destination_id)",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!((jobs, orphans), (200, 0));
    }

    /// Records are written in batches: recorded at once, a record whose lease was taken
    /// over answers `false` and writes nothing, and every other one is written whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_written_together_keep_each_lease_to_itself() {
        if !postgres_available().await {
            return;
        }
        let db = TestDb::new(Backend::Postgres).await;
        let store = open(&db).await;
        for _ in 0..40 {
            admit(&store, async_request()).await;
        }
        let mut leases: Vec<_> = Vec::new();
        while leases.len() < 40 {
            let jobs = claim_some(&store, 40, LONG).await;
            assert!(!jobs.is_empty(), "all 40 are due");
            leases.extend(jobs.into_iter().map(|j| j.lease));
        }
        // Another instance took over the first job (a new token on its row).
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
            .await
            .unwrap();
        sqlx::query("UPDATE jobs SET lease_token = gen_random_uuid() WHERE request_id = $1")
            .bind(leases[0].request_id)
            .execute(&mut c)
            .await
            .unwrap();
        let done = finished();
        let held = futures::future::join_all(
            leases
                .iter()
                .map(|l| store.record_work(*l, &done, AfterWork::Deliver, expiry())),
        )
        .await;
        let held: Vec<bool> = held.into_iter().map(|h| h.unwrap()).collect();
        assert!(!held[0], "the lost lease writes nothing");
        assert!(held[1..].iter().all(|h| *h), "{held:?}");
        let attempt = AttemptRecord {
            attempt: 1,
            started_at: chrono::DateTime::from_timestamp_millis(Utc::now().timestamp_millis())
                .unwrap(),
            duration_ms: 2.0,
            status_code: Some(204),
            error: None,
            trigger: Trigger::Scheduled,
        };
        let retry = NextStep::RetryAt(Utc::now() + Duration::from_secs(600));
        let sent = futures::future::join_all(leases[1..].iter().enumerate().map(|(i, l)| {
            let next = if i % 2 == 0 {
                &NextStep::Delivered
            } else {
                &retry
            };
            store.record_attempt(*l, &attempt, next, None)
        }))
        .await;
        assert!(sent.into_iter().all(|s| s.unwrap()));

        let first = store.get_request(leases[0].request_id, &Scope::All).await;
        let first = first.unwrap().unwrap();
        assert_eq!(first.status, RequestStatus::Processing, "untouched");
        for (i, lease) in leases[1..].iter().enumerate() {
            let r = store.get_request(lease.request_id, &Scope::All).await;
            let r = r.unwrap().unwrap();
            assert_eq!(r.status, RequestStatus::Completed);
            assert_eq!(r.attempts, vec![attempt.clone()]);
            let wanted = if i % 2 == 0 { "sent" } else { "pending" };
            assert_eq!(r.callback_status.map(|s| s.as_str()), Some(wanted));
        }
        let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(jobs, 1 + 19, "the first, and the 19 retries");
        let counts = store.job_counts().await.unwrap();
        assert_eq!(counts.pending, 40 - 20, "the 20 delivered are counted out");
    }
}

/// `--database-max-connections` bounds the sessions an instance holds: with a pool of
/// two, sixty concurrent requests are all served, and the database sees at most four
/// sessions of the instance (the pool, LISTEN and the lease keeper). The pool keeps its connections open
/// when idle, so counting after the burst shows how far it grew (the default would
/// have grown to 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_size_bounds_the_sessions_an_instance_holds() {
    if !postgres_available().await {
        return;
    }
    let app = TestApp::builder(Backend::Postgres)
        .arg("--database-max-connections", 2)
        .arg("--work-delay-ms", 20)
        .spawn()
        .await;
    let name = app.db.pg_name().expect("a PostgreSQL database").to_owned();
    let posts = (0..60).map(|i| app.post_sync(work(&format!("pool {i}"), 1)));
    for r in futures::future::join_all(posts).await {
        assert_eq!(r.status(), 200);
    }
    assert_eq!(app.get_json("/requests?mode=sync").await["total"], 60);
    let mut conn = admin_connection().await.expect("admin connection");
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'consuma'",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!((1..=4).contains(&sessions), "{sessions} sessions");
}
