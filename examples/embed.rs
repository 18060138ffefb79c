//! The checks inside your own service, without the edge binary: one `Checker` for the process, one `Scratch`
//! per thread, and the time passed in.
//!
//! Run it with `cargo run --example embed`: it checks a few requests, from raw bytes and from the
//! `http::request::Parts` an HTTP server (hyper, axum) hands you, and prints what the binary would answer.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use portcullis::check::{header_storage, Checker, Options, Seed};

fn main() {
    let start = Instant::now();
    // Random keys for the rate-limit table's hashes, once per process.
    let random = RandomState::new();
    let seed = Seed(std::array::from_fn(|i| random.hash_one(i)));
    let options = Options {
        accept: vec!["application/vnd.acme.v1+json".into()],
        rate: 2,
        burst: Some(2),
        ratelimit_headers: true,
        docs_url: Some("https://docs.example.com/errors".into()),
        ..Options::default()
    };
    let checker = Checker::new(&options, start, seed).expect("valid options");
    let mut scratch = checker.scratch();
    let peer: IpAddr = "192.0.2.10".parse().unwrap();

    // 1. Raw bytes, as read from a socket: parse, check the head, then the body.
    let raw = b"POST /orders HTTP/1.1\r\nHost: api.example.com\r\nAccept: application/vnd.acme.v1+json\r\n\
                Authorization: Bearer alice\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"qty\":}";
    let mut storage = header_storage();
    let outcome = match checker.parse_head(raw, &mut storage) {
        Ok(Some(head)) => checker
            .check_head(&mut scratch, &head, peer, start)
            .and_then(|mut verdict| checker.check_body(&mut scratch, &mut verdict, &raw[head.head_len..])),
        Ok(None) => unreachable!("the head is complete"),
        Err(refusal) => Err(refusal),
    };
    match outcome {
        Ok(()) => println!("raw request: admitted"),
        Err(refusal) => {
            println!("raw request: refused ({refusal}); the answer:");
            println!("{}", String::from_utf8_lossy(&checker.answer(&refusal)));
        }
    }

    // 2. A request an HTTP server already parsed: its `Parts`, checked without parsing them again. Three
    //    requests of one user at the same instant, against a burst of 2: the third is refused.
    let (parts, ()) = http::Request::get("/orders/7")
        .header("host", "api.example.com")
        .header("accept", "application/vnd.acme.v1+json")
        .header("authorization", "Bearer bob")
        .body(())
        .unwrap()
        .into_parts();
    let now = start + Duration::from_secs(5);
    for i in 1..=3 {
        match checker.check_parts(&mut scratch, &parts, peer, now) {
            Ok(verdict) => {
                let field = checker.ratelimit_header(&verdict);
                println!(
                    "request {i}: admitted, API version index {:?}, {field:?}",
                    verdict.api_version()
                );
            }
            Err(refusal) => {
                let response = checker.response(&refusal);
                println!(
                    "request {i}: {} with Retry-After {:?}: {}",
                    response.status(),
                    response.headers().get("retry-after"),
                    String::from_utf8_lossy(response.body())
                );
            }
        }
    }

    // 3. The limiter on keys of your own (a tenant, an API key), at the time you pass.
    let limiter = checker.limiter().expect("the limit is on");
    let tenant = limiter.key_id(b"tenant-42");
    let decisions: Vec<_> = (0..3).map(|_| limiter.decide(tenant, now)).collect();
    println!("tenant-42: {decisions:?}");
    println!(
        "rate-limit table: {} slots, {} bytes, whatever the number of keys",
        limiter.table().slots(),
        limiter.table().bytes()
    );
}
