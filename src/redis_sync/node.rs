//! One Redis node: its connection, and one sync's calls to it in one pipelined round trip.
//!
//! A node gets the users of the groups it owns, sorted by group, and sends one script call per group (runs of
//! at most `KEYS_PER_CALL` users), each written to the socket as soon as it is encoded; then it reads the
//! answers in order and merges each into the table as it arrives. Answers that are not the script's: `NOSCRIPT`
//! (the script is loaded again and those calls sent again, once), `MOVED` and `ASK` (the call changed nothing:
//! its users go back to the dispatcher with where to send them), `TRYAGAIN` and the cluster's other refusals
//! (a slot being migrated, the cluster down: the call's requests are counted as unreported). An I/O error or a
//! timeout fails the whole node (its connection is dropped and remade with backoff).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{ServerErrorKind, Value};

use super::Stats;
use crate::limit::fleet::{group, hot_key, user_key, Quiet, Report, SCRIPT};
use crate::limit::Limiter;

/// Keys per script call: big enough to amortise the call, small enough not to block Redis for long.
pub const KEYS_PER_CALL: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What the nodes of one syncer share: the table, the quiet share, and what goes back to the dispatcher.
pub struct Context<'a> {
    pub limiter: &'a Limiter,
    pub quiet: Option<&'a Mutex<Quiet>>,
    pub groups: u32,
    pub stats: &'a Stats,
    /// Reports for the next sync: a node's quiet backlog of a user another node marked hot.
    pub backlog: &'a Mutex<Vec<(u64, Report)>>,
}

/// Where a cluster sent a call instead of running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// The group's slot is served by `addr` from now on (the slot map is stale).
    Moved { group: u32, addr: (String, u16) },
    /// The group's slot is being migrated to `addr`: send this call there, after `ASKING`.
    Ask { group: u32, addr: (String, u16) },
}

/// Calls a cluster sent elsewhere, with their users, waiting for the dispatcher.
pub type Redirected = std::sync::Mutex<Vec<(Redirect, Vec<(u64, Report)>)>>;

/// One sync's work for a node.
#[derive(Default)]
pub struct Work {
    /// Users of this node's groups, sorted by group.
    pub users: Vec<(u64, Report)>,
    /// Groups to call even without users (to read their hot lists), sorted.
    pub poll: Vec<u32>,
    /// Groups whose calls go after `ASKING` (a slot being imported here).
    pub asking: Vec<u32>,
}

impl Work {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.poll.is_empty()
    }

    pub fn requests(&self) -> u64 {
        self.users.iter().map(|(_, r)| r.requests).sum()
    }
}

/// What a round trip did besides merging.
#[derive(Default)]
pub struct Outcome {
    pub synced: usize,
    /// Requests of calls the cluster refused (TRYAGAIN, CLUSTERDOWN, ...).
    pub unreported: u64,
    pub redirects: Vec<(Redirect, Vec<(u64, Report)>)>,
}

struct Call {
    group: u32,
    users: std::ops::Range<usize>,
    /// Read the group's hot list (since this Redis time).
    since: Option<u64>,
    asking: bool,
    /// Where its bytes are in `packed`.
    bytes: std::ops::Range<usize>,
}

pub struct Node {
    /// How logs name it: the redacted URL, or `host:port` in a cluster.
    pub label: String,
    /// Its address in a cluster.
    pub addr: Option<(String, u16)>,
    client: redis::Client,
    con: Option<redis::Connection>,
    sha: String,
    timeout: Duration,
    backoff: Duration,
    pub next_connect: Instant,
    logged_up: Option<bool>,
    /// Per group: Redis's time of this node's last read of the group's hot list (0: never).
    since: Vec<u64>,
    packed: Vec<u8>,
    calls: Vec<Call>,
    pub up: bool,
}

impl Node {
    pub fn new(client: redis::Client, label: String, addr: Option<(String, u16)>, timeout: Duration) -> Node {
        Node {
            label,
            addr,
            client,
            con: None,
            sha: String::new(),
            timeout,
            backoff: BACKOFF_MIN,
            next_connect: Instant::now(),
            logged_up: None,
            since: Vec::new(),
            packed: Vec::new(),
            calls: Vec::new(),
            up: false,
        }
    }

    pub fn connected(&self) -> bool {
        self.con.is_some()
    }

    fn connect(&mut self) -> redis::RedisResult<()> {
        let mut con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        self.sha = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query(&mut con)?;
        self.con = Some(con);
        Ok(())
    }

