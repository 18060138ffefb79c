//! The request path's shell: one event loop per worker thread, feeding each client connection's machine
//! (`proxy::Connection`) the events of its sockets and timers and performing the actions it answers.
//!
//! Each worker owns its `mio::Poll`, its listener (SO_REUSEPORT), a slab of client connections, a slab of
//! upstream connections (in use or pooled), its buffer pool and its timing wheel. Sockets are registered
//! once, edge-triggered, for both directions; readiness bits live in user space, so no interest is ever
//! re-registered. Tokens carry a generation so an event for a closed connection never reaches a new one
//! that reused its slab slot.

mod prelude;
mod upstream;

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::access_log::{AccessLog, Logs};
use crate::buf::BufPool;
use crate::listen::Listener;
use crate::metrics::add;
use crate::proxy::{Action, Connection, Cx, Input, Scratch, DRAIN_IDLE_GRACE};
use crate::rules::Rules;
use crate::server::Shared;
use crate::timer::{Entry as TimerEntry, Wheel, TICK};
use crate::transport::{
    count_failure, handshake_outcome, input, read_once, tls_flush, tls_read, tls_write, write_out, write_some, Ready,
    Tls,
};

pub const WAKER: Token = Token(usize::MAX);
/// The listeners' tokens: the plain one, then the TLS one.
const LISTENER: usize = usize::MAX - 1;
const LISTENERS: usize = 2;
const UP_BIT: usize = 1 << 63;
const GEN_MASK: u32 = 0x7fff_ffff;
/// Steps one connection may take per event before yielding to the others (a spinning readiness loop would
/// otherwise starve the worker).
const STEP_CAP: u32 = 256;
/// Connections accepted per loop iteration before events are served again.
const ACCEPT_BATCH: usize = 128;
/// A pooled upstream connection idle longer than this is closed rather than reused.
const UPSTREAM_IDLE_MAX: Duration = Duration::from_secs(30);
/// After an iteration that had events, poll once more without sleeping before blocking: under load the next
/// events are usually already there, and a worker that does not go to sleep between them answers sooner
/// (costs one extra `epoll_wait` per busy iteration, ~0.04 per request at 64 connections).
const SPIN: u32 = 1;

/// A client connection: its socket, its readiness, and its machine.
struct Client {
    sock: TcpStream,
    gen: u32,
    io: Ready,
    /// The tick of this connection's live wheel entry (0: none), and the deadline it was scheduled for: a
    /// deadline at or after that one needs no new entry (the entry fires no later than its tick, and the
    /// expiry re-arms for the later deadline), which spares the tick arithmetic on most calls.
    timer_tick: u64,
    timer_deadline: Instant,
    upstream: Option<usize>,
    /// The server (in `Shared::pools`) of the attached upstream connection, and the servers of its pool
    /// already tried for the current request (a bit each).
    server: Option<u32>,
    tried: u64,
    /// Servers whose pooled connection had gone stale for this request: avoided if another server can take
    /// the retry, not excluded (a pool of one, or with the others out, retries the same server).
    avoid: u64,
    /// Over TLS: the write side is to be shut once rustls's last records (the close_notify among them) are
    /// on the socket.
    shut_pending: bool,
    /// When the attached upstream connection was given to the current request.
    attached_us: u64,
    /// The pools' generation `server` belongs to.
    server_gen: u32,
    conn: Connection,
    /// Over TLS: rustls's state (boxed: a plain connection stays small).
    tls: Option<Box<Tls>>,
    /// Its PROXY protocol header is still to come (`--proxy-protocol`).
    preamble: bool,
}

/// An upstream connection, owned by the worker's upstream slab.
struct Upstream {
    sock: TcpStream,
    gen: u32,
    io: Ready,
    connected: bool,
    /// The client (key, generation) this connection serves; `None` while pooled.
    owner: Option<(usize, u32)>,
    /// Its server (in `Shared::pools`), and the generation of that server's address it was made to.
    server: u32,
    addr_gen: u32,
    idle_since: Instant,
}

fn is_listener(t: Token) -> bool {
    t.0 <= LISTENER && t.0 > LISTENER - LISTENERS
}

