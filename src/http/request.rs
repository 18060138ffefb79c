//! Request heads: parse with httparse (borrowed slices, no copies), then decide the framing strictly by
//! RFC 9112 section 6.3. Anything ambiguous is a [`Refusal`], never a guess.
//!
//! Contract: `parse_head` returns `Ok(None)` while the head is incomplete and within limits; once it returns
//! `Ok(Some(head))`, every accessor of `head` is infallible and `head.framing` is the only body framing the
//! ingress will ever assume for this request.

use std::mem::MaybeUninit;

use super::{eq_ci, is_tchar, list_items, Header, Method, Refusal, Version};
use crate::http::Limits;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
}

/// The names of the methods served ([`Method`]), in its order.
pub const ALLOWED_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A parsed, validated request head: a view over the client's bytes.
///
/// ```
/// use portcullis::http::request::{header_storage, parse_head, Framing};
/// use portcullis::http::Limits;
///
/// let mut storage = header_storage();
/// let raw = b"POST /a HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\n{}";
/// let head = parse_head(raw, &Limits::default(), &mut storage).unwrap().unwrap();
/// assert_eq!((head.target, head.framing, head.head_len), ("/a", Framing::Length(2), raw.len() - 2));
/// assert_eq!(head.header(b"host"), Some(&b"api"[..]));
/// ```
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: Method,
    pub target: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
    /// Bytes of the head, including the final CRLF.
    pub head_len: usize,
    pub framing: Framing,
    /// The client wants the connection kept after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// Index in `headers` of the first Accept field, and how many there are.
    pub accept: Option<usize>,
    pub accept_count: u8,
    /// Index in `headers` of the first Content-Type field, and how many there are.
    pub content_type: Option<usize>,
    pub content_type_count: u8,
    /// Index in `headers` of the first Content-Encoding field.
    pub content_encoding: Option<usize>,
    /// A Connection field names fields other than `close`, `keep-alive` and `upgrade` (they are removed
    /// when forwarding).
    pub connection_names_fields: bool,
    /// A WebSocket handshake (RFC 6455 4.1): GET, HTTP/1.1, no body, `Connection: upgrade` and an Upgrade
    /// field naming `websocket`. Whether it may be tunnelled is the ingress's setting (`--upgrade`).
    pub websocket: bool,
}

impl RequestHead<'_, '_> {
    /// The value of the first field called `name` (lower-case).
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| eq_ci(h.name.as_bytes(), name))
            .map(|h| h.value)
    }
}

/// The storage `parse_head` fills: one per worker, on its stack.
///
/// ```
/// let storage: portcullis::http::request::HeaderStorage<'_> = portcullis::http::request::header_storage();
/// assert_eq!(storage.len(), portcullis::http::MAX_HEADERS_LIMIT);
/// ```
pub type HeaderStorage<'b> = [MaybeUninit<Header<'b>>; crate::http::MAX_HEADERS_LIMIT];

/// A fresh, uninitialised field array (costs nothing: no memset).
///
/// ```
/// let mut storage = portcullis::http::request::header_storage();
/// let limits = portcullis::http::Limits::default();
/// assert!(portcullis::http::request::parse_head(b"GET / HT", &limits, &mut storage).unwrap().is_none());
/// ```
pub fn header_storage<'b>() -> HeaderStorage<'b> {
    [const { MaybeUninit::uninit() }; crate::http::MAX_HEADERS_LIMIT]
}

/// Parses and validates the head at the start of `buf`.
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    limits: &Limits,
    storage: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<RequestHead<'h, 'b>>, Refusal> {
    let n = limits.max_headers.min(storage.len());
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, &mut storage[..n]);
    let head_len = match status {
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                return Err(too_large(buf, limits.max_head));
            }
            return Ok(None);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::HeaderTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(Refusal::MalformedRequest),
    };
    if head_len > limits.max_head {
        return Err(too_large(buf, limits.max_head));
    }
    let method = req.method.unwrap_or("").as_bytes();
    let target = req.path.unwrap_or("");
    let version = if req.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: &'h [Header<'b>] = req.headers;
    // httparse accepts a bare LF as a line ending; we accept CRLF only.
    if bare_lf_scan(&buf[..head_len]) {
        return Err(Refusal::MalformedRequest);
    }
    let Some(method) = Method::parse(method) else {
        return Err(Refusal::UnsupportedMethod);
    };
    check_fields(method, version, headers, head_len, limits, |host| {
        check_target(method, target.as_bytes(), host)?;
        Ok(target)
    })
    .map(Some)
}

