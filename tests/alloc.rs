//! The request path allocates nothing once warm: a counting global allocator around 10 000 proxied requests
//! through the real library (workers, upstream pool, buffers), after a warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on a thread whose allocations are not the ingress's (the TLS test's client).
    static NOT_COUNTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The tests run one at a time: each counts every allocation of the process.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn count() {
    if !NOT_COUNTED.with(|n| n.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: delegates to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// An upstream that allocates nothing per request: fixed buffer, fixed answer.
/// The Content-Length of a request head (0 without one), found without allocating.
fn content_length(head: &[u8]) -> usize {
    head.split(|&b| b == b'\n')
        .find_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            (l.len() > 15 && l[..15].eq_ignore_ascii_case(b"content-length:")).then(|| {
                l[15..]
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .fold(0, |n, &d| n * 10 + (d - b'0') as usize)
            })
        })
        .unwrap_or(0)
}

fn upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let mut s = s.unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                let mut have = 0;
                loop {
                    match s.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // Answer each complete request (head, and the body its Content-Length announces).
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        // (Without allocating: this process counts every allocation.)
                        let len = content_length(&buf[..end]);
                        if have < end + 4 + len {
                            break;
                        }
                        s.write_all(RESPONSE).unwrap();
                        buf.copy_within(end + 4 + len..have, 0);
                        have -= end + 4 + len;
                    }
                }
            });
        }
    });
    addr
}

/// The ingress in front of a fresh allocation-free upstream: one worker, the rate limit on (it never refuses
/// here: its decision is on the measured path too), and `extra`.
fn start(extra: &[&str]) -> portcullis::server::Running {
    let up = upstream().to_string();
    let mut args = vec!["portcullis", "--workers", "1", "--upstream", &up, "--rate", "1000000"];
    args.extend_from_slice(extra);
    portcullis::server::start(portcullis::config::Config::parse_from(args).unwrap()).unwrap()
}

/// Allocations counted over `n` calls of `f` (given the call's index), after `warm` calls to warm it up.
fn allocations(warm: usize, n: usize, mut f: impl FnMut(usize)) -> usize {
    for i in 0..warm {
        f(i);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for i in warm..warm + n {
        f(i);
    }
    ALLOCS.load(Ordering::SeqCst) - before
}

/// With request ids on: generated for each request, sent upstream, returned on the relayed response and on
/// a refusal (its problem+json body rewritten with the id), all without allocating.
#[test]
fn request_ids_allocate_nothing_per_request_once_warm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let running = start(&[
        "--listen",
        "127.0.0.1:0",
        "--request-id-header",
        "X-Request-Id",
        "--trust-request-id",
    ]);
    let mut c = TcpStream::connect(running.local_addr()).unwrap();
    c.set_nodelay(true).unwrap();
    // Generated ids (the client sends none), a kept one, a replaced one, and a refusal (406).
    let reqs: [&[u8]; 4] = [
        b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nAuthorization: Bearer t\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nX-Request-Id: abc-123\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nX-Request-Id: a b\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    let mut buf = [0u8; 4096];
    // Reads one response (a head with Content-Length, then that many bytes); returns its head's length.
    let mut one = |c: &mut TcpStream, req: &[u8]| {
        c.write_all(req).unwrap();
        let mut have = 0;
        loop {
            let n = c.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "closed");
            have += n;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let len = content_length(&buf[..end + 4]);
                if have >= end + 4 + len {
                    assert!(buf[..end]
                        .windows(14)
                        .any(|w| w.eq_ignore_ascii_case(b"x-request-id: ")));
                    return;
                }
            }
        }
    };
    let allocs = allocations(1000, 10_000, |i| one(&mut c, reqs[i % 4]));
    println!("{allocs} allocations over 10 000 warm requests with request ids");
    assert!(
        allocs < 10,
        "{allocs} allocations over 10 000 warm requests with request ids"
    );
    running.shutdown_handle().shutdown();
    drop(c);
    running.join().unwrap();
}

