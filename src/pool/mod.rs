//! Named upstream pools: their servers, how a request's server is chosen (power of two choices, round robin,
//! or a consistent hash of the user), the passive health every worker shares (consecutive failures eject a
//! server for a while), and the routes from a request's API version and path to a pool.
//!
//! Pure: times are passed in (Unix milliseconds), randomness comes from the caller's seed, nothing here opens
//! a socket. The workers share one [`Pools`]: the health of a server and its outstanding requests are atomics
//! every worker reads; each worker writes only its own slot of a server's counters.

use core::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

mod live;
mod pick;
mod routes;

pub use live::Live;
pub use pick::{Chooser, Pick};
pub use routes::{Route, Routes};

/// How a pool spreads its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Power of two choices on outstanding requests (Envoy's least-request, HAProxy's `random(2)`).
    P2c,
    /// Weighted round robin (nginx's smooth weighted round robin), per worker.
    RoundRobin,
    /// A consistent hash of the user key (weighted rendezvous hashing): a user sticks to one server, and a
    /// server that leaves moves only its own users.
    Hash,
}

impl Balance {
    pub fn parse(s: &str) -> Result<Balance, String> {
        match s.trim() {
            "p2c" => Ok(Balance::P2c),
            "round-robin" => Ok(Balance::RoundRobin),
            "hash" => Ok(Balance::Hash),
            v => Err(format!("{v:?}: use p2c, round-robin or hash")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Balance::P2c => "p2c",
            Balance::RoundRobin => "round-robin",
            Balance::Hash => "hash",
        }
    }
}

/// One server of a pool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub addr: SocketAddr,
    /// As written in the configuration (`host:port`), for metrics and logs.
    pub name: String,
    pub weight: u32,
}

/// A named pool, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub servers: Vec<ServerSpec>,
    pub balance: Balance,
    /// `--health NAME=/path`: the path its servers are checked on (None: passive health only).
    pub health: Option<String>,
}

/// Passive health and the panic threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// `--eject-after`: consecutive failures that eject a server.
    pub eject_after: u32,
    /// `--eject-time`: the first ejection's length (doubling with each repeated one, at most 5 minutes).
    pub eject_time: Duration,
    /// `--eject-max-percent`: never more than this share of a pool ejected at once.
    pub eject_max_percent: u32,
    /// `--panic-threshold`: below this share of healthy servers, a pool uses all of them as if healthy (0:
    /// never; a pool without a healthy server then refuses).
    pub panic_threshold: u32,
}

/// The longest ejection.
pub const EJECT_MAX: Duration = Duration::from_secs(300);

/// A server's state shared by every worker.
struct Server {
    spec: ServerSpec,
    /// Where it is now: `spec.addr` at start, then as `--dns-refresh` last resolved its name (read at each
    /// new connection, never per request).
    addr: std::sync::Mutex<SocketAddr>,
    /// Bumped each time `addr` changes: a pooled connection made to an older address is not reused.
    addr_gen: AtomicU32,
    pool: usize,
    /// A hash of the server's name: its identity for `hash` balancing (not its position, so that removing
    /// one server moves no other server's users), the same on every node.
    id: u64,
    /// Consecutive failures.
    failures: AtomicU32,
    /// Ejected until this Unix millisecond (0: not ejected).
    ejected_until: AtomicU64,
    /// Ejections so far in a row (each doubles the next one's length); cleared by a success.
    ejections: AtomicU32,
    /// Active health (`--health`): down after `--health-fall` failed checks in a row, up again after
    /// `--health-rise` passed ones; the counts of the current run.
    down: std::sync::atomic::AtomicBool,
    checks_passed: AtomicU32,
    checks_failed: AtomicU32,
    ejections_total: AtomicU64,
    /// Per worker: outstanding requests and requests by status class (1xx..5xx, then failures without one).
    slots: Box<[Slot]>,
}

#[derive(Default)]
#[repr(align(128))]
struct Slot {
    outstanding: AtomicU64,
    requests: [AtomicU64; 6],
}

/// A pool's request durations, per worker (buckets as `metrics::DURATION_BUCKETS_US`, then the sum).
#[derive(Default)]
#[repr(align(128))]
struct Latency {
    buckets: crate::metrics::Counters<{ crate::metrics::DURATION_BUCKETS_US.len() + 1 }>,
    sum_us: AtomicU64,
}

