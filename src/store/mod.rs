//! Persistence (SPEC §3): one [`Store`] trait, two implementations chosen once from the
//! database URL: [`sqlite`] (the embedded default) and [`postgres`] (shared by several
//! instances).
//!
//! The trait speaks in operations of the service, not in SQL: each method is one
//! transaction, so "the request row and its job are written together" or "an outcome is
//! recorded only while the lease is held" is a property of one method, whatever the
//! backend. Both backends pass the same integration suite.

pub mod auth;
pub mod model;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

pub use auth::*;
pub use model::*;

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

/// Everything the service keeps. Each method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers and accepts writes (for /readyz).
    async fn ready(&self) -> StoreResult<()>;

    /// Notified whenever a job may have become due: after an async admission on this
    /// instance, and (PostgreSQL) when another instance enqueues one.
    fn job_signal(&self) -> Arc<Notify>;

    /// Stores a new request — for `Mode::Async` with its job, due now — together with
    /// its idempotency claim, in one transaction; or reports why the key forbids it.
    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<Admission>;

    /// Ends a /sync request: stores its outcome and, with a key, the response to replay
    /// (`Some`) or the release of the key (`None`: only successes are kept).
    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(&'static str, String, Option<StoredResponse>)>,
    ) -> StoreResult<()>;

    async fn get_request(&self, id: Uuid) -> StoreResult<Option<RequestRecord>>;

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page>;

    /// Leases up to `limit` due jobs for `lease_for`; marks their requests `processing`.
    async fn claim_due_jobs(
        &self,
        limit: usize,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedJob>>;

    /// The earliest time at which an unleased job, or an expired lease, becomes claimable.
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// Extends a lease; `false` when it is no longer ours.
    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool>;

    /// Stores the end of the work; `false` (and nothing stored) when the lease is lost.
    async fn record_work(&self, lease: Lease, done: &FinishedWork) -> StoreResult<bool>;

    /// Stores a delivery attempt and applies `next`; `false` when the lease is lost.
    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
    ) -> StoreResult<bool>;

    /// Gives a job back, claimable at once (shutdown).
    async fn release_lease(&self, lease: Lease) -> StoreResult<()>;

    async fn job_counts(&self) -> StoreResult<JobCounts>;

    /// Forgets idempotency keys older than `keep_keys`, and closes /sync requests stuck in
    /// `processing` for longer than `abandon_sync` (their process died mid-work).
    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats>;

    /// Returns the stored setting `name`, storing `candidate` first if there is none.
    /// Several instances racing here all get the same, first-stored value.
    async fn get_or_insert_setting(&self, name: &str, candidate: &str) -> StoreResult<String>;

    // API keys and signing secrets (SPEC §10); see [`auth`] for the rows.

    /// Stores a new key; `false` (and nothing stored) when its prefix or hash is taken.
    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool>;

    /// Every key ever created, revoked ones included, oldest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>>;

    /// Revokes the key with this display prefix (from `at` on).
    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation>;

    /// Records uses of keys, in one transaction, skipping a key whose stored
    /// `last_used_at` is less than [`KEY_USE_RESOLUTION`] older than the use.
    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()>;

    /// The tenant's current signing secret, storing `candidate` as that first when the
    /// tenant has none. An existing secret is never replaced; instances racing here all
    /// get the first-stored one.
    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String>;

    /// The secrets valid at `at` (the current one, and older ones whose `valid_until` is
    /// later), of `tenant` or of every tenant, each tenant's newest first.
    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>>;

    /// Makes `secret` the tenant's current secret from `at` on; every other secret still
    /// valid then stays valid until `old_valid_until` at the latest. `false` (nothing
    /// stored) when the tenant has no secret yet.
    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

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
