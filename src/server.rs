//! Process lifetime: bind one SO_REUSEPORT listener per worker, start the worker threads, and stop them.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{restart_only_changes, Config, RestartOnly};
use crate::worker::{Worker, WAKER};

/// Listen backlog: connections the kernel holds while every worker is busy or at the connection cap.
pub const BACKLOG: i32 = 4096;

/// What every worker shares: read-only configuration, and the few process-wide atomics. Its fields are the
/// crate's own: the helper threads get narrow handles built from them (`admin::Handle`, the fleet sync's limiter).
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) upstream: SocketAddr,
    /// What every client connection's machine is set up with (timeouts, size limits, the upstream's Host).
    pub(crate) settings: crate::proxy::Settings,
    /// The policy in force (replaced whole by a reload).
    pub(crate) rules: crate::rules::Current,
    /// Client connections open in the process (for `--max-connections`).
    pub(crate) open: AtomicUsize,
    /// Readiness and reload counts, as the admin listener reports them.
    pub(crate) status: Arc<crate::admin::Status>,
    /// The workers stop accepting and drain (the fleet sync thread stops too).
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Requests still in flight when `--shutdown-timeout` cut them.
    pub(crate) cut_at_shutdown: AtomicUsize,
    /// Upstream failures not yet logged, and the second of the last line about them.
    upstream_failures: AtomicU64,
    upstream_warned_at: AtomicU64,
    /// The per-user limit (process-wide table), when on.
    pub(crate) limiter: Option<Arc<crate::limit::Limiter>>,
    /// The fleet sync's state, when the limit is fleet-wide.
    pub(crate) redis: Option<Arc<crate::redis_sync::Stats>>,
    /// The TLS certificates and the configuration TLS connections are made from, when a TLS listener is on.
    pub(crate) tls: Option<Arc<crate::tls::Tls>>,
    pub(crate) tls_config: Option<Arc<rustls::ServerConfig>>,
    /// Where the access log goes, when on.
    pub(crate) access_log: Option<crate::access_log::Hub>,
    /// One counter block per worker (each written only by its worker).
    pub(crate) metrics: Arc<[crate::metrics::WorkerMetrics]>,
    /// The open WebSocket tunnels (`--max-tunnels`, `--max-tunnels-per-user`).
    pub(crate) tunnels: crate::proxy::tunnel::Tunnels,
    /// The upstream pools, their servers' shared health, and the routes (replaced whole by a reload).
    pub(crate) pools: Arc<crate::pool::Live>,
    /// The built-in echo upstream's address, when no `--upstream` is given (a reload without one keeps it).
    echo: Option<SocketAddr>,
}

impl Shared {
    /// Counts an upstream failure (`what`: refused, timed out, a bad response...) and logs at `warn` at most
    /// one line a second for the process, with how many there were since the last line.
    pub(crate) fn upstream_failed(&self, server: SocketAddr, what: &str) {
        self.upstream_failures.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.upstream_warned_at.load(Ordering::Relaxed);
        if now > last
            && self
                .upstream_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let n = self.upstream_failures.swap(0, Ordering::Relaxed).max(1);
            crate::warn!("upstream {server}: {what} ({n} upstream failures since the last line)");
        }
    }

    /// What the admin listener reads: the readiness flags, the counter blocks and the gauges' sources.
    fn admin_handle(&self) -> crate::admin::Handle {
        crate::admin::Handle {
            status: self.status.clone(),
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
            redis: self.redis.clone(),
            access_log_dropped: self.access_log.as_ref().map(|h| h.dropped.clone()),
            tls: self.tls.clone(),
            proxy_protocol: self.config.proxy_protocol.is_some(),
            tunnels: self.config.tunnel.is_some(),
            pools: self.pools.clone(),
        }
    }
}

/// A started ingress.
pub struct Running {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    handover: Arc<Handover>,
}

/// The listening sockets an in-place upgrade hands to the new process.
struct Handover {
    listen: Vec<std::net::TcpListener>,
    tls_listen: Vec<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
}

