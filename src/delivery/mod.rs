//! One callback attempt (SPEC §2 "The callback"). PLACEHOLDER: replaced before merge.
pub mod signing;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ssrf::CallbackPolicy;
use signing::SigningSecret;

/// What one attempt should send.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub url: &'a str,
    /// The `webhook-id`: the request id, stable across attempts.
    pub webhook_id: &'a str,
    /// The callback body, byte-identical across attempts.
    pub body: &'a str,
    pub traceparent: &'a str,
}

/// How an attempt ended, and what it means for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry { retry_after: Option<Duration> },
    Permanent,
}

#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub verdict: Verdict,
}

pub struct CallbackClient {
    _policy: Arc<CallbackPolicy>,
    _secret: SigningSecret,
    _timeout: Duration,
}

impl CallbackClient {
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

/// Delay before the attempt after failed attempt `k` (1-based).
pub fn next_delay(k: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    let _ = retry_after;
    base * 2u32.pow(k.saturating_sub(1).min(20))
}

/// The callback body (SPEC §2).
pub fn callback_body(
    request_id: uuid::Uuid,
    result: Result<&crate::work::WorkResult, &str>,
    finalised_at: DateTime<Utc>,
) -> String {
    let _ = (request_id, result, finalised_at);
    String::new()
}
