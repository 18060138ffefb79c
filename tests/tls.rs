//! TLS termination through the real binary: real clients (curl, openssl s_client, rustls), certificates made
//! by openssl for the test, scripted upstreams on 127.0.0.1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use support::*;

/// A test CA (`ca.crt`, `ca.key` in `dir`), made by `openssl req`.
fn ca(dir: &Path) -> PathBuf {
    let crt = dir.join("ca.crt");
    let key = dir.join("ca.key");
    openssl(&[
        "req",
        "-x509",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=portcullis test CA",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
    ]);
    crt
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate for `sans` signed by the CA in `dir`, with its key: `stem.crt`, `stem.key` in `out`.
fn cert(dir: &Path, out: &Path, stem: &str, key: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let crt = out.join(format!("{stem}.crt"));
    let k = out.join(format!("{stem}.key"));
    let csr = out.join(format!("{stem}.csr"));
    let san = format!(
        "subjectAltName={}",
        sans.iter().map(|s| format!("DNS:{s}")).collect::<Vec<_>>().join(",")
    );
    let newkey: &[&str] = match key {
        "ec" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        "rsa" => &["-newkey", "rsa:2048"],
        other => panic!("key type {other}"),
    };
    let subj = format!("/CN={cn}");
    let mut req = vec!["req", "-new", "-nodes", "-subj", &subj, "-addext", &san];
    req.extend_from_slice(newkey);
    req.extend_from_slice(&["-keyout", k.to_str().unwrap(), "-out", csr.to_str().unwrap()]);
    openssl(&req);
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    openssl(&[
        "x509",
        "-req",
        "-days",
        "30",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        ca_crt.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-copy_extensions",
        "copy",
        "-out",
        crt.to_str().unwrap(),
    ]);
    (crt, k)
}

/// The test's certificates, signed by one CA: `a` (ECDSA, a.example.com) and `b` (RSA, b.example.com and
/// *.b.example.com).
struct Certs {
    dir: TempDir,
    ca: PathBuf,
    a: (PathBuf, PathBuf),
    b: (PathBuf, PathBuf),
}

impl Certs {
    fn new(name: &str) -> Certs {
        let dir = temp_dir(name);
        let ca = ca(&dir);
        let a = cert(&dir, &dir, "a", "ec", "a-ecdsa", &["a.example.com"]);
        let b = cert(&dir, &dir, "b", "rsa", "b-rsa", &["b.example.com", "*.b.example.com"]);
        Certs { dir, ca, a, b }
    }

    /// `--tls-listen 127.0.0.1:0` and both pairs, in order.
    fn args(&self) -> Vec<String> {
        let p = |p: &PathBuf| p.to_str().unwrap().to_string();
        vec![
            "--tls-listen".into(),
            "127.0.0.1:0".into(),
            "--tls-cert".into(),
            p(&self.a.0),
            "--tls-key".into(),
            p(&self.a.1),
            "--tls-cert".into(),
            p(&self.b.0),
            "--tls-key".into(),
            p(&self.b.1),
        ]
    }

    /// A rustls client configuration trusting the test CA.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_file(&self.ca).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

fn start(certs: &Certs, up: &Upstream, extra: &[&str]) -> Proxy {
    let args = certs.args();
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    if !extra.contains(&"--admin") {
        all.extend_from_slice(&["--admin", "127.0.0.1:0"]);
    }
    all.extend_from_slice(extra);
    Proxy::with_upstream(up.addr, &all)
}

/// curl to `https://NAME:PORT/` resolved to 127.0.0.1: (status, the certificate subject curl printed).
fn curl(port: u16, name: &str, cacert: &Path) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "--resolve",
        ])
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(cacert)
        .arg(format!("https://{name}:{port}/x"))
        .output()
        .expect("curl");
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let subject = err
        .lines()
        .find_map(|l| l.split("subject: ").nth(1))
        .unwrap_or_default()
        .trim()
        .to_string();
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    (status, subject)
}

