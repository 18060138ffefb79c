//! Regression tests of the second adversarial review (docs/security.md, "Hardening, second review"): each
//! reproduces a finding against the real binary and checks the fix. Upstream-side findings (response-queue
//! poisoning, underscores, resets at shutdown, 204 and trailers) are in tests/upstream_hardening.rs.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::*;

fn get_as(auth: &str) -> Vec<u8> {
    format!("GET /u HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: {auth}\r\n\r\n").into_bytes()
}

/// Sends `reqs` pipelined in one write and reads one answer each.
fn pipelined(p: &Proxy, reqs: &[Vec<u8>]) -> Vec<Response> {
    let mut c = p.connect();
    c.send(&reqs.concat());
    (0..reqs.len())
        .map(|i| c.response().unwrap_or_else(|| panic!("no answer {i}")))
        .collect()
}

fn reason(r: &Response) -> String {
    r.json()["reason"].as_str().unwrap_or("").to_string()
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// --- A1: invented credentials ------------------------------------------------------------------------------

#[test]
fn invented_credentials_are_held_by_the_per_address_limit() {
    // The defaults: 10 x --rate per second, 10 x --burst back to back.
    let cfg = portcullis::config::Config::parse_from(["portcullis", "--rate", "7", "--burst", "3"]).unwrap();
    let ip = cfg.rate.unwrap().ip.unwrap();
    assert_eq!((ip.rate, ip.burst), (70, 30));
    // Every request a new invented user, all from one address: the user limit never speaks, the per-address
    // backstop does (here 20 back to back, then 1 per second: the test never waits a second).
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &["--rate", "1", "--burst", "2", "--ip-rate", "1", "--ip-burst", "20"],
    );
    let reqs: Vec<Vec<u8>> = (0..40).map(|i| get_as(&format!("x{i}"))).collect();
    let rs = pipelined(&p, &reqs);
    let ok = rs.iter().filter(|r| r.status == 200).count();
    assert!(rs[..20].iter().all(|r| r.status == 200), "the burst of 20 is served");
    assert!((20..=22).contains(&ok), "{ok} of 40 invented users served");
    let refused: Vec<&Response> = rs.iter().filter(|r| r.status == 429).collect();
    assert_eq!(refused.len(), 40 - ok);
    for r in refused {
        assert_eq!(reason(r), "ip_rate_limited");
        assert!(r.header("retry-after").is_some());
        assert_eq!(r.header("ratelimit-policy").as_deref(), Some("\"ip\";q=1;w=1"));
        assert!(
            r.header("connection").is_none(),
            "a policy refusal keeps the connection"
        );
    }
    assert_eq!(up.requests().len(), ok);
}

#[test]
fn the_backstop_spares_exempt_addresses_tier_users_and_observe_mode_forwards() {
    let up = Upstream::ok("ok");
    let invented: Vec<Vec<u8>> = (0..10).map(|i| get_as(&format!("y{i}"))).collect();
    // An exempt block: every invented user served.
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "1",
            "--ip-rate",
            "1",
            "--ip-burst",
            "2",
            "--ip-rate-exempt",
            "10.0.0.0/8,127.0.0.0/8",
        ],
    );
    assert!(pipelined(&p, &invented).iter().all(|r| r.status == 200));
    drop(p);
    // A listed (tier) user does not spend the address's budget; unlisted users then get its 2.
    let dir = temp_dir("backstop-tiers");
    let limits = dir.join("limits.toml");
    std::fs::write(&limits, "[tiers.gold]\nrate = 100\nusers = [\"Bearer gold\"]\n").unwrap();
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "1",
            "--ip-rate",
            "1",
            "--ip-burst",
            "2",
            "--limits",
            limits.to_str().unwrap(),
        ],
    );
    let gold: Vec<Vec<u8>> = (0..10).map(|_| get_as("Bearer gold")).collect();
    assert!(pipelined(&p, &gold).iter().all(|r| r.status == 200));
    let statuses: Vec<u16> = pipelined(&p, &invented[..4]).iter().map(|r| r.status).collect();
    assert_eq!(statuses[..2], [200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    // Observe: forwarded, and the upstream is told what would have been refused.
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "1",
            "--ip-rate",
            "1",
            "--ip-burst",
            "1",
            "--rate-rule",
            "observe",
            "--observe-header",
            "X-Would",
        ],
    );
    let before = up.requests().len();
    assert!(pipelined(&p, &invented[..3]).iter().all(|r| r.status == 200));
    let seen: Vec<Option<String>> = up.requests()[before..].iter().map(|r| r.header("x-would")).collect();
    assert_eq!(seen[0], None);
    assert!(
        seen[1..].iter().any(|w| w.as_deref() == Some("ip_rate_limited")),
        "{seen:?}"
    );
    // Keyed on the address, the user limit is the per-address limit: no second one.
    drop(p);
    let p = Proxy::with_upstream(
        up.addr,
        &["--rate", "3", "--user-key", "ip", "--ip-rate", "1", "--ip-burst", "1"],
    );
    let s: Vec<String> = pipelined(&p, &invented[..4])
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.status,
                if r.status == 429 { reason(r) } else { String::new() }
            )
        })
        .collect();
    assert_eq!(s[..3], ["200 ", "200 ", "200 "]);
    assert_eq!(s[3], "429 rate_limited");
}

