//! End to end over real sockets: the real binary between a raw-socket client and a scripted upstream.

mod support;

use std::sync::Mutex;

use std::io::{Read, Write};
use support::*;

#[test]
fn get_goes_through_with_forwarded_for() {
    let up = Upstream::ok("hello");
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    let r = c.roundtrip(
        b"GET /a?b=1 HTTP/1.1\r\nHost: api\r\nAccept: */*\r\nX-Forwarded-For: 10.1.1.1\r\nX-Custom: v\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    let reqs = up.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line(), "GET /a?b=1 HTTP/1.1");
    assert_eq!(reqs[0].header("x-forwarded-for").unwrap(), "10.1.1.1, 127.0.0.1");
    assert_eq!(reqs[0].header("x-custom").unwrap(), "v");
    assert_eq!(reqs[0].header("host").unwrap(), "api");
}

#[test]
fn builtin_echo_upstream_without_flag() {
    let p = Proxy::start(&["--workers", "1"]);
    let r = p.connect().roundtrip(&get("/demo"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["target"], "/demo");
    assert!(p.log.lock().unwrap().contains("built-in echo upstream"));
}

#[test]
fn keep_alive_reuses_both_connections() {
    let up = Upstream::ok("x");
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    for i in 0..5 {
        assert_eq!(c.roundtrip(&get(&format!("/{i}"))).status, 200);
    }
    // A second client, after the first is idle, is served over the pooled upstream connection too.
    let mut c2 = p.connect();
    assert_eq!(c2.roundtrip(&get("/other")).status, 200);
    assert_eq!(up.requests().len(), 6);
    assert_eq!(up.accepts(), 1, "one upstream connection for six requests");
}

#[test]
fn pipelined_requests_answered_in_order() {
    let up = Upstream::start(|r| Action::Respond(response(200, r.request_line().split(' ').nth(1).unwrap())));
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(&[get("/one"), get("/two"), get("/three")].concat());
    for want in ["/one", "/two", "/three"] {
        assert_eq!(c.response().unwrap().body, want.as_bytes());
    }
}

#[test]
fn chunked_request_is_forwarded_with_content_length() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(b"POST /c HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-T: dropped\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 200);
    let r = &up.requests()[0];
    assert_eq!(r.body, b"hello world");
    assert_eq!(r.header("content-length").unwrap(), "11");
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.header("x-t").is_none(), "trailers are dropped, never merged");
    assert!(r.header("trailer").is_none());
}

#[test]
fn response_framings_are_relayed() {
    let up = Upstream::start(|r| {
        let path = r.request_line().split(' ').nth(1).unwrap().to_string();
        match path.as_str() {
            "/chunked" => Action::Respond(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".to_vec(),
            ),
            "/close" => Action::RespondClose(b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec()),
            "/204" => Action::Respond(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            "/304" => Action::Respond(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n".to_vec()),
            "/head" => Action::Respond(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n".to_vec()),
            "/interim" => Action::Respond(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                    .to_vec(),
            ),
            _ => Action::Respond(response(404, "")),
        }
    });
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    let r = c.roundtrip(&get("/chunked"));
    assert_eq!(r.header("transfer-encoding").unwrap(), "chunked");
    assert_eq!(r.body, b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    let r = c.roundtrip(&get("/204"));
    assert_eq!(r.status, 204);
    let r = c.roundtrip(&get("/304"));
    assert_eq!(r.status, 304);
    c.send(b"HEAD /head HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    let r = c.response_to(true).unwrap();
    assert_eq!((r.status, r.header("content-length").unwrap().as_str()), (200, "42"));
    let r = c.roundtrip(&get("/interim"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    // Everything so far left the client's connection usable: the next request still works on it.
    let r = c.roundtrip(&get("/close"));
    assert_eq!(r.body, b"until close");
    assert_eq!(r.header("connection").unwrap(), "close");
    assert!(c.closed());
    // A bodiless response (204, 304, HEAD) closes its upstream connection instead of pooling it (a faulty
    // upstream may still send a body: docs/security.md, B): one for /chunked and /204, then one each.
    assert_eq!(up.accepts(), 4);
}

#[test]
fn large_body_forwarded_identical_and_oversized_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &[]);
    let body: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    let mut c = p.connect();
    c.send(
        format!(
            "POST /big HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    assert_eq!(c.response().unwrap().status, 200);
    assert!(up.requests()[0].body == body, "900 KB body forwarded byte for byte");

    let mut c = p.connect();
    c.send(
        format!(
            "POST /big HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: {}\r\n\r\n",
            1_100_000
        )
        .as_bytes(),
    );
    let r = c.response().unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["reason"], "body_too_large");
    assert!(c.closed());
    // Chunked bodies are held to the same limit.
    let mut c = p.connect();
    c.send(b"POST /big HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = vec![b'a'; 100_000];
    let mut refused = None;
    for _ in 0..12 {
        if c.s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).is_err() || c.s.write_all(&chunk).is_err() {
            break;
        }
        let _ = c.s.write_all(b"\r\n");
    }
    if let Some(r) = c.response() {
        refused = Some(r.status);
    }
    assert_eq!(refused, Some(413));
    assert_eq!(up.requests().len(), 1, "nothing oversized reached the upstream");
}

#[test]
fn framing_rejections_close_and_reach_nothing() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &[]);
    let cases: &[(&str, u16, &str)] = &[
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "unsupported_transfer_coding",
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: +5\r\n\r\nhello",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 5, 6\r\n\r\nhello",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            400,
            "ambiguous_framing",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            400,
            "malformed_chunked_body",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
            400,
            "malformed_chunked_body",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n",
            400,
            "malformed_chunked_body",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            400,
            "malformed_chunked_body",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            400,
            "malformed_chunked_body",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n",
            400,
            "malformed_chunked_body",
        ),
        ("GET / HTTP/1.1\r\n\r\n", 400, "invalid_host"),
        ("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nHost: b\r\n\r\n", 400, "invalid_host"),
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed_request"),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX: 1\r\n  folded\r\n\r\n",
            400,
            "malformed_request",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX: a\x00b\r\n\r\n",
            400,
            "malformed_request",
        ),
        ("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX: a\rb\r\n\r\n", 400, "malformed_request"),
        ("GET / HTTP/1.1\nHost: a\n\n", 400, "malformed_request"),
        ("GET / HTTP/2.0\r\nHost: a\r\nAccept: */*\r\n\r\n", 505, "http_version_not_supported"),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: Content-Length\r\n\r\n",
            400,
            "invalid_connection_header",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: host\r\n\r\n",
            400,
            "invalid_connection_header",
        ),
        ("GET\x01 / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", 400, "malformed_request"),
    ];
    for (raw, status, reason) in cases {
        let mut c = p.connect();
        c.send(raw.as_bytes());
        let r = c.response().unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(
            (r.status, r.json()["reason"].as_str().unwrap()),
            (*status, *reason),
            "{raw:?}"
        );
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{raw:?}");
        assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
        assert!(c.closed(), "connection closed after {raw:?}");
    }
    assert!(
        up.requests().is_empty(),
        "nothing reached the upstream: {:?}",
        up.requests()
    );
}

#[test]
fn head_limits() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &["--max-head", "2KiB", "--max-headers", "10"]);
    let mut c = p.connect();
    c.send(format!("GET /{} HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", "a".repeat(3000)).as_bytes());
    assert_eq!(c.response().unwrap().status, 414);
    let mut c = p.connect();
    c.send(
        format!(
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX: {}\r\n\r\n",
            "a".repeat(3000)
        )
        .as_bytes(),
    );
    assert_eq!(c.response().unwrap().status, 431);
    let mut c = p.connect();
    let many: String = (0..11).map(|i| format!("X-{i}: v\r\n")).collect();
    c.send(format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n{many}\r\n").as_bytes());
    assert_eq!(c.response().unwrap().status, 431);
    assert!(c.closed());
    assert!(up.requests().is_empty());
}

#[test]
fn expect_100_continue_is_answered_by_the_ingress() {
    let up = Upstream::ok("done");
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(b"POST /e HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 100);
    c.send(b"body");
    let r = c.response().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"done"[..]));
    let req = &up.requests()[0];
    assert!(req.header("expect").is_none(), "the upstream never sees Expect");
    assert_eq!(req.body, b"body");
}

