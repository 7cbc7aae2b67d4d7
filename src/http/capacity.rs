//! How many HTTP connections this process can hold open (SPEC §9 "Slow and idle
//! clients").
//!
//! Every connection is a file descriptor, and so is nearly everything else the process
//! opens: the database (SQLite's file, journal and shared memory; PostgreSQL's sockets),
//! each callback attempt's socket and DNS query, the listener, the runtime's own. At start
//! the soft `RLIMIT_NOFILE` is raised as far as the hard limit allows; if the result still
//! cannot hold `--max-connections` plus a [reserve](reserve) for the rest, the cap is
//! lowered to fit and a warning says so. Running out of descriptors would be worse: accept
//! fails in a loop, and so do database files and callbacks.

use crate::config::Config;

/// Descriptors kept for the process itself whatever the settings: stdio, the listener,
/// the runtime's epoll and wake-ups, SQLite's files, log and telemetry sockets, and
/// headroom for connections that are closing.
const BASE_RESERVE: u64 = 256;

/// Descriptors `config` needs besides client connections: the base, two per worker (a
/// callback's socket and its DNS query) and the PostgreSQL pool (plus its listener).
pub fn reserve(config: &Config) -> u64 {
    BASE_RESERVE + 2 * config.workers as u64 + u64::from(config.database_max_connections) + 1
}

/// The connection cap that fits: `requested`, or fewer when `open_files` minus `reserve`
/// cannot hold it (never fewer than 1, so the service still answers).
pub fn fit(requested: usize, open_files: u64, reserve: u64) -> usize {
    let room = usize::try_from(open_files.saturating_sub(reserve)).unwrap_or(usize::MAX);
    requested.min(room).max(1)
}

/// Raises the open-file limit and returns the connection cap for `config`, logging a
/// warning when it is lower than `--max-connections`.
pub fn connection_cap(config: &Config) -> usize {
    let requested = config.http.max_connections;
    let Some(open_files) = raise_open_file_limit() else {
        return requested;
    };
    let reserve = reserve(config);
    let cap = fit(requested, open_files, reserve);
    if cap < requested {
        tracing::warn!(
            requested,
            cap,
            open_files,
            reserve,
            "the open-file limit cannot hold --max-connections; connections capped lower (raise the hard limit, e.g. `ulimit -Hn` or LimitNOFILE=)"
        );
    } else {
        tracing::info!(max_connections = cap, open_files, "HTTP connection cap");
    }
    cap
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in
/// effect (`None` where it cannot be read).
#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct. It may refuse (macOS caps the soft
        // limit below an infinite hard one); then the old soft limit stays in effect.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere.
    let soft = limit.rlim_cur as u64;
    Some(soft)
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_kept_when_the_limit_holds_it_and_the_reserve() {
        assert_eq!(fit(10_000, 1_048_576, 800), 10_000);
        assert_eq!(fit(10_000, 10_800, 800), 10_000);
        assert_eq!(fit(10_000, u64::MAX, 800), 10_000);
    }

    #[test]
    fn the_cap_is_lowered_to_what_the_limit_leaves_after_the_reserve() {
        assert_eq!(fit(10_000, 4_096, 800), 3_296);
        assert_eq!(fit(10_000, 10_799, 800), 9_999);
    }

    #[test]
    fn a_limit_below_the_reserve_still_leaves_one_connection() {
        assert_eq!(fit(10_000, 256, 800), 1);
    }

    #[test]
    fn raising_the_limit_never_lowers_it() {
        let before = current_soft_limit();
        let now = raise_open_file_limit().expect("readable on unix");
        assert!(now >= before, "{now} < {before}");
    }

    fn current_soft_limit() -> u64 {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in raise_open_file_limit.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        #[allow(clippy::unnecessary_cast)]
        let soft = limit.rlim_cur as u64;
        soft
    }
}
