//! The binary as an operator meets it: checks that check, errors that name their source, signals as nginx
//! users expect them (USR1 reopens the log, QUIT drains), a drain delay, exit codes, admin HEAD.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Runs the binary with `args` and `env` to completion (for configurations it refuses or checks).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn errors_name_their_source_and_checks_check() {
    let up = dead_port().to_string();
    // Booleans from the environment take 1/0 as well as true/false.
    let (code, out, err) = run(
        &["--check-config", "--upstream", &up],
        &[("PORTCULLIS_RATELIMIT_HEADERS", "1")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ratelimit-headers = true"), "{out}");
    // A bad value from the environment names the variable.
    let (code, _, err) = run(&["--check-config"], &[("PORTCULLIS_RATE", "ten")]);
    assert_eq!(code, 1);
    assert!(err.contains("PORTCULLIS_RATE"), "{err}");
    // What nginx users type gets a hint.
    let (code, _, err) = run(&["--check-config", "--upstream", "http://127.0.0.1:3000/"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--upstream 127.0.0.1:3000"), "{err}");
    // --check-config reads the limits file as a start would.
    let dir = temp_dir("check-limits");
    let limits = dir.join("limits.toml");
    std::fs::write(&limits, "[tiers.gold]\nrate = \"fast\"\n").unwrap();
    let l = limits.to_str().unwrap();
    let (code, _, err) = run(&["--check-config", "--upstream", &up, "--limits", l], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--limits"), "{err}");
    let (code, _, err) = run(
        &[
            "--check-config",
            "--upstream",
            &up,
            "--limits",
            "/nonexistent/limits.toml",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    // ... and warns about an upstream it cannot reach, without failing.
    let (code, _, err) = run(&["--check-config", "--upstream", &up], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not reachable"), "{err}");
    // Start-up errors exit 2 and name the flag.
    let (code, _, err) = run(&["--listen", "192.0.2.1:8080", "--upstream", &up], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--listen 192.0.2.1:8080"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = busy.local_addr().unwrap().to_string();
    let (code, _, err) = run(&["--listen", "127.0.0.1:0", "--upstream", &up, "--admin", &admin], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("--admin {admin}")), "{err}");
}

#[test]
fn admin_answers_head_and_says_allow() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--admin", "127.0.0.1:0"]);
    let mut c = Client::connect(p.admin_addr());
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response_to(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length").as_deref(), Some("3"));
    assert!(c.closed(), "no body after the head");
    let mut c = Client::connect(p.admin_addr());
    let r = c.roundtrip(b"POST /readyz HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, HEAD"));
}

#[test]
fn empty_media_type_parameters_are_allowed() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &[]);
    let mut c = p.connect();
    let r = c.roundtrip(
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: application/json;\r\nContent-Type: application/json;\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn usr1_reopens_the_access_log_after_a_rotation() {
    let dir = temp_dir("rotate");
    let log = dir.join("access.log");
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--access-log", log.to_str().unwrap()]);
    let mut c = p.connect();
    let wait_for = |path: &std::path::Path, needle: &str| {
        let until = Instant::now() + IO_TIMEOUT;
        while !std::fs::read_to_string(path).unwrap_or_default().contains(needle) {
            assert!(Instant::now() < until, "{needle} never reached {}", path.display());
            std::thread::sleep(Duration::from_millis(20)); // polling the file (written at least once a second)
        }
    };
    c.roundtrip(b"GET /before HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    wait_for(&log, "/before");
    std::fs::rename(&log, dir.join("access.log.1")).unwrap();
    p.signal("USR1");
    let until = Instant::now() + IO_TIMEOUT;
    // The signal is handled asynchronously: requests until the new file holds one of them.
    let mut i = 0;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("/after") {
        assert!(Instant::now() < until, "no new access.log after USR1");
        c.roundtrip(format!("GET /after{i} HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").as_bytes());
        i += 1;
        std::thread::sleep(Duration::from_millis(50)); // pacing, bounded by the deadline above
    }
    let old = std::fs::read_to_string(dir.join("access.log.1")).unwrap();
    assert!(old.contains("/before"));
    assert!(p.child.id() > 0 && c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").status == 200);
}

fn wait_exit(p: &mut Proxy) -> i32 {
    let until = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < until, "did not exit");
        std::thread::sleep(Duration::from_millis(10)); // polling the child's exit
    }
}

#[test]
fn sigquit_drains_like_sigterm() {
    let up = Upstream::ok("ok");
    let mut p = Proxy::with_upstream(up.addr, &[]);
    assert_eq!(p.connect().roundtrip(&get("/")).status, 200);
    p.signal("QUIT");
    assert_eq!(wait_exit(&mut p), 0);
}

#[test]
fn readyz_turns_503_for_the_drain_delay_while_requests_are_still_served() {
    let up = Upstream::ok("ok");
    let mut p = Proxy::with_upstream(up.addr, &["--admin", "127.0.0.1:0", "--drain-delay", "3s"]);
    assert_eq!(p.admin_get("/readyz").0, 200);
    p.signal("TERM");
    let until = Instant::now() + IO_TIMEOUT;
    while p.admin_get("/readyz").0 != 503 {
        assert!(Instant::now() < until, "/readyz never turned 503");
    }
    // Still accepting: a new connection is served.
    assert_eq!(p.connect().roundtrip(&get("/")).status, 200);
    assert_eq!(wait_exit(&mut p), 0);
}

#[test]
fn requests_cut_at_the_shutdown_timeout_exit_3() {
    let up = Upstream::start(|_| Action::Silent);
    let mut p = Proxy::with_upstream(up.addr, &["--shutdown-timeout", "200ms", "--upstream-timeout", "60s"]);
    let mut c = p.connect();
    c.send(&get("/slow"));
    let until = Instant::now() + IO_TIMEOUT;
    while up.requests().is_empty() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10)); // polling the recorder
    }
    p.signal("TERM");
    assert_eq!(wait_exit(&mut p), 3);
    let (_, log) = p.exit_log();
    assert!(log.contains("1 requests still in flight"), "{log}");
    drop(c); // held open until the process exited, so that the request stayed in flight
}

#[test]
fn refusals_name_the_limit_they_enforce() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--max-body",
            "1000",
            "--max-json-depth",
            "3",
            "--rate",
            "1",
            "--burst",
            "1",
            "--ip-rate",
            "0",
            "--contact",
            "mailto:api@example.com",
        ],
    );
    let mut c = p.connect();
    let r = c.roundtrip(
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("at most 1000 bytes"),
        "{:?}",
        r.json()
    );
    let mut c = p.connect();
    let deep = b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nAuthorization: Bearer d\r\nContent-Length: 8\r\n\r\n[[[[]]]]";
    let r = c.roundtrip(deep);
    assert_eq!(r.status, 400);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("at most 3 levels"),
        "{:?}",
        r.json()
    );
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer d\r\n\r\n");
    assert_eq!(r.status, 429);
    assert!(
        r.json()["detail"].as_str().unwrap().contains("mailto:api@example.com"),
        "{:?}",
        r.json()
    );
}