// --- A2: one token, many spellings -------------------------------------------------------------------------

#[test]
fn one_credential_in_many_spellings_is_one_user() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--rate", "1", "--burst", "2", "--ip-rate", "0"]);
    let spellings = [
        "Bearer tok",
        "bearer tok",
        "BEARER tok",
        "Bearer  tok",
        "bEaReR tok",
        "Bearer tok",
    ];
    let reqs: Vec<Vec<u8>> = spellings.iter().map(|s| get_as(s)).collect();
    let statuses: Vec<u16> = pipelined(&p, &reqs).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    // Basic: the same user:password, padded, unpadded, with unused low bits set.
    let basics = ["Basic YWI6Yw==", "basic YWI6Yw", "BASIC   YWI6Yx=="];
    let reqs: Vec<Vec<u8>> = basics.iter().map(|s| get_as(s)).collect();
    let statuses: Vec<u16> = pipelined(&p, &reqs).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    // The upstream gets the value as the client sent it.
    let auths: Vec<String> = up
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap())
        .collect();
    assert_eq!(auths, ["Bearer tok", "bearer tok", "Basic YWI6Yw==", "basic YWI6Yw"]);
    // Undecodable Basic credentials are refused.
    let mut c = p.connect();
    let r = c.roundtrip(&get_as("Basic not*base64"));
    assert_eq!((r.status, reason(&r).as_str()), (400, "malformed_authorization"));
    assert_eq!(up.requests().len(), 4);
}

#[test]
fn tiers_match_any_spelling_of_a_listed_credential() {
    let dir = temp_dir("tiers-canonical");
    let limits = dir.join("limits.toml");
    std::fs::write(
        &limits,
        format!(
            "[tiers.gold]\nrate = 100\nusers = [\"bearer listed\", \"sha256:{}\"]\n",
            sha256_hex("Bearer x")
        ),
    )
    .unwrap();
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "1",
            "--burst",
            "1",
            "--ip-rate",
            "0",
            "--limits",
            limits.to_str().unwrap(),
        ],
    );
    for auth in ["BEARER   x", "Bearer LISTED", "Bearer listed"] {
        let reqs: Vec<Vec<u8>> = (0..5).map(|_| get_as(auth)).collect();
        let statuses: Vec<u16> = pipelined(&p, &reqs).iter().map(|r| r.status).collect();
        // "Bearer LISTED" is another credential (credentials are case-sensitive): the default tier.
        let want = if auth == "Bearer LISTED" {
            [200, 429, 429, 429, 429]
        } else {
            [200; 5]
        };
        assert_eq!(statuses, want, "{auth}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// --- C and D: keyed ids -------------------------------------------------------------------------------------

/// Starts the binary with `args` and returns its exit code and stderr; a process still running after
/// `IO_TIMEOUT` (it accepted the configuration) is killed and reported as -1.
fn start_fails(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &dead_port().to_string()])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + IO_TIMEOUT;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(10)); // polling the child's exit, the signal here
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

