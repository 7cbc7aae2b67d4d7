//! [`HousekeepingStore`] on PostgreSQL: sweeps, interrupted /sync records, retention (SPEC §9, §16).

use super::*;

#[async_trait]
impl HousekeepingStore for PgStore {
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
}