    /// Connects if not connected and the backoff allows; `Err` (with why) if there is no connection.
    pub fn ensure(&mut self, stats: &Stats, cluster: bool) -> Result<(), String> {
        if self.con.is_some() {
            return Ok(());
        }
        let now = Instant::now();
        if now < self.next_connect {
            return Err("not connected".into());
        }
        if let Err(e) = self.connect() {
            self.next_connect = now + self.backoff;
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            let msg = e.to_string();
            self.state(false, &msg, cluster);
            stats.syncs_failed.fetch_add(1, Relaxed);
            return Err(msg);
        }
        self.backoff = BACKOFF_MIN;
        self.state(true, "", cluster);
        Ok(())
    }

    /// After a failed round trip: the connection's state is unknown, start over (reconnect at the next sync).
    pub fn fail(&mut self, why: &str, stats: &Stats, cluster: bool) {
        self.con = None;
        self.next_connect = Instant::now();
        stats.syncs_failed.fetch_add(1, Relaxed);
        self.state(false, why, cluster);
    }

    fn state(&mut self, up: bool, why: &str, cluster: bool) {
        self.up = up;
        if self.logged_up == Some(up) {
            return;
        }
        self.logged_up = Some(up);
        match (up, cluster) {
            (true, false) => crate::info!("redis {}: connected; the rate limit is fleet-wide", self.label),
            (false, false) => crate::warn!(
                "redis {}: {why}; deciding from the node-local table until it is back (reconnecting)",
                self.label
            ),
            (true, true) => crate::info!(
                "redis cluster node {}: connected; the rate limit is fleet-wide for the users of its slots",
                self.label
            ),
            (false, true) => crate::warn!(
                "redis cluster node {}: {why}; deciding from the node-local table for the users of its slots until \
                 it is back (reconnecting)",
                self.label
            ),
        }
    }

    /// Sends `work` in one round trip and merges the answers. `Err`: the node failed (nothing after the
    /// failure was merged; the caller counts the work as unreported and calls [`Node::fail`]).
    pub fn round_trip(&mut self, work: &Work, cx: &Context<'_>) -> Result<Outcome, String> {
        let groups = cx.groups;
        if self.since.len() != groups as usize {
            self.since = vec![0; groups as usize];
        }
        let polling = cx.quiet.is_some();
        self.packed.clear();
        self.calls.clear();
        // The calls: per group with users or to poll, runs of at most KEYS_PER_CALL users; the first reads the
        // hot list.
        let (mut i, mut p) = (0, 0);
        loop {
            let next_user = work.users.get(i).map(|&(id, _)| group(id, groups));
            let next_poll = work.poll.get(p).copied();
            let g = match (next_user, next_poll) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
            };
            if next_poll == Some(g) {
                p += 1;
            }
            let start = i;
            while i < work.users.len() && group(work.users[i].0, groups) == g {
                i += 1;
            }
            let asking = work.asking.contains(&g);
            let mut first = true;
            let mut s = start;
            loop {
                let e = (s + KEYS_PER_CALL).min(i);
                self.calls.push(Call {
                    group: g,
                    users: s..e,
                    since: (first && polling).then_some(self.since[g as usize]),
                    asking,
                    bytes: 0..0,
                });
                first = false;
                s = e;
                if s >= i {
                    break;
                }
            }
        }
        let con = self.con.as_mut().ok_or("not connected")?;
        let err = |e: redis::RedisError| e.to_string();
        for call in &mut self.calls {
            let start = self.packed.len();
            if call.asking {
                redis::cmd("ASKING").write_packed_command(&mut self.packed);
            }
            let users = &work.users[call.users.clone()];
            if let (true, Some(since)) = (users.is_empty(), call.since) {
                // Nothing to report: only the hot list's marks since the last read, without the script (a
                // plain command costs Redis a fraction of a script call).
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&hot_key(call.group)[..])
                    .arg(format!("({since}"))
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .write_packed_command(&mut self.packed);
                con.send_packed_command(&self.packed[start..]).map_err(err)?;
                call.bytes = start..self.packed.len();
                continue;
            }
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.sha).arg(users.len() + 1).arg(&hot_key(call.group)[..]);
            for &(id, _) in users {
                cmd.arg(&user_key(id, groups)[..]);
            }
            match call.since {
                Some(t) => cmd.arg(t),
                None => cmd.arg("-"),
            };
            for &(_, r) in users {
                let charge = r.charge.min(i64::MAX as u64) as i64;
                cmd.arg(if r.mark { -charge.max(1) } else { charge });
            }
            cmd.write_packed_command(&mut self.packed);
            con.send_packed_command(&self.packed[start..]).map_err(err)?;
            call.bytes = start..self.packed.len();
        }
        cx.stats.sent_bytes.fetch_add(self.packed.len() as u64, Relaxed);
        let mut out = Outcome::default();
        // Calls Redis answered NOSCRIPT (SCRIPT FLUSH, a restart or a failover behind a proxy that kept the
        // connection): they changed nothing.
        let mut unknown = Vec::new();
        for (k, call) in self.calls.iter().enumerate() {
            let reply = read_call(con, call.asking).map_err(err)?;
            if no_script(&reply) {
                unknown.push(k);
                continue;
            }
            handle(&reply, call, work, cx, &mut self.since, &mut out)?;
        }
        if unknown.is_empty() {
            return Ok(out);
        }
        // Load the script again (same text, same hash) and send those calls once more.
        let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query(con).map_err(err)?;
        for &k in &unknown {
            let bytes = &self.packed[self.calls[k].bytes.clone()];
            con.send_packed_command(bytes).map_err(err)?;
            cx.stats.sent_bytes.fetch_add(bytes.len() as u64, Relaxed);
        }
        for &k in &unknown {
            let call = &self.calls[k];
            let reply = read_call(con, call.asking).map_err(err)?;
            handle(&reply, call, work, cx, &mut self.since, &mut out)?;
        }
        Ok(out)
    }

    /// Gives back the encoding buffer's memory past twice what this sync needed.
    pub fn shrink(&mut self) {
        let n = self.packed.len();
        crate::limit::fleet::shrink_past_twice(&mut self.packed, n.max(1 << 20));
    }
}

