//! Wake-ups across instances: whoever makes a job due announces it with a NOTIFY on
//! [`CHANNEL`] once its transaction has committed; every instance LISTENs on it and
//! wakes its engine.
//!
//! The NOTIFY is sent by an [`Announcer`] task, outside the callers' transactions, and
//! coalesced: PostgreSQL serialises the commits of transactions that issued a NOTIFY
//! (they take a global lock until their commit is flushed), which in a benchmark capped
//! admissions near 1,100 per second; a bare NOTIFY in its own transaction writes no WAL
//! and holds that lock only for a moment. At most one NOTIFY per [`ANNOUNCE_GAP`] leaves
//! an instance: sent back to back, they were 420 a second at 2,000 admissions a second,
//! each a transaction, and each woke every instance's engine (this one's too) for a claim.
//!
//! A notification is only a hint (its payload is empty): the engine claims whatever is
//! due, so duplicates cost one empty claim and a lost one costs at most the engine's poll
//! interval. While the listening connection is down, notifications are lost, so the
//! engine is woken once more after every reconnection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The channel on which "a job may be due" is announced.
pub(crate) const CHANNEL: &str = "consuma_jobs";

/// First wait before reconnecting after an error; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The least time between two NOTIFYs of one instance: another instance hears of new
/// work at most this much later than it could (its own engine is woken at once).
const ANNOUNCE_GAP: Duration = Duration::from_millis(10);

/// Sends "a job may be due" on [`CHANNEL`] after commits that made one due. Any number of
/// announcements made while one NOTIFY is on its way collapse into one more.
pub(super) struct Announcer {
    wanted: Arc<Notify>,
    task: AbortHandle,
}

impl Announcer {
    pub fn spawn(pool: PgPool) -> Self {
        let wanted = Arc::new(Notify::new());
        let task = tokio::spawn(announce_forever(pool, wanted.clone())).abort_handle();
        Self { wanted, task }
    }

    /// Call after the commit that made a job due.
    pub fn announce(&self) {
        self.wanted.notify_one();
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn announce_forever(pool: PgPool, wanted: Arc<Notify>) {
    loop {
        wanted.notified().await;
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            // Other instances still find the job by polling.
            tracing::warn!(error = %e, "could not announce a job to other instances");
        }
        tokio::time::sleep(ANNOUNCE_GAP).await;
    }
}

/// The background LISTEN task; aborted when dropped (with the store).
pub(super) struct ListenerTask(AbortHandle);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts listening; `signal` is notified for every notification and after every
/// (re)connection.
pub(super) fn spawn(pool: PgPool, signal: Arc<Notify>) -> ListenerTask {
    ListenerTask(tokio::spawn(listen_forever(pool, signal)).abort_handle())
}

async fn listen_forever(pool: PgPool, signal: Arc<Notify>) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Err(e) = listen_until_error(&pool, &signal, &mut backoff).await;
        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
            "listening for jobs of other instances failed; the engine polls meanwhile");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens on a fresh connection until it fails. A new [`PgListener`] each time: one
/// that failed may still hold its broken connection.
async fn listen_until_error(
    pool: &PgPool,
    signal: &Notify,
    backoff: &mut Duration,
) -> Result<Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    *backoff = MIN_BACKOFF;
    // Jobs enqueued while we were not listening.
    signal.notify_one();
    loop {
        // `None`: the connection was lost and re-established; notifications sent
        // meanwhile are gone, so wake the engine for them too.
        let _notification = listener.try_recv().await?;
        signal.notify_one();
    }
}
