//! Who is calling (SPEC §10): API keys, tenants, and each tenant's signing secrets.
//!
//! The caller is resolved once, by the authentication layer ([`crate::http::authenticate`]) in front of every route
//! but the public ones, and handed to handlers as a request extension; a handler that
//! needs scoping takes a [`Caller`] argument, so a route without it cannot read scoped
//! data by accident. With no API key in the database the service is open (SPEC §10 "When
//! auth applies"): every caller is the tenant `default`, with an administrator's view.
//!
//! - [`keys`]: a key as a value (generate, recognise, hash) and tenant names.
//! - [`ring`]: [`KeyRing`], every stored key in memory, by hash: one lookup per request.
//! - [`secrets`]: [`SecretBook`], each tenant's valid signing secrets, newest first.
//!
//! [`Auth`] loads the ring and the book at start and refreshes both from the store every
//! [`REFRESH_EVERY`] ([`refresh`]), so keys, revocations, the switch to auth and secret
//! rotations made by any process sharing the database take effect within a few seconds
//! (SPEC: 5 s). A refresh that changes what is loaded says so in one line per change.
//!
//! Nothing here logs or returns a key or a secret: keys show as their display prefix,
//! secrets not at all.

pub mod keys;
pub mod refresh;
pub mod ring;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::delivery::signing::SigningSecret;
use crate::store::{Store, StoreResult};
use refresh::Source;

pub use keys::{ApiKey, TenantName};
pub use ring::{KeyChanges, KeyRing, Refusal};
pub use secrets::{SecretBook, SecretChange};

/// The tenant every record belongs to while the service is open (no key exists).
pub const DEFAULT_TENANT: &str = "default";

/// The tenant of the key that made a request, and whether that key is an admin key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant new requests are recorded under.
    pub tenant: String,
    /// Sees every tenant's records, and may filter them with `tenant=`.
    pub admin: bool,
    /// The caller showed a key (auth applies); `false` while the service is open.
    pub authenticated: bool,
}

impl Caller {
    /// The caller of an open service: tenant `default`, seeing everything (which is all
    /// `default`'s anyway).
    pub fn open() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            admin: true,
            authenticated: false,
        }
    }
}

/// A tenant name (SPEC §10): 1–64 characters of `[a-z0-9_-]`.
pub fn valid_tenant(name: &str) -> bool {
    TenantName::parse(name).is_ok()
}

/// How often the key ring and the secret book are reloaded (and key uses written).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The wall clock the refresher reads: `Utc::now`, or a test's own.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// One instance's key ring and secret book, kept fresh from the store ([`refresh`]).
pub struct Auth {
    pub keys: Arc<KeyRing>,
    pub secrets: Arc<SecretBook>,
    source: Arc<dyn Source>,
    clock: Clock,
}

impl Auth {
    /// Settles `default`'s signing secret (generated and stored at first start, never
    /// replaced) and loads the keys and secrets. `flag` is `--signing-secret`.
    pub async fn load(store: Arc<dyn Store>, flag: Option<SigningSecret>) -> StoreResult<Self> {
        ensure_secret(store.as_ref(), DEFAULT_TENANT).await?;
        let source = Arc::new(refresh::StoreSource(store));
        Self::load_from(source, flag, Arc::new(Utc::now)).await
    }

    /// Loads the keys and secrets of `source`, reading the time from `clock`.
    async fn load_from(
        source: Arc<dyn Source>,
        flag: Option<SigningSecret>,
        clock: Clock,
    ) -> StoreResult<Self> {
        let auth = Self {
            keys: Arc::new(KeyRing::new()),
            secrets: Arc::new(SecretBook::new(flag)),
            source,
            clock,
        };
        // What a first load finds is no change: only the switch to keys is logged.
        auth.reload().await?.log_closed();
        Ok(auth)
    }
}

/// `tenant`'s current signing secret, generating and storing one if it has none.
pub async fn ensure_secret(store: &dyn Store, tenant: &str) -> StoreResult<SigningSecret> {
    let candidate = SigningSecret::generate().to_whsec();
    let stored = store
        .ensure_signing_secret(tenant, &candidate, Utc::now())
        .await?;
    SigningSecret::parse(&stored).map_err(|e| {
        crate::store::StoreError::Corrupt(format!("the stored signing secret of {tenant}: {e}"))
    })
}
