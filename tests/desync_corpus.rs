//! The desync-guardian corpus (tests/corpora/desync-guardian/tests/*.yaml, from
//! aws/http-desync-guardian) end to end: every case is turned into raw bytes, sent to the real binary on its
//! own connection, and judged by what the client got back and what reached a byte-counting upstream.
//!
//! Expectations, by the corpus's tier (tests/README.md there):
//! - `Severe` / `Ambiguous`: refused with a 4xx whose `reason` is about the message itself, the connection
//!   closed after that one answer, and not one byte reaching the upstream (accepts and bytes counted). The
//!   request is followed by the body a lenient server would read and then a pipelined
//!   `GET /smuggled`, so a proxy that misframed the message would visibly forward something.
//! - `Compliant`: served: 2xx back, exactly one request upstream, with the same method, target and body.
//! - `Acceptable` (deviations the corpus calls harmless): either served as above or refused cleanly
//!   (nothing upstream); both are fine, the count of each is printed.
//!
//! Deviations with a reason are listed in [`EXCEPTIONS`]; an exception that no longer matches what the
//! proxy does fails the test, so the table cannot go stale.
//!
//! Turning a case into bytes follows the corpus's own raw-request builder (`run_test_case` in
//! desync-guardian's src/request_analyzer.rs): `"{method} {uri} {version}\r\n"`, then `"{name}: {value}\r\n"`
//! per header, then `"\r\n"`; YAML escapes are decoded, then desync-guardian's second `unescape_value`
//! pass (`\t`, `\xNN` ... in plain scalars), and the resulting text is sent as UTF-8 (so `"\xa0"` is the two
//! bytes C2 A0, exactly as the corpus's own tests build it). Two fields are added, because without them every
//! case would be refused for a reason unrelated to what it tests:
//! - `Host: c<N>.desync.test` (N = the case's index) when the case has no Host: HTTP/1.1 requires exactly one
//!   (400 `invalid_host` otherwise); the index also tells which case an upstream request came from;
//! - `Accept: */*` when the case has no Accept: portcullis requires one (406 `accept_header_missing`, see
//!   docs/errors.md) and `*/*` passes when no `--accept` type is configured.
//!
//! Both are inserted right after the request line, except when the case's first field line starts with
//! whitespace: there they go just before the empty line, so the whitespace line stays the first one after
//! the request line, as the corpus wrote it (inserted above it, it would become an obs-fold instead).
//!
//! The proxy is started once (`Proxy::core`: JSON rules off, rate limit off, one worker, default limits
//! otherwise, except short header/body timeouts so that a proxy waiting for bytes the test never sends
//! answers 408 within 2 s instead of 30 s; a 408 fails the case).
//!
//! Results, the exceptions and the cases the proxy currently gets wrong (GET/HEAD with a body, framing-field
//! look-alikes such as `Transfer_Encoding`): docs/security.md. `-- --nocapture` prints one line per case.

mod support;

mod pump;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::Proxy;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpora/desync-guardian/tests");

/// The files, in the order desync-guardian's own `file_tests` runs them.
const FILES: [&str; 10] = [
    "single-case.yaml",
    "edge-cases.yaml",
    "rfc-compliant.yaml",
    "acceptable.yaml",
    "ambiguous.yaml",
    "bad-header-characters.yaml",
    "more-compliant-tests.yaml",
    "severe.yaml",
    "uri-specific-test-cases.yaml",
    "real-life-test-cases.yaml",
];

/// Reasons that say the refusal came from the test's own scaffolding (or a timeout), not from the message
/// the case describes: never an acceptable verdict for a Severe or Ambiguous case.
const NOT_ABOUT_THE_MESSAGE: [&str; 8] = [
    "accept_header_missing",
    "accept_header_malformed",
    "unsupported_api_version",
    "content_type_not_json",
    "malformed_json",
    "rate_limited",
    "request_timeout",
    "invalid_host",
];

