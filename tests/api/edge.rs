//! The HTTP edge (SPEC §9 and loose ends of §2): slow and idle clients, the connection
//! cap, bounded metric labels, the shutdown deadline, undecodable ids, database URL
//! redaction, and `--async-ack-status`. Raw TCP where a well-behaved client cannot show
//! the behaviour.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::time::Instant;

use crate::both_backends;
use crate::helpers::{BIN, Backend, TestApp, TestDb, work};

/// Half of a request head: a client that stalls inside its headers.
const HALF_HEADERS: &[u8] = b"POST /sync HTTP/1.1\r\nHost: localhost\r\nContent-Ty";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.addr).await.expect("connect")
}

/// Reads until the server closes the connection (end of stream or reset) and returns what
/// arrived; panics if it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            received.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the server closed the connection in time");
    received
}

#[tokio::test]
async fn a_client_that_stalls_inside_its_headers_is_disconnected_after_the_header_timeout() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--http-header-timeout-ms", 500)
        .spawn()
        .await;
    let started = Instant::now();
    let mut stalled = connect(&app).await;
    stalled.write_all(HALF_HEADERS).await.unwrap();
    let answer = read_until_closed(&mut stalled, Duration::from_secs(20)).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(answer.is_empty(), "closed without an answer: {answer:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--http-header-timeout-ms", 500)
        .spawn()
        .await;
    let mut conn = connect(&app).await;
    let started = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with(r#"{"status":"healthy"}"#), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn a_request_whose_work_outlasts_the_header_timeout_is_still_answered() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--http-header-timeout-ms", 300)
        .arg("--work-delay-ms", 1000)
        .spawn()
        .await;
    assert_eq!(app.post_sync(work("slow work", 1)).await.status(), 200);
}

