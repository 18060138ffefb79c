//! Restarts without a gap: steady load through an in-place upgrade (SIGUSR2) and through a stop/start with
//! systemd-style socket activation (the listening socket held by the "service manager", here the test): no
//! connection refused, no answer other than 200.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    connect_errors: AtomicU64,
    bad_status: AtomicU64,
    /// A reused keep-alive connection closed before any byte of the answer (the request is sent again on a
    /// new connection, as HTTP clients do for such a request).
    retried: AtomicU64,
}

/// One request on `conn` (a new connection if `None`); returns whether the connection can be reused.
fn one(addr: SocketAddr, conn: &mut Option<BufReader<TcpStream>>, t: &Tally) {
    for _attempt in 0..3 {
        let fresh = conn.is_none();
        if fresh {
            match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    *conn = Some(BufReader::new(s));
                }
                Err(_) => {
                    t.connect_errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let sent = c
            .get_mut()
            .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
            .is_ok();
        let mut status = String::new();
        if !sent || c.read_line(&mut status).unwrap_or(0) == 0 {
            *conn = None;
            if fresh {
                t.connect_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
            t.retried.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (mut len, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            if c.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            close |= l.starts_with("connection: close");
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0u8; len];
        let complete = c.read_exact(&mut body).is_ok();
        if status.starts_with("HTTP/1.1 200") && complete {
            t.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            t.bad_status.fetch_add(1, Ordering::Relaxed);
        }
        if close || !complete {
            *conn = None;
        }
        return;
    }
}

/// Four clients sending steadily (keep-alive, and every 20th request on a new connection) until `stop`.
fn load(addr: SocketAddr, stop: Arc<AtomicBool>, t: Arc<Tally>) -> Vec<thread::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let (stop, t) = (stop.clone(), t.clone());
            thread::spawn(move || {
                let mut conn = None;
                let mut n = 0u64;
                let until = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Acquire) && Instant::now() < until {
                    if n.is_multiple_of(20) {
                        conn = None;
                    }
                    one(addr, &mut conn, &t);
                    n += 1;
                }
            })
        })
        .collect()
}

/// Waits until `t` counts `more` further answers (the load goes on meanwhile).
fn wait_answers(t: &Tally, more: u64) {
    let target = t.ok.load(Ordering::Relaxed) + more;
    let until = Instant::now() + IO_TIMEOUT;
    while t.ok.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < until, "the load stalled");
        thread::sleep(Duration::from_millis(10)); // polling the counters, the signal here
    }
}

/// A process's stderr lines, on a channel.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let until = Instant::now() + IO_TIMEOUT;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => panic!("no line with {needle:?}"),
        }
    }
}

/// Kills a pid on drop (the upgraded process is not this test's child).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-9", &self.0.to_string()]).status();
    }
}

#[test]
fn an_in_place_upgrade_refuses_nothing() {
    let up = Upstream::ok("ok");
    let mut old = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up.addr.to_string(),
            "--workers",
            "2",
            "--rate",
            "0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let old_pid = KillOnDrop(old.id());
    let rx = lines_of(&mut old);
    let addr: SocketAddr = wait_line(&rx, "listening on")
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (stop, t) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let clients = load(addr, stop.clone(), t.clone());
    wait_answers(&t, 200);
    assert!(Command::new("kill")
        .args(["-USR2", &old.id().to_string()])
        .status()
        .unwrap()
        .success());
    let line = wait_line(&rx, "SIGUSR2: the new process (pid ");
    let new_pid: u32 = line
        .split("(pid ")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _new = KillOnDrop(new_pid);
    // The old one drains and exits; the load goes on through the new one.
    let status = old.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    std::mem::forget(old_pid);
    wait_answers(&t, 200);
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, refused, bad, retried) = (
        t.ok.load(Ordering::Relaxed),
        t.connect_errors.load(Ordering::Relaxed),
        t.bad_status.load(Ordering::Relaxed),
        t.retried.load(Ordering::Relaxed),
    );
    eprintln!("upgrade: {ok} answers, {refused} connect errors, {bad} not 200, {retried} retried");
    assert_eq!((refused, bad), (0, 0));
    // The new process is a portcullis serving on the same address.
    let mut c = Client::connect(addr);
    assert_eq!(c.roundtrip(&get("/after")).status, 200);
}

/// Starts portcullis on the listening socket `l` as systemd would pass it (descriptor 3, LISTEN_PID, LISTEN_FDS).
fn socket_activated(l: &TcpListener, up: SocketAddr) -> (Child, mpsc::Receiver<String>) {
    use std::os::fd::AsRawFd;
    socket2::SockRef::from(l).set_cloexec(false).unwrap();
    let script = format!(
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=listen exec \"$0\" --listen 127.0.0.1:1 --upstream {up} --workers 2 --rate 0 3<&{}",
        l.as_raw_fd()
    );
    // bash, not sh: dash reads only one-digit descriptors in a redirection (`3<&12` is a syntax error), and
    // the listener's number depends on what the other tests have open.
    let mut child = Command::new("bash")
        .args(["-c", &script, env!("CARGO_BIN_EXE_portcullis")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    socket2::SockRef::from(l).set_cloexec(true).unwrap();
    let rx = lines_of(&mut child);
    wait_line(&rx, "listening on");
    (child, rx)
}

#[test]
fn a_socket_activated_restart_refuses_nothing() {
    let up = Upstream::ok("ok");
    // The "service manager" holds the socket across the restart.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (mut a, _rx) = socket_activated(&l, up.addr);
    let (stop, t) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    let clients = load(addr, stop.clone(), t.clone());
    wait_answers(&t, 200);
    // `systemctl restart`: stop (drain), then start on the same socket; clients wait in its backlog meanwhile.
    assert!(Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap()
        .success());
    assert_eq!(a.wait().unwrap().code(), Some(0));
    let (mut b, _rx2) = socket_activated(&l, up.addr);
    wait_answers(&t, 200);
    stop.store(true, Ordering::Release);
    for c in clients {
        c.join().unwrap();
    }
    let _ = b.kill();
    let _ = b.wait();
    let (ok, refused, bad, retried) = (
        t.ok.load(Ordering::Relaxed),
        t.connect_errors.load(Ordering::Relaxed),
        t.bad_status.load(Ordering::Relaxed),
        t.retried.load(Ordering::Relaxed),
    );
    eprintln!("socket-activated restart: {ok} answers, {refused} connect errors, {bad} not 200, {retried} retried");
    assert_eq!((refused, bad), (0, 0));
}

#[test]
fn a_bad_handed_over_descriptor_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &dead_port().to_string()])
        .env("PORTCULLIS_INHERITED_FDS", "77:listen")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("inherited descriptor 77"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--listen", "127.0.0.1:0", "--upstream", &dead_port().to_string()])
        .env("PORTCULLIS_INHERITED_FDS", "77:listen,77:admin")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("named twice"), "{err}");
}
