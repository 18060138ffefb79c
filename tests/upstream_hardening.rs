//! Findings of the adversarial review of the upstream side (docs/security.md, B, G, H, I): a faulty upstream
//! must never hand one client's bytes to another, spellings the upstream's framework maps onto protected
//! fields never reach it, a response cut at shutdown is never presented as complete, and relayed framing is
//! valid. Real binary, real sockets on 127.0.0.1.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::{find, get, wait_rx_queued, Action, Proxy, Upstream};

/// The upstream's answer to `GET /<kind>/<marker>`: the marker in a field and in the body.
fn marked(m: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Marker: {m}\r\n\r\nmarker={m}",
        7 + m.len()
    )
    .into_bytes()
}

/// A faulty upstream, by request target `/<kind>/<marker>`:
/// - `ok`: answers the marker (HEAD: the head, then ~300 ms later the whole response again: `do_HEAD = do_GET`);
/// - `204`, `304`: that status, then ~300 ms later a whole response for the marker;
/// - `extra`: the answer and, in the same write, a second one (`<marker>-extra`);
/// - `later`: the answer; then, once the test sends on `go`, a second one (`<marker>-late`), and reports on
///   `done` the address the ingress connected from.
///
/// Every late response is well-formed: read as the next request's answer it would be relayed as such.
struct Faulty {
    addr: SocketAddr,
    go: Sender<()>,
    done: Receiver<SocketAddr>,
}

fn faulty() -> Faulty {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (go, go_rx) = mpsc::channel::<()>();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (g, d) = (go_rx.clone(), done_tx.clone());
            thread::spawn(move || serve_faulty(s, &g, &d));
        }
    });
    Faulty { addr, go, done }
}

fn serve_faulty(mut s: TcpStream, go: &Mutex<Receiver<()>>, done: &Sender<SocketAddr>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let late = Duration::from_millis(300); // the faulty upstream's own delay, not a synchronisation
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let mut line = head.split(' ');
        let (method, target) = (line.next().unwrap(), line.next().unwrap());
        let (kind, m) = target.trim_start_matches('/').split_once('/').unwrap();
        let full = marked(m);
        let w = match (kind, method) {
            ("ok", "HEAD") => {
                let head_end = find(&full, b"\r\n\r\n").unwrap() + 4;
                s.write_all(&full[..head_end]).and_then(|_| {
                    thread::sleep(late);
                    s.write_all(&full)
                })
            }
            ("ok", _) => s.write_all(&full),
            ("204" | "304", _) => {
                let status = if kind == "204" {
                    "204 No Content"
                } else {
                    "304 Not Modified"
                };
                s.write_all(format!("HTTP/1.1 {status}\r\nX-Marker: {m}\r\n\r\n").as_bytes())
                    .and_then(|_| {
                        thread::sleep(late);
                        s.write_all(&full)
                    })
            }
            ("extra", _) => s.write_all(&[full, marked(&format!("{m}-extra"))].concat()),
            ("later", _) => s.write_all(&full).and_then(|_| {
                go.lock().unwrap().recv().unwrap();
                s.write_all(&marked(&format!("{m}-late")))?;
                done.send(s.peer_addr()?).unwrap();
                Ok(())
            }),
            _ => panic!("unexpected target {target}"),
        };
        if w.is_err() {
            return;
        }
    }
}

/// One request on a new connection; the answer must carry `marker` (the request's own).
fn exchange(proxy: &Proxy, method: &str, path: &str, marker: &str) {
    let mut c = proxy.connect();
    c.send(format!("{method} {path} HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n").as_bytes());
    let r = c.response_to(method == "HEAD").expect("a response");
    assert_eq!(
        r.header("x-marker").as_deref(),
        Some(marker),
        "{method} {path} got someone else's answer: {r:?}"
    );
    if method == "GET" && r.status == 200 {
        assert_eq!(r.body, format!("marker={marker}").into_bytes());
    }
}

/// Sequential clients: every other one sends `trigger` (a request the faulty upstream answers and then
/// keeps talking on), the others a plain GET; each must get its own answer.
fn each_client_gets_its_own(trigger_method: &str, trigger_kind: &str) {
    let up = faulty();
    let proxy = Proxy::core(up.addr, &[]);
    for i in 0..8 {
        let m = format!("c{i}");
        if i % 2 == 0 {
            exchange(&proxy, trigger_method, &format!("/{trigger_kind}/{m}"), &m);
        } else {
            exchange(&proxy, "GET", &format!("/ok/{m}"), &m);
        }
    }
}

#[test]
fn late_body_after_head_never_reaches_the_next_client() {
    each_client_gets_its_own("HEAD", "ok");
}

#[test]
fn late_body_after_204_never_reaches_the_next_client() {
    each_client_gets_its_own("GET", "204");
}

#[test]
fn late_body_after_304_never_reaches_the_next_client() {
    each_client_gets_its_own("GET", "304");
}

#[test]
fn bytes_past_content_length_in_the_same_write_never_reach_the_next_client() {
    each_client_gets_its_own("GET", "extra");
}

