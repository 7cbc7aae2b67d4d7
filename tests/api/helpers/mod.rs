//! Test harness: start the real binary ([`TestApp`]), on a fresh database of either
//! backend ([`Backend`]), and receive its callbacks ([`receiver`]; misbehaving ones in
//! [`hostile`]), resolving callback names through a DNS server of the test's own ([`dns`]).

#![allow(dead_code)] // Each test module uses a different part of the harness.

pub mod browser;
pub mod dns;
pub mod hostile;
pub mod receiver;
pub mod upstream;
pub mod webhooks;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a key, a revocation or a rotation may take to reach an instance: SPEC §10
/// promises 5 s (a refresh every second); that it comes is the claim, not how soon.
pub const KEYS_WITHIN: Duration = Duration::from_secs(15);

/// The binary under test, built by cargo for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_consuma");

/// Generates one test per backend for each named `async fn name(backend: Backend)`.
/// The PostgreSQL one is skipped when no server answers, unless `CI` is set (see
/// [`postgres_available`]).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::helpers::postgres_available().await {
                    return;
                }
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )+};
}

/// Where a test's database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server PostgreSQL tests run on.
pub const PG_ADDR: &str = "127.0.0.1:5432";
/// Where test databases are created and dropped from.
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// How long a missing PostgreSQL may take to prove missing.
const PG_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether PostgreSQL tests can run. When the server does not answer within 3 s, a local
/// run writes a `SKIPPED …: <test>` line to the terminal (past libtest's capture) and the
/// test returns; under CI (`CI` set) the test fails, since
/// the PostgreSQL half of the suite must not silently vanish there.
pub async fn postgres_available() -> bool {
    static REACHABLE: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    if *REACHABLE.get_or_init(postgres_answers).await {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "PostgreSQL unavailable at {PG_ADDR} and CI is set: the PostgreSQL tests must run \
             (start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`)"
        );
    }
    report_skip();
    false
}

/// Says, past libtest's capture, that this test's PostgreSQL half did not run: the
/// capture takes `println!`/`eprintln!` (a skipped test would show only `ok`), not writes
/// to the stderr handle itself. libtest names each test's thread after the test.
fn report_skip() {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!(
        "SKIPPED (PostgreSQL unavailable at {PG_ADDR}; set CI=1 to fail instead): {test}\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

async fn postgres_answers() -> bool {
    match tokio::time::timeout(PG_PROBE_TIMEOUT, admin_connection()).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            true
        }
        _ => false,
    }
}

/// A connection to the administrative database, for creating and dropping test databases.
pub async fn admin_connection() -> Result<sqlx::PgConnection, sqlx::Error> {
    <sqlx::PgConnection as sqlx::Connection>::connect(PG_ADMIN_URL).await
}

/// A database of its own for one test. Clones share it (several instances on one
/// database); it is removed when the last clone is dropped.
#[derive(Clone)]
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    owned: Arc<OwnedDb>,
    /// What every instance on this database logs: waits on any of them wake on it.
    logs: Arc<LogBus>,
}

/// What a [`TestDb`] removes when it goes.
struct OwnedDb {
    dir: tempfile::TempDir,
    /// The PostgreSQL database to drop.
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_name) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("consuma.db").display()),
                None,
            ),
            Backend::Postgres => {
                let name = create_pg_database().await;
                (format!("postgres://postgres@{PG_ADDR}/{name}"), Some(name))
            }
        };
        Self {
            url,
            backend,
            owned: Arc::new(OwnedDb { dir, pg_name }),
            logs: Arc::new(LogBus::new()),
        }
    }

    /// A database `consuma serve` has created (and stopped): what `consuma keys …` and
    /// `consuma secret …` need, since they never create one.
    pub async fn served(backend: Backend) -> Self {
        let db = Self::new(backend).await;
        let mut app = TestApp::builder_on(db.clone()).spawn().await;
        app.terminate().await;
        db
    }

    /// The same database's lifetime (its scratch directory), another URL: a SQLite file
    /// elsewhere, say.
    pub fn with_url(&self, url: String) -> Self {
        Self {
            url,
            ..self.clone()
        }
    }

    /// A scratch directory that lives as long as the database.
    pub fn dir(&self) -> &std::path::Path {
        self.owned.dir.path()
    }

    /// The PostgreSQL database's name (`None` on SQLite).
    pub fn pg_name(&self) -> Option<&str> {
        self.owned.pg_name.as_deref()
    }
}