/// `openssl s_client` against `port` with `args`, sending `input`: everything it printed.
fn s_client(port: u16, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn curl_gets_the_certificate_of_each_name_and_its_answer() {
    let certs = Certs::new("tls-curl");
    let up = Upstream::ok("ok");
    let p = start(&certs, &up, &[]);
    let port = p.tls_addr().port();
    let ca = certs.ca.clone();
    assert_eq!(curl(port, "a.example.com", &ca), (200, "CN=a-ecdsa".to_string()));
    assert_eq!(curl(port, "b.example.com", &ca), (200, "CN=b-rsa".to_string()));
    // The wildcard covers one label, exactly.
    assert_eq!(curl(port, "x.b.example.com", &ca), (200, "CN=b-rsa".to_string()));
    // A name no certificate has: the first one is served (and curl refuses it for its name).
    let (status, subject) = curl(port, "c.example.com", &ca);
    assert_eq!((status, subject.as_str()), (0, "CN=a-ecdsa"));
    // Forwarded with the listener's scheme; a client's own X-Forwarded-Proto never passes.
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.header("x-forwarded-proto").as_deref() == Some("https")));
    let mut c = p.connect();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Forwarded-Proto: https\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[3].header("x-forwarded-proto").as_deref(), Some("http"));
    // Four finished: curl refuses the fourth's certificate for its name after the handshake.
    assert_eq!(p.metric("portcullis_tls_handshakes_total{result=\"ok\"}"), Some(4.0));
}

#[test]
fn strict_sni_refuses_unknown_names_and_the_default_cert_serves_them_otherwise() {
    let certs = Certs::new("tls-sni");
    let up = Upstream::ok("ok");
    let ca = certs.ca.clone();
    let p = start(&certs, &up, &["--tls-default-cert", "b.example.com"]);
    let port = p.tls_addr().port();
    assert_eq!(curl(port, "c.example.com", &ca).1, "CN=b-rsa");
    let strict = start(&certs, &up, &["--tls-strict-sni"]);
    let out = s_client(strict.tls_addr().port(), &["-servername", "c.example.com"], b"");
    // The server's alert (rustls sends access_denied when it has no certificate for the name).
    assert!(out.contains("SSL alert number"), "{out}");
    strict.wait_metric(
        "portcullis_tls_handshakes_total{result=\"failed\",reason=\"no_certificate\"}",
        1.0,
    );
    assert_eq!(curl(strict.tls_addr().port(), "a.example.com", &ca).0, 200);
}

#[test]
fn sessions_resume_with_tls12_and_tls13_tickets() {
    let certs = Certs::new("tls-resume");
    let up = Upstream::ok("ok");
    let p = start(&certs, &up, &["--admin", "127.0.0.1:0"]);
    let port = p.tls_addr().port();
    let sess = certs.dir.join("session.pem");
    let sess = sess.to_str().unwrap();
    // An HTTP/1.0 request: answered, then the connection closes, after the tickets were read.
    let req = b"GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";
    for version in ["-tls1_2", "-tls1_3"] {
        let first = s_client(
            port,
            &[version, "-servername", "a.example.com", "-ign_eof", "-sess_out", sess],
            req,
        );
        assert!(first.contains("HTTP/1.1 200"), "{first}");
        assert!(first.contains("New, TLSv1."), "{first}");
        let second = s_client(
            port,
            &[version, "-servername", "a.example.com", "-ign_eof", "-sess_in", sess],
            req,
        );
        assert!(second.contains("Reused, TLSv1."), "{version}: {second}");
        assert!(second.contains("HTTP/1.1 200"), "{second}");
    }
    assert_eq!(p.metric("portcullis_tls_resumed_handshakes_total"), Some(2.0));
}

