//! Every transition of a client connection, in one file.
//!
//! ```text
//!            ┌──────────── next request (keep-alive) ───────────────────────────────┐
//!            ▼                                                                      │
//!  Head ──head complete──► Body ──body complete──► Upstream ──response head──► Relay ─┴─► Flush
//!    │  (no body: straight to Upstream)   │             │ (retry once on a         │         │
//!    │                                    │             │  pooled connection)      │         ├─► Discard ─► Head
//!    └── refused ──► Flush ◄── refused ───┘◄── failed ──┘                          │         └─► Linger ─► Closed
//!                                                                   cut mid-body ──┴─► Closed (reset)
//! ```
//! `Head`: reading a request head. `Body`: reading its body (a chunked one de-chunked in place).
//! `Upstream`: attaching an upstream connection, writing the request, reading the response head.
//! `Relay`: relaying the response body, reading the upstream only when the client took everything read
//! before (backpressure). `Flush`: writing the rest of an answer. `Discard`: dropping a refused request's
//! body to keep the connection. `Linger`: after the write side is shut, reading and dropping what the client
//! still sends, so that the kernel does not reset the connection (and discard the answer) while the client
//! is still writing.

use std::io::Write as _;
use std::time::Instant;

use core::net::IpAddr;

use super::decide::{Checks, Decision};
use super::request_id::{self, RequestId};
use super::tunnel::{self, Tunnel};
use super::{Action, Cx, Entry, Input, DRAIN_IDLE_GRACE, TARGET_MAX};
use crate::buf::{put_u64, Buf, Out};
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::{self, Framing, RequestHead};
use crate::http::response::{self, BodyFramer, BodyKind};
use crate::http::write::{self, ClientSide};
use crate::http::{Method, Version};
use crate::metrics::add;
use crate::problem::{Conn, Reason};

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Largest body of a refused request that is read and dropped to keep the connection (else it is closed).
const DISCARD_MAX: u64 = 64 * 1024;
/// Bytes of Host and of User-Agent kept for the access log.
const HOST_MAX: usize = 64;
const UA_MAX: usize = 96;
/// Bytes of a `traceparent` kept for the access log (a version-00 one has 55).
const TRACEPARENT_MAX: usize = 64;

/// Textual client address, kept without allocating.
#[derive(Debug, Clone, Copy)]
pub struct IpText {
    bytes: [u8; 46],
    len: u8,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut bytes = [0u8; 46];
        let mut cur = std::io::Cursor::new(&mut bytes[..]);
        let _ = write!(cur, "{ip}");
        let len = cur.position() as u8;
        IpText { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// How far the request body has been read.
#[derive(Debug)]
enum BodyState {
    /// The request ends at this offset of the input buffer.
    Length { end: usize },
    /// Payload is decoded in place: `[head][decoded payload][raw bytes not yet decoded]`.
    Chunked {
        dec: ChunkedDecoder,
        decoded_end: usize,
        raw_pos: usize,
    },
}

/// The upstream connection of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// None yet (or the last one failed and is released).
    None,
    /// Attached and still connecting; `reused`: it came from the pool.
    Connecting,
    Connected,
}

#[derive(Debug)]
enum State {
    /// Waiting for a request head. `started`: a byte of it arrived (the header timeout runs); `scanned`: the
    /// bytes held were parsed and the head is incomplete (parse again only after more bytes).
    Head { started: bool, scanned: bool },
    /// Reading the body of a request whose forwarded head is already in `fwd`.
    Body {
        head_len: usize,
        framing: Framing,
        body: BodyState,
        fwd: Buf,
    },
    /// The request is in `fwd`; `sent` bytes of it went out. The response head is read into `out`.
    Upstream {
        fwd: Buf,
        sent: usize,
        link: Link,
        /// The connection came from the pool (a retry is allowed if it fails before responding).
        reused: bool,
        /// Retries spent on this request (`--retries`).
        tries: u8,
        /// `out` was parsed and holds no complete response head.
        scanned: bool,
    },
    /// Relaying the response body (`framer` None: the body is complete).
    Relay {
        framer: Option<BodyFramer>,
        dechunk: bool,
        reusable: bool,
    },
    /// Writing the rest of `out`; then the next request, a discard, or a lingering close.
    Flush,
    /// Reading and dropping `left` bytes of a refused request's body.
    Discard { left: u64 },
    /// Write side shut; reading and dropping until the client closes, stops sending for
    /// `--linger-timeout`, or `until` (`--linger-time` after it began).
    Linger { until: Instant },
    /// A WebSocket tunnel (after the upstream's 101): client bytes go upstream through `inbuf`, upstream
    /// bytes to the client through `out`; a side is read only when the other took what was read before.
    Tunnel(Box<Tunnel>),
    /// Done: the worker closes the connection (`reset`: with a TCP reset).
    Closed { reset: bool },
}

/// What the current exchange remembers for its answer, its metrics and its access-log line.
#[derive(Debug)]
struct Exchange {
    keep_alive: bool,
    /// Close the connection after this answer.
    close_after: bool,
    method: Method,
    version: Version,
    /// When the exchange began (for the duration metric), in the worker's microseconds ([`Cx::mono_us`]).
    started_us: u64,
    decision: Decision,
    /// The upstream's status, once its head arrived.
    status: u16,
    /// Body bytes of a refused request still to be read and dropped before the next request.
    discard: u64,
    bytes_in: u64,
    bytes_out: u64,
    target: [u8; TARGET_MAX],
    target_len: u8,
    target_cut: bool,
    /// A WebSocket handshake the ingress may tunnel (`--upgrade websocket`).
    websocket: bool,
    /// The pool the request was routed to, and the server its upstream connection went to (`u32::MAX`:
    /// none yet), as indexes into `Cx::pools`.
    pool: u16,
    server: u32,
    /// The pools' generation the request was routed under, and the one its server index belongs to.
    routed_gen: u32,
    server_gen: u32,
}

impl Exchange {
    /// Starts the next exchange in place (the target's bytes stay: `target_len` says how many count).
    fn reset(&mut self, mono_us: u64) {
        self.keep_alive = true;
        self.close_after = false;
        self.method = Method::Get;
        self.version = Version::Http11;
        self.started_us = mono_us;
        self.decision = Decision::default();
        self.status = 0;
        self.discard = 0;
        self.bytes_in = 0;
        self.bytes_out = 0;
        self.target_len = 0;
        self.target_cut = false;
        self.websocket = false;
        self.pool = 0;
        self.server = u32::MAX;
        self.routed_gen = 0;
        self.server_gen = 0;
    }

