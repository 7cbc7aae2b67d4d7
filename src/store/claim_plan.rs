//! How one claim shares the free workers among the queues it found (SPEC §8 "Fair
//! claiming"): pure, so both backends drive the same plan with their own statements.
//!
//! A queue is one destination's jobs in one phase. Every queue is offered an equal share
//! of the free workers (at least one job, at most its free slots); a second round hands
//! what the first left over to the queues that filled their share. So one destination
//! with a million due jobs takes what the others leave, never their turn.

use super::model::Phase;

/// One destination's jobs in one phase, as a claim sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub destination: i64,
    pub phase: Phase,
    /// Most jobs this queue may give in this claim (this instance's free slots for the
    /// destination, 1 for a probe; unbounded for work).
    pub slots: u32,
    /// Its one job is the probe of an open circuit.
    pub probe: bool,
    /// Jobs leased from it so far in this claim.
    pub taken: u32,
    /// It gave fewer than asked: nothing more is due there.
    pub exhausted: bool,
}

impl Queue {
    pub fn work(destination: i64) -> Self {
        Self::new(destination, Phase::Work, u32::MAX, false)
    }

    pub fn delivery(destination: i64, slots: u32, probe: bool) -> Self {
        Self::new(destination, Phase::Delivery, slots, probe)
    }

    fn new(destination: i64, phase: Phase, slots: u32, probe: bool) -> Self {
        Self {
            destination,
            phase,
            slots,
            probe,
            taken: 0,
            exhausted: false,
        }
    }

    fn room(&self) -> usize {
        match self.exhausted {
            true => 0,
            false => self.slots.saturating_sub(self.taken) as usize,
        }
    }
}

/// The rounds of one claim: ask [`SharePlan::round`] which queues to take how many jobs
/// from, take them (one statement per queue, or one for the whole round), report each
/// with [`SharePlan::took`], until a round is empty.
#[derive(Debug)]
pub struct SharePlan {
    queues: Vec<Queue>,
    remaining: usize,
    rounds_left: u8,
}

impl SharePlan {
    pub fn new(queues: Vec<Queue>, limit: usize) -> Self {
        Self {
            queues,
            remaining: limit,
            rounds_left: 2,
        }
    }

    /// The next round: each queue with room (its index) and how many jobs to take from
    /// it, an equal share of what is left; empty when the claim is done.
    pub fn round(&mut self) -> Vec<(usize, usize)> {
        if self.rounds_left == 0 || self.remaining == 0 {
            return Vec::new();
        }
        self.rounds_left -= 1;
        let open: Vec<usize> = (0..self.queues.len())
            .filter(|&i| self.queues[i].room() > 0)
            .collect();
        if open.is_empty() {
            return Vec::new();
        }
        let share = self.remaining.div_ceil(open.len()).max(1);
        let mut budget = self.remaining;
        let mut asks = Vec::new();
        for i in open {
            let n = share.min(self.queues[i].room()).min(budget);
            if n == 0 {
                break;
            }
            budget -= n;
            asks.push((i, n));
        }
        asks
    }

    /// Queue `i` was asked for `asked` jobs and gave `got`.
    pub fn took(&mut self, i: usize, asked: usize, got: usize) {
        let q = &mut self.queues[i];
        q.taken += got as u32;
        q.exhausted |= got < asked;
        self.remaining -= got.min(self.remaining);
    }

    pub fn queue(&self, i: usize) -> &Queue {
        &self.queues[i]
    }

    pub fn into_queues(self) -> Vec<Queue> {
        self.queues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a plan against queues holding `due[i]` due jobs; returns jobs taken per queue.
    fn run(queues: Vec<Queue>, due: &[usize], limit: usize) -> Vec<u32> {
        let mut left = due.to_vec();
        let mut plan = SharePlan::new(queues, limit);
        loop {
            let round = plan.round();
            if round.is_empty() {
                break;
            }
            for (i, n) in round {
                let got = n.min(left[i]);
                left[i] -= got;
                plan.took(i, n, got);
            }
        }
        plan.into_queues().iter().map(|q| q.taken).collect()
    }

    #[test]
    fn a_huge_queue_does_not_take_the_others_turn() {
        let taken = run(
            vec![Queue::work(1), Queue::work(2), Queue::work(3)],
            &[100_000, 1, 5],
            64,
        );
        assert_eq!(taken, [58, 1, 5]);
    }

    #[test]
    fn caps_and_probes_bound_a_delivery_queue() {
        let taken = run(
            vec![
                Queue::delivery(1, 16, false),
                Queue::delivery(2, 1, true),
                Queue::work(3),
            ],
            &[1000, 1000, 1000],
            256,
        );
        assert_eq!(taken, [16, 1, 239]);
    }

    #[test]
    fn more_queues_than_workers_still_gives_each_one_at_most() {
        let queues: Vec<Queue> = (0..10).map(Queue::work).collect();
        let taken = run(queues, &[5; 10], 4);
        assert_eq!(taken.iter().sum::<u32>(), 4);
        assert!(taken.iter().all(|&t| t <= 1));
    }

    #[test]
    fn nothing_is_asked_of_a_queue_without_room() {
        let mut plan = SharePlan::new(vec![Queue::delivery(1, 0, false)], 10);
        assert_eq!(plan.round(), Vec::new());
    }
}
