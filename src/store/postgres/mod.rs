//! The PostgreSQL store: one database shared by any number of instances (SPEC §3).
//!
//! Every trait method is one transaction on a connection from a [`PgPool`]; PostgreSQL's
//! own locking (and advisory locks per destination, [`guard`]) makes concurrent
//! instances safe. The role traits are implemented in the `store_*.rs` files, as on
//! SQLite.
//!
//! - **Two pools** (SPEC §9 "The engine before the door"): the engine's claims, lease
//!   renewals and outcome records use a pool of their own, so a flood of admissions can
//!   slow acceptance but never starve a running job's lease.
//! - **Batches** ([`batch`]): keyless admissions ([`admit`]) and the engine's records
//!   ([`record`]) are queued and written many to a transaction, in set-based statements;
//!   each caller is answered after its batch commits, and a failed batch is written again
//!   one item at a time.
//! - **Admission** writes the request, its job and its idempotency key together. The key
//!   is inserted first with `ON CONFLICT DO NOTHING`: a concurrent admission with the same
//!   key waits on the unique index until the first commits, then reads its row
//!   ([`keys`]).
//! - **Claiming** ([`claim`]): the due, unleased jobs are picked `FOR UPDATE SKIP LOCKED`
//!   (instances never wait for, nor take, each other's rows), stamped with a fresh lease
//!   token and expiry, and their requests marked `processing`. An outcome is recorded only
//!   while that lease is held: same token, not expired ([`jobs`], [`record`]).
//! - **Clocks.** Due times and leases are compared with the database's `now()`, never a
//!   process clock, so instances with skewed clocks still agree on what is due. An absolute
//!   time the engine hands over (a retry's due time, a key's hold) is translated as an
//!   offset from the process's now; [`JobStore::next_due_at`] translates back the same way.
//!   Times the API shows are written by the service, truncated to milliseconds, exactly as
//!   SQLite keeps them.
//! - **Wake-ups.** After an async admission, a rescheduled retry or a released lease has
//!   committed, an [`listen::Announcer`] sends a (coalesced) NOTIFY on
//!   [`listen::CHANNEL`]. A background task LISTENs on it and wakes the engine through
//!   [`Store::job_signal`], so an idle worker on any instance starts a new job at once; the
//!   engine still polls as a fallback.
//! - **Migrations** run at open on a dedicated connection; sqlx holds an advisory lock
//!   while it migrates, so instances starting together apply each migration once.

mod admit;
mod auth;
mod batch;
mod claim;
mod counts;
mod destinations;
mod guard;
mod housekeeping;
mod indexes;
mod instances;
mod jobs;
mod keys;
mod listen;
mod reads;
mod record;
mod redeliver;
mod requests;
mod store_destinations;
mod store_housekeeping;
mod store_jobs;
mod store_keys;
mod store_records;
mod vacuum;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use uuid::Uuid;

use super::counts::{CountsMirror, Deltas};
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long an operation waits for a connection before the caller hears 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PgStore {
    /// Admissions and reads.
    pool: PgPool,
    /// The engine's claims and records.
    engine: PgPool,
    /// The lease keeper's connection: renewals never wait for a connection behind
    /// admissions or the engine's own claims and records (SPEC §16).
    leases: PgPool,
    jobs: Arc<Notify>,
    /// The LISTEN task; stopped with the store.
    _listener: listen::ListenerTask,
    /// Sends NOTIFYs for other instances.
    announcer: listen::Announcer,
    /// The backlog's counts, refreshed from the table (SPEC §9).
    counts: Arc<RwLock<CountsMirror>>,
    _refresher: counts::Refresher,
    /// Vacuums the job queue when its dead rows pile up, analyses the records as they grow.
    _vacuumer: vacuum::Vacuumer,
    /// Runs transactions that keep the counts.
    writer: Writer,
    /// Writes keyless admissions in batches.
    admitter: batch::Batcher<admit::Admit, ()>,
    /// Writes the engine's outcome records in batches.
    recorder: batch::Batcher<record::Outcome, bool>,
    /// (tenant, origin) → destination id, so that an admission is one statement.
    destinations: Mutex<HashMap<(String, String), i64>>,
    health: WriteHealth,
    /// This instance, named by its /sync records, and its heartbeat.
    instance: instances::Instance,
}

/// Runs transactions that keep the counts: shared by the store and its recorder.
#[derive(Clone)]
struct Writer {
    counts: Arc<RwLock<CountsMirror>>,
    health: WriteHealth,
}

