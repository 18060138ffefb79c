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

mod quiet;

pub use quiet::Quiet;

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

/// The default number of hash-tag groups (`--redis-groups`).
pub const DEFAULT_GROUPS: u32 = 16;
/// Most groups: a Redis Cluster has 16 384 hash slots, and more groups than slots only makes more calls.
pub const MAX_GROUPS: u32 = 16_384;

/// Users are spread over `groups` hash-tag groups (`--redis-groups`, default 16): a script call touches the
/// keys of one group only, so that on a Redis Cluster each call stays within one hash slot while the users
/// spread over up to `groups` slots (so shards). The group is taken from the id's top bits (a multiply-shift,
/// so any count spreads evenly): with 16 groups it is the id's top hex digit. Every node of a fleet must use
/// the same count (a user's key depends on it).
#[inline]
pub fn group(id: u64, groups: u32) -> u32 {
    (((id >> 32) * groups as u64) >> 32) as u32
}

/// A Redis key: `portcullis:v3:{g}:iiiiiiiiiiiiiiii` for a user, `portcullis:v3:{g}:hot` for a group's hot
/// list; at most 42 bytes, on the stack.
#[derive(Clone, Copy)]
pub struct Key {
    buf: [u8; 42],
    len: u8,
}

impl std::ops::Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `portcullis:v3:{g}:` with `g` the group in lower-case hex without leading zeros (`{0}`..`{f}` with 16
/// groups): the hash tag Redis Cluster places the group's keys by.
fn key_prefix(g: u32) -> Key {
    let mut k = Key { buf: [0; 42], len: 0 };
    let head = b"portcullis:v3:{";
    k.buf[..head.len()].copy_from_slice(head);
    let mut n = head.len();
    let digits = (32 - g.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        k.buf[n] = HEX[((g >> (4 * i)) & 15) as usize];
        n += 1;
    }
    k.buf[n..n + 2].copy_from_slice(b"}:");
    k.len = (n + 2) as u8;
    k
}

/// The hash tag of group `g` (what Redis Cluster hashes: the part between the braces).
pub fn group_tag(g: u32) -> Key {
    let p = key_prefix(g);
    let mut k = Key { buf: [0; 42], len: 0 };
    let tag = &p[15..p.len() - 2];
    k.buf[..tag.len()].copy_from_slice(tag);
    k.len = tag.len() as u8;
    k
}

/// The key of user `id` among `groups` groups: the version of the stored state, the group (the hash tag) and
/// the id, in hex. The version changes whenever [`SCRIPT`] changes what a key holds or how it expires: nodes of
/// two versions then keep apart (each still bounded by its own table during a rolling upgrade) instead of
/// breaking each other's invariants. v1, the first script, expired a key at its TAT; v2 ids were SipHash under
/// a key written in the source (anyone could compute them); v3 ids are keyed by the fleet's secret.
pub fn user_key(id: u64, groups: u32) -> Key {
    let mut k = key_prefix(group(id, groups));
    let n = k.len as usize;
    for i in 0..16 {
        k.buf[n + i] = HEX[((id >> (60 - 4 * i)) & 15) as usize];
    }
    k.len += 16;
    k
}

/// The key of group `g`'s hot list: the users some node reported recently (see [`Quiet`]).
pub fn hot_key(g: u32) -> Key {
    let mut k = key_prefix(g);
    let n = k.len as usize;
    k.buf[n..n + 3].copy_from_slice(b"hot");
    k.len += 3;
    k
}

/// [`user_key`] with the default 16 groups.
pub fn redis_key(id: u64) -> Key {
    user_key(id, DEFAULT_GROUPS)
}

/// The merge, run atomically by Redis. `KEYS[1]`: the group's hot list ([`hot_key`]); `KEYS[i + 1]`: a user.
/// `ARGV[1]`: the Redis time (microseconds) of this node's last read of the hot list (`-`: do not read it);
/// `ARGV[i + 1]`: what this node admitted for user i since its last report, as a duration (requests x the
/// user's emission interval, microseconds), negated when the node asks for the user to be marked hot. The
/// charge is added to `max(TAT, now)`, as that many GCRA admissions at Redis's `now` would be. Returns Redis's
/// `now` (microseconds), then per user how far its TAT is ahead of `now`, then (when asked to read) the ids
/// (hex) marked hot after `ARGV[1]`.
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
///
/// The hot list is a sorted set (member: the id in hex, score: Redis's time of the mark) that lives
/// [`HOT_LIST_US`] past its last mark; marks older than that are trimmed when a mark is added.
pub const SCRIPT: &str = r#"
local call, pcall, fmt, num, floor = redis.call, redis.pcall, string.format, tonumber, math.floor
local t = call('TIME')
local now = num(t[1]) * 1000000 + num(t[2])
local out = {now}
local n = #KEYS - 1
if n > 0 then
  local old = call('MGET', unpack(KEYS, 2))
  local marks = {}
  for i = 1, n do
    local key, charge = KEYS[i + 1], num(ARGV[i + 1])
    if charge < 0 then
      charge = -charge
      marks[#marks + 1] = fmt('%d', now)
      marks[#marks + 1] = string.sub(key, -16)
    end
    local was = num(old[i])
    if was and not (was >= 0 and was < 9e15) then was = nil end
    local tat = was or 0
    if tat < now then tat = now end
    tat = tat + charge
    local second = floor(tat / 1000000)
    if not (was and type(pcall('INCRBY', key, fmt('%d', tat - was))) == 'number') then
      call('SET', key, fmt('%d', tat), 'PXAT', fmt('%d', (second + 1) * 1000))
    elseif floor(was / 1000000) ~= second then
      call('PEXPIREAT', key, fmt('%d', (second + 1) * 1000))
    end
    out[i + 1] = tat - now
  end
  if #marks > 0 then
    call('ZADD', KEYS[1], unpack(marks))
    call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt('%d', now - 10000000))
    call('PEXPIRE', KEYS[1], 10000)
  end
end
if ARGV[1] ~= '-' then
  out[n + 2] = call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
end
return out
"#;

/// How long a hot list keeps a mark (the script's 10 s).
pub const HOT_LIST_US: u64 = 10_000_000;

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

/// What one sync reports of a user: the charge (admitted requests x their interval, microseconds), the
/// requests it stands for, and whether the user is to be marked hot ([`Quiet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    pub charge: u64,
    pub requests: u64,
    pub mark: bool,
}

/// Hashes a user id as itself. The sync's maps are keyed by user ids, which are already keyed hashes (of the
/// fleet secret) no client can choose or predict: hashing them again would buy nothing (and `limit` draws no
/// randomness: see `super::Seed`). The id's high bits pick the control byte, its low bits the bucket: both
/// uniform.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; anything else still spreads (FNV-1a).
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

/// The users active on this node since the last sync, with what they were charged. Reused from sync to sync.
pub struct Batch {
    counts: HashMap<u64, Report, IdHash>,
    /// Most distinct users one sync carries; ids past it are dropped (and counted) until the next sync.
    pub max_users: usize,
    pub dropped: u64,
    sorted: Vec<(u64, Report)>,
}

impl Batch {
    pub fn new(max_users: usize) -> Batch {
        Batch {
            counts: HashMap::with_hasher(IdHash::default()),
            max_users,
            dropped: 0,
            sorted: Vec::new(),
        }
    }

    /// Adds an admission of `id` costing `charge`; past `max_users` users a new user's admission is dropped
    /// (and counted in `dropped`, in requests: one).
    pub fn add(&mut self, id: u64, charge: u64) {
        self.add_report(
            id,
            Report {
                charge,
                requests: 1,
                mark: false,
            },
        )
    }

    /// Adds a report (several admissions, maybe a mark) of `id`, under the same cap.
    pub fn add_report(&mut self, id: u64, r: Report) {
        let full = self.counts.len() >= self.max_users;
        match self.counts.get_mut(&id) {
            Some(c) => {
                c.charge = c.charge.saturating_add(r.charge);
                c.requests += r.requests;
                c.mark |= r.mark;
            }
            None if full => self.dropped += r.requests,
            None => {
                self.counts.insert(id, r);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether a report of `id` would be kept (not dropped past `max_users`).
    #[inline]
    pub fn takes(&self, id: u64) -> bool {
        self.counts.len() < self.max_users || self.counts.contains_key(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Takes the batch: `(id, report)` sorted by group (of `groups`), so that each group is one contiguous run.
    pub fn take(&mut self, groups: u32) -> &[(u64, Report)] {
        self.sorted.clear();
        // After a large batch (an outage's backlog) keep a few times what this one needs (at least 64 Ki
        // users), not the high-water mark; a steady size never reallocates.
        let keep = self.counts.len().max(1 << 16);
        shrink_past_twice(&mut self.sorted, keep);
        self.sorted.extend(self.counts.drain());
        self.sorted.sort_unstable_by_key(|&(id, _)| (group(id, groups), id));
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

/// Runs of `users` (sorted by [`Batch::take`] for `groups`) that share a group, at most `max` long.
pub fn calls<T>(users: &[(u64, T)], groups: u32, max: usize) -> impl Iterator<Item = &[(u64, T)]> {
    users
        .chunk_by(move |a, b| group(a.0, groups) == group(b.0, groups))
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
        // Other group counts: the group in hex, spread evenly by the top bits.
        assert_eq!(
            &user_key(0xab01_2345_6789_cdef, 256)[..],
            b"portcullis:v3:{ab}:ab0123456789cdef"
        );
        assert_eq!(
            &user_key(u64::MAX, 16_384)[..],
            b"portcullis:v3:{3fff}:ffffffffffffffff"
        );
        assert_eq!(&user_key(u64::MAX, 1)[..], b"portcullis:v3:{0}:ffffffffffffffff");
        assert_eq!(&hot_key(0x1f)[..], b"portcullis:v3:{1f}:hot");
        assert_eq!(&group_tag(0x1f)[..], b"1f");
        for groups in [1, 3, 16, 100, 16_384] {
            let mut seen = vec![0u32; groups as usize];
            for i in 0..10_000u64 {
                seen[group(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), groups) as usize] += 1;
            }
            let (lo, hi) = (*seen.iter().min().unwrap(), *seen.iter().max().unwrap());
            if groups <= 100 {
                assert!(lo > 0 && hi < 3 * 10_000 / groups, "{groups}: {lo}..{hi}");
            }
        }
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
        let users: Vec<(u64, u64)> = b.take(16).iter().map(|&(id, r)| (id, r.charge)).collect();
        assert_eq!(users, [(1 << 60 | 1, 2), (1 << 60 | 2, 1), (2 << 60 | 5, 1)]);
        let runs: Vec<_> = calls(&users, 16, 1000).map(|r| r.len()).collect();
        assert_eq!(runs, [2, 1]);
        let runs: Vec<_> = calls(&users, 1, 1000).map(|r| r.len()).collect();
        assert_eq!(runs, [3]);
        let runs: Vec<_> = calls(&users, 16, 1).map(|r| r.len()).collect();
        assert_eq!(runs, [1, 1, 1]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_batch_takes_only_the_users_it_has() {
        let mut b = Batch::new(2);
        b.add(1, 10);
        b.add(2, 10);
        assert!(b.takes(1) && b.takes(2) && !b.takes(3));
        b.add(3, 10);
        assert_eq!((b.len(), b.dropped), (2, 1));
    }

    #[test]
    fn an_outage_backlog_does_not_keep_its_memory() {
        let mut b = Batch::new(1 << 20);
        for id in 0..300_000u64 {
            b.add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
        assert_eq!(b.take(16).len(), 300_000);
        for id in 0..10u64 {
            b.add(id, 1);
        }
        assert_eq!(b.take(16).len(), 10);
        assert!(b.sorted.capacity() <= 2 << 16, "{}", b.sorted.capacity());
        assert!(b.counts.capacity() <= 4 << 16, "{}", b.counts.capacity());
        // A steady large batch keeps its memory from sync to sync.
        let mut b = Batch::new(1 << 20);
        let mut caps = Vec::new();
        for _ in 0..3 {
            for id in 0..250_000u64 {
                b.add(id.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
            }
            b.take(16);
            caps.push((b.sorted.capacity(), b.counts.capacity()));
        }
        assert_eq!(caps[1], caps[2], "{caps:?}");
        assert!(caps[2].0 >= 250_000 && caps[2].1 >= 250_000, "{caps:?}");
    }
}
