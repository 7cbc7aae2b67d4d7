//! The store's roles: the [`Store`](super::Store) trait is their sum. Each method is one
//! transaction.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;

/// Destinations as a resource (SPEC §14).
#[async_trait]
pub trait DestinationStore: Send + Sync {
    /// A page of destinations in (tenant, origin) order.
    async fn list_destinations(&self, q: &DestinationQuery) -> StoreResult<Vec<DestinationInfo>>;

    /// Destinations whose attempts must all go through a claim: paused, or rate limited.
    async fn held_destinations(&self) -> StoreResult<Vec<i64>>;

    /// The destination `(tenant, origin)`, if it exists.
    async fn find_destination(
        &self,
        tenant: &str,
        origin: &str,
    ) -> StoreResult<Option<DestinationInfo>>;

    /// Applies `change` to the destination `(tenant, origin)`; `None` if it does not
    /// exist. A pause starts (or ends, adding its length to the paused total) here.
    async fn change_destination(
        &self,
        tenant: &str,
        origin: &str,
        change: DestinationChange,
    ) -> StoreResult<Option<DestinationInfo>>;
}

/// Requests and their records: admission, idempotency, reads, redelivery and the chart (SPEC §2–§5, §11).
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Stores a new request — for `Mode::Async` with its job, due now, unless `limits`
    /// refuse it — together with its idempotency claim, in one transaction; or reports
    /// why the key or the limits forbid it. A replay is answered even when the backlog
    /// is full.
    async fn admit(
        &self,
        req: NewRequest,
        claim: Option<IdempotencyClaim>,
        limits: AdmissionLimits,
    ) -> StoreResult<Admission>;

    /// What the stored key of `claim` says, read without writing (SPEC §17 "Routes, in
    /// order": the idempotency look-up comes before a slot of `max_in_flight`): a replay,
    /// a key still in flight or reused with other input, or `None` (no key, or one whose
    /// first holder died). [`Store::admit`] decides again under its transaction.
    async fn idempotency_verdict(&self, claim: &IdempotencyClaim)
    -> StoreResult<Option<Admission>>;

    /// Ends a /sync request: stores its outcome and, with a key, the response to replay
    /// (`Some`) or the release of the key (`None`: only successes are kept). The key is
    /// `(tenant, scope, key)`.
    async fn finish_sync(
        &self,
        id: Uuid,
        done: FinishedWork,
        key: Option<(IdempotencyClaim, Option<StoredResponse>)>,
    ) -> StoreResult<()>;

    /// The record, if it exists and `scope` sees it.
    async fn get_request(&self, id: Uuid, scope: &Scope) -> StoreResult<Option<RequestRecord>>;

    /// Up to `limit` attempts of the request numbered after `after`, in order; `None`
    /// when the request does not exist or `scope` does not see it.
    async fn attempts_after(
        &self,
        id: Uuid,
        scope: &Scope,
        after: u32,
        limit: usize,
    ) -> StoreResult<Option<Vec<AttemptRecord>>>;

    /// One page, newest first, with the exact number of matching records (kept counts,
    /// never counted at request time).
    async fn list_requests(&self, filter: &ListFilter) -> StoreResult<Page>;

    /// The backlog as the admission limits see it: (all tenants, this tenant).
    async fn backlog(&self, tenant: &str) -> StoreResult<(u64, u64)>;

    /// Puts a terminal async callback back to `pending` with a new delivery due now: same
    /// body, a fresh attempt budget, expiring `expire_after` from now, its first attempt
    /// marked manual.
    /// Refused (nothing changed) when `limits` say so: the backlog as for POST /async,
    /// and the request's redeliveries so far (SPEC §16).
    async fn redeliver(
        &self,
        id: Uuid,
        scope: &Scope,
        expire_after: Duration,
        limits: RedeliveryLimits,
    ) -> StoreResult<Redelivery>;

    /// Redelivers now, oldest first, up to [`BULK_REDELIVERY_MOST`] failed callbacks of
    /// `tenant` (`None`: all tenants) whose request was created at or after `since`,
    /// within `limits` (the backlog's headroom; requests redelivered
    /// `--max-redeliveries` times are left out). Its cost grows with what it queues, not
    /// with the failed records (SPEC §16).
    async fn bulk_redeliver(
        &self,
        tenant: Option<String>,
        since: DateTime<Utc>,
        expire_after: Duration,
        limits: RedeliveryLimits,
    ) -> StoreResult<BulkRedelivery>;

    /// Redelivers up to `batch` callbacks of the oldest bulk redelivery not yet done;
    /// returns how many it queued (0 when there is nothing to do).
    async fn advance_bulk_redeliveries(
        &self,
        batch: usize,
        expire_after: Duration,
    ) -> StoreResult<u64>;

    /// Callbacks that ended per minute, from `from_minute` (Unix minutes) on, in `scope`.
    async fn callback_stats(
        &self,
        scope: &Scope,
        from_minute: i64,
    ) -> StoreResult<Vec<MinuteStats>>;
}

