//! The records the store keeps and the values that cross the [`Store`](super::Store) trait.
//!
//! Input and output are carried as JSON text (SPEC §3: stored as JSON so that NUL and any
//! other character survive on both backends). Times are UTC; the store decides how to keep
//! them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

string_enum!(
    /// How the request was submitted.
    Mode { Sync = "sync", Async = "async" }
);
string_enum!(
    /// `pending → processing → completed | failed`.
    RequestStatus { Pending = "pending", Processing = "processing", Completed = "completed", Failed = "failed" }
);
string_enum!(
    /// Async only: `pending → sent | failed`.
    CallbackStatus { Pending = "pending", Sent = "sent", Failed = "failed" }
);

/// A request about to be admitted. For `Mode::Async` its job is created with it.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: Uuid,
    /// The tenant of the caller (SPEC §10; `default` while the service is open).
    pub tenant: String,
    pub mode: Mode,
    pub status: RequestStatus,
    /// The accepted input as a JSON object (defaults applied).
    pub input_data: String,
    pub callback_url: Option<String>,
    /// Async only: the callback URL's origin, `scheme://host:port` (SPEC §8).
    pub origin: Option<String>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    /// The work named (SPEC §13); `None` for the built-in `text`.
    pub work: Option<String>,
    /// The idempotency-key its upstream receives, when not the request id (§17).
    pub upstream_key: Option<String>,
}

/// Backlog limits an async admission must respect (SPEC §9, §10); 0 = no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// `--max-pending-jobs`: async requests whose callback is not terminal, all tenants.
    pub max_pending: u64,
    /// `--max-pending-jobs-per-tenant`.
    pub max_pending_per_tenant: u64,
}

impl AdmissionLimits {
    /// Why a new async request must be refused with `pending` in the backlog and
    /// `tenant_pending` of its tenant's; `None` when it fits.
    pub fn refusal(self, pending: u64, tenant_pending: u64) -> Option<Admission> {
        if self.max_pending_per_tenant > 0 && tenant_pending >= self.max_pending_per_tenant {
            return Some(Admission::QuotaExceeded);
        }
        if self.max_pending > 0 && pending >= self.max_pending {
            return Some(Admission::Overloaded);
        }
        None
    }
}

/// What an admission that carries an `Idempotency-Key` claims.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Keys of different tenants never meet (SPEC §10).
    pub tenant: String,
    /// Method and path, e.g. `POST /sync`.
    pub scope: &'static str,
    pub key: String,
    /// Digest of the validated input; a replay must match it.
    pub fingerprint: String,
    /// The response to replay. Known up front for /async (it commits with the request);
    /// `None` for /sync until [`Store::finish_sync`](super::Store::finish_sync) stores it.
    pub response: Option<StoredResponse>,
    /// Until when an unfinished claim blocks others (a /sync whose process died releases
    /// its key after this).
    pub held_until: DateTime<Utc>,
}

/// A response kept for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// A key already stored, as an admission with the same key sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub fingerprint: String,
    /// The first request's response, once it is known.
    pub response: Option<StoredResponse>,
    /// The claim is unfinished and not yet abandoned (`held_until` is still ahead).
    pub held: bool,
}

impl StoredKey {
    /// What this key means for a new admission with `claim` (SPEC §2 "Idempotency"):
    /// its verdict, or `None` when the first holder died mid-work and the key may be
    /// taken over. Both backends decide by this one rule.
    pub fn verdict(self, claim: &IdempotencyClaim) -> Option<Admission> {
        if self.fingerprint != claim.fingerprint {
            return Some(Admission::KeyReused);
        }
        match (self.response, self.held) {
            (Some(response), _) => Some(Admission::Replay(response)),
            (None, true) => Some(Admission::InFlight),
            (None, false) => None,
        }
    }
}

/// The result of [`Store::admit`](super::Store::admit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The request (and its job) are durably stored.
    Admitted,
    /// The key was used before with the same input: answer with this, do nothing new.
    Replay(StoredResponse),
    /// The key's first request has not finished.
    InFlight,
    /// The key was used before with another input.
    KeyReused,
    /// The backlog is full (`--max-pending-jobs`): nothing was stored.
    Overloaded,
    /// The tenant's backlog is full (`--max-pending-jobs-per-tenant`): nothing was stored.
    QuotaExceeded,
}

/// The end of the work on a request, to be stored with it.
#[derive(Debug, Clone)]
pub struct FinishedWork {
    pub status: RequestStatus,
    /// The `WorkResult` as JSON, or `None` when the work failed.
    pub output_data: Option<String>,
    pub error: Option<String>,
    pub completed_at: DateTime<Utc>,
    /// A named work's upstream attempts as a JSON array (SPEC §13); `None` for `text`.
    pub work_attempts: Option<String>,
}

