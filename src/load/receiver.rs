//! The built-in callback receiver for async runs (SPEC §7): an axum server on
//! `--callback-host:--callback-port` answering `POST /callback`, and the [`CallbackBook`]
//! that matches each callback to its request by `request_id`.
//!
//! Invariants:
//! - A request id is expected once its 202 arrived; its first callback is *received*
//!   and timed from the request's send time (its intended send time in the open loop),
//!   every later one is a *duplicate*.
//! - A callback can beat its 202 to us (the service may deliver before our client has
//!   read the acknowledgement), so an unknown id is kept as *early* and matched when the
//!   acknowledgement comes; ids never acknowledged end up *unmatched*.
//! - With a signing secret, every delivery (duplicates too) is verified with the
//!   Standard Webhooks headers; a bad one is counted but still matched, so a wrong secret
//!   shows as N bad signatures rather than N missing callbacks.
//! - The receiver answers 200 to every well-formed callback, whatever its signature, so
//!   the service does not retry and inflate the duplicates; 400 to a body without a
//!   request id.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{latency_histogram, record_latency};
use super::timeseries::{Sample, Series};
use crate::delivery::signing::SigningSecret;

/// The path the receiver listens on; the callback_url is `http://host:port/callback`.
pub const CALLBACK_PATH: &str = "/callback";

/// Callback counts at the end of a run.
#[derive(Debug, Clone)]
pub struct CallbackCounts {
    /// Acknowledged async requests (a 2xx with a request id).
    pub expected: u64,
    /// Expected requests whose callback came (the first delivery of each).
    pub received: u64,
    /// Deliveries after the first for the same request id.
    pub duplicates: u64,
    /// Deliveries whose signature did not verify (only with a signing secret).
    pub bad_signatures: u64,
    /// Received callbacks reporting `"status": "failed"` (the work failed).
    pub failed_status: u64,
    /// Callbacks for request ids never acknowledged to this run.
    pub unmatched: u64,
    /// Deliveries without a request id (answered 400).
    pub malformed: u64,
    /// Send (or intended send) → first callback received.
    pub latency: Histogram<u64>,
}

impl CallbackCounts {
    /// Acknowledged requests whose callback never came.
    pub fn missing(&self) -> u64 {
        self.expected - self.received
    }
}

/// Where each request id stands.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// Acknowledged, callback not yet here.
    Awaiting { sent: Instant },
    /// Callback here before the acknowledgement.
    Early { at: Instant, completed: bool },
    /// Matched.
    Received,
}

#[derive(Debug)]
struct Book {
    entries: HashMap<String, Entry>,
    counts: CallbackCounts,
    /// Callback latencies and failures by the second their request was due.
    series: Series,
}

impl Book {
    /// Counts the first callback of a request due at `sent`, received at `at`.
    fn matched(&mut self, sent: Instant, at: Instant, completed: bool) {
        let latency = at.saturating_duration_since(sent);
        self.counts.matched(latency, completed);
        let bucket = self.series.at(sent);
        bucket.sample(Sample::Callback, latency);
        if !completed {
            bucket.errors += 1;
        }
    }
}

/// Matches callbacks to acknowledged requests; shared by the senders and the receiver.
#[derive(Debug)]
pub struct CallbackBook {
    book: Mutex<Book>,
    all_in: Notify,
    secret: Option<SigningSecret>,
}