/// The checks of a head whose request line and fields were already split (by httparse here, or by another
/// HTTP implementation that hands over its parsed fields, as `crate::check` does): the field rules and the
/// framing decision of RFC 9112 section 6.3, in one pass over `headers`. `target` checks the request target
/// against the Host value (once the Host rules passed; its form depends on how it was parsed) and gives it.
/// `head_len` is only carried into the result.
pub fn check_fields<'h, 'b>(
    method: Method,
    version: Version,
    headers: &'h [Header<'b>],
    head_len: usize,
    limits: &Limits,
    target: impl FnOnce(Option<&'b [u8]>) -> Result<&'b str, Refusal>,
) -> Result<RequestHead<'h, 'b>, Refusal> {
    let mut content_length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    let mut hosts = 0u32;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let (mut accept, mut accept_count, mut content_type, mut content_type_count) = (None, 0u8, None, 0u8);
    let mut content_encoding = None;
    let mut connection_names_fields = false;
    let (mut connection_upgrade, mut upgrade_websocket) = (false, false);
    let mut host = None;
    for (i, h) in headers.iter().enumerate() {
        let name = h.name.as_bytes();
        match name.len() {
            4 if eq_ci(name, b"host") => {
                hosts += 1;
                host = Some(h.value);
            }
            16 if eq_ci(name, b"content-encoding") => content_encoding = content_encoding.or(Some(i)),
            6 if eq_ci(name, b"accept") => {
                accept = accept.or(Some(i));
                accept_count = accept_count.saturating_add(1);
            }
            12 if eq_ci(name, b"content-type") => {
                content_type = content_type.or(Some(i));
                content_type_count = content_type_count.saturating_add(1);
            }
            6 if eq_ci(name, b"expect") => {
                if !eq_ci(h.value, b"100-continue") {
                    return Err(Refusal::ExpectationFailed);
                }
                expect_continue = true;
            }
            // The two common values, without the list machinery.
            10 if eq_ci(name, b"connection") && eq_ci(h.value, b"keep-alive") => keep_alive_token = true,
            10 if eq_ci(name, b"connection") && eq_ci(h.value, b"close") => close = true,
            10 if eq_ci(name, b"connection") => {
                for t in list_items(h.value) {
                    if !t.iter().all(|&b| is_tchar(b)) {
                        return Err(Refusal::InvalidConnectionHeader);
                    }
                    if eq_ci(t, b"close") {
                        close = true;
                    } else if eq_ci(t, b"keep-alive") {
                        keep_alive_token = true;
                    } else if eq_ci(t, b"upgrade") {
                        connection_upgrade = true;
                    } else if eq_ci(t, b"content-length") || eq_ci(t, b"host") || eq_ci(t, b"transfer-encoding") {
                        return Err(Refusal::InvalidConnectionHeader);
                    } else {
                        connection_names_fields = true;
                    }
                }
            }
            7 if eq_ci(name, b"upgrade") => {
                upgrade_websocket |= list_items(h.value).any(|t| eq_ci(t, b"websocket"));
            }
            14 if eq_ci(name, b"content-length") => {
                if content_length.is_some() {
                    return Err(Refusal::AmbiguousFraming);
                }
                content_length = Some(parse_content_length(h.value).ok_or(Refusal::AmbiguousFraming)?);
            }
            17 if eq_ci(name, b"transfer-encoding") => {
                if te.is_some() {
                    return Err(Refusal::AmbiguousFraming);
                }
                te = Some(h.value);
            }
            _ if is_framing_lookalike(name) => return Err(Refusal::AmbiguousFraming),
            _ => {}
        }
    }
    if version == Version::Http11 && hosts != 1 || hosts > 1 {
        return Err(Refusal::InvalidHost);
    }
    if host.is_some_and(|h| !valid_host(h)) {
        return Err(Refusal::InvalidHost);
    }
    let target = target(host)?;
    let framing = match (te, content_length) {
        (Some(_), Some(_)) => return Err(Refusal::AmbiguousFraming),
        (Some(_), None) if version == Version::Http10 => return Err(Refusal::AmbiguousFraming),
        (Some(v), None) => {
            if eq_ci(v, b"chunked") {
                Framing::Chunked
            } else if list_items(v).any(|t| eq_ci(t, b"chunked")) || !v.iter().all(|&b| is_tchar(b)) {
                // A list containing chunked ("gzip, chunked", "chunked, chunked") or a malformed value.
                return Err(Refusal::AmbiguousFraming);
            } else {
                return Err(Refusal::UnsupportedTransferCoding);
            }
        }
        (None, Some(n)) => {
            if n > limits.max_body {
                return Err(Refusal::BodyTooLarge);
            }
            Framing::Length(n)
        }
        (None, None) => Framing::None,
    };
    // A body on GET or HEAD: some servers ignore it and would read it as the next request on a reused
    // connection (the "CL.0" desync), so it never travels.
    if matches!(method, Method::Get | Method::Head) && !matches!(framing, Framing::None | Framing::Length(0)) {
        return Err(Refusal::AmbiguousFraming);
    }
    let keep_alive = !close && (version == Version::Http11 || keep_alive_token);
    let websocket = connection_upgrade
        && upgrade_websocket
        && method == Method::Get
        && version == Version::Http11
        && matches!(framing, Framing::None | Framing::Length(0));
    Ok(RequestHead {
        method,
        target,
        version,
        headers,
        head_len,
        framing,
        keep_alive,
        expect_continue,
        accept,
        accept_count,
        content_type,
        content_type_count,
        content_encoding,
        connection_names_fields,
        websocket,
    })
}