/// Cases whose expected outcome differs from the tier's default, each with the status and `reason` the
/// proxy must answer and why that is right. Keyed by case id (`file#index`, index 1-based within the file).
/// Every entry must match: a stale entry fails the test.
const EXCEPTIONS: &[(&str, u16, &str, &str)] = &[
    // --- Severe / Ambiguous refused with a 5xx instead of a 4xx: still refused from the head alone, the
    // connection closed, nothing forwarded; the status is the one RFC 9112/9110 prescribe.
    (
        "severe#6",
        501,
        "unsupported_transfer_coding",
        "Transfer-Encoding: xchunked is a coding the ingress does not implement: RFC 9112 6.1 says 501",
    ),
    (
        "ambiguous#25",
        505,
        "http_version_not_supported",
        "HTTP/0.9 request line with a Transfer-Encoding: a well-formed version other than 1.0/1.1 is 505 \
         (RFC 9110 15.6.6), decided before any field is looked at",
    ),
    (
        "ambiguous#26",
        505,
        "http_version_not_supported",
        "HTTP/0.9 request line with a Content-Length: 505 as above",
    ),
    // --- Compliant in the corpus, refused here: the corpus accepts any registered transfer coding and
    // coding lists; portcullis implements chunked alone and refuses anything else before reading a body
    // (docs/errors.md: ambiguous_framing for lists containing chunked, unsupported_transfer_coding otherwise).
    // Refusing is allowed (RFC 9112 6.1: 501 for a coding not understood) and it is the safe direction.
    (
        "rfc-compliant#9",
        400,
        "ambiguous_framing",
        "five Transfer-Encoding fields (gzip, deflate, identity, compress, chunked): more than one TE field",
    ),
    (
        "rfc-compliant#10",
        400,
        "ambiguous_framing",
        "Transfer-Encoding: gzip, deflate, identity, compress, chunked: codings other than chunked",
    ),
    (
        "rfc-compliant#11",
        400,
        "ambiguous_framing",
        "three TE fields with parameters (`gzip ;`, `chunked;custom_param;`): more than one TE field, and \
         chunked has no parameters",
    ),
    (
        "rfc-compliant#12",
        400,
        "invalid_target",
        "the target ends in a fragment (`#form`): a fragment is not part of any request-target form (RFC 9112 \
         3.2; RFC 9110 4.2.5: clients strip it); servers disagree on where such a target ends",
    ),
    (
        "rfc-compliant#14",
        400,
        "malformed_request",
        "empty request-target (`GET  HTTP/1.1`): RFC 9112 3.2 origin-form needs at least `/`",
    ),
    (
        "more-compliant-tests#6",
        400,
        "ambiguous_framing",
        "Transfer-Encoding: gzip, chunked: codings other than chunked are not implemented",
    ),
    (
        "more-compliant-tests#7",
        413,
        "body_too_large",
        "Content-Length: 4000000 is over the default --max-body (1 MiB): a size policy, not framing",
    ),
    (
        "more-compliant-tests#8",
        400,
        "ambiguous_framing",
        "Transfer-Encoding: deflate, identity, chunked: codings other than chunked are not implemented",
    ),
    (
        "more-compliant-tests#9",
        400,
        "ambiguous_framing",
        "five Transfer-Encoding fields: more than one TE field",
    ),
    (
        "more-compliant-tests#10",
        400,
        "ambiguous_framing",
        "Transfer-Encoding: chunked;custom_param; -- chunked takes no parameters (RFC 9112 7.1), and \
         `custom_param` without `=value` is not even a transfer-parameter",
    ),
];

// ---------------------------------------------------------------------------------------------------------
// The corpus: a line parser for exactly the YAML subset these files use.

#[derive(Debug, Default, Clone)]
struct Case {
    id: String,
    name: String,
    uri: String,
    method: String,
    version: String,
    headers: Vec<(String, String)>,
    tier: String,
}

