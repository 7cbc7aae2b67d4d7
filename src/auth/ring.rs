//! The key ring: every stored API key, in memory, looked up by the SHA-256 of the key a
//! request presents (SPEC §10). One hash and one hash-map lookup per request; the
//! database is not asked.
//!
//! [`super::Auth`] reloads the ring from the store every second, so keys created or
//! revoked by any process (`consuma keys …`, another instance) take effect here within
//! that. Invariants:
//! - Once the ring has seen a key (revoked or not), it requires a key for good: revoking
//!   the last key, or a reload that fails, never reopens the service.
//! - Uses are noted in memory at most once a minute per key and written by the refresher
//!   in one batch ([`KeyRing::take_uses`]); the request never waits for a write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::HeaderValue;
use chrono::{DateTime, Utc};

use super::Caller;
use super::keys::{KeyHash, is_well_formed};
use crate::store::{ApiKeyRow, KEY_USE_RESOLUTION, KeyUse};

/// Why a request was refused (401); the text is its problem's `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <key>`, or the token is not shaped like a key.
    Malformed,
    /// Well-formed, but no such key, or the key is revoked.
    Unknown,
    Revoked,
}

impl Refusal {
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "an API key is required: send Authorization: Bearer <key>",
            Refusal::Malformed => {
                "the Authorization header must be Bearer followed by an API key (csk_…)"
            }
            // One text for both: a refusal does not tell whether a key ever existed.
            Refusal::Unknown | Refusal::Revoked => "the API key is unknown or revoked",
        }
    }
}

/// One stored key as the ring holds it.
struct Entry {
    prefix: String,
    caller: Caller,
    revoked: bool,
    /// Unix seconds of the last use written or queued: the next is queued a minute later.
    last_noted: AtomicI64,
}

type Keys = HashMap<KeyHash, Arc<Entry>>;

/// What one [`KeyRing::install`] changed: display prefixes and counts, never a key or a
/// hash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyChanges {
    /// This install is the switch from open to requiring a key.
    pub closed: bool,
    /// The display prefixes of keys the ring did not hold before (revoked ones included).
    pub added: Vec<String>,
    /// The display prefixes of keys revoked since the last install (or new and revoked).
    pub revoked: Vec<String>,
    /// Keys held before and no longer stored.
    pub removed: usize,
}

impl KeyChanges {
    /// Whether the ring holds the same keys, in the same states, as before.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.revoked.is_empty() && self.removed == 0
    }
}

