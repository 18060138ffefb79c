//! The bytes between a socket and the connection machine: one read into the machine's buffer, one write
//! out of it, with the socket's readiness kept in user space (edge-triggered polling: a bit is cleared only
//! when the socket says so, or when a short read shows it drained).
//!
//! Generic over `Read + Write`, so that the worker's plain TCP sockets and any stream layered on them share
//! the same accounting.

use std::io::{self, Read, Write};

use crate::buf::Buf;
use crate::metrics::add;
use crate::proxy::{Connection, Cx, Input};

/// Readiness as last reported by the poller, kept in user space.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer shut down its write side (sticky).
    pub hup: bool,
}

/// What one read found.
pub enum ReadResult {
    Data,
    Eof,
    WouldBlock,
    Full,
}

/// Reads once into `buf`. A short read means the socket is drained (edge-triggered): the readable bit is
/// cleared without paying for a read that would return `WouldBlock`.
pub fn read_once(sock: &mut impl Read, io: &mut Ready, buf: &mut Buf) -> io::Result<ReadResult> {
    let spare = buf.spare();
    let want = spare.len();
    if want == 0 {
        return Ok(ReadResult::Full);
    }
    loop {
        match sock.read(spare) {
            Ok(0) => {
                io.hup = true;
                return Ok(ReadResult::Eof);
            }
            Ok(n) => {
                buf.filled(n);
                if n < want && !io.hup {
                    io.readable = false;
                }
                return Ok(ReadResult::Data);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                return Ok(ReadResult::WouldBlock);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The outcome of a read as the machine sees it; `None`: nothing to read now.
pub fn input(r: io::Result<ReadResult>) -> Option<Input> {
    match r {
        Ok(ReadResult::Data) => Some(Input::Data),
        Ok(ReadResult::WouldBlock) => None,
        Ok(ReadResult::Full) => Some(Input::Full),
        Ok(ReadResult::Eof) | Err(_) => Some(Input::Eof),
    }
}

/// Writes as much of `buf` as the socket takes. `Ok(true)` once it is empty.
pub fn write_out(sock: &mut impl Write, io: &mut Ready, buf: &mut Buf) -> io::Result<bool> {
    while !buf.is_empty() {
        match write_some(sock, io, buf.data())? {
            Some(n) => buf.consume(n),
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// One write of (part of) `data`: `Ok(Some(n))` bytes taken, `Ok(None)` when the socket takes nothing now.
pub fn write_some(sock: &mut impl Write, io: &mut Ready, data: &[u8]) -> io::Result<Option<usize>> {
    loop {
        if !io.writable {
            return Ok(None);
        }
        match sock.write(data) {
            Ok(0) if !data.is_empty() => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A TLS client connection's state besides its socket.
pub struct Tls {
    pub conn: rustls::ServerConnection,
    /// The handshake's outcome was counted (ok or failed).
    pub counted: bool,
}

/// Why a TLS connection failed, as the handshake metric names it.
pub fn failure_reason(e: &rustls::Error) -> &'static str {
    use rustls::Error as E;
    match e {
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible",
        E::General(m) if m.contains("no server certificate") => "no_certificate",
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "bad_message"
        }
        E::PeerMisbehaved(_) | E::DecryptError => "bad_message",
        E::AlertReceived(_) => "alert_received",
        _ => "other",
    }
}

/// A reader that says whether its one read came back short (the socket is then drained: edge-triggered
/// polling needs no further read to learn it).
struct Short<'a, S> {
    sock: &'a mut S,
    short: bool,
}

impl<S: Read> Read for Short<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

/// Reads plaintext into `buf`: records from the socket are decrypted, handshake messages answered. A
/// protocol error is returned after the alert rustls queued was sent (as far as the socket takes it).
pub fn tls_read(
    sock: &mut (impl Read + Write),
    io: &mut Ready,
    tls: &mut Tls,
    buf: &mut Buf,
) -> io::Result<ReadResult> {
    loop {
        let spare = buf.spare();
        if spare.is_empty() {
            return Ok(ReadResult::Full);
        }
        match tls.conn.reader().read(spare) {
            // A close_notify: the client sends no more.
            Ok(0) => return Ok(ReadResult::Eof),
            Ok(n) => {
                buf.filled(n);
                return Ok(ReadResult::Data);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The peer closed without a close_notify: as a plain EOF (a truncated request is refused anyway).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(ReadResult::Eof),
            Err(e) => return Err(e),
        }
        // Handshake answers (or a key update) to send before reading on.
        tls_flush(sock, io, tls)?;
        if !io.readable {
            return Ok(ReadResult::WouldBlock);
        }
        let mut r = Short { sock, short: false };
        match tls.conn.read_tls(&mut r) {
            Ok(0) => {
                io.hup = true;
                return Ok(ReadResult::Eof);
            }
            Ok(_) => {
                if r.short && !io.hup {
                    io.readable = false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                io.readable = false;
                return Ok(ReadResult::WouldBlock);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.conn.process_new_packets() {
            let _ = tls_flush(sock, io, tls);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// Writes the TLS records rustls holds (all that are ready, in one vectored write). `Ok(true)` once none
/// are left.
pub fn tls_flush(sock: &mut impl Write, io: &mut Ready, tls: &mut Tls) -> io::Result<bool> {
    while tls.conn.wants_write() {
        if !io.writable {
            return Ok(false);
        }
        match tls.conn.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Encrypts and writes `buf`. `Ok(true)` once it is empty and every record is on the socket. Plaintext is
/// handed to rustls only when it holds nothing unsent, so what it buffers stays bounded by one `buf`.
pub fn tls_write(sock: &mut impl Write, io: &mut Ready, tls: &mut Tls, buf: &mut Buf) -> io::Result<bool> {
    loop {
        if !buf.is_empty() && !tls.conn.wants_write() {
            let n = tls.conn.writer().write(buf.data())?;
            buf.consume(n);
        }
        if !tls_flush(sock, io, tls)? {
            return Ok(false);
        }
        if buf.is_empty() {
            return Ok(true);
        }
    }
}

/// Counts a TLS handshake's outcome once: finished (and resumed or not; the machine learns the version and
/// SNI for the access log), or failed with `err`.
pub fn handshake_outcome(tls: &mut Tls, conn: &mut Connection, err: Option<&io::Error>, cx: &mut Cx<'_>) {
    if tls.counted {
        return;
    }
    let m = cx.metrics;
    if let Some(e) = err {
        tls.counted = true;
        let reason = e
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .map_or("other", failure_reason);
        count_failure(m, reason);
    } else if !tls.conn.is_handshaking() {
        tls.counted = true;
        add(&m.tls_handshakes_ok, 1);
        if tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            add(&m.tls_resumed, 1);
        }
        let version = match tls.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        conn.tls_established(version, tls.conn.server_name(), cx);
    }
}

pub fn count_failure(m: &crate::metrics::WorkerMetrics, reason: &str) {
    let i = crate::metrics::TLS_FAILURES
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(crate::metrics::TLS_FAILURES.len() - 1);
    add(&m.tls_failed[i], 1);
}
