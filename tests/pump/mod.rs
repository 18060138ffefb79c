//! An in-memory pump for the connection machine (`portcullis::proxy::Connection`): a client script and a
//! scripted upstream exchange bytes through the real machine, with a clock the test moves. No sockets, no
//! sleeping: a timeout is a jump of the clock to the machine's deadline.
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use portcullis::buf::BufPool;
use portcullis::config::Config;
use portcullis::limit::Limiter;
use portcullis::metrics::WorkerMetrics;
use portcullis::proxy::{Action, Connection, Cx, Entry, Input, Observer, Rules, Scratch, Settings, Timeouts};

/// What the scripted upstream does when asked for a connection, per attempt.
#[derive(Debug, Clone)]
pub enum Up {
    /// A pooled (`reused`) or new connection that answers each request it receives completely with the
    /// next of `answers` (then waits).
    Answer { reused: bool, answers: Vec<Vec<u8>> },
    /// A connection that closes before sending any byte (after taking the request).
    CloseAtOnce { reused: bool },
    /// A connection that sends `bytes` and then closes.
    SendThenClose { reused: bool, bytes: Vec<u8> },
    /// A connection that never answers (a timeout test moves the clock).
    Silent { reused: bool },
    /// No connection can be made.
    Refuse,
    /// The connect never completes.
    NeverConnects,
    /// The connect fails after the attach (an asynchronous connect error).
    ConnectFails,
    /// A WebSocket server: answers the handshake with `answer` (a 101, or a refusal), then echoes every byte
    /// it receives, and closes its side once the client's end reached it (if `close_on_fin`).
    Tunnel { answer: Vec<u8>, close_on_fin: bool },
}

/// The log the machine reports to: lines kept as (status, reason).
#[derive(Default)]
pub struct Lines {
    pub on: bool,
    pub lines: Vec<(u16, Option<String>, u64, u64)>,
}

impl Observer for Lines {
    fn wants_entries(&self) -> bool {
        self.on
    }
    fn entry(&mut self, e: &Entry<'_>) {
        self.lines
            .push((e.status, e.reason.map(str::to_string), e.bytes_in, e.bytes_out));
    }
}

/// Everything the machine's world holds, owned by the test.
pub struct World {
    pub settings: Settings,
    pub rules: Rules,
    pub limiter: Option<Limiter>,
    pub metrics: WorkerMetrics,
    pub bufs: BufPool,
    pub scratch: Scratch,
    pub log: Lines,
    pub now: Instant,
    /// When the world began (the machine's microsecond clock counts from it).
    pub origin: Instant,
    pub draining: bool,
    pub tunnels: portcullis::proxy::tunnel::Tunnels,
    pub pools: portcullis::pool::Pools,
}

/// The configuration's pools, or (without `--upstream`) one pool `default` of one server: the pump's
/// scripted upstream stands for every server.
fn pump_pools(config: &Config) -> portcullis::pool::Pools {
    use portcullis::pool::*;
    let u = &config.upstreams;
    let mut specs = u.pools.clone();
    if specs.is_empty() {
        specs.push(PoolSpec {
            name: "default".into(),
            servers: vec![ServerSpec {
                addr: "127.0.0.1:9".parse().unwrap(),
                name: "up".into(),
                weight: 1,
            }],
            balance: Balance::P2c,
            health: None,
        });
    }
    Pools::new(specs, u.routes.clone(), u.health, 1)
}

pub const HEADER: Duration = Duration::from_secs(10);
pub const BODY: Duration = Duration::from_secs(20);
pub const IDLE: Duration = Duration::from_secs(30);
pub const CONNECT: Duration = Duration::from_secs(3);
pub const UPSTREAM: Duration = Duration::from_secs(40);
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
pub const LINGER_TIME: Duration = Duration::from_secs(5);

impl World {
    /// A world with the rules of `flags` (as on the command line; no limit unless asked for).
    pub fn new(flags: &[&str]) -> World {
        let mut args = vec!["portcullis", "--accept", "application/vnd.example.v1+json"];
        if !flags.contains(&"--rate") {
            args.extend_from_slice(&["--rate", "0"]);
        }
        args.extend_from_slice(flags);
        let config = Config::parse_from(args).expect("flags");
        let limiter = portcullis::server::build_limiter(&config);
        let origin = Instant::now();
        let rules = Rules::build(&config, limiter.as_ref()).expect("rules");
        World {
            settings: Settings {
                timeouts: Timeouts {
                    header: HEADER,
                    body: BODY,
                    idle: IDLE,
                    upstream_connect: CONNECT,
                    upstream: UPSTREAM,
                    linger_timeout: LINGER_TIMEOUT,
                    linger_time: LINGER_TIME,
                },
                limits: config.limits,
                upstream_host: b"up".to_vec(),
                tunnel: config.tunnel,
                retries: config.upstreams.retries,
            },
            pools: pump_pools(&config),
            tunnels: portcullis::proxy::tunnel::Tunnels::new(config.tunnel.map_or(0, |t| t.max)),
            scratch: Scratch::new(&rules),
            rules,
            limiter,
            metrics: WorkerMetrics::default(),
            bufs: BufPool::new(17 * 1024, 64),
            log: Lines::default(),
            now: origin,
            origin,
            draining: false,
        }
    }

