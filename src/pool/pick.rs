//! Choosing a server of a pool for a request: power of two choices on outstanding requests, weighted round
//! robin, or weighted rendezvous hashing of the user key, among the servers in (a pool's health summary spares
//! the per-server look while every server is in).

use std::sync::atomic::Ordering::Relaxed;

use super::{Balance, Pools};

/// A worker's own balancing state (its random stream and its round-robin positions).
#[derive(Debug, Clone)]
pub struct Chooser {
    rng: u64,
    /// Smooth weighted round robin: each server's current weight, by global index.
    current: Vec<i64>,
}

impl Chooser {
    pub fn new(seed: u64, pools: &Pools) -> Chooser {
        Chooser {
            rng: seed,
            current: vec![0; pools.servers.len()],
        }
    }

    /// A number below `n` (Lemire's multiply-shift: no division).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What [`Pools::pick`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This server (its global index).
    Server(usize),
    /// Every server of the pool is ejected and the panic threshold is 0.
    NoHealthy,
    /// Every usable server was tried already for this request.
    Exhausted,
}

/// The set bits of `set`, lowest first.
fn bits(mut set: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let i = set.trailing_zeros();
            set &= set - 1;
            i
        })
    })
}

/// The position of the `n`-th (from 0) set bit of `set` (which has more than `n`).
fn nth_bit(mut set: u64, n: u64) -> u32 {
    for _ in 0..n {
        set &= set - 1;
    }
    set.trailing_zeros()
}

/// Mixes a user key with a server's index (the same on every node: no per-process seed).
pub(super) fn mix(key: u64, server: u64) -> u64 {
    let mut z = key ^ server.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pools {
    #[inline(always)]
    pub(super) fn outstanding(&self, s: usize) -> u64 {
        let mut n = 0u64;
        for slot in self.servers[s].slots.iter() {
            n = n.wrapping_add(slot.outstanding.load(Relaxed));
        }
        n
    }

    /// Chooses a server of `pool` for a request of user `key`, not among `tried` (a bit per server of the
    /// pool, in order). While the pool's summary says every server is in, the usable ones are all those not
    /// tried; else one pass over the pool's servers (an atomic load each) makes the bit set of the usable
    /// ones. The choice works on that set.
    pub fn pick(&self, pool: usize, key: u64, tried: u64, now_ms: u64, c: &mut Chooser) -> Pick {
        let m = &self.meta[pool];
        let (base, n) = (m.range.start, m.range.len());
        let all = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
        if n == 1 {
            // One server: nothing to balance (and, alone, it is never ejected: see `eject_max_percent`; active
            // checks may take it down: then the panic threshold decides).
            return if self.ejected(base, now_ms) && self.health.panic_threshold == 0 {
                Pick::NoHealthy
            } else if tried & 1 == 0 {
                Pick::Server(base)
            } else {
                Pick::Exhausted
            };
        }
        let usable = if m.ejected_until.load(Relaxed) <= now_ms && m.down.load(Relaxed) == 0 {
            // Every server is in (the pool's summary says so without a look at each).
            all & !tried
        } else {
            let mut ejected = 0u64;
            for i in 0..n {
                if self.ejected(base + i, now_ms) {
                    ejected |= 1 << i;
                }
            }
            let healthy = n - ejected.count_ones() as usize;
            let panic = healthy * 100 < self.health.panic_threshold as usize * n;
            if healthy == 0 && !panic {
                return Pick::NoHealthy;
            }
            all & !tried & if panic { all } else { !ejected }
        };
        if usable == 0 {
            return Pick::Exhausted;
        }
        let weight = |i: u32| self.servers[base + i as usize].spec.weight as u64;
        let pick = match m.balance {
            Balance::Hash => {
                // Weighted rendezvous hashing: the server with the highest weight / -ln(u) for u drawn from
                // hash(key, server) keeps the user; removing a server moves only the users it had.
                bits(usable)
                    .map(|i| {
                        let h = mix(key, self.servers[base + i as usize].id);
                        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                        (weight(i) as f64 / -u.ln(), i)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, i)| i)
            }
            Balance::RoundRobin => {
                // Smooth weighted round robin (nginx): every usable server gains its weight, the largest is
                // chosen and loses the total.
                let mut total = 0i64;
                let mut best: Option<u32> = None;
                for i in bits(usable) {
                    let s = base + i as usize;
                    c.current[s] += weight(i) as i64;
                    total += weight(i) as i64;
                    if best.is_none_or(|b| c.current[s] > c.current[base + b as usize]) {
                        best = Some(i);
                    }
                }
                if let Some(b) = best {
                    c.current[base + b as usize] -= total;
                }
                best
            }
            Balance::P2c if m.uniform => {
                // Equal weights (the usual case): two distinct usable servers drawn uniformly (a multiply,
                // not a division), the one with fewer outstanding requests wins. With every server usable
                // (the usual case) the draws are the positions themselves.
                let (a, b) = if usable == all {
                    let a = c.below(n as u64) as u32;
                    let b = c.below(n as u64 - 1) as u32;
                    (a, b + (b >= a) as u32)
                } else {
                    let count = usable.count_ones() as u64;
                    let a = nth_bit(usable, c.below(count));
                    if count == 1 {
                        return Pick::Server(base + a as usize);
                    }
                    (a, nth_bit(usable & !(1 << a), c.below(count - 1)))
                };
                let (la, lb) = (self.outstanding(base + a as usize), self.outstanding(base + b as usize));
                Some(if lb < la { b } else { a })
            }
            Balance::P2c => {
                // Two distinct usable servers drawn by weight; the one with fewer outstanding requests per
                // unit of weight wins.
                let draw = |c: &mut Chooser, set: u64| -> Option<u32> {
                    let total: u64 = bits(set).map(weight).sum();
                    let mut r = c.next() % total.max(1);
                    for i in bits(set) {
                        if r < weight(i) {
                            return Some(i);
                        }
                        r -= weight(i);
                    }
                    None
                };
                let a = draw(c, usable);
                let b = a.and_then(|a| {
                    let rest = usable & !(1 << a);
                    (rest != 0).then(|| draw(c, rest)).flatten()
                });
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let load = |i: u32| (self.outstanding(base + i as usize) + 1) * 1000 / weight(i);
                        Some(if load(b) < load(a) { b } else { a })
                    }
                    (a, _) => a,
                }
            }
        };
        pick.map_or(Pick::Exhausted, |i| Pick::Server(base + i as usize))
    }

    /// The bit of `server` in a `tried` set of its pool.
    pub fn bit(&self, server: usize) -> u64 {
        let pool = self.servers[server].pool;
        1u64 << ((server - self.meta[pool].range.start) & 63)
    }
}
