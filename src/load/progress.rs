//! The progress line (SPEC §15): once a second on stderr, while stderr is a terminal
//! and `--quiet` was not given: elapsed, sent, the rate of the last second, in flight,
//! errors and callbacks received.
//!
//! It is drawn through an indicatif bar whose template is only the message, so messages
//! printed around it (the interrupt notice) do not tear it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

/// What the line shows, read once a second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent: u64,
    pub finished: u64,
    pub errors: u64,
    /// (received, expected); `None` without async requests.
    pub callbacks: Option<(u64, u64)>,
}

/// A visible line when stderr is a terminal and not `quiet`; hidden otherwise.
pub fn line(quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{msg}") {
        bar.set_style(style);
    }
    bar
}

/// Updates `bar` once a second from `read`, for ever (the caller drops the future).
pub async fn tick(
    bar: ProgressBar,
    start: Instant,
    read: impl Fn() -> Counters,
) -> std::convert::Infallible {
    if bar.is_hidden() {
        return std::future::pending().await;
    }
    let mut previous = 0;
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let now = read();
        bar.set_message(format_line(start.elapsed(), now, now.sent - previous));
        previous = now.sent;
    }
}

/// `12s  sent 1200  rate 100/s  in flight 3  errors 0  callbacks 1100/1150`.
pub fn format_line(elapsed: Duration, c: Counters, last_second: u64) -> String {
    let in_flight = c.sent.saturating_sub(c.finished);
    let mut line = format!(
        "{}s  sent {}  rate {last_second}/s  in flight {in_flight}  errors {}",
        elapsed.as_secs(),
        c.sent,
        c.errors
    );
    if let Some((received, expected)) = c.callbacks {
        line.push_str(&format!("  callbacks {received}/{expected}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_every_figure() {
        let c = Counters {
            sent: 1200,
            finished: 1197,
            errors: 2,
            callbacks: Some((1100, 1150)),
        };
        assert_eq!(
            format_line(Duration::from_millis(12_400), c, 100),
            "12s  sent 1200  rate 100/s  in flight 3  errors 2  callbacks 1100/1150"
        );
        let sync_only = Counters {
            callbacks: None,
            ..c
        };
        assert!(!format_line(Duration::ZERO, sync_only, 0).contains("callbacks"));
    }

    #[test]
    fn quiet_hides_the_line() {
        assert!(line(true).is_hidden());
    }
}
