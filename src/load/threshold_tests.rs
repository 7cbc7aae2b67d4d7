//! The threshold grammar, table-tested, and its verdicts on a report.

use super::*;

#[test]
fn well_formed_expressions_parse_into_the_metric_unit() {
    use Kind::*;
    use Metric::*;
    use Stat::*;
    let table: &[(&str, Metric, Op, f64)] = &[
        ("callback_p99<250ms", Latency(Callback, P99), Op::Lt, 250.0),
        ("sync_p50 <= 1.5s", Latency(Sync, P50), Op::Le, 1500.0),
        ("ack_p95>2", Latency(Ack, P95), Op::Gt, 2.0),
        ("ack_max >= 0.5ms", Latency(Ack, Max), Op::Ge, 0.5),
        ("sync_p99<0s", Latency(Sync, P99), Op::Lt, 0.0),
        ("error_rate<=0.1%", ErrorRate, Op::Le, 0.001),
        ("error_rate<0.001", ErrorRate, Op::Lt, 0.001),
        ("rps>=900", Rps, Op::Ge, 900.0),
        ("callback_missing<1", CallbackMissing, Op::Lt, 1.0),
        ("duplicates <= 0", Duplicates, Op::Le, 0.0),
        ("bad_signatures<1", BadSignatures, Op::Lt, 1.0),
        (
            " callback_max < 2.5 s ",
            Latency(Callback, Max),
            Op::Lt,
            2500.0,
        ),
    ];
    for (raw, metric, op, value) in table {
        let t = parse_threshold(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!((t.metric, t.op), (*metric, *op), "{raw}");
        assert!((t.value - value).abs() < 1e-9, "{raw}: {}", t.value);
        assert_eq!(t.expression, raw.trim());
    }
}

#[test]
fn malformed_expressions_are_refused_naming_them() {
    let table = [
        "",
        "p99<5ms",
        "sync_p99",
        "sync_p99=5ms",
        "sync_p99<",
        "sync_p99<<5",
        "sync_p99<5m",
        "sync_p99<5%",
        "sync_p99<-5ms",
        "sync_p99<fast",
        "sync_p90<5ms",
        "async_p99<5ms",
        "rps>=900ms",
        "rps>=1e999",
        "error_rate<0.1ms",
        "error_rate<NaN",
        "duplicates<1%",
        "<5",
    ];
    for raw in table {
        let e = parse_threshold(raw)
            .err()
            .unwrap_or_else(|| panic!("{raw} accepted"));
        assert!(e.contains(&format!("`{raw}`")), "{raw}: {e}");
    }
}

#[test]
fn figures_belong_to_the_modes_that_produce_them() {
    let m = |raw: &str| parse_threshold(raw).unwrap().metric;
    assert!(m("sync_p99<1").produced_by(Mode::Sync));
    assert!(!m("sync_p99<1").produced_by(Mode::Async));
    assert!(!m("callback_p99<1").produced_by(Mode::Sync));
    assert!(!m("ack_p50<1").produced_by(Mode::Sync));
    assert!(!m("bad_signatures<1").produced_by(Mode::Sync));
    assert!(m("callback_missing<1").produced_by(Mode::Both));
    for mode in [Mode::Sync, Mode::Async, Mode::Both] {
        assert!(m("rps>1").produced_by(mode) && m("error_rate<1").produced_by(mode));
    }
}

#[test]
fn operators_compare_as_written() {
    let at = |op: Op| [1.0, 2.0, 3.0].map(|v| op.holds(v, 2.0));
    assert_eq!(at(Op::Lt), [true, false, false]);
    assert_eq!(at(Op::Le), [true, true, false]);
    assert_eq!(at(Op::Gt), [false, false, true]);
    assert_eq!(at(Op::Ge), [false, true, true]);
}

/// A report of a sync run with these successful latencies and `failed` 503s.
fn sync_report(ok_ms: &[u64], failed: u64) -> Report {
    use crate::load::client::Outcome;
    use crate::load::report::{Pacing, RunFacts};
    use crate::load::stats::Section;
    use std::time::Duration;
    let mut s = Section::default();
    for ms in ok_ms {
        s.record(
            &Outcome::Ok { request_id: None },
            Duration::from_millis(*ms),
        );
    }
    for _ in 0..failed {
        s.record(
            &Outcome::Status(reqwest::StatusCode::SERVICE_UNAVAILABLE),
            Duration::ZERO,
        );
    }
    let facts = RunFacts {
        target: "http://x".into(),
        mode: "sync",
        pacing: Pacing::Closed { concurrency: 1 },
        sending: Duration::from_secs(1),
        total: Duration::from_secs(1),
        answers: ok_ms.len() as u64 + failed,
        interrupted: false,
    };
    Report::build(facts, Some(s), None)
}

#[test]
fn verdicts_carry_the_value_and_a_figure_without_samples_is_breached() {
    let check = |raw: &str, r: &Report| parse_threshold(raw).unwrap().check(r);
    let r = sync_report(&[10, 20, 30, 40], 1);
    // 40 ms as the histogram holds it (3 significant digits): 40.031.
    let v = check("sync_max<=41ms", &r);
    assert!(v.met && (v.value.unwrap() - 40.0).abs() < 0.1, "{v:?}");
    assert!(!check("sync_max<39ms", &r).met);
    assert!(check("sync_p50>=0.019s", &r).met);
    assert_eq!(check("error_rate<=20%", &r).value, Some(0.2));
    assert!(check("error_rate<=20%", &r).met);
    assert!(!check("error_rate<0.2", &r).met);
    assert_eq!(check("rps>=5", &r).value, Some(5.0));
    let no_successes = sync_report(&[], 3);
    let v = check("sync_p99<1s", &no_successes);
    assert_eq!((v.value, v.met), (None, false), "no samples: breached");
    assert!(!check("sync_p99>=0ms", &no_successes).met);
}
