//! The fleet-wide limit's sync thread: every `--redis-sync` interval, what this node admitted per user goes to
//! Redis in one pipelined round trip, and the fleet-wide schedules come back into the local table.
//!
//! No request worker ever waits on Redis: workers decide from the local table and push admitted user ids into
//! their journals (`limit::journal`); this thread alone talks to Redis. When Redis is down, slow or restarted,
//! the nodes keep deciding locally (each enforces the limit on its own); the thread reconnects with backoff,
//! logs one line per state change and shows the state in `/metrics`. A sync longer than the interval delays
//! the next one; the batch in between is bounded by `MAX_BATCH` users.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ServerErrorKind, Value};

use crate::limit::fleet::{calls, redis_key, shrink_past_twice, Batch, SCRIPT};
use crate::limit::Limiter;

/// Most distinct users one sync carries (ids past it wait for nothing: they are counted and dropped).
pub const MAX_BATCH: usize = 1 << 20;
/// Ids each worker's journal holds between two syncs.
pub const JOURNAL_CAPACITY: usize = 1 << 17;
/// Keys per script call: big enough to amortise the call, small enough not to block Redis for long.
const KEYS_PER_CALL: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// What `/metrics` shows of the sync (written by the sync thread only).
#[derive(Default)]
pub struct Stats {
    pub up: AtomicU64,
    pub syncs_ok: AtomicU64,
    pub syncs_failed: AtomicU64,
    pub users: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub last_duration_us: AtomicU64,
    pub last_users: AtomicU64,
    /// Admitted requests that could not be reported: batch over `MAX_BATCH`, or sync failed.
    pub unreported: AtomicU64,
}

/// `redis://user:***@host:port/db`: the URL without its password, for logs and `--check-config`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find('/').unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    }
}

/// One node's connection to the fleet state.
pub struct Syncer {
    client: redis::Client,
    url: String,
    con: Option<redis::Connection>,
    sha: String,
    timeout: Duration,
    batch: Batch,
    packed: Vec<u8>,
    /// Where each call of the last batch ends in `packed`.
    call_ends: Vec<usize>,
    backoff: Duration,
    next_connect: Instant,
    /// The last state logged (None before the first attempt).
    logged_up: Option<bool>,
    pub stats: Arc<Stats>,
}

impl Syncer {
    /// `timeout` bounds connecting and each round trip.
    pub fn new(url: &str, timeout: Duration, stats: Arc<Stats>) -> Result<Syncer, String> {
        Ok(Syncer {
            client: redis::Client::open(url).map_err(|e| format!("--redis-url {}: {e}", redact(url)))?,
            url: redact(url),
            con: None,
            sha: String::new(),
            timeout,
            batch: Batch::new(MAX_BATCH),
            packed: Vec::new(),
            call_ends: Vec::new(),
            backoff: BACKOFF_MIN,
            next_connect: Instant::now(),
            logged_up: None,
            stats,
        })
    }

    fn connect(&mut self) -> redis::RedisResult<()> {
        let mut con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        self.sha = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query(&mut con)?;
        self.con = Some(con);
        Ok(())
    }

    fn state(&mut self, up: bool, why: &str) {
        self.stats.up.store(up as u64, Relaxed);
        if self.logged_up != Some(up) {
            self.logged_up = Some(up);
            if up {
                crate::info!("redis {}: connected; the rate limit is fleet-wide", self.url);
            } else {
                crate::warn!(
                    "redis {}: {why}; deciding from the node-local table until it is back (reconnecting)",
                    self.url
                );
            }
        }
    }

