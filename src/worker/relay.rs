//! The upstream half of an exchange: connecting, sending the request, reading and rewriting the response
//! head, and relaying the body with backpressure (the upstream is read only once the client took everything).

use std::io::{self, Write};

use super::conn::{read_once, write_out, Client, Env, Phase, ReadResult, Step, Upstream};
use crate::buf::Out;
use crate::http::chunked::ChunkError;
use crate::http::request;
use crate::http::response::{self, BodyFramer, BodyKind};
use crate::http::write::{self, ClientSide};
use crate::http::{Reason, Version};
use crate::metrics::add;

impl Client {
    pub(super) fn upstream_step(&mut self, u: &mut Upstream, env: &mut Env<'_>) -> Step {
        let t = env.shared.config.timeouts;
        // A pending `100 Continue` goes out first: the response is read into the same buffer, and an error
        // answer must never follow a half-written interim response.
        if self.ex.interim {
            if let Some(out) = self.out.as_mut() {
                match write_out(&mut self.sock, &mut self.io, out) {
                    Ok(true) => {}
                    Ok(false) => return Step::Wait,
                    Err(_) => return Step::Close,
                }
            }
            self.ex.interim = false;
        }
        if !u.connected {
            if !u.io.writable && !u.io.hup {
                return Step::Wait;
            }
            match u.sock.take_error() {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => {
                    return Step::UpstreamFailed {
                        retry: false,
                        reason: Some(Reason::UpstreamUnavailable),
                    }
                }
            }
            match u.sock.peer_addr() {
                Ok(_) => {
                    u.connected = true;
                    let since = self.elapsed_us(env).min(u32::MAX as u64 - 1) as u32;
                    if let Some(f) = self.logf.as_mut() {
                        f.up_connect_us = since;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected && !u.io.hup => {
                    u.io.writable = false;
                    return Step::Wait;
                }
                Err(_) => {
                    return Step::UpstreamFailed {
                        retry: false,
                        reason: Some(Reason::UpstreamUnavailable),
                    }
                }
            }
        }
        let Some(fwd) = self.ex.fwd.as_ref() else {
            return Step::Close;
        };
        if self.ex.sent < fwd.len() {
            while self.ex.sent < fwd.len() {
                if !u.io.writable {
                    return Step::Wait;
                }
                match u.sock.write(&fwd.data()[self.ex.sent..]) {
                    Ok(n) => self.ex.sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => u.io.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return self.failed_before_response(env),
                }
            }
            self.deadline = env.now + t.upstream;
        }
        let out = self.out.get_or_insert_with(|| env.bufs.get());
        loop {
            if !out.is_empty() {
                let mut storage = request::header_storage();
                let max_head = out.capacity();
                match response::parse_head(out.data(), max_head, self.ex.is_head, &mut storage) {
                    Err(_) => {
                        return Step::UpstreamFailed {
                            retry: false,
                            reason: Some(Reason::BadUpstreamResponse),
                        }
                    }
                    Ok(Some(h)) if h.is_interim() => {
                        let n = h.head_len;
                        out.consume(n);
                        continue;
                    }
                    Ok(Some(h)) => {
                        let dechunk = h.body == BodyKind::Chunked && self.ex.version == Version::Http10;
                        let close = self.ex.close_after || h.body == BodyKind::Close || dechunk || env.draining;
                        // The forwarded request's buffer becomes the response buffer, unless a large body grew
                        // it: a slow reader would hold that for as long as it reads.
                        let mut next = match self.ex.fwd.take() {
                            Some(b) if b.capacity() <= env.bufs.size() => b,
                            _ => env.bufs.get(),
                        };
                        next.clear();
                        write::response_head(
                            &mut next,
                            &h,
                            ClientSide {
                                version: self.ex.version,
                                close,
                                dechunk,
                                ratelimit: match (env.rules.ratelimit_headers, self.ex.quota, &env.rules.tiers) {
                                    (true, Some((r, t)), Some(tiers)) => tiers
                                        .tiers
                                        .get(self.ex.tier as usize)
                                        .map(|tier| (tier.quoted.as_slice(), r, t)),
                                    _ => None,
                                },
                            },
                        );
                        let from = next.len();
                        next.put(&out.data()[h.head_len..]);
                        self.ex.status = h.status;
                        let since = env.now.saturating_duration_since(self.ex.started).as_micros();
                        if let Some(f) = self.logf.as_mut() {
                            f.up_response_us = since.min(u32::MAX as u128 - 1) as u32;
                        }
                        self.ex.framer = BodyFramer::new(h.body);
                        self.ex.dechunk = dechunk;
                        self.ex.up_reusable = h.reusable;
                        self.ex.close_after = close;
                        let old = std::mem::replace(out, next);
                        env.bufs.put(old);
                        if self.frame_new(from).is_err() {
                            return Step::UpstreamFailed {
                                retry: false,
                                reason: Some(Reason::BadUpstreamResponse),
                            };
                        }
                        let n = self.out.as_ref().map_or(0, |o| o.len()) as u64;
                        add(&env.metrics.bytes_out, n);
                        self.ex.bytes_out += n;
                        self.phase = Phase::Relay;
                        self.deadline = env.now + t.upstream;
                        return Step::Continue;
                    }
                    Ok(None) => {}
                }
            }
            if !u.io.readable {
                return Step::Wait;
            }
            let had_bytes = !out.is_empty();
            match read_once(&mut u.sock, &mut u.io, out) {
                Ok(ReadResult::Data) => {}
                Ok(ReadResult::WouldBlock) => return Step::Wait,
                Ok(ReadResult::Full) => {
                    return Step::UpstreamFailed {
                        retry: false,
                        reason: Some(Reason::BadUpstreamResponse),
                    }
                }
                Ok(ReadResult::Eof) | Err(_) => {
                    if had_bytes {
                        return Step::UpstreamFailed {
                            retry: false,
                            reason: Some(Reason::BadUpstreamResponse),
                        };
                    }
                    return self.failed_before_response(env);
                }
            }
        }
    }

    /// The upstream failed before any byte of its response: retry once if the connection was a pooled one
    /// (it may have been closed by the upstream as the request went out), and if the request is idempotent
    /// (RFC 9110 9.2.2) or none of it was written: the upstream may have processed a POST or PATCH before
    /// closing, and sending it again would apply it twice. nginx's `proxy_next_upstream` draws the same line.
    pub(super) fn failed_before_response(&mut self, env: &mut Env<'_>) -> Step {
        add(&env.metrics.upstream_resets, 1);
        let idempotent = crate::http::Method::ALL[self.ex.method_idx as usize].idempotent();
        if self.ex.reused && !self.ex.retried && (idempotent || self.ex.sent == 0) {
            self.ex.retried = true;
            self.ex.sent = 0;
            return Step::UpstreamFailed {
                retry: true,
                reason: None,
            };
        }
        Step::UpstreamFailed {
            retry: false,
            reason: Some(Reason::UpstreamUnavailable),
        }
    }

    /// Frames the bytes of `out` from `from` on: drops what lies past the body's end (the upstream connection
    /// is then not reused), de-chunks for HTTP/1.0 clients or filters the trailer section of a chunked body
    /// relayed as is, and ends the framer when the body is complete.
    pub(super) fn frame_new(&mut self, from: usize) -> Result<(), ChunkError> {
        let out = self.out.as_mut().expect("out buffer");
        let total = out.len() - from;
        let Some(framer) = self.ex.framer.as_mut() else {
            if total > 0 {
                self.ex.up_reusable = false;
                out.truncate(from);
            }
            return Ok(());
        };
        let (keep, used, done) = match framer {
            BodyFramer::Chunked(dec) if self.ex.dechunk => dec.decode_in_place(&mut out.data_mut()[from..])?,
            // Relayed as chunks: trailer lines that carry framing fields or are not fields are removed.
            BodyFramer::Chunked(dec) => dec.relay_in_place(&mut out.data_mut()[from..])?,
            f => {
                let (used, done) = f.feed(&out.data()[from..])?;
                (used, used, done)
            }
        };
        if used < total {
            self.ex.up_reusable = false;
        }
        out.truncate(from + keep);
        if done {
            self.ex.framer = None;
        }
        Ok(())
    }

    pub(super) fn relay_step(&mut self, u: &mut Upstream, env: &mut Env<'_>) -> Step {
        let t = env.shared.config.timeouts;
        loop {
            let out = self.out.as_mut().expect("out buffer");
            if !out.is_empty() {
                match write_out(&mut self.sock, &mut self.io, out) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.deadline = env.now + t.body;
                        return Step::Wait;
                    }
                    Err(_) => return Step::Close,
                }
            }
            if self.ex.framer.is_none() {
                self.phase = Phase::Flush;
                env.metrics.request(self.ex.status, None, self.elapsed_us(env));
                self.log_request(env, self.ex.status, None);
                return Step::ReleaseUpstream {
                    reusable: self.ex.up_reusable,
                };
            }
            if !u.io.readable {
                self.deadline = env.now + t.upstream;
                return Step::Wait;
            }
            out.clear();
            match read_once(&mut u.sock, &mut u.io, out) {
                Ok(ReadResult::Data) => {
                    if self.frame_new(0).is_err() {
                        // Malformed chunking mid-body: the client must not see a complete response.
                        return Step::Close;
                    }
                    let n = self.out.as_ref().map_or(0, |o| o.len()) as u64;
                    add(&env.metrics.bytes_out, n);
                    self.ex.bytes_out += n;
                }
                Ok(ReadResult::WouldBlock) => {}
                Ok(ReadResult::Eof) if self.ex.framer.as_ref().is_some_and(|f| f.ends_at_close()) => {
                    self.ex.framer = None;
                    self.ex.up_reusable = false;
                }
                Ok(ReadResult::Eof | ReadResult::Full) | Err(_) => return Step::Close,
            }
        }
    }
}