/// The engine's jobs: claims, leases, outcome records, expiry (SPEC §6–§8, §17).
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Leases due jobs fairly across destinations (SPEC §8), at most `req.limit`. On
    /// PostgreSQL it also marks the requests of work-phase jobs `processing`; on SQLite
    /// that waits for [`JobStore::mark_processing`].
    async fn claim_due_jobs(&self, req: ClaimRequest) -> StoreResult<ClaimBatch>;

    /// The earliest time a job may become claimable: a work-phase job of a work in
    /// `works`, or a delivery of a destination not in `at_cap` (blocked destinations count
    /// from their block's end).
    async fn next_due_at(
        &self,
        at_cap: &[i64],
        works: &Served,
    ) -> StoreResult<Option<DateTime<Utc>>>;

    /// Extends a lease; `false` when it is no longer ours.
    async fn renew_lease(&self, lease: Lease, lease_for: Duration) -> StoreResult<bool>;

    /// Extends every lease of `leases` in one write (the engine's lease keeper); returns
    /// the requests whose lease is no longer ours. Never waits behind admissions: on
    /// SQLite it is an engine-lane write, on PostgreSQL it has a connection of its own.
    async fn renew_leases(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>>;

    /// Marks the request of a work-phase job `processing` (started at `started_at`) if it
    /// is still `pending` and the lease holds; `false` when the lease is lost. The engine
    /// calls it once a work has run for 50 ms, for a job whose claim left the record
    /// `pending` (`ClaimedJob::marked_processing`). On SQLite every claim does, so a faster
    /// work's record is written once, at its end: the single writer is the limit there,
    /// and this write was a seventh of its time per job. On PostgreSQL the claim marks
    /// its records itself, one statement for all its jobs: a write per job cost more CPU
    /// there than it saved (BENCHMARKS.md, fifth stop).
    async fn mark_processing(&self, lease: Lease, started_at: DateTime<Utc>) -> StoreResult<bool>;

    /// Stores the end of the work and moves the job to its delivery phase, expiring at
    /// `expires_at`; `false` (and nothing stored) when the lease is lost.
    async fn record_work(
        &self,
        lease: Lease,
        done: &FinishedWork,
        after: AfterWork,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Stores a delivery attempt, applies `next` and the circuit change it caused;
    /// `false` when the lease is lost.
    async fn record_attempt(
        &self,
        lease: Lease,
        attempt: &AttemptRecord,
        next: &NextStep,
        circuit: Option<&CircuitChange>,
    ) -> StoreResult<bool>;

    /// Gives a job back, claimable at once (shutdown).
    async fn release_lease(&self, lease: Lease) -> StoreResult<()>;

    /// Gives a job in its work phase back, claimable after `wait`, spending no attempt: its
    /// work is at `max_in_flight` here (SPEC §13 "Isolation": a job over it waits holding
    /// no worker and no lease).
    async fn defer_work(&self, lease: Lease, wait: std::time::Duration) -> StoreResult<()>;

    /// Ends (`failed`, `callback_last_error` = `reason(expires_at)`) up to `limit`
    /// deliveries whose time ran out and that have no attempt running; returns how many.
    async fn expire_deliveries(&self, limit: usize, reason: &str) -> StoreResult<u64>;

    /// Ends up to `limit` work-phase jobs of requests created before `created_before`
    /// that no worker holds (SPEC §17: the delivery's expiry bounds the work phase,
    /// counted from creation): the request fails with `reason` and its failure callback
    /// is due at once, expiring `expire_after` from now. Returns how many.
    async fn expire_works(
        &self,
        limit: usize,
        created_before: DateTime<Utc>,
        reason: &str,
        expire_after: Duration,
    ) -> StoreResult<u64>;

    /// Gives jobs made before destinations existed their destination, phase and expiry.
    async fn adopt_legacy_jobs(&self, expire_after: Duration) -> StoreResult<u64>;

    /// Deliveries of `destination` waiting (not running) with a due time before `until`:
    /// what an opening circuit postpones.
    async fn waiting_deliveries(&self, destination: i64, until: DateTime<Utc>) -> StoreResult<u64>;

    /// Backlog and circuits, for /metrics: kept counts, never a scan.
    async fn job_counts(&self) -> StoreResult<JobCounts>;

    /// Jobs whose work has not ended, by the work their request names (`text` and records
    /// made before works excluded): read once at start (SPEC §17 "Instances with
    /// different files").
    async fn pending_works(&self) -> StoreResult<Vec<(String, u64)>>;
}

/// Housekeeping: sweeps, interrupted /sync records, retention (SPEC §9, §16).
#[async_trait]
pub trait HousekeepingStore: Send + Sync {
    /// Forgets idempotency keys older than `keep_keys`, closes /sync requests stuck in
    /// `processing` for longer than `abandon_sync` (their process died mid-work), drops
    /// chart minutes older than two hours and unused destinations; each in bounded
    /// batches.
    async fn sweep(&self, keep_keys: Duration, abandon_sync: Duration) -> StoreResult<SweepStats>;

    /// Fails /sync records whose work was interrupted (error [`INTERRUPTED`]) and
    /// returns how many: on SQLite, when `starting` (before serving; one instance owns
    /// the file), every /sync record still `processing`, and none otherwise; on
    /// PostgreSQL, those of instances whose heartbeat is older than 30 s. One bounded
    /// batch per call: call again while it returns more than 0.
    async fn fail_interrupted_sync(&self, starting: bool) -> StoreResult<u64>;

    /// Deletes up to `limit` terminal records created before `cutoff`, with their
    /// attempts and idempotency keys; returns how many (a backend may stop earlier to
    /// keep the batch short: only 0 means that none is left).
    async fn prune(&self, cutoff: DateTime<Utc>, limit: usize) -> StoreResult<u64>;
}

/// API keys and signing secrets (SPEC §10).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a new key; `false` (and nothing stored) when its prefix or hash is taken.
    async fn insert_api_key(&self, key: &NewApiKey) -> StoreResult<bool>;

    /// Every key ever created, revoked ones included, oldest first.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>>;

    /// Revokes the key with this display prefix (from `at` on).
    async fn revoke_api_key(&self, prefix: &str, at: DateTime<Utc>) -> StoreResult<Revocation>;

    /// Records uses of keys, in one transaction, skipping a key whose stored
    /// `last_used_at` is less than [`KEY_USE_RESOLUTION`] older than the use.
    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()>;

    /// The tenant's current signing secret, storing `candidate` as that first when the
    /// tenant has none. An existing secret is never replaced; instances racing here all
    /// get the first-stored one.
    async fn ensure_signing_secret(
        &self,
        tenant: &str,
        candidate: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<String>;

    /// The secrets valid at `at` (the current one, and older ones whose `valid_until` is
    /// later), of `tenant` or of every tenant, each tenant's newest first.
    async fn signing_secrets(
        &self,
        tenant: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<Vec<SigningSecretRow>>;

    /// Makes `secret` the tenant's current secret from `at` on; every other secret still
    /// valid then stays valid until `old_valid_until` at the latest. `false` (nothing
    /// stored) when the tenant has no secret yet.
    async fn rotate_signing_secret(
        &self,
        tenant: &str,
        secret: &str,
        at: DateTime<Utc>,
        old_valid_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
}