    pub fn cx(&mut self) -> Cx<'_> {
        Cx {
            settings: &self.settings,
            rules: &self.rules,
            limiter: self.limiter.as_ref(),
            metrics: &self.metrics,
            worker: 0,
            bufs: &mut self.bufs,
            scratch: &mut self.scratch,
            log: &mut self.log,
            date: b"Mon, 07 Dec 2026 18:00:00 GMT",
            wall_ms: 0,
            now: self.now,
            // Microseconds since the world began (durations only).
            mono_us: self.now.duration_since(self.origin).as_micros() as u64,
            draining: self.draining,
            tunnels: &self.tunnels,
            pools: &self.pools,
            pools_gen: 0,
        }
    }
}

/// The upstream connection attached at the moment.
struct Link {
    plan: Up,
    /// Bytes the upstream received on this connection.
    got: Vec<u8>,
    /// Bytes it has queued to send.
    send: VecDeque<u8>,
    closed: bool,
}

/// One client connection through the machine.
pub struct Pump {
    pub world: World,
    pub conn: Connection,
    /// Bytes the client will send, delivered `chunk` at a time (one read each).
    pub to_send: VecDeque<u8>,
    pub chunk: usize,
    /// The client has no more bytes and shuts its side once `to_send` is empty.
    pub client_fin: bool,
    /// The client does not read (its window is full): writes to it block.
    pub client_stalled: bool,
    /// Bytes the client received.
    pub received: Vec<u8>,
    /// Upstream connections, as the upstream saw them: the requests each received.
    pub upstream_got: Vec<Vec<u8>>,
    /// The upstream's plans, one per connection asked for (the last repeats).
    pub plans: VecDeque<Up>,
    link: Option<Link>,
    /// Answers given so far by `Up::Answer` upstreams (pooled connections continue the list).
    answered: usize,
    /// Every action the machine asked for, and every state it was seen in.
    pub actions: Vec<Action>,
    pub states: BTreeSet<&'static str>,
    pub released: Vec<(bool, Option<&'static str>)>,
    pub shut_write: bool,
    /// The machine shut the upstream connection's write side (a tunnel relayed the client's end).
    pub upstream_shut: bool,
    pub closed: Option<bool>,
}

impl Pump {
    pub fn new(world: World, plans: Vec<Up>) -> Pump {
        let conn = Connection::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), HEADER, world.now);
        Pump {
            world,
            conn,
            to_send: VecDeque::new(),
            chunk: usize::MAX,
            client_fin: false,
            client_stalled: false,
            received: Vec::new(),
            upstream_got: Vec::new(),
            plans: plans.into(),
            link: None,
            answered: 0,
            actions: Vec::new(),
            states: BTreeSet::new(),
            released: Vec::new(),
            shut_write: false,
            upstream_shut: false,
            closed: None,
        }
    }

    /// The client sends `bytes` (delivered on the next run).
    pub fn send(&mut self, bytes: &[u8]) -> &mut Self {
        self.to_send.extend(bytes);
        self
    }

    /// Moves the clock to the machine's deadline and tells it.
    pub fn expire(&mut self) -> &mut Self {
        self.world.now = self.conn.deadline();
        let mut cx = self.world.cx();
        self.conn.timer(&mut cx);
        self.run()
    }

    /// Moves the clock by `d` (the machine is told only of a deadline it passed).
    pub fn advance(&mut self, d: Duration) -> &mut Self {
        self.world.now += d;
        if self.world.now >= self.conn.deadline() {
            let mut cx = self.world.cx();
            self.conn.timer(&mut cx);
        }
        self.run()
    }

    fn next_plan(&mut self) -> Up {
        if self.plans.len() > 1 {
            self.plans.pop_front().unwrap()
        } else {
            self.plans.front().cloned().unwrap_or(Up::Refuse)
        }
    }

    /// Runs the machine until it waits for something the scripts do not give now (or closes).
    pub fn run(&mut self) -> &mut Self {
        for _ in 0..1_000_000 {
            if self.closed.is_some() {
                return self;
            }
            self.states.insert(self.conn.state_name());
            let mut cx = self.world.cx();
            let a = self.conn.poll(&mut cx);
            self.actions.push(a);
            let progressed = match a {
                Action::ReadClient => {
                    if !self.to_send.is_empty() {
                        let buf = self.conn.client_buf(&mut cx);
                        let spare = buf.spare();
                        if spare.is_empty() {
                            self.conn.client_read(Input::Full, &mut cx);
                        } else {
                            let n = spare.len().min(self.chunk).min(self.to_send.len());
                            for (d, s) in spare.iter_mut().zip(self.to_send.drain(..n)) {
                                *d = s;
                            }
                            buf.filled(n);
                            self.conn.client_read(Input::Data, &mut cx);
                        }
                        true
                    } else if self.client_fin {
                        self.conn.client_read(Input::Eof, &mut cx);
                        true
                    } else {
                        false
                    }
                }
                Action::WriteClient => {
                    if self.client_stalled {
                        false
                    } else {
                        let out = self.conn.client_out();
                        self.received.extend_from_slice(out.data());
                        let n = out.len();
                        out.consume(n);
                        true
                    }
                }
                Action::OpenUpstream { .. } => {
                    let _ = &cx;
                    let plan = self.next_plan();
                    let mut cx = self.world.cx();
                    match plan {
                        Up::Refuse => self.conn.upstream_connect_failed(&mut cx),
                        p => {
                            let reused = match &p {
                                Up::Answer { reused, .. }
                                | Up::CloseAtOnce { reused }
                                | Up::SendThenClose { reused, .. }
                                | Up::Silent { reused } => *reused,
                                _ => false,
                            };
                            self.upstream_got.push(Vec::new());
                            self.link = Some(Link {
                                plan: p,
                                got: Vec::new(),
                                send: VecDeque::new(),
                                closed: false,
                            });
                            self.conn.upstream_attached(reused, reused, &mut cx);
                        }
                    }
                    true
                }
                Action::AwaitUpstream => {
                    match self.link.as_ref().map(|l| &l.plan) {
                        Some(Up::ConnectFails) | None => self.conn.upstream_connect_failed(&mut cx),
                        Some(Up::NeverConnects) => {
                            let mut cx = self.world.cx();
                            self.conn.park(&mut cx);
                            return self;
                        }
                        Some(_) => self.conn.upstream_connected(&mut cx),
                    }
                    true
                }
                Action::WriteUpstream => {
                    let data = self.conn.upstream_out().to_vec();
                    let link = self.link.as_mut().expect("an upstream to write to");
                    if link.closed {
                        self.conn.upstream_closed(&mut cx);
                    } else {
                        let echo = matches!(link.plan, Up::Tunnel { .. }) && !link.got.is_empty();
                        link.got.extend_from_slice(&data);
                        self.upstream_got.last_mut().unwrap().extend_from_slice(&data);
                        self.conn.upstream_wrote(data.len(), &mut cx);
                        if echo {
                            link.send.extend(&data);
                        }
                        // A whole request received: the upstream reacts.
                        match &link.plan {
                            Up::Answer { answers, .. } => {
                                if let Some(a) = answers.get(self.answered) {
                                    link.send.extend(a);
                                    self.answered += 1;
                                }
                            }
                            Up::CloseAtOnce { .. } => link.closed = true,
                            Up::SendThenClose { bytes, .. } => {
                                link.send.extend(bytes);
                                link.closed = true;
                            }
                            Up::Tunnel { answer, .. } if !echo => link.send.extend(answer),
                            _ => {}
                        }
                    }
                    true
                }
                Action::ReadUpstream => {
                    let link = self.link.as_mut().expect("an upstream to read from");
                    if !link.send.is_empty() {
                        let buf = self.conn.upstream_buf(&mut cx);
                        let spare = buf.spare();
                        if spare.is_empty() {
                            self.conn.upstream_read(Input::Full, &mut cx);
                        } else {
                            let n = spare.len().min(self.chunk).min(link.send.len());
                            for (d, s) in spare.iter_mut().zip(link.send.drain(..n)) {
                                *d = s;
                            }
                            buf.filled(n);
                            self.conn.upstream_read(Input::Data, &mut cx);
                        }
                        true
                    } else if link.closed {
                        self.conn.upstream_read(Input::Eof, &mut cx);
                        true
                    } else {
                        false
                    }
                }
                Action::ReleaseUpstream { reusable, failure } => {
                    self.released.push((reusable, failure));
                    self.link = None;
                    true
                }
                Action::ShutdownWrite => {
                    self.shut_write = true;
                    true
                }
                Action::ShutdownUpstreamWrite => {
                    // The echo server ends its side once the client's end reached it.
                    if let Some(link) = self.link.as_mut() {
                        link.closed |= matches!(link.plan, Up::Tunnel { close_on_fin: true, .. });
                    }
                    self.upstream_shut = true;
                    true
                }
                Action::Close { reset } => {
                    self.closed = Some(reset);
                    let _ = &cx;
                    let mut cx = self.world.cx();
                    self.conn.release_buffers(&mut cx);
                    return self;
                }
                Action::Wait => false,
            };
            if !progressed {
                // A tunnel's other sides may still move.
                if a != Action::Wait && self.conn.blocked() {
                    continue;
                }
                let mut cx = self.world.cx();
                self.conn.park(&mut cx);
                return self;
            }
        }
        panic!("the machine did not settle in a million actions");
    }

    /// The client's received bytes as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// The statuses of the responses the client received, in order (interim ones included).
    pub fn statuses(&self) -> Vec<u16> {
        let t = self.text();
        t.match_indices("HTTP/1.")
            .filter_map(|(i, _)| t.get(i + 9..i + 12))
            .filter_map(|s| s.parse().ok())
            .collect()
    }

    /// The names of the actions the machine asked for.
    pub fn action_kinds(&self) -> BTreeSet<&'static str> {
        self.actions.iter().map(|a| kind(a)).collect()
    }
}

