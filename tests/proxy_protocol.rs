//! The PROXY protocol in front of the real binary: HAProxy (`send-proxy-v2`, `send-proxy`) as the L4 load
//! balancer, clients on other loopback addresses (127.0.0.2, 127.0.0.3) so that the address the header
//! carries differs from the balancer's; raw headers for every truncation and malformation.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::*;

/// HAProxy in TCP mode in front of `to`, adding the PROXY header (`send` is `send-proxy-v2` or
/// `send-proxy`); killed on drop.
struct Balancer {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Balancer {
    fn start(to: SocketAddr, send: &str, name: &str) -> Balancer {
        let dir = temp_dir(&format!("pp-haproxy-{name}"));
        let port = dead_port().port();
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  \
                 timeout server 30s\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\nbackend b\n  \
                 server s {to} {send}\n"
            ),
        )
        .unwrap();
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let bin = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("haproxy");
        let mut cmd = Command::new(bin);
        die_with_test(&mut cmd);
        let child = cmd
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (Debian package haproxy)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Ready once its socket listens (seen in /proc: a probe connection would reach the ingress too).
        let until = std::time::Instant::now() + IO_TIMEOUT;
        while !listening(port) {
            assert!(std::time::Instant::now() < until, "haproxy did not start");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Balancer { child, addr, _dir: dir }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (`/proc/net/tcp`: local address in hex, state 0A).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
}

/// A client connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> Client {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    Client::from_stream(s.into())
}

const GET: &[u8] = b"GET /v HTTP/1.1\r\nHost: api\r\nAccept: application/json\r\n\r\n";

fn metric(p: &Proxy, result: &str) -> Option<f64> {
    p.metric(&format!(
        "portcullis_proxy_protocol_headers_total{{result=\"{result}\"}}"
    ))
}

/// Behind HAProxy with either version: the upstream sees each client's own address in X-Forwarded-For, the
/// per-address limit keys on it (two clients behind one balancer do not share a budget), and so does the
/// access log.
#[test]
fn behind_haproxy_the_client_address_is_the_one_the_header_carries() {
    for (send, accept) in [("send-proxy-v2", "v2"), ("send-proxy", "v1"), ("send-proxy-v2", "any")] {
        let up = Upstream::ok("ok");
        let dir = temp_dir(&format!("pp-log-{accept}"));
        let log = dir.join("access.log");
        let mut p = Proxy::with_upstream(
            up.addr,
            &[
                "--proxy-protocol",
                accept,
                "--proxy-protocol-from",
                "127.0.0.1/32",
                "--user-key",
                "ip",
                "--rate",
                "1",
                "--burst",
                "2",
                "--access-log",
                log.to_str().unwrap(),
                "--admin",
                "127.0.0.1:0",
            ],
        );
        let lb = Balancer::start(p.addr, send, accept);
        let mut a = connect_from("127.0.0.2", lb.addr);
        let statuses: Vec<u16> = (0..3).map(|_| a.roundtrip(GET).status).collect();
        assert_eq!(statuses, [200, 200, 429], "{send}: 127.0.0.2's own budget of 2");
        let mut b = connect_from("127.0.0.3", lb.addr);
        assert_eq!(
            b.roundtrip(GET).status,
            200,
            "{send}: 127.0.0.3 has a budget of its own"
        );
        let xff: Vec<String> = up
            .requests()
            .iter()
            .map(|r| r.header("x-forwarded-for").unwrap())
            .collect();
        assert_eq!(xff, ["127.0.0.2", "127.0.0.2", "127.0.0.3"], "{send}");
        assert_eq!(metric(&p, "ok"), Some(2.0), "{send}");
        drop((a, b));
        p.signal("TERM");
        let (status, stderr) = p.exit_log();
        assert!(status.success(), "{stderr}");
        let lines = std::fs::read_to_string(&log).unwrap();
        let peers: Vec<&str> = lines
            .lines()
            .map(|l| l.split("\"peer\":\"").nth(1).unwrap().split('"').next().unwrap())
            .collect();
        assert_eq!(
            peers,
            ["127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3"],
            "{send}: {lines}"
        );
    }
}

