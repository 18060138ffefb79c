//! Per-user limits: `--limits FILE` names tiers, each with a rate, a burst and its users. A user is listed by
//! the value of their key (`"Bearer 6f1c2e"`) or, so that the file need not hold secrets, as
//! `sha256:<hex of the key value>`. Users not listed get `--rate` / `--burst` (the tier `default`).
//!
//! ```toml
//! [tiers.gold]
//! rate = 100
//! burst = 100
//! users = ["Bearer 6f1c2e", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
//! ```
//!
//! The lookup on the request path neither locks nor allocates: listed values are hashed at load time with
//! the limiter's own key hash, so a lookup is one probe of a map keyed by the hash the limiter computed
//! anyway. `sha256:` entries need the digest of the request's key: a worker-local memo (a direct-mapped
//! array) keeps each user's answer, so the digest is computed once per user and worker, not per request.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::toml_subset::{self, Value};

use super::Gcra;

/// One tier: its name and limit, and the `RateLimit-Policy` line its answers carry.
#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub gcra: Gcra,
    /// `RateLimit-Policy: "<name>";q=<rate>;w=1` and CRLF.
    pub policy_field: Vec<u8>,
    /// `"<name>"`, for the `RateLimit` field.
    pub quoted: Vec<u8>,
}

impl Tier {
    pub fn new(name: &str, rate: u32, burst: u32) -> Tier {
        Tier {
            name: name.to_string(),
            gcra: Gcra::new(rate, burst),
            policy_field: format!("RateLimit-Policy: \"{name}\";q={rate};w=1\r\n").into_bytes(),
            quoted: format!("\"{name}\"").into_bytes(),
        }
    }
}

/// A tier as the file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSpec {
    pub name: String,
    pub rate: u32,
    pub burst: u32,
    pub users: Vec<String>,
}

/// Listed users by key hash: open addressing over `u64` slots, each the hash with its low byte replaced by
/// the tier index (0: empty). A lookup reads one slot (one cache line) whether the user is listed or not,
/// so a listed user costs about what an unlisted one does even when the table is cold.
#[derive(Default)]
struct ByHash {
    slots: Box<[u64]>,
}

impl ByHash {
    fn with_capacity(n: usize) -> ByHash {
        ByHash {
            slots: vec![0; (n * 2).next_power_of_two().max(2)].into_boxed_slice(),
        }
    }

    fn tag(hash: u64) -> u64 {
        (hash & !0xff).max(0x100)
    }

    /// False if `hash` was already present.
    fn insert(&mut self, hash: u64, tier: u8) -> bool {
        let (tag, mask) = (Self::tag(hash), self.slots.len() - 1);
        let mut i = (hash >> 8) as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = tag | tier as u64;
                    return true;
                }
                s if s & !0xff == tag => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    #[inline]
    fn get(&self, hash: u64) -> Option<u8> {
        if self.slots.is_empty() {
            return None;
        }
        let (tag, mask) = (Self::tag(hash), self.slots.len() - 1);
        let mut i = (hash >> 8) as usize & mask;
        loop {
            match self.slots[i] {
                0 => return None,
                s if s & !0xff == tag => return Some(s as u8),
                _ => i = (i + 1) & mask,
            }
        }
    }
}

/// The tiers in force: index 0 is `default`.
pub struct Tiers {
    pub tiers: Vec<Tier>,
    by_hash: ByHash,
    by_sha: HashMap<[u8; 32], u8, ahash::RandomState>,
    /// Users listed in all.
    pub listed: usize,
}

/// Most tiers a file may name (the tier index fits the memo's low byte).
pub const MAX_TIERS: usize = 200;
/// Entries of a worker's memo of `sha256:` answers (8 bytes each: 2 MiB, allocated on first use).
pub const MEMO_SLOTS: usize = 1 << 18;

impl Tiers {
    /// Only the default tier.
    pub fn single(default: Tier) -> Tiers {
        Tiers {
            tiers: vec![default],
            by_hash: ByHash::default(),
            // Fixed keys: the map holds the operator's SHA-256 digests and clients only look digests up, so no
            // client can lengthen a probe (and `limit` draws no randomness: see `super::Seed`).
            by_sha: HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
            listed: 0,
        }
    }

