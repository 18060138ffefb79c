//! Operations: metrics after a known mix, /healthz and /readyz through shutdown, the access log, and the
//! configuration's sources and checks.

mod support;

use std::process::Command;
use support::*;

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn post_json(body: &str) -> Vec<u8> {
    format!(
        "POST /j HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn metrics_count_a_known_mix() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(up.addr, &["--admin", "127.0.0.1:0", "--rate", "1", "--burst", "5"]);
    let mut c = p.connect();
    for _ in 0..3 {
        assert_eq!(c.roundtrip(&get("/ok")).status, 200);
    }
    assert_eq!(c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").status, 406);
    assert_eq!(c.roundtrip(&post_json("{\"a\":")).status, 400);
    assert_eq!(c.roundtrip(&get("/limited")).status, 429); // 6th request of this user, burst 5
    let (status, text) = p.admin_get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "portcullis_requests_total{outcome=\"forwarded\"}"), 3);
    assert_eq!(
        metric(
            &text,
            "portcullis_requests_total{outcome=\"refused\",reason=\"accept_header_missing\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "portcullis_requests_total{outcome=\"refused\",reason=\"malformed_json\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "portcullis_requests_total{outcome=\"refused\",reason=\"rate_limited\"}"
        ),
        1
    );
    assert_eq!(metric(&text, "portcullis_responses_total{class=\"2xx\"}"), 3);
    assert_eq!(metric(&text, "portcullis_responses_total{class=\"4xx\"}"), 3);
    assert_eq!(metric(&text, "portcullis_request_duration_seconds_count"), 6);
    assert_eq!(metric(&text, "portcullis_upstream_connections_opened_total"), 1);
    assert_eq!(metric(&text, "portcullis_upstream_connections_reused_total"), 2);
    assert_eq!(metric(&text, "portcullis_client_connections_accepted_total"), 1);
    assert_eq!(metric(&text, "portcullis_client_connections_open"), 1);
    // The user's slot and its address's (the per-address backstop).
    assert_eq!(metric(&text, "portcullis_rate_limit_table_live_slots"), 2);
    assert_eq!(metric(&text, "portcullis_rate_limit_evictions_total"), 0);
    assert!(metric(&text, "portcullis_sent_bytes_total") > 0);
    assert_eq!(p.admin_get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(p.admin_get("/nope").0, 404);
}

#[test]
fn json_and_upstream_failure_metrics() {
    let p = Proxy::with_upstream(dead_port(), &["--admin", "127.0.0.1:0"]);
    let mut c = p.connect();
    assert_eq!(c.roundtrip(&post_json("[1,2]")).status, 502);
    let (_, text) = p.admin_get("/metrics");
    assert_eq!(metric(&text, "portcullis_json_validated_bytes_total"), 5);
    // Every attempt counts: the first connect and its retry (--retries 1; a pool of one server retries it).
    assert_eq!(metric(&text, "portcullis_upstream_connect_failures_total"), 2);
    assert_eq!(
        metric(
            &text,
            "portcullis_requests_total{outcome=\"refused\",reason=\"upstream_unavailable\"}"
        ),
        1
    );
    assert_eq!(metric(&text, "portcullis_responses_total{class=\"5xx\"}"), 1);
}

#[test]
fn readyz_flips_when_shutdown_begins() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let rx = std::sync::Mutex::new(rx);
    let up = Upstream::start(move |_| {
        let _ = rx.lock().unwrap().recv();
        Action::Respond(response(200, "late"))
    });
    let mut p = Proxy::with_upstream(up.addr, &["--admin", "127.0.0.1:0"]);
    assert_eq!(p.admin_get("/readyz").0, 200);
    let mut c = p.connect();
    c.send(&get("/slow"));
    // The request is in flight once the upstream has it.
    let until = std::time::Instant::now() + IO_TIMEOUT;
    while up.accepts() == 0 {
        assert!(
            std::time::Instant::now() < until,
            "the request never reached the upstream"
        );
        std::thread::yield_now();
    }
    p.signal("TERM");
    // Shutdown has begun (the signal thread sets the flag first); poll until /readyz says so.
    let mut seen_503 = false;
    for _ in 0..1000 {
        if p.admin_get("/readyz").0 == 503 {
            seen_503 = true;
            break;
        }
        std::thread::yield_now();
    }
    assert!(seen_503, "/readyz never turned 503");
    assert_eq!(p.admin_get("/healthz").0, 200, "alive while draining");
    tx.send(()).unwrap();
    assert_eq!(c.response().unwrap().body, b"late");
    assert!(p.child.wait().unwrap().success());
}

#[test]
fn access_log_lines_for_a_known_mix() {
    let dir = temp_dir("access-log");
    let path = dir.join("access.log");
    let up = Upstream::ok("ok");
    let mut p = Proxy::with_upstream(up.addr, &["--access-log", path.to_str().unwrap(), "--rate", "100"]);
    let mut c = p.connect();
    c.roundtrip(b"GET /a?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer SECRET-TOKEN\r\n\r\n");
    c.roundtrip(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
    c.roundtrip(&post_json("{}"));
    p.signal("TERM");
    drop(c);
    assert!(p.child.wait().unwrap().success());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("SECRET"), "the Authorization value is never logged");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        (
            lines[0]["method"].as_str(),
            lines[0]["target"].as_str(),
            lines[0]["status"].as_u64()
        ),
        (Some("GET"), Some("/a?x=1"), Some(200))
    );
    assert!(lines[0]["reason"].is_null());
    assert_eq!(lines[0]["client"], "127.0.0.1");
    assert_eq!(lines[0]["user"].as_str().unwrap().len(), 16);
    assert_eq!(
        (lines[1]["status"].as_u64(), lines[1]["reason"].as_str()),
        (Some(406), Some("accept_header_missing"))
    );
    assert_ne!(lines[1]["user"], lines[0]["user"], "no Authorization: keyed by address");
    assert_eq!(
        (lines[2]["method"].as_str(), lines[2]["status"].as_u64()),
        (Some("POST"), Some(200))
    );
    for l in &lines {
        assert!(
            l["time"].as_f64().unwrap() > 1.7e9 && l["duration_us"].is_u64() && l["bytes_out"].as_u64().unwrap() > 0
        );
    }
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--check-config")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn config_sources_file_then_env_then_flags() {
    let dir = temp_dir("config");
    let file = dir.join("portcullis.toml");
    std::fs::write(
        &file,
        "# test\nmax-body = \"2MiB\"\nrate = 5\nworkers = 3\nheader_timeout = \"3s\"\naccept = [\"application/vnd.a.v1+json\", \"application/vnd.a.v2+json\"]\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (code, out, err) = check_config(&["--config", f, "--workers", "2"], &[("PORTCULLIS_RATE", "7")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max-body = 2097152\n"), "file: {out}");
    assert!(
        out.contains("header-timeout = \"3000ms\"\n"),
        "file, underscore spelling: {out}"
    );
    assert!(out.contains("rate = 7\n"), "env over file: {out}");
    assert!(out.contains("workers = 2\n"), "flag over file: {out}");
    assert!(
        out.contains("accept = [\"application/vnd.a.v1+json\", \"application/vnd.a.v2+json\"]\n"),
        "{out}"
    );
    // The printed configuration is itself a valid file.
    std::fs::write(&file, &out).unwrap();
    let (code, again, err) = check_config(&["--config", f], &[]);
    assert_eq!((code, again.as_str()), (0, out.as_str()), "{err}");
}