pub fn kind(a: &Action) -> &'static str {
    match a {
        Action::ReadClient => "ReadClient",
        Action::WriteClient => "WriteClient",
        Action::OpenUpstream { fresh: false } => "OpenUpstream",
        Action::OpenUpstream { fresh: true } => "OpenUpstream(fresh)",
        Action::AwaitUpstream => "AwaitUpstream",
        Action::WriteUpstream => "WriteUpstream",
        Action::ReadUpstream => "ReadUpstream",
        Action::ReleaseUpstream { reusable: true, .. } => "ReleaseUpstream(pool)",
        Action::ReleaseUpstream { reusable: false, .. } => "ReleaseUpstream(close)",
        Action::ShutdownWrite => "ShutdownWrite",
        Action::ShutdownUpstreamWrite => "ShutdownUpstreamWrite",
        Action::Close { reset: false } => "Close",
        Action::Close { reset: true } => "Close(reset)",
        Action::Wait => "Wait",
    }
}

/// An upstream answer of `body` with Content-Length.
pub fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

pub const ACCEPT: &str = "Accept: application/vnd.example.v1+json\r\n";

/// A GET request with a usable Accept.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api\r\n{ACCEPT}\r\n")
}

/// A POST request with a JSON body.
pub fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// How the client's bytes are delivered.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    Whole,
    /// In two reads, the first of this many bytes.
    At(usize),
    /// One byte per read.
    Bytes,
}

