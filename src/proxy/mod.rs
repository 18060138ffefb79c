//! The connection machine: one client connection's HTTP/1.1 exchanges, without sockets and without a clock.
//!
//! [`Connection`] (in `machine.rs`, every transition in that one file) is fed events — client bytes arrived,
//! client gone, an upstream attached / connected / bytes arrived / written / closed, a timer fired, drain
//! started — each with the time passed in, and answers with [`Action`]s: read from or write to the client,
//! take or open an upstream connection, wait for it to connect, write to it or read from it, give it back
//! (pooled or closed), half-close the client, close it (cleanly or with a reset), or wait until an event or
//! [`Connection::deadline`]. The worker (`crate::worker`) owns the sockets, the poller, the timers and the
//! pools, and does what the actions say, nothing else. rustls's `ConnectionCommon` and smoltcp's TCP socket
//! are the models: states own their data, the caller owns the I/O.
//!
//! Bytes move without copies between the machine and the sockets: the machine lends its buffers
//! ([`Connection::client_buf`], [`Connection::client_out`], [`Connection::upstream_buf`],
//! [`Connection::upstream_out`]) and the worker reads into and writes from them.
//!
//! The decisions about a request (rate limit, Accept, Content-Type, JSON) are one pipeline,
//! [`decide::Decision`], called once per head and once per body.

pub mod decide;
mod machine;
pub mod request_id;
pub mod tunnel;

use std::time::{Duration, Instant};

use crate::buf::BufPool;
use crate::guard::{Mode, Policy};
use crate::http::Limits;
use crate::limit::tiers::{Tier, Tiers};
use crate::limit::Limiter;
use crate::metrics::WorkerMetrics;
use crate::problem::{Catalogue, Reason};

pub use decide::Scratch;
pub use machine::{Connection, IpText};

/// At shutdown, how long an idle keep-alive connection is kept for one more request (answered with
/// `Connection: close`), and the longest a lingering close may last.
pub const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// The failure a `ReleaseUpstream` names when a pooled connection was closed by its server before answering
/// (it had gone stale): the retry goes to another server, but the server is not held responsible.
pub const POOLED_CLOSED: &str = "pooled connection closed before answering";

/// Bytes of the request target kept for the access log.
pub const TARGET_MAX: usize = 128;

/// The policy in force: one immutable value that a reload replaces as a whole (see `crate::rules`).
pub struct Rules {
    pub policy: Policy,
    pub catalogue: Catalogue,
    /// The rate rule's mode (`Off` when the limit is off).
    pub rate_mode: Mode,
    /// The tiers (the default tier from `--rate` / `--burst`), when the limit is on.
    pub tiers: Option<Tiers>,
    /// The per-address backstop's policy fields (`"ip"`), for its 429s.
    pub ip_tier: Option<Tier>,
    pub ratelimit_headers: bool,
    /// `--observe-header`.
    pub observe_header: Option<Vec<u8>>,
    /// `--request-id-header` / `--trust-request-id` (None: off).
    pub request_id: Option<request_id::Rule>,
    /// Some pool balances by a hash of the user (`--balance NAME=hash`): the decision works out a hash of
    /// the user's canonical key that is the same in every process (the limiter's ids may be keyed per
    /// process).
    pub stable_user_hash: bool,
}

/// How long the machine waits for each thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a complete head, from its first byte.
    pub header: Duration,
    /// Between two reads of a body, and between two writes to a client that is slow to read.
    pub body: Duration,
    /// For the next request on a kept connection.
    pub idle: Duration,
    pub upstream_connect: Duration,
    /// For the upstream's answer, and between two reads of it.
    pub upstream: Duration,
    /// A lingering close ends when the client sends nothing for this long...
    pub linger_timeout: Duration,
    /// ... or this long after it began.
    pub linger_time: Duration,
}

/// The settings of every connection of a worker (fixed for the process's life).
#[derive(Debug, Clone)]
pub struct Settings {
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// `Host` sent upstream when an HTTP/1.0 client sent none.
    pub upstream_host: Vec<u8>,
    /// `--upgrade websocket`: WebSocket handshakes become tunnels (None: off).
    pub tunnel: Option<tunnel::TunnelSettings>,
    /// `--retries`: a request's retries on another server (after a connect failure, or a reset before any
    /// response byte of an idempotent request).
    pub retries: u32,
}

