//! `--html FILE` (SPEC §15): the report as one self-contained page: no script, and no
//! style, font or image from anywhere else, so it opens offline and from a CI artefact.
//!
//! Sections: summary (beside the baseline when given), thresholds, latency over time
//! (p50 and p99 per second for each kind), throughput over time, the percentile curve
//! from 50 % to 99.99 % on a log axis (the baseline's dashed beside it), failures by
//! reason. Charts are inline SVG from [`super::svg`].

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::baseline::figures;
use super::report::table::number;
use super::report::{Curves, Report};
use super::svg::{Line, LineChart, bars, escape};

/// Colours of the three kinds: (p50, p99).
const COLORS: [(&str, &str, &str); 3] = [
    ("sync", "#1f77b4", "#7fb3e0"),
    ("ack", "#2ca02c", "#8fd18f"),
    ("callback", "#9467bd", "#c9b3e0"),
];

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:0 auto;max-width:860px;padding:16px;color:#1b1b1b;background:#fff}\
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .4em;\
border-bottom:1px solid #ddd}p.meta{color:#555;margin:0}\
table{border-collapse:collapse;width:100%}td,th{padding:3px 8px;text-align:right;\
border-bottom:1px solid #eee}td:first-child,th:first-child{text-align:left}\
.met{color:#1e7b34;font-weight:600}.breached{color:#b00020;font-weight:600}\
figure{margin:8px 0}figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto}\
.grid{stroke:#eee}.tick{font-size:11px;fill:#555}.axis{font-size:12px;fill:#333}\
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 16px;\
font-size:13px}.swatch{display:inline-block;width:22px;margin-right:6px;vertical-align:middle;\
border-top-width:3px}.solid{border-top-style:solid}.dashed{border-top-style:dashed}\
.none{color:#777}";

/// Writes the page for `report` to `path`.
pub fn write(path: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::write(path, page(report))
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut body = String::new();
    let verdict = match report.thresholds.iter().all(|t| t.met) {
        true if report.thresholds.is_empty() => String::new(),
        true => " — every threshold met".to_string(),
        false => " — thresholds BREACHED".to_string(),
    };
    let _ = write!(
        body,
        "<h1>consuma load{}</h1><p class=\"meta\">{} · mode {} · {} requests in {:.1} s{}</p>",
        escape(&verdict),
        escape(&report.target),
        report.mode,
        report.requests_sent(),
        report.total_time_s,
        if report.interrupted {
            " · interrupted"
        } else {
            ""
        },
    );
    body.push_str(&summary(report));
    body.push_str(&thresholds(report));
    body.push_str("<h2>Latency over time</h2>");
    body.push_str(&latency_over_time(report));
    body.push_str("<h2>Throughput over time</h2>");
    body.push_str(&throughput(report));
    body.push_str("<h2>Latency distribution</h2>");
    body.push_str(&percentile_curve(report));
    body.push_str("<h2>Failures by reason</h2>");
    body.push_str(&failures(report));
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>consuma load report</title><style>{STYLE}</style></head>\
         <body>{body}</body></html>\n"
    )
}

/// The figures table; with a baseline, its column and the change.
fn summary(report: &Report) -> String {
    let mut out = String::from("<h2>Summary</h2><table>");
    let counts = counts(report);
    match &report.baseline {
        None => {
            out.push_str("<tr><th>figure</th><th>this run</th></tr>");
            let doc = serde_json::to_value(report).unwrap_or(Value::Null);
            for (name, value) in figures(&doc).into_iter().filter(|f| f.1.is_some()) {
                let _ = write!(out, "<tr><td>{name}</td><td>{}</td></tr>", number(value));
            }
        }
        Some(b) => {
            let name = Path::new(&b.file)
                .file_name()
                .map_or(b.file.clone(), |n| n.to_string_lossy().into_owned());
            let _ = write!(
                out,
                "<tr><th>figure</th><th>this run</th><th>baseline ({})</th><th>change</th></tr>",
                escape(&name)
            );
            for f in b
                .figures
                .iter()
                .filter(|f| f.value.or(f.baseline).is_some())
            {
                let regressed = b.regressions.contains(&f.figure);
                let change = f.change_pct.map_or("-".into(), |c| format!("{c:+.1} %"));
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td{}>{change}{}</td></tr>",
                    f.figure,
                    number(f.value),
                    number(f.baseline),
                    if regressed { " class=\"breached\"" } else { "" },
                    if regressed { " regression" } else { "" },
                );
            }
        }
    }
    for (name, value) in counts {
        let _ = write!(out, "<tr><td>{name}</td><td>{}</td></tr>", escape(&value));
    }
    out.push_str("</table>");
    out
}

/// Request and callback counts, as (label, value).
fn counts(report: &Report) -> Vec<(&'static str, String)> {
    let mut rows = Vec::new();
    if let Some(s) = &report.sync {
        rows.push((
            "sync requests",
            format!("{} ({} ok)", s.counts.total, s.counts.successful),
        ));
    }
    if let Some(a) = &report.r#async {
        rows.push((
            "async requests",
            format!("{} ({} acknowledged)", a.counts.total, a.counts.successful),
        ));
        rows.push((
            "callbacks",
            format!("{}/{} received", a.callbacks_received, a.callbacks_expected),
        ));
        rows.push(("duplicates", a.duplicates.to_string()));
        let signatures = match a.signatures_verified {
            true => a.bad_signatures.to_string(),
            false => "not checked".to_string(),
        };
        rows.push(("bad signatures", signatures));
    }
    rows
}