/// Every API key of the database, by hash. Shared by the authentication layer (reads on
/// every request) and the refresher (replaces the contents).
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<Arc<Keys>>,
    /// Set once any key has been seen; never cleared.
    closed: AtomicBool,
    /// Uses to write, by prefix: the latest time each key was used.
    uses: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl KeyRing {
    /// An empty ring: open (no key required) until [`install`](Self::install) sees a key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether requests must present a key (the database holds at least one).
    pub fn requires_key(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Replaces the ring with `rows` (every stored key, revoked ones included); what
    /// changed, and whether this is the switch from open to requiring a key.
    pub fn install(&self, rows: &[ApiKeyRow]) -> KeyChanges {
        let old = self.snapshot();
        let mut changes = KeyChanges::default();
        let mut keys = Keys::with_capacity(rows.len());
        for row in rows {
            let Some(hash) = KeyHash::from_hex(&row.hash) else {
                tracing::warn!(prefix = %row.prefix, "a stored API key has an unreadable hash; ignored");
                continue;
            };
            let before = old.get(&hash);
            let revoked = row.revoked_at.is_some();
            if before.is_none() {
                changes.added.push(row.prefix.clone());
            }
            if revoked && !before.is_some_and(|e| e.revoked) {
                changes.revoked.push(row.prefix.clone());
            }
            let stored_use = row.last_used_at.map_or(i64::MIN, |t| t.timestamp());
            let noted = before.map_or(stored_use, |e| {
                e.last_noted.load(Ordering::Relaxed).max(stored_use)
            });
            keys.insert(
                hash,
                Arc::new(Entry {
                    prefix: row.prefix.clone(),
                    caller: Caller {
                        authenticated: true,
                        tenant: row.tenant.clone(),
                        admin: row.admin,
                    },
                    revoked,
                    last_noted: AtomicI64::new(noted),
                }),
            );
        }
        changes.removed = old.keys().filter(|h| !keys.contains_key(*h)).count();
        *self.keys.write().expect("no panics holding the ring") = Arc::new(keys);
        changes.closed = !rows.is_empty() && !self.closed.swap(true, Ordering::AcqRel);
        changes
    }

    fn snapshot(&self) -> Arc<Keys> {
        self.keys
            .read()
            .expect("no panics holding the ring")
            .clone()
    }

    /// The caller a request's `Authorization` header names, or why it is refused. While no
    /// key exists every request is [`Caller::open`].
    pub fn caller(&self, authorization: Option<&HeaderValue>) -> Result<Caller, Refusal> {
        if !self.requires_key() {
            return Ok(Caller::open());
        }
        let token = bearer_token(authorization.ok_or(Refusal::Missing)?)?;
        let keys = self.snapshot();
        let entry = keys.get(&KeyHash::of(token)).ok_or(Refusal::Unknown)?;
        if entry.revoked {
            return Err(Refusal::Revoked);
        }
        self.note_use(entry);
        Ok(entry.caller.clone())
    }

    /// Queues a use of `entry` unless one was queued or stored less than a minute ago.
    fn note_use(&self, entry: &Entry) {
        let now = Utc::now();
        let last = entry.last_noted.load(Ordering::Relaxed);
        let due = now.timestamp().saturating_sub(last) >= KEY_USE_RESOLUTION.as_secs() as i64;
        // One request in a minute wins the exchange; the others go on without a write.
        if due
            && entry
                .last_noted
                .compare_exchange(last, now.timestamp(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let mut uses = self.uses.lock().expect("no panics holding the uses");
            uses.insert(entry.prefix.clone(), now);
        }
    }

    /// The uses queued since the last call, to write in one batch.
    pub fn take_uses(&self) -> Vec<KeyUse> {
        let uses = std::mem::take(&mut *self.uses.lock().expect("no panics holding the uses"));
        uses.into_iter()
            .map(|(prefix, at)| KeyUse { prefix, at })
            .collect()
    }

    /// Puts back uses whose write failed, to try again with the next batch.
    pub fn return_uses(&self, failed: Vec<KeyUse>) {
        let mut uses = self.uses.lock().expect("no panics holding the uses");
        for u in failed {
            uses.entry(u.prefix).or_insert(u.at);
        }
    }
}

/// The token of `Bearer <token>` (scheme in any case, RFC 7235), if it is shaped like a key.
fn bearer_token(value: &HeaderValue) -> Result<&str, Refusal> {
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    let token = token.trim_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || !is_well_formed(token) {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::ApiKey;

    fn row(key: &ApiKey, tenant: &str, admin: bool, revoked: bool) -> ApiKeyRow {
        ApiKeyRow {
            prefix: key.prefix().to_owned(),
            hash: key.hash().to_hex(),
            tenant: tenant.to_owned(),
            admin,
            created_at: Utc::now(),
            last_used_at: None,
            revoked_at: revoked.then(Utc::now),
        }
    }

    fn bearer(key: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {key}")).unwrap()
    }

    #[test]
    fn an_empty_ring_is_open_and_every_caller_is_default() {
        let ring = KeyRing::new();
        assert!(!ring.requires_key());
        assert_eq!(ring.caller(None), Ok(Caller::open()));
        assert!(!ring.install(&[]).closed);
        assert_eq!(ring.caller(Some(&bearer("junk"))), Ok(Caller::open()));
    }

    #[test]
    fn a_key_names_its_tenant_and_admin_flag() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        let ring = KeyRing::new();
        assert!(
            ring.install(&[row(&a, "acme", false, false), row(&b, "ops", true, false)])
                .closed
        );
        let caller = |k: &ApiKey| ring.caller(Some(&bearer(k.reveal())));
        assert_eq!(
            caller(&a),
            Ok(Caller {
                tenant: "acme".into(),
                admin: false,
                authenticated: true,
            })
        );
        assert_eq!(
            caller(&b),
            Ok(Caller {
                tenant: "ops".into(),
                admin: true,
                authenticated: true,
            })
        );
        let lower = HeaderValue::from_str(&format!("bearer  {}", a.reveal())).unwrap();
        assert!(ring.caller(Some(&lower)).is_ok());
    }

    #[test]
    fn missing_malformed_unknown_and_revoked_keys_are_refused() {
        let (good, revoked) = (ApiKey::generate(), ApiKey::generate());
        let ring = KeyRing::new();
        ring.install(&[
            row(&good, "t", false, false),
            row(&revoked, "t", false, true),
        ]);
        assert_eq!(ring.caller(None), Err(Refusal::Missing));
        for malformed in [
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            format!("Basic {}", good.reveal()),
            "Bearer not-a-key".to_owned(),
            good.reveal().to_owned(),
            format!("Bearer {}x-", good.reveal()),
        ] {
            let header = HeaderValue::from_str(&malformed).unwrap();
            assert_eq!(
                ring.caller(Some(&header)),
                Err(Refusal::Malformed),
                "{malformed}"
            );
        }
        let unknown = ApiKey::generate();
        assert_eq!(
            ring.caller(Some(&bearer(unknown.reveal()))),
            Err(Refusal::Unknown)
        );
        assert_eq!(
            ring.caller(Some(&bearer(revoked.reveal()))),
            Err(Refusal::Revoked)
        );
        assert_eq!(Refusal::Unknown.detail(), Refusal::Revoked.detail());
    }

    #[test]
    fn once_a_key_was_seen_the_ring_never_reopens() {
        let key = ApiKey::generate();
        let ring = KeyRing::new();
        assert!(ring.install(&[row(&key, "t", false, true)]).closed);
        assert!(ring.requires_key());
        assert!(!ring.install(&[]).closed);
        assert!(ring.requires_key());
        assert_eq!(ring.caller(None), Err(Refusal::Missing));
    }

    #[test]
    fn an_install_names_the_keys_it_added_revoked_or_lost_by_prefix() {
        let (a, b, c) = (ApiKey::generate(), ApiKey::generate(), ApiKey::generate());
        let ring = KeyRing::new();
        let first = ring.install(&[row(&a, "t", false, false), row(&b, "t", false, true)]);
        assert!(first.closed);
        assert_eq!(first.added, [a.prefix(), b.prefix()]);
        assert_eq!(first.revoked, [b.prefix()], "new and revoked already");
        let same = [row(&a, "t", false, false), row(&b, "t", false, true)];
        assert!(ring.install(&same).is_empty(), "the same keys again");
        let next = ring.install(&[row(&a, "t", false, true), row(&c, "u", true, false)]);
        assert_eq!(
            next,
            KeyChanges {
                closed: false,
                added: vec![c.prefix().to_owned()],
                revoked: vec![a.prefix().to_owned()],
                removed: 1,
            }
        );
    }

    #[test]
    fn a_use_is_queued_at_most_once_a_minute_per_key() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        let ring = KeyRing::new();
        let mut recent = row(&b, "t", false, false);
        recent.last_used_at = Some(Utc::now() - chrono::Duration::seconds(10));
        ring.install(&[row(&a, "t", false, false), recent.clone()]);
        for _ in 0..5 {
            ring.caller(Some(&bearer(a.reveal()))).unwrap();
            ring.caller(Some(&bearer(b.reveal()))).unwrap();
        }
        let uses = ring.take_uses();
        assert_eq!(uses.len(), 1, "{uses:?}");
        assert_eq!(uses[0].prefix, a.prefix());
        // A reload keeps what was noted: no second write within the minute.
        ring.install(&[row(&a, "t", false, false), recent]);
        ring.caller(Some(&bearer(a.reveal()))).unwrap();
        assert!(ring.take_uses().is_empty());
        // A failed write is retried with the next batch.
        ring.return_uses(uses.clone());
        assert_eq!(ring.take_uses(), uses);
    }
}
