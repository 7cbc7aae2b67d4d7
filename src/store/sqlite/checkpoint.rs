//! WAL checkpoints off the writer's path.
//!
//! SQLite checkpoints (copying committed WAL frames into the database file, with an
//! fsync) run by default inside the commit that crosses 1,000 WAL pages: the writer, and
//! every caller queued behind it, would wait for them. Here a thread of its own runs a
//! `PASSIVE` checkpoint every [`PERIOD`], which never blocks the writer, and the writer's
//! own automatic checkpoint is raised to a backstop that only a stalled checkpointer
//! would reach.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::{StoreError, StoreResult};

/// How often the WAL is checkpointed.
const PERIOD: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself (about 40 MB).
pub(super) const WRITER_BACKSTOP_PAGES: i64 = 10_000;

/// Stops the checkpointer when dropped.
pub(super) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    let done = conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self { _stop: stop })
    }
}
