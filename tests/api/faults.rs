//! Faults with nothing acknowledged lost (SPEC §9): PostgreSQL going away under load, and
//! SQLite on a full disk. Receivers are real; the instance is never restarted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::receiver::Receiver;
use crate::helpers::{Backend, TestApp, TestDb, admin_connection, postgres_available};

async fn admin(sql: String) {
    let mut conn = admin_connection().await.expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn wait_ready(app: &TestApp, status: u16, within: Duration) {
    app.wait_status("/readyz", status, within).await;
}

/// How many submissions of a [`steady_load`] were acknowledged so far.
type Acked = tokio::sync::watch::Sender<usize>;

/// Submits POST /async every 20 ms (the fixture's pace) until `stop`, counting the
/// acknowledgements in `progress`; returns the acknowledged ids and the statuses of the
/// refusals.
async fn steady_load(
    app: &TestApp,
    url: String,
    stop: Arc<AtomicBool>,
    progress: &Acked,
) -> (Vec<String>, Vec<u16>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let body = json!({"text": format!("load {i}"), "callback_url": url});
        let r = app.post_json("/async", &body).await;
        match r.status().as_u16() {
            202 => acked.push(
                r.json::<Value>().await.unwrap()["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            other => refused.push(other),
        }
        progress.send_replace(acked.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, refused)
}

/// Waits until `progress` counts `n` acknowledgements.
async fn acknowledged(progress: &Acked, n: usize) {
    let mut seen = progress.subscribe();
    let reached = tokio::time::timeout(Duration::from_secs(60), seen.wait_for(|a| *a >= n)).await;
    assert!(matches!(reached, Ok(Ok(_))), "{n} acknowledged");
}

/// Every acknowledged request ends delivered, each at the receiver.
async fn all_delivered(app: &TestApp, receiver: &Receiver, acked: &[String]) {
    for id in acked {
        let record = app.wait_terminal(id, Duration::from_secs(90)).await;
        assert_eq!(record["callback_status"], "sent", "{record:#}");
    }
    let got: HashSet<String> = receiver.hits().iter().map(|h| h.request_id()).collect();
    assert!(
        acked.iter().all(|id| got.contains(id)),
        "every acknowledged request called back"
    );
}

/// The database goes away under load (sessions cut, new ones refused) and comes back:
/// 503s meanwhile, recovery without restarting consuma, every acknowledged request
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_under_load_loses_nothing_acknowledged() {
    if !postgres_available().await {
        return;
    }
    let receiver = Receiver::ok().await;
    let app = TestApp::builder(Backend::Postgres)
        .allow_loopback()
        .arg("--work-delay-ms", 50)
        .arg("--lease-secs", 3)
        .spawn()
        .await;
    let name = app.db.pg_name().unwrap().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Acked::new(0);
    let load = {
        let (app, url, stop) = (&app, receiver.url("/cb"), stop.clone());
        steady_load(app, url, stop, &progress)
    };
    let outage = async {
        // Under load: requests are being acknowledged.
        acknowledged(&progress, 20).await;
        admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false")).await;
        admin(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await;
        wait_ready(&app, 503, Duration::from_secs(15)).await;
        // A lower bound: the outage outlasts the 3 s leases of the jobs running.
        tokio::time::sleep(Duration::from_secs(3)).await;
        admin(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await;
        wait_ready(&app, 200, Duration::from_secs(20)).await;
        // Admissions succeed again, under the same load.
        let before = *progress.borrow();
        acknowledged(&progress, before + 20).await;
        stop.store(true, Ordering::SeqCst);
    };
    let ((acked, refused), ()) = tokio::join!(load, outage);
    assert!(!acked.is_empty());
    assert!(!refused.is_empty(), "the outage was seen");
    let failed = app.logs_containing("request failed");
    assert!(
        refused.iter().all(|s| *s == 503),
        "only 503s: {refused:?}; the service logged: {failed:#?}"
    );
    all_delivered(&app, &receiver, &acked).await;
}

/// A tmpfs of a few MiB holding the database, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// `None` where mounting is not possible (not root): the test is then skipped,
    /// unless CI is set.
    fn mount(under: &Path) -> Option<Self> {
        let dir = under.join("small-disk");
        std::fs::create_dir_all(&dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self { dir })
    }

    /// Fills the disk with a file; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// SQLite on a full disk: admissions answer 503 and /readyz 503 while it is full; once
/// space returns the service recovers by itself; nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_on_a_full_disk_refuses_then_recovers_losing_nothing_acknowledged() {
    let db = TestDb::new(Backend::Sqlite).await;
    let Some(disk) = SmallDisk::mount(db.dir()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "mounting a tmpfs needs root under CI"
        );
        eprintln!("skipped: cannot mount a small tmpfs (not root)");
        return;
    };
    let receiver = Receiver::ok().await;
    let url = format!("sqlite://{}", disk.dir.join("consuma.db").display());
    let db_on_disk = db.with_url(url);
    let app = TestApp::builder_on(db_on_disk)
        .allow_loopback()
        .spawn()
        .await;
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(
            app.submit_async(&format!("before {i}"), &receiver.url("/"))
                .await,
        );
    }
    let filler = disk.fill();
    // Some writes may still fit in pages SQLite already holds; soon they fail.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    while refused < 3 {
        assert!(Instant::now() < deadline, "a full disk refuses admissions");
        let body = json!({"text": "full", "callback_url": receiver.url("/")});
        let r = app.post_json("/async", &body).await;
        match r.status().as_u16() {
            202 => acked.push(
                r.json::<Value>().await.unwrap()["request_id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ),
            503 => refused += 1,
            other => panic!("a full disk answers 503, not {other}"),
        }
    }
    wait_ready(&app, 503, Duration::from_secs(10)).await;
    std::fs::remove_file(filler).unwrap();
    wait_ready(&app, 200, Duration::from_secs(15)).await;
    acked.push(app.submit_async("after", &receiver.url("/")).await);
    all_delivered(&app, &receiver, &acked).await;
}
