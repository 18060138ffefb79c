//! An axum service behind the edge binary's checks, in-process: `CheckLayer` answers refusals itself (the
//! binary's problem+json, Retry-After and RateLimit fields) and passes the rest on.
//!
//! `cargo run --features tower --example axum_layer [ADDR]`, then for instance
//! `curl -i -X POST localhost:3000/orders -H 'Accept: application/vnd.acme.v1+json' -H 'Content-Type: application/json' -d '{"qty":}'`.
//! Its tests (`cargo test --features tower --example axum_layer`) run requests through the app and check
//! that the answers are the library's.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use portcullis::check::Options;
use portcullis::layer::CheckLayer;

/// The settings, named like the binary's flags.
fn options() -> Options {
    Options {
        accept: vec!["application/vnd.acme.v1+json".into()],
        rate: 5,
        burst: Some(5),
        ratelimit_headers: true,
        max_body: 64 * 1024,
        docs_url: Some("https://docs.example.com/errors".into()),
        ..Options::default()
    }
}

/// The application: two routes behind the checks.
fn app(layer: CheckLayer) -> Router {
    Router::new()
        .route(
            "/orders",
            post(|body: Bytes| async move { format!("created from {} bytes of JSON\n", body.len()) }),
        )
        .route("/orders/{id}", get(|| async { "an order\n" }))
        .layer(layer)
}

