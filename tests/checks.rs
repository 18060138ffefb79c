//! The product's request checks end to end through the binary: the seed's situations, the Accept
//! versioning rule, the Content-Type rule, and JSONTestSuite bodies (plain and chunked).

mod support;

use support::*;

const DOCS: &str = "https://docs.example.com/troubleshooting";

fn proxy(up: &Upstream, extra: &[&str]) -> Proxy {
    let mut args = vec!["--docs-url", DOCS];
    args.extend_from_slice(extra);
    Proxy::with_upstream(up.addr, &args)
}

fn post(path: &str, ctype: Option<&str>, body: &[u8]) -> Vec<u8> {
    let ct = ctype.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: api\r\nAccept: application/json\r\n{ct}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn assert_problem(r: &Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
    let j = r.json();
    assert_eq!(j["reason"], reason);
    assert_eq!(j["status"], status);
    assert_eq!(j["type"], format!("{DOCS}#{reason}"));
    assert!(j["title"].is_string() && j["detail"].is_string());
}

#[test]
fn the_seeds_situations() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    let mut c = p.connect();
    // Accept header missing.
    let r = c.roundtrip(b"GET /v1/things HTTP/1.1\r\nHost: api\r\n\r\n");
    assert_problem(&r, 406, "accept_header_missing");
    // Content-Type missing for POST / PATCH.
    let r = c.roundtrip(&post("/v1/things", None, b"{}"));
    assert_problem(&r, 415, "content_type_not_json");
    let r = c.roundtrip(&post("/v1/things", Some("text/plain"), b"{}"));
    assert_problem(&r, 415, "content_type_not_json");
    // Invalid / malformed JSON.
    let r = c.roundtrip(&post("/v1/things", Some("application/json"), b"{\"a\":}"));
    assert_problem(&r, 400, "malformed_json");
    // The answer says where the body goes wrong.
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("at byte 5, expected a value"), "{detail}");
    assert!(up.requests().is_empty(), "nothing refused reached the upstream");
    // Policy refusals keep the connection: the same connection now gets through.
    let r = c.roundtrip(&post(
        "/v1/things",
        Some("application/json; charset=utf-8"),
        b"{\"a\":1}",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.requests()[0].body, b"{\"a\":1}");
}

#[test]
fn accept_versions_and_the_version_header() {
    let up = Upstream::ok("ok");
    let p = proxy(
        &up,
        &[
            "--accept",
            "application/vnd.acme.v1+json",
            "--accept",
            "application/vnd.acme.v2+json",
        ],
    );
    let mut c = p.connect();
    let r = c.roundtrip(
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.acme.v1+json;q=0.4, Application/VND.acme.V2+json\r\nX-Api-Version: v9\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = &up.requests()[0];
    assert_eq!(
        req.header("x-api-version").as_deref(),
        Some("v2"),
        "matched version, client's copy replaced"
    );
    assert_eq!(req.head.matches("X-Api-Version").count(), 1);
    for accept in [
        "*/*",
        "application/*",
        "application/json",
        "application/vnd.acme.v2+json;q=0",
    ] {
        let r = c.roundtrip(format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: {accept}\r\n\r\n").as_bytes());
        assert_problem(&r, 406, "unsupported_api_version");
        assert!(r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("application/vnd.acme.v1+json, application/vnd.acme.v2+json"));
    }
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.acme.v2+json;q=7\r\n\r\n");
    assert_problem(&r, 406, "accept_header_malformed");
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn refused_head_never_waits_for_its_body() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    // Expect: 100-continue on a refused head: the refusal comes at once, no 100, and the connection closes
    // (the client may or may not send the body now).
    let mut c = p.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.response().unwrap();
    assert_problem(&r, 415, "content_type_not_json");
    assert!(c.closed());
    // A small body after a refused head is read and dropped: the connection stays usable.
    let mut c = p.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n");
    assert_problem(&c.response().unwrap(), 415, "content_type_not_json");
    c.send(b"0123456789");
    assert_eq!(c.roundtrip(&get("/next")).status, 200);
    // A large one is not waited for: the connection closes.
    let mut c = p.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 1000000\r\n\r\n");
    assert_problem(&c.response().unwrap(), 415, "content_type_not_json");
    assert!(c.closed());
    // Expect: 100-continue on an accepted head gets 100 first.
    let mut c = p.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 100);
    c.send(b"[]");
    assert_eq!(c.response().unwrap().status, 200);
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn json_depth_limit() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &["--max-json-depth", "8"]);
    let mut c = p.connect();
    let ok = format!("{}{}", "[".repeat(8), "]".repeat(8));
    assert_eq!(
        c.roundtrip(&post("/", Some("application/json"), ok.as_bytes())).status,
        200
    );
    let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
    assert_problem(
        &c.roundtrip(&post("/", Some("application/json"), deep.as_bytes())),
        400,
        "json_too_deep",
    );
    assert_eq!(up.requests().len(), 1);
}

