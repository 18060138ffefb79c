//! The tower layer's cost per request, in-process: a trivial axum handler (it answers "ok") called as a tower
//! `Service` on a current-thread tokio runtime, no sockets, (a) bare, (b) behind `portcullis::layer`
//! (Accept and the per-user rate limit; for a JSON POST also Content-Type and the body's validation), and
//! (c) behind `tower_governor` (a keyed rate limit) + `tower_http`'s Accept check, the closest the two
//! come to the same parts. The figure that matters is each one's time minus the bare handler's.
//!
//! `cargo bench --bench layer --features tower`. Every request is admitted (a valid Accept, 65 536
//! distinct users in turn, a budget none of them exhausts): the benches panic if one is refused.
//!
//! Only the calls are timed, in CPU time of the thread (not wall time: on a shared machine the thread's
//! time off the CPU is not the layer's cost): each sample builds its requests in batches of 256 outside
//! the clock, then times the batch's `poll_ready` + `call` + `.await` + dropping the response. The times
//! criterion reports are these CPU times.

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderValue, Request, Response, StatusCode};
use portcullis::check::{Checker, Options, Seed};
use portcullis::layer::CheckLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor};
use tower_governor::{GovernorError, GovernorLayer};
use tower_http::validate_request::ValidateRequestHeaderLayer;
use tower_service::Service;

/// A fixed seed for the rate-limit table's hashes (the layer draws a random one per process).
const SEED: Seed = Seed([3, 1, 4, 1, 5, 9, 2, 6]);
/// The API media type every request asks for and every checker serves.
const ACCEPT: &str = "application/vnd.acme.v1+json";
/// Distinct users, each sending every USERS-th request.
const USERS: usize = 1 << 16;
/// Requests built (untimed) and then called (timed) at a time.
const BATCH: u64 = 256;
/// Per user: 100 requests a second, a burst of 200 (each user comes back every 65 536 requests).
const RATE: u32 = 100;
const BURST: u32 = 200;

/// The trivial application: one GET and one POST route that answer "ok" (the POST's handler does not read
/// the body).
fn router() -> Router {
    Router::new()
        .route("/orders/{id}", get(|| async { "ok" }))
        .route("/orders", post(|| async { "ok" }))
}

/// The same application whose POST handler validates its JSON body itself (serde_json), for the pair,
/// which cannot: what a service without portcullis would do to refuse malformed JSON (into a
/// `serde_json::Value`, as a handler with no schema would).
fn router_parsing_json() -> Router {
    Router::new().route("/orders/{id}", get(|| async { "ok" })).route(
        "/orders",
        post(|body: Bytes| async move {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(_) => Ok("ok"),
                Err(_) => Err(StatusCode::BAD_REQUEST),
            }
        }),
    )
}

