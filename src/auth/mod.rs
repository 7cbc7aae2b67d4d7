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
//! [`REFRESH_EVERY`], so keys, revocations, the switch to auth and secret rotations made
//! by any process sharing the database take effect within a few seconds (SPEC: 5 s).
//!
//! Nothing here logs or returns a key or a secret: keys show as their display prefix,
//! secrets not at all.

pub mod keys;
pub mod ring;
pub mod secrets;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::delivery::signing::SigningSecret;
use crate::store::{Store, StoreResult};

pub use keys::{ApiKey, TenantName};
pub use ring::{KeyRing, Refusal};
pub use secrets::SecretBook;

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

/// One instance's key ring and secret book, kept fresh from the store.
pub struct Auth {
    pub keys: Arc<KeyRing>,
    pub secrets: Arc<SecretBook>,
    store: Arc<dyn Store>,
}

impl Auth {
    /// Settles `default`'s signing secret (generated and stored at first start, never
    /// replaced) and loads the keys and secrets. `flag` is `--signing-secret`.
    pub async fn load(store: Arc<dyn Store>, flag: Option<SigningSecret>) -> StoreResult<Self> {
        ensure_secret(store.as_ref(), DEFAULT_TENANT).await?;
        let auth = Self {
            keys: Arc::new(KeyRing::new()),
            secrets: Arc::new(SecretBook::new(flag)),
            store,
        };
        auth.refresh().await?;
        Ok(auth)
    }

    /// Reloads keys and secrets, and writes the key uses noted since the last call.
    pub async fn refresh(&self) -> StoreResult<()> {
        let rows = self.store.api_keys().await?;
        if self.keys.install(&rows) {
            tracing::info!(
                keys = rows.len(),
                "an API key exists: every route but the public ones now requires one"
            );
        }
        let now = Utc::now();
        let secrets = self.store.signing_secrets(None, now).await?;
        self.secrets.install(secrets, now);
        let uses = self.keys.take_uses();
        if !uses.is_empty()
            && let Err(e) = self.store.record_key_uses(&uses).await
        {
            self.keys.return_uses(uses);
            return Err(e);
        }
        Ok(())
    }

    /// Refreshes every [`REFRESH_EVERY`] until `shutdown`. A failed refresh keeps what was
    /// loaded before (a ring that requires keys never reopens) and is logged once per
    /// streak of failures.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                match auth.refresh().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("API keys and signing secrets reloaded again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot reload API keys and signing secrets; keeping the last ones loaded");
                    }
                    Err(_) => {}
                }
            }
        })
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
