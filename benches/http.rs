//! Hot functions of the request path, without sockets: head parse, forwarded head, response head, chunked.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::buf::Buf;
use portcullis::config::Limits;
use portcullis::guard::json::JsonValidator;
use portcullis::guard::{check_head, ApiType, Policy};
use portcullis::http::chunked::ChunkedDecoder;
use portcullis::http::request::{header_storage, parse_head};
use portcullis::http::response;
use portcullis::http::write::{forward_head, response_head, ClientSide, Forward};
use portcullis::http::Version;

/// A typical ~400-byte API request.
const REQ: &[u8] = b"GET /v1/accounts/12345/transactions?limit=50&cursor=abcdef HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: example-client/2.3.1 (linux; x86_64)\r\n\
Accept: application/vnd.example.v2+json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N\r\n\
X-Request-Id: 7f9c2d1e-4b3a-4c5d-8e6f-0a1b2c3d4e5f\r\n\
Connection: keep-alive\r\n\r\n";

const RESP: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 120\r\n\
Date: Sun, 29 Nov 2026 14:00:00 GMT\r\nCache-Control: no-store\r\nX-Request-Id: 7f9c2d1e\r\n\r\n";

fn bench(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(REQ.len() as u64));
    g.bench_function("httparse_alone", |b| {
        b.iter(|| {
            let mut h = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Request::new(&mut h);
            black_box(r.parse(black_box(REQ)).unwrap().is_complete())
        })
    });
    g.bench_function("parse_head", |b| {
        b.iter(|| {
            let mut st = header_storage();
            let h = parse_head(black_box(REQ), &limits, &mut st).unwrap().unwrap();
            black_box(h.head_len)
        })
    });
    let mut out = Buf::with_capacity(16 * 1024);
    g.bench_function("parse_and_forward_head", |b| {
        b.iter(|| {
            let mut st = header_storage();
            let h = parse_head(black_box(REQ), &limits, &mut st).unwrap().unwrap();
            out.clear();
            let fwd = Forward {
                client_ip: b"127.0.0.1",
                default_host: b"up:80",
                version_header: b"X-Api-Version",
                version: Some(b"v2"),
                observe: None,
                proto: b"http",
                request_id: None,
                websocket: false,
            };
            forward_head(&mut out, &h, 0, &fwd);
            black_box(out.len())
        })
    });
    let policy = Policy {
        accept: vec![
            ApiType::parse("application/vnd.example.v1+json").unwrap(),
            ApiType::parse("application/vnd.example.v2+json").unwrap(),
        ],
        ..Policy::default()
    };
    // Issue 4's "head checks": parse + Accept + Content-Type on the typical request.
    g.bench_function("parse_and_check_head", |b| {
        b.iter(|| {
            let mut st = header_storage();
            let h = parse_head(black_box(REQ), &limits, &mut st).unwrap().unwrap();
            black_box(check_head(&policy, &h).unwrap())
        })
    });
    let mut st = header_storage();
    let parsed = parse_head(REQ, &limits, &mut st).unwrap().unwrap();
    g.bench_function("check_head_alone", |b| {
        b.iter(|| black_box(check_head(&policy, black_box(&parsed)).unwrap()))
    });
    g.finish();

    let mut g = c.benchmark_group("response");
    g.bench_function("parse_and_relay_head", |b| {
        b.iter(|| {
            let mut st = header_storage();
            let h = response::parse_head(black_box(RESP), 16384, false, &mut st)
                .unwrap()
                .unwrap();
            out.clear();
            response_head(
                &mut out,
                &h,
                ClientSide {
                    version: Version::Http11,
                    close: false,
                    dechunk: false,
                    ratelimit: None,
                    request_id: None,
                },
            );
            black_box(out.len())
        })
    });
    g.finish();

    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    let mut scratch = body.clone();
    g.bench_function("decode_in_place_64x1KiB", |b| {
        b.iter(|| {
            scratch.copy_from_slice(&body);
            let r = ChunkedDecoder::new(u64::MAX).decode_in_place(&mut scratch).unwrap();
            black_box(r)
        })
    });
    g.finish();
}

