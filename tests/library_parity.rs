//! One table of requests answered by the edge binary and by the library (`portcullis::check`), configured
//! alike: the same status, the same problem+json body (so the same `reason`), the same `Retry-After`,
//! `RateLimit-Policy`, `RateLimit`, `Accept-Encoding` and `Content-Type` fields, and for an admitted request
//! the same `RateLimit` field on the response. The library runs each request twice, from the raw bytes and
//! from `http::request::Parts`, each with its own checker under the same seed and clock.

mod support;

use std::io::Write;
use std::net::IpAddr;
use std::time::Instant;

use portcullis::check::{header_storage, Checker, Options, Refusal, Seed, Verdict};
use support::*;

const DOCS: &str = "https://docs.example.com/errors";
/// The gold tier: a larger burst than the default tier's, at the same (lowest) rate, so that its sequence
/// below depends on the clock no more than the others do (one request a second refills; at 50 a second,
/// a 20 ms stall of the binary between two requests would have changed the `RateLimit` field).
const TIERS: &str = "[tiers.gold]\nrate = 1\nburst = 50\nusers = [\"Bearer gold-user\"]\n";

/// The binary's flags and the library's options, the same settings.
fn settings(tiers_path: &str) -> (Vec<String>, Options) {
    let flags = [
        "--rate",
        "1",
        "--burst",
        "3",
        "--ip-rate",
        "0",
        "--ratelimit-headers",
        "--accept",
        "application/vnd.acme.v1+json,application/vnd.acme.v2+json",
        "--docs-url",
        DOCS,
        "--contact",
        "mailto:api@example.com",
        "--max-body",
        "4096",
        "--max-json-depth",
        "64",
        "--json-methods",
        "POST,PATCH,PUT",
        "--limits",
        tiers_path,
    ];
    let options = Options {
        rate: 1,
        burst: Some(3),
        ip_rate: Some(0),
        ratelimit_headers: true,
        accept: vec![
            "application/vnd.acme.v1+json".into(),
            "application/vnd.acme.v2+json".into(),
        ],
        docs_url: Some(DOCS.into()),
        contact: Some("mailto:api@example.com".into()),
        max_body: 4096,
        max_json_depth: 64,
        json_methods: vec!["POST".into(), "PATCH".into(), "PUT".into()],
        limits: Some(TIERS.into()),
        ..Options::default()
    };
    (flags.iter().map(|s| s.to_string()).collect(), options)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A request with a Content-Length body (when `body` is some) and its own user (`Authorization`), so that the
/// rule cases do not spend one another's rate budget.
fn request(method: &str, user: &str, fields: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut r = format!("{method} /things HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {user}\r\n{fields}");
    if let Some(b) = body {
        r.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body.unwrap_or_default());
    r
}

const V1: &str = "Accept: application/vnd.acme.v1+json\r\n";
const JSON: &str = "Content-Type: application/json\r\n";

/// The rule cases, then rate sequences (several requests of one user), then the JSONTestSuite bodies.
fn table() -> Vec<(String, Vec<u8>)> {
    let mut t: Vec<(String, Vec<u8>)> = Vec::new();
    let mut add = |name: &str, raw: Vec<u8>| t.push((name.to_string(), raw));
    // Accept.
    add("accept missing", request("GET", "a1", "", None));
    add("accept v1", request("GET", "a2", V1, None));
    add(
        "accept v2 by quality",
        request(
            "GET",
            "a3",
            "Accept: application/vnd.acme.v1+json;q=0.5, application/vnd.acme.v2+json\r\n",
            None,
        ),
    );
    add(
        "accept unknown version",
        request("GET", "a4", "Accept: application/vnd.acme.v9+json\r\n", None),
    );
    add("accept malformed", request("GET", "a5", "Accept: a/b;;=\r\n", None));
    add("accept any", request("GET", "a6", "Accept: */*\r\n", None));
    add("accept twice", request("GET", "a7", &format!("{V1}{V1}"), None));
    add("head without accept", request("HEAD", "a8", "", None));
    // Content-Type.
    add("post no content-type", request("POST", "c1", V1, Some(b"{}")));
    add(
        "post text/plain",
        request("POST", "c2", &format!("{V1}Content-Type: text/plain\r\n"), Some(b"{}")),
    );
    add(
        "post json latin-1",
        request(
            "POST",
            "c3",
            &format!("{V1}Content-Type: application/json; charset=iso-8859-1\r\n"),
            Some(b"{}"),
        ),
    );
    add(
        "patch problem+json",
        request(
            "PATCH",
            "c4",
            &format!("{V1}Content-Type: application/merge-patch+json\r\n"),
            Some(b"{}"),
        ),
    );
    add("put json", request("PUT", "c5", &format!("{V1}{JSON}"), Some(b"[1,2]")));
    add("post empty body", request("POST", "c6", V1, Some(b"")));
    add("post no body", request("POST", "c7", V1, None));
    add(
        "delete text",
        request("DELETE", "c8", &format!("{V1}Content-Type: text/plain\r\n"), Some(b"x")),
    );
    // JSON (beyond the corpus below): depth, codings.
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    add(
        "json too deep",
        request("POST", "j1", &format!("{V1}{JSON}"), Some(deep.as_bytes())),
    );
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    add(
        "json at depth",
        request("POST", "j2", &format!("{V1}{JSON}"), Some(ok.as_bytes())),
    );
    add(
        "json gzip",
        request(
            "POST",
            "j3",
            &format!("{V1}{JSON}Content-Encoding: gzip\r\n"),
            Some(&gzip(b"{\"a\":[1,2,3]}")),
        ),
    );
    add(
        "json gzip malformed inside",
        request(
            "POST",
            "j4",
            &format!("{V1}{JSON}Content-Encoding: gzip\r\n"),
            Some(&gzip(b"{\"a\":[1,2,3}")),
        ),
    );
    add(
        "json gzip corrupt",
        request(
            "POST",
            "j5",
            &format!("{V1}{JSON}Content-Encoding: gzip\r\n"),
            Some(b"\x1f\x8b\x08\x00garbage"),
        ),
    );
    add(
        "json brotli",
        request(
            "POST",
            "j6",
            &format!("{V1}{JSON}Content-Encoding: br\r\n"),
            Some(b"{}"),
        ),
    );
    add(
        "json body too large",
        request(
            "POST",
            "j7",
            &format!("{V1}{JSON}"),
            Some(format!("[{}1]", "1,".repeat(3000)).as_bytes()),
        ),
    );
    // The user key and the head's framing.
    add(
        "authorization twice",
        b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer x\r\nAuthorization: Bearer y\r\nAccept: */*\r\n\r\n"
            .to_vec(),
    );
    add(
        "authorization malformed",
        b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Basic !!!\r\nAccept: */*\r\n\r\n".to_vec(),
    );
    add(
        "CL and TE",
        b"POST / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
    );
    add(
        "two hosts",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nAuthorization: Bearer f2\r\n\r\n".to_vec(),
    );
    add(
        "no host",
        b"GET / HTTP/1.1\r\nAuthorization: Bearer f3\r\n\r\n".to_vec(),
    );
    add(
        "trace",
        b"TRACE / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer f4\r\n\r\n".to_vec(),
    );
    add(
        "absolute target for another host",
        b"GET http://other/x HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f5\r\n\r\n".to_vec(),
    );
    add(
        "get with a body",
        b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f6\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
    );
    add(
        "content-length over max-body",
        b"POST / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f7\r\nContent-Length: 5000\r\n\r\n".to_vec(),
    );
    add(
        "expect something else",
        b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f8\r\nExpect: 200-ok\r\n\r\n".to_vec(),
    );
    add(
        "connection names accept",
        b"GET / HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer f9\r\nAccept: */*\r\nConnection: accept\r\n\r\n"
            .to_vec(),
    );
    // Rate sequences: a user of the default tier (burst 3, then refused), a listed user of the gold tier,
    // and users keyed on the client address (no credential).
    for i in 0..5 {
        add(&format!("default user, request {i}"), request("GET", "seq", V1, None));
    }
    for i in 0..4 {
        add(
            &format!("gold user, request {i}"),
            request("GET", "gold-user", V1, None),
        );
    }
    for i in 0..4 {
        add(
            &format!("by address, request {i}"),
            format!("GET /x HTTP/1.1\r\nHost: api\r\n{V1}\r\n").into_bytes(),
        );
    }
    add("refused head request", request("HEAD", "seq", V1, None));
    // JSONTestSuite: every parsing case as a POST body.
    let dir = format!(
        "{}/tests/corpora/JSONTestSuite/test_parsing",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for (k, p) in files.iter().enumerate() {
        let body = std::fs::read(p).unwrap();
        add(
            &format!("JSONTestSuite {}", p.file_name().unwrap().to_string_lossy()),
            request("POST", &format!("json-{k}"), &format!("{V1}{JSON}"), Some(&body)),
        );
    }
    t
}

/// What an answer says, less what is the connection's or the clock's (`Date`, `Connection`).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    fields: Vec<String>,
    body: String,
    closes: bool,
}

/// The fields that must agree (lower-case names), with their values.
fn fields_of(head: &str) -> Vec<String> {
    let mut v: Vec<String> = head
        .split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap().to_ascii_lowercase();
            !matches!(name.as_str(), "date" | "connection")
        })
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            format!("{}: {}", n.to_ascii_lowercase(), v.trim())
        })
        .collect();
    v.sort();
    v
}

