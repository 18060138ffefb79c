//! The fleet-wide limit's sync thread: every `--redis-sync` interval, what this node admitted per user goes to
//! Redis, pipelined in one round trip per Redis node, and the fleet-wide schedules come back into the local
//! table.
//!
//! No request worker ever waits on Redis: workers decide from the local table and push admitted user ids into
//! their journals (`limit::journal`); this thread alone drains them. With a quiet share (`--redis-share`) it
//! keeps to itself the users within their share on this node (`limit::fleet::Quiet`). With one Redis
//! (`--redis-url`) it makes the round trip itself (`node`); with a Redis Cluster (`--redis-cluster`) it hands
//! each master the users of its groups and never waits for it (`cluster`: one thread and connection per
//! master, the slot map read by its own thread). When Redis (or a master) is down, slow or restarted, the
//! nodes keep deciding locally for the users concerned (each enforces the limit on its own); the connection is
//! remade with backoff, one line is logged per state change and `/metrics` shows the state. A sync longer than
//! the interval delays the next one; what waits in between is bounded by `MAX_BATCH` users.

pub mod cluster;
pub mod node;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::limit::fleet::{group, Batch, Quiet, Report, DEFAULT_GROUPS};
use crate::limit::Limiter;
use cluster::{Common, NodeHandle, Refresher};
use node::{Context, Node, Redirect, Work};

/// Most distinct users one sync carries (ids past it wait for nothing: they are counted and dropped).
pub const MAX_BATCH: usize = 1 << 20;
/// Ids each worker's journal holds between two syncs.
pub const JOURNAL_CAPACITY: usize = 1 << 17;

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
    /// Admitted requests kept quiet (within the user's share on this node).
    pub quiet: AtomicU64,
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

/// `host:port` of a connection's address.
pub fn addr_label(info: &redis::ConnectionInfo) -> String {
    match info.addr() {
        redis::ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        a => format!("{a:?}"),
    }
}

/// How the users are spread and which of them are reported.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--redis-groups`.
    pub groups: u32,
    /// `--redis-share`, in millionths (0: every admission is reported).
    pub share_ppm: u32,
    /// The default tier's burst x interval (microseconds): what the share is a share of.
    pub burst_us: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            groups: DEFAULT_GROUPS,
            share_ppm: 0,
            burst_us: 1_000_000,
        }
    }
}

/// A node's connection to the fleet state: the dispatcher of what it admitted.
pub struct Syncer {
    target: Target,
    opts: Options,
    batch: Batch,
    quiet: Option<Arc<Mutex<Quiet>>>,
    /// Reports for the next sync (a quiet backlog of a user another node marked hot).
    backlog: Arc<Mutex<Vec<(u64, Report)>>>,
    pub stats: Arc<Stats>,
}

enum Target {
    One(Box<Node>),
    Cluster(Box<Cluster>),
}

/// The dispatcher's view of a Redis Cluster.
struct Cluster {
    seed: redis::ConnectionInfo,
    label: String,
    timeout: Duration,
    refresher: Arc<Refresher>,
    /// The slot map's generation the routes are from.
    generation: u64,
    /// Per group: the index in `nodes` of its master.
    route: Vec<Option<usize>>,
    nodes: Vec<((String, u16), NodeHandle)>,
    redirects: Arc<node::Redirected>,
    /// Set by [`Syncer::attach`].
    common: Option<Arc<Common>>,
    logged_up: Option<bool>,
}

impl Syncer {
    /// The syncer a configuration asks for (`--redis-url` or `--redis-cluster`, the groups and the share).
    /// Connecting and each round trip time out after 10 x `--redis-sync` (between 200 ms and 2 s).
    pub fn for_config(r: &crate::config::RateConfig) -> Result<Syncer, String> {
        let timeout = (r.redis_sync * 10).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let opts = Options {
            groups: r.redis_groups,
            share_ppm: r.redis_share_ppm,
            burst_us: r.burst as u64 * 1_000_000 / r.rate.max(1) as u64,
        };
        match &r.redis_url {
            Some(url) => Syncer::with_options(url, timeout, Default::default(), opts),
            None => Syncer::cluster(&r.redis_cluster, timeout, Default::default(), opts),
        }
    }

