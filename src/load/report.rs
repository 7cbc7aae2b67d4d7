//! The report of a run (SPEC §7): built once from the final counts, printed as a table
//! or as one JSON document.
//!
//! Shape rules: a section is `None` (JSON `null`) when its mode was not run; a latency
//! block is `None` when it has no samples. Latencies are milliseconds with microsecond
//! resolution (3 decimals), from HDR histograms. For async, `successful` counts
//! acknowledged requests and `callbacks_expected` equals it; callbacks that never came
//! (`callback_missing`) or reported a failed work (`callback_failed`) are failures too,
//! so `failed` (the sum of `failures`) can exceed `total - successful`.
//!
//! An interrupted run (Ctrl-C) reports like any other, with `interrupted: true`; its
//! counts cover exactly the requests it sent.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::baseline::Comparison;
use super::receiver::CallbackCounts;
use super::schedule::Pace;
use super::stats::Section;
use super::timeseries::Second;

/// The gate's sections of the table (thresholds, the baseline).
pub(super) mod table;

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// `None` for an empty histogram (of microseconds).
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: f64| round(us / 1000.0, 3);
        Some(Self {
            p50: ms(h.value_at_quantile(0.50) as f64),
            p95: ms(h.value_at_quantile(0.95) as f64),
            p99: ms(h.value_at_quantile(0.99) as f64),
            max: ms(h.max() as f64),
            mean: ms(h.mean()),
        })
    }
}

/// The request counts every section has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counts {
    pub total: u64,
    /// 2xx answers (for async: acknowledgements).
    pub successful: u64,
    /// Sum of `failures`.
    pub failed: u64,
    /// `successful / total`, from 0 to 1.
    pub success_rate: f64,
    /// Failure reason → count.
    pub failures: BTreeMap<String, u64>,
}

impl Counts {
    fn of(s: &Section) -> Self {
        let rate = if s.total == 0 {
            0.0
        } else {
            s.successful as f64 / s.total as f64
        };
        Self {
            total: s.total,
            successful: s.successful,
            failed: s.failed(),
            success_rate: round(rate, 4),
            failures: s.failures.clone(),
        }
    }
}

/// The /sync section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncReport {
    #[serde(flatten)]
    pub counts: Counts,
    pub latency_ms: Option<Latency>,
}

/// The /async section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AsyncReport {
    #[serde(flatten)]
    pub counts: Counts,
    pub ack_latency_ms: Option<Latency>,
    pub callback_latency_ms: Option<Latency>,
    pub callbacks_expected: u64,
    pub callbacks_received: u64,
    pub duplicates: u64,
    pub bad_signatures: u64,
    /// Whether signatures were checked (`--signing-secret`); if not, `bad_signatures` is 0.
    pub signatures_verified: bool,
    pub unmatched_callbacks: u64,
    pub malformed_callbacks: u64,
    pub callback_url: String,
}

/// How requests were paced.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "loop", rename_all = "snake_case")]
pub enum Pacing {
    Closed {
        concurrency: u32,
    },
    Open {
        rate: f64,
        max_in_flight: u32,
    },
    /// `--stages`, ramped from rate 0.
    Stages {
        stages: Vec<StageReport>,
        max_in_flight: u32,
    },
}

/// One stage of `--stages`: the rate reaches `rate` at the end of `duration_s`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    pub duration_s: f64,
    pub rate: f64,
}

impl From<Pace> for Pacing {
    fn from(pace: Pace) -> Self {
        match pace {
            Pace::Closed { workers } => Pacing::Closed {
                concurrency: workers,
            },
            Pace::Open {
                rate,
                max_in_flight,
            } => Pacing::Open {
                rate,
                max_in_flight,
            },
            Pace::Ramp {
                ramp,
                max_in_flight,
            } => Pacing::Stages {
                stages: ramp
                    .stages()
                    .iter()
                    .map(|s| StageReport {
                        duration_s: s.duration.as_secs_f64(),
                        rate: s.target,
                    })
                    .collect(),
                max_in_flight,
            },
        }
    }
}

/// The percentiles of `latency_curve` (SPEC §17), from 50 % to 99.99 %.
pub const CURVE_PERCENTILES: [f64; 14] = [
    50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.95, 99.99,
];

/// One point of a percentile curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// `latency_curve`: percentile → milliseconds per kind, `null` without samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Curves {
    pub sync: Option<Vec<CurvePoint>>,
    pub ack: Option<Vec<CurvePoint>>,
    pub callback: Option<Vec<CurvePoint>>,
}