/// The binary's answer, from a response as the client read it.
fn from_binary(r: &Response) -> Answer {
    let mut fields = fields_of(&r.head);
    if r.status == 200 {
        // The upstream's own fields: only the rate-limit one is the ingress's.
        fields.retain(|f| f.starts_with("ratelimit"));
    }
    Answer {
        status: r.status,
        fields,
        body: if r.status == 200 {
            String::new()
        } else {
            String::from_utf8_lossy(&r.body).into_owned()
        },
        closes: r.header("connection").as_deref() == Some("close"),
    }
}

/// The library's answer: the refusal's bytes, or for an admitted request 200 with its `RateLimit` field.
fn from_library(c: &Checker, outcome: Result<Verdict, Refusal>) -> Answer {
    match outcome {
        Ok(v) => Answer {
            status: 200,
            fields: c
                .ratelimit_header(&v)
                .map(|(n, v)| format!("{}: {v}", n.to_ascii_lowercase()))
                .into_iter()
                .collect(),
            body: String::new(),
            closes: false,
        },
        Err(refusal) => {
            let bytes = c.answer(&refusal);
            let end = find(&bytes, b"\r\n\r\n").unwrap() + 4;
            let head = String::from_utf8(bytes[..end].to_vec()).unwrap();
            Answer {
                status: refusal.status(),
                fields: fields_of(&head),
                body: String::from_utf8_lossy(&bytes[end..]).into_owned(),
                closes: refusal.closes(),
            }
        }
    }
}