impl CallbackBook {
    /// An empty book; with `secret`, signatures are verified.
    pub fn new(secret: Option<SigningSecret>) -> Self {
        let counts = CallbackCounts {
            expected: 0,
            received: 0,
            duplicates: 0,
            bad_signatures: 0,
            failed_status: 0,
            unmatched: 0,
            malformed: 0,
            latency: latency_histogram(),
        };
        Self {
            book: Mutex::new(Book {
                entries: HashMap::new(),
                counts,
                series: Series::new(Instant::now()),
            }),
            all_in: Notify::new(),
            secret,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("no panics while counting")
    }

    /// Registers an acknowledged request sent (or due) at `sent`.
    pub fn expect(&self, request_id: String, sent: Instant) {
        let mut book = self.lock();
        book.counts.expected += 1;
        match book.entries.entry(request_id) {
            MapEntry::Vacant(v) => {
                v.insert(Entry::Awaiting { sent });
            }
            MapEntry::Occupied(mut o) => {
                if let Entry::Early { at, completed } = *o.get() {
                    o.insert(Entry::Received);
                    book.matched(sent, at, completed);
                }
                // An id acknowledged twice would be a server bug; it stays one entry.
            }
        }
        self.wake_if_all_in(&book);
    }

    /// Counts one delivery of the callback for `request_id`, received at `at`.
    pub fn arrive(&self, request_id: String, at: Instant, completed: bool) {
        let mut book = self.lock();
        match book.entries.entry(request_id) {
            MapEntry::Vacant(v) => {
                v.insert(Entry::Early { at, completed });
            }
            MapEntry::Occupied(mut o) => match *o.get() {
                Entry::Awaiting { sent } => {
                    o.insert(Entry::Received);
                    book.matched(sent, at, completed);
                }
                Entry::Early { .. } | Entry::Received => book.counts.duplicates += 1,
            },
        }
        self.wake_if_all_in(&book);
    }

    fn wake_if_all_in(&self, book: &Book) {
        if book.counts.received >= book.counts.expected {
            self.all_in.notify_waiters();
        }
    }

    /// Checks the Standard Webhooks signature of one delivery, counting a bad one.
    fn check_signature(&self, headers: &HeaderMap, body: &[u8]) {
        let Some(secret) = &self.secret else { return };
        if !signature_is_valid(secret, headers, body) {
            self.lock().counts.bad_signatures += 1;
        }
    }

    /// Waits until every expected callback has been received or `deadline` passes;
    /// `true` when all arrived. Call once every request has been acknowledged.
    pub async fn wait_for_all(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.all_in.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up in between is not lost.
            notified.as_mut().enable();
            let (received, expected) = self.progress();
            if received >= expected {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Counts the time series' seconds from `origin` (the schedule's start); call before
    /// the first request.
    pub fn set_origin(&self, origin: Instant) {
        self.lock().series = Series::new(origin);
    }

    /// The callbacks' time series: latencies and `callback_failed` by their request's
    /// second, and each callback still missing as an error in its request's second.
    pub fn take_series(&self) -> Series {
        let mut book = self.lock();
        let origin = book.series.origin();
        let mut series = std::mem::replace(&mut book.series, Series::new(origin));
        for entry in book.entries.values() {
            if let Entry::Awaiting { sent } = entry {
                series.at(*sent).errors += 1;
            }
        }
        series
    }

    /// (received, expected) so far.
    pub fn progress(&self) -> (u64, u64) {
        let book = self.lock();
        (book.counts.received, book.counts.expected)
    }

    /// The counts as they stand; early entries left are unmatched callbacks.
    pub fn counts(&self) -> CallbackCounts {
        let book = self.lock();
        let unmatched = book
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Early { .. }))
            .count();
        CallbackCounts {
            unmatched: unmatched as u64,
            ..book.counts.clone()
        }
    }
}

impl CallbackCounts {
    fn matched(&mut self, latency: Duration, completed: bool) {
        self.received += 1;
        if !completed {
            self.failed_status += 1;
        }
        record_latency(&mut self.latency, latency);
    }
}

/// Verifies `webhook-id`, `webhook-timestamp` and `webhook-signature` over `body`.
pub fn signature_is_valid(secret: &SigningSecret, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return false;
    };
    match timestamp.parse::<i64>() {
        Ok(timestamp) => secret.verify(id, timestamp, body, signature),
        Err(_) => false,
    }
}

/// The request id of a callback (body `request_id`, else the `webhook-id` header) and
/// whether it reports `"status": "completed"`.
fn parse_callback(headers: &HeaderMap, body: &[u8]) -> Option<(String, bool)> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let from_body = value.get("request_id").and_then(|v| v.as_str());
    let from_header = headers.get("webhook-id").and_then(|v| v.to_str().ok());
    let id = from_body.or(from_header)?.to_owned();
    Some((
        id,
        value.get("status").and_then(|s| s.as_str()) == Some("completed"),
    ))
}

async fn on_callback(
    State(book): State<Arc<CallbackBook>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    book.check_signature(&headers, &body);
    match parse_callback(&headers, &body) {
        Some((id, completed)) => {
            book.arrive(id, at, completed);
            StatusCode::OK
        }
        None => {
            book.lock().counts.malformed += 1;
            StatusCode::BAD_REQUEST
        }
    }
}

/// The running receiver.
pub struct Receiver {
    /// The callback_url to put in /async bodies.
    pub url: String,
    book: Arc<CallbackBook>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Binds `host:port` (port 0 picks one) and starts serving; `Err` with a one-line
    /// reason when the address cannot be bound.
    pub async fn start(
        host: &str,
        port: u16,
        secret: Option<SigningSecret>,
    ) -> Result<Self, String> {
        let listener = crate::listen::bind((host, port)).await.map_err(|e| {
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    " (another program holds that port: --callback-port 0 picks a free one)"
                }
                _ => "",
            };
            format!("cannot listen for callbacks on {host}:{port}: {e}{hint}")
        })?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let book = Arc::new(CallbackBook::new(secret));
        let app = Router::new()
            .route(CALLBACK_PATH, post(on_callback))
            .with_state(book.clone());
        let stop = CancellationToken::new();
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(e) = serve.await {
                eprintln!("consuma load: callback receiver stopped: {e}");
            }
        });
        Ok(Self {
            url: callback_url(host, local),
            book,
            stop,
            task,
        })
    }

    /// The book the senders register acknowledged requests in.
    pub fn book(&self) -> &Arc<CallbackBook> {
        &self.book
    }

    /// Stops serving; connections still open get a second to close.
    pub async fn stop(self) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

/// `http://<host>:<bound port>/callback`, bracketing an IPv6 literal.
fn callback_url(host: &str, bound: SocketAddr) -> String {
    let port = bound.port();
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}{CALLBACK_PATH}"),
        _ => format!("http://{host}:{port}{CALLBACK_PATH}"),
    }
}

#[cfg(test)]
#[path = "receiver_tests.rs"]
mod tests;
