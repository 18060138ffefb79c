//! The per-user rate limit: who the user is (a key from the head or the client address), and a GCRA
//! decision in the process-wide atomic table.
//!
//! Contract: `Limiter::decide` is called once per request, right after the head is parsed and before every
//! other rule; it never blocks, allocates or makes a syscall. Time is passed in (the worker's per-iteration
//! clock). The interface is one call, so that a cluster mode can reconcile the table in the background.

pub mod fleet;
pub mod gcra;
pub mod journal;
pub mod table;
pub mod tiers;

use core::net::IpAddr;
use std::time::Instant;

use crate::http::request::RequestHead;
use crate::http::{eq_ci, list_items};
pub use gcra::{retry_after_secs, Decision, Gcra};
pub use journal::Journal;
pub use table::Table;

/// Who the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMode {
    /// The Authorization field value; the client address without one.
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
                Some(n) if !n.is_empty() && n.bytes().all(crate::http::is_tchar) => {
                    Ok(KeyMode::Header(n.to_ascii_lowercase()))
                }
                _ => Err(format!("{s:?}: use authorization, ip, or header:NAME")),
            },
        }
    }
}

pub struct Limiter {
    pub gcra: Gcra,
    table: Table,
    /// Node-local: ahash with this process's random seed. Fleet-wide: `None`, ids from [`fleet::user_id`].
    hasher: Option<ahash::RandomState>,
    /// Fleet-wide: one journal per worker of what it admitted since the last sync; empty otherwise.
    journals: Box<[Journal]>,
    mode: KeyMode,
    /// Take the client address from the N-th last X-Forwarded-For hop (0: the socket's peer).
    trust_forwarded_for: usize,
    epoch: Instant,
}

impl Limiter {
    /// `epoch`: the instant table times count from (the process start).
    pub fn new(gcra: Gcra, slots: usize, mode: KeyMode, trust_forwarded_for: usize, epoch: Instant) -> Limiter {
        Limiter {
            gcra,
            table: Table::new(slots),
            hasher: Some(ahash::RandomState::new()),
            journals: Box::new([]),
            mode,
            trust_forwarded_for,
            epoch,
        }
    }

    /// Makes the limit fleet-wide: user ids every node derives alike, and a journal of `capacity` ids per
    /// worker for the sync thread.
    pub fn fleet(mut self, workers: usize, capacity: usize) -> Limiter {
        self.hasher = None;
        self.journals = (0..workers.max(1)).map(|_| Journal::new(capacity)).collect();
        self
    }

    /// The per-worker journals (empty when the limit is node-local).
    pub fn journals(&self) -> &[Journal] {
        &self.journals
    }

    /// Records, for the fleet sync, that `worker` admitted a request of user `hash` under `gcra` (the user's
    /// tier). No-op when node-local.
    #[inline]
    pub fn record(&self, worker: usize, hash: u64, gcra: &Gcra) {
        if let Some(j) = self.journals.get(worker) {
            j.push(hash, gcra.interval);
        }
    }

    /// The hash [`Limiter::key_hash`] gives a user whose key is `value` (a field value, or in `ip` mode an
    /// address), for listing users in tiers.
    pub fn value_hash(&self, value: &str) -> Result<u64, String> {
        match self.mode {
            KeyMode::Ip => {
                let ip: IpAddr = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not an IP address (--user-key ip)"))?;
                Ok(self.ip_hash(ip))
            }
            _ => Ok(self.hash(1, value.as_bytes())),
        }
    }

