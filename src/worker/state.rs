//! The state a client connection carries between events: readiness bits, the phase of its current request,
//! and what the exchange must remember (plain values; the worker's driving code is in conn.rs).

use std::io::{self, Write};
use std::time::Instant;

use crate::access_log::TARGET_MAX;
use crate::buf::Buf;
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::RequestHead;
use crate::http::response::BodyFramer;
use crate::http::{Reason, Version};

/// Bytes of Host and of User-Agent kept for the access log.
pub const HOST_MAX: usize = 64;
pub const UA_MAX: usize = 96;

/// Readiness as last reported by the poller, kept in user space.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer shut down its write side (sticky).
    pub hup: bool,
}

/// Textual client address, kept without allocating.
#[derive(Debug, Clone, Copy)]
pub struct IpText {
    bytes: [u8; 46],
    len: u8,
}

impl IpText {
    pub fn new(ip: std::net::IpAddr) -> IpText {
        let mut bytes = [0u8; 46];
        let mut cur = io::Cursor::new(&mut bytes[..]);
        let _ = write!(cur, "{ip}");
        let len = cur.position() as u8;
        IpText { bytes, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

#[derive(Debug)]
pub enum BodyState {
    /// The request ends at this offset of the input buffer.
    Length { end: usize },
    /// Payload is decoded in place: `[head][decoded payload][raw bytes not yet decoded]`.
    Chunked {
        dec: ChunkedDecoder,
        decoded_end: usize,
        raw_pos: usize,
    },
}

#[derive(Debug)]
pub enum Phase {
    /// Waiting for a request head; `started` once a byte of it arrived (the header timeout runs).
    Head {
        started: bool,
    },
    Body {
        head_len: usize,
        body: BodyState,
    },
    /// Connecting to, writing to, or awaiting the response head from the upstream.
    Upstream,
    /// Relaying the response body.
    Relay,
    /// Writing the rest of `out`, then the next request or a close.
    Flush,
    /// Write side shut; reading and dropping what the client still sends, so that the kernel does not reset
    /// the connection (and discard the answer) while the client is still writing. Ends when the client closes,
    /// stops sending for `--linger-timeout` (the deadline, moved on with each read), or at `until`
    /// (`--linger-time` after it began).
    Linger {
        until: Instant,
    },
    /// Reading and dropping the body of a request refused from its head (`ex.discard` bytes).
    Discard,
}

/// What the current exchange needs to remember between events.
#[derive(Debug)]
pub struct Exchange {
    pub keep_alive: bool,
    pub is_head: bool,
    pub version: Version,
    /// The bytes sent upstream (kept until the first response byte, for the one allowed retry).
    pub fwd: Option<Buf>,
    pub sent: usize,
    /// The upstream connection came from the pool (a retry is allowed if it fails before responding).
    pub reused: bool,
    pub retried: bool,
    pub framer: Option<BodyFramer>,
    /// `out` holds a `100 Continue` not yet fully written.
    pub interim: bool,
    /// Index of the API version the request asked for (`Policy::accept`).
    pub api_version: Option<usize>,
    /// The body must be valid JSON.
    pub json: bool,
    /// The Content-Type rule's refusal of a chunked body, applied only if the body is not empty.
    pub deferred: Option<Reason>,
    /// Where a refused JSON body goes wrong (byte offset, what was expected), for the answer.
    pub json_error: Option<(u32, &'static str)>,
    /// The body's content coding (decoded to be validated).
    pub coding: Option<crate::guard::Coding>,
    /// Body bytes of a refused request still to be read and dropped before the next request.
    pub discard: u64,
    /// Rate limit: the user's remaining quota and seconds to full, after this request.
    pub quota: Option<(u32, u64)>,
    /// Rate limit: seconds to wait, for a 429.
    pub retry_secs: u64,
    /// Rate limit: the user's tier (index into the rules' tiers).
    pub tier: u8,
    /// The first refusal an `observe` rule would have given (the request is forwarded).
    pub observed: Option<Reason>,
    /// When the head was complete (for the duration metric).
    pub started: Instant,
    /// The upstream's status, once its head arrived.
    pub status: u16,
    /// For the access log: method, target (cut at `TARGET_MAX`), request and response bytes, user key hash.
    pub method_idx: u8,
    pub target: [u8; TARGET_MAX],
    pub target_len: u8,
    pub target_cut: bool,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub user: Option<u64>,
    pub dechunk: bool,
    pub up_reusable: bool,
    pub close_after: bool,
}

impl Exchange {
    pub fn new(head: &RequestHead<'_, '_>, now: Instant) -> Exchange {
        Exchange {
            keep_alive: head.keep_alive,
            is_head: head.method == crate::http::Method::Head,
            version: head.version,
            close_after: !head.keep_alive,
            method_idx: head.method as u8,
            bytes_in: head.head_len as u64,
            ..Exchange::idle(now)
        }
    }

    pub fn idle(now: Instant) -> Exchange {
        Exchange {
            keep_alive: true,
            is_head: false,
            version: Version::Http11,
            fwd: None,
            sent: 0,
            reused: false,
            retried: false,
            framer: None,
            api_version: None,
            json: false,
            deferred: None,
            json_error: None,
            coding: None,
            discard: 0,
            quota: None,
            retry_secs: 0,
            tier: 0,
            observed: None,
            started: now,
            status: 0,
            method_idx: 0,
            target: [0; TARGET_MAX],
            target_len: 0,
            target_cut: false,
            bytes_in: 0,
            bytes_out: 0,
            user: None,
            interim: false,
            dechunk: false,
            up_reusable: false,
            close_after: false,
        }
    }
}

/// What only the access log needs of a request: Host and User-Agent (cut at their array's size), the client
/// address resolved through a trusted X-Forwarded-For (when it differs from the peer), and the upstream's
/// connect and response times in microseconds from the complete head (`u32::MAX`: none). Kept out of line,
/// allocated once per connection and only with an access log, so that idle connections stay small.
#[derive(Debug)]
pub struct LogFields {
    pub host: [u8; HOST_MAX],
    pub host_len: u8,
    pub user_agent: [u8; UA_MAX],
    pub user_agent_len: u8,
    pub client: Option<IpText>,
    pub up_connect_us: u32,
    pub up_response_us: u32,
}

impl LogFields {
    pub fn new() -> Box<LogFields> {
        Box::new(LogFields {
            host: [0; HOST_MAX],
            host_len: 0,
            user_agent: [0; UA_MAX],
            user_agent_len: 0,
            client: None,
            up_connect_us: u32::MAX,
            up_response_us: u32::MAX,
        })
    }

    /// For the next request on the connection.
    pub fn reset(&mut self) {
        self.host_len = 0;
        self.user_agent_len = 0;
        self.client = None;
        self.up_connect_us = u32::MAX;
        self.up_response_us = u32::MAX;
    }
}
