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
                    // Requests here are bodiless GETs: answer each complete head.
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        s.write_all(RESPONSE).unwrap();
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
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
    running.shutdown_handle().shutdown();
    drop(c);
    running.join().unwrap();
}