impl Writer {
    /// Runs `op` in a transaction on `pool` with a [`Deltas`] for the kept counts, which
    /// are written just before the commit: committed when it succeeds, rolled back
    /// otherwise.
    async fn run<T, F>(&self, pool: &PgPool, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection, &'c mut Deltas) -> BoxFuture<'c, StoreResult<T>>
            + Send,
    {
        let mut deltas = Deltas::default();
        let result = async {
            let mut tx = pool.begin().await?;
            let value = op(&mut tx, &mut deltas).await?;
            counts::apply(&mut tx, &deltas).await?;
            tx.commit().await?;
            Ok(value)
        }
        .await
        .map_err(classify);
        self.health.note(&result);
        if result.is_ok() {
            self.counts.write().expect("counts lock").apply(&deltas);
        }
        result
    }
}

/// Destination ids remembered at most (then the memory starts afresh).
const DESTINATION_CACHE: usize = 10_000;

impl PgStore {
    /// Connects (`max_connections` in all: a quarter, at least 1, for the engine, the
    /// rest for the API; LISTEN and the lease keeper take one more each), migrates, and starts listening for jobs
    /// enqueued by other instances.
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("consuma");
        migrate(&options).await?;
        let engine_connections = (max_connections / 4).max(1);
        let pool = pool_of(&options, max_connections - engine_connections).await?;
        let engine = pool_of(&options, engine_connections).await?;
        let leases = pool_of(&options, 1).await?;
        let jobs = Arc::new(Notify::new());
        // LISTEN holds its connection for good: it gets one of its own.
        let listener = listen::spawn(pool_of(&options, 1).await?, jobs.clone());
        let announcer = listen::Announcer::spawn(pool.clone());
        let counts = Arc::new(RwLock::new(
            counts::load_backlog(&pool).await.map_err(classify)?,
        ));
        let refresher = counts::Refresher::spawn(pool.clone(), counts.clone());
        let instance = instances::Instance::start(engine.clone()).await?;
        let health = WriteHealth::default();
        let writer = Writer {
            counts: counts.clone(),
            health: health.clone(),
        };
        let recorder = record::recorder(engine.clone(), writer.clone());
        let admitter = admit::admitter(pool.clone(), writer.clone(), instance.id);
        let vacuumer = vacuum::Vacuumer::spawn(pool.clone());
        Ok(Self {
            pool,
            engine,
            leases,
            jobs,
            _listener: listener,
            announcer,
            counts,
            _refresher: refresher,
            _vacuumer: vacuumer,
            destinations: Mutex::new(HashMap::new()),
            health,
            writer,
            admitter,
            recorder,
            instance,
        })
    }

    /// [`Writer::run`] on `pool`.
    async fn tx_on<T, F>(&self, pool: &PgPool, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection, &'c mut Deltas) -> BoxFuture<'c, StoreResult<T>>
            + Send,
    {
        self.writer.run(pool, op).await
    }

    /// [`PgStore::tx_on`] the API's pool.
    async fn tx<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection, &'c mut Deltas) -> BoxFuture<'c, StoreResult<T>>
            + Send,
    {
        self.tx_on(&self.pool, op).await
    }

    /// [`PgStore::tx_on`] the engine's pool.
    async fn engine_tx<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send,
        F: for<'c> FnOnce(&'c mut PgConnection, &'c mut Deltas) -> BoxFuture<'c, StoreResult<T>>
            + Send,
    {
        self.tx_on(&self.engine, op).await
    }

    /// The destination of an async request, from memory when known.
    async fn destination_for(&self, req: &NewRequest) -> StoreResult<Option<i64>> {
        let Some(origin) = req.origin.clone() else {
            return Ok(None);
        };
        let key = (req.tenant.clone(), origin);
        if let Some(id) = self.destinations.lock().expect("cache lock").get(&key) {
            return Ok(Some(*id));
        }
        let mut c = self.pool.acquire().await.map_err(|e| classify(e.into()))?;
        let id = requests::destination_id(&mut c, &key.0, &key.1)
            .await
            .map_err(classify)?;
        let mut cache = self.destinations.lock().expect("cache lock");
        if cache.len() >= DESTINATION_CACHE {
            cache.clear();
        }
        cache.insert(key, id);
        Ok(Some(id))
    }

    fn forget_destination(&self, req: &NewRequest) {
        if let Some(origin) = &req.origin {
            self.destinations
                .lock()
                .expect("cache lock")
                .remove(&(req.tenant.clone(), origin.clone()));
        }
    }

    /// A refusal by the backlog limits, judged on the mirror (up to 1 s stale).
    fn refusal(&self, req: &NewRequest, limits: AdmissionLimits) -> Option<Admission> {
        if req.mode != Mode::Async {
            return None;
        }
        let counts = self.counts.read().expect("counts lock");
        limits.refusal(counts.backlog(), counts.backlog_of(&req.tenant))
    }

    /// Inserts an admission; a destination id that vanished (deleted as unused since it
    /// was remembered) is looked up again once.
    async fn insert(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
    ) -> StoreResult<Admission> {
        for retry in [false, true] {
            if retry {
                self.forget_destination(&req);
            }
            let destination = self.destination_for(&req).await?;
            let outcome = match claim.clone() {
                None => self
                    .admitter
                    .submit(admit::Admit {
                        req: req.clone(),
                        destination,
                    })
                    .await
                    .map(|()| Admission::Admitted),
                Some(claim) => {
                    let req = req.clone();
                    let instance = self.instance.id;
                    self.tx(move |c, d| {
                        Box::pin(requests::admit_with_key(
                            c,
                            d,
                            req,
                            destination,
                            claim,
                            instance,
                        ))
                    })
                    .await
                }
            };
            match outcome {
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if !retry && e.code().as_deref() == Some("23503") => {}
                other => return other,
            }
        }
        unreachable!("the second try returns")
    }
}

async fn pool_of(options: &PgConnectOptions, size: u32) -> StoreResult<PgPool> {
    PgPoolOptions::new()
        .max_connections(size.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|e| classify(e.into()))
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
    indexes::build(&mut conn).await?;
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
        let writable = housekeeping::writable(&self.pool).await.map_err(classify)?;
        match (writable, self.health.healthy()) {
            (true, true) => Ok(()),
            (false, _) => Err(StoreError::Unavailable("the database is read-only".into())),
            (true, false) => Err(StoreError::Unavailable("the last write failed".into())),
        }
    }

    fn writes_healthy(&self) -> bool {
        self.health.healthy()
    }

    async fn probe_write(&self) -> StoreResult<()> {
        self.tx(move |c, _| Box::pin(housekeeping::heartbeat(c)))
            .await
    }

    fn job_signal(&self) -> Arc<Notify> {
        self.jobs.clone()
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
