//! [`DestinationStore`] on PostgreSQL: destinations as a resource (SPEC §14).

use super::*;

#[async_trait]
impl DestinationStore for PgStore {
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
}