    /// `hash_value`: the limiter's hash of a key value (see `Limiter::value_hash`); `None` for a value that
    /// cannot be a key in the current key mode (the error names it).
    pub fn build(
        default: Tier,
        specs: &[TierSpec],
        hash_value: impl Fn(&str) -> Result<u64, String>,
    ) -> Result<Tiers, String> {
        let mut t = Tiers::single(default);
        if specs.len() > MAX_TIERS {
            return Err(format!("at most {MAX_TIERS} tiers"));
        }
        t.by_hash = ByHash::with_capacity(specs.iter().map(|s| s.users.len()).sum());
        for spec in specs {
            let idx = t.tiers.len() as u8;
            t.tiers.push(Tier::new(&spec.name, spec.rate, spec.burst));
            for u in &spec.users {
                let fresh = if let Some(hex) = u.strip_prefix("sha256:") {
                    let d = parse_hex32(hex)
                        .ok_or_else(|| format!("tier {}: {u:?}: expected sha256:<64 hex digits>", spec.name))?;
                    t.by_sha.insert(d, idx).is_none()
                } else {
                    t.by_hash
                        .insert(hash_value(u).map_err(|e| format!("tier {}: {e}", spec.name))?, idx)
                };
                if !fresh {
                    return Err(format!("tier {}: user {u:?} is listed twice", spec.name));
                }
                t.listed += 1;
            }
        }
        Ok(t)
    }

    pub fn default_tier(&self) -> &Tier {
        &self.tiers[0]
    }

    /// The tier (index into `tiers`) of the user whose key hashed to `hash`; `value`: the key's value (a
    /// field value; `None` for an address key), used only for `sha256:` entries, through the worker's `memo`.
    #[inline]
    pub fn lookup(&self, hash: u64, value: Option<&[u8]>, memo: &mut Memo) -> u8 {
        if let Some(i) = self.by_hash.get(hash) {
            return i;
        }
        match value {
            Some(value) if !self.by_sha.is_empty() => memo.get_or(hash, || {
                let d: [u8; 32] = Sha256::digest(value).into();
                self.by_sha.get(&d).copied().unwrap_or(0)
            }),
            _ => 0,
        }
    }
}

/// A worker's memo of the tier of users found through their key's SHA-256: direct-mapped, each slot the
/// user's hash with its low byte replaced by the tier index + 1. Cleared when the tiers change.
#[derive(Default)]
pub struct Memo {
    /// Empty until the first `sha256:` lookup (most deployments list no digests).
    slots: Vec<u64>,
}

impl Memo {
    pub fn clear(&mut self) {
        self.slots.fill(0);
    }

    fn get_or(&mut self, hash: u64, compute: impl FnOnce() -> u8) -> u8 {
        if self.slots.is_empty() {
            self.slots = vec![0; MEMO_SLOTS];
        }
        let slot = &mut self.slots[(hash >> 8) as usize & (MEMO_SLOTS - 1)];
        let tag = hash & !0xff;
        if *slot != 0 && *slot & !0xff == tag {
            return (*slot & 0xff) as u8 - 1;
        }
        let tier = compute();
        *slot = tag | (tier as u64 + 1);
        tier
    }
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16);
        out[i] = (d(pair[0])? * 16 + d(pair[1])?) as u8;
    }
    Some(out)
}

