//! Counts kept with the rows they count (SPEC §12): the number of records per tenant and
//! state, the same per work (§13: `work=` totals), and the callbacks that ended per
//! tenant and minute.
//!
//! Every write that creates, changes the state of, or deletes a record notes a change in
//! a [`Deltas`]; the backend adds the deltas to its count rows in the same transaction as
//! the records, so a total read with the rows is exact, and GET /requests never counts
//! rows. [`CountsMirror`] is an instance's in-memory copy of the record counts, for the
//! backlog limits of SPEC §9 and the /metrics gauges.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::backlog_states;

/// The work of records that name none (made before works existed).
const TEXT: &str = "text";

/// Changes to the kept counts made by one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deltas {
    /// (tenant, state) → change in the number of records.
    pub counts: HashMap<(String, i64), i64>,
    /// (tenant, work, state) → change in the number of records (`text` for none).
    pub works: HashMap<(String, String, i64), i64>,
    /// (tenant, Unix minute) → (callbacks delivered, callbacks failed).
    pub minutes: HashMap<(String, i64), (i64, i64)>,
}

impl Deltas {
    /// A record of `tenant` and `work` was created in `state`.
    pub fn added(&mut self, tenant: &str, work: Option<&str>, state: i64) {
        self.count(tenant, work, state, 1);
    }

    /// A record left `from` for `to` (nothing when they are equal).
    pub fn moved(&mut self, tenant: &str, work: Option<&str>, from: i64, to: i64) {
        if from != to {
            self.count(tenant, work, from, -1);
            self.count(tenant, work, to, 1);
        }
    }

    /// A record in `state` was deleted.
    pub fn removed(&mut self, tenant: &str, work: Option<&str>, state: i64) {
        self.count(tenant, work, state, -1);
    }

    /// A callback of `tenant` ended at `at`: delivered, or failed for good.
    pub fn ended(&mut self, tenant: &str, at: DateTime<Utc>, delivered: bool) {
        let minute = at.timestamp().div_euclid(60);
        let entry = self.minutes.entry((tenant.to_owned(), minute)).or_default();
        match delivered {
            true => entry.0 += 1,
            false => entry.1 += 1,
        }
    }

    fn count(&mut self, tenant: &str, work: Option<&str>, state: i64, by: i64) {
        *self.counts.entry((tenant.to_owned(), state)).or_default() += by;
        let work = work.unwrap_or(TEXT).to_owned();
        *self
            .works
            .entry((tenant.to_owned(), work, state))
            .or_default() += by;
    }

    pub fn is_empty(&self) -> bool {
        self.counts.values().all(|n| *n == 0) && self.minutes.is_empty()
    }

    /// Adds `other`'s changes to these.
    pub fn merge(&mut self, other: Deltas) {
        for (key, n) in other.counts {
            *self.counts.entry(key).or_default() += n;
        }
        for (key, n) in other.works {
            *self.works.entry(key).or_default() += n;
        }
        for (key, (d, f)) in other.minutes {
            let entry = self.minutes.entry(key).or_default();
            entry.0 += d;
            entry.1 += f;
        }
    }

    /// The change in the backlog (async requests whose callback is not terminal), of
    /// one tenant or of all.
    pub fn backlog_change(&self, tenant: Option<&str>) -> i64 {
        let backlog = backlog_states();
        self.counts
            .iter()
            .filter(|((t, state), _)| tenant.is_none_or(|w| w == t) && backlog.contains(state))
            .map(|(_, n)| n)
            .sum()
    }

    /// The non-zero count changes, in a stable order (for statements and tests).
    pub fn count_rows(&self) -> Vec<(&str, i64, i64)> {
        let mut rows: Vec<_> = self
            .counts
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|((t, s), n)| (t.as_str(), *s, *n))
            .collect();
        rows.sort_unstable();
        rows
    }

    /// The non-zero per-work count changes `(tenant, work, state, n)`, in a stable order.
    pub fn work_rows(&self) -> Vec<(&str, &str, i64, i64)> {
        let mut rows: Vec<_> = self
            .works
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|((t, w, s), n)| (t.as_str(), w.as_str(), *s, *n))
            .collect();
        rows.sort_unstable();
        rows
    }

    /// The minute changes, in a stable order.
    pub fn minute_rows(&self) -> Vec<(&str, i64, i64, i64)> {
        let mut rows: Vec<_> = self
            .minutes
            .iter()
            .map(|((t, m), (d, f))| (t.as_str(), *m, *d, *f))
            .collect();
        rows.sort_unstable();
        rows
    }
}

