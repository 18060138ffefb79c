//! The admin listener (`--admin ADDR`): its own small thread, never a request worker.
//! `GET /metrics` (Prometheus text), `GET /healthz` (200 while the process runs), `GET /readyz` (200 while
//! accepting, 503 once shutdown has begun). One request per connection; anything else is 404 / 405.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{render, Gauges};
use crate::server::Shared;

/// Admin connections served at once (each on its own thread, for at most the 2 s read and write timeouts).
pub const MAX_CONNS: usize = 16;

/// Binds `addr` and serves in a background thread; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        let active = Arc::new((Mutex::new(0usize), Condvar::new()));
        loop {
            // At most MAX_CONNS connections are served at once; the next ones wait in the listen backlog.
            {
                let (n, freed) = &*active;
                let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
                while *n >= MAX_CONNS {
                    n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
                }
                *n += 1;
            }
            let release = |active: &(Mutex<usize>, Condvar)| {
                *active.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                active.1.notify_one();
            };
            let s = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    release(&active);
                    // EMFILE and the like: do not spin.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            // A thread per admin connection: a slow scraper cannot hold the others (probes, /readyz) up.
            let (shared, active2) = (shared.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("admin-conn".into()).spawn(move || {
                let _ = serve(s, &shared);
                release(&active2);
            });
            if spawned.is_err() {
                release(&active);
            }
        }
    })?;
    Ok(bound)
}

fn serve(s: TcpStream, shared: &Shared) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    // At most 16 KiB of request in all; the read timeout bounds each wait.
    let mut reader = BufReader::new(s.try_clone()?.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    // Read (and ignore) the header fields, up to the empty line.
    let mut field = String::new();
    while reader.read_line(&mut field)? > 2 {
        field.clear();
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", metrics_text(shared)),
        ("GET", "/healthz") => (200, "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if !shared.shutdown.load(Ordering::Acquire) => (200, "text/plain", "ready\n".to_string()),
        ("GET", "/readyz") => (503, "text/plain", "shutting down\n".to_string()),
        (_, "/metrics" | "/healthz" | "/readyz") => (405, "text/plain", "method not allowed\n".to_string()),
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut out = s;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}

fn metrics_text(shared: &Shared) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let l = shared.limiter.as_ref();
    let gauges = Gauges {
        reloads: [shared.reloads[0].load(Relaxed), shared.reloads[1].load(Relaxed)],
        rate_table_live: l.map(|l| l.table().live(l.micros(Instant::now())) as u64),
        rate_evictions: l.map(|l| l.table().evictions()),
        access_log_dropped: shared.access_log.as_ref().map(|h| h.dropped.load(Relaxed)),
        redis: shared.redis.as_ref().map(|r| crate::metrics::RedisGauges {
            up: r.up.load(Relaxed),
            syncs_ok: r.syncs_ok.load(Relaxed),
            syncs_failed: r.syncs_failed.load(Relaxed),
            users: r.users.load(Relaxed),
            sent_bytes: r.sent_bytes.load(Relaxed),
            last_duration_us: r.last_duration_us.load(Relaxed),
            last_users: r.last_users.load(Relaxed),
            unreported: r.unreported.load(Relaxed)
                + l.map_or(0, |l| l.journals().iter().map(|j| j.dropped()).sum::<u64>()),
        }),
    };
    render(&shared.metrics, &gauges)
}
