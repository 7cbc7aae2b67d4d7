//! Tests of the report's arithmetic and of its JSON shape.

use super::*;
use crate::load::client::Outcome;
use crate::load::receiver::CallbackBook;
use crate::load::stats::{latency_histogram, record_latency};
use reqwest::StatusCode;
use tokio::time::Instant;

fn facts(sending_ms: u64, answers: u64) -> RunFacts {
    RunFacts {
        target: "http://127.0.0.1:8000".into(),
        mode: "both",
        pacing: Pacing::Closed { concurrency: 4 },
        sending: Duration::from_millis(sending_ms),
        total: Duration::from_millis(sending_ms + 500),
        answers,
        interrupted: false,
    }
}

fn section(ok_ms: &[u64], failures: &[Outcome]) -> Section {
    let mut s = Section::default();
    for ms in ok_ms {
        s.record(
            &Outcome::Ok { request_id: None },
            Duration::from_millis(*ms),
        );
    }
    for f in failures {
        s.record(f, Duration::ZERO);
    }
    s
}

fn callbacks(expected: u64, received: u64) -> CallbackCounts {
    let book = CallbackBook::new(None);
    let t = Instant::now();
    for i in 0..expected {
        book.expect(i.to_string(), t);
    }
    for i in 0..received {
        book.arrive(i.to_string(), t + Duration::from_millis(100), true);
    }
    book.counts()
}

#[test]
fn percentiles_come_out_in_milliseconds_with_microsecond_resolution() {
    let mut h = latency_histogram();
    for ms in 1..=100 {
        record_latency(&mut h, Duration::from_millis(ms));
    }
    let l = Latency::of(&h).unwrap();
    assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
    assert!((l.p95 - 95.0).abs() < 0.1, "{l:?}");
    assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
    assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
    assert!((l.mean - 50.5).abs() < 0.1, "{l:?}");
    record_latency(&mut h, Duration::from_micros(1));
    assert_eq!(h.min(), 1);
    assert_eq!(Latency::of(&latency_histogram()), None);
}

#[test]
fn requests_per_second_counts_answers_over_the_sending_phase() {
    let r = Report::build(facts(2000, 500), None, None);
    assert_eq!(r.requests_per_s, 250.0);
    assert_eq!(r.sending_time_s, 2.0);
    assert_eq!(r.total_time_s, 2.5);
}

#[test]
fn sync_counts_and_success_rate() {
    let s = section(
        &[10, 20, 30],
        &[Outcome::Status(StatusCode::SERVICE_UNAVAILABLE)],
    );
    let r = Report::build(facts(1000, 4), Some(s), None);
    let sync = r.sync.unwrap();
    assert_eq!(
        (
            sync.counts.total,
            sync.counts.successful,
            sync.counts.failed
        ),
        (4, 3, 1)
    );
    assert_eq!(sync.counts.success_rate, 0.75);
    assert_eq!(sync.counts.failures["http_503"], 1);
}

#[test]
fn missing_and_failed_callbacks_are_failures_of_acknowledged_requests() {
    let mut cb = callbacks(4, 3);
    cb.failed_status = 1;
    let inputs = AsyncInputs {
        section: section(&[5, 5, 5, 5], &[Outcome::Transport("timeout")]),
        callbacks: cb,
        signatures_verified: false,
        callback_url: "http://127.0.0.1:1/callback".into(),
    };
    let a = Report::build(facts(1000, 4), None, Some(inputs))
        .r#async
        .unwrap();
    assert_eq!((a.counts.total, a.counts.successful), (5, 4));
    assert_eq!(a.callbacks_expected, a.counts.successful);
    assert_eq!(a.callbacks_received, 3);
    let failures = &a.counts.failures;
    assert_eq!(
        (
            failures["timeout"],
            failures["callback_missing"],
            failures["callback_failed"]
        ),
        (1, 1, 1)
    );
    assert_eq!(a.counts.failed, 3);
    assert!(a.callback_latency_ms.is_some());
}

#[test]
fn json_has_the_spec_fields_and_nulls_for_sections_not_run() {
    let r = Report::build(facts(1000, 2), Some(section(&[1, 2], &[])), None);
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    for key in [
        "target",
        "mode",
        "total_time_s",
        "requests_per_s",
        "sync",
        "async",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["async"].is_null());
    for key in ["total", "successful", "failed", "failures", "latency_ms"] {
        assert!(v["sync"].get(key).is_some(), "missing sync.{key}");
    }
    for key in ["p50", "p95", "p99", "max", "mean"] {
        assert!(
            v["sync"]["latency_ms"][key].is_number(),
            "missing latency_ms.{key}"
        );
    }
    assert_eq!(
        v["pacing"],
        serde_json::json!({"loop": "closed", "concurrency": 4})
    );
}