/// Only the configured balancers may send a header: a connection from anywhere else is closed before a
/// byte is read, even with a valid header and request.
#[test]
fn connections_from_outside_the_allowed_blocks_are_closed() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--proxy-protocol",
            "v2",
            "--proxy-protocol-from",
            "127.0.0.2",
            "--proxy-protocol-from",
            "10.0.0.0/8",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let mut c = connect_from("127.0.0.1", p.addr);
    let mut req = v2(1, [192, 0, 2, 7], 4000, &[]);
    req.extend_from_slice(GET);
    // The write may already find the connection closed; either way no byte comes back.
    let _ = c.s.write_all(&req);
    assert!(c.closed(), "no answer to a header from outside --proxy-protocol-from");
    assert_eq!(up.accepts(), 0);
    assert_eq!(metric(&p, "untrusted"), Some(1.0));
    // From the allowed address the same bytes are served.
    let mut ok = connect_from("127.0.0.2", p.addr);
    ok.send(&req);
    assert_eq!(ok.response().unwrap().status, 200);
    assert_eq!(up.requests()[0].header("x-forwarded-for").as_deref(), Some("192.0.2.7"));
}

/// A version 2 header: PROXY (`cmd` 1) or LOCAL (0) over TCP/IPv4 from `src`:`port` to 10.0.0.1:443.
fn v2(cmd: u8, src: [u8; 4], port: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | cmd);
    h.push(0x11);
    h.extend_from_slice(&(12 + tlvs.len() as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    h.extend_from_slice(tlvs);
    h
}

/// Every truncation of a valid header: cut and closed, the connection is closed without an answer and
/// nothing reaches the upstream; cut and then completed (a second write), the request is served with the
/// header's address. Malformed headers are closed without an answer; a LOCAL header keeps the peer's address.
#[test]
fn every_truncation_and_every_malformed_header_is_handled() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--proxy-protocol",
            "any",
            "--proxy-protocol-from",
            "127.0.0.0/8",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let headers = [
        (v2(1, [192, 0, 2, 7], 4000, &[0xea, 0, 3, 1, 2, 3]), "192.0.2.7"),
        (
            b"PROXY TCP4 198.51.100.4 10.0.0.1 5555 443\r\n".to_vec(),
            "198.51.100.4",
        ),
        (b"PROXY TCP6 2001:db8::5 ::1 5555 443\r\n".to_vec(), "2001:db8::5"),
    ];
    let mut served = 0;
    let mut invalid = 0;
    for (h, client) in &headers {
        for cut in 0..h.len() {
            let mut c = connect_from("127.0.0.1", p.addr);
            c.send(&h[..cut]);
            c.s.shutdown(std::net::Shutdown::Write).unwrap();
            assert!(c.closed(), "cut at {cut} of {:?}", String::from_utf8_lossy(h));
            invalid += 1;

            let mut c = connect_from("127.0.0.1", p.addr);
            c.send(&h[..cut]);
            let mut rest = h[cut..].to_vec();
            rest.extend_from_slice(GET);
            c.send(&rest);
            assert_eq!(c.response().unwrap().status, 200);
            served += 1;
            let last = up.requests().pop().unwrap();
            assert_eq!(last.header("x-forwarded-for").as_deref(), Some(*client), "cut at {cut}");
        }
    }
    assert_eq!(up.requests().len(), served);
    // LOCAL (the balancer's own health check): the peer address stands.
    let mut c = connect_from("127.0.0.1", p.addr);
    let mut req = v2(0, [192, 0, 2, 7], 4000, &[]);
    req.extend_from_slice(GET);
    assert_eq!(c.roundtrip(&req).status, 200);
    assert_eq!(
        up.requests().pop().unwrap().header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    // Malformed: each closed without an answer, nothing forwarded.
    let mut bad_version = v2(1, [192, 0, 2, 7], 4000, &[]);
    bad_version[12] = 0x11;
    let mut bad_family = v2(1, [192, 0, 2, 7], 4000, &[]);
    bad_family[13] = 0x41;
    let mut too_long = v2(1, [192, 0, 2, 7], 4000, &[]);
    too_long[14] = 0x40;
    let bad_tlv = v2(1, [192, 0, 2, 7], 4000, &[0xea, 0, 9, 1]);
    let tls_hello = [0x16, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4, 3, 3, 0, 0, 0, 0, 0, 0, 0].to_vec();
    let before = up.requests().len();
    for bad in [
        bad_version,
        bad_family,
        too_long,
        bad_tlv,
        tls_hello,
        GET.to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n".to_vec(),
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
        [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100], b"\r\n"].concat(),
    ] {
        let mut c = connect_from("127.0.0.1", p.addr);
        let mut all = bad.clone();
        all.extend_from_slice(GET);
        let _ = c.s.write_all(&all);
        assert!(c.closed(), "{:?}", String::from_utf8_lossy(&bad));
        invalid += 1;
    }
    assert_eq!(up.requests().len(), before);
    assert_eq!(metric(&p, "ok"), Some(served as f64));
    assert_eq!(metric(&p, "local"), Some(1.0));
    assert_eq!(metric(&p, "invalid"), Some(invalid as f64));
}