impl Running {
    /// The address clients connect to (useful with port 0): the plain listener's, or the TLS one's without it.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS listener's address, when on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The upstream requests go to (the built-in echo upstream's address when none was configured).
    pub fn upstream_addr(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// A handle that can begin a graceful shutdown from another thread (a signal handler thread).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
            wakers: self.wakers.clone(),
            handover: self.handover.clone(),
        }
    }

    /// Waits for every worker to finish. Returns how many requests `--shutdown-timeout` cut (0 after a clean
    /// drain).
    pub fn join(self) -> io::Result<usize> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker panicked")),
            }
        }
        if let Some(log) = &self.shared.access_log {
            log.close(Duration::from_secs(2));
        }
        if let Some(l) = &self.shared.limiter {
            crate::info!("rate-limit table: {} evictions", l.table().evictions());
        }
        result.map(|()| self.shared.cut_at_shutdown.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    handover: Arc<Handover>,
}

impl ShutdownHandle {
    /// Replaces the policy with the one `config` describes (and its `--limits` file). On error the old policy
    /// stays and the error says why. Returns the settings that differ but need a restart (ignored).
    pub fn reload(&self, config: Result<Config, String>) -> Result<Vec<RestartOnly>, String> {
        let result = config.and_then(|c| self.try_reload(&c));
        self.shared.status.reloads[result.is_err() as usize].fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_reload(&self, config: &Config) -> Result<Vec<RestartOnly>, String> {
        let old = &self.shared.config;
        if config.rate.is_some() != old.rate.is_some() {
            return Err("turning the rate limit on or off (--rate 0) needs a restart".into());
        }
        let rules = crate::rules::Rules::build(config, self.shared.limiter.as_deref())?;
        let ignored = restart_only_changes(old, config);
        if config.upstreams.pools.is_empty() && self.shared.echo.is_none() {
            return Err(
                "the built-in echo upstream is started only with no --upstream at start: give --upstream".into(),
            );
        }
        crate::log::set_level(config.log_level);
        self.shared.rules.replace(rules);
        // Pools, routes and health: the workers take the new ones at their next iteration (requests already
        // sent finish on their old server; pooled connections are closed).
        let pools = build_pools(config, self.shared.echo);
        let (current, _) = self.shared.pools.get();
        let same =
            current.specs() == pools.specs() && current.routes == pools.routes && current.health() == pools.health();
        if !same {
            self.shared.pools.replace(pools);
            crate::info!("upstream pools and routes reloaded");
        }
        if let Some(tls) = &self.shared.tls {
            // The certificates are re-read from the same files; a failure keeps the old set (and the policy
            // reload stands).
            match tls.reload() {
                Ok(()) => crate::info!("TLS certificates reloaded"),
                Err(e) => crate::warn!("TLS certificates: reload refused, the old set stays: {e}"),
            }
            for w in tls.expiry_warnings(std::time::SystemTime::now()) {
                crate::warn!("{w}");
            }
        }
        for w in &self.wakers {
            let _ = w.wake();
        }
        Ok(ignored)
    }

    /// In-place upgrade (SIGUSR2): starts `program` with `args`, handing it the listening sockets, and waits
    /// (at most `wait`) until it says it serves. Returns its pid; the caller then drains this process. On any
    /// failure the new process is stopped and this one goes on serving.
    pub fn upgrade(&self, program: &std::path::Path, args: &[std::ffi::OsString], wait: Duration) -> io::Result<u32> {
        use std::os::fd::AsRawFd;
        let h = &self.handover;
        let mut names = Vec::new();
        for l in &h.listen {
            names.push(format!("{}:listen", l.as_raw_fd()));
        }
        for l in &h.tls_listen {
            names.push(format!("{}:tls-listen", l.as_raw_fd()));
        }
        if let Some(a) = &h.admin {
            names.push(format!("{}:admin", a.as_raw_fd()));
        }
        let all = || h.listen.iter().chain(&h.tls_listen).chain(h.admin.iter());
        let (mut reader, writer) = std::io::pipe()?;
        socket2::SockRef::from(&writer).set_cloexec(false)?;
        for l in all() {
            crate::inherit::set_inheritable(l, true)?;
        }
        let spawned = std::process::Command::new(program)
            .args(args)
            .env(crate::inherit::INHERITED_FDS, names.join(","))
            .env(crate::inherit::READY_FD, writer.as_raw_fd().to_string())
            .spawn();
        for l in all() {
            let _ = crate::inherit::set_inheritable(l, false);
        }
        drop(writer);
        let mut child = spawned?;
        // The new process writes one byte once it serves; EOF (it exited) or silence means it failed.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = tx.send(io::Read::read(&mut reader, &mut b).map(|n| n == 1).unwrap_or(false));
        });
        match rx.recv_timeout(wait) {
            Ok(true) => {
                self.shared.status.handed_over.store(true, Ordering::Release);
                Ok(child.id())
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "the new process did not start serving within {wait:?}"
                )))
            }
        }
    }

    /// The access log (if any) is reopened by its path before its next write.
    pub fn reopen_access_log(&self) {
        if let Some(log) = &self.shared.access_log {
            log.reopen();
        }
    }

    /// `/readyz` answers 503 from now on (a load balancer takes the node out), nothing else changes yet.
    pub fn unready(&self) {
        self.shared.status.unready.store(true, Ordering::Release);
    }

    /// Stop accepting, finish in-flight requests, close idle connections, then let the workers exit.
    pub fn shutdown(&self) {
        self.shared.status.unready.store(true, Ordering::Release);
        self.shared.shutdown.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// SO_REUSEPORT lets another process (a second portcullis started by mistake) bind the same port and silently
/// take part of the traffic. A probe bind without it fails if anything listens there already.
fn refuse_shared_port(addr: SocketAddr, flag: &str) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("{flag} {addr}: already in use: {}", port_holder(addr.port())),
            )
        } else {
            io::Error::new(e.kind(), format!("{flag} {addr}: {e}"))
        }
    })
}

