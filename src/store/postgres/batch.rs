//! Group commit: many callers' writes of one kind in one transaction.
//!
//! A [`Batcher`] queues each item with the caller's reply; one task takes the first item
//! queued, everything queued behind it (up to a limit), and hands that batch to its
//! writer, at most a few batches at once. Under light load a batch is one item and
//! waits for nothing; under heavy load the batches grow and each costs one commit and a
//! few set-based statements instead of one transaction per item.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

/// Where a writer answers one item of its batch.
pub(super) type Reply<O> = oneshot::Sender<StoreResult<O>>;

/// Writes one batch and answers every item in it.
pub(super) type Write<I, O> =
    Arc<dyn Fn(Vec<(I, Reply<O>)>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Items queued at most; a caller beyond waits for room. Each caller waits for its own
/// answer anyway, so the queue holds at most one item per caller in flight (bounded by
/// the connection cap and the workers); this bound is a second guard.
const QUEUED: usize = 16_384;

/// How long a short batch waits for more items while another batch is being written. At
/// 2,000 async requests a second on two cores, 1 ms took a tenth off the database's CPU
/// time (fewer, larger transactions) for at most 1 ms more per write.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// The batching task's door; dropping it stops the task once the queue is empty.
pub(super) struct Batcher<I, O> {
    tx: mpsc::Sender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Batches of at most `limit` items, at most `in_flight` of them written at once.
    pub(super) fn spawn(limit: usize, in_flight: usize, write: Write<I, O>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(run(rx, limit, in_flight, write));
        Self { tx }
    }

    /// Queues `item` and waits for its answer.
    pub(super) async fn submit(&self, item: I) -> StoreResult<O> {
        let closing = || StoreError::Unavailable("the store is closing".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| closing())?;
        answer.await.map_err(|_| closing())?
    }
}

async fn run<I: Send + 'static, O: Send + 'static>(
    mut rx: mpsc::Receiver<(I, Reply<O>)>,
    limit: usize,
    in_flight: usize,
    write: Write<I, O>,
) {
    let seats = Arc::new(Semaphore::new(in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let Ok(seat) = seats.clone().acquire_owned().await else {
            return;
        };
        // Group commit: while another batch is being written, a short one waits a moment
        // for company (alone, an item is written at once).
        if seats.available_permits() + 1 < in_flight && rx.len() + 1 < limit / 4 {
            tokio::time::sleep(LINGER).await;
        }
        // Everything queued while we waited goes in this batch.
        let mut batch = vec![first];
        while batch.len() < limit
            && let Ok(next) = rx.try_recv()
        {
            batch.push(next);
        }
        let written = write(batch);
        tokio::spawn(async move {
            written.await;
            drop(seat);
        });
    }
}

/// Answers every item of `batch` from `together`, one write for all of them. When that
/// write fails for any reason but an unavailable database (every item then hears that),
/// writes each item with `alone` and answers it with its own result, so one bad item never
/// fails the others.
pub(super) async fn together_or_alone<I, O, T, TF, A, AF>(
    batch: Vec<(I, Reply<O>)>,
    what: &str,
    together: T,
    alone: A,
) where
    I: Clone,
    T: FnOnce(Vec<I>) -> TF,
    TF: Future<Output = StoreResult<Vec<O>>>,
    A: Fn(I) -> AF,
    AF: Future<Output = StoreResult<O>>,
{
    let items: Vec<I> = batch.iter().map(|(item, _)| item.clone()).collect();
    match together(items).await {
        Ok(answers) => {
            for ((_, reply), answer) in batch.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
        }
        Err(StoreError::Unavailable(e)) => {
            for (_, reply) in batch {
                let _ = reply.send(Err(StoreError::Unavailable(e.clone())));
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, items = batch.len(), "batch {what} failed; writing one by one");
            for (item, reply) in batch {
                let _ = reply.send(alone(item).await);
            }
        }
    }
}