/// The full record, as GET /requests/{id} shows it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: Uuid,
    pub tenant: String,
    pub mode: Mode,
    pub status: RequestStatus,
    pub input_data: String,
    pub output_data: Option<String>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub callback_url: Option<String>,
    pub callback_status: Option<CallbackStatus>,
    pub callback_attempts: u32,
    pub callback_last_error: Option<String>,
    pub callback_sent_at: Option<DateTime<Utc>>,
    /// The next planned attempt of a callback that is not terminal and has no attempt
    /// running (SPEC §8); it may be in the past while the job waits for a worker or the cap.
    pub callback_next_attempt_at: Option<DateTime<Utc>>,
    pub trace_id: String,
    /// The latest [`RECORD_ATTEMPTS`] attempts, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// The work named (SPEC §13); `None` for the built-in `text`.
    pub work: Option<String>,
    /// A named work's upstream attempts as a JSON array; `None` when it made none.
    pub work_attempts: Option<String>,
    /// All attempts ever made (GET /requests/{id}/attempts pages through them).
    pub attempts_total: u64,
}

/// Most attempts a record carries (SPEC §16); the rest are paged.
pub const RECORD_ATTEMPTS: usize = 100;

/// One row of GET /requests.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub id: Uuid,
    pub tenant: String,
    pub mode: Mode,
    pub status: RequestStatus,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub callback_status: Option<CallbackStatus>,
    /// The work the request named (`None`: made before works, a `text` record).
    pub work: Option<String>,
}

/// Whose records a read may see (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's records.
    Tenant(String),
    /// Every tenant's (an admin key without a `tenant=` filter).
    All,
}

impl Scope {
    /// Whether a record of `tenant` is visible in this scope.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Scope::Tenant(t) => t == tenant,
            Scope::All => true,
        }
    }
}

/// A position in the newest-first order of GET /requests: the last record of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStart {
    /// Skip this many records (bounded by the API).
    Offset(u64),
    /// The records after this one (a cursor).
    After(Keyset),
}

/// Filters and paging of GET /requests.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub scope: Scope,
    pub mode: Option<Mode>,
    pub status: Option<RequestStatus>,
    pub callback_status: Option<CallbackStatus>,
    /// One work's records only (`text` also matches records that name none).
    pub work: Option<String>,
    pub limit: u32,
    pub start: PageStart,
}

impl ListFilter {
    /// The state codes the filters match (all of them when there is no filter).
    pub fn states(&self) -> Vec<i64> {
        matching_states(self.mode, self.status, self.callback_status)
    }

    /// The values of the `work` column the work filter matches, if there is one: `None`
    /// in the list stands for a record made before works existed (a `text` record).
    pub fn work_values(&self) -> Option<Vec<Option<&str>>> {
        let work = self.work.as_deref()?;
        Some(match work {
            "text" => vec![Some(work), None],
            _ => vec![Some(work)],
        })
    }

    /// Whether any of mode, status and callback_status is set.
    pub fn is_filtered(&self) -> bool {
        self.mode.is_some() || self.status.is_some() || self.callback_status.is_some()
    }
}

/// One page of requests, the number of rows that match the filters, and where the next
/// page starts (`None` on the last page).
#[derive(Debug, Clone)]
pub struct Page {
    pub requests: Vec<RequestSummary>,
    pub total: u64,
    pub next: Option<Keyset>,
}

impl Page {
    /// A page from up to `limit + 1` rows read in order: the extra row, if any, only says
    /// that there is a next page, which starts after the page's last record.
    pub fn of(mut requests: Vec<RequestSummary>, limit: u32, total: u64) -> Self {
        let next = (requests.len() > limit as usize).then(|| {
            requests.truncate(limit as usize);
            let last = requests.last().expect("a full page");
            Keyset {
                created_at: last.created_at,
                id: last.id,
            }
        });
        Self {
            requests,
            total,
            next,
        }
    }
}

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

/// States of async requests whose callback failed for good (what a bulk redelivery
/// takes), ascending.
pub fn failed_callback_states() -> Vec<i64> {
    matching_states(Some(Mode::Async), None, Some(CallbackStatus::Failed))
}

/// A request's lifecycle state as one code (SPEC §12): `16 × mode + 4 × status +
/// callback_status`, the formula of the `state` column in both migrations.
pub fn state_code(mode: Mode, status: RequestStatus, callback: Option<CallbackStatus>) -> i64 {
    let mode = match mode {
        Mode::Sync => 0,
        Mode::Async => 16,
    };
    let status = match status {
        RequestStatus::Pending => 0,
        RequestStatus::Processing => 4,
        RequestStatus::Completed => 8,
        RequestStatus::Failed => 12,
    };
    let callback = match callback {
        None => 0,
        Some(CallbackStatus::Pending) => 1,
        Some(CallbackStatus::Sent) => 2,
        Some(CallbackStatus::Failed) => 3,
    };
    mode + status + callback
}

