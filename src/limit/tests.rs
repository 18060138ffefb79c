use super::*;
use crate::http::request::{header_storage, parse_head};
use crate::http::Limits;

fn with_head<R>(fields: &str, f: impl FnOnce(&RequestHead<'_, '_>) -> R) -> R {
    let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
    let mut st = header_storage();
    let head = parse_head(raw.as_bytes(), &Limits::default(), &mut st)
        .unwrap()
        .unwrap();
    f(&head)
}

const SEED: Seed = Seed([1, 2, 3, 4, 5, 6, 7, 8]);

fn key(l: &Limiter, fields: &str, peer: IpAddr) -> Result<u64, Refusal> {
    let mut scratch = Vec::new();
    with_head(fields, |h| l.user_key(h, peer, &mut scratch).map(|k| k.id))
}

#[test]
fn keys() {
    let l = |m| Limiter::new(Gcra::new(10, 10), 64, m, 0, Instant::now(), SEED);
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let auth = l(KeyMode::Authorization);
    let a = key(&auth, "Authorization: Bearer x\r\n", peer).unwrap();
    let b = key(&auth, "Authorization: Bearer y\r\n", peer).unwrap();
    let none = key(&auth, "", peer).unwrap();
    let none2 = key(&auth, "", "10.0.0.2".parse().unwrap()).unwrap();
    assert!(a != b && a != none && none != none2);
    // One credential, one user, however the scheme is spelled.
    for v in ["bearer x", "BEARER x", "Bearer   x"] {
        assert_eq!(key(&auth, &format!("Authorization: {v}\r\n"), peer).unwrap(), a, "{v}");
    }
    assert_eq!(
        key(&auth, "Authorization: Basic !!\r\n", peer),
        Err(Refusal::MalformedAuthorization)
    );
    assert_eq!(
        key(&auth, "Authorization: a\r\nAuthorization: a\r\n", peer),
        Err(Refusal::AmbiguousUserKey)
    );
    assert_eq!(auth.value_hash("bearer  x").unwrap(), a);
    // A scheme alone names no user: keyed on the address, like no Authorization at all.
    assert_eq!(key(&auth, "Authorization: Bearer\r\n", peer).unwrap(), none);
    let hdr = l(KeyMode::Header("x-api-key".into()));
    assert_eq!(
        key(&hdr, "X-Api-Key: k1\r\n", peer).unwrap(),
        key(
            &hdr,
            "x-api-key: k1\r\nAuthorization: other\r\n",
            "10.9.9.9".parse().unwrap()
        )
        .unwrap()
    );
    let ip = l(KeyMode::Ip);
    let v6a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let v6b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    let k = |p| key(&ip, "Authorization: z\r\n", p).unwrap();
    assert_eq!(k(v6a), k(v6b), "one /64, one user");
    assert_ne!(k(v6a), k(v6c));
    assert_eq!(k("::ffff:10.0.0.1".parse().unwrap()), k(peer));
}

#[test]
fn ids_are_keyed() {
    // Two seeds stand for two processes' random seeds.
    let other = Seed([9, 10, 11, 12, 13, 14, 15, 16]);
    let with = |seed| Limiter::new(Gcra::new(10, 10), 64, KeyMode::Authorization, 0, Instant::now(), seed);
    let l = || with(SEED);
    let peer: IpAddr = "10.0.0.1".parse().unwrap();
    let f = "Authorization: Bearer alice\r\n";
    // Without a secret: the process's seed keys the ids (the same seed, the same id).
    assert_ne!(key(&l(), f, peer).unwrap(), key(&with(other), f, peer).unwrap());
    assert_eq!(key(&l(), f, peer).unwrap(), key(&l(), f, peer).unwrap());
    // With one: the same id on every node sharing the secret, another under another secret.
    let s1 = [7u8; 32];
    let mut s2 = [7u8; 32];
    s2[31] = 8;
    let a = key(&l().with_secret(&s1), f, peer).unwrap();
    assert_eq!(a, key(&l().with_secret(&s1), f, peer).unwrap());
    assert_ne!(a, key(&l().with_secret(&s2), f, peer).unwrap());
    // The table's slot hash is this process's own, even with the shared secret.
    let (x, y) = (l().with_secret(&s1), with(other).with_secret(&s1));
    assert_ne!(x.slot(a), y.slot(a));
}

