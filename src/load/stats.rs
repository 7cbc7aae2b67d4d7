//! Counting while the run goes: one [`Section`] per endpoint, shared by every task.
//!
//! Invariants: every finished request is recorded exactly once, in `total` and either
//! `successful` or one `failures` key; latencies go into an HDR histogram at microsecond
//! resolution (successful requests only: fast refusals would otherwise flatter the
//! percentiles). Nothing is sampled or dropped.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use super::client::{Kind, Outcome};
use super::timeseries::{Sample, Series};

/// Highest latency a histogram holds exactly: one hour. Longer ones are clamped to it.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A histogram of latencies in microseconds, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `latency` in microseconds, clamped to the histogram's range.
pub fn record_latency(h: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    h.saturating_record(micros.max(1));
}

/// The counts of one endpoint.
#[derive(Debug, Clone)]
pub struct Section {
    pub total: u64,
    pub successful: u64,
    /// Failure reason → count (`http_503`, `timeout`, …; callbacks add theirs later).
    pub failures: BTreeMap<String, u64>,
    /// Send (or intended send) → response complete, successful requests only.
    pub latency: Histogram<u64>,
}

impl Default for Section {
    fn default() -> Self {
        Self {
            total: 0,
            successful: 0,
            failures: BTreeMap::new(),
            latency: latency_histogram(),
        }
    }
}

impl Section {
    /// Counts one finished request.
    pub fn record(&mut self, outcome: &Outcome, latency: Duration) {
        self.total += 1;
        match outcome.failure_reason() {
            None => {
                self.successful += 1;
                record_latency(&mut self.latency, latency);
            }
            Some(reason) => self.add_failures(reason, 1),
        }
    }

    /// Adds `n` failures under `reason` (no-op for zero, so no empty keys appear).
    pub fn add_failures(&mut self, reason: String, n: u64) {
        if n > 0 {
            *self.failures.entry(reason).or_default() += n;
        }
    }

    /// Sum of all failures.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// The sections of a run, its time series, and the count of answers for
/// `requests_per_s`.
#[derive(Debug)]
pub struct Tally {
    sync: Mutex<Section>,
    r#async: Mutex<Section>,
    series: Mutex<Series>,
    answers: AtomicU64,
    finished: AtomicU64,
    errors: AtomicU64,
}

impl Default for Tally {
    fn default() -> Self {
        Self::starting_at(Instant::now())
    }
}

impl Tally {
    /// A tally whose time series counts seconds from `origin` (the schedule's start).
    pub fn starting_at(origin: Instant) -> Self {
        Self {
            sync: Mutex::default(),
            r#async: Mutex::default(),
            series: Mutex::new(Series::new(origin)),
            answers: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// Counts one finished request of `kind`, due at `due`.
    pub fn record(&self, kind: Kind, outcome: &Outcome, latency: Duration, due: Instant) {
        if outcome.answered() {
            self.answers.fetch_add(1, Ordering::Relaxed);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
        let failed = outcome.failure_reason().is_some();
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        {
            let mut series = self.series.lock().expect("no panics while counting");
            let bucket = series.at(due);
            bucket.sent += 1;
            match failed {
                true => bucket.errors += 1,
                false => {
                    bucket.ok += 1;
                    let sample = match kind {
                        Kind::Sync => Sample::Sync,
                        Kind::Async => Sample::Ack,
                    };
                    bucket.sample(sample, latency);
                }
            }
        }
        let section = match kind {
            Kind::Sync => &self.sync,
            Kind::Async => &self.r#async,
        };
        section
            .lock()
            .expect("no panics while counting")
            .record(outcome, latency);
    }

    /// (finished requests, failed requests) so far, for the progress line.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.finished.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }

    /// The time series so far, taken once every request has finished.
    pub fn take_series(&self) -> Series {
        let mut series = self.series.lock().expect("no panics while counting");
        let empty = Series::new(series.origin());
        std::mem::replace(&mut *series, empty)
    }

    /// Responses received (any status), for `requests_per_s`.
    pub fn answers(&self) -> u64 {
        self.answers.load(Ordering::Relaxed)
    }

    /// The final sections (sync, async), taken once every request has finished.
    pub fn take_sections(&self) -> (Section, Section) {
        let take =
            |m: &Mutex<Section>| std::mem::take(&mut *m.lock().expect("no panics while counting"));
        (take(&self.sync), take(&self.r#async))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn every_request_is_counted_once_as_success_or_by_reason() {
        let tally = Tally::default();
        let ms = Duration::from_millis;
        let now = Instant::now();
        tally.record(Kind::Sync, &Outcome::Ok { request_id: None }, ms(10), now);
        let unavailable = Outcome::Status(StatusCode::SERVICE_UNAVAILABLE);
        tally.record(Kind::Sync, &unavailable, ms(1), now);
        tally.record(Kind::Sync, &unavailable, ms(1), now);
        let timeout = Outcome::Transport("timeout");
        tally.record(Kind::Sync, &timeout, ms(30_000), now);
        tally.record(Kind::Async, &Outcome::NoRequestId, ms(5), now);
        assert_eq!(tally.progress(), (5, 4));
        let second = &tally.take_series().seconds()[0];
        assert_eq!((second.sent, second.ok, second.errors), (5, 1, 4));
        assert_eq!(tally.answers(), 4, "a timeout is not an answer");
        let (sync, asynch) = tally.take_sections();
        assert_eq!((sync.total, sync.successful, sync.failed()), (4, 1, 3));
        assert_eq!(sync.failures["http_503"], 2);
        assert_eq!(sync.failures["timeout"], 1);
        assert_eq!(sync.latency.len(), 1, "only successes are timed");
        assert_eq!(asynch.failures["no_request_id"], 1);
    }

    #[test]
    fn latencies_keep_microseconds_and_clamp_beyond_an_hour() {
        let mut h = latency_histogram();
        record_latency(&mut h, Duration::from_micros(1234));
        record_latency(&mut h, Duration::from_secs(7200));
        assert_eq!(h.min(), 1234);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_LATENCY_US && h.max() <= MAX_LATENCY_US + MAX_LATENCY_US / 1000);
    }

    #[test]
    fn zero_failures_add_no_key() {
        let mut s = Section::default();
        s.add_failures("callback_missing".into(), 0);
        assert!(s.failures.is_empty());
    }
}
