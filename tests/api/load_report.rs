//! The `--html` report of a real run (SPEC §15), opened in Chromium: it renders every
//! section with its charts, holds no script (so no script error is possible) and loads
//! nothing at all, from another origin or its own. With `UPDATE_SCREENSHOTS` set, the
//! page is saved as docs/screenshots/load-report.png for the README.

use serde_json::Value;

use crate::helpers::Backend;
use crate::helpers::browser::Browser;
use crate::load::{load, service};

#[tokio::test]
async fn the_html_report_of_a_real_run_renders_offline_in_chromium() {
    let app = service(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let (baseline, html) = (
        dir.path().join("baseline.json"),
        dir.path().join("report.html"),
    );
    let run = ["--stages", "2s:80,2s:80,1s:0", "--callback-timeout", "60s"];
    let first = load(&app.base, &run).await;
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    std::fs::write(&baseline, &first.stdout).unwrap();
    let mut args = run.to_vec();
    args.extend([
        "--baseline",
        baseline.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        "--threshold",
        "callback_p99<250ms",
        "--threshold",
        "error_rate<=0.1%",
        "--threshold",
        "sync_p50<0.001ms",
    ]);
    let out = load(&app.base, &args).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("the report was written");
    for foreign in ["<script", "<link", "@import", "url(", "src=", "href="] {
        assert!(!page.contains(foreign), "the page holds {foreign}");
    }
    let Some(b) = Browser::start((960, 900)).await else {
        return;
    };
    b.goto(&format!("file://{}", html.display())).await;
    b.wait_for_text("Latency distribution").await;
    let text = b.js("return document.body.innerText").await;
    let text = text.as_str().unwrap_or("");
    for section in [
        "Summary",
        "Thresholds",
        "Latency over time",
        "Throughput over time",
        "Failures by reason",
        "sync_p50<0.001ms",
        "breached",
        "baseline",
        "callback p99",
    ] {
        assert!(text.contains(section), "{section} missing: {text}");
    }
    let facts = b
        .js("return [document.querySelectorAll('svg path').length, \
             document.querySelectorAll('script').length, \
             performance.getEntriesByType('resource').length, \
             document.querySelector('svg').getBoundingClientRect().width, \
             document.documentElement.scrollWidth <= innerWidth]")
        .await;
    let facts: Vec<Value> = facts.as_array().unwrap().clone();
    assert!(facts[0].as_u64().unwrap() >= 9, "lines drawn: {facts:?}");
    assert_eq!(facts[1], 0, "no script");
    assert_eq!(facts[2], 0, "nothing loaded");
    assert!(
        facts[3].as_f64().unwrap() > 600.0,
        "charts take the page's width"
    );
    assert_eq!(facts[4], true, "no horizontal scrolling");
    let height = b.js("return document.documentElement.scrollHeight").await;
    b.resize((960, height.as_u64().unwrap() as u32)).await;
    b.screenshot("load-report").await;
    b.close().await;
}
