//! The durable job engine (SPEC §3): which job runs, and when.
//!
//! Jobs are rows. The dispatcher claims due jobs with a lease, as many as there are free
//! workers (`--workers`, a semaphore), and runs each in a task of its own ([`job`]).
//! When nothing is due it sleeps until the earliest due time (a retry's `run_at`, or a
//! lease that will expire), or until the store signals a new job, or for at most
//! `--job-poll-ms` (the fallback when no wake-up arrives): idle workers do not spin. A retry is a row with a later `run_at`, never a
//! sleeping task, so a restart resumes every pending job, running job and scheduled retry.
//!
//! On shutdown the dispatcher stops claiming; running jobs get the grace period to finish,
//! then are aborted and their leases released so another instance can take them at once.

mod job;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::SecretBook;
use crate::delivery::CallbackClient;
use crate::store::{Lease, Store};

/// Most jobs claimed in one statement.
const CLAIM_BATCH: usize = 64;

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
}

pub struct Engine {
    store: Arc<dyn Store>,
    client: CallbackClient,
    /// Each tenant's signing secrets, newest first (SPEC §10).
    secrets: Arc<SecretBook>,
    config: EngineConfig,
    /// Woken when a job may have become due (from the store) or a worker scheduled a retry.
    wake: Arc<Notify>,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        client: CallbackClient,
        secrets: Arc<SecretBook>,
        config: EngineConfig,
    ) -> Arc<Self> {
        let wake = store.job_signal();
        Arc::new(Self {
            store,
            client,
            secrets,
            config,
            wake,
        })
    }

    /// Claims and runs jobs until `shutdown` is cancelled, then drains.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let workers = Arc::new(Semaphore::new(self.config.workers));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut leases: HashMap<tokio::task::Id, Lease> = HashMap::new();
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
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
            match self
                .store
                .claim_due_jobs(free.min(CLAIM_BATCH), self.config.lease)
                .await
            {
                Ok(jobs) if !jobs.is_empty() => {
                    for claimed in jobs {
                        let permit = workers
                            .clone()
                            .try_acquire_owned()
                            .expect("claimed no more than the free workers");
                        let lease = claimed.lease;
                        let engine = self.clone();
                        let handle = running.spawn(async move {
                            engine.run_job(claimed).await;
                            drop(permit);
                        });
                        leases.insert(handle.id(), lease);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed; retrying");
                    metrics::counter!(crate::telemetry::metrics::DB_ERRORS, "op" => "claim")
                        .increment(1);
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
    }

    /// Time until the earliest job becomes claimable, at most the poll interval.
    async fn until_next_due(&self) -> Duration {
        match self.store.next_due_at().await {
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