/// What the ingress decides for each implementation-defined (`i_`) file; listed in docs/errors.md.
fn i_accepted(name: &str) -> bool {
    // Numbers beyond 64 bits or a double's range are valid grammar: accepted. 500 nested arrays are within
    // the default depth of 1024. Everything else (invalid UTF-8, lone or inverted surrogate escapes,
    // UTF-16, a byte order mark) is refused.
    name.starts_with("i_number_") || name == "i_structure_500_nested_arrays.json"
}

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("{}/tests/corpora/JSONTestSuite/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Sends every corpus file as a POST body (plain or chunked in awkward pieces) over one connection and checks
/// what reached the upstream.
fn run_corpus(chunked: bool) {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    let mut c = p.connect();
    let mut files = corpus("test_parsing");
    files.extend(corpus("test_transform").into_iter().map(|(n, b)| (format!("t_{n}"), b)));
    let mut expected_forwarded = Vec::new();
    let (mut y, mut n, mut i) = (0, 0, 0);
    for (k, (name, body)) in files.iter().enumerate() {
        let accept = match &name[..2] {
            // test_transform's lone surrogates and UTF-8-encoded surrogates ("invalid_codepoint") contradict
            // the rule that invalid UTF-8 and lone surrogates are refused; the rule wins (docs/errors.md).
            "t_" => !name.contains("invalid_codepoint"),
            "y_" => true,
            // The one empty file: a request without content has nothing to check (--json-allow-empty, on by
            // default; docs/errors.md). `bodiless_json_requests` checks the strict setting.
            "n_" => name == "n_structure_no_data.json",
            "i_" => i_accepted(name),
            _ => continue,
        };
        let req = if chunked {
            let mut r = format!(
                "POST /{k} HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            // Pieces of 1, 2, 3, 5, 8 ... bytes: splits land inside escapes, UTF-8 sequences and numbers.
            let (mut pos, mut a, mut b) = (0, 1, 2);
            while pos < body.len() {
                let end = (pos + a).min(body.len());
                r.extend_from_slice(format!("{:x}\r\n", end - pos).as_bytes());
                r.extend_from_slice(&body[pos..end]);
                r.extend_from_slice(b"\r\n");
                pos = end;
                (a, b) = (b, a + b);
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        } else {
            post(&format!("/{k}"), Some("application/json"), body)
        };
        let r = c.roundtrip(&req);
        if accept {
            assert_eq!(r.status, 200, "{name} should be forwarded: {r:?}");
            expected_forwarded.push(body.clone());
        } else {
            assert_eq!(r.status, 400, "{name} should be refused");
            assert!(
                matches!(r.json()["reason"].as_str(), Some("malformed_json" | "json_too_deep")),
                "{name}"
            );
        }
        match &name[..2] {
            "y_" | "t_" => y += 1,
            "n_" => n += 1,
            _ => i += 1,
        }
    }
    assert_eq!((y, n, i), (95 + 22, 188, 35), "corpus size");
    let got: Vec<Vec<u8>> = up.requests().into_iter().map(|r| r.body).collect();
    assert_eq!(got.len(), expected_forwarded.len());
    for (g, e) in got.iter().zip(&expected_forwarded) {
        assert!(
            g == e,
            "forwarded body differs: {:?} vs {:?}",
            String::from_utf8_lossy(g),
            String::from_utf8_lossy(e)
        );
    }
}

#[test]
fn json_test_suite_with_content_length() {
    run_corpus(false);
}

#[test]
fn json_test_suite_chunked_in_awkward_pieces() {
    run_corpus(true);
}

#[test]
fn json_rules_off_with_empty_json_methods() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &["--json-methods", ""]);
    let r = p.connect().roundtrip(&post("/", Some("text/plain"), b"not json"));
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].body, b"not json");
}

