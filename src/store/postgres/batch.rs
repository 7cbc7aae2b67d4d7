//! Group commit: many callers' writes of one kind in one transaction.
//!
//! A [`Batcher`] queues each item with the caller's reply; one task takes the first item
//! queued, everything queued behind it (up to a limit), and hands that batch to its
//! writer, at most a few batches at once. Under light load a batch is one item and
//! waits for nothing; under heavy load the batches grow and each costs one commit and a
//! few set-based statements instead of one transaction per item.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::{StoreError, StoreResult};

/// Where a writer answers one item of its batch.
pub(super) type Reply<O> = oneshot::Sender<StoreResult<O>>;

/// Writes one batch and answers every item in it.
pub(super) type Write<I, O> =
    Arc<dyn Fn(Vec<(I, Reply<O>)>) -> BoxFuture<'static, ()> + Send + Sync>;

/// The batching task's door; dropping it stops the task once the queue is empty.
pub(super) struct Batcher<I, O> {
    tx: mpsc::UnboundedSender<(I, Reply<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Batches of at most `limit` items, at most `in_flight` of them written at once.
    pub(super) fn spawn(limit: usize, in_flight: usize, write: Write<I, O>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, limit, in_flight, write));
        Self { tx }
    }

    /// Queues `item` and waits for its answer.
    pub(super) async fn submit(&self, item: I) -> StoreResult<O> {
        let closing = || StoreError::Unavailable("the store is closing".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).map_err(|_| closing())?;
        answer.await.map_err(|_| closing())?
    }
}

async fn run<I: Send + 'static, O: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<(I, Reply<O>)>,
    limit: usize,
    in_flight: usize,
    write: Write<I, O>,
) {
    let seats = Arc::new(Semaphore::new(in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        let Ok(seat) = seats.clone().acquire_owned().await else {
            return;
        };
        // Everything queued while we waited for a seat goes in this batch.
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
