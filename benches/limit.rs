//! The rate-limit table: one decision uncontended, two threads on distinct keys, two threads on one key.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::limit::{Gcra, Table};

/// A fixed seed for the limiter's hashes (the server draws a random one per process).
const SEED: portcullis::limit::Seed = portcullis::limit::Seed([1, 2, 3, 4, 5, 6, 7, 8]);

/// Runs `threads` threads, each making `iters` decisions on its own key (or all on one key), and returns the
/// wall time of the slowest.
fn run(table: &Arc<Table>, threads: usize, iters: u64, same_key: bool) -> Duration {
    let gcra = Gcra::new(1_000_000, 1_000_000);
    let barrier = Arc::new(Barrier::new(threads));
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (table, barrier, _stop) = (table.clone(), barrier.clone(), stop.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let base = if same_key {
                    0x1234_5678_9abc_def0
                } else {
                    (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
                };
                for i in 0..iters {
                    // A warm key per thread; time advances so the generous limit always allows.
                    black_box(table.decide(&gcra, base, 1_000_000 + i));
                }
                start.elapsed()
            })
        })
        .collect();
    let d = hs.into_iter().map(|h| h.join().unwrap()).max().unwrap();
    stop.store(true, Ordering::Relaxed);
    d
}

fn bench(c: &mut Criterion) {
    let table = Arc::new(Table::new(1 << 20));
    let gcra = Gcra::new(10, 10);
    let mut g = c.benchmark_group("limit");
    let mut now = 1_000_000u64;
    let mut key = 0u64;
    g.bench_function("decide_uncontended_warm", |b| {
        b.iter(|| {
            // 1024 rotating users, each well under its limit.
            key = (key + 1) & 1023;
            now += 1_000;
            black_box(table.decide(&gcra, key.wrapping_mul(0x9e37_79b9_7f4a_7c15), now))
        })
    });
    for (name, threads, same) in [
        ("one_thread", 1, false),
        ("two_threads_distinct_keys", 2, false),
        ("two_threads_same_key", 2, true),
    ] {
        g.bench_function(name, |b| b.iter_custom(|iters| run(&table, threads, iters, same)));
    }
    g.finish();
}

/// A whole decision (tier lookup + table) for a user listed among 100 000, for an unlisted one, and with no
/// tiers at all; 100 000 rotating users each, hashes precomputed (the limiter computes them anyway).
fn tiers(c: &mut Criterion) {
    use portcullis::limit::tiers::{Memo, Tier, TierSpec, Tiers};
    use portcullis::limit::{KeyMode, Limiter};
    const N: usize = 100_000;
    let limiter = Limiter::new(
        Gcra::new(10, 10),
        1 << 20,
        KeyMode::Authorization,
        0,
        Instant::now(),
        SEED,
    );
    let listed: Vec<String> = (0..N).map(|i| format!("Bearer user-{i}")).collect();
    let by_value = [TierSpec {
        name: "gold".into(),
        rate: 1_000_000,
        burst: 1_000_000,
        users: listed.clone(),
    }];
    let by_digest = [TierSpec {
        users: listed
            .iter()
            .map(|u| {
                use sha2::Digest;
                let d = sha2::Sha256::digest(u.as_bytes());
                format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
            })
            .collect(),
        ..by_value[0].clone()
    }];
    let default = || Tier::new("default", 1_000_000, 1_000_000);
    let plain = Tiers::build(default(), &by_value, |v| limiter.value_hash(v)).unwrap();
    let hashed = Tiers::build(default(), &by_digest, |v| limiter.value_hash(v)).unwrap();
    let none = Tiers::single(default());
    let users = |prefix: &str| -> Vec<(u64, Vec<u8>)> {
        (0..N)
            .map(|i| {
                let v = format!("Bearer {prefix}-{i}");
                (limiter.value_hash(&v).unwrap(), v.into_bytes())
            })
            .collect()
    };
    let (listed_users, unlisted_users) = (users("user"), users("other"));
    let mut g = c.benchmark_group("tiers");
    let start = Instant::now();
    for (rot, label) in [(1024, "1k_active"), (N, "100k_active")] {
        for (name, tiers, who) in [
            ("no_tiers", &none, &unlisted_users),
            ("100k_listed/unlisted_user", &plain, &unlisted_users),
            ("100k_listed/listed_user", &plain, &listed_users),
            ("100k_sha256/unlisted_user", &hashed, &unlisted_users),
            ("100k_sha256/listed_user", &hashed, &listed_users),
        ] {
            let mut memo = Memo::default();
            let mut i = 0usize;
            g.bench_function(format!("{label}/{name}"), |b| {
                b.iter(|| {
                    i = (i + 1) % rot;
                    let (hash, value) = &who[i];
                    let t = tiers.lookup(*hash, Some(value), &mut memo);
                    let gcra = &tiers.tiers[t as usize].gcra;
                    black_box(limiter.decide_with(gcra, *hash, start))
                })
            });
        }
    }
    g.finish();
}

/// The user's key from a parsed head (the canonical credential and its id), and the per-address backstop's
/// decision: one address (warm) and 10 000 rotating addresses.
fn key_and_backstop(c: &mut Criterion) {
    use portcullis::config::Limits;
    use portcullis::http::request::{header_storage, parse_head};
    use portcullis::limit::{IpBackstop, KeyMode, Limiter};
    let limiter = Limiter::new(
        Gcra::new(10, 10),
        1 << 20,
        KeyMode::Authorization,
        0,
        Instant::now(),
        SEED,
    )
    .with_ip_backstop(Some(IpBackstop {
        rate: 1_000_000,
        burst: 1_000_000,
        gcra: Gcra::new(1_000_000, 1_000_000),
        exempt: Vec::new(),
    }));
    let peer: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let mut g = c.benchmark_group("key");
    for (name, auth) in [
        ("bearer", "Bearer 6f1c2e9a0b7d4c3e"),
        ("basic", "basic YWxpY2U6c2VjcmV0"),
    ] {
        let raw = format!("GET /v1/x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: {auth}\r\n\r\n");
        let mut st = header_storage();
        let head = parse_head(raw.as_bytes(), &Limits::default(), &mut st)
            .unwrap()
            .unwrap();
        let mut scratch = Vec::new();
        g.bench_function(format!("user_key/{name}"), |b| {
            b.iter(|| black_box(limiter.user_key(black_box(&head), peer, &mut scratch).unwrap().id))
        });
    }
    let start = Instant::now();
    g.bench_function("decide_ip/one_address", |b| {
        b.iter(|| black_box(limiter.decide_ip(black_box(peer), start)))
    });
    let addrs: Vec<std::net::IpAddr> = (0..10_000u32)
        .map(|i| std::net::Ipv4Addr::from(0x0a00_0000 + i).into())
        .collect();
    let mut i = 0;
    g.bench_function("decide_ip/10k_addresses", |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            black_box(limiter.decide_ip(addrs[i], start))
        })
    });
    g.finish();
}

criterion_group!(benches, bench, tiers, key_and_backstop);
criterion_main!(benches);