/// Creates an empty database `consuma_t_<uuid>` and returns its name.
async fn create_pg_database() -> String {
    let name = format!("consuma_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = admin_connection()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {PG_ADDR}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = sqlx::Connection::close(admin).await;
    name
}

impl Drop for OwnedDb {
    /// Drop cannot await: the database is dropped from a short-lived thread with a
    /// runtime of its own, and waited for, so no database outlives its test. `FORCE`
    /// ends the sessions of servers that are still running.
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut admin = admin_connection().await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                sqlx::Connection::close(admin).await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// Builder for [`TestApp`]: extra flags before the start.
pub struct AppBuilder {
    backend: Backend,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    db: Option<TestDb>,
}

impl AppBuilder {
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Self {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }

    /// Sets an environment variable of the server (after the harness's own).
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.envs.push((name.to_owned(), value.to_string()));
        self
    }

    /// Opens loopback to callbacks, as every test with a local receiver needs.
    pub fn allow_loopback(self) -> Self {
        self.arg("--allow-callback-cidr", "127.0.0.0/8")
    }

    pub async fn spawn(self) -> TestApp {
        let db = match self.db {
            Some(db) => db,
            None => TestDb::new(self.backend).await,
        };
        let args = self.args;
        let mut app = TestApp {
            base: String::new(),
            addr: "0.0.0.0:0".parse().unwrap(),
            client: client(),
            api_key: None,
            child: None,
            logs: Default::default(),
            args,
            envs: self.envs,
            db,
        };
        app.start().await;
        app
    }
}

/// A running `consuma serve` and a client for it.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// Sent as `Authorization: Bearer` by the request helpers when set.
    pub api_key: Option<String>,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pub db: TestDb,
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

impl TestApp {
    /// The service with `--work-delay-ms 0` on a fresh database.
    pub async fn spawn(backend: Backend) -> Self {
        Self::builder(backend).spawn().await
    }

    pub fn builder(backend: Backend) -> AppBuilder {
        AppBuilder {
            backend,
            args: Vec::new(),
            envs: Vec::new(),
            db: None,
        }
    }

    /// A builder on an existing database (a second instance, say).
    pub fn builder_on(db: TestDb) -> AppBuilder {
        AppBuilder {
            backend: db.backend,
            args: Vec::new(),
            envs: Vec::new(),
            db: Some(db),
        }
    }

    /// Starts the binary and waits for its "listening" line.
    async fn start(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args([
                "--bind",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--database-url",
                &self.db.url,
            ])
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            // Tests run without the simulated delay unless they pass --work-delay-ms.
            .env("CONSUMA_WORK_DELAY_MS", "0")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start consuma");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(collect_logs(
            stderr,
            self.logs.clone(),
            self.db.logs.clone(),
            tx,
        ));
        let addr = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("consuma did not start; logs:\n{}", self.logs().join("\n")))
            .unwrap_or_else(|_| {
                panic!("consuma exited at start; logs:\n{}", self.logs().join("\n"))
            });
        self.addr = addr;
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Every line the server wrote to stderr so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The lines the server wrote to stderr so far that contain `text`.
    pub fn logs_containing(&self, text: &str) -> Vec<String> {
        let logs = self.logs.lock().unwrap();
        logs.iter().filter(|l| l.contains(text)).cloned().collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().and_then(Child::id).expect("running") as i32
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL");
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id().expect("pid") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait")
    }

    /// Waits for a process already sent SIGTERM to exit.
    pub async fn terminate_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("exits after SIGTERM")
            .expect("wait")
    }

    /// Starts the binary again on the same database (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server before restarting it");
        self.start().await;
    }

    /// A request to `path`, with the API key when one is set.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.api_key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_sync(&self, body: Value) -> reqwest::Response {
        self.post_json("/sync", &body).await
    }

    /// POST /async; asserts the 202 and returns the request_id.
    pub async fn submit_async(&self, text: &str, callback_url: &str) -> String {
        let body = serde_json::json!({ "text": text, "count": 2, "callback_url": callback_url });
        let r = self.post_json("/async", &body).await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
        r.json::<Value>().await.expect("JSON")["request_id"]
            .as_str()
            .expect("request_id")
            .to_owned()
    }

    /// The signing secret this instance uses, as `consuma secret` prints it.
    pub async fn secret(&self) -> String {
        let out = Command::new(BIN)
            .args(["secret", "--database-url", &self.db.url])
            .env_clear()
            .output()
            .await
            .expect("consuma secret");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET")
    }

    /// `consuma keys create --tenant TENANT [--admin]` on this app's database: the key.
    pub async fn create_key(&self, tenant: &str, admin: bool) -> String {
        let mut args = vec!["keys", "create", "--tenant", tenant];
        if admin {
            args.push("--admin");
        }
        let out = cli(&self.db, &args).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.expect("JSON body")
    }

    /// The record of a request.
    pub async fn record(&self, id: &str) -> Value {
        self.get_json(&format!("/requests/{id}")).await
    }

    /// The record of a request, read with `key` (or none).
    pub async fn record_as(&self, key: Option<&str>, id: &str) -> Value {
        let mut request = self.client.get(self.url(&format!("/requests/{id}")));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let r = request.send().await.expect("GET");
        assert_eq!(r.status(), 200, "GET /requests/{id}");
        r.json().await.expect("JSON body")
    }

    /// Waits until the record is terminal (SPEC §2), or panics after `within`: see
    /// [`wait_record`](Self::wait_record).
    pub async fn wait_terminal(&self, id: &str, within: Duration) -> Value {
        self.wait_record(id, "terminal", within, is_terminal).await
    }

    /// Waits until `ok` holds for the record of `id`, or panics naming `what` after
    /// `within`. Event-driven: the record is read once now, then again only when a server
    /// on this database logs a line about this request (its `request_id`) or one about no
    /// request in particular (an expiry sweep, say). Every change of a record's outcome is
    /// logged after the store recorded it ("work done", "callback delivered", "callback
    /// attempt failed; will retry", "callback failed for good", "callback expired",
    /// "request completed"…), so no state is missed and none is polled for.
    pub async fn wait_record(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let key = self.api_key.clone();
        self.wait_record_as(key.as_deref(), id, what, within, ok)
            .await
    }

    /// [`wait_record`](Self::wait_record), reading the record with `key` (or none).
    pub async fn wait_record_as(
        &self,
        key: Option<&str>,
        id: &str,
        what: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        let mut lines = self.db.logs.follow();
        loop {
            let record = self.record_as(key, id).await;
            if ok(&record) {
                return record;
            }
            if !lines.next_matching(deadline, |l| about(l, id)).await {
                let now = self.record_as(key, id).await;
                assert!(
                    !ok(&now),
                    "request {id}: {what}, but no server log line said so (the harness \
                     waits for one): {now:#}"
                );
                panic!("request {id}: not {what} within {within:?}: {now:#}");
            }
        }
    }

    /// Waits until GET `path` answers JSON for which `ok` holds, or panics naming `what`
    /// after `within`. For states no log line announces: see [`eventually`](Self::eventually).
    pub async fn wait_json(
        &self,
        path: &str,
        what: &str,
        within: Duration,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        let found = self
            .try_eventually(within, async || {
                let v = self.get_json(path).await;
                let done = ok(&v).then(|| v.clone());
                last = v;
                done
            })
            .await;
        found.unwrap_or_else(|| panic!("{what}: not seen in {within:?} ({path}: {last:#})"))
    }

    /// Waits until GET `path` (with the API key, if any) answers `status`, or panics
    /// after `within`; the response. /readyz flipping as the database goes, say (a key
    /// taking effect has its line: [`wait_keys`](Self::wait_keys)).
    pub async fn wait_status(
        &self,
        path: &str,
        status: u16,
        within: Duration,
    ) -> reqwest::Response {
        let mut last = 0;
        let found = self
            .try_eventually(within, async || {
                let r = self.get(path).await;
                last = r.status().as_u16();
                (last == status).then_some(r)
            })
            .await;
        found.unwrap_or_else(|| panic!("GET {path}: still {last}, not {status}, after {within:?}"))
    }

    /// Runs `check` until it gives a value, or panics naming `what` after `within`. For
    /// a state that no log line announces (a key's use written, /readyz flipping with
    /// the database, a record created): `check` runs again whenever a server on this
    /// database logs (at most every 10 ms), and otherwise after a pause that starts at
    /// 10 ms and doubles up to 200 ms.
    pub async fn eventually<T>(
        &self,
        what: &str,
        within: Duration,
        check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        self.try_eventually(within, check)
            .await
            .unwrap_or_else(|| panic!("{what}: not within {within:?}"))
    }

    async fn try_eventually<T>(
        &self,
        within: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> Option<T> {
        const FIRST: Duration = Duration::from_millis(10);
        const MOST: Duration = Duration::from_millis(200);
        let deadline = tokio::time::Instant::now() + within;
        let mut logged = self.db.logs.arrived.subscribe();
        let mut pause = FIRST;
        loop {
            let checked = tokio::time::Instant::now();
            if let Some(value) = check().await {
                return Some(value);
            }
            if checked >= deadline {
                return None;
            }
            tokio::select! {
                _ = logged.changed() => {
                    // At most one check per 10 ms however much the servers log.
                    tokio::time::sleep_until((checked + FIRST).min(deadline)).await;
                }
                _ = tokio::time::sleep_until((checked + pause).min(deadline)) => {
                    pause = (pause * 2).min(MOST);
                }
            }
        }
    }

    /// Waits until this instance has logged a line (since its start) for which `matches`
    /// holds, or panics naming `what` after `within`; that line. Woken by each line.
    pub async fn wait_log(
        &self,
        what: &str,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_logs(what, 1, within, matches).await.remove(0)
    }

    /// Waits until this instance has logged `n` lines for which `matches` holds, or
    /// panics naming `what` after `within`; those lines.
    pub async fn wait_logs(
        &self,
        what: &str,
        n: usize,
        within: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        let mut logged = self.db.logs.arrived.subscribe();
        let (mut found, mut read) = (Vec::new(), 0);
        loop {
            let fresh: Vec<String> = self.logs.lock().unwrap()[read..].to_vec();
            read += fresh.len();
            found.extend(
                fresh
                    .iter()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|v| matches(v)),
            );
            if found.len() >= n {
                return found;
            }
            let woken = tokio::time::timeout_at(deadline, logged.changed()).await;
            assert!(
                matches!(woken, Ok(Ok(()))),
                "{what}: {} of {n} log lines within {within:?}",
                found.len()
            );
        }
    }

    /// Waits until the API keys created since this instance started apply: the service
    /// logs that a key exists (it then refuses a request without one), and a refresh
    /// names each key among those it added ([`wait_key_added`](Self::wait_key_added)),
    /// after which the key is accepted. SPEC §10 promises 5 s; the wait allows 15.
    pub async fn wait_keys(&self, keys: &[&str]) {
        self.wait_log("the service requires a key", KEYS_WITHIN, |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("an API key exists"))
        })
        .await;
        let open = self.client.get(self.url("/requests")).send().await;
        assert_eq!(
            open.expect("GET /requests").status(),
            401,
            "no key, once one exists"
        );
        for key in keys {
            self.wait_key_added(key).await;
            let r = self.client.get(self.url("/requests")).bearer_auth(key);
            let status = r.send().await.expect("GET /requests").status();
            assert_eq!(status, 200, "key {} loaded, so accepted", &key[..12]);
        }
    }

    /// Waits until a refresh of this instance has loaded `key` (created since the start):
    /// it logs "API keys changed" with the key's display prefix among `added_keys`.
    pub async fn wait_key_added(&self, key: &str) {
        self.wait_key_change("added_keys", key).await;
    }

    /// Waits until a refresh of this instance has loaded the revocation of `key`: it logs
    /// "API keys changed" with the key's display prefix among `revoked_keys`.
    pub async fn wait_key_revoked(&self, key: &str) {
        self.wait_key_change("revoked_keys", key).await;
    }

    async fn wait_key_change(&self, list: &str, key: &str) {
        let prefix = &key[..12];
        let what = format!("key {prefix} among the {list} of a refresh");
        self.wait_log(&what, KEYS_WITHIN, |v| {
            v["message"] == "API keys changed"
                && v[list]
                    .as_str()
                    .is_some_and(|l| l.split(' ').any(|p| p == prefix))
        })
        .await;
    }

    /// The value of one sample in /metrics, e.g. `consuma_work_in_flight{mode="sync"}`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }
}

