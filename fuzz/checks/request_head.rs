//! `http::request::parse_head` on arbitrary bytes, with the default limits and with small ones.
//!
//! Checked, beyond "never panics":
//! - an accepted head is well-formed: `head_len` within the input and the limit, the head ends in CRLF CRLF,
//!   every CR is followed by LF and every LF preceded by CR, no obs-fold, no control byte in a field value,
//!   field names are tokens, a method of the API set, `method`/`target` are valid UTF-8;
//! - the framing decision is the one of the shared framing model (`tests/models/framing.rs`, RFC 9112
//!   section 6.3, strict: at most one CL, all digits, within `max_body`; TE only alone, only exactly
//!   `chunked`, only HTTP/1.1; no body on GET or HEAD); exactly one Host in HTTP/1.1, and `keep_alive`,
//!   `expect_continue`, the Accept / Content-Type indexes and counts as the field list says;
//! - the input read in pieces gives the same answer: every prefix shorter than `head_len` is `Ok(None)`, a
//!   prefix that is refused or complete gives the same answer as the whole input, and re-parsing exactly
//!   `buf[..head_len]` gives the same head (the worker relies on it in `forward_reparsed`);
//! - the head the ingress forwards (`write::forward_head`) parses again with the same framing, without any
//!   hop-by-hop field, with one `Host`, one `X-Forwarded-For` and one version header.
//!
//! Shared by the fuzz target (`fuzz/fuzz_targets/request_head.rs`) and `tests/fuzz_regressions.rs`, which
//! replays `fuzz/regressions/request_head/` in `cargo test`; both load this file with `#[path]`, and
//! `tests/models/framing.rs` as `crate::framing`. Input: the raw request bytes.

use crate::framing;
use framing::{items, tchar};

use portcullis::config::{Limits, MAX_HEADERS_LIMIT};
use portcullis::http::request::{header_storage, parse_head, Framing, RequestHead, ALLOWED_METHODS};
use portcullis::http::write::{forward_head, Forward};
use portcullis::http::{Refusal, Version};

/// An owned copy of what `parse_head` returned, to compare two parses.
#[derive(Debug, PartialEq)]
enum Outcome {
    Partial,
    Refused(Refusal),
    Head(Summary),
}

#[derive(Debug, PartialEq)]
struct Summary {
    method: String,
    target: String,
    version: Version,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    head_len: usize,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    accept: (Option<usize>, u8),
    content_type: (Option<usize>, u8),
}

fn summary(h: &RequestHead<'_, '_>) -> Summary {
    Summary {
        method: h.method.as_str().to_string(),
        target: h.target.to_string(),
        version: h.version,
        headers: h
            .headers
            .iter()
            .map(|f| (f.name.as_bytes().to_vec(), f.value.to_vec()))
            .collect(),
        head_len: h.head_len,
        framing: h.framing,
        keep_alive: h.keep_alive,
        expect_continue: h.expect_continue,
        accept: (h.accept, h.accept_count),
        content_type: (h.content_type, h.content_type_count),
    }
}

fn outcome(buf: &[u8], limits: &Limits) -> Outcome {
    let mut st = header_storage();
    match parse_head(buf, limits, &mut st) {
        Ok(None) => Outcome::Partial,
        Err(r) => Outcome::Refused(r),
        Ok(Some(h)) => Outcome::Head(summary(&h)),
    }
}

fn fields<'b>(h: &RequestHead<'_, 'b>, name: &[u8]) -> Vec<&'b [u8]> {
    framing::values(&framing::field_list(h.headers), name)
}