#[tokio::test]
async fn a_stalled_body_gets_a_408_problem_after_the_body_timeout_and_the_connection_closes() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--http-body-timeout-ms", 500)
        .spawn()
        .await;
    let mut conn = connect(&app).await;
    let started = Instant::now();
    let head = "POST /sync HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"text\": ";
    conn.write_all(head.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    let text = String::from_utf8_lossy(&received).to_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(
        text.contains("content-type: application/problem+json"),
        "{text}"
    );
    assert!(
        text.contains(r#""type":"/problems/request-timeout""#),
        "{text}"
    );
    let doc = app.get("/problems/request-timeout").await;
    assert_eq!(doc.status(), 200);
}

#[tokio::test]
async fn a_body_sent_slowly_but_within_the_body_timeout_is_accepted() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--http-body-timeout-ms", 3000)
        .spawn()
        .await;
    let mut conn = connect(&app).await;
    let body = r#"{"text": "slow but steady"}"#;
    let head = format!(
        "POST /sync HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    for part in [&body[..10], &body[10..]] {
        // The fixture: a slow client.
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.write_all(part.as_bytes()).await.unwrap();
    }
    let received = read_until_closed(&mut conn, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_in_the_accept_queue_until_one_closes() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--max-connections", 2)
        .spawn()
        .await;
    let first = connect(&app).await;
    let _second = connect(&app).await;
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(800), third.read(&mut byte)).await;
    assert!(
        waited.is_err(),
        "the third connection was served beyond the cap"
    );
    drop(first);
    let received = read_until_closed(&mut third, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

/// Raises this test process's own soft open-file limit as far as the hard one allows.
fn raise_own_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[tokio::test]
async fn thousands_of_half_sent_requests_do_not_stop_the_service_answering_others() {
    // Other tests of this process hold sockets too: keep well under the limit.
    let n = 2000.min(raise_own_open_file_limit().saturating_sub(600) as usize);
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut stalled = Vec::with_capacity(n);
    for _ in 0..n {
        let mut conn = connect(&app).await;
        conn.write_all(HALF_HEADERS).await.unwrap();
        stalled.push(conn);
    }
    let started = Instant::now();
    let r = app.post_sync(work("still answering", 2)).await;
    assert_eq!(r.status(), 200, "with {n} half-sent requests open");
    assert_eq!(app.get("/healthz").await.status(), 200);
    eprintln!("{n} stalled: /sync answered in {:?}", started.elapsed());
}

#[tokio::test]
async fn a_cap_the_open_file_limit_cannot_hold_is_lowered_with_a_warning() {
    let db = TestDb::new(Backend::Sqlite).await;
    // The hard limit of the child is 1,200: raising the soft one cannot reach 10,000.
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -n 1200 && exec "$0" "$@""#, BIN, "serve"])
        .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
        .args(["--database-url", &db.url])
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warning = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["level"] == "WARN" && v["requested"] == 10_000 {
                warning = Some(v.clone());
            }
            if v["message"] == "listening" {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("started");
    let warning = warning.expect("a warning about the connection cap");
    let cap = warning["cap"].as_u64().unwrap();
    assert!((1..1200).contains(&cap), "{warning}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn unknown_methods_and_paths_leave_only_fixed_label_values_in_metrics() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let odd = reqwest::Method::from_bytes(b"FOO").unwrap();
    let r = app
        .client
        .request(odd, app.url("/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let random = format!("/x-{}", uuid::Uuid::new_v4().simple());
    assert_eq!(app.get(&random).await.status(), 404);
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        !text.contains("FOO") && !text.contains(&random[1..]),
        "{text}"
    );
    assert!(
        text.contains(
            r#"consuma_http_requests_total{route="/sync",method="other",status="405"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"consuma_http_requests_total{route="unmatched",method="GET",status="404"} 1"#
        ),
        "{text}"
    );
}

async fn an_undecodable_request_id_is_simply_unknown(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in [
        "/requests/%FF",
        "/requests/%C3%28",
        "/requests/%00",
        "/requests/not-a-uuid",
        "/problems/%FF",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], "/problems/not-found", "{path}");
    }
    let r = app.post_sync(work("known", 1)).await;
    let id = r.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.record(&id).await["status"], "completed");
}

/// Waits until the /sync request just sent is in the service's hands (its work begins
/// as it logs "request accepted").
async fn sync_in_flight(app: &TestApp) {
    app.wait_log(
        "the /sync request in flight",
        Duration::from_secs(30),
        |v| v["message"] == "request accepted" && v["mode"] == "sync",
    )
    .await;
}

/// Sends SIGTERM to `app` without waiting for it to exit.
fn sigterm(app: &TestApp) {
    let pid = nix::unistd::Pid::from_raw(app.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
}

#[tokio::test]
async fn the_shutdown_grace_counts_from_the_signal_not_from_the_start() {
    let mut app = TestApp::builder(Backend::Sqlite)
        .arg("--shutdown-grace-secs", 3)
        .arg("--work-delay-ms", 1500)
        .spawn()
        .await;
    // Longer than the grace after the start (a lower bound): a deadline counted from
    // there has passed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (client, url) = (app.client.clone(), app.url("/sync"));
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&work("long", 1)).send().await });
    sync_in_flight(&app).await;
    sigterm(&app);
    let answer = in_flight
        .await
        .unwrap()
        .expect("the in-flight /sync is answered");
    assert_eq!(answer.status(), 200);
    let status = app.terminate_wait().await;
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn an_in_flight_request_longer_than_the_grace_is_cut_at_the_deadline() {
    let mut app = TestApp::builder(Backend::Sqlite)
        .arg("--shutdown-grace-secs", 1)
        .arg("--work-delay-ms", 30_000)
        .spawn()
        .await;
    let (client, url) = (app.client.clone(), app.url("/sync"));
    let in_flight =
        tokio::spawn(async move { client.post(url).json(&work("long", 1)).send().await });
    sync_in_flight(&app).await;
    let signalled = Instant::now();
    sigterm(&app);
    let status = app.terminate_wait().await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "the grace was granted"
    );
    let answer = in_flight.await.unwrap();
    assert!(answer.is_err(), "cut, not answered: {answer:?}");
}