/// The percentile curve of a histogram of microseconds; `None` when empty.
fn curve(h: &Histogram<u64>) -> Option<Vec<CurvePoint>> {
    (!h.is_empty()).then(|| {
        CURVE_PERCENTILES
            .iter()
            .map(|p| CurvePoint {
                percentile: *p,
                ms: round(h.value_at_quantile(p / 100.0) as f64 / 1000.0, 3),
            })
            .collect()
    })
}

/// The whole report; serialises to the SPEC §7 JSON document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub target: String,
    pub mode: &'static str,
    pub pacing: Pacing,
    /// Sending phase plus the wait for callbacks.
    pub total_time_s: f64,
    /// From the first request to the end of the last response.
    pub sending_time_s: f64,
    /// Responses (any status) per second of the sending phase.
    pub requests_per_s: f64,
    /// Whether SIGINT or SIGTERM cut the run short.
    pub interrupted: bool,
    pub sync: Option<SyncReport>,
    #[serde(rename = "async")]
    pub r#async: Option<AsyncReport>,
    /// Per second of intended send time.
    pub timeseries: Vec<Second>,
    pub latency_curve: Curves,
    /// Each `--threshold` with its value and whether it was met.
    pub thresholds: Vec<Verdict>,
    /// This run beside `--baseline`; `null` without one.
    pub baseline: Option<Comparison>,
}

/// What the report is built from, besides the sections.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub target: String,
    pub mode: &'static str,
    pub pacing: Pacing,
    pub sending: Duration,
    pub total: Duration,
    pub answers: u64,
    pub interrupted: bool,
}

/// The async section's inputs.
pub struct AsyncInputs {
    pub section: Section,
    pub callbacks: CallbackCounts,
    pub signatures_verified: bool,
    pub callback_url: String,
}

impl Report {
    /// Builds the report; `sync`/`asynch` are `None` when that mode did not run.
    pub fn build(facts: RunFacts, sync: Option<Section>, asynch: Option<AsyncInputs>) -> Self {
        let sending_s = facts.sending.as_secs_f64();
        let rps = if sending_s > 0.0 {
            facts.answers as f64 / sending_s
        } else {
            0.0
        };
        let latency_curve = Curves {
            sync: sync.as_ref().and_then(|s| curve(&s.latency)),
            ack: asynch.as_ref().and_then(|a| curve(&a.section.latency)),
            callback: asynch.as_ref().and_then(|a| curve(&a.callbacks.latency)),
        };
        Self {
            target: facts.target,
            mode: facts.mode,
            pacing: facts.pacing,
            total_time_s: round(facts.total.as_secs_f64(), 3),
            sending_time_s: round(sending_s, 3),
            requests_per_s: round(rps, 1),
            interrupted: facts.interrupted,
            sync: sync.map(|s| SyncReport {
                counts: Counts::of(&s),
                latency_ms: Latency::of(&s.latency),
            }),
            r#async: asynch.map(AsyncReport::build),
            timeseries: Vec::new(),
            latency_curve,
            thresholds: Vec::new(),
            baseline: None,
        }
    }

    /// Failed ÷ sent over both sections (SPEC §17: a fraction); `None` with nothing sent.
    pub fn error_rate(&self) -> Option<f64> {
        let sync = self.sync.as_ref().map(|s| &s.counts);
        let asynch = self.r#async.as_ref().map(|a| &a.counts);
        let (failed, total) = [sync, asynch]
            .into_iter()
            .flatten()
            .fold((0, 0), |(f, t), c| (f + c.failed, t + c.total));
        (total > 0).then(|| failed as f64 / total as f64)
    }

    /// True when every request was answered 401: the service wants `--api-key`.
    pub fn all_unauthorized(&self) -> bool {
        let sync = self.sync.as_ref().map(|s| &s.counts);
        let asynch = self.r#async.as_ref().map(|a| &a.counts);
        let unauthorized: u64 = [sync, asynch]
            .into_iter()
            .flatten()
            .map(|c| c.failures.get("http_401").copied().unwrap_or(0))
            .sum();
        self.requests_sent() > 0 && unauthorized == self.requests_sent()
    }

