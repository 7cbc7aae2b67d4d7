//! The callback HTTP client: one signed POST per attempt (SPEC §2 "The callback", §4, §9).
//!
//! Each attempt:
//! 1. re-checks the URL with [`CallbackPolicy::check_url`] — literal-IP hosts never reach a
//!    resolver, so this is their only gate at delivery time;
//! 2. resolves host names only through the policy's [`VettedResolver`], which refuses the
//!    host if *any* address is denied and hands the connector the vetted addresses, so
//!    there is no second lookup for DNS rebinding to exploit; names not pinned are looked
//!    up asynchronously ([`Dns`]: `/etc/hosts`, then DNS), so no thread blocks on DNS;
//! 3. sends the stored body with fresh `webhook-timestamp` and `webhook-signature` headers,
//!    never following a redirect and never through a proxy;
//! 4. waits for the response head only: one timeout covers resolution, connect, TLS, the
//!    request and the response head, and a complete head within it decides the attempt.
//!
//! The body is never waited for (SPEC §9 "Bounded delivery"). After the head, a detached
//! task reads at most [`MAX_BODY_BYTES`] of it, only until the attempt's deadline, and
//! discards what it reads; then the response is dropped. On HTTP/1, hyper (1.x) wakes the
//! connection when its body is dropped, reads once more what is already buffered, and
//! closes the connection unless that completed the body; on HTTP/2 it resets the stream.
//! So a huge or never-ending body costs at most one socket and a bounded buffer until that
//! deadline, and a small body lets the connection go back to the pool. At most
//! [`MAX_DRAINS`] bodies are read at once; past that a body is dropped unread at once.
//!
//! Invariants: `attempt` never panics and never touches the database; the URL's query
//! string and the body are never logged; a refusal by the policy is permanent.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::sync::Semaphore;

use super::retry::{Reply, classify, honours_retry_after, parse_retry_after};
use super::signing::SigningSecret;
use super::{AttemptOutcome, Delivery};
use crate::ssrf::{CallbackPolicy, Dns, DnsServers, Refusal, ResolveError, VettedResolver};
use crate::telemetry::redact_url;

/// `User-Agent` of every callback.
const USER_AGENT: &str = concat!("consuma/", env!("CARGO_PKG_VERSION"));
/// Longest error text recorded for a failed connection.
const MAX_ERROR_CHARS: usize = 300;
/// Most bytes of a response body ever read (SPEC §9); the rest is never read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most response bodies being read at once, so that memory stays bounded however many
/// receivers trickle bodies.
pub const MAX_DRAINS: usize = 64;

/// Sends callback attempts; cheap to share (one connection pool for all workers).
pub struct CallbackClient {
    policy: Arc<CallbackPolicy>,
    timeout: Duration,
    http: reqwest::Client,
    /// Permits for the tasks reading response bodies.
    drains: Arc<Semaphore>,
}

