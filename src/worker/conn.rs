//! One client connection and the exchange it carries: reading a request, forwarding it, relaying the answer.
//!
//! Each `*_step` function moves one connection as far as its sockets allow and reports what the worker
//! must do next ([`Step`]). Protocol decisions are delegated to the pure `http` module; this file only moves
//! bytes between sockets, buffers and those functions, and keeps the readiness bits (edge-triggered: a bit
//! is cleared only on `WouldBlock` or a short read).

use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use super::pool::BufPool;
pub use super::state::{BodyState, Exchange, IpText, Phase, Ready};
use crate::access_log::{AccessLog, Entry, TARGET_MAX};
use crate::buf::{put_u64, Buf, Out};
use crate::guard::decode::{DecodeError, Decoder};
use crate::guard::json::{JsonError, JsonValidator};
use crate::guard::Mode;
use crate::http::chunked::{ChunkError, ChunkedDecoder};
use crate::http::request::{self, Framing, RequestHead};
use crate::http::write;
use crate::http::{Conn, Reason, Version};
use crate::limit::tiers::Memo;
use crate::limit::{retry_after_secs, Decision};
use crate::metrics::{add, WorkerMetrics};
use crate::rules::Rules;
use crate::server::Shared;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// Largest body of a refused request that is read and dropped to keep the connection (else it is closed).
const DISCARD_MAX: u64 = 64 * 1024;

pub struct Client {
    pub sock: TcpStream,
    pub gen: u32,
    pub ip: IpText,
    pub peer: std::net::IpAddr,
    pub io: Ready,
    pub inbuf: Option<Buf>,
    pub out: Option<Buf>,
    pub phase: Phase,
    pub deadline: Instant,
    /// The tick of this connection's live wheel entry (0: none).
    pub timer_tick: u64,
    pub upstream: Option<usize>,
    pub ex: Exchange,
    /// The access log's fields of the current request (only with an access log).
    pub logf: Option<Box<super::state::LogFields>>,
}

/// An upstream connection, owned by the worker's upstream slab.
pub struct Upstream {
    pub sock: TcpStream,
    pub gen: u32,
    pub io: Ready,
    pub connected: bool,
    /// The client (key, generation) this connection serves; `None` while pooled.
    pub owner: Option<(usize, u32)>,
    pub idle_since: Instant,
}

/// What the worker does after a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Progress was made: step again.
    Continue,
    /// Nothing more until an event or a timer.
    Wait,
    /// Close the client (and its upstream, if any, without reuse).
    Close,
    /// The request is in `ex.fwd`: attach an upstream connection (a new one if `fresh`).
    NeedUpstream { fresh: bool },
    /// The exchange with the upstream is over: pool the connection if `reusable`, else close it.
    ReleaseUpstream { reusable: bool },
    /// The upstream failed: close it; then retry on a fresh connection, answer `reason`, or close the client.
    UpstreamFailed { retry: bool, reason: Option<Reason> },
}

/// The worker's state a step may use.
pub struct Env<'a> {
    pub shared: &'a Shared,
    pub metrics: &'a WorkerMetrics,
    /// This worker's index (its metrics block, its fleet journal).
    pub worker: usize,
    /// The policy in force for requests whose head completes now.
    pub rules: &'a Rules,
    pub memo: &'a mut Memo,
    /// The canonical user key of the request being decided (grows to the longest key, then stays).
    pub key_scratch: &'a mut Vec<u8>,
    /// The `Date` of the ingress's own answers.
    pub date: &'a mut super::date::DateCache,
    pub log: &'a mut Option<AccessLog>,
    /// Wall-clock time of this loop iteration, Unix milliseconds (only kept up to date with an access log).
    pub wall_ms: u64,
    pub bufs: &'a mut BufPool,
    pub json: &'a mut JsonValidator,
    /// Decodes coded JSON bodies (its buffers grow to the largest body and stay).
    pub decoder: &'a mut Decoder,
    pub now: Instant,
    pub draining: bool,
}

pub(super) enum ReadResult {
    Data,
    Eof,
    WouldBlock,
    Full,
}