/// An answer: a value, or a server error (its kind if the crate knows it, and its details).
enum Reply {
    Value(Value),
    Error(Option<ServerErrorKind>, String),
}

/// The answer to a call, past its `ASKING`'s and any RESP3 push frames.
fn read_call(con: &mut redis::Connection, asking: bool) -> redis::RedisResult<Reply> {
    if asking {
        answer(con)?;
    }
    answer(con)
}

/// The next answer on the connection, past any RESP3 push frames (not answers to a call). The crate hands
/// server errors over as `Ok(Value::ServerError)`; the `Err` form is folded in too, in case a version converts
/// them. `Err`: the connection failed.
fn answer(con: &mut redis::Connection) -> redis::RedisResult<Reply> {
    loop {
        return match con.recv_response() {
            Ok(Value::Push { .. }) => continue,
            Ok(Value::ServerError(e)) => Ok(Reply::Error(e.kind(), e.details().unwrap_or("").to_string())),
            Ok(v) => Ok(Reply::Value(v)),
            Err(e) => match e.kind() {
                redis::ErrorKind::Server(k) => Ok(Reply::Error(Some(k), e.detail().unwrap_or("").to_string())),
                _ => Err(e),
            },
        };
    }
}

fn no_script(r: &Reply) -> bool {
    matches!(r, Reply::Error(Some(ServerErrorKind::NoScript), _))
}

/// `3999 127.0.0.1:6381` (a MOVED or ASK's details): the address.
fn redirect_addr(details: &str) -> Option<(String, u16)> {
    let addr = details.split_whitespace().nth(1)?;
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_string(), port.parse().ok()?))
}

/// Takes one call's answer: merges it, or says what became of the call.
fn handle(
    reply: &Reply,
    call: &Call,
    work: &Work,
    cx: &Context<'_>,
    since: &mut [u64],
    out: &mut Outcome,
) -> Result<(), String> {
    let users = &work.users[call.users.clone()];
    let requests = || users.iter().map(|(_, r)| r.requests).sum::<u64>();
    let (kind, details) = match reply {
        Reply::Value(v) if users.is_empty() && call.since.is_some() => {
            read_marks(cx, call.group, v, since);
            return Ok(());
        }
        Reply::Value(v) => {
            out.synced += merge_answer(cx, users, call, v, since)?;
            return Ok(());
        }
        Reply::Error(kind, details) => (*kind, details),
    };
    match kind {
        Some(kind @ (ServerErrorKind::Moved | ServerErrorKind::Ask)) => {
            let Some(addr) = redirect_addr(details) else {
                return Err(format!("unreadable redirection: {details:?}"));
            };
            let group = call.group;
            let r = if kind == ServerErrorKind::Moved {
                Redirect::Moved { group, addr }
            } else {
                Redirect::Ask { group, addr }
            };
            out.redirects.push((r, users.to_vec()));
        }
        // A multi-key call on a slot being migrated, the cluster without this slot's master, a replica
        // loading: the call changed nothing and is not sent again.
        Some(
            ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::BusyLoading
            | ServerErrorKind::ReadOnly,
        ) => out.unreported += requests(),
        _ => return Err(format!("the merge script failed: {kind:?} {details}")),
    }
    Ok(())
}

