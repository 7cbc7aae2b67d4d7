//! The single writer: one OS thread owns the only write connection and commits whatever
//! has queued up meanwhile as one transaction (group commit).
//!
//! Invariants:
//! - A caller hears its result only after the transaction holding its operation has
//!   committed (or failed): an acknowledged request is on disk.
//! - A batch is atomic: operations check before they write (an idempotency key, a lease)
//!   and answer such outcomes with `Ok`, so an operation fails only when the database
//!   does (I/O, a full disk, a bug). Then the whole batch is rolled back and every caller
//!   in it hears an error; nothing of it was acknowledged. (Savepoints per operation would
//!   isolate failures, but cost a third of the writer's time in a profile of POST /sync.)
//! - The queue is bounded; when it is full the caller is told to back off (503) at once
//!   instead of waiting behind thousands of writes.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Writes that may wait for the writer before callers are told to back off (503).
const WRITE_QUEUE: usize = 16_384;
/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How long the first operation of a batch waits for others to join it. Operations that
/// arrive while a commit runs join the next batch anyway; a longer window (0.5 ms was
/// tried) only delayed every answer (BENCHMARKS.md).
const COMMIT_WINDOW: Duration = Duration::from_micros(100);

/// Tells the caller how its operation ended, once the batch's commit is known.
type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// One queued write: runs its statements, says whether they succeeded, and hands back how
/// to answer its caller.
type Op = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

pub(super) struct Writer {
    queue: SyncSender<Op>,
}

impl Writer {
    /// Starts the writer thread on `conn`; it stops when the `Writer` is dropped.
    pub fn start(conn: Connection) -> StoreResult<Self> {
        let (queue, rx) = mpsc::sync_channel(WRITE_QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self { queue })
    }

    /// Queues `op` and waits until its batch has committed.
    pub async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let op: Op = Box::new(move |conn| {
            let result = op(conn);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                // An operation's own error wins over the batch's.
                let _ = tx.send(result.and_then(|value| commit.map(|()| value)));
            });
            (ok, done)
        });
        self.queue.try_send(op).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Overloaded,
            TrySendError::Disconnected(_) => StoreError::Unavailable("the writer stopped".into()),
        })?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

fn run(mut conn: Connection, rx: Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        // Whatever arrives within the window joins the batch: fewer, larger commits write
        // each hot page once instead of once per operation.
        let window_ends = Instant::now() + COMMIT_WINDOW;
        while batch.len() < MAX_BATCH {
            let left = window_ends.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch);
    }
}

/// Runs `batch` in one transaction, then answers every caller.
fn commit_batch(conn: &mut Connection, batch: &mut Vec<Op>) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Dropping the operations tells their callers the database is unavailable.
            tracing::error!(error = %e, "cannot begin a write transaction");
            batch.clear();
            return;
        }
    };
    let mut completions = Vec::with_capacity(batch.len());
    let mut failed = false;
    for op in batch.drain(..) {
        // A panic must not take the writer (and with it every later write) down.
        match std::panic::catch_unwind(AssertUnwindSafe(|| op(&tx))) {
            Ok((ok, done)) => {
                failed |= !ok;
                completions.push(done);
            }
            Err(_) => {
                tracing::error!("a write operation panicked; its batch is rolled back");
                failed = true;
            }
        }
    }
    let outcome = match failed {
        true => tx
            .rollback()
            .map_err(StoreError::from)
            .and(Err(StoreError::Unavailable(
                "a write in the same batch failed; nothing was stored".into(),
            ))),
        false => tx
            .commit()
            .map_err(|e| StoreError::Unavailable(format!("commit failed: {e}"))),
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "a write transaction was not committed");
    }
    for done in completions {
        done(match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        });
    }
}