    fn new() -> Exchange {
        Exchange {
            keep_alive: true,
            close_after: false,
            method: Method::Get,
            version: Version::Http11,
            started_us: 0,
            decision: Decision::default(),
            status: 0,
            discard: 0,
            bytes_in: 0,
            bytes_out: 0,
            target: [0; TARGET_MAX],
            target_len: 0,
            target_cut: false,
            websocket: false,
            pool: 0,
            server: u32::MAX,
            routed_gen: 0,
            server_gen: 0,
        }
    }
}

/// What only the access log needs of a request: Host and User-Agent (cut at their array's size), the client
/// address resolved through a trusted X-Forwarded-For (when it differs from the peer), and the upstream's
/// connect and response times in microseconds from the complete head (`u32::MAX`: none). Kept out of line,
/// allocated once per connection and only with an access log, so that idle connections stay small.
#[derive(Debug)]
struct LogFields {
    host: [u8; HOST_MAX],
    host_len: u8,
    user_agent: [u8; UA_MAX],
    user_agent_len: u8,
    client: Option<IpText>,
    up_connect_us: u32,
    up_response_us: u32,
    traceparent: [u8; TRACEPARENT_MAX],
    /// None: the request had no `traceparent`.
    traceparent_len: Option<u8>,
}

impl LogFields {
    fn reset(&mut self) {
        self.traceparent_len = None;
        self.host_len = 0;
        self.user_agent_len = 0;
        self.client = None;
        self.up_connect_us = u32::MAX;
        self.up_response_us = u32::MAX;
    }
}

/// One client connection's exchanges (see the module documentation).
#[derive(Debug)]
pub struct Connection {
    state: State,
    ex: Exchange,
    /// Client bytes not yet consumed (held only while some are in flight).
    inbuf: Option<Buf>,
    /// Bytes for the client: an answer, a relayed response; also where the response head is read.
    out: Option<Buf>,
    /// The event the machine wants before this time, else [`Connection::timer`] acts.
    deadline: Instant,
    /// An action to report before anything else (a release of the upstream, a half-close).
    pending: Option<Action>,
    peer: IpAddr,
    ip: IpText,
    logf: Option<Box<LogFields>>,
    /// The connection came in on the TLS listener (`X-Forwarded-Proto: https`).
    https: bool,
    /// What the access log says of its TLS session (kept only with an access log).
    tls: Option<Box<TlsLog>>,
    /// The current request's id (`--request-id-header`): allocated once per connection, only with the rule
    /// on; empty until the request has one.
    rid: Option<Box<RequestId>>,
}

/// The TLS session as the access log names it: the protocol version and the SNI name (cut at its array's
/// size).
#[derive(Debug)]
struct TlsLog {
    version: &'static str,
    sni: [u8; SNI_MAX],
    sni_len: u8,
}

const SNI_MAX: usize = 128;

impl Connection {
    /// A new client connection from `peer`, waiting for its first request.
    pub fn new(peer: IpAddr, header_timeout: std::time::Duration, now: Instant) -> Connection {
        Connection {
            state: State::Head {
                started: false,
                scanned: false,
            },
            ex: Exchange::new(),
            inbuf: None,
            out: None,
            deadline: now + header_timeout,
            pending: None,
            peer,
            ip: IpText::new(peer),
            logf: None,
            https: false,
            tls: None,
            rid: None,
        }
    }

    /// The connection came in on the TLS listener: forwarded requests say `X-Forwarded-Proto: https`.
    /// The connection's PROXY protocol header named `client`: it stands for the peer from here on (the
    /// limits' client address, X-Forwarded-For, the access log). Before any request byte.
    pub fn proxied_from(&mut self, client: IpAddr) {
        self.peer = client;
        self.ip = IpText::new(client);
    }

    pub fn over_tls(&mut self) {
        self.https = true;
    }

    /// Its TLS handshake finished: `version` (e.g. `TLSv1.3`) and the SNI name go into its access-log lines.
    pub fn tls_established(&mut self, version: &'static str, sni: Option<&str>, cx: &mut Cx<'_>) {
        if !cx.log.wants_entries() {
            return;
        }
        let sni = sni.unwrap_or("").as_bytes();
        let n = sni.len().min(SNI_MAX);
        let mut t = Box::new(TlsLog {
            version,
            sni: [0; SNI_MAX],
            sni_len: n as u8,
        });
        t.sni[..n].copy_from_slice(&sni[..n]);
        self.tls = Some(t);
    }

    /// When the machine acts by itself if no event comes first (the worker calls [`Connection::timer`]).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waiting for a request with nothing of one held: a drain may close it.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head { started: false, .. }) && self.inbuf.as_ref().is_none_or(|b| b.is_empty())
    }