/// What holds local TCP port `port`, as far as /proc/net/tcp{,6} tells (Linux).
fn port_holder(port: u16) -> &'static str {
    let hex = format!(":{port:04X}");
    let mut connection = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 3 && f[1].ends_with(&hex) {
                if f[3] == "0A" {
                    return "a server listens on it (another portcullis, or another program: `ss -ltnp` names it)";
                }
                connection = true;
            }
        }
    }
    if connection {
        "a connection uses it as its local port (an ephemeral port: choose a listen port outside \
         net.ipv4.ip_local_port_range)"
    } else {
        "by a socket this process cannot see (`ss -tanp` may name it)"
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// A fresh random seed for the limiter's hashes: SipHash under std's per-process random keys (drawn from the
/// OS), over 0 to 7.
pub fn random_seed() -> crate::limit::Seed {
    use std::hash::BuildHasher;
    let keys = std::collections::hash_map::RandomState::new();
    crate::limit::Seed(std::array::from_fn(|i| keys.hash_one(i)))
}

/// The process's limiter for `config` (its table allocated), if the rate limit is on.
pub fn build_limiter(config: &Config) -> Option<crate::limit::Limiter> {
    config.rate.as_ref().map(|r| {
        let l = crate::limit::Limiter::new(
            crate::limit::Gcra::new(r.rate, r.burst),
            r.table_slots,
            r.key.clone(),
            r.trust_forwarded_for,
            std::time::Instant::now(),
            random_seed(),
        )
        .with_ip_backstop(r.ip.clone());
        let l = match &r.secret {
            Some((_, secret)) => l.with_secret(&secret.0),
            None => l,
        };
        match r.fleet() {
            true => l.fleet(config.workers, crate::redis_sync::JOURNAL_CAPACITY),
            false => l,
        }
    })
}

/// Binds the listeners, starts the built-in echo upstream if none is configured, and starts the workers.
pub fn start(config: Config) -> io::Result<Running> {
    start_with(config, None)
}

/// [`start`], with listeners handed over (systemd socket activation, or an in-place upgrade) instead of bound.
pub fn start_with(config: Config, inherited: Option<crate::inherit::Inherited>) -> io::Result<Running> {
    let echo = if config.upstreams.pools.is_empty() {
        let a = crate::echo::start()?;
        crate::warn!("no --upstream given: relaying to the built-in echo upstream on {a} (for trying it out)");
        Some(a)
    } else {
        None
    };
    let pools = build_pools(&config, echo);
    if pools.routes.default.is_none() && pools.routes.trivial() {
        crate::warn!("no pool named default and no --route: every request will be answered 404 no_route");
    }
    // Named in the start-up line and sent as Host for HTTP/1.0 requests without one.
    let upstream = {
        let specs = pools.specs();
        let p = pools.pool_named("default").unwrap_or(0);
        specs[p].servers[0].addr
    };
    let pools = Arc::new(crate::pool::Live::new(pools));
    let syncer = match config.rate.as_ref().filter(|r| r.fleet()) {
        Some(r) => Some(crate::redis_sync::Syncer::for_config(r).map_err(io::Error::other)?),
        None => None,
    };
    if let Some(r) = config
        .rate
        .as_ref()
        .filter(|r| r.ip.is_some() && r.trust_forwarded_for == 0)
    {
        if let Some(b) = &r.ip {
            crate::warn!(
                "the per-address limit (--ip-rate {}) counts socket peers: behind a load balancer or proxy, set \
                 --trust-forwarded-for (or every client shares the proxy's budget)",
                b.rate
            );
        }
    }
    let limiter = build_limiter(&config).map(Arc::new);
    let rules = crate::rules::Rules::build(&config, limiter.as_deref()).map_err(io::Error::other)?;
    let tls = match &config.tls {
        Some(t) => {
            let tls = crate::tls::Tls::load(&t.settings).map_err(io::Error::other)?;
            for w in tls.expiry_warnings(std::time::SystemTime::now()) {
                crate::warn!("{w}");
            }
            Some(Arc::new(tls))
        }
        None => None,
    };
    let (inherited_listen, inherited_tls, inherited_admin) = match inherited {
        Some(i) => (i.listen, i.tls_listen, i.admin),
        None => Default::default(),
    };
    // `handover`: each distinct listening socket once, kept for an in-place upgrade (the new process inherits
    // them); the workers' listeners are dups of these or the same sockets.
    let (plain, handover) = per_worker(config.listen, inherited_listen, config.workers, "--listen")?;
    if !inherited_tls.is_empty() && config.tls.is_none() {
        return Err(io::Error::other(
            "TLS listening sockets (tls-listen) were handed over, but no --tls-listen is configured",
        ));
    }
    let tls_addr_config = config.tls.as_ref().map(|t| t.listen);
    let (tls_listeners, tls_handover) = per_worker(tls_addr_config, inherited_tls, config.workers, "--tls-listen")?;
    let tls_addr = tls_listeners.first().and_then(|l| l.as_ref()?.local_addr().ok());
    let addr = match plain.first().and_then(|l| l.as_ref()) {
        Some(l) => l.local_addr()?,
        None => tls_addr.ok_or_else(|| io::Error::other("no listener"))?,
    };
    let shared = Arc::new(Shared {
        upstream,
        settings: machine_settings(&config, upstream),
        rules: crate::rules::Current::new(rules),
        open: AtomicUsize::new(0),
        status: Default::default(),
        shutdown: Default::default(),
        cut_at_shutdown: AtomicUsize::new(0),
        upstream_failures: AtomicU64::new(0),
        upstream_warned_at: AtomicU64::new(0),
        metrics: (0..config.workers).map(|_| Default::default()).collect(),
        tunnels: crate::proxy::tunnel::Tunnels::new(config.tunnel.map_or(0, |t| t.max)),
        pools,
        echo,
        access_log: match &config.access_log {
            Some(p) => {
                let sink =
                    crate::access_log::Sink::open(p).map_err(|e| io::Error::other(format!("--access-log {p}: {e}")))?;
                Some(crate::access_log::Hub::start(sink, config.workers)?)
            }
            None => None,
        },
        limiter,
        redis: syncer.as_ref().map(|s| s.stats.clone()),
        tls_config: tls.as_ref().map(|t| t.server_config()),
        tls,
        config,
    });
    if let (Some(syncer), Some(r), Some(l)) = (syncer, shared.config.rate.as_ref(), shared.limiter.as_ref()) {
        crate::redis_sync::start(l.clone(), shared.shutdown.clone(), syncer, r.redis_sync)?;
    }
    let mut admin_handover = None;
    if let Some(a) = shared.config.admin {
        let listener = match inherited_admin {
            Some(l) => l,
            None => {
                std::net::TcpListener::bind(a).map_err(|e| io::Error::new(e.kind(), format!("--admin {a}: {e}")))?
            }
        };
        admin_handover = Some(listener.try_clone()?);
        let bound = crate::admin::serve_on(listener, shared.admin_handle())?;
        crate::info!("admin listening on {bound}");
    }
    crate::health::start(
        shared.pools.clone(),
        shared.config.upstreams.checks,
        shared.shutdown.clone(),
    )?;
    crate::health::start_dns(
        shared.pools.clone(),
        shared.config.upstreams.dns_refresh,
        shared.shutdown.clone(),
    )?;
    let mut wakers = Vec::new();
    let mut threads = Vec::new();
    for (id, (plain, tls)) in plain.into_iter().zip(tls_listeners).enumerate() {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        let mio = |l: Option<std::net::TcpListener>| l.map(mio::net::TcpListener::from_std);
        let worker = Worker::new(id, poll, mio(plain), mio(tls), shared.clone())?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{id}"))
                .spawn(move || worker.run())?,
        );
    }
    if let Some(t) = tls_addr {
        crate::info!("TLS listening on {t}");
    }
    crate::info!(
        "listening on {addr} with {} workers, upstream {upstream}; max head {} B, max body {} B, max connections {}",
        shared.config.workers,
        shared.config.limits.max_head,
        shared.config.limits.max_body,
        shared.config.max_connections
    );
    Ok(Running {
        addr,
        shared,
        wakers,
        threads,
        tls_addr,
        handover: Arc::new(Handover {
            listen: handover,
            tls_listen: tls_handover,
            admin: admin_handover,
        }),
    })
}

