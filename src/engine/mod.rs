//! The durable job engine (SPEC §3, §8): which job runs, and when.
//!
//! Jobs are rows. The dispatcher claims due jobs with a lease, as many as there are free
//! workers (`--workers`, a semaphore), fairly across destinations, and runs each in a task
//! of its own as a [`job::JobRun`]: the job and the engine it runs in, whose steps are the
//! work ([`job`]) and one delivery attempt ([`attempt`]). [`destinations`] keeps this instance's adaptive limit
//! ([`limit`]) and circuit view of each destination; a job that may not attempt now goes back to its queue without
//! holding a worker.
//! When nothing is due it sleeps until the earliest due time (a retry's `run_at`, or a
//! lease that will expire), or until the store signals a new job, or for at most
//! `--job-poll-ms` (the fallback when no wake-up arrives): idle workers do not spin. A retry is a row with a later `run_at`, never a
//! sleeping task, so a restart resumes every pending job, running job and scheduled retry.
//!
//! When the store fails, the dispatcher backs off (doubling, up to a few seconds) instead
//! of retrying in a loop. A sweeper ends deliveries that outlived
//! `--callback-expire-after-secs` (SPEC §8 "Every delivery still ends").
//!
//! On shutdown the dispatcher stops claiming; running jobs get the grace period to finish,
//! then are aborted and their leases released so another instance can take them at once.

mod attempt;
pub mod destinations;
mod job;
mod leases;
pub mod limit;
/// A job's seat in the delivery pool, given back during a work's upstream calls.
mod seat;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::SecretBook;
use crate::delivery::CallbackClient;
use crate::store::{ClaimRequest, Lease, Served, Store};
use crate::telemetry::metrics as m;
use destinations::Destinations;

/// Most jobs claimed in one claim.
const CLAIM_BATCH: usize = 128;
/// How often deliveries past their expiry are looked for (SPEC §8: ended within 1 s).
const EXPIRY_EVERY: Duration = Duration::from_millis(250);
/// Most deliveries one expiry pass ends.
const EXPIRY_BATCH: usize = 500;
/// First wait after the store failed; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The engine's settings, from [`Config`](crate::config::Config).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub workers: usize,
    pub lease: Duration,
    pub work_delay: Duration,
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub shutdown_grace: Duration,
    /// Longest idle sleep: the fallback when no signal arrives (a lost wake-up).
    pub poll: Duration,
    /// `--callback-min-in-flight-per-destination`.
    pub min_in_flight_per_destination: u32,
    /// `--callback-max-in-flight-per-destination`.
    pub max_in_flight_per_destination: u32,
    /// `--callback-breaker-cooldown-ms`.
    pub breaker_cooldown: Duration,
    /// `--callback-expire-after-secs`.
    pub expire_after: Duration,
    /// The works this instance runs (SPEC §13).
    pub works: Arc<crate::works::Registry>,
    /// `--work-workers`: upstream calls of works at once (SPEC §17 "Two pools").
    pub work_workers: usize,
}

