//! Redis Cluster: where each group's calls go, and a thread per node so that nodes never wait on each other.
//!
//! The slot map (`CLUSTER SLOTS`, asked of any node that answers, seeds first) says which master serves each
//! hash slot; a group's slot is the CRC16 of its hash tag. A refresher thread asks for the map at start, every
//! [`REFRESH_EVERY`], and soon after a node asks (a `MOVED`, a node down), at most once per [`REFRESH_GAP`].
//! Each master gets its own thread with its own connection and timeout: the dispatcher (the sync thread) hands
//! it the users of its groups every sync and never waits for it, so a slow or dead master delays only its own
//! users' reports. Users handed to a node still busy with the previous round trip are merged into its next one
//! (at most `MAX_BATCH` users wait; past that they are counted as unreported); a node that is down drops what
//! it is handed, counted as unreported, exactly as a single Redis that is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, Value};

use super::node::{Context, Node, Redirect, Redirected, Work};
use super::{Stats, MAX_BATCH};
use crate::limit::fleet::{group, group_tag, Quiet, Report};
use crate::limit::Limiter;

/// How often the slot map is read even when nothing asked for it.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Least time between two reads of the slot map.
pub const REFRESH_GAP: Duration = Duration::from_millis(100);
/// Redis Cluster's hash slots.
pub const SLOTS: u16 = 16_384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum Redis Cluster places keys by.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The hash slot of a key whose hash tag is `tag`.
pub fn slot_of_tag(tag: &[u8]) -> u16 {
    crc16(tag) % SLOTS
}

/// The slot of group `g`'s keys.
pub fn group_slot(g: u32) -> u16 {
    slot_of_tag(&group_tag(g))
}

