//! [`JobStore`] on PostgreSQL — the engine's jobs: claims, leases, outcome records, expiry (SPEC §6–§8, §17).

use super::*;

#[async_trait]
impl JobStore for PgStore {
    async fn claim_due_jobs(&self, req: ClaimRequest) -> StoreResult<ClaimBatch> {
        self.engine_tx(move |c, d| Box::pin(async move { claim::claim(c, d, &req).await }))
            .await
    }

    async fn next_due_at(
        &self,
        at_cap: &[i64],
        works: &Served,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut c = self
            .engine
            .acquire()
            .await
            .map_err(|e| classify(e.into()))?;
        claim::next_due_at(&mut c, at_cap, works)
            .await
            .map_err(classify)
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        jobs::renew_lease(&self.engine, lease, lease_for)
            .await
            .map_err(classify)
    }

    async fn renew_leases(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        let result = async {
            let mut c = self.leases.acquire().await?;
            jobs::renew_leases(&mut c, leases, lease_for).await
        }
        .await
        .map_err(classify);
        self.health.note(&result);
        result
    }

    /// Reached only for a record the claim left `pending` (see `ClaimedJob::marked_processing`):
    /// the claim marks them all here, one statement per claim.
    async fn mark_processing(&self, lease: Lease, started_at: DateTime<Utc>) -> StoreResult<bool> {
        self.engine_tx(move |c, d| Box::pin(requests::mark_processing(c, d, lease, started_at)))
            .await
    }

    async fn record_work(
        &self,
        lease: Lease,
        done: &FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let recorded = self
            .recorder
            .submit(record::Outcome::Work {
                lease,
                done: done.clone(),
                after,
                expires_at,
            })
            .await?;
        if recorded && after == AfterWork::Wait {
            self.announcer.announce();
        }
        Ok(recorded)
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
        circuit: Option<&CircuitChange>,
    ) -> StoreResult<bool> {
        let announce = matches!(next, NextStep::RetryAt(_))
            || matches!(circuit, Some(CircuitChange::Close { .. }));
        let recorded = self
            .recorder
            .submit(record::Outcome::Attempt {
                lease,
                attempt: attempt.clone(),
                next: next.clone(),
                circuit: circuit.cloned(),
            })
            .await?;
        if recorded && announce {
            self.announcer.announce();
        }
        Ok(recorded)
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.engine_tx(move |c, _| Box::pin(jobs::release_lease(c, lease)))
            .await?;
        self.jobs.notify_one();
        self.announcer.announce();
        Ok(())
    }

    async fn defer_work(&self, lease: Lease, wait: std::time::Duration) -> StoreResult<()> {
        self.engine_tx(move |c, _| Box::pin(jobs::defer_work(c, lease, wait)))
            .await
    }

    async fn expire_deliveries(&self, limit: usize, reason: &str) -> StoreResult<u64> {
        let reason = reason.to_owned();
        self.engine_tx(move |c, d| {
            Box::pin(async move { jobs::expire(c, d, limit, &reason).await })
        })
        .await
    }

    async fn expire_works(
        &self,
        limit: usize,
        created_before: DateTime<Utc>,
        reason: &str,
        expire_after: Duration,
    ) -> StoreResult<u64> {
        let reason = reason.to_owned();
        let n = self
            .engine_tx(move |c, d| {
                Box::pin(async move {
                    jobs::expire_works(c, d, limit, created_before, &reason, expire_after).await
                })
            })
            .await?;
        if n > 0 {
            self.jobs.notify_one();
            self.announcer.announce();
        }
        Ok(n)
    }

    async fn adopt_legacy_jobs(&self, expire_after: Duration) -> StoreResult<u64> {
        let mut adopted = 0;
        loop {
            let n = self
                .engine_tx(move |c, _| Box::pin(jobs::adopt_legacy(c, 500, expire_after)))
                .await?;
            adopted += n;
            if n == 0 {
                return Ok(adopted);
            }
        }
    }

    async fn waiting_deliveries(&self, destination: i64, until: DateTime<Utc>) -> StoreResult<u64> {
        jobs::waiting_deliveries(&self.pool, destination, until)
            .await
            .map_err(classify)
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let circuits_open = jobs::circuits_open(&self.pool).await.map_err(classify)?;
        Ok(JobCounts {
            pending: self.counts.read().expect("counts lock").backlog(),
            circuits_open,
        })
    }

    async fn pending_works(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT r.work, count(*) FROM jobs j JOIN requests r ON r.id = j.request_id
             WHERE j.phase = 0 AND r.work IS NOT NULL AND r.work <> 'text' GROUP BY r.work",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e.into()))?;
        Ok(rows.into_iter().map(|(w, n)| (w, n as u64)).collect())
    }
}
