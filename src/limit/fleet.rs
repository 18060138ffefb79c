//! The fleet-wide limit's pure half: user ids every node computes alike, the Redis key of a user, the Lua
//! merge script and its model, and the per-sync batch. The I/O (the sync thread) is `crate::redis_sync`.
//!
//! Each node decides from its own table. Every interval its sync thread sends, per user active on the node
//! since the last sync, how many requests the node admitted; the script charges them to the user's fleet-wide
//! schedule (TAT) in Redis, on Redis's clock, and answers how far that schedule is ahead of Redis's now. The
//! node moves its own schedule for the user to at least `its now + ahead` (the later schedule wins). Only
//! durations cross between clocks, so the nodes' clocks need not agree. The bound on what this admits over the
//! exact limit is derived in docs/rate-limit.md.

use std::collections::HashMap;
use std::hash::Hasher;

use siphasher::sip::SipHasher13;

/// The SipHash key of user ids under a configured secret (`--secret-file`): every node sharing the secret
/// derives the same ids, and nobody without it can compute one (or search offline for keys that collide).
pub fn id_key(secret: &[u8]) -> (u64, u64) {
    use sha2::{Digest, Sha256};
    let d: [u8; 32] = Sha256::new()
        .chain_update(b"portcullis user id v3\0")
        .chain_update(secret)
        .finalize()
        .into();
    (
        u64::from_le_bytes(d[..8].try_into().unwrap()),
        u64::from_le_bytes(d[8..16].try_into().unwrap()),
    )
}

/// The fleet-wide id of a user under `key` (from [`id_key`]): `tag` separates kinds of keys (field value,
/// IPv4, IPv6 /64).
pub fn user_id(key: (u64, u64), tag: u8, bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    h.write_u8(tag);
    h.write(bytes);
    h.finish()
}

/// Users are spread over 16 hash-tag groups: a script call touches the keys of one group only, so that on a
/// Redis Cluster each call stays within one hash slot while the users still spread over up to 16 shards. More
/// groups would mean more, smaller calls per sync, and a call's fixed cost (about 10 us in Redis) dominates
/// once it carries only a few keys.
pub fn group(id: u64) -> u8 {
    (id >> 60) as u8
}

/// `portcullis:v3:{g}:iiiiiiiiiiiiiiii`: the version of the stored state, the group (the hash tag) and the id,
/// in hex. The version changes whenever [`SCRIPT`] changes what a key holds or how it expires: nodes of two
/// versions then keep apart (each still bounded by its own table during a rolling upgrade) instead of
/// breaking each other's invariants. v1, the first script, expired a key at its TAT; v2 ids were SipHash under
/// a key written in the source (anyone could compute them); v3 ids are keyed by the fleet's secret.
pub fn redis_key(id: u64) -> [u8; KEY_LEN] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = *b"portcullis:v3:{0}:0000000000000000";
    k[15] = HEX[group(id) as usize];
    for i in 0..16 {
        k[18 + i] = HEX[((id >> (60 - 4 * i)) & 15) as usize];
    }
    k
}

/// The length of a [`redis_key`].
pub const KEY_LEN: usize = 34;