pub struct Engine {
    store: Arc<dyn Store>,
    client: CallbackClient,
    /// Each tenant's signing secrets, newest first (SPEC §10).
    secrets: Arc<SecretBook>,
    config: EngineConfig,
    /// Woken when a job may have become due (from the store) or a worker scheduled a retry.
    wake: Arc<Notify>,
    /// Caps and circuits as this instance sees them.
    destinations: Mutex<Destinations>,
    /// `--workers`: the delivery pool. A job in the phase of a named work gives its seat
    /// back while it waits for and makes upstream calls (see [`seat`]).
    workers: Arc<Semaphore>,
    /// Jobs of named works that gave their seat back; at most twice the work pool.
    work_jobs: std::sync::atomic::AtomicUsize,
    /// The leases of the jobs running here, renewed together.
    leases: Arc<leases::Leases>,
    /// The works this instance has (SPEC §17): it claims only their work-phase jobs.
    served: Served,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        client: CallbackClient,
        secrets: Arc<SecretBook>,
        config: EngineConfig,
    ) -> Arc<Self> {
        let wake = store.job_signal();
        let bounds = limit::Bounds::new(
            config.min_in_flight_per_destination,
            config.max_in_flight_per_destination,
            config.workers,
        );
        let destinations = Destinations::new(bounds, config.breaker_cooldown);
        let served = Served::Only(config.works.names().map(str::to_owned).collect());
        Arc::new(Self {
            store,
            client,
            secrets,
            wake,
            destinations: Mutex::new(destinations),
            workers: Arc::new(Semaphore::new(config.workers)),
            work_jobs: Default::default(),
            config,
            leases: Arc::default(),
            served,
        })
    }

    /// `destination`'s in-flight limit and attempts running here now.
    pub fn destination_view(&self, destination: i64) -> (u32, u32) {
        let book = self.destinations();
        (book.limit(destination), book.in_flight(destination))
    }

    fn destinations(&self) -> std::sync::MutexGuard<'_, Destinations> {
        self.destinations.lock().expect("destinations lock")
    }

    /// What the next claim may take: the free workers, and each busy destination's slots.
    fn claim_request(&self, free: usize, work_after: i64) -> ClaimRequest {
        let book = self.destinations();
        ClaimRequest {
            limit: free.min(CLAIM_BATCH),
            lease_for: self.config.lease,
            cap: book.cap(),
            slots_left: book.slots_left(),
            work_after,
            works: self.served.clone(),
        }
    }

    /// Jobs stored by an earlier version get their destination before anything is claimed.
    async fn adopt_legacy_jobs(&self) {
        match self.store.adopt_legacy_jobs(self.config.expire_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                jobs = n,
                "jobs of an earlier version given their destination"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not adopt the jobs of an earlier version; retried at the next start")
            }
        }
    }

    /// Ends deliveries past their expiry, every [`EXPIRY_EVERY`], until shutdown; reads
    /// the paused and rate-limited destinations as often (a pause holds on every
    /// instance within 1 s).
    async fn expire_forever(self: Arc<Self>, shutdown: CancellationToken) {
        let reason = format!(
            "expired: not delivered within {} s of the end of its work or of its last redelivery",
            self.config.expire_after.as_secs()
        );
        let mut tick = tokio::time::interval(EXPIRY_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            match self.store.held_destinations().await {
                Ok(held) => self.destinations().set_held(held),
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the paused and rate-limited destinations")
                }
            }
            self.expire_works().await;
            match self.store.expire_deliveries(EXPIRY_BATCH, &reason).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!(m::CALLBACK_ATTEMPTS, "outcome" => "expired").increment(n);
                    tracing::warn!(deliveries = n, "deliveries expired");
                }
                Err(e) => {
                    metrics::counter!(m::DB_ERRORS, "op" => "expire").increment(1);
                    tracing::warn!(error = %e, "could not expire deliveries");
                }
            }
        }
    }

    /// Fails the work-phase jobs created more than `--callback-expire-after-secs` ago
    /// that no worker holds (SPEC §17), whichever instance has their work; their failure
    /// callbacks become due at once.
    async fn expire_works(&self) {
        let after = self.config.expire_after;
        let reason = format!(
            "expired: work not finished within {} s of the request's creation",
            after.as_secs()
        );
        let Ok(age) = chrono::TimeDelta::from_std(after) else {
            return;
        };
        let before = Utc::now() - age;
        match self
            .store
            .expire_works(EXPIRY_BATCH, before, &reason, after)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(jobs = n, "works expired before they ended");
                self.wake.notify_one();
            }
            Err(e) => {
                metrics::counter!(m::DB_ERRORS, "op" => "expire").increment(1);
                tracing::warn!(error = %e, "could not expire works");
            }
        }
    }

    /// Claims and runs jobs until `shutdown` is cancelled, then drains.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let workers = self.workers.clone();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut leases: HashMap<tokio::task::Id, Lease> = HashMap::new();
        self.adopt_legacy_jobs().await;
        let expiry = tokio::spawn(self.clone().expire_forever(shutdown.clone()));
        // Stopped only after the drain: jobs finishing in the grace period keep theirs.
        let keeper_stop = CancellationToken::new();
        let keeper = tokio::spawn(self.leases.clone().renew_forever(
            self.store.clone(),
            self.config.lease,
            keeper_stop.clone(),
        ));
        let mut work_after = i64::MIN;
        let mut backoff = MIN_BACKOFF;
        tracing::info!(workers = self.config.workers, "job engine started");
        while !shutdown.is_cancelled() {
            while let Some(done) = running.try_join_next_with_id() {
                forget(&mut leases, done);
            }
            // Registered before looking for work, so a signal sent meanwhile is not lost.
            let signalled = self.wake.notified();
            tokio::pin!(signalled);
            signalled.as_mut().enable();

            let free = workers.available_permits();
            if free == 0 {
                tokio::select! {
                    Some(done) = running.join_next_with_id() => forget(&mut leases, done),
                    // A job in a work's upstream call gave its seat back.
                    _ = signalled.as_mut() => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            let request = self.claim_request(free, work_after);
            match self.store.claim_due_jobs(request).await {
                Ok(batch) if !batch.jobs.is_empty() => {
                    backoff = MIN_BACKOFF;
                    work_after = batch.work_after;
                    self.start_jobs(batch.jobs, &mut running, &mut leases).await;
                    continue;
                }
                Ok(batch) => {
                    backoff = MIN_BACKOFF;
                    work_after = batch.work_after;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claiming jobs failed; backing off");
                    metrics::counter!(m::DB_ERRORS, "op" => "claim").increment(1);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            let nap = self.until_next_due().await;
            tokio::select! {
                _ = signalled => {}
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        self.drain(running, leases).await;
        keeper_stop.cancel();
        let _ = keeper.await;
        let _ = expiry.await;
    }

    /// Runs each claimed job on a seat of the delivery pool, noting its lease by task.
    async fn start_jobs(
        self: &Arc<Self>,
        jobs: Vec<crate::store::ClaimedJob>,
        running: &mut JoinSet<()>,
        leases: &mut HashMap<tokio::task::Id, Lease>,
    ) {
        for claimed in jobs {
            // A job back from a work's upstream may have taken a seat since.
            let permit = match self.workers.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => (self.workers.clone().acquire_owned().await).expect("never closed"),
            };
            let lease = claimed.lease;
            let engine = self.clone();
            let handle = running.spawn(seat::SEAT.scope(
                std::cell::RefCell::new(Some(permit)),
                async move {
                    let _running = Running::start();
                    engine.run_job(claimed).await;
                },
            ));
            leases.insert(handle.id(), lease);
        }
    }

    /// Time until the earliest job becomes claimable, at most the poll interval.
    async fn until_next_due(&self) -> Duration {
        let at_cap = self.destinations().at_cap();
        match self.store.next_due_at(&at_cap, &self.served).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(self.config.poll),
            Ok(None) => self.config.poll,
            Err(_) => Duration::from_millis(500),
        }
    }

    /// Lets running jobs finish within the grace period, then aborts the rest and gives
    /// their jobs back.
    async fn drain(&self, mut running: JoinSet<()>, mut leases: HashMap<tokio::task::Id, Lease>) {
        let grace = self.config.shutdown_grace;
        tracing::info!(
            running = running.len(),
            grace_secs = grace.as_secs(),
            "job engine draining"
        );
        let finish_all = async {
            while let Some(done) = running.join_next_with_id().await {
                forget(&mut leases, done);
            }
        };
        if tokio::time::timeout(grace, finish_all).await.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            for lease in leases.values() {
                if let Err(e) = self.store.release_lease(*lease).await {
                    tracing::warn!(request_id = %lease.request_id, error = %e, "could not release a lease; it will expire");
                }
            }
            tracing::info!(released = leases.len(), "unfinished jobs released");
        }
        tracing::info!("job engine stopped");
    }
}

/// Counts a job in `consuma_jobs{state="processing"}` while it runs here (also when it
/// is aborted at shutdown).
struct Running;

impl Running {
    fn start() -> Self {
        metrics::gauge!(m::JOBS, "state" => "processing").increment(1.0);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        metrics::gauge!(m::JOBS, "state" => "processing").decrement(1.0);
    }
}

fn forget(
    leases: &mut HashMap<tokio::task::Id, Lease>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            if e.is_panic() {
                tracing::error!(error = %e, "a job task panicked; its lease will expire and the job run again");
            }
            e.id()
        }
    };
    leases.remove(&id);
}
