//! `--threshold EXPR` (SPEC §15, §17): pass/fail conditions on the final figures.
//!
//! Grammar: `METRIC OP VALUE`, spaces allowed around the parts.
//! - METRIC: `sync_p50|p95|p99|max`, the same for `ack_` and `callback_`, `rps`,
//!   `error_rate`, `callback_missing`, `duplicates`, `bad_signatures`.
//! - OP: `<`, `<=`, `>`, `>=`.
//! - VALUE: a number of zero or more; latencies take `ms` (the default) or `s`;
//!   `error_rate` is a fraction (`0.001`) or a per cent (`0.1%`); the others are plain
//!   numbers. Any other unit is malformed.
//!
//! Values are kept in one unit per metric (milliseconds, a fraction, a count), which is
//! the unit the report prints. A threshold whose figure has no samples (no latency, no
//! request) is breached: a gate must not pass on nothing.

use super::mode::Mode;
use super::report::{Latency, Report, Verdict};

/// Which latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sync,
    Ack,
    Callback,
}

/// Which statistic of a latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    P50,
    P95,
    P99,
    Max,
}

/// A figure a threshold can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Latency(Kind, Stat),
    Rps,
    ErrorRate,
    CallbackMissing,
    Duplicates,
    BadSignatures,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One parsed `--threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The expression as given, for the report.
    pub expression: String,
    pub metric: Metric,
    pub op: Op,
    /// In the metric's unit: milliseconds, a fraction, or a count.
    pub value: f64,
}

impl Metric {
    fn parse(name: &str) -> Option<Self> {
        let simple = match name {
            "rps" => Some(Metric::Rps),
            "error_rate" => Some(Metric::ErrorRate),
            "callback_missing" => Some(Metric::CallbackMissing),
            "duplicates" => Some(Metric::Duplicates),
            "bad_signatures" => Some(Metric::BadSignatures),
            _ => None,
        };
        simple.or_else(|| {
            let (kind, stat) = name.split_once('_')?;
            let kind = match kind {
                "sync" => Kind::Sync,
                "ack" => Kind::Ack,
                "callback" => Kind::Callback,
                _ => return None,
            };
            let stat = match stat {
                "p50" => Stat::P50,
                "p95" => Stat::P95,
                "p99" => Stat::P99,
                "max" => Stat::Max,
                _ => return None,
            };
            Some(Metric::Latency(kind, stat))
        })
    }

    /// Whether a run of `mode` produces this figure.
    pub fn produced_by(self, mode: Mode) -> bool {
        match self {
            Metric::Latency(Kind::Sync, _) => mode.has_sync(),
            Metric::Rps | Metric::ErrorRate => true,
            _ => mode.has_async(),
        }
    }

    /// The value of `VALUE` with its unit, in this metric's unit.
    fn value(self, raw: &str) -> Option<f64> {
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        match self {
            Metric::Latency(..) => match raw.strip_suffix("ms") {
                Some(ms) => number(ms),
                None => match raw.strip_suffix('s') {
                    Some(s) => number(s).map(|v| v * 1000.0),
                    None => number(raw),
                },
            },
            Metric::ErrorRate => match raw.strip_suffix('%') {
                Some(pct) => number(pct).map(|v| v / 100.0),
                None => number(raw),
            },
            _ => number(raw),
        }
    }

    /// The figure in `report`; `None` when it has no samples.
    fn measure(self, report: &Report) -> Option<f64> {
        let asynch = report.r#async.as_ref();
        match self {
            Metric::Latency(kind, stat) => {
                let block = match kind {
                    Kind::Sync => report.sync.as_ref()?.latency_ms.as_ref(),
                    Kind::Ack => asynch?.ack_latency_ms.as_ref(),
                    Kind::Callback => asynch?.callback_latency_ms.as_ref(),
                };
                block.map(|l| stat.of(l))
            }
            Metric::Rps => (report.requests_sent() > 0).then_some(report.requests_per_s),
            Metric::ErrorRate => report.error_rate(),
            Metric::CallbackMissing => {
                let a = asynch?;
                Some(
                    a.counts
                        .failures
                        .get("callback_missing")
                        .copied()
                        .unwrap_or(0) as f64,
                )
            }
            Metric::Duplicates => asynch.map(|a| a.duplicates as f64),
            Metric::BadSignatures => asynch.map(|a| a.bad_signatures as f64),
        }
    }
}

impl Stat {
    fn of(self, l: &Latency) -> f64 {
        match self {
            Stat::P50 => l.p50,
            Stat::P95 => l.p95,
            Stat::P99 => l.p99,
            Stat::Max => l.max,
        }
    }
}

impl Op {
    fn holds(self, measured: f64, limit: f64) -> bool {
        match self {
            Op::Lt => measured < limit,
            Op::Le => measured <= limit,
            Op::Gt => measured > limit,
            Op::Ge => measured >= limit,
        }
    }
}

/// Parses one `--threshold` (the clap value parser): the error names the expression.
pub fn parse_threshold(raw: &str) -> Result<Threshold, String> {
    let malformed = |why: &str| format!("threshold `{raw}` is malformed: {why}");
    let at = raw
        .find(['<', '>'])
        .ok_or_else(|| malformed("no operator (<, <=, > or >=)"))?;
    let (name, rest) = raw.split_at(at);
    let (op, value) = match rest.as_bytes() {
        [b'<', b'=', ..] => (Op::Le, &rest[2..]),
        [b'>', b'=', ..] => (Op::Ge, &rest[2..]),
        [b'<', ..] => (Op::Lt, &rest[1..]),
        _ => (Op::Gt, &rest[1..]),
    };
    let metric = Metric::parse(name.trim()).ok_or_else(|| {
        malformed(&format!(
            "unknown metric `{}` (sync_p50|p95|p99|max, ack_…, callback_…, rps, \
             error_rate, callback_missing, duplicates, bad_signatures)",
            name.trim()
        ))
    })?;
    let value = metric
        .value(value.trim())
        .ok_or_else(|| malformed(&format!("`{}` is not a value for it", value.trim())))?;
    Ok(Threshold {
        expression: raw.trim().to_owned(),
        metric,
        op,
        value,
    })
}

impl Threshold {
    /// Checks the threshold against the final figures.
    pub fn check(&self, report: &Report) -> Verdict {
        let value = self.metric.measure(report);
        Verdict {
            expression: self.expression.clone(),
            value,
            met: value.is_some_and(|v| self.op.holds(v, self.value)),
        }
    }
}

#[cfg(test)]
#[path = "threshold_tests.rs"]
mod tests;
