//! The PostgreSQL store: one database shared by any number of instances (SPEC §3).
//!
//! Every trait method is one transaction on a connection from a [`PgPool`]; PostgreSQL's
//! own locking makes concurrent instances safe, so unlike SQLite there is no writer task.
//!
//! - **Admission** writes the request, its job and its idempotency key together. The key
//!   is inserted first with `ON CONFLICT DO NOTHING`: a concurrent admission with the same
//!   key waits on the unique index until the first commits, then reads its row
//!   ([`keys`]).
//! - **Claiming** is one statement: the due, unleased jobs are picked `FOR UPDATE SKIP
//!   LOCKED` (instances never wait for, nor take, each other's rows), stamped with a fresh
//!   lease token and expiry, and their requests marked `processing` ([`jobs`]). An outcome
//!   is recorded only while that lease is held: same token, not expired.
//! - **Clocks.** Due times and leases are compared with the database's `now()`, never a
//!   process clock, so instances with skewed clocks still agree on what is due. An absolute
//!   time the engine hands over (a retry's due time, a key's hold) is translated as an
//!   offset from the process's now; [`Store::next_due_at`] translates back the same way.
//!   Times the API shows are written by the service, truncated to milliseconds, exactly as
//!   SQLite keeps them.
//! - **Wake-ups.** After an async admission, a rescheduled retry or a released lease has
//!   committed, an [`listen::Announcer`] sends a (coalesced) NOTIFY on
//!   [`listen::CHANNEL`]. A background task LISTENs on it and wakes the engine through
//!   [`Store::job_signal`], so an idle worker on any instance starts a new job at once; the
//!   engine still polls as a fallback.
//! - **Migrations** run at open on a dedicated connection; sqlx holds an advisory lock
//!   while it migrates, so instances starting together apply each migration once.

mod auth;
mod jobs;
mod keys;
mod listen;
mod requests;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long an operation waits for a connection before the caller hears 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    pool: PgPool,
    jobs: Arc<Notify>,
    /// The LISTEN task; stopped with the store.
    _listener: listen::ListenerTask,
    /// Sends NOTIFYs for other instances.
    announcer: listen::Announcer,
}

impl PgStore {
    /// Connects (a pool of `max_connections`), migrates, and starts listening for jobs
    /// enqueued by other instances.
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("consuma");
        migrate(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| classify(e.into()))?;
        let jobs = Arc::new(Notify::new());
        let listener = listen::spawn(pool.clone(), jobs.clone());
        let announcer = listen::Announcer::spawn(pool.clone());
        Ok(Self {
            pool,
            jobs,
            _listener: listener,
            announcer,
        })
    }

    /// Runs `op` in a transaction: committed when it succeeds, rolled back otherwise.
    async fn tx<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send,
    {
        let result = async {
            let mut tx = self.pool.begin().await?;
            let value = op(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        };
        result.await.map_err(classify)
    }
}

/// Applies the migrations on a connection of its own. sqlx takes a session advisory lock
/// around them; closing the connection afterwards releases it even when a migration
/// failed half-way (a pooled connection would keep it).
async fn migrate(options: &PgConnectOptions) -> StoreResult<()> {
    // Only connecting is bounded: waiting for another instance's migrations is not.
    let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, options.connect())
        .await
        .map_err(|_| StoreError::Unavailable("connecting timed out".into()))?
        .map_err(|e| classify(e.into()))?;
    MIGRATOR.run(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

/// Turns "the server will not talk to us" into [`StoreError::Unavailable`] (503), on top
/// of the pool errors that `From<sqlx::Error>` already maps.
///
/// A refused TCP connection is retried by the pool until it times out (`PoolTimedOut`),
/// but a server that is up and refuses the session answers with an error of its own,
/// which sqlx returns at once as a database error.
fn classify(e: StoreError) -> StoreError {
    match e {
        StoreError::Database(sqlx::Error::Database(db))
            if db.code().is_some_and(|c| is_unreachable(&c)) =>
        {
            StoreError::Unavailable(db.to_string())
        }
        StoreError::Database(e @ (sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))) => {
            StoreError::Unavailable(e.to_string())
        }
        other => other,
    }
}

/// SQLSTATEs that mean the session is refused or cut, not that a statement is wrong.
fn is_unreachable(code: &str) -> bool {
    code.starts_with("08") // connection_exception
        || code.starts_with("28") // invalid_authorization_specification
        || matches!(
            code,
            "57P01" // admin_shutdown: our session was terminated
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now: starting or shutting down
                | "53300" // too_many_connections
                | "3D000" // invalid_catalog_name: the database is gone
                // object_not_in_prerequisite_state: "database … is not currently accepting
                // connections"; none of our statements can raise it otherwise.
                | "55000"
        )
}

/// A time as the API shows it: UTC, whole milliseconds (what SQLite keeps).
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    from_millis(millis(t)).unwrap_or(t)
}