/// portcullis's layer: Accept and the limit per `user_key` (the canonical Authorization credential, or the
/// peer address), no per-address backstop (the pair has one limit), the rest of the options the defaults.
fn portcullis(user_key: &str) -> Router {
    let options = Options {
        accept: vec![ACCEPT.into()],
        rate: RATE,
        burst: Some(BURST),
        user_key: user_key.into(),
        ip_rate: Some(0),
        ..Options::default()
    };
    let checker = Checker::new(&options, Instant::now(), SEED).expect("options");
    let layer = CheckLayer::from_checker(checker)
        .peer_from(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    router().layer(layer)
}

/// tower_governor's key: the Authorization field as it came (a `HeaderValue` clone: the cheapest key it
/// can take by value; no canonical form).
#[derive(Clone)]
struct AuthorizationKey;

impl KeyExtractor for AuthorizationKey {
    type Key = HeaderValue;

    fn extract<T>(&self, req: &Request<T>) -> Result<HeaderValue, GovernorError> {
        req.headers()
            .get(http::header::AUTHORIZATION)
            .cloned()
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// The same rate and burst as portcullis's, in governor's terms (one cell every 10 ms).
fn period() -> Duration {
    Duration::from_secs(1) / RATE
}

/// tower_governor keyed by Authorization + tower_http's Accept check, around `app`.
fn pair_by_authorization(app: Router) -> Router {
    let config = GovernorConfigBuilder::default()
        .key_extractor(AuthorizationKey)
        .period(period())
        .burst_size(BURST)
        .finish()
        .expect("governor config");
    app.layer(ValidateRequestHeaderLayer::accept(ACCEPT))
        .layer(GovernorLayer::<_, _, Body>::new(config))
}

/// tower_governor keyed by the peer address (axum's `ConnectInfo` in the extensions) + tower_http's Accept check.
fn pair_by_ip() -> Router {
    let config = GovernorConfigBuilder::default()
        .key_extractor(PeerIpKeyExtractor)
        .period(period())
        .burst_size(BURST)
        .finish()
        .expect("governor config");
    router()
        .layer(ValidateRequestHeaderLayer::accept(ACCEPT))
        .layer(GovernorLayer::<_, _, Body>::new(config))
}

/// What each user sends: its credential and its address.
struct Users {
    authorization: Vec<HeaderValue>,
    peer: Vec<SocketAddr>,
}

impl Users {
    fn new() -> Users {
        Users {
            authorization: (0..USERS)
                .map(|k| HeaderValue::from_str(&format!("Bearer user-{k:08x}")).unwrap())
                .collect(),
            peer: (0..USERS)
                .map(|k| {
                    let ip = Ipv4Addr::from(0x0a00_0000 | u32::try_from(k).unwrap());
                    SocketAddr::new(IpAddr::V4(ip), 40_000)
                })
                .collect(),
        }
    }
}

/// A JSON document of about 1 KB: an order with a dozen lines.
fn json_body() -> Bytes {
    let mut s = String::from("{\"customer\":\"c-0042\",\"currency\":\"EUR\",\"lines\":[");
    let mut i = 0;
    while s.len() < 960 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "{{\"sku\":\"SKU-{i:05}\",\"qty\":{},\"price\":{}.{:02},\"gift\":false}}",
            i % 7 + 1,
            10 + i,
            i * 13 % 100
        ));
        i += 1;
    }
    s.push_str("],\"note\":null}");
    serde_json::from_str::<serde_json::Value>(&s).expect("valid JSON");
    Bytes::from(s)
}

/// Which request a bench sends.
#[derive(Clone, Copy)]
enum Kind {
    Get,
    PostJson,
}

/// Request number `n`: user `n % USERS`, `Host`, `Accept`, `Authorization`, the peer address in the
/// extensions as axum's `into_make_service_with_connect_info` puts it (where both the layer, told so, and
/// tower_governor look), and for a POST the JSON body with its
/// Content-Type and Content-Length.
fn request(users: &Users, kind: Kind, body: &Bytes, n: usize) -> Request<Body> {
    let k = n % USERS;
    let b = Request::builder()
        .header(http::header::HOST, HeaderValue::from_static("api.example.com"))
        .header(http::header::ACCEPT, HeaderValue::from_static(ACCEPT))
        .header(http::header::AUTHORIZATION, users.authorization[k].clone())
        .extension(ConnectInfo(users.peer[k]));
    match kind {
        Kind::Get => b.method("GET").uri("/orders/1").body(Body::empty()),
        Kind::PostJson => b
            .method("POST")
            .uri("/orders")
            .header(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()))
            .body(Body::from(body.clone())),
    }
    .unwrap()
}

/// The CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(u64::try_from(ts.tv_sec).unwrap(), u32::try_from(ts.tv_nsec).unwrap())
}

