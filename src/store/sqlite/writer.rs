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
//! - Kept counts (SPEC §12) change with the rows: operations note their [`Deltas`] in the
//!   [`Batch`], which adds them to the count rows before the same commit, and to the
//!   in-memory [`CountsMirror`] after it.
//! - Two lanes (SPEC §9 "The engine before the door"): the engine's claims, lease
//!   renewals and outcome records go first into every batch and are never refused;
//!   admissions and other API writes queue behind them, and when too many are queued the
//!   caller is told to back off (503) at once instead of waiting behind thousands.
//! - Housekeeping (pruning, the sweep) queues in a third lane, [`Lane::Background`]: such
//!   an operation runs alone in a transaction of its own when nothing else is queued (or
//!   once it has waited [`BACKGROUND_WAIT`]), so no admission shares its transaction or
//!   waits for its statements beyond the one that was already running (SPEC §12).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::counts;
use crate::store::counts::{CountsMirror, Deltas};
use crate::store::{StoreError, StoreResult, WriteHealth};

/// API writes that may wait for the writer before callers are told to back off (503).
const WRITE_QUEUE: usize = 16_384;
/// Most operations committed in one transaction.
const MAX_BATCH: usize = 1024;
/// How long the first operation of a batch waits for others to join it. Operations that
/// arrive while a commit runs join the next batch anyway; a longer window (0.5 ms was
/// tried) only delayed every answer. 1 ms, cut short at 32 writes, took 30 % off the
/// CPU at 1,000 requests/s, but a client with 4–16 requests in flight then waited out
/// the window on every batch and got half its throughput; cut short also after 150 µs
/// without a new write, it saved 7–15 % and cost such a client a fifth (BENCHMARKS.md).
/// Neither was kept.
const COMMIT_WINDOW: Duration = Duration::from_micros(100);
/// Longest a background operation waits for a moment without other writes: a flood of
/// admissions cannot put housekeeping off forever.
const BACKGROUND_WAIT: Duration = Duration::from_secs(1);

/// What an operation sees: the batch's transaction, the counts as committed before this
/// batch, and the changes to them made so far in it.
pub(super) struct Batch<'c> {
    pub conn: &'c Connection,
    pub committed: &'c CountsMirror,
    pub deltas: Deltas,
}

impl Batch<'_> {
    /// The backlog (SPEC §9) as this operation sees it: committed counts plus the
    /// changes of the operations before it in this batch.
    pub fn backlog(&self, tenant: &str) -> (u64, u64) {
        let all = self.committed.backlog() as i64 + self.deltas.backlog_change(None);
        let mine =
            self.committed.backlog_of(tenant) as i64 + self.deltas.backlog_change(Some(tenant));
        (all.max(0) as u64, mine.max(0) as u64)
    }
}

/// Tells the caller how its operation ended, once the batch's commit is known.
type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;
/// One queued write: runs its statements, says whether they succeeded, and hands back how
/// to answer its caller.
type Op = Box<dyn FnOnce(&mut Batch<'_>) -> (bool, Completion) + Send>;

/// Which lane an operation queues in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// Claims, lease renewals, outcome records: first in every batch, never refused.
    Engine,
    /// Admissions and other API writes: bounded.
    Api,
    /// Housekeeping: alone in its transaction, when the other lanes are empty.
    Background,
}

#[derive(Default)]
struct Lanes {
    engine: VecDeque<Op>,
    api: VecDeque<Op>,
    /// With the time each was queued.
    background: VecDeque<(Instant, Op)>,
    closed: bool,
}

impl Lanes {
    /// Whether no engine or API write waits.
    fn foreground_is_empty(&self) -> bool {
        self.engine.is_empty() && self.api.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.foreground_is_empty() && self.background.is_empty()
    }

    /// The next background operation, if nothing else is queued or it has waited long
    /// enough.
    fn background_due(&mut self) -> Option<Op> {
        let (queued, _) = self.background.front()?;
        if !self.foreground_is_empty() && queued.elapsed() < BACKGROUND_WAIT {
            return None;
        }
        self.background.pop_front().map(|(_, op)| op)
    }

    /// Moves queued operations into `batch`, the engine's first, up to [`MAX_BATCH`].
    fn drain_into(&mut self, batch: &mut Vec<Op>) {
        for lane in [&mut self.engine, &mut self.api] {
            let n = lane.len().min(MAX_BATCH - batch.len());
            batch.extend(lane.drain(..n));
        }
    }
}

#[derive(Default)]
struct Queue {
    lanes: Mutex<Lanes>,
    ready: Condvar,
}

pub(super) struct Writer {
    queue: Arc<Queue>,
    mirror: Arc<RwLock<CountsMirror>>,
    health: WriteHealth,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.lanes.lock().expect("queue lock").closed = true;
        self.queue.ready.notify_one();
    }
}

