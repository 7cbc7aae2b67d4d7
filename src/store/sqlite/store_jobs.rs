//! [`JobStore`] on SQLite — the engine's jobs: claims, leases, outcome records, expiry (SPEC §6–§8, §17).

use super::*;

#[async_trait]
impl JobStore for SqliteStore {
    async fn claim_due_jobs(&self, req: ClaimRequest) -> StoreResult<ClaimBatch> {
        self.writer
            .write_engine(move |b| claim::claim(b, &req))
            .await
    }

    async fn next_due_at(
        &self,
        at_cap: &[i64],
        works: &Served,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let (at_cap, works) = (at_cap.to_vec(), works.clone());
        let next = self
            .readers
            .read(move |c| claim::next_due_at(c, &at_cap, &works))
            .await?;
        next.map(from_millis).transpose()
    }

    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool> {
        self.writer
            .write_engine(move |b| ops::renew(b.conn, lease, lease_for))
            .await
    }

    async fn renew_leases(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        let leases = leases.to_vec();
        self.writer
            .write_engine(move |b| ops::renew_all(b.conn, &leases, lease_for))
            .await
    }

    async fn mark_processing(&self, lease: Lease, started_at: DateTime<Utc>) -> StoreResult<bool> {
        self.writer
            .write_engine(move |b| ops::mark_processing(b, lease, started_at))
            .await
    }

    async fn record_work(
        &self,
        lease: Lease,
        done: &FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let done = done.clone();
        self.writer
            .write_engine(move |b| ops::record_work(b, lease, &done, after, expires_at))
            .await
    }

    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
        circuit: Option<&CircuitChange>,
    ) -> StoreResult<bool> {
        let (attempt, next, circuit) = (attempt.clone(), next.clone(), circuit.cloned());
        self.writer
            .write_engine(move |b| ops::record_attempt(b, lease, &attempt, &next, circuit.as_ref()))
            .await
    }

    async fn release_lease(&self, lease: Lease) -> StoreResult<()> {
        self.writer
            .write_engine(move |b| ops::release(b.conn, lease))
            .await?;
        self.jobs.notify_one();
        Ok(())
    }

    async fn defer_work(&self, lease: Lease, wait: Duration) -> StoreResult<()> {
        self.writer
            .write_engine(move |b| ops::defer_work(b.conn, lease, wait))
            .await
    }

    async fn expire_deliveries(&self, limit: usize, reason: &str) -> StoreResult<u64> {
        let reason = reason.to_owned();
        self.writer
            .write_engine(move |b| ops::expire(b, limit, &reason))
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
        self.writer
            .write_engine(move |b| {
                ops::expire_works(b, limit, created_before, &reason, expire_after)
            })
            .await
    }

    async fn adopt_legacy_jobs(&self, expire_after: Duration) -> StoreResult<u64> {
        let mut adopted = 0;
        loop {
            let n = self
                .writer
                .write_engine(move |b| ops::adopt_legacy(b.conn, 500, expire_after))
                .await?;
            adopted += n;
            if n == 0 {
                return Ok(adopted);
            }
        }
    }

    async fn waiting_deliveries(&self, destination: i64, until: DateTime<Utc>) -> StoreResult<u64> {
        let until = until.timestamp_millis();
        self.readers
            .read(move |c| queries::waiting_deliveries(c, destination, until))
            .await
    }

    async fn job_counts(&self) -> StoreResult<JobCounts> {
        let now = current::now_ms();
        let circuits_open = self
            .readers
            .read(move |c| queries::circuits_open(c, now))
            .await?;
        Ok(JobCounts {
            pending: self.writer.counts().backlog(),
            circuits_open,
        })
    }

    async fn pending_works(&self) -> StoreResult<Vec<(String, u64)>> {
        self.readers.read(queries::pending_works).await
    }
}