    /// One sync: drains the journals, sends the batch, merges the answers. Returns the users synced.
    pub fn sync_once(&mut self, limiter: &Limiter) -> Result<usize, String> {
        let started = Instant::now();
        let mut admitted = 0;
        for j in limiter.journals() {
            admitted += j.drain(|id, charge| self.batch.add(id, charge)) as u64;
        }
        if self.con.is_none() {
            if started < self.next_connect {
                return Err(self.drop_batch(admitted, "not connected"));
            }
            if let Err(e) = self.connect() {
                self.next_connect = started + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                let msg = e.to_string();
                self.state(false, &msg);
                self.stats.syncs_failed.fetch_add(1, Relaxed);
                return Err(self.drop_batch(admitted, &msg));
            }
            self.backoff = BACKOFF_MIN;
            self.state(true, "");
        }
        let over = std::mem::take(&mut self.batch.dropped);
        self.stats.unreported.fetch_add(over, Relaxed);
        if self.batch.is_empty() {
            return Ok(0);
        }
        let result = self.round_trip(limiter);
        let encoded = self.packed.len();
        shrink_past_twice(&mut self.packed, encoded.max(1 << 20));
        match result {
            Ok(n) => {
                self.stats.syncs_ok.fetch_add(1, Relaxed);
                self.stats.users.fetch_add(n as u64, Relaxed);
                self.stats.last_users.store(n as u64, Relaxed);
                self.stats
                    .last_duration_us
                    .store(started.elapsed().as_micros() as u64, Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.stats.unreported.fetch_add(admitted, Relaxed);
                // The connection's state is unknown after a failed round trip: start over.
                self.con = None;
                self.next_connect = Instant::now();
                self.stats.syncs_failed.fetch_add(1, Relaxed);
                self.state(false, &e);
                Err(e)
            }
        }
    }

    /// Drops this sync's batch (`admitted` requests) unsent.
    fn drop_batch(&mut self, admitted: u64, why: &str) -> String {
        self.batch.take();
        self.batch.dropped = 0;
        self.stats.unreported.fetch_add(admitted, Relaxed);
        why.to_string()
    }

    /// Sends the batch, one script call per group run, each as soon as it is encoded, then reads the answers
    /// in order and merges each into the table as it arrives: Redis starts on the first call while the later
    /// ones are encoded, and the merging of one answer overlaps Redis executing the next call. Still one
    /// round trip: nothing waits for an answer before everything is sent.
    fn round_trip(&mut self, limiter: &Limiter) -> Result<usize, String> {
        let users = self.batch.take();
        let con = self.con.as_mut().ok_or("not connected")?;
        let err = |e: redis::RedisError| e.to_string();
        self.packed.clear();
        self.call_ends.clear();
        let runs: Vec<&[(u64, u64)]> = calls(users, KEYS_PER_CALL).collect();
        for run in &runs {
            let start = self.packed.len();
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.sha).arg(run.len());
            for &(id, _) in *run {
                cmd.arg(&redis_key(id)[..]);
            }
            for &(_, charge) in *run {
                cmd.arg(charge);
            }
            cmd.write_packed_command(&mut self.packed);
            con.send_packed_command(&self.packed[start..]).map_err(err)?;
            self.call_ends.push(self.packed.len());
        }
        self.stats.sent_bytes.fetch_add(self.packed.len() as u64, Relaxed);
        let mut synced = 0;
        // Calls Redis answered NOSCRIPT (SCRIPT FLUSH, or a failover behind a proxy that kept the connection:
        // a reconnect loads the script anyway): they changed nothing. (The crate hands server errors over as
        // `Ok(Value::ServerError)`; the `Err` form is matched too, in case a version converts them.)
        let mut unknown = Vec::new();
        for (i, run) in runs.iter().enumerate() {
            match answer(con) {
                Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript) => unknown.push(i),
                Ok(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::NoScript) => unknown.push(i),
                reply => synced += merge_answer(limiter, run, &reply.map_err(err)?)?,
            }
        }
        if unknown.is_empty() {
            return Ok(synced);
        }
        // Load the script again (same text, same hash) and send those calls once more.
        let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query(con).map_err(err)?;
        for &i in &unknown {
            let call = &self.packed[if i == 0 { 0 } else { self.call_ends[i - 1] }..self.call_ends[i]];
            con.send_packed_command(call).map_err(err)?;
            self.stats.sent_bytes.fetch_add(call.len() as u64, Relaxed);
        }
        for &i in &unknown {
            synced += merge_answer(limiter, runs[i], &answer(con).map_err(err)?)?;
        }
        Ok(synced)
    }
}

/// The next answer on the connection, past any RESP3 push frames (not answers to a call).
fn answer(con: &mut redis::Connection) -> redis::RedisResult<Value> {
    loop {
        match con.recv_response()? {
            Value::Push { .. } => continue,
            v => return Ok(v),
        }
    }
}

/// Merges one script answer (Redis's now, then per user how far its fleet schedule is ahead) into the table:
/// the later schedule wins.
fn merge_answer(limiter: &Limiter, run: &[(u64, u64)], reply: &Value) -> Result<usize, String> {
    let Value::Array(vals) = reply else {
        return Err(format!("the merge script failed: {reply:?}"));
    };
    if vals.len() != run.len() + 1 {
        return Err(format!(
            "the merge script answered {} values for {} users",
            vals.len(),
            run.len()
        ));
    }
    let now = limiter.micros(Instant::now());
    for (&(id, _), v) in run.iter().zip(&vals[1..]) {
        let Value::Int(ahead) = *v else {
            return Err(format!("unexpected value from the merge script: {v:?}"));
        };
        limiter.raise(id, now.saturating_add(ahead.max(0) as u64), now);
    }
    Ok(run.len())
}

/// Starts the sync thread of a fleet-wide limit: it syncs `limiter` every `interval` until `shutdown` is set.
pub fn start(
    limiter: Arc<Limiter>,
    shutdown: Arc<AtomicBool>,
    mut syncer: Syncer,
    interval: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("redis-sync".into()).spawn(move || {
        let mut next = Instant::now() + interval;
        while !shutdown.load(Relaxed) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // After a slow sync, the next one starts right away, once: missed ticks are not made up.
            next = Instant::now().max(next) + interval;
            let _ = syncer.sync_once(&limiter);
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact("redis://user:p%40ss@h:6379"), "redis://user:***@h:6379");
        assert_eq!(redact("redis://user@h"), "redis://user:***@h");
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact("redis://h/0?x=a@b"), "redis://h/0?x=a@b");
    }
}