/// One YAML scalar as yaml-rust reads it: double-quoted (escapes), single-quoted (`''`), or plain.
fn yaml_scalar(s: &str) -> String {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut it = rest.chars();
        let hex = |it: &mut std::str::Chars, n: usize| {
            let h: String = it.by_ref().take(n).collect();
            char::from_u32(u32::from_str_radix(&h, 16).unwrap()).unwrap()
        };
        while let Some(c) = it.next() {
            match c {
                '"' => return out,
                '\\' => out.push(match it.next().expect("escape") {
                    '0' => '\0',
                    'a' => '\x07',
                    'b' => '\x08',
                    't' | '\t' => '\t',
                    'n' => '\n',
                    'v' => '\x0b',
                    'f' => '\x0c',
                    'r' => '\r',
                    'e' => '\x1b',
                    'N' => '\u{85}',
                    '_' => '\u{a0}',
                    'L' => '\u{2028}',
                    'P' => '\u{2029}',
                    'x' => hex(&mut it, 2),
                    'u' => hex(&mut it, 4),
                    'U' => hex(&mut it, 8),
                    c @ (' ' | '"' | '/' | '\\') => c,
                    c => panic!("unknown YAML escape \\{c} in {s}"),
                }),
                c => out.push(c),
            }
        }
        panic!("unterminated double-quoted scalar: {s}");
    }
    if let Some(rest) = s.strip_prefix('\'') {
        let end = rest.rfind('\'').expect("unterminated single-quoted scalar");
        return rest[..end].replace("''", "'");
    }
    // Plain: a comment starts at " #".
    match s.find(" #") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.to_string(),
    }
}

/// desync-guardian's `unescape_value`, applied to every field but the case name (see the module comment).
fn unescape_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next().expect("malformed escape") {
            'x' => {
                let h: String = chars.by_ref().take(2).collect();
                char::from(u8::from_str_radix(&h, 16).unwrap())
            }
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            c => c,
        });
    }
    out
}

fn load(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{CORPUS}/{file}"))
        .unwrap_or_else(|e| panic!("desync-guardian corpus (tests/corpora): {file}: {e}"));
    let stem = file.trim_end_matches(".yaml");
    let mut cases: Vec<Case> = Vec::new();
    #[derive(PartialEq)]
    enum Section {
        Top,
        Headers,
        Expected,
    }
    let mut section = Section::Top;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let (item, body) = match trimmed.strip_prefix("- ") {
            Some(b) => (true, b),
            None => (false, trimmed),
        };
        let Some((key, value)) = body.split_once(':') else {
            continue; // a list item of required_message_items
        };
        match (indent, item, key) {
            (0, true, "name") => {
                cases.push(Case {
                    id: format!("{stem}#{}", cases.len() + 1),
                    name: yaml_scalar(value),
                    ..Case::default()
                });
                section = Section::Top;
            }
            (2, false, k) => {
                let c = cases.last_mut().expect("a case");
                section = Section::Top;
                match k {
                    "uri" => c.uri = unescape_value(&yaml_scalar(value)),
                    "method" => c.method = unescape_value(&yaml_scalar(value)),
                    "version" => c.version = unescape_value(&yaml_scalar(value)),
                    "headers" => section = Section::Headers,
                    "expected" => section = Section::Expected,
                    _ => panic!("{file}: unknown key {k}"),
                }
            }
            (4, true, "name") if section == Section::Headers => {
                let c = cases.last_mut().unwrap();
                c.headers.push((unescape_value(&yaml_scalar(value)), String::new()));
            }
            (6, false, "value") if section == Section::Headers => {
                let c = cases.last_mut().unwrap();
                c.headers.last_mut().unwrap().1 = unescape_value(&yaml_scalar(value));
            }
            (6, false, "tier") if section == Section::Headers => {}
            (4, false, "tier") if section == Section::Expected => {
                cases.last_mut().unwrap().tier = yaml_scalar(value);
            }
            (4, false, "reason" | "required_message_items") if section == Section::Expected => {}
            _ => panic!("{file}: unexpected line {line:?}"),
        }
    }
    for c in &cases {
        assert!(
            ["Compliant", "Acceptable", "Ambiguous", "Severe"].contains(&c.tier.as_str()),
            "{}: tier {:?}",
            c.id,
            c.tier
        );
    }
    cases
}