/// `t` as milliseconds from the process's now: bound as `now() + $n * interval '1 ms'`
/// to move a process-clock time onto the database clock.
fn ms_from_now(t: DateTime<Utc>) -> i64 {
    (t - Utc::now()).num_milliseconds()
}

fn duration_ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ready(&self) -> StoreResult<()> {
        let writable = requests::writable(&self.pool).await.map_err(classify)?;
        match writable {
            true => Ok(()),
            false => Err(StoreError::Unavailable("the database is read-only".into())),
        }
    }

    fn job_signal(&self) -> Arc<Notify> {
        self.jobs.clone()
    }

    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<Admission> {
        let is_async = req.mode == Mode::Async;
        let admission = match claim {
            None => requests::insert_with_job(&self.pool, &req)
                .await
                .map(|()| Admission::Admitted)
                .map_err(classify)?,
            Some(claim) => {
                self.tx(move |c| Box::pin(requests::admit_with_key(c, req, claim)))
                    .await?
            }
        };
        if is_async && admission == Admission::Admitted {
            // Our own engine need not wait for the NOTIFY to come back round.
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(admission)
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(&'static str, String, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.tx(move |c| Box::pin(requests::finish_sync(c, id, done, key)))
            .await
    }

    async fn get_request(&self, id: Uuid) -> StoreResult<Option<RequestRecord>> {
        self.tx(move |c| Box::pin(requests::get(c, id))).await
    }

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page> {
        let filter = filter.clone();
        self.tx(move |c| Box::pin(requests::list(c, filter))).await
    }

    async fn claim_due_jobs(
        &self,
        limit: usize,
        lease_for: Duration,
    ) -> StoreResult<Vec<ClaimedJob>> {
        self.tx(move |c| Box::pin(jobs::claim(c, limit, lease_for)))
            .await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        jobs::next_due_at(&self.pool).await.map_err(classify)
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        jobs::renew_lease(&self.pool, lease, lease_for)
            .await
            .map_err(classify)
    }

    async fn record_work(&self, lease: Lease, done: &FinishedWork) -> StoreResult<bool> {
        let done = done.clone();
        self.tx(move |c| Box::pin(jobs::record_work(c, lease, done)))
            .await
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
    ) -> StoreResult<bool> {
        let retry = matches!(next, NextStep::RetryAt(_));
        let (attempt, next) = (attempt.clone(), next.clone());
        let recorded = self
            .tx(move |c| Box::pin(jobs::record_attempt(c, lease, attempt, next)))
            .await?;
        if recorded && retry {
            self.announcer.announce();
        }
        Ok(recorded)
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.tx(move |c| Box::pin(jobs::release_lease(c, lease)))
            .await?;
        self.jobs.notify_one();
        self.announcer.announce();
        Ok(())
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        jobs::counts(&self.pool).await.map_err(classify)
    }

    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats> {
        self.tx(move |c| Box::pin(requests::sweep(c, keep_keys, abandon_sync)))
            .await
    }

    async fn get_or_insert_setting(&self, name: &str, candidate: &str) -> StoreResult<String> {
        let (name, candidate) = (name.to_owned(), candidate.to_owned());
        self.tx(move |c| Box::pin(requests::get_or_insert_setting(c, name, candidate)))
            .await
    }

    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool> {
        auth::insert_api_key(&self.pool, key)
            .await
            .map_err(classify)
    }

    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        auth::api_keys(&self.pool).await.map_err(classify)
    }

    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation> {
        auth::revoke_api_key(&self.pool, prefix, at)
            .await
            .map_err(classify)
    }

    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        auth::record_key_uses(&self.pool, uses)
            .await
            .map_err(classify)
    }

    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String> {
        let (tenant, candidate) = (tenant.to_owned(), candidate.to_owned());
        self.tx(move |c| Box::pin(auth::ensure_signing_secret(c, tenant, candidate, at)))
            .await
    }

    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>> {
        auth::signing_secrets(&self.pool, tenant, at)
            .await
            .map_err(classify)
    }

    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (tenant, secret) = (tenant.to_owned(), secret.to_owned());
        self.tx(move |c| {
            Box::pin(auth::rotate_signing_secret(
                c,
                tenant,
                secret,
                at,
                old_valid_until,
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::is_unreachable;

    #[test]
    fn refused_or_cut_sessions_are_unreachable_but_statement_errors_are_not() {
        for code in [
            "08006", "08001", "28P01", "57P01", "57P03", "53300", "3D000", "55000",
        ] {
            assert!(is_unreachable(code), "{code}");
        }
        // unique_violation, syntax_error, undefined_table, serialization_failure
        for code in ["23505", "42601", "42P01", "40001"] {
            assert!(!is_unreachable(code), "{code}");
        }
    }
}
