//! Upstream pools through the real binary: named pools of scripted servers that name themselves in their
//! answers, routes by API version and path, balancing, passive health (ejection), retries and failover (a
//! server process killed mid-load and started again).

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::*;

const V1: &str = "application/vnd.acme.v1+json";
const V2: &str = "application/vnd.acme.v2+json";

fn get_as(path: &str, accept: &str, auth: Option<&str>) -> Vec<u8> {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: Bearer {a}\r\n"));
    format!("GET {path} HTTP/1.1\r\nHost: api\r\nAccept: {accept}\r\n{auth}\r\n").into_bytes()
}

/// Which server answered (the body names it), or the status when the ingress answered itself.
fn who(c: &mut Client, path: &str, accept: &str, auth: Option<&str>) -> String {
    let r = c.roundtrip(&get_as(path, accept, auth));
    if r.status == 200 {
        String::from_utf8(r.body).unwrap()
    } else {
        format!("{} {}", r.status, r.json()["reason"].as_str().unwrap_or(""))
    }
}

fn servers(names: &[&'static str]) -> Vec<Upstream> {
    names.iter().map(|n| Upstream::ok(n)).collect()
}

fn list(ups: &[Upstream]) -> String {
    ups.iter().map(|u| u.addr.to_string()).collect::<Vec<_>>().join(",")
}

/// Versions and prefixes reach their pools with a fixed precedence (version and prefix, version, longest
/// prefix, default), whatever the order of the flags; no route and no default pool: 404 `no_route`.
#[test]
fn routes_by_version_and_prefix() {
    let (d, v2, billing, billing_v2, docs) = (
        Upstream::ok("default"),
        Upstream::ok("v2"),
        Upstream::ok("billing"),
        Upstream::ok("billing-v2"),
        Upstream::ok("docs"),
    );
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--accept",
        &format!("{V1},{V2}"),
        "--upstream",
        &d.addr.to_string(),
        "--upstream",
        &format!("v2={}", v2.addr),
        "--upstream",
        &format!("billing={}", billing.addr),
        "--upstream",
        &format!("billing-v2={}", billing_v2.addr),
        "--upstream",
        &format!("docs={}", docs.addr),
        // Written with the broadest first: precedence does not depend on the order.
        "--route",
        "prefix:/b,docs",
        "--route",
        "prefix:/billing/,billing",
        "--route",
        "version:v2,v2",
        "--route",
        "version:v2,prefix:/billing/,billing-v2",
    ]);
    let mut c = p.connect();
    assert_eq!(who(&mut c, "/x", V1, None), "default");
    assert_eq!(who(&mut c, "/x", V2, None), "v2");
    assert_eq!(who(&mut c, "/billing/1", V1, None), "billing");
    assert_eq!(who(&mut c, "/billing/1", V2, None), "billing-v2");
    assert_eq!(who(&mut c, "/bx", V1, None), "docs");
    assert_eq!(
        who(&mut c, "/bx", V2, None),
        "v2",
        "a version route wins over a prefix route"
    );
    // The route table, as --check-config prints it.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--check-config",
            "--upstream",
            &format!("a={}", d.addr),
            "--route",
            "prefix:/a/,a",
        ])
        .args(["--route", "version:v3,prefix:/a/b/,a", "--route", "version:v3,a"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "# routes, in precedence order:\n#   version:v3,prefix:/a/b/ -> a\n#   version:v3 -> a\n#   prefix:/a/ -> a\n#   (default) -> none: 404 no_route\n"
        ),
        "{text}"
    );

    // Only named pools, no default: a request no route matches gets 404.
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--upstream",
        &format!("billing={}", billing.addr),
        "--route",
        "prefix:/billing/,billing",
    ]);
    let mut c = p.connect();
    assert_eq!(who(&mut c, "/billing/x", "application/json", None), "billing");
    assert_eq!(who(&mut c, "/other", "application/json", None), "404 no_route");
    // The connection stays usable after a 404.
    assert_eq!(who(&mut c, "/billing/y", "application/json", None), "billing");
}

fn spread(balance: &str, n: usize) -> HashMap<String, usize> {
    let ups = servers(&["s1", "s2", "s3"]);
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--upstream",
        &format!("api={}", list(&ups)),
        "--route",
        "prefix:/,api",
        "--balance",
        &format!("api={balance}"),
    ]);
    let mut counts = HashMap::new();
    let mut clients: Vec<Client> = (0..4).map(|_| p.connect()).collect();
    for i in 0..n {
        *counts
            .entry(who(&mut clients[i % 4], "/x", "application/json", None))
            .or_insert(0) += 1;
    }
    counts
}