/// Every state a record can be in: sync requests have no callback status, async ones
/// always have one.
pub fn all_states() -> impl Iterator<Item = (Mode, RequestStatus, Option<CallbackStatus>)> {
    RequestStatus::ALL.iter().flat_map(|&status| {
        let sync = std::iter::once((Mode::Sync, status, None));
        let async_ = CallbackStatus::ALL
            .iter()
            .map(move |&cb| (Mode::Async, status, Some(cb)));
        sync.chain(async_)
    })
}

/// The state codes that match the given filters, ascending.
pub fn matching_states(
    mode: Option<Mode>,
    status: Option<RequestStatus>,
    callback: Option<CallbackStatus>,
) -> Vec<i64> {
    let mut codes: Vec<i64> = all_states()
        .filter(|(m, s, c)| {
            mode.is_none_or(|f| f == *m)
                && status.is_none_or(|f| f == *s)
                && callback.is_none_or(|f| Some(f) == *c)
        })
        .map(|(m, s, c)| state_code(m, s, c))
        .collect();
    codes.sort_unstable();
    codes
}

/// States of async requests whose callback is not terminal: the backlog (SPEC §9).
pub fn backlog_states() -> Vec<i64> {
    matching_states(Some(Mode::Async), None, Some(CallbackStatus::Pending))
}

/// Terminal states (SPEC §2): the work ended and, for async, so did the callback.
pub fn terminal_states() -> Vec<i64> {
    let mut codes: Vec<i64> = all_states()
        .filter(|(_, s, c)| {
            matches!(s, RequestStatus::Completed | RequestStatus::Failed)
                && !matches!(c, Some(CallbackStatus::Pending))
        })
        .map(|(m, s, c)| state_code(m, s, c))
        .collect();
    codes.sort_unstable();
    codes
}

/// The callback status a state code carries.
pub fn callback_of_state(code: i64) -> Option<CallbackStatus> {
    match code % 4 {
        1 => Some(CallbackStatus::Pending),
        2 => Some(CallbackStatus::Sent),
        3 => Some(CallbackStatus::Failed),
        _ => None,
    }
}

#[cfg(test)]
mod stored_key_tests {
    use super::*;

    fn claim() -> IdempotencyClaim {
        IdempotencyClaim {
            tenant: "default".into(),
            scope: "POST /sync",
            key: "k".into(),
            fingerprint: "same".into(),
            response: None,
            held_until: Utc::now(),
        }
    }

    fn stored(fingerprint: &str, response: Option<u16>, held: bool) -> StoredKey {
        StoredKey {
            fingerprint: fingerprint.into(),
            response: response.map(|status| StoredResponse {
                status,
                body: "{}".into(),
            }),
            held,
        }
    }

    #[test]
    fn another_input_is_refused_whatever_the_state_of_the_first() {
        for (response, held) in [(None, true), (None, false), (Some(200), false)] {
            let verdict = stored("other", response, held).verdict(&claim());
            assert_eq!(verdict, Some(Admission::KeyReused));
        }
    }

    #[test]
    fn a_finished_first_is_replayed_a_running_one_is_in_flight_a_dead_one_frees_the_key() {
        let replay = stored("same", Some(202), false).verdict(&claim());
        assert!(matches!(replay, Some(Admission::Replay(r)) if r.status == 202));
        assert_eq!(
            stored("same", None, true).verdict(&claim()),
            Some(Admission::InFlight)
        );
        assert_eq!(stored("same", None, false).verdict(&claim()), None);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_sixteen() {
        let mut codes: Vec<i64> = all_states().map(|(m, s, c)| state_code(m, s, c)).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 16);
        assert_eq!(matching_states(None, None, None), codes);
    }

    #[test]
    fn filters_pick_their_states() {
        assert_eq!(matching_states(Some(Mode::Sync), None, None), [0, 4, 8, 12]);
        assert_eq!(
            matching_states(None, None, Some(CallbackStatus::Pending)),
            [17, 21, 25, 29]
        );
        assert_eq!(backlog_states(), [17, 21, 25, 29]);
        assert_eq!(
            matching_states(Some(Mode::Sync), None, Some(CallbackStatus::Sent)),
            Vec::<i64>::new()
        );
        assert_eq!(
            matching_states(
                Some(Mode::Async),
                Some(RequestStatus::Completed),
                Some(CallbackStatus::Failed)
            ),
            [27]
        );
        assert_eq!(terminal_states(), [8, 12, 26, 27, 30, 31]);
    }

    #[test]
    fn the_callback_status_is_read_back_from_a_code() {
        for (m, s, c) in all_states() {
            assert_eq!(callback_of_state(state_code(m, s, c)), c);
        }
    }

    #[test]
    fn limits_refuse_the_tenant_before_the_whole_backlog() {
        let limits = AdmissionLimits {
            max_pending: 10,
            max_pending_per_tenant: 3,
        };
        assert_eq!(limits.refusal(2, 2), None);
        assert_eq!(limits.refusal(5, 3), Some(Admission::QuotaExceeded));
        assert_eq!(limits.refusal(10, 1), Some(Admission::Overloaded));
        assert_eq!(AdmissionLimits::default().refusal(u64::MAX, u64::MAX), None);
    }
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
