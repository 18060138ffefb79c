//! The admin listener (`--admin ADDR`): its own small thread, never a request worker.
//! `GET /metrics` (Prometheus text), `GET /healthz` (200 while the process runs), `GET /readyz` (200 while
//! accepting, 503 once shutdown has begun); `HEAD` for each. One request per connection; anything else is 404,
//! or 405 with `Allow`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limit::Limiter;
use crate::metrics::{render, Gauges, WorkerMetrics};
use crate::redis_sync::Stats;

/// The process's state as the admin listener reports it (written by the signal handling, read here).
#[derive(Default)]
pub struct Status {
    /// Shutdown has begun: `/readyz` answers 503 (set `--drain-delay` before the workers stop accepting).
    pub(crate) unready: AtomicBool,
    /// The listening sockets were handed to a new process (SIGUSR2): the node stays ready while this one drains.
    pub(crate) handed_over: AtomicBool,
    /// Reloads by result: ok, failed.
    pub(crate) reloads: [AtomicU64; 2],
}

/// All the admin listener reads of the process: the readiness flags, the workers' counter blocks and the
/// sources of the gauges. The server builds it; nothing here reaches the workers' shared state.
#[derive(Clone)]
pub struct Handle {
    pub(crate) status: Arc<Status>,
    /// One counter block per worker.
    pub(crate) metrics: Arc<[WorkerMetrics]>,
    /// The per-user limit's table, when on.
    pub(crate) limiter: Option<Arc<Limiter>>,
    /// The fleet sync's state, when the limit is fleet-wide.
    pub(crate) redis: Option<Arc<Stats>>,
    /// The access log's count of lines dropped, when the log is on.
    pub(crate) access_log_dropped: Option<Arc<AtomicU64>>,
    /// The TLS certificates in force, when a TLS listener is on.
    pub(crate) tls: Option<Arc<crate::tls::Tls>>,
    /// The listeners expect a PROXY protocol header.
    pub(crate) proxy_protocol: bool,
    /// WebSocket tunnels are on.
    pub(crate) tunnels: bool,
    /// The upstream pools (their servers' health and counts).
    pub(crate) pools: Arc<crate::pool::Live>,
}

/// Admin connections served at once: a fixed set of threads, each accepting and serving one connection at a
/// time; the next ones wait in the listen backlog. The set never grows, so neither does the thread count.
pub const MAX_CONNS: usize = 16;
/// The whole request must arrive within this (a client trickling bytes cannot hold a thread for longer).
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Binds `addr` and serves in background threads; returns the bound address.
pub fn start(addr: SocketAddr, handle: Handle) -> io::Result<SocketAddr> {
    serve_on(TcpListener::bind(addr)?, handle)
}

/// Serves on `listener` (bound here, or handed over) in background threads; returns its address.
pub fn serve_on(listener: TcpListener, handle: Handle) -> io::Result<SocketAddr> {
    listener.set_nonblocking(false)?;
    let bound = listener.local_addr()?;
    // A thread per connection being served, so a slow scraper cannot hold the others (probes, /readyz) up;
    // all of them accept on the one socket (the kernel hands each connection to one waiting thread).
    for _ in 0..MAX_CONNS {
        let listener = listener.try_clone()?;
        let handle = handle.clone();
        std::thread::Builder::new()
            .name("admin-conn".into())
            .spawn(move || loop {
                let s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // EMFILE and the like: do not spin.
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = serve(s, &handle);
                // After a hand-over (SIGUSR2) the new process serves the shared admin socket: this one stops taking
                // its connections (each thread serves at most the one it was waiting for when the hand-over
                // happened), so scrapes do not alternate between two processes' counters.
                if handle.status.handed_over.load(Ordering::Acquire) {
                    return;
                }
            })?;
    }
    Ok(bound)
}

/// Reads from the connection until `until`, then fails with `TimedOut`.
struct Deadline {
    s: TcpStream,
    until: Instant,
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.s.set_read_timeout(Some(left))?;
        self.s.read(buf)
    }
}

fn serve(s: TcpStream, handle: &Handle) -> io::Result<()> {
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    // At most 16 KiB of request in all, within REQUEST_TIME.
    let until = Instant::now() + REQUEST_TIME;
    let mut reader = BufReader::new(
        Deadline {
            s: s.try_clone()?,
            until,
        }
        .take(16 * 1024),
    );
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
    // HEAD is GET without the body (load balancers check with it).
    let head = method == "HEAD";
    let get = head || method == "GET";
    let (status, ctype, body) = match (get, path) {
        (true, "/metrics") => (200, "text/plain; version=0.0.4", metrics_text(handle)),
        (true, "/healthz") => (200, "text/plain", "ok\n".to_string()),
        // After a hand-over to a new process the node is ready (the new process serves) while this one drains.
        (true, "/readyz")
            if !handle.status.unready.load(Ordering::Acquire) || handle.status.handed_over.load(Ordering::Acquire) =>
        {
            (200, "text/plain", "ready\n".to_string())
        }
        (true, "/readyz") => (503, "text/plain", "shutting down\n".to_string()),
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
    let allow = if status == 405 { "Allow: GET, HEAD\r\n" } else { "" };
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}",
        body.len(),
        if head { "" } else { &body }
    )?;
    out.flush()
}

fn metrics_text(handle: &Handle) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let l = handle.limiter.as_deref();
    let reloads = &handle.status.reloads;
    let (pools, _) = handle.pools.get();
    let gauges = Gauges {
        reloads: [reloads[0].load(Relaxed), reloads[1].load(Relaxed)],
        rate_table_live: l.map(|l| l.table().live(l.micros(Instant::now())) as u64),
        rate_evictions: l.map(|l| l.table().evictions()),
        access_log_dropped: handle.access_log_dropped.as_ref().map(|d| d.load(Relaxed)),
        tls_certificates: handle.tls.as_ref().map_or_else(Vec::new, |t| {
            t.certs()
                .into_iter()
                .map(|c| {
                    let at = c
                        .not_after
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    (c.name, at)
                })
                .collect()
        }),
        proxy_protocol: handle.proxy_protocol,
        tunnels: handle.tunnels,
        pool_latency: pools.latency(),
        upstreams: pools.stats(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
        redis: handle.redis.as_ref().map(|r| crate::metrics::RedisGauges {
            up: r.up.load(Relaxed),
            syncs_ok: r.syncs_ok.load(Relaxed),
            syncs_failed: r.syncs_failed.load(Relaxed),
            users: r.users.load(Relaxed),
            sent_bytes: r.sent_bytes.load(Relaxed),
            last_duration_us: r.last_duration_us.load(Relaxed),
            last_users: r.last_users.load(Relaxed),
            unreported: r.unreported.load(Relaxed)
                + l.map_or(0, |l| l.journals().iter().map(|j| j.dropped()).sum::<u64>()),
            quiet: r.quiet.load(Relaxed),
        }),
    };
    render(&handle.metrics, &gauges)
}