fn token(key: usize, gen: u32, upstream: bool) -> Token {
    Token(((gen as usize) << 32) | key | if upstream { UP_BIT } else { 0 })
}

fn split(t: Token) -> (usize, u32, bool) {
    (t.0 & 0xffff_ffff, ((t.0 >> 32) as u32) & GEN_MASK, t.0 & UP_BIT != 0)
}

pub struct Worker {
    id: usize,
    poll: Poll,
    events: Option<Events>,
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    clients: Slab<Client>,
    ups: Slab<Upstream>,
    /// Pooled upstream connections, per server (LIFO).
    idle_ups: Vec<Vec<usize>>,
    /// This worker's balancing state.
    chooser: crate::pool::Chooser,
    /// The pools in force for this worker, their generation, and the ones before (for the requests routed
    /// under them and not yet sent).
    pools: Arc<crate::pool::Pools>,
    pools_gen: u64,
    prev_pools: Option<(Arc<crate::pool::Pools>, u64)>,
    bufs: BufPool,
    /// The policy this worker decides with, and its generation (see `crate::rules`).
    rules: Arc<Rules>,
    rules_gen: u64,
    scratch: Scratch,
    date: crate::http::date::DateCache,
    log: Option<AccessLog>,
    /// Unix milliseconds at the top of this iteration.
    wall_ms: u64,
    wall: crate::clock::WallClock,
    wheel: Wheel,
    expired: Vec<TimerEntry>,
    pending: Vec<(usize, u32)>,
    next_gen: u32,
    now: Instant,
    /// `now` in microseconds since the worker's clock was made (worked out once per iteration with
    /// `wall_ms`: request durations are then one subtraction, and never jump with the real clock).
    mono_us: u64,
    draining: bool,
    drain_deadline: Instant,
}

impl Worker {
    /// A worker around a bound listener; `poll` must be the one `waker` was made from.
    /// A worker around its bound listeners (plain, TLS: at least one); `poll` must be the one `waker` was
    /// made from.
    pub fn new(
        id: usize,
        poll: Poll,
        plain: Option<TcpListener>,
        tls: Option<TcpListener>,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        let mut listeners = Vec::new();
        for (i, (l, is_tls)) in [(plain, false), (tls, true)].into_iter().enumerate() {
            if let Some(l) = l {
                listeners.push(Listener::new(l, poll.registry(), Token(LISTENER - i), id, is_tls)?);
            }
        }
        let now = Instant::now();
        let buf_size = (shared.config.limits.max_head + 1024).max(16 * 1024);
        let max_free = (shared.config.max_connections / shared.config.workers.max(1)).clamp(64, 4096);
        let (rules, rules_gen) = shared.rules.get();
        let mut scratch = Scratch::new(&rules);
        // Request ids: this worker's generator, from a fresh process-random seed mixed with its index.
        scratch.ids = crate::proxy::request_id::Ids::new(crate::server::random_seed().0[0], id);
        let log = shared.access_log.as_ref().and_then(|hub| hub.worker(id, now));
        let (pools, pools_gen) = shared.pools.get();
        let idle_ups = (0..pools.len()).map(|_| Vec::with_capacity(64)).collect();
        let chooser = crate::pool::Chooser::new(crate::server::random_seed().0[1] ^ id as u64, &pools);
        Ok(Worker {
            id,
            poll,
            events: Some(Events::with_capacity(1024)),
            listeners,
            shared,
            clients: Slab::with_capacity(1024),
            ups: Slab::with_capacity(1024),
            idle_ups,
            chooser,
            pools,
            pools_gen,
            prev_pools: None,
            bufs: BufPool::new(buf_size, max_free),
            rules,
            rules_gen,
            scratch,
            date: Default::default(),
            log,
            wall_ms: 0,
            wall: crate::clock::WallClock::new(now),
            wheel: Wheel::new(now),
            expired: Vec::with_capacity(1024),
            pending: Vec::with_capacity(64),
            next_gen: 1,
            now,
            mono_us: 0,
            draining: false,
            drain_deadline: now,
        })
    }

