//! WAL checkpoints off the writer's path.
//!
//! SQLite checkpoints (copying committed WAL frames into the database file, with an
//! fsync of each) run by default inside the commit that crosses 1,000 WAL pages: the
//! writer, and every caller queued behind it, would wait for them. Here a thread of its
//! own runs a `PASSIVE` checkpoint every [`PERIOD`], which never blocks the writer, and
//! then syncs the database file, also without any lock.
//!
//! A passive checkpoint alone never lets the log start over: that needs a moment when
//! every frame has been copied and synced and no write came in meanwhile, and at a
//! steady write rate there is none. The log would grow to the writer's automatic
//! checkpoint, which syncs everything written since the last sync while every admission
//! waits (10–30 ms at 1,000 requests/s beside a pruning pass: BENCHMARKS.md). So once
//! the log holds [`RESTART_AT`] frames, the checkpointer follows its passive pass with
//! a `RESTART` one: it takes the write lock between two of the writer's batches, copies
//! and syncs only what was written since the passive pass and its sync (2–4 ms), and
//! starts the log over. The writer's own automatic checkpoint stays as a backstop that
//! only a stalled checkpointer would reach.

use std::fs::File;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use rusqlite::Connection;

use crate::store::{StoreError, StoreResult};

/// How often the WAL is checkpointed.
const PERIOD: Duration = Duration::from_millis(100);
/// WAL frames (4 KiB each) after which the checkpointer starts the log over: 128 MiB,
/// the size the log file is kept at (`journal_size_limit`).
const RESTART_AT: i64 = 32_768;
pub(super) const WAL_FILE_LIMIT: i64 = RESTART_AT * 4096;
/// WAL pages after which the writer checkpoints by itself (512 MiB).
pub(super) const WRITER_BACKSTOP_PAGES: i64 = 4 * RESTART_AT;
/// How long the checkpointer's restart waits for the write lock (or for readers still
/// on the old log) before it gives up until the next period: 50 tries, 0.2 ms apart.
const LOCK_TRIES: i32 = 50;
const LOCK_RETRY: Duration = Duration::from_micros(200);

/// Stops the checkpointer when dropped.
pub(super) struct Checkpointer {
    _stop: Sender<()>,
}

impl Checkpointer {
    pub fn start(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        // Short sleeps: the write lock is free for moments between the writer's batches.
        conn.busy_handler(Some(|tries| {
            std::thread::sleep(LOCK_RETRY);
            tries < LOCK_TRIES
        }))?;
        let file = File::open(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot open the database for syncing: {e}"))
        })?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(PERIOD) {
                    if let Err(e) = checkpoint(&conn, &file) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self { _stop: stop })
    }
}

/// One passive pass, a sync of the database file, and a restart of the log once it has
/// grown to [`RESTART_AT`] frames. A restart that cannot get its locks in time answers
/// busy (not an error) and is tried again at the next period; until then the writer
/// starts the log over by itself at its first moment with no reader on it.
fn checkpoint(conn: &Connection, file: &File) -> Result<(), String> {
    let frames = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(1)
        })
        .map_err(|e| e.to_string())
    };
    let log = frames("PASSIVE")?;
    // The pages just copied reach the disk now, off every lock, instead of inside the
    // restart's sync (extra syncs never weaken durability).
    file.sync_data().map_err(|e| e.to_string())?;
    if log >= RESTART_AT {
        frames("RESTART")?;
    }
    Ok(())
}

/// The writer's wait for a lock held by the checkpointer's restart: short sleeps, as
/// that takes a few milliseconds; about ten seconds in all before the write fails.
pub(super) fn writer_busy_handler(tries: i32) -> bool {
    std::thread::sleep(Duration::from_micros(100));
    tries < 100_000
}
