//! The connection machine's transitions, one test each, through the in-memory pump (tests/pump): a scripted
//! client and upstream, the real machine, a clock the test moves. The last test checks that together they
//! reach every state and every kind of action.

mod pump;

use std::collections::BTreeSet;
use std::time::Duration;

use pump::*;

fn pump(flags: &[&str], plans: Vec<Up>) -> Pump {
    Pump::new(World::new(flags), plans)
}

fn answering(answers: &[&str]) -> Up {
    Up::Answer {
        reused: false,
        answers: answers.iter().map(|b| ok(b)).collect(),
    }
}

fn get_forwarded() -> Pump {
    let mut p = pump(&[], vec![answering(&["hello"])]);
    p.send(get("/a").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert!(p.text().ends_with("hello"), "{}", p.text());
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(fwd.starts_with("GET /a HTTP/1.1\r\n"), "{fwd}");
    assert!(
        fwd.contains("X-Forwarded-For: 192.0.2.7\r\n") && fwd.contains("X-Api-Version: v1\r\n"),
        "{fwd}"
    );
    assert!(fwd.ends_with("\r\n\r\n"));
    // The exchange ended cleanly: the upstream connection is offered back to the pool, the client is kept.
    assert_eq!(p.released, [(true, None)]);
    assert_eq!(p.conn.state_name(), "Head");
    assert!(p.closed.is_none() && p.conn.is_idle());
    p
}

fn pipelined_requests_are_answered_in_order() -> Pump {
    let mut p = pump(&[], vec![answering(&["one", "two", "three"])]);
    let mut wire = get("/1");
    wire += &post("/2", "{\"a\":1}");
    wire += &get("/3");
    p.send(wire.as_bytes()).run();
    assert_eq!(p.statuses(), [200, 200, 200]);
    let t = p.text();
    let (a, b, c) = (t.find("one").unwrap(), t.find("two").unwrap(), t.find("three").unwrap());
    assert!(a < b && b < c, "{t}");
    let fwd = String::from_utf8(p.upstream_got.concat()).unwrap();
    assert!(fwd.contains("{\"a\":1}"));
    p
}

fn pipelining_continues_after_a_refusal() -> Pump {
    let mut p = pump(&[], vec![answering(&["after"])]);
    // No Accept: refused with 406 from the head; its (small) body is read and dropped, the next request served.
    let refused = "POST /x HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    p.send(refused.as_bytes()).run();
    assert_eq!(p.statuses(), [406]);
    assert_eq!(p.conn.state_name(), "Discard");
    p.send(format!("{{}}{}", get("/next")).as_bytes()).run();
    assert_eq!(p.statuses(), [406, 200]);
    assert!(
        p.text().contains("\"reason\":\"accept_header_missing\""),
        "{}",
        p.text()
    );
    assert_eq!(p.upstream_got.len(), 1);
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(fwd.starts_with("GET /next ") && !fwd.contains("POST"), "{fwd}");
    assert!(p.states.contains("Discard"), "{:?}", p.states);
    p
}

fn a_refused_body_reaches_no_upstream_and_the_connection_stays() -> Pump {
    let mut p = pump(&[], vec![answering(&["fine"])]);
    p.send(post("/j", "{\"a\":").as_bytes()).run();
    assert_eq!(p.statuses(), [400]);
    assert!(p.text().contains("malformed_json"), "{}", p.text());
    assert!(p.upstream_got.is_empty());
    p.send(post("/j", "[1]").as_bytes()).run();
    assert_eq!(p.statuses(), [400, 200]);
    p
}

fn expect_100_continue_before_the_body() -> Pump {
    let mut p = pump(&[], vec![answering(&["got it"])]);
    let head = format!(
        "POST /c HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n"
    );
    p.send(head.as_bytes()).run();
    // The interim answer goes out before any body byte, and nothing reaches the upstream yet.
    assert_eq!(p.statuses(), [100]);
    assert!(p.upstream_got.is_empty());
    assert_eq!(p.conn.state_name(), "Body");
    p.send(b"{\"k\":1}").run();
    assert_eq!(p.statuses(), [100, 200]);
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(!fwd.to_ascii_lowercase().contains("expect:"), "{fwd}");
    p
}

fn http10_keep_alive_is_kept_and_plain_http10_is_closed() -> Pump {
    let mut p = pump(&[], vec![answering(&["a", "b"])]);
    let req = |ka: &str| format!("GET /k HTTP/1.0\r\nHost: api\r\n{ACCEPT}{ka}\r\n");
    p.send(req("Connection: keep-alive\r\n").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert!(p.text().contains("Connection: keep-alive"), "{}", p.text());
    assert!(!p.shut_write && p.conn.state_name() == "Head");
    p.send(req("").as_bytes()).run();
    assert_eq!(p.statuses(), [200, 200]);
    // Without keep-alive the answer ends the connection: write side shut, lingering until the client closes.
    assert!(p.shut_write);
    assert_eq!(p.conn.state_name(), "Linger");
    p.client_fin = true;
    p.run();
    assert_eq!(p.closed, Some(false));
    p
}

fn chunked_body_is_forwarded_dechunked() -> Pump {
    let mut p = pump(&[], vec![answering(&["ok"])]);
    let wire = format!(
        "POST /ch HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n"
    );
    p.chunk = 5;
    p.send(wire.as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(
        fwd.contains("Content-Length: 5\r\n") && fwd.ends_with("\r\n\r\n[1,2]"),
        "{fwd}"
    );
    assert!(!fwd.to_ascii_lowercase().contains("transfer-encoding"), "{fwd}");
    p
}

fn header_timeout_answers_408_at_its_tick() -> Pump {
    let mut p = pump(&[], vec![answering(&["x"])]);
    p.send(b"GET /slow HTTP/1.1\r\nHo").run();
    let deadline = p.conn.deadline();
    assert_eq!(deadline, p.world.now + HEADER);
    // One tick before: nothing.
    p.advance(HEADER - Duration::from_millis(1));
    assert!(p.received.is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.statuses(), [408]);
    assert!(p.shut_write);
    p
}

fn body_timeout_answers_408() -> Pump {
    let mut p = pump(&[], vec![answering(&["x"])]);
    let wire = post("/b", "[1,2,3]");
    p.send(&wire.as_bytes()[..wire.len() - 3]).run();
    assert_eq!(p.conn.deadline(), p.world.now + BODY);
    p.expire();
    assert_eq!(p.statuses(), [408]);
    assert!(p.upstream_got.is_empty());
    p
}

fn idle_keep_alive_connection_closes_at_idle_timeout_without_answer() -> Pump {
    let mut p = get_forwarded();
    let n = p.received.len();
    assert_eq!(p.conn.deadline(), p.world.now + IDLE);
    p.expire();
    assert_eq!(p.closed, Some(false));
    assert_eq!(p.received.len(), n);
    p
}

fn upstream_connect_timeout_answers_504() -> Pump {
    let mut p = pump(&[], vec![Up::NeverConnects]);
    p.send(get("/t").as_bytes()).run();
    // Attached but not connected: the connect timeout runs.
    assert_eq!(p.actions.last(), Some(&portcullis::proxy::Action::AwaitUpstream));
    assert_eq!(p.conn.deadline(), p.world.now + CONNECT);
    p.advance(CONNECT - Duration::from_millis(1));
    assert!(p.received.is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.statuses(), [504]);
    p
}

fn upstream_response_timeout_answers_504_at_its_tick() -> Pump {
    let mut p = pump(&[], vec![Up::Silent { reused: false }]);
    p.send(get("/t").as_bytes()).run();
    assert_eq!(p.conn.state_name(), "Upstream");
    assert_eq!(p.conn.deadline(), p.world.now + UPSTREAM);
    p.advance(UPSTREAM - Duration::from_millis(1));
    assert!(p.received.is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.statuses(), [504]);
    assert_eq!(p.released, [(false, Some("timed out"))]);
    p
}

fn upstream_refused_answers_502() -> Pump {
    let mut p = pump(&[], vec![Up::Refuse]);
    p.send(get("/r").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert!(p.text().contains("upstream_unavailable"));
    // The connection stays for the next request.
    assert_eq!(p.conn.state_name(), "Head");
    p
}

/// A connect failure is retried (nothing was sent, so for any method) on a fresh connection (to another
/// server, the worker's choice), within --retries; then 502.
fn asynchronous_connect_failure_answers_502() -> Pump {
    let mut p = pump(&["--retries", "0"], vec![Up::ConnectFails]);
    p.send(post("/r", "{}").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(p.released, [(false, Some("connection refused or failed"))]);

    let mut p = pump(&[], vec![Up::ConnectFails, answering(&["second server"])]);
    p.send(post("/r", "{}").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert!(p.text().ends_with("second server"));
    assert_eq!(p.released[0], (false, Some("connection refused or failed")));

    let mut p = pump(&["--retries", "2"], vec![Up::ConnectFails]);
    p.send(get("/r").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(p.released, [(false, Some("connection refused or failed")); 3]);
    p
}

fn a_pooled_connection_closed_before_any_byte_is_retried_once_on_a_fresh_one() -> Pump {
    let mut p = pump(&[], vec![Up::CloseAtOnce { reused: true }, answering(&["second try"])]);
    p.send(get("/retry").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert!(p.text().ends_with("second try"));
    assert_eq!(
        p.upstream_got.len(),
        2,
        "sent twice: once on the pooled connection, once on a fresh one"
    );
    assert!(p
        .actions
        .contains(&portcullis::proxy::Action::OpenUpstream { fresh: true }));
    p
}

fn a_post_sent_on_a_pooled_connection_that_closed_is_not_retried() -> Pump {
    let mut p = pump(&[], vec![Up::CloseAtOnce { reused: true }, answering(&["never"])]);
    p.send(post("/pay", "{\"amount\":1}").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(
        p.upstream_got.len(),
        1,
        "a POST may have been processed: never sent twice"
    );
    p
}

/// A fresh connection closed before any response byte: an idempotent request is retried (its server is held
/// responsible: the release names the failure), a POST is not; with --retries 0, nothing is.
fn a_fresh_connection_closed_before_any_byte_is_not_retried() -> Pump {
    let mut p = pump(&[], vec![Up::CloseAtOnce { reused: false }, answering(&["retried"])]);
    p.send(get("/once").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert_eq!(p.upstream_got.len(), 2);
    assert_eq!(p.released[0], (false, Some("connection closed before answering")));

    let mut p = pump(&[], vec![Up::CloseAtOnce { reused: false }, answering(&["never"])]);
    p.send(post("/once", "{}").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(p.upstream_got.len(), 1);

    let mut p = pump(
        &["--retries", "0"],
        vec![Up::CloseAtOnce { reused: false }, answering(&["never"])],
    );
    p.send(get("/once").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(p.upstream_got.len(), 1);
    p
}

fn an_upstream_that_closes_mid_body_resets_the_client() -> Pump {
    let mut p = pump(
        &[],
        vec![Up::SendThenClose {
            reused: false,
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec(),
        }],
    );
    p.world.log.on = true;
    p.send(get("/cut").as_bytes()).run();
    assert_eq!(
        p.closed,
        Some(true),
        "a cut response ends in a reset, never a clean close"
    );
    assert!(p.text().ends_with("partial"));
    assert_eq!(p.world.log.lines.last().unwrap().1.as_deref(), Some("aborted"));
    p
}

fn a_malformed_upstream_head_answers_502() -> Pump {
    let mut p = pump(
        &[],
        vec![Up::SendThenClose {
            reused: false,
            bytes: b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec(),
        }],
    );
    p.send(get("/bad").as_bytes()).run();
    assert_eq!(p.statuses(), [502]);
    assert_eq!(p.released, [(false, Some("invalid response"))]);
    p
}

fn a_close_delimited_response_ends_at_the_upstreams_close() -> Pump {
    let mut p = pump(
        &[],
        vec![Up::SendThenClose {
            reused: false,
            bytes: b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec(),
        }],
    );
    p.send(get("/eof").as_bytes()).run();
    assert!(p.text().ends_with("until close"));
    assert_eq!(p.released, [(false, None)], "never pooled");
    assert!(
        p.shut_write,
        "the client's connection closes after a close-delimited body"
    );
    p
}

fn a_slow_reader_holds_the_relay_until_the_write_timeout() -> Pump {
    let mut p = pump(&[], vec![answering(&[&"b".repeat(1000)])]);
    p.client_stalled = true;
    // Bytes arrive 64 at a time: the body is still coming when the client stops reading.
    p.chunk = 64;
    p.send(get("/slow-reader").as_bytes()).run();
    assert_eq!(p.conn.state_name(), "Relay");
    assert_eq!(p.conn.deadline(), p.world.now + BODY);
    p.expire();
    assert_eq!(p.closed, Some(true));
    p
}

fn lingering_close_reads_until_the_client_stops() -> Pump {
    let mut p = pump(&["--max-body", "100"], vec![answering(&["never"])]);
    // Refused from its head (413), the body too large to drop: the connection closes after the answer, and
    // what the client still sends is read and dropped.
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    );
    p.send(head.as_bytes()).run();
    assert_eq!(p.statuses(), [413]);
    assert_eq!(p.conn.state_name(), "Linger");
    assert_eq!(p.conn.deadline(), p.world.now + LINGER_TIMEOUT);
    // Each read moves the deadline on, never past --linger-time.
    p.advance(Duration::from_secs(1));
    p.send(&[b'x'; 3000]).run();
    assert_eq!(p.conn.deadline(), p.world.now + LINGER_TIMEOUT);
    assert_eq!(p.conn.state_name(), "Linger");
    p.advance(LINGER_TIMEOUT);
    assert_eq!(p.closed, Some(false));
    assert!(p.upstream_got.is_empty());
    p
}

fn linger_ends_at_linger_time_however_the_client_sends() -> Pump {
    let mut p = pump(&["--max-body", "100"], vec![answering(&["never"])]);
    let head = format!(
        "POST /big HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n"
    );
    p.send(head.as_bytes()).run();
    for _ in 0..10 {
        if p.closed.is_some() {
            break;
        }
        p.advance(Duration::from_secs(1));
        p.send(&[b'y'; 100]).run();
    }
    assert_eq!(p.closed, Some(false));
    p
}

fn drain_closes_an_idle_connection_after_the_grace() -> Pump {
    let mut p = get_forwarded();
    p.world.draining = true;
    let close_at = p.world.now + Duration::from_secs(1);
    p.conn.drain(close_at);
    assert_eq!(p.conn.deadline(), close_at);
    p.expire();
    assert_eq!(p.closed, Some(false));
    p
}

fn a_request_arriving_while_draining_is_answered_with_close() -> Pump {
    let mut p = pump(&[], vec![answering(&["last"])]);
    p.world.draining = true;
    p.send(get("/late").as_bytes()).run();
    assert_eq!(p.statuses(), [200]);
    assert!(p.text().contains("Connection: close"), "{}", p.text());
    assert!(p.shut_write);
    assert_eq!(
        p.released,
        [(true, None)],
        "the worker, not the machine, declines to pool while draining"
    );
    p
}

fn shutdown_cuts_a_response_in_flight_with_a_reset() -> Pump {
    let mut p = pump(&[], vec![answering(&["0123456789"])]);
    p.client_stalled = true;
    p.send(get("/x").as_bytes()).run();
    assert!(p.conn.in_flight());
    let mut cx = p.world.cx();
    assert!(p.conn.abort(&mut cx), "reset");
    p
}

fn a_client_that_closes_mid_head_gets_no_answer() -> Pump {
    let mut p = pump(&[], vec![answering(&["x"])]);
    p.send(b"GET / HTTP/1.1\r\nHost: a").run();
    p.client_fin = true;
    p.run();
    assert_eq!(p.closed, Some(false));
    assert!(p.received.is_empty());
    p
}

fn a_framing_refusal_closes_after_the_answer() -> Pump {
    let mut p = pump(&[], vec![answering(&["x"])]);
    let smuggle = format!(
        "POST / HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    p.send(smuggle.as_bytes()).run();
    assert_eq!(p.statuses(), [400]);
    assert!(p.shut_write && p.upstream_got.is_empty());
    p
}

fn an_oversized_chunked_body_is_refused_413() -> Pump {
    let mut p = pump(&["--max-body", "10"], vec![answering(&["x"])]);
    let wire = format!(
        "POST /c HTTP/1.1\r\nHost: api\r\n{ACCEPT}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n"
    );
    p.send(wire.as_bytes()).run();
    p.send(&[b' '; 32]).run();
    assert_eq!(p.statuses(), [413]);
    assert!(p.upstream_got.is_empty());
    p
}

fn the_rate_limit_answers_429_with_retry_after() -> Pump {
    let mut p = pump(
        &["--rate", "1", "--burst", "1", "--ip-rate", "0"],
        vec![answering(&["a", "b"])],
    );
    let req = format!("GET /l HTTP/1.1\r\nHost: api\r\n{ACCEPT}Authorization: Bearer k\r\n\r\n");
    p.send(req.repeat(2).as_bytes()).run();
    assert_eq!(p.statuses(), [200, 429]);
    assert!(p.text().contains("Retry-After: "), "{}", p.text());
    assert_eq!(p.upstream_got.len(), 1);
    p
}

// ---- WebSocket tunnels ----

const HANDSHAKE: &str = "GET /chat HTTP/1.1\r\nHost: api\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const SWITCH: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn tunnel_pump(flags: &[&str], answer: &str, close_on_fin: bool) -> Pump {
    let mut all = vec!["--upgrade", "websocket"];
    all.extend_from_slice(flags);
    let mut p = pump(
        &all,
        vec![Up::Tunnel {
            answer: answer.as_bytes().to_vec(),
            close_on_fin,
        }],
    );
    p.world.log.on = true;
    p.send(HANDSHAKE.as_bytes()).run();
    p
}

/// The handshake (no Accept: the rule does not apply to it) is forwarded with `Connection: Upgrade` and
/// `Upgrade: websocket` and the client's `Sec-WebSocket-*` fields; the upstream's 101 is relayed and the
/// connection becomes a tunnel: bytes go both ways as they are. The client's end reaches the upstream,
/// the upstream's end the client, and then the connection closes, with one access-log line.
fn a_websocket_handshake_becomes_a_tunnel_until_both_ends() -> Pump {
    let mut p = tunnel_pump(&[], SWITCH, true);
    assert_eq!(p.statuses(), [101]);
    assert!(p.text().contains("Upgrade: websocket\r\n") && p.text().contains("Sec-WebSocket-Accept: "));
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(fwd.starts_with("GET /chat HTTP/1.1\r\n"), "{fwd}");
    assert!(fwd.contains("Connection: Upgrade\r\nUpgrade: websocket\r\n"), "{fwd}");
    assert!(fwd.contains("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), "{fwd}");
    assert!(!fwd.contains("X-Api-Version"), "{fwd}");
    assert_eq!(p.conn.state_name(), "Tunnel");
    assert_eq!(p.world.tunnels.count(), 1);
    let before = p.received.len();
    // Frames are bytes to the ingress: any bytes go through, in pieces.
    p.chunk = 3;
    p.send(b"\x81\x05hello\x82\x02\x00\xff").run();
    assert_eq!(&p.received[before..], b"\x81\x05hello\x82\x02\x00\xff");
    assert!(p.closed.is_none() && p.world.log.lines.is_empty());
    p.client_fin = true;
    p.run();
    assert!(p.upstream_shut && p.shut_write, "each end relayed");
    assert_eq!(p.closed, Some(false));
    assert_eq!(p.released, [(false, None)]);
    assert_eq!(p.world.tunnels.count(), 0);
    // One line when the tunnel ends: 101, the bytes each way (the heads and the frames).
    let (status, reason, bytes_in, bytes_out) = p.world.log.lines[0].clone();
    assert_eq!((status, reason), (101, None));
    assert_eq!(bytes_in, (HANDSHAKE.len() + 11) as u64);
    assert_eq!(bytes_out as usize, p.received.len());
    p
}

/// A tunnel with no byte either way closes at --tunnel-idle-timeout; one side's end starts
/// --tunnel-half-close-timeout.
fn an_idle_or_half_closed_tunnel_closes_at_its_timeout() -> Pump {
    let mut p = tunnel_pump(&["--tunnel-idle-timeout", "2m"], SWITCH, false);
    assert_eq!(p.conn.deadline() - p.world.now, Duration::from_secs(120));
    p.advance(Duration::from_secs(60));
    p.send(b"x").run();
    assert_eq!(
        p.conn.deadline() - p.world.now,
        Duration::from_secs(120),
        "bytes moved: the timer restarts"
    );
    p.expire();
    assert_eq!(p.closed, Some(false));
    assert_eq!(p.world.tunnels.count(), 0);

    let mut p = tunnel_pump(&["--tunnel-half-close-timeout", "7s"], SWITCH, false);
    p.client_fin = true;
    p.run();
    assert!(p.upstream_shut && p.closed.is_none());
    assert_eq!(p.conn.deadline() - p.world.now, Duration::from_secs(7));
    p.expire();
    assert_eq!(p.closed, Some(false));
    p
}

/// An upstream that answers the handshake with anything but 101 is relayed as an ordinary response, and
/// the connection stays HTTP; a 101 nobody asked for (tunnels off) is a bad upstream response.
fn a_refused_or_unasked_upgrade_stays_http() -> Pump {
    let p = tunnel_pump(&[], "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno", true);
    assert_eq!(p.statuses(), [403]);
    assert_eq!(p.conn.state_name(), "Head");
    assert!(p.closed.is_none());
    assert_eq!(p.world.tunnels.count(), 0);

    let mut p = pump(
        &[],
        vec![Up::Tunnel {
            answer: SWITCH.as_bytes().to_vec(),
            close_on_fin: true,
        }],
    );
    p.send(
        HANDSHAKE
            .replace("Host: api", "Host: api\r\nAccept: application/vnd.example.v1+json")
            .as_bytes(),
    )
    .run();
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(!fwd.to_ascii_lowercase().contains("upgrade"), "{fwd}");
    assert_eq!(p.statuses(), [502]);
    p
}

/// Past --max-tunnels a handshake gets 503, past --max-tunnels-per-user 429, both `too_many_tunnels`, and
/// nothing reaches the upstream.
fn too_many_tunnels_are_refused() -> Pump {
    let p = tunnel_pump(&["--max-tunnels-per-user", "0"], SWITCH, true);
    assert_eq!(p.statuses(), [429]);
    assert!(p.text().contains("\"reason\":\"too_many_tunnels\""), "{}", p.text());
    assert!(p.upstream_got.is_empty());
    let p = tunnel_pump(&["--max-tunnels", "0"], SWITCH, true);
    assert_eq!(p.statuses(), [503]);
    assert!(p.text().contains("\"reason\":\"too_many_tunnels\""), "{}", p.text());
    assert!(p.upstream_got.is_empty());
    p
}

type Scenario = (&'static str, fn() -> Pump);

const ALL: &[Scenario] = &[
    ("get_forwarded", get_forwarded),
    ("pipelined", pipelined_requests_are_answered_in_order),
    ("pipelining_after_refusal", pipelining_continues_after_a_refusal),
    (
        "refused_body",
        a_refused_body_reaches_no_upstream_and_the_connection_stays,
    ),
    ("continue", expect_100_continue_before_the_body),
    ("http10", http10_keep_alive_is_kept_and_plain_http10_is_closed),
    ("chunked", chunked_body_is_forwarded_dechunked),
    ("header_timeout", header_timeout_answers_408_at_its_tick),
    ("body_timeout", body_timeout_answers_408),
    (
        "idle_timeout",
        idle_keep_alive_connection_closes_at_idle_timeout_without_answer,
    ),
    ("connect_pending", upstream_connect_timeout_answers_504),
    ("upstream_timeout", upstream_response_timeout_answers_504_at_its_tick),
    ("refused", upstream_refused_answers_502),
    ("connect_fails", asynchronous_connect_failure_answers_502),
    (
        "retry",
        a_pooled_connection_closed_before_any_byte_is_retried_once_on_a_fresh_one,
    ),
    (
        "no_retry_post",
        a_post_sent_on_a_pooled_connection_that_closed_is_not_retried,
    ),
    (
        "no_retry_fresh",
        a_fresh_connection_closed_before_any_byte_is_not_retried,
    ),
    ("cut_mid_body", an_upstream_that_closes_mid_body_resets_the_client),
    ("bad_upstream_head", a_malformed_upstream_head_answers_502),
    (
        "close_delimited",
        a_close_delimited_response_ends_at_the_upstreams_close,
    ),
    ("slow_reader", a_slow_reader_holds_the_relay_until_the_write_timeout),
    ("linger", lingering_close_reads_until_the_client_stops),
    ("linger_time", linger_ends_at_linger_time_however_the_client_sends),
    ("drain_idle", drain_closes_an_idle_connection_after_the_grace),
    (
        "drain_request",
        a_request_arriving_while_draining_is_answered_with_close,
    ),
    ("shutdown_cut", shutdown_cuts_a_response_in_flight_with_a_reset),
    ("client_gone_mid_head", a_client_that_closes_mid_head_gets_no_answer),
    ("framing_refusal", a_framing_refusal_closes_after_the_answer),
    ("chunked_too_large", an_oversized_chunked_body_is_refused_413),
    ("rate_limit", the_rate_limit_answers_429_with_retry_after),
    ("tunnel", a_websocket_handshake_becomes_a_tunnel_until_both_ends),
    ("tunnel_timeouts", an_idle_or_half_closed_tunnel_closes_at_its_timeout),
    ("tunnel_refused", a_refused_or_unasked_upgrade_stays_http),
    ("too_many_tunnels", too_many_tunnels_are_refused),
];

macro_rules! tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            super::$name();
        }
    )*};
}

mod transitions {
    tests!(
        get_forwarded,
        pipelined_requests_are_answered_in_order,
        pipelining_continues_after_a_refusal,
        a_refused_body_reaches_no_upstream_and_the_connection_stays,
        expect_100_continue_before_the_body,
        http10_keep_alive_is_kept_and_plain_http10_is_closed,
        chunked_body_is_forwarded_dechunked,
        header_timeout_answers_408_at_its_tick,
        body_timeout_answers_408,
        idle_keep_alive_connection_closes_at_idle_timeout_without_answer,
        upstream_connect_timeout_answers_504,
        upstream_response_timeout_answers_504_at_its_tick,
        upstream_refused_answers_502,
        asynchronous_connect_failure_answers_502,
        a_pooled_connection_closed_before_any_byte_is_retried_once_on_a_fresh_one,
        a_post_sent_on_a_pooled_connection_that_closed_is_not_retried,
        a_fresh_connection_closed_before_any_byte_is_not_retried,
        an_upstream_that_closes_mid_body_resets_the_client,
        a_malformed_upstream_head_answers_502,
        a_close_delimited_response_ends_at_the_upstreams_close,
        a_slow_reader_holds_the_relay_until_the_write_timeout,
        lingering_close_reads_until_the_client_stops,
        linger_ends_at_linger_time_however_the_client_sends,
        drain_closes_an_idle_connection_after_the_grace,
        a_request_arriving_while_draining_is_answered_with_close,
        shutdown_cuts_a_response_in_flight_with_a_reset,
        a_client_that_closes_mid_head_gets_no_answer,
        a_framing_refusal_closes_after_the_answer,
        an_oversized_chunked_body_is_refused_413,
        the_rate_limit_answers_429_with_retry_after,
        a_websocket_handshake_becomes_a_tunnel_until_both_ends,
        an_idle_or_half_closed_tunnel_closes_at_its_timeout,
        a_refused_or_unasked_upgrade_stays_http,
        too_many_tunnels_are_refused,
    );
}

/// Together the transition tests reach every state and every kind of action (the listing is printed).
#[test]
fn every_state_and_action_kind_is_reached() {
    let (mut states, mut actions) = (BTreeSet::new(), BTreeSet::new());
    for (name, f) in ALL {
        let p = f();
        println!("{name}: states {:?}; actions {:?}", p.states, p.action_kinds());
        states.extend(p.states.iter().copied());
        actions.extend(p.action_kinds());
        if p.closed.is_some() {
            states.insert("Closed");
        }
    }
    let want_states = [
        "Head", "Body", "Upstream", "Relay", "Flush", "Discard", "Linger", "Tunnel", "Closed",
    ];
    let want_actions = [
        "ReadClient",
        "WriteClient",
        "OpenUpstream",
        "OpenUpstream(fresh)",
        "AwaitUpstream",
        "WriteUpstream",
        "ReadUpstream",
        "ReleaseUpstream(pool)",
        "ReleaseUpstream(close)",
        "ShutdownWrite",
        "ShutdownUpstreamWrite",
        "Close",
        "Close(reset)",
    ];
    let missing_states: Vec<_> = want_states.iter().filter(|s| !states.contains(*s)).collect();
    let missing_actions: Vec<_> = want_actions.iter().filter(|a| !actions.contains(*a)).collect();
    assert!(missing_states.is_empty(), "states never reached: {missing_states:?}");
    assert!(
        missing_actions.is_empty(),
        "actions never asked for: {missing_actions:?}"
    );
}

#[path = "../fuzz/checks/machine.rs"]
mod fuzz_check;

/// The machine fuzz target's checks (fuzz/checks/machine.rs) over the llhttp corpus's requests and the
/// transition tests' streams, with every upstream behaviour and several read sizes.
#[test]
fn fuzz_invariants_hold_on_corpus_inputs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpora/llhttp/llhttp-request-cases.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(b) = v["raw_b64"].as_str() {
            inputs.push(pump::b64(b));
        }
    }
    inputs.push(format!("{}{}{}", get("/a"), post("/b", "[1]"), get("/c")).into_bytes());
    let mut n = 0;
    for raw in &inputs {
        for chunk in [0u8, 1, 7] {
            for plan in 0..4u8 {
                let mut data = vec![chunk, plan];
                data.extend_from_slice(raw);
                fuzz_check::check(&data);
                n += 1;
            }
        }
    }
    assert!(n > 1000, "{n}");
}

/// With `--request-id-header`: a forwarded request, a refusal decided from the head and a header timeout
/// (refused before any head was accepted) each get their own id, in a field and in the refusals' bodies; the
/// forwarded request's id is the one the upstream received.
#[test]
fn request_ids_on_forwarded_refused_and_timed_out_requests() {
    let mut p = pump(&["--request-id-header", "X-Request-Id"], vec![answering(&["hello"])]);
    let mut wire = get("/a");
    wire += "GET /no-accept HTTP/1.1\r\nHost: api\r\nX-Request-Id: forged\r\n\r\n";
    wire += "GET /slow HTTP/1.1\r\nHo";
    p.send(wire.as_bytes()).run();
    p.expire();
    assert_eq!(p.statuses(), [200, 406, 408]);
    let text = p.text();
    let ids: Vec<&str> = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("X-Request-Id: "))
        .collect();
    assert_eq!(ids.len(), 3, "{text}");
    for id in &ids {
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");
    for id in &ids[1..] {
        assert!(text.contains(&format!(",\"request_id\":\"{id}\"}}\n")), "{text}");
    }
    let fwd = String::from_utf8(p.upstream_got[0].clone()).unwrap();
    assert!(fwd.contains(&format!("\r\nX-Request-Id: {}\r\n", ids[0])), "{fwd}");
}
