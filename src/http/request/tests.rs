/// The reg-name grammar written out byte by byte (the table-driven check must agree).
fn reg_name_reference(h: &[u8]) -> bool {
    let mut i = 0;
    while i < h.len() {
        match h[i] {
            b'%' if i + 2 < h.len() && h[i + 1].is_ascii_hexdigit() && h[i + 2].is_ascii_hexdigit() => i += 3,
            b if b.is_ascii_alphanumeric() => i += 1,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {
                i += 1
            }
            _ => return false,
        }
    }
    true
}

#[test]
fn reg_name_agrees_with_the_grammar_for_every_byte_and_escape() {
    for a in 0..=255u8 {
        assert_eq!(reg_name(&[a]), reg_name_reference(&[a]), "{a}");
        for b in 0..=255u8 {
            for h in [[a, b, b'x'], [b'%', a, b], [a, b'%', b], [b'%', b'4', a]] {
                assert_eq!(reg_name(&h), reg_name_reference(&h), "{h:?}");
                assert_eq!(reg_name(&h[..2]), reg_name_reference(&h[..2]), "{h:?}");
            }
        }
    }
}
use super::*;

fn parse(raw: &[u8]) -> Result<Option<(Framing, bool, bool)>, Refusal> {
    let mut st = header_storage();
    parse_head(raw, &Limits::default(), &mut st).map(|o| o.map(|h| (h.framing, h.keep_alive, h.expect_continue)))
}

#[test]
fn framing_decisions() {
    let ok = |raw: &[u8]| parse(raw).unwrap().unwrap();
    assert_eq!(ok(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (Framing::None, true, false));
    assert_eq!(ok(b"GET / HTTP/1.0\r\n\r\n"), (Framing::None, false, false));
    assert_eq!(
        ok(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
        (Framing::None, true, false)
    );
    assert_eq!(
        ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        (Framing::None, false, false)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
        (Framing::Length(5), true, false)
    );
    assert_eq!(
        ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\nExpect: 100-continue\r\n\r\n"),
        (Framing::Chunked, true, true)
    );
}

#[test]
fn refusals() {
    let cases: &[(&[u8], Refusal)] = &[
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            Refusal::UnsupportedTransferCoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            Refusal::AmbiguousFraming,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n",
            Refusal::BodyTooLarge,
        ),
        (b"GET / HTTP/1.1\r\n\r\n", Refusal::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Refusal::InvalidHost),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Refusal::MalformedRequest),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            Refusal::MalformedRequest,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.1\nHost: a\n\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: a \t\nX: b\r\n\r\n", Refusal::MalformedRequest),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nX:\nY: b\r\n\r\n",
            Refusal::MalformedRequest,
        ),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", Refusal::MalformedRequest),
        (b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/1.0\n\r\n", Refusal::MalformedRequest),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Refusal::HttpVersionNotSupported),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Refusal::HttpVersionNotSupported),
        (b"GET / HTPT/1.1\r\nHost: a\r\n\r\n", Refusal::MalformedRequest),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, Content-Length\r\n\r\n",
            Refusal::InvalidConnectionHeader,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
            Refusal::InvalidConnectionHeader,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n",
            Refusal::ExpectationFailed,
        ),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::UnsupportedMethod),
        (b"MKCOLA / HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::UnsupportedMethod),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::UnsupportedMethod),
    ];
    for (raw, want) in cases {
        assert_eq!(parse(raw), Err(*want), "{}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn crlf_heads_with_odd_spacing_are_fine() {
    for raw in [
        &b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a \t\r\nX:\r\nY: \r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        assert!(parse(raw).unwrap().is_some(), "{}", String::from_utf8_lossy(raw));
        assert!(!bare_lf_scan(raw));
    }
}

#[test]
fn bodies_on_get_and_head_and_look_alike_framing_fields_are_refused() {
    for raw in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"[..],
        b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer---Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length_: 3\r\n\r\n",
    ] {
        assert_eq!(
            parse(raw),
            Err(Refusal::AmbiguousFraming),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    // No body, or an empty one, is fine; so are names that merely start alike.
    assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .unwrap()
        .is_some());
    assert!(
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Language: en\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .is_some()
    );
    assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encodings: x\r\n\r\n")
        .unwrap()
        .is_some());
}

