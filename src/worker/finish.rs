//! The end of an exchange: flushing the answer, then the next request, dropping a refused body, or a
//! lingering close; and what a passed deadline means in each phase.

use std::io::{self, Read};

use std::net::Shutdown;

use super::conn::{read_once, write_out, Client, Env, Phase, ReadResult, Step};
use crate::http::Reason;

/// Reads per step while lingering (each up to a pool buffer, 16 KiB or more).
const LINGER_READS_PER_STEP: usize = 16;

impl Client {
    pub(super) fn flush_step(&mut self, env: &mut Env<'_>) -> Step {
        if let Some(out) = self.out.as_mut() {
            match write_out(&mut self.sock, &mut self.io, out) {
                Ok(true) => {}
                Ok(false) => return Step::Wait,
                Err(_) => return Step::Close,
            }
        }
        if let Some(b) = self.out.take() {
            env.bufs.put(b);
        }
        if let Some(b) = self.ex.fwd.take() {
            env.bufs.put(b);
        }
        if self.ex.close_after || env.draining {
            let _ = self.sock.shutdown(Shutdown::Write);
            let t = env.shared.config.timeouts;
            // While the process drains, a lingering connection must not hold it up for long.
            let time = if env.draining {
                t.linger_time.min(super::DRAIN_IDLE_GRACE)
            } else {
                t.linger_time
            };
            self.phase = Phase::Linger { until: env.now + time };
            self.deadline = env.now + t.linger_timeout.min(t.linger_time);
            return Step::Continue;
        }
        if self.ex.discard > 0 {
            self.phase = Phase::Discard;
            self.deadline = env.now + env.shared.config.timeouts.body;
            return Step::Continue;
        }
        self.phase = Phase::Head { started: false };
        self.deadline = env.now + env.shared.config.timeouts.idle;
        env.bufs.put_if_empty(&mut self.inbuf);
        Step::Continue
    }

    pub(super) fn discard_step(&mut self, env: &mut Env<'_>) -> Step {
        loop {
            let inb = self.inbuf.get_or_insert_with(|| env.bufs.get());
            let n = (inb.len() as u64).min(self.ex.discard);
            inb.consume(n as usize);
            self.ex.discard -= n;
            if self.ex.discard == 0 {
                if env.draining {
                    // The answer is out and the body dropped: nothing keeps a draining connection.
                    return Step::Close;
                }
                self.phase = Phase::Head { started: false };
                self.deadline = env.now + env.shared.config.timeouts.idle;
                env.bufs.put_if_empty(&mut self.inbuf);
                return Step::Continue;
            }
            if !self.io.readable {
                return if self.io.hup { Step::Close } else { Step::Wait };
            }
            match read_once(&mut self.sock, &mut self.io, inb) {
                Ok(ReadResult::Data) => {}
                Ok(ReadResult::WouldBlock) => return Step::Wait,
                Ok(ReadResult::Full | ReadResult::Eof) | Err(_) => return Step::Close,
            }
        }
    }

    /// Reads and drops what the client sends, into a pooled buffer held only during this step.
    pub(super) fn linger_step(&mut self, env: &mut Env<'_>) -> Step {
        let Phase::Linger { until } = self.phase else {
            return Step::Close;
        };
        if env.now >= until {
            return Step::Close;
        }
        if !self.io.readable {
            return if self.io.hup { Step::Close } else { Step::Wait };
        }
        let mut scratch = env.bufs.get();
        // A budget of reads per step: a fast sender must not keep the worker here (the worker steps again).
        let mut reads = 0;
        let step = loop {
            if reads == LINGER_READS_PER_STEP {
                break Step::Continue;
            }
            reads += 1;
            if !self.io.readable {
                break if self.io.hup { Step::Close } else { Step::Wait };
            }
            scratch.clear();
            match self.sock.read(scratch.spare()) {
                Ok(0) => break Step::Close,
                Ok(_) => {
                    // Still sending: wait for it a while longer, never past `until`.
                    self.deadline = (env.now + env.shared.config.timeouts.linger_timeout).min(until);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.readable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Step::Close,
            }
        };
        env.bufs.put(scratch);
        step
    }

    /// The connection's deadline passed: what to do depends on where it is.
    pub fn on_timeout(&mut self, env: &mut Env<'_>) -> Step {
        match self.phase {
            Phase::Head { started: false } | Phase::Linger { .. } | Phase::Flush | Phase::Relay | Phase::Discard => {
                Step::Close
            }
            Phase::Head { started: true } => {
                // The head never completed: a fresh exchange (not the previous request's) is answered.
                self.begin_exchange(super::conn::Exchange::idle(env.now));
                self.ex.keep_alive = false;
                self.respond(env, Reason::RequestTimeout)
            }
            Phase::Body { .. } => {
                self.ex.keep_alive = false;
                self.respond(env, Reason::RequestTimeout)
            }
            Phase::Upstream => Step::UpstreamFailed {
                retry: false,
                reason: Some(Reason::UpstreamTimeout),
            },
        }
    }
}
