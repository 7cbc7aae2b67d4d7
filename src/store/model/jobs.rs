//! The engine's values: leases, claims, attempts, destinations, redelivery; origins.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;

/// One delivery attempt of a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1 for the first attempt; redeliveries continue the numbering.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub trigger: Trigger,
}

string_enum!(
    /// Why an attempt was made (SPEC §11): `manual` for the first attempt of a
    /// redelivery, `scheduled` for every other.
    Trigger { Scheduled = "scheduled", Manual = "manual" }
);

/// Proof that a worker holds a job: the token changes on every claim, so an outcome
/// recorded with a stale token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub request_id: Uuid,
    pub token: Uuid,
}

/// The two phases of a job: the work, then the delivery of its callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Work = 0,
    Delivery = 1,
}

impl Phase {
    pub fn from_code(code: i64) -> Self {
        if code == 0 {
            Phase::Work
        } else {
            Phase::Delivery
        }
    }
}

/// A job's destination (SPEC §8): its tenant and its callback URL's origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub id: i64,
    pub tenant: String,
    /// `scheme://host:port`: what logs and errors may show of the URL.
    pub origin: String,
    /// The stored circuit block seen at claim time (`None`: closed).
    pub blocked_until: Option<DateTime<Utc>>,
    /// The cool-down in force while the circuit is open or being probed.
    pub cooldown: Option<std::time::Duration>,
    /// Paused (SPEC §14): no attempt starts.
    pub paused: bool,
    /// A rate limit is set: every attempt goes through a claim, which spaces them.
    pub rate_limited: bool,
}

/// A job handed to a worker by [`Store::claim_due_jobs`](super::Store::claim_due_jobs).
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub phase: Phase,
    pub destination: Destination,
    /// This delivery is the probe of an open circuit (SPEC §8).
    pub probe: bool,
    pub input_data: String,
    pub callback_url: String,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    /// Attempts made so far, redeliveries included (0 before the first).
    pub attempts_made: u32,
    /// Attempts made before this delivery began (a redelivery has a fresh budget).
    pub attempt_base: u32,
    /// The next attempt is the first of a redelivery (`trigger: manual`).
    pub manual: bool,
    /// The callback body stored by versions before 0.2 (they kept it); `None` since.
    pub callback_body: Option<String>,
    /// The finished work as the record keeps it, from which the callback body is made:
    /// `output_data`, `error`, `completed_at` (`None` before the work is done).
    pub output_data: Option<String>,
    pub error: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When this delivery expires (set when the work ends or on redelivery).
    pub expires_at: Option<DateTime<Utc>>,
    /// The work the request names (SPEC §13); `None` for `text`.
    pub work: Option<String>,
    /// The idempotency-key its upstream receives, when not the request id (§17).
    pub upstream_key: Option<String>,
    /// The record reads `processing` already: the claim marked it (PostgreSQL), or an
    /// earlier run of the job did. Else the worker marks it once its work has run for a
    /// while (`JobStore::mark_processing`).
    pub marked_processing: bool,
}

/// What a claim asks for (see [`Store::claim_due_jobs`](super::Store::claim_due_jobs)).
#[derive(Debug, Clone, Default)]
pub struct ClaimRequest {
    /// Most jobs to lease (the free workers).
    pub limit: usize,
    pub lease_for: std::time::Duration,
    /// Attempts this instance may run at once to one destination.
    pub cap: u32,
    /// Destinations with attempts running here, and how many more each may take now.
    pub slots_left: std::collections::HashMap<i64, u32>,
    /// Round-robin position among destinations with work waiting: the last one served.
    pub work_after: i64,
    /// The works whose work-phase jobs this instance may take (SPEC §17).
    pub works: Served,
}

/// The smallest UUID v7 of `t`'s millisecond: request ids are UUID v7, so the requests
/// created before `t` are exactly those with a smaller id (an index range, no join).
pub fn first_id_at(t: DateTime<Utc>) -> Uuid {
    let ms = t.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// The works an instance has (SPEC §17 "Instances with different files"): it claims only
/// the work-phase jobs of these; the others wait for an instance that has them, or
/// expire. A request of the built-in `text` may be stored without a work name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Served {
    /// Every work (a store used without an engine's registry, as in tests).
    #[default]
    All,
    /// Only these, by name (`text` included when served).
    Only(std::sync::Arc<[String]>),
}

impl Served {
    /// The names to bind for a filter `work IS NULL OR work = ANY(names)`; `None` for all.
    pub fn names(&self) -> Option<&[String]> {
        match self {
            Served::All => None,
            Served::Only(names) => Some(names),
        }
    }
}

/// The jobs a claim leased, and where the next claim's round-robin goes on.
#[derive(Debug, Clone, Default)]
pub struct ClaimBatch {
    pub jobs: Vec<ClaimedJob>,
    pub work_after: i64,
}