impl Writer {
    /// Starts the writer thread on `conn`, loading the kept counts first; it stops when
    /// the `Writer` is dropped.
    pub fn start(conn: Connection) -> StoreResult<Self> {
        let mirror = Arc::new(RwLock::new(counts::load(&conn)?));
        let queue = Arc::new(Queue::default());
        let health = WriteHealth::default();
        let (q, m, h) = (queue.clone(), mirror.clone(), health.clone());
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, &q, &m, &h))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Self {
            queue,
            mirror,
            health,
        })
    }

    /// Whether the last batch committed.
    pub fn healthy(&self) -> bool {
        self.health.healthy()
    }

    /// The record counts as last committed.
    pub fn counts(&self) -> CountsMirror {
        self.mirror.read().expect("counts lock").clone()
    }

    /// Queues `op` in the API lane and waits until its batch has committed.
    pub async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Lane::Api, op).await
    }

    /// Queues `op` in the engine's lane and waits until its batch has committed.
    pub async fn write_engine<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Lane::Engine, op).await
    }

    /// Queues `op` in the background lane: it runs alone in its transaction, when no
    /// other write waits (or after [`BACKGROUND_WAIT`]), and this waits for its commit.
    pub async fn write_background<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        self.submit(Lane::Background, op).await
    }

    async fn submit<T, F>(&self, lane: Lane, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Batch<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let op: Op = Box::new(move |batch| {
            let result = op(batch);
            let ok = result.is_ok();
            let done: Completion = Box::new(move |commit| {
                // An operation's own error wins over the batch's.
                let _ = tx.send(result.and_then(|value| commit.map(|()| value)));
            });
            (ok, done)
        });
        {
            let mut lanes = self.queue.lanes.lock().expect("queue lock");
            if lanes.closed {
                return Err(StoreError::Unavailable("the writer stopped".into()));
            }
            match lane {
                Lane::Engine => lanes.engine.push_back(op),
                Lane::Api if lanes.api.len() >= WRITE_QUEUE => return Err(StoreError::Overloaded),
                Lane::Api => lanes.api.push_back(op),
                Lane::Background => lanes.background.push_back((Instant::now(), op)),
            }
        }
        self.queue.ready.notify_one();
        rx.await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }
}

fn run(mut conn: Connection, queue: &Queue, mirror: &RwLock<CountsMirror>, health: &WriteHealth) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while next_batch(queue, &mut batch) {
        health.note(&commit_batch(&mut conn, &mut batch, mirror));
    }
}

/// Waits for work, then gathers what arrives within the commit window (fewer, larger
/// commits write each hot page once instead of once per operation). `false` once the
/// writer is closed and drained.
fn next_batch(queue: &Queue, batch: &mut Vec<Op>) -> bool {
    let mut lanes = queue.lanes.lock().expect("queue lock");
    while lanes.is_empty() {
        if lanes.closed {
            return false;
        }
        lanes = queue.ready.wait(lanes).expect("queue lock");
    }
    if let Some(op) = lanes.background_due() {
        batch.push(op);
        return true;
    }
    let window_ends = Instant::now() + COMMIT_WINDOW;
    loop {
        lanes.drain_into(batch);
        let left = window_ends.saturating_duration_since(Instant::now());
        if batch.len() >= MAX_BATCH || left.is_zero() {
            return true;
        }
        lanes = queue.ready.wait_timeout(lanes, left).expect("queue lock").0;
    }
}

/// Runs `batch` in one transaction with its count changes, then answers every caller;
/// returns whether it committed.
fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Op>,
    mirror: &RwLock<CountsMirror>,
) -> StoreResult<()> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // Dropping the operations tells their callers the database is unavailable.
            tracing::error!(error = %e, "cannot begin a write transaction");
            batch.clear();
            return Err(StoreError::Unavailable(e.to_string()));
        }
    };
    let committed = mirror.read().expect("counts lock").clone();
    let mut ctx = Batch {
        conn: &tx,
        committed: &committed,
        deltas: Deltas::default(),
    };
    let mut completions = Vec::with_capacity(batch.len());
    let mut failed = false;
    for op in batch.drain(..) {
        // A panic must not take the writer (and with it every later write) down.
        match std::panic::catch_unwind(AssertUnwindSafe(|| op(&mut ctx))) {
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
    let deltas = std::mem::take(&mut ctx.deltas);
    if !failed && let Err(e) = counts::apply(&tx, &deltas) {
        tracing::error!(error = %e, "could not update the kept counts");
        failed = true;
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
    match &outcome {
        Ok(()) => mirror.write().expect("counts lock").apply(&deltas),
        Err(e) => tracing::error!(error = %e, "a write transaction was not committed"),
    }
    for done in completions {
        done(match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Unavailable(e.to_string())),
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Op {
        Box::new(|_| (true, Box::new(|_| {}) as Completion))
    }

    #[test]
    fn background_work_waits_while_other_writes_are_queued() {
        let mut lanes = Lanes::default();
        lanes.background.push_back((Instant::now(), op()));
        lanes.api.push_back(op());
        lanes.engine.push_back(op());
        assert!(lanes.background_due().is_none(), "not beside queued writes");
        let mut batch = Vec::new();
        lanes.drain_into(&mut batch);
        assert_eq!(batch.len(), 2, "a batch never takes background work");
        assert!(
            !lanes.is_empty(),
            "the background operation is still queued"
        );
        assert!(
            lanes.background_due().is_some(),
            "due once nothing else waits"
        );
        assert!(lanes.is_empty());
    }

    #[test]
    fn background_work_is_not_put_off_for_ever() {
        let mut lanes = Lanes::default();
        let long_ago = Instant::now() - BACKGROUND_WAIT - Duration::from_millis(1);
        lanes.background.push_back((long_ago, op()));
        lanes.background.push_back((Instant::now(), op()));
        lanes.api.push_back(op());
        assert!(
            lanes.background_due().is_some(),
            "the one that waited long enough"
        );
        assert!(lanes.background_due().is_none(), "the next one still waits");
    }
}
