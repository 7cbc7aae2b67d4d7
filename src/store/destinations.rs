//! Destinations as a resource (SPEC §14, §17): what GET /destinations shows of one, the
//! page query, and the settings PATCH changes. Both backends implement the
//! [`Store`](super::Store) methods over these.

use chrono::{DateTime, Utc};

use super::Scope;

/// `pending` is exact up to this; beyond, it says this and `pending_capped`.
pub const PENDING_CAP: u64 = 10_000;
/// Paused time discounted from a delivery's expiry at most (SPEC §17).
pub const MAX_PAUSE_CREDIT_MS: i64 = 7 * 24 * 3600 * 1000;

/// One destination, with its settings and the deliveries it has waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationInfo {
    /// The store's row id (internal: the API's id is made from tenant and origin).
    pub row: i64,
    pub tenant: String,
    pub origin: String,
    /// Circuit open until then.
    pub blocked_until: Option<DateTime<Utc>>,
    /// Why the circuit opened while it is open; otherwise the most recent failed
    /// attempt's error (kept at most once a second), or `None`.
    pub last_error: Option<String>,
    pub paused: bool,
    pub rate_limit_per_s: Option<f64>,
    /// Non-terminal deliveries (jobs), counted up to [`PENDING_CAP`] + 1.
    pub pending: u64,
}

/// `state=` of GET /destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationState {
    /// Circuit open.
    Open,
    Paused,
    /// A rate limit is set.
    Limited,
}

impl DestinationState {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "paused" => Some(Self::Paused),
            "limited" => Some(Self::Limited),
            _ => None,
        }
    }
}

/// A page of destinations, ordered by (tenant, origin).
#[derive(Debug, Clone)]
pub struct DestinationQuery {
    pub scope: Scope,
    pub state: Option<DestinationState>,
    /// Start after this (tenant, origin).
    pub after: Option<(String, String)>,
    pub limit: u32,
}

impl DestinationQuery {
    /// The scope's tenant, if one.
    pub fn tenant(&self) -> Option<&str> {
        match &self.scope {
            Scope::Tenant(t) => Some(t),
            Scope::All => None,
        }
    }

    /// The state filter as the three flags `(open, paused, limited)` SQL tests.
    pub fn state_flags(&self) -> (bool, bool, bool) {
        (
            self.state == Some(DestinationState::Open),
            self.state == Some(DestinationState::Paused),
            self.state == Some(DestinationState::Limited),
        )
    }

    /// The (tenant, origin) to start after: the empty pair starts at the beginning.
    pub fn after_pair(&self) -> (String, String) {
        self.after.clone().unwrap_or_default()
    }
}

/// What a PATCH changes (`None`: leave as is).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DestinationChange {
    pub paused: Option<bool>,
    /// `Some(None)` removes the limit.
    pub rate_limit_per_s: Option<Option<f64>>,
}
