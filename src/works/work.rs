//! The public [`Work`] trait (SPEC §13 "Embedding"): an async function from the input
//! JSON to a result JSON, whose error says whether another attempt may succeed. The
//! built-in `text` ([`super::text::TextWork`]) and the operator's `http` works
//! ([`super::upstream::HttpWork`]) implement it, and so does an embedder's own work.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

/// One unit of work. `perform` may be called again for the same request (a retry, or
/// after a crash): [`WorkCall::idempotency_key`] is the same on every call.
#[async_trait::async_trait]
pub trait Work: Send + Sync + 'static {
    /// The kind shown by `GET /works` (`text`, `http`, or the embedder's word).
    fn kind(&self) -> &str {
        "custom"
    }

    /// Performs the work on `call`'s input: its result, or why there is none.
    async fn perform(&self, call: &WorkCall) -> Result<Value, WorkError>;
}

/// What a work is given: the input and the identity of the request it serves.
#[derive(Debug, Clone)]
pub struct WorkCall {
    /// The request's id (`x-request-id` upstream).
    pub request_id: Uuid,
    /// The input: a JSON object as text; for async requests the exact bytes stored, the
    /// same on every attempt.
    pub input: String,
    /// The caller's tenant (`x-consuma-tenant` upstream).
    pub tenant: String,
    /// The request's trace context (W3C `traceparent`), when it has one.
    pub traceparent: Option<String>,
    /// The same for every attempt of the request (§17: the request id, or a digest of the
    /// caller's Idempotency-Key).
    pub idempotency_key: String,
    /// 1 for the first attempt.
    pub attempt: u32,
}

impl WorkCall {
    /// A first attempt of `input` for `tenant`, keyed by a fresh request id.
    pub fn new(input: impl Into<String>, tenant: impl Into<String>) -> Self {
        let request_id = Uuid::now_v7();
        Self {
            request_id,
            input: input.into(),
            tenant: tenant.into(),
            traceparent: None,
            idempotency_key: request_id.to_string(),
            attempt: 1,
        }
    }

    /// The input read as `T`; a mismatch is a [`WorkErrorKind::Rejected`] error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, WorkError> {
        serde_json::from_str(&self.input)
            .map_err(|e| WorkError::rejected(format!("the input does not fit the work: {e}")))
    }
}

/// How a work failed, which decides its retry and its sync answer (§13, §17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkErrorKind {
    /// The work refused this input (an upstream 4xx): never retried; sync 422
    /// `/problems/work-rejected`.
    Rejected,
    /// The work answered something unusable (a non-JSON or oversized 2xx): never
    /// retried; sync 502 `/problems/upstream-failed`.
    BadAnswer,
    /// The work could not be reached or was busy (transport error, 5xx, 408, 409, 425,
    /// 429): retried; sync 502 `/problems/upstream-failed`.
    Unavailable,
    /// No complete answer within the work's timeout: retried; sync 504
    /// `/problems/upstream-timeout`.
    Timeout,
    /// The work itself broke (the built-in work failing or panicking): never retried;
    /// sync 500 `/problems/work-failed`.
    Failed,
}

/// A work's failure: its kind, a message for the caller (never the upstream's URL), and
/// what the attempt learned (status code, `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WorkError {
    pub kind: WorkErrorKind,
    pub message: String,
    /// The upstream's status code, when it answered.
    pub status_code: Option<u16>,
    /// The upstream's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl WorkError {
    pub fn new(kind: WorkErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status_code: None,
            retry_after: None,
        }
    }

    /// The input was refused; another attempt would fail the same way.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(WorkErrorKind::Rejected, message)
    }

    /// A passing trouble; another attempt may succeed.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::new(WorkErrorKind::Unavailable, message)
    }

    /// The work broke; not retried.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(WorkErrorKind::Failed, message)
    }

    pub fn with_status(mut self, code: u16) -> Self {
        self.status_code = Some(code);
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// Whether an async request makes another attempt (while it has attempts left).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            WorkErrorKind::Unavailable | WorkErrorKind::Timeout
        )
    }

    /// The metric label of an attempt that ended with this error.
    pub fn outcome(&self) -> &'static str {
        match self.kind {
            WorkErrorKind::Rejected => "rejected",
            WorkErrorKind::BadAnswer => "bad_answer",
            WorkErrorKind::Unavailable => "unavailable",
            WorkErrorKind::Timeout => "timeout",
            WorkErrorKind::Failed => "failed",
        }
    }
}
