//! WebSocket tunnels (`--upgrade websocket`): their settings, the process-wide count of open tunnels (in all,
//! and per user), and what one tunnel remembers while bytes flow both ways.
//!
//! The transitions into and out of a tunnel are the connection machine's (`machine.rs`); this module holds
//! the parts that are not transitions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::problem::Reason;

/// The tunnels' settings (fixed for the process's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelSettings {
    /// `--tunnel-idle-timeout`: no byte either way for this long closes both sides.
    pub idle: Duration,
    /// `--tunnel-half-close-timeout`: after one side's end, the other has this long to finish.
    pub half_close: Duration,
    /// `--max-tunnels`: open at once in the process.
    pub max: usize,
    /// `--max-tunnels-per-user`: open at once for one user.
    pub per_user: u32,
}

/// The open tunnels of the process (shared by the workers; touched only when a tunnel opens or closes).
pub struct Tunnels {
    open: AtomicUsize,
    /// Open tunnels per user key. Holds at most `max` users, so its capacity, reserved at start, is never
    /// outgrown: opening a tunnel allocates nothing.
    users: Mutex<HashMap<u64, u32, BuildHasherDefault<KeyHasher>>>,
}

impl Tunnels {
    pub fn new(max: usize) -> Tunnels {
        Tunnels {
            open: AtomicUsize::new(0),
            users: Mutex::new(HashMap::with_capacity_and_hasher(max.min(1 << 20), Default::default())),
        }
    }

    /// Whether `user` could open one more tunnel now (the head's early check; [`Tunnels::open`] decides).
    pub fn admits(&self, user: u64, s: &TunnelSettings) -> Result<(), Reason> {
        if self.open.load(Ordering::Relaxed) >= s.max {
            return Err(Reason::TooManyTunnels);
        }
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.get(&user).copied().unwrap_or(0) >= s.per_user {
            return Err(Reason::TooManyUserTunnels);
        }
        Ok(())
    }

    /// Takes a tunnel for `user`, or says which limit is reached.
    pub fn open(&self, user: u64, s: &TunnelSettings) -> Result<(), Reason> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= s.max {
            return Err(Reason::TooManyTunnels);
        }
        let n = users.entry(user).or_insert(0);
        if *n >= s.per_user {
            if *n == 0 {
                users.remove(&user);
            }
            return Err(Reason::TooManyUserTunnels);
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back a tunnel of `user`.
    pub fn close(&self, user: u64) {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = users.get_mut(&user) {
            *n -= 1;
            if *n == 0 {
                users.remove(&user);
            }
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Tunnels open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The users' keys are hashes already (the limiter's keyed ids, or a mixed address): used as they are.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // One multiply-xorshift round: keys that differ in any bit spread over the table.
        let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
}

/// The tunnel key of a client known only by its address (no rate limit, so no user id).
pub fn address_key(ip: core::net::IpAddr) -> u64 {
    let bits: u128 = match ip {
        core::net::IpAddr::V4(a) => u32::from(a) as u128,
        core::net::IpAddr::V6(a) => u128::from(a),
    };
    (bits as u64) ^ ((bits >> 64) as u64).rotate_left(17) ^ 0x7475_6e6e_656c
}

/// One tunnel's state in the machine.
#[derive(Debug)]
pub struct Tunnel {
    /// The user's key in [`Tunnels`].
    pub user: u64,
    /// The client sent its FIN / the upstream sent its FIN.
    pub client_eof: bool,
    pub upstream_eof: bool,
    /// The upstream's / the client's write side was shut after the other side's FIN was relayed.
    pub upstream_shut: bool,
    pub client_shut: bool,
    /// When the first side ended (the half-close timeout runs from there).
    pub half_closed_at: Option<Instant>,
    /// Bytes of the client's input / of the output to the client already counted.
    pub up_held: usize,
    pub down_held: usize,
    /// Bytes relayed: client to upstream, upstream to client.
    pub up_bytes: u64,
    pub down_bytes: u64,
    /// The socket actions tried since the last event that could not proceed (one bit each: [`WRITE_UPSTREAM`],
    /// [`WRITE_CLIENT`], [`READ_CLIENT`], [`READ_UPSTREAM`]).
    pub blocked: u8,
    /// The last socket action asked for (its bit), to be marked blocked if the worker cannot perform it.
    pub last: u8,
    /// When a byte last moved either way (the idle timeout runs from there).
    pub active: Instant,
}

/// Bits of [`Tunnel::blocked`]: each socket action of a tunnel.
pub const WRITE_UPSTREAM: u8 = 1;
pub const WRITE_CLIENT: u8 = 2;
pub const READ_CLIENT: u8 = 4;
pub const READ_UPSTREAM: u8 = 8;

impl Tunnel {
    pub fn new(user: u64, up_held: usize, down_held: usize, now: Instant) -> Tunnel {
        Tunnel {
            user,
            client_eof: false,
            upstream_eof: false,
            upstream_shut: false,
            client_shut: false,
            half_closed_at: None,
            up_held,
            down_held,
            up_bytes: 0,
            down_bytes: 0,
            blocked: 0,
            last: 0,
            active: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(max: usize, per_user: u32) -> TunnelSettings {
        TunnelSettings {
            idle: Duration::from_secs(1),
            half_close: Duration::from_secs(1),
            max,
            per_user,
        }
    }

    #[test]
    fn limits_in_all_and_per_user() {
        let t = Tunnels::new(3);
        let s = s(3, 2);
        assert_eq!(t.open(1, &s), Ok(()));
        assert_eq!(t.open(1, &s), Ok(()));
        assert_eq!(t.admits(1, &s), Err(Reason::TooManyUserTunnels));
        assert_eq!(t.open(1, &s), Err(Reason::TooManyUserTunnels));
        assert_eq!(t.open(2, &s), Ok(()));
        assert_eq!(t.admits(3, &s), Err(Reason::TooManyTunnels));
        assert_eq!(t.open(3, &s), Err(Reason::TooManyTunnels));
        assert_eq!(t.count(), 3);
        t.close(1);
        assert_eq!(t.open(3, &s), Ok(()));
        for u in [1, 2, 3] {
            t.close(u);
        }
        assert_eq!(t.count(), 0);
        assert!(t.users.lock().unwrap().is_empty());
        // A close for a user without a tunnel changes nothing.
        t.close(9);
        assert_eq!(t.count(), 0);
        // No tunnel per user at all: every open refused, nothing kept.
        assert_eq!(t.open(5, &s_zero()), Err(Reason::TooManyUserTunnels));
        assert!(t.users.lock().unwrap().is_empty());
    }

    fn s_zero() -> TunnelSettings {
        s(10, 0)
    }

    #[test]
    fn address_keys_differ() {
        let a = address_key("192.0.2.1".parse().unwrap());
        let b = address_key("192.0.2.2".parse().unwrap());
        let c = address_key("2001:db8::1".parse().unwrap());
        assert!(a != b && b != c && a != c);
    }
}