/// What happens to a job once its work is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWork {
    /// This worker makes the first attempt now; the job stays leased.
    Deliver,
    /// The destination is at its cap or its circuit is open: the job waits, due now,
    /// without holding a worker.
    Wait,
}

/// What follows a delivery attempt; decided by the engine, applied by the store.
#[derive(Debug, Clone, PartialEq)]
pub enum NextStep {
    /// The receiver took it: callback `sent`, job done.
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// No further attempt (budget spent, or a permanent refusal): callback `failed`.
    GiveUp,
    /// The delivery outlived `--callback-expire-after-secs`: callback `failed`, with this
    /// `callback_last_error` (`expired: …`).
    Expired(String),
}

/// A change of a destination's circuit, stored with the attempt that caused it.
#[derive(Debug, Clone, PartialEq)]
pub enum CircuitChange {
    /// Postpone the destination's deliveries until `until` (opened, or a probe failed).
    Open {
        destination: i64,
        until: DateTime<Utc>,
        cooldown: std::time::Duration,
        reason: String,
    },
    /// The endpoint answered: deliveries resume at once.
    Close { destination: i64 },
}

/// Jobs by state, for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Async requests whose callback is not terminal (the backlog of SPEC §9).
    pub pending: u64,
    /// Destinations whose circuit is open (or being probed).
    pub circuits_open: u64,
}

/// The error of a /sync record whose work died with its process (SPEC §16).
pub const INTERRUPTED: &str = "interrupted: the service stopped before the work ended";

/// What the housekeeping sweep removed or closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub expired_keys: u64,
    pub abandoned_sync: u64,
    /// Per-minute callback figures older than the chart's hour.
    pub old_minutes: u64,
    /// Destinations with nothing waiting and a closed circuit.
    pub idle_destinations: u64,
}

/// The result of [`Store::redeliver`](super::Store::redeliver) (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivery {
    /// The callback is `pending` again; a new delivery is queued.
    Queued,
    /// The tenant's backlog is at `--max-pending-jobs-per-tenant` (429).
    QuotaExceeded,
    /// The backlog is at `--max-pending-jobs` (503).
    Overloaded,
    /// The request was redelivered `--max-redeliveries` times already (429).
    TooManyRedeliveries,
    /// A delivery of that request is pending or running.
    InProgress,
    /// A sync request has no callback.
    NotAsync,
    /// No such request in the caller's scope.
    NotFound,
}

/// What bounds a redelivery (SPEC §16 "Redelivery is bounded"): the backlog limits of
/// POST /async, and how often one request may be redelivered (`--max-redeliveries`;
/// 0 turns redelivery off).
#[derive(Debug, Clone, Copy, Default)]
pub struct RedeliveryLimits {
    pub backlog: AdmissionLimits,
    pub max_redeliveries: u32,
}

impl RedeliveryLimits {
    /// Why one more redelivery of a request redelivered `done` times already, of a tenant
    /// with `tenant_pending` of the backlog's `pending`, is refused; `None` when it fits.
    pub fn refusal(self, done: u64, pending: u64, tenant_pending: u64) -> Option<Redelivery> {
        if done >= u64::from(self.max_redeliveries) {
            return Some(Redelivery::TooManyRedeliveries);
        }
        match self.backlog.refusal(pending, tenant_pending) {
            Some(Admission::QuotaExceeded) => Some(Redelivery::QuotaExceeded),
            Some(_) => Some(Redelivery::Overloaded),
            None => None,
        }
    }
}

/// What one bulk redelivery call did (SPEC §17): callbacks queued now, and whether
/// matching failed callbacks remain (call again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkRedelivery {
    pub redelivered: u64,
    pub more: bool,
}

/// Most callbacks one bulk redelivery call queues.
pub const BULK_REDELIVERY_MOST: usize = 500;

/// Callbacks that ended in one minute (SPEC §11 chart data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteStats {
    /// Unix time of the minute's start, in minutes.
    pub minute: i64,
    pub delivered: u64,
    pub failed: u64,
}

/// A callback URL's origin, `scheme://host:port`, always with the port (SPEC §8).
pub fn origin_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    format!("{}://{host}:{port}", url.scheme())
}

/// [`origin_of`] for a stored URL; `None` when it does not parse.
pub fn origin_of_str(url: &str) -> Option<String> {
    url::Url::parse(url).ok().map(|u| origin_of(&u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_a_millisecond_orders_below_every_v7_id_made_in_it_and_above_earlier_ones() {
        let t = chrono::DateTime::from_timestamp_millis(1_765_000_000_123).unwrap();
        let first = first_id_at(t);
        let ts = |ms: u64| {
            uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000)
        };
        for _ in 0..100 {
            let same = Uuid::new_v7(ts(1_765_000_000_123));
            let earlier = Uuid::new_v7(ts(1_765_000_000_122));
            assert!(earlier < first && first <= same, "{earlier} {first} {same}");
            // SQLite keeps ids as text: the same order.
            assert!(earlier.to_string() < first.to_string());
            assert!(first.to_string() <= same.to_string());
        }
    }
}
