//! A hashed timing wheel: coarse ticks, one live entry per connection, lazy cancellation.
//!
//! A connection keeps its own `deadline` and the tick its wheel entry fires at. Moving a deadline later
//! costs nothing (the entry fires, sees the later deadline and re-arms); moving it earlier adds an entry and
//! the old one becomes stale (its tick no longer matches). Time is passed in; this module reads no clock.
//! Slot vectors keep their capacity, so a warm wheel does not allocate.

use std::time::{Duration, Instant};

/// Tick length: the resolution of every timeout.
pub const TICK: Duration = Duration::from_millis(50);
const SLOTS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key: usize,
    pub gen: u32,
    pub tick: u64,
}

#[derive(Debug)]
pub struct Wheel {
    origin: Instant,
    /// The next tick to expire.
    next: u64,
    slots: Vec<Vec<Entry>>,
    len: usize,
}

impl Wheel {
    pub fn new(origin: Instant) -> Wheel {
        Wheel {
            origin,
            next: 1,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    /// The tick at or after `t` (never in the past of the wheel, never more than a lap ahead).
    pub fn tick_of(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        let tick = d.as_nanos().div_ceil(TICK.as_nanos()) as u64;
        tick.clamp(self.next, self.next + SLOTS as u64 - 1)
    }

    /// Adds an entry firing at `deadline`'s tick; returns that tick.
    pub fn schedule(&mut self, key: usize, gen: u32, deadline: Instant) -> u64 {
        let tick = self.tick_of(deadline);
        self.slots[(tick % SLOTS as u64) as usize].push(Entry { key, gen, tick });
        self.len += 1;
        tick
    }

    /// Moves every entry whose tick has come by `now` into `out`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Entry>) {
        let now_tick = (now.saturating_duration_since(self.origin).as_nanos() / TICK.as_nanos()) as u64;
        while self.next <= now_tick && self.len > 0 {
            let slot = &mut self.slots[(self.next % SLOTS as u64) as usize];
            self.len -= slot.len();
            out.append(slot);
            self.next += 1;
        }
        if self.len == 0 && self.next <= now_tick {
            self.next = now_tick + 1;
        }
    }

    /// How long the event loop may sleep: until the next tick if any entry is pending.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let at = self.origin + TICK * self.next as u32;
        Some(at.saturating_duration_since(now))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_at_or_after_deadline_never_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let tick = w.schedule(7, 1, t0 + Duration::from_millis(120));
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_millis(100), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_millis(150), &mut out);
        assert_eq!(out, vec![Entry { key: 7, gen: 1, tick }]);
        assert!(w.is_empty());
    }

    #[test]
    fn far_deadlines_clamp_to_one_lap() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let tick = w.schedule(1, 0, t0 + Duration::from_secs(3600));
        assert_eq!(tick, SLOTS as u64);
        let mut out = Vec::new();
        w.expire(t0 + TICK * (SLOTS as u32), &mut out);
        assert_eq!(out.len(), 1);
        assert!(w.poll_timeout(t0).is_none());
    }
}
