//! The wall clock as a worker reads it: derived from the monotonic reading the event loop takes anyway, the
//! real clock read again only every 100 ms (no second clock read per loop iteration).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the real clock is read.
const REFRESH: Duration = Duration::from_millis(100);

pub struct WallClock {
    /// The real clock's last reading (Unix microseconds), taken at `at`.
    base_us: u64,
    at: Instant,
}

impl WallClock {
    pub fn new(now: Instant) -> WallClock {
        WallClock {
            base_us: real_us(),
            at: now,
        }
    }

    /// Unix milliseconds at `now` (a monotonic reading no earlier than the last one given).
    pub fn unix_ms(&mut self, now: Instant) -> u64 {
        self.unix_us(now) / 1000
    }

    /// Unix microseconds at `now` (one reading serves the access log's milliseconds and the workers'
    /// request durations).
    pub fn unix_us(&mut self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.at);
        if since >= REFRESH {
            self.at = now;
            self.base_us = real_us();
            return self.base_us;
        }
        self.base_us + since.as_micros() as u64
    }
}

fn real_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