/// The library on raw bytes: parse, check the head, then the (Content-Length) body.
fn library_raw(
    c: &Checker,
    scratch: &mut portcullis::check::Scratch,
    raw: &[u8],
    peer: IpAddr,
    now: Instant,
) -> Answer {
    let mut storage = header_storage();
    let outcome = match c.parse_head(raw, &mut storage) {
        Ok(Some(head)) => c.check_head(scratch, &head, peer, now).and_then(|mut v| {
            let body = &raw[head.head_len..];
            c.check_body(scratch, &mut v, body).map(|()| v)
        }),
        Ok(None) => panic!("incomplete head: {}", String::from_utf8_lossy(raw)),
        Err(r) => Err(r),
    };
    from_library(c, outcome)
}

/// The library on the `Parts` of the same request (as an HTTP server would hand them over); None when the
/// request does not even parse as HTTP (no server would hand it over).
fn library_parts(
    c: &Checker,
    scratch: &mut portcullis::check::Scratch,
    raw: &[u8],
    peer: IpAddr,
    now: Instant,
) -> Option<Answer> {
    let mut fields = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut fields);
    let head_len = match req.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut b = http::Request::builder()
        .method(req.method?)
        .uri(req.path?)
        .version(if req.version == Some(0) {
            http::Version::HTTP_10
        } else {
            http::Version::HTTP_11
        });
    for f in req.headers.iter() {
        b = b.header(f.name, f.value);
    }
    let (parts, ()) = b.body(()).ok()?.into_parts();
    let outcome = c
        .check_parts(scratch, &parts, peer, now)
        .and_then(|mut v| c.check_body(scratch, &mut v, &raw[head_len..]).map(|()| v));
    Some(from_library(c, outcome))
}

