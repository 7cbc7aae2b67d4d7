//! The lease keeper (SPEC §16 "Leases are never lost by a healthy owner"): one task
//! renews the lease of every job running on this instance, all of them in one store
//! write every third of the lease, instead of one write per job.
//!
//! One write per period, whatever the number of running jobs, keeps renewals cheap
//! when hundreds of jobs wait for slow receivers; the store runs that write where
//! admissions cannot delay it (SQLite: the writer's engine lane; PostgreSQL: a
//! connection of its own). A renewal that fails is tried again soon, well before the
//! leases run out. A lease found lost is no longer renewed; its job learns it when it
//! records its progress (the store checks the lease there).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{Lease, Store, StoreResult};
use crate::telemetry::metrics as m;

/// What the keeper needs of the store: one write that extends many leases, answering
/// the requests whose lease is no longer ours.
pub(super) trait Renew: Send + Sync + 'static {
    fn renew(
        &self,
        leases: &[Lease],
        lease_for: Duration,
    ) -> impl Future<Output = StoreResult<Vec<Uuid>>> + Send;
}

impl Renew for Arc<dyn Store> {
    async fn renew(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        self.renew_leases(leases, lease_for).await
    }
}

/// The wait before a failed renewal is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The leases of this instance's running jobs.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<Uuid, Lease>>,
}

/// A lease in the keeper's care while its job runs; dropping it stops the renewals.
pub(super) struct Kept {
    leases: Arc<Leases>,
    lease: Lease,
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut held = self.leases.held.lock().expect("leases lock");
        if held
            .get(&self.lease.request_id)
            .is_some_and(|l| l.token == self.lease.token)
        {
            held.remove(&self.lease.request_id);
        }
    }
}

impl Leases {
    /// Keeps `lease` renewed until the returned guard is dropped.
    pub(super) fn keep(self: &Arc<Self>, lease: Lease) -> Kept {
        self.held
            .lock()
            .expect("leases lock")
            .insert(lease.request_id, lease);
        Kept {
            leases: self.clone(),
            lease,
        }
    }

    fn snapshot(&self) -> Vec<Lease> {
        let held = self.held.lock().expect("leases lock");
        held.values().copied().collect()
    }

    /// Stops renewing the leases of `lost` (those still held with the token tried).
    fn forget_lost(&self, tried: &[Lease], lost: &[Uuid]) {
        let mut held = self.held.lock().expect("leases lock");
        for id in lost {
            let token = tried.iter().find(|l| l.request_id == *id).map(|l| l.token);
            if held.get(id).map(|l| l.token) == token {
                held.remove(id);
            }
        }
    }

    /// Renews every held lease each `lease_for / 3` until `shutdown`.
    pub(super) async fn renew_forever(
        self: Arc<Self>,
        store: impl Renew,
        lease_for: Duration,
        shutdown: CancellationToken,
    ) {
        let period = lease_for / 3;
        let mut wait = period;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            let leases = self.snapshot();
            if leases.is_empty() {
                wait = period;
                continue;
            }
            match store.renew(&leases, lease_for).await {
                Ok(lost) => {
                    self.forget_lost(&leases, &lost);
                    wait = period;
                }
                Err(e) => {
                    metrics::counter!(m::DB_ERRORS, "op" => "renew").increment(1);
                    tracing::warn!(error = %e, leases = leases.len(), "lease renewal failed; retrying");
                    wait = RETRY_AFTER;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "leases_tests.rs"]
mod tests;
