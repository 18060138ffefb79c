//! The bytes between a socket and the connection machine: one read into the machine's buffer, one write
//! out of it, with the socket's readiness kept in user space (edge-triggered polling: a bit is cleared only
//! when the socket says so, or when a short read shows it drained).
//!
//! Generic over `Read + Write`, so that the worker's plain TCP sockets and any stream layered on them share
//! the same accounting.

use std::io::{self, Read, Write};

use crate::buf::Buf;
use crate::proxy::Input;

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
