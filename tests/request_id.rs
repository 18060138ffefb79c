//! Request IDs (`--request-id-header`, `--trust-request-id`) through the real binary: generated, kept when
//! trusted and valid, replaced otherwise, sent upstream, returned on every response (the ingress's own
//! refusals included, in their problem+json body), and logged with the client's `traceparent`.

mod support;

use std::collections::HashSet;

use support::*;

const RID: &[&str] = &["--request-id-header", "X-Request-Id"];

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[test]
fn every_request_gets_a_unique_id_across_workers() {
    let up = Upstream::start(|_| Action::Respond(response(200, "ok")));
    let p = Proxy::core(up.addr, &["--request-id-header", "X-Request-Id", "--workers", "2"]);
    const CLIENTS: usize = 8;
    const EACH: usize = 12_500;
    let ids: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let p = &p;
                s.spawn(move || {
                    let mut c = p.connect();
                    let mut ids = Vec::with_capacity(EACH);
                    for _ in 0..EACH {
                        let r = c.roundtrip(&get("/u"));
                        assert_eq!(r.status, 200);
                        ids.push(r.header("x-request-id").expect("an id on every response"));
                    }
                    ids
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for id in ids.iter().flatten() {
        assert!(is_generated(id), "{id}");
        assert!(seen.insert(id.as_str()), "{id} twice");
    }
    assert_eq!(seen.len(), CLIENTS * EACH);
    // The upstream saw the same ids.
    let sent: HashSet<String> = up
        .requests()
        .iter()
        .map(|r| r.header("x-request-id").unwrap())
        .collect();
    assert_eq!(sent.len(), CLIENTS * EACH);
    assert!(ids.iter().flatten().all(|id| sent.contains(id)));
}

#[test]
fn a_client_id_is_kept_only_when_trusted_and_valid() {
    // The upstream echoes its own id back: the client sees the ingress's, never a second one.
    let up = Upstream::start(|_| {
        Action::Respond(b"HTTP/1.1 200 OK\r\nX-Request-Id: from-upstream\r\nContent-Length: 2\r\n\r\nok".to_vec())
    });
    let req = |id: &str| format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Request-Id: {id}\r\n\r\n").into_bytes();
    let valid = "Abc-123_x.y:z";
    let long = "a".repeat(129);
    {
        let p = Proxy::core(up.addr, RID);
        let mut c = p.connect();
        let r = c.roundtrip(&req(valid));
        let id = r.header("x-request-id").unwrap();
        assert!(is_generated(&id), "untrusted: replaced ({id})");
        assert_eq!(r.head.matches("X-Request-Id").count(), 1, "{}", r.head);
        let got = up.requests().last().unwrap().head.clone();
        assert_eq!(got.to_ascii_lowercase().matches("x-request-id").count(), 1, "{got}");
        assert!(got.contains(&format!("X-Request-Id: {id}\r\n")), "{got}");
    }
    let p = Proxy::core(up.addr, &["--request-id-header", "X-Request-Id", "--trust-request-id"]);
    let mut c = p.connect();
    let r = c.roundtrip(&req(valid));
    assert_eq!(r.header("x-request-id").unwrap(), valid);
    assert_eq!(up.requests().last().unwrap().header("x-request-id").unwrap(), valid);
    for bad in ["a b", "a/b", "a\"b", "é", long.as_str()] {
        let r = c.roundtrip(&req(bad));
        let id = r.header("x-request-id").unwrap();
        assert!(is_generated(&id), "{bad:?} replaced by {id}");
        assert_eq!(up.requests().last().unwrap().header("x-request-id").unwrap(), id);
    }
    // Sent twice: neither is kept.
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Request-Id: one\r\nx-request-id: two\r\n\r\n");
    assert!(is_generated(&r.header("x-request-id").unwrap()));
    // Exactly 128 bytes is kept.
    let max = "b".repeat(128);
    assert_eq!(c.roundtrip(&req(&max)).header("x-request-id").unwrap(), max);
    // A refusal keeps the trusted id too.
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: refused-1\r\n\r\n");
    assert_eq!(r.status, 406);
    assert_eq!(r.header("x-request-id").unwrap(), "refused-1");
    assert_eq!(r.json()["request_id"], "refused-1");
}

/// The refusal's id: in its header field and its problem+json body, the same, with a Content-Length that
/// counts it.
fn refusal_id(r: &Response, status: u16) -> String {
    assert_eq!(r.status, status, "{}", r.head);
    let id = r.header("x-request-id").expect("an id field");
    assert!(is_generated(&id), "{id}");
    assert_eq!(
        r.header("content-length").unwrap().parse::<usize>().unwrap(),
        r.body.len()
    );
    let v = r.json();
    assert_eq!(v["request_id"], id.as_str(), "{v}");
    assert_eq!(v["status"], status);
    id
}

#[test]
fn the_ingress_refusals_carry_the_id() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--request-id-header", "X-Request-Id", "--max-body", "100"]);
    let mut ids = HashSet::new();
    // 406: no acceptable type.
    let mut c = p.connect();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    ids.insert(refusal_id(&r, 406));
    // 413: a body over --max-body.
    let r = c.roundtrip(
        &[
            &b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"[..],
            &[b'x'; 200],
        ]
        .concat(),
    );
    ids.insert(refusal_id(&r, 413));
    // 400: malformed JSON (the answer that says where).
    let mut c = p.connect();
    let r = c.roundtrip(
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{\"a\"}",
    );
    let id = refusal_id(&r, 400);
    assert_eq!(r.json()["reason"], "malformed_json");
    ids.insert(id);
    // HEAD: the head of the same answer, no body.
    c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response_to(true).unwrap();
    assert_eq!(r.status, 406);
    assert!(is_generated(&r.header("x-request-id").unwrap()));
    assert!(r.body.is_empty());
    // 400: ambiguous framing (refused while parsing the head: an id is generated for it).
    let mut c = p.connect();
    let r = c.roundtrip(
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    ids.insert(refusal_id(&r, 400));
    // 502: the upstream is gone.
    let dead = Proxy::core(dead_port(), RID);
    let r = dead.connect().roundtrip(&get("/"));
    ids.insert(refusal_id(&r, 502));
    assert_eq!(ids.len(), 5, "a new id per request");
}

#[test]
fn the_access_log_carries_the_id_and_traceparent() {
    let dir = temp_dir("request-id-log");
    let path = dir.join("access.log");
    let up = Upstream::ok("ok");
    let mut p = Proxy::core(
        up.addr,
        &[
            "--request-id-header",
            "X-Request-Id",
            "--access-log",
            path.to_str().unwrap(),
        ],
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut c = p.connect();
    let r = c.roundtrip(format!("GET /t HTTP/1.1\r\nHost: a\r\nAccept: */*\r\ntraceparent: {tp}\r\n\r\n").as_bytes());
    let id = r.header("x-request-id").unwrap();
    // traceparent goes upstream unchanged.
    assert_eq!(up.requests()[0].header("traceparent").unwrap(), tp);
    let r2 = c.roundtrip(b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n");
    let id2 = r2.header("x-request-id").unwrap();
    drop(c);
    p.signal("TERM");
    assert!(p.child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["request_id"], id.as_str());
    assert_eq!(lines[0]["traceparent"], tp);
    assert_eq!(lines[1]["request_id"], id2.as_str());
    assert!(lines[1].get("traceparent").is_none(), "{text}");
}

#[test]
fn off_by_default() {
    let up = Upstream::ok("ok");
    let p = Proxy::core(up.addr, &[]);
    let r = p
        .connect()
        .roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Request-Id: abc\r\n\r\n");
    assert!(r.header("x-request-id").is_none());
    // The client's field is an ordinary one then: passed through.
    assert_eq!(up.requests()[0].header("x-request-id").unwrap(), "abc");
    let r = p.connect().roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(r.header("x-request-id").is_none() && r.json().get("request_id").is_none());
}

#[test]
fn an_invalid_header_name_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--request-id-header", "X Request", "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--request-id-header"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--request-id-header",
            "X-Request-Id",
            "--trust-request-id",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("request-id-header = \"X-Request-Id\""), "{text}");
    assert!(text.contains("trust-request-id = true"), "{text}");
}