#[test]
fn the_fleet_needs_a_secret_of_32_bytes() {
    let (code, err) = start_fails(&["--redis-url", "redis://127.0.0.1:1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--secret-file"), "{err}");
    let short = SecretFile::new("short");
    std::fs::write(&short.path, "too short\n").unwrap();
    let (code, err) = start_fails(&["--secret-file", &short.path_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at least 32"), "{err}");
    assert!(!err.contains("too short"), "the secret is never printed: {err}");
}

/// The `user` field of the access log line of one request with `Authorization: Bearer alice`.
fn logged_user(extra: &[&str]) -> String {
    let dir = temp_dir("user-id");
    let path = dir.join("access.log");
    let up = Upstream::ok("ok");
    let mut args = vec!["--rate", "10", "--access-log", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut p = Proxy::with_upstream(up.addr, &args);
    p.connect().roundtrip(&get_as("Bearer alice"));
    p.signal("TERM");
    assert!(p.child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    line["user"].as_str().unwrap().to_string()
}

#[test]
fn user_ids_are_keyed_by_the_secret_and_stable_across_restarts() {
    let (s1, s2) = (SecretFile::new("s1"), SecretFile::new("s2"));
    let a = logged_user(&["--secret-file", &s1.path_str()]);
    assert_eq!(
        a,
        logged_user(&["--secret-file", &s1.path_str()]),
        "same secret, same id after a restart"
    );
    assert_ne!(
        a,
        logged_user(&["--secret-file", &s2.path_str()]),
        "another secret, another id"
    );
    // Without a secret: a key of the process's own (not computable offline, not stable).
    assert_ne!(logged_user(&[]), logged_user(&[]));
    // Not the id an unkeyed hash of the credential gives (the fixed-key SipHash ids of before).
    use std::hash::Hasher;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x706f_7274_6375_6c6c, 0x6973_2d66_6c65_6574);
    h.write_u8(1);
    h.write(b"Bearer alice");
    assert_ne!(a, format!("{:016x}", h.finish()));
}

// --- E: a trailing pipelined byte keeps no grown buffer -----------------------------------------------------

/// RSS growth (KiB) of a proxy holding 30 connections that each sent a 960 KiB chunked body (then `trailer`)
/// and do not read the 4 MiB answer (the relay waits for them).
fn held_by_chunked_bodies(trailer: &[u8]) -> u64 {
    let big = "x".repeat(4 << 20);
    let up = Upstream::start(move |_| Action::Respond(response(200, &big)));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    // Freed large buffers go back to the system at once, so RSS shows what is held.
    cmd.env("MALLOC_MMAP_THRESHOLD_", "131072");
    let p = Proxy::start_with(
        cmd,
        &[
            "--upstream",
            &up.addr.to_string(),
            "--workers",
            "1",
            "--rate",
            "0",
            "--json-methods",
            "",
        ],
    );
    let mut warm = p.connect();
    assert_eq!(
        warm.roundtrip(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
            .status,
        200
    );
    let before = rss_kib(p.child.id());
    let chunk = [b"10000\r\n".as_slice(), &[b'x'; 0x10000], b"\r\n"].concat();
    let mut body = b"POST /up HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..15 {
        body.extend_from_slice(&chunk);
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body.extend_from_slice(trailer);
    let cs: Vec<Client> = (0..30)
        .map(|_| {
            let mut c = p.connect();
            c.send(&body);
            c
        })
        .collect();
    // Every body has been forwarded (the upstream holds all 30 requests) and every answer has started (each
    // client has bytes of it queued).
    let until = std::time::Instant::now() + IO_TIMEOUT;
    while up.requests().len() < 31
        || cs
            .iter()
            .any(|c| rx_queued(c.s.local_addr().unwrap(), p.addr).unwrap_or(0) == 0)
    {
        assert!(
            std::time::Instant::now() < until,
            "bodies not forwarded, or answers not started"
        );
        std::thread::sleep(Duration::from_millis(10)); // polling the recorder and the kernel: the signals here
    }
    let grown = rss_kib(p.child.id()).saturating_sub(before);
    drop(cs);
    grown
}

#[test]
fn a_trailing_pipelined_byte_keeps_no_body_sized_buffer() {
    let plain = held_by_chunked_bodies(b"");
    let trailing = held_by_chunked_bodies(b"G");
    eprintln!("30 connections hold {plain} KiB, {trailing} KiB with a trailing byte");
    // Before the fix: ~1 MiB more per connection (30 MiB here) with the trailing byte.
    assert!(
        trailing <= 2 * plain.max(2048),
        "with a trailing byte {trailing} KiB, without {plain} KiB"
    );
}

// --- F: JSON is UTF-8 and not encoded -----------------------------------------------------------------------

fn post(ct: &str, extra: &str) -> Vec<u8> {
    format!("POST /j HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: {ct}\r\n{extra}Content-Length: 2\r\n\r\n{{}}")
        .into_bytes()
}

#[test]
fn json_charsets_other_than_utf8_and_content_codings_are_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    let mut c = p.connect();
    for ct in [
        "application/json; charset=utf-7",
        "application/json;charset=UTF-16LE",
        "application/json; charset=\"latin1\"",
    ] {
        let r = c.roundtrip(&post(ct, ""));
        assert_eq!((r.status, reason(&r).as_str()), (415, "content_type_not_json"), "{ct}");
    }
    for ct in [
        "application/json; charset=utf-8",
        "application/json; charset=\"UTF-8\"",
        "application/json",
    ] {
        assert_eq!(c.roundtrip(&post(ct, "")).status, 200, "{ct}");
    }
    // A coding the ingress does not decode (gzip and deflate are: tests/checks.rs).
    let r = c.roundtrip(&post("application/json", "Content-Encoding: br\r\n"));
    assert_eq!((r.status, reason(&r).as_str()), (415, "content_encoding_not_supported"));
    assert_eq!(r.header("accept-encoding").as_deref(), Some("gzip, deflate, identity"));
    assert_eq!(
        c.roundtrip(&post("application/json", "Content-Encoding: identity\r\n"))
            .status,
        200
    );
    assert_eq!(up.requests().len(), 4);
    // The Content-Type rule's mode applies to both.
    let p = Proxy::with_upstream(up.addr, &["--content-type-rule", "observe"]);
    let mut c = p.connect();
    assert_eq!(
        c.roundtrip(&post("application/json", "Content-Encoding: br\r\n"))
            .status,
        200
    );
    assert_eq!(c.roundtrip(&post("application/json; charset=utf-16", "")).status, 200);
}

// --- J: X-Forwarded-For hops with ports ---------------------------------------------------------------------

#[test]
fn forwarded_for_hops_with_ports_are_addresses_and_garbage_is_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "1",
            "--burst",
            "1",
            "--user-key",
            "ip",
            "--trust-forwarded-for",
            "1",
        ],
    );
    let from =
        |hop: &str| format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-For: {hop}\r\n\r\n").into_bytes();
    let statuses: Vec<u16> = pipelined(
        &p,
        &[
            from("203.0.113.7:1111"),
            from("203.0.113.7:2222"),
            from("[2001:db8::1]:443"),
            from("2001:db8::1"),
        ],
    )
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(statuses, [200, 429, 200, 429], "one address, whatever its port");
    let mut c = p.connect();
    let r = c.roundtrip(&from("unknown"));
    assert_eq!((r.status, reason(&r).as_str()), (400, "invalid_forwarded_for"));
    assert_eq!(up.requests().len(), 2);
}

