//! Persistence (SPEC §3): one [`Store`] trait, two implementations chosen once from the
//! database URL: [`sqlite`] (the embedded default) and [`postgres`] (shared by several
//! instances).
//!
//! The trait speaks in operations of the service, not in SQL: each method is one
//! transaction, so "the request row and its job are written together" or "an outcome is
//! recorded only while the lease is held" is a property of one method, whatever the
//! backend. Both backends pass the same integration suite.

pub mod auth;
pub mod claim_plan;
pub mod counts;
pub mod destinations;
pub mod model;
pub mod postgres;
pub mod rate;
mod roles;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

pub use auth::*;
pub use destinations::*;
pub use model::*;
pub use roles::*;

use crate::config::{DatabaseUrl, SqliteSynchronous};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database does not answer (connection refused, pool timeout, writer gone).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Too many writes are queued; the caller should shed load (503).
    #[error("write queue full")]
    Overloaded,
    /// Stored data that cannot be read back (a bug or a foreign write).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error(transparent)]
    Sqlite(rusqlite::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the service keeps, by role; each method is one transaction. A backend
/// implements each role in a file named after it (`sqlite/store_jobs.rs` ↔
/// `postgres/store_jobs.rs`), so the two read side by side.
#[async_trait]
pub trait Store:
    RecordStore + JobStore + DestinationStore + KeyStore + HousekeepingStore + 'static
{
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers, is migrated, and the last write succeeded
    /// (for /readyz, SPEC §9 "Readiness").
    async fn ready(&self) -> StoreResult<()>;

    /// Whether the last write succeeded (a write of this instance, any kind).
    fn writes_healthy(&self) -> bool;

    /// A small real write (a heartbeat row), to notice that writes work again.
    async fn probe_write(&self) -> StoreResult<()>;

    /// Notified whenever a job may have become due: after an async admission on this
    /// instance, and (PostgreSQL) when another instance enqueues one.
    fn job_signal(&self) -> Arc<Notify>;
}

/// Whether this instance's last write reached the database: set by every write path of
/// a backend, read by /readyz.
#[derive(Debug, Clone)]
pub struct WriteHealth(Arc<std::sync::atomic::AtomicBool>);

impl Default for WriteHealth {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicBool::new(true)))
    }
}

impl WriteHealth {
    /// Notes how a write ended: only "the database is unavailable" counts as failing
    /// (a refused key or a lost lease are answers, not failures).
    pub fn note<T>(&self, result: &StoreResult<T>) {
        use std::sync::atomic::Ordering::Relaxed;
        match result {
            Ok(_) => self.0.store(true, Relaxed),
            Err(StoreError::Unavailable(_)) => self.0.store(false, Relaxed),
            Err(_) => {}
        }
    }

    pub fn healthy(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The setting a heartbeat write touches.
pub const HEARTBEAT_SETTING: &str = "heartbeat";

/// How to open a store; each backend reads its own part.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    pub sqlite_synchronous: SqliteSynchronous,
    /// PostgreSQL: the pool's size (LISTEN takes one more connection).
    pub pg_max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            sqlite_synchronous: SqliteSynchronous::Normal,
            pg_max_connections: DEFAULT_PG_MAX_CONNECTIONS,
        }
    }
}

/// Connections per instance: enough for a burst of admissions beside the engine's claims
/// and records, few enough that several instances fit a default PostgreSQL server
/// (`max_connections = 100`).
pub const DEFAULT_PG_MAX_CONNECTIONS: u32 = 16;

/// Opens (creating if needed) and migrates the store the URL names.
pub async fn connect(url: &DatabaseUrl, options: StoreOptions) -> StoreResult<Arc<dyn Store>> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => {
            Arc::new(sqlite::SqliteStore::open(path, options.sqlite_synchronous).await?)
        }
        DatabaseUrl::Postgres(url) => {
            Arc::new(postgres::PgStore::open(url, options.pg_max_connections).await?)
        }
    })
}

/// Milliseconds since the Unix epoch, the unit both backends' due times are compared in.
pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms}")))
}

pub(crate) fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("uuid {s:?}")))
}

pub(crate) fn parse_enum<T>(s: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    parse(s).ok_or_else(|| StoreError::Corrupt(format!("enum value {s:?}")))
}
