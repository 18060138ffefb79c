//! A worker's listening socket: connections accepted up to the process's cap (the rest wait in the kernel's
//! backlog), and a pause instead of a spin when the process runs out of file descriptors.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

use crate::timer::TICK;

/// Pause after the process runs out of file descriptors, instead of spinning on accept.
const BACKOFF: Duration = Duration::from_millis(100);
/// The line about it is logged at most this often: the condition can last, the log must not flood.
const WARN_EVERY: Duration = Duration::from_secs(10);

pub struct Listener {
    /// `None` once closed (at shutdown).
    sock: Option<TcpListener>,
    /// The poller reported connections, and no accept has said `WouldBlock` since.
    ready: bool,
    /// Accepts are paused until then (at the cap, or out of descriptors).
    resume: Option<Instant>,
    warned: Option<Instant>,
    worker: usize,
    /// Its clients speak TLS.
    pub tls: bool,
}

impl Listener {
    pub fn new(
        mut sock: TcpListener,
        registry: &Registry,
        token: Token,
        worker: usize,
        tls: bool,
    ) -> io::Result<Listener> {
        registry.register(&mut sock, token, Interest::READABLE)?;
        Ok(Listener {
            sock: Some(sock),
            ready: true,
            resume: None,
            warned: None,
            worker,
            tls,
        })
    }

    /// The poller reported it readable.
    pub fn readable(&mut self) {
        self.ready = true;
    }

    /// How soon the event loop must come back to accept: at once after a batch that left the backlog
    /// non-empty, a tick while paused.
    pub fn poll_within(&self) -> Option<Duration> {
        if self.resume.is_some() {
            Some(TICK)
        } else if self.ready && self.sock.is_some() {
            Some(Duration::ZERO)
        } else {
            None
        }
    }

    /// The next connection to serve, if any may be accepted now: `open` (the process's open connections)
    /// below `max`, and no pause in force.
    pub fn next(&mut self, now: Instant, open: &AtomicUsize, max: usize) -> Option<(TcpStream, SocketAddr)> {
        let sock = self.sock.as_ref().filter(|_| self.ready)?;
        if let Some(at) = self.resume {
            if now < at {
                return None;
            }
            self.resume = None;
        }
        loop {
            if open.load(Ordering::Relaxed) >= max {
                // At the cap: leave the rest in the kernel backlog and look again next tick.
                self.resume = Some(now + TICK);
                return None;
            }
            match sock.accept() {
                Ok(c) => return Some(c),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.ready = false;
                    return None;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // EMFILE / ENFILE / ENOBUFS: back off instead of spinning; the backlog holds the clients.
                    if self
                        .warned
                        .is_none_or(|t| now.saturating_duration_since(t) >= WARN_EVERY)
                    {
                        self.warned = Some(now);
                        crate::warn!(
                            "worker {}: accept failed ({e}); pausing accepts for {BACKOFF:?} at a time",
                            self.worker
                        );
                    }
                    self.resume = Some(now + BACKOFF);
                    return None;
                }
            }
        }
    }

    /// Stops listening (shutdown): new connections go to the other workers or wait for the next process.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut l) = self.sock.take() {
            let _ = registry.deregister(&mut l);
        }
    }
}