#[test]
fn old_versions_are_refused_by_the_server_and_alpn_is_http11() {
    let certs = Certs::new("tls-versions");
    let up = Upstream::ok("ok");
    let p = start(&certs, &up, &[]);
    let port = p.tls_addr().port();
    // The client is made to offer TLS 1.1 (its own policy would refuse it otherwise): the server's alert says
    // why.
    for v in ["-tls1", "-tls1_1"] {
        let out = s_client(
            port,
            &[v, "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "a.example.com"],
            b"",
        );
        // rustls answers a hello without TLS 1.2 or 1.3 with handshake_failure, before any certificate.
        assert!(out.contains("SSL alert number 40"), "{v}: {out}");
        assert!(out.contains("no peer certificate available"), "{v}: {out}");
    }
    p.wait_metric(
        "portcullis_tls_handshakes_total{result=\"failed\",reason=\"incompatible\"}",
        2.0,
    );
    let out = s_client(port, &["-alpn", "h2,http/1.1", "-servername", "a.example.com"], b"");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    let only13 = start(&certs, &up, &["--tls-min-version", "1.3"]);
    let out = s_client(
        only13.tls_addr().port(),
        &["-tls1_2", "-servername", "a.example.com"],
        b"",
    );
    assert!(out.contains("alert protocol version"), "{out}");
    let out = s_client(
        only13.tls_addr().port(),
        &["-tls1_3", "-servername", "a.example.com"],
        b"",
    );
    assert!(out.contains("TLSv1.3"), "{out}");
}

#[test]
fn plain_http_on_the_tls_port_gets_an_alert_or_a_close_and_a_silent_client_times_out() {
    let certs = Certs::new("tls-bad");
    let up = Upstream::ok("ok");
    let p = start(&certs, &up, &["--header-timeout", "1s", "--admin", "127.0.0.1:0"]);
    let mut c = Client::connect(p.tls_addr());
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
    let mut got = Vec::new();
    use std::io::Read;
    let _ = c.s.read_to_end(&mut got);
    assert!(
        got.is_empty() || got[0] == 0x15,
        "a TLS alert record or nothing: {got:?}"
    );
    // Silent: closed when the header timeout runs out.
    let mut silent = Client::connect(p.tls_addr());
    assert!(silent.closed());
    p.wait_metric(
        "portcullis_tls_handshakes_total{result=\"failed\",reason=\"timeout\"}",
        1.0,
    );
    assert_eq!(
        p.metric("portcullis_tls_handshakes_total{result=\"failed\",reason=\"bad_message\"}"),
        Some(1.0)
    );
    assert!(up.requests().is_empty());
    // Still serving.
    assert_eq!(curl(p.tls_addr().port(), "a.example.com", &certs.ca.clone()).0, 200);
}

#[test]
fn requests_over_tls_get_the_same_answers_as_plain_ones() {
    let certs = Certs::new("tls-same");
    let up = Upstream::ok("ok");
    let log = certs.dir.join("access.log");
    let mut p = start(
        &certs,
        &up,
        &[
            "--accept",
            "application/vnd.example.v1+json",
            "--access-log",
            log.to_str().unwrap(),
            "--tls-expiry-warn",
            "1000h",
        ],
    );
    // Both certificates expire within 1 000 hours (30 days): said at start.
    p.wait_log("expires in");
    let cases: &[&[u8]] = &[
        b"GET /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v9+json\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
        b"POST /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\nContent-Type: application/json\r\nContent-Length: 6\r\n\r\n{\"a\":}",
        b"POST /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi",
        b"POST /a HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost : a\r\n\r\n",
        b"BREW /a HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a HTTP/2.0\r\nHost: a\r\n\r\n",
    ];
    let config = certs.client();
    for case in cases {
        let plain = p.connect().roundtrip(case);
        let mut t = Client::connect_tls(p.tls_addr(), "a.example.com", config.clone());
        let tls = t.roundtrip(case);
        let reason = |r: &Response| {
            serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .map(|v| v["reason"].clone())
        };
        assert_eq!(
            (plain.status, reason(&plain)),
            (tls.status, reason(&tls)),
            "{}",
            String::from_utf8_lossy(case)
        );
    }
    // Pipelined over one TLS connection: both answered, in order.
    let mut t = Client::connect_tls(p.tls_addr(), "b.example.com", config);
    t.send(b"GET /1 HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.example.v1+json\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(t.response().unwrap().status, 200);
    assert_eq!(t.response().unwrap().status, 406);
    // Each certificate's expiry is a gauge, named by its first SAN.
    let expiry = p
        .metric("portcullis_tls_certificate_expiry_seconds{name=\"b.example.com\"}")
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now && expiry < now + 31.0 * 86400.0, "{expiry}");
    drop(t);
    p.signal("TERM");
    let (status, _) = p.exit_log();
    assert!(status.success());
    // The access log names the TLS version and the SNI of TLS requests, and nothing of the sort for plain ones.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let over_tls: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("tls").is_some()).collect();
    assert_eq!(over_tls.len(), cases.len() + 2, "{text}");
    assert!(over_tls.iter().all(|l| l["tls"] == "TLSv1.3"), "{text}");
    assert_eq!(over_tls.last().unwrap()["sni"], "b.example.com");
    assert_eq!(lines.len() - over_tls.len(), cases.len(), "{text}");
}

#[test]
fn a_reload_serves_new_certificates_and_keeps_the_old_ones_on_a_broken_file() {
    let certs = Certs::new("tls-reload");
    let up = Upstream::ok("ok");
    let p = start(&certs, &up, &["--admin", "127.0.0.1:0"]);
    let port = p.tls_addr().port();
    let ca = certs.ca.clone();
    assert_eq!(curl(port, "a.example.com", &ca).1, "CN=a-ecdsa");
    // A new certificate for the same name, in the same files.
    let fresh = temp_dir("tls-reload-new");
    let (crt, key) = cert(&certs.dir, &fresh, "a", "ec", "a-renewed", &["a.example.com"]);
    std::fs::copy(&crt, &certs.a.0).unwrap();
    std::fs::copy(&key, &certs.a.1).unwrap();
    p.signal("HUP");
    p.wait_log("TLS certificates reloaded");
    assert_eq!(curl(port, "a.example.com", &ca), (200, "CN=a-renewed".to_string()));
    // A key that does not match: refused, the renewed set stays.
    std::fs::copy(&certs.b.1, &certs.a.1).unwrap();
    p.signal("HUP");
    p.wait_log("reload refused, the old set stays");
    assert_eq!(curl(port, "a.example.com", &ca), (200, "CN=a-renewed".to_string()));
}

#[test]
fn certificates_replaced_under_load_fail_no_request() {
    let certs = Certs::new("tls-reload-load");
    let up = Upstream::ok("ok");
    let p = Arc::new(start(&certs, &up, &["--admin", "127.0.0.1:0"]));
    let config = certs.client();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Four clients, each a new TLS connection per request (every request is a handshake that may meet a
    // reload), at most 2 000 requests each.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (p, config, stop) = (p.clone(), config.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) && n < 2_000 {
                    let mut c = Client::connect_tls(p.tls_addr(), "a.example.com", config.clone());
                    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nConnection: close\r\n\r\n");
                    assert_eq!(r.status, 200);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let fresh = temp_dir("tls-reload-load-new");
    for (i, cn) in ["a-second", "a-third"].iter().enumerate() {
        let (crt, key) = cert(&certs.dir, &fresh, cn, "ec", cn, &["a.example.com"]);
        std::fs::copy(&crt, &certs.a.0).unwrap();
        std::fs::copy(&key, &certs.a.1).unwrap();
        p.signal("HUP");
        p.wait_metrics_line(&format!("portcullis_reloads_total{{result=\"ok\"}} {}", i + 1));
        assert_eq!(
            curl(p.tls_addr().port(), "a.example.com", &certs.ca),
            (200, format!("CN={cn}"))
        );
    }
    // A broken file: the third certificate stays.
    std::fs::write(&certs.a.0, "not a certificate").unwrap();
    p.signal("HUP");
    p.wait_log("reload refused, the old set stays");
    assert_eq!(
        curl(p.tls_addr().port(), "a.example.com", &certs.ca),
        (200, "CN=a-third".to_string())
    );
    stop.store(true, std::sync::atomic::Ordering::Release);
    let done: usize = clients.into_iter().map(|t| t.join().expect("a request failed")).sum();
    assert!(done > 0);
    assert_eq!(
        p.metric("portcullis_tls_handshakes_total{result=\"failed\",reason=\"other\"}"),
        Some(0.0)
    );
}

#[test]
fn an_in_place_upgrade_hands_the_tls_listener_over() {
    let certs = Certs::new("tls-upgrade");
    let up = Upstream::ok("ok");
    let mut p = start(&certs, &up, &[]);
    let port = p.tls_addr().port();
    assert_eq!(curl(port, "a.example.com", &certs.ca).0, 200);
    p.signal("USR2");
    p.wait_log("SIGUSR2: the new process (pid ");
    let new_pid: u32 = {
        let log = p.log.lock().unwrap();
        let rest = log.split("SIGUSR2: the new process (pid ").nth(1).unwrap();
        rest.split(')').next().unwrap().parse().unwrap()
    };
    /// The new process is not a child of the test: killed when the test ends.
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-KILL", &self.0.to_string()]).status();
        }
    }
    let _new = Kill(new_pid);
    // The old process drains and exits; the new one serves TLS on the same socket.
    assert!(p.child.wait().unwrap().success());
    assert_eq!(curl(port, "a.example.com", &certs.ca), (200, "CN=a-ecdsa".to_string()));
}
