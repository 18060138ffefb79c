//! One fleet sync (`redis_sync::Syncer::sync_once`) of 10 000 active users against a real `redis-server`
//! started here on an ephemeral port: the whole round trip (drain the journal, one pipelined batch, merge the
//! answers into the table), and the bytes each way.
//!
//! `cargo bench --bench fleet` (needs `redis-server` on the PATH).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::limit::{Gcra, KeyMode, Limiter, Seed};
use portcullis::redis_sync::{Stats, Syncer};

const USERS: u64 = 10_000;

/// A fixed seed for the limiter's hashes (the server draws a random one per process).
const SEED: Seed = Seed([1, 2, 3, 4, 5, 6, 7, 8]);

fn redis_net_bytes(con: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap()
    };
    (field("total_net_input_bytes"), field("total_net_output_bytes"))
}

fn sync(c: &mut Criterion) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-server on the PATH");
    let out = redis.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    while !lines.next().unwrap().unwrap().contains("Ready to accept connections") {}
    std::thread::spawn(move || lines.for_each(drop));
    let url = format!("redis://127.0.0.1:{port}/0");

    let limiter = Limiter::new(
        Gcra::new(10, 10),
        1 << 20,
        KeyMode::Authorization,
        0,
        Instant::now(),
        SEED,
    )
    .fleet(1, 1 << 17);
    let stats = Arc::new(Stats::default());
    let mut syncer = Syncer::new(&url, Duration::from_secs(5), stats.clone()).unwrap();
    let mut con = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    let mut round = 0u64;
    let mut measured = (0u64, 0u64, 0u64, 0u64);
    c.benchmark_group("fleet")
        .sample_size(30)
        .bench_function("sync/10000 users", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    // The same users each round (3 requests each), as a steady population would be.
                    for _ in 0..3 {
                        for i in 0..USERS {
                            limiter.record(0, (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15), &limiter.gcra);
                        }
                    }
                    let (in0, out0) = redis_net_bytes(&mut con);
                    let sent0 = stats.sent_bytes.load(Relaxed);
                    let t = Instant::now();
                    assert_eq!(syncer.sync_once(&limiter), Ok(USERS as usize));
                    total += t.elapsed();
                    let (in1, out1) = redis_net_bytes(&mut con);
                    measured.0 += 1;
                    measured.1 += stats.sent_bytes.load(Relaxed) - sent0;
                    // Redis's own counters include this INFO exchange; small next to the batch.
                    measured.2 += in1 - in0;
                    measured.3 += out1 - out0;
                }
                total
            })
        });
    let n = measured.0.max(1);
    // Where the time goes: Redis's own accounting of the script calls.
    let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut con).unwrap();
    let evalsha_us: f64 = stats
        .lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("usec=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "per sync of {USERS} users: {} B sent (commands), Redis counted {} B in / {} B out; Redis executed the \
         merge script for {:.1} ms of it ({} syncs)",
        measured.1 / n,
        measured.2 / n,
        measured.3 / n,
        evalsha_us / 1000.0 / n as f64,
        measured.0
    );
    let _ = redis.kill();
    let _ = redis.wait();
}

criterion_group!(benches, sync);
criterion_main!(benches);
