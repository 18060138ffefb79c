//! `http::response::parse_head`, `BodyFramer` and `write::response_head` on arbitrary upstream bytes.
//!
//! Input: `[flags, response bytes...]`; flags bit 0: the request was HEAD; bit 1: the client speaks HTTP/1.0;
//! bit 2: the ingress closes the client connection anyway; bits 3-7: the piece size for the body framer.
//! Checked, beyond "never panics":
//! - an accepted head: `head_len` within the input, status of three digits (101 refused), reason valid
//!   UTF-8, and the body kind as RFC 9112 section 6.3 says from the field list: none for HEAD/1xx/204/304,
//!   chunked when the last transfer coding is chunked, read-until-close for any other transfer coding or
//!   without framing, else the (single-valued) Content-Length; `reusable` never for a close-delimited body,
//!   with `Connection: close`, with both TE and CL, or for HTTP/1.0 without keep-alive;
//! - a prefix of the input shorter than `head_len` is `Ok(None)`, and re-parsing `buf[..head_len]` gives the
//!   same head;
//! - the body framer fed the rest in pieces agrees with it fed in one piece;
//! - the head relayed to the client (as the worker builds it) parses again with the same status and the same
//!   body framing (close-delimited when de-chunked for an HTTP/1.0 client), and keeps no hop-by-hop field.
#![no_main]

use libfuzzer_sys::fuzz_target;
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

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', r @ ..] = s {
        s = r;
    }
    while let [r @ .., b' ' | b'\t'] = s {
        s = r;
    }
    s
}

fn items(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty()).collect()
}

fn fields<'a>(h: &'a ResponseHead<'_, '_>, name: &[u8]) -> Vec<&'a [u8]> {
    h.headers
        .iter()
        .filter(|f| f.name.as_bytes().eq_ignore_ascii_case(name))
        .map(|f| f.value)
        .collect()
}

/// The body kind RFC 9112 section 6.3 gives (with duplicate equal Content-Length values tolerated).
fn model_body(h: &ResponseHead<'_, '_>, was_head: bool) -> BodyKind {
    if was_head || (100..200).contains(&h.status) || h.status == 204 || h.status == 304 {
        return BodyKind::None;
    }
    let codings: Vec<&[u8]> = fields(h, b"transfer-encoding").into_iter().flat_map(items).collect();
    if let Some(last) = codings.last() {
        return if last.eq_ignore_ascii_case(b"chunked") {
            BodyKind::Chunked
        } else {
            BodyKind::Close
        };
    }
    match fields(h, b"content-length").first() {
        Some(v) => BodyKind::Length(std::str::from_utf8(v).unwrap().parse().unwrap()),
        None => BodyKind::Close,
    }
}

fn check_head(buf: &[u8], was_head: bool, h: &ResponseHead<'_, '_>) {
    assert!(h.head_len <= buf.len());
    assert!(h.status <= 999 && h.status != 101);
    assert!(
        h.status >= 100 || known::status_below_100(),
        "status {} accepted",
        h.status
    );
    assert!(std::str::from_utf8(h.reason.as_bytes()).is_ok());
    let cl = fields(h, b"content-length");
    for v in &cl {
        assert!(
            !v.is_empty() && v.len() <= 19 && v.iter().all(u8::is_ascii_digit),
            "CL {v:?}"
        );
        let n = |v: &[u8]| std::str::from_utf8(v).unwrap().parse::<u64>().unwrap();
        assert_eq!(n(v), n(cl[0]), "different Content-Length values accepted");
    }
    assert_eq!(h.body, model_body(h, was_head), "body kind");
    let te = !fields(h, b"transfer-encoding")
        .into_iter()
        .flat_map(items)
        .collect::<Vec<_>>()
        .is_empty();
    let conn: Vec<&[u8]> = fields(h, b"connection").into_iter().flat_map(items).collect();
    let close = conn.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
    let ka = conn.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    if h.reusable {
        assert!(h.body != BodyKind::Close && !close && !(te && !cl.is_empty()));
        assert!(h.version == Version::Http11 || ka);
        // RFC 9112 section 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing; close after it.
        assert!(
            h.version == Version::Http11 || !te || known::http10_te_reused(),
            "HTTP/1.0 with TE reusable"
        );
    }
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
    for hop in [&b"keep-alive"[..], b"proxy-connection", b"te", b"upgrade"] {
        assert!(fields(&r, hop).is_empty(), "relayed {hop:?}");
    }
    let conn: Vec<&[u8]> = fields(&r, b"connection").into_iter().flat_map(items).collect();
    if close {
        assert_eq!(conn, vec![&b"close"[..]]);
    }
    assert!(
        fields(&r, b"content-length").len() <= 1 || known::duplicate_cl_relayed(),
        "relayed duplicate Content-Length\n{}",
        String::from_utf8_lossy(&out)
    );
}

/// Deviations already reported (docs/fuzzing-notes.md): not fatal unless PORTCULLIS_FUZZ_STRICT is set, so
/// that a run keeps looking for new ones. Their reproducers are in fuzz/regressions/response_head/.
mod known {
    /// `PORTCULLIS_FUZZ_STRICT=all` (or `1`) makes every known finding fatal, `=F4,F5` only those.
    fn strict(id: &str) -> bool {
        static S: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        S.get_or_init(|| std::env::var("PORTCULLIS_FUZZ_STRICT").ok())
            .as_deref()
            .is_some_and(|v| v == "1" || v == "all" || v.split(',').any(|x| x.trim() == id))
    }
    /// F3: a status code below 100 (`HTTP/1.1 050 X`) is accepted, and relayed with fewer than three digits.
    pub fn status_below_100() -> bool {
        !strict("F3")
    }
    /// F4: identical (or numerically equal) duplicate Content-Length fields are relayed as they are.
    pub fn duplicate_cl_relayed() -> bool {
        !strict("F4")
    }
    /// F5: an HTTP/1.0 response with Transfer-Encoding (and Connection: keep-alive) leaves the upstream
    /// connection reusable.
    pub fn http10_te_reused() -> bool {
        !strict("F5")
    }
}

fuzz_target!(|data: &[u8]| {
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
    if !h.is_interim() && (h.status >= 100 || !known::status_below_100()) {
        check_relayed(&h, was_head, flags & 2 != 0, flags & 4 != 0);
    }
});
