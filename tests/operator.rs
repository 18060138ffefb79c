//! Operator control through the binary: each rule in observe and off, per-user tiers (by value and by
//! SHA-256), and a SIGHUP reload under steady keep-alive load.

mod support;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn metrics(p: &Proxy) -> String {
    p.admin_get("/metrics").1
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn observed(text: &str, reason: &str) -> u64 {
    counter(
        text,
        &format!("portcullis_requests_total{{outcome=\"observed\",reason=\"{reason}\"}}"),
    )
}

/// The requests of `observe_and_off`: (what is sent, the refusal it would get in enforce).
fn offenders() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (b"GET /no-accept HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer o\r\n\r\n".to_vec(), "accept_header_missing"),
        (
            b"POST /text HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer o\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"
                .to_vec(),
            "content_type_not_json",
        ),
        (
            b"POST /bad-json HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer o\r\nContent-Type: application/json\r\nContent-Length: 6\r\n\r\n{\"a\":}"
                .to_vec(),
            "malformed_json",
        ),
    ]
}

#[test]
fn each_rule_in_observe_forwards_unchanged_and_counts_and_logs() {
    let dir = temp_dir("observe");
    let log = dir.join("access.log");
    let up = Upstream::ok("ok");
    let mut p = Proxy::with_upstream(
        up.addr,
        &[
            "--accept-rule",
            "observe",
            "--content-type-rule",
            "observe",
            "--json-rule",
            "observe",
            "--rate-rule",
            "observe",
            "--rate",
            "1",
            "--observe-header",
            "X-Portcullis-Observed",
            "--admin",
            "127.0.0.1:0",
            "--access-log",
            log.to_str().unwrap(),
        ],
    );
    let mut c = p.connect();
    for (req, _) in offenders() {
        assert_eq!(c.roundtrip(&req).status, 200);
    }
    // The client's own copy of the observe header never reaches the upstream. This request is also the
    // user's second within a second at --rate 1: the rate rule observes it.
    let forged = b"GET /forged HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: Bearer o\r\nX-Portcullis-Observed: none\r\n\r\n";
    assert_eq!(c.roundtrip(forged).status, 200);
    let got = up.requests();
    assert_eq!(got.len(), 4, "everything reached the upstream");
    for (i, (req, reason)) in offenders().iter().enumerate() {
        // Unchanged: the same request line and body, the client's fields, plus what a proxy adds.
        let sent = String::from_utf8_lossy(req);
        assert_eq!(got[i].request_line(), sent.split("\r\n").next().unwrap());
        assert!(
            req.ends_with(&got[i].body) && (i == 0) == got[i].body.is_empty(),
            "the body as sent"
        );
        assert_eq!(got[i].header("authorization").as_deref(), Some("Bearer o"));
        // The first request is the user's first: only the Accept rule speaks.
        assert_eq!(
            got[i].header("x-portcullis-observed").as_deref(),
            Some(if i == 0 { *reason } else { "rate_limited" })
        );
    }
    assert_eq!(got[3].header("x-portcullis-observed").as_deref(), Some("rate_limited"));
    let m = metrics(&p);
    assert_eq!(observed(&m, "accept_header_missing"), 1);
    assert_eq!(
        observed(&m, "rate_limited"),
        3,
        "the rate rule spoke first for the other three"
    );
    assert_eq!(counter(&m, "portcullis_requests_total{outcome=\"forwarded\"}"), 4);
    // With every rule observing, a rate-limited user's other refusals are not lost: a fresh user each.
    for (i, (req, reason)) in offenders().iter().enumerate().skip(1) {
        let fresh = String::from_utf8_lossy(req).replace("Bearer o", &format!("Bearer fresh{i}"));
        assert_eq!(c.roundtrip(fresh.as_bytes()).status, 200);
        assert_eq!(
            up.requests().last().unwrap().header("x-portcullis-observed").as_deref(),
            Some(*reason)
        );
    }
    let m = metrics(&p);
    assert_eq!(observed(&m, "content_type_not_json"), 1);
    assert_eq!(observed(&m, "malformed_json"), 1);
    // The three requests the rate rule observed did not spend user o's budget: one interval (1 s at
    // --rate 1) after the allowed one, o is allowed again. Had they been charged, o would be 3 s in debt.
    std::thread::sleep(Duration::from_millis(1100)); // the limit is about time: let one interval pass
    assert_eq!(c.roundtrip(forged).status, 200);
    assert_eq!(up.requests().last().unwrap().header("x-portcullis-observed"), None);
    p.signal("TERM");
    drop(c);
    assert!(p.child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert!(
        lines[6].get("would_refuse").is_none(),
        "only observed requests carry the field"
    );
    assert_eq!(lines[0]["would_refuse"], "accept_header_missing");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[4]["would_refuse"], "content_type_not_json");
    assert_eq!(lines[5]["would_refuse"], "malformed_json");
}

