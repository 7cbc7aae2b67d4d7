//! [`DestinationStore`] on SQLite: destinations as a resource (SPEC §14).

use super::*;

#[async_trait]
impl DestinationStore for SqliteStore {
    async fn list_destinations(&self, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>> {
        let q = q.clone();
        self.readers.read(move |c| destinations::list(c, &q)).await
    }

    async fn held_destinations(&self) -> StoreResult<Vec<i64>> {
        self.readers.read(destinations::held).await
    }

    async fn find_destination(
        &self,
        tenant: &str,
        origin: &str,
    ) -> StoreResult<Option<DestinationInfo>> {
        let (tenant, origin) = (tenant.to_owned(), origin.to_owned());
        self.readers
            .read(move |c| destinations::find(c, &tenant, &origin))
            .await
    }

    async fn change_destination(
        &self,
        tenant: &str,
        origin: &str,
        change: DestinationChange,
    ) -> StoreResult<Option<DestinationInfo>> {
        let (tenant, origin) = (tenant.to_owned(), origin.to_owned());
        let changed = self
            .writer
            .write(move |b| destinations::change(b.conn, &tenant, &origin, change))
            .await?;
        self.jobs.notify_one();
        Ok(changed)
    }
}
