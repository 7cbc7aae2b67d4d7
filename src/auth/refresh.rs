//! Keeping [`Auth`] fresh: every [`REFRESH_EVERY`] the refresher reads every key and
//! every valid signing secret from its [`Source`] (the store), installs them, writes the
//! key uses noted since, and logs what changed, one line per change (never per request,
//! never per tick):
//!
//! - "an API key exists: …" once, at the switch to requiring keys;
//! - "API keys changed": how many keys were added, revoked or removed, and their display
//!   prefixes (`csk_` and 8 characters, as `consuma keys list` shows them);
//! - "signing secret added" / "signing secret rotation began" / "signing secret overlap
//!   ended": the tenant, how many secrets sign its callbacks now, and when a rotation's
//!   overlap ends.
//!
//! No line carries a key, a hash or a secret (SPEC §10).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;

use super::{Auth, KeyChanges, REFRESH_EVERY, SecretChange};
use crate::store::{ApiKeyRow, KeyUse, SigningSecretRow, Store, StoreResult};

/// Where the keys and secrets come from: the store, or a test's own.
#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// Every key ever created, revoked ones included.
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>>;
    /// Every tenant's secrets valid at `at`, each tenant's newest first.
    async fn signing_secrets(&self, at: DateTime<Utc>) -> StoreResult<Vec<SigningSecretRow>>;
    /// Writes key uses in one batch.
    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()>;
}

/// The store as a [`Source`].
pub(super) struct StoreSource(pub(super) Arc<dyn Store>);

#[async_trait]
impl Source for StoreSource {
    async fn api_keys(&self) -> StoreResult<Vec<ApiKeyRow>> {
        self.0.api_keys().await
    }

    async fn signing_secrets(&self, at: DateTime<Utc>) -> StoreResult<Vec<SigningSecretRow>> {
        self.0.signing_secrets(None, at).await
    }

    async fn record_key_uses(&self, uses: &[KeyUse]) -> StoreResult<()> {
        self.0.record_key_uses(uses).await
    }
}

/// What one reload changed.
#[derive(Debug, Default)]
pub(super) struct Changes {
    pub(super) keys: KeyChanges,
    pub(super) secrets: Vec<SecretChange>,
}

impl Changes {
    /// Logs the switch to requiring keys, if this was it.
    pub(super) fn log_closed(&self) {
        if self.keys.closed {
            tracing::info!(
                keys = self.keys.added.len(),
                "an API key exists: every route but the public ones now requires one"
            );
        }
    }

    /// Logs every change: the switch to keys, keys, then secrets by tenant.
    fn log(&self) {
        self.log_closed();
        let k = &self.keys;
        if !k.is_empty() {
            tracing::info!(
                added = k.added.len(),
                revoked = k.revoked.len(),
                removed = k.removed,
                added_keys = %prefixes(&k.added),
                revoked_keys = %prefixes(&k.revoked),
                "API keys changed"
            );
        }
        for change in &self.secrets {
            match change {
                SecretChange::Added { tenant, secrets } => {
                    tracing::info!(%tenant, secrets, "signing secret added")
                }
                SecretChange::Rotated {
                    tenant,
                    secrets,
                    overlap_until,
                } => tracing::info!(
                    %tenant,
                    secrets,
                    overlap_until = overlap_until.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                    "signing secret rotation began"
                ),
                SecretChange::OverlapEnded { tenant, secrets } => {
                    tracing::info!(%tenant, secrets, "signing secret overlap ended")
                }
            }
        }
    }
}

/// The most display prefixes one line names; more are counted, not named.
const MOST_PREFIXES: usize = 16;

/// Display prefixes separated by spaces, at most [`MOST_PREFIXES`] of them.
fn prefixes(list: &[String]) -> String {
    let mut text = list[..list.len().min(MOST_PREFIXES)].join(" ");
    if list.len() > MOST_PREFIXES {
        text.push_str(&format!(" and {} more", list.len() - MOST_PREFIXES));
    }
    text
}

impl Auth {
    /// Reloads keys and secrets, logs what changed, and writes the key uses noted since
    /// the last call.
    pub async fn refresh(&self) -> StoreResult<()> {
        self.reload().await?.log();
        let uses = self.keys.take_uses();
        if !uses.is_empty()
            && let Err(e) = self.source.record_key_uses(&uses).await
        {
            self.keys.return_uses(uses);
            return Err(e);
        }
        Ok(())
    }

    /// Installs the keys and the secrets valid now; what changed.
    pub(super) async fn reload(&self) -> StoreResult<Changes> {
        let rows = self.source.api_keys().await?;
        let now = (self.clock)();
        let secrets = self.source.signing_secrets(now).await?;
        Ok(Changes {
            keys: self.keys.install(&rows),
            secrets: self.secrets.install(secrets, now),
        })
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

#[cfg(test)]
#[path = "refresh_tests.rs"]
mod tests;
