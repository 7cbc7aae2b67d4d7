//! `consuma load` as a gate (SPEC §15, §17) against the real service: every exit code
//! from a real run, their precedence, the per-second time series adding up to the
//! totals, `--baseline`, `--work` on the wire, and the `--html` report in Chromium.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::both_backends;
use crate::helpers::{BIN, Backend, TestApp};
use crate::load::{load, service, until_recorded};

/// `consuma load --target <target> <args>`, with no option added.
fn bare_command(target: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["load", "--target", target])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true);
    command
}

/// The exit code and the JSON report of a run that printed one.
fn code_and_report(out: &Output) -> (i32, Value) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("no JSON report ({e}); stderr: {stderr}");
    });
    (out.status.code().expect("exited"), report)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Sums one field of every `timeseries` entry.
fn per_second_sum(r: &Value, field: &str) -> u64 {
    let seconds = r["timeseries"].as_array().expect("timeseries");
    seconds
        .iter()
        .map(|s| s[field].as_u64().expect(field))
        .sum()
}

/// Sums a count over the report's sections.
fn section_sum(r: &Value, field: &str) -> u64 {
    ["sync", "async"]
        .iter()
        .filter_map(|s| r[s][field].as_u64())
        .sum()
}

fn assert_seconds_add_up(r: &Value) {
    assert_eq!(per_second_sum(r, "sent"), section_sum(r, "total"), "{r:#}");
    assert_eq!(
        per_second_sum(r, "ok"),
        section_sum(r, "successful"),
        "{r:#}"
    );
    assert_eq!(
        per_second_sum(r, "errors"),
        section_sum(r, "failed"),
        "{r:#}"
    );
}

async fn a_met_gate_exits_0_and_its_seconds_add_up_to_the_totals(backend: Backend) {
    let app = service(backend).await;
    let args = [
        "--rate",
        "20",
        "--duration",
        "2500ms",
        "--callback-timeout",
        "60s",
        "--threshold",
        "sync_p50>=5ms",
        "--threshold",
        "callback_missing<1",
        "--threshold",
        "error_rate<=0.1%",
    ];
    let (code, r) = code_and_report(&load(&app.base, &args).await);
    assert_eq!(code, 0, "{r:#}");
    let verdicts = r["thresholds"].as_array().expect("thresholds");
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|t| t["met"] == true), "{verdicts:#?}");
    assert_eq!(verdicts[0]["expression"], "sync_p50>=5ms");
    assert!(verdicts[0]["value"].as_f64().expect("a value") >= 5.0);
    assert_eq!(section_sum(&r, "total"), 50);
    assert!(r["timeseries"].as_array().unwrap().len() >= 3, "{r:#}");
    assert_seconds_add_up(&r);
    for kind in ["sync", "ack", "callback"] {
        let curve = r["latency_curve"][kind].as_array().expect(kind);
        let ms: Vec<f64> = curve.iter().map(|p| p["ms"].as_f64().unwrap()).collect();
        assert_eq!(curve.first().unwrap()["percentile"], 50.0);
        assert_eq!(curve.last().unwrap()["percentile"], 99.99);
        assert!(ms.windows(2).all(|w| w[0] <= w[1]), "{kind}: {ms:?}");
    }
}

/// Callbacks that cannot have come (the work takes 3 s, the tool waits 0 s) are
/// errors of their requests' seconds, and breach `callback_missing<1`: exit 3.
async fn missing_callbacks_count_in_their_seconds_and_breach_with_exit_3(backend: Backend) {
    let app = TestApp::builder(backend)
        .allow_loopback()
        .arg("--work-delay-ms", 3000)
        .spawn()
        .await;
    let args = [
        "--mode",
        "async",
        "--requests",
        "10",
        "--callback-timeout",
        "0s",
        "--threshold",
        "callback_missing<1",
    ];
    let out = load(&app.base, &args).await;
    let (code, r) = code_and_report(&out);
    assert_eq!(code, 3, "{}", stderr(&out));
    assert_eq!(r["async"]["failures"]["callback_missing"], 10, "{r:#}");
    assert_eq!(r["thresholds"][0]["met"], false);
    assert_eq!(r["thresholds"][0]["value"], 10.0);
    assert_eq!(per_second_sum(&r, "errors"), 10);
    assert_eq!(per_second_sum(&r, "ok"), 10, "acknowledged");
    assert_seconds_add_up(&r);
}

