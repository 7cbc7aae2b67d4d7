//! One callback attempt (SPEC §2 "The callback"): *how* a result reaches its receiver.
//!
//! The engine decides *when* (it claims the job, calls [`CallbackClient::attempt`] outside
//! any database transaction, and records the [`AttemptOutcome`]); this module only sends.
//!
//! - [`payload`]: the body, serialised once when the work ends ([`callback_body`]).
//! - [`signing`]: Standard Webhooks `whsec_` secret and `v1,` signatures.
//! - [`client`]: the HTTP client — callback policy re-checked, vetted asynchronous DNS
//!   (SPEC §4, §9), no redirects, no proxy, one timeout up to the response head, at most
//!   64 KiB of the body read and never waited for.
//! - [`retry`]: pure rules: reply → [`Verdict`], the delay before the next attempt, and
//!   whether an attempt counts against its destination's health (SPEC §8).
//!
//! Invariants: an attempt never panics and never touches the database; it never logs the
//! body or the URL's query string; every attempt of a request carries the same
//! `webhook-id` and body, with a fresh `webhook-timestamp` and signature.

pub mod client;
pub mod payload;
pub mod retry;
pub mod signing;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use client::CallbackClient;
pub use payload::callback_body;
pub use retry::{
    classify, counts_against_destination, delay_with_jitter, next_delay, parse_retry_after,
};

/// What one attempt sends, and where.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The receiver's URL as submitted; checked again against the policy before sending.
    pub url: &'a str,
    /// The `webhook-id` (and `X-Request-Id`): the request id, stable across attempts.
    pub webhook_id: &'a str,
    /// The callback body, byte-identical across attempts.
    pub body: &'a str,
    /// The W3C `traceparent` continuing the request's trace.
    pub traceparent: &'a str,
    /// The tenant's valid signing secrets, newest first: one signature each in
    /// `webhook-signature` (SPEC §10 rotation). Empty: the attempt fails unsent.
    pub secrets: &'a [signing::SigningSecret],
}

/// How an attempt ended, and what it means for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A complete 2xx response head arrived in time: the callback is sent.
    Delivered,
    /// The attempt failed; try again if the budget allows. `retry_after` is the receiver's
    /// `Retry-After` on a 429 or 503, to be honoured when longer than the backoff.
    Retry { retry_after: Option<Duration> },
    /// Retrying cannot help (the callback policy refused the destination).
    Permanent,
}

/// The record of one attempt, as the engine stores it (SPEC §2 `attempts`).
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    /// When the attempt started (also its `webhook-timestamp`, in whole seconds).
    pub started_at: DateTime<Utc>,
    /// From start until the response head arrived or the attempt gave up.
    pub duration: Duration,
    /// The response status, if a complete response head arrived.
    pub status_code: Option<u16>,
    /// Why the attempt failed; `None` when delivered.
    pub error: Option<String>,
    pub verdict: Verdict,
}

impl AttemptOutcome {
    /// Whether this attempt counts against its destination's health for the circuit
    /// breaker (SPEC §8): no response (connect error, DNS failure, timeout), a 5xx or a
    /// 429 counts; a refusal by the callback policy, a 2xx, 3xx or other 4xx does not.
    /// See [`counts_against_destination`].
    pub fn counts_against_destination(&self) -> bool {
        counts_against_destination(self.status_code, &self.verdict)
    }
}
