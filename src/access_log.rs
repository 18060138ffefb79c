//! The access log (`--access-log PATH`, or `-` for stdout): one JSON line per request.
//!
//! Each worker formats lines into its own buffer (no allocation once warm, no syscall per request) and hands
//! the buffer to the log's writer thread when it passes 32 KiB, at least once a second, and at shutdown; the
//! writer appends whole buffers (lines never interleave) and hands the emptied buffer back. Workers never
//! write to the file themselves: a slow or stalled disk (or a pipe nobody reads) cannot stall an event loop.
//! When the writer falls behind by [`QUEUE_PER_WORKER`] buffers per worker, a worker drops its buffer's lines
//! instead of waiting, and counts them (`portcullis_access_log_dropped_lines_total`).
//!
//! Format (one object per line): `{"time":1764427200.123,"client":"127.0.0.1","method":"GET","target":"/x",
//! "status":200,"reason":null,"bytes_in":120,"bytes_out":431,"duration_us":312,"user":"9f3a0c2e71b4d5a6"}`:
//! `time` in Unix seconds (millisecond precision), `reason` the refusal code (null when the upstream
//! answered; `aborted` when the response was cut), `would_refuse` (only present on a request an `observe` rule
//! would have refused: that refusal's code), `user` the rate-limit key's hash (null without a limit) - never the raw Authorization value;
//! over TLS, `tls` (the protocol version, e.g. `TLSv1.3`) and `sni` (the name the client asked for, empty without);
//! with `--request-id-header`, `request_id`; when the client sent a W3C `traceparent`, `traceparent` (its first
//! 64 bytes).
//! Targets longer than [`TARGET_MAX`] bytes are cut and end in `...`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::buf::put_u64;

pub use crate::proxy::TARGET_MAX;
const FLUSH_BYTES: usize = 32 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Full buffers a worker may have queued for the writer before it drops lines rather than wait.
pub const QUEUE_PER_WORKER: usize = 4;

pub enum Sink {
    Stdout,
    File { path: String, file: File },
}

impl Sink {
    pub fn open(path: &str) -> io::Result<Sink> {
        if path == "-" {
            return Ok(Sink::Stdout);
        }
        Ok(Sink::File {
            path: path.to_string(),
            file: OpenOptions::new().create(true).append(true).open(path)?,
        })
    }

    /// Opens the file again by its path (after a rotation moved it away: SIGUSR1).
    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = OpenOptions::new().create(true).append(true).open(&*path)?;
        }
        Ok(())
    }
}

pub use crate::proxy::Entry;

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().write_all(bytes),
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// A full buffer and the worker it goes back to.
type ToWriter = SyncSender<(usize, Vec<u8>)>;

/// The process's access log: the writer thread and what workers need to reach it.
pub struct Hub {
    /// Full buffers to the writer, tagged with the worker they go back to. Taken at shutdown so that the
    /// writer sees the end.
    to_writer: Mutex<Option<ToWriter>>,
    /// Each worker's channel of emptied buffers, taken by the worker when it starts.
    returns: Mutex<Vec<Option<Receiver<Vec<u8>>>>>,
    /// Lines dropped because the writer was behind.
    pub dropped: Arc<AtomicU64>,
    /// Set by SIGUSR1: the writer reopens the file before its next write.
    reopen: Arc<AtomicBool>,
    done: Mutex<Option<Receiver<()>>>,
}

