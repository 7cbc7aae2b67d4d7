//! Files and URLs at rest (SPEC §16–§17): the SQLite database, its WAL and shared-memory
//! files hold every tenant's signing secret, so they are 0600 (a folder consuma creates,
//! 0700), an existing database readable by others is restricted at start with a warning,
//! and a database URL never shows its password, a parse error included.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::process::Command;

use crate::helpers::{BIN, Backend, TestApp, TestDb, work};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_its_wal_and_shm_are_0600_in_a_0700_folder() {
    let base = TestDb::new(Backend::Sqlite).await;
    let folder = base.dir().join("data");
    let file = folder.join("consuma.db");
    let db = base.with_url(format!("sqlite://{}", file.display()));
    // A permissive umask would make 0644 files and 0755 folders by default.
    let app = TestApp::builder_on(db).spawn().await;
    assert_eq!(app.post_sync(work("written", 1)).await.status(), 200);
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&file), 0o600);
    for suffix in ["-wal", "-shm"] {
        let companion = folder.join(format!("consuma.db{suffix}"));
        assert_eq!(mode(&companion), 0o600, "{}", companion.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_database_readable_by_others_is_restricted_with_a_warning() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut app = TestApp::builder_on(db.clone()).spawn().await;
    app.terminate().await;
    let file = db.dir().join("consuma.db");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let app = TestApp::builder_on(db).spawn().await;
    assert_eq!(mode(&file), 0o600);
    let warned = app
        .logs()
        .into_iter()
        .find(|l| l.contains("WARN") && l.contains("readable by others"));
    let warned = warned.expect("a warning at start");
    assert!(warned.contains("644"), "{warned}");
}

/// A password holding `/` makes the URL unparsable: the error shows its scheme only, from
/// `serve` and from a command alike.
#[tokio::test]
async fn an_unparsable_database_url_shows_its_scheme_only() {
    const URL: &str = "postgres://u:hunter2/x@127.0.0.1/db";
    for args in [vec!["serve"], vec!["keys", "list"], vec!["secret"]] {
        let out = Command::new(BIN)
            .args(&args)
            .args(["--database-url", URL])
            .env_clear()
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: {stderr}");
        assert!(stderr.contains("\"postgres://…\""), "{args:?}: {stderr}");
    }
}
