//! The checks of the `machine` fuzz target: the connection machine (`proxy::Connection`) driven by the
//! in-memory pump (`tests/pump`, as `crate::pump`) with arbitrary client bytes, read sizes and upstream
//! behaviours. Input: byte 0 picks the read size (1..=16, or everything), byte 1 the upstream's behaviour;
//! the rest is what the client sends.
//!
//! Invariants:
//! - every request that reaches the upstream is one complete, well-framed request (it re-parses with exactly its
//!   own bytes: no byte of another request, refused or not, rides along);
//! - with an upstream that answers, exactly one response per forwarded request reaches the client, in order,
//!   and the same happens whatever the read size (the outcome of one read of everything);
//! - a connection ends with a reset only when a response was cut (the upstream closed mid-body);
//! - no input buffer grows past the head limit plus the body limit.

use crate::pump::{ok, Outcome, Pump, Up, World};
use portcullis::http::request::{header_storage, parse_head, Framing};
use portcullis::http::Limits;

const FLAGS: &[&str] = &[
    "--accept-rule",
    "off",
    "--content-type-rule",
    "off",
    "--json-methods",
    "",
    "--max-body",
    "4096",
];

fn run(bytes: &[u8], chunk: usize, plan: u8) -> (Outcome, Pump) {
    let answers = || (0..64).map(|i| ok(&"r".repeat(i % 7))).collect::<Vec<_>>();
    let plans = match plan % 4 {
        0 => vec![Up::Answer {
            reused: false,
            answers: answers(),
        }],
        // A pooled connection that closed: the first request is retried (if it may be) on an answering one.
        1 => vec![
            Up::CloseAtOnce { reused: true },
            Up::Answer {
                reused: false,
                answers: answers(),
            },
        ],
        // An upstream that cuts its response mid-body.
        2 => vec![Up::SendThenClose {
            reused: false,
            bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ncut".to_vec(),
        }],
        _ => vec![Up::Refuse],
    };
    let mut p = Pump::new(World::new(FLAGS), plans);
    p.chunk = chunk;
    p.send(bytes).run();
    let end = p.closed.or(p.shut_write.then_some(false));
    let o = Outcome {
        statuses: p.statuses(),
        forwarded: p.upstream_got.clone(),
        end,
    };
    (o, p)
}

pub fn check(data: &[u8]) {
    if data.len() < 2 {
        return;
    }
    let chunk = match data[0] % 17 {
        0 => usize::MAX,
        n => n as usize,
    };
    let plan = data[1];
    let bytes = &data[2..];
    let (o, p) = run(bytes, chunk, plan);
    let limits = Limits {
        max_body: 4096,
        ..Limits::default()
    };
    for f in &o.forwarded {
        let mut st = header_storage();
        let h = match parse_head(f, &limits, &mut st) {
            Ok(Some(h)) => h,
            other => panic!(
                "forwarded bytes are not a request head: {other:?}: {:?}",
                String::from_utf8_lossy(f)
            ),
        };
        let body = match h.framing {
            Framing::None => 0,
            Framing::Length(n) => n as usize,
            Framing::Chunked => panic!("forwarded chunked"),
        };
        assert_eq!(
            h.head_len + body,
            f.len(),
            "a forwarded request carries other bytes: {:?}",
            String::from_utf8_lossy(f)
        );
    }
    match plan % 4 {
        0 => {
            let relayed = o.statuses.iter().filter(|&&s| s == 200).count();
            assert_eq!(relayed, o.forwarded.len(), "one response per forwarded request: {o:?}");
            let (whole, _) = run(bytes, usize::MAX, plan);
            assert_eq!(o, whole, "the outcome depends on the read size ({chunk})");
        }
        2 => {}
        _ => assert_ne!(o.end, Some(true), "a reset without a cut response: {o:?}"),
    }
    if plan % 4 != 2 {
        assert_ne!(p.closed, Some(true), "reset without a cut response");
    }
}
