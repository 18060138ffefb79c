//! Response heads from the upstream and the framing of their bodies (RFC 9112 section 6.3).
//!
//! `parse_head` returns `Ok(None)` while incomplete; an error means the upstream spoke something that is not
//! HTTP/1.x, and the client gets a 502 (if nothing was relayed yet) or a closed connection.

use std::mem::MaybeUninit;

use super::chunked::{ChunkError, ChunkedDecoder};
use super::request::parse_content_length;
use super::{eq_ci, list_items, Header, Version};

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// HEAD, 1xx, 204, 304: no body whatever the fields say.
    None,
    Length(u64),
    Chunked,
    /// Read until the upstream closes.
    Close,
}

#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub reason: &'b str,
    pub version: Version,
    pub headers: &'h [Header<'b>],
    pub head_len: usize,
    pub body: BodyKind,
    /// The upstream connection may carry another request once this body is read. Never after a bodiless
    /// response (HEAD, 204, 304): an upstream that sends a body anyway (`do_HEAD = do_GET`) would have it
    /// read as the next request's response (docs/security.md, "Upstream response-queue poisoning").
    pub reusable: bool,
    /// A `101 Switching Protocols` to WebSocket (`Upgrade: websocket`): the connection becomes a tunnel if
    /// the request asked for one. A 101 to anything else is refused as [`BadResponse::UnexpectedUpgrade`].
    pub upgrade: bool,
}

impl ResponseHead<'_, '_> {
    /// 1xx other than 101: an interim response the ingress drops (it never sends `Expect` upstream).
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadResponse {
    /// httparse refused the head, or it is over the size limit.
    Malformed,
    /// Content-Length is malformed or repeated with different values.
    BadLength,
    /// 101 Switching Protocols to anything but WebSocket (the ingress forwards no other upgrade).
    UnexpectedUpgrade,
}

/// Parses the response head at the start of `buf`. `request_was_head`: the request was HEAD.
pub fn parse_head<'h, 'b>(
    buf: &'b [u8],
    max_head: usize,
    request_was_head: bool,
    storage: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<ResponseHead<'h, 'b>>, BadResponse> {
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, storage) {
        Ok(httparse::Status::Partial) if buf.len() > max_head => return Err(BadResponse::Malformed),
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(_) => return Err(BadResponse::Malformed),
    };
    let status = resp.code.unwrap_or(0);
    // Three digits, 100-599 (RFC 9110 15): a status like 083 cannot be relayed as valid HTTP.
    if !(100..600).contains(&status) {
        return Err(BadResponse::Malformed);
    }
    let version = if resp.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let headers: &'h [Header<'b>] = resp.headers;
    let upgrade = status == 101
        && version == Version::Http11
        && headers
            .iter()
            .any(|h| eq_ci(h.name.as_bytes(), b"upgrade") && list_items(h.value).any(|t| eq_ci(t, b"websocket")));
    if status == 101 && !upgrade {
        return Err(BadResponse::UnexpectedUpgrade);
    }
    let mut content_length: Option<u64> = None;
    let mut chunked_last = None;
    let mut close = false;
    let mut keep_alive_token = false;
    for h in headers {
        let name = h.name.as_bytes();
        if eq_ci(name, b"content-length") {
            let n = parse_content_length(h.value).ok_or(BadResponse::BadLength)?;
            // Repeated, even with the same value: relayed as is it would be invalid downstream (RFC 9110
            // 8.6 allows merging instead; refusing is simpler and the upstream is broken anyway).
            if content_length.is_some() {
                return Err(BadResponse::BadLength);
            }
            content_length = Some(n);
        } else if eq_ci(name, b"transfer-encoding") {
            // The codings of every Transfer-Encoding field form one list; an empty field adds nothing.
            if let Some(last) = list_items(h.value).last() {
                chunked_last = Some(eq_ci(last, b"chunked"));
            }
        } else if eq_ci(name, b"connection") {
            for t in list_items(h.value) {
                close |= eq_ci(t, b"close");
                keep_alive_token |= eq_ci(t, b"keep-alive");
            }
        }
    }
    let body = if request_was_head || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyKind::None
    } else {
        match (chunked_last, content_length) {
            (Some(true), _) => BodyKind::Chunked,
            (Some(false), _) => BodyKind::Close,
            (None, Some(n)) => BodyKind::Length(n),
            (None, None) => BodyKind::Close,
        }
    };
    let transfer_and_length = chunked_last.is_some() && content_length.is_some();
    // RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is a framing fault: close after it.
    let te_in_http10 = chunked_last.is_some() && version == Version::Http10;
    let reusable = !close
        && (version == Version::Http11 || keep_alive_token)
        && body != BodyKind::Close
        && body != BodyKind::None
        && !transfer_and_length
        && !te_in_http10;
    Ok(Some(ResponseHead {
        status,
        reason: resp.reason.unwrap_or(""),
        version,
        headers,
        head_len,
        body,
        reusable,
        upgrade,
    }))
}

