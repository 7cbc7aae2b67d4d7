//! What an attempt's reply means, and when the next attempt starts (SPEC §2 "The callback").
//!
//! Pure functions only, so each rule is a row in a table test:
//! - [`classify`]: a [`Reply`] becomes a [`Verdict`] and the error text that is recorded
//!   with the attempt. 2xx is delivered; 3xx, 4xx, 5xx, timeouts and connection errors are
//!   retried; a refusal by the callback policy (SPEC §4) is permanent.
//! - [`next_delay`]: `base · 2^(k−1)` after failed attempt `k`, plus 0–10 % jitter; a
//!   `Retry-After` (honoured on 429 and 503 only) wins when longer; never more than one hour.
//! - [`parse_retry_after`]: delta-seconds or an HTTP-date; anything else is ignored.
//! - [`counts_against_destination`]: whether an attempt speaks against its destination's
//!   health, for the circuit breaker (SPEC §8).
//!
//! Invariant: no input makes these functions panic or overflow.

use std::time::{Duration, SystemTime};

use rand::Rng as _;

use super::Verdict;

/// No delay between attempts is ever longer than this (SPEC §2).
pub const MAX_DELAY: Duration = Duration::from_secs(60 * 60);
/// The jitter is drawn uniformly from `0..=MAX_JITTER` times the backoff.
pub const MAX_JITTER: f64 = 0.10;

/// Delay before the attempt that follows failed attempt `k` (1-based): `base · 2^(k−1)` plus
/// uniform 0–10 % jitter; a `retry_after` (only passed for 429/503) wins when longer; the
/// result is capped at one hour. `k = 0` is treated as 1; huge `k` saturates.
pub fn next_delay(k: u32, base: Duration, retry_after: Option<Duration>) -> Duration {
    let jitter = rand::rng().random_range(0.0..=MAX_JITTER);
    delay_with_jitter(k, base, retry_after, jitter)
}

/// [`next_delay`] with the jitter fraction given (clamped to `0..=MAX_JITTER`; NaN is 0).
pub fn delay_with_jitter(
    k: u32,
    base: Duration,
    retry_after: Option<Duration>,
    jitter_fraction: f64,
) -> Duration {
    let backoff = exponential(k, base).min(MAX_DELAY);
    let jitter = if jitter_fraction.is_nan() {
        0.0
    } else {
        jitter_fraction.clamp(0.0, MAX_JITTER)
    };
    // `backoff` is at most an hour, so neither the product nor the sum can overflow.
    let delay = backoff + backoff.mul_f64(jitter);
    delay.max(retry_after.unwrap_or_default()).min(MAX_DELAY)
}

/// `base · 2^(k−1)`, saturating at `Duration::MAX`.
fn exponential(k: u32, base: Duration) -> Duration {
    let factor = 1u32.checked_shl(k.saturating_sub(1)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(Duration::MAX)
}

/// A `Retry-After` value (RFC 9110 §10.2.3) as a delay from `now`.
///
/// Delta-seconds (digits only) or an HTTP-date; a date in the past means "now"
/// (`Some(ZERO)`). Negative numbers, fractions, overflowing numbers and garbage give `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Whether a status's `Retry-After` is honoured: only 429 and 503 (SPEC §2).
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// What came back from one attempt, before it is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A complete response head arrived within the timeout.
    Status {
        code: u16,
        /// The parsed `Retry-After`, if the response had a usable one.
        retry_after: Option<Duration>,
    },
    /// No complete response head within the attempt timeout (resolution, connect, TLS
    /// and the request included).
    TimedOut { after: Duration },
    /// The callback policy refused the destination (SPEC §4): at the URL check, or when
    /// the resolver vetted the host's addresses.
    Refused { reason: String },
    /// The request could not be sent or its response not read (connect, TLS, reset…).
    Failed { error: String },
}

