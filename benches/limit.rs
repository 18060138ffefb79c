//! The rate-limit table: one decision uncontended, two threads on distinct keys, two threads on one key.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::limit::{Gcra, Table};

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

criterion_group!(benches, bench);
criterion_main!(benches);