/// `postgres://…?password=…` (PostgreSQL ignores it here: trust authentication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_database_url_query_never_reaches_logs_or_errors() {
    if !crate::helpers::postgres_available().await {
        return;
    }
    let mut db = TestDb::new(Backend::Postgres).await;
    db.url
        .push_str("?password=hunter2&application_name=edge-test");
    let mut app = TestApp::builder_on(db.clone()).spawn().await;
    let logs = app.logs().join("\n");
    assert!(!logs.contains("hunter2"), "{logs}");
    assert!(
        logs.contains("password=***&application_name=edge-test"),
        "{logs}"
    );
    app.terminate().await;
    let missing = db.url.replace(db.pg_name().unwrap(), "consuma_no_such_db");
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &missing])
        .env_clear()
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("password=***") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}

async fn post_async_keyed(app: &TestApp, key: &str, text: &str) -> reqwest::Response {
    let body = serde_json::json!({"text": text, "callback_url": "https://example.com/hook"});
    let request = app
        .client
        .post(app.url("/async"))
        .header("idempotency-key", key);
    request.json(&body).send().await.unwrap()
}

/// The headers and body of an acknowledgement, whatever its status.
async fn assert_acknowledgement(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status(), status);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(r.headers()["location"], format!("/requests/{id}").as_str());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["status"], "pending");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Request accepted")
    );
    id
}

async fn async_ack_status_200_answers_200_and_replays_answer_what_was_sent(backend: Backend) {
    let mut app = TestApp::builder(backend)
        .arg("--workers", 0)
        .arg("--async-ack-status", 200)
        .spawn()
        .await;
    let first = assert_acknowledgement(post_async_keyed(&app, "k1", "a").await, 200).await;
    let again = post_async_keyed(&app, "k1", "a").await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(assert_acknowledgement(again, 200).await, first);
    let doc = app.get_json("/openapi.json").await;
    let documented = doc["paths"]["/async"]["post"]["responses"]
        .as_object()
        .unwrap();
    assert!(documented.contains_key("200") && documented.contains_key("202"));
    app.terminate().await;
    // Restarted with the default: new requests get 202, the old key still replays its 200.
    let app = TestApp::builder_on(app.db.clone())
        .arg("--workers", 0)
        .spawn()
        .await;
    assert_acknowledgement(post_async_keyed(&app, "k2", "b").await, 202).await;
    assert_eq!(
        assert_acknowledgement(post_async_keyed(&app, "k1", "a").await, 200).await,
        first
    );
}

/// Runs `consuma serve` with `args` and `env`, expecting it to refuse to start.
async fn refused(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn bad_edge_settings_exit_2_with_a_one_line_reason() {
    // (arguments, environment, what the one line must mention)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--http-header-timeout-ms", "99"],
            &[],
            "http-header-timeout-ms",
        ),
        (
            &[],
            &[("CONSUMA_HTTP_HEADER_TIMEOUT_MS", "600001")],
            "http-header-timeout-ms",
        ),
        (
            &["--http-body-timeout-ms", "0"],
            &[],
            "http-body-timeout-ms",
        ),
        (
            &[],
            &[("CONSUMA_HTTP_BODY_TIMEOUT_MS", "soon")],
            "http-body-timeout-ms",
        ),
        (&["--max-connections", "0"], &[], "max-connections"),
        (
            &[],
            &[("CONSUMA_MAX_CONNECTIONS", "1000001")],
            "max-connections",
        ),
        (&["--async-ack-status", "201"], &[], "async-ack-status"),
        (
            &[],
            &[("CONSUMA_ASYNC_ACK_STATUS", "ok")],
            "async-ack-status",
        ),
    ];
    for (args, env, mentions) in cases {
        let (code, stderr) = refused(args, env).await;
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(mentions), "{args:?} {env:?}: {stderr}");
    }
}

both_backends!(
    an_undecodable_request_id_is_simply_unknown,
    async_ack_status_200_answers_200_and_replays_answer_what_was_sent
);