/// What came of a byte stream through the machine, with an upstream that answers every request 200.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Statuses the client received (the upstream's 200s and the ingress's own answers).
    pub statuses: Vec<u16>,
    /// The requests the upstream received, in order.
    pub forwarded: Vec<Vec<u8>>,
    /// The connection's end: `None` still open, `Some(false)` closing cleanly (half-closed or closed),
    /// `Some(true)` reset.
    pub end: Option<bool>,
}

/// Feeds `bytes` to a new connection in `world`, delivered as `split` says; the client then waits (it does
/// not close), so an unfinished message stays unfinished.
pub fn stream(world: World, bytes: &[u8], split: Split) -> (Outcome, World) {
    let answers = (0..64).map(|_| ok("ok")).collect();
    let mut p = Pump::new(world, vec![Up::Answer { reused: false, answers }]);
    match split {
        Split::Whole => {
            p.send(bytes).run();
        }
        Split::At(k) => {
            p.send(&bytes[..k]).run();
            p.send(&bytes[k..]).run();
        }
        Split::Bytes => {
            p.chunk = 1;
            p.send(bytes).run();
        }
    }
    let end = p.closed.or(p.shut_write.then_some(false));
    let o = Outcome {
        statuses: p.statuses(),
        forwarded: std::mem::take(&mut p.upstream_got),
        end,
    };
    // The connection's buffers go back to the pool (as the worker does when it drops a connection).
    let mut cx = p.world.cx();
    p.conn.release_buffers(&mut cx);
    (o, p.world)
}

/// `bytes` gives the same outcome whole, in two pieces split at every offset (up to `max_split` bytes in),
/// and one byte at a time, under the rules of `flags`. Returns the outcome.
pub fn same_in_pieces(flags: &[&str], bytes: &[u8], max_split: usize, name: &str) -> Outcome {
    let (whole, mut world) = stream(World::new(flags), bytes, Split::Whole);
    for k in 1..bytes.len().min(max_split) {
        let (got, w) = stream(world, bytes, Split::At(k));
        world = w;
        assert_eq!(got, whole, "{name}: split at {k} of {}", bytes.len());
    }
    let (got, _) = stream(world, bytes, Split::Bytes);
    assert_eq!(got, whole, "{name}: one byte at a time");
    whole
}

/// Decodes standard base64 (the corpora keep raw requests so).
pub fn b64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= (val(c) as u32) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..1 + chunk.len() * 6 / 8]);
    }
    out
}
