//! Inline SVG charts for the HTML report, drawn here (no library, no script): line
//! charts with a linear or logarithmic x axis and horizontal bars.
//!
//! Every chart is a fixed `viewBox` scaled by CSS to the page's width; text is escaped.

use std::fmt::Write as _;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// One line of a chart: points (x, y), a gap where y is `None`.
pub struct Line {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A line chart: x ticks are (position, label) in data units.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_ticks: Vec<(f64, String)>,
    pub lines: Vec<Line>,
}

/// `&`, `<`, `>` and quotes escaped for HTML text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round upper bound for an axis reaching `max`, and its tick step (5 ticks).
fn nice_bound(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.2);
    }
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| s * 5.0 >= max)
        .unwrap_or(10.0 * magnitude);
    (step * 5.0, step)
}

/// A number for an axis label: no trailing zeros.
fn label(v: f64) -> String {
    let text = format!("{v:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl LineChart<'_> {
    /// The `<figure>` with the SVG and its legend; a note instead when nothing to draw.
    pub fn render(&self) -> String {
        let ys = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.1));
        let xs: Vec<f64> = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().map(|p| p.0))
            .chain(self.x_ticks.iter().map(|t| t.0))
            .collect();
        let title = escape(self.title);
        let (Some(y_max), Some(x_min), Some(x_max)) = (
            ys.fold(None, |m: Option<f64>, y| Some(m.map_or(y, |m| m.max(y)))),
            xs.iter().copied().reduce(f64::min),
            xs.iter().copied().reduce(f64::max),
        ) else {
            return format!(
                "<figure><figcaption>{title}</figcaption><p class=\"none\">no samples</p></figure>"
            );
        };
        let (y_top, y_step) = nice_bound(y_max);
        let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let px = |x: f64| LEFT + (x - x_min) / x_span * plot_w;
        let py = |y: f64| TOP + plot_h - (y / y_top) * plot_h;
        let mut svg =
            format!("<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{title}\">");
        let mut y = 0.0;
        while y <= y_top + y_step / 2.0 {
            let _ = write!(
                svg,
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>\
                 <text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                py(y) + 4.0,
                label(y),
                py = py(y),
            );
            y += y_step;
        }
        for (x, text) in &self.x_ticks {
            let _ = write!(
                svg,
                "<text class=\"tick\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                px(*x),
                HEIGHT - BOTTOM + 16.0,
                escape(text)
            );
        }
        let _ = write!(
            svg,
            "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\
             <text class=\"axis\" x=\"14\" y=\"{}\" text-anchor=\"middle\" \
             transform=\"rotate(-90 14 {})\">{}</text>",
            LEFT + plot_w / 2.0,
            HEIGHT - 6.0,
            escape(self.x_label),
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(self.y_label)
        );
        for line in &self.lines {
            svg.push_str(&path(line, &px, &py));
        }
        svg.push_str("</svg>");
        format!(
            "<figure><figcaption>{title}</figcaption>{svg}{}</figure>",
            legend(&self.lines)
        )
    }
}

/// The SVG path of `line`, broken where a point has no value; single points as dots.
fn path(line: &Line, px: &dyn Fn(f64) -> f64, py: &dyn Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let mut dots = String::new();
    let mut pen_down = false;
    for (i, (x, y)) in line.points.iter().enumerate() {
        let Some(y) = y else {
            pen_down = false;
            continue;
        };
        let alone = !pen_down && line.points.get(i + 1).is_none_or(|p| p.1.is_none());
        if alone {
            let _ = write!(
                dots,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"/>",
                px(*x),
                py(*y),
                line.color
            );
        }
        let _ = write!(
            d,
            "{}{:.1},{:.1} ",
            if pen_down { "L" } else { "M" },
            px(*x),
            py(*y)
        );
        pen_down = true;
    }
    let dash = if line.dashed {
        " stroke-dasharray=\"6 4\""
    } else {
        ""
    };
    format!(
        "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}><title>{}</title></path>{dots}",
        d.trim_end(),
        line.color,
        escape(&line.name)
    )
}

fn legend(lines: &[Line]) -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for l in lines {
        let style = if l.dashed { "dashed" } else { "solid" };
        let _ = write!(
            out,
            "<li><span class=\"swatch {style}\" style=\"border-color:{}\"></span>{}</li>",
            l.color,
            escape(&l.name)
        );
    }
    out.push_str("</ul>");
    out
}

/// Horizontal bars, one per (label, count).
pub fn bars(title: &str, rows: &[(String, u64)]) -> String {
    let title = escape(title);
    let Some(max) = rows.iter().map(|r| r.1).max().filter(|m| *m > 0) else {
        return format!(
            "<figure><figcaption>{title}</figcaption><p class=\"none\">none</p></figure>"
        );
    };
    let row_h = 26.0;
    let height = row_h * rows.len() as f64 + 8.0;
    let (label_w, bar_w) = (200.0, WIDTH - 200.0 - 90.0);
    let mut svg =
        format!("<svg viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{title}\">");
    for (i, (name, n)) in rows.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let w = (*n as f64 / max as f64 * bar_w).max(1.0);
        let _ = write!(
            svg,
            "<text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{}\" fill=\"#c0392b\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\">{n}</text>",
            label_w - 8.0,
            y + 16.0,
            escape(name),
            row_h - 8.0,
            label_w + w + 6.0,
            y + 16.0,
        );
    }
    svg.push_str("</svg>");
    format!("<figure><figcaption>{title}</figcaption>{svg}</figure>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_round_and_cover_the_maximum() {
        assert_eq!(nice_bound(9.3), (10.0, 2.0));
        assert_eq!(nice_bound(0.0), (1.0, 0.2));
        let (top, step) = nice_bound(1234.0);
        assert!(
            top >= 1234.0 && (top / step - 5.0).abs() < 1e-9,
            "{top} {step}"
        );
    }

    #[test]
    fn text_is_escaped_and_gaps_break_the_line() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let line = Line {
            name: "p99 <sync>".into(),
            color: "#000",
            dashed: false,
            points: vec![
                (0.0, Some(1.0)),
                (1.0, Some(2.0)),
                (2.0, None),
                (3.0, Some(1.0)),
            ],
        };
        let svg = path(&line, &|x| x, &|y| y);
        assert!(svg.contains("M0.0,1.0 L1.0,2.0 M3.0,1.0"), "{svg}");
        assert!(svg.contains("<circle"), "a lone point is drawn as a dot");
        assert!(svg.contains("p99 &lt;sync&gt;"));
    }
}