/// The layer, with the client's address from axum's `ConnectInfo`.
fn layer(checker: portcullis::check::Checker) -> CheckLayer {
    CheckLayer::from_checker(checker)
        .peer_from(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let random = std::collections::hash_map::RandomState::new();
    let seed = portcullis::check::Seed(std::array::from_fn(|i| std::hash::BuildHasher::hash_one(&random, i)));
    let checker = portcullis::check::Checker::new(&options(), std::time::Instant::now(), seed).expect("options");
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    let service = app(layer(checker)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await.expect("serve");
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Instant;

    use axum::body::Body;
    use http_body_util::BodyExt;
    use portcullis::check::{Checker, Seed, Verdict};
    use tower_service::Service;

    use super::*;

    const SEED: Seed = Seed([2, 7, 1, 8, 2, 8, 1, 8]);

    /// One request through the app, as from `peer`: status, the fields that matter, body.
    async fn call(app: &mut Router, req: http::Request<Body>, peer: SocketAddr) -> (u16, Vec<String>, Vec<u8>) {
        let mut req = req;
        req.extensions_mut().insert(ConnectInfo(peer));
        std::future::poll_fn(|cx| Service::<http::Request<Body>>::poll_ready(app, cx))
            .await
            .unwrap();
        let response = app.call(req).await.unwrap();
        let status = response.status().as_u16();
        let fields = fields(response.headers());
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        (status, fields, body)
    }

    fn fields(h: &http::HeaderMap) -> Vec<String> {
        let mut v: Vec<String> = h
            .iter()
            .filter(|(n, _)| {
                n.as_str().starts_with("ratelimit")
                    || matches!(
                        n.as_str(),
                        "retry-after" | "accept-encoding" | "cache-control" | "connection"
                    )
                    || (n.as_str() == "content-type" && h["content-type"] == "application/problem+json")
            })
            .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
            .collect();
        v.sort();
        v
    }

    /// What the library answers for the same request: the refusal's response, or for an admitted one the
    /// RateLimit field (and the handler's answer, which only the app knows).
    fn library(
        checker: &Checker,
        req: &http::Request<Vec<u8>>,
        peer: IpAddr,
        now: Instant,
    ) -> Option<(u16, Vec<String>, Vec<u8>)> {
        let (parts, body) = http::Request::builder()
            .method(req.method())
            .uri(req.uri())
            .version(req.version())
            .body(req.body().clone())
            .map(|mut r| {
                *r.headers_mut() = req.headers().clone();
                r
            })
            .unwrap()
            .into_parts();
        let mut scratch = checker.scratch();
        let outcome = checker
            .check_parts(&mut scratch, &parts, peer, now)
            .and_then(|mut v: Verdict| checker.check_body(&mut scratch, &mut v, &body).map(|()| v));
        match outcome {
            Ok(v) => {
                let mut h = http::HeaderMap::new();
                if let Some((n, value)) = checker.ratelimit_header(&v) {
                    h.insert(n, value.parse().unwrap());
                }
                Some((200, fields(&h), Vec::new()))
            }
            Err(r) => {
                let response = checker.response(&r);
                let mut h = response.headers().clone();
                if r.closes() {
                    h.insert("connection", "close".parse().unwrap());
                }
                Some((r.status(), fields(&h), response.body().clone()))
            }
        }
    }

    /// A request with `Host: api` and `fields`.
    fn req(method: &str, uri: &str, fields: &[(&str, &str)], body: &[u8]) -> http::Request<Vec<u8>> {
        let mut b = http::Request::builder().method(method).uri(uri).header("host", "api");
        for (n, v) in fields {
            b = b.header(*n, *v);
        }
        b.body(body.to_vec()).unwrap()
    }

    /// The app behind the layer answers a table of requests as the library does (status, problem+json body,
    /// Retry-After and RateLimit fields), lets the rest reach its handlers, and 100 000 distinct users leave
    /// its memory as it was (the rate-limit table is fixed; the scratch pool holds one per request in flight).
    #[tokio::test(flavor = "current_thread")]
    async fn the_layer_answers_as_the_library_and_stays_flat() {
        let start = Instant::now();
        let mut app = app(layer(Checker::new(&options(), start, SEED).unwrap()));
        let lib = Checker::new(&options(), start, SEED).unwrap();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let v1 = ("accept", "application/vnd.acme.v1+json");
        let json = ("content-type", "application/json");
        let mut table = vec![
            (
                "no accept",
                req("GET", "/orders/1", &[("authorization", "Bearer t1")], b""),
            ),
            (
                "v2",
                req(
                    "GET",
                    "/orders/1",
                    &[
                        ("authorization", "Bearer t2"),
                        ("accept", "application/vnd.acme.v2+json"),
                    ],
                    b"",
                ),
            ),
            (
                "get",
                req("GET", "/orders/1", &[("authorization", "Bearer t3"), v1], b""),
            ),
            (
                "no content-type",
                req(
                    "POST",
                    "/orders",
                    &[("authorization", "Bearer t4"), v1, ("content-length", "2")],
                    b"{}",
                ),
            ),
            (
                "malformed json",
                req(
                    "POST",
                    "/orders",
                    &[("authorization", "Bearer t5"), v1, json, ("content-length", "8")],
                    b"{\"qty\":}",
                ),
            ),
            (
                "json",
                req(
                    "POST",
                    "/orders",
                    &[("authorization", "Bearer t6"), v1, json, ("content-length", "9")],
                    b"{\"qty\":1}",
                ),
            ),
            (
                "chunked json",
                req(
                    "POST",
                    "/orders",
                    &[
                        ("authorization", "Bearer t7"),
                        v1,
                        json,
                        ("transfer-encoding", "chunked"),
                    ],
                    b"[1,",
                ),
            ),
            (
                "too large",
                req(
                    "POST",
                    "/orders",
                    &[("authorization", "Bearer t8"), v1, json, ("content-length", "70000")],
                    b"",
                ),
            ),
            (
                "malformed credential",
                req("GET", "/orders/1", &[("authorization", "Basic !!"), v1], b""),
            ),
            ("two hosts", req("GET", "/orders/1", &[("host", "b"), v1], b"")),
        ];
        for i in 0..7 {
            table.push((
                if i < 5 { "within the burst" } else { "over the burst" },
                req("GET", "/orders/1", &[("authorization", "Bearer burst"), v1], b""),
            ));
        }
        let mut got_413 = false;
        for (name, r) in table {
            let want = library(&lib, &r, peer.ip(), start).unwrap();
            let (status, fields, body) = call(&mut app, r.map(Body::from), peer).await;
            assert_eq!((status, &fields), (want.0, &want.1), "{name}");
            if status == 200 {
                assert!(body.starts_with(b"created") || body.starts_with(b"an order"), "{name}");
            } else {
                assert_eq!(body, want.2, "{name}");
            }
            got_413 |= status == 413;
        }
        assert!(got_413);
        // A body that streams past max_body without having announced its length (chunked, as hyper hands it
        // over): 413 from the layer.
        let big = vec![b' '; 70_000];
        let chunked = ("transfer-encoding", "chunked");
        let (status, _, body) = call(
            &mut app,
            req(
                "POST",
                "/orders",
                &[("authorization", "Bearer t9"), v1, json, chunked],
                &big,
            )
            .map(Body::from),
            peer,
        )
        .await;
        assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));

        // 100 000 distinct users through the layer: the table and the process's memory stay as they were.
        let rss = || {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
        };
        let mut app = app_with_table();
        for k in 0..20_000 {
            let auth = format!("Bearer warm-{k}");
            call(
                &mut app,
                req("GET", "/orders/1", &[("authorization", &auth), v1], b"").map(Body::from),
                peer,
            )
            .await;
        }
        let before = rss();
        for k in 0..100_000 {
            let auth = format!("Bearer user-{k}");
            let (status, _, _) = call(
                &mut app,
                req("GET", "/orders/1", &[("authorization", &auth), v1], b"").map(Body::from),
                peer,
            )
            .await;
            assert_eq!(status, 200);
        }
        let grown = rss().saturating_sub(before);
        assert!(
            grown < 4 << 20,
            "resident memory grew by {grown} bytes over 100 000 users"
        );
    }

    /// An app whose table is small enough to be fully touched by the warm-up: what grows after is growth.
    fn app_with_table() -> Router {
        // All the users come from one address: no per-address backstop here.
        let o = Options {
            rate_table_slots: 1 << 14,
            ip_rate: Some(0),
            ..options()
        };
        app(layer(Checker::new(&o, Instant::now(), SEED).unwrap()))
    }
}
