//! The per-user rate limit: who the user is (a key from the head or the client address), and a GCRA
//! decision in the process-wide atomic table.
//!
//! Contract: per request, right after the head is parsed and before every other rule, the worker calls
//! `Limiter::user_key` (who), then `Limiter::decide_ip` (the per-address backstop, for a user of no tier) and
//! `Limiter::decide_with` (under the user's tier), and `Limiter::record` for an admitted request (a no-op unless
//! the limit is fleet-wide). None of them blocks or makes a syscall; none allocates, except that `user_key` may
//! grow the caller's reused scratch. Time is passed in (the worker's per-iteration clock), and so is the hash
//! seed ([`Seed`]). The fleet sync reconciles the table in the background (`Limiter::raise`).

pub mod fleet;
pub mod gcra;
pub mod journal;
pub mod key;
pub mod table;
pub mod tiers;

use core::net::IpAddr;
use std::time::Instant;

use crate::http::request::RequestHead;
use crate::http::{eq_ci, list_items};
pub use gcra::{retry_after_secs, Decision, Gcra};
pub use journal::Journal;
pub use table::Table;

/// Why the limit refuses a request: over a rate, or no way to tell whose it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Over the user's rate.
    RateLimited,
    /// Over the per-address rate.
    IpRateLimited,
    /// The field that identifies the user appears more than once.
    AmbiguousUserKey,
    /// An Authorization value that is not a credential.
    MalformedAuthorization,
    /// A trusted X-Forwarded-For hop that is not an address.
    InvalidForwardedFor,
}

/// Who the user is.
///
/// ```
/// use portcullis::limit::KeyMode;
/// assert_eq!(KeyMode::parse("header:X-Api-Key").unwrap(), KeyMode::Header("x-api-key".into()));
/// assert_eq!(KeyMode::Authorization.field(), Some(&b"authorization"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    /// The canonical Authorization credential; the client address without one.
    Authorization,
    /// The value of this field (lower-case name); the client address without one.
    Header(String),
    /// The client address (IPv6 by /64).
    Ip,
}

impl KeyMode {
    /// `authorization`, `ip`, or `header:NAME`.
    pub fn parse(s: &str) -> Result<KeyMode, String> {
        match s {
            "authorization" => Ok(KeyMode::Authorization),
            "ip" => Ok(KeyMode::Ip),
            _ => match s.strip_prefix("header:") {
                // Fields named with `_` are never forwarded (docs/security.md): the upstream would not get it.
                Some(n) if n.contains('_') => Err(format!(
                    "{s:?}: field names with '_' are dropped before the upstream; use {:?}",
                    s.replace('_', "-")
                )),
                Some(n) if !n.is_empty() && n.bytes().all(crate::http::is_tchar) => {
                    Ok(KeyMode::Header(n.to_ascii_lowercase()))
                }
                _ => Err(format!("{s:?}: use authorization, ip, or header:NAME")),
            },
        }
    }

    /// The request field the user is keyed on (lower case), if any.
    pub fn field(&self) -> Option<&[u8]> {
        match self {
            KeyMode::Authorization => Some(b"authorization"),
            KeyMode::Header(name) => Some(name.as_bytes()),
            KeyMode::Ip => None,
        }
    }
}

