//! Idempotency keys (SPEC §2 "Idempotency"): what a key is bound to, and for how long.
//!
//! A key is scoped by tenant (SPEC §10), method and path, and bound to a fingerprint of the *validated* input
//! (defaults applied), so `{"text":"a"}` and `{"count":1,"text":"a"}` are the same request.
//! The store keeps the key with the response to replay; see
//! [`Store::admit`](crate::store::Store::admit) for the rules.

use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::store::{IdempotencyClaim, StoredResponse};

/// Keys are kept at least this long (SPEC: at least 24 hours).
pub const KEEP_KEYS: Duration = Duration::from_secs(24 * 3600);

/// Scope of keys sent to POST /sync.
pub const SYNC_SCOPE: &str = "POST /sync";
/// Scope of keys sent to POST /async.
pub const ASYNC_SCOPE: &str = "POST /async";

/// SHA-256 over the scope and the canonical JSON of the validated input.
pub fn fingerprint(scope: &str, input_json: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(scope)
            .chain_update([0])
            .chain_update(input_json)
            .finalize(),
    )
}

/// A claim for `key`. An unfinished claim (a /sync at work) blocks repeats for `hold`,
/// after which its process is presumed dead and the key is free again.
pub fn claim(
    tenant: &str,
    scope: &'static str,
    key: String,
    input_json: &str,
    response: Option<StoredResponse>,
    hold: Duration,
) -> IdempotencyClaim {
    IdempotencyClaim {
        tenant: tenant.to_owned(),
        scope,
        fingerprint: fingerprint(scope, input_json),
        key,
        response,
        held_until: Utc::now() + hold,
    }
}