#[test]
fn http10_client() {
    let up = Upstream::start(|_| {
        Action::Respond(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n".to_vec())
    });
    let p = Proxy::core(up.addr, &[]);
    // Keep-alive asked: kept; a chunked upstream body is de-chunked and the connection closed for HTTP/1.0.
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.0\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n");
    let r = c.response().unwrap();
    assert_eq!(r.body, b"abcd");
    assert!(r.header("transfer-encoding").is_none());
    assert!(c.closed());
    assert_eq!(up.requests()[0].request_line(), "GET / HTTP/1.1");
    assert!(up.requests()[0].header("host").is_some());
    let up2 = Upstream::ok("k");
    let p2 = Proxy::core(up2.addr, &[]);
    let mut c = p2.connect();
    let r = c.roundtrip(b"GET / HTTP/1.0\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.header("connection").unwrap(), "keep-alive");
    let r = c.roundtrip(b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n");
    assert_eq!(r.header("connection").unwrap(), "close");
    assert!(c.closed());
}

#[test]
fn header_timeout_gives_408() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &["--header-timeout", "300ms"]);
    let mut c = p.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n");
    let r = c.response().unwrap();
    assert_eq!(
        (r.status, r.json()["reason"].as_str().unwrap()),
        (408, "request_timeout")
    );
    assert!(c.closed());
    assert!(up.requests().is_empty());
}

#[test]
fn no_upstream_gives_502_and_keeps_the_client() {
    let p = Proxy::core(dead_port(), &[]);
    let mut c = p.connect();
    let r = c.roundtrip(&get("/"));
    assert_eq!(
        (r.status, r.json()["reason"].as_str().unwrap()),
        (502, "upstream_unavailable")
    );
    assert_eq!(c.roundtrip(&get("/")).status, 502);
}

#[test]
fn silent_upstream_gives_504() {
    let up = Upstream::start(|_| Action::Silent);
    let p = Proxy::core(up.addr, &["--upstream-timeout", "300ms"]);
    let mut c = p.connect();
    let r = c.roundtrip(&get("/"));
    assert_eq!(
        (r.status, r.json()["reason"].as_str().unwrap()),
        (504, "upstream_timeout")
    );
}

#[test]
fn truncated_upstream_response_closes_the_client() {
    let up =
        Upstream::start(|_| Action::RespondClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b".to_vec()));
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(&get("/"));
    assert!(
        c.response().is_none(),
        "a truncated response is never presented as complete"
    );
    // Half a head: 502.
    let up = Upstream::start(|_| Action::RespondClose(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()));
    let p = Proxy::core(up.addr, &[]);
    let r = p.connect().roundtrip(&get("/"));
    assert_eq!(r.status, 502, "{r:?}");
    // Half a head, then silence: a clean 504, none of the upstream's bytes before it.
    let up = Upstream::start(|_| Action::RespondThenSilent(b"HTTP/1.1 200 OK\r\nContent-Le".to_vec()));
    let p = Proxy::core(up.addr, &["--upstream-timeout", "300ms"]);
    let r = p.connect().roundtrip(&get("/"));
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.head.starts_with("HTTP/1.1 504 "), "{r:?}");
    // A malformed head: 502.
    let up = Upstream::start(|_| Action::Respond(b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec()));
    let p = Proxy::core(up.addr, &[]);
    assert_eq!(p.connect().roundtrip(&get("/")).status, 502);
}

#[test]
fn extra_upstream_bytes_are_dropped_and_connection_not_reused() {
    let up = Upstream::start(|_| Action::Respond(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSMUGGLED".to_vec()));
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    assert_eq!(c.roundtrip(&get("/1")).body, b"ok");
    assert_eq!(c.roundtrip(&get("/2")).body, b"ok");
    assert_eq!(up.accepts(), 2, "the over-long connection was not reused");
}

#[test]
fn pooled_connection_closed_by_upstream_is_retried_once() {
    // The upstream closes each connection after its first response, without saying so.
    let up = Upstream::start(|_| Action::RespondClose(response(200, "fresh")));
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    for _ in 0..3 {
        let r = c.roundtrip(&get("/"));
        assert_eq!((r.status, r.body.as_slice()), (200, &b"fresh"[..]));
    }
    assert_eq!(up.requests().len(), 3, "no request reached the upstream twice");
}

#[test]
fn a_post_is_never_sent_twice() {
    // The upstream takes the second request of each connection and closes without answering: it may
    // have processed it. A GET is retried on a fresh connection; a POST is not (502): sent again it would
    // be applied twice.
    let seen = Mutex::new(std::collections::HashMap::<usize, usize>::new());
    let up = Upstream::start(move |r| {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(r.conn).or_insert(0);
        *n += 1;
        if *n == 1 {
            Action::Respond(response(200, "first"))
        } else {
            Action::Close
        }
    });
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    let post = b"POST /pay HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(c.roundtrip(post).status, 200);
    let r = c.roundtrip(post);
    assert_eq!(r.status, 502, "not retried");
    let posts = up
        .requests()
        .iter()
        .filter(|r| r.request_line().starts_with("POST"))
        .count();
    assert_eq!(posts, 2, "each POST reached the upstream once");
    assert_eq!(c.roundtrip(&get("/a")).status, 200);
    let r = c.roundtrip(&get("/b"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"first"[..]),
        "the GET was retried"
    );
    let gets = up
        .requests()
        .iter()
        .filter(|r| r.request_line().starts_with("GET /b"))
        .count();
    assert_eq!(gets, 2, "an idempotent request may reach the upstream twice");
}

#[test]
fn sigterm_lets_in_flight_request_finish() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<()>();
    let seen_tx = std::sync::Mutex::new(seen_tx);
    // The upstream answers only when the test says so (after SIGTERM was sent).
    let up = Upstream::start(move |r| {
        if r.request_line().contains("/slow") {
            seen_tx.lock().unwrap().send(()).unwrap();
            rx.lock().unwrap().recv().unwrap();
            return Action::Respond(response(200, "late"));
        }
        Action::Respond(response(200, "warm"))
    });
    let mut p = Proxy::core(up.addr, &[]);
    let mut idle = p.connect();
    assert_eq!(idle.roundtrip(&get("/warm")).status, 200);
    let mut c = p.connect();
    c.send(&get("/slow"));
    seen_rx.recv_timeout(IO_TIMEOUT).unwrap(); // the in-flight request reached the upstream
    p.signal("TERM");
    assert!(idle.closed(), "idle connections are closed at shutdown");
    tx.send(()).unwrap();
    let r = c.response().unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"late"[..]));
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let status = p.child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(std::net::TcpStream::connect(p.addr).is_err(), "no longer accepting");
}

