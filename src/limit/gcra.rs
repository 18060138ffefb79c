//! GCRA, the virtual-scheduling form of a token bucket, in integer microseconds.
//!
//! A user's state is one number, the theoretical arrival time (TAT) of its next request. With emission
//! interval `T = 1 s / rate` and tolerance `tau = (burst - 1) * T`, a request at `now` is allowed iff
//! `max(TAT, now) - now <= tau`; then `TAT = max(TAT, now) + T`. A refused request changes nothing.
//! Time is passed in; nothing here reads a clock.

/// The limit: `rate` requests per second with bursts of `burst`.
///
/// ```
/// use portcullis::limit::{Decision, Gcra};
/// let g = Gcra::new(10, 2);
/// assert_eq!((g.interval, g.tolerance), (100_000, 100_000));
/// assert!(matches!(g.decide(0, 1_000_000), Decision::Allow { remaining: 1, .. }));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval T, microseconds.
    pub interval: u64,
    /// Burst tolerance tau = (burst - 1) * T, microseconds.
    pub tolerance: u64,
    pub rate: u32,
    pub burst: u32,
}

/// The outcome of one decision.
///
/// ```
/// use portcullis::limit::{Decision, Gcra};
/// // A user whose schedule is 2 s ahead, under a limit of 1 per second without burst: wait 2 s.
/// assert_eq!(Gcra::new(1, 1).decide(3_000_000, 1_000_000), Decision::Deny { retry_after_us: 2_000_000 });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed: the new TAT, the requests still allowed right now, and microseconds until the quota is full.
    Allow { tat: u64, remaining: u32, reset_us: u64 },
    /// Refused: microseconds until a request would be allowed.
    Deny { retry_after_us: u64 },
}

impl Gcra {
    /// `rate` >= 1 per second, `burst` >= 1.
    pub fn new(rate: u32, burst: u32) -> Gcra {
        // Rounded up: a rate that does not divide a second evenly is enforced slightly stricter, never looser.
        let interval = 1_000_000u64.div_ceil(rate.max(1) as u64);
        Gcra {
            interval,
            tolerance: interval * (burst.max(1) as u64 - 1),
            rate,
            burst,
        }
    }

    /// Decides a request at `now` for a user whose stored TAT is `tat` (0 or a past time: a fresh user).
    pub fn decide(&self, tat: u64, now: u64) -> Decision {
        let start = tat.max(now);
        let ahead = start - now;
        if ahead > self.tolerance {
            return Decision::Deny {
                retry_after_us: ahead - self.tolerance,
            };
        }
        let tat = start.saturating_add(self.interval);
        let slack = now.saturating_add(self.tolerance + self.interval).saturating_sub(tat);
        Decision::Allow {
            tat,
            remaining: (slack / self.interval) as u32,
            reset_us: tat.saturating_sub(now),
        }
    }

    /// How long a user's state stays meaningful after `now` at most: `tau + T`.
    pub fn horizon(&self) -> u64 {
        self.tolerance + self.interval
    }
}

/// Whole seconds, rounded up, at least 1 (for `Retry-After`).
pub fn retry_after_secs(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(g: &Gcra, tat: &mut u64, now: u64) -> bool {
        match g.decide(*tat, now) {
            Decision::Allow { tat: t, .. } => {
                *tat = t;
                true
            }
            Decision::Deny { .. } => false,
        }
    }

    #[test]
    fn burst_then_rate() {
        let g = Gcra::new(10, 10);
        assert_eq!((g.interval, g.tolerance), (100_000, 900_000));
        let mut tat = 0;
        let now = 5_000_000;
        // A burst of 10 at the same instant, then the 11th is refused.
        for i in 0..10 {
            assert!(allowed(&g, &mut tat, now), "request {i}");
        }
        match g.decide(tat, now) {
            Decision::Deny { retry_after_us } => assert_eq!(retry_after_us, 100_000),
            d => panic!("{d:?}"),
        }
        assert!(!allowed(&g, &mut tat, now + 99_999));
        assert!(allowed(&g, &mut tat, now + 100_000));
    }

    #[test]
    fn at_the_rate_never_refused_and_large_gaps_reset() {
        let g = Gcra::new(10, 1);
        let mut tat = 0;
        for i in 0..1000u64 {
            assert!(allowed(&g, &mut tat, 1_000_000 + i * 100_000));
        }
        // After a long idle gap the user is as new.
        assert!(allowed(&g, &mut tat, u64::MAX / 4));
    }

    #[test]
    fn remaining_and_reset() {
        let g = Gcra::new(10, 5);
        match g.decide(0, 1_000_000) {
            Decision::Allow {
                remaining, reset_us, ..
            } => assert_eq!((remaining, reset_us), (4, 100_000)),
            d => panic!("{d:?}"),
        }
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000_000), 1);
        assert_eq!(retry_after_secs(1_000_001), 2);
        assert_eq!(retry_after_secs(0), 1);
    }

    #[test]
    fn u64_edges() {
        let g = Gcra::new(1, 1);
        assert!(matches!(g.decide(u64::MAX, u64::MAX), Decision::Allow { .. }));
        assert!(matches!(g.decide(u64::MAX, 0), Decision::Deny { .. }));
        let fast = Gcra::new(5_000_000, 3);
        assert_eq!(fast.interval, 1);
    }
}
