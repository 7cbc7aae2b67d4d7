//! The lease keeper (SPEC §16 "Leases are never lost by a healthy owner"): one task
//! renews the lease of every job running on this instance, all of them in one store
//! write every third of the lease, instead of one write per job.
//!
//! One write per period, whatever the number of running jobs, keeps renewals cheap
//! when hundreds of jobs wait for slow receivers; the store runs that write where
//! admissions cannot delay it (SQLite: the writer's engine lane; PostgreSQL: a
//! connection of its own). A renewal that fails is tried again soon, well before the
//! leases run out; a job whose lease is found lost hears it at once and stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::{Lease, Store};
use crate::telemetry::metrics as m;

/// The wait before a failed renewal is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The leases of this instance's running jobs, each with the signal its job stops on.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<Uuid, (Lease, CancellationToken)>>,
}

/// A lease in the keeper's care while its job runs; dropping it stops the renewals.
pub(super) struct Kept {
    leases: Arc<Leases>,
    lease: Lease,
    lost: CancellationToken,
}

impl Kept {
    /// Resolves when the keeper found the lease taken by another worker.
    pub(super) async fn lost(&self) {
        self.lost.cancelled().await
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut held = self.leases.held.lock().expect("leases lock");
        if held
            .get(&self.lease.request_id)
            .is_some_and(|(l, _)| l.token == self.lease.token)
        {
            held.remove(&self.lease.request_id);
        }
    }
}

impl Leases {
    /// Keeps `lease` renewed until the returned guard is dropped.
    pub(super) fn keep(self: &Arc<Self>, lease: Lease) -> Kept {
        let lost = CancellationToken::new();
        self.held
            .lock()
            .expect("leases lock")
            .insert(lease.request_id, (lease, lost.clone()));
        Kept {
            leases: self.clone(),
            lease,
            lost,
        }
    }

    fn snapshot(&self) -> Vec<Lease> {
        let held = self.held.lock().expect("leases lock");
        held.values().map(|(lease, _)| *lease).collect()
    }

    /// Tells the jobs of `lost` (still held with the token renewed) to stop.
    fn mark_lost(&self, renewed: &[Lease], lost: &[Uuid]) {
        let held = self.held.lock().expect("leases lock");
        for id in lost {
            let token = renewed
                .iter()
                .find(|l| l.request_id == *id)
                .map(|l| l.token);
            if let Some((lease, signal)) = held.get(id)
                && Some(lease.token) == token
            {
                signal.cancel();
            }
        }
    }

    /// Renews every held lease each `lease_for / 3` until `shutdown`.
    pub(super) async fn renew_forever(
        self: Arc<Self>,
        store: Arc<dyn Store>,
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
            match store.renew_leases(&leases, lease_for).await {
                Ok(lost) => {
                    self.mark_lost(&leases, &lost);
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
