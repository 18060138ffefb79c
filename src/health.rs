//! Active health checks (`--health NAME=/path`): one thread, never a request worker, checks every server of
//! each checked pool every `--health-interval` with a plain `GET path` (any 2xx passes, within
//! `--health-timeout`), starting at once, and reports each result to the shared pool state
//! (`Pools::checked`), which takes a server out after `--health-fall` failures in a row and brings it back
//! after `--health-rise` passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Checks;
use crate::pool::{Live, Pools};

/// The servers to check: (server, name, path).
fn targets(pools: &Pools) -> Vec<(usize, String, String)> {
    pools
        .specs()
        .iter()
        .enumerate()
        .filter_map(|(p, spec)| spec.health.clone().map(|path| (p, path)))
        .flat_map(|(p, path)| {
            pools.servers_of(p).map(move |s| {
                let (_, name) = pools.names(s);
                (s, name.to_string(), path.clone())
            })
        })
        .collect()
}

/// Starts the health thread (it checks the pools in force, following reloads; idle while none is checked).
pub fn start(live: Arc<Live>, checks: Checks, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("health".into()).spawn(move || {
        let mut gen = u64::MAX;
        let (mut pools, mut targets, mut down) = (live.get().0, Vec::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let round = Instant::now();
            if live.generation() != gen {
                let (p, g) = live.get();
                targets = self::targets(&p);
                down = vec![false; targets.len()];
                (pools, gen) = (p, g);
            }
            for (i, (server, name, path)) in targets.iter().enumerate() {
                // The address as it is now (`--dns-refresh` may have moved it).
                let passed = check(pools.addr(*server), name, path, checks.timeout);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                pools.checked(*server, passed, checks.rise, checks.fall, now_ms);
                let now_down = pools.is_down(*server);
                if now_down != down[i] {
                    down[i] = now_down;
                    if now_down {
                        crate::warn!(
                            "upstream {name}: {} health checks of {path} failed in a row: out",
                            checks.fall
                        );
                    } else {
                        crate::info!("upstream {name}: {} health checks of {path} passed: back", checks.rise);
                    }
                }
            }
            // The next round an interval after this one began (a slow round starts the next at once).
            while round.elapsed() < checks.interval && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(
                    (checks.interval - round.elapsed().min(checks.interval)).min(Duration::from_millis(100)),
                );
            }
        }
    })?;
    Ok(())
}

/// Starts the thread that resolves the servers given by name again every `every` (`--dns-refresh`), if
/// there are any and it is not 0. A change is logged; a failure once, until the name resolves again.
pub fn start_dns(live: Arc<Live>, every: Duration, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    if every.is_zero() {
        return Ok(());
    }
    std::thread::Builder::new().name("dns".into()).spawn(move || {
        let mut failing = std::collections::HashSet::new();
        loop {
            let start = Instant::now();
            while start.elapsed() < every {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep((every - start.elapsed().min(every)).min(Duration::from_millis(100)));
            }
            let events = live
                .get()
                .0
                .refresh(|name| name.to_socket_addrs().map(|a| a.collect()).map_err(|e| e.to_string()));
            let mut still = std::collections::HashSet::new();
            for (name, r) in events {
                match r {
                    Ok(addr) => crate::info!("upstream {name}: now resolves to {addr}"),
                    Err(e) => {
                        if !failing.contains(&name) {
                            crate::warn!("upstream {name}: resolving failed ({e}); keeping its last address");
                        }
                        still.insert(name);
                    }
                }
            }
            failing = still;
        }
    })?;
    Ok(())
}

/// One check: `GET path` on a new connection; passes on a 2xx status line within `timeout` in all.
fn check(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = s.set_write_timeout(Some(left()));
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portcullis-health\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < 12 {
        if Instant::now() >= deadline || s.set_read_timeout(Some(left())).is_err() {
            return false;
        }
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
    }
    // "HTTP/1.x 2xx"
    head.starts_with(b"HTTP/1.")
        && head[8] == b' '
        && head[9] == b'2'
        && head[10].is_ascii_digit()
        && head[11].is_ascii_digit()
}
