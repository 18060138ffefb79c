//! Pure HTTP/1.1: request heads and their framing, the chunked decoder, response heads and their framing,
//! and the bytes the ingress writes (forwarded heads, relayed response heads, its own error responses).
//!
//! Nothing here touches a socket or reads a clock: every function is bytes (and plain values) in, a
//! decision out. "Need more bytes" (`Ok(None)`) is never an error.

pub mod chunked;
pub mod date;
pub mod request;
pub mod response;
pub mod write;

pub use httparse::Header;

/// Why a request is refused as HTTP (its framing, head or method), before any of the product's rules
/// look at it. The product's own rules refuse with their own types (`guard::Refusal`, `limit::Refusal`);
/// all of them map onto the wire reasons of [`crate::problem::Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    MalformedRequest,
    AmbiguousFraming,
    MalformedChunkedBody,
    InvalidHost,
    InvalidConnectionHeader,
    UnsupportedTransferCoding,
    UnsupportedMethod,
    ExpectationFailed,
    UriTooLong,
    HeaderTooLarge,
    BodyTooLarge,
    HttpVersionNotSupported,
    InvalidTarget,
}

/// The most header fields `--max-headers` may allow: the parser's field array lives on the worker's stack.
pub const MAX_HEADERS_LIMIT: usize = 512;

/// Size limits of the HTTP layer (`--max-head`, `--max-headers`, `--max-body`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
        }
    }
}

/// The methods an API edge serves (RFC 9110 section 9 and PATCH). CONNECT (tunnels), TRACE (reflects
/// credentials) and extension methods are refused with 501.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    pub const ALL: [Method; 7] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
    ];

    /// The method of a request line's token (case-sensitive, RFC 9110 section 9.1).
    pub fn parse(token: &[u8]) -> Option<Method> {
        Some(match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"PATCH" => Method::Patch,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// This method's bit in a method set (`guard::Policy::json_methods`).
    pub fn bit(self) -> u8 {
        1 << self as u8
    }

    /// RFC 9110 section 9.2.2: a request that may be sent twice with the effect of once. Of the methods
    /// served, POST and PATCH are not.
    pub fn idempotent(self) -> bool {
        !matches!(self, Method::Post | Method::Patch)
    }
}

/// The two versions the ingress speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Case-insensitive ASCII comparison of a field name (or token) with a lower-case constant.
#[inline]
pub fn eq_ci(a: &[u8], lower: &[u8]) -> bool {
    a.eq_ignore_ascii_case(lower)
}

/// Iterates the elements of a comma-separated field value, trimmed of spaces and tabs; empty elements
/// (allowed by the list syntax of RFC 9110 section 5.6.1) are skipped.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|t| !t.is_empty())
}

/// Trims optional whitespace (SP, HTAB) from both ends.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// RFC 9110 `tchar`.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

static TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
        ) || b.is_ascii_alphanumeric();
        i += 1;
    }
    t
};

/// True if `name` is a hop-by-hop field a proxy must not forward (RFC 9110 section 7.6.1), other than the
/// ones named by a Connection field.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    match name.len() {
        2 => eq_ci(name, b"te"),
        7 => eq_ci(name, b"upgrade"),
        10 => eq_ci(name, b"connection") || eq_ci(name, b"keep-alive"),
        16 => eq_ci(name, b"proxy-connection"),
        17 => eq_ci(name, b"transfer-encoding"),
        _ => false,
    }
}

/// True if a Connection field among `headers` names `name`.
pub fn named_by_connection(headers: &[Header<'_>], name: &[u8]) -> bool {
    headers
        .iter()
        .filter(|h| eq_ci(h.name.as_bytes(), b"connection"))
        .any(|h| list_items(h.value).any(|t| t.eq_ignore_ascii_case(name.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert!(eq_ci(b"Content-Length", b"content-length"));
        assert!(!eq_ci(b"Content-Lengt", b"content-length"));
        let v: Vec<&[u8]> = list_items(b" close ,, keep-alive,\tX-Foo ").collect();
        assert_eq!(v, vec![&b"close"[..], b"keep-alive", b"X-Foo"]);
        assert!(is_hop_by_hop(b"Keep-Alive") && is_hop_by_hop(b"TE") && !is_hop_by_hop(b"Host"));
    }
}