    /// Runs until shutdown has been requested and every connection is finished (or the shutdown timeout).
    pub fn run(mut self) -> io::Result<()> {
        let mut spin = 0u32;
        loop {
            let mut timeout = self.poll_timeout();
            if spin > 0 {
                timeout = Some(Duration::ZERO);
            }
            let mut events = self.events.take().expect("events");
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            if self.shared.rules.generation() != self.rules_gen {
                // A reload: requests from here on see the new policy (one decided already keeps its verdict).
                let (rules, generation) = self.shared.rules.get();
                self.scratch.policy_changed(&self.rules, &rules);
                self.rules = rules;
                self.rules_gen = generation;
            }
            if self.shared.pools.generation() != self.pools_gen {
                self.pools_changed();
            }
            // One reading for both (a refresh of the real clock may step it: durations saturate at 0).
            let reading = self.wall.read(self.now);
            self.mono_us = reading.mono_us;
            self.wall_ms = reading.unix_us / 1000;
            self.date.set(self.wall_ms / 1000);
            spin = if events.is_empty() { 0 } else { SPIN };
            // Pooled upstream connections first: one that spoke or closed unasked is closed before a client
            // event of the same batch can take it from the pool (its bytes would be read as that client's
            // response).
            for ev in events.iter() {
                let t = ev.token();
                if t != WAKER && !is_listener(t) && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                    let (key, gen, is_up) = split(t);
                    if is_up {
                        self.pooled_event(key, gen);
                    }
                }
            }
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    if self.shared.shutdown.load(Ordering::Acquire) && !self.draining {
                        self.begin_drain();
                    }
                    continue;
                }
                if is_listener(t) {
                    let tls = LISTENER - t.0 == 1;
                    for l in self.listeners.iter_mut().filter(|l| l.tls == tls) {
                        l.readable();
                    }
                    continue;
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                let hup = ev.is_read_closed() || ev.is_error();
                let (key, gen, is_up) = split(t);
                if is_up {
                    self.upstream_event(key, gen, readable, writable, hup);
                } else if let Some(c) = self.clients.get_mut(key) {
                    if c.gen == gen {
                        c.io.readable |= readable;
                        c.io.writable |= writable;
                        c.io.hup |= hup;
                        self.drive(key);
                    }
                }
            }
            self.events = Some(events);
            let pending = std::mem::take(&mut self.pending);
            for &(key, gen) in &pending {
                if self.clients.get(key).is_some_and(|c| c.gen == gen) {
                    self.drive(key);
                }
            }
            let mut pending = pending;
            pending.clear();
            if self.pending.is_empty() {
                self.pending = pending;
            }
            self.expire_timers();
            self.accept();
            if let Some(log) = self.log.as_mut().filter(|l| l.due(self.now)) {
                if let Err(e) = log.flush(self.now) {
                    crate::warn!("worker {}: access log write failed: {e}", self.id);
                }
            }
            if self.draining && (self.clients.is_empty() || self.now >= self.drain_deadline) {
                self.close_remaining();
                if let Some(log) = self.log.as_mut() {
                    log.flush_final(Duration::from_secs(2));
                }
                return Ok(());
            }
        }
    }

    /// A reload replaced the pools: pooled connections (indexed by the old servers) are closed, the
    /// balancing state starts again; requests in flight finish on their old server and their connections are
    /// not pooled.
    fn pools_changed(&mut self) {
        let (pools, gen) = self.shared.pools.get();
        for list in &mut self.idle_ups {
            for k in list.drain(..) {
                self.ups.remove(k);
            }
        }
        self.idle_ups = (0..pools.len()).map(|_| Vec::with_capacity(64)).collect();
        self.chooser = crate::pool::Chooser::new(crate::server::random_seed().0[1] ^ self.id as u64, &pools);
        let old = std::mem::replace(&mut self.pools, pools);
        self.prev_pools = Some((old, self.pools_gen));
        self.pools_gen = gen;
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut t = self.wheel.poll_timeout(self.now);
        let mut cap = |d: Duration| t = Some(t.map_or(d, |x| x.min(d)));
        for d in self.listeners.iter().filter_map(|l| l.poll_within()) {
            cap(d);
        }
        if self.draining {
            cap(TICK);
        }
        if self.log.as_ref().is_some_and(|l| !l.is_empty()) {
            cap(crate::access_log::FLUSH_EVERY);
        }
        t
    }

    fn next_gen(&mut self) -> u32 {
        self.next_gen = (self.next_gen + 1) & GEN_MASK;
        self.next_gen
    }

    fn accept(&mut self) {
        let max = self.shared.config.max_connections;
        for i in 0..self.listeners.len() {
            for _ in 0..ACCEPT_BATCH {
                let tls = self.listeners[i].tls;
                match self.listeners[i].next(self.now, &self.shared.open, max) {
                    Some((sock, peer)) => self.add_client(sock, peer, tls),
                    None => break,
                }
            }
        }
    }

    fn add_client(&mut self, mut sock: TcpStream, peer: std::net::SocketAddr, tls: bool) {
        let preamble = self.shared.config.proxy_protocol.is_some();
        if let Some(pp) = &self.shared.config.proxy_protocol {
            if !pp.from.iter().any(|c| c.contains(peer.ip())) {
                // Not one of the load balancers: closed before anything is read (dropping the socket).
                add(&self.shared.metrics[self.id].proxy_headers[3], 1);
                return;
            }
        }
        let tls = match (tls, &self.shared.tls_config) {
            (false, _) => None,
            (true, Some(config)) => match rustls::ServerConnection::new(config.clone()) {
                Ok(conn) => Some(Box::new(Tls { conn, counted: false })),
                Err(_) => return,
            },
            (true, None) => return,
        };
        let _ = sock.set_nodelay(true);
        let gen = self.next_gen();
        let entry = self.clients.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut sock,
                token(key, gen, false),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        self.shared.open.fetch_add(1, Ordering::Relaxed);
        let m = &self.shared.metrics[self.id];
        add(&m.conns_accepted, 1);
        let mut conn = Connection::new(peer.ip(), self.shared.settings.timeouts.header, self.now);
        if tls.is_some() {
            add(&m.tls_opened, 1);
            conn.over_tls();
        }
        entry.insert(Client {
            sock,
            gen,
            io: Ready {
                readable: false,
                writable: true,
                hup: false,
            },
            timer_tick: 0,
            timer_deadline: self.now,
            upstream: None,
            server: None,
            tried: 0,
            avoid: 0,
            shut_pending: false,
            attached_us: self.mono_us,
            server_gen: 0,
            conn,
            tls,
            preamble,
        });
        self.arm_timer(key);
    }

    /// Makes sure the wheel will look at `key` no later than its deadline (inline: most calls find the
    /// entry in place and return).
    #[inline]
    fn arm_timer(&mut self, key: usize) {
        let c = &self.clients[key];
        if c.timer_tick == 0 || c.conn.deadline() < c.timer_deadline {
            self.schedule_timer(key);
        }
    }

    #[inline(never)]
    fn schedule_timer(&mut self, key: usize) {
        let c = &mut self.clients[key];
        let deadline = c.conn.deadline();
        let tick = self.wheel.tick_of(deadline);
        if c.timer_tick == 0 || tick < c.timer_tick {
            c.timer_tick = self.wheel.schedule(key, c.gen, deadline);
        }
        // The live entry fires no later than this deadline's tick either way.
        c.timer_deadline = deadline;
    }

    /// Runs `f` on client `key`, its upstream connection (if any) and the machine's view of the worker.
    fn with_client<R>(
        &mut self,
        key: usize,
        f: impl FnOnce(&mut Client, Option<&mut Upstream>, &mut Cx<'_>) -> R,
    ) -> R {
        let Worker {
            clients,
            ups,
            bufs,
            id,
            rules,
            scratch,
            date,
            log,
            wall_ms,
            mono_us,
            shared,
            now,
            draining,
            pools,
            pools_gen,
            ..
        } = self;
        let c = &mut clients[key];
        let mut logs = Logs(log.as_mut());
        let mut cx = Cx {
            settings: &shared.settings,
            rules,
            limiter: shared.limiter.as_deref(),
            metrics: &shared.metrics[*id],
            worker: *id,
            bufs,
            scratch,
            log: &mut logs,
            date: date.text(),
            wall_ms: *wall_ms,
            now: *now,
            mono_us: *mono_us,
            draining: *draining,
            tunnels: &shared.tunnels,
            pools,
            pools_gen: *pools_gen as u32,
        };
        let up = c.upstream.map(|k| &mut ups[k]);
        f(c, up, &mut cx)
    }

    /// Drives client `key` until it waits, closes, or hits the step cap. The socket actions run within one
    /// borrow of the client and its context; an action that needs the worker's slabs (an upstream connection
    /// to attach or release, a close) ends the borrow, is performed, and is reported at the next one.
    fn drive(&mut self, key: usize) {
        let c = &self.clients[key];
        if (c.tls.is_some() || c.preamble) && !self.drive_prelude(key) {
            return;
        }
        self.drive_machine(key);
    }

    /// Runs the machine of client `key` (see [`Worker::drive`]).
    fn drive_machine(&mut self, key: usize) {
        let mut steps = 0;
        let mut attached = None;
        while steps < STEP_CAP {
            let (action, n) = self.with_client(key, |c, mut up, cx| {
                match attached.take() {
                    Some(Attach::Ok { reused, connected }) => c.conn.upstream_attached(reused, connected, cx),
                    Some(Attach::Failed) => c.conn.upstream_connect_failed(cx),
                    Some(Attach::NoHealthy) => c.conn.no_healthy_upstream(cx),
                    None => {}
                }
                let mut n = 0;
                while steps + n < STEP_CAP {
                    n += 1;
                    let a = c.conn.poll(cx);
                    match perform(a, c, up.as_deref_mut(), cx) {
                        Some(true) => {}
                        // A tunnel's other side may still move.
                        Some(false) if c.conn.blocked() => {}
                        Some(false) => {
                            c.conn.park(cx);
                            return (Some(Action::Wait), n);
                        }
                        None => return (Some(a), n),
                    }
                }
                (None, n)
            });
            steps += n;
            match action {
                Some(Action::OpenUpstream { fresh }) => attached = Some(self.attach_upstream(key, fresh)),
                Some(Action::ReleaseUpstream { reusable, failure }) => {
                    let c = &mut self.clients[key];
                    let stale = failure == Some(crate::proxy::POOLED_CLOSED);
                    let outcome = match (failure, c.conn.upstream_status()) {
                        (Some(_), _) if stale => None,
                        (Some(_), _) => Some(crate::pool::Outcome::Failed),
                        (None, 0) => None,
                        (None, status) => Some(crate::pool::Outcome::Status(status)),
                    };
                    // A server of pools a reload has replaced since is nobody's concern any more.
                    let server = c.server.filter(|_| c.server_gen == self.pools_gen as u32);
                    if let (Some(s), Some(_)) = (server, failure) {
                        // The retry goes to another server of the pool (after a stale pooled connection, only
                        // if one can take it).
                        let bit = self.pools.bit(s as usize);
                        if stale {
                            c.avoid |= bit;
                        } else {
                            c.tried |= bit;
                        }
                    }
                    self.release_upstream(key, reusable, outcome);
                    if let (Some(what), Some(s), false) = (failure, server, stale) {
                        self.shared.upstream_failed(self.pools.addr(s as usize), what);
                    }
                }
                Some(Action::Close { reset }) => {
                    self.close_client(key, reset);
                    return;
                }
                Some(Action::Wait) => {
                    self.arm_timer(key);
                    return;
                }
                _ => {}
            }
        }
        if let Some(attached) = attached {
            // The cap fell between an attach and its report.
            self.with_client(key, |c, _, cx| match attached {
                Attach::Ok { reused, connected } => c.conn.upstream_attached(reused, connected, cx),
                Attach::Failed => c.conn.upstream_connect_failed(cx),
                Attach::NoHealthy => c.conn.no_healthy_upstream(cx),
            });
        }
        let gen = self.clients[key].gen;
        self.pending.push((key, gen));
    }

    /// Closes client `key`: cleanly (over TLS with a close_notify), or with a reset when its response was
    /// cut (a clean end would make a cut close-delimited body look complete; a close_notify too).
    fn close_client(&mut self, key: usize, reset: bool) {
        let m = &self.shared.metrics[self.id];
        let c = &mut self.clients[key];
        if reset {
            let _ = socket2::SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
        }
        if let Some(tls) = c.tls.as_deref_mut() {
            add(&m.tls_closed, 1);
            if !tls.counted {
                // Closed before its handshake finished: the client went away, or the header timeout ran out
                // (one closed before its PROXY header was complete never began a handshake).
                if !c.preamble {
                    count_failure(
                        m,
                        if c.conn.deadline() <= self.now {
                            "timeout"
                        } else {
                            "closed"
                        },
                    );
                }
            } else if !reset && !c.io.hup {
                // A clean close says so (close_notify), as far as the socket takes it now.
                tls.conn.send_close_notify();
                let _ = tls_flush(&mut c.sock, &mut c.io, tls);
            }
        }
        self.release_upstream(key, false, None);
        self.with_client(key, |c, _, cx| c.conn.release_buffers(cx));
        self.clients.remove(key);
        add(&self.shared.metrics[self.id].conns_closed, 1);
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// The shutdown timeout passed: closes the clients left, cutting what is in flight (a response in the
    /// middle is reset: a clean FIN would make a cut close-delimited body look complete).
    fn close_remaining(&mut self) {
        let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
        for k in keys {
            let (in_flight, reset) = self.with_client(k, |c, _, cx| (c.conn.in_flight(), c.conn.abort(cx)));
            if in_flight {
                self.shared.cut_at_shutdown.fetch_add(1, Ordering::Relaxed);
            }
            self.close_client(k, reset);
        }
    }

    fn expire_timers(&mut self) {
        let mut expired = std::mem::take(&mut self.expired);
        self.wheel.expire(self.now, &mut expired);
        for e in expired.drain(..) {
            let Some(c) = self.clients.get_mut(e.key) else {
                continue;
            };
            if c.gen != e.gen || c.timer_tick != e.tick {
                continue;
            }
            c.timer_tick = 0;
            if c.conn.deadline() > self.now {
                self.arm_timer(e.key);
                continue;
            }
            if c.preamble {
                // No complete PROXY header within --header-timeout: closed without an answer.
                add(&self.shared.metrics[self.id].proxy_headers[4], 1);
                self.close_client(e.key, false);
                continue;
            }
            self.with_client(e.key, |c, _, cx| c.conn.timer(cx));
            self.drive(e.key);
        }
        self.expired = expired;
    }

    fn begin_drain(&mut self) {
        self.draining = true;
        self.drain_deadline = self.now + self.shared.config.timeouts.shutdown;
        for l in &mut self.listeners {
            l.close(self.poll.registry());
        }
        for list in &mut self.idle_ups {
            for k in list.drain(..) {
                self.ups.remove(k);
            }
        }
        // Idle keep-alive connections are closed after a short grace, not at once: a client about to send its
        // next request gets it answered (with `Connection: close`) instead of finding the connection closed under
        // it, a race no client can avoid (it would see a reset or an empty answer).
        let close_at = (self.now + DRAIN_IDLE_GRACE).min(self.drain_deadline);
        let idle: Vec<usize> = self
            .clients
            .iter()
            .filter(|(_, c)| c.conn.is_idle())
            .map(|(k, _)| k)
            .collect();
        for k in idle {
            self.clients[k].conn.drain(close_at);
            self.arm_timer(k);
        }
    }
}

/// What [`Worker::attach_upstream`] found for a client.
#[derive(Debug, Clone, Copy)]
enum Attach {
    /// An upstream connection: from the pool (`reused`), already `connected` or connecting.
    Ok { reused: bool, connected: bool },
    /// No connection could be made (the connect failed at once, or every usable server was tried).
    Failed,
    /// The pool has no healthy server (`--panic-threshold 0`).
    NoHealthy,
}

/// Performs a socket action for client `c` and reports how it went to its machine: `Some(true)` done (poll
/// again), `Some(false)` the connection waits (for a socket's event or a timer), `None` for an action the
/// worker itself performs (attach, release, close).
fn perform(a: Action, c: &mut Client, up: Option<&mut Upstream>, cx: &mut Cx<'_>) -> Option<bool> {
    Some(match (a, up) {
        (Action::ReadClient, _) => match c.tls.as_deref_mut() {
            Some(tls) => {
                let r = tls_read(&mut c.sock, &mut c.io, tls, c.conn.client_buf(cx));
                handshake_outcome(tls, &mut c.conn, r.as_ref().err(), cx);
                input(r).map(|i| c.conn.client_read(i, cx)).is_some()
            }
            None if !c.io.readable && !c.io.hup => false,
            None => {
                let r = if c.io.readable {
                    input(read_once(&mut c.sock, &mut c.io, c.conn.client_buf(cx)))
                } else {
                    Some(Input::Eof)
                };
                r.map(|i| c.conn.client_read(i, cx)).is_some()
            }
        },
        (Action::WriteClient, _) => {
            let r = match c.tls.as_deref_mut() {
                Some(tls) => tls_write(&mut c.sock, &mut c.io, tls, c.conn.client_out()),
                None => write_out(&mut c.sock, &mut c.io, c.conn.client_out()),
            };
            match r {
                Ok(done) => done,
                Err(_) => {
                    c.conn.client_gone(cx);
                    true
                }
            }
        }
        (Action::ShutdownWrite, _) => {
            if let Some(tls) = c.tls.as_deref_mut() {
                tls.conn.send_close_notify();
                if !matches!(tls_flush(&mut c.sock, &mut c.io, tls), Ok(true) | Err(_)) {
                    // The socket is full: the FIN waits for the last records (see `drive`).
                    c.shut_pending = true;
                    return Some(true);
                }
            }
            let _ = c.sock.shutdown(std::net::Shutdown::Write);
            true
        }
        (Action::ShutdownUpstreamWrite, up) => {
            if let Some(u) = up {
                let _ = u.sock.shutdown(std::net::Shutdown::Write);
            }
            true
        }
        (Action::AwaitUpstream, Some(u)) => await_connect(u, &mut c.conn, cx),
        (Action::WriteUpstream, Some(u)) => loop {
            let data = c.conn.upstream_out();
            if data.is_empty() {
                break true;
            }
            match write_some(&mut u.sock, &mut u.io, data) {
                Ok(Some(n)) => c.conn.upstream_wrote(n, cx),
                Ok(None) => break false,
                Err(_) => {
                    c.conn.upstream_closed(cx);
                    break true;
                }
            }
        },
        (Action::ReadUpstream, Some(u)) => {
            u.io.readable
                && input(read_once(&mut u.sock, &mut u.io, c.conn.upstream_buf(cx)))
                    .map(|i| c.conn.upstream_read(i, cx))
                    .is_some()
        }
        // An upstream action without an upstream connection (cannot happen): as if it closed.
        (Action::AwaitUpstream, None) => {
            c.conn.upstream_connect_failed(cx);
            true
        }
        (Action::WriteUpstream | Action::ReadUpstream, None) => {
            c.conn.upstream_closed(cx);
            true
        }
        (Action::Wait, _) => false,
        (Action::OpenUpstream { .. } | Action::ReleaseUpstream { .. } | Action::Close { .. }, _) => return None,
    })
}

/// Whether a connect in progress finished (reported to the machine): `false` while it is still under way.
fn await_connect(u: &mut Upstream, conn: &mut Connection, cx: &mut Cx<'_>) -> bool {
    if !u.io.writable && !u.io.hup {
        return false;
    }
    if !matches!(u.sock.take_error(), Ok(None)) {
        conn.upstream_connect_failed(cx);
        return true;
    }
    match u.sock.peer_addr() {
        Ok(_) => {
            u.connected = true;
            conn.upstream_connected(cx);
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotConnected && !u.io.hup => {
            u.io.writable = false;
            false
        }
        Err(_) => {
            conn.upstream_connect_failed(cx);
            true
        }
    }
}
