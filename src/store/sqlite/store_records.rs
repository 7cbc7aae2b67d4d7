//! [`RecordStore`] on SQLite: requests and their records — admission, idempotency, reads, redelivery and the chart (SPEC §2–§5, §11).

use super::*;

#[async_trait]
impl RecordStore for SqliteStore {
    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
        limits: AdmissionLimits,
    ) -> StoreResult<Admission> {
        let is_async = req.mode == Mode::Async;
        let admission = self
            .writer
            .write(move |b| admit::admit(b, req, claim, limits))
            .await?;
        if is_async && admission == Admission::Admitted {
            self.jobs.notify_one();
        }
        Ok(admission)
    }

    async fn idempotency_verdict(
        &self,
        claim: &IdempotencyClaim,
    ) -> StoreResult<Option<Admission>> {
        let claim = claim.clone();
        self.readers
            .read(move |c| admit::key_verdict(c, &claim))
            .await
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.writer
            .write(move |b| admit::finish_sync(b, id, done, key))
            .await
    }

    async fn get_request(&self, id: Uuid, scope: &Scope) -> StoreResult<Option<RequestRecord>> {
        let scope = scope.clone();
        let now = current::now_ms();
        self.readers
            .read(move |c| queries::get_request(c, id, &scope, now))
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
        self.readers
            .read(move |c| queries::attempts_after(c, id, &scope, after, limit))
            .await
    }

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page> {
        let filter = filter.clone();
        self.readers
            .read(move |c| queries::list_requests(c, &filter))
            .await
    }

    async fn backlog(&self, tenant: &str) -> StoreResult<(u64, u64)> {
        let counts = self.writer.counts();
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
        let done = self
            .writer
            .write(move |b| redeliver::redeliver(b, id, &scope, expire_after, limits))
            .await?;
        if done == Redelivery::Queued {
            self.jobs.notify_one();
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
        let since = since.timestamp_millis();
        let done = self
            .writer
            .write(move |b| {
                redeliver::bulk_redeliver(b, tenant.as_deref(), since, expire_after, limits)
            })
            .await?;
        if done.redelivered > 0 {
            self.jobs.notify_one();
        }
        Ok(done)
    }

    async fn advance_bulk_redeliveries(
        &self,
        batch: usize,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let n = self
            .writer
            .write(move |b| redeliver::advance_bulk(b, batch, expire_after))
            .await?;
        if n > 0 {
            self.jobs.notify_one();
        }
        Ok(n)
    }

    async fn callback_stats(
        &self,
        scope: &Scope,
        from_minute: i64,
    ) -> StoreResult<Vec<MinuteStats>> {
        let scope = scope.clone();
        self.readers
            .read(move |c| redeliver::callback_stats(c, &scope, from_minute))
            .await
    }
}