/// Times `iters` requests through `app`: the calls only, built in batches outside the clock. Panics if any
/// answer is not 200.
fn run(
    rt: &tokio::runtime::Runtime,
    app: &mut Router,
    users: &Users,
    kind: Kind,
    iters: u64,
    next: &mut usize,
) -> Duration {
    let body = json_body();
    let mut total = Duration::ZERO;
    let mut refused = 0u64;
    let mut left = iters;
    let mut batch = Vec::with_capacity(BATCH as usize);
    while left > 0 {
        let n = left.min(BATCH);
        for _ in 0..n {
            batch.push(request(users, kind, &body, *next));
            *next = next.wrapping_add(1);
        }
        let start = thread_cpu_time();
        refused += timed_batch(rt, app, &mut batch);
        total += thread_cpu_time().saturating_sub(start);
        left -= n;
    }
    assert_eq!(
        refused, 0,
        "a request was refused: the bench measures admitted requests"
    );
    total
}

/// The timed part: each request of `batch` through `app` (the runtime entered once per batch); returns how
/// many were refused. A function of its own so that callgrind can count its instructions alone
/// (`benches/layer-instructions.sh`).
#[inline(never)]
fn timed_batch(rt: &tokio::runtime::Runtime, app: &mut Router, batch: &mut Vec<Request<Body>>) -> u64 {
    rt.block_on(async {
        let mut refused = 0;
        for req in batch.drain(..) {
            poll_fn(|cx| Service::<Request<Body>>::poll_ready(&mut *app, cx))
                .await
                .unwrap();
            let response: Response<Body> = app.call(req).await.unwrap();
            refused += u64::from(response.status() != StatusCode::OK);
            drop(std::hint::black_box(response));
        }
        refused
    })
}

/// A bench: its name, the request it sends, the application it calls.
type Case = (&'static str, Kind, fn() -> Router);

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let users = Users::new();

    // Each answers 200 to both kinds before being measured.
    let check = |mut app: Router| {
        for kind in [Kind::Get, Kind::PostJson] {
            let mut n = 0;
            run(&rt, &mut app, &users, kind, 2, &mut n);
        }
        app
    };

    let mut g = c.benchmark_group("layer");
    let cases: [Case; 9] = [
        ("get/bare", Kind::Get, router),
        ("get/portcullis_by_authorization", Kind::Get, || {
            portcullis("authorization")
        }),
        ("get/governor_by_authorization+accept", Kind::Get, || {
            pair_by_authorization(router())
        }),
        ("get/portcullis_by_ip", Kind::Get, || portcullis("ip")),
        ("get/governor_by_ip+accept", Kind::Get, pair_by_ip),
        ("post_json_1k/bare", Kind::PostJson, router),
        ("post_json_1k/portcullis_by_authorization", Kind::PostJson, || {
            portcullis("authorization")
        }),
        ("post_json_1k/governor_by_authorization+accept", Kind::PostJson, || {
            pair_by_authorization(router())
        }),
        (
            "post_json_1k/governor_by_authorization+accept+serde_json",
            Kind::PostJson,
            || pair_by_authorization(router_parsing_json()),
        ),
    ];
    // LAYER_CASE=NAME LAYER_REQUESTS=N: no criterion; N requests of that case, warmed up by as many first (for
    // callgrind's instruction counts, see benches/layer-instructions.sh).
    if let (Ok(only), Ok(n)) = (std::env::var("LAYER_CASE"), std::env::var("LAYER_REQUESTS")) {
        let n: u64 = n.parse().expect("LAYER_REQUESTS");
        let (_, kind, make) = cases.iter().find(|c| c.0 == only).expect("LAYER_CASE: a bench's name");
        let mut app = check(make());
        let mut next = 0usize;
        run(&rt, &mut app, &users, *kind, n, &mut next);
        run(&rt, &mut app, &users, *kind, n, &mut next);
        return;
    }
    for (name, kind, make) in cases {
        let mut app = check(make());
        let mut next = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run(&rt, &mut app, &users, kind, iters, &mut next))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
