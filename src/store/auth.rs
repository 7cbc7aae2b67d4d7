//! What the store keeps for authentication (SPEC §10): API keys (never the key itself,
//! only its SHA-256 and a display prefix) and each tenant's callback signing secrets.
//!
//! The rules (what a well-formed key is, when a rotated secret stops being valid) live in
//! [`crate::auth`]; these are the rows, as both backends read and write them.

use chrono::{DateTime, Utc};

/// A key to store: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// `csk_` and the key's next 8 characters; unique.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key; unique.
    pub hash: String,
    pub tenant: String,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
}

/// A stored key, as `consuma keys list` shows it and the key ring loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub prefix: String,
    /// Lowercase hex SHA-256 of the whole key (not secret: the key cannot be derived).
    pub hash: String,
    pub tenant: String,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// How a revocation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The key was valid and is revoked now.
    Revoked,
    /// It had been revoked before; nothing changed.
    AlreadyRevoked,
    /// No key has this prefix.
    Unknown,
}

/// One use of a key to record: its `last_used_at` becomes `at`, unless the stored value is
/// less than [`KEY_USE_RESOLUTION`] older (so a key is written at most once a minute,
/// whatever the number of instances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub prefix: String,
    pub at: DateTime<Utc>,
}

/// "Last used" is written at most this often per key (SPEC §10).
pub const KEY_USE_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(60);

/// One signing secret of a tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecretRow {
    pub tenant: String,
    /// `whsec_<base64>`.
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// `None` for the tenant's current secret; an older one is valid until then.
    pub valid_until: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SigningSecretRow {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningSecretRow")
            .field("tenant", &self.tenant)
            .field("secret", &"redacted")
            .field("created_at", &self.created_at)
            .field("valid_until", &self.valid_until)
            .finish()
    }
}