#[test]
fn half_closed_client_gets_its_response() {
    let up = Upstream::ok("bye");
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(&get("/"));
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.response().unwrap().body, b"bye");
    assert!(c.closed());
}

#[test]
fn slow_reader_gets_a_large_response_intact() {
    let big: &'static str = Box::leak("z".repeat(3_000_000).into_boxed_str());
    let up = Upstream::ok(big);
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(&get("/big"));
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while got.len() < 3_000_000 + 40 {
        let n = c.s.read(&mut tmp).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&tmp[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body.len(), 3_000_000);
}

#[test]
fn connection_cap_pauses_accepting_until_below() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &["--max-connections", "1"]);
    let mut c1 = p.connect();
    assert_eq!(c1.roundtrip(&get("/1")).status, 200);
    // At the cap: the kernel completes the handshake (backlog) but the ingress does not accept.
    let mut c2 = p.connect();
    c2.send(&get("/2"));
    assert_eq!(c1.roundtrip(&get("/1b")).status, 200, "the worker keeps serving");
    c2.s.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let r = c2.s.read(&mut probe);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "served past the cap: {r:?}"
    );
    c2.s.set_nonblocking(false).unwrap();
    drop(c1);
    assert_eq!(c2.response().unwrap().status, 200, "accepted once below the cap");
    assert_eq!(up.requests().len(), 3);
}