/// How a request to a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered with this status.
    Status(u16),
    /// No answer: the connect failed, it timed out, it reset or closed before answering, or answered
    /// something that is not HTTP.
    Failed,
}

/// Every pool, every server, the routes.
pub struct Pools {
    specs: Vec<PoolSpec>,
    /// What a pick reads of each pool, in one place.
    meta: Vec<Meta>,
    /// Per pool, per worker: how long its requests took, from the upstream connection's attach to its release.
    latency: Vec<Box<[Latency]>>,
    servers: Vec<Server>,
    pub routes: Routes,
    health: Health,
}

/// What [`Pools::pick`] reads of a pool.
struct Meta {
    /// Its servers: a range of `Pools::servers`.
    range: core::ops::Range<usize>,
    balance: Balance,
    /// Its servers all have the same weight.
    uniform: bool,
    /// A summary of its servers' health, so that a pick in a pool with every server in (the usual case) reads
    /// two atomics instead of two per server: no server of the pool is ejected at or after `ejected_until`
    /// (the latest ejection's end; an ejection ended early by active checks leaves it later than need be,
    /// which only costs the per-server look until then), and `down` servers are down by active checks.
    ejected_until: AtomicU64,
    down: AtomicU32,
}

impl Pools {
    pub fn new(specs: Vec<PoolSpec>, routes: Routes, health: Health, workers: usize) -> Pools {
        let mut meta = Vec::new();
        let mut servers = Vec::new();
        for (p, spec) in specs.iter().enumerate() {
            let start = servers.len();
            for s in &spec.servers {
                servers.push(Server {
                    addr: std::sync::Mutex::new(s.addr),
                    addr_gen: AtomicU32::new(0),
                    spec: s.clone(),
                    pool: p,
                    id: s.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
                    }),
                    failures: AtomicU32::new(0),
                    ejected_until: AtomicU64::new(0),
                    ejections: AtomicU32::new(0),
                    down: std::sync::atomic::AtomicBool::new(false),
                    checks_passed: AtomicU32::new(0),
                    checks_failed: AtomicU32::new(0),
                    ejections_total: AtomicU64::new(0),
                    slots: (0..workers.max(1)).map(|_| Slot::default()).collect(),
                });
            }
            meta.push(Meta {
                range: start..servers.len(),
                balance: spec.balance,
                uniform: spec.servers.windows(2).all(|w| w[0].weight == w[1].weight),
                ejected_until: AtomicU64::new(0),
                down: AtomicU32::new(0),
            });
        }
        Pools {
            latency: specs
                .iter()
                .map(|_| (0..workers.max(1)).map(|_| Latency::default()).collect())
                .collect(),
            specs,
            meta,
            servers,
            routes,
            health,
        }
    }

    pub fn specs(&self) -> &[PoolSpec] {
        &self.specs
    }

    /// Passive health and the panic threshold.
    pub fn health(&self) -> Health {
        self.health
    }

    /// The index of the pool named `name`.
    pub fn pool_named(&self, name: &str) -> Option<usize> {
        self.specs.iter().position(|p| p.name == name)
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The server of a pool of one (nothing to balance, and, alone, never ejected: see
    /// `--eject-max-percent`), or `None` for a pool of several.
    #[inline]
    pub fn single(&self, pool: usize) -> Option<usize> {
        let r = &self.meta[pool].range;
        (r.end - r.start == 1 && self.specs[pool].health.is_none()).then_some(r.start)
    }

    /// Whether `pool` balances by the user (its choice needs the request's user key).
    pub fn by_user(&self, pool: usize) -> bool {
        let m = &self.meta[pool];
        m.balance == Balance::Hash && m.range.len() > 1
    }

    pub fn addr(&self, server: usize) -> SocketAddr {
        *self.servers[server].addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (pool name, server name) of a server.
    pub fn names(&self, server: usize) -> (&str, &str) {
        let s = &self.servers[server];
        (&self.specs[s.pool].name, &s.spec.name)
    }

    /// Not taking requests: ejected (passive health) or down (active health).
    fn ejected(&self, s: usize, now_ms: u64) -> bool {
        let s = &self.servers[s];
        s.ejected_until.load(Relaxed) > now_ms || s.down.load(Relaxed)
    }

    /// The result of an active check of `server` (`--health`): `rise` passes in a row bring a server that
    /// is down back (and end a passive ejection early), `fall` failures in a row take it down.
    pub fn checked(&self, server: usize, passed: bool, rise: u32, fall: u32, now_ms: u64) {
        let s = &self.servers[server];
        if passed {
            s.checks_failed.store(0, Relaxed);
            let n = s.checks_passed.fetch_add(1, Relaxed) + 1;
            if n >= rise {
                if s.down.swap(false, Relaxed) {
                    self.meta[s.pool].down.fetch_sub(1, Relaxed);
                }
                // `rise` passes since the ejection began (it resets the count) end it early.
                if s.ejected_until.load(Relaxed) > now_ms {
                    s.ejected_until.store(0, Relaxed);
                    s.failures.store(0, Relaxed);
                }
            }
        } else {
            s.checks_passed.store(0, Relaxed);
            let n = s.checks_failed.fetch_add(1, Relaxed) + 1;
            if n >= fall && !s.down.swap(true, Relaxed) {
                self.meta[s.pool].down.fetch_add(1, Relaxed);
            }
        }
    }

    /// Re-resolves every server given by name with `resolve` (the system resolver in the binary): a new
    /// answer's first address replaces the old one (connections made from then on use it); a failed or empty
    /// answer keeps the last good address. Returns what changed and what failed, for the log: (server name,
    /// `Ok(new address)` or `Err(why)`).
    pub fn refresh(
        &self,
        resolve: impl Fn(&str) -> Result<Vec<SocketAddr>, String>,
    ) -> Vec<(String, Result<SocketAddr, String>)> {
        let mut events = Vec::new();
        for s in &self.servers {
            if s.spec.name.parse::<SocketAddr>().is_ok() {
                continue;
            }
            // Resolved without the lock: a slow resolver must never hold up a worker opening a connection.
            let answer = resolve(&s.spec.name);
            let mut addr = s.addr.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Ok(list) => match list.first() {
                    Some(&new) if new != *addr && !list.contains(&addr) => {
                        *addr = new;
                        s.addr_gen.fetch_add(1, Relaxed);
                        events.push((s.spec.name.clone(), Ok(new)));
                    }
                    Some(_) => {}
                    None => events.push((s.spec.name.clone(), Err("no address".into()))),
                },
                Err(e) => events.push((s.spec.name.clone(), Err(e))),
            }
        }
        events
    }

    /// The generation of `server`'s address (see `--dns-refresh`): a connection made under another one goes
    /// to an address the name no longer has.
    #[inline]
    pub fn addr_gen(&self, server: usize) -> u32 {
        self.servers[server].addr_gen.load(Relaxed)
    }

    /// Whether active checks have taken `server` out.
    pub fn is_down(&self, server: usize) -> bool {
        self.servers[server].down.load(Relaxed)
    }

    /// The servers of `pool` (global indexes).
    pub fn servers_of(&self, pool: usize) -> core::ops::Range<usize> {
        self.meta[pool].range.clone()
    }

    /// Whether `server` is ejected at `now_ms`.
    pub fn is_ejected(&self, server: usize, now_ms: u64) -> bool {
        self.ejected(server, now_ms)
    }

    /// A request was sent (or is being sent) to `server` by `worker`.
    #[inline]
    pub fn attached(&self, server: usize, worker: usize) {
        let c = &self.servers[server].slots[worker].outstanding;
        c.store(c.load(Relaxed) + 1, Relaxed);
    }

    /// `worker`'s request to `server` ended as `outcome`: counted, and its health updated (a failure or a
    /// 502/503/504 answer counts towards an ejection; any other answer clears the failures).
    #[inline]
    pub fn released(&self, server: usize, worker: usize, outcome: Option<Outcome>, now_ms: u64) {
        let s = &self.servers[server];
        let slot = &s.slots[worker];
        slot.outstanding
            .store(slot.outstanding.load(Relaxed).wrapping_sub(1), Relaxed);
        let Some(outcome) = outcome else {
            return;
        };
        let class = match outcome {
            Outcome::Status(st) if (100..600).contains(&st) => (st / 100 - 1) as usize,
            _ => 5,
        };
        slot.requests[class].store(slot.requests[class].load(Relaxed) + 1, Relaxed);
        if !matches!(outcome, Outcome::Failed | Outcome::Status(502..=504)) {
            // The common case: nothing to clear unless the server had failed before.
            if s.failures.load(Relaxed) != 0 {
                s.failures.store(0, Relaxed);
            }
            if s.ejections.load(Relaxed) != 0 && !self.ejected(server, now_ms) {
                s.ejections.store(0, Relaxed);
            }
            return;
        }
        self.failed(server, now_ms);
    }

    /// `worker`'s request to `server` took `us` microseconds (from attach to release).
    #[inline]
    pub fn took(&self, server: usize, worker: usize, us: u64) {
        let l = &self.latency[self.servers[server].pool][worker];
        let b = crate::metrics::DURATION_BUCKETS_US
            .iter()
            .position(|&ub| us <= ub)
            .unwrap_or(crate::metrics::DURATION_BUCKETS_US.len());
        l.buckets[b].store(l.buckets[b].load(Relaxed) + 1, Relaxed);
        l.sum_us.store(l.sum_us.load(Relaxed) + us, Relaxed);
    }

    /// Each pool's name, its duration buckets (not cumulative) and its sum in microseconds, summed over the
    /// workers.
    pub fn latency(&self) -> Vec<(String, Vec<u64>, u64)> {
        self.specs
            .iter()
            .zip(&self.latency)
            .map(|(spec, per)| {
                let mut b = vec![0u64; crate::metrics::DURATION_BUCKETS_US.len() + 1];
                let mut sum = 0;
                for l in per.iter() {
                    for (x, c) in b.iter_mut().zip(l.buckets.iter()) {
                        *x += c.load(Relaxed);
                    }
                    sum += l.sum_us.load(Relaxed);
                }
                (spec.name.clone(), b, sum)
            })
            .collect()
    }

    /// A failure of `server`: counted, and it is ejected at `--eject-after` in a row.
    #[cold]
    fn failed(&self, server: usize, now_ms: u64) {
        let s = &self.servers[server];
        let n = s.failures.fetch_add(1, Relaxed) + 1;
        if n >= self.health.eject_after && !self.ejected(server, now_ms) {
            self.eject(server, now_ms);
        }
    }

    /// Ejects `server` unless that would eject more than `--eject-max-percent` of its pool.
    fn eject(&self, server: usize, now_ms: u64) {
        let s = &self.servers[server];
        let range = self.meta[s.pool].range.clone();
        let ejected = range.clone().filter(|&x| self.ejected(x, now_ms)).count();
        let max = range.len() * self.health.eject_max_percent as usize / 100;
        if ejected + 1 > max {
            return;
        }
        let k = s.ejections.fetch_add(1, Relaxed).min(16);
        let ms = (self.health.eject_time.as_millis() as u64)
            .saturating_mul(1 << k)
            .min(EJECT_MAX.as_millis() as u64);
        let until = now_ms + ms.max(1);
        s.ejected_until.store(until, Relaxed);
        self.meta[s.pool].ejected_until.fetch_max(until, Relaxed);
        s.failures.store(0, Relaxed);
        // Active checks need `--health-rise` new passes to end it early.
        s.checks_passed.store(0, Relaxed);
        s.ejections_total.fetch_add(1, Relaxed);
    }

    /// For the metrics: each server's (pool, name, healthy now, ejections, outstanding, requests by class).
    pub fn stats(&self, now_ms: u64) -> Vec<ServerStats> {
        (0..self.servers.len())
            .map(|i| {
                let s = &self.servers[i];
                let mut requests = [0u64; 6];
                for slot in s.slots.iter() {
                    for (c, r) in requests.iter_mut().zip(&slot.requests) {
                        *c += r.load(Relaxed);
                    }
                }
                ServerStats {
                    pool: self.specs[s.pool].name.clone(),
                    server: s.spec.name.clone(),
                    healthy: !self.ejected(i, now_ms),
                    ejections: s.ejections_total.load(Relaxed),
                    outstanding: self.outstanding(i),
                    requests,
                }
            })
            .collect()
    }
}

/// One server's figures for the metrics.
#[derive(Debug, Clone)]
pub struct ServerStats {
    pub pool: String,
    pub server: String,
    pub healthy: bool,
    pub ejections: u64,
    pub outstanding: u64,
    /// By class: 1xx, 2xx, 3xx, 4xx, 5xx, then failures without a status.
    pub requests: [u64; 6],
}

#[cfg(test)]
mod tests;