/// The merge, run atomically by Redis. `KEYS[i]`: a user; `ARGV[i]`: what this node admitted for it since
/// its last sync, as a duration (requests x the user's emission interval, microseconds). The charge is added
/// to `max(TAT, now)`, as that many GCRA admissions at Redis's `now` would be. Returns Redis's `now`
/// (microseconds) then, per key, how far its TAT is ahead of `now`.
///
/// A key expires at the end of the second (Redis's clock) in which its TAT falls: so at most 1 s after its
/// schedule has passed, and a missing key is a user whose schedule has passed. The invariant: a key whose TAT
/// lies in second `s` expires at the end of `s`. An existing key is moved by `INCRBY` (an integer updated in
/// place; the deadline kept), and given a new deadline (`PEXPIREAT`) only when its TAT moves into a later
/// second; a new key is written by `SET .. PXAT`. So is a value this script did not write: one outside
/// 0..9e15 (`nan`, `inf`, `1e300`: read as no schedule), or one `INCRBY` refuses (`0x..`). Redis's time per
/// sync of 10 000 users (`docs/performance.md`): 23.2 ms with a `SET .. PX` per key, 15.7 ms with `INCRBY`
/// within the second and `SET .. PXAT` across (a replay of the same calls, medians); this form (`PEXPIREAT`
/// across) is about 1 ms faster again in the whole-sync bench. One MGET for the reads, and globals copied to
/// locals: a call per key costs more in Redis than the arithmetic.
pub const SCRIPT: &str = r#"
local call, pcall, fmt, num, floor = redis.call, redis.pcall, string.format, tonumber, math.floor
local t = call('TIME')
local now = num(t[1]) * 1000000 + num(t[2])
local old = call('MGET', unpack(KEYS))
local out = {now}
for i = 1, #KEYS do
  local was = num(old[i])
  if was and not (was >= 0 and was < 9e15) then was = nil end
  local tat = was or 0
  if tat < now then tat = now end
  tat = tat + num(ARGV[i])
  local second = floor(tat / 1000000)
  if not (was and type(pcall('INCRBY', KEYS[i], fmt('%d', tat - was))) == 'number') then
    call('SET', KEYS[i], fmt('%d', tat), 'PXAT', fmt('%d', (second + 1) * 1000))
  elseif floor(was / 1000000) ~= second then
    call('PEXPIREAT', KEYS[i], fmt('%d', (second + 1) * 1000))
  end
  out[i + 1] = tat - now
end
return out
"#;

/// When [`SCRIPT`] lets the key of a user whose fleet TAT is `tat` (microseconds) expire: the end of that
/// second, in milliseconds (as `PXAT` takes it).
pub fn expires_at_ms(tat: u64) -> u64 {
    (tat / 1_000_000 + 1) * 1000
}

/// What [`SCRIPT`] stores for a user whose fleet TAT was `stored` when `n` requests admitted at intervals
/// of `interval` are merged at `now` (the model the script is tested against).
pub fn merge(stored: u64, now: u64, n: u64, interval: u64) -> u64 {
    stored.max(now) + n * interval
}

/// The users active on this node since the last sync, with what they were charged (admitted requests x
/// their interval, microseconds). Reused from sync to sync.
pub struct Batch {
    counts: HashMap<u64, u64, ahash::RandomState>,
    /// Most distinct users one sync carries; ids past it are dropped (and counted) until the next sync.
    pub max_users: usize,
    pub dropped: u64,
    sorted: Vec<(u64, u64)>,
}

impl Batch {
    pub fn new(max_users: usize) -> Batch {
        Batch {
            // Fixed keys: the map's keys are user ids, already keyed hashes no client can choose, so a random
            // seed would buy nothing (and `limit` draws no randomness: see `super::Seed`).
            counts: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            max_users,
            dropped: 0,
            sorted: Vec::new(),
        }
    }