/// A connection that does not complete its header within --header-timeout is closed without an answer.
#[test]
fn an_incomplete_header_is_closed_at_the_header_timeout() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--proxy-protocol",
            "v2",
            "--proxy-protocol-from",
            "127.0.0.1",
            "--header-timeout",
            "1s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let mut c = connect_from("127.0.0.1", p.addr);
    c.send(&v2(1, [192, 0, 2, 7], 4000, &[])[..10]);
    assert!(c.closed());
    let mut silent = connect_from("127.0.0.1", p.addr);
    assert!(silent.closed());
    assert_eq!(metric(&p, "timeout"), Some(2.0));
    assert_eq!(up.accepts(), 0);
}

/// The TLS listener reads the header before the handshake: HAProxy passes TLS through (`send-proxy-v2`),
/// curl from 127.0.0.2 talks TLS to portcullis, and the upstream sees 127.0.0.2 and `https`.
#[test]
fn tls_behind_a_tcp_balancer() {
    let up = Upstream::ok("ok");
    let dir = temp_dir("pp-tls");
    let (crt, key) = self_signed(&dir, "api.test");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--proxy-protocol",
            "v2",
            "--proxy-protocol-from",
            "127.0.0.1",
        ],
    );
    let lb = Balancer::start(p.tls_addr(), "send-proxy-v2", "tls");
    let port = lb.addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--interface", "127.0.0.2", "--cacert"])
        .arg(&crt)
        .args(["--resolve", &format!("api.test:{port}:127.0.0.1")])
        .args([
            "-H",
            "Accept: application/json",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://api.test:{port}/v"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = up.requests().pop().unwrap();
    assert_eq!(r.header("x-forwarded-for").as_deref(), Some("127.0.0.2"));
    assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
}

#[test]
fn the_settings_are_checked_and_shown() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .arg("--check-config")
            .output()
            .unwrap()
    };
    let out = run(&["--proxy-protocol", "v2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proxy-protocol needs --proxy-protocol-from"));
    let out = run(&["--proxy-protocol-from", "10.0.0.0/8"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proxy-protocol-from needs --proxy-protocol"));
    let out = run(&["--proxy-protocol", "v3", "--proxy-protocol-from", "10.0.0.0/8"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--proxy-protocol \"v3\""));
    let out = run(&[
        "--proxy-protocol",
        "any",
        "--proxy-protocol-from",
        "10.0.0.0/8,192.0.2.1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("proxy-protocol = \"any\"\n"), "{text}");
    assert!(
        text.contains("proxy-protocol-from = [\"10.0.0.0/8\", \"192.0.2.1/32\"]\n"),
        "{text}"
    );
}