#[test]
fn no_allocation_per_request_once_warm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let running = start(&["--listen", "127.0.0.1:0"]);
    let mut c = TcpStream::connect(running.local_addr()).unwrap();
    c.set_nodelay(true).unwrap();
    // Basic credentials: the user's key is decoded and re-encoded (its canonical form) on every request, and
    // the per-address limit decides too (default 10 x --rate).
    let req =
        b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nUser-Agent: t\r\nAuthorization: basic YWxpY2U6c2VjcmV0\r\n\r\n";
    let mut buf = [0u8; 4096];
    let mut one = |c: &mut TcpStream| {
        c.write_all(req).unwrap();
        let mut have = 0;
        while have < RESPONSE.len() {
            let n = c.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "closed");
            have += n;
        }
        assert_eq!(&buf[..have], RESPONSE);
    };
    let allocs = allocations(1000, 10_000, |_| one(&mut c));
    println!("{allocs} allocations over 10 000 warm requests");
    assert!(allocs < 10, "{allocs} allocations over 10 000 warm requests");
    // A gzip-coded JSON body: decoded into the worker's kept buffer, then validated.
    // `{"a":1}` gzipped.
    let gz: &[u8] = &[
        31, 139, 8, 0, 0, 0, 0, 0, 2, 255, 171, 86, 74, 84, 178, 50, 172, 5, 0, 175, 172, 27, 86, 7, 0, 0, 0,
    ];
    let mut post = format!(
        "POST /j HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nAuthorization: Bearer t\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    post.extend_from_slice(gz);
    let mut coded = |c: &mut TcpStream| {
        c.write_all(&post).unwrap();
        let mut have = 0;
        while have < RESPONSE.len() {
            let n = c.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "closed");
            have += n;
        }
        assert_eq!(&buf[..have], RESPONSE, "{}", String::from_utf8_lossy(&buf[..have]));
    };
    let allocs = allocations(100, 2_000, |_| coded(&mut c));
    println!("{allocs} allocations over 2 000 warm gzip-coded POSTs");
    assert!(allocs < 10, "{allocs} allocations over 2 000 warm gzip-coded POSTs");
    running.shutdown_handle().shutdown();
    drop(c);
    running.join().unwrap();
}

/// Over TLS the ingress allocates what rustls allocates per record (its buffered API copies each received
/// record's plaintext and each sent record into a fresh buffer); nothing else. The client runs in this test's
/// thread, whose allocations are not counted.
#[test]
fn tls_requests_allocate_only_rustls_record_buffers() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("portcullis-alloc-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (crt, key) = (dir.join("a.crt"), dir.join("a.key"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=a",
            "-addext",
            "subjectAltName=DNS:a.test",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(ok.status.success());
    let running = start(&[
        "--listen",
        "",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    NOT_COUNTED.with(|n| n.set(true));
    // The certificate is accepted by a verifier that checks nothing (verification is not what is measured).
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("a.test").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(running.tls_addr().unwrap()).unwrap();
    sock.set_nodelay(true).unwrap();
    let req =
        b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nAuthorization: basic YWxpY2U6c2VjcmV0\r\n\r\n";
    let mut buf = [0u8; 4096];
    let mut one = |conn: &mut rustls::ClientConnection, sock: &mut TcpStream| {
        let mut s = rustls::Stream::new(conn, sock);
        s.write_all(req).unwrap();
        let mut have = 0;
        while have < RESPONSE.len() {
            let n = s.read(&mut buf[have..]).unwrap();
            assert!(n > 0, "closed");
            have += n;
        }
        assert_eq!(&buf[..have], RESPONSE);
    };
    let allocs = allocations(500, 2_000, |_| one(&mut conn, &mut sock));
    println!("{allocs} allocations over 2 000 warm TLS requests");
    // Two per request (measured: 4 000): the received record's plaintext and the sent record, as rustls 0.23's
    // buffered API does it; any more would be the ingress's own.
    assert!(
        allocs <= 2 * 2_000 + 10,
        "{allocs} allocations over 2 000 warm TLS requests"
    );
    running.shutdown_handle().shutdown();
    drop(sock);
    running.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Accepts any server certificate (the test measures allocations, not verification).
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