    /// True when every async request was refused with 400, which is what a server
    /// refusing loopback callbacks answers (SPEC §4): worth a hint.
    pub fn callbacks_refused_by_policy(&self) -> bool {
        self.r#async.as_ref().is_some_and(|a| {
            a.counts.total > 0 && a.counts.failures.get("http_400") == Some(&a.counts.total)
        })
    }

    /// Requests sent, of both modes.
    pub fn requests_sent(&self) -> u64 {
        let sync = self.sync.as_ref().map_or(0, |s| s.counts.total);
        let asynch = self.r#async.as_ref().map_or(0, |a| a.counts.total);
        sync + asynch
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }
}

impl AsyncReport {
    fn build(mut a: AsyncInputs) -> Self {
        let cb = &a.callbacks;
        a.section
            .add_failures("callback_missing".into(), cb.missing());
        a.section
            .add_failures("callback_failed".into(), cb.failed_status);
        Self {
            counts: Counts::of(&a.section),
            ack_latency_ms: Latency::of(&a.section.latency),
            callback_latency_ms: Latency::of(&cb.latency),
            callbacks_expected: cb.expected,
            callbacks_received: cb.received,
            duplicates: cb.duplicates,
            bad_signatures: cb.bad_signatures,
            signatures_verified: a.signatures_verified,
            unmatched_callbacks: cb.unmatched,
            malformed_callbacks: cb.malformed,
            callback_url: a.callback_url,
        }
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

impl std::fmt::Display for Report {
    /// The human-readable table.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pacing = match &self.pacing {
            Pacing::Closed { concurrency } => format!("closed loop, {concurrency} workers"),
            Pacing::Open {
                rate,
                max_in_flight,
            } => {
                format!("open loop, {rate} req/s (at most {max_in_flight} in flight)")
            }
            Pacing::Stages {
                stages,
                max_in_flight,
            } => {
                let each: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{}s:{}", s.duration_s, s.rate))
                    .collect();
                format!(
                    "open loop, stages {} (at most {max_in_flight} in flight)",
                    each.join(",")
                )
            }
        };
        writeln!(
            f,
            "Target         {}  (mode {}, {pacing})",
            self.target, self.mode
        )?;
        writeln!(
            f,
            "Total time     {:.3} s  (sending {:.3} s)",
            self.total_time_s, self.sending_time_s
        )?;
        writeln!(f, "Requests/s     {:.1}", self.requests_per_s)?;
        if self.interrupted {
            writeln!(
                f,
                "Interrupted    yes: stopped by a signal after {} requests",
                self.requests_sent()
            )?;
        }
        if let Some(s) = &self.sync {
            write!(
                f,
                "\nSYNC  POST /sync\n{}",
                counts_table(&s.counts, "successful")
            )?;
            writeln!(f, "  Latency       {}", latency_line(&s.latency_ms))?;
        }
        if let Some(a) = &self.r#async {
            write!(
                f,
                "\nASYNC  POST /async\n{}",
                counts_table(&a.counts, "acknowledged")
            )?;
            writeln!(f, "  Ack latency   {}", latency_line(&a.ack_latency_ms))?;
            writeln!(
                f,
                "  Callback lat. {}",
                latency_line(&a.callback_latency_ms)
            )?;
            writeln!(f, "  Callbacks     {}", callback_line(a))?;
        }
        table::gate_sections(f, self)
    }
}

fn counts_table(c: &Counts, ok_word: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  Requests      {} total, {} {} ({:.2} %)",
        c.total,
        c.successful,
        ok_word,
        c.success_rate * 100.0
    );
    let failures = if c.failures.is_empty() {
        "none".to_string()
    } else {
        let each: Vec<String> = c.failures.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!("{} ({})", c.failed, each.join(", "))
    };
    let _ = writeln!(out, "  Failed        {failures}");
    out
}

fn latency_line(l: &Option<Latency>) -> String {
    match l {
        None => "no samples".to_string(),
        Some(l) => format!(
            "ms  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            l.p50, l.p95, l.p99, l.max, l.mean
        ),
    }
}

fn callback_line(a: &AsyncReport) -> String {
    let signatures = if a.signatures_verified {
        format!("{} bad signatures", a.bad_signatures)
    } else {
        "signatures not checked".to_string()
    };
    format!(
        "{}/{} received, {} duplicates, {signatures}, {} unmatched",
        a.callbacks_received, a.callbacks_expected, a.duplicates, a.unmatched_callbacks
    )
}

/// A threshold checked against a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub expression: String,
    /// The measured figure; `null` when it had no samples.
    pub value: Option<f64>,
    pub met: bool,
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