// ---------------------------------------------------------------------------------------------------------
// Bytes on the wire.

struct Wire {
    /// The head as the corpus describes it (plus Host / Accept when missing).
    head: Vec<u8>,
    /// The body a lenient RFC 9112 reader would take from the fields (see `natural_body`).
    body: Vec<u8>,
    /// What an upstream must receive as the body if the request is served (de-chunked).
    body_decoded: Vec<u8>,
    host: String,
}

const CHUNKED_BODY: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

/// The body that follows the head: chunked if a field named exactly Transfer-Encoding ends its coding list
/// with `chunked`; else the length of the first field named exactly Content-Length that parses (after
/// trimming whitespace) as a number; else none. For a compliant request this is its body; for the others,
/// it is what a lenient server would read, so a proxy that took that reading is caught forwarding.
fn natural_body(c: &Case) -> (Vec<u8>, Vec<u8>) {
    let te_last = c
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .last();
    if let Some(t) = te_last {
        let coding = t
            .split(';')
            .next()
            .unwrap()
            .trim_matches([' ', '\t'])
            .to_ascii_lowercase();
        if coding == "chunked" {
            return (CHUNKED_BODY.to_vec(), b"hello".to_vec());
        }
    }
    let cl = c
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .find_map(|(_, v)| v.trim_matches([' ', '\t']).parse::<u64>().ok());
    match cl {
        Some(n) if n <= 8_000_000 => {
            let b: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            (b.clone(), b)
        }
        _ => (Vec::new(), Vec::new()),
    }
}

fn wire(index: usize, c: &Case) -> Wire {
    let has = |name: &str| c.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let host = if has("host") {
        c.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .unwrap()
            .1
            .trim()
            .to_string()
    } else {
        format!("c{index}.desync.test")
    };
    let mut added = String::new();
    if !has("host") {
        added += &format!("Host: {host}\r\n");
    }
    if !has("accept") {
        added += "Accept: */*\r\n";
    }
    let first_is_ws = c.headers.first().is_some_and(|(n, _)| n.starts_with([' ', '\t']));
    let mut head = format!("{} {} {}\r\n", c.method, c.uri, c.version);
    if !first_is_ws {
        head += &added;
    }
    for (n, v) in &c.headers {
        head += &format!("{n}: {v}\r\n");
    }
    if first_is_ws {
        head += &added;
    }
    head += "\r\n";
    let (body, body_decoded) = natural_body(c);
    Wire {
        head: head.into_bytes(),
        body,
        body_decoded,
        host,
    }
}

// ---------------------------------------------------------------------------------------------------------
// A counting upstream: every accepted connection and every byte read is counted; Content-Length framed
// requests (the ingress forwards nothing else) are recorded and answered 200.

#[derive(Clone, Debug)]
struct UpRequest {
    line: String,
    host: String,
    body: Vec<u8>,
}

struct CountingUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<UpRequest>>>,
}

impl CountingUpstream {
    fn start() -> CountingUpstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (accepts, bytes, requests) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        );
        let (a, b, r) = (accepts.clone(), bytes.clone(), requests.clone());
        thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let (b, r) = (b.clone(), r.clone());
                thread::spawn(move || up_serve(s, &b, &r));
            }
        });
        CountingUpstream {
            addr,
            accepts,
            bytes,
            requests,
        }
    }

    fn snapshot(&self) -> (usize, usize, usize) {
        (
            self.accepts.load(Ordering::SeqCst),
            self.bytes.load(Ordering::SeqCst),
            self.requests.lock().unwrap().len(),
        )
    }
}

