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
    pub mode: Mode,
    pub status: RequestStatus,
    /// The accepted input as a JSON object (defaults applied).
    pub input_data: String,
    pub callback_url: Option<String>,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
}

/// What an admission that carries an `Idempotency-Key` claims.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
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
}

/// The end of the work on a request, to be stored with it.
#[derive(Debug, Clone)]
pub struct FinishedWork {
    pub status: RequestStatus,
    /// The `WorkResult` as JSON, or `None` when the work failed.
    pub output_data: Option<String>,
    pub error: Option<String>,
    pub completed_at: DateTime<Utc>,
    /// Async only: the callback body, fixed now so every attempt sends the same bytes.
    pub callback_body: Option<String>,
}

/// The full record, as GET /requests/{id} shows it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: Uuid,
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
    pub trace_id: String,
    pub attempts: Vec<AttemptRecord>,
}

/// One row of GET /requests.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub id: Uuid,
    pub mode: Mode,
    pub status: RequestStatus,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub callback_status: Option<CallbackStatus>,
}

/// Filters and paging of GET /requests.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub mode: Option<Mode>,
    pub status: Option<RequestStatus>,
    pub callback_status: Option<CallbackStatus>,
    pub limit: u32,
    pub offset: u64,
}

/// One page of requests and the number of rows that match the filters.
#[derive(Debug, Clone)]
pub struct Page {
    pub requests: Vec<RequestSummary>,
    pub total: u64,
}

/// One delivery attempt of a callback.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

/// Proof that a worker holds a job: the token changes on every claim, so an outcome
/// recorded with a stale token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub request_id: Uuid,
    pub token: Uuid,
}

/// A job handed to a worker by [`Store::claim_due_jobs`](super::Store::claim_due_jobs).
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub input_data: String,
    pub callback_url: String,
    pub trace_id: String,
    pub created_at: DateTime<Utc>,
    /// Attempts made so far (0 before the first).
    pub attempts_made: u32,
    /// `Some` once the work is done: the callback body to send.
    pub callback_body: Option<String>,
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
}

/// Jobs by state, for /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// Waiting for their due time or a worker.
    pub pending: u64,
    /// Held by a live lease.
    pub processing: u64,
}

/// What the housekeeping sweep removed or closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepStats {
    pub expired_keys: u64,
    pub abandoned_sync: u64,
}

#[cfg(test)]
mod stored_key_tests {
    use super::*;

    fn claim() -> IdempotencyClaim {
        IdempotencyClaim {
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