/// Merges one script answer (Redis's now, per user how far its fleet schedule is ahead, then maybe the
/// group's newly marked users) into the table: the later schedule wins.
fn merge_answer(
    cx: &Context<'_>,
    users: &[(u64, Report)],
    call: &Call,
    reply: &Value,
    since: &mut [u64],
) -> Result<usize, String> {
    let Value::Array(vals) = reply else {
        return Err(format!("the merge script failed: {reply:?}"));
    };
    let want = users.len() + 1 + call.since.is_some() as usize;
    if vals.len() != want {
        return Err(format!(
            "the merge script answered {} values for {} users",
            vals.len(),
            users.len()
        ));
    }
    let now = cx.limiter.micros(Instant::now());
    let mut quiet = cx.quiet.map(|q| q.lock().unwrap_or_else(|p| p.into_inner()));
    for (&(id, _), v) in users.iter().zip(&vals[1..]) {
        let Value::Int(ahead) = *v else {
            return Err(format!("unexpected value from the merge script: {v:?}"));
        };
        let ahead = ahead.max(0) as u64;
        cx.limiter.raise(id, now.saturating_add(ahead), now);
        if let Some(q) = quiet.as_mut() {
            q.answered(id, ahead, now);
        }
    }
    drop(quiet);
    if call.since.is_some() {
        if let Value::Int(redis_now) = vals[0] {
            since[call.group as usize] = redis_now.max(0) as u64;
        }
        if let Some(Value::Array(marked)) = vals.last() {
            learn(cx, marked.iter().filter_map(hex_id), now);
        }
    }
    Ok(users.len())
}

fn hex_id(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok()),
        _ => None,
    }
}

/// Reads a `ZRANGEBYSCORE .. WITHSCORES` of a hot list (members and scores, flat in RESP2, pairs in RESP3):
/// the users are hot here too, and the next read starts after the latest mark.
fn read_marks(cx: &Context<'_>, g: u32, v: &Value, since: &mut [u64]) {
    let Value::Array(items) = v else { return };
    let mut ids = Vec::new();
    let mut latest = since[g as usize];
    let mut take = |member: &Value, score: &Value| {
        let score = match score {
            Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse::<f64>().ok()),
            Value::Double(d) => Some(*d),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        };
        if let (Some(id), Some(score)) = (hex_id(member), score) {
            ids.push(id);
            latest = latest.max(score as u64);
        }
    };
    match items.first() {
        Some(Value::Array(_)) => {
            for pair in items {
                if let Value::Array(p) = pair {
                    if let [m, s] = &p[..] {
                        take(m, s);
                    }
                }
            }
        }
        _ => {
            for p in items.chunks(2) {
                if let [m, s] = p {
                    take(m, s);
                }
            }
        }
    }
    since[g as usize] = latest;
    learn(cx, ids.into_iter(), cx.limiter.micros(Instant::now()));
}

/// Users another node marked hot: hot here too; what this node's buckets held of them goes to the next sync.
fn learn(cx: &Context<'_>, ids: impl Iterator<Item = u64>, now: u64) {
    let Some(q) = cx.quiet else { return };
    let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
    let backlog: Vec<(u64, Report)> = ids.filter_map(|id| Some((id, q.learn(id, now)?))).collect();
    drop(q);
    if !backlog.is_empty() {
        cx.backlog.lock().unwrap_or_else(|p| p.into_inner()).extend(backlog);
    }
}

#[cfg(test)]
mod tests {
    use super::redirect_addr;

    #[test]
    fn redirections_name_their_node() {
        assert_eq!(redirect_addr("3999 127.0.0.1:6381"), Some(("127.0.0.1".into(), 6381)));
        assert_eq!(redirect_addr("3999 [::1]:7000"), Some(("::1".into(), 7000)));
        assert_eq!(redirect_addr("3999"), None);
    }
}
