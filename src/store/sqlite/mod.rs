//! The embedded SQLite store: the default, for one instance.
//!
//! SQLite has one writer at a time. Rather than let hundreds of tasks queue on its lock,
//! every write goes to one [writer](writer) thread that commits whatever has queued up
//! meanwhile as one transaction (group commit): one WAL append (with
//! `synchronous=NORMAL`; one fsync with `full`) for a whole batch, and a caller hears back
//! only after its batch has committed. Claiming jobs is a write like any other: the single
//! writer makes it exclusive, which is SQLite's equivalent of PostgreSQL's
//! `FOR UPDATE SKIP LOCKED`. [Reads](reads) use read-only connections beside it (WAL),
//! and a [checkpointer](checkpoint) keeps WAL checkpoints off the writer's path.
//!
//! Why rusqlite and not sqlx here: sqlx's SQLite driver hands every statement to a worker
//! thread and back, and a profile of POST /sync showed most of the service's CPU spent in
//! those hand-offs (futex wake-ups), capping it near 2,000 requests/s on two cores. With
//! the connection owned by one thread, a batch of hundreds of operations crosses threads
//! once. sqlx still runs the migrations (`migrations/sqlite`), as it does for PostgreSQL;
//! both drivers use the same `libsqlite3-sys`.

mod admit;
mod auth;
mod checkpoint;
mod claim;
mod counts;
mod current;
mod destinations;
mod files;
mod housekeeping;
mod ops;
mod queries;
mod reads;
mod redeliver;
mod store_destinations;
mod store_housekeeping;
mod store_jobs;
mod store_keys;
mod store_records;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use tokio::sync::Notify;
use uuid::Uuid;

use super::*;
use crate::config::SqliteSynchronous;
use reads::Readers;
use writer::Writer;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    writer: Writer,
    _checkpointer: checkpoint::Checkpointer,
    readers: Readers,
    jobs: Arc<Notify>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            Some(
                DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen | DiskFull | ReadOnly,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

impl SqliteStore {
    /// Opens the database file (creating it and its folder), migrates it, and starts the
    /// writer thread.
    pub async fn open(path: &Path, sync: SqliteSynchronous) -> StoreResult<Self> {
        files::prepare(path)?;
        migrate(path).await?;
        let conn = open_writer(path, sync)?;
        Ok(Self {
            writer: Writer::start(conn)?,
            _checkpointer: checkpoint::Checkpointer::start(path)?,
            readers: Readers::new(path.to_owned()),
            jobs: Arc::new(Notify::new()),
        })
    }
}

/// Creates the file and applies `migrations/sqlite` (WAL is a property of the file).
async fn migrate(path: &Path) -> StoreResult<()> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    MIGRATOR.run(&mut conn).await?;
    sqlx::Connection::close(conn).await?;
    Ok(())
}

fn open_writer(path: &Path, sync: SqliteSynchronous) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_handler(Some(checkpoint::writer_busy_handler))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.as_str())?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The schema's CHECK constraints (`status IN ('pending', 'processing', …)`) are not
    // evaluated on this connection: SQLite evaluates an IN list of three or more values
    // through a table it builds for each statement, five times per async request (its
    // insert and its three changes of state). Every value they check is written from a
    // Rust enum (`as_str`), so they could never fail here; they still document the
    // columns, and bind any other program that writes the file.
    conn.pragma_update(None, "ignore_check_constraints", "ON")?;
    // 8 MiB. SQLite walks its whole page-cache hash table at almost every commit (a
    // b-tree rebalance files a page under the lock-byte page's number for a moment, and
    // the commit then drops every cached page above the database's end). With 32 MiB
    // that walk was 9 % of the writer's time; the writer's working set (the newest end
    // of each index, the jobs, the counts) fits in far less, and a page it misses is in
    // the operating system's cache (BENCHMARKS.md, "Part three, fourth stop").
    conn.pragma_update(None, "cache_size", -8_192)?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        checkpoint::WRITER_BACKSTOP_PAGES,
    )?;
    conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_FILE_LIMIT)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ready(&self) -> StoreResult<()> {
        self.readers.read(queries::ping).await?;
        if !self.writer.healthy() {
            return Err(StoreError::Unavailable("the last write failed".into()));
        }
        self.writer.write(|b| queries::ping(b.conn)).await
    }

    fn writes_healthy(&self) -> bool {
        self.writer.healthy()
    }

    async fn probe_write(&self) -> StoreResult<()> {
        let now = current::now_ms().to_string();
        self.writer
            .write_engine(move |b| housekeeping::heartbeat(b.conn, &now))
            .await
    }

    fn job_signal(&self) -> Arc<Notify> {
        self.jobs.clone()
    }
}