    fn hash(&self, tag: u8, bytes: &[u8]) -> u64 {
        match &self.hasher {
            Some(s) => s.hash_one((tag, bytes)),
            None => fleet::user_id(tag, bytes),
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Microseconds since the epoch.
    pub fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Decides one request of the user whose key hashed to `hash` (see [`Limiter::key_hash`]) at `now`, with
    /// the limit given at construction.
    pub fn decide(&self, hash: u64, now: Instant) -> Decision {
        self.table.decide(&self.gcra, hash, self.micros(now))
    }

    /// Decides one request under `gcra` (the user's tier).
    #[inline]
    pub fn decide_with(&self, gcra: &Gcra, hash: u64, now: Instant) -> Decision {
        self.table.decide(gcra, hash, self.micros(now))
    }

    /// The user's key, hashed with this process's random seed (field keys and addresses are hashed apart), and
    /// the field value it came from (`None` for an address); `None` if the field the user is keyed on appears
    /// more than once (which copy would be the user? A throw-away first copy must not choose the key while the
    /// upstream reads another). One pass.
    pub fn key_hash<'h>(&self, head: &RequestHead<'h, '_>, peer: IpAddr) -> Option<(u64, Option<&'h [u8]>)> {
        let name: &[u8] = match &self.mode {
            KeyMode::Authorization => b"authorization",
            KeyMode::Header(name) => name.as_bytes(),
            KeyMode::Ip => b"",
        };
        if !name.is_empty() {
            let mut copies = head
                .headers
                .iter()
                .filter(|h| eq_ci(h.name.as_bytes(), name))
                .map(|h| h.value);
            let first = copies.next();
            if copies.next().is_some() {
                return None;
            }
            if let Some(v) = first.filter(|v| !v.is_empty()) {
                return Some((self.hash(1, v), Some(v)));
            }
        }
        Some((self.ip_hash(client_ip(head, peer, self.trust_forwarded_for)), None))
    }

    fn ip_hash(&self, ip: IpAddr) -> u64 {
        match ip {
            IpAddr::V4(a) => self.hash(2, &a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => self.hash(2, &v4.octets()),
                // One user per /64: a host gets a whole /64 from its provider.
                None => self.hash(3, &a.octets()[..8]),
            },
        }
    }
}

/// The client's address: the socket peer, or with `trust = N > 0` the N-th last X-Forwarded-For hop (the
/// hop added by the N-th proxy in front of us). With fewer hops than N, or an unparsable one, the peer.
pub fn client_ip(head: &RequestHead<'_, '_>, peer: IpAddr, trust: usize) -> IpAddr {
    if trust == 0 {
        return peer;
    }
    let xff = || {
        head.headers
            .iter()
            .filter(|h| eq_ci(h.name.as_bytes(), b"x-forwarded-for"))
            .flat_map(|h| list_items(h.value))
    };
    let total = xff().count();
    if total < trust {
        return peer;
    }
    xff()
        .nth(total - trust)
        .and_then(|hop| std::str::from_utf8(hop).ok()?.parse::<IpAddr>().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::http::request::{header_storage, parse_head};

    fn with_head<R>(fields: &str, f: impl FnOnce(&RequestHead<'_, '_>) -> R) -> R {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        let mut st = header_storage();
        let head = parse_head(raw.as_bytes(), &Limits::default(), &mut st)
            .unwrap()
            .unwrap();
        f(&head)
    }

    #[test]
    fn keys() {
        let l = |m| Limiter::new(Gcra::new(10, 10), 64, m, 0, Instant::now());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let auth = l(KeyMode::Authorization);
        let a = with_head("Authorization: Bearer x\r\n", |h| auth.key_hash(h, peer).unwrap().0);
        let b = with_head("Authorization: Bearer y\r\n", |h| auth.key_hash(h, peer).unwrap().0);
        let none = with_head("", |h| auth.key_hash(h, peer).unwrap().0);
        let none2 = with_head("", |h| auth.key_hash(h, "10.0.0.2".parse().unwrap()).unwrap().0);
        assert!(a != b && a != none && none != none2);
        let hdr = l(KeyMode::Header("x-api-key".into()));
        assert_eq!(
            with_head("X-Api-Key: k1\r\n", |h| hdr.key_hash(h, peer).unwrap().0),
            with_head("x-api-key: k1\r\nAuthorization: other\r\n", |h| hdr
                .key_hash(h, "10.9.9.9".parse().unwrap())
                .unwrap()
                .0)
        );
        let ip = l(KeyMode::Ip);
        let v6a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let k = |p| with_head("Authorization: z\r\n", |h| ip.key_hash(h, p).unwrap().0);
        assert_eq!(k(v6a), k(v6b), "one /64, one user");
        assert_ne!(k(v6a), k(v6c));
        assert_eq!(k("::ffff:10.0.0.1".parse().unwrap()), k(peer));
    }

    #[test]
    fn forwarded_for_hops() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let ip = |fields: &str, n| with_head(fields, |h| client_ip(h, peer, n)).to_string();
        let f = "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n";
        assert_eq!(ip(f, 0), "127.0.0.1");
        assert_eq!(ip(f, 1), "3.3.3.3");
        assert_eq!(ip(f, 2), "2.2.2.2");
        assert_eq!(ip(f, 3), "1.1.1.1");
        assert_eq!(ip(f, 4), "127.0.0.1");
        assert_eq!(ip("X-Forwarded-For: garbage\r\n", 1), "127.0.0.1");
    }

    #[test]
    fn key_modes_parse() {
        assert_eq!(
            KeyMode::parse("header:X-Api-Key").unwrap(),
            KeyMode::Header("x-api-key".into())
        );
        assert!(KeyMode::parse("header:").is_err());
        assert!(KeyMode::parse("cookie").is_err());
    }
}