#[test]
fn the_binary_and_the_library_answer_alike() {
    let dir = temp_dir("library-parity");
    let tiers = dir.join("tiers.toml");
    std::fs::write(&tiers, TIERS).unwrap();
    let (flags, options) = settings(tiers.to_str().unwrap());
    let up = Upstream::ok("ok");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let proxy = Proxy::with_upstream(up.addr, &args);

    // Two checkers (raw bytes, `Parts`) under one seed and one fake clock that stands still. The binary runs
    // on its own clock: every rate sequence below is at one request a second (the lowest rate there is), so
    // its answers are the same whenever it takes less than a second from a sequence's first request to its
    // last (a few milliseconds here, over one kept connection). The binary has no clock a test can hold.
    let now = Instant::now();
    let seed = Seed([11, 12, 13, 14, 15, 16, 17, 18]);
    let raw_checker = Checker::new(&options, now, seed).unwrap();
    let parts_checker = Checker::new(&options, now, seed).unwrap();
    let (mut raw_scratch, mut parts_scratch) = (raw_checker.scratch(), parts_checker.scratch());
    let peer: IpAddr = "127.0.0.1".parse().unwrap();

    let table = table();
    assert!(table.len() > 300, "the JSONTestSuite files are there: {}", table.len());
    let mut client = proxy.connect();
    let (mut refused, mut admitted, mut via_parts) = (0, 0, 0);
    let mut reasons = std::collections::BTreeSet::new();
    for (name, raw) in &table {
        let head_request = raw.starts_with(b"HEAD ");
        client.send(raw);
        let response = client
            .response_to(head_request)
            .unwrap_or_else(|| panic!("{name}: no answer from the binary"));
        let binary = from_binary(&response);
        if binary.closes {
            client = proxy.connect();
        }
        let lib = library_raw(&raw_checker, &mut raw_scratch, raw, peer, now);
        assert_eq!(lib, binary, "{name}: the library (raw bytes) and the binary differ");
        if let Some(parts) = library_parts(&parts_checker, &mut parts_scratch, raw, peer, now) {
            assert_eq!(parts, binary, "{name}: the library (Parts) and the binary differ");
            via_parts += 1;
        }
        if binary.status == 200 {
            admitted += 1;
        } else {
            refused += 1;
            if !head_request {
                let v: serde_json::Value = serde_json::from_str(&binary.body).unwrap();
                reasons.insert(v["reason"].as_str().unwrap().to_string());
            }
        }
    }
    // The table covers what it claims: admissions and refusals of every kind, most through `Parts` too.
    assert!(admitted > 50 && refused > 200, "{admitted} admitted, {refused} refused");
    assert!(
        via_parts + 10 > table.len(),
        "{via_parts} of {} through Parts",
        table.len()
    );
    for reason in [
        "accept_header_missing",
        "accept_header_malformed",
        "unsupported_api_version",
        "content_type_not_json",
        "content_encoding_not_supported",
        "malformed_content_encoding",
        "malformed_json",
        "json_too_deep",
        "body_too_large",
        "rate_limited",
        "ambiguous_user_key",
        "malformed_authorization",
        "ambiguous_framing",
        "invalid_host",
        "unsupported_method",
        "expectation_failed",
        "invalid_connection_header",
    ] {
        assert!(reasons.contains(reason), "no case refused with {reason}: {reasons:?}");
    }
}

