//! Tests of the options of `consuma load` and their parsers.
use super::*;
use crate::load::client::Kind;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn parse(argv: &[&str]) -> Result<LoadArgs, clap::Error> {
    let argv = std::iter::once("load").chain(argv.iter().copied());
    Cli::try_parse_from(argv).map(|c| c.args)
}

#[test]
fn durations_take_seconds_milliseconds_and_plain_numbers() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
}

#[test]
fn durations_refuse_garbage_negative_and_unknown_units() {
    for bad in [
        "", "s", "ms", "abc", "-1", "-5s", "10m", "1h", "NaN", "inf", "1e400",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad} was accepted");
    }
    assert!(parse_positive_duration("0s").is_err());
}

#[test]
fn defaults_follow_the_spec() {
    let a = parse(&[]).unwrap();
    assert_eq!(a.target, "http://localhost:8000");
    assert_eq!(a.requests, None);
    assert_eq!(a.concurrency, 10);
    assert_eq!(a.mode, Mode::Both);
    assert_eq!(a.callback_host, "127.0.0.1");
    assert_eq!(a.callback_port, 8888);
    assert_eq!(a.callback_timeout, Duration::from_secs(30));
    assert!(a.rate.is_none() && a.duration.is_none() && !a.json);
    assert_eq!((a.text(), a.count()), ("Hello world", 3));
}

#[test]
fn stages_exclude_rate_requests_and_duration() {
    let a = parse(&["--stages", "10s:100,30s:2000,10s:0"]).unwrap();
    assert_eq!(a.stop(), Stop::Elapsed(Duration::from_secs(50)));
    assert!(matches!(a.pace(), Pace::Ramp { .. }));
    for other in [["--rate", "5"], ["--requests", "5"], ["--duration", "5s"]] {
        let mut argv = vec!["--stages", "1s:5"];
        argv.extend(other);
        let e = parse(&argv).expect_err("a conflict");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
    for bad in [
        "",
        "10s",
        "10s:",
        "0s:5",
        "1s:-1",
        "1s:0,2s:0",
        "x:5",
        "1s:5,",
    ] {
        assert!(parse(&["--stages", bad]).is_err(), "{bad} accepted");
    }
}

#[test]
fn thresholds_are_checked_against_the_mode_and_the_secret() {
    let check = |argv: &[&str]| parse(argv).unwrap().check();
    assert!(check(&["--mode", "sync", "--threshold", "sync_p99<5ms"]).is_ok());
    let e = check(&["--mode", "sync", "--threshold", "callback_p99<5ms"]).unwrap_err();
    assert!(e.contains("`callback_p99<5ms`"), "{e}");
    let e = check(&["--mode", "async", "--threshold", "bad_signatures<1"]).unwrap_err();
    assert!(e.contains("--signing-secret"), "{e}");
    let secret = ["--signing-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
    let mut argv = vec!["--mode", "async", "--threshold", "bad_signatures<1"];
    argv.extend(secret);
    assert!(check(&argv).is_ok());
    let e = parse(&["--threshold", "p99<5"]).expect_err("malformed");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("`p99<5`"), "{e}");
}

#[test]
fn body_file_needs_a_work_and_excludes_text_and_count() {
    assert!(parse(&["--body-file", "x.json"]).is_err());
    assert!(parse(&["--work", "pdf", "--body-file", "x.json"]).is_ok());
    assert!(parse(&["--work", "pdf", "--body-file", "x", "--text", "t"]).is_err());
    assert!(parse(&["--work", "Bad Name"]).unwrap().check().is_err());
    assert!(
        parse(&["--max-regression", "5"]).is_err(),
        "needs --baseline"
    );
}

#[test]
fn requests_and_duration_conflict() {
    let e = parse(&["--requests", "5", "--duration", "1s"])
        .err()
        .unwrap();
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
    assert_eq!(e.exit_code(), 2);
    assert!(parse(&["--duration", "1s"]).is_ok());
}

#[test]
fn bad_values_are_usage_errors() {
    let bad: &[&[&str]] = &[
        &["--requests", "0"],
        &["--concurrency", "0"],
        &["--rate", "0"],
        &["--rate", "-3"],
        &["--duration", "0s"],
        &["--target", "ftp://example.com"],
        &["--target", "not a url"],
        &["--mode", "sideways"],
        &["--signing-secret", "nope"],
        &["--api-key", ""],
        &["--api-key", "csk_with space"],
    ];
    for argv in bad {
        let e = parse(argv)
            .err()
            .unwrap_or_else(|| panic!("{argv:?} accepted"));
        assert_eq!(e.exit_code(), 2, "{argv:?}");
    }
}

#[test]
fn both_alternates_starting_with_sync() {
    let kinds: Vec<Kind> = (0..4).map(|i| Mode::Both.kind_of(i)).collect();
    assert_eq!(kinds, [Kind::Sync, Kind::Async, Kind::Sync, Kind::Async]);
    assert_eq!(Mode::Async.kind_of(0), Kind::Async);
}

#[test]
fn rate_selects_the_open_loop_and_duration_the_elapsed_stop() {
    let a = parse(&["--rate", "50", "--duration", "500ms"]).unwrap();
    assert_eq!(
        a.pace(),
        Pace::Open {
            rate: 50.0,
            max_in_flight: 1000
        }
    );
    assert_eq!(a.stop(), Stop::Elapsed(Duration::from_millis(500)));
    let b = parse(&["--concurrency", "3"]).unwrap();
    assert_eq!(b.pace(), Pace::Closed { workers: 3 });
    assert_eq!(b.stop(), Stop::Count(100));
}

#[test]
fn the_api_key_is_read_and_never_shown_in_debug() {
    let a = parse(&["--api-key", "csk_abc"]).unwrap();
    assert_eq!(a.api_key.as_ref().map(ApiKeyArg::reveal), Some("csk_abc"));
    assert!(!format!("{a:?}").contains("csk_abc"));
}

#[test]
fn a_trailing_slash_on_the_target_is_dropped() {
    let a = parse(&["--target", "http://127.0.0.1:9/base/"]).unwrap();
    assert_eq!(a.target, "http://127.0.0.1:9/base");
}
