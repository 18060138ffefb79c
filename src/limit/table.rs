//! The process-wide rate-limit table: a fixed array of atomic slots, set-associative, one CAS per decision.
//!
//! A slot is one `AtomicU64`: a 16-bit key fingerprint and a 48-bit TAT in microseconds since the table's
//! epoch (8.9 years). Buckets hold [`WAYS`] slots (one cache line); a key's bucket comes from its hash's low
//! bits and its fingerprint from the high ones, so two users share a schedule only when both agree (see
//! docs/rate-limit.md for the odds). A slot whose TAT has passed holds no information and is reused freely;
//! when every slot of a bucket is live the one that frees soonest is evicted and counted.
//! No lock, no allocation after construction, no syscall; time is passed in.

use std::sync::atomic::{AtomicU64, Ordering};

use super::gcra::{Decision, Gcra};

/// Slots per bucket: 8 x 8 bytes = one 64-byte cache line.
pub const WAYS: usize = 8;
const TAT_BITS: u32 = 48;
const TAT_MASK: u64 = (1 << TAT_BITS) - 1;

#[repr(align(64))]
struct Bucket([AtomicU64; WAYS]);

pub struct Table {
    buckets: Box<[Bucket]>,
    mask: usize,
    evictions: AtomicU64,
}

fn fp(slot: u64) -> u16 {
    (slot >> TAT_BITS) as u16
}

fn tat(slot: u64) -> u64 {
    slot & TAT_MASK
}

/// Where a key lives in a bucket: its slot if held, else where it would go.
enum Place {
    Held(usize, u64),
    /// A dead slot, or (live: true) the live one that frees soonest.
    Free {
        idx: usize,
        cur: u64,
        live: bool,
    },
}

/// The key's bucket, fingerprint and preferred slot. A new key goes to its preferred slot when free: the same
/// slot for every thread, so that two first requests of one user race on one CAS instead of landing in two.
fn locate(hash: u64) -> (u16, usize) {
    (((hash >> TAT_BITS) as u16).max(1), (hash >> 32) as usize % WAYS)
}

/// One pass over the bucket: the slot holding fingerprint `f`, else the slot a new key takes.
fn scan(bucket: &[AtomicU64; WAYS], f: u16, preferred: usize, now_us: u64) -> Place {
    let mut victim = (preferred, bucket[preferred].load(Ordering::Acquire));
    let mut victim_live = tat(victim.1) > now_us;
    for (i, s) in bucket.iter().enumerate() {
        let v = s.load(Ordering::Acquire);
        if v != 0 && fp(v) == f {
            return Place::Held(i, v);
        }
        // Prefer a dead slot; among live ones, the one that frees soonest.
        let live = tat(v) > now_us;
        if victim_live && (!live || tat(v) < tat(victim.1)) {
            victim = (i, v);
            victim_live = live;
        }
    }
    Place::Free {
        idx: victim.0,
        cur: victim.1,
        live: victim_live,
    }
}

