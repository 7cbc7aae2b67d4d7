//! The secret book: each tenant's valid callback signing secrets, in memory, newest first
//! (SPEC §10 "Signing secrets per tenant").
//!
//! A tenant has one current secret and, for a while after a rotation, older ones: `consuma
//! secret rotate` makes a new secret current and gives every other secret still valid an
//! end at most `--overlap-secs` away. Until then a callback carries one signature per
//! valid secret, newest first (`v1,<new> v1,<old>`); afterwards only the new one.
//!
//! [`super::Auth`] reloads the book every second, so a rotation by any process takes
//! effect within that; an end that falls between two reloads is honoured on time, since
//! [`SecretBook::for_tenant`] filters again once the earliest end has passed.
//! `--signing-secret` (the flag or its variable) is `default`'s secret and its only one:
//! it wins over anything stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::DEFAULT_TENANT;
use crate::delivery::signing::SigningSecret;
use crate::store::SigningSecretRow;

impl SecretChange {
    pub fn tenant(&self) -> &str {
        match self {
            SecretChange::Added { tenant, .. }
            | SecretChange::Rotated { tenant, .. }
            | SecretChange::OverlapEnded { tenant, .. } => tenant,
        }
    }
}

/// One secret and the end of its validity (`None`: the current one).
#[derive(Debug, Clone)]
pub struct Dated {
    pub secret: SigningSecret,
    pub valid_until: Option<DateTime<Utc>>,
}

/// The secrets of `dated` (newest first) still valid at `now`, in the same order. The
/// current secret (no end) is always valid; an older one until its `valid_until`,
/// exclusive.
pub fn valid_at(dated: &[Dated], now: DateTime<Utc>) -> Vec<SigningSecret> {
    dated
        .iter()
        .filter(|d| d.valid_until.is_none_or(|end| end > now))
        .map(|d| d.secret.clone())
        .collect()
}

