//! The access log (`--access-log PATH`, or `-` for stdout): one JSON line per request.
//!
//! Each worker formats lines into its own buffer (no allocation once warm, no syscall per request) and
//! writes the buffer out when it passes 32 KiB, at least once a second, and at shutdown. With a file, every
//! worker appends whole buffers to the same `O_APPEND` descriptor, so lines never interleave.
//!
//! Format (one object per line): `{"time":1764427200.123,"client":"127.0.0.1","method":"GET","target":"/x",
//! "status":200,"reason":null,"bytes_in":120,"bytes_out":431,"duration_us":312,"user":"9f3a0c2e71b4d5a6"}`:
//! `time` in Unix seconds (millisecond precision), `reason` the refusal code (null when the upstream
//! answered; `aborted` when the response was cut), `would_refuse` (only present on a request an `observe` rule
//! would have refused: that refusal's code), `user` the rate-limit key's hash (null without a limit) - never the raw Authorization value.
//! Targets longer than [`TARGET_MAX`] bytes are cut and end in `...`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buf::put_u64;

/// Bytes of the request target kept per request.
pub const TARGET_MAX: usize = 128;
const FLUSH_BYTES: usize = 32 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub enum Sink {
    Stdout,
    File(Arc<File>),
}

impl Sink {
    pub fn open(path: &str) -> io::Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout);
        }
        Ok(Sink::File(Arc::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        )))
    }
}

/// One request, as logged.
pub struct Entry<'a> {
    pub time_ms: u64,
    pub client: &'a [u8],
    pub method: &'a str,
    pub target: &'a [u8],
    pub target_cut: bool,
    pub status: u16,
    pub reason: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
    pub user: Option<u64>,
    /// The refusal an `observe` rule would have given this forwarded request.
    pub would_refuse: Option<&'a str>,
}

pub struct AccessLog {
    sink: Sink,
    buf: Vec<u8>,
    last_flush: Instant,
}

impl AccessLog {
    pub fn new(sink: Sink, now: Instant) -> AccessLog {
        AccessLog {
            sink,
            buf: Vec::with_capacity(2 * FLUSH_BYTES),
            last_flush: now,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn entry(&mut self, e: &Entry<'_>) {
        let b = &mut self.buf;
        b.extend_from_slice(b"{\"time\":");
        put_u64(b, e.time_ms / 1000);
        b.push(b'.');
        let ms = e.time_ms % 1000;
        b.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
        b.extend_from_slice(b",\"client\":\"");
        b.extend_from_slice(e.client);
        b.extend_from_slice(b"\",\"method\":\"");
        b.extend_from_slice(e.method.as_bytes());
        b.extend_from_slice(b"\",\"target\":\"");
        json_escape(b, e.target);
        if e.target_cut {
            b.extend_from_slice(b"...");
        }
        b.extend_from_slice(b"\",\"status\":");
        put_u64(b, e.status as u64);
        b.extend_from_slice(b",\"reason\":");
        match e.reason {
            Some(r) => {
                b.push(b'"');
                b.extend_from_slice(r.as_bytes());
                b.push(b'"');
            }
            None => b.extend_from_slice(b"null"),
        }
        if let Some(r) = e.would_refuse {
            b.extend_from_slice(b",\"would_refuse\":\"");
            b.extend_from_slice(r.as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b",\"bytes_in\":");
        put_u64(b, e.bytes_in);
        b.extend_from_slice(b",\"bytes_out\":");
        put_u64(b, e.bytes_out);
        b.extend_from_slice(b",\"duration_us\":");
        put_u64(b, e.duration_us);
        b.extend_from_slice(b",\"user\":");
        match e.user {
            Some(h) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                b.push(b'"');
                for i in (0..16).rev() {
                    b.push(HEX[(h >> (i * 4)) as usize & 15]);
                }
                b.push(b'"');
            }
            None => b.extend_from_slice(b"null"),
        }
        b.extend_from_slice(b"}\n");
    }

    /// Whether the buffer should be written now.
    pub fn due(&self, now: Instant) -> bool {
        !self.buf.is_empty()
            && (self.buf.len() >= FLUSH_BYTES || now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY)
    }

    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        self.last_flush = now;
        if self.buf.is_empty() {
            return Ok(());
        }
        let r = match &self.sink {
            Sink::Stdout => io::stdout().lock().write_all(&self.buf),
            Sink::File(f) => (&**f).write_all(&self.buf),
        };
        self.buf.clear();
        r
    }
}

/// Escapes for a JSON string: `"`, `\`, control bytes, and bytes >= 0x80 (as `\u00XX`, targets are bytes).
fn json_escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &c in s {
        match c {
            b'"' | b'\\' => out.extend_from_slice(&[b'\\', c]),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json() {
        let mut log = AccessLog::new(Sink::Stdout, Instant::now());
        log.entry(&Entry {
            time_ms: 1_764_427_200_007,
            client: b"::1",
            method: "POST",
            target: b"/a?q=\"x\"\\\x01\xff",
            target_cut: true,
            status: 429,
            reason: Some("rate_limited"),
            bytes_in: 10,
            bytes_out: 20,
            duration_us: 30,
            user: Some(0xabc),
            would_refuse: None,
        });
        let line = String::from_utf8(log.buf.clone()).unwrap();
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"].as_f64().unwrap(), 1_764_427_200.007);
        assert_eq!(v["target"], "/a?q=\"x\"\\\u{1}\u{ff}...");
        assert_eq!(v["user"], "0000000000000abc");
        assert_eq!(v["reason"], "rate_limited");
    }
}
