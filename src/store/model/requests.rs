//! Requests: what is admitted, what a record holds, idempotency claims, listing pages.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::*;

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
