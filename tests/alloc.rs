//! The request path allocates nothing once warm: a counting global allocator around 10 000 proxied requests
//! through the real library (workers, upstream pool, buffers), after a warm-up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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

#[test]
fn no_allocation_per_request_once_warm() {
    let up = upstream();
    let cfg = portcullis::config::Config::parse_from([
        "portcullis",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--upstream",
        &up.to_string(),
        // The rate limit is on (and never refuses here): its decision is on the measured path too.
        "--rate",
        "1000000",
    ])
    .unwrap();
    let running = portcullis::server::start(cfg).unwrap();
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
    for _ in 0..1000 {
        one(&mut c);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..10_000 {
        one(&mut c);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
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
    for _ in 0..100 {
        coded(&mut c);
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..2_000 {
        coded(&mut c);
    }
    let allocs = ALLOCS.load(Ordering::SeqCst) - before;
    println!("{allocs} allocations over 2 000 warm gzip-coded POSTs");
    assert!(allocs < 10, "{allocs} allocations over 2 000 warm gzip-coded POSTs");
    running.shutdown_handle().shutdown();
    drop(c);
    running.join().unwrap();
}