/// One request, as the access log writes it.
pub struct Entry<'a> {
    pub time_ms: u64,
    /// The client's address (through a trusted X-Forwarded-For), and the socket's peer.
    pub client: &'a [u8],
    pub peer: &'a [u8],
    pub host: &'a [u8],
    pub user_agent: &'a [u8],
    /// Microseconds from the complete head to the upstream connection being established and to the
    /// response head (None: no upstream connection was made / no response head arrived).
    pub upstream_connect_us: Option<u32>,
    pub upstream_response_us: Option<u32>,
    pub method: &'a str,
    pub target: &'a [u8],
    pub target_cut: bool,
    pub status: u16,
    pub reason: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
    pub user: Option<u64>,
    /// The refusal an `observe` rule would have given.
    pub would_refuse: Option<&'a str>,
    /// Over TLS: the protocol version (`TLSv1.3`) and the name the client asked for (SNI; empty without).
    pub tls: Option<(&'a str, &'a [u8])>,
    /// The request's id (with `--request-id-header`).
    pub request_id: Option<&'a [u8]>,
    /// The client's W3C `traceparent` (its first bytes), when it sent one.
    pub traceparent: Option<&'a [u8]>,
    /// The pool and the server the request was sent to (the last one tried), when it was sent.
    pub upstream: Option<(&'a str, &'a str)>,
}

/// Where the machine reports finished requests (the access log) and its own refusals (the debug log).
pub trait Observer {
    /// Whether [`Observer::entry`] wants lines (the machine keeps the fields they need only then).
    fn wants_entries(&self) -> bool;
    fn entry(&mut self, e: &Entry<'_>);
    /// The ingress answered a request itself.
    fn refused(&mut self, _peer: &[u8], _method: &str, _target: &[u8], _reason: Reason) {}
}

/// An observer that wants nothing.
pub struct NoLog;

impl Observer for NoLog {
    fn wants_entries(&self) -> bool {
        false
    }
    fn entry(&mut self, _: &Entry<'_>) {}
}

/// The world a connection may use while it handles an event: the worker's settings, policy, pools and
/// working memory, and the time.
pub struct Cx<'a> {
    pub settings: &'a Settings,
    pub rules: &'a Rules,
    pub limiter: Option<&'a Limiter>,
    pub metrics: &'a WorkerMetrics,
    /// This worker's index (its journal in the fleet-wide limit).
    pub worker: usize,
    pub bufs: &'a mut BufPool,
    /// The decision pipeline's working memory.
    pub scratch: &'a mut Scratch,
    pub log: &'a mut dyn Observer,
    /// `Date` for the ingress's own answers (IMF-fixdate), and the wall clock in Unix milliseconds.
    pub date: &'a [u8; 29],
    pub wall_ms: u64,
    pub now: Instant,
    /// `now` in microseconds since the worker's clock began (the worker's one reading per loop, with
    /// `wall_ms`): for durations, monotonic.
    pub mono_us: u64,
    /// The process is shutting down: answers close their connection, upstreams are not pooled.
    pub draining: bool,
    /// The process's open WebSocket tunnels (for `--max-tunnels` and `--max-tunnels-per-user`).
    pub tunnels: &'a tunnel::Tunnels,
    /// The upstream pools and the routes, and their generation (a reload replaces them).
    pub pools: &'a crate::pool::Pools,
    pub pools_gen: u32,
}

/// What the worker does for a connection next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read from the client into [`Connection::client_buf`], then report [`Connection::client_read`].
    ReadClient,
    /// Write [`Connection::client_out`] (consuming what was written from it), or report
    /// [`Connection::client_gone`].
    WriteClient,
    /// Attach an upstream connection: a pooled one (unless `fresh`) or a new connect; then report
    /// [`Connection::upstream_attached`] or [`Connection::upstream_connect_failed`].
    OpenUpstream { fresh: bool },
    /// The attached connection is still connecting: report [`Connection::upstream_connected`] or
    /// [`Connection::upstream_connect_failed`] when it is known.
    AwaitUpstream,
    /// Write [`Connection::upstream_out`], then report [`Connection::upstream_wrote`] (or
    /// [`Connection::upstream_closed`]).
    WriteUpstream,
    /// Read from the upstream into [`Connection::upstream_buf`], then report [`Connection::upstream_read`].
    ReadUpstream,
    /// Detach the upstream connection: pool it if `reusable` (and it is clean), else close it. `failure`:
    /// the upstream failed (for the operator's log).
    ReleaseUpstream {
        reusable: bool,
        failure: Option<&'static str>,
    },
    /// Shut the client connection's write side (the answer is out; a lingering close follows; in a tunnel,
    /// the upstream's end is relayed).
    ShutdownWrite,
    /// Shut the upstream connection's write side (in a tunnel: the client's end is relayed).
    ShutdownUpstreamWrite,
    /// Close the client connection (and any upstream, unpooled); `reset`: with a TCP reset, because a
    /// response was cut and a clean close could pass for its end.
    Close { reset: bool },
    /// Nothing until an event or the deadline.
    Wait,
}

/// The result of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Bytes arrived in the lent buffer.
    Data,
    /// The peer closed its side, or the connection failed.
    Eof,
    /// The lent buffer had no room.
    Full,
}
