//! The wall clock as a worker reads it: derived from the monotonic reading the event loop takes anyway, the
//! real clock read again only every 100 ms (no second clock read per loop iteration).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the real clock is read.
const REFRESH: Duration = Duration::from_millis(100);

pub struct WallClock {
    /// The real clock's last reading (Unix microseconds), taken at `at`.
    base_us: u64,
    at: Instant,
    /// When the clock was made, and `at` in microseconds since then (for the monotonic reading).
    origin: Instant,
    at_mono_us: u64,
}

/// One reading: for timestamps, and for durations.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Unix microseconds (follows the real clock, which may step).
    pub unix_us: u64,
    /// Microseconds since the clock was made: never steps, never goes back.
    pub mono_us: u64,
}

impl WallClock {
    pub fn new(now: Instant) -> WallClock {
        WallClock {
            base_us: real_us(),
            at: now,
            origin: now,
            at_mono_us: 0,
        }
    }

    /// The clock at `now` (a monotonic reading no earlier than the last one given): Unix microseconds for
    /// timestamps, and microseconds since the clock was made for durations, from one subtraction.
    pub fn read(&mut self, now: Instant) -> Reading {
        let since = now.saturating_duration_since(self.at);
        if since >= REFRESH {
            self.at_mono_us = now.saturating_duration_since(self.origin).as_micros() as u64;
            self.at = now;
            self.base_us = real_us();
            return Reading {
                unix_us: self.base_us,
                mono_us: self.at_mono_us,
            };
        }
        let since = since.as_micros() as u64;
        Reading {
            unix_us: self.base_us + since,
            mono_us: self.at_mono_us + since,
        }
    }
}

fn real_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_reading_counts_from_the_start_across_refreshes() {
        let origin = Instant::now();
        let mut c = WallClock::new(origin);
        let at = |us: u64| origin + Duration::from_micros(us);
        assert_eq!(c.read(at(30_000)).mono_us, 30_000);
        // Past REFRESH: the real clock is read again; the monotonic reading goes on as before.
        assert_eq!(c.read(at(130_000)).mono_us, 130_000);
        assert_eq!(c.read(at(130_007)).mono_us, 130_007);
        let r = c.read(at(260_001));
        assert_eq!(r.mono_us, 260_001);
        assert!(r.unix_us > 1_700_000_000_000_000, "Unix microseconds: {}", r.unix_us);
    }
}