/// The library's limit follows the clock it is given: a burst, refusals whose Retry-After counts down, and
/// the budget back as the clock moves (the binary runs the same arithmetic on its own clock; the table
/// above compares their answers within one second).
#[test]
fn rate_sequences_follow_the_fake_clock() {
    let (_, options) = settings("");
    let start = Instant::now();
    let c = Checker::new(
        &Options {
            limits: None,
            ..options
        },
        start,
        Seed([1; 8]),
    )
    .unwrap();
    let mut scratch = c.scratch();
    let (parts, ()) = http::Request::get("/things")
        .header("host", "api")
        .header("accept", "application/vnd.acme.v1+json")
        .header("authorization", "Bearer clock")
        .body(())
        .unwrap()
        .into_parts();
    let peer: IpAddr = "192.0.2.1".parse().unwrap();
    let ms = |n| start + std::time::Duration::from_millis(n);
    // (time in ms, expected: Ok(RateLimit value) or Err(Retry-After))
    let steps: [(u64, Result<&str, u64>); 9] = [
        (0, Ok("\"default\";r=2;t=1")),
        (0, Ok("\"default\";r=1;t=2")),
        (0, Ok("\"default\";r=0;t=3")),
        (0, Err(1)),
        (400, Err(1)),
        (999, Err(1)),
        (1000, Ok("\"default\";r=0;t=3")),
        (1000, Err(1)),
        (10_000, Ok("\"default\";r=2;t=1")),
    ];
    for (i, (at, want)) in steps.into_iter().enumerate() {
        let got = match c.check_parts(&mut scratch, &parts, peer, ms(at)) {
            Ok(v) => Ok(c.ratelimit_header(&v).unwrap().1),
            Err(r) => {
                let response = c.response(&r);
                assert_eq!(response.status(), 429, "step {i}");
                assert_eq!(
                    response.headers()["ratelimit"],
                    format!("\"default\";r=0;t={}", r.retry_after().unwrap()).as_str()
                );
                Err(r.retry_after().unwrap())
            }
        };
        assert_eq!(got, want.map(str::to_string), "step {i} at {at} ms");
    }
}

/// The same table through an axum app behind the tower layer, over real sockets (hyper parses the requests,
/// the layer checks them): every request hyper passes on to a service is answered as the binary answers it.
/// One differs, and is checked to differ as documented: a request with both Content-Length and
/// Transfer-Encoding, which hyper re-frames before any service sees it.
#[cfg(feature = "tower")]
#[test]
fn the_binary_and_the_tower_layer_answer_alike() {
    use axum::extract::ConnectInfo;
    use std::net::SocketAddr;

    let dir = temp_dir("layer-parity");
    let tiers = dir.join("tiers.toml");
    std::fs::write(&tiers, TIERS).unwrap();
    let (flags, options) = settings(tiers.to_str().unwrap());
    let up = Upstream::ok("ok");
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let proxy = Proxy::with_upstream(up.addr, &args);

    let checker = Checker::new(&options, Instant::now(), Seed([21; 8])).unwrap();
    let layer = portcullis::layer::CheckLayer::from_checker(checker)
        .peer_from(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()));
    let app = axum::Router::new()
        .route("/", axum::routing::any(|| async { "ok" }))
        .route("/{*rest}", axum::routing::any(|| async { "ok" }))
        .layer(layer);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    // The app runs on its own runtime thread for the rest of the test process.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, service).await.unwrap();
        })
    });

    let (mut compared, mut hyper_refused, mut differ) = (0, Vec::new(), Vec::new());
    for (name, raw) in &table() {
        let head_request = raw.starts_with(b"HEAD ");
        // A connection per request on both sides: a refused request's unread body ends a connection to
        // hyper, and the binary's answers are compared on a kept connection in the test above.
        let mut to_binary = proxy.connect();
        to_binary.send(raw);
        let binary = from_binary(&to_binary.response_to(head_request).unwrap());
        let mut to_layer = Client::connect(addr);
        to_layer.send(raw);
        let Some(response) = to_layer.response_to(head_request) else {
            hyper_refused.push(name.clone());
            continue;
        };
        let ours =
            response.status == 200 || response.header("content-type").as_deref() == Some("application/problem+json");
        if !ours {
            hyper_refused.push(format!("{name} ({})", response.status));
            continue;
        }
        let layer = from_binary(&response);
        compared += 1;
        if name == "CL and TE" {
            // hyper frames such a request by its Transfer-Encoding (RFC 9112 section 6.3), removes the
            // Content-Length and closes the connection after it: the layer sees a chunked request, the
            // ambiguity is gone before it (docs/library.md says so). The connection still ends.
            assert!(
                binary.status == 400 && layer.status != 400 && layer.closes,
                "{name}: {layer:?}"
            );
            continue;
        }
        if layer != binary {
            differ.push(format!("{name}: layer {layer:?}, binary {binary:?}"));
        }
    }
    assert!(
        differ.is_empty(),
        "the tower layer and the binary differ:\n{}",
        differ.join("\n")
    );
    // Every request of the table reached the layer (hyper refused none itself), and all but one were
    // answered exactly as the binary answers them.
    assert!(
        hyper_refused.is_empty(),
        "refused by hyper before the layer: {hyper_refused:?}"
    );
    assert!(compared > 300, "{compared} compared");
}