/// A copy of `report` whose percentiles are 1,000 times lower: a run that cannot be
/// matched now.
fn faster_baseline(report: &Value, dir: &Path) -> std::path::PathBuf {
    let mut faster = report.clone();
    for stat in ["p50", "p95", "p99"] {
        let ms = faster["sync"]["latency_ms"][stat].as_f64().unwrap();
        faster["sync"]["latency_ms"][stat] = json!(ms / 1000.0);
    }
    let path = dir.join("baseline.json");
    std::fs::write(&path, faster.to_string()).unwrap();
    path
}

async fn a_regression_beyond_the_limit_exits_4_and_a_breach_wins_over_it(backend: Backend) {
    let app = service(backend).await;
    let run = ["--mode", "sync", "--requests", "10"];
    let (code, first) = code_and_report(&load(&app.base, &run).await);
    assert_eq!(code, 0);
    let dir = tempfile::tempdir().unwrap();
    let baseline = faster_baseline(&first, dir.path());
    let baseline = baseline.to_str().unwrap();
    let mut compared = run.to_vec();
    compared.extend(["--baseline", baseline]);
    let (code, r) = code_and_report(&load(&app.base, &compared).await);
    assert_eq!(code, 0, "no --max-regression, no exit 4");
    let figures = r["baseline"]["figures"].as_array().expect("figures");
    let p50 = figures.iter().find(|f| f["figure"] == "sync_p50").unwrap();
    assert!(p50["change_pct"].as_f64().unwrap() > 1000.0, "{p50}");
    compared.extend(["--max-regression", "50"]);
    let (code, r) = code_and_report(&load(&app.base, &compared).await);
    assert_eq!(code, 4, "{r:#}");
    let regressions = &r["baseline"]["regressions"];
    assert!(regressions.as_array().unwrap().contains(&json!("sync_p99")));
    compared.extend(["--threshold", "sync_p50<0.001ms"]);
    let (code, _) = code_and_report(&load(&app.base, &compared).await);
    assert_eq!(
        code, 3,
        "a breached threshold (3) wins over a regression (4)"
    );
}

/// Every request answered 401: the run could not be made (exit 1, even with a
/// breached threshold), and the tool names --api-key.
async fn a_run_refused_with_401_says_api_key_and_exits_1(backend: Backend) {
    let app = service(backend).await;
    let key = app.create_key("default", false).await;
    app.wait_keys(&[&key]).await;
    let args = [
        "--mode",
        "sync",
        "--requests",
        "5",
        "--threshold",
        "sync_p50<0.001ms",
    ];
    let out = load(&app.base, &args).await;
    let (code, r) = code_and_report(&out);
    assert_eq!(code, 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--api-key"), "{}", stderr(&out));
    assert_eq!(r["sync"]["failures"]["http_401"], 5);
}

async fn a_taken_callback_port_exits_1_suggesting_port_0(backend: Backend) {
    let app = service(backend).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port().to_string();
    let args = [
        "--mode",
        "async",
        "--requests",
        "3",
        "--callback-port",
        &port,
    ];
    let out = bare_command(&app.base, &args).output().await.expect("runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stderr = stderr(&out);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--callback-port 0"), "{stderr}");
}