/// Tracks how much of the relayed bytes belong to the response body.
#[derive(Debug, Clone)]
pub enum BodyFramer {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
}

impl BodyFramer {
    /// `None` for bodiless responses (already complete).
    pub fn new(kind: BodyKind) -> Option<BodyFramer> {
        match kind {
            BodyKind::None | BodyKind::Length(0) => None,
            BodyKind::Length(n) => Some(BodyFramer::Length(n)),
            BodyKind::Chunked => Some(BodyFramer::Chunked(ChunkedDecoder::new(u64::MAX))),
            BodyKind::Close => Some(BodyFramer::Close),
        }
    }

    /// Given newly received bytes, returns how many of them are part of this body and whether it ended.
    /// Bytes past the end (an upstream sending more than it announced) are not part of the response.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, bool), ChunkError> {
        match self {
            BodyFramer::Length(rem) => {
                let n = (*rem).min(input.len() as u64);
                *rem -= n;
                Ok((n as usize, *rem == 0))
            }
            BodyFramer::Chunked(d) => d.skip(input),
            BodyFramer::Close => Ok((input.len(), false)),
        }
    }

    /// Whether the end of the upstream's stream completes this body (read-until-close framing).
    pub fn ends_at_close(&self) -> bool {
        matches!(self, BodyFramer::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], was_head: bool) -> Result<Option<(u16, BodyKind, bool)>, BadResponse> {
        let mut st = crate::http::request::header_storage();
        parse_head(raw, 16384, was_head, &mut st[..100]).map(|o| o.map(|h| (h.status, h.body, h.reusable)))
    }

    #[test]
    fn fuzz_findings() {
        // Found by fuzz/ (fuzz/regressions/response_head): statuses out of 100-599, a repeated
        // Content-Length (same value too), Transfer-Encoding in HTTP/1.0 (relayed, not reused).
        assert!(head(b"HTTP/1.1 083\r\n\r\n", false).is_err());
        assert!(head(b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n", false).is_err());
        assert!(head(
            b"HTTP/1.1 200 \r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            false
        )
        .is_err());
        assert!(head(
            b"HTTP/1.1 200 \r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n",
            false
        )
        .is_err());
        let r = head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(r.unwrap().unwrap(), (200, BodyKind::Chunked, false));
    }

    #[test]
    fn framing() {
        let ok = |raw: &[u8], h| head(raw, h).unwrap().unwrap();
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false),
            (200, BodyKind::Length(3), true)
        );
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true),
            (200, BodyKind::None, false)
        );
        assert_eq!(
            ok(b"HTTP/1.1 204 No Content\r\n\r\n", false),
            (204, BodyKind::None, false)
        );
        assert_eq!(
            ok(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false),
            (304, BodyKind::None, false)
        );
        // An empty body that is framed (Content-Length: 0) keeps the connection.
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (200, BodyKind::Length(0), true)
        );
        assert_eq!(
            ok(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false),
            (200, BodyKind::Chunked, true)
        );
        assert_eq!(ok(b"HTTP/1.1 200 OK\r\n\r\n", false), (200, BodyKind::Close, false));
        assert_eq!(
            ok(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false),
            (200, BodyKind::Length(1), false)
        );
        assert!(
            !ok(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                false
            )
            .2
        );
        assert_eq!(
            ok(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                false
            ),
            (200, BodyKind::Chunked, false)
        );
        assert_eq!(
            head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false),
            Err(BadResponse::BadLength)
        );
        assert_eq!(
            head(b"HTTP/1.1 101 Switching\r\n\r\n", false),
            Err(BadResponse::UnexpectedUpgrade)
        );
        assert_eq!(head(b"HTTP/1.1 200 OK\r\nContent-Le", false), Ok(None));
        assert_eq!(head(b"garbage\r\n\r\n", false), Err(BadResponse::Malformed));
    }

    #[test]
    fn framer() {
        let mut f = BodyFramer::new(BodyKind::Length(5)).unwrap();
        assert_eq!(f.feed(b"abc").unwrap(), (3, false));
        assert_eq!(f.feed(b"defgh").unwrap(), (2, true));
        let mut f = BodyFramer::new(BodyKind::Chunked).unwrap();
        assert_eq!(f.feed(b"2\r\nab\r\n0\r\n\r\nEXTRA").unwrap(), (12, true));
        assert!(BodyFramer::new(BodyKind::None).is_none());
    }
}