/// 3 000 requests over 3 servers: power of two choices and round robin within 10% of even.
#[test]
fn p2c_and_round_robin_spread_evenly() {
    for balance in ["p2c", "round-robin"] {
        let counts = spread(balance, 3000);
        assert_eq!(counts.len(), 3, "{balance}: {counts:?}");
        for (s, n) in &counts {
            assert!((900..=1100).contains(n), "{balance}: {s} got {n} of 3000 ({counts:?})");
        }
    }
}

/// Hash balancing: one user always reaches one server; without one of the servers, only that server's users
/// move.
#[test]
fn hash_keeps_users_and_moves_only_the_leavers() {
    let ups = servers(&["s1", "s2", "s3"]);
    let assign = |pool: &[&Upstream]| -> HashMap<String, String> {
        let addrs = pool.iter().map(|u| u.addr.to_string()).collect::<Vec<_>>().join(",");
        let p = Proxy::start(&[
            "--workers",
            "2",
            "--rate",
            "1000",
            "--upstream",
            &format!("api={addrs}"),
            "--route",
            "prefix:/,api",
            "--balance",
            "api=hash",
        ]);
        let mut out = HashMap::new();
        for u in 0..300 {
            let user = format!("user-{u}");
            // Two requests on two connections (two workers may take them): the same server.
            let a = who(&mut p.connect(), "/x", "application/json", Some(&user));
            let b = who(&mut p.connect(), "/y", "application/json", Some(&user));
            assert_eq!(a, b, "{user}");
            out.insert(user, a);
        }
        out
    };
    let all = assign(&[&ups[0], &ups[1], &ups[2]]);
    let per: Vec<usize> = ["s1", "s2", "s3"]
        .iter()
        .map(|s| all.values().filter(|v| v == s).count())
        .collect();
    assert!(per.iter().all(|&n| n > 50), "{per:?}");
    let without_s2 = assign(&[&ups[0], &ups[2]]);
    for (user, before) in &all {
        if before != "s2" {
            assert_eq!(&without_s2[user], before, "{user} moved though its server stayed");
        }
    }
}

/// A server process the test can kill and start again on the same port.
struct Named {
    child: Child,
    addr: SocketAddr,
}

