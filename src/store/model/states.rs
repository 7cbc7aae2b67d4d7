//! A request's state (mode, status, callback status) as one small integer: the key of
//! the kept counts and of the state indexes.

use super::*;

/// States of async requests whose callback failed for good (what a bulk redelivery
/// takes), ascending.
pub fn failed_callback_states() -> Vec<i64> {
    matching_states(Some(Mode::Async), None, Some(CallbackStatus::Failed))
}

/// A request's lifecycle state as one code (SPEC §12): `16 × mode + 4 × status +
/// callback_status`, the formula of the `state` column in both migrations.
pub fn state_code(mode: Mode, status: RequestStatus, callback: Option<CallbackStatus>) -> i64 {
    let mode = match mode {
        Mode::Sync => 0,
        Mode::Async => 16,
    };
    let status = match status {
        RequestStatus::Pending => 0,
        RequestStatus::Processing => 4,
        RequestStatus::Completed => 8,
        RequestStatus::Failed => 12,
    };
    let callback = match callback {
        None => 0,
        Some(CallbackStatus::Pending) => 1,
        Some(CallbackStatus::Sent) => 2,
        Some(CallbackStatus::Failed) => 3,
    };
    mode + status + callback
}

/// Every state a record can be in: sync requests have no callback status, async ones
/// always have one.
pub fn all_states() -> impl Iterator<Item = (Mode, RequestStatus, Option<CallbackStatus>)> {
    RequestStatus::ALL.iter().flat_map(|&status| {
        let sync = std::iter::once((Mode::Sync, status, None));
        let async_ = CallbackStatus::ALL
            .iter()
            .map(move |&cb| (Mode::Async, status, Some(cb)));
        sync.chain(async_)
    })
}

/// The state codes that match the given filters, ascending.
pub fn matching_states(
    mode: Option<Mode>,
    status: Option<RequestStatus>,
    callback: Option<CallbackStatus>,
) -> Vec<i64> {
    let mut codes: Vec<i64> = all_states()
        .filter(|(m, s, c)| {
            mode.is_none_or(|f| f == *m)
                && status.is_none_or(|f| f == *s)
                && callback.is_none_or(|f| Some(f) == *c)
        })
        .map(|(m, s, c)| state_code(m, s, c))
        .collect();
    codes.sort_unstable();
    codes
}

/// States of async requests whose callback is not terminal: the backlog (SPEC §9).
pub fn backlog_states() -> Vec<i64> {
    matching_states(Some(Mode::Async), None, Some(CallbackStatus::Pending))
}

/// Terminal states (SPEC §2): the work ended and, for async, so did the callback.
pub fn terminal_states() -> Vec<i64> {
    let mut codes: Vec<i64> = all_states()
        .filter(|(_, s, c)| {
            matches!(s, RequestStatus::Completed | RequestStatus::Failed)
                && !matches!(c, Some(CallbackStatus::Pending))
        })
        .map(|(m, s, c)| state_code(m, s, c))
        .collect();
    codes.sort_unstable();
    codes
}

/// The callback status a state code carries.
pub fn callback_of_state(code: i64) -> Option<CallbackStatus> {
    match code % 4 {
        1 => Some(CallbackStatus::Pending),
        2 => Some(CallbackStatus::Sent),
        3 => Some(CallbackStatus::Failed),
        _ => None,
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_sixteen() {
        let mut codes: Vec<i64> = all_states().map(|(m, s, c)| state_code(m, s, c)).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), 16);
        assert_eq!(matching_states(None, None, None), codes);
    }

    #[test]
    fn filters_pick_their_states() {
        assert_eq!(matching_states(Some(Mode::Sync), None, None), [0, 4, 8, 12]);
        assert_eq!(
            matching_states(None, None, Some(CallbackStatus::Pending)),
            [17, 21, 25, 29]
        );
        assert_eq!(backlog_states(), [17, 21, 25, 29]);
        assert_eq!(
            matching_states(Some(Mode::Sync), None, Some(CallbackStatus::Sent)),
            Vec::<i64>::new()
        );
        assert_eq!(
            matching_states(
                Some(Mode::Async),
                Some(RequestStatus::Completed),
                Some(CallbackStatus::Failed)
            ),
            [27]
        );
        assert_eq!(terminal_states(), [8, 12, 26, 27, 30, 31]);
    }

    #[test]
    fn the_callback_status_is_read_back_from_a_code() {
        for (m, s, c) in all_states() {
            assert_eq!(callback_of_state(state_code(m, s, c)), c);
        }
    }

    #[test]
    fn limits_refuse_the_tenant_before_the_whole_backlog() {
        let limits = AdmissionLimits {
            max_pending: 10,
            max_pending_per_tenant: 3,
        };
        assert_eq!(limits.refusal(2, 2), None);
        assert_eq!(limits.refusal(5, 3), Some(Admission::QuotaExceeded));
        assert_eq!(limits.refusal(10, 1), Some(Admission::Overloaded));
        assert_eq!(AdmissionLimits::default().refusal(u64::MAX, u64::MAX), None);
    }
}