pub fn is_terminal(record: &Value) -> bool {
    let done = matches!(record["status"].as_str(), Some("completed" | "failed"));
    let delivered = record["mode"] == "sync"
        || matches!(record["callback_status"].as_str(), Some("sent" | "failed"));
    done && delivered
}

/// Every line the instances on one database wrote to stderr, in arrival order, and a
/// watch of how many: what the harness's waits wake on instead of a timer.
pub struct LogBus {
    lines: Mutex<Vec<String>>,
    arrived: tokio::sync::watch::Sender<usize>,
}

impl LogBus {
    fn new() -> Self {
        Self {
            lines: Mutex::default(),
            arrived: tokio::sync::watch::Sender::new(0),
        }
    }

    fn push(&self, line: String) {
        let n = {
            let mut lines = self.lines.lock().unwrap();
            lines.push(line);
            lines.len()
        };
        self.arrived.send_modify(|count| *count = (*count).max(n));
    }

    /// Follows the lines logged from now on.
    fn follow(&self) -> LogCursor<'_> {
        // Subscribed before the count is taken: no line falls between the two.
        let woken = self.arrived.subscribe();
        let read = self.lines.lock().unwrap().len();
        LogCursor {
            bus: self,
            woken,
            read,
        }
    }
}

/// A place in a [`LogBus`]: the lines after it are the ones not yet looked at.
struct LogCursor<'a> {
    bus: &'a LogBus,
    woken: tokio::sync::watch::Receiver<usize>,
    read: usize,
}