fn field(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn up_serve(mut s: TcpStream, bytes: &AtomicUsize, log: &Mutex<Vec<UpRequest>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let n = match s.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        bytes.fetch_add(n, Ordering::SeqCst);
        buf.extend_from_slice(&tmp[..n]);
        while let Some(i) = support::find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).to_string();
            let len: usize = field(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if buf.len() < i + 4 + len {
                break;
            }
            let body = buf[i + 4..i + 4 + len].to_vec();
            buf.drain(..i + 4 + len);
            let line = head.split("\r\n").next().unwrap().to_string();
            let resp: &[u8] = if line.starts_with("HEAD ") {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            log.lock().unwrap().push(UpRequest {
                host: field(&head, "host").unwrap_or_default(),
                line,
                body,
            });
            if s.write_all(resp).is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The client side.

#[derive(Debug)]
struct Answer {
    status: u16,
    reason: String,
    connection: String,
}

#[derive(Debug)]
struct Outcome {
    answers: Vec<Answer>,
    /// The proxy closed the connection (EOF or reset) after its answers.
    closed: bool,
    /// Bytes that did not parse as a response.
    garbage: usize,
}

/// Parses the responses in `buf`; the first one answers a HEAD request when `head_req` (no body unless it
/// is one of the ingress's own problem+json answers, which always carry theirs).
fn parse_answers(buf: &[u8], head_req: bool) -> (Vec<Answer>, usize) {
    let mut answers = Vec::new();
    let mut pos = 0;
    while let Some(i) = support::find(&buf[pos..], b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&buf[pos..pos + i + 4]).to_string();
        let Some(status) = head.get(9..12).and_then(|s| s.parse::<u16>().ok()) else {
            break;
        };
        let problem = field(&head, "content-type").as_deref() == Some("application/problem+json");
        let len: usize = field(&head, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let len = if head_req && answers.is_empty() && !problem {
            0
        } else {
            len
        };
        let body_start = pos + i + 4;
        let body = &buf[body_start..(body_start + len).min(buf.len())];
        let reason = if problem {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "?".into())
        } else {
            String::new()
        };
        answers.push(Answer {
            status,
            reason,
            connection: field(&head, "connection").unwrap_or_default(),
        });
        pos = (body_start + len).min(buf.len());
    }
    (answers, buf.len() - pos)
}

/// Sends `bytes` on a fresh connection (from a second thread, so a refused 4 MB body cannot block the
/// reader) and reads until the proxy closes, `want` answers arrived on a kept connection, or `patience`
/// passed.
fn exchange(addr: SocketAddr, bytes: Vec<u8>, head_req: bool, want: usize, patience: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&bytes);
    });
    let until = Instant::now() + patience;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    let closed = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut tmp) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // timed out
        }
        let (answers, _) = parse_answers(&buf, head_req);
        if answers.len() >= want
            && answers
                .last()
                .is_some_and(|a| !a.connection.eq_ignore_ascii_case("close"))
        {
            break false;
        }
    };
    let _ = s.shutdown(std::net::Shutdown::Both);
    writer.join().unwrap();
    let (answers, garbage) = parse_answers(&buf, head_req);
    Outcome {
        answers,
        closed,
        garbage,
    }
}

// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Verdict {
    /// Refused: (status, reason), closed, nothing upstream.
    Refused(u16, String),
    /// Served: 2xx, one intact request upstream.
    Served,
}

fn quoted(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}

