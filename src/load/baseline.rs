//! `--baseline FILE` and `--max-regression PCT` (SPEC §15, §17): this run beside an
//! earlier `--json` output of the tool.
//!
//! The baseline is read before any request is sent, so a file that is not a report of
//! this tool, or one of another mode, is a usage error and not a wasted run. Figures
//! are read from the JSON of both runs by the same code ([`figures`]), so what is
//! compared is exactly what the documents say. A regression is a p50/p95/p99 latency
//! higher, or `requests_per_s` lower, than the baseline's by more than PCT per cent.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::mode::Mode;

/// A baseline report, checked.
#[derive(Debug, Clone)]
pub struct Baseline {
    file: String,
    doc: Value,
}

/// One figure of this run beside the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub figure: &'static str,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    /// (value − baseline) ÷ baseline in per cent; `null` when either is missing or the
    /// baseline is zero.
    pub change_pct: Option<f64>,
}

/// The comparison in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub file: String,
    pub figures: Vec<Figure>,
    pub max_regression_pct: Option<f64>,
    /// The figures that regressed beyond `max_regression_pct`.
    pub regressions: Vec<&'static str>,
    /// The baseline's `latency_curve`, drawn beside this run's in the HTML report.
    #[serde(skip)]
    pub latency_curve: Value,
}

/// The latency blocks compared: (figure prefix, section, block).
const BLOCKS: [(&str, &str, &str); 3] = [
    ("sync", "sync", "latency_ms"),
    ("ack", "async", "ack_latency_ms"),
    ("callback", "async", "callback_latency_ms"),
];

/// The statistics of a block, as figure names by prefix.
const STATS: [&str; 5] = ["p50", "p95", "p99", "max", "mean"];

/// Figure names, `<prefix>_<stat>`, known at compile time.
const NAMES: [[&str; 5]; 3] = [
    ["sync_p50", "sync_p95", "sync_p99", "sync_max", "sync_mean"],
    ["ack_p50", "ack_p95", "ack_p99", "ack_max", "ack_mean"],
    [
        "callback_p50",
        "callback_p95",
        "callback_p99",
        "callback_max",
        "callback_mean",
    ],
];

impl Baseline {
    /// Reads and checks `path`: `Err` is the one-line usage error.
    pub fn read(path: &Path, mode: Mode) -> Result<Self, String> {
        let file = path.display().to_string();
        let not_ours =
            |why: &str| format!("--baseline {file}: not a --json output of consuma load ({why})");
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--baseline {file}: cannot read it: {e}"))?;
        let doc: Value = serde_json::from_str(&text).map_err(|_| not_ours("not JSON"))?;
        let field = |name: &str| doc.get(name);
        if !field("requests_per_s").is_some_and(Value::is_number)
            || !field("total_time_s").is_some_and(Value::is_number)
        {
            return Err(not_ours("no requests_per_s or total_time_s"));
        }
        let their_mode = field("mode").and_then(Value::as_str).unwrap_or("");
        if !["sync", "async", "both"].contains(&their_mode) {
            return Err(not_ours("no mode"));
        }
        for (section, present) in [("sync", mode.has_sync()), ("async", mode.has_async())] {
            let shape_ok = match field(section) {
                Some(Value::Null) => !present || their_mode != mode.as_str(),
                Some(Value::Object(_)) => true,
                _ => false,
            };
            if !shape_ok {
                return Err(not_ours(&format!("no {section} section")));
            }
        }
        if their_mode != mode.as_str() {
            return Err(format!(
                "--baseline {file}: a run of --mode {their_mode}, this one is --mode {}",
                mode.as_str()
            ));
        }
        Ok(Self { file, doc })
    }

    /// This run (its JSON document) beside the baseline.
    pub fn compare(&self, current: &Value, max_regression: Option<f64>) -> Comparison {
        let theirs = figures(&self.doc);
        let figures: Vec<Figure> = figures(current)
            .into_iter()
            .zip(theirs)
            .map(|((figure, value), (_, baseline))| Figure {
                figure,
                value,
                baseline,
                change_pct: change(value, baseline),
            })
            .collect();
        let regressions = match max_regression {
            Some(pct) => figures
                .iter()
                .filter(|f| regressed(f, pct))
                .map(|f| f.figure)
                .collect(),
            None => Vec::new(),
        };
        Comparison {
            file: self.file.clone(),
            figures,
            max_regression_pct: max_regression,
            regressions,
            latency_curve: self
                .doc
                .get("latency_curve")
                .cloned()
                .unwrap_or(Value::Null),
        }
    }
}

