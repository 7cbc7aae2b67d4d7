//! A new user's first hour (issue 19 item 9): the frictions a fresh clone met, each
//! turned into behaviour a test can hold.

use serde_json::json;
use tokio::process::Command;

use crate::helpers::{BIN, Backend, TestApp, TestDb};

/// `consuma secret` or `keys …` from another folder must not make a new, empty database
/// (with a new secret) out of the default relative URL: exit 1, naming the path and
/// `--database-url`; nothing is created.
#[tokio::test]
async fn commands_never_create_a_database() {
    let elsewhere = tempfile::tempdir().unwrap();
    for args in [
        vec!["secret"],
        vec!["secret", "rotate", "--tenant", "default"],
        vec!["keys", "list"],
        vec!["keys", "create", "--tenant", "acme"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .current_dir(elsewhere.path())
            .env_clear()
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let path = elsewhere.path().join("data/consuma.db");
        assert!(
            stderr.contains(&path.display().to_string()) && stderr.contains("--database-url"),
            "{args:?}: {stderr}"
        );
        assert!(
            !elsewhere.path().join("data").exists(),
            "{args:?} created it"
        );
    }
}

/// Once `serve` has made it, the same command works.
#[tokio::test]
async fn commands_work_on_a_database_serve_created() {
    let db = TestDb::served(Backend::Sqlite).await;
    let out = crate::helpers::cli(&db, &["secret"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("whsec_"));
}

/// The 400 for a receiver on this machine says how to open loopback.
#[tokio::test]
async fn a_refused_loopback_callback_hints_at_the_flag() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for (url, hint) in [
        (
            "http://127.0.0.1:9000/hook",
            "--allow-callback-cidr 127.0.0.0/8",
        ),
        (
            "http://[::1]:9000/hook",
            "--allow-callback-cidr 127.0.0.0/8",
        ),
        ("http://localhost:9000/hook", "http://127.0.0.1:PORT/"),
    ] {
        let body = json!({"text": "x", "callback_url": url});
        let r = app.post_json("/async", &body).await;
        assert_eq!(r.status(), 400, "{url}");
        let p: serde_json::Value = r.json().await.unwrap();
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(hint), "{url}: {detail}");
    }
    // Other refusals carry no such hint.
    let body = json!({"text": "x", "callback_url": "http://10.0.0.1/hook"});
    let p: serde_json::Value = app.post_json("/async", &body).await.json().await.unwrap();
    assert!(
        !p["detail"]
            .as_str()
            .unwrap()
            .contains("--allow-callback-cidr"),
        "{p}"
    );
}

/// Every documented series exists on the first scrape, before anything happened.
#[tokio::test]
async fn every_documented_metric_exists_from_the_start() {
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--workers", 0)
        .spawn()
        .await;
    let text = app.get("/metrics").await.text().await.unwrap();
    let readme = std::fs::read_to_string("README.md").unwrap();
    let documented: std::collections::BTreeSet<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("consuma_") && !w.starts_with("consuma_t_"))
        .collect();
    assert!(
        documented.contains("consuma_db_errors_total"),
        "{documented:?}"
    );
    for series in documented {
        let present = text.lines().any(|l| {
            !l.starts_with('#')
                && l.strip_prefix(series)
                    .is_some_and(|rest| rest.starts_with(['{', ' ', '_']))
        });
        assert!(
            present,
            "{series} is missing from the first scrape:\n{text}"
        );
    }
}

/// `curl /docs` shows where the documentation is instead of nothing.
#[tokio::test]
async fn the_docs_redirect_has_a_body() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = client.get(app.url("/docs")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/docs/");
    assert!(r.text().await.unwrap().contains("/docs/"));
}