/// RFC 9112 section 3.2: `Host = uri-host [ ":" port ]`, where `uri-host` is an IP-literal (`[` IPv6 `]`),
/// an IPv4 address or a reg-name (unreserved, sub-delims, pct-encoded). An empty Host is refused: every
/// request to an API has an authority. Ports are at most five digits.
pub fn valid_host(v: &[u8]) -> bool {
    let port = if v.first() == Some(&b'[') {
        let Some(end) = v.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&v[1..end]).ok();
        if literal.is_none_or(|l| l.parse::<core::net::Ipv6Addr>().is_err()) {
            return false;
        }
        match &v[end + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        }
    } else {
        let (host, port) = match v.iter().position(|&b| b == b':') {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        if host.is_empty() || !reg_name(host) {
            return false;
        }
        port
    };
    port.is_none_or(|p| p.len() <= 5 && p.iter().all(u8::is_ascii_digit))
}

/// The bytes a `reg-name` may hold as they are: unreserved and sub-delims (not `%`, which starts a
/// pct-encoded triplet).
static REG_NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
        b += 1;
    }
    t
};

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`.
fn reg_name(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        let b = h[i];
        if REG_NAME_BYTE[b as usize] {
            i += 1;
        } else if b == b'%' && i + 2 < h.len() && h[i + 1].is_ascii_hexdigit() && h[i + 2].is_ascii_hexdigit() {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// RFC 9112 section 3.2: origin-form (`/path?query`), absolute-form (`http://authority/path`, whose authority
/// must then be the Host), and `*` for OPTIONS only. Authority-form belongs to CONNECT, which is refused
/// earlier. No fragment (`#`) is part of a request target.
pub fn check_target(method: Method, t: &[u8], host: Option<&[u8]>) -> Result<(), Refusal> {
    if t.contains(&b'#') {
        return Err(Refusal::InvalidTarget);
    }
    match t.first() {
        Some(b'/') => Ok(()),
        Some(b'*') if t.len() == 1 => {
            if method == Method::Options {
                Ok(())
            } else {
                Err(Refusal::InvalidTarget)
            }
        }
        _ => {
            let scheme_len = if t.len() > 7 && t[..7].eq_ignore_ascii_case(b"http://") {
                7
            } else if t.len() > 8 && t[..8].eq_ignore_ascii_case(b"https://") {
                8
            } else {
                return Err(Refusal::InvalidTarget);
            };
            let rest = &t[scheme_len..];
            let end = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?'))
                .unwrap_or(rest.len());
            check_authority(scheme_len == 8, &rest[..end], host)
        }
    }
}