// --- K: Host and request-target -----------------------------------------------------------------------------

#[test]
fn invalid_hosts_and_targets_are_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    for (line, host, want) in [
        ("GET /", "bad host", "invalid_host"),
        ("GET /", "", "invalid_host"),
        ("GET /", "a b@c/d", "invalid_host"),
        ("GET /", "evil.example/x", "invalid_host"),
        ("GET http://other.example/", "api.example", "invalid_host"),
        ("GET http://user@api.example/", "api.example", "invalid_target"),
        ("GET *", "api.example", "invalid_target"),
        ("GET api.example:443", "api.example", "invalid_target"),
        ("GET /a#frag", "api.example", "invalid_target"),
    ] {
        let mut c = p.connect();
        let r = c.roundtrip(format!("{line} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n").as_bytes());
        assert_eq!((r.status, reason(&r)), (400, want.to_string()), "{line} / Host: {host}");
    }
    assert_eq!(up.requests().len(), 0);
    let mut c = p.connect();
    for (line, host) in [
        ("GET http://API.example:8080/x", "api.example:8080"),
        ("OPTIONS *", "api.example"),
        ("GET /", "[2001:db8::1]:8443"),
    ] {
        let r = c.roundtrip(format!("{line} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200, "{line} / Host: {host}");
    }
}

// --- L: Connection naming a checked field -------------------------------------------------------------------

#[test]
fn connection_naming_a_checked_field_is_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    for (conn, req) in [
        (
            "Content-Type, Accept",
            post("application/json", "Connection: Content-Type, Accept\r\n"),
        ),
        (
            "Content-Encoding",
            post("application/json", "Connection: content-encoding\r\n"),
        ),
        (
            "Accept",
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: keep-alive, Accept\r\n\r\n".to_vec(),
        ),
    ] {
        let mut c = p.connect();
        let r = c.roundtrip(&req);
        assert_eq!(
            (r.status, reason(&r).as_str()),
            (400, "invalid_connection_header"),
            "{conn}"
        );
        assert!(c.closed());
    }
    assert_eq!(up.requests().len(), 0);
    // Naming a field no check reads is fine: it is removed as hop-by-hop.
    let mut c = p.connect();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: X-Trace\r\nX-Trace: 1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(up.requests()[0].header("x-trace").is_none());
}

