//! `http::response::parse_head`, `BodyFramer` and `write::response_head` on arbitrary upstream bytes.
//!
//! Input: `[flags, response bytes...]`; flags bit 0: the request was HEAD; bit 1: the client speaks HTTP/1.0;
//! bit 2: the ingress closes the client connection anyway; bits 3-7: the piece size for the body framer.
//! Checked, beyond "never panics":
//! - an accepted head: `head_len` within the input, reason valid UTF-8, and status, body kind and `reusable`
//!   as the shared framing model (`tests/models/framing.rs`, RFC 9112 sections 6.1 and 6.3) gives from the
//!   field list: status 100-599 but not 101, at most one valid Content-Length; no body for HEAD/1xx/204/304,
//!   chunked when the last transfer coding is chunked, read-until-close for any other transfer coding or
//!   without framing, else the Content-Length; `reusable` never for a close-delimited or bodiless body, with
//!   `Connection: close`, with both TE and CL, with TE in HTTP/1.0, or for HTTP/1.0 without keep-alive;
//! - a prefix of the input shorter than `head_len` is `Ok(None)`, and re-parsing `buf[..head_len]` gives the
//!   same head;
//! - the body framer fed the rest in pieces agrees with it fed in one piece;
//! - the head relayed to the client (as the worker builds it) parses again with the same status and the same
//!   body framing (close-delimited when de-chunked for an HTTP/1.0 client), and keeps no hop-by-hop field.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/response_head.rs`) and `tests/fuzz_regressions.rs`, which
//! replays `fuzz/regressions/response_head/` in `cargo test`; both load this file with `#[path]`, and
//! `tests/models/framing.rs` as `crate::framing`.

use crate::framing;
use framing::items;

use portcullis::http::request::header_storage;
use portcullis::http::response::{parse_head, BadResponse, BodyFramer, BodyKind, ResponseHead};
use portcullis::http::write::{response_head, ClientSide};
use portcullis::http::Version;

const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, PartialEq)]
enum Outcome {
    Partial,
    Bad(BadResponse),
    Head(u16, String, Version, Vec<(Vec<u8>, Vec<u8>)>, usize, BodyKind, bool),
}

fn outcome(buf: &[u8], was_head: bool) -> Outcome {
    let mut st = header_storage();
    match parse_head(buf, MAX_HEAD, was_head, &mut st) {
        Ok(None) => Outcome::Partial,
        Err(e) => Outcome::Bad(e),
        Ok(Some(h)) => Outcome::Head(
            h.status,
            h.reason.to_string(),
            h.version,
            h.headers
                .iter()
                .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
                .collect(),
            h.head_len,
            h.body,
            h.reusable,
        ),
    }
}

fn fields<'b>(h: &ResponseHead<'_, 'b>, name: &[u8]) -> Vec<&'b [u8]> {
    framing::values(&framing::field_list(h.headers), name)
}

/// An accepted head: within the input, a valid reason, and the body kind and reusability the shared model of
/// tests/models/framing.rs gives (which also refuses statuses outside 100-599, 101, and a malformed or
/// repeated Content-Length).
fn check_head(buf: &[u8], was_head: bool, h: &ResponseHead<'_, '_>) {
    assert!(h.head_len <= buf.len());
    assert!(std::str::from_utf8(h.reason.as_bytes()).is_ok());
    assert_eq!(
        framing::response_framing(h.version, h.status, was_head, &framing::field_list(h.headers)),
        Some((h.body, h.reusable)),
        "framing model (body kind, reusable)"
    );
}

/// The framer fed `rest` in pieces of `piece` bytes: (body bytes, done), stopping at the end of the body.
fn framed(kind: BodyKind, rest: &[u8], piece: usize) -> Result<(usize, bool), portcullis::http::chunked::ChunkError> {
    let Some(mut f) = BodyFramer::new(kind) else {
        return Ok((0, true));
    };
    let mut total = 0;
    for p in rest.chunks(piece) {
        let (n, done) = f.feed(p)?;
        assert!(n <= p.len());
        total += n;
        if done {
            return Ok((total, true));
        }
        assert_eq!(n, p.len(), "framer took part of a piece without finishing");
    }
    Ok((total, false))
}

fn check_relayed(h: &ResponseHead<'_, '_>, was_head: bool, client_v10: bool, force_close: bool) {
    // As the worker decides (worker/relay.rs).
    let version = if client_v10 { Version::Http10 } else { Version::Http11 };
    let dechunk = h.body == BodyKind::Chunked && version == Version::Http10;
    let close = force_close || h.body == BodyKind::Close || dechunk;
    let mut out = Vec::new();
    response_head(
        &mut out,
        h,
        ClientSide {
            version,
            close,
            dechunk,
            ratelimit: Some((&b"\"default\""[..], 7, 1)),
            request_id: Some((&b"X-Request-Id"[..], &b"0123456789abcdef0123456789abcdef"[..])),
        },
    );
    let mut st = header_storage();
    let r = match parse_head(&out, usize::MAX, was_head, &mut st) {
        Ok(Some(r)) => r,
        other => panic!(
            "relayed head does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(r.head_len, out.len());
    assert_eq!(r.status, h.status);
    assert_eq!(r.version, Version::Http11);
    let want = if dechunk { BodyKind::Close } else { h.body };
    assert_eq!(r.body, want, "relayed framing\n{}", String::from_utf8_lossy(&out));
    if !h.upgrade {
        assert!(fields(&r, b"upgrade").is_empty(), "relayed upgrade");
    }
    for hop in [&b"keep-alive"[..], b"proxy-connection", b"te"] {
        assert!(fields(&r, hop).is_empty(), "relayed {hop:?}");
    }
    let conn: Vec<&[u8]> = fields(&r, b"connection").into_iter().flat_map(items).collect();
    if h.upgrade {
        // A switch to WebSocket says so, and nothing else, whatever the client side's closing.
        assert_eq!(fields(&r, b"upgrade"), vec![&b"websocket"[..]]);
        assert_eq!(conn, vec![&b"Upgrade"[..]]);
        assert!(r.upgrade);
    } else if close {
        assert_eq!(conn, vec![&b"close"[..]]);
    }
    assert!(
        fields(&r, b"content-length").len() <= 1,
        "relayed duplicate Content-Length\n{}",
        String::from_utf8_lossy(&out)
    );
}

/// Everything the fuzz target checks on one input, `[flags, response bytes...]`. Panics on the first check
/// that fails.
pub fn check(data: &[u8]) {
    let Some((&flags, buf)) = data.split_first() else {
        return;
    };
    let was_head = flags & 1 != 0;
    let whole = outcome(buf, was_head);
    let mut st = header_storage();
    let Ok(Some(h)) = parse_head(buf, MAX_HEAD, was_head, &mut st) else {
        return;
    };
    check_head(buf, was_head, &h);
    assert_eq!(
        outcome(&buf[..h.head_len], was_head),
        whole,
        "re-parse of buf[..head_len]"
    );
    assert_eq!(
        outcome(&buf[..h.head_len - 1], was_head),
        Outcome::Partial,
        "head minus one byte"
    );
    let k = (flags as usize * 7919) % h.head_len;
    assert_eq!(outcome(&buf[..k], was_head), Outcome::Partial, "prefix {k}");

    let rest = &buf[h.head_len..];
    let piece = (flags >> 3) as usize + 1;
    assert_eq!(
        framed(h.body, rest, piece),
        framed(h.body, rest, rest.len().max(1)),
        "framer in pieces of {piece}"
    );
    if !h.is_interim() {
        check_relayed(&h, was_head, flags & 2 != 0, flags & 4 != 0);
    }
}