/// Which master serves each slot range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotMap {
    /// (first slot, last slot, master).
    pub ranges: Vec<(u16, u16, (String, u16))>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` answer; a master announced without an address (`""` or `?`) is `asked`'s host.
    pub fn parse(v: &Value, asked: &str) -> Result<SlotMap, String> {
        let Value::Array(items) = v else {
            return Err(format!("CLUSTER SLOTS answered {v:?}"));
        };
        let mut ranges = Vec::new();
        for it in items {
            let Value::Array(f) = it else {
                return Err(format!("CLUSTER SLOTS item {it:?}"));
            };
            let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(m))) = (f.first(), f.get(1), f.get(2))
            else {
                return Err(format!("CLUSTER SLOTS item {it:?}"));
            };
            let host = match m.first() {
                Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
                Some(Value::SimpleString(h)) => h.clone(),
                _ => return Err(format!("CLUSTER SLOTS master {m:?}")),
            };
            let host = if host.is_empty() || host == "?" {
                asked.to_string()
            } else {
                host
            };
            let Some(Value::Int(port)) = m.get(1) else {
                return Err(format!("CLUSTER SLOTS master {m:?}"));
            };
            ranges.push((*a as u16, *b as u16, (host, *port as u16)));
        }
        ranges.sort();
        Ok(SlotMap { ranges })
    }

    /// The master of `slot`, if any serves it.
    pub fn master(&self, slot: u16) -> Option<&(String, u16)> {
        self.ranges
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .map(|(_, _, m)| m)
    }

    /// Every master, once each.
    pub fn masters(&self) -> Vec<(String, u16)> {
        let mut m: Vec<_> = self.ranges.iter().map(|(_, _, m)| m.clone()).collect();
        m.sort();
        m.dedup();
        m
    }
}

/// The connection settings of `host:port` with the seeds' credentials.
pub fn info_for(seed: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    seed.clone().set_addr(ConnectionAddr::Tcp(host.to_string(), port))
}

/// The slot map, read by its own thread.
pub struct Refresher {
    seeds: Vec<ConnectionInfo>,
    timeout: Duration,
    state: Mutex<RefreshState>,
    wake: Condvar,
}

#[derive(Default)]
struct RefreshState {
    /// The newest map and its generation (0: none yet).
    map: Option<Arc<SlotMap>>,
    generation: u64,
    wanted: bool,
    stop: bool,
    last_error: String,
}

impl Refresher {
    pub fn new(seeds: Vec<ConnectionInfo>, timeout: Duration) -> Arc<Refresher> {
        Arc::new(Refresher {
            seeds,
            timeout,
            state: Mutex::new(RefreshState::default()),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for a new map soon.
    pub fn want(&self) {
        self.lock().wanted = true;
        self.wake.notify_all();
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }

    /// The newest map if its generation is past `seen`.
    pub fn newer(&self, seen: u64) -> Option<(u64, Arc<SlotMap>)> {
        let s = self.lock();
        (s.generation > seen).then(|| (s.generation, s.map.clone().unwrap()))
    }

    pub fn last_error(&self) -> String {
        self.lock().last_error.clone()
    }

    /// Reads the map once: from the masters of the current map, then the seeds; the first answer wins.
    pub fn read_once(&self) -> Result<SlotMap, String> {
        let known = self.lock().map.clone();
        let mut candidates: Vec<ConnectionInfo> = Vec::new();
        if let (Some(m), Some(seed)) = (known, self.seeds.first()) {
            candidates.extend(m.masters().iter().map(|(h, p)| info_for(seed, h, *p)));
        }
        candidates.extend(self.seeds.iter().cloned());
        let mut why = String::from("no node to ask");
        for info in candidates {
            let host = match info.addr() {
                ConnectionAddr::Tcp(h, _) => h.clone(),
                _ => String::new(),
            };
            let read = || -> redis::RedisResult<Value> {
                let mut con = redis::Client::open(info.clone())?.get_connection_with_timeout(self.timeout)?;
                con.set_read_timeout(Some(self.timeout))?;
                con.set_write_timeout(Some(self.timeout))?;
                redis::cmd("CLUSTER").arg("SLOTS").query(&mut con)
            };
            match read()
                .map_err(|e| e.to_string())
                .and_then(|v| SlotMap::parse(&v, &host))
            {
                Ok(m) if !m.ranges.is_empty() => return Ok(m),
                Ok(_) => why = format!("{host}: CLUSTER SLOTS lists no slots"),
                Err(e) => why = format!("{}: {e}", super::addr_label(&info)),
            }
        }
        Err(why)
    }

    /// Runs the refresher until [`Refresher::stop`].
    pub fn spawn(self: &Arc<Self>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new().name("redis-slots".into()).spawn(move || {
            let mut last = Instant::now() - REFRESH_GAP;
            loop {
                let gap = REFRESH_GAP.saturating_sub(last.elapsed());
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                }
                {
                    let mut s = me.lock();
                    let have = s.map.is_some();
                    // Without a map, try again every gap; with one, when asked or every REFRESH_EVERY.
                    let until = Instant::now() + if have { REFRESH_EVERY } else { REFRESH_GAP };
                    while have && !s.wanted && !s.stop {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        s = me.wake.wait_timeout(s, left).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    if s.stop {
                        return;
                    }
                    s.wanted = false;
                }
                last = Instant::now();
                match me.read_once() {
                    Ok(m) => {
                        let mut s = me.lock();
                        if s.map.as_deref() != Some(&m) || s.generation == 0 {
                            s.map = Some(Arc::new(m));
                            s.generation += 1;
                        }
                        s.last_error.clear();
                    }
                    Err(e) => me.lock().last_error = e,
                }
            }
        })?;
        Ok(())
    }
}

/// What the dispatcher and a node's thread share.
pub struct NodeShared {
    pending: Mutex<Pending>,
    wake: Condvar,
    pub up: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct Pending {
    users: HashMap<u64, Report>,
    poll: Vec<u32>,
    asking: Vec<u32>,
}

/// A master's thread, as the dispatcher holds it.
pub struct NodeHandle {
    pub shared: Arc<NodeShared>,
}

/// What every node thread needs.
pub struct Common {
    pub limiter: Arc<Limiter>,
    pub quiet: Option<Arc<Mutex<Quiet>>>,
    pub groups: u32,
    pub stats: Arc<Stats>,
    pub backlog: Arc<Mutex<Vec<(u64, Report)>>>,
    pub redirects: Arc<Redirected>,
    pub refresher: Arc<Refresher>,
    /// How long a node waits for work before trying to (re)connect anyway.
    pub interval: Duration,
}

impl NodeHandle {
    /// Starts the thread of the master at `addr`.
    pub fn spawn(seed: &ConnectionInfo, addr: (String, u16), timeout: Duration, common: Arc<Common>) -> NodeHandle {
        let shared = Arc::new(NodeShared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            up: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let info = info_for(seed, &addr.0, addr.1);
        let label = format!("{}:{}", addr.0, addr.1);
        let s = shared.clone();
        let spawned = redis::Client::open(info).map_err(|e| e.to_string()).and_then(|client| {
            let node = Node::new(client, label, Some(addr), timeout);
            std::thread::Builder::new()
                .name("redis-node".into())
                .spawn(move || node_thread(node, s, common))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = spawned {
            crate::warn!("redis cluster: cannot start a node's thread: {e}");
        }
        NodeHandle { shared }
    }

    /// Hands this sync's users (and groups to poll) to the node; past `MAX_BATCH` waiting users, returns the
    /// requests dropped.
    pub fn give(&self, users: &[(u64, Report)], poll: &[u32], asking: Option<u32>) -> u64 {
        let mut dropped = 0;
        {
            let mut p = self.shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            for &(id, r) in users {
                let full = p.users.len() >= MAX_BATCH;
                match p.users.get_mut(&id) {
                    Some(c) => {
                        c.charge = c.charge.saturating_add(r.charge);
                        c.requests += r.requests;
                        c.mark |= r.mark;
                    }
                    None if full => dropped += r.requests,
                    None => {
                        p.users.insert(id, r);
                    }
                }
            }
            for &g in poll {
                if !p.poll.contains(&g) {
                    p.poll.push(g);
                }
            }
            if let Some(g) = asking {
                if !p.asking.contains(&g) {
                    p.asking.push(g);
                }
            }
        }
        self.shared.wake.notify_one();
        dropped
    }

    /// Lets the thread end (after its current round trip).
    pub fn retire(&self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.wake.notify_one();
    }
}

fn node_thread(mut node: Node, shared: Arc<NodeShared>, common: Arc<Common>) {
    let cx_quiet = common.quiet.as_deref();
    loop {
        // Connect (or reconnect once the backoff has passed) whether or not there is work, so that the node's
        // state shows before traffic comes.
        let was_up = node.up;
        let _ = node.ensure(&common.stats, true);
        shared.up.store(node.up, Relaxed);
        if was_up && !node.up {
            common.refresher.want();
        }
        let work = {
            let mut p = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
            while p.users.is_empty() && p.poll.is_empty() && !shared.stop.load(Relaxed) {
                let wait = if node.connected() {
                    common.interval.max(Duration::from_millis(100))
                } else {
                    node.next_connect
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(10))
                };
                let (g, timeout) = shared.wake.wait_timeout(p, wait).unwrap_or_else(|p| p.into_inner());
                p = g;
                if timeout.timed_out() && !node.connected() {
                    break;
                }
            }
            if shared.stop.load(Relaxed) {
                return;
            }
            let mut users: Vec<(u64, Report)> = p.users.drain().collect();
            users.sort_unstable_by_key(|&(id, _)| (group(id, common.groups), id));
            let mut poll = std::mem::take(&mut p.poll);
            poll.sort_unstable();
            Work {
                users,
                poll,
                asking: std::mem::take(&mut p.asking),
            }
        };
        if work.is_empty() {
            continue;
        }
        let stats = &common.stats;
        if let Err(why) = node.ensure(stats, true) {
            let _ = why;
            stats.unreported.fetch_add(work.requests(), Relaxed);
            shared.up.store(false, Relaxed);
            continue;
        }
        let cx = Context {
            limiter: &common.limiter,
            quiet: cx_quiet,
            groups: common.groups,
            stats,
            backlog: &common.backlog,
        };
        let started = Instant::now();
        match node.round_trip(&work, &cx) {
            Ok(out) => {
                stats.syncs_ok.fetch_add(1, Relaxed);
                stats.users.fetch_add(out.synced as u64, Relaxed);
                stats.last_users.store(out.synced as u64, Relaxed);
                stats
                    .last_duration_us
                    .store(started.elapsed().as_micros() as u64, Relaxed);
                stats.unreported.fetch_add(out.unreported, Relaxed);
                if !out.redirects.is_empty() {
                    if out.redirects.iter().any(|(r, _)| matches!(r, Redirect::Moved { .. })) {
                        common.refresher.want();
                    }
                    common
                        .redirects
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(out.redirects);
                }
            }
            Err(e) => {
                stats.unreported.fetch_add(work.requests(), Relaxed);
                node.fail(&e, stats, true);
                shared.up.store(false, Relaxed);
                common.refresher.want();
            }
        }
        node.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_redis_clusters() {
        // The Redis Cluster specification's test vector, and slots redis-cli reports.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot_of_tag(b"foo"), 12182);
        assert_eq!(slot_of_tag(b"bar"), 5061);
        assert_eq!(slot_of_tag(b""), 0);
        // The 16 default groups land on 16 distinct slots.
        let mut slots: Vec<u16> = (0..16).map(group_slot).collect();
        slots.sort();
        slots.dedup();
        assert_eq!(slots.len(), 16);
    }

    #[test]
    fn slot_maps_are_read() {
        let m = |h: &str, p: i64| {
            Value::Array(vec![
                Value::BulkString(h.as_bytes().to_vec()),
                Value::Int(p),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![Value::Int(5461), Value::Int(16383), m("10.0.0.2", 7001)]),
            Value::Array(vec![Value::Int(0), Value::Int(5460), m("", 7000)]),
        ]);
        let map = SlotMap::parse(&v, "10.0.0.1").unwrap();
        assert_eq!(map.master(0), Some(&("10.0.0.1".to_string(), 7000)));
        assert_eq!(map.master(5461), Some(&("10.0.0.2".to_string(), 7001)));
        assert_eq!(map.masters().len(), 2);
        assert!(SlotMap::parse(&Value::Int(1), "x").is_err());
    }
}
