//! What comes before a client connection's machine: the PROXY protocol header (read without reading past
//! it) and, over TLS, records rustls still holds and a shutdown waiting for them.

use std::io;

use super::{Client, Worker};
use crate::metrics::add;
use crate::transport::tls_flush;

impl Worker {
    /// What comes before the machine on TLS and PROXY-protocol connections; `false` when the connection
    /// waits or was closed. Out of line: a plain connection's drive pays one test for both.
    #[inline(never)]
    pub(super) fn drive_prelude(&mut self, key: usize) -> bool {
        let c = &mut self.clients[key];
        if let Some(tls) = c.tls.as_deref_mut() {
            // Records rustls still holds go out as soon as the socket takes them (a tunnel may have nothing
            // else to write to this side for a while), and a shutdown waiting for them follows.
            if tls.conn.wants_write() && c.io.writable {
                let _ = tls_flush(&mut c.sock, &mut c.io, tls);
            }
            if c.shut_pending && !tls.conn.wants_write() {
                c.shut_pending = false;
                let _ = c.sock.shutdown(std::net::Shutdown::Write);
            }
        }
        if self.clients[key].preamble {
            let Some(pp) = &self.shared.config.proxy_protocol else {
                return false;
            };
            let m = &self.shared.metrics[self.id];
            match preamble(&mut self.clients[key], pp.accept) {
                Preamble::Wait => {
                    self.arm_timer(key);
                    return false;
                }
                Preamble::Invalid => {
                    add(&m.proxy_headers[2], 1);
                    self.close_client(key, false);
                    return false;
                }
                Preamble::Done(local) => add(&m.proxy_headers[usize::from(local)], 1),
            }
        }
        true
    }
}

/// Where a connection's PROXY protocol header stands.
enum Preamble {
    /// Incomplete so far: wait for more bytes (or the header timeout).
    Wait,
    /// Malformed, or the connection ended first: close without an answer.
    Invalid,
    /// Taken from the socket (and the client address it named, if any, given to the machine); `true` for a
    /// header that named none (`LOCAL`, `UNKNOWN`, other address families).
    Done(bool),
}

/// Reads the connection's PROXY protocol header, and nothing past it: the bytes are peeked at until a whole
/// header is there, then exactly its length is read (what follows belongs to HTTP or TLS). HAProxy reads it
/// the same way. Runs only before a connection's first byte of HTTP or TLS.
#[inline(never)]
fn preamble(c: &mut Client, accept: crate::proxy_protocol::Accept) -> Preamble {
    use crate::proxy_protocol::{parse, Parsed, PREFIX, V2_MAX};
    let mut buf = [0u8; V2_MAX];
    let mut want = PREFIX;
    loop {
        if !c.io.readable {
            return Preamble::Wait;
        }
        let n = match c.sock.peek(&mut buf[..want]) {
            Ok(0) => return Preamble::Invalid,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.io.readable = false;
                return Preamble::Wait;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Preamble::Invalid,
        };
        match parse(&buf[..n], accept) {
            Parsed::Incomplete { want: more } if more > n && more <= buf.len() => {
                if n < want {
                    // Everything that has arrived was seen: the next bytes come with the next event.
                    if c.io.hup {
                        return Preamble::Invalid;
                    }
                    c.io.readable = false;
                    return Preamble::Wait;
                }
                want = more;
            }
            Parsed::Incomplete { .. } | Parsed::Invalid(_) => return Preamble::Invalid,
            Parsed::Done { len, source } => {
                let mut taken = 0;
                while taken < len {
                    match io::Read::read(&mut c.sock, &mut buf[taken..len]) {
                        Ok(0) => return Preamble::Invalid,
                        Ok(k) => taken += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // The bytes were there when peeked; anything else is a broken connection.
                        Err(_) => return Preamble::Invalid,
                    }
                }
                c.preamble = false;
                if let Some(addr) = source {
                    c.conn.proxied_from(addr.ip());
                }
                return Preamble::Done(source.is_none());
            }
        }
    }
}