#[test]
fn rules_off_forward_and_count_nothing() {
    let up = Upstream::ok("ok");
    let p = Proxy::with_upstream(
        up.addr,
        &[
            "--accept-rule",
            "off",
            "--content-type-rule",
            "off",
            "--json-rule",
            "off",
            "--rate-rule",
            "off",
            "--rate",
            "1",
            "--observe-header",
            "X-Portcullis-Observed",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let mut c = p.connect();
    for _ in 0..2 {
        for (req, _) in offenders() {
            assert_eq!(c.roundtrip(&req).status, 200);
        }
    }
    assert_eq!(up.requests().len(), 6);
    assert!(up
        .requests()
        .iter()
        .all(|r| r.header("x-portcullis-observed").is_none()));
    let m = metrics(&p);
    for reason in [
        "accept_header_missing",
        "content_type_not_json",
        "malformed_json",
        "rate_limited",
    ] {
        assert_eq!(observed(&m, reason), 0, "{reason}");
    }
    // And in enforce (the default) the same requests are refused: the test above is not vacuous.
    let q = Proxy::with_upstream(up.addr, &["--rate", "100"]);
    let mut c = q.connect();
    for (req, reason) in offenders() {
        let r = c.roundtrip(&req);
        assert_eq!(r.json()["reason"], reason);
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn req(auth: &str) -> Vec<u8> {
    format!("GET /t HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nAuthorization: {auth}\r\n\r\n").into_bytes()
}

/// `n` requests at `per_sec` on one connection, paced on an absolute schedule: the 200s.
fn paced(p: &Proxy, auth: &str, per_sec: u64, n: u64) -> (u64, Option<Response>) {
    let mut c = p.connect();
    let start = Instant::now();
    let (mut ok, mut refusal) = (0, None);
    for i in 0..n {
        let at = start + Duration::from_micros(i * 1_000_000 / per_sec);
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d); // pacing the load, not synchronising
        }
        let r = c.roundtrip(&req(auth));
        match r.status {
            200 => ok += 1,
            429 => refusal = Some(r),
            s => panic!("{s}"),
        }
    }
    (ok, refusal)
}

#[test]
fn tiers_by_value_and_by_digest() {
    let dir = temp_dir("tiers");
    let limits = dir.join("limits.toml");
    std::fs::write(
        &limits,
        format!(
            "[tiers.gold]\nrate = 50\nusers = [\"Bearer listed\", \"sha256:{}\"]\n",
            sha256_hex("Bearer hashed")
        ),
    )
    .unwrap();
    let up = Upstream::ok("ok");
    let p = Arc::new(Proxy::with_upstream(
        up.addr,
        &[
            "--rate",
            "10",
            "--limits",
            limits.to_str().unwrap(),
            "--ratelimit-headers",
        ],
    ));
    // Three users at 40 requests/s for 2 s, at the same time.
    let run = |auth: &'static str| {
        let p = p.clone();
        std::thread::spawn(move || paced(&p, auth, 40, 80))
    };
    let (listed, hashed, unlisted) = (run("Bearer listed"), run("Bearer hashed"), run("Bearer nobody"));
    let (listed, hashed, (unlisted, refusal)) =
        (listed.join().unwrap(), hashed.join().unwrap(), unlisted.join().unwrap());
    assert_eq!(listed.0, 80, "a gold user at 40/s is never refused");
    assert_eq!(hashed.0, 80, "a user listed by the SHA-256 of their key is gold too");
    assert!(
        (25..=35).contains(&unlisted),
        "an unlisted user at 40/s gets rate x 2 s + burst = 30: {unlisted}"
    );
    let r = refusal.unwrap();
    assert_eq!(r.header("ratelimit-policy").as_deref(), Some("\"default\";q=10;w=1"));
    // A gold user's own refusal and quota name the tier.
    let mut c = p.connect();
    let ok = c.roundtrip(&req("Bearer listed"));
    assert!(
        ok.header("ratelimit").unwrap().starts_with("\"gold\";r="),
        "{:?}",
        ok.header("ratelimit")
    );
    let mut last = ok;
    for _ in 0..60 {
        last = c.roundtrip(&req("Bearer listed"));
        if last.status == 429 {
            break;
        }
    }
    assert_eq!(last.status, 429);
    assert_eq!(last.header("ratelimit-policy").as_deref(), Some("\"gold\";q=50;w=1"));
}

#[test]
fn reload_under_load_swaps_the_policy_and_keeps_connections_and_schedules() {
    let dir = temp_dir("reload");
    let (config, limits) = (dir.join("portcullis.toml"), dir.join("limits.toml"));
    std::fs::write(&config, "accept-rule = \"observe\"\n").unwrap();
    let gold_users = "users = [\"Bearer gold\", \"Bearer gold2\", \"Bearer gold3\"]";
    std::fs::write(&limits, format!("[tiers.gold]\nrate = 5\n{gold_users}\n")).unwrap();
    let up = Upstream::ok("ok");
    let p = Arc::new(Proxy::with_upstream(
        up.addr,
        &[
            "--config",
            config.to_str().unwrap(),
            "--limits",
            limits.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--rate",
            "1",
            "--burst",
            "5",
            // Below, thousands of invented users share one address: that is what the per-address backstop
            // refuses, and it is not what this test is about.
            "--ip-rate",
            "0",
        ],
    ));
    // Before: a default user (1/s, burst 5) and a gold user (5/s) exhaust their bursts.
    let mut steady = p.connect();
    let statuses: Vec<u16> = (0..6).map(|_| steady.roundtrip(&req("Bearer steady")).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let mut gold = p.connect();
    let statuses: Vec<u16> = (0..6).map(|_| gold.roundtrip(&req("Bearer gold")).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);

    // 50 keep-alive connections send steadily without Accept (observed before the reload, refused after);
    // each request is a new default-tier user, so the rate limit never speaks.
    // Phase: 0 before the signal, 1 signal sent, 2 the reload is confirmed (metric).
    let phase = Arc::new(AtomicU8::new(0));
    let stop = Arc::new(AtomicU8::new(0));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let conns: Vec<_> = (0..50)
        .map(|i| {
            let (p, phase, stop, counts) = (p.clone(), phase.clone(), stop.clone(), counts.clone());
            std::thread::spawn(move || {
                let mut c = p.connect();
                let mut n = 0u64;
                while stop.load(Ordering::Acquire) == 0 && n < 2_000 {
                    let at = phase.load(Ordering::Acquire);
                    let r = format!("GET /s HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer c{i}-{n}\r\n\r\n");
                    let resp = c.roundtrip(r.as_bytes()); // panics on a closed or broken connection
                                                          // Phase 0 on both sides of the exchange: no reload can have happened during it.
                    let at = if at == 0 && phase.load(Ordering::Acquire) != 0 {
                        1
                    } else {
                        at
                    };
                    match at {
                        0 => assert_eq!(resp.status, 200, "before the reload the Accept rule observes"),
                        2 => {
                            assert_eq!(resp.status, 406, "after the reload it enforces");
                            assert!(resp.header("connection").is_none(), "and keeps the connection");
                        }
                        _ => assert!(resp.status == 200 || resp.status == 406),
                    }
                    if at != 1 {
                        counts[(at / 2) as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_millis(5)); // pacing the load, not synchronising
                }
            })
        })
        .collect();
    let until = Instant::now() + IO_TIMEOUT;
    while counts[0].load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10)); // waiting for the load to be under way
    }

    // A broken limits file: refused, the old policy stays (gold2, fresh, still gets gold's 5/s burst).
    std::fs::write(&limits, "[tiers.gold]\nrate = fast\n").unwrap();
    p.signal("HUP");
    p.wait_metrics_line("portcullis_reloads_total{result=\"failed\"} 1");
    assert!(p.log.lock().unwrap().contains("reload refused, the old policy stays"));
    let mut gold2 = p.connect();
    let statuses: Vec<u16> = (0..6).map(|_| gold2.roundtrip(&req("Bearer gold2")).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let r = gold2.roundtrip(&req("Bearer gold2"));
    assert_eq!(r.header("ratelimit-policy").as_deref(), Some("\"gold\";q=5;w=1"));

    // The real change: Accept rule observe -> enforce, gold 5/s -> 100/s (burst 200), and a setting that
    // needs a restart.
    std::fs::write(&config, "accept-rule = \"enforce\"\nmax-connections = 500\n").unwrap();
    std::fs::write(
        &limits,
        format!("[tiers.gold]\nrate = 100\nburst = 200\n{gold_users}\n"),
    )
    .unwrap();
    phase.store(1, Ordering::Release);
    p.signal("HUP");
    p.wait_metrics_line("portcullis_reloads_total{result=\"ok\"} 1");
    phase.store(2, Ordering::Release);
    let after_from = counts[1].load(Ordering::Relaxed);
    let until = Instant::now() + IO_TIMEOUT;
    while counts[1].load(Ordering::Relaxed) < after_from + 200 {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10)); // letting the load run under the new policy
    }
    stop.store(1, Ordering::Release);
    for t in conns {
        t.join().expect("a connection saw an error or a wrong answer");
    }
    assert!(p
        .log
        .lock()
        .unwrap()
        .contains("ignored until a restart: max-connections"));
    // The schedules survived: the default user, 5 s ahead a few seconds ago, gets fewer than the 5 a fresh
    // schedule would (one per second since); gold, 1 s ahead, is within the new tier's tolerance.
    let steady_ok = (0..5)
        .filter(|_| steady.roundtrip(&req("Bearer steady")).status == 200)
        .count();
    assert!(
        steady_ok < 5,
        "the default user's schedule survived the reload: {steady_ok} allowed"
    );
    let statuses: Vec<u16> = (0..10).map(|_| gold.roundtrip(&req("Bearer gold")).status).collect();
    assert!(statuses.iter().all(|&s| s == 200), "gold at its new rate: {statuses:?}");
    let m = metrics(&p);
    assert_eq!(counter(&m, "portcullis_reloads_total{result=\"ok\"}"), 1);
    assert_eq!(counter(&m, "portcullis_reloads_total{result=\"failed\"}"), 1);
    assert_eq!(
        counter(&m, "portcullis_client_connections_accepted_total"),
        53,
        "no connection was remade"
    );
}
