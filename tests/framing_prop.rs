//! Property tests over the pure framing code: random and mutated input never panics, the incremental chunked
//! decoder agrees with a one-shot reference decoder whatever the split, and heads parse the same in pieces.
//!
//! The reference decoder is `tests/models/chunked.rs`, shared with the `chunked` fuzz target.

#[path = "models/chunked.rs"]
mod chunked_model;

use chunked_model::reference;
use portcullis::config::Limits;
use portcullis::http::chunked::ChunkedDecoder;
use portcullis::http::request::{header_storage, parse_head};
use portcullis::http::response;
use proptest::prelude::*;

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