#[test]
fn json_latency_blocks_are_null_without_samples() {
    let inputs = AsyncInputs {
        section: section(&[], &[Outcome::Status(StatusCode::BAD_REQUEST)]),
        callbacks: callbacks(0, 0),
        signatures_verified: true,
        callback_url: "http://127.0.0.1:1/callback".into(),
    };
    let r = Report::build(facts(1000, 1), None, Some(inputs));
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert!(v["sync"].is_null());
    let a = &v["async"];
    assert!(a["ack_latency_ms"].is_null() && a["callback_latency_ms"].is_null());
    for key in [
        "total",
        "successful",
        "failed",
        "failures",
        "callbacks_expected",
        "callbacks_received",
        "duplicates",
        "bad_signatures",
    ] {
        assert!(
            a[key].is_number() || a[key].is_object(),
            "missing async.{key}"
        );
    }
    assert!(r.callbacks_refused_by_policy());
}

#[test]
fn the_table_names_every_figure() {
    let inputs = AsyncInputs {
        section: section(&[5], &[]),
        callbacks: callbacks(1, 1),
        signatures_verified: true,
        callback_url: "http://127.0.0.1:1/callback".into(),
    };
    let r = Report::build(
        facts(1000, 2),
        Some(section(&[3], &[Outcome::Transport("connect")])),
        Some(inputs),
    );
    let table = r.to_string();
    for needle in [
        "Requests/s",
        "SYNC",
        "ASYNC",
        "connect 1",
        "p99",
        "Callback lat.",
        "1/1 received",
        "0 bad signatures",
        "1 successful (50.00 %)",
    ] {
        assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
    }
    assert!(!r.callbacks_refused_by_policy());
}

#[test]
fn an_interrupted_run_says_so_in_json_and_in_the_table() {
    let sync = || Some(section(&[3, 4], &[Outcome::Transport("interrupted")]));
    let whole = Report::build(facts(1000, 2), sync(), None);
    let v: serde_json::Value = serde_json::from_str(&whole.to_json()).unwrap();
    assert_eq!(v["interrupted"], false, "present when not interrupted");
    assert!(!whole.to_string().contains("Interrupted"));

    let cut = Report::build(
        RunFacts {
            interrupted: true,
            ..facts(1000, 2)
        },
        sync(),
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&cut.to_json()).unwrap();
    assert_eq!(v["interrupted"], true);
    let table = cut.to_string();
    assert!(
        table.contains("Interrupted    yes: stopped by a signal after 3 requests"),
        "{table}"
    );
}

#[test]
fn exit_codes_follow_the_precedence_not_made_interrupted_breached_regressed() {
    use crate::load::baseline::Comparison;
    use crate::load::report::Verdict;
    let mut r = Report::build(facts(1000, 10), Some(section(&[5], &[])), None);
    assert_eq!(super::super::exit_code(&r, false), 0);
    r.baseline = Some(Comparison {
        file: "b.json".into(),
        figures: Vec::new(),
        max_regression_pct: Some(10.0),
        regressions: vec!["sync_p99"],
        latency_curve: serde_json::Value::Null,
    });
    assert_eq!(super::super::exit_code(&r, false), 4);
    r.thresholds = vec![Verdict {
        expression: "sync_p99<1ms".into(),
        value: Some(5.0),
        met: false,
    }];
    assert_eq!(super::super::exit_code(&r, false), 3);
    r.interrupted = true;
    assert_eq!(super::super::exit_code(&r, false), 130);
    assert_eq!(super::super::exit_code(&r, true), 1);
}

#[test]
fn error_rate_is_failed_over_sent_and_all_401_is_noticed() {
    let unauthorized = Outcome::Status(StatusCode::UNAUTHORIZED);
    let r = Report::build(
        facts(1000, 4),
        Some(section(&[1, 2, 3], std::slice::from_ref(&unauthorized))),
        None,
    );
    assert_eq!(r.error_rate(), Some(0.25));
    assert!(!r.all_unauthorized());
    let all = Report::build(
        facts(1000, 2),
        Some(section(&[], &[unauthorized.clone(), unauthorized])),
        None,
    );
    assert!(all.all_unauthorized());
    let none = Report::build(facts(1000, 0), Some(section(&[], &[])), None);
    assert_eq!(none.error_rate(), None);
}
