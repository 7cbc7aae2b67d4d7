//! `--works FILE` (SPEC §13 "The file", §17): a good file starts the service; every bad
//! file stops the start with exit status 2 and one line naming the file, table and key.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::{BIN, Backend, TestApp};

/// Runs `consuma serve --works FILE` with `env`, expecting it to exit on its own.
async fn start_with(file: &std::path::Path, via_env: bool, env: &[(&str, &str)]) -> (i32, String) {
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("c.db").display());
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--database-url", &url]);
    match via_env {
        true => cmd.env("CONSUMA_WORKS", file),
        false => cmd.arg("--works").arg(file),
    };
    let out = cmd
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits at once")
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// (file text, what the one line says after the file name)
const BAD: &[(&str, &str)] = &[
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nmax_in_flight = 0\n",
        "[works.pdf] max_in_flight: 0 is out of range",
    ),
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ncolour = \"red\"\n",
        "[works.pdf] colour: unknown key",
    ),
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { authorization = \"Bearer ${CONSUMA_TEST_NO_SUCH_VAR}\" }\n",
        "[works.pdf] headers.authorization: environment variable CONSUMA_TEST_NO_SUCH_VAR is not set",
    ),
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninput_schema = { type = 5 }\n",
        "[works.pdf] input_schema: invalid JSON Schema",
    ),
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ntimeout = 1979-05-27T07:32:00Z\n",
        "[works.pdf] timeout: TOML datetimes are not accepted",
    ),
    (
        "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { host = \"x\" }\n",
        "[works.pdf] headers.host: is set by the service",
    ),
    (
        "[works.text]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n",
        "[works.text] `text` is the built-in work",
    ),
];

#[tokio::test]
async fn a_bad_works_file_exits_2_with_one_line_naming_file_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    for (i, (text, want)) in BAD.iter().enumerate() {
        std::fs::write(&file, text).unwrap();
        let (code, stderr) = start_with(&file, i % 2 == 1, &[]).await;
        assert_eq!(code, 2, "{text:?}: {stderr}");
        let line = format!("--works {}: {want}", file.display());
        assert!(
            stderr.contains(&line),
            "{text:?}\n got: {stderr}\nwant: {line}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    }
    let missing = dir.path().join("nope.toml");
    let (code, stderr) = start_with(&missing, false, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--works {}: cannot read the file",
            missing.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_secret_from_the_environment_never_reaches_the_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    let text = "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { x-key = \"${CONSUMA_TEST_SECRET}\" }\nmax_attempts = 99\n";
    std::fs::write(&file, text).unwrap();
    let (code, stderr) = start_with(&file, false, &[("CONSUMA_TEST_SECRET", "hunter2")]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("[works.pdf] max_attempts: 99 is out of range"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_good_works_file_starts_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("works.toml");
    std::fs::write(dir.path().join("s.json"), r#"{"type": "object"}"#).unwrap();
    let text = "[works.pdf]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ninput_schema_file = \"s.json\"\nheaders = { authorization = \"Bearer ${CONSUMA_TEST_SECRET}\" }\n";
    std::fs::write(&file, text).unwrap();
    let app = TestApp::builder(Backend::Sqlite)
        .arg("--works", file.display())
        .env("CONSUMA_TEST_SECRET", "hunter2")
        .spawn()
        .await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert!(app.logs().iter().all(|l| !l.contains("hunter2")));
}