/// The upstream speaks on a pooled connection while a client's request waits in the same poll batch, the
/// client's event first: the pooled connection must be seen as dirty before any client can take it.
#[test]
fn bytes_past_content_length_in_a_later_write_never_reach_the_next_client() {
    let up = faulty();
    let proxy = Proxy::core(up.addr, &[]);
    for i in 0..3 {
        // Both connections are accepted before the first answer comes back (accepts are FIFO).
        let mut victim = proxy.connect();
        let mut first = proxy.connect();
        let (m, v) = (format!("t{i}"), format!("v{i}"));
        first.send(format!("GET /later/{m} HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n").as_bytes());
        let r = first.response().expect("a response");
        assert_eq!(r.header("x-marker"), Some(m.clone()));
        // Stopped, the ingress sees the victim's request and the upstream's late bytes in one batch.
        proxy.pause();
        victim.send(format!("GET /ok/{v} HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n").as_bytes());
        wait_rx_queued(proxy.addr, victim.s.local_addr().unwrap());
        up.go.send(()).unwrap();
        let ingress_side = up.done.recv_timeout(support::IO_TIMEOUT).unwrap();
        wait_rx_queued(ingress_side, up.addr);
        proxy.resume();
        let r = victim.response().expect("a response");
        assert_eq!(r.header("x-marker"), Some(v.clone()), "the victim got {r:?}");
    }
}

/// Reads until the peer ends the connection: true for a reset, false for a clean end.
fn ends_with_reset(s: &mut TcpStream) -> bool {
    let mut tmp = [0u8; 4096];
    for _ in 0..10_000 {
        match s.read(&mut tmp) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("read: {e}"),
        }
    }
    panic!("the connection never ended");
}

/// The upstream sends `head` and a first piece of the body and stalls; SIGTERM with a short
/// `--shutdown-timeout`: the client, having read that piece, must see a reset, not a clean end.
fn cut_at_shutdown_is_a_reset(head: &'static str, piece: &'static str) {
    let up = Upstream::start(move |_| Action::RespondThenSilent(format!("{head}{piece}").into_bytes()));
    let proxy = Proxy::core(up.addr, &["--shutdown-timeout", "200ms"]);
    let mut c = proxy.connect();
    c.send(&get("/slow"));
    let mut got = Vec::new();
    let mut tmp = [0u8; 4096];
    while find(&got, piece.as_bytes()).is_none() {
        let n = c.s.read(&mut tmp).unwrap();
        assert!(
            n > 0,
            "closed before the first piece: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&tmp[..n]);
    }
    proxy.signal("TERM");
    assert!(ends_with_reset(&mut c.s), "a cut response ended with a clean FIN");
}

#[test]
fn a_close_delimited_response_cut_at_shutdown_is_reset() {
    cut_at_shutdown_is_a_reset("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", "partial-body");
}

#[test]
fn a_length_delimited_response_cut_at_shutdown_is_reset() {
    cut_at_shutdown_is_a_reset("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "partial-body");
}

#[test]
fn a_chunked_response_cut_at_shutdown_is_reset() {
    cut_at_shutdown_is_a_reset(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "c\r\npartial-body\r\n",
    );
}

/// G: CGI, WSGI, Rack and PHP map `_` and `-` to the same name: underscore spellings of protected fields
/// (the version header, X-Forwarded-For, the observe header, the user-key field) must not reach the upstream.
#[test]
fn underscore_fields_never_reach_the_upstream() {
    let up = Upstream::ok("ok");
    let proxy = Proxy::core(up.addr, &["--admin", "127.0.0.1:0"]);
    let mut c = proxy.connect();
    let r = c.roundtrip(
        b"GET /u HTTP/1.1\r\nHost: t\r\nAccept: */*\r\nX_Api_Version: v9\r\nX_Forwarded_For: 6.6.6.6\r\nX-Normal: 1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let req = &up.requests()[0];
    assert!(
        !req.head.contains('_'),
        "an underscore field was forwarded: {}",
        req.head
    );
    assert!(!req.head.contains("6.6.6.6"), "{}", req.head);
    assert_eq!(req.header("x-normal").as_deref(), Some("1"));
    assert_eq!(req.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    proxy.wait_metric("portcullis_underscore_fields_dropped_total", 2.0);
}

/// I: a 204 is relayed without Content-Length (RFC 9110 8.6), and the next request on the connection works.
#[test]
fn a_204_is_relayed_without_content_length() {
    let up = Upstream::start(|r| {
        if r.request_line().contains("/204") {
            Action::Respond(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n".to_vec())
        } else {
            Action::Respond(support::response(200, "next"))
        }
    });
    let proxy = Proxy::core(up.addr, &[]);
    let mut c = proxy.connect();
    let r = c.roundtrip(&get("/204"));
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "{}", r.head);
    assert_eq!(r.header("x-a").as_deref(), Some("1"));
    assert_eq!(c.roundtrip(&get("/next")).body, b"next");
}

/// I: trailer lines carrying framing fields, or without a colon, are removed; valid trailers are kept.
#[test]
fn relayed_trailers_carry_no_framing_fields_and_no_bare_lines() {
    let up = Upstream::start(|_| {
        Action::Respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\nX-Sum: 42\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\nnot a field\r\n\r\n"
                .to_vec(),
        )
    });
    let proxy = Proxy::core(up.addr, &[]);
    let mut c = proxy.connect();
    // Twice on one connection: the first exchange left it (and the upstream one) in step.
    for path in ["/t", "/again"] {
        c.send(&get(path));
        assert_eq!(chunked_body(&mut c.s), "3\r\nabc\r\n0\r\nX-Sum: 42\r\n\r\n");
    }
}

/// Reads one response whose chunked body ends with a trailer section; returns the body as relayed.
fn chunked_body(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut tmp = [0u8; 1];
    // One byte at a time: nothing of a next response is taken.
    while find(&got, b"\r\n0\r\n").is_none_or(|i| find(&got[i..], b"\r\n\r\n").is_none()) {
        let n = s.read(&mut tmp).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&tmp[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    text[text.find("\r\n\r\n").unwrap() + 4..].to_string()
}