    /// One Redis at `url`; `timeout` bounds connecting and each round trip.
    pub fn new(url: &str, timeout: Duration, stats: Arc<Stats>) -> Result<Syncer, String> {
        Syncer::with_options(url, timeout, stats, Options::default())
    }

    pub fn with_options(url: &str, timeout: Duration, stats: Arc<Stats>, opts: Options) -> Result<Syncer, String> {
        let client = redis::Client::open(url).map_err(|e| format!("--redis-url {}: {e}", redact(url)))?;
        Ok(Syncer::build(
            Target::One(Box::new(Node::new(client, redact(url), None, timeout))),
            opts,
            stats,
        ))
    }

    /// A Redis Cluster reached through `seeds` (its nodes' URLs; the first one's credentials are used for
    /// every node). Nothing is sent before [`Syncer::attach`].
    pub fn cluster(seeds: &[String], timeout: Duration, stats: Arc<Stats>, opts: Options) -> Result<Syncer, String> {
        let infos = seeds
            .iter()
            .map(|u| {
                redis::IntoConnectionInfo::into_connection_info(u.as_str())
                    .map_err(|e| format!("--redis-cluster {}: {e}", redact(u)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seed = infos.first().cloned().ok_or("--redis-cluster: no seed node")?;
        let label = infos.iter().map(addr_label).collect::<Vec<_>>().join(",");
        let cluster = Cluster {
            seed,
            label,
            timeout,
            refresher: Refresher::new(infos, timeout),
            generation: 0,
            route: vec![None; opts.groups as usize],
            nodes: Vec::new(),
            redirects: Default::default(),
            common: None,
            logged_up: None,
        };
        Ok(Syncer::build(Target::Cluster(Box::new(cluster)), opts, stats))
    }

    fn build(target: Target, opts: Options, stats: Arc<Stats>) -> Syncer {
        Syncer {
            target,
            opts,
            batch: Batch::new(MAX_BATCH),
            quiet: (opts.share_ppm > 0)
                .then(|| Arc::new(Mutex::new(Quiet::new(opts.share_ppm, opts.burst_us, MAX_BATCH)))),
            backlog: Default::default(),
            stats,
        }
    }

    /// Starts what runs beside the sync thread (a cluster's slot-map reader; its masters' threads start as the
    /// map names them), for `limiter`, syncing every `interval`. Nothing for one Redis.
    pub fn attach(&mut self, limiter: Arc<Limiter>, interval: Duration) -> std::io::Result<()> {
        let Target::Cluster(c) = &mut self.target else {
            return Ok(());
        };
        c.common = Some(Arc::new(Common {
            limiter,
            quiet: self.quiet.clone(),
            groups: self.opts.groups,
            stats: self.stats.clone(),
            backlog: self.backlog.clone(),
            redirects: c.redirects.clone(),
            refresher: c.refresher.clone(),
            interval,
        }));
        c.refresher.spawn()
    }

    /// Ends the threads [`Syncer::attach`] started.
    pub fn stop(&mut self) {
        if let Target::Cluster(c) = &mut self.target {
            c.refresher.stop();
            for (_, n) in c.nodes.drain(..) {
                n.retire();
            }
        }
    }

    /// Whether a cluster's slot map has been read (always true for one Redis).
    pub fn has_slot_map(&self) -> bool {
        match &self.target {
            Target::One(_) => true,
            Target::Cluster(c) => c.generation > 0,
        }
    }

    /// One sync: drains the journals, keeps the quiet users back, and sends the rest (one Redis: in one round
    /// trip, merged before this returns; a cluster: handed to the masters' threads). Returns the users synced
    /// (one Redis) or handed over (a cluster).
    pub fn sync_once(&mut self, limiter: &Limiter) -> Result<usize, String> {
        let started = Instant::now();
        let now = limiter.micros(started);
        let groups = self.opts.groups;
        let backlog = std::mem::take(&mut *self.backlog.lock().unwrap_or_else(|p| p.into_inner()));
        let batch = &mut self.batch;
        match &self.quiet {
            None => {
                for j in limiter.journals() {
                    j.drain(|id, charge| batch.add(id, charge));
                }
                for (id, r) in backlog {
                    batch.add_report(id, r);
                }
            }
            Some(q) => {
                // Each admission goes through the quiet share as it comes out of its journal: only what is
                // reported enters the batch (one map for a quiet user, not two, and nothing of it to sort).
                // Within a sync the reports add up to the same as filtering each user's total once: a bucket
                // that overflows reports what it held with the admission that overflowed it, and a hot user's
                // later admissions are reported as they come.
                let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
                q.sweep(now);
                let mut kept = 0;
                let mut filter = |id: u64, r: Report| {
                    // Past the batch's cap a new user's admissions are dropped (counted) as without a share,
                    // before the share's state is touched.
                    if !batch.takes(id) {
                        batch.dropped += r.requests;
                        return;
                    }
                    match q.filter(id, r, now) {
                        None => kept += r.requests,
                        Some(f) => batch.add_report(id, f),
                    }
                };
                for j in limiter.journals() {
                    j.drain(|id, charge| {
                        filter(
                            id,
                            Report {
                                charge,
                                requests: 1,
                                mark: false,
                            },
                        )
                    });
                }
                for (id, r) in backlog {
                    filter(id, r);
                }
                self.stats.quiet.fetch_add(kept, Relaxed);
            }
        }
        let over = std::mem::take(&mut self.batch.dropped);
        self.stats.unreported.fetch_add(over, Relaxed);
        let reports: Vec<(u64, Report)> = self.batch.take(groups).to_vec();
        let poll = self.quiet.is_some();
        let cx = Context {
            limiter,
            quiet: self.quiet.as_deref(),
            groups,
            stats: &self.stats,
            backlog: &self.backlog,
        };
        match &mut self.target {
            Target::One(node) => {
                let requests: u64 = reports.iter().map(|(_, r)| r.requests).sum();
                if let Err(e) = node.ensure(&self.stats, false) {
                    self.stats.up.store(0, Relaxed);
                    self.stats.unreported.fetch_add(requests, Relaxed);
                    return Err(e);
                }
                self.stats.up.store(1, Relaxed);
                let work = Work {
                    users: reports,
                    poll: if poll { (0..groups).collect() } else { Vec::new() },
                    asking: Vec::new(),
                };
                if work.is_empty() {
                    return Ok(0);
                }
                let result = node.round_trip(&work, &cx);
                node.shrink();
                match result {
                    Ok(out) => {
                        // A single endpoint that redirects is a cluster node: those calls changed nothing.
                        let redirected: u64 = out
                            .redirects
                            .iter()
                            .flat_map(|(_, u)| u.iter().map(|(_, r)| r.requests))
                            .sum();
                        self.stats.unreported.fetch_add(out.unreported + redirected, Relaxed);
                        self.stats.syncs_ok.fetch_add(1, Relaxed);
                        self.stats.users.fetch_add(out.synced as u64, Relaxed);
                        self.stats.last_users.store(out.synced as u64, Relaxed);
                        self.stats
                            .last_duration_us
                            .store(started.elapsed().as_micros() as u64, Relaxed);
                        Ok(out.synced)
                    }
                    Err(e) => {
                        self.stats.unreported.fetch_add(requests, Relaxed);
                        node.fail(&e, &self.stats, false);
                        self.stats.up.store(0, Relaxed);
                        Err(e)
                    }
                }
            }
            Target::Cluster(c) => c.dispatch(reports, poll, groups, &self.stats),
        }
    }
}

impl Cluster {
    /// The index of `addr`'s thread, started if new.
    fn node(&mut self, addr: &(String, u16)) -> Option<usize> {
        if let Some(i) = self.nodes.iter().position(|(a, _)| a == addr) {
            return Some(i);
        }
        let common = self.common.clone()?;
        self.nodes.push((
            addr.clone(),
            NodeHandle::spawn(&self.seed, addr.clone(), self.timeout, common),
        ));
        Some(self.nodes.len() - 1)
    }

    fn dispatch(
        &mut self,
        mut reports: Vec<(u64, Report)>,
        poll: bool,
        groups: u32,
        stats: &Stats,
    ) -> Result<usize, String> {
        if self.common.is_none() {
            stats
                .unreported
                .fetch_add(reports.iter().map(|(_, r)| r.requests).sum(), Relaxed);
            return Err("not attached".into());
        }
        // A new slot map: every group's master again; masters no longer in it are let go.
        if let Some((generation, map)) = self.refresher.newer(self.generation) {
            self.generation = generation;
            let masters = map.masters();
            let (keep, gone): (Vec<_>, Vec<_>) = self.nodes.drain(..).partition(|(a, _)| masters.contains(a));
            self.nodes = keep;
            for (_, n) in gone {
                n.retire();
            }
            for m in &masters {
                self.node(m);
            }
            for g in 0..groups {
                self.route[g as usize] = map.master(cluster::group_slot(g)).and_then(|m| self.node(&m.clone()));
            }
        }
        // Calls the cluster sent elsewhere: MOVED changes the group's master until the next map; ASK sends
        // that call alone to the importing master.
        let redirects = std::mem::take(&mut *self.redirects.lock().unwrap_or_else(|p| p.into_inner()));
        for (r, users) in redirects {
            match r {
                Redirect::Moved { group, addr } => {
                    self.route[group as usize] = self.node(&addr);
                    reports.extend(users);
                }
                Redirect::Ask { group, addr } => match self.node(&addr) {
                    Some(i) => {
                        let dropped = self.nodes[i].1.give(&users, &[], Some(group));
                        stats.unreported.fetch_add(dropped, Relaxed);
                    }
                    None => {
                        stats
                            .unreported
                            .fetch_add(users.iter().map(|(_, r)| r.requests).sum(), Relaxed);
                    }
                },
            }
        }
        reports.sort_unstable_by_key(|&(id, _)| (group(id, groups), id));
        let mut handed = 0;
        let mut rest: &[(u64, Report)] = &reports;
        for g in 0..groups {
            let n = rest.iter().take_while(|(id, _)| group(*id, groups) == g).count();
            let (users, tail) = rest.split_at(n);
            rest = tail;
            if users.is_empty() && !poll {
                continue;
            }
            match self.route[g as usize] {
                Some(i) => {
                    let polled = [g];
                    let dropped = self.nodes[i].1.give(users, if poll { &polled } else { &[] }, None);
                    stats.unreported.fetch_add(dropped, Relaxed);
                    handed += users.len();
                }
                None => {
                    stats
                        .unreported
                        .fetch_add(users.iter().map(|(_, r)| r.requests).sum(), Relaxed);
                }
            }
        }
        // Up: a slot map, and every master connected.
        let up = self.generation > 0 && self.nodes.iter().all(|(_, n)| n.shared.up.load(Relaxed));
        stats.up.store(up as u64, Relaxed);
        if self.generation == 0 && self.logged_up != Some(false) {
            let why = self.refresher.last_error();
            if !why.is_empty() {
                self.logged_up = Some(false);
                crate::warn!(
                    "redis cluster {}: {why}; deciding from the node-local table until it is back (reconnecting)",
                    self.label
                );
            }
        } else if up && self.logged_up != Some(true) {
            self.logged_up = Some(true);
            crate::info!(
                "redis cluster {}: {} masters connected; the rate limit is fleet-wide",
                self.label,
                self.nodes.len()
            );
        } else if !up && self.generation > 0 && self.logged_up == Some(true) {
            self.logged_up = Some(false);
        }
        Ok(handed)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the sync thread of a fleet-wide limit: it syncs `limiter` every `interval` until `shutdown` is set.
pub fn start(
    limiter: Arc<Limiter>,
    shutdown: Arc<AtomicBool>,
    mut syncer: Syncer,
    interval: Duration,
) -> std::io::Result<()> {
    syncer.attach(limiter.clone(), interval)?;
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