    /// The state's name (for tests and debugging): Head, Body, Upstream, Relay, Flush, Discard, Linger, Closed.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            State::Head { .. } => "Head",
            State::Body { .. } => "Body",
            State::Upstream { .. } => "Upstream",
            State::Relay { .. } => "Relay",
            State::Flush => "Flush",
            State::Discard { .. } => "Discard",
            State::Linger { .. } => "Linger",
            State::Tunnel(_) => "Tunnel",
            State::Closed { .. } => "Closed",
        }
    }

    /// A request is in flight (a shutdown that closes the connection now cuts it).
    pub fn in_flight(&self) -> bool {
        match self.state {
            State::Head { started, .. } => started,
            State::Flush => self.out.as_ref().is_some_and(|o| !o.is_empty()),
            // A tunnel's request was answered (101): what it carries is no request.
            State::Linger { .. } | State::Closed { .. } | State::Tunnel(_) => false,
            State::Body { .. } | State::Upstream { .. } | State::Relay { .. } | State::Discard { .. } => true,
        }
    }

    /// The next action. The worker performs it and reports the outcome through the matching event method,
    /// then asks again; after [`Action::Wait`] (or an action it cannot perform yet, for want of readiness)
    /// it calls [`Connection::park`] and waits for an event.
    pub fn poll(&mut self, cx: &mut Cx<'_>) -> Action {
        loop {
            if let Some(a) = self.step(cx) {
                return a;
            }
        }
    }

    /// The worker stops driving this connection until an event: buffers that hold nothing go back (an idle
    /// tunnel holds none).
    pub fn park(&mut self, cx: &mut Cx<'_>) {
        cx.bufs.put_if_empty(&mut self.inbuf);
        if matches!(
            self.state,
            State::Head { .. } | State::Discard { .. } | State::Linger { .. } | State::Tunnel(_)
        ) {
            cx.bufs.put_if_empty(&mut self.out);
        }
        if let State::Tunnel(t) = &mut self.state {
            // The next event may unblock any side: each is tried again.
            t.blocked = 0;
        }
    }

    /// The worker could not perform the last action for want of readiness. In a tunnel the other sides may
    /// still move: `true` if the machine has another action to try (poll again), `false` to park and wait.
    #[inline]
    pub fn blocked(&mut self) -> bool {
        match &mut self.state {
            State::Tunnel(t) if t.last != 0 => {
                t.blocked |= t.last;
                t.last = 0;
                true
            }
            _ => false,
        }
    }

    // ---- buffers lent to the worker ----

    /// Where client bytes are read to.
    pub fn client_buf(&mut self, cx: &mut Cx<'_>) -> &mut Buf {
        self.inbuf.get_or_insert_with(|| cx.bufs.get())
    }

    /// The bytes to write to the client: the worker writes from the front and consumes what was written.
    pub fn client_out(&mut self) -> &mut Buf {
        self.out.get_or_insert_with(Buf::default)
    }

    /// Where upstream bytes are read to.
    pub fn upstream_buf(&mut self, cx: &mut Cx<'_>) -> &mut Buf {
        self.out.get_or_insert_with(|| cx.bufs.get())
    }

    /// The request bytes still to write to the upstream (in a tunnel: the client's bytes).
    pub fn upstream_out(&self) -> &[u8] {
        match &self.state {
            State::Upstream { fwd, sent, .. } => &fwd.data()[*sent..],
            State::Tunnel(_) => self.inbuf.as_ref().map_or(&[], |b| b.data()),
            _ => &[],
        }
    }

    // ---- events ----

    /// A read from the client completed.
    pub fn client_read(&mut self, input: Input, cx: &mut Cx<'_>) {
        match (&mut self.state, input) {
            (State::Head { scanned, .. }, Input::Data) => *scanned = false,
            (State::Linger { until }, Input::Data) => {
                // Still sending: wait for it a while longer, never past `until`.
                self.deadline = (cx.now + cx.settings.timeouts.linger_timeout).min(*until);
            }
            (State::Body { .. } | State::Discard { .. }, Input::Data) => {}
            (State::Body { .. }, Input::Full) => self.respond(cx, Reason::BodyTooLarge),
            (State::Tunnel(_), Input::Data | Input::Full) => {}
            (State::Tunnel(t), Input::Eof) => {
                t.client_eof = true;
                t.half_closed_at.get_or_insert(cx.now);
            }
            // A client that closes mid-head or mid-body gets no answer; Full cannot happen below the head limit.
            _ => self.state = State::Closed { reset: false },
        }
    }

    /// Writing to the client failed: it is gone.
    pub fn client_gone(&mut self, cx: &mut Cx<'_>) {
        self.close(cx);
    }

    /// The upstream connection asked for is attached: `reused` (from the pool), `connected` (already).
    pub fn upstream_attached(&mut self, reused: bool, connected: bool, cx: &mut Cx<'_>) {
        let t = cx.settings.timeouts;
        if let State::Upstream {
            link, reused: r, sent, ..
        } = &mut self.state
        {
            *link = if connected { Link::Connected } else { Link::Connecting };
            *r = reused;
            *sent = 0;
            self.deadline = cx.now + if connected { t.upstream } else { t.upstream_connect };
        }
    }

    /// The attached upstream connection is established.
    pub fn upstream_connected(&mut self, cx: &mut Cx<'_>) {
        if let State::Upstream { link, .. } = &mut self.state {
            *link = Link::Connected;
            let since = self.elapsed_us(cx);
            if let Some(f) = self.logf.as_mut() {
                f.up_connect_us = since.min(u32::MAX as u64 - 1) as u32;
            }
        }
    }

    /// No upstream connection could be made (or the one attached failed to connect): nothing was sent, so
    /// any request is retried on another server of its pool, within `--retries`.
    pub fn upstream_connect_failed(&mut self, cx: &mut Cx<'_>) {
        if let State::Upstream { link, sent, tries, .. } = &mut self.state {
            if (*tries as u32) < cx.settings.retries {
                *tries += 1;
                *sent = 0;
                *link = Link::None;
                add(&cx.metrics.upstream_connect_failures, 1);
                self.pending = Some(Action::ReleaseUpstream {
                    reusable: false,
                    failure: Some("connection refused or failed"),
                });
                return;
            }
            self.fail(cx, Reason::UpstreamUnavailable);
        }
    }

    /// The request's pool has no healthy server (and `--panic-threshold` is 0): 503 `no_healthy_upstream`.
    pub fn no_healthy_upstream(&mut self, cx: &mut Cx<'_>) {
        if let State::Upstream { fwd, .. } = std::mem::replace(&mut self.state, State::Flush) {
            cx.bufs.put(fwd);
        }
        self.respond(cx, Reason::NoHealthyUpstream);
    }

    /// The server (an index into the pools of generation `gen`) the attached upstream connection goes to,
    /// for the access log.
    pub fn upstream_server(&mut self, server: usize, gen: u32) {
        self.ex.server = server as u32;
        self.ex.server_gen = gen;
    }

    /// The pool the current request was routed to (an index into the pools of generation
    /// [`Connection::routed_gen`]).
    pub fn pool(&self) -> usize {
        self.ex.pool as usize
    }

    pub fn routed_gen(&self) -> u32 {
        self.ex.routed_gen
    }

    /// The status the upstream answered the current request with (0: none yet).
    pub fn upstream_status(&self) -> u16 {
        self.ex.status
    }

    /// `n` bytes of [`Connection::upstream_out`] were written.
    pub fn upstream_wrote(&mut self, n: usize, cx: &mut Cx<'_>) {
        match &mut self.state {
            State::Upstream { fwd, sent, .. } => {
                *sent += n;
                if *sent == fwd.len() {
                    self.deadline = cx.now + cx.settings.timeouts.upstream;
                }
            }
            State::Tunnel(_) => {
                if let Some(b) = self.inbuf.as_mut() {
                    b.consume(n);
                }
            }
            _ => {}
        }
    }

    /// The upstream connection closed or failed while being written to.
    pub fn upstream_closed(&mut self, cx: &mut Cx<'_>) {
        match self.state {
            State::Upstream { .. } => self.failed_before_response(cx),
            State::Relay { .. } | State::Tunnel(_) => self.close(cx),
            _ => {}
        }
    }

    /// A read from the upstream completed.
    pub fn upstream_read(&mut self, input: Input, cx: &mut Cx<'_>) {
        match (&mut self.state, input) {
            (State::Upstream { scanned, .. }, Input::Data) => *scanned = false,
            (State::Upstream { .. }, Input::Full) => self.fail(cx, Reason::BadUpstreamResponse),
            (State::Tunnel(_), Input::Data | Input::Full) => {}
            (State::Tunnel(t), Input::Eof) => {
                t.upstream_eof = true;
                t.half_closed_at.get_or_insert(cx.now);
            }
            (State::Upstream { .. }, Input::Eof) => {
                if self.out.as_ref().is_some_and(|o| !o.is_empty()) {
                    self.fail(cx, Reason::BadUpstreamResponse);
                } else {
                    self.failed_before_response(cx);
                }
            }
            (State::Relay { .. }, Input::Data) => {
                if self.frame_new(0).is_err() {
                    // Malformed chunking mid-body: the client must not see a complete response.
                    self.close(cx);
                    return;
                }
                let n = self.out.as_ref().map_or(0, |o| o.len()) as u64;
                add(&cx.metrics.bytes_out, n);
                self.ex.bytes_out += n;
            }
            (State::Relay { framer, reusable, .. }, Input::Eof)
                if framer.as_ref().is_some_and(|f| f.ends_at_close()) =>
            {
                *framer = None;
                *reusable = false;
            }
            (State::Relay { .. }, _) => self.close(cx),
            _ => {}
        }
    }

    /// The deadline may have passed: what that means depends on the state.
    pub fn timer(&mut self, cx: &mut Cx<'_>) {
        if cx.now < self.deadline {
            return;
        }
        match self.state {
            State::Head { started: true, .. } => {
                // The head never completed: a fresh exchange (not the previous request's) is answered.
                self.begin_exchange(cx.mono_us);
                self.ex.keep_alive = false;
                self.respond(cx, Reason::RequestTimeout);
            }
            State::Body { .. } => {
                self.ex.keep_alive = false;
                self.respond(cx, Reason::RequestTimeout);
            }
            State::Upstream { .. } => self.fail(cx, Reason::UpstreamTimeout),
            // A tunnel idle for --tunnel-idle-timeout, or half-closed for --tunnel-half-close-timeout.
            State::Head { started: false, .. }
            | State::Linger { .. }
            | State::Flush
            | State::Relay { .. }
            | State::Discard { .. }
            | State::Tunnel(_)
            | State::Closed { .. } => self.close(cx),
        }
    }

    /// The process began to drain: an idle connection gets until `close_at` for one more request (answered
    /// with `Connection: close`), so that a client about to send one is not closed under it.
    pub fn drain(&mut self, close_at: Instant) {
        if self.is_idle() {
            self.deadline = close_at;
        }
    }

    /// The worker closes the connection now (shutdown timeout): accounts for a cut response and tells whether
    /// to reset.
    pub fn abort(&mut self, cx: &mut Cx<'_>) -> bool {
        // An answer not fully written is cut too: a clean FIN could make a close-delimited body look complete.
        let unwritten = match self.state {
            State::Relay { .. } => true,
            State::Flush => self.out.as_ref().is_some_and(|o| !o.is_empty()),
            _ => false,
        };
        self.close(cx);
        unwritten || matches!(self.state, State::Closed { reset: true })
    }

    // ---- transitions ----

    /// Moves as far as possible without I/O; returns the action the connection waits on.
    fn step(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        if let Some(a) = self.pending.take() {
            return Some(a);
        }
        match &mut self.state {
            State::Head { scanned: true, .. } => Some(Action::ReadClient),
            State::Head { .. } => self.head(cx),
            State::Body { .. } => self.body(cx),
            State::Upstream { .. } => self.upstream(cx),
            State::Relay { .. } => self.relay(cx),
            State::Flush => self.flush(cx),
            State::Discard { left } => {
                let inb = self.inbuf.get_or_insert_with(|| cx.bufs.get());
                let n = (inb.len() as u64).min(*left);
                inb.consume(n as usize);
                *left -= n;
                if *left > 0 {
                    return Some(Action::ReadClient);
                }
                if cx.draining {
                    // The answer is out and the body dropped: nothing keeps a draining connection.
                    self.state = State::Closed { reset: false };
                } else {
                    self.next_request(cx);
                }
                None
            }
            State::Tunnel(_) => self.tunnel(cx),
            State::Linger { until } => {
                if cx.now >= *until {
                    self.state = State::Closed { reset: false };
                    return None;
                }
                // What is held (the rest of a refused request) is dropped with what comes next.
                if let Some(b) = self.inbuf.as_mut() {
                    b.clear();
                }
                Some(Action::ReadClient)
            }
            State::Closed { reset } => Some(Action::Close { reset: *reset }),
        }
    }

    #[inline]
    fn next_request(&mut self, cx: &mut Cx<'_>) {
        self.state = State::Head {
            started: false,
            scanned: false,
        };
        self.deadline = cx.now + cx.settings.timeouts.idle;
    }

    /// Starts a new exchange: nothing of the previous request's state (nor its access-log fields) carries over.
    fn begin_exchange(&mut self, mono_us: u64) {
        self.ex.reset(mono_us);
        if let Some(r) = self.rid.as_mut() {
            r.clear();
        }
        if let Some(f) = self.logf.as_mut() {
            f.reset();
        }
    }

    fn head(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        if self.inbuf.as_ref().is_none_or(|b| b.is_empty()) {
            if let State::Head { scanned, .. } = &mut self.state {
                *scanned = true;
            }
            return Some(Action::ReadClient);
        }
        self.parse_request_head(cx)
    }

    /// Parses the request head held. Out of line: its header array (16 KiB) would otherwise be on the stack
    /// of every `poll`, paid for (probed) at each call.
    #[inline(never)]
    fn parse_request_head(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        let mut inb = self.inbuf.take()?;
        let limits = cx.settings.limits;
        let mut storage = request::header_storage();
        match request::parse_head(inb.data(), &limits, &mut storage) {
            Err(reason) => {
                // Nothing of the previous exchange belongs to this refusal.
                self.begin_exchange(cx.mono_us);
                self.ex.bytes_in = inb.len() as u64;
                self.inbuf = Some(inb);
                self.respond(cx, reason.into());
            }
            Ok(Some(head)) => {
                let (consume, reserve) = self.accept_head(inb.data(), &head, cx);
                inb.consume(consume);
                inb.reserve(reserve);
                self.inbuf = Some(inb);
                if !matches!(self.state, State::Body { .. }) {
                    self.return_input(cx);
                }
            }
            Ok(None) => {
                self.inbuf = Some(inb);
                if let State::Head { started, scanned } = &mut self.state {
                    if !*started {
                        *started = true;
                        self.deadline = cx.now + cx.settings.timeouts.header;
                    }
                    *scanned = true;
                }
            }
        }
        None
    }

    /// A complete, valid head is at the start of `data`: decide, then forward, read the body, or refuse.
    /// Returns the input bytes to consume and the room to reserve for the body.
    fn accept_head(&mut self, data: &[u8], head: &RequestHead<'_, '_>, cx: &mut Cx<'_>) -> (usize, usize) {
        self.begin_exchange(cx.mono_us);
        self.ex.keep_alive = head.keep_alive;
        self.ex.close_after = !head.keep_alive;
        self.ex.method = head.method;
        self.ex.version = head.version;
        self.ex.bytes_in = head.head_len as u64;
        let head_len = head.head_len;
        if cx.log.wants_entries() {
            self.keep_log_fields(head);
        }
        if let Some(rule) = &cx.rules.request_id {
            // A client's id is kept only when trusted, valid and sent once; else one is generated.
            let mut sent = None;
            let mut count = 0;
            for h in head
                .headers
                .iter()
                .filter(|h| h.name.as_bytes().eq_ignore_ascii_case(&rule.header))
            {
                sent = Some(h.value);
                count += 1;
            }
            let r = self.rid.get_or_insert_with(Box::default);
            match sent {
                Some(v) if rule.trust && count == 1 && request_id::valid(v) => r.set(v),
                _ => r.set(&cx.scratch.ids.generate()),
            }
        }
        self.ex.websocket = head.websocket && cx.settings.tunnel.is_some();
        let mut checks = checks(cx);
        checks.tunnel = self.ex.websocket;
        let mut verdict = self.ex.decision.head(&mut checks, head, self.peer);
        if let (Some(ip), Some(f)) = (self.ex.decision.client, self.logf.as_mut()) {
            f.client = Some(IpText::new(ip));
        }
        if let (Ok(()), Some(s), true) = (verdict, &cx.settings.tunnel, self.ex.websocket) {
            // Refused now when the tunnel could not open anyway (decided again when the upstream agrees).
            verdict = cx.tunnels.admits(self.tunnel_user(), s);
        }
        if verdict.is_ok() {
            // The route: by the API version the Accept rule matched, and the path.
            let routes = &cx.pools.routes;
            let pool = if routes.trivial() {
                routes.default
            } else {
                let version = self
                    .ex
                    .decision
                    .api_version
                    .and_then(|i| cx.rules.policy.accept.get(i))
                    .map(|t| t.version.as_str());
                routes.route(version, path_of(head.target.as_bytes()))
            };
            self.ex.routed_gen = cx.pools_gen;
            match pool {
                Some(p) => self.ex.pool = p as u16,
                None => verdict = Err(Reason::NoRoute),
            }
        }
        if let Err(reason) = verdict {
            // Keep the connection when the body is small enough to read and drop; else close it.
            match head.framing {
                Framing::None => {}
                Framing::Length(n) if n <= DISCARD_MAX && !head.expect_continue => self.ex.discard = n,
                _ => self.ex.keep_alive = false,
            }
            self.respond(cx, reason);
            return (head_len, 0);
        }
        // The forwarded head is written now, from the parsed head; `forward` completes it after the body.
        let mut fwd = cx.bufs.get();
        let rules = cx.rules;
        let policy = &rules.policy;
        let info = write::Forward {
            client_ip: self.ip.as_bytes(),
            default_host: &cx.settings.upstream_host,
            version_header: policy.version_header.as_bytes(),
            version: self
                .ex
                .decision
                .api_version
                .and_then(|i| policy.accept.get(i))
                .map(|t| t.version.as_bytes()),
            observe: rules.observe_header.as_deref().map(|h| (h, None)),
            proto: if self.https { b"https" } else { b"http" },
            request_id: self.request_id(cx.rules),
            websocket: self.ex.websocket,
        };
        let underscores = write::forward_fields(&mut fwd, head, &info);
        if underscores > 0 {
            add(&cx.metrics.underscore_fields_dropped, underscores as u64);
        }
        let (body, reserve) = match head.framing {
            Framing::None => {
                self.forward(cx, fwd, Framing::None, data, head_len..head_len);
                return (head_len, 0);
            }
            Framing::Length(n) => {
                let end = head_len + n as usize;
                if data.len() >= end {
                    self.forward(cx, fwd, head.framing, data, head_len..end);
                    return (end, 0);
                }
                // Room for what the next reads may bring, not for the whole announced length: a client that
                // announces 1 MiB and trickles it pins only what it has sent (the buffer grows by doubling).
                (BodyState::Length { end }, (end - data.len()).min(cx.bufs.size()))
            }
            Framing::Chunked => (
                BodyState::Chunked {
                    dec: ChunkedDecoder::new(cx.settings.limits.max_body),
                    decoded_end: head_len,
                    raw_pos: head_len,
                },
                0,
            ),
        };
        // RFC 9110 section 10.1.1: never send 100 (Continue) to an HTTP/1.0 client.
        if head.expect_continue && data.len() == head_len && head.version == Version::Http11 {
            self.out.get_or_insert_with(|| cx.bufs.get()).put(CONTINUE);
        }
        self.state = State::Body {
            head_len,
            framing: head.framing,
            body,
            fwd,
        };
        self.deadline = cx.now + cx.settings.timeouts.body;
        (0, reserve)
    }

    fn keep_log_fields(&mut self, head: &RequestHead<'_, '_>) {
        let t = head.target.as_bytes();
        let n = t.len().min(TARGET_MAX);
        self.ex.target[..n].copy_from_slice(&t[..n]);
        self.ex.target_len = n as u8;
        self.ex.target_cut = t.len() > TARGET_MAX;
        let f = self.logf.get_or_insert_with(|| {
            Box::new(LogFields {
                host: [0; HOST_MAX],
                host_len: 0,
                user_agent: [0; UA_MAX],
                user_agent_len: 0,
                client: None,
                up_connect_us: u32::MAX,
                up_response_us: u32::MAX,
                traceparent: [0; TRACEPARENT_MAX],
                traceparent_len: None,
            })
        });
        if let Some(tp) = head.header(b"traceparent") {
            let n = tp.len().min(TRACEPARENT_MAX);
            f.traceparent[..n].copy_from_slice(&tp[..n]);
            f.traceparent_len = Some(n as u8);
        }
        let host = head.header(b"host").unwrap_or_default();
        let n = host.len().min(HOST_MAX);
        f.host[..n].copy_from_slice(&host[..n]);
        f.host_len = n as u8;
        let ua = head.header(b"user-agent").unwrap_or_default();
        let n = ua.len().min(UA_MAX);
        f.user_agent[..n].copy_from_slice(&ua[..n]);
        f.user_agent_len = n as u8;
    }

    fn body(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        // A `100 Continue` goes out before the body is read (the client may wait for it).
        if self.out.as_ref().is_some_and(|o| !o.is_empty()) {
            return Some(Action::WriteClient);
        }
        let mut inb = self.inbuf.take().unwrap_or_else(|| cx.bufs.get());
        let action = self.body_with(&mut inb, cx);
        self.inbuf = Some(inb);
        if !matches!(self.state, State::Body { .. }) {
            self.return_input(cx);
        }
        action
    }

    fn body_with(&mut self, inb: &mut Buf, cx: &mut Cx<'_>) -> Option<Action> {
        let State::Body { head_len, body, .. } = &mut self.state else {
            return None;
        };
        let head_len = *head_len;
        match body {
            BodyState::Length { end } => {
                let end = *end;
                if inb.len() >= end {
                    self.forward_body(cx, inb, head_len..end, end);
                    return None;
                }
                let want = end - inb.len();
                if inb.spare().len() < want.min(4096) {
                    inb.reserve(want.min(inb.capacity().max(cx.bufs.size())));
                }
            }
            BodyState::Chunked {
                dec,
                decoded_end,
                raw_pos,
            } => {
                let data = inb.data_mut();
                let mut done = false;
                while *raw_pos < data.len() {
                    match dec.step(&data[*raw_pos..]) {
                        Ok(s) => {
                            let (a, b) = (*raw_pos + s.data.start, *raw_pos + s.data.end);
                            data.copy_within(a..b, *decoded_end);
                            *decoded_end += b - a;
                            *raw_pos += s.consumed;
                            if s.done {
                                done = true;
                                break;
                            }
                        }
                        Err(ChunkError::TooLarge) => {
                            self.respond(cx, Reason::BodyTooLarge);
                            return None;
                        }
                        Err(_) => {
                            self.respond(cx, Reason::MalformedChunkedBody);
                            return None;
                        }
                    }
                }
                let (decoded, raw) = (*decoded_end, *raw_pos);
                if done {
                    // Pipelined bytes after the body stay; the decoded body is contiguous after the head.
                    self.forward_body(cx, inb, head_len..decoded, raw);
                    return None;
                }
                // Reclaim the framing bytes already decoded so the buffer holds head + payload + rest.
                if raw > decoded {
                    let len = inb.len();
                    inb.data_mut().copy_within(raw..len, decoded);
                    inb.truncate(len - (raw - decoded));
                    *raw_pos = decoded;
                }
                if inb.spare().len() < 4096 {
                    inb.reserve(cx.bufs.size());
                }
            }
        }
        Some(Action::ReadClient)
    }

    /// The body is complete at `body` in `inb` and the request ends at `req_end`.
    fn forward_body(&mut self, cx: &mut Cx<'_>, inb: &mut Buf, body: std::ops::Range<usize>, req_end: usize) {
        let State::Body { framing, .. } = self.state else {
            return;
        };
        let State::Body { fwd, .. } = std::mem::replace(&mut self.state, State::Flush) else {
            return;
        };
        self.forward(cx, fwd, framing, inb.data(), body);
        inb.consume(req_end);
    }

    /// The request's input buffer after its body: an emptied one goes back now (not after a possibly slow
    /// client read the response), and one grown for a body is swapped for a standard one if what it still
    /// holds (pipelined bytes) fits: a trailing byte must not keep a body-sized buffer through the exchange.
    fn return_input(&mut self, cx: &mut Cx<'_>) {
        cx.bufs.put_if_empty(&mut self.inbuf);
        if let Some(grown) = self
            .inbuf
            .take_if(|b| b.capacity() > cx.bufs.size() && b.len() <= cx.bufs.size())
        {
            let mut small = cx.bufs.get();
            small.put(grown.data());
            self.inbuf = Some(small);
        }
    }

    /// Runs the body's checks on `data[body]` and, if the request passes, completes `fwd` (the forwarded head
    /// and the body) and moves to `Upstream`.
    fn forward(&mut self, cx: &mut Cx<'_>, mut fwd: Buf, framing: Framing, data: &[u8], body: std::ops::Range<usize>) {
        let body = &data[body];
        let n = self.ex.bytes_in + body.len() as u64;
        add(&cx.metrics.bytes_in, n);
        self.ex.bytes_in = n;
        let mut checks = checks(cx);
        let verdict = self.ex.decision.body(&mut checks, body);
        if self.ex.decision.json_bytes > 0 {
            add(&cx.metrics.json_bytes, self.ex.decision.json_bytes);
        }
        if let Err(reason) = verdict {
            cx.bufs.put(fwd);
            self.respond(cx, reason);
            return;
        }
        let observed = self.ex.decision.observed;
        if let Some(r) = observed {
            add(&cx.metrics.observed[r as usize], 1);
        }
        let observe = cx
            .rules
            .observe_header
            .as_deref()
            .map(|h| (h, observed.map(|r| r.code().as_bytes())));
        write::forward_end(&mut fwd, framing, body.len() as u64, observe);
        fwd.put(body);
        self.state = State::Upstream {
            fwd,
            sent: 0,
            link: Link::None,
            reused: false,
            tries: 0,
            scanned: false,
        };
    }

    fn upstream(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        let State::Upstream {
            fwd,
            sent,
            link,
            tries,
            scanned,
            ..
        } = &mut self.state
        else {
            return None;
        };
        match link {
            Link::None => return Some(Action::OpenUpstream { fresh: *tries > 0 }),
            Link::Connecting => return Some(Action::AwaitUpstream),
            Link::Connected if *sent < fwd.len() => return Some(Action::WriteUpstream),
            Link::Connected if *scanned => return Some(Action::ReadUpstream),
            Link::Connected => {}
        }
        self.parse_response_head(cx)
    }

    /// Parses the response head read so far (out of line, as `parse_request_head`).
    #[inline(never)]
    fn parse_response_head(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        let is_head = self.ex.method == Method::Head;
        // The tunnel's key, for a handshake the upstream may switch (worked out before `out` is borrowed).
        let user = if self.ex.websocket { self.tunnel_user() } else { 0 };
        let out = self.out.get_or_insert_with(|| cx.bufs.get());
        while !out.is_empty() {
            let mut storage = request::header_storage();
            let max_head = out.capacity();
            let h = match response::parse_head(out.data(), max_head, is_head, &mut storage) {
                Err(_) => {
                    self.fail(cx, Reason::BadUpstreamResponse);
                    return None;
                }
                Ok(None) => break,
                Ok(Some(h)) if h.is_interim() => {
                    let n = h.head_len;
                    out.consume(n);
                    continue;
                }
                Ok(Some(h)) => h,
            };
            if h.upgrade {
                let verdict = match (&cx.settings.tunnel, self.ex.websocket) {
                    (Some(s), true) => cx.tunnels.open(user, s),
                    // A 101 the request did not ask for.
                    _ => Err(Reason::BadUpstreamResponse),
                };
                match verdict {
                    Ok(()) => {}
                    Err(Reason::BadUpstreamResponse) => {
                        self.fail(cx, Reason::BadUpstreamResponse);
                        return None;
                    }
                    Err(reason) => {
                        // The limits were reached since the head was checked: the upstream's tunnel is closed.
                        self.refuse_upgraded(cx, reason);
                        return None;
                    }
                }
            }
            let dechunk = h.body == BodyKind::Chunked && self.ex.version == Version::Http10;
            let close = !h.upgrade && (self.ex.close_after || h.body == BodyKind::Close || dechunk || cx.draining);
            // The forwarded request's buffer becomes the response buffer, unless a large body grew it: a
            // slow reader would hold that for as long as it reads.
            let State::Upstream { fwd, .. } = std::mem::replace(&mut self.state, State::Flush) else {
                return None;
            };
            let mut next = if fwd.capacity() <= cx.bufs.size() {
                fwd
            } else {
                cx.bufs.put(fwd);
                cx.bufs.get()
            };
            next.clear();
            let d = &self.ex.decision;
            write::response_head(
                &mut next,
                &h,
                ClientSide {
                    version: self.ex.version,
                    close,
                    dechunk,
                    ratelimit: match (cx.rules.ratelimit_headers, d.quota, &cx.rules.tiers) {
                        (true, Some((r, t)), Some(tiers)) => tiers
                            .tiers
                            .get(d.tier as usize)
                            .map(|tier| (tier.quoted.as_slice(), r, t)),
                        _ => None,
                    },
                    request_id: match (&cx.rules.request_id, self.rid.as_deref()) {
                        (Some(rule), Some(r)) => Some((rule.header.as_slice(), r.as_bytes())),
                        _ => None,
                    },
                },
            );
            let from = next.len();
            next.put(&out.data()[h.head_len..]);
            self.ex.status = h.status;
            let since = cx.mono_us.saturating_sub(self.ex.started_us);
            if let Some(f) = self.logf.as_mut() {
                f.up_response_us = since.min(u32::MAX as u64 - 1) as u32;
            }
            let (body, reusable, upgrade) = (h.body, h.reusable, h.upgrade);
            self.ex.close_after = close;
            let old = std::mem::replace(out, next);
            cx.bufs.put(old);
            if upgrade {
                self.begin_tunnel(cx, from);
                return None;
            }
            self.state = State::Relay {
                framer: BodyFramer::new(body),
                dechunk,
                reusable,
            };
            if self.frame_new(from).is_err() {
                self.fail(cx, Reason::BadUpstreamResponse);
                return None;
            }
            let n = self.out.as_ref().map_or(0, |o| o.len()) as u64;
            add(&cx.metrics.bytes_out, n);
            self.ex.bytes_out += n;
            self.deadline = cx.now + cx.settings.timeouts.upstream;
            return None;
        }
        if let State::Upstream { scanned, .. } = &mut self.state {
            *scanned = true;
        }
        Some(Action::ReadUpstream)
    }

    /// The upstream closed or reset the connection before any byte of its response: retried (within
    /// `--retries`) on a fresh connection if the request is idempotent (RFC 9110 9.2.2) or none of it was
    /// written: the upstream may have processed a POST or PATCH before closing, and sending it again would
    /// apply it twice (nginx's `proxy_next_upstream` draws the same line). A pooled connection may simply
    /// have been closed by the upstream as the request went out: its server is not held responsible; a fresh
    /// one's failure counts against its server, which the retry avoids.
    fn failed_before_response(&mut self, cx: &mut Cx<'_>) {
        add(&cx.metrics.upstream_resets, 1);
        let idempotent = self.ex.method.idempotent();
        if let State::Upstream {
            sent,
            link,
            reused,
            tries,
            ..
        } = &mut self.state
        {
            if (*tries as u32) < cx.settings.retries && (idempotent || *sent == 0) {
                *tries += 1;
                *sent = 0;
                *link = Link::None;
                self.pending = Some(Action::ReleaseUpstream {
                    reusable: false,
                    failure: Some(if *reused {
                        super::POOLED_CLOSED
                    } else {
                        "connection closed before answering"
                    }),
                });
                return;
            }
        }
        self.fail(cx, Reason::UpstreamUnavailable);
    }

    /// The exchange with the upstream failed: release the connection and answer `reason`.
    fn fail(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        let failure = match reason {
            Reason::UpstreamTimeout => "timed out",
            Reason::BadUpstreamResponse => "invalid response",
            _ => "connection refused or failed",
        };
        match reason {
            Reason::UpstreamUnavailable => add(&cx.metrics.upstream_connect_failures, 1),
            Reason::UpstreamTimeout => add(&cx.metrics.upstream_timeouts, 1),
            _ => {}
        }
        self.drop_upstream_and_respond(cx, reason, Some(failure));
    }

    /// Ends the exchange with the upstream (its connection closed, `failure` for the operator's log) and
    /// answers `reason` instead.
    fn drop_upstream_and_respond(&mut self, cx: &mut Cx<'_>, reason: Reason, failure: Option<&'static str>) {
        if let State::Upstream { fwd, .. } = std::mem::replace(&mut self.state, State::Flush) {
            cx.bufs.put(fwd);
        }
        // Upstream leftovers (a partial response head) are not the client's.
        if let Some(out) = self.out.as_mut() {
            out.clear();
        }
        self.pending = Some(Action::ReleaseUpstream {
            reusable: false,
            failure,
        });
        self.respond(cx, reason);
    }

    /// Frames the bytes of `out` from `from` on: drops what lies past the body's end (the upstream connection
    /// is then not reused), de-chunks for HTTP/1.0 clients or filters the trailer section of a chunked body
    /// relayed as is, and ends the framer when the body is complete.
    fn frame_new(&mut self, from: usize) -> Result<(), ChunkError> {
        let State::Relay {
            framer,
            dechunk,
            reusable,
        } = &mut self.state
        else {
            return Ok(());
        };
        let Some(out) = self.out.as_mut() else {
            return Ok(());
        };
        let total = out.len() - from;
        let Some(f) = framer.as_mut() else {
            if total > 0 {
                *reusable = false;
                out.truncate(from);
            }
            return Ok(());
        };
        let (keep, used, done) = match f {
            BodyFramer::Chunked(dec) if *dechunk => dec.decode_in_place(&mut out.data_mut()[from..])?,
            // Relayed as chunks: trailer lines that carry framing fields or are not fields are removed.
            BodyFramer::Chunked(dec) => dec.relay_in_place(&mut out.data_mut()[from..])?,
            f => {
                let (used, done) = f.feed(&out.data()[from..])?;
                (used, used, done)
            }
        };
        if used < total {
            *reusable = false;
        }
        out.truncate(from + keep);
        if done {
            *framer = None;
        }
        Ok(())
    }

    fn relay(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        let State::Relay { framer, reusable, .. } = &self.state else {
            return None;
        };
        let out = self.out.get_or_insert_with(|| cx.bufs.get());
        if !out.is_empty() {
            self.deadline = cx.now + cx.settings.timeouts.body;
            return Some(Action::WriteClient);
        }
        if framer.is_none() {
            let reusable = *reusable;
            self.state = State::Flush;
            cx.metrics.request(self.ex.status, None, self.elapsed_us(cx));
            self.log_request(cx, self.ex.status, None);
            self.pending = Some(Action::ReleaseUpstream {
                reusable,
                failure: None,
            });
            return None;
        }
        out.clear();
        self.deadline = cx.now + cx.settings.timeouts.upstream;
        Some(Action::ReadUpstream)
    }

    // ---- WebSocket tunnels ----

    /// The current request's user, as `--balance hash` keys it: the rate limit's user id, else the client's
    /// address.
    pub fn user_hash(&self) -> u64 {
        self.ex.decision.route_key.unwrap_or_else(|| self.tunnel_user())
    }

    /// The key a tunnel counts against in `--max-tunnels-per-user`: the rate limit's user id, else the
    /// client's address.
    fn tunnel_user(&self) -> u64 {
        self.ex
            .decision
            .user
            .unwrap_or_else(|| tunnel::address_key(self.ex.decision.client.unwrap_or(self.peer)))
    }

    /// The upstream switched to WebSocket: `out` holds the relayed 101 head (`head` bytes) and whatever the
    /// upstream sent after it; `inbuf`, whatever the client sent after its handshake. Both become the tunnel's.
    fn begin_tunnel(&mut self, cx: &mut Cx<'_>, head: usize) {
        add(&cx.metrics.bytes_out, head as u64);
        self.ex.bytes_out += head as u64;
        add(&cx.metrics.tunnels_opened, 1);
        // The handshake is one request (forwarded, 101); its access-log line is written when the tunnel ends.
        cx.metrics.request(self.ex.status, None, self.elapsed_us(cx));
        let user = self.tunnel_user();
        self.state = State::Tunnel(Box::new(Tunnel::new(user, 0, head, cx.now)));
    }

    /// The tunnel's next socket action, after counting what moved since the last one.
    fn tunnel(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        let State::Tunnel(t) = &mut self.state else {
            return None;
        };
        let Some(s) = cx.settings.tunnel else {
            // Cannot happen (tunnels exist only with the setting): end it rather than spin.
            self.close(cx);
            return None;
        };
        let up = self.inbuf.as_ref().map_or(0, |b| b.len());
        let down = self.out.as_ref().map_or(0, |b| b.len());
        if up > t.up_held {
            let n = (up - t.up_held) as u64;
            t.up_bytes += n;
            self.ex.bytes_in += n;
            add(&cx.metrics.tunnel_bytes_up, n);
            add(&cx.metrics.bytes_in, n);
        }
        if down > t.down_held {
            let n = (down - t.down_held) as u64;
            t.down_bytes += n;
            self.ex.bytes_out += n;
            add(&cx.metrics.tunnel_bytes_down, n);
            add(&cx.metrics.bytes_out, n);
        }
        if up != t.up_held || down != t.down_held {
            // Bytes moved: the idle timer restarts, and every side may be tried again.
            t.active = cx.now;
            t.blocked = 0;
        }
        (t.up_held, t.down_held) = (up, down);
        self.deadline = t.active + s.idle;
        if let Some(at) = t.half_closed_at {
            self.deadline = self.deadline.min(at + s.half_close);
        }
        // Each side is read only when what was read from it before is written out (backpressure both ways).
        let free = |bit: u8| t.blocked & bit == 0;
        let next = if up > 0 && free(tunnel::WRITE_UPSTREAM) {
            Some((tunnel::WRITE_UPSTREAM, Action::WriteUpstream))
        } else if down > 0 && free(tunnel::WRITE_CLIENT) {
            Some((tunnel::WRITE_CLIENT, Action::WriteClient))
        } else if up == 0 && !t.client_eof && free(tunnel::READ_CLIENT) {
            Some((tunnel::READ_CLIENT, Action::ReadClient))
        } else if down == 0 && !t.upstream_eof && free(tunnel::READ_UPSTREAM) {
            Some((tunnel::READ_UPSTREAM, Action::ReadUpstream))
        } else {
            None
        };
        if let Some((bit, action)) = next {
            t.last = bit;
            return Some(action);
        }
        t.last = 0;
        // A side's end is relayed once everything it sent before is out.
        if t.client_eof && up == 0 && !t.upstream_shut {
            t.upstream_shut = true;
            t.blocked = 0;
            return Some(Action::ShutdownUpstreamWrite);
        }
        if t.upstream_eof && down == 0 && !t.client_shut {
            t.client_shut = true;
            t.blocked = 0;
            return Some(Action::ShutdownWrite);
        }
        if t.upstream_shut && t.client_shut {
            self.close(cx);
            return None;
        }
        Some(Action::Wait)
    }

    /// The tunnel (if any) ends: its slot is given back, and its access-log line written (status 101, the
    /// bytes each way, the time from the handshake to the end).
    fn end_tunnel(&mut self, cx: &mut Cx<'_>) {
        let State::Tunnel(t) = &self.state else {
            return;
        };
        cx.tunnels.close(t.user);
        add(&cx.metrics.tunnels_closed, 1);
        self.log_request(cx, self.ex.status, None);
        self.state = State::Closed { reset: false };
        // The upstream connection carried the tunnel: it is closed, never pooled.
        self.pending.get_or_insert(Action::ReleaseUpstream {
            reusable: false,
            failure: None,
        });
    }

    /// The upstream agreed to a tunnel the limits no longer allow: its connection is closed, and the client
    /// answered `reason`.
    fn refuse_upgraded(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        self.drop_upstream_and_respond(cx, reason, None);
    }

    fn flush(&mut self, cx: &mut Cx<'_>) -> Option<Action> {
        if self.out.as_ref().is_some_and(|o| !o.is_empty()) {
            return Some(Action::WriteClient);
        }
        if let Some(b) = self.out.take() {
            cx.bufs.put(b);
        }
        if self.ex.close_after || cx.draining {
            let t = cx.settings.timeouts;
            // While the process drains, a lingering connection must not hold it up for long.
            let time = if cx.draining {
                t.linger_time.min(DRAIN_IDLE_GRACE)
            } else {
                t.linger_time
            };
            self.state = State::Linger { until: cx.now + time };
            self.deadline = cx.now + t.linger_timeout.min(t.linger_time);
            return Some(Action::ShutdownWrite);
        }
        if self.ex.discard > 0 {
            self.state = State::Discard { left: self.ex.discard };
            self.deadline = cx.now + cx.settings.timeouts.body;
            return None;
        }
        self.next_request(cx);
        cx.bufs.put_if_empty(&mut self.inbuf);
        None
    }

    /// Queues the ingress's own answer for `reason` and moves to `Flush`.
    fn respond(&mut self, cx: &mut Cx<'_>, reason: Reason) {
        if let State::Body { fwd, .. } = std::mem::replace(&mut self.state, State::Flush) {
            cx.bufs.put(fwd);
        }
        let close = reason.closes() || !self.ex.keep_alive || cx.draining;
        let conn = Conn::new(close, self.ex.version);
        if cx.rules.request_id.is_some() {
            // A refusal before a head was accepted (a malformed head, a header timeout) has no id yet.
            let r = self.rid.get_or_insert_with(Box::default);
            if r.is_empty() {
                r.set(&cx.scratch.ids.generate());
            }
        }
        let id = match (&cx.rules.request_id, self.rid.as_deref()) {
            (Some(rule), Some(r)) => Some((rule.header.as_slice(), r.as_bytes())),
            _ => None,
        };
        let out = self.out.get_or_insert_with(|| cx.bufs.get());
        let rules = cx.rules;
        let d = &self.ex.decision;
        let tier = match reason {
            Reason::RateLimited => rules.tiers.as_ref().and_then(|t| t.tiers.get(d.tier as usize)),
            Reason::IpRateLimited => rules.ip_tier.as_ref(),
            _ => None,
        };
        let date = cx.date;
        let secs = d.retry_secs;
        // RFC 9110 section 6.6.1: an origin with a clock sends Date.
        let fields = |o: &mut Buf| {
            o.put(b"Date: ");
            o.put(date);
            o.put(b"\r\n");
            if reason == Reason::NoHealthyUpstream {
                o.put(b"Retry-After: 1\r\n");
            }
            if let Some(tier) = tier {
                o.put(b"Retry-After: ");
                put_u64(o, secs);
                o.put(b"\r\n");
                o.put(&tier.policy_field);
                o.put(b"RateLimit: ");
                o.put(&tier.quoted);
                o.put(b";r=0;t=");
                put_u64(o, secs);
                o.put(b"\r\n");
            }
        };
        let body = self.ex.method != Method::Head;
        let before = out.len();
        match (reason, d.json_error) {
            (Reason::MalformedJson, Some((at, expected))) => rules
                .catalogue
                .write_malformed_json(out, conn, body, at as u64, expected, id, fields),
            _ => rules.catalogue.write_with(out, reason, conn, body, id, fields),
        }
        let queued = (out.len() - before) as u64;
        self.ex.close_after = close;
        self.deadline = cx.now + cx.settings.timeouts.body;
        let m = cx.metrics;
        m.request(reason.status(), Some(reason), self.elapsed_us(cx));
        add(&m.bytes_out, queued);
        self.ex.bytes_out += queued;
        self.log_request(cx, reason.status(), Some(reason.code()));
        cx.log.refused(
            self.ip.as_bytes(),
            self.ex.method.as_str(),
            &self.ex.target[..self.ex.target_len as usize],
            reason,
        );
    }

    /// Ends the connection; one in the middle of a response is reset rather than closed, so that a client
    /// reading until close (HTTP/1.0, close-delimited bodies) cannot take a truncated body for a complete one.
    fn close(&mut self, cx: &mut Cx<'_>) {
        let cut = match &self.state {
            State::Relay { framer, .. } => framer.is_some(),
            State::Closed { reset } => *reset,
            _ => false,
        };
        if matches!(self.state, State::Relay { framer: Some(_), .. }) {
            add(&cx.metrics.aborted, 1);
            self.log_request(cx, self.ex.status, Some("aborted"));
        }
        self.end_tunnel(cx);
        if let State::Body { fwd, .. } | State::Upstream { fwd, .. } =
            std::mem::replace(&mut self.state, State::Closed { reset: cut })
        {
            cx.bufs.put(fwd);
        }
    }

    /// Gives the connection's buffers back to `cx`'s pool (the worker calls it when it closes the connection).
    pub fn release_buffers(&mut self, cx: &mut Cx<'_>) {
        self.end_tunnel(cx);
        for b in [self.inbuf.take(), self.out.take()].into_iter().flatten() {
            cx.bufs.put(b);
        }
        if let State::Body { fwd, .. } | State::Upstream { fwd, .. } =
            std::mem::replace(&mut self.state, State::Closed { reset: false })
        {
            cx.bufs.put(fwd);
        }
    }

    /// The request id's field name and value, with the rule on and an id assigned.
    fn request_id<'a>(&'a self, rules: &'a super::Rules) -> Option<(&'a [u8], &'a [u8])> {
        match (&rules.request_id, self.rid.as_deref()) {
            (Some(rule), Some(r)) if !r.is_empty() => Some((rule.header.as_slice(), r.as_bytes())),
            _ => None,
        }
    }

    fn elapsed_us(&self, cx: &Cx<'_>) -> u64 {
        cx.mono_us.saturating_sub(self.ex.started_us)
    }

    /// Appends this request's access-log line (when the log is on); `reason`: the refusal code, or `aborted`.
    fn log_request(&self, cx: &mut Cx<'_>, status: u16, reason: Option<&str>) {
        if !cx.log.wants_entries() {
            return;
        }
        let us = |v: u32| (v != u32::MAX).then_some(v);
        let f = self.logf.as_deref();
        cx.log.entry(&Entry {
            time_ms: cx.wall_ms,
            client: f.and_then(|f| f.client.as_ref()).unwrap_or(&self.ip).as_bytes(),
            peer: self.ip.as_bytes(),
            host: f.map_or(&[][..], |f| &f.host[..f.host_len as usize]),
            user_agent: f.map_or(&[][..], |f| &f.user_agent[..f.user_agent_len as usize]),
            upstream_connect_us: f.and_then(|f| us(f.up_connect_us)),
            upstream_response_us: f.and_then(|f| us(f.up_response_us)),
            method: self.ex.method.as_str(),
            target: &self.ex.target[..self.ex.target_len as usize],
            target_cut: self.ex.target_cut,
            status,
            reason,
            bytes_in: self.ex.bytes_in,
            bytes_out: self.ex.bytes_out,
            duration_us: self.elapsed_us(cx),
            user: self.ex.decision.user,
            would_refuse: self.ex.decision.observed.map(|r| r.code()),
            tls: self.tls.as_deref().map(|t| (t.version, &t.sni[..t.sni_len as usize])),
            request_id: self.request_id(cx.rules).map(|(_, id)| id),
            traceparent: f.and_then(|f| f.traceparent_len.map(|n| &f.traceparent[..n as usize])),
            // Named only from the pools it was chosen in (a reload in between leaves it unnamed).
            upstream: (self.ex.server != u32::MAX
                && self.ex.server_gen == cx.pools_gen
                && (self.ex.server as usize) < cx.pools.len())
            .then(|| cx.pools.names(self.ex.server as usize)),
        });
    }
}

/// The path of a request target: itself in origin form (`/a?b`), the part after the authority in absolute
/// form (`http://host/a?b`).
fn path_of(target: &[u8]) -> &[u8] {
    if target.first() == Some(&b'/') {
        return target;
    }
    let rest = target
        .windows(3)
        .position(|w| w == b"://")
        .map_or(target, |i| &target[i + 3..]);
    rest.iter().position(|&b| b == b'/').map_or(b"/", |i| &rest[i..])
}

fn checks<'a>(cx: &'a mut Cx<'_>) -> Checks<'a> {
    Checks {
        rules: cx.rules,
        limiter: cx.limiter,
        worker: cx.worker,
        scratch: cx.scratch,
        max_body: cx.settings.limits.max_body,
        now: cx.now,
        tunnel: false,
    }
}
