//! SPEC §17 "Two pools": a job holds a seat of the delivery pool (`--workers`) from its
//! claim, but not while it waits for and makes a work's upstream calls, which count
//! against the work pool (`--work-workers`) and the work's `max_in_flight` instead. So a
//! dead upstream fills neither the delivery pool nor another work's slots.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;

use super::Engine;

tokio::task_local! {
    /// The running job's seat of the delivery pool.
    pub(super) static SEAT: RefCell<Option<OwnedSemaphorePermit>>;
}

impl Engine {
    /// Runs `work` without the job's delivery seat (woken, the claim loop fills it), then
    /// takes a seat again for the delivery. At most twice `--work-workers` jobs give their
    /// seat back at once; beyond that a job keeps it, so claims stay bounded.
    pub(super) async fn without_seat<T>(&self, work: impl Future<Output = T>) -> T {
        let cap = self.config.work_workers.saturating_mul(2);
        let away = self.work_jobs.fetch_add(1, Ordering::SeqCst);
        // Counted back however the work ends (a panic, an abort at shutdown).
        let _back = Away(&self.work_jobs);
        let seat = match away < cap {
            true => SEAT.try_with(|s| s.borrow_mut().take()).ok().flatten(),
            false => None,
        };
        let gave_back = seat.is_some();
        if gave_back {
            drop(seat);
            self.wake.notify_one();
        }
        let out = work.await;
        drop(_back);
        if gave_back {
            let seat = self
                .workers
                .clone()
                .acquire_owned()
                .await
                .expect("never closed");
            let _ = SEAT.try_with(|s| *s.borrow_mut() = Some(seat));
        }
        out
    }
}

/// One job away from its seat, counted back when dropped.
struct Away<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Away<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