impl Hub {
    /// Starts the writer thread for `workers` workers.
    pub fn start(mut sink: Sink, workers: usize) -> io::Result<Hub> {
        let reopen = Arc::new(AtomicBool::new(false));
        let reopen2 = reopen.clone();
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<(usize, Vec<u8>)>(workers * QUEUE_PER_WORKER);
        let (back, returns): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| {
                let (t, r) = sync_channel::<Vec<u8>>(QUEUE_PER_WORKER + 1);
                (t, Some(r))
            })
            .unzip();
        let (done_tx, done_rx) = sync_channel(1);
        std::thread::Builder::new().name("access-log".into()).spawn(move || {
            let mut failing = false;
            for (worker, mut buf) in rx {
                if reopen2.swap(false, Ordering::AcqRel) {
                    if let Err(e) = sink.reopen() {
                        crate::warn!("access log: reopening failed: {e} (still writing to the old file)");
                    }
                }
                match sink.write_all(&buf) {
                    Ok(()) if failing => {
                        failing = false;
                        crate::info!("access log: writing again");
                    }
                    Err(e) if !failing => {
                        failing = true;
                        crate::warn!("access log: write failed: {e} (lines are lost until it works again)");
                    }
                    _ => {}
                }
                buf.clear();
                if let Some(b) = back.get(worker) {
                    let _ = b.try_send(buf);
                }
            }
            let _ = done_tx.send(());
        })?;
        Ok(Hub {
            to_writer: Mutex::new(Some(tx)),
            returns: Mutex::new(returns),
            dropped: Arc::new(AtomicU64::new(0)),
            reopen,
            done: Mutex::new(Some(done_rx)),
        })
    }

    /// The file is reopened by its path before the next write (SIGUSR1, after a rotation).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// Worker `id`'s end of the log.
    pub fn worker(&self, id: usize, now: Instant) -> Option<AccessLog> {
        let tx = self.to_writer.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let returns = self
            .returns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(id)?
            .take()?;
        Some(AccessLog {
            id,
            tx,
            returns,
            dropped: self.dropped.clone(),
            buf: Vec::with_capacity(2 * FLUSH_BYTES),
            lines: 0,
            last_flush: now,
        })
    }

    /// After the workers have finished (and handed over their last buffers): lets the writer finish and waits
    /// for it, at most `grace` (a stalled file must not keep the process from exiting).
    pub fn close(&self, grace: Duration) {
        drop(self.to_writer.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(done) = self.done.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if done.recv_timeout(grace).is_err() {
                crate::warn!("access log: the writer did not finish within {grace:?}; its last lines may be lost");
            }
        }
    }
}

/// The access log (when on) and the debug log, as the machine reports to them.
pub struct Logs<'a>(pub Option<&'a mut AccessLog>);

impl crate::proxy::Observer for Logs<'_> {
    fn wants_entries(&self) -> bool {
        self.0.is_some()
    }
    fn entry(&mut self, e: &crate::proxy::Entry<'_>) {
        if let Some(l) = self.0.as_mut() {
            l.entry(e);
        }
    }
    fn refused(&mut self, peer: &[u8], method: &str, target: &[u8], reason: crate::problem::Reason) {
        crate::debug!(
            "{} {} {}: {} {}",
            String::from_utf8_lossy(peer),
            method,
            String::from_utf8_lossy(target),
            reason.status(),
            reason.code()
        );
    }
}

/// A worker's end of the access log.
pub struct AccessLog {
    id: usize,
    tx: ToWriter,
    returns: Receiver<Vec<u8>>,
    dropped: Arc<AtomicU64>,
    buf: Vec<u8>,
    /// Lines in `buf`.
    lines: u64,
    last_flush: Instant,
}

