//! Ctrl-C during a run: the figures measured so far are still reported, as oha does.
//!
//! Two steps, so a long run can be cut short without losing its callbacks: the first
//! SIGINT or SIGTERM stops *sending* (the schedule issues no new ticket; requests in
//! flight finish and are counted, outstanding callbacks are still awaited up to
//! `--callback-timeout`); the second stops *waiting* (requests still in flight are
//! counted as `interrupted`, callbacks not yet here as `callback_missing`) and the report
//! is printed at once. An interrupted run exits [`EXIT_INTERRUPTED`] after its report.
//!
//! The steps are two [`CancellationToken`]s passed into the run (STYLE §3), so tests
//! interrupt a run by cancelling them instead of signalling their own process.

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Exit status of an interrupted run: 128 + SIGINT, what a shell reports for Ctrl-C.
pub const EXIT_INTERRUPTED: i32 = 130;

/// The failure reason of a request abandoned in flight by the second signal.
pub const ABANDONED: &str = "interrupted";

/// How far a run has been interrupted.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    /// Cancelled by the first signal: no new request is issued.
    stop_sending: CancellationToken,
    /// Cancelled by the second: nothing more is awaited.
    stop_waiting: CancellationToken,
}

impl Interrupt {
    /// Cancelled once sending must stop; the schedule halts on it.
    pub fn stop_sending(&self) -> &CancellationToken {
        &self.stop_sending
    }

    /// Cancelled once the report must be made now.
    pub fn stop_waiting(&self) -> &CancellationToken {
        &self.stop_waiting
    }

    /// Whether a signal arrived during the run.
    pub fn interrupted(&self) -> bool {
        self.stop_sending.is_cancelled()
    }

    /// One more signal: the first stops sending, any later one stops waiting.
    pub fn escalate(&self) {
        match self.stop_sending.is_cancelled() {
            false => self.stop_sending.cancel(),
            true => self.stop_waiting.cancel(),
        }
    }

    /// Escalates on every SIGINT or SIGTERM from now on, on the current runtime. From
    /// the moment this returns, those signals no longer end the process by themselves.
    pub fn on_signals(&self) -> JoinHandle<()> {
        let interrupt = self.clone();
        // Listening starts here, not in the task, so no signal slips through before it.
        let signals = Signals::listen();
        tokio::spawn(async move {
            let mut signals = match signals {
                Ok(signals) => signals,
                Err(e) => {
                    // Rare (no signal driver); the run still works, Ctrl-C just kills it.
                    eprintln!("consuma load: cannot catch Ctrl-C: {e}");
                    return;
                }
            };
            while signals.next().await {
                interrupt.escalate();
            }
        })
    }
}

/// SIGINT and SIGTERM, as one stream.
#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal; `false` once no more can come.
    async fn next(&mut self) -> bool {
        tokio::select! {
            got = self.int.recv() => got.is_some(),
            got = self.term.recv() => got.is_some(),
        }
    }
}

/// Ctrl-C only, elsewhere.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> bool {
        tokio::signal::ctrl_c().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_stops_sending_and_the_second_stops_waiting() {
        let interrupt = Interrupt::default();
        assert!(!interrupt.interrupted());
        interrupt.escalate();
        assert!(interrupt.interrupted());
        assert!(interrupt.stop_sending().is_cancelled());
        assert!(!interrupt.stop_waiting().is_cancelled());
        interrupt.escalate();
        assert!(interrupt.stop_waiting().is_cancelled());
        interrupt.escalate();
        assert!(interrupt.interrupted(), "a third signal changes nothing");
    }
}