/// Everything an accepted head must satisfy, checked against the raw bytes and an independent model.
fn check_accepted(buf: &[u8], limits: &Limits, h: &RequestHead<'_, '_>) {
    let head = &buf[..h.head_len];
    assert!(h.head_len <= buf.len() && h.head_len <= limits.max_head);
    assert!(head.ends_with(b"\r\n\r\n"), "head does not end in CRLF CRLF");
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert!(head.get(i + 1) == Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(
        !head
            .windows(2)
            .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t')),
        "obs-fold accepted"
    );
    assert!(std::str::from_utf8(h.target.as_bytes()).is_ok());
    assert!(ALLOWED_METHODS.contains(&h.method.as_str()));
    assert!(head.starts_with(h.method.as_str().as_bytes()) && head[h.method.as_str().len()] == b' ');
    assert!(!h.target.is_empty() && !h.target.bytes().any(|b| b <= b' ' || b == 0x7f));
    assert!(h.headers.len() <= limits.max_headers);
    for f in h.headers {
        assert!(
            !f.name.is_empty() && f.name.bytes().all(tchar),
            "field name {:?}",
            f.name
        );
        assert!(
            !f.value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
            "control byte in a field value: {:?}",
            f.value
        );
    }

    // Host: exactly one in HTTP/1.1, at most one in HTTP/1.0.
    let hosts = fields(h, b"host").len();
    match h.version {
        Version::Http11 => assert_eq!(hosts, 1),
        Version::Http10 => assert!(hosts <= 1),
    }
    // Framing (RFC 9112 section 6.3, strict): the shared model of tests/models/framing.rs.
    assert_eq!(
        framing::request_framing(
            h.method.as_str(),
            h.version,
            &framing::field_list(h.headers),
            limits.max_body
        ),
        Some(h.framing),
        "framing model"
    );
    // Connection: options are tokens, never name the framing fields or Host; close wins; HTTP/1.0 needs
    // keep-alive.
    let conn: Vec<&[u8]> = fields(h, b"connection").into_iter().flat_map(items).collect();
    for t in &conn {
        assert!(t.iter().all(|&b| tchar(b)), "Connection option {t:?}");
        for bad in [&b"host"[..], b"content-length", b"transfer-encoding"] {
            assert!(!t.eq_ignore_ascii_case(bad), "Connection names {t:?}");
        }
    }
    let close = conn.iter().any(|t| t.eq_ignore_ascii_case(b"close"));
    let ka = conn.iter().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
    assert_eq!(
        h.keep_alive,
        !close && (h.version == Version::Http11 || ka),
        "keep_alive"
    );
    // A WebSocket handshake: GET, HTTP/1.1, no body, Connection names `upgrade`, an Upgrade field lists
    // `websocket` (RFC 6455 4.1); only then may it become a tunnel.
    let upgrade: Vec<&[u8]> = fields(h, b"upgrade").into_iter().flat_map(items).collect();
    assert_eq!(
        h.websocket,
        h.method.as_str() == "GET"
            && h.version == Version::Http11
            && matches!(h.framing, Framing::None | Framing::Length(0))
            && conn.iter().any(|t| t.eq_ignore_ascii_case(b"upgrade"))
            && upgrade.iter().any(|t| t.eq_ignore_ascii_case(b"websocket")),
        "websocket"
    );
    // Expect: only 100-continue.
    let expect = fields(h, b"expect");
    assert!(expect.iter().all(|v| v.eq_ignore_ascii_case(b"100-continue")));
    assert_eq!(h.expect_continue, !expect.is_empty());
    // Accept / Content-Type: first index and (saturating) count.
    for (name, (first, count)) in [
        (&b"accept"[..], (h.accept, h.accept_count)),
        (b"content-type", (h.content_type, h.content_type_count)),
    ] {
        let idx: Vec<usize> = (0..h.headers.len())
            .filter(|&i| h.headers[i].name.as_bytes().eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(first, idx.first().copied());
        assert_eq!(count as usize, idx.len().min(255));
    }
}

/// The forwarded head parses again: same request, body framed by Content-Length only, hop-by-hop fields gone
/// (a tunnelled WebSocket handshake: exactly `Connection: Upgrade` and `Upgrade: websocket`, whatever the
/// client sent).
fn check_forwarded(h: &RequestHead<'_, '_>, chunked_len: u64) {
    check_forwarded_as(h, chunked_len, false);
    if h.websocket {
        check_forwarded_as(h, chunked_len, true);
    }
}

fn check_forwarded_as(h: &RequestHead<'_, '_>, chunked_len: u64, websocket: bool) {
    let body_len = match h.framing {
        Framing::None => 0,
        Framing::Length(n) => n,
        Framing::Chunked => chunked_len,
    };
    let fwd = Forward {
        client_ip: b"192.0.2.7",
        default_host: b"upstream.test",
        version_header: b"X-Api-Version",
        version: Some(b"v2"),
        observe: None,
        proto: b"http",
        request_id: Some((b"X-Request-Id", b"0123456789abcdef0123456789abcdef")),
        websocket,
    };
    let mut out = Vec::new();
    forward_head(&mut out, h, body_len, &fwd);
    let lim = Limits {
        max_head: usize::MAX,
        max_headers: MAX_HEADERS_LIMIT,
        max_body: u64::MAX,
    };
    let mut st = header_storage();
    let f = match parse_head(&out, &lim, &mut st) {
        Ok(Some(f)) => f,
        other => panic!(
            "forwarded head does not parse: {other:?}\n{}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(f.head_len, out.len());
    assert_eq!((f.method, f.target, f.version), (h.method, h.target, Version::Http11));
    let want = if h.framing == Framing::None {
        Framing::None
    } else {
        Framing::Length(body_len)
    };
    assert_eq!(f.framing, want, "forwarded framing\n{}", String::from_utf8_lossy(&out));
    assert!(f.keep_alive && !f.expect_continue);
    assert_eq!(
        f.websocket,
        websocket,
        "forwarded handshake\n{}",
        String::from_utf8_lossy(&out)
    );
    let mut hops = vec![
        &b"keep-alive"[..],
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"expect",
        b"trailer",
    ];
    if websocket {
        assert_eq!(fields(&f, b"connection"), vec![&b"Upgrade"[..]]);
        assert_eq!(fields(&f, b"upgrade"), vec![&b"websocket"[..]]);
    } else {
        hops.extend([&b"connection"[..], b"upgrade"]);
    }
    for hop in hops {
        assert!(fields(&f, hop).is_empty(), "forwarded {hop:?}");
    }
    assert_eq!(fields(&f, b"x-forwarded-for").len(), 1);
    assert!(fields(&f, b"x-forwarded-for")[0].ends_with(b"192.0.2.7"));
    assert_eq!(fields(&f, b"x-api-version"), vec![&b"v2"[..]]);
}

/// A deterministic pseudo-random number from the input (split points).
fn mix(data: &[u8], salt: u64) -> u64 {
    let mut x = 0xcbf2_9ce4_8422_2325u64 ^ salt;
    for &b in data.iter().take(64) {
        x = (x ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    x ^= data.len() as u64;
    x ^ (x >> 29)
}

/// True if a line of `head` ends in a bare LF, or a CR is not followed by LF.
fn bare_cr_or_lf(head: &[u8]) -> bool {
    head.iter().enumerate().any(|(i, &b)| {
        (b == b'\n' && (i == 0 || head[i - 1] != b'\r')) || (b == b'\r' && head.get(i + 1) != Some(&b'\n'))
    })
}

/// A `MalformedRequest` refusal has a cause: httparse refuses the bytes (other than for the number of fields
/// or the version, which have their own reasons), or the complete head has a bare CR or LF.
fn check_malformed_has_cause(buf: &[u8], limits: &Limits) {
    let mut hs = vec![httparse::EMPTY_HEADER; limits.max_headers.min(MAX_HEADERS_LIMIT)];
    let mut req = httparse::Request::new(&mut hs);
    match req.parse(buf) {
        Err(httparse::Error::TooManyHeaders) => panic!("too many fields refused as malformed"),
        Err(_) => {}
        Ok(httparse::Status::Partial) => panic!("an incomplete head refused as malformed"),
        Ok(httparse::Status::Complete(n)) => assert!(
            bare_cr_or_lf(&buf[..n]),
            "a head without bare CR/LF refused as malformed"
        ),
    }
}

fn is_limit(r: Refusal) -> bool {
    matches!(r, Refusal::HeaderTooLarge | Refusal::UriTooLong)
}

fn run(buf: &[u8], limits: &Limits) {
    let whole = outcome(buf, limits);
    if whole == Outcome::Refused(Refusal::MalformedRequest) {
        check_malformed_has_cause(buf, limits);
    }
    let mut st = header_storage();
    if let Ok(Some(h)) = parse_head(buf, limits, &mut st) {
        check_accepted(buf, limits, &h);
        check_forwarded(&h, mix(buf, 3) % 100_000);
        // Re-parsing exactly the head gives the same head.
        assert_eq!(
            outcome(&buf[..h.head_len], limits),
            whole,
            "re-parse of buf[..head_len]"
        );
        if h.head_len > 0 {
            assert_eq!(
                outcome(&buf[..h.head_len - 1], limits),
                Outcome::Partial,
                "head minus one byte"
            );
        }
    }
    // Reading in pieces: a prefix is undecided, or already gives the final answer.
    for salt in 0..3 {
        let k = (mix(buf, salt) % (buf.len() as u64 + 1)) as usize;
        let p = outcome(&buf[..k], limits);
        match (&p, &whole) {
            (Outcome::Partial, _) => {
                if let Outcome::Head(s) = &whole {
                    assert!(k < s.head_len, "prefix {k} of a complete head is partial");
                }
            }
            // A size limit may be hit by a prefix before a later byte makes the head malformed (or the other
            // way round): both are refusals, the reason depends on how the bytes arrive.
            (Outcome::Refused(a), Outcome::Refused(b)) if is_limit(*a) || is_limit(*b) => {}
            _ => assert_eq!(p, whole, "prefix {k} decided differently from the whole input"),
        }
    }
}

/// Everything the fuzz target checks on one input: the bytes parsed with the default limits, then with small
/// ones (a 300-byte head, 6 fields, a 1000-byte body). Panics on the first check that fails.
pub fn check(data: &[u8]) {
    run(data, &Limits::default());
    run(
        data,
        &Limits {
            max_head: 300,
            max_headers: 6,
            max_body: 1000,
        },
    );
}