fn thresholds(report: &Report) -> String {
    let mut out = String::from("<h2>Thresholds</h2>");
    if report.thresholds.is_empty() {
        out.push_str("<p class=\"none\">none given (--threshold)</p>");
        return out;
    }
    out.push_str("<table><tr><th>threshold</th><th>value</th><th>verdict</th></tr>");
    for t in &report.thresholds {
        let (class, word) = if t.met {
            ("met", "met")
        } else {
            ("breached", "breached")
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{word}</td></tr>",
            escape(&t.expression),
            number(t.value)
        );
    }
    out.push_str("</table>");
    out
}

/// Ticks every few seconds along a time axis of `seconds` buckets.
fn time_ticks(seconds: usize) -> Vec<(f64, String)> {
    let step = (seconds / 8).max(1);
    (0..=seconds)
        .step_by(step)
        .map(|t| (t as f64, format!("{t}s")))
        .collect()
}

fn latency_over_time(report: &Report) -> String {
    let s = &report.timeseries;
    let mut lines = Vec::new();
    for (kind, p50_color, p99_color) in COLORS {
        let pick = |second: &super::timeseries::Second, p99: bool| match (kind, p99) {
            ("sync", false) => second.sync_p50,
            ("sync", true) => second.sync_p99,
            ("ack", false) => second.ack_p50,
            ("ack", true) => second.ack_p99,
            (_, false) => second.callback_p50,
            (_, true) => second.callback_p99,
        };
        for (p99, color) in [(false, p50_color), (true, p99_color)] {
            let points: Vec<(f64, Option<f64>)> =
                s.iter().map(|x| (x.t as f64 + 0.5, pick(x, p99))).collect();
            if points.iter().any(|p| p.1.is_some()) {
                let name = format!("{kind} {}", if p99 { "p99" } else { "p50" });
                lines.push(Line {
                    name,
                    color,
                    dashed: p99,
                    points,
                });
            }
        }
    }
    LineChart {
        title: "p50 and p99 per second of intended send time",
        x_label: "time since start",
        y_label: "ms",
        x_ticks: time_ticks(s.len()),
        lines,
    }
    .render()
}

fn throughput(report: &Report) -> String {
    let s = &report.timeseries;
    let line = |name: &str, color, get: fn(&super::timeseries::Second) -> u64| Line {
        name: name.to_string(),
        color,
        // Drawn dashed so that `ok`, on top of it when nothing fails, leaves it visible.
        dashed: name == "sent",
        points: s
            .iter()
            .map(|x| (x.t as f64 + 0.5, Some(get(x) as f64)))
            .collect(),
    };
    LineChart {
        title: "requests per second",
        x_label: "time since start",
        y_label: "requests",
        x_ticks: time_ticks(s.len()),
        lines: vec![
            line("sent", "#555555", |x| x.sent),
            line("ok", "#1e7b34", |x| x.ok),
            line("errors", "#c0392b", |x| x.errors),
        ],
    }
    .render()
}

/// x of a percentile on the log axis: −log10(1 − p/100), 50 % → 0.3, 99.99 % → 4.
fn log_x(percentile: f64) -> f64 {
    -(1.0 - percentile / 100.0).log10()
}

fn curve_lines(curves: &Curves, dashed: bool, suffix: &str) -> Vec<Line> {
    let kinds = [
        ("sync", &curves.sync),
        ("ack", &curves.ack),
        ("callback", &curves.callback),
    ];
    kinds
        .into_iter()
        .zip(COLORS)
        .filter_map(|((kind, curve), (_, color, _))| {
            let points = curve
                .as_ref()?
                .iter()
                .map(|p| (log_x(p.percentile), Some(p.ms)))
                .collect();
            let name = format!("{kind}{suffix}");
            Some(Line {
                name,
                color,
                dashed,
                points,
            })
        })
        .collect()
}

fn percentile_curve(report: &Report) -> String {
    let mut lines = curve_lines(&report.latency_curve, false, "");
    if let Some(b) = &report.baseline
        && let Ok(theirs) = serde_json::from_value::<CurvesIn>(b.latency_curve.clone())
    {
        lines.extend(curve_lines(&theirs.into(), true, " (baseline)"));
    }
    let ticks = [50.0, 90.0, 99.0, 99.9, 99.99]
        .map(|p| (log_x(p), format!("{p}%")))
        .to_vec();
    LineChart {
        title: "latency by percentile (log axis)",
        x_label: "percentile",
        y_label: "ms",
        x_ticks: ticks,
        lines,
    }
    .render()
}

/// A baseline's `latency_curve`, read back.
#[derive(serde::Deserialize)]
struct CurvesIn {
    sync: Option<Vec<PointIn>>,
    ack: Option<Vec<PointIn>>,
    callback: Option<Vec<PointIn>>,
}

#[derive(serde::Deserialize)]
struct PointIn {
    percentile: f64,
    ms: f64,
}

impl From<CurvesIn> for Curves {
    fn from(c: CurvesIn) -> Self {
        let points = |v: Option<Vec<PointIn>>| {
            v.map(|v| {
                v.into_iter()
                    .map(|p| super::report::CurvePoint {
                        percentile: p.percentile,
                        ms: p.ms,
                    })
                    .collect()
            })
        };
        Curves {
            sync: points(c.sync),
            ack: points(c.ack),
            callback: points(c.callback),
        }
    }
}

fn failures(report: &Report) -> String {
    let mut rows: Vec<(String, u64)> = Vec::new();
    if let Some(s) = &report.sync {
        rows.extend(
            s.counts
                .failures
                .iter()
                .map(|(k, n)| (format!("sync {k}"), *n)),
        );
    }
    if let Some(a) = &report.r#async {
        rows.extend(
            a.counts
                .failures
                .iter()
                .map(|(k, n)| (format!("async {k}"), *n)),
        );
    }
    bars("failed requests by reason", &rows)
}