/// Reads once into `buf`. A short read means the socket is drained (edge-triggered): the readable bit is
/// cleared without paying for a read that would return `WouldBlock`.
pub(super) fn read_once(sock: &mut TcpStream, io: &mut Ready, buf: &mut Buf) -> io::Result<ReadResult> {
    let spare = buf.spare();
    let want = spare.len();
    if want == 0 {
        return Ok(ReadResult::Full);
    }
    loop {
        match sock.read(spare) {
            Ok(0) => {
                io.hup = true;
                return Ok(ReadResult::Eof);
            }
            Ok(n) => {
                buf.filled(n);
                if n < want && !io.hup {
                    io.readable = false;
                }
                return Ok(ReadResult::Data);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                return Ok(ReadResult::WouldBlock);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes as much of `buf` as the socket takes. `Ok(true)` once it is empty.
pub(super) fn write_out(sock: &mut TcpStream, io: &mut Ready, buf: &mut Buf) -> io::Result<bool> {
    while !buf.is_empty() {
        if !io.writable {
            return Ok(false);
        }
        match sock.write(buf.data()) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Client {
    /// Starts a new exchange on this connection: nothing of the previous request's state (nor its access-log
    /// fields) carries over.
    pub(super) fn begin_exchange(&mut self, ex: Exchange) {
        self.ex = ex;
        if let Some(f) = self.logf.as_mut() {
            f.reset();
        }
    }

    /// Queues the ingress's own answer for `reason` and moves to `Flush`.
    pub fn respond(&mut self, env: &mut Env<'_>, reason: Reason) -> Step {
        let close = reason.closes() || !self.ex.keep_alive || env.draining;
        let conn = Conn::new(close, self.ex.version);
        let out = self.out.get_or_insert_with(|| env.bufs.get());
        let rules = env.rules;
        let tier = match reason {
            Reason::RateLimited => rules.tiers.as_ref().and_then(|t| t.tiers.get(self.ex.tier as usize)),
            Reason::IpRateLimited => rules.ip_tier.as_ref(),
            _ => None,
        };
        let date = env.date.now();
        let secs = self.ex.retry_secs;
        // RFC 9110 section 6.6.1: an origin with a clock sends Date.
        let fields = |o: &mut Buf| {
            o.put(b"Date: ");
            o.put(date);
            o.put(b"\r\n");
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
        let body = !self.ex.is_head;
        match (reason, self.ex.json_error) {
            (Reason::MalformedJson, Some((at, expected))) => rules
                .catalogue
                .write_malformed_json(out, conn, body, at as u64, expected, fields),
            _ => rules.catalogue.write_with(out, reason, conn, body, fields),
        }
        self.ex.close_after = close;
        self.phase = Phase::Flush;
        self.deadline = env.now + env.shared.config.timeouts.body;
        let queued = out.len() as u64;
        let m = env.metrics;
        m.request(reason.status(), Some(reason), self.elapsed_us(env));
        add(&m.bytes_out, queued);
        self.ex.bytes_out += queued;
        self.log_request(env, reason.status(), Some(reason));
        crate::debug!(
            "{} {} {}: {} {}",
            std::str::from_utf8(self.ip.as_bytes()).unwrap_or("?"),
            crate::http::request::ALLOWED_METHODS[self.ex.method_idx as usize],
            String::from_utf8_lossy(&self.ex.target[..self.ex.target_len as usize]),
            reason.status(),
            reason.code()
        );
        match reason {
            Reason::UpstreamUnavailable => add(&m.upstream_connect_failures, 1),
            Reason::UpstreamTimeout => add(&m.upstream_timeouts, 1),
            _ => {}
        }
        Step::Continue
    }

    /// Appends this request's access-log line (when the log is on).
    pub fn log_request(&self, env: &mut Env<'_>, status: u16, reason: Option<Reason>) {
        if let Some(log) = env.log.as_mut() {
            self.log_entry(log, env.wall_ms, env.now, status, reason.map(|r| r.code()));
        }
    }

    /// Appends this request's access-log line to `log`; `reason`: the refusal code, or `aborted`.
    pub fn log_entry(&self, log: &mut AccessLog, wall_ms: u64, now: Instant, status: u16, reason: Option<&str>) {
        let us = |v: u32| (v != u32::MAX).then_some(v);
        let f = self.logf.as_deref();
        log.entry(&Entry {
            time_ms: wall_ms,
            client: f.and_then(|f| f.client.as_ref()).unwrap_or(&self.ip).as_bytes(),
            peer: self.ip.as_bytes(),
            host: f.map_or(&[][..], |f| &f.host[..f.host_len as usize]),
            user_agent: f.map_or(&[][..], |f| &f.user_agent[..f.user_agent_len as usize]),
            upstream_connect_us: f.and_then(|f| us(f.up_connect_us)),
            upstream_response_us: f.and_then(|f| us(f.up_response_us)),
            method: crate::http::request::ALLOWED_METHODS[self.ex.method_idx as usize],
            target: &self.ex.target[..self.ex.target_len as usize],
            target_cut: self.ex.target_cut,
            status,
            reason,
            bytes_in: self.ex.bytes_in,
            bytes_out: self.ex.bytes_out,
            duration_us: now.saturating_duration_since(self.ex.started).as_micros() as u64,
            user: self.ex.user,
            would_refuse: self.ex.observed.map(|r| r.code()),
        });
    }

    /// Microseconds since the current request's head was complete.
    pub fn elapsed_us(&self, env: &Env<'_>) -> u64 {
        env.now.saturating_duration_since(self.ex.started).as_micros() as u64
    }

    pub fn step(&mut self, up: Option<&mut Upstream>, env: &mut Env<'_>) -> Step {
        match self.phase {
            Phase::Head { .. } => self.head_step(env),
            Phase::Body { .. } => self.body_step(env),
            Phase::Upstream => match up {
                Some(u) => self.upstream_step(u, env),
                None => Step::NeedUpstream { fresh: false },
            },
            Phase::Relay => match up {
                Some(u) => self.relay_step(u, env),
                None => Step::Close,
            },
            Phase::Flush => self.flush_step(env),
            Phase::Linger { .. } => self.linger_step(env),
            Phase::Discard => self.discard_step(env),
        }
    }

    fn head_step(&mut self, env: &mut Env<'_>) -> Step {
        let mut inb = self.inbuf.take().unwrap_or_else(|| env.bufs.get());
        let step = self.head_step_with(&mut inb, env);
        self.inbuf = Some(inb);
        if step == Step::Close || !matches!(self.phase, Phase::Head { started: true } | Phase::Body { .. }) {
            env.bufs.put_if_empty(&mut self.inbuf);
        }
        step
    }

    fn head_step_with(&mut self, inb: &mut Buf, env: &mut Env<'_>) -> Step {
        let limits = env.shared.config.limits;
        loop {
            if !inb.is_empty() {
                let mut storage = request::header_storage();
                let accepted = match request::parse_head(inb.data(), &limits, &mut storage) {
                    Err(reason) => {
                        // Nothing of the previous exchange belongs to this refusal.
                        self.begin_exchange(Exchange::idle(env.now));
                        self.ex.bytes_in = inb.len() as u64;
                        return self.respond(env, reason);
                    }
                    Ok(Some(head)) => Some(self.accept_head(inb.data(), &head, env)),
                    Ok(None) => None,
                };
                match accepted {
                    Some((step, consume, reserve)) => {
                        inb.consume(consume);
                        inb.reserve(reserve);
                        return step;
                    }
                    None => {
                        if let Phase::Head { started: false } = self.phase {
                            self.phase = Phase::Head { started: true };
                            self.deadline = env.now + env.shared.config.timeouts.header;
                        }
                    }
                }
            }
            // Draining: an idle connection is closed at its deadline (a short grace); a request that arrives
            // first is read and answered with `Connection: close`.
            if !self.io.readable {
                if self.io.hup {
                    return Step::Close;
                }
                return Step::Wait;
            }
            match read_once(&mut self.sock, &mut self.io, inb) {
                Ok(ReadResult::Data) => {}
                Ok(ReadResult::WouldBlock) => return Step::Wait,
                // Full cannot happen below the head limit; a client that closes mid-head gets no answer.
                Ok(ReadResult::Full | ReadResult::Eof) | Err(_) => return Step::Close,
            }
        }
    }

    /// A complete, valid head is at the start of `data`. This is where the request checks plug in.
    /// Returns the step, the input bytes to consume, and the room to reserve for the body.
    fn accept_head(&mut self, data: &[u8], head: &RequestHead<'_, '_>, env: &mut Env<'_>) -> (Step, usize, usize) {
        self.begin_exchange(Exchange::new(head, env.now));
        let head_len = head.head_len;
        // The request checks decide from the head, before any body byte: the rate limit first, then Accept
        // and Content-Type.
        let mut refusal = None;
        if env.log.is_some() {
            let t = head.target.as_bytes();
            let n = t.len().min(TARGET_MAX);
            self.ex.target[..n].copy_from_slice(&t[..n]);
            self.ex.target_len = n as u8;
            self.ex.target_cut = t.len() > TARGET_MAX;
            let f = self.logf.get_or_insert_with(super::state::LogFields::new);
            let host = head.header(b"host").unwrap_or_default();
            let n = host.len().min(super::state::HOST_MAX);
            f.host[..n].copy_from_slice(&host[..n]);
            f.host_len = n as u8;
            let ua = head.header(b"user-agent").unwrap_or_default();
            let n = ua.len().min(super::state::UA_MAX);
            f.user_agent[..n].copy_from_slice(&ua[..n]);
            f.user_agent_len = n as u8;
        }
        let rules = env.rules;
        let limiter = env.shared.limiter.as_ref().filter(|_| rules.rate_mode != Mode::Off);
        // A field the checks read must reach the upstream as they read it: a Connection header naming it
        // (so that it is removed as hop-by-hop after the check) is refused by the rules that enforce.
        if head.connection_names_fields
            && crate::guard::connection_names_checked(
                &rules.policy,
                head,
                limiter
                    .filter(|_| rules.rate_mode == Mode::Enforce)
                    .map(|l| l.checked_fields()),
            )
        {
            return (self.respond(env, Reason::InvalidConnectionHeader), head_len, 0);
        }
        if let (Some(lim), Some(tiers)) = (limiter, rules.tiers.as_ref()) {
            let key = match lim.user_key(head, self.peer, env.key_scratch) {
                Ok(k) => k,
                // Observed: counted and logged, and the request is keyed on the socket's address.
                Err(reason) if rules.rate_mode == Mode::Observe => {
                    self.ex.observed = Some(reason);
                    lim.address_key(self.peer)
                }
                Err(reason) => return (self.respond(env, reason), head_len, 0),
            };
            self.ex.user = Some(key.id);
            if let Some(f) = self.logf.as_mut().filter(|_| key.ip != self.peer) {
                f.client = Some(IpText::new(key.ip));
            }
            self.ex.tier = tiers.lookup(key.id, key.value, env.memo);
            let tier = &tiers.tiers[self.ex.tier as usize];
            // The per-address backstop, for every request of an address that is not a listed user's; a
            // refusal there spends none of the user's budget.
            let ip_decision = if self.ex.tier == 0 {
                lim.decide_ip(key.ip, env.now)
            } else {
                None
            };
            match ip_decision {
                Some(Decision::Deny { .. }) if rules.rate_mode == Mode::Observe => {
                    self.ex.observed = Some(Reason::IpRateLimited)
                }
                Some(Decision::Deny { retry_after_us }) => {
                    self.ex.retry_secs = retry_after_secs(retry_after_us);
                    refusal = Some(Reason::IpRateLimited);
                }
                _ => {}
            }
            if refusal.is_none() {
                match lim.decide_with(&tier.gcra, key.id, env.now) {
                    Decision::Allow {
                        remaining, reset_us, ..
                    } => {
                        lim.record(env.worker, key.id, &tier.gcra);
                        self.ex.quota = Some((remaining, retry_after_secs(reset_us)));
                    }
                    // Observed: forwarded; a refused decision changed nothing, so no budget is spent.
                    Decision::Deny { .. } if rules.rate_mode == Mode::Observe => {
                        self.ex.observed = self.ex.observed.or(Some(Reason::RateLimited))
                    }
                    Decision::Deny { retry_after_us } => {
                        self.ex.retry_secs = retry_after_secs(retry_after_us);
                        refusal = Some(Reason::RateLimited);
                    }
                }
            }
        }
        if refusal.is_none() {
            match crate::guard::check_head(&rules.policy, head) {
                Ok(adm) => {
                    self.ex.api_version = adm.version;
                    self.ex.json = adm.json_body;
                    self.ex.deferred = adm.deferred;
                    self.ex.coding = adm.coding;
                    self.ex.observed = self.ex.observed.or(adm.observed);
                }
                Err(reason) => refusal = Some(reason),
            }
        }
        if let Some(reason) = refusal {
            // Keep the connection when the body is small enough to read and drop; else close it.
            match head.framing {
                Framing::None => {}
                Framing::Length(n) if n <= DISCARD_MAX && !head.expect_continue => self.ex.discard = n,
                _ => self.ex.keep_alive = false,
            }
            return (self.respond(env, reason), head_len, 0);
        }
        let (body, reserve) = match head.framing {
            Framing::None => return (self.forward(data, head, head_len..head_len, env), head_len, 0),
            Framing::Length(n) => {
                let end = head_len + n as usize;
                if data.len() >= end {
                    return (self.forward(data, head, head_len..end, env), end, 0);
                }
                // Room for what the next reads may bring, not for the whole announced length: a client that
                // announces 1 MiB and trickles it pins only what it has sent (the buffer grows by doubling).
                (BodyState::Length { end }, (end - data.len()).min(env.bufs.size()))
            }
            Framing::Chunked => (
                BodyState::Chunked {
                    dec: ChunkedDecoder::new(env.shared.config.limits.max_body),
                    decoded_end: head_len,
                    raw_pos: head_len,
                },
                0,
            ),
        };
        // RFC 9110 section 10.1.1: never send 100 (Continue) to an HTTP/1.0 client.
        if head.expect_continue && data.len() == head_len && head.version == Version::Http11 {
            let out = self.out.get_or_insert_with(|| env.bufs.get());
            out.put(CONTINUE);
            self.ex.interim = true;
            if write_out(&mut self.sock, &mut self.io, out).is_err() {
                return (Step::Close, 0, 0);
            }
        }
        self.phase = Phase::Body { head_len, body };
        self.deadline = env.now + env.shared.config.timeouts.body;
        (Step::Continue, 0, reserve)
    }

    fn body_step(&mut self, env: &mut Env<'_>) -> Step {
        let Some(mut inb) = self.inbuf.take() else {
            return Step::Close;
        };
        let step = self.body_step_with(&mut inb, env);
        self.inbuf = Some(inb);
        // Forwarded: an emptied input buffer (grown for the body) goes back now, not after the response has
        // been read by a possibly slow client. Pipelined bytes after the body move into a standard buffer, and
        // a grown one is freed: a trailing byte must not keep a body-sized buffer through the whole exchange.
        if !matches!(self.phase, Phase::Body { .. }) {
            env.bufs.put_if_empty(&mut self.inbuf);
            if let Some(grown) = self
                .inbuf
                .take_if(|b| b.capacity() > env.bufs.size() && b.len() <= env.bufs.size())
            {
                let mut small = env.bufs.get();
                small.put(grown.data());
                self.inbuf = Some(small);
            }
        }
        step
    }

    fn body_step_with(&mut self, inb: &mut Buf, env: &mut Env<'_>) -> Step {
        loop {
            let Phase::Body { head_len, ref mut body } = self.phase else {
                return Step::Close;
            };
            match body {
                BodyState::Length { end } => {
                    let end = *end;
                    if inb.len() >= end {
                        return self.forward_reparsed(inb, head_len, head_len..end, end, env);
                    }
                    let want = end - inb.len();
                    if inb.spare().len() < want.min(4096) {
                        inb.reserve(want.min(inb.capacity().max(env.bufs.size())));
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
                            Err(ChunkError::TooLarge) => return self.respond(env, Reason::BodyTooLarge),
                            Err(_) => return self.respond(env, Reason::MalformedChunkedBody),
                        }
                    }
                    let (decoded_end, raw_pos) = (*decoded_end, *raw_pos);
                    if done {
                        // Pipelined bytes after the body stay; the decoded body is contiguous after the head.
                        let req_end = raw_pos;
                        return self.forward_reparsed(inb, head_len, head_len..decoded_end, req_end, env);
                    }
                    // Reclaim the framing bytes already decoded so the buffer holds head + payload + rest.
                    let gap = raw_pos - decoded_end;
                    if gap > 0 {
                        let len = inb.len();
                        inb.data_mut().copy_within(raw_pos..len, decoded_end);
                        inb.truncate(len - gap);
                        if let Phase::Body {
                            body: BodyState::Chunked { raw_pos, .. },
                            ..
                        } = &mut self.phase
                        {
                            *raw_pos = decoded_end;
                        }
                    }
                    if inb.spare().len() < 4096 {
                        inb.reserve(env.bufs.size());
                    }
                }
            }
            if !self.io.readable {
                return if self.io.hup { Step::Close } else { Step::Wait };
            }
            match read_once(&mut self.sock, &mut self.io, inb) {
                Ok(ReadResult::Data) => {}
                Ok(ReadResult::WouldBlock) => return Step::Wait,
                Ok(ReadResult::Full) => return self.respond(env, Reason::BodyTooLarge),
                Ok(ReadResult::Eof) | Err(_) => return Step::Close,
            }
        }
    }

    fn forward_reparsed(
        &mut self,
        inb: &mut Buf,
        head_len: usize,
        body: std::ops::Range<usize>,
        req_end: usize,
        env: &mut Env<'_>,
    ) -> Step {
        let limits = env.shared.config.limits;
        let mut storage = request::header_storage();
        let step = match request::parse_head(&inb.data()[..head_len], &limits, &mut storage) {
            Ok(Some(head)) => self.forward(inb.data(), &head, body, env),
            _ => Step::Close, // cannot happen: the same bytes parsed before
        };
        inb.consume(req_end);
        step
    }

    /// Builds the forwarded request (head + body) for the upstream; the caller consumes it from the input.
    fn forward(
        &mut self,
        data: &[u8],
        head: &RequestHead<'_, '_>,
        body: std::ops::Range<usize>,
        env: &mut Env<'_>,
    ) -> Step {
        let body = &data[body];
        add(&env.metrics.bytes_in, (head.head_len + body.len()) as u64);
        self.ex.bytes_in = (head.head_len + body.len()) as u64;
        let rules = env.rules;
        // A chunked body that turned out empty has no content to check.
        if body.is_empty() && rules.policy.json_allow_empty {
            self.ex.json = false;
        } else if let Some(r) = self.ex.deferred {
            if rules.policy.content_type_mode == Mode::Enforce {
                return self.respond(env, r);
            }
            self.ex.observed = self.ex.observed.or(Some(r));
        }
        if self.ex.json {
            // A coded body is validated decoded (and forwarded as sent), within the body limit and the ratio.
            let doc = match self.ex.coding {
                None => Ok(body),
                Some(c) => {
                    let p = &rules.policy;
                    let limit = (env.shared.config.limits.max_body as usize)
                        .min(body.len().saturating_mul(p.max_decode_ratio as usize));
                    env.decoder.decode(c, body, limit)
                }
            };
            let verdict = match doc {
                Ok(doc) => {
                    add(&env.metrics.json_bytes, doc.len() as u64);
                    match env.json.validate(doc) {
                        Ok(()) => None,
                        Err(JsonError::Malformed) => {
                            // Say where (only for a refusal: one more pass over the body).
                            if rules.policy.json_mode == Mode::Enforce {
                                self.ex.json_error = crate::guard::json_where::locate(doc)
                                    .map(|(at, what)| (at.min(u32::MAX as usize) as u32, what));
                            }
                            Some(Reason::MalformedJson)
                        }
                        Err(JsonError::TooDeep) => Some(Reason::JsonTooDeep),
                    }
                }
                // A size limit, like --max-body: always enforced.
                Err(DecodeError::TooLarge) => return self.respond(env, Reason::BodyTooLarge),
                Err(DecodeError::Malformed) => Some(Reason::MalformedContentEncoding),
            };
            if let Some(reason) = verdict {
                if rules.policy.json_mode == Mode::Enforce {
                    return self.respond(env, reason);
                }
                self.ex.observed = self.ex.observed.or(Some(reason));
            }
        }
        if let Some(r) = self.ex.observed {
            add(&env.metrics.observed[r as usize], 1);
        }
        let policy = &rules.policy;
        let info = write::Forward {
            client_ip: self.ip.as_bytes(),
            default_host: &env.shared.upstream_host,
            version_header: policy.version_header.as_bytes(),
            version: self
                .ex
                .api_version
                .and_then(|i| policy.accept.get(i))
                .map(|t| t.version.as_bytes()),
            observe: rules
                .observe_header
                .as_deref()
                .map(|h| (h, self.ex.observed.map(|r| r.code().as_bytes()))),
        };
        let mut fwd = env.bufs.get();
        let underscores = write::forward_head(&mut fwd, head, body.len() as u64, &info);
        if underscores > 0 {
            add(&env.metrics.underscore_fields_dropped, underscores as u64);
        }
        fwd.put(body);
        self.ex.fwd = Some(fwd);
        self.ex.sent = 0;
        self.phase = Phase::Upstream;
        Step::NeedUpstream { fresh: false }
    }
}
