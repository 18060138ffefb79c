//! The fleet-wide limit over a real Redis Cluster: three masters started here (`redis-server
//! --cluster-enabled yes`, joined by `redis-cli --cluster create`), two portcullis processes: the 2-node bound,
//! a master killed mid-traffic (only its slots' users fall back to node-local limits), a resharding under
//! traffic (the bound holds again within 2 s), and the quiet share (`--redis-share`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use portcullis::limit::fleet::{group, group_tag, id_key, user_id, DEFAULT_GROUPS};
use portcullis::redis_sync::cluster::{slot_of_tag, SlotMap};
use support::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One master of the test's cluster.
struct Master {
    child: Child,
    port: u16,
}

impl Master {
    fn con(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three masters, no replicas, each slot served by one of them; removed with their files on drop.
struct Cluster {
    masters: Vec<Master>,
    dir: PathBuf,
    /// The fleet's shared secret.
    secret: SecretFile,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-test-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let masters: Vec<Master> = (0..3)
            .map(|i| {
                let (port, bus) = (free_port(), free_port());
                let mut cmd = Command::new("redis-server");
                die_with_test(&mut cmd);
                let mut child = cmd
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-port", &bus.to_string()])
                    .args(["--cluster-config-file", &format!("nodes-{i}.conf")])
                    .args([
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-require-full-coverage",
                        "no",
                    ])
                    .args(["--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server (Debian package redis-server; .ci/run installs it)");
                let out = child.stdout.take().unwrap();
                let (tx, rx) = mpsc::channel();
                std::thread::spawn(move || {
                    let mut tx = Some(tx);
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        if line.contains("Ready to accept connections") {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(());
                            }
                        }
                    }
                });
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("redis-server did not start");
                Master { child, port }
            })
            .collect();
        let c = Cluster {
            masters,
            dir,
            secret: SecretFile::new("cluster"),
        };
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(c.masters.iter().map(|m| format!("127.0.0.1:{}", m.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (Debian package redis-tools, a dependency of redis-server)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        // Every master sees the whole cluster serving all slots.
        c.wait_until("the cluster is up", |c| {
            c.masters.iter().all(|m| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut m.con()).unwrap();
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            })
        });
        c
    }

    /// Polls `ready` (a state of the cluster itself) until it holds, for at most 20 s.
    fn wait_until(&self, what: &str, ready: impl Fn(&Cluster) -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ready(self) {
            assert!(Instant::now() < until, "{what}: not within 20 s");
            std::thread::sleep(Duration::from_millis(20)); // polling the state itself
        }
    }

    fn seeds(&self) -> String {
        self.masters
            .iter()
            .map(|m| format!("redis://127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The slot map as master `asked` sees it.
    fn slot_map(&self, asked: usize) -> SlotMap {
        let v: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut self.masters[asked].con())
            .unwrap();
        SlotMap::parse(&v, "127.0.0.1").unwrap()
    }

    /// Master `m`'s node id.
    fn id(&self, m: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.masters[m].con())
            .unwrap()
    }

    /// The index of the master serving `slot`.
    fn master_of(&self, slot: u16) -> usize {
        let port = self.slot_map(0).master(slot).unwrap().1;
        self.masters.iter().position(|m| m.port == port).unwrap()
    }

    /// The slot of `auth`'s key (its id under this fleet's secret; 16 groups).
    fn slot_of_user(&self, auth: &str) -> u16 {
        let secret = std::fs::read(&self.secret.path).unwrap();
        let id = user_id(id_key(&secret), 1, auth.as_bytes());
        slot_of_tag(&group_tag(group(id, DEFAULT_GROUPS)))
    }

    /// The first of `Bearer {prefix}0`, `Bearer {prefix}1`, ... whose key lies in `slot`.
    fn user_in_slot(&self, prefix: &str, slot: u16) -> String {
        (0..)
            .map(|i| format!("Bearer {prefix}{i}"))
            .find(|a| self.slot_of_user(a) == slot)
            .unwrap()
    }

    /// The first of `Bearer {prefix}0`, ... whose key lies on master `m`.
    fn user_on(&self, prefix: &str, m: usize) -> String {
        (0..)
            .map(|i| format!("Bearer {prefix}{i}"))
            .find(|a| self.master_of(self.slot_of_user(a)) == m)
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.masters {
            m.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn req(auth: &str) -> Vec<u8> {
    format!("GET /f HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nAuthorization: {auth}\r\n\r\n").into_bytes()
}

/// A node: `--rate 10` (burst 10), fleet-wide through `cluster`, syncing every 50 ms, with `extra` flags.
fn node(up: &Upstream, cluster: &Cluster, extra: &[&str]) -> Proxy {
    let (seeds, secret) = (cluster.seeds(), cluster.secret.path_str());
    let mut args = vec![
        "--rate",
        "10",
        "--secret-file",
        &secret,
        "--redis-cluster",
        &seeds,
        "--redis-sync",
        "50ms",
        "--admin",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let p = Proxy::with_upstream(up.addr, &args);
    p.wait_metric("portcullis_redis_up", 1.0);
    p
}

/// Right after `slot` moved to master `to`: a new user of that slot (named from `name`) at 3x the rate for 2 s
/// over both nodes is held fleet-wide (rate x 2 s + burst = 30, -2 / +10%), and the slot's keys are on `to`.
fn held_after_a_move(cluster: &Cluster, nodes: &(Proxy, Proxy), slot: u16, to: usize, name: &str) {
    let user = cluster.user_in_slot(name, slot);
    let total: u64 = alternate(&[&nodes.0, &nodes.1], &user, 30, 60).iter().sum();
    eprintln!("{name} admitted {total} after the move");
    assert!(
        (28..=33).contains(&total),
        "{name} admitted {total}; the fleet bound is 28..=33"
    );
    let keys: u64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut cluster.masters[to].con())
        .unwrap();
    assert!(keys >= 1, "the moved slot's keys are on its new master");
}

#[test]
fn a_cluster_holds_one_user_to_the_fleet_limit() {
    let cluster = Cluster::start();
    let up = Upstream::ok("ok");
    let nodes = Arc::new((node(&up, &cluster, &[]), node(&up, &cluster, &[])));
    nodes.0.wait_log("redis cluster");
    // Bob at 0.9x the rate over both nodes, at the same time: never refused.
    let n2 = nodes.clone();
    let bob = std::thread::spawn(move || alternate(&[&n2.0, &n2.1], "Bearer bob", 9, 36));
    // Alice at 3x the rate for 4 s over both nodes: the fleet admits rate x 4 s + burst = 50 (-2 / +10%).
    let alice = alternate(&[&nodes.0, &nodes.1], "Bearer alice", 30, 120);
    let total: u64 = alice.iter().sum();
    eprintln!("alice admitted {total} ({alice:?})");
    assert!(
        (48..=55).contains(&total),
        "alice admitted {total} ({alice:?}); the fleet bound is 48..=55"
    );
    assert_eq!(
        bob.join().unwrap().iter().sum::<u64>(),
        36,
        "bob, under the rate, is never refused"
    );
    // Alice's schedule is on the master of her slot, and only there.
    let owner = cluster.master_of(cluster.slot_of_user("Bearer alice"));
    for (i, m) in cluster.masters.iter().enumerate() {
        let keys: u64 = redis::cmd("DBSIZE").query(&mut m.con()).unwrap();
        if i == owner {
            assert!(keys >= 1, "master {i} holds alice's key");
        }
    }
    assert!(nodes.0.metric("portcullis_redis_synced_users_total").unwrap() > 0.0);
}

#[test]
fn a_master_killed_mid_traffic() {
    let mut cluster = Cluster::start();
    let up = Upstream::ok("ok");
    let (a, b) = (node(&up, &cluster, &[]), node(&up, &cluster, &[]));
    // Vic's key is on master 1; Sam's on master 2. Both at 3x over both nodes for 3 s; master 1 is killed
    // after Vic's first second.
    let vic = cluster.user_on("vic", 1);
    let sam = cluster.user_on("sam", 2);
    let nodes = Arc::new((a, b));
    let (tx, rx) = mpsc::channel();
    let n2 = nodes.clone();
    let v = vic.clone();
    let vic_thread = std::thread::spawn(move || alternate_signalling(&[&n2.0, &n2.1], &v, 30, 90, Some((30, tx))));
    let n3 = nodes.clone();
    let s = sam.clone();
    let sam_thread = std::thread::spawn(move || alternate(&[&n3.0, &n3.1], &s, 30, 90));
    rx.recv().unwrap();
    let killed_port = cluster.masters[1].port;
    cluster.masters[1].kill();
    let vic_ok = vic_thread.join().unwrap();
    let sam_ok = sam_thread.join().unwrap();
    eprintln!("vic (master killed) {vic_ok:?}, sam {sam_ok:?}");
    // Sam's master never went away: the fleet bound holds for him, rate x 3 s + burst = 40 (-2 / +10%).
    let sam_total: u64 = sam_ok.iter().sum();
    assert!(
        (38..=44).contains(&sam_total),
        "sam admitted {sam_total} ({sam_ok:?}); the fleet bound is 38..=44"
    );
    // Vic's nodes decide on their own: each within its local limit (burst + rate x 3 s).
    for (k, &n) in vic_ok.iter().enumerate() {
        assert!(n <= 10 + 30 + 1, "node {k} admitted {n} for vic");
    }
    // Both nodes say so, naming the master.
    nodes.0.wait_metric("portcullis_redis_up", 0.0);
    nodes.1.wait_metric("portcullis_redis_up", 0.0);
    nodes
        .0
        .wait_log(&format!("redis cluster node 127.0.0.1:{killed_port}: "));
    nodes
        .0
        .wait_log("deciding from the node-local table for the users of its slots");
    // After the kill, a new user of master 2 is still held fleet-wide: the other masters' syncs never
    // wait on the dead one.
    let sue = cluster.user_on("sue", 2);
    let sue_total: u64 = alternate(&[&nodes.0, &nodes.1], &sue, 30, 60).iter().sum();
    assert!(
        (28..=33).contains(&sue_total),
        "sue admitted {sue_total}; the fleet bound is 28..=33"
    );
}

#[test]
fn a_reshard_under_traffic() {
    let cluster = Cluster::start();
    let up = Upstream::ok("ok");
    let nodes = Arc::new((node(&up, &cluster, &[]), node(&up, &cluster, &[])));
    // The default group whose slot is fewest slots from the start of its master's range: resharding that
    // many slots from there moves it.
    let map = cluster.slot_map(0);
    let (slot, from_start, start) = (0..DEFAULT_GROUPS)
        .map(|g| slot_of_tag(&group_tag(g)))
        .map(|s| {
            let (a, _, _) = map.ranges.iter().find(|(a, b, _)| (*a..=*b).contains(&s)).unwrap();
            (s, s - a, *a)
        })
        .min_by_key(|&(_, d, _)| d)
        .unwrap();
    let from = cluster.master_of(start);
    let to = (from + 1) % 3;
    let id = |m: usize| cluster.id(m);
    // Ursula (in that slot) at 3x over both nodes while the slots move.
    let ursula = cluster.user_in_slot("ursula", slot);
    let n2 = nodes.clone();
    let u = ursula.clone();
    let traffic = std::thread::spawn(move || alternate(&[&n2.0, &n2.1], &u, 30, 150));
    let out = Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", cluster.masters[from].port),
        ])
        .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
        .args(["--cluster-slots", &(from_start + 1).to_string(), "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(cluster.master_of(slot), to, "the slot moved");
    let during = traffic.join().unwrap();
    eprintln!("ursula during the reshard: {during:?}");
    // Right after: the nodes followed MOVED to the slot's new master.
    held_after_a_move(&cluster, &nodes, slot, to, "uma");
}

#[test]
fn a_migrating_slot_is_followed_with_asking_then_held_again() {
    // A slot held half-way through a migration (MIGRATING on its master, IMPORTING on another, as
    // `redis-cli --cluster reshard` leaves it while it moves keys). Its master answers ASK for keys it does
    // not have; the importing master, asked first with ASKING, answers TRYAGAIN to a call of several keys
    // some of which it does not have yet (every call carries the group's hot list and its users), so while
    // the slot is in flight its users are counted as unreported: node-local limits, never an error. Once the
    // slot has moved, the nodes follow MOVED and the limit is fleet-wide again.
    let cluster = Cluster::start();
    let up = Upstream::ok("ok");
    let nodes = Arc::new((node(&up, &cluster, &[]), node(&up, &cluster, &[])));
    nodes.0.wait_log("redis cluster");
    nodes.1.wait_log("redis cluster");
    let slot = slot_of_tag(&group_tag(5));
    let from = cluster.master_of(slot);
    let to = (from + 1) % 3;
    let id = |m: usize| cluster.id(m);
    let setslot = |m: usize, how: &str, node: String| {
        let () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(node)
            .query(&mut cluster.masters[m].con())
            .unwrap();
    };
    let asking_calls = |m: usize| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut cluster.masters[m].con())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_asking:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    let unreported = || {
        nodes.0.metric("portcullis_redis_unreported_requests_total").unwrap()
            + nodes.1.metric("portcullis_redis_unreported_requests_total").unwrap()
    };
    setslot(to, "IMPORTING", id(from));
    setslot(from, "MIGRATING", id(to));
    let before = unreported();
    // Ivy (in that slot) at 3x the rate over both nodes for 2 s: every answer a 200 or a 429 (`alternate`
    // checks), each node holding her to its own budget (rate x 2 s + burst = 30 each, -2 / +10%).
    let ivy = cluster.user_in_slot("ivy", slot);
    let during = alternate(&[&nodes.0, &nodes.1], &ivy, 30, 60);
    eprintln!("ivy admitted {during:?} while her slot migrates");
    for n in &during {
        assert!(
            (28..=33).contains(n),
            "ivy admitted {during:?}; each node's own bound is 28..=33"
        );
    }
    assert!(
        asking_calls(to) >= 1,
        "the nodes followed ASK to the importing master, with ASKING"
    );
    assert!(
        unreported() > before,
        "the calls refused with TRYAGAIN were counted as unreported"
    );
    // The slot moves (it has no keys to carry): the nodes find its new master.
    for m in [to, from] {
        setslot(m, "NODE", id(to));
    }
    held_after_a_move(&cluster, &nodes, slot, to, "iris");
}

#[test]
fn a_quiet_share_keeps_light_users_away_from_redis() {
    let cluster = Cluster::start();
    let up = Upstream::ok("ok");
    // Two nodes, each keeping half of a user's rate and burst to itself.
    let share = ["--redis-share", "0.5"];
    let nodes = Arc::new((node(&up, &cluster, &share), node(&up, &cluster, &share)));
    // Calls of a command on all masters, from INFO commandstats.
    let calls = |c: &Cluster, cmd: &str| -> u64 {
        c.masters
            .iter()
            .map(|m| {
                let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut m.con()).unwrap();
                let line = stats
                    .lines()
                    .find(|l| l.starts_with(&format!("cmdstat_{cmd}:")))
                    .unwrap_or("");
                line.split([':', ','])
                    .find_map(|kv| kv.strip_prefix("calls=")?.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    };
    let syncs = |p: &Proxy| p.metric("portcullis_redis_syncs_total{result=\"ok\"}").unwrap();
    for m in &cluster.masters {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut m.con()).unwrap();
    }
    // 50 light users, one request each on each node: quiet (nothing written to Redis).
    for i in 0..50 {
        for p in [&nodes.0, &nodes.1] {
            assert_eq!(p.connect().roundtrip(&req(&format!("Bearer light{i}"))).status, 200);
        }
    }
    // Each node has since made round trips to every master (one per master and sync: the hot lists' reads).
    let after = (syncs(&nodes.0), syncs(&nodes.1));
    let until = Instant::now() + Duration::from_secs(10);
    while syncs(&nodes.0) < after.0 + 6.0 || syncs(&nodes.1) < after.1 + 6.0 {
        assert!(Instant::now() < until, "the nodes stopped syncing");
        std::thread::sleep(Duration::from_millis(20)); // polling the metric itself
    }
    let writes = calls(&cluster, "set") + calls(&cluster, "incrby");
    assert_eq!(writes, 0, "the light users were written to Redis");
    assert!(calls(&cluster, "zrangebyscore") > 0, "the hot lists were read");
    // Each node counts what it kept quiet: the 50 light users' requests.
    for p in [&nodes.0, &nodes.1] {
        assert_eq!(p.metric("portcullis_redis_quiet_requests_total"), Some(50.0));
    }
    // Alice at 3x over both nodes for 4 s: each node passes its share within a second, marks her hot, and
    // both report her in full from then on: rate x 4 s + burst = 50 (-2 / +10%).
    let alice = alternate(&[&nodes.0, &nodes.1], "Bearer alice", 30, 120);
    let total: u64 = alice.iter().sum();
    eprintln!("alice admitted {total} ({alice:?}) with a share of 0.5");
    assert!(
        (48..=55).contains(&total),
        "alice admitted {total} ({alice:?}); the fleet bound is 48..=55"
    );
    assert!(calls(&cluster, "zadd") >= 1, "alice was marked hot");
}
