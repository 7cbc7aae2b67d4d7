//! The PostgreSQL store: one database shared by any number of instances (SPEC §3).
//!
//! Every trait method is one transaction on a connection from a [`PgPool`]; PostgreSQL's
//! own locking makes concurrent instances safe, so unlike SQLite there is no writer task.
//!
//! - **Two pools** (SPEC §9 "The engine before the door"): the engine's claims, lease
//!   renewals and outcome records use a pool of their own, so a flood of admissions can
//!   slow acceptance but never starve a running job's lease.
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

mod admit;
mod auth;
mod batch;
mod claim;
mod counts;
mod destinations;
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
        Ok(Self {
            pool,
            engine,
            leases,
            jobs,
            _listener: listener,
            announcer,
            counts,
            _refresher: refresher,
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

    async fn list_destinations(&self, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>> {
        destinations::list(&self.pool, q).await.map_err(classify)
    }

    async fn held_destinations(&self) -> StoreResult<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT id FROM destinations WHERE paused_since IS NOT NULL OR rate_limit_per_s IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e.into()))
    }

    async fn find_destination(
        &self,
        tenant: &str,
        origin: &str,
    ) -> StoreResult<Option<DestinationInfo>> {
        destinations::find(&self.pool, tenant, origin)
            .await
            .map_err(classify)
    }

    async fn change_destination(
        &self,
        tenant: &str,
        origin: &str,
        change: DestinationChange,
    ) -> StoreResult<Option<DestinationInfo>> {
        let changed = destinations::change(&self.pool, tenant, origin, change)
            .await
            .map_err(classify)?;
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
        if let Some(refusal) = self.refusal(&req, limits) {
            // A replay is answered even when the backlog is full.
            let Some(claim) = claim else {
                return Ok(refusal);
            };
            let replay = self
                .tx(move |c, _| Box::pin(async move { requests::replay_of(c, &claim).await }))
                .await?;
            return Ok(replay.unwrap_or(refusal));
        }
        let admission = self.insert(req, claim).await?;
        if is_async && admission == Admission::Admitted {
            // Our own engine need not wait for the NOTIFY to come back round.
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(admission)
    }

    async fn idempotency_verdict(
        &self,
        claim: &IdempotencyClaim,
    ) -> StoreResult<Option<Admission>> {
        let mut c = self.pool.acquire().await.map_err(|e| classify(e.into()))?;
        requests::replay_of(&mut c, claim).await.map_err(classify)
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.tx(move |c, d| Box::pin(requests::finish_sync(c, d, id, done, key)))
            .await
    }

    async fn get_request(&self, id: Uuid, scope: &Scope) -> StoreResult<Option<RequestRecord>> {
        let scope = scope.clone();
        self.tx(move |c, _| Box::pin(async move { reads::get(c, id, &scope).await }))
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
        self.tx(move |c, _| {
            Box::pin(async move { reads::attempts_after(c, id, &scope, after, limit).await })
        })
        .await
    }

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page> {
        let filter = filter.clone();
        self.tx(move |c, _| Box::pin(reads::list(c, filter))).await
    }

    async fn claim_due_jobs(&self, req: ClaimRequest) -> StoreResult<ClaimBatch> {
        self.engine_tx(move |c, d| Box::pin(async move { claim::claim(c, d, &req).await }))
            .await
    }

    async fn next_due_at(
        &self,
        at_cap: &[i64],
        works: &Served,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut c = self
            .engine
            .acquire()
            .await
            .map_err(|e| classify(e.into()))?;
        claim::next_due_at(&mut c, at_cap, works)
            .await
            .map_err(classify)
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        jobs::renew_lease(&self.engine, lease, lease_for)
            .await
            .map_err(classify)
    }

    async fn renew_leases(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        let result = async {
            let mut c = self.leases.acquire().await?;
            jobs::renew_leases(&mut c, leases, lease_for).await
        }
        .await
        .map_err(classify);
        self.health.note(&result);
        result
    }

    async fn record_work(
        &self,
        lease: Lease,
        done: &FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let recorded = self
            .recorder
            .submit(record::Outcome::Work {
                lease,
                done: done.clone(),
                after,
                expires_at,
            })
            .await?;
        if recorded && after == AfterWork::Wait {
            self.announcer.announce();
        }
        Ok(recorded)
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
        circuit: Option<&CircuitChange>,
    ) -> StoreResult<bool> {
        let announce = matches!(next, NextStep::RetryAt(_))
            || matches!(circuit, Some(CircuitChange::Close { .. }));
        let recorded = self
            .recorder
            .submit(record::Outcome::Attempt {
                lease,
                attempt: attempt.clone(),
                next: next.clone(),
                circuit: circuit.cloned(),
            })
            .await?;
        if recorded && announce {
            self.announcer.announce();
        }
        Ok(recorded)
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.engine_tx(move |c, _| Box::pin(jobs::release_lease(c, lease)))
            .await?;
        self.jobs.notify_one();
        self.announcer.announce();
        Ok(())
    }

    async fn defer_work(&self, lease: Lease, wait: std::time::Duration) -> StoreResult<()> {
        self.engine_tx(move |c, _| Box::pin(jobs::defer_work(c, lease, wait)))
            .await
    }

    async fn expire_deliveries(&self, limit: usize, reason: &str) -> StoreResult<u64> {
        let reason = reason.to_owned();
        self.engine_tx(move |c, d| {
            Box::pin(async move { jobs::expire(c, d, limit, &reason).await })
        })
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
        let n = self
            .engine_tx(move |c, d| {
                Box::pin(async move {
                    jobs::expire_works(c, d, limit, created_before, &reason, expire_after).await
                })
            })
            .await?;
        if n > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(n)
    }

    async fn adopt_legacy_jobs(&self, expire_after: Duration) -> StoreResult<u64> {
        let mut adopted = 0;
        loop {
            let n = self
                .engine_tx(move |c, _| Box::pin(jobs::adopt_legacy(c, 500, expire_after)))
                .await?;
            adopted += n;
            if n == 0 {
                return Ok(adopted);
            }
        }
    }

    async fn waiting_deliveries(&self, destination: i64, until: DateTime<Utc>) -> StoreResult<u64> {
        jobs::waiting_deliveries(&self.pool, destination, until)
            .await
            .map_err(classify)
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let circuits_open = jobs::circuits_open(&self.pool).await.map_err(classify)?;
        Ok(JobCounts {
            pending: self.counts.read().expect("counts lock").backlog(),
            circuits_open,
        })
    }

    async fn pending_works(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.work, count(*) FROM jobs j JOIN requests r ON r.id = j.request_id
             WHERE j.phase = 0 AND r.work IS NOT NULL AND r.work <> 'text' GROUP BY r.work",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e.into()))?;
        Ok(rows.into_iter().map(|(w, n)| (w, n as u64)).collect())
    }

    async fn backlog(&self, tenant: &str) -> StoreResult<(u64, u64)> {
        let counts = self.counts.read().expect("counts lock");
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
        // The backlog as admissions judge it: the kept counts' mirror (up to 1 s stale).
        let counts = self.counts.clone();
        let backlog = move |tenant: &str| {
            let counts = counts.read().expect("counts lock");
            (counts.backlog(), counts.backlog_of(tenant))
        };
        let done = self
            .tx(move |c, d| {
                Box::pin(async move {
                    let again = redeliver::Again {
                        expire_after,
                        limits,
                        backlog: &backlog,
                    };
                    redeliver::redeliver(c, d, id, &scope, again).await
                })
            })
            .await?;
        if done == Redelivery::Queued {
            self.jobs.notify_one();
            self.announcer.announce();
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
        let counts = self.counts.clone();
        let backlog = move |tenant: &str| {
            let counts = counts.read().expect("counts lock");
            (counts.backlog(), counts.backlog_of(tenant))
        };
        let done = self
            .tx(move |c, d| {
                Box::pin(async move {
                    let again = redeliver::Again {
                        expire_after,
                        limits,
                        backlog: &backlog,
                    };
                    redeliver::bulk_redeliver(c, d, tenant, since, again).await
                })
            })
            .await?;
        if done.redelivered > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(done)
    }

    async fn advance_bulk_redeliveries(
        &self,
        batch: usize,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let n = self
            .tx(move |c, d| Box::pin(redeliver::advance_bulk(c, d, batch, expire_after)))
            .await?;
        if n > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(n)
    }

    async fn callback_stats(
        &self,
        scope: &Scope,
        from_minute: i64,
    ) -> StoreResult<Vec<MinuteStats>> {
        let scope = scope.clone();
        self.tx(move |c, _| {
            Box::pin(async move { redeliver::callback_stats(c, &scope, from_minute).await })
        })
        .await
    }

    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats> {
        let mut stats = self
            .tx(move |c, d| Box::pin(housekeeping::sweep(c, d, keep_keys, abandon_sync)))
            .await?;
        stats.idle_destinations = housekeeping::forget_idle_destinations(&self.pool).await;
        Ok(stats)
    }

    async fn fail_interrupted_sync(&self, _starting: bool) -> StoreResult<u64> {
        self.tx(|c, d| Box::pin(instances::fail_interrupted(c, d)))
            .await
    }

    async fn prune(&self, cutoff: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.tx(move |c, d| Box::pin(housekeeping::prune(c, d, cutoff, limit)))
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
        self.tx(move |c, _| Box::pin(auth::ensure_signing_secret(c, tenant, candidate, at)))
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
        self.tx(move |c, _| {
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