impl AccessLog {
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn entry(&mut self, e: &Entry<'_>) {
        self.lines += 1;
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
        b.extend_from_slice(b"\",\"peer\":\"");
        b.extend_from_slice(e.peer);
        b.extend_from_slice(b"\",\"host\":\"");
        json_escape(b, e.host);
        b.extend_from_slice(b"\",\"user_agent\":\"");
        json_escape(b, e.user_agent);
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
        if let Some((version, sni)) = e.tls {
            b.extend_from_slice(b",\"tls\":\"");
            b.extend_from_slice(version.as_bytes());
            b.extend_from_slice(b"\",\"sni\":\"");
            json_escape(b, sni);
            b.push(b'"');
        }
        if let Some(id) = e.request_id {
            b.extend_from_slice(b",\"request_id\":\"");
            json_escape(b, id);
            b.push(b'"');
        }
        if let Some(tp) = e.traceparent {
            b.extend_from_slice(b",\"traceparent\":\"");
            json_escape(b, tp);
            b.push(b'"');
        }
        if let Some((pool, server)) = e.upstream {
            b.extend_from_slice(b",\"pool\":\"");
            json_escape(b, pool.as_bytes());
            b.extend_from_slice(b"\",\"server\":\"");
            json_escape(b, server.as_bytes());
            b.push(b'"');
        }
        b.extend_from_slice(b",\"bytes_in\":");
        put_u64(b, e.bytes_in);
        b.extend_from_slice(b",\"bytes_out\":");
        put_u64(b, e.bytes_out);
        b.extend_from_slice(b",\"duration_us\":");
        put_u64(b, e.duration_us);
        for (name, v) in [
            (&b",\"upstream_connect_us\":"[..], e.upstream_connect_us),
            (b",\"upstream_response_us\":", e.upstream_response_us),
        ] {
            b.extend_from_slice(name);
            match v {
                Some(v) => put_u64(b, v as u64),
                None => b.extend_from_slice(b"null"),
            }
        }
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

    /// The worker is exiting: hands the last buffer over, waiting for room at most `grace` (the only time a
    /// worker waits for the writer).
    pub fn flush_final(&mut self, grace: Duration) {
        if self.buf.is_empty() {
            return;
        }
        let until = Instant::now() + grace;
        let mut full = std::mem::take(&mut self.buf);
        loop {
            match self.tx.try_send((self.id, full)) {
                Ok(()) => return,
                Err(TrySendError::Full((_, back))) if Instant::now() < until => {
                    full = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => {
                    self.dropped.fetch_add(self.lines, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Hands the buffer to the writer (never waits: with the writer behind, the lines are dropped and counted)
    /// and takes an emptied one back.
    pub fn flush(&mut self, now: Instant) -> io::Result<()> {
        self.last_flush = now;
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .returns
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(2 * FLUSH_BYTES));
        let full = std::mem::replace(&mut self.buf, next);
        match self.tx.try_send((self.id, full)) {
            Ok(()) => {}
            Err(TrySendError::Full((_, mut full)) | TrySendError::Disconnected((_, mut full))) => {
                self.dropped.fetch_add(self.lines, Ordering::Relaxed);
                // Keep the larger buffer; the other one goes.
                full.clear();
                if full.capacity() > self.buf.capacity() {
                    self.buf = full;
                }
            }
        }
        self.lines = 0;
        Ok(())
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
        let hub = Hub::start(Sink::Stdout, 1).unwrap();
        let mut log = hub.worker(0, Instant::now()).unwrap();
        log.entry(&Entry {
            time_ms: 1_764_427_200_007,
            client: b"::1",
            peer: b"::1",
            host: b"api.example",
            user_agent: b"curl/8 \"x\"",
            upstream_connect_us: None,
            upstream_response_us: Some(250),
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
            tls: Some(("TLSv1.3", b"api.example")),
            request_id: Some(b"4bf92f3577b34da6a3ce929d0e0e4736"),
            upstream: Some(("default", "127.0.0.1:9000")),
            traceparent: Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        });
        let line = String::from_utf8(log.buf.clone()).unwrap();
        assert!(line.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"].as_f64().unwrap(), 1_764_427_200.007);
        assert_eq!(v["target"], "/a?q=\"x\"\\\u{1}\u{ff}...");
        assert_eq!(v["user"], "0000000000000abc");
        assert_eq!(v["reason"], "rate_limited");
        assert_eq!(v["user_agent"], "curl/8 \"x\"");
        assert!(v["upstream_connect_us"].is_null() && v["upstream_response_us"] == 250);
        assert_eq!(
            (v["tls"].as_str(), v["sni"].as_str()),
            (Some("TLSv1.3"), Some("api.example"))
        );
        assert_eq!(v["request_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            v["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
