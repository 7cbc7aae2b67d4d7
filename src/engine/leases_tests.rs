//! The lease keeper on tokio's paused clock, renewing through an in-memory [`Renew`]
//! that notes when it was called and with which leases: the schedule is exact to the
//! millisecond, and nothing waits in real time.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::{Instant, sleep_until};

use super::*;
use crate::store::StoreError;

/// Lease of 30 s: a renewal every 10 s.
const LEASE: Duration = Duration::from_secs(30);

/// A renewal as the store saw it: when (since the start) and which requests.
type Call = (Duration, Vec<Uuid>);

struct Renewals {
    start: Instant,
    calls: Mutex<Vec<Call>>,
    /// The next this many renewals fail.
    failing: AtomicUsize,
    /// Requests the next successful renewal answers as lost.
    lost: Mutex<Vec<Uuid>>,
}

impl Renewals {
    fn new(start: Instant) -> Arc<Self> {
        Arc::new(Self {
            start,
            calls: Mutex::default(),
            failing: AtomicUsize::new(0),
            lost: Mutex::default(),
        })
    }

    /// The renewals since the last call.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Renew for Arc<Renewals> {
    async fn renew(&self, leases: &[Lease], lease_for: Duration) -> StoreResult<Vec<Uuid>> {
        assert_eq!(lease_for, LEASE, "each renewal extends by the whole lease");
        let mut ids: Vec<Uuid> = leases.iter().map(|l| l.request_id).collect();
        ids.sort();
        self.calls.lock().unwrap().push((self.start.elapsed(), ids));
        let failing = self.failing.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing.store(failing - 1, Ordering::SeqCst);
            return Err(StoreError::Unavailable(
                "the test's database is down".into(),
            ));
        }
        Ok(std::mem::take(&mut *self.lost.lock().unwrap()))
    }
}

fn lease() -> Lease {
    Lease {
        request_id: Uuid::now_v7(),
        token: Uuid::new_v4(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ids(leases: &[Lease]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = leases.iter().map(|l| l.request_id).collect();
    ids.sort();
    ids
}

/// The keeper, running on the paused clock from `start`.
fn keeper(
    renewals: &Arc<Renewals>,
) -> (Arc<Leases>, CancellationToken, tokio::task::JoinHandle<()>) {
    let leases = Arc::new(Leases::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(
        leases
            .clone()
            .renew_forever(renewals.clone(), LEASE, stop.clone()),
    );
    (leases, stop, task)
}

#[tokio::test(start_paused = true)]
async fn a_kept_lease_is_renewed_every_third_of_the_lease_until_it_is_dropped() {
    let start = Instant::now();
    let renewals = Renewals::new(start);
    let (leases, stop, task) = keeper(&renewals);
    let (a, b) = (lease(), lease());
    let kept_a = leases.keep(a);
    sleep_until(start + secs(35)).await;
    let only_a = ids(&[a]);
    assert_eq!(
        renewals.take(),
        [
            (secs(10), only_a.clone()),
            (secs(20), only_a.clone()),
            (secs(30), only_a)
        ]
    );
    // A second job: both leases in the one write of the next period.
    let kept_b = leases.keep(b);
    sleep_until(start + secs(45)).await;
    assert_eq!(renewals.take(), [(secs(40), ids(&[a, b]))]);
    // A's job ends: its lease is renewed no more, B's still is.
    drop(kept_a);
    sleep_until(start + secs(65)).await;
    assert_eq!(
        renewals.take(),
        [(secs(50), ids(&[b])), (secs(60), ids(&[b]))]
    );
    // No job left: no write at all, period after period.
    drop(kept_b);
    sleep_until(start + secs(125)).await;
    assert_eq!(renewals.take(), []);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_renewal_is_tried_again_soon_and_a_lost_lease_is_renewed_no_more() {
    let start = Instant::now();
    let renewals = Renewals::new(start);
    let (leases, stop, task) = keeper(&renewals);
    let (a, b) = (lease(), lease());
    let (kept_a, _kept_b) = (leases.keep(a), leases.keep(b));
    // The renewal at 10 s fails: tried again 200 ms later, then every period from there.
    renewals.failing.store(1, Ordering::SeqCst);
    sleep_until(start + secs(21)).await;
    let both = ids(&[a, b]);
    let after_retry = secs(10) + RETRY_AFTER;
    assert_eq!(
        renewals.take(),
        [
            (secs(10), both.clone()),
            (after_retry, both.clone()),
            (after_retry + secs(10), both.clone()),
        ]
    );
    // The store answers A's lease as lost (another instance took the job over): it is
    // not renewed again, even though its job still holds it.
    renewals.lost.lock().unwrap().push(a.request_id);
    sleep_until(start + secs(41)).await;
    assert_eq!(
        renewals.take(),
        [
            (after_retry + secs(20), both),
            (after_retry + secs(30), ids(&[b]))
        ]
    );
    // The same request claimed again here, under a new token: the old job's guard, when
    // it goes, does not stop the new lease's renewals.
    let again = Lease {
        request_id: a.request_id,
        token: Uuid::new_v4(),
    };
    let _kept_again = leases.keep(again);
    drop(kept_a);
    sleep_until(start + secs(51)).await;
    assert_eq!(renewals.take(), [(after_retry + secs(40), ids(&[a, b]))]);
    stop.cancel();
    task.await.unwrap();
}