/// The authority of an absolute request target (`https`: of an `https://` one): a valid host and port without
/// userinfo, and the same as the Host value (with the scheme's default port written or not).
pub fn check_authority(https: bool, authority: &[u8], host: Option<&[u8]>) -> Result<(), Refusal> {
    // userinfo is deprecated in http(s) URIs (RFC 9110 section 4.2.4) and a classic confusion vector.
    if authority.contains(&b'@') || !valid_host(authority) {
        return Err(Refusal::InvalidTarget);
    }
    // The same authority, with the scheme's default port written or not.
    let default_port: &[u8] = if https { b":443" } else { b":80" };
    let bare = |a: &'_ [u8]| -> usize {
        if a.len() > default_port.len() && a.ends_with(default_port) {
            a.len() - default_port.len()
        } else {
            a.len()
        }
    };
    match host {
        Some(h) if !h[..bare(h)].eq_ignore_ascii_case(&authority[..bare(authority)]) => Err(Refusal::InvalidHost),
        _ => Ok(()),
    }
}

/// True if a line of the head ends in a bare LF. httparse refuses a CR anywhere but right before an LF, so a
/// bare LF exists exactly when the head holds more LFs than CRs. The difference is counted in wrapping bytes
/// per 127-byte chunk (there it lies in -127..=127, so the wrapped byte read as `i8` is exact; the compiler
/// keeps the count in byte-wide SIMD lanes), and the chunks' differences are added up: a CRLF may straddle two
/// chunks, so no single chunk decides.
fn bare_lf_scan(head: &[u8]) -> bool {
    head.chunks(127)
        .map(|chunk| {
            chunk.iter().fold(0u8, |n, &b| {
                n.wrapping_add((b == b'\n') as u8).wrapping_sub((b == b'\r') as u8)
            }) as i8 as i32
        })
        .sum::<i32>()
        != 0
}

/// A field name some servers read as Content-Length or Transfer-Encoding although it is not one
/// (`Content_Length`, `Transfer---Encoding`): the same letters once case, `-` and `_` are ignored.
fn is_framing_lookalike(name: &[u8]) -> bool {
    if name.len() < 13 || !matches!(name[0] | 0x20, b'c' | b't') {
        return false;
    }
    let mut letters = [0u8; 16];
    let mut n = 0;
    for &b in name {
        if b == b'-' || b == b'_' {
            continue;
        }
        if n == letters.len() {
            return false;
        }
        letters[n] = b.to_ascii_lowercase();
        n += 1;
    }
    &letters[..n] == b"contentlength" || &letters[..n] == b"transferencoding"
}

/// `1*DIGIT`, no sign, no list, no whitespace inside, no overflow.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as u64;
    }
    Some(n)
}

/// Over the head limit: 414 if the request line alone does not fit, else 431.
fn too_large(buf: &[u8], max_head: usize) -> Refusal {
    let window = &buf[..buf.len().min(max_head)];
    if window.contains(&b'\n') {
        Refusal::HeaderTooLarge
    } else {
        Refusal::UriTooLong
    }
}

/// httparse reports any unknown version as a version error: a well-formed `HTTP/x.y` other than 1.0 / 1.1 is
/// 505, anything else is malformed.
fn version_error(buf: &[u8]) -> Refusal {
    let line_end = buf.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    // `method SP target SP version`: more spaces mean a broken request line (a space in the target), not an
    // unsupported version.
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return Refusal::MalformedRequest;
    }
    let last = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    match last {
        [b'H', b'T', b'T', b'P', b'/', d1, b'.', d2] if d1.is_ascii_digit() && d2.is_ascii_digit() => {
            Refusal::HttpVersionNotSupported
        }
        // A version cut short by a read (`HTTP/2.` or `HTTP/2`): the same answer as for the whole line.
        [b'H', b'T', b'T', b'P', b'/', d] | [b'H', b'T', b'T', b'P', b'/', d, b'.'] if d.is_ascii_digit() => {
            Refusal::HttpVersionNotSupported
        }
        _ => Refusal::MalformedRequest,
    }
}

#[cfg(test)]
mod tests;