impl Named {
    fn start(name: &str, port: u16) -> Named {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/named_server.py");
        let mut cmd = Command::new("/usr/bin/python3");
        die_with_test(&mut cmd);
        let mut child = cmd
            .args([script, name, &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().strip_prefix("listening on ").expect(&line).parse().unwrap();
        Named {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One of three servers killed (SIGKILL) mid-load: every GET still gets a 200 (connect failures and
/// connections reset before an answer are retried on another server), the dead server is ejected after
/// --eject-after failures and gets no request while ejected. (That an ejection ends after --eject-time, and
/// doubles when repeated, is checked with a moved clock in the unit tests of src/pool.rs.)
#[test]
fn failover_when_a_server_dies() {
    let mut s = [Named::start("a", 0), Named::start("b", 0), Named::start("c", 0)];
    let addrs = s.iter().map(|n| n.addr.to_string()).collect::<Vec<_>>().join(",");
    let p = Proxy::start(&[
        "--workers",
        "2",
        "--rate",
        "0",
        "--upstream",
        &addrs,
        "--eject-after",
        "2",
        "--eject-time",
        "60s",
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut clients: Vec<Client> = (0..4).map(|_| p.connect()).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut bad = Vec::new();
    for i in 0..600 {
        if i == 200 {
            s[1].kill();
        }
        let r = clients[i % 4].roundtrip(&get_as("/x", "application/json", None));
        if r.status == 200 {
            *seen.entry(String::from_utf8(r.body).unwrap()).or_insert(0) += 1;
        } else {
            bad.push(r.status);
        }
    }
    assert!(bad.is_empty(), "non-2xx answers while a server died: {bad:?}");
    let label = format!("{{pool=\"default\",server=\"{}\"}}", s[1].addr);
    assert_eq!(
        p.metric(&format!("portcullis_upstream_healthy{label}")),
        Some(0.0),
        "ejected"
    );
    assert!(
        p.metric(&format!("portcullis_upstream_ejections_total{label}"))
            .unwrap()
            >= 1.0
    );
    // While ejected (60 s), the dead server is not tried: no new failure is counted for it, even once it
    // listens again.
    let failed_label = format!(
        "portcullis_upstream_requests_total{{pool=\"default\",server=\"{}\",class=\"failed\"}}",
        s[1].addr
    );
    let before = p.metric(&failed_label).unwrap();
    assert!(before >= 2.0, "{before}");
    s[1] = Named::start("b", s[1].addr.port());
    for i in 0..60 {
        let r = clients[i % 4].roundtrip(&get_as("/x", "application/json", None));
        assert_eq!(r.status, 200);
        assert_ne!(r.body, b"b", "an ejected server was sent a request");
    }
    assert_eq!(p.metric(&failed_label), Some(before));
    assert!(seen["a"] > 100 && seen["c"] > 100, "{seen:?}");
    // The pool's latency histogram counted every request that got an answer or failed.
    let count = p
        .metric("portcullis_upstream_request_duration_seconds_count{pool=\"default\"}")
        .unwrap();
    assert!(count >= 660.0, "{count}");
}

/// A server that accepts and never answers: its requests time out (504, never retried: a timeout may mean
/// the request is being processed) and it is ejected; the others keep answering.
#[test]
fn a_hanging_server_times_out_and_is_ejected() {
    let good = Upstream::ok("good");
    let hang = Upstream::start(|_| Action::Silent);
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--upstream",
        &format!("{},{}", good.addr, hang.addr),
        "--balance",
        "default=round-robin",
        "--upstream-timeout",
        "1s",
        "--eject-after",
        "2",
        "--eject-time",
        "60s",
        "--admin",
        "127.0.0.1:0",
    ]);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let mut c = p.connect();
        statuses.push(c.roundtrip(&get_as("/x", "application/json", None)).status);
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 504).count(), 2, "{statuses:?}");
    assert!(statuses.iter().all(|&s| s == 200 || s == 504), "{statuses:?}");
    // Ejected after its second timeout: the rest all went to the good server.
    let last: Vec<u16> = statuses.iter().rev().take(6).copied().collect();
    assert!(last.iter().all(|&s| s == 200), "{statuses:?}");
    let label = format!("{{pool=\"default\",server=\"{}\"}}", hang.addr);
    assert_eq!(p.metric(&format!("portcullis_upstream_healthy{label}")), Some(0.0));
}

/// Active health (`--health`): a server that stops answering its checks is taken out after
/// --health-fall failed checks (no client request is needed to find out), and is back after --health-rise
/// passed ones once it answers again.
#[test]
fn active_checks_take_a_dead_server_out_and_bring_it_back() {
    let mut s = [Named::start("a", 0), Named::start("b", 0)];
    let addrs = s.iter().map(|n| n.addr.to_string()).collect::<Vec<_>>().join(",");
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--upstream",
        &format!("api={addrs}"),
        "--route",
        "prefix:/,api",
        "--balance",
        "api=round-robin",
        "--health",
        "api=/healthz",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "500ms",
        "--health-rise",
        "2",
        "--health-fall",
        "2",
        "--panic-threshold",
        "0",
        "--admin",
        "127.0.0.1:0",
    ]);
    let label = format!("portcullis_upstream_healthy{{pool=\"api\",server=\"{}\"}}", s[1].addr);
    assert_eq!(p.metric(&label), Some(1.0));
    s[1].kill();
    p.wait_metric(&label, 0.0);
    let failed_label = format!(
        "portcullis_upstream_requests_total{{pool=\"api\",server=\"{}\",class=\"failed\"}}",
        s[1].addr
    );
    assert_eq!(
        p.metric(&failed_label),
        Some(0.0),
        "taken out before any request failed"
    );
    let mut c = p.connect();
    for _ in 0..10 {
        assert_eq!(who(&mut c, "/x", "application/json", None), "a");
    }
    s[1] = Named::start("b", s[1].addr.port());
    p.wait_metric(&label, 1.0);
    let names: Vec<String> = (0..4).map(|_| who(&mut c, "/x", "application/json", None)).collect();
    assert!(names.contains(&"b".to_string()), "{names:?}");
    assert_eq!(p.metric(&failed_label), Some(0.0));
    assert!(p.log.lock().unwrap().contains(": out"), "the change is logged");
}

/// Pools and routes as TOML tables in a --config file (`[upstreams.NAME]`, `[[routes]]`), next to the
/// top-level keys; --check-config prints the route table they make.
#[test]
fn pools_and_routes_from_a_config_file() {
    let (d, v2) = (Upstream::ok("default"), Upstream::ok("v2"));
    let dir = temp_dir("pools-config");
    let file = dir.join("portcullis.toml");
    std::fs::write(
        &file,
        format!(
            "workers = 1\nrate = 0\naccept = [\"{V1}\", \"{V2}\"]\nupstream = [\"{}\"]\n\n\
             [upstreams.backend-v2]\nservers = [\"{}\"]\nbalance = \"round-robin\"\n\n\
             [[routes]]\nversion = \"v2\"\npool = \"backend-v2\"\n",
            d.addr, v2.addr
        ),
    )
    .unwrap();
    let p = Proxy::start(&["--config", file.to_str().unwrap()]);
    let mut c = p.connect();
    assert_eq!(who(&mut c, "/x", V1, None), "default");
    assert_eq!(who(&mut c, "/x", V2, None), "v2");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("#   version:v2 -> backend-v2\n#   (default) -> default\n"),
        "{text}"
    );
    assert!(
        text.contains("balance = [\"default=p2c\", \"backend-v2=round-robin\"]"),
        "{text}"
    );
}

/// The file's pool tables are not silently replaced by the environment or a flag setting the same thing.
#[test]
fn pool_tables_and_a_flag_for_the_same_setting_are_refused() {
    let dir = temp_dir("pools-conflict");
    let file = dir.join("portcullis.toml");
    std::fs::write(&file, "[upstreams.billing]\nservers = [\"127.0.0.1:9\"]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "--config",
            file.to_str().unwrap(),
            "--upstream",
            "127.0.0.1:8",
            "--check-config",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tables set upstream, and so does --upstream"));
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--config", file.to_str().unwrap(), "--check-config"])
        .env("PORTCULLIS_UPSTREAM", "127.0.0.1:8")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("and so does PORTCULLIS_UPSTREAM"));
}

/// A pooled connection the server had closed (the keep-alive race) is retried on a fresh connection even
/// when no other server can take it: here a pool of one checked server (so the choice goes through the
/// balancer), whose server answers one request per connection and closes the next without a word.
#[test]
fn a_stale_pooled_connection_is_retried_on_the_same_lone_server() {
    let seen = std::sync::Mutex::new(HashMap::<usize, usize>::new());
    let up = Upstream::start(move |r| {
        let mut seen = seen.lock().unwrap();
        let n = seen.entry(r.conn).or_insert(0);
        *n += 1;
        if *n == 1 {
            Action::Respond(response(200, "ok"))
        } else {
            Action::Close
        }
    });
    let p = Proxy::start(&[
        "--workers",
        "1",
        "--rate",
        "0",
        "--upstream",
        &up.addr.to_string(),
        "--health",
        "default=/h",
        "--health-interval",
        "60s",
    ]);
    let mut c = p.connect();
    for i in 0..5 {
        let r = c.roundtrip(&get_as(&format!("/{i}"), "application/json", None));
        assert_eq!(r.status, 200, "request {i}: {}", String::from_utf8_lossy(&r.body));
    }
}

/// A reload (SIGHUP re-reading --config) changes pools, servers and routes under traffic: no client
/// connection is dropped and no request fails; a server added takes requests, one removed takes none once
/// the reload is in force, and a new route applies.
#[test]
fn pools_and_routes_change_on_reload_under_traffic() {
    let (s1, s2, s3) = (Upstream::ok("s1"), Upstream::ok("s2"), Upstream::ok("s3"));
    let dir = temp_dir("pools-reload");
    let file = dir.join("portcullis.toml");
    let write = |servers: &str, extra: &str| {
        std::fs::write(
            &file,
            format!("rate = 0\nworkers = 2\n[upstreams.api]\nservers = [{servers}]\nbalance = \"round-robin\"\n[[routes]]\nprefix = \"/\"\npool = \"api\"\n{extra}"),
        )
        .unwrap();
    };
    write(&format!("\"{}\", \"{}\"", s1.addr, s2.addr), "");
    let p = Proxy::start(&["--config", file.to_str().unwrap()]);
    let mut clients: Vec<Client> = (0..4).map(|_| p.connect()).collect();
    let run = |n: usize, clients: &mut Vec<Client>| -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for i in 0..n {
            *seen
                .entry(who(&mut clients[i % 4], "/x", "application/json", None))
                .or_insert(0) += 1;
        }
        seen
    };
    let before = run(40, &mut clients);
    assert!(before.contains_key("s1") && before.contains_key("s2"), "{before:?}");
    // s2 out, s3 in, and a billing pool with its route.
    write(
        &format!("\"{}\", \"{}\"", s1.addr, s3.addr),
        &format!(
            "[upstreams.billing]\nservers = [\"{}\"]\n[[routes]]\nprefix = \"/billing/\"\npool = \"billing\"\n",
            s2.addr
        ),
    );
    p.signal("HUP");
    p.wait_log("upstream pools and routes reloaded");
    // The same client connections go on; every worker takes the new pools at its next iteration.
    let after = run(80, &mut clients);
    assert_eq!(after.get("s2"), None, "a removed server took requests: {after:?}");
    assert!(after.contains_key("s1") && after.contains_key("s3"), "{after:?}");
    assert_eq!(who(&mut clients[0], "/billing/7", "application/json", None), "s2");
    assert!(
        !p.log.lock().unwrap().contains("ignored until a restart"),
        "{}",
        p.log.lock().unwrap()
    );
}
