//! The command line: defaults, environment equivalents, exit status 2 on bad values.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::helpers::BIN;

/// Runs `consuma` with `args` and `env`, expecting it to exit on its own.
async fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("exits")
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_configuration_exits_2_with_a_one_line_reason() {
    // (arguments, environment, what the one line must mention)
    let cases: &[Case] = &[
        (&["serve", "--work-delay-ms", "abc"], &[], "work-delay-ms"),
        (&["--work-delay-ms", "-5"], &[], "-5"),
        (&["serve", "--bind", "nonsense"], &[], "--bind"),
        (
            &["serve", "--database-url", "mysql://x/y"],
            &[],
            "database-url",
        ),
        (
            &["serve", "--allow-callback-cidr", "300.0.0.0/8"],
            &[],
            "allow-callback-cidr",
        ),
        (
            &["serve", "--callback-resolve", "no-equals-sign"],
            &[],
            "callback-resolve",
        ),
        (
            &["serve", "--callback-dns-server", "dns.example:53"],
            &[],
            "callback-dns-server",
        ),
        (
            &["serve"],
            &[("CONSUMA_CALLBACK_DNS_SERVER", "127.0.0.1:99999")],
            "callback-dns-server",
        ),
        (
            &["serve", "--signing-secret", "not-a-secret"],
            &[],
            "signing-secret",
        ),
        (
            &["serve", "--sqlite-synchronous", "maybe"],
            &[],
            "sqlite-synchronous",
        ),
        (
            &["serve", "--callback-max-attempts", "0"],
            &[],
            "callback-max-attempts",
        ),
        (&["serve"], &[("CONSUMA_WORKERS", "-1")], "workers"),
        (
            &["serve"],
            &[("CONSUMA_DATABASE_MAX_CONNECTIONS", "1")],
            "database-max-connections",
        ),
        (&["serve"], &[("CONSUMA_LOG_FORMAT", "xml")], "log-format"),
        (&["serve"], &[("DATABASE_URL", "redis://x")], "database-url"),
        (&["serve", "--no-such-flag"], &[], "no-such-flag"),
    ];
    for (args, env, mentions) in cases {
        let (code, stderr) = run(args, env).await;
        assert_eq!(code, 2, "{args:?} {env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?} {env:?}: one line, got {stderr:?}");
        assert!(lines[0].contains(mentions), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn help_and_version_exit_0() {
    assert_eq!(run(&["--help"], &[]).await.0, 0);
    assert_eq!(run(&["--version"], &[]).await.0, 0);
    assert_eq!(run(&["serve", "--help"], &[]).await.0, 0);
}

/// A bare `consuma` in a fresh folder serves on the default SQLite file ./data/consuma.db.
#[tokio::test]
async fn the_default_database_is_created_under_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The database is opened (and created) before the service listens.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening") {
                return;
            }
        }
        panic!("exited before listening");
    };
    tokio::time::timeout(Duration::from_secs(20), listening)
        .await
        .expect("listening");
    assert!(
        dir.path().join("data/consuma.db").exists(),
        "no ./data/consuma.db"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_secret_command_prints_the_same_stored_secret_every_time() {
    // The commands never create a database: `serve` made this one.
    let db = crate::helpers::TestDb::served(crate::helpers::Backend::Sqlite).await;
    let url = db.url.clone();
    let print = || async {
        let out = Command::new(BIN)
            .args(["secret", "--database-url", &url])
            .env_clear()
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = print().await;
    assert!(first.starts_with("whsec_"), "{first}");
    assert_eq!(print().await, first);
    let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let out = Command::new(BIN)
        .args(["secret", "--signing-secret", given])
        .env_clear()
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), given);
}
