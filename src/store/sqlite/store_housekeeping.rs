//! [`HousekeepingStore`] on SQLite: sweeps, interrupted /sync records, retention (SPEC §9, §16).

use super::*;

#[async_trait]
impl HousekeepingStore for SqliteStore {
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
}