/// When the secrets a rotation at `now` supersedes stop being valid (at the latest: one
/// that would end sooner keeps its end).
pub fn overlap_end(now: DateTime<Utc>, overlap: Duration) -> DateTime<Utc> {
    let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(overlap)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What one [`SecretBook::install`] changed for a tenant: counts and times, never a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretChange {
    /// A tenant the book did not hold has `secrets` (its first key was created).
    Added { tenant: String, secrets: usize },
    /// The tenant's current secret is another one: a rotation began. `secrets` are valid
    /// now, newest first; the older ones until `overlap_until`.
    Rotated {
        tenant: String,
        secrets: usize,
        overlap_until: Option<DateTime<Utc>>,
    },
    /// The overlap of the tenant's last rotation ended: only `secrets` are left.
    OverlapEnded { tenant: String, secrets: usize },
}

/// What a reload changed for one tenant, from the secrets it had (`old`) and has (`new`).
fn change(tenant: &str, old: Option<&Tenant>, new: &Tenant) -> Option<SecretChange> {
    let tenant = tenant.to_owned();
    let Some(old) = old else {
        let secrets = new.valid.len();
        return Some(SecretChange::Added { tenant, secrets });
    };
    // Compared in memory, as text; never shown.
    let same = |a: &Dated, b: &Dated| a.secret.to_whsec() == b.secret.to_whsec();
    let current = |t: &Tenant| t.dated.iter().find(|d| d.valid_until.is_none()).cloned();
    let rotated = match (current(old), current(new)) {
        (Some(a), Some(b)) => !same(&a, &b),
        (a, b) => a.is_some() != b.is_some(),
    };
    let secrets = new.valid.len();
    if rotated {
        let overlap_until = new.dated.iter().filter_map(|d| d.valid_until).max();
        return Some(SecretChange::Rotated {
            tenant,
            secrets,
            overlap_until,
        });
    }
    let ended = old
        .dated
        .iter()
        .any(|o| !new.dated.iter().any(|n| same(o, n)));
    ended.then_some(SecretChange::OverlapEnded { tenant, secrets })
}

/// One tenant's secrets as loaded, and the valid ones precomputed.
struct Tenant {
    dated: Vec<Dated>,
    valid: Arc<[SigningSecret]>,
    /// The earliest end among `dated`: from then on `valid` is stale.
    stale_at: Option<DateTime<Utc>>,
}

/// Every tenant's valid signing secrets, newest first.
pub struct SecretBook {
    /// `--signing-secret`: `default`'s one secret when set.
    flag: Option<Arc<[SigningSecret]>>,
    tenants: RwLock<HashMap<String, Tenant>>,
}

impl SecretBook {
    /// An empty book; `flag` is the `--signing-secret` value, if any.
    pub fn new(flag: Option<SigningSecret>) -> Self {
        Self {
            flag: flag.map(|s| Arc::from(vec![s])),
            tenants: RwLock::default(),
        }
    }

    /// Whether `--signing-secret` overrides `default`'s stored secrets.
    pub fn has_flag_secret(&self) -> bool {
        self.flag.is_some()
    }

    /// Replaces the book with `rows` (the secrets valid now, each tenant's newest first,
    /// as [`Store::signing_secrets`](crate::store::Store::signing_secrets) returns them).
    /// A row whose secret cannot be parsed is skipped with a warning. Returns what changed,
    /// by tenant name.
    pub fn install(&self, rows: Vec<SigningSecretRow>, now: DateTime<Utc>) -> Vec<SecretChange> {
        let mut by_tenant: HashMap<String, Vec<Dated>> = HashMap::new();
        for row in rows {
            match SigningSecret::parse(&row.secret) {
                Ok(secret) => by_tenant.entry(row.tenant).or_default().push(Dated {
                    secret,
                    valid_until: row.valid_until,
                }),
                Err(e) => {
                    tracing::warn!(tenant = %row.tenant, error = %e, "a stored signing secret is unusable; skipped")
                }
            }
        }
        let tenants: HashMap<String, Tenant> = by_tenant
            .into_iter()
            .map(|(name, dated)| {
                let valid = Arc::from(valid_at(&dated, now));
                let stale_at = dated.iter().filter_map(|d| d.valid_until).min();
                (
                    name,
                    Tenant {
                        dated,
                        valid,
                        stale_at,
                    },
                )
            })
            .collect();
        let mut book = self.tenants.write().expect("no panics holding the book");
        let mut changes: Vec<SecretChange> = tenants
            .iter()
            .filter_map(|(name, new)| change(name, book.get(name), new))
            .collect();
        changes.sort_by(|a, b| a.tenant().cmp(b.tenant()));
        *book = tenants;
        changes
    }

    /// The secrets to sign `tenant`'s callbacks with now, newest first; empty for a tenant
    /// without a secret (its callbacks cannot be signed, and are not sent).
    pub fn for_tenant(&self, tenant: &str) -> Arc<[SigningSecret]> {
        self.for_tenant_at(tenant, Utc::now())
    }

    /// [`for_tenant`](Self::for_tenant) at `now`.
    pub fn for_tenant_at(&self, tenant: &str, now: DateTime<Utc>) -> Arc<[SigningSecret]> {
        if tenant == DEFAULT_TENANT
            && let Some(flag) = &self.flag
        {
            return flag.clone();
        }
        let tenants = self.tenants.read().expect("no panics holding the book");
        let Some(t) = tenants.get(tenant) else {
            return Arc::from(Vec::new());
        };
        match t.stale_at {
            // An overlap ended since the last reload: filter again until the next one.
            Some(at) if at <= now => Arc::from(valid_at(&t.dated, now)),
            _ => t.valid.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> SigningSecret {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode([n; 32]);
        SigningSecret::parse(&format!("whsec_{key}")).unwrap()
    }

    fn whsec(secrets: &[SigningSecret]) -> Vec<String> {
        secrets.iter().map(SigningSecret::to_whsec).collect()
    }

    fn row(
        tenant: &str,
        s: &SigningSecret,
        valid_until: Option<DateTime<Utc>>,
    ) -> SigningSecretRow {
        SigningSecretRow {
            tenant: tenant.into(),
            secret: s.to_whsec(),
            created_at: Utc::now(),
            valid_until,
        }
    }

    #[test]
    fn during_the_overlap_every_valid_secret_counts_newest_first_then_only_the_new_one() {
        let now = Utc::now();
        let end = overlap_end(now, Duration::from_secs(60));
        assert_eq!(end - now, chrono::Duration::seconds(60));
        let dated = [
            Dated {
                secret: secret(3),
                valid_until: None,
            },
            Dated {
                secret: secret(2),
                valid_until: Some(end),
            },
            Dated {
                secret: secret(1),
                valid_until: Some(now),
            },
        ];
        assert_eq!(
            whsec(&valid_at(&dated, now)),
            whsec(&[secret(3), secret(2)])
        );
        let just_before = end - chrono::Duration::milliseconds(1);
        assert_eq!(valid_at(&dated, just_before).len(), 2);
        // The end is exclusive: at the end of the overlap only the new secret is left.
        assert_eq!(whsec(&valid_at(&dated, end)), whsec(&[secret(3)]));
    }

    #[test]
    fn an_overlap_of_zero_ends_the_old_secrets_at_once_and_huge_ones_saturate() {
        let now = Utc::now();
        assert_eq!(overlap_end(now, Duration::ZERO), now);
        let dated = [
            Dated {
                secret: secret(2),
                valid_until: None,
            },
            Dated {
                secret: secret(1),
                valid_until: Some(overlap_end(now, Duration::ZERO)),
            },
        ];
        assert_eq!(valid_at(&dated, now).len(), 1);
        assert!(overlap_end(now, Duration::MAX) > now);
    }

    #[test]
    fn the_book_gives_each_tenant_its_own_secrets_and_nothing_to_strangers() {
        let book = SecretBook::new(None);
        let now = Utc::now();
        book.install(
            vec![
                row("acme", &secret(2), None),
                row("acme", &secret(1), Some(now + chrono::Duration::hours(1))),
                row("default", &secret(9), None),
            ],
            now,
        );
        assert_eq!(
            whsec(&book.for_tenant("acme")),
            whsec(&[secret(2), secret(1)])
        );
        assert_eq!(whsec(&book.for_tenant("default")), whsec(&[secret(9)]));
        assert!(book.for_tenant("nobody").is_empty());
    }

    #[test]
    fn an_overlap_that_ends_between_reloads_ends_on_time() {
        let book = SecretBook::new(None);
        let loaded = Utc::now() - chrono::Duration::seconds(5);
        let ended = Utc::now() - chrono::Duration::seconds(1);
        book.install(
            vec![
                row("t", &secret(2), None),
                row("t", &secret(1), Some(ended)),
            ],
            loaded,
        );
        assert_eq!(whsec(&book.for_tenant("t")), whsec(&[secret(2)]));
    }

    #[test]
    fn the_flag_secret_is_defaults_only_secret_and_wins_over_stored_ones() {
        let book = SecretBook::new(Some(secret(7)));
        assert!(book.has_flag_secret());
        book.install(
            vec![
                row("default", &secret(1), None),
                row("acme", &secret(2), None),
            ],
            Utc::now(),
        );
        assert_eq!(whsec(&book.for_tenant("default")), whsec(&[secret(7)]));
        assert_eq!(whsec(&book.for_tenant("acme")), whsec(&[secret(2)]));
    }

    #[test]
    fn an_install_says_when_a_tenant_came_a_rotation_began_or_its_overlap_ended() {
        let book = SecretBook::new(None);
        let now = Utc::now();
        let end = now + chrono::Duration::seconds(4);
        let added = |t: &str| SecretChange::Added {
            tenant: t.into(),
            secrets: 1,
        };
        let first = vec![row("t", &secret(1), None), row("u", &secret(5), None)];
        assert_eq!(book.install(first.clone(), now), [added("t"), added("u")]);
        assert!(
            book.install(first, now).is_empty(),
            "the same secrets again"
        );
        let rotated = vec![
            row("t", &secret(2), None),
            row("t", &secret(1), Some(end)),
            row("u", &secret(5), None),
        ];
        let began = SecretChange::Rotated {
            tenant: "t".into(),
            secrets: 2,
            overlap_until: Some(end),
        };
        assert_eq!(book.install(rotated.clone(), now), [began]);
        assert!(
            book.install(rotated, now).is_empty(),
            "a tick in the overlap"
        );
        let after = vec![row("t", &secret(2), None), row("u", &secret(5), None)];
        let ended = SecretChange::OverlapEnded {
            tenant: "t".into(),
            secrets: 1,
        };
        assert_eq!(book.install(after, end), [ended]);
        // A rotation without an overlap: it began, and the old secret is gone with it.
        let cut = vec![row("t", &secret(3), None), row("u", &secret(5), None)];
        let began = SecretChange::Rotated {
            tenant: "t".into(),
            secrets: 1,
            overlap_until: None,
        };
        assert_eq!(book.install(cut, end), [began]);
    }

    #[test]
    fn an_unusable_stored_secret_is_skipped() {
        let book = SecretBook::new(None);
        let mut bad = row(
            "t",
            &secret(1),
            Some(Utc::now() + chrono::Duration::hours(1)),
        );
        bad.secret = "whsec_???".into();
        book.install(vec![row("t", &secret(2), None), bad], Utc::now());
        assert_eq!(whsec(&book.for_tenant("t")), whsec(&[secret(2)]));
    }
}