#[test]
fn ip_backstop() {
    let now = Instant::now();
    let backstop = |exempt: &[&str]| {
        Some(IpBackstop {
            rate: 1,
            burst: 2,
            gcra: Gcra::new(1, 2),
            exempt: exempt.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
        })
    };
    let l = Limiter::new(Gcra::new(10, 10), 64, KeyMode::Authorization, 0, now, SEED).with_ip_backstop(backstop(&[]));
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let allowed = |l: &Limiter, ip| matches!(l.decide_ip(ip, now), Some(Decision::Allow { .. }));
    assert!(allowed(&l, ip) && allowed(&l, ip) && !allowed(&l, ip));
    assert!(allowed(&l, "192.0.2.2".parse().unwrap()));
    // IPv6 by /64.
    assert!(allowed(&l, "2001:db8::1".parse().unwrap()) && allowed(&l, "2001:db8::2".parse().unwrap()));
    assert!(!allowed(&l, "2001:db8::3".parse().unwrap()));
    let ex = Limiter::new(Gcra::new(10, 10), 64, KeyMode::Authorization, 0, now, SEED)
        .with_ip_backstop(backstop(&["192.0.2.0/24", "2001:db8::/32"]));
    assert!(ex.decide_ip(ip, now).is_none());
    assert!(ex.decide_ip("::ffff:192.0.2.9".parse().unwrap(), now).is_none());
    assert!(ex.decide_ip("198.51.100.1".parse().unwrap(), now).is_some());
    let per_ip = Limiter::new(Gcra::new(10, 10), 64, KeyMode::Ip, 0, now, SEED).with_ip_backstop(backstop(&[]));
    assert!(
        per_ip.decide_ip(ip, now).is_none(),
        "no backstop when the user is the address"
    );
    assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("x").is_err());
    assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip));
    assert!(Cidr::parse("::ffff:192.0.2.0/120").unwrap().contains(ip));
    assert!(Cidr::parse("::ffff:192.0.2.0/120")
        .unwrap()
        .contains("::ffff:192.0.2.7".parse().unwrap()));
    assert!(KeyMode::parse("header:x_api_key").is_err());
}

#[test]
fn forwarded_for_hops() {
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let ip = |fields: &str, n| with_head(fields, |h| client_ip(h, peer, n)).map(|a| a.to_string());
    let f = "X-Forwarded-For: 1.1.1.1, 2.2.2.2:80\r\nX-Forwarded-For: [::3]:443\r\n";
    assert_eq!(ip(f, 0).unwrap(), "127.0.0.1");
    assert_eq!(ip(f, 1).unwrap(), "::3");
    assert_eq!(ip(f, 2).unwrap(), "2.2.2.2");
    assert_eq!(ip(f, 3).unwrap(), "1.1.1.1");
    assert_eq!(ip(f, 4).unwrap(), "127.0.0.1");
    assert_eq!(ip("X-Forwarded-For: garbage\r\n", 1), Err(Refusal::InvalidForwardedFor));
    assert_eq!(ip("X-Forwarded-For: garbage, 1.2.3.4\r\n", 1).unwrap(), "1.2.3.4");
}

#[test]
fn key_modes_parse() {
    assert_eq!(
        KeyMode::parse("header:X-Api-Key").unwrap(),
        KeyMode::Header("x-api-key".into())
    );
    assert!(KeyMode::parse("header:").is_err());
    assert!(KeyMode::parse("cookie").is_err());
}