/// An instance's copy of the record counts: (tenant, state) → records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountsMirror {
    counts: HashMap<(String, i64), i64>,
}

impl CountsMirror {
    /// From stored rows `(tenant, state, n)`; rows of one key (shards) are added up.
    pub fn from_rows(rows: impl IntoIterator<Item = (String, i64, i64)>) -> Self {
        let mut counts: HashMap<(String, i64), i64> = HashMap::new();
        for (tenant, state, n) in rows {
            *counts.entry((tenant, state)).or_default() += n;
        }
        Self { counts }
    }

    pub fn apply(&mut self, deltas: &Deltas) {
        for (key, n) in &deltas.counts {
            *self.counts.entry(key.clone()).or_default() += n;
        }
    }

    /// Async requests whose callback is not terminal, of all tenants.
    pub fn backlog(&self) -> u64 {
        self.sum(None, &backlog_states())
    }

    /// The same, of one tenant.
    pub fn backlog_of(&self, tenant: &str) -> u64 {
        self.sum(Some(tenant), &backlog_states())
    }

    fn sum(&self, tenant: Option<&str>, states: &[i64]) -> u64 {
        let n: i64 = self
            .counts
            .iter()
            .filter(|((t, s), _)| tenant.is_none_or(|w| w == t) && states.contains(s))
            .map(|(_, n)| n)
            .sum();
        n.max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_lifecycle_nets_out_in_the_backlog() {
        let mut d = Deltas::default();
        d.added("a", None, 17); // async pending/pending
        d.moved("a", None, 17, 21);
        d.moved("a", None, 21, 25);
        assert_eq!(d.backlog_change(Some("a")), 1);
        d.moved("a", None, 25, 26); // sent
        assert_eq!(d.backlog_change(None), 0);
        assert_eq!(d.count_rows(), vec![("a", 26, 1)]);
    }

    #[test]
    fn moving_to_the_same_state_changes_nothing() {
        let mut d = Deltas::default();
        d.moved("a", None, 8, 8);
        assert!(d.is_empty());
    }

    #[test]
    fn endings_are_kept_per_tenant_and_minute() {
        let mut d = Deltas::default();
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 59).unwrap();
        d.ended("a", t, true);
        d.ended("a", t, false);
        d.ended("a", t + chrono::TimeDelta::seconds(1), true);
        let minute = t.timestamp() / 60;
        assert_eq!(
            d.minute_rows(),
            vec![("a", minute, 1, 1), ("a", minute + 1, 1, 0)]
        );
    }

    #[test]
    fn the_mirror_adds_shards_and_applies_deltas() {
        let mut m = CountsMirror::from_rows([
            ("a".to_owned(), 17, 2),
            ("a".to_owned(), 17, 3),
            ("b".to_owned(), 25, 1),
            ("b".to_owned(), 26, 9),
        ]);
        assert_eq!(
            (m.backlog(), m.backlog_of("a"), m.backlog_of("b")),
            (6, 5, 1)
        );
        let mut d = Deltas::default();
        d.moved("b", None, 25, 26);
        m.apply(&d);
        assert_eq!((m.backlog(), m.backlog_of("b")), (5, 0));
    }

    #[test]
    fn merged_deltas_add_up() {
        let (mut a, mut b) = (Deltas::default(), Deltas::default());
        a.added("t", None, 8);
        b.added("t", Some("pdf"), 8);
        b.removed("t", Some("pdf"), 12);
        a.merge(b);
        assert_eq!(a.count_rows(), vec![("t", 8, 2), ("t", 12, -1)]);
        assert_eq!(
            a.work_rows(),
            vec![
                ("t", "pdf", 8, 1),
                ("t", "pdf", 12, -1),
                ("t", "text", 8, 1)
            ]
        );
    }
}
