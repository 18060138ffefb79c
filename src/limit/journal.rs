//! What a worker admitted since the last fleet sync: a single-producer, single-consumer ring of (user id,
//! charge) pairs, the charge being the user's emission interval (their tier's) in microseconds.
//!
//! The worker (the only producer) pushes one pair per admitted request: two slot stores and one release
//! store, no lock, no allocation. The sync thread (the only consumer) drains it every interval. A full ring
//! drops the id and counts it: that request was still decided by the local table, it is only missing from the
//! fleet's count (see docs/rate-limit.md).

use std::sync::atomic::{AtomicU64, Ordering};

#[repr(align(64))]
struct Line(AtomicU64);

pub struct Journal {
    slots: Box<[[AtomicU64; 2]]>,
    mask: u64,
    /// Next slot to read (written by the consumer).
    head: Line,
    /// Next slot to write (written by the producer).
    tail: Line,
    dropped: Line,
}

impl Journal {
    /// A ring of `capacity` ids (rounded up to a power of two).
    pub fn new(capacity: usize) -> Journal {
        let cap = capacity.next_power_of_two().max(2);
        Journal {
            slots: (0..cap).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
            mask: cap as u64 - 1,
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            dropped: Line(AtomicU64::new(0)),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Ids dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.0.load(Ordering::Relaxed)
    }

    /// Records an admission of user `id` costing `charge`. Only one thread may push into a journal.
    #[inline]
    pub fn push(&self, id: u64, charge: u64) {
        let t = self.tail.0.load(Ordering::Relaxed);
        if t.wrapping_sub(self.head.0.load(Ordering::Acquire)) > self.mask {
            // The producer is the only writer of `dropped`: no read-modify-write needed.
            self.dropped
                .0
                .store(self.dropped.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return;
        }
        let slot = &self.slots[(t & self.mask) as usize];
        slot[0].store(id, Ordering::Relaxed);
        slot[1].store(charge, Ordering::Relaxed);
        self.tail.0.store(t.wrapping_add(1), Ordering::Release);
    }

    /// Hands every id pushed so far to `f`, oldest first, and frees their slots. Only one thread may drain a
    /// journal. Returns how many there were.
    pub fn drain(&self, mut f: impl FnMut(u64, u64)) -> usize {
        let h = self.head.0.load(Ordering::Relaxed);
        let t = self.tail.0.load(Ordering::Acquire);
        let mut i = h;
        while i != t {
            let slot = &self.slots[(i & self.mask) as usize];
            f(slot[0].load(Ordering::Relaxed), slot[1].load(Ordering::Relaxed));
            i = i.wrapping_add(1);
        }
        self.head.0.store(t, Ordering::Release);
        t.wrapping_sub(h) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn fifo_wraps_and_counts_drops() {
        let j = Journal::new(4);
        for id in 1..=6 {
            j.push(id, id * 10);
        }
        assert_eq!(j.dropped(), 2);
        let mut got = vec![];
        assert_eq!(j.drain(|id, c| got.push((id, c))), 4);
        assert_eq!(got, [(1, 10), (2, 20), (3, 30), (4, 40)]);
        for round in 0..10u64 {
            j.push(round, 1);
            j.push(round + 100, 2);
            got.clear();
            j.drain(|id, c| got.push((id, c)));
            assert_eq!(got, [(round, 1), (round + 100, 2)]);
        }
        assert_eq!(j.dropped(), 2);
    }

    #[test]
    fn one_producer_one_consumer_lose_nothing() {
        let j = Arc::new(Journal::new(1024));
        let n = 200_000u64;
        let producer = {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut pushed = 0;
                while pushed < n {
                    // Wait for room instead of dropping, so that the consumer must see every id.
                    if j.tail.0.load(Ordering::Relaxed) - j.head.0.load(Ordering::Acquire) < 1024 {
                        j.push(pushed + 1, pushed + 2);
                        pushed += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let (mut seen, mut next) = (0u64, 1u64);
        while seen < n {
            seen += j.drain(|id, c| {
                assert_eq!((id, c), (next, next + 1));
                next += 1;
            }) as u64;
        }
        producer.join().unwrap();
        assert_eq!(j.dropped(), 0);
    }
}
