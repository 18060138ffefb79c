//! Property tests over the pure framing code: random and mutated input never panics, the incremental chunked
//! decoder agrees with a one-shot reference decoder whatever the split, and heads parse the same in pieces.

use portcullis::config::Limits;
use portcullis::http::chunked::ChunkedDecoder;
use portcullis::http::request::{header_storage, parse_head};
use portcullis::http::response;
use proptest::prelude::*;

/// Checks a chunk-size line (without its CRLF): `1*16HEXDIG [ ";" ext ]`, the extension starting with a token
/// character and holding no control byte but HTAB. `complete`: the line ended (so the size may not be empty).
fn size_line_ok(l: &[u8], complete: bool) -> bool {
    let (size, ext) = match l.iter().position(|&b| b == b';') {
        Some(i) => (&l[..i], Some(&l[i + 1..])),
        None => (l, None),
    };
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let size_ok = size.len() <= 16
        && size.iter().all(u8::is_ascii_hexdigit)
        && (!size.is_empty() || (!complete && ext.is_none()));
    let ext_ok = match ext {
        None => true,
        Some([]) => !complete,
        Some(e) => tchar(e[0]) && !e.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f),
    };
    size_ok && ext_ok
}

fn trailer_ok(l: &[u8]) -> bool {
    !l.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

/// Reference: decodes a chunked body in one pass over all the input with the same strict grammar.
/// `Ok(Some((payload, used)))`, `Ok(None)` if it needs more bytes, `Err(())` if malformed.
fn reference(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut pos = 0;
    let mut out = Vec::new();
    let line = |pos: usize| input[pos..].windows(2).position(|w| w == b"\r\n").map(|i| pos + i);
    // A line without its CRLF yet: malformed already if it has a bare LF, a CR not at the very end, or
    // content the line's grammar forbids.
    let partial = |pos: usize, ok: &dyn Fn(&[u8], bool) -> bool| {
        let rest = &input[pos..];
        let bad_ending = rest
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' || (b == b'\r' && i + 1 < rest.len()));
        let (content, cr) = match rest.strip_suffix(b"\r") {
            Some(c) => (c, true),
            None => (rest, false),
        };
        if bad_ending || !ok(content, cr) {
            Err(())
        } else {
            Ok(None)
        }
    };
    loop {
        let Some(end) = line(pos) else {
            return partial(pos, &size_line_ok);
        };
        let l = &input[pos..end];
        if l.contains(&b'\n') || l.contains(&b'\r') || !size_line_ok(l, true) {
            return Err(());
        }
        let size_part = l.split(|&b| b == b';').next().unwrap();
        let size = u64::from_str_radix(std::str::from_utf8(size_part).unwrap(), 16).unwrap() as usize;
        pos = end + 2;
        if size == 0 {
            // Trailer lines until an empty one.
            loop {
                let Some(end) = line(pos) else {
                    return partial(pos, &|l, _| trailer_ok(l));
                };
                let l = &input[pos..end];
                if l.contains(&b'\n') || l.contains(&b'\r') || !trailer_ok(l) {
                    return Err(());
                }
                pos = end + 2;
                if l.is_empty() {
                    return Ok(Some((out, pos)));
                }
            }
        }
        if input.len() < pos + size + 2 {
            let tail = input.get(pos + size..).unwrap_or(&[]);
            return if tail.first().is_some_and(|&b| b != b'\r') {
                Err(())
            } else {
                Ok(None)
            };
        }
        out.extend_from_slice(&input[pos..pos + size]);
        if &input[pos + size..pos + size + 2] != b"\r\n" {
            return Err(());
        }
        pos += size + 2;
    }
}

/// The incremental decoder fed in pieces of the given sizes.
fn incremental(input: &[u8], pieces: &[usize]) -> Result<Option<(Vec<u8>, usize)>, ()> {
    let mut d = ChunkedDecoder::new(u64::MAX);
    let mut out = Vec::new();
    let (mut pos, mut k) = (0, 0);
    while pos < input.len() {
        let end = (pos + pieces[k % pieces.len()].max(1)).min(input.len());
        k += 1;
        let mut p = pos;
        while p < end {
            let s = d.step(&input[p..end]).map_err(|_| ())?;
            out.extend_from_slice(&input[p + s.data.start..p + s.data.end]);
            p += s.consumed;
            if s.done {
                return Ok(Some((out, p)));
            }
            if s.consumed == 0 {
                break;
            }
        }
        pos = end;
    }
    Ok(None)
}

fn chunked(payload: &[u8], sizes: &[usize], ext: bool, trailer: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let (mut pos, mut k) = (0, 0);
    while pos < payload.len() {
        let n = sizes[k % sizes.len()].clamp(1, payload.len() - pos);
        k += 1;
        v.extend_from_slice(format!("{n:x}{}\r\n", if ext { ";a=b" } else { "" }).as_bytes());
        v.extend_from_slice(&payload[pos..pos + n]);
        v.extend_from_slice(b"\r\n");
        pos += n;
    }
    v.extend_from_slice(b"0\r\n");
    if trailer {
        v.extend_from_slice(b"X-T: 1\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn chunked_decodes_the_payload_in_any_split(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..40, 1..5),
        pieces in prop::collection::vec(1usize..17, 1..5),
        ext: bool, trailer: bool,
    ) {
        let mut body = chunked(&payload, &sizes, ext, trailer);
        let len = body.len();
        body.extend_from_slice(b"NEXT REQUEST");
        prop_assert_eq!(incremental(&body, &pieces), Ok(Some((payload.clone(), len))));
        prop_assert_eq!(reference(&body), Ok(Some((payload, len))));
    }

    #[test]
    fn chunked_agrees_with_the_reference_on_mutations(
        payload in prop::collection::vec(b'a'..=b'z', 0..60),
        sizes in prop::collection::vec(1usize..20, 1..4),
        edits in prop::collection::vec((any::<usize>(), prop::sample::select(b"0a;\r\n \tx\x00\x7fF".to_vec())), 1..4),
        pieces in prop::collection::vec(1usize..9, 1..4),
    ) {
        let mut body = chunked(&payload, &sizes, false, false);
        for (at, b) in edits {
            let i = at % body.len();
            body[i] = b;
        }
        let got = incremental(&body, &pieces);
        let want = reference(&body);
        // Both refuse, both wait, or both finish at the same place with the same payload.
        prop_assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&body));
    }

    #[test]
    fn heads_never_panic_and_prefixes_are_partial(
        raw in prop::collection::vec(prop::sample::select(b"GETPOST /HTP1.0:\r\n ,;Host: aContent-Length: 5Transfer-Encoding: chunked\x00\x7f\xff".to_vec()), 0..200),
    ) {
        let limits = Limits { max_head: 1024, max_headers: 16, max_body: 1 << 20 };
        let mut st = header_storage();
        let _ = parse_head(&raw, &limits, &mut st);
        let mut st = header_storage();
        let _ = response::parse_head(&raw, 1024, false, &mut st[..16]);
    }

    #[test]
    fn a_valid_head_is_partial_until_complete(extra in prop::collection::vec(("[A-Za-z-]{1,12}", "[ -~]{0,20}"), 0..6)) {
        let mut raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n".to_vec();
        for (n, v) in &extra {
            if n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
                || n.eq_ignore_ascii_case("connection") || n.eq_ignore_ascii_case("expect") {
                continue;
            }
            raw.extend_from_slice(format!("{n}: {}\r\n", v.trim()).as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        let limits = Limits::default();
        for i in 0..raw.len() {
            let mut st = header_storage();
            prop_assert!(matches!(parse_head(&raw[..i], &limits, &mut st), Ok(None)), "prefix {}", i);
        }
        let mut st = header_storage();
        let head = parse_head(&raw, &limits, &mut st).unwrap().unwrap();
        prop_assert_eq!(head.head_len, raw.len());
    }
}