impl LogCursor<'_> {
    /// Waits for a line not yet looked at for which `matches` holds: true, or false at
    /// the deadline.
    async fn next_matching(
        &mut self,
        deadline: tokio::time::Instant,
        matches: impl Fn(&str) -> bool,
    ) -> bool {
        loop {
            let found = {
                let lines = self.bus.lines.lock().unwrap();
                let found = lines[self.read..].iter().any(|l| matches(l));
                self.read = lines.len();
                found
            };
            if found {
                return true;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, self.woken.changed()).await,
                Ok(Ok(()))
            ) {
                return false;
            }
        }
    }
}

/// Whether a server log line may bear on request `id`'s record: it names the request
/// (in its span, or as a field), or names no request at all (an engine-wide event such
/// as an expiry sweep or housekeeping). Lines about other requests are not.
fn about(line: &str, id: &str) -> bool {
    line.contains(id) || !line.contains("\"request_id\"")
}

/// Reads the server's JSON log lines into its own list and its database's bus; reports
/// the bound address once it is logged.
async fn collect_logs(
    stderr: tokio::process::ChildStderr,
    logs: Arc<Mutex<Vec<String>>>,
    bus: Arc<LogBus>,
    ready: tokio::sync::oneshot::Sender<SocketAddr>,
) {
    let echo = std::env::var_os("TEST_LOG").is_some();
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("[consuma] {line}");
        }
        if let Some(addr) = listening_addr(&line)
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(addr);
        }
        logs.lock().unwrap().push(line.clone());
        bus.push(line);
    }
}