/// One listening socket per worker for `addr` (if configured): the handed-over ones (worker i takes socket i
/// mod n), or bound here with SO_REUSEPORT. Returns the workers' sockets and each distinct socket once (for a
/// later hand-over).
#[allow(clippy::type_complexity)]
fn per_worker(
    addr: Option<SocketAddr>,
    inherited: Vec<std::net::TcpListener>,
    workers: usize,
    flag: &str,
) -> io::Result<(Vec<Option<std::net::TcpListener>>, Vec<std::net::TcpListener>)> {
    if !inherited.is_empty() {
        // Handed over: no bind (and no "already in use" probe: the previous process may still hold them).
        let n = inherited.len();
        if n > workers {
            return Err(io::Error::other(format!(
                "{n} listening sockets ({flag}) were handed over, more than --workers {workers}: each needs a worker"
            )));
        }
        let listeners = (0..workers)
            .map(|i| inherited[i % n].try_clone().map(Some))
            .collect::<io::Result<Vec<_>>>()?;
        return Ok((listeners, inherited));
    }
    let Some(addr) = addr else {
        return Ok(((0..workers).map(|_| None).collect(), Vec::new()));
    };
    if addr.port() != 0 {
        refuse_shared_port(addr, flag)?;
    }
    let first = bind(addr).map_err(|e| io::Error::new(e.kind(), format!("{flag} {addr}: {e}")))?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers {
        listeners.push(bind(bound)?);
    }
    let handover = listeners
        .iter()
        .map(|l| l.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    Ok((listeners.into_iter().map(Some).collect(), handover))
}

/// The pools `config` describes (the echo upstream as the pool `default` when it names none).
fn build_pools(config: &Config, echo: Option<SocketAddr>) -> crate::pool::Pools {
    let mut upstreams = config.upstreams.clone();
    if let (true, Some(a)) = (upstreams.pools.is_empty(), echo) {
        upstreams.pools.push(crate::pool::PoolSpec {
            name: "default".into(),
            servers: vec![crate::pool::ServerSpec {
                addr: a,
                name: a.to_string(),
                weight: 1,
            }],
            balance: crate::pool::Balance::P2c,
            health: None,
        });
    }
    crate::pool::Pools::new(upstreams.pools, upstreams.routes, upstreams.health, config.workers)
}

/// The connection machine's settings from the configuration.
fn machine_settings(config: &Config, upstream: SocketAddr) -> crate::proxy::Settings {
    let t = config.timeouts;
    crate::proxy::Settings {
        timeouts: crate::proxy::Timeouts {
            header: t.header,
            body: t.body,
            idle: t.idle,
            upstream_connect: t.upstream_connect,
            upstream: t.upstream,
            linger_timeout: t.linger_timeout,
            linger_time: t.linger_time,
        },
        limits: config.limits,
        // The `Host` sent upstream when an HTTP/1.0 client sent none.
        upstream_host: upstream.to_string().into_bytes(),
        tunnel: config.tunnel,
        retries: config.upstreams.retries,
    }
}