#[test]
fn upstream_failures_are_logged_at_most_once_a_second_and_debug_says_why() {
    let dead = dead_port().to_string();
    let p = Proxy::start(&[
        "--upstream",
        &dead,
        "--workers",
        "1",
        "--rate",
        "0",
        "--log-level",
        "debug",
    ]);
    let mut c = p.connect();
    for _ in 0..20 {
        assert_eq!(c.roundtrip(&get("/")).status, 502);
    }
    assert_eq!(c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, 406);
    p.wait_log("406 accept_header_missing");
    let log = p.log.lock().unwrap().clone();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("warn: upstream")).collect();
    // 20 failures within a second or two: one line each second at most, with the count.
    assert!((1..=2).contains(&warns.len()), "{log}");
    assert!(warns[0].contains("connection refused or failed"), "{log}");
    assert!(log.contains("502 upstream_unavailable"), "{log}");
    // The whole configuration is at debug; the summary line at info.
    assert!(
        log.contains("effective configuration") && log.contains("info: portcullis "),
        "{log}"
    );
}

#[test]
fn the_access_log_says_who_and_how_long_the_upstream_took() {
    let dir = temp_dir("log-fields");
    let path = dir.join("access.log");
    let up = Upstream::ok("ok");
    let mut p = Proxy::with_upstream(
        up.addr,
        &[
            "--access-log",
            path.to_str().unwrap(),
            "--rate",
            "10",
            "--trust-forwarded-for",
            "1",
        ],
    );
    let mut c = p.connect();
    let r = c.roundtrip(
        b"GET /a HTTP/1.1\r\nHost: api.example\r\nUser-Agent: curl/8.0 \"q\"\r\nAccept: */*\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(c.roundtrip(b"GET /b HTTP/1.1\r\nHost: api.example\r\n\r\n").status, 406);
    p.signal("TERM");
    assert!(p.child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    let a = &lines[0];
    assert_eq!(
        (a["client"].as_str(), a["peer"].as_str()),
        (Some("203.0.113.9"), Some("127.0.0.1")),
        "{a}"
    );
    assert_eq!(
        (a["host"].as_str(), a["user_agent"].as_str()),
        (Some("api.example"), Some("curl/8.0 \"q\""))
    );
    assert!(
        a["upstream_connect_us"].is_u64() && a["upstream_response_us"].is_u64(),
        "{a}"
    );
    let b = &lines[1];
    assert_eq!(b["client"], "127.0.0.1");
    assert!(
        b["upstream_connect_us"].is_null() && b["upstream_response_us"].is_null(),
        "{b}"
    );
}
