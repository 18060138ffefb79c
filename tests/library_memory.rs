//! The library's rate limiter keeps its memory flat whatever the number of distinct keys: 10 million of them
//! through `Limiter::decide` leave the table the size it was and the process's resident memory within a bound
//! that a map growing by one entry per key could not meet. Alone in its file: the process's memory is the
//! measure, so no other test may run beside it.

use std::time::{Duration, Instant};

use portcullis::check::{Checker, Options, RateDecision, Seed};

/// Resident memory of this process, in bytes (Linux: /proc/self/statm, in pages of 4 KiB).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn ten_million_keys_leave_memory_flat() {
    const KEYS: u64 = 10_000_000;
    let start = Instant::now();
    let options = Options {
        rate: 10,
        burst: Some(10),
        // 2^20 slots, 8 MiB: allocated (and touched below) before the first measurement.
        rate_table_slots: 1 << 20,
        ..Options::default()
    };
    let checker = Checker::new(&options, start, Seed([3, 1, 4, 1, 5, 9, 2, 6])).unwrap();
    let limiter = checker.limiter().unwrap();
    let (slots, bytes) = (limiter.table().slots(), limiter.table().bytes());
    assert_eq!(bytes, 8 << 20);
    // Touch every page of the table, so that what follows measures growth, not first use.
    for k in 0..1_000_000u64 {
        limiter.decide(limiter.key_id(&k.to_le_bytes()), start);
    }
    let before = rss();
    let mut allowed = 0u64;
    for k in 0..KEYS {
        // Distinct keys (as a client inventing a credential per request would send), 10 per millisecond.
        let key = (k + 1_000_000).to_le_bytes();
        let now = start + Duration::from_micros(100 * k);
        if let RateDecision::Allow { .. } = limiter.decide(limiter.key_id(&key), now) {
            allowed += 1;
        }
    }
    let grown = rss().saturating_sub(before);
    // Every new key is a new user with a full burst.
    assert_eq!(allowed, KEYS);
    assert_eq!((limiter.table().slots(), limiter.table().bytes()), (slots, bytes));
    // A map of 10 million keys would hold at least 16 bytes each (a u64 id and its u64 time): 160 MB. The
    // table stays 8 MiB; allow 8 MiB of noise for the allocator and the test harness.
    assert!(
        grown < 8 << 20,
        "resident memory grew by {grown} bytes over {KEYS} keys"
    );
}