#[test]
fn bad_configuration_is_refused_with_the_flag_named() {
    let (code, _, err) = check_config(&["--max-body", "5GiB"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--max-body") && err.contains("at most 1GiB"), "{err}");
    let (code, _, err) = check_config(&["--user-key", "cookie"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("--user-key"), "{err}");
    let (code, _, err) = check_config(&[], &[("PORTCULLIS_HEADER_TIMEOUT", "forever")]);
    assert_eq!(code, 1);
    assert!(err.contains("header-timeout"), "{err}");
    let dir = temp_dir("bad-config");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "max-bodyy = 1\n").unwrap();
    let (code, _, err) = check_config(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown setting \"max-bodyy\""), "{err}");
    // Without --check-config an invalid value stops the start with exit status 2.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--workers", "5000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--workers"));
}

#[test]
fn a_second_instance_on_the_same_port_is_refused() {
    // SO_REUSEPORT (one listener per worker) would let a second process share the port and take part of the
    // traffic unnoticed: the second start must fail instead.
    let up = Upstream::ok("ok");
    let first = Proxy::with_upstream(up.addr, &[]);
    let port = first.addr.port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--listen", &addr, "--upstream", &up.addr.to_string(), "--workers", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("already in use: a server listens on it"), "{err}");
    // A port held by a connection (an ephemeral port) is told apart.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let conn = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let taken = conn.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--listen", &taken, "--upstream", &up.addr.to_string(), "--workers", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("a connection uses it as its local port"), "{err}");
    drop((conn, l));
    // The first one still serves.
    let r = first
        .connect()
        .roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    assert_eq!(r.status, 200);
}