/// Every case through the connection machine itself (tests/pump): the same outcome whole, split in two at
/// every offset of its first 2 KiB, and one byte at a time; an answer of the ingress's own (a refusal) never
/// follows a forwarded byte of that request, and nothing after a refusal is forwarded.
#[test]
fn desync_guardian_corpus_through_the_machine_in_pieces() {
    let mut index = 0;
    let (mut served, mut refused) = (0, 0);
    for file in FILES {
        for c in load(file) {
            index += 1;
            let w = wire(index, &c);
            if w.body.len() > 64 * 1024 {
                continue;
            }
            let mut bytes = w.head.clone();
            bytes.extend_from_slice(&w.body);
            bytes.extend_from_slice(
                format!("GET /smuggled HTTP/1.1\r\nHost: smuggled.c{index}.desync.test\r\nAccept: */*\r\n\r\n")
                    .as_bytes(),
            );
            let name = format!("{file} #{index} {}", c.id);
            let o = pump::same_in_pieces(&["--accept-rule", "off", "--json-methods", ""], &bytes, 2048, &name);
            match o.statuses.first() {
                Some(200) => served += 1,
                Some(_) => {
                    refused += 1;
                    assert!(
                        o.forwarded.is_empty(),
                        "{name}: refused, yet forwarded {:?}",
                        o.forwarded
                    );
                }
                None => {}
            }
            assert!(
                !o.forwarded.iter().any(|f| f.windows(9).any(|w| w == b"smuggled.")
                    && !String::from_utf8_lossy(f).starts_with("GET /smuggled ")),
                "{name}: the smuggled request rode inside another"
            );
        }
    }
    assert!(served > 0 && refused > 0, "served {served}, refused {refused}");
}