/// Validation throughput on the standard JSON benchmark files: the product's validator (a validate-only scan
/// of the borrowed body), the previous path (simd-json's tape on a copy of the body, `validate_with_tape`),
/// simd-json's own `to_tape` (on a copy too: it rewrites its input) and serde_json's `Value`.
fn json(c: &mut Criterion) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/corpora/json-bench/");
    let mut v = JsonValidator::new(1024);
    // The API bodies of the load benchmarks (benches/load/compare.sh's post1k and post64k).
    for name in ["body-1k", "body-64k"] {
        let body = std::fs::read(format!("{}/benches/load/{name}.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let mut g = c.benchmark_group(format!("json/{name}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("portcullis", |b| b.iter(|| v.validate(black_box(&body)).unwrap()));
        g.bench_function("previous_tape_path", |b| {
            b.iter(|| v.validate_with_tape(black_box(&body)).unwrap())
        });
        // The same body sent with Content-Encoding: gzip: decoded (into the decoder's kept buffer), then validated.
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        };
        let mut dec = portcullis::guard::decode::Decoder::new();
        g.bench_function("gzip_decode_and_validate", |b| {
            b.iter(|| {
                let doc = dec
                    .decode(portcullis::guard::Coding::Gzip, black_box(&gz), 1 << 20)
                    .unwrap();
                v.validate(doc).unwrap()
            })
        });
        if name == "body-64k" {
            // A gzip bomb expanding to 10 GiB (the same 16 MiB block of zeros, full-flushed, 640 times: ~10 MB):
            // refused once 1 MiB (the default --max-body) is decoded.
            let mut c = flate2::Compress::new(flate2::Compression::best(), false);
            let mut block = Vec::with_capacity(1 << 20);
            c.compress_vec(&vec![0u8; 16 << 20], &mut block, flate2::FlushCompress::Full)
                .unwrap();
            let mut bomb = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
            for _ in 0..640 {
                bomb.extend_from_slice(&block);
            }
            bomb.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            g.bench_function("gzip_bomb_10GiB_refused_at_1MiB", |b| {
                b.iter(|| {
                    let r = dec.decode(portcullis::guard::Coding::Gzip, black_box(&bomb), 1 << 20);
                    assert_eq!(r.err(), Some(portcullis::guard::decode::DecodeError::TooLarge));
                })
            });
        }
        let mut st = Vec::new();
        g.bench_function("grammar_check", |b| {
            b.iter(|| portcullis::guard::json::grammar_check(black_box(&body), 1024, &mut st).unwrap())
        });
        g.finish();
    }
    for name in [
        "twitter",
        "citm_catalog",
        "canada",
        "github_events",
        "event_stacktrace_10kb",
        "log",
    ] {
        let Ok(doc) = std::fs::read(format!("{dir}{name}.json")) else {
            eprintln!("skipping {name}: benches/corpora/json-bench not found");
            continue;
        };
        let mut g = c.benchmark_group(format!("json/{name}"));
        g.throughput(Throughput::Bytes(doc.len() as u64));
        g.bench_function("portcullis", |b| b.iter(|| v.validate(black_box(&doc)).unwrap()));
        g.bench_function("previous_tape_path", |b| {
            b.iter(|| v.validate_with_tape(black_box(&doc)).unwrap())
        });
        let mut scratch = doc.clone();
        g.bench_function("simd_json_to_tape", |b| {
            b.iter(|| {
                scratch.copy_from_slice(&doc);
                black_box(simd_json::to_tape(&mut scratch).unwrap().0.len())
            })
        });
        g.bench_function("serde_json_value", |b| {
            b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&doc).unwrap()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench, json);
criterion_main!(benches);
