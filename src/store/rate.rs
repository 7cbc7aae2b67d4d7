//! A destination's rate limit across instances (SPEC §14, §17): GCRA. The destination row
//! keeps a theoretical arrival time (TAT); a claim, holding the row, may reserve send
//! times spaced `1/rate` apart from `max(TAT, now)` up to [`BURST_MS`] ahead of now, and
//! moves the TAT past the last one it took. Its jobs are sent at once, so the receiver
//! sees at most `rate × window + rate × BURST + 1` attempts in any window: for a 10 s
//! window within `rate × 10 × 1.05 + 1`. Pure: both backends apply it to their rows.

/// How far ahead of now a claim may reserve send times, in ms.
pub const BURST_MS: f64 = 100.0;

/// The spacing of attempts at `rate_per_s`, in ms.
pub fn spacing_ms(rate_per_s: f64) -> f64 {
    1000.0 / rate_per_s
}

/// Attempts a claim may take now when the TAT is `ahead_ms` past now (0 when it lies in
/// the past: no credit is saved up).
pub fn allowed(rate_per_s: f64, ahead_ms: f64) -> u32 {
    let ahead = ahead_ms.max(0.0);
    if ahead > BURST_MS {
        return 0;
    }
    let n = ((BURST_MS - ahead) / spacing_ms(rate_per_s)).floor() + 1.0;
    n.min(f64::from(u32::MAX)) as u32
}

/// How far the TAT moves (from `max(TAT, now)`) for `taken` attempts, in whole ms rounded
/// up (never early).
pub fn advance_ms(rate_per_s: f64, taken: u32) -> i64 {
    (f64::from(taken) * spacing_ms(rate_per_s)).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_spaced_and_bounded_by_the_burst() {
        #[rustfmt::skip]
        let table = [
            // (rate, ahead ms) -> allowed
            ((50.0, 0.0), 6),      // 0, 20, 40, 60, 80, 100 ms
            ((50.0, -500.0), 6),   // no credit for an idle past
            ((50.0, 90.0), 1),
            ((50.0, 101.0), 0),
            ((1.0, 0.0), 1),
            ((1.0, 50.0), 1),
            ((1.0, 150.0), 0),
            ((0.01, 0.0), 1),
            ((100_000.0, 0.0), 10_001),
        ];
        for ((rate, ahead), n) in table {
            assert_eq!(allowed(rate, ahead), n, "{rate}/s, {ahead} ms ahead");
        }
    }

    #[test]
    fn the_tat_moves_by_the_spacing_rounded_up() {
        assert_eq!(advance_ms(50.0, 6), 120);
        assert_eq!(advance_ms(3.0, 1), 334);
        assert_eq!(advance_ms(0.01, 1), 100_000);
        assert_eq!(advance_ms(50.0, 0), 0);
    }

    #[test]
    fn a_window_sees_at_most_the_rate_and_the_burst() {
        // Claims as fast as allowed for 10 s at 50/s: count what they reserve.
        let (rate, mut tat, mut now, mut sent) = (50.0, 0_i64, 0_i64, 0_u32);
        while now < 10_000 {
            let base = tat.max(now);
            let n = allowed(rate, (base - now) as f64);
            sent += n;
            tat = base + advance_ms(rate, n);
            now += 1;
        }
        assert!(sent <= 526, "{sent}");
        assert!(sent >= 500, "{sent}");
    }
}
