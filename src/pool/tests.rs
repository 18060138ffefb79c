//! The pools' unit tests: balancing, health, routes, DNS refresh (times and randomness passed in).

use super::pick::mix;
use super::*;

fn pools(balance: Balance, n: usize, health: Health) -> Pools {
    let servers = (0..n)
        .map(|i| ServerSpec {
            addr: SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
            name: format!("s{i}"),
            weight: 1,
        })
        .collect();
    Pools::new(
        vec![PoolSpec {
            name: "p".into(),
            servers,
            balance,
            health: None,
        }],
        Routes::new(Vec::new(), Some(0)),
        health,
        1,
    )
}

fn health() -> Health {
    Health {
        eject_after: 2,
        eject_time: Duration::from_secs(10),
        eject_max_percent: 50,
        panic_threshold: 0,
    }
}

fn server(p: Pick) -> usize {
    match p {
        Pick::Server(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn round_robin_and_p2c_spread_evenly() {
    for balance in [Balance::RoundRobin, Balance::P2c] {
        let p = pools(balance, 3, health());
        let mut c = Chooser::new(7, &p);
        let mut n = [0; 3];
        for _ in 0..3000 {
            n[server(p.pick(0, 0, 0, 0, &mut c))] += 1;
        }
        for x in n {
            assert!((900..=1100).contains(&x), "{balance:?}: {n:?}");
        }
    }
}

#[test]
fn p2c_prefers_the_less_loaded() {
    let p = pools(Balance::P2c, 2, health());
    let mut c = Chooser::new(1, &p);
    for _ in 0..10 {
        p.attached(0, 0);
    }
    let picks: Vec<usize> = (0..100).map(|_| server(p.pick(0, 0, 0, 0, &mut c))).collect();
    assert!(picks.iter().all(|&s| s == 1), "{picks:?}");
}

#[test]
fn hash_sticks_and_moves_only_the_leavers_users() {
    let p = pools(
        Balance::Hash,
        3,
        Health {
            eject_max_percent: 100,
            ..health()
        },
    );
    let mut c = Chooser::new(1, &p);
    let before: Vec<usize> = (0..3000u64)
        .map(|u| server(p.pick(0, mix(u, 99), 0, 0, &mut c)))
        .collect();
    let again: Vec<usize> = (0..3000u64)
        .map(|u| server(p.pick(0, mix(u, 99), 0, 0, &mut c)))
        .collect();
    assert_eq!(before, again);
    let mut n = [0; 3];
    before.iter().for_each(|&s| n[s] += 1);
    assert!(n.iter().all(|&x| (850..=1150).contains(&x)), "{n:?}");
    // Server 1 leaves (ejected): only its users move.
    p.released(1, 0, Some(Outcome::Failed), 0);
    p.released(1, 0, Some(Outcome::Failed), 0);
    let after: Vec<usize> = (0..3000u64)
        .map(|u| server(p.pick(0, mix(u, 99), 0, 1, &mut c)))
        .collect();
    for (b, a) in before.iter().zip(&after) {
        if *b != 1 {
            assert_eq!(a, b);
        } else {
            assert_ne!(*a, 1);
        }
    }
}

#[test]
fn ejection_doubles_caps_and_respects_the_max_percent() {
    let p = pools(Balance::RoundRobin, 4, health());
    // 502..504 and failures count; other statuses clear.
    p.released(0, 0, Some(Outcome::Status(503)), 0);
    p.released(0, 0, Some(Outcome::Status(404)), 0);
    p.released(0, 0, Some(Outcome::Status(500)), 0);
    assert!(!p.ejected(0, 1));
    p.released(0, 0, Some(Outcome::Status(502)), 0);
    p.released(0, 0, Some(Outcome::Failed), 0);
    assert!(p.ejected(0, 1) && p.ejected(0, 9_999) && !p.ejected(0, 10_000));
    // Half the pool at most: a second server is ejected, a third is not.
    for s in [1, 2] {
        p.released(s, 0, Some(Outcome::Failed), 0);
        p.released(s, 0, Some(Outcome::Failed), 0);
    }
    assert!(p.ejected(1, 1) && !p.ejected(2, 1));
    // Ejected again after the first ended: twice as long.
    p.released(0, 0, Some(Outcome::Failed), 10_000);
    p.released(0, 0, Some(Outcome::Failed), 10_000);
    assert!(p.ejected(0, 29_999) && !p.ejected(0, 30_000));
    assert_eq!(p.stats(0)[0].ejections, 2);
    // Ejected servers are not picked (0, again; 1's ejection has ended); tried ones neither.
    let mut c = Chooser::new(3, &p);
    for _ in 0..50 {
        let s = server(p.pick(0, 0, p.bit(3), 10_001, &mut c));
        assert!(s == 1 || s == 2);
        assert_eq!(server(p.pick(0, 0, p.bit(1) | p.bit(3), 10_001, &mut c)), 2);
    }
    assert_eq!(
        p.pick(0, 0, p.bit(1) | p.bit(2) | p.bit(3), 10_001, &mut c),
        Pick::Exhausted
    );
}

#[test]
fn panic_threshold_and_no_healthy_upstream() {
    let all = Health {
        eject_max_percent: 100,
        ..health()
    };
    let p = pools(Balance::RoundRobin, 2, all);
    for s in [0, 1] {
        p.released(s, 0, Some(Outcome::Failed), 0);
        p.released(s, 0, Some(Outcome::Failed), 0);
    }
    let mut c = Chooser::new(3, &p);
    assert_eq!(p.pick(0, 0, 0, 1, &mut c), Pick::NoHealthy);
    let p = pools(
        Balance::RoundRobin,
        2,
        Health {
            panic_threshold: 50,
            ..all
        },
    );
    for s in [0, 1] {
        p.released(s, 0, Some(Outcome::Failed), 0);
        p.released(s, 0, Some(Outcome::Failed), 0);
    }
    // Below the threshold: every server, as if healthy.
    assert!(matches!(p.pick(0, 0, 0, 1, &mut c), Pick::Server(_)));
    // A single server is never ejected (50% of 1 is 0).
    let p = pools(Balance::P2c, 1, health());
    for _ in 0..10 {
        p.released(0, 0, Some(Outcome::Failed), 0);
    }
    assert_eq!(p.pick(0, 0, 0, 1, &mut c), Pick::Server(0));
}

#[test]
fn active_checks_take_servers_down_and_bring_them_back() {
    let p = pools(Balance::RoundRobin, 3, health());
    let mut c = Chooser::new(1, &p);
    // Two failed checks of three (fall 3): still up.
    p.checked(1, false, 2, 3, 1);
    p.checked(1, false, 2, 3, 1);
    assert!(!p.is_ejected(1, 0));
    p.checked(1, false, 2, 3, 1);
    assert!(p.is_ejected(1, 0));
    for _ in 0..30 {
        assert_ne!(server(p.pick(0, 0, 0, 0, &mut c)), 1);
    }
    // One pass of two (rise 2): still down; a failure restarts the count.
    p.checked(1, true, 2, 3, 1);
    p.checked(1, false, 2, 3, 1);
    p.checked(1, true, 2, 3, 1);
    assert!(p.is_ejected(1, 0));
    p.checked(1, true, 2, 3, 1);
    assert!(!p.is_ejected(1, 0));
    // Passing checks end a passive ejection early, but only `rise` passes counted since it began.
    p.checked(2, true, 2, 3, 1);
    p.checked(2, true, 2, 3, 1);
    p.released(2, 0, Some(Outcome::Failed), 0);
    p.released(2, 0, Some(Outcome::Failed), 0);
    assert!(p.is_ejected(2, 1));
    p.checked(2, true, 2, 3, 1);
    assert!(p.is_ejected(2, 1), "one pass after the ejection is not enough");
    p.checked(2, true, 2, 3, 1);
    assert!(!p.is_ejected(2, 1));
}

#[test]
fn dns_refresh_follows_changes_and_keeps_the_last_good_address() {
    let spec = |name: &str, port| ServerSpec {
        addr: SocketAddr::from(([10, 0, 0, 1], port)),
        name: name.into(),
        weight: 1,
    };
    let p = Pools::new(
        vec![PoolSpec {
            name: "p".into(),
            servers: vec![spec("api.internal:80", 80), spec("10.0.0.9:81", 81)],
            balance: Balance::P2c,
            health: None,
        }],
        Routes::new(Vec::new(), Some(0)),
        health(),
        1,
    );
    let answer = std::cell::RefCell::new(Ok(vec![SocketAddr::from(([10, 0, 0, 2], 80))]));
    let resolve = |name: &str| {
        assert_eq!(name, "api.internal:80", "an address is never resolved");
        answer.borrow().clone()
    };
    assert_eq!(
        p.refresh(resolve),
        [("api.internal:80".to_string(), Ok("10.0.0.2:80".parse().unwrap()))]
    );
    assert_eq!(p.addr(0), "10.0.0.2:80".parse().unwrap());
    // The same answer (or one that still lists the current address): nothing changes.
    assert!(p.refresh(resolve).is_empty());
    *answer.borrow_mut() = Ok(vec!["10.0.0.7:80".parse().unwrap(), "10.0.0.2:80".parse().unwrap()]);
    assert!(p.refresh(resolve).is_empty());
    // Failed or empty answers keep the last good address.
    *answer.borrow_mut() = Err("timed out".into());
    assert_eq!(p.refresh(resolve)[0].1, Err("timed out".to_string()));
    *answer.borrow_mut() = Ok(Vec::new());
    assert!(p.refresh(resolve)[0].1.is_err());
    assert_eq!(p.addr(0), "10.0.0.2:80".parse().unwrap());
    assert_eq!(p.addr(1), "10.0.0.1:81".parse().unwrap());
}

#[test]
fn routes_have_a_fixed_precedence() {
    let r = |v: Option<&str>, p: Option<&str>, pool| Route {
        version: v.map(Into::into),
        prefix: p.map(Into::into),
        pool,
    };
    // Written in the "wrong" order on purpose.
    let routes = Routes::new(
        vec![
            r(None, Some("/b"), 1),
            r(None, Some("/billing/"), 2),
            r(Some("v2"), None, 3),
            r(Some("v2"), Some("/billing/"), 4),
        ],
        Some(0),
    );
    assert_eq!(routes.route(Some("v2"), b"/billing/x"), Some(4));
    assert_eq!(routes.route(Some("v2"), b"/other"), Some(3));
    assert_eq!(routes.route(Some("v1"), b"/billing/x"), Some(2));
    assert_eq!(routes.route(None, b"/bx"), Some(1));
    assert_eq!(routes.route(None, b"/x"), Some(0));
    assert_eq!(Routes::new(vec![r(None, Some("/a"), 1)], None).route(None, b"/x"), None);
}

#[test]
fn the_pool_summary_follows_ejections_and_checks() {
    let p = pools(Balance::P2c, 4, health());
    let mut c = Chooser::new(7, &p);
    let picks = |c: &mut Chooser, now: u64| {
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[server(p.pick(0, 0, 0, now, c))] += 1;
        }
        seen
    };
    // Ejected: the summary sends every pick through the per-server look, which skips it.
    for _ in 0..2 {
        p.attached(3, 0);
        p.released(3, 0, Some(Outcome::Failed), 0);
    }
    assert!(p.meta[0].ejected_until.load(Relaxed) > 1);
    assert_eq!(picks(&mut c, 1)[3], 0);
    // Ended early by active checks while the summary still says "until later": picked again.
    p.checked(3, true, 2, 3, 1);
    p.checked(3, true, 2, 3, 1);
    assert!(!p.is_ejected(3, 1));
    assert!(picks(&mut c, 1)[3] > 0);
    // Past the summary's time: the fast path again, every server in.
    let later = p.meta[0].ejected_until.load(Relaxed);
    assert!(picks(&mut c, later).iter().all(|&n| n > 0));
    // Down by checks: counted once however many failed checks follow, and uncounted when it rises.
    for _ in 0..5 {
        p.checked(1, false, 2, 3, later);
    }
    assert_eq!(p.meta[0].down.load(Relaxed), 1);
    assert_eq!(picks(&mut c, later)[1], 0);
    for _ in 0..3 {
        p.checked(1, true, 2, 3, later);
    }
    assert_eq!(p.meta[0].down.load(Relaxed), 0);
    assert!(picks(&mut c, later)[1] > 0);
}
