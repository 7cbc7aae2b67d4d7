//! The gate's parts of the human-readable table: thresholds with their verdicts and
//! the figures beside the baseline (SPEC §15).

use std::fmt::{Formatter, Result};

use super::Report;

/// Writes the THRESHOLDS and BASELINE sections (nothing when neither was asked for).
pub fn gate_sections(f: &mut Formatter<'_>, report: &Report) -> Result {
    if !report.thresholds.is_empty() {
        writeln!(f, "\nTHRESHOLDS")?;
        for t in &report.thresholds {
            let verdict = if t.met { "met" } else { "BREACHED" };
            writeln!(
                f,
                "  {:<28} {:>12}  {verdict}",
                t.expression,
                number(t.value)
            )?;
        }
    }
    if let Some(b) = &report.baseline {
        writeln!(f, "\nBASELINE  {}", b.file)?;
        writeln!(
            f,
            "  {:<16} {:>12} {:>12} {:>9}",
            "figure", "this run", "baseline", "change"
        )?;
        for fig in b
            .figures
            .iter()
            .filter(|f| f.value.or(f.baseline).is_some())
        {
            let change = fig
                .change_pct
                .map_or("-".to_string(), |c| format!("{c:+.1} %"));
            let mark = if b.regressions.contains(&fig.figure) {
                "  REGRESSION"
            } else {
                ""
            };
            writeln!(
                f,
                "  {:<16} {:>12} {:>12} {:>9}{mark}",
                fig.figure,
                number(fig.value),
                number(fig.baseline),
                change
            )?;
        }
        if let Some(pct) = b.max_regression_pct {
            writeln!(f, "  {} regression(s) beyond {pct} %", b.regressions.len())?;
        }
    }
    Ok(())
}

/// A figure with up to 3 decimals, `no samples` for none.
pub fn number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        None => "no samples".to_string(),
    }
}