#[test]
fn a_space_in_the_target_is_malformed_not_a_version_problem() {
    assert_eq!(
        parse(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(Refusal::MalformedRequest)
    );
    assert_eq!(
        parse(b"GET /a HTTP/1.1 x\r\nHost: a\r\n\r\n"),
        Err(Refusal::MalformedRequest)
    );
    assert_eq!(
        parse(b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n"),
        Err(Refusal::HttpVersionNotSupported)
    );
}

#[test]
fn long_heads_with_crlf_at_every_offset_are_fine() {
    // A CRLF straddling a chunk boundary of the bare-LF count was once refused (heads of 300 B and more,
    // as browsers and SDKs send): every alignment of every line end, in heads up to 2 KB.
    for pad in 0..300 {
        let raw = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\nUser-Agent: {}\r\nX-Long: {}\r\n\r\n",
            "p".repeat(pad),
            "u".repeat(pad * 2 % 251),
            "v".repeat(1500 - pad)
        );
        assert!(!bare_lf_scan(raw.as_bytes()), "pad {pad}");
        assert!(parse(raw.as_bytes()).unwrap().is_some(), "pad {pad}");
        // And a bare LF anywhere is still found.
        let bad = raw.replacen("\r\nX-Long", "\nX-Long", 1);
        assert!(bare_lf_scan(bad.as_bytes()), "pad {pad}");
    }
}

#[test]
fn every_prefix_is_partial() {
    let raw = b"POST /a?b=c HTTP/1.1\r\nHost: example\r\nContent-Length: 3\r\nX-Y: z\r\n\r\n";
    for i in 0..raw.len() {
        assert_eq!(parse(&raw[..i]), Ok(None), "prefix {i}");
    }
    assert!(parse(raw).unwrap().is_some());
}

#[test]
fn limits() {
    let lim = Limits {
        max_head: 1024,
        max_headers: 3,
        max_body: 10,
    };
    let mut st = header_storage();
    let long_line = [b"GET /".as_slice(), &[b'a'; 2000]].concat();
    assert_eq!(parse_head(&long_line, &lim, &mut st).unwrap_err(), Refusal::UriTooLong);
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    big.extend_from_slice(&[b'x'; 1100]);
    assert_eq!(parse_head(&big, &lim, &mut st).unwrap_err(), Refusal::HeaderTooLarge);
    let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(parse_head(many, &lim, &mut st).unwrap_err(), Refusal::HeaderTooLarge);
}

#[test]
fn hosts_and_targets() {
    let r = |raw: &str| parse(raw.as_bytes()).map(|o| o.is_some());
    for ok in [
        "GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: api.example.com:8443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: xn--bcher-kva.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%41b\r\n\r\n",
        "GET http://a.example/x?y HTTP/1.1\r\nHost: A.example\r\n\r\n",
        "GET https://a.example:8443 HTTP/1.1\r\nHost: a.example:8443\r\n\r\n",
        "GET http://a.example:80/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "GET https://a.example/ HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a?b=c/d HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(r(ok), Ok(true), "{ok:?}");
    }
    for (bad, why) in [
        ("GET / HTTP/1.1\r\nHost: bad host\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: \r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a b@c/d\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: [zz]\r\n\r\n", Refusal::InvalidHost),
        ("GET / HTTP/1.1\r\nHost: a%4\r\n\r\n", Refusal::InvalidHost),
        (
            "GET http://other.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Refusal::InvalidHost,
        ),
        (
            "GET http://a.example:8080/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Refusal::InvalidHost,
        ),
        (
            "GET http://u@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Refusal::InvalidTarget,
        ),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::InvalidTarget),
        (
            "GET a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n",
            Refusal::InvalidTarget,
        ),
        ("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::InvalidTarget),
        ("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::InvalidTarget),
        ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", Refusal::InvalidTarget),
    ] {
        assert_eq!(r(bad), Err(why), "{bad:?}");
    }
}
