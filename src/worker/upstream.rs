//! The worker's upstream connections: attaching one to a request (a pooled one, LIFO, or a new
//! non-blocking connect), events on pooled ones, and giving one back (pooled only when clean) or closing it.
//!
//! A pooled connection must never hold bytes: whatever an upstream sends unasked would be read as the next
//! request's response (response-queue poisoning, docs/security.md). So a connection is pooled only after a
//! framed body ended exactly at the end of a short read (never after a bodiless response: HEAD, 204, 304),
//! and a pooled one the poller reports readable or closed is closed, before any client event of the batch.

use mio::net::TcpStream;
use mio::Interest;

use super::{token, Attach, Ready, Upstream, Worker, UPSTREAM_IDLE_MAX};
use crate::metrics::add;
use crate::pool::{Outcome, Pick};

impl Worker {
    pub(super) fn upstream_event(&mut self, key: usize, gen: u32, readable: bool, writable: bool, hup: bool) {
        let Some(u) = self.ups.get_mut(key) else {
            return;
        };
        if u.gen != gen {
            return;
        }
        u.io.readable |= readable;
        u.io.writable |= writable;
        u.io.hup |= hup;
        match u.owner {
            Some((ck, cgen)) if self.clients.get(ck).is_some_and(|c| c.gen == cgen) => self.drive(ck),
            Some(_) => {}
            None if readable || hup => self.pooled_event(key, gen),
            None => {}
        }
    }

    /// A readable (or closed) event on upstream connection `key`: if it is pooled, it spoke or closed
    /// unasked and is closed. The run loop calls this for every such event of a batch before any other
    /// event, so no client can take a pooled connection whose bytes are already known to be waiting.
    pub(super) fn pooled_event(&mut self, key: usize, gen: u32) {
        if let Some(u) = self.ups.get(key).filter(|u| u.gen == gen && u.owner.is_none()) {
            self.idle_ups[u.server as usize].retain(|&k| k != key);
            self.ups.remove(key);
        }
    }

    /// Gives client `key` an upstream connection to a server of its request's pool (chosen by the pool's
    /// balancing, among the servers not tried yet for this request): a pooled one unless `fresh`, else a new
    /// connect.
    pub(super) fn attach_upstream(&mut self, key: usize, fresh: bool) -> Attach {
        let c = &mut self.clients[key];
        let cgen = c.gen;
        if !fresh {
            // A new request (a retry asks for a fresh connection): every server may be tried again.
            c.tried = 0;
            c.avoid = 0;
        }
        let pools = &self.pools;
        let gen = self.pools_gen as u32;
        let mut pool = c.conn.pool();
        if c.conn.routed_gen() != gen {
            // Routed under the pools a reload just replaced: the pool of the same name now, if any.
            let name = match &self.prev_pools {
                Some((prev, g)) if *g as u32 == c.conn.routed_gen() => prev.specs().get(pool).map(|p| p.name.as_str()),
                _ => None,
            };
            match name.and_then(|n| pools.pool_named(n)) {
                Some(p) => pool = p,
                None => return Attach::Failed,
            }
        }
        let server = match pools.single(pool) {
            // A pool of one server: nothing to choose; a retry goes to it again (on a fresh connection: after a
            // stale pooled one, that is the right retry; after a failure, `--retries` bounds the attempts).
            Some(s) => s,
            None => {
                let user = if pools.by_user(pool) { c.conn.user_hash() } else { 0 };
                let mut pick = pools.pick(pool, user, c.tried | c.avoid, self.wall_ms, &mut self.chooser);
                if pick == Pick::Exhausted && c.avoid != 0 {
                    // Only servers with a stale connection are left: one of them takes the retry.
                    pick = pools.pick(pool, user, c.tried, self.wall_ms, &mut self.chooser);
                }
                match pick {
                    Pick::Server(s) => s,
                    Pick::NoHealthy => return Attach::NoHealthy,
                    Pick::Exhausted => return Attach::Failed,
                }
            }
        };
        c.server = Some(server as u32);
        c.server_gen = gen;
        c.attached_us = self.mono_us;
        c.conn.upstream_server(server, gen);
        let mut reused = false;
        let mut uk = None;
        if !fresh {
            let addr_gen = self.pools.addr_gen(server);
            while let Some(k) = self.idle_ups[server].pop() {
                let u = &self.ups[k];
                // A pending readable event (bytes or EOF the poller reported) disqualifies it; so does an
                // address the server's name no longer resolves to.
                let clean = !u.io.readable && !u.io.hup && u.addr_gen == addr_gen;
                if clean && self.now.saturating_duration_since(u.idle_since) < UPSTREAM_IDLE_MAX {
                    uk = Some(k);
                    reused = true;
                    break;
                }
                self.ups.remove(k);
            }
        }
        // Counted as outstanding from here until it is released (an attach that fails is released too).
        self.pools.attached(server, self.id);
        let uk = match uk {
            Some(k) => k,
            None => {
                let Ok(mut sock) = TcpStream::connect(self.pools.addr(server)) else {
                    return Attach::Failed;
                };
                let _ = sock.set_nodelay(true);
                let gen = self.next_gen();
                let entry = self.ups.vacant_entry();
                let k = entry.key();
                if self
                    .poll
                    .registry()
                    .register(&mut sock, token(k, gen, true), Interest::READABLE | Interest::WRITABLE)
                    .is_err()
                {
                    return Attach::Failed;
                }
                entry.insert(Upstream {
                    addr_gen: self.pools.addr_gen(server),
                    sock,
                    gen,
                    io: Ready::default(),
                    connected: false,
                    owner: None,
                    server: server as u32,
                    idle_since: self.now,
                });
                k
            }
        };
        let m = &self.shared.metrics[self.id];
        add(if reused { &m.upstream_reused } else { &m.upstream_opened }, 1);
        let u = &mut self.ups[uk];
        u.owner = Some((key, cgen));
        self.clients[key].upstream = Some(uk);
        Attach::Ok {
            reused,
            connected: u.connected,
        }
    }

    /// Detaches client `key`'s upstream connection (pooled if `reusable` and clean, else closed) and reports
    /// how the request to its server ended (`None`: no answer to hold against the server, e.g. a pooled
    /// connection the server had closed, or a client gone).
    pub(super) fn release_upstream(&mut self, key: usize, reusable: bool, outcome: Option<Outcome>) {
        let c = &mut self.clients[key];
        let current = c.server_gen == self.pools_gen as u32;
        if let Some(s) = c.server.take().filter(|_| current) {
            let pools = &self.pools;
            pools.released(s as usize, self.id, outcome, self.wall_ms);
            // A tunnel's lifetime is no request duration.
            if outcome.is_some_and(|o| o != Outcome::Status(101)) {
                let us = self.mono_us.saturating_sub(c.attached_us);
                pools.took(s as usize, self.id, us);
            }
        }
        let Some(uk) = c.upstream.take() else {
            return;
        };
        // Pool only a connection known to be drained (its last read was short) and not half-closed: bytes
        // past a response must never be read as the next request's response.
        let u = &self.ups[uk];
        let clean = !u.io.readable && !u.io.hup && current;
        let slot = (u.server as usize).min(self.idle_ups.len().saturating_sub(1));
        let list = &mut self.idle_ups[slot];
        if reusable && clean && !self.draining && list.len() < self.shared.config.upstream_pool {
            let u = &mut self.ups[uk];
            u.owner = None;
            u.idle_since = self.now;
            list.push(uk);
        } else {
            self.ups.remove(uk);
        }
    }
}