#[test]
fn a_refused_head_request_gets_no_body() {
    // The refusal of a HEAD request has the same head and no body (RFC 9110 9.3.2): on a kept connection a
    // body would be read as the start of the next response.
    let up = Upstream::ok("ok");
    // Burst 2: the 406 and the 200 below spend it, the third is limited.
    let p = proxy(&up, &["--rate", "2"]);
    let mut c = p.connect();
    c.send(b"HEAD /x HTTP/1.1\r\nHost: api\r\n\r\n");
    let r = c.response_to(true).unwrap();
    assert_eq!(r.status, 406);
    assert!(r.header("content-length").unwrap().parse::<u64>().unwrap() > 0);
    assert!(r.header("connection").is_none(), "kept");
    // A 429 too (its extra fields go in the head).
    let head = b"HEAD /x HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n";
    c.send(head);
    assert_eq!(c.response_to(true).unwrap().status, 200);
    c.send(head);
    let r = c.response_to(true).unwrap();
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    // The next response on the connection is read cleanly: no stray body bytes came before it.
    let r = c.roundtrip(b"GET /y HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n");
    assert_problem(&r, 429, "rate_limited");
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn bodiless_json_requests() {
    // `POST /logout`, `curl -X POST`, `requests.post(url)`: no body, so no content to check, whatever the
    // Content-Type (--json-allow-empty, on by default).
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    let mut c = p.connect();
    for req in [
        &b"POST /logout HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n"[..],
        b"POST /jobs/1/cancel HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nContent-Length: 0\r\n\r\n",
        b"PATCH /x HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(c.roundtrip(req).status, 200, "{}", String::from_utf8_lossy(req));
    }
    assert_eq!(up.requests().len(), 4);
    // A chunked body that is not empty still gets the Content-Type rule, once it is complete.
    let r = c.roundtrip(
        b"POST /x HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    );
    assert_problem(&r, 415, "content_type_not_json");
    assert_eq!(up.requests().len(), 4);
    // The strict setting restores the refusals.
    let p = proxy(&up, &["--json-allow-empty", "false"]);
    let mut c = p.connect();
    assert_problem(
        &c.roundtrip(b"POST /logout HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n"),
        415,
        "content_type_not_json",
    );
    assert_problem(
        &c.roundtrip(&post("/v1/things", Some("application/json"), b"")),
        400,
        "malformed_json",
    );
    assert_eq!(up.requests().len(), 4);
}

#[test]
fn clients_without_an_accept_preference_are_told_what_to_send() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    let mut c = p.connect();
    // No --accept configured: any Accept will do, and the answer says so.
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n");
    assert_problem(&r, 406, "accept_header_missing");
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("*/*") && !detail.contains("vnd.<vendor>"), "{detail}");
    // The ingress's own answers carry Date (RFC 9110 6.6.1).
    let date = r.header("date").expect("Date");
    assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
    // The default Accept of Java's HttpURLConnection on older JDKs is read as meant.
    let jdk = b"GET / HTTP/1.1\r\nHost: api\r\nAccept: text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2\r\n\r\n";
    assert_eq!(c.roundtrip(jdk).status, 200);
    // With API types configured, the 406 names them.
    let p = proxy(&up, &["--accept", "application/vnd.acme.v2+json"]);
    let r = p.connect().roundtrip(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n");
    assert!(r.json()["detail"]
        .as_str()
        .unwrap()
        .contains("application/vnd.acme.v2+json"));
}

fn encoded(coding: &str, doc: &[u8]) -> Vec<u8> {
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(doc).unwrap();
            e.finish().unwrap()
        }
        _ => {
            let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(doc).unwrap();
            e.finish().unwrap()
        }
    }
}

fn post_coded(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /c HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn compressed_json_bodies_are_validated_and_forwarded_as_sent() {
    let up = Upstream::ok("ok");
    let p = proxy(&up, &[]);
    let mut c = p.connect();
    let doc = format!("[{}]", vec![r#"{"id":1,"name":"a","tags":["x","y"]}"#; 50].join(",")).into_bytes();
    for coding in ["gzip", "deflate"] {
        let body = encoded(coding, &doc);
        assert_eq!(c.roundtrip(&post_coded(coding, &body)).status, 200, "{coding}");
        let got = up.requests().pop().unwrap();
        assert_eq!(got.body, body, "forwarded as sent");
        assert_eq!(got.header("content-encoding").as_deref(), Some(coding));
        // Invalid JSON inside, a truncated stream.
        assert_problem(
            &c.roundtrip(&post_coded(coding, &encoded(coding, b"{\"a\":}"))),
            400,
            "malformed_json",
        );
        assert_problem(
            &c.roundtrip(&post_coded(coding, &body[..body.len() - 4])),
            400,
            "malformed_content_encoding",
        );
    }
    assert_eq!(up.requests().len(), 2);
    // A bomb: 64 MiB of zeros in about 64 KB, refused once decoding passes --max-body (1 MiB).
    let bomb = encoded("gzip", &vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    assert_problem(&c.roundtrip(&post_coded("gzip", &bomb)), 413, "body_too_large");
    // The ratio bound: 1 MiB of spaces around `{}` in ~1 KB is more than 100 to 1.
    let spaced = [vec![b' '; 1 << 19], b"{}".to_vec(), vec![b' '; (1 << 19) - 10]].concat();
    let mut c = p.connect();
    assert_problem(
        &c.roundtrip(&post_coded("gzip", &encoded("gzip", &spaced))),
        413,
        "body_too_large",
    );
    let p = proxy(&up, &["--max-decode-ratio", "5000"]);
    assert_eq!(
        p.connect()
            .roundtrip(&post_coded("gzip", &encoded("gzip", &spaced)))
            .status,
        200
    );
    // The Content-Type rule off: coded bodies are still decoded for the JSON rule.
    let p = proxy(&up, &["--content-type-rule", "off"]);
    let mut c = p.connect();
    assert_eq!(c.roundtrip(&post_coded("gzip", &encoded("gzip", b"{}"))).status, 200);
    assert_problem(
        &c.roundtrip(&post_coded("gzip", &encoded("gzip", b"{"))),
        400,
        "malformed_json",
    );
    // With --json-decode '' a coded body is refused.
    let p = proxy(&up, &["--json-decode", ""]);
    let r = p.connect().roundtrip(&post_coded("gzip", &encoded("gzip", b"{}")));
    assert_problem(&r, 415, "content_encoding_not_supported");
    assert_eq!(r.header("accept-encoding").as_deref(), Some("identity"));
}