/// After placing a new key in slot `idx` as `new`: if another decision placed the same key in another slot
/// meanwhile (another worker with a slightly different clock, or a bucket that changed between the scans),
/// takes ours back (to `cur`) and returns true: the caller goes again through that slot.
fn placed_twice(bucket: &[AtomicU64; WAYS], f: u16, idx: usize, new: u64, cur: u64) -> bool {
    bucket.iter().enumerate().any(|(i, s)| {
        let v = s.load(Ordering::Acquire);
        i != idx && v != 0 && fp(v) == f
    }) && bucket[idx]
        .compare_exchange(new, cur, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

impl Table {
    /// A table of at least `slots` slots (rounded up to a power-of-two number of buckets).
    pub fn new(slots: usize) -> Table {
        let buckets = slots.div_ceil(WAYS).next_power_of_two().max(1);
        let buckets: Box<[Bucket]> = (0..buckets)
            .map(|_| Bucket(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        Table {
            mask: buckets.len() - 1,
            buckets,
            evictions: AtomicU64::new(0),
        }
    }

    pub fn slots(&self) -> usize {
        self.buckets.len() * WAYS
    }

    pub fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Live slots evicted so far because their bucket was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Slots whose schedule is still in the future at `now`.
    pub fn live(&self, now_us: u64) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.0.iter())
            .filter(|s| tat(s.load(Ordering::Relaxed)) > now_us)
            .count()
    }

    /// Decides one request of the user whose key hashes to `hash`, at `now_us` (microseconds since the
    /// table's epoch, below 2^48).
    pub fn decide(&self, gcra: &Gcra, hash: u64, now_us: u64) -> Decision {
        let bucket = &self.buckets[hash as usize & self.mask].0;
        let (f, preferred) = locate(hash);
        loop {
            let place = scan(bucket, f, preferred, now_us);
            let (idx, cur, prev_tat, evicting) = match place {
                Place::Held(i, v) => (i, v, tat(v), false),
                Place::Free { idx, cur, live } => (idx, cur, 0, live),
            };
            match gcra.decide(prev_tat, now_us) {
                Decision::Allow {
                    tat: new_tat,
                    remaining,
                    reset_us,
                } => {
                    let new = ((f as u64) << TAT_BITS) | (new_tat & TAT_MASK);
                    if bucket[idx]
                        .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        if matches!(place, Place::Free { .. }) && placed_twice(bucket, f, idx, new, cur) {
                            continue;
                        }
                        if evicting {
                            self.evictions.fetch_add(1, Ordering::Relaxed);
                        }
                        return Decision::Allow {
                            tat: new_tat,
                            remaining,
                            reset_us,
                        };
                    }
                    // Another decision changed the slot first: look again.
                }
                deny => return deny,
            }
        }
    }

    /// Moves the schedule of the user whose key hashes to `hash` to `tat` if that is later than the one the
    /// table holds (the fleet-wide state merged in by the sync thread: the later schedule wins). A user the
    /// table does not hold is added when `tat` is still ahead of `now_us`. Returns whether the table changed.
    pub fn raise(&self, hash: u64, tat: u64, now_us: u64) -> bool {
        let bucket = &self.buckets[hash as usize & self.mask].0;
        let (f, preferred) = locate(hash);
        let tat = tat.min(TAT_MASK);
        let new = ((f as u64) << TAT_BITS) | tat;
        loop {
            match scan(bucket, f, preferred, now_us) {
                Place::Held(_, v) if self::tat(v) >= tat => return false,
                Place::Held(i, v) => {
                    if bucket[i]
                        .compare_exchange(v, new, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return true;
                    }
                }
                Place::Free { .. } if tat <= now_us => return false,
                Place::Free { idx, cur, live } => {
                    if bucket[idx]
                        .compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                        || placed_twice(bucket, f, idx, new, cur)
                    {
                        continue;
                    }
                    if live {
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                    return true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_limited_separately() {
        let t = Table::new(1024);
        let g = Gcra::new(10, 2);
        let now = 1_000_000;
        for key in [1u64 << 50 | 7, 2u64 << 50 | 9] {
            assert!(matches!(t.decide(&g, key, now), Decision::Allow { .. }));
            assert!(matches!(t.decide(&g, key, now), Decision::Allow { .. }));
            assert!(matches!(t.decide(&g, key, now), Decision::Deny { .. }));
        }
        assert_eq!(t.live(now), 2);
        assert_eq!(t.evictions(), 0);
        assert_eq!(t.slots(), 1024);
        assert_eq!(t.bytes(), 8 * 1024);
    }

    #[test]
    fn full_bucket_evicts_the_soonest_and_counts() {
        let t = Table::new(WAYS); // one bucket
        let g = Gcra::new(1, 1);
        let now = 10_000_000;
        for k in 1..=(WAYS as u64 + 3) {
            assert!(
                matches!(t.decide(&g, k << 48, now + k), Decision::Allow { .. }),
                "key {k}"
            );
        }
        assert_eq!(t.evictions(), 3);
        // Once their schedules have passed, slots are reused without eviction.
        let later = now + 5_000_000;
        for k in 100..(100 + WAYS as u64) {
            assert!(matches!(t.decide(&g, k << 48, later), Decision::Allow { .. }));
        }
        assert_eq!(t.evictions(), 3);
    }

    #[test]
    fn raise_keeps_the_later_schedule_and_adds_missing_users() {
        let t = Table::new(64);
        let g = Gcra::new(10, 2);
        let now = 1_000_000;
        let key = 5u64 << 50 | 3;
        assert!(matches!(t.decide(&g, key, now), Decision::Allow { .. }));
        // The fleet says the user is 2 s ahead: refused here until then.
        assert!(t.raise(key, now + 2_000_000, now));
        assert!(!t.raise(key, now + 1_000_000, now), "an earlier schedule never wins");
        match t.decide(&g, key, now) {
            Decision::Deny { retry_after_us } => assert_eq!(retry_after_us, 2_000_000 - g.tolerance),
            d => panic!("{d:?}"),
        }
        // A user this node has not seen: added if the schedule is live, ignored if it has passed.
        let other = 9u64 << 50 | 3;
        assert!(!t.raise(other, now - 1, now));
        assert_eq!(t.live(now), 1);
        assert!(t.raise(other, now + 50_000, now));
        assert_eq!(t.live(now), 2);
        assert!(matches!(t.decide(&g, other, now), Decision::Allow { .. }));
        assert!(matches!(t.decide(&g, other, now), Decision::Deny { .. }));
    }
}