    /// Adds an admission of `id` costing `charge`; past `max_users` users a new user's admission is dropped
    /// (and its charge counted in `dropped`, in requests: one).
    pub fn add(&mut self, id: u64, charge: u64) {
        let full = self.counts.len() >= self.max_users;
        match self.counts.get_mut(&id) {
            Some(c) => *c = c.saturating_add(charge),
            None if full => self.dropped += 1,
            None => {
                self.counts.insert(id, charge);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Takes the batch: `(id, charge)` sorted by group, so that each group is one contiguous run.
    pub fn take(&mut self) -> &[(u64, u64)] {
        self.sorted.clear();
        // After a large batch (an outage's backlog) keep a few times what this one needs (at least 64 Ki
        // users), not the high-water mark; a steady size never reallocates.
        let keep = self.counts.len().max(1 << 16);
        shrink_past_twice(&mut self.sorted, keep);
        self.sorted.extend(self.counts.drain());
        self.sorted.sort_unstable_by_key(|&(id, _)| (group(id), id));
        if self.counts.capacity() > 4 * keep {
            self.counts.shrink_to(keep);
        }
        &self.sorted
    }
}

/// Gives back a buffer's memory past twice `keep` (what the current sync needs, or a floor): after a large
/// batch (an outage's backlog) the high-water mark is not kept, and a steady size never reallocates.
pub fn shrink_past_twice<T>(v: &mut Vec<T>, keep: usize) {
    if v.capacity() > 2 * keep {
        v.shrink_to(keep);
    }
}

/// Runs of `users` (sorted by [`Batch::take`]) that share a group, at most `max` long.
pub fn calls(users: &[(u64, u64)], max: usize) -> impl Iterator<Item = &[(u64, u64)]> {
    users
        .chunk_by(|a, b| group(a.0) == group(b.0))
        .flat_map(move |run| run.chunks(max.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_keys_carry_the_group() {
        // The same on every node and build: a change here splits a fleet's users in two during an upgrade.
        let k = id_key(b"0123456789abcdef0123456789abcdef");
        assert_eq!(user_id(k, 1, b"Bearer alice"), user_id(k, 1, b"Bearer alice"));
        assert_ne!(user_id(k, 1, b"Bearer alice"), user_id(k, 2, b"Bearer alice"));
        assert_ne!(
            user_id(k, 1, b"Bearer alice"),
            user_id(id_key(b"another secret of 32 bytes......"), 1, b"Bearer alice")
        );
        let k = redis_key(0xab01_2345_6789_cdef);
        assert_eq!(&k[..], b"portcullis:v3:{a}:ab0123456789cdef");
    }

    #[test]
    fn merge_is_n_gcra_admissions_at_now() {
        let g = super::super::Gcra::new(10, 1000);
        for (stored, now, n) in [
            (0u64, 5_000_000u64, 3u64),
            (7_000_000, 5_000_000, 4),
            (4_000_000, 5_000_000, 1),
        ] {
            let mut tat = stored;
            for _ in 0..n {
                match g.decide(tat, now) {
                    super::super::Decision::Allow { tat: t, .. } => tat = t,
                    d => panic!("{d:?}"),
                }
            }
            assert_eq!(merge(stored, now, n, g.interval), tat);
        }
    }

    #[test]
    fn batch_counts_caps_and_groups() {
        let mut b = Batch::new(3);
        for id in [1u64 << 60 | 1, 2 << 60 | 5, 1 << 60 | 1, 1 << 60 | 2, 9 << 60] {
            b.add(id, 1);
        }
        assert_eq!((b.len(), b.dropped), (3, 1));
        let users = b.take().to_vec();
        assert_eq!(users, [(1 << 60 | 1, 2), (1 << 60 | 2, 1), (2 << 60 | 5, 1)]);
        let runs: Vec<_> = calls(&users, 1000).map(|r| r.len()).collect();
        assert_eq!(runs, [2, 1]);
        let runs: Vec<_> = calls(&users, 1).map(|r| r.len()).collect();
        assert_eq!(runs, [1, 1, 1]);
        assert!(b.is_empty());
    }

    #[test]
    fn an_outage_backlog_does_not_keep_its_memory() {
        let mut b = Batch::new(1 << 20);
        for id in 0..300_000u64 {
            b.add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
        assert_eq!(b.take().len(), 300_000);
        for id in 0..10u64 {
            b.add(id, 1);
        }
        assert_eq!(b.take().len(), 10);
        assert!(b.sorted.capacity() <= 2 << 16, "{}", b.sorted.capacity());
        assert!(b.counts.capacity() <= 4 << 16, "{}", b.counts.capacity());
        // A steady large batch keeps its memory from sync to sync.
        let mut b = Batch::new(1 << 20);
        let mut caps = Vec::new();
        for _ in 0..3 {
            for id in 0..250_000u64 {
                b.add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
            }
            b.take();
            caps.push((b.sorted.capacity(), b.counts.capacity()));
        }
        assert_eq!(caps[1], caps[2], "{caps:?}");
        assert!(caps[2].0 >= 250_000 && caps[2].1 >= 250_000, "{caps:?}");
    }
}