/// Parses a limits file: `[tiers.NAME]` tables with `rate`, `burst` (default: the rate) and `users` (an
/// array of strings, which may span lines). Comments start with `#`. A key given twice in a tier, or a tier
/// given twice, is refused with both lines.
pub fn parse(text: &str) -> Result<Vec<TierSpec>, String> {
    let tables = toml_subset::parse(text)?;
    if let Some(e) = tables[0].entries.first() {
        return Err(format!(
            "line {}: settings must follow a [tiers.NAME] header: {}",
            e.line, e.key
        ));
    }
    let mut specs = Vec::new();
    for t in &tables[1..] {
        let at = |line: usize, msg: &str| format!("line {line}: {msg}");
        let name = t
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("tiers."))
            .ok_or_else(|| at(t.line, "expected [tiers.NAME]"))?;
        if name.is_empty()
            || name == "default"
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(at(
                t.line,
                "a tier name is letters, digits, - and _ (and not \"default\")",
            ));
        }
        let mut spec = TierSpec {
            name: name.to_string(),
            rate: 0,
            burst: 0,
            users: Vec::new(),
        };
        let mut burst_set = false;
        for e in &t.entries {
            match (e.key.as_str(), &e.value) {
                ("rate" | "burst", Value::Scalar(v)) => {
                    let n: u32 = (!v.quoted)
                        .then(|| v.text.parse().ok())
                        .flatten()
                        .ok_or_else(|| at(e.line, &format!("{}: expected a whole number", e.key)))?;
                    if !(1..=1_000_000).contains(&n) {
                        return Err(at(e.line, &format!("{}: must be between 1 and 1000000", e.key)));
                    }
                    if e.key == "rate" {
                        spec.rate = n;
                    } else {
                        spec.burst = n;
                        burst_set = true;
                    }
                }
                ("users", Value::Array(items)) => {
                    for item in items {
                        if !item.quoted {
                            return Err(at(
                                e.line,
                                &format!("users: expected quoted strings, found {:?}", item.text),
                            ));
                        }
                        spec.users.push(item.text.clone());
                    }
                }
                ("users", _) => return Err(at(e.line, "users: expected [\"...\", ...]")),
                ("rate" | "burst", _) => return Err(at(e.line, &format!("{}: expected a whole number", e.key))),
                (k, _) => return Err(at(e.line, &format!("unknown setting {k:?} (rate, burst, users)"))),
            }
        }
        if spec.rate == 0 {
            return Err(format!("tier {}: no rate", spec.name));
        }
        if !burst_set {
            spec.burst = spec.rate;
        }
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
# Customers who asked for more.
[tiers.gold]
rate = 100
burst = 200
users = ["Bearer 6f1c2e", "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]

[tiers.silver]   # burst defaults to the rate
rate = 50
users = [
  "Bearer a#b",  # a comment
  "Bearer q\"uote",
]
"#;

    #[test]
    fn parses_the_documented_format() {
        let specs = parse(FILE).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(
            (specs[0].name.as_str(), specs[0].rate, specs[0].burst),
            ("gold", 100, 200)
        );
        assert_eq!(specs[0].users.len(), 2);
        assert_eq!((specs[1].rate, specs[1].burst), (50, 50));
        assert_eq!(specs[1].users, ["Bearer a#b", "Bearer q\"uote"]);
        for bad in [
            "rate = 1",
            "[tiers.x]\nburst = 3",
            "[tiers.x]\nrate = 0",
            "[tiers.default]\nrate = 1",
            "[tiers.x]\nrate = 1\n[tiers.x]\nrate = 2",
            "[tiers.x]\nrate = 1\nusers = [\"a\"",
            "[tiers.x]\nrate = 1\ncolour = 3",
            "[other]",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lookup_by_value_and_by_digest() {
        let specs = parse(FILE).unwrap();
        let h = |v: &str| -> u64 { ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(v.as_bytes()) };
        let t = Tiers::build(Tier::new("default", 10, 10), &specs, |v| Ok(h(v))).unwrap();
        assert_eq!(t.listed, 4);
        let mut memo = Memo::default();
        let name = |i: u8| t.tiers[i as usize].name.as_str();
        assert_eq!(
            name(t.lookup(h("Bearer 6f1c2e"), Some(b"Bearer 6f1c2e"), &mut memo)),
            "gold"
        );
        assert_eq!(
            name(t.lookup(h("Bearer a#b"), Some(b"Bearer a#b"), &mut memo)),
            "silver"
        );
        // sha256("test") is the digest listed for gold.
        assert_eq!(name(t.lookup(h("test"), Some(b"test"), &mut memo)), "gold");
        assert_eq!(
            name(t.lookup(h("test"), Some(b"test"), &mut memo)),
            "gold",
            "from the memo"
        );
        assert_eq!(name(t.lookup(h("other"), Some(b"other"), &mut memo)), "default");
        assert_eq!(name(t.lookup(h("other"), Some(b"other"), &mut memo)), "default");
        assert_eq!(name(t.lookup(h("x"), None, &mut memo)), "default");
        assert_eq!(t.tiers[1].policy_field, b"RateLimit-Policy: \"gold\";q=100;w=1\r\n");
        // A key given twice in a tier is refused with both lines (the same key in two tiers is fine).
        let twice = parse("[tiers.a]\nrate = 50\nusers = [\"u\"]\nrate = 1\n").unwrap_err();
        assert!(twice.contains("line 4") && twice.contains("first on line 2"), "{twice}");
        assert!(parse("[tiers.a]\nusers = [\"u\"]\nusers = [\"v\"]\nrate = 1\n").is_err());
        assert!(parse("[tiers.a]\nrate = 1\n[tiers.b]\nrate = 2\n").is_ok());
        let dup = parse("[tiers.a]\nrate = 1\nusers = [\"u\"]\n[tiers.b]\nrate = 2\nusers = [\"u\"]").unwrap();
        assert!(Tiers::build(Tier::new("default", 10, 10), &dup, |v| Ok(h(v))).is_err());
        let bad = parse("[tiers.a]\nrate = 1\nusers = [\"sha256:12\"]").unwrap();
        assert!(Tiers::build(Tier::new("default", 10, 10), &bad, |v| Ok(h(v))).is_err());
    }
}