#[test]
fn desync_guardian_corpus_end_to_end() {
    let up = CountingUpstream::start();
    let p = Proxy::core(up.addr, &["--header-timeout", "2s", "--body-timeout", "2s"]);
    let exceptions: BTreeMap<&str, (u16, &str, &str)> =
        EXCEPTIONS.iter().map(|&(id, s, r, why)| (id, (s, r, why))).collect();
    let mut used_exceptions = Vec::new();
    let mut failures = Vec::new();
    // tier -> (cases, as the tier expects, via an exception, served, refused)
    let mut tally: BTreeMap<String, [usize; 5]> = BTreeMap::new();
    let mut index = 0;
    let mut served_hosts = Vec::new();
    let mut failed_hosts = Vec::new();
    let started = Instant::now();
    for file in FILES {
        for c in load(file) {
            index += 1;
            let w = wire(index, &c);
            let refuse_expected = matches!(c.tier.as_str(), "Severe" | "Ambiguous");
            let mut bytes = w.head.clone();
            bytes.extend_from_slice(&w.body);
            if refuse_expected {
                bytes.extend_from_slice(
                    format!("GET /smuggled HTTP/1.1\r\nHost: smuggled.c{index}.desync.test\r\nAccept: */*\r\n\r\n")
                        .as_bytes(),
                );
            }
            let head_req = c.method == "HEAD";
            let before = up.snapshot();
            // Refusal expected: read until the proxy closes (or 5 s), so a second answer is seen too.
            let want = if refuse_expected { 2 } else { 1 };
            let out = exchange(p.addr, bytes, head_req, want, Duration::from_secs(5));
            // Anything forwarded was written before the answer that depends on it; a short pause catches a
            // forward racing a refusal.
            if refuse_expected {
                thread::sleep(Duration::from_millis(5));
            }
            let after = up.snapshot();
            let new_reqs: Vec<UpRequest> = up.requests.lock().unwrap()[before.2..after.2].to_vec();
            let up_accepts = after.0 - before.0;
            let up_bytes = after.1 - before.1;

            let first = out.answers.first();
            let verdict = match first {
                Some(a) if (200..300).contains(&a.status) => {
                    let want_line = format!("{} {} HTTP/1.1", c.method, c.uri);
                    let intact = new_reqs.len() == 1
                        && new_reqs[0].line == want_line
                        && new_reqs[0].host == w.host
                        && new_reqs[0].body == w.body_decoded
                        && out.answers.len() == 1
                        && out.garbage == 0;
                    if intact {
                        Some(Verdict::Served)
                    } else {
                        None
                    }
                }
                Some(a) if a.status >= 400 && up_accepts == 0 && up_bytes == 0 && out.answers.len() == 1 => {
                    Some(Verdict::Refused(a.status, a.reason.clone()))
                }
                _ => None,
            };
            let answers: Vec<String> = out
                .answers
                .iter()
                .map(|a| {
                    format!(
                        "{} {}{}",
                        a.status,
                        a.reason,
                        if a.connection.is_empty() {
                            String::new()
                        } else {
                            format!(" (Connection: {})", a.connection)
                        }
                    )
                })
                .collect();
            let upstream_saw: Vec<String> = new_reqs
                .iter()
                .map(|r| format!("{} [Host {}] + {}-byte body", r.line, r.host, r.body.len()))
                .collect();
            let summary = format!(
                "answers {answers:?}{}{}; upstream +{up_accepts} connections +{up_bytes} bytes {upstream_saw:?}",
                if out.closed { ", closed" } else { ", NOT closed" },
                if out.garbage > 0 {
                    format!(", {} unparsed bytes", out.garbage)
                } else {
                    String::new()
                },
            );
            println!("{:<28} {:<10} {:<60} {summary}", c.id, c.tier, c.name);
            let describe = || {
                format!(
                    "{} ({}, {:?}): {summary}\n    sent: \"{}\" + {}{}",
                    c.id,
                    c.tier,
                    c.name,
                    quoted(&w.head),
                    if w.body.len() <= 32 {
                        format!("\"{}\"", quoted(&w.body))
                    } else {
                        format!("{} body bytes \"{}...\"", w.body.len(), quoted(&w.body[..16]))
                    },
                    if refuse_expected {
                        " + a pipelined GET /smuggled"
                    } else {
                        ""
                    },
                )
            };
            let t = tally.entry(c.tier.clone()).or_default();
            t[0] += 1;
            match &verdict {
                Some(Verdict::Served) => t[3] += 1,
                Some(Verdict::Refused(..)) => t[4] += 1,
                None => {}
            }
            if let Some(&(status, reason, _why)) = exceptions.get(c.id.as_str()) {
                used_exceptions.push(c.id.clone());
                if verdict == Some(Verdict::Refused(status, reason.to_string())) && out.closed {
                    t[2] += 1;
                } else {
                    failures.push(format!("EXCEPTION {status} {reason} no longer matches: {}", describe()));
                }
                continue;
            }
            let ok = match (c.tier.as_str(), &verdict) {
                ("Severe" | "Ambiguous", Some(Verdict::Refused(status, reason))) => {
                    (400..500).contains(status) && out.closed && !NOT_ABOUT_THE_MESSAGE.contains(&reason.as_str())
                }
                ("Compliant", Some(Verdict::Served)) => true,
                ("Acceptable", Some(Verdict::Served)) => true,
                ("Acceptable", Some(Verdict::Refused(_, reason))) => !NOT_ABOUT_THE_MESSAGE.contains(&reason.as_str()),
                _ => false,
            };
            if ok {
                t[1] += 1;
                if verdict == Some(Verdict::Served) {
                    served_hosts.push(w.host.clone());
                }
            } else {
                failures.push(describe());
                failed_hosts.push(w.host.clone());
                failed_hosts.push(format!("smuggled.c{index}.desync.test"));
            }
        }
    }
    // Late forwards: after every case, the upstream holds exactly the served requests (and those of the cases
    // already reported as failing).
    thread::sleep(Duration::from_millis(50));
    let all: Vec<String> = up.requests.lock().unwrap().iter().map(|r| r.host.clone()).collect();
    let unexpected: Vec<&String> = all
        .iter()
        .filter(|h| !served_hosts.contains(h) && !failed_hosts.contains(h))
        .collect();

    println!("desync-guardian corpus: {index} cases in {:?}", started.elapsed());
    println!("  tier        cases  as-tier  exception  (served  refused)");
    for (tier, [n, ok, exc, served, refused]) in &tally {
        println!("  {tier:<11} {n:>5}  {ok:>7}  {exc:>9}  ({served:>6}  {refused:>7})");
    }
    for id in exceptions.keys() {
        if !used_exceptions.iter().any(|u| u == id) {
            failures.push(format!("EXCEPTION {id} names no case"));
        }
    }
    if !unexpected.is_empty() {
        failures.push(format!(
            "upstream received requests of cases not served: {unexpected:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