// --- M: HTTP/1.0 keep-alive refusals ------------------------------------------------------------------------

#[test]
fn refusals_to_an_http10_keep_alive_client_say_keep_alive() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    let mut c = p.connect();
    let r = c.roundtrip(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!((r.status, reason(&r).as_str()), (406, "accept_header_missing"));
    assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    // And it is kept: the next request is answered on the same connection.
    let r = c.roundtrip(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n");
    assert_eq!(r.status, 200);
}

// --- The admin listener and the access log ------------------------------------------------------------------

fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == name)
        .count()
}

#[test]
fn the_admin_listener_serves_at_most_16_connections_at_once() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--admin", "127.0.0.1:0"]);
    let admin = p.admin_addr();
    // 24 connections that send nothing (each served one holds a thread until its request time, 5 s, runs out).
    let idle: Vec<TcpStream> = (0..24).map(|_| TcpStream::connect(admin).unwrap()).collect();
    // A probe is still answered (after the idle ones time out, at the latest).
    let (status, _) = p.admin_get("/healthz");
    assert_eq!(status, 200);
    // The set of connection threads is fixed: never more, whatever the load.
    let n = threads_named(p.child.id(), "admin-conn");
    assert_eq!(n, 16, "{n} admin connection threads");
    drop(idle);
}

#[test]
fn a_stalled_access_log_never_stalls_the_workers() {
    let dir = temp_dir("stalled-log");
    let fifo = dir.join("access.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A reader that opens the pipe and never reads: the writer blocks once the pipe (64 KiB) is full.
    let f2 = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::File::open(f2).unwrap());
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &["--access-log", fifo.to_str().unwrap(), "--admin", "127.0.0.1:0"],
    );
    let mut pipe = reader.join().unwrap();
    // ~2 000 requests of ~250 bytes of log each: far more than the pipe and the writer's queue hold. Each one
    // is answered (the test's read timeout fails a stalled worker).
    let mut c = p.connect();
    let long = format!("/{}", "x".repeat(120));
    for i in 0..2_000 {
        let r = c.roundtrip(format!("GET {long}?{i} HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").as_bytes());
        assert_eq!(r.status, 200);
    }
    // Lines past what the queue holds were dropped and counted (the buffers are handed over at least once a
    // second).
    let until = std::time::Instant::now() + IO_TIMEOUT;
    while p.metric("portcullis_access_log_dropped_lines_total").unwrap_or(0.0) == 0.0 {
        assert!(std::time::Instant::now() < until, "no dropped lines counted");
        std::thread::sleep(Duration::from_millis(50)); // polling the metric, the readiness signal here
    }
    // What was written is whole lines.
    let mut head = vec![0u8; 32 * 1024];
    let n = pipe.read(&mut head).unwrap();
    let text = String::from_utf8_lossy(&head[..n]);
    let first = text.lines().next().unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "{first}");
    drop(p);
    drop(pipe);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn in_observe_mode_a_bad_key_is_observed_not_refused() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &["--rate", "1", "--rate-rule", "observe", "--observe-header", "X-Would"],
    );
    let mut c = p.connect();
    assert_eq!(c.roundtrip(&get_as("Basic !!")).status, 200);
    let r = c.roundtrip(
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: Authorization\r\nAuthorization: k\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let would: Vec<Option<String>> = up.requests().iter().map(|r| r.header("x-would")).collect();
    assert_eq!(would[0].as_deref(), Some("malformed_authorization"));
    // Flags that cannot work are refused at start.
    let (code, err) = start_fails(&["--rate", "0", "--ip-rate", "5"]);
    assert_eq!(code, 2, "{err}");
    let (code, err) = start_fails(&["--user-key", "header:x_api_key"]);
    assert!(code == 2 && err.contains("x-api-key"), "{code} {err}");
}