#[test]
fn upstream_reset_mid_chunked_body_closes_the_client_and_the_worker_keeps_serving() {
    let up = Upstream::start(|r| {
        if r.request_line().contains("/cut") {
            Action::RespondClose(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nwo".to_vec())
        } else {
            Action::Respond(response(200, "fine"))
        }
    });
    let p = Proxy::core(up.addr, &[]);
    let mut c = p.connect();
    c.send(&get("/cut"));
    assert!(c.response().is_none(), "no complete chunked response");
    let mut c2 = p.connect();
    assert_eq!(c2.roundtrip(&get("/after")).body, b"fine");
}

#[test]
fn out_of_file_descriptors_backs_off_and_recovers() {
    let up = Upstream::ok("ok");
    // A tiny descriptor limit: the worker runs out while accepting.
    let mut sh = std::process::Command::new("sh");
    sh.args([
        "-c",
        "ulimit -n 40 && exec \"$0\" \"$@\"",
        env!("CARGO_BIN_EXE_portcullis"),
    ]);
    let u = up.addr.to_string();
    let p = Proxy::start_with(sh, &["--upstream", &u, "--workers", "1", "--rate", "0"]);
    let mut warm = p.connect();
    assert_eq!(warm.roundtrip(&get("/")).status, 200);
    // More connections than descriptors: the kernel completes them (backlog), the worker hits EMFILE.
    let flood: Vec<Client> = (0..60).map(|_| p.connect()).collect();
    let until = std::time::Instant::now() + IO_TIMEOUT;
    while !p.log.lock().unwrap().contains("accept failed") {
        assert!(std::time::Instant::now() < until, "no EMFILE back-off logged");
        std::thread::yield_now();
    }
    // The connections it holds are still served.
    assert_eq!(warm.roundtrip(&get("/")).status, 200);
    drop(flood);
    // Once descriptors are free again, new connections are accepted and served.
    let mut fresh = p.connect();
    assert_eq!(fresh.roundtrip(&get("/again")).status, 200);
}

#[test]
fn a_slow_body_pins_what_was_sent_not_what_was_announced() {
    // 200 clients announce 1 MiB bodies and send 10 bytes: the ingress holds about a standard buffer for
    // each (it once reserved, and zeroed, the whole announced length: 200 MiB here, 10 GiB at the cap).
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &["--max-body", "1MiB"]);
    let mut warm = p.connect();
    assert_eq!(warm.roundtrip(&get("/")).status, 200);
    let before = rss_kib(p.child.id());
    let mut cs: Vec<Client> = (0..200)
        .map(|_| {
            let mut c = p.connect();
            c.send(b"POST /up HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 1048576\r\n\r\n0123456789");
            c
        })
        .collect();
    // Every connection has been read (its head and first bytes): a request on a later connection of the same
    // worker is answered only after the worker went through the earlier events.
    assert_eq!(warm.roundtrip(&get("/")).status, 200);
    let grown = rss_kib(p.child.id()).saturating_sub(before);
    assert!(grown < 40 * 1024, "200 slow bodies pinned {grown} KiB");
    // They are still served when they finish.
    let rest = vec![b'x'; 1048576 - 10];
    cs[0].send(&rest);
    assert_eq!(cs[0].response().unwrap().status, 200);
    drop(cs);
}