impl CallbackClient {
    /// A client that checks destinations with `policy`, looks names up through
    /// `dns_servers` (and `/etc/hosts`), and gives each attempt `timeout` to receive a
    /// complete response head. Each [`Delivery`] brings the secrets it is signed with.
    pub fn new(
        policy: Arc<CallbackPolicy>,
        timeout: Duration,
        dns_servers: DnsServers,
    ) -> anyhow::Result<Self> {
        // reqwest is built without a crypto provider (STACK.md): ring, installed once per
        // process; a second call finds it installed and changes nothing.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dns = Arc::new(Dns::new(dns_servers, timeout));
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(VettedResolver::new(policy.clone(), dns)))
            // The attempt's own timeout covers this too; set here, it also splits the
            // connect time between a host's addresses instead of letting the first eat it.
            .connect_timeout(timeout)
            .user_agent(USER_AGENT)
            .build()
            .context("cannot build the callback HTTP client")?;
        Ok(Self {
            policy,
            timeout,
            http,
            drains: Arc::new(Semaphore::new(MAX_DRAINS)),
        })
    }

    /// Makes one attempt and reports how it went; see the module docs for the steps.
    pub async fn attempt(&self, d: Delivery<'_>) -> AttemptOutcome {
        let started_at = Utc::now();
        let clock = Instant::now();
        let reply = self.exchange(d, started_at).await;
        let duration = clock.elapsed();
        let status_code = match reply {
            Reply::Status { code, .. } => Some(code),
            _ => None,
        };
        let (verdict, error) = classify(&reply);
        AttemptOutcome {
            started_at,
            duration,
            status_code,
            error,
            verdict,
        }
    }

    /// Checks, signs and sends; returns what came back, unjudged.
    async fn exchange(&self, d: Delivery<'_>, started_at: DateTime<Utc>) -> Reply {
        let url = match self.policy.check_url(d.url) {
            Ok(url) => url,
            Err(refusal) => return refused(&refusal),
        };
        if d.secrets.is_empty() {
            return Reply::Failed {
                error: "no signing secret for the request's tenant".into(),
            };
        }
        tracing::debug!(url = %redact_url(&url), "sending callback");
        let timestamp = started_at.timestamp();
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", d.webhook_id)
            .header("webhook-timestamp", timestamp)
            .header(
                "webhook-signature",
                SigningSecret::sign_all(d.secrets, d.webhook_id, timestamp, d.body.as_bytes()),
            )
            .header("x-request-id", d.webhook_id)
            .body(d.body.to_owned());
        if !d.traceparent.is_empty() {
            request = request.header("traceparent", d.traceparent);
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_elapsed) => self.timed_out(),
            Ok(Ok(response)) => {
                let reply = status_reply(&response);
                self.discard_body(response, deadline);
                reply
            }
            Ok(Err(error)) => self.error_reply(error, deadline),
        }
    }

    /// The reply for a failed exchange: a policy refusal from the resolver is permanent;
    /// a failure at the deadline is the attempt running out of time, whichever layer
    /// noticed first (the connector's timeout and the DNS query's are the same length);
    /// anything else is a readable, URL-free error to retry on.
    fn error_reply(&self, error: reqwest::Error, deadline: tokio::time::Instant) -> Reply {
        if let Some(refusal) = Refusal::find_in(&error) {
            return refused(refusal);
        }
        if error.is_timeout() || tokio::time::Instant::now() >= deadline {
            return self.timed_out();
        }
        let error = error.without_url();
        let text = match chain(&error).find_map(|e| e.downcast_ref::<ResolveError>()) {
            Some(lookup) => format!("dns error: {lookup}"),
            None => describe(&error),
        };
        Reply::Failed {
            error: truncate(text),
        }
    }

    /// The attempt ran out of time.
    fn timed_out(&self) -> Reply {
        Reply::TimedOut {
            after: self.timeout,
        }
    }

    /// Reads and discards at most [`MAX_BODY_BYTES`] of the body until `deadline`, in a
    /// task of its own so that nobody waits for it, then drops the response (see the
    /// module docs); with [`MAX_DRAINS`] already running, drops it at once.
    fn discard_body(&self, response: reqwest::Response, deadline: tokio::time::Instant) {
        match Arc::clone(&self.drains).try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    read_body(response, MAX_BODY_BYTES, deadline).await;
                    drop(permit);
                });
            }
            Err(_) => drop(response),
        }
    }
}

/// Reads `response`'s body until its end, `limit` bytes, an error or `deadline`, whichever
/// comes first, keeping nothing; returns how many bytes were read.
async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    deadline: tokio::time::Instant,
) -> usize {
    let mut read = 0;
    while read < limit {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => read += chunk.len(),
            _ => break,
        }
    }
    read
}

/// The reply for a response head; `Retry-After` is read only where it is honoured.
fn status_reply(response: &reqwest::Response) -> Reply {
    let code = response.status().as_u16();
    let retry_after = honours_retry_after(code)
        .then(|| response.headers().get(RETRY_AFTER)?.to_str().ok())
        .flatten()
        .and_then(|value| parse_retry_after(value, SystemTime::now()));
    Reply::Status { code, retry_after }
}

fn refused(refusal: &Refusal) -> Reply {
    Reply::Refused {
        reason: refusal.to_string(),
    }
}

/// `"<kind>: <root cause>"`, e.g. `connect error: Connection refused (os error 111)`.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connect error"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_builder() {
        "invalid request"
    } else {
        "request error"
    };
    let root = chain(error)
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("{kind}: {root}")
}

/// At most [`MAX_ERROR_CHARS`] characters of `text`.
fn truncate(text: String) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The error followed by its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

#[cfg(test)]
mod tests;
