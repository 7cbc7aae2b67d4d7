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
    conn.pragma_update(None, "cache_size", -32_768)?;
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

    async fn list_destinations(&self, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>> {
        let q = q.clone();
        self.readers.read(move |c| destinations::list(c, &q)).await
    }

    async fn held_destinations(&self) -> StoreResult<Vec<i64>> {
        self.readers.read(destinations::held).await
    }

    async fn find_destination(
        &self,
        tenant: &str,
        origin: &str,
    ) -> StoreResult<Option<DestinationInfo>> {
        let (tenant, origin) = (tenant.to_owned(), origin.to_owned());
        self.readers
            .read(move |c| destinations::find(c, &tenant, &origin))
            .await
    }

    async fn change_destination(
        &self,
        tenant: &str,
        origin: &str,
        change: DestinationChange,
    ) -> StoreResult<Option<DestinationInfo>> {
        let (tenant, origin) = (tenant.to_owned(), origin.to_owned());
        let changed = self
            .writer
            .write(move |b| destinations::change(b.conn, &tenant, &origin, change))
            .await?;
        self.jobs.notify_one();
        Ok(changed)
    }

    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
        limits: AdmissionLimits,
    ) -> StoreResult<Admission> {
        let is_async = req.mode == Mode::Async;
        let admission = self
            .writer
            .write(move |b| admit::admit(b, req, claim, limits))
            .await?;
        if is_async && admission == Admission::Admitted {
            self.jobs.notify_one();
        }
        Ok(admission)
    }

    async fn idempotency_verdict(
        &self,
        claim: &IdempotencyClaim,
    ) -> StoreResult<Option<Admission>> {
        let claim = claim.clone();
        self.readers
            .read(move |c| admit::key_verdict(c, &claim))
            .await
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.writer
            .write(move |b| admit::finish_sync(b, id, done, key))
            .await
    }

    async fn get_request(&self, id: Uuid, scope: &Scope) -> StoreResult<Option<RequestRecord>> {
        let scope = scope.clone();
        let now = current::now_ms();
        self.readers
            .read(move |c| queries::get_request(c, id, &scope, now))
            .await
    }

    async fn attempts_after(
        &self,
        id: Uuid,
        scope: &Scope,
        after: u32,
        limit: usize,
    ) -> StoreResult<Option<Vec<AttemptRecord>>> {
        let scope = scope.clone();
        self.readers
            .read(move |c| queries::attempts_after(c, id, &scope, after, limit))
            .await
    }

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page> {
        let filter = filter.clone();
        self.readers
            .read(move |c| queries::list_requests(c, &filter))
            .await
    }

    async fn claim_due_jobs(&self, req: ClaimRequest) -> StoreResult<ClaimBatch> {
        self.writer
            .write_engine(move |b| claim::claim(b, &req))
            .await
    }

    async fn next_due_at(
        &self,
        at_cap: &[i64],
        works: &Served,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let (at_cap, works) = (at_cap.to_vec(), works.clone());
        let next = self
            .readers
            .read(move |c| claim::next_due_at(c, &at_cap, &works))
            .await?;
        next.map(from_millis).transpose()
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        self.writer
            .write_engine(move |b| ops::renew(b.conn, lease, lease_for))
            .await
    }

    async fn renew_leases(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        let leases = leases.to_vec();
        self.writer
            .write_engine(move |b| ops::renew_all(b.conn, &leases, lease_for))
            .await
    }

    async fn record_work(
        &self,
        lease: Lease,
        done: &FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = done.clone();
        self.writer
            .write_engine(move |b| ops::record_work(b, lease, &done, after, expires_at))
            .await
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
        circuit: Option<&CircuitChange>,
    ) -> StoreResult<bool> {
        let (attempt, next, circuit) = (attempt.clone(), next.clone(), circuit.cloned());
        self.writer
            .write_engine(move |b| ops::record_attempt(b, lease, &attempt, &next, circuit.as_ref()))
            .await
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.writer
            .write_engine(move |b| ops::release(b.conn, lease))
            .await?;
        self.jobs.notify_one();
        Ok(())
    }

    async fn defer_work(&self, lease: Lease, wait: Duration) -> StoreResult<()> {
        self.writer
            .write_engine(move |b| ops::defer_work(b.conn, lease, wait))
            .await
    }

    async fn expire_deliveries(&self, limit: usize, reason: &str) -> StoreResult<u64> {
        let reason = reason.to_owned();
        self.writer
            .write_engine(move |b| ops::expire(b, limit, &reason))
            .await
    }

    async fn expire_works(
        &self,
        limit: usize,
        created_before: DateTime<Utc>,
        reason: &str,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let reason = reason.to_owned();
        self.writer
            .write_engine(move |b| {
                ops::expire_works(b, limit, created_before, &reason, expire_after)
            })
            .await
    }

    async fn adopt_legacy_jobs(&self, expire_after: Duration) -> StoreResult<u64> {
        let mut adopted = 0;
        loop {
            let n = self
                .writer
                .write_engine(move |b| ops::adopt_legacy(b.conn, 500, expire_after))
                .await?;
            adopted += n;
            if n == 0 {
                return Ok(adopted);
            }
        }
    }

    async fn waiting_deliveries(&self, destination: i64, until: DateTime<Utc>) -> StoreResult<u64> {
        let until = until.timestamp_millis();
        self.readers
            .read(move |c| queries::waiting_deliveries(c, destination, until))
            .await
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let now = current::now_ms();
        let circuits_open = self
            .readers
            .read(move |c| queries::circuits_open(c, now))
            .await?;
        Ok(JobCounts {
            pending: self.writer.counts().backlog(),
            circuits_open,
        })
    }

    async fn pending_works(&self) -> StoreResult<Vec<(String, u64)>> {
        self.readers.read(queries::pending_works).await
    }

    async fn backlog(&self, tenant: &str) -> StoreResult<(u64, u64)> {
        let counts = self.writer.counts();
        Ok((counts.backlog(), counts.backlog_of(tenant)))
    }

    async fn redeliver(
        &self,
        id: Uuid,
        scope: &Scope,
        expire_after: Duration,
        limits: RedeliveryLimits,
    ) -> StoreResult<Redelivery> {
        let scope = scope.clone();
        let done = self
            .writer
            .write(move |b| redeliver::redeliver(b, id, &scope, expire_after, limits))
            .await?;
        if done == Redelivery::Queued {
            self.jobs.notify_one();
        }
        Ok(done)
    }

    async fn bulk_redeliver(
        &self,
        tenant: Option<String>,
        since: DateTime<Utc>,
        expire_after: Duration,
        limits: RedeliveryLimits,
    ) -> StoreResult<BulkRedelivery> {
        let since = since.timestamp_millis();
        let done = self
            .writer
            .write(move |b| {
                redeliver::bulk_redeliver(b, tenant.as_deref(), since, expire_after, limits)
            })
            .await?;
        if done.redelivered > 0 {
            self.jobs.notify_one();
        }
        Ok(done)
    }

    async fn advance_bulk_redeliveries(
        &self,
        batch: usize,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let n = self
            .writer
            .write(move |b| redeliver::advance_bulk(b, batch, expire_after))
            .await?;
        if n > 0 {
            self.jobs.notify_one();
        }
        Ok(n)
    }

    async fn callback_stats(
        &self,
        scope: &Scope,
        from_minute: i64,
    ) -> StoreResult<Vec<MinuteStats>> {
        let scope = scope.clone();
        self.readers
            .read(move |c| redeliver::callback_stats(c, &scope, from_minute))
            .await
    }

    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats> {
        self.writer
            .write_background(move |b| housekeeping::sweep(b, keep_keys, abandon_sync))
            .await
    }

    async fn fail_interrupted_sync(&self, starting: bool) -> StoreResult<u64> {
        if !starting {
            return Ok(0);
        }
        self.writer.write(housekeeping::fail_interrupted_sync).await
    }

    async fn prune(&self, cutoff: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.writer
            .write_background(move |b| housekeeping::prune(b, cutoff.timestamp_millis(), limit))
            .await
    }

    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool> {
        let key = key.clone();
        self.writer
            .write(move |b| auth::insert_api_key(b.conn, &key))
            .await
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.readers.read(auth::api_keys).await
    }

    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation> {
        let prefix = prefix.to_owned();
        self.writer
            .write(move |b| auth::revoke_api_key(b.conn, &prefix, at))
            .await
    }

    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        let uses = uses.to_vec();
        self.writer
            .write(move |b| auth::record_key_uses(b.conn, &uses))
            .await
    }

    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String> {
        let (tenant, candidate) = (tenant.to_owned(), candidate.to_owned());
        self.writer
            .write(move |b| auth::ensure_signing_secret(b.conn, &tenant, &candidate, at))
            .await
    }

    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>> {
        let tenant = tenant.map(str::to_owned);
        self.readers
            .read(move |c| auth::signing_secrets(c, tenant.as_deref(), at))
            .await
    }

    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (tenant, secret) = (tenant.to_owned(), secret.to_owned());
        self.writer
            .write(move |b| {
                auth::rotate_signing_secret(b.conn, &tenant, &secret, at, old_valid_until)
            })
            .await
    }
}
