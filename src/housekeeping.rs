//! Housekeeping (SPEC §12 "Retention", "Bounded maintenance"): the sweep of expired
//! idempotency keys, abandoned /sync records, old chart minutes and unused destinations,
//! and the pruning of terminal records older than `--retention`.
//!
//! Every step deletes in small batches, each one short write, so admissions queued
//! behind the writer are not held up; a pass goes on batch after batch until nothing old
//! is left.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::idempotency::KEEP_KEYS;
use crate::store::Store;
use crate::telemetry::metrics as m;

/// How often the sweep runs.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A /sync record still `processing` this long after its start lost its process.
const ABANDONED_SYNC: Duration = Duration::from_secs(600);
/// Most records one pruning batch deletes (SQLite's batches also stop after a
/// millisecond of the writer's time).
pub const PRUNE_BATCH: usize = 256;
/// The pause between two pruning batches: admissions get the writer for most of the
/// time, and a pass still deletes several thousand records a second (BENCHMARKS.md).
const PRUNE_PAUSE: Duration = Duration::from_millis(3);
/// How often bulk redeliveries (SPEC §11) are moved on, and how many callbacks a batch
/// queues.
const REDELIVER_EVERY: Duration = Duration::from_millis(500);
const REDELIVER_BATCH: usize = 500;

/// How often /sync records of instances gone silent are looked for (PostgreSQL; SPEC
/// §17: their heartbeat is older than 30 s).
const INTERRUPTED_EVERY: Duration = Duration::from_secs(5);

/// How often a heartbeat write is tried while writes fail (SPEC §9 "Readiness").
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How often retention passes run: every minute, or twice per retention period when
/// that is shorter (SPEC §12).
pub fn prune_every(retention: Duration) -> Duration {
    SWEEP_EVERY
        .min(retention / 2)
        .max(Duration::from_millis(500))
}

/// Runs the sweep, bulk redeliveries (their new deliveries expiring after
/// `expire_after`) and, with a `retention`, the pruning until `shutdown`.
pub async fn run(
    store: Arc<dyn Store>,
    retention: Option<Duration>,
    expire_after: Duration,
    shutdown: CancellationToken,
) {
    match retention {
        Some(keep) => tracing::info!(
            retention_secs = keep.as_secs(),
            cutoff = %(Utc::now() - keep),
            "retention: terminal records created before the cutoff are deleted"
        ),
        None => tracing::info!("retention: 0, every record is kept"),
    }
    let mut sweep = tokio::time::interval(SWEEP_EVERY);
    let mut prune = tokio::time::interval(retention.map_or(SWEEP_EVERY, prune_every));
    let mut redeliver = tokio::time::interval(REDELIVER_EVERY);
    let mut probe = tokio::time::interval(PROBE_EVERY);
    let mut interrupted = tokio::time::interval(INTERRUPTED_EVERY);
    for tick in [
        &mut sweep,
        &mut prune,
        &mut redeliver,
        &mut probe,
        &mut interrupted,
    ] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = sweep.tick() => sweep_once(store.as_ref()).await,
            _ = prune.tick(), if retention.is_some() => {
                let keep = retention.expect("guarded");
                prune_pass(store.as_ref(), keep, &shutdown).await;
            }
            _ = interrupted.tick() => fail_interrupted(store.as_ref(), &shutdown).await,
            _ = redeliver.tick() => redeliver_batches(store.as_ref(), expire_after, &shutdown).await,
            _ = probe.tick(), if !store.writes_healthy() => match store.probe_write().await {
                Ok(()) => tracing::info!("writes succeed again"),
                Err(e) => tracing::warn!(error = %e, "writes still fail"),
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Moves bulk redeliveries on, batch after batch, while there is something to do.
async fn redeliver_batches(
    store: &dyn Store,
    expire_after: Duration,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        match store
            .advance_bulk_redeliveries(REDELIVER_BATCH, expire_after)
            .await
        {
            Ok(0) => return,
            Ok(n) => tracing::info!(queued = n, "bulk redelivery: a batch queued"),
            Err(e) => {
                tracing::warn!(error = %e, "bulk redelivery: a batch failed; trying again soon");
                return;
            }
        }
    }
}

/// Fails the /sync records of instances whose heartbeat stopped, batch after batch.
async fn fail_interrupted(store: &dyn Store, shutdown: &CancellationToken) {
    while !shutdown.is_cancelled() {
        match store.fail_interrupted_sync(false).await {
            Ok(0) => return,
            Ok(n) => tracing::warn!(
                records = n,
                "/sync records of an instance gone silent set failed (interrupted)"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not fail interrupted /sync records");
                return;
            }
        }
    }
}

async fn sweep_once(store: &dyn Store) {
    match store.sweep(KEEP_KEYS, ABANDONED_SYNC).await {
        Ok(s) if s != Default::default() => tracing::info!(
            expired_keys = s.expired_keys,
            abandoned_sync = s.abandoned_sync,
            old_minutes = s.old_minutes,
            idle_destinations = s.idle_destinations,
            "swept"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "sweep failed"),
    }
}

/// Deletes terminal records older than `keep`, batch after batch, until none is left.
pub async fn prune_pass(store: &dyn Store, keep: Duration, shutdown: &CancellationToken) -> u64 {
    let cutoff = Utc::now() - keep;
    let mut pruned = 0;
    while !shutdown.is_cancelled() {
        match store.prune(cutoff, PRUNE_BATCH).await {
            Ok(n) => {
                pruned += n;
                metrics::counter!(m::PRUNED).increment(n);
                if n == 0 {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(PRUNE_PAUSE) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning failed; trying again at the next pass");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, cutoff = %cutoff, "old terminal records deleted");
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_run_every_minute_or_twice_per_retention() {
        assert_eq!(prune_every(Duration::from_secs(90 * 86_400)), SWEEP_EVERY);
        assert_eq!(prune_every(Duration::from_secs(10)), Duration::from_secs(5));
        assert_eq!(
            prune_every(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
