//! The bytes the ingress writes: the head it forwards upstream and the head it relays to the client.
//! Hop-by-hop fields (RFC 9110 section 7.6.1) and the fields a Connection header names are removed; the
//! framing fields are rewritten for the message as it will actually be sent. Line endings are CRLF.

use super::request::{Framing, RequestHead};
use super::response::{BodyKind, ResponseHead};
use super::{eq_ci, is_hop_by_hop, named_by_connection, Header, Version};
use crate::buf::{put_u64, Out};

/// What the forwarded head adds to the client's fields.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    /// Appended to `X-Forwarded-For`.
    pub client_ip: &'a [u8],
    /// `Host` sent when an HTTP/1.0 client sent none.
    pub default_host: &'a [u8],
    /// The version header: any client copy is removed; `version` is sent in it when matched.
    pub version_header: &'a [u8],
    pub version: Option<&'a [u8]>,
    /// `--observe-header`: its name (any client copy is removed) and the code it carries, if any.
    pub observe: Option<(&'a [u8], Option<&'a [u8]>)>,
    /// `X-Forwarded-Proto`: `https` or `http`, by the listener the request came in on (any client copy is
    /// removed).
    pub proto: &'a [u8],
    /// `--request-id-header`: its name (any client copy is removed) and the request's id, sent in it.
    pub request_id: Option<(&'a [u8], &'a [u8])>,
    /// A WebSocket handshake the ingress tunnels: `Connection: Upgrade` and `Upgrade: websocket` go with it
    /// (the client's own copies are hop-by-hop and removed, with any other upgrade token).
    pub websocket: bool,
}

/// Writes the head forwarded upstream: the request line (as HTTP/1.1), the client's fields minus hop-by-hop
/// ones, `X-Forwarded-For` and the version header; then `Content-Length: body_len` if the request has a
/// body, and the observe header. One call: [`forward_fields`] then [`forward_end`].
pub fn forward_head(out: &mut impl Out, head: &RequestHead<'_, '_>, body_len: u64, fwd: &Forward<'_>) -> u32 {
    let underscores = forward_fields(out, head, fwd);
    forward_end(out, head.framing, body_len, fwd.observe);
    underscores
}

