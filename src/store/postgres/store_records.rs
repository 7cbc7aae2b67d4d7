//! [`RecordStore`] on PostgreSQL: requests and their records — admission, idempotency, reads, redelivery and the chart (SPEC §2–§5, §11).

use super::*;

#[async_trait]
impl RecordStore for PgStore {
    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
        limits: AdmissionLimits,
    ) -> StoreResult<Admission> {
        let is_async = req.mode == Mode::Async;
        if let Some(refusal) = self.refusal(&req, limits) {
            // A replay is answered even when the backlog is full.
            let Some(claim) = claim else {
                return Ok(refusal);
            };
            let replay = self
                .tx(move |c, _| Box::pin(async move { requests::replay_of(c, &claim).await }))
                .await?;
            return Ok(replay.unwrap_or(refusal));
        }
        let admission = self.insert(req, claim).await?;
        if is_async && admission == Admission::Admitted {
            // Our own engine need not wait for the NOTIFY to come back round.
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(admission)
    }

    async fn idempotency_verdict(
        &self,
        claim: &IdempotencyClaim,
    ) -> StoreResult<Option<Admission>> {
        let mut c = self.pool.acquire().await.map_err(|e| classify(e.into()))?;
        requests::replay_of(&mut c, claim).await.map_err(classify)
    }

    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
    ) -> StoreResult<()> {
        self.tx(move |c, d| Box::pin(requests::finish_sync(c, d, id, done, key)))
            .await
    }

    async fn get_request(&self, id: Uuid, scope: &Scope) -> StoreResult<Option<RequestRecord>> {
        let scope = scope.clone();
        self.tx(move |c, _| Box::pin(async move { reads::get(c, id, &scope).await }))
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
        self.tx(move |c, _| {
            Box::pin(async move { reads::attempts_after(c, id, &scope, after, limit).await })
        })
        .await
    }

    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page> {
        let filter = filter.clone();
        self.tx(move |c, _| Box::pin(reads::list(c, filter))).await
    }

    async fn backlog(&self, tenant: &str) -> StoreResult<(u64, u64)> {
        Ok(backlog_of(self.counts.clone())(tenant))
    }

    async fn redeliver(
        &self,
        id: Uuid,
        scope: &Scope,
        expire_after: Duration,
        limits: RedeliveryLimits,
    ) -> StoreResult<Redelivery> {
        let scope = scope.clone();
        let backlog = backlog_of(self.counts.clone());
        let done = self
            .tx(move |c, d| {
                Box::pin(async move {
                    let again = redeliver::Again {
                        expire_after,
                        limits,
                        backlog: &backlog,
                    };
                    redeliver::redeliver(c, d, id, &scope, again).await
                })
            })
            .await?;
        if done == Redelivery::Queued {
            self.jobs.notify_one();
            self.announcer.announce();
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
        let backlog = backlog_of(self.counts.clone());
        let done = self
            .tx(move |c, d| {
                Box::pin(async move {
                    let again = redeliver::Again {
                        expire_after,
                        limits,
                        backlog: &backlog,
                    };
                    redeliver::bulk_redeliver(c, d, tenant, since, again).await
                })
            })
            .await?;
        if done.redelivered > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(done)
    }

    async fn advance_bulk_redeliveries(
        &self,
        batch: usize,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let n = self
            .tx(move |c, d| Box::pin(redeliver::advance_bulk(c, d, batch, expire_after)))
            .await?;
        if n > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(n)
    }

    async fn callback_stats(
        &self,
        scope: &Scope,
        from_minute: i64,
    ) -> StoreResult<Vec<MinuteStats>> {
        let scope = scope.clone();
        self.tx(move |c, _| {
            Box::pin(async move { redeliver::callback_stats(c, &scope, from_minute).await })
        })
        .await
    }
}

/// The backlog as admissions judge it, all and `tenant`'s: the kept counts' mirror (up to
/// 1 s stale, SPEC §9).
fn backlog_of(counts: Arc<RwLock<CountsMirror>>) -> impl Fn(&str) -> (u64, u64) + Send + Sync {
    move |tenant| {
        let counts = counts.read().expect("counts lock");
        (counts.backlog(), counts.backlog_of(tenant))
    }
}