/// An address block, `ADDR/PREFIX` (or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: not ADDR or ADDR/PREFIX"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0 to {max}"))?,
            None => max,
        };
        // Clients' IPv4-mapped addresses are compared as IPv4: so are such blocks.
        if let IpAddr::V6(a) = net {
            if let (Some(v4), true) = (a.to_ipv4_mapped(), prefix >= 96) {
                return Ok(Cidr {
                    net: IpAddr::V4(v4),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| match a {
            IpAddr::V4(a) => (u32::from(a) as u128) << 96,
            IpAddr::V6(a) => u128::from(a),
        };
        if ip.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix as u32)
        };
        bits(ip) & mask == bits(self.net) & mask
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The per-address backstop: a limit on every request from one client address, whatever credential it
/// carries (so invented credentials cannot buy more than this).
#[derive(Debug, Clone)]
pub struct IpBackstop {
    /// Requests per second and back to back, as configured (`--ip-rate`, `--ip-burst`).
    pub rate: u32,
    pub burst: u32,
    pub gcra: Gcra,
    /// Addresses it does not apply to (known NAT gateways).
    pub exempt: Vec<Cidr>,
}

/// The random keys of a limiter's hashes: where an id lives in the table, and (without a secret) the ids
/// themselves. The caller draws it once per process (the server, from the OS's randomness), so that no one can
/// compute offline which keys share a slot; tests and benchmarks pass a fixed one. `limit` draws no randomness
/// of its own.
///
/// ```
/// use std::collections::hash_map::RandomState;
/// use std::hash::BuildHasher;
/// use portcullis::limit::Seed;
///
/// let random = RandomState::new();
/// let seed = Seed(std::array::from_fn(|i| random.hash_one(i)));
/// # let _ = seed;
/// ```
#[derive(Clone, Copy)]
pub struct Seed(pub [u64; 8]);

/// How user ids are keyed.
enum Ids {
    /// SipHash-1-3 under a key derived from the configured secret: the same on every node and across
    /// restarts, unpredictable without the secret.
    Secret(u64, u64),
    /// ahash under this process's random seed.
    Process(ahash::RandomState),
}

/// A user, as the limiter knows it.
#[derive(Debug, Clone, Copy)]
pub struct UserKey<'s> {
    /// The user's id (keyed: see [`Limiter::with_secret`]); also what the access log shows.
    pub id: u64,
    /// The canonical value the id was derived from (`None` when keyed on the address).
    pub value: Option<&'s [u8]>,
    /// The client's address (the peer, or the trusted X-Forwarded-For hop).
    pub ip: IpAddr,
}

/// The rate limiter: who the user is ([`KeyMode`]) and a GCRA decision in a fixed-size table of atomics
/// (shared by threads without a lock; memory fixed at construction).
///
/// ```
/// use std::time::Instant;
/// use portcullis::limit::{Decision, Gcra, KeyMode, Limiter, Seed};
///
/// let now = Instant::now();
/// let limiter = Limiter::new(Gcra::new(10, 1), 1 << 10, KeyMode::Ip, 0, now, Seed([1; 8]));
/// let id = limiter.key_id(b"some key");
/// assert!(matches!(limiter.decide(id, now), Decision::Allow { .. }));
/// assert_eq!(limiter.decide(id, now), Decision::Deny { retry_after_us: 100_000 });
/// assert_eq!(limiter.table().bytes(), 8 << 10);
/// ```
pub struct Limiter {
    pub gcra: Gcra,
    table: Table,
    ids: Ids,
    /// The table's slot hash of an id: this process's random seed, so that no one can compute offline which
    /// keys share a bucket (not even with the fleet secret).
    slots: ahash::RandomState,
    /// Fleet-wide: one journal per worker of what it admitted since the last sync; empty otherwise.
    journals: Box<[Journal]>,
    mode: KeyMode,
    /// Take the client address from the N-th last X-Forwarded-For hop (0: the socket's peer).
    trust_forwarded_for: usize,
    ip: Option<IpBackstop>,
    epoch: Instant,
}

impl Limiter {
    /// `epoch`: the instant table times count from (the process start). `seed`: this process's random keys
    /// (half for the ids, half for the slots).
    pub fn new(
        gcra: Gcra,
        slots: usize,
        mode: KeyMode,
        trust_forwarded_for: usize,
        epoch: Instant,
        seed: Seed,
    ) -> Limiter {
        let [a, b, c, d, e, f, g, h] = seed.0;
        Limiter {
            gcra,
            table: Table::new(slots),
            ids: Ids::Process(ahash::RandomState::with_seeds(a, b, c, d)),
            slots: ahash::RandomState::with_seeds(e, f, g, h),
            journals: Box::new([]),
            mode,
            trust_forwarded_for,
            ip: None,
            epoch,
        }
    }

    /// Keys user ids with `secret` (`--secret-file`): ids are then the same on every node and across restarts,
    /// and cannot be computed without the secret.
    pub fn with_secret(mut self, secret: &[u8]) -> Limiter {
        let (k0, k1) = fleet::id_key(secret);
        self.ids = Ids::Secret(k0, k1);
        self
    }

    /// Adds the per-address backstop (never with `KeyMode::Ip`: the user limit already is per address).
    pub fn with_ip_backstop(mut self, backstop: Option<IpBackstop>) -> Limiter {
        self.ip = backstop.filter(|_| self.mode != KeyMode::Ip);
        self
    }

    /// The request fields the limiter reads: the key field (if any), and whether X-Forwarded-For is trusted.
    pub fn checked_fields(&self) -> (Option<&[u8]>, bool) {
        (self.mode.field(), self.trust_forwarded_for > 0)
    }

    /// The per-address backstop, if on.
    pub fn ip_backstop(&self) -> Option<&IpBackstop> {
        self.ip.as_ref()
    }

    /// Makes the limit fleet-wide: a journal of `capacity` ids per worker for the sync thread. Ids must be
    /// keyed by the shared secret ([`Limiter::with_secret`]) for the nodes to agree.
    pub fn fleet(mut self, workers: usize, capacity: usize) -> Limiter {
        self.journals = (0..workers.max(1)).map(|_| Journal::new(capacity)).collect();
        self
    }

    /// The per-worker journals (empty when the limit is node-local).
    pub fn journals(&self) -> &[Journal] {
        &self.journals
    }

    /// Records, for the fleet sync, that `worker` admitted a request of user `id` under `gcra` (the user's
    /// tier). No-op when node-local.
    #[inline]
    pub fn record(&self, worker: usize, id: u64, gcra: &Gcra) {
        if let Some(j) = self.journals.get(worker) {
            j.push(id, gcra.interval);
        }
    }

    /// The id of a user whose key is `value` (a field value as a client would send it, or in `ip` mode an
    /// address), for listing users in tiers.
    pub fn value_hash(&self, value: &str) -> Result<u64, String> {
        match self.mode {
            KeyMode::Ip => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an IP address (--user-key ip)"))?;
                Ok(self.ip_id(ip))
            }
            KeyMode::Authorization => Ok(self.id(1, &self.canonical_value(value)?)),
            KeyMode::Header(_) => Ok(self.id(1, value.as_bytes())),
        }
    }

    /// The canonical form a tier's `sha256:` digest is taken over (the value as sent, in `header:` mode).
    pub fn canonical_value(&self, value: &str) -> Result<Vec<u8>, String> {
        let mut canonical = Vec::new();
        match self.mode {
            KeyMode::Authorization => match key::canonical_authorization(value.as_bytes(), &mut canonical) {
                Ok(true) => {}
                _ => return Err(format!("{value:?} is not a valid Authorization credential")),
            },
            _ => canonical.extend_from_slice(value.as_bytes()),
        }
        Ok(canonical)
    }

    /// The id of the user whose canonical key is `key` (for [`Limiter::decide`]): the same id a request
    /// naming that user gets, keyed by the limiter's seed (or secret), so that no one can choose keys that
    /// share a slot.
    ///
    /// ```
    /// use std::time::Instant;
    /// use portcullis::limit::{Gcra, KeyMode, Limiter, Seed};
    ///
    /// let limiter = Limiter::new(Gcra::new(10, 10), 1024, KeyMode::Authorization, 0, Instant::now(), Seed([7; 8]));
    /// assert_eq!(limiter.key_id(b"Bearer abc"), limiter.key_id(b"Bearer abc"));
    /// assert_ne!(limiter.key_id(b"Bearer abc"), limiter.key_id(b"Bearer abd"));
    /// ```
    pub fn key_id(&self, key: &[u8]) -> u64 {
        self.id(1, key)
    }

    fn id(&self, tag: u8, bytes: &[u8]) -> u64 {
        match &self.ids {
            Ids::Process(s) => s.hash_one((tag, bytes)),
            Ids::Secret(k0, k1) => fleet::user_id((*k0, *k1), tag, bytes),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Microseconds since the epoch.
    pub fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Where user `id` lives in the table.
    #[inline]
    fn slot(&self, id: u64) -> u64 {
        self.slots.hash_one(id)
    }

    /// Decides one request of user `id` at `now`, with the limit given at construction. The caller passes
    /// the time (nothing here reads a clock); the table is the fixed one allocated by [`Limiter::new`], so
    /// memory stays the same whatever the number of users. A refused request changes nothing.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use portcullis::limit::{Decision, Gcra, KeyMode, Limiter, Seed};
    ///
    /// let start = Instant::now();
    /// // 1 request per second, bursts of 2.
    /// let limiter = Limiter::new(Gcra::new(1, 2), 1024, KeyMode::Authorization, 0, start, Seed([7; 8]));
    /// let alice = limiter.key_id(b"Bearer alice");
    /// assert!(matches!(limiter.decide(alice, start), Decision::Allow { remaining: 1, .. }));
    /// assert!(matches!(limiter.decide(alice, start), Decision::Allow { remaining: 0, .. }));
    /// assert_eq!(limiter.decide(alice, start), Decision::Deny { retry_after_us: 1_000_000 });
    /// // A second later, one more.
    /// let later = start + Duration::from_secs(1);
    /// assert!(matches!(limiter.decide(alice, later), Decision::Allow { .. }));
    /// ```
    pub fn decide(&self, id: u64, now: Instant) -> Decision {
        self.table.decide(&self.gcra, self.slot(id), self.micros(now))
    }

    /// Decides one request under `gcra` (the user's tier).
    #[inline]
    pub fn decide_with(&self, gcra: &Gcra, id: u64, now: Instant) -> Decision {
        self.table.decide(gcra, self.slot(id), self.micros(now))
    }

    /// Moves user `id`'s schedule to `tat_us` if later (the fleet merge; see [`Table::raise`]).
    pub fn raise(&self, id: u64, tat_us: u64, now_us: u64) -> bool {
        self.table.raise(self.slot(id), tat_us, now_us)
    }

    /// Decides one request from address `ip` under the per-address backstop; `None` when the backstop is
    /// off or `ip` is exempt. Node-local: never journaled.
    #[inline]
    pub fn decide_ip(&self, ip: IpAddr, now: Instant) -> Option<Decision> {
        let b = self.ip.as_ref()?;
        if !b.exempt.is_empty() && b.exempt.iter().any(|c| c.contains(ip)) {
            return None;
        }
        let slot = match canonical_ip(ip) {
            IpAddr::V4(a) => self.slots.hash_one((4u8, a.octets())),
            IpAddr::V6(a) => self
                .slots
                .hash_one((5u8, u64::from_be_bytes(a.octets()[..8].try_into().unwrap()))),
        };
        Some(self.table.decide(&b.gcra, slot, self.micros(now)))
    }

    /// The user of this request: its id, the canonical value it came from, and the client's address.
    /// Refusals: the key field appears more than once ([`Refusal::AmbiguousUserKey`]: which copy would be the
    /// user? A throw-away first copy must not choose the key while the upstream reads another), an
    /// Authorization value that is not a credential ([`Refusal::MalformedAuthorization`]), a trusted
    /// X-Forwarded-For hop that is not an address ([`Refusal::InvalidForwardedFor`]). `scratch` holds the
    /// canonical value. One pass over the fields.
    pub fn user_key<'s>(
        &self,
        head: &RequestHead<'_, '_>,
        peer: IpAddr,
        scratch: &'s mut Vec<u8>,
    ) -> Result<UserKey<'s>, Refusal> {
        let ip = client_ip(head, peer, self.trust_forwarded_for)?;
        if let Some(name) = self.mode.field() {
            let mut copies = head
                .headers
                .iter()
                .filter(|h| eq_ci(h.name.as_bytes(), name))
                .map(|h| h.value);
            let first = copies.next();
            if copies.next().is_some() {
                return Err(Refusal::AmbiguousUserKey);
            }
            if let Some(v) = first.filter(|v| !v.is_empty()) {
                let named = match self.mode {
                    KeyMode::Authorization => key::canonical_authorization(v, scratch)?,
                    _ => {
                        scratch.clear();
                        scratch.extend_from_slice(v);
                        true
                    }
                };
                if named {
                    let id = self.id(1, scratch);
                    return Ok(UserKey {
                        id,
                        value: Some(&scratch[..]),
                        ip,
                    });
                }
            }
        }
        Ok(self.address_key(ip))
    }

    /// The user keyed on the client address `ip` (a request that names no user, or, in `observe`, one whose key
    /// [`Limiter::user_key`] refused).
    pub fn address_key(&self, ip: IpAddr) -> UserKey<'static> {
        UserKey {
            id: self.ip_id(ip),
            value: None,
            ip,
        }
    }

    fn ip_id(&self, ip: IpAddr) -> u64 {
        match canonical_ip(ip) {
            IpAddr::V4(a) => self.id(2, &a.octets()),
            // One user per /64: a host gets a whole /64 from its provider.
            IpAddr::V6(a) => self.id(3, &a.octets()[..8]),
        }
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the socket peer, or with `trust = N > 0` the N-th last X-Forwarded-For hop (the
/// hop added by the N-th proxy in front of us). With fewer hops than N, the peer (the request did not come
/// through that many proxies). A hop that is not an address (`IP`, `IP:port`, `[v6]`, `[v6]:port`) is
/// [`Refusal::InvalidForwardedFor`]: it is never collapsed onto the proxy's own address.
pub fn client_ip(head: &RequestHead<'_, '_>, peer: IpAddr, trust: usize) -> Result<IpAddr, Refusal> {
    if trust == 0 {
        return Ok(peer);
    }
    let xff = || {
        head.headers
            .iter()
            .filter(|h| eq_ci(h.name.as_bytes(), b"x-forwarded-for"))
            .flat_map(|h| list_items(h.value))
    };
    let total = xff().count();
    if total < trust {
        return Ok(peer);
    }
    xff()
        .nth(total - trust)
        .and_then(key::parse_hop)
        .ok_or(Refusal::InvalidForwardedFor)
}

#[cfg(test)]
mod tests;