/// The verdict on a reply and the error text recorded with the attempt (`None` if delivered).
pub fn classify(reply: &Reply) -> (Verdict, Option<String>) {
    let retry = |retry_after, error: String| (Verdict::Retry { retry_after }, Some(error));
    match reply {
        Reply::Status {
            code: 200..=299, ..
        } => (Verdict::Delivered, None),
        Reply::Status {
            code: code @ 300..=399,
            ..
        } => retry(None, format!("redirect {code} not followed")),
        Reply::Status { code, retry_after } => {
            let retry_after = retry_after.filter(|_| honours_retry_after(*code));
            retry(retry_after, format!("HTTP {code}"))
        }
        Reply::TimedOut { after } => retry(None, format!("timeout after {} ms", after.as_millis())),
        Reply::Refused { reason } => (
            Verdict::Permanent,
            Some(format!("refused by callback policy: {reason}")),
        ),
        Reply::Failed { error } => retry(None, error.clone()),
    }
}

/// Whether an attempt counts against its destination's health (SPEC §8, circuit breaker),
/// from what [`classify`] made of it and the status it got, if any.
///
/// It counts when the attempt ended without a response (connect or TLS error, DNS failure,
/// timeout: no status, and not refused) or with a 5xx or 429. It does not count when the
/// callback policy refused the destination (no request was made; that is the caller's
/// URL, not the endpoint's health), nor for a 2xx, a 3xx, any other 4xx, or a 1xx: the
/// endpoint answered.
pub fn counts_against_destination(status_code: Option<u16>, verdict: &Verdict) -> bool {
    match (verdict, status_code) {
        (Verdict::Permanent, _) | (Verdict::Delivered, _) => false,
        (Verdict::Retry { .. }, Some(code)) => matches!(code, 429 | 500..=599),
        (Verdict::Retry { .. }, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn delays_follow_the_table() {
        #[rustfmt::skip]
        let table: &[(u32, Duration, Option<Duration>, f64, Duration)] = &[
            // k, base, retry_after, jitter → delay
            (1, S(1), None, 0.0, S(1)),
            (2, S(1), None, 0.0, S(2)),
            (3, S(1), None, 0.0, S(4)),
            (4, S(1), None, 0.0, S(8)),
            (0, S(1), None, 0.0, S(1)),                 // k = 0 is treated as the first
            (1, S(1), None, 0.10, MS(1100)),            // full jitter: +10 %
            (3, S(1), None, 0.05, MS(4200)),
            (2, MS(250), None, 0.10, MS(550)),
            (1, S(1), None, 0.5, MS(1100)),             // jitter is clamped to 10 %
            (1, S(1), None, -1.0, S(1)),                // and never negative
            (1, S(1), None, f64::NAN, S(1)),
            (1, S(1), Some(S(7)), 0.0, S(7)),           // a longer Retry-After wins
            (4, S(1), Some(S(7)), 0.1, MS(8800)),       // a shorter one does not
            (1, S(1), Some(S(0)), 0.0, S(1)),
            (1, S(1), Some(S(86_400)), 0.0, MAX_DELAY), // Retry-After is capped too
            (13, S(1), None, 0.0, MAX_DELAY),           // 4096 s → 1 h
            (12, S(1), None, 0.0, S(2048)),
            (12, S(1), None, 0.10, MS(2_252_800)),
            (12, S(2), None, 0.10, MAX_DELAY),          // jitter cannot pass the cap
            (33, S(1), None, 0.0, MAX_DELAY),           // 2^32 does not fit a u32
            (u32::MAX, S(1), None, 0.1, MAX_DELAY),
            (u32::MAX, Duration::MAX, Some(Duration::MAX), 0.1, MAX_DELAY),
            (5, Duration::ZERO, None, 0.1, Duration::ZERO),
        ];
        for &(k, base, retry_after, jitter, expected) in table {
            assert_eq!(
                delay_with_jitter(k, base, retry_after, jitter),
                expected,
                "k={k} base={base:?} retry_after={retry_after:?} jitter={jitter}"
            );
        }
    }

    #[test]
    fn next_delay_stays_within_its_jitter_band() {
        for k in 1..=5 {
            let plain = delay_with_jitter(k, S(1), None, 0.0);
            for _ in 0..200 {
                let d = next_delay(k, S(1), None);
                assert!(
                    d >= plain && d <= plain.mul_f64(1.0 + MAX_JITTER),
                    "k={k}: {d:?}"
                );
            }
        }
        assert_eq!(next_delay(u32::MAX, S(1), None), MAX_DELAY);
    }

    #[test]
    fn the_jitter_is_drawn_across_its_whole_band() {
        // 2,000 draws of a uniform 0–10 %: both ends of the band are reached (the chance
        // that every draw misses a fifth of the band is 0.8^2000).
        let plain = S(100);
        let draws: Vec<Duration> = (0..2000).map(|_| next_delay(1, plain, None)).collect();
        let (low, high) = (plain.mul_f64(1.02), plain.mul_f64(1.08));
        assert!(draws.iter().any(|d| *d < low), "no draw under +2 %");
        assert!(draws.iter().any(|d| *d > high), "no draw over +8 %");
        assert!(
            draws
                .iter()
                .all(|d| *d >= plain && *d <= plain.mul_f64(1.0 + MAX_JITTER))
        );
    }

    /// A delivery's attempts, from the replies they got: each next attempt starts its
    /// delay after the previous one *ended* (SPEC §2), as the engine schedules it
    /// (`ended + next_delay(k, base, retry_after)`), with the `Retry-After` that
    /// [`classify`] lets through.
    #[test]
    fn each_attempt_waits_its_backoff_after_the_last_one_ended_or_a_longer_retry_after() {
        const BASE: Duration = Duration::from_secs(2);
        let status = |code, retry_after| Reply::Status { code, retry_after };
        let mut replies: Vec<(Reply, Duration)> = vec![
            (status(503, Some(S(30))), MS(40)), // longer than 2 s: honoured
            (status(500, Some(S(30))), MS(40)), // not on a 500: 4 s
            (Reply::TimedOut { after: S(5) }, S(5)),
            (status(429, Some(S(1))), MS(40)), // shorter than 16 s: the backoff
            (status(503, Some(S(7200))), MS(40)), // honoured, but capped at 1 h
        ];
        replies.extend((0..10).map(|_| (status(502, None), MS(40))));
        let mut ended = Duration::ZERO;
        for (k, (reply, took)) in (1..).zip(replies) {
            let (Verdict::Retry { retry_after }, _) = classify(&reply) else {
                panic!("{reply:?} is retried");
            };
            let next = ended + next_delay(k, BASE, retry_after);
            let wait = next - ended;
            let backoff = exponential(k, BASE).min(MAX_DELAY);
            assert!(wait >= backoff, "attempt {}: {wait:?} < {backoff:?}", k + 1);
            match retry_after.filter(|ra| *ra > backoff.mul_f64(1.0 + MAX_JITTER)) {
                Some(ra) => assert_eq!(wait, ra.min(MAX_DELAY), "attempt {}", k + 1),
                None => assert!(
                    wait <= backoff.mul_f64(1.0 + MAX_JITTER).min(MAX_DELAY),
                    "attempt {}: {wait:?} over the jitter",
                    k + 1
                ),
            }
            ended = next + took;
        }
        // 15 failed attempts: the last waits are the cap, whatever the exponent.
        assert_eq!(next_delay(15, BASE, None), MAX_DELAY);
    }

    #[test]
    fn retry_after_values_follow_the_table() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let table: &[(&str, Option<Duration>)] = &[
            ("7", Some(S(7))),
            ("  120 ", Some(S(120))),
            ("0", Some(S(0))),
            ("Sun, 06 Nov 1994 08:50:07 GMT", Some(S(30))),
            ("Sunday, 06-Nov-94 08:50:37 GMT", Some(S(60))), // RFC 850 form
            ("Sun Nov  6 08:49:47 1994", Some(S(10))),       // asctime form
            ("Sun, 06 Nov 1994 08:00:00 GMT", Some(S(0))),   // in the past: now
            ("-5", None),
            ("+5", None),
            ("1.5", None),
            ("99999999999999999999999", None),
            ("", None),
            ("soon", None),
            ("7 seconds", None),
            ("2024-01-01T00:00:00Z", None),
        ];
        for &(value, expected) in table {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }

    #[test]
    fn replies_are_classified_by_the_table() {
        let retry = |after: Option<Duration>, e: &str| {
            (Verdict::Retry { retry_after: after }, Some(e.into()))
        };
        let status = |code, retry_after| Reply::Status { code, retry_after };
        let table: Vec<(Reply, (Verdict, Option<String>))> = vec![
            (status(200, None), (Verdict::Delivered, None)),
            (status(204, Some(S(3))), (Verdict::Delivered, None)),
            (status(299, None), (Verdict::Delivered, None)),
            (status(301, None), retry(None, "redirect 301 not followed")),
            (
                status(302, Some(S(3))),
                retry(None, "redirect 302 not followed"),
            ),
            (status(308, None), retry(None, "redirect 308 not followed")),
            (status(400, None), retry(None, "HTTP 400")),
            (status(404, Some(S(9))), retry(None, "HTTP 404")),
            (status(429, Some(S(9))), retry(Some(S(9)), "HTTP 429")),
            (status(429, None), retry(None, "HTTP 429")),
            (status(500, Some(S(9))), retry(None, "HTTP 500")),
            (status(503, Some(S(7))), retry(Some(S(7)), "HTTP 503")),
            (status(101, None), retry(None, "HTTP 101")),
            (
                Reply::TimedOut { after: MS(200) },
                retry(None, "timeout after 200 ms"),
            ),
            (
                Reply::Failed {
                    error: "connect error: Connection refused".into(),
                },
                retry(None, "connect error: Connection refused"),
            ),
            (
                Reply::Refused {
                    reason: "127.0.0.1 is loopback".into(),
                },
                (
                    Verdict::Permanent,
                    Some("refused by callback policy: 127.0.0.1 is loopback".into()),
                ),
            ),
        ];
        for (reply, expected) in table {
            assert_eq!(classify(&reply), expected, "{reply:?}");
        }
    }

    #[test]
    fn what_counts_against_a_destination_follows_the_table() {
        let status = |code| Reply::Status {
            code,
            retry_after: None,
        };
        let failed = |error: &str| Reply::Failed {
            error: error.into(),
        };
        #[rustfmt::skip]
        let table: Vec<(Reply, bool)> = vec![
            // No response at all: counts.
            (Reply::TimedOut { after: MS(500) }, true),
            (failed("connect error: Connection refused (os error 111)"), true),
            (failed("dns error: looking up \"h.test\" failed: no records"), true),
            (failed("connect error: invalid peer certificate"), true),
            // The server is failing or asks to back off: counts.
            (status(500), true),
            (status(502), true),
            (status(503), true),
            (status(599), true),
            (status(429), true),
            // The endpoint answered: does not count.
            (status(200), false),
            (status(204), false),
            (status(101), false),
            (status(301), false),
            (status(302), false),
            (status(400), false),
            (status(401), false),
            (status(404), false),
            (status(410), false),
            (status(499), false),
            // The callback policy refused: nothing was sent, nothing to count.
            (Reply::Refused { reason: "address 127.0.0.1 is in loopback".into() }, false),
        ];
        for (reply, expected) in table {
            let (verdict, _) = classify(&reply);
            let code = match reply {
                Reply::Status { code, .. } => Some(code),
                _ => None,
            };
            assert_eq!(
                counts_against_destination(code, &verdict),
                expected,
                "{reply:?}"
            );
        }
    }
}