/// SIGINT during a run whose threshold is breached: interrupted (130) wins over 3.
async fn an_interrupted_run_exits_130_even_with_a_breached_threshold(backend: Backend) {
    let app = service(backend).await;
    let args = [
        "--mode",
        "async",
        "--rate",
        "50",
        "--duration",
        "60s",
        "--threshold",
        "ack_p50<0.001ms",
    ];
    let child = crate::load::load_command(&app.base, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("consuma load starts");
    until_recorded(&app, "async").await;
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("ends after SIGINT")
        .expect("output");
    let (code, r) = code_and_report(&out);
    assert_eq!(code, 130, "{}", stderr(&out));
    assert_eq!(r["thresholds"][0]["met"], false);
}

both_backends!(
    a_met_gate_exits_0_and_its_seconds_add_up_to_the_totals,
    missing_callbacks_count_in_their_seconds_and_breach_with_exit_3,
    a_regression_beyond_the_limit_exits_4_and_a_breach_wins_over_it,
    a_run_refused_with_401_says_api_key_and_exits_1,
    a_taken_callback_port_exits_1_suggesting_port_0,
    an_interrupted_run_exits_130_even_with_a_breached_threshold,
);

/// Usage errors exit 2 before anything is sent, naming what is wrong on their first
/// line; the target does not even exist (2 wins over 1).
#[tokio::test]
async fn usage_errors_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let sync_report = json!({"target": "x", "mode": "sync", "total_time_s": 1.0,
        "requests_per_s": 1.0, "sync": {"total": 1}, "async": null});
    let sync_report = file("sync.json", &sync_report.to_string());
    let not_report = file("notes.json", r#"{"hello": "world"}"#);
    let array = file("array.json", "[1, 2]");
    let table: &[(&[&str], &str)] = &[
        (
            &["--mode", "sync", "--threshold", "callback_p99<250ms"],
            "callback_p99<250ms",
        ),
        (&["--threshold", "p99<5"], "p99<5"),
        (&["--threshold", "sync_p99<5parsecs"], "sync_p99<5parsecs"),
        (
            &["--mode", "async", "--threshold", "bad_signatures<1"],
            "--signing-secret",
        ),
        (
            &["--mode", "async", "--baseline", &sync_report],
            "--mode sync",
        ),
        (&["--baseline", &not_report], "not a --json output"),
        (
            &["--work", "pdf", "--body-file", &array],
            "not a JSON object",
        ),
        (&["--stages", "1s:5", "--rate", "3"], "--stages"),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for (args, named) in table {
        let out = bare_command(&dead, args).output().await.expect("runs");
        let stderr = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(first.contains(named), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn the_help_lists_the_exit_codes() {
    let out = Command::new(BIN)
        .args(["load", "--help"])
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "Exit codes:",
        "  3    a threshold was breached",
        "2, 1, 130, 3, 4",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }
}

/// stderr of `consuma load <args>` run on a terminal (util-linux `script` gives it a
/// pseudo-terminal), or `None` (skipped) without `script`.
async fn on_a_terminal(target: &str, args: &str) -> Option<String> {
    let script = "/usr/bin/script";
    if !Path::new(script).exists() {
        eprintln!("skipped: {script} not installed (util-linux)");
        return None;
    }
    let command = format!("{BIN} load --target {target} --callback-port 0 {args} 2>&1 >/dev/null");
    let run = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("finishes")
        .expect("script runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// On a terminal the progress line is drawn once a second with every figure; `--quiet`
/// turns it off (a pipe gets none: every other test reads a clean stderr).
#[tokio::test]
async fn the_progress_line_shows_on_a_terminal_unless_quiet() {
    let app = service(Backend::Sqlite).await;
    let args = "--mode async --rate 20 --duration 2500ms --callback-timeout 60s";
    let Some(shown) = on_a_terminal(&app.base, args).await else {
        return;
    };
    for part in ["1s  sent ", "rate ", "in flight ", "errors 0", "callbacks "] {
        assert!(shown.contains(part), "{part:?} not in {shown:?}");
    }
    let quiet = on_a_terminal(&app.base, &format!("{args} --quiet")).await;
    assert_eq!(quiet.as_deref(), Some(""));
}

/// An `--html` file that cannot be written: the report is still printed, the run exits 1.
#[tokio::test]
async fn an_html_file_that_cannot_be_written_exits_1_after_the_report() {
    let app = service(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("no-such-dir").join("report.html");
    let args = [
        "--mode",
        "sync",
        "--requests",
        "3",
        "--html",
        html.to_str().unwrap(),
    ];
    let out = load(&app.base, &args).await;
    let (code, r) = code_and_report(&out);
    assert_eq!(code, 1);
    assert_eq!(r["sync"]["successful"], 3);
    assert!(
        stderr(&out).contains("cannot write --html"),
        "{}",
        stderr(&out)
    );
}
