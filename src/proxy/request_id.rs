//! Request IDs (`--request-id-header`): one per request, sent upstream, returned on every response (the
//! ingress's own answers included, in their problem+json body as `request_id`) and written in the access log.
//!
//! A generated id is 128 bits as 32 lowercase hex digits (`4bf92f3577b34da6a3ce929d0e0e4736`): the bits come
//! from a SplitMix64 generator per worker ([`Ids`]), seeded by the worker from the process's random seed mixed
//! with its index. Within a worker the generator's state never repeats (it steps by an odd constant through
//! 2^64 values) and its output function is a bijection of the state, so no two ids of a worker are equal; two
//! workers' sequences start at independent random points of that cycle. The ids are unique, not secret: the
//! generator is not a cryptographic one, so an id must not serve as a token. Nothing is allocated: the id is
//! written into the connection's [`RequestId`].
//!
//! A client's own id is kept only with `--trust-request-id`, and only when it is valid: 1 to 128 bytes of
//! `[A-Za-z0-9._:-]`, sent once; otherwise it is replaced by a generated one.

/// Longest id kept from a client.
pub const MAX_LEN: usize = 128;

/// The request-id rule in force (part of [`super::Rules`]: a reload may change it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The header's name, as configured (e.g. `X-Request-Id`).
    pub header: Vec<u8>,
    /// `--trust-request-id`: keep a client's valid id.
    pub trust: bool,
}

/// A per-worker generator of ids (SplitMix64).
#[derive(Debug, Clone)]
pub struct Ids {
    state: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ids {
    /// A generator for worker `worker` from the process's random `seed`.
    pub fn new(seed: u64, worker: usize) -> Ids {
        Ids {
            state: mix(seed ^ mix((worker as u64).wrapping_add(1).wrapping_mul(GAMMA))),
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix(self.state)
    }

    /// The next 128-bit id, as 32 lowercase hex digits.
    pub fn generate(&mut self) -> [u8; 32] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let v = ((self.next() as u128) << 64) | self.next() as u128;
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = HEX[(v >> (124 - 4 * i)) as usize & 15];
        }
        out
    }
}

impl Default for Ids {
    fn default() -> Ids {
        Ids::new(0, 0)
    }
}

/// Whether a client's id is acceptable: 1 to [`MAX_LEN`] bytes of `[A-Za-z0-9._:-]`.
pub fn valid(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The current request's id, held without allocating per request.
#[derive(Debug, Clone)]
pub struct RequestId {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl Default for RequestId {
    fn default() -> RequestId {
        RequestId {
            bytes: [0; MAX_LEN],
            len: 0,
        }
    }
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets the id to `v` (at most [`MAX_LEN`] bytes are kept; callers pass valid ids).
    pub fn set(&mut self, v: &[u8]) {
        let n = v.len().min(MAX_LEN);
        self.bytes[..n].copy_from_slice(&v[..n]);
        self.len = n as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_hex_and_distinct() {
        let mut a = Ids::new(42, 0);
        let mut b = Ids::new(42, 1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            for id in [a.generate(), b.generate()] {
                assert!(id.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
                assert!(valid(&id));
                assert!(seen.insert(id));
            }
        }
    }

    #[test]
    fn validity() {
        assert!(valid(b"abc-DEF_1.2:3"));
        assert!(valid(&[b'a'; 128]));
        assert!(!valid(&[b'a'; 129]));
        assert!(!valid(b""));
        for bad in [&b"a b"[..], b"a\"b", b"a/b", b"a\\b", b"\xff", b"a,b"] {
            assert!(!valid(bad), "{bad:?}");
        }
    }
}