fn listening_addr(line: &str) -> Option<SocketAddr> {
    let v: Value = serde_json::from_str(line).ok()?;
    (v["message"] == "listening").then(|| v["addr"].as_str()?.parse().ok())?
}

/// Submits `n` async requests at once, spread round-robin over `apps`; asserts every 202
/// and returns the acknowledged request ids.
pub async fn submit_async_spread(
    apps: &[&TestApp],
    n: usize,
    callback_url: &str,
) -> std::collections::HashSet<String> {
    let sends = (0..n).map(|i| {
        let app = apps[i % apps.len()];
        let body = serde_json::json!({"text": format!("job {i}"), "callback_url": callback_url});
        let (client, api) = (app.client.clone(), app.url("/async"));
        async move {
            let r = client
                .post(api)
                .json(&body)
                .send()
                .await
                .expect("POST /async");
            assert_eq!(r.status(), 202);
            let body: Value = r.json().await.expect("JSON");
            body["request_id"].as_str().expect("request_id").to_owned()
        }
    });
    futures::future::join_all(sends).await.into_iter().collect()
}

/// Runs `check` until it gives a value, or panics naming `what` after `within`, pausing
/// between runs 10 ms, doubled up to 200 ms: for state in this process that nothing
/// announces (a job of a store under test becoming due, say). With a server, prefer
/// [`TestApp::eventually`], which also wakes when the server logs.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    let mut pause = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Runs `consuma ARGS --database-url <db>` with an empty environment.
pub async fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .args(["--database-url", &db.url])
        .env_clear()
        .output()
        .await
        .expect("run consuma")
}

/// A body for POST /sync or /async.
pub fn work(text: &str, count: i64) -> Value {
    serde_json::json!({ "text": text, "count": count })
}