/// Every compared figure of a report document, in a fixed order.
pub fn figures(doc: &Value) -> Vec<(&'static str, Option<f64>)> {
    let mut out = vec![
        ("requests_per_s", doc["requests_per_s"].as_f64()),
        ("error_rate", error_rate(doc)),
    ];
    for ((_, section, block), names) in BLOCKS.iter().zip(NAMES) {
        for (stat, name) in STATS.iter().zip(names) {
            out.push((name, doc[section][block][stat].as_f64()));
        }
    }
    out
}

/// Failed ÷ sent over both sections, from a report document.
fn error_rate(doc: &Value) -> Option<f64> {
    let sum = |key: &str| {
        ["sync", "async"]
            .iter()
            .filter_map(|s| doc[s][key].as_f64())
            .sum::<f64>()
    };
    let total = sum("total");
    (total > 0.0).then(|| sum("failed") / total)
}

fn change(value: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    let (v, b) = (value?, baseline?);
    (b != 0.0).then(|| ((v - b) / b * 1000.0).round() / 10.0)
}

/// Whether `f` is a regression beyond `pct` per cent.
fn regressed(f: &Figure, pct: f64) -> bool {
    let Some(change) = f.change_pct else {
        return false;
    };
    let name = f.figure;
    let percentile = ["_p50", "_p95", "_p99"].iter().any(|s| name.ends_with(s));
    match name {
        "requests_per_s" => change < -pct,
        _ if percentile => change > pct,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(rps: f64, p99: f64) -> Value {
        json!({
            "target": "http://x", "mode": "sync", "total_time_s": 1.0,
            "requests_per_s": rps, "async": null,
            "sync": {"total": 10, "failed": 1,
                     "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": p99, "max": 9.0, "mean": 1.0}},
        })
    }

    fn write(dir: &tempfile::TempDir, name: &str, v: &Value) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path
    }

    #[test]
    fn changes_are_per_cent_and_only_percentiles_and_rate_regress() {
        let dir = tempfile::tempdir().unwrap();
        let base = Baseline::read(&write(&dir, "b.json", &doc(100.0, 4.0)), Mode::Sync).unwrap();
        let mut now = doc(89.0, 5.0);
        now["sync"]["latency_ms"]["max"] = json!(90.0);
        let c = base.compare(&now, Some(10.0));
        let by = |name: &str| c.figures.iter().find(|f| f.figure == name).unwrap().clone();
        assert_eq!(by("sync_p99").change_pct, Some(25.0));
        assert_eq!(by("requests_per_s").change_pct, Some(-11.0));
        assert_eq!(by("error_rate").value, Some(0.1));
        assert_eq!(by("ack_p99").value, None);
        assert_eq!(
            c.regressions,
            ["requests_per_s", "sync_p99"],
            "max is not compared"
        );
        assert!(base.compare(&now, Some(30.0)).regressions.is_empty());
        assert!(base.compare(&now, None).regressions.is_empty());
    }

    #[test]
    fn anything_but_a_report_of_the_same_mode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "ok.json", &doc(1.0, 1.0));
        let e = Baseline::read(&path, Mode::Async).unwrap_err();
        assert!(e.contains("--mode sync"), "{e}");
        for (name, bad) in [
            ("a.json", json!([1, 2])),
            ("b.json", json!({"mode": "sync"})),
            (
                "c.json",
                json!({"mode": "x", "requests_per_s": 1, "total_time_s": 1}),
            ),
            (
                "d.json",
                json!({"mode": "sync", "requests_per_s": 1, "total_time_s": 1}),
            ),
        ] {
            let e = Baseline::read(&write(&dir, name, &bad), Mode::Sync).unwrap_err();
            assert!(e.contains("not a --json output"), "{name}: {e}");
        }
        std::fs::write(dir.path().join("t.txt"), "hello").unwrap();
        assert!(Baseline::read(&dir.path().join("t.txt"), Mode::Sync).is_err());
        assert!(Baseline::read(&dir.path().join("none.json"), Mode::Sync).is_err());
    }
}
