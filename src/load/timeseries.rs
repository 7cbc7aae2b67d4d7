//! The per-second time series of a run (SPEC §15, §17): `timeseries` in `--json` and the
//! charts of the HTML report.
//!
//! Every request is put in the bucket of its *intended* send second (its ticket's due
//! time, counted from the schedule's start), and so is everything that follows from it:
//! its answer, its callback, and a callback that never came. So the per-second `sent`
//! add up to the requests sent, `ok` to the successful ones and `errors` to the failures
//! of the report (`failed` of both sections, `callback_missing` and `callback_failed`
//! included), whatever the order things arrived in.
//!
//! Latencies are kept as raw microseconds per second (4 bytes a sample: a million
//! requests cost 4 MB), so each second's p50 and p99 are exact.

use serde::Serialize;
use tokio::time::Instant;

/// Which latency a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Sync,
    Ack,
    Callback,
}

/// One second's counts and latency samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Microseconds, by [`Sample`].
    samples: [Vec<u32>; 3],
}

/// Buckets by second since `origin`.
#[derive(Debug, Clone)]
pub struct Series {
    origin: Instant,
    buckets: Vec<Bucket>,
}

/// One second of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start (the bucket [t, t+1)).
    pub t: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub sync_p50: Option<f64>,
    pub sync_p99: Option<f64>,
    pub ack_p50: Option<f64>,
    pub ack_p99: Option<f64>,
    pub callback_p50: Option<f64>,
    pub callback_p99: Option<f64>,
}

impl Series {
    /// An empty series whose second 0 starts at `origin`.
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            buckets: Vec::new(),
        }
    }

    /// The instant second 0 starts at.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The bucket of a request due at `due`.
    pub fn at(&mut self, due: Instant) -> &mut Bucket {
        let second = due.saturating_duration_since(self.origin).as_secs() as usize;
        if self.buckets.len() <= second {
            self.buckets.resize_with(second + 1, Bucket::default);
        }
        &mut self.buckets[second]
    }

    /// Adds `other`'s buckets to these, second by second (same origin).
    pub fn merge(&mut self, other: Series) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets
                .resize_with(other.buckets.len(), Bucket::default);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            mine.sent += theirs.sent;
            mine.ok += theirs.ok;
            mine.errors += theirs.errors;
            for (m, t) in mine.samples.iter_mut().zip(theirs.samples) {
                m.extend(t);
            }
        }
    }

    /// The report's seconds, from 0 to the last with anything in it.
    pub fn seconds(mut self) -> Vec<Second> {
        self.buckets
            .iter_mut()
            .enumerate()
            .map(|(t, b)| b.second(t as u64))
            .collect()
    }
}

impl Bucket {
    /// Adds one latency sample.
    pub fn sample(&mut self, kind: Sample, latency: std::time::Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.samples[kind as usize].push(micros);
    }

    fn second(&mut self, t: u64) -> Second {
        let [sync, ack, callback] = &mut self.samples;
        let (sync_p50, sync_p99) = percentiles(sync);
        let (ack_p50, ack_p99) = percentiles(ack);
        let (callback_p50, callback_p99) = percentiles(callback);
        Second {
            t,
            sent: self.sent,
            ok: self.ok,
            errors: self.errors,
            sync_p50,
            sync_p99,
            ack_p50,
            ack_p99,
            callback_p50,
            callback_p99,
        }
    }
}

/// (p50, p99) in milliseconds by the nearest-rank method; `None` without samples.
fn percentiles(samples: &mut [u32]) -> (Option<f64>, Option<f64>) {
    if samples.is_empty() {
        return (None, None);
    }
    samples.sort_unstable();
    let rank = |q: f64| {
        let i = (q * samples.len() as f64).ceil() as usize;
        f64::from(samples[i.clamp(1, samples.len()) - 1]) / 1000.0
    };
    (Some(rank(0.50)), Some(rank(0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_follow_the_due_second_and_gaps_are_zero() {
        let origin = Instant::now();
        let mut s = Series::new(origin);
        s.at(origin + Duration::from_millis(999)).sent += 1;
        s.at(origin + Duration::from_millis(2500)).sent += 2;
        let seconds = s.seconds();
        let sent: Vec<u64> = seconds.iter().map(|s| s.sent).collect();
        assert_eq!(sent, [1, 0, 2]);
        assert_eq!(seconds[1].sync_p50, None);
    }

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let origin = Instant::now();
        let mut s = Series::new(origin);
        let b = s.at(origin);
        for ms in (1..=100).rev() {
            b.sample(Sample::Ack, Duration::from_millis(ms));
        }
        let second = &s.seconds()[0];
        assert_eq!((second.ack_p50, second.ack_p99), (Some(50.0), Some(99.0)));
        assert_eq!(second.sync_p50, None);
    }

    #[test]
    fn merging_adds_second_by_second() {
        let origin = Instant::now();
        let mut a = Series::new(origin);
        a.at(origin).ok += 1;
        let mut b = Series::new(origin);
        b.at(origin).errors += 1;
        b.at(origin + Duration::from_secs(1)).errors += 4;
        b.at(origin)
            .sample(Sample::Callback, Duration::from_millis(7));
        a.merge(b);
        let seconds = a.seconds();
        assert_eq!(seconds.len(), 2);
        assert_eq!((seconds[0].ok, seconds[0].errors), (1, 1));
        assert_eq!(seconds[1].errors, 4);
        assert_eq!(seconds[0].callback_p99, Some(7.0));
    }
}