/// The part of the forwarded head known from the head alone (written as soon as the head is accepted, so
/// that a head is parsed once even when its body arrives later): the request line (as HTTP/1.1), the
/// client's fields minus hop-by-hop ones, the version header and the combined `X-Forwarded-For` with the
/// client appended. [`forward_end`] completes it once the body is known.
///
/// Fields whose name holds `_` are dropped (as nginx's default `underscores_in_headers off`): CGI, WSGI,
/// Rack and PHP map `X_Api_Version` and `X-Api-Version` to the same variable, so an underscore spelling
/// would smuggle a protected field (version header, X-Forwarded-For, observe header, user key) past the
/// checks. Returns how many were dropped.
pub fn forward_fields(out: &mut impl Out, head: &RequestHead<'_, '_>, fwd: &Forward<'_>) -> u32 {
    out.put(head.method.as_str().as_bytes());
    out.put(b" ");
    out.put(head.target.as_bytes());
    out.put(b" HTTP/1.1\r\n");
    let names_fields = connection_names_fields(head.headers);
    let mut has_host = false;
    let mut has_xff = false;
    let mut underscores = 0;
    for h in head.headers {
        let name = h.name.as_bytes();
        if name.contains(&b'_') {
            underscores += 1;
            continue;
        }
        match request_field(name) {
            Field::Host => has_host = true,
            Field::ForwardedFor => {
                has_xff = true;
                continue;
            }
            Field::Drop => continue,
            Field::Other => {}
        }
        if name.eq_ignore_ascii_case(fwd.version_header)
            || fwd.observe.is_some_and(|(o, _)| name.eq_ignore_ascii_case(o))
            || fwd.request_id.is_some_and(|(r, _)| name.eq_ignore_ascii_case(r))
            || (names_fields && named_by_connection(head.headers, name))
        {
            continue;
        }
        put_field(out, h);
    }
    if !has_host {
        out.put(b"Host: ");
        out.put(fwd.default_host);
        out.put(b"\r\n");
    }
    if let Some(v) = fwd.version {
        out.put(fwd.version_header);
        out.put(b": ");
        out.put(v);
        out.put(b"\r\n");
    }
    out.put(b"X-Forwarded-For: ");
    if has_xff {
        for h in head
            .headers
            .iter()
            .filter(|h| eq_ci(h.name.as_bytes(), b"x-forwarded-for"))
        {
            if !h.value.is_empty() {
                out.put(h.value);
                out.put(b", ");
            }
        }
    }
    out.put(fwd.client_ip);
    out.put(b"\r\nX-Forwarded-Proto: ");
    out.put(fwd.proto);
    out.put(b"\r\n");
    if let Some((name, id)) = fwd.request_id {
        out.put(name);
        out.put(b": ");
        out.put(id);
        out.put(b"\r\n");
    }
    if fwd.websocket {
        out.put(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    underscores
}

/// Ends a head begun by [`forward_fields`]: `Content-Length: body_len` when the request has a body (a chunked
/// body is forwarded de-chunked), the observe header with its code when an observe rule would have refused,
/// and the blank line.
pub fn forward_end(out: &mut impl Out, framing: Framing, body_len: u64, observe: Option<(&[u8], Option<&[u8]>)>) {
    if framing != Framing::None {
        out.put(b"Content-Length: ");
        put_u64(out, body_len);
        out.put(b"\r\n");
    }
    if let Some((name, Some(code))) = observe {
        out.put(name);
        out.put(b": ");
        out.put(code);
        out.put(b"\r\n");
    }
    out.put(b"\r\n");
}

enum Field {
    Host,
    ForwardedFor,
    /// Hop-by-hop, or rewritten by the ingress (framing, Expect, Trailer).
    Drop,
    Other,
}

/// Classifies a request field name, dispatching on its length first (one comparison for most fields).
fn request_field(name: &[u8]) -> Field {
    match name.len() {
        4 if eq_ci(name, b"host") => Field::Host,
        6 if eq_ci(name, b"expect") => Field::Drop,
        7 if eq_ci(name, b"trailer") => Field::Drop,
        14 if eq_ci(name, b"content-length") => Field::Drop,
        15 if eq_ci(name, b"x-forwarded-for") => Field::ForwardedFor,
        17 if eq_ci(name, b"x-forwarded-proto") => Field::Drop,
        _ if is_hop_by_hop(name) => Field::Drop,
        _ => Field::Other,
    }
}

/// True if some Connection field names a field other than the `close` / `keep-alive` options.
fn connection_names_fields(headers: &[Header<'_>]) -> bool {
    headers
        .iter()
        .filter(|h| eq_ci(h.name.as_bytes(), b"connection"))
        .any(|h| super::list_items(h.value).any(|t| !eq_ci(t, b"close") && !eq_ci(t, b"keep-alive")))
}

fn put_field(out: &mut impl Out, h: &Header<'_>) {
    out.put(h.name.as_bytes());
    out.put(b": ");
    out.put(h.value);
    out.put(b"\r\n");
}

/// How the relayed response reaches the client.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide<'a> {
    pub version: Version,
    /// The ingress closes the client connection after this response.
    pub close: bool,
    /// The body is chunked upstream but the client speaks HTTP/1.0: it is de-chunked and close-delimited.
    pub dechunk: bool,
    /// Add `RateLimit: "<tier>";r=<remaining>;t=<seconds>` (the user's quota after this request): the
    /// quoted tier name, remaining, seconds.
    pub ratelimit: Option<(&'a [u8], u32, u64)>,
    /// `--request-id-header`: its name (any upstream copy is removed) and the request's id, sent in it.
    pub request_id: Option<(&'a [u8], &'a [u8])>,
}

/// Writes the response head relayed to the client.
pub fn response_head(out: &mut impl Out, resp: &ResponseHead<'_, '_>, client: ClientSide<'_>) {
    out.put(b"HTTP/1.1 ");
    put_u64(out, resp.status as u64);
    out.put(b" ");
    out.put(resp.reason.as_bytes());
    out.put(b"\r\n");
    let names_fields = connection_names_fields(resp.headers);
    // The framing fields describe the body as relayed, whatever a Connection field names: Content-Length
    // only for length-delimited bodies, Transfer-Encoding only for chunked ones passed through as chunks.
    // Never on a 204 (RFC 9110 8.6: a server MUST NOT send Content-Length in a 204).
    let keep_length = matches!(resp.body, BodyKind::Length(_) | BodyKind::None) && resp.status != 204 && !resp.upgrade;
    let keep_te = resp.body == BodyKind::Chunked && !client.dechunk;
    for h in resp.headers {
        let name = h.name.as_bytes();
        if eq_ci(name, b"content-length") {
            if keep_length {
                put_field(out, h);
            }
            continue;
        }
        if eq_ci(name, b"transfer-encoding") {
            if keep_te {
                put_field(out, h);
            }
            continue;
        }
        if is_hop_by_hop(name)
            || (names_fields && named_by_connection(resp.headers, name))
            || client.request_id.is_some_and(|(r, _)| name.eq_ignore_ascii_case(r))
        {
            continue;
        }
        put_field(out, h);
    }
    if let Some((name, id)) = client.request_id {
        out.put(name);
        out.put(b": ");
        out.put(id);
        out.put(b"\r\n");
    }
    if let Some((tier, remaining, secs)) = client.ratelimit {
        out.put(b"RateLimit: ");
        out.put(tier);
        out.put(b";r=");
        put_u64(out, remaining as u64);
        out.put(b";t=");
        put_u64(out, secs);
        out.put(b"\r\n");
    }
    if resp.upgrade {
        // The switch to WebSocket (the hop-by-hop fields were dropped above): the connection is a tunnel now.
        out.put(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    } else if client.close {
        out.put(b"Connection: close\r\n");
    } else if client.version == Version::Http10 {
        out.put(b"Connection: keep-alive\r\n");
    }
    out.put(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{header_storage, parse_head};
    use crate::http::Limits;

    #[test]
    fn forwarded_head_drops_hop_by_hop() {
        let raw = b"POST /x HTTP/1.1\r\nHost: api\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Forwarded-Proto: http\r\nKeep-Alive: 5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nX-Forwarded-For: 10.0.0.1\r\nX-API-Version: v9\r\nX-Observed: forged\r\nAccept: */*\r\n\r\n";
        let mut st = header_storage();
        let head = parse_head(raw, &Limits::default(), &mut st).unwrap().unwrap();
        let mut out = Vec::new();
        let fwd = Forward {
            client_ip: b"127.0.0.1",
            default_host: b"up",
            version_header: b"X-Api-Version",
            version: Some(b"v2"),
            observe: Some((b"x-observed", Some(b"malformed_json"))),
            proto: b"https",
            request_id: None,
            websocket: false,
        };
        forward_head(&mut out, &head, 11, &fwd);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /x HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nX-Api-Version: v2\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\nX-Forwarded-Proto: https\r\nContent-Length: 11\r\nx-observed: malformed_json\r\n\r\n"
        );
    }

    #[test]
    fn underscore_fields_are_dropped_and_counted() {
        let raw = b"GET / HTTP/1.1\r\nHost: api\r\nX_Api_Version: v9\r\nX-API_Version: v8\r\nX_Forwarded_For: 6.6.6.6\r\nX_Observed: forged\r\nX_User_Key: alice\r\nX-Normal: 1\r\n\r\n";
        let mut st = header_storage();
        let head = parse_head(raw, &Limits::default(), &mut st).unwrap().unwrap();
        let mut out = Vec::new();
        let fwd = Forward {
            client_ip: b"10.0.0.2",
            default_host: b"up",
            version_header: b"X-Api-Version",
            version: None,
            observe: Some((b"x-observed", None)),
            proto: b"http",
            request_id: None,
            websocket: false,
        };
        assert_eq!(forward_head(&mut out, &head, 0, &fwd), 5);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHost: api\r\nX-Normal: 1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn http10_without_host_gets_one() {
        let raw = b"GET / HTTP/1.0\r\n\r\n";
        let mut st = header_storage();
        let head = parse_head(raw, &Limits::default(), &mut st).unwrap().unwrap();
        let mut out = Vec::new();
        let fwd = Forward {
            client_ip: b"::1",
            default_host: b"up:80",
            version_header: b"X-Api-Version",
            version: None,
            observe: None,
            proto: b"http",
            request_id: None,
            websocket: false,
        };
        forward_head(&mut out, &head, 0, &fwd);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHost: up:80\r\nX-Forwarded-For: ::1\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    /// The relayed head for the response head `raw`, for a client as described.
    fn relay(raw: &[u8], version: Version, close: bool, dechunk: bool) -> String {
        let mut st = header_storage();
        let resp = crate::http::response::parse_head(raw, 16384, false, &mut st[..100])
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        response_head(
            &mut out,
            &resp,
            ClientSide {
                version,
                close,
                dechunk,
                ratelimit: None,
                request_id: None,
            },
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn response_framing_fields_cannot_be_stripped_or_doubled() {
        let v = Version::Http11;
        let named = b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            relay(named, v, false, false),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        );
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            relay(both, v, false, false),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let gzip = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            relay(gzip, v, true, false),
            "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn no_content_length_on_a_204() {
        let v = Version::Http11;
        assert_eq!(
            relay(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n",
                v,
                false,
                false
            ),
            "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"
        );
        // A 304 may carry the length of the representation (RFC 9110 8.6): kept.
        assert_eq!(
            relay(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                v,
                false,
                false
            ),
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn relayed_response_head() {
        let raw = b"HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-Keep: 2\r\n\r\n";
        assert_eq!(
            relay(raw, Version::Http11, false, false),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Keep: 2\r\n\r\n"
        );
        assert_eq!(
            relay(raw, Version::Http10, true, true),
            "HTTP/1.1 200 OK\r\nX-Keep: 2\r\nConnection: close\r\n\r\n"
        );
    }
}
