//! The callback HTTP client. PLACEHOLDER until the callback policy's resolver is merged.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::signing::SigningSecret;
use super::{AttemptOutcome, Delivery, Verdict};
use crate::ssrf::CallbackPolicy;

/// Sends callback attempts.
pub struct CallbackClient {
    _policy: Arc<CallbackPolicy>,
    _secret: SigningSecret,
    _timeout: Duration,
}

impl CallbackClient {
    /// A client for `policy`, signing with `secret`.
    pub fn new(
        policy: Arc<CallbackPolicy>,
        secret: SigningSecret,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            _policy: policy,
            _secret: secret,
            _timeout: timeout,
        })
    }

    /// One attempt.
    pub async fn attempt(&self, d: Delivery<'_>) -> AttemptOutcome {
        let _ = d;
        AttemptOutcome {
            started_at: Utc::now(),
            duration: Duration::ZERO,
            status_code: None,
            error: Some("placeholder".into()),
            verdict: Verdict::Permanent,
        }
    }
}
