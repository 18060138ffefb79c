//! The llhttp request corpus (tests/corpora/llhttp) through the connection machine itself (tests/pump), each
//! input whole, split in two at every offset, and byte by byte. Every strict `error` case must be refused (or
//! stop the connection) before the bad message is complete; the valid cases our stricter rules refuse are a
//! fixed list.

mod pump;

#[derive(Debug, PartialEq)]
enum Outcome {
    /// Refused with this status after `n` forwarded messages.
    Refused(u16, usize),
    /// The connection closes (Connection: close / HTTP/1.0) after `n` messages; later bytes are never read.
    Closed(usize),
    /// All input read: `n` complete messages and maybe a partial one awaiting more bytes.
    Read(usize),
}

/// Framing only: no Accept, Content-Type or JSON rule, no limit.
const FLAGS: &[&str] = &[
    "--accept-rule",
    "off",
    "--content-type-rule",
    "off",
    "--json-methods",
    "",
];

/// Runs `raw` through the connection machine (whole, split in two at every offset, and byte by byte, all with
/// the same outcome) with an upstream that answers every request.
fn read_stream(raw: &[u8], name: &str) -> Outcome {
    let o = pump::same_in_pieces(FLAGS, raw, usize::MAX, name);
    let done = o.forwarded.len();
    match o.statuses.iter().find(|&&s| s != 200) {
        Some(&status) => Outcome::Refused(status, done),
        None if o.end.is_some() => Outcome::Closed(done),
        None => Outcome::Read(done),
    }
}

#[test]
fn every_strict_error_case_is_refused() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/corpora/llhttp/llhttp-request-cases.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("llhttp corpus (tests/corpora)");
    let (mut errors, mut oks_served, mut oks_refused) = (0, 0, Vec::new());
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        if case["type"] != "request" {
            continue;
        }
        let mut raw = pump::b64(case["raw_b64"].as_str().unwrap());
        // llhttp's cases are stream fragments, often ending inside a head. A connection that stops there
        // waits for the rest and then gets 408; to judge the fragment itself, end an unfinished head here.
        if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
            if !raw.ends_with(b"\r\n") {
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
        }
        let name = format!("{} / {}", case["file"], case["name"]);
        let got = read_stream(&raw, &name);
        let llhttp_done = case["messages_completed"].as_u64().unwrap_or(0) as usize;
        if case["outcome"] == "error" {
            errors += 1;
            match got {
                Outcome::Refused(status, n) => {
                    assert!((400..600).contains(&status), "{name}: {status}");
                    assert!(n <= llhttp_done, "{name}: accepted {n} messages, llhttp {llhttp_done}");
                }
                Outcome::Closed(n) => assert!(n <= llhttp_done, "{name}: {got:?}"),
                Outcome::Read(_) => panic!(
                    "{name}: llhttp refuses this ({}), we did not: {:?}",
                    case["error_reason"],
                    String::from_utf8_lossy(&raw)
                ),
            }
        } else {
            match got {
                Outcome::Refused(..) => oks_refused.push(name),
                _ => oks_served += 1,
            }
        }
    }
    assert_eq!(errors, 65, "corpus changed");
    // We are stricter than llhttp in places (Host is required in HTTP/1.1, only the served methods, no bare LF,
    // no space around a Content-Length value...): these valid cases are refused, and only these.
    assert_eq!(oks_served, 5);
    assert_eq!(oks_refused, STRICTER, "the valid llhttp cases refused changed");
}

/// The llhttp cases llhttp accepts and portcullis refuses (file / case name, in corpus order).
const STRICTER: &[&str] = &[
    "\"connection.md\" / \"Setting flag\"",
    "\"connection.md\" / \"Restarting when keep-alive is explicitly\"",
    "\"connection.md\" / \"Setting flag on `close`\"",
    "\"connection.md\" / \"Setting flag on `close` followed by tab\"",
    "\"connection.md\" / \"Sample\"",
    "\"content-length.md\" / \"`Content-Length` with zeroes\"",
    "\"content-length.md\" / \"`Content-Length` with follow-up headers\"",
    "\"content-length.md\" / \"Funky `Content-Length` with body\"",
    "\"content-length.md\" / \"Spaces in `Content-Length` (surrounding)\"",
    "\"content-length.md\" / \"Tabs in `Content-Length` (surrounding)\"",
    "\"content-length.md\" / \"Content-Length reset when no body is received\"",
    "\"method.md\" / \"REPORT request\"",
    "\"method.md\" / \"M-SEARCH request\"",
    "\"method.md\" / \"PURGE request\"",
    "\"method.md\" / \"SEARCH request\"",
    "\"method.md\" / \"LINK request\"",
    "\"method.md\" / \"LINK request\"",
    "\"method.md\" / \"SOURCE request\"",
    "\"method.md\" / \"SOURCE request with ICE\"",
    "\"method.md\" / \"OPTIONS request with RTSP\"",
    "\"method.md\" / \"ANNOUNCE request with RTSP\"",
    "\"method.md\" / \"QUERY request\"",
    "\"pausing.md\" / \"on_message_begin\"",
    "\"pausing.md\" / \"on_message_complete\"",
    "\"pausing.md\" / \"on_protocol_complete\"",
    "\"pausing.md\" / \"on_method_complete\"",
    "\"pausing.md\" / \"on_url_complete\"",
    "\"pausing.md\" / \"on_version_complete\"",
    "\"pausing.md\" / \"on_header_field_complete\"",
    "\"pausing.md\" / \"on_header_value_complete\"",
    "\"pausing.md\" / \"on_headers_complete\"",
    "\"pausing.md\" / \"on_chunk_header\"",
    "\"pausing.md\" / \"on_chunk_extension_name\"",
    "\"pausing.md\" / \"on_chunk_extension_value\"",
    "\"pausing.md\" / \"on_chunk_complete\"",
    "\"pipelining.md\" / \"Should parse multiple events\"",
    "\"sample.md\" / \"Simple request\"",
    "\"sample.md\" / \"Request with method starting with `H`\"",
    "\"sample.md\" / \"DUMBPACK\"",
    "\"sample.md\" / \"No headers and no body\"",
    "\"sample.md\" / \"One header and no body\"",
    "\"sample.md\" / \"Prefix newline\"",
    "\"sample.md\" / \"No HTTP version\"",
    "\"sample.md\" / \"Request starting with CRLF\"",
    "\"sample.md\" / \"Extended Characters\"",
    "\"sample.md\" / \"255 ASCII in header value\"",
    "\"transfer-encoding.md\" / \"Parsing and setting flag\"",
    "\"transfer-encoding.md\" / \"Parse chunks with lowercase size\"",
    "\"transfer-encoding.md\" / \"Parse chunks with uppercase size\"",
    "\"transfer-encoding.md\" / \"POST with `Transfer-Encoding: chunked`\"",
    "\"transfer-encoding.md\" / \"Two chunks and triple zero prefixed end chunk\"",
    "\"transfer-encoding.md\" / \"Trailing headers\"",
    "\"transfer-encoding.md\" / \"Chunk extensions\"",
    "\"transfer-encoding.md\" / \"Chunk extensions quoting\"",
    "\"transfer-encoding.md\" / \"POST with `chunked` as last transfer-encoding\"",
    "\"transfer-encoding.md\" / \"POST with `chunked` as last transfer-encoding (multiple headers)\"",
    "\"uri.md\" / \"Quotes in URI\"",
    "\"uri.md\" / \"Query URL with question mark\"",
    "\"uri.md\" / \"Host terminated by a query string\"",
    "\"uri.md\" / \"`host:port` terminated by a query string\"",
    "\"uri.md\" / \"Query URL with vertical bar character\"",
    "\"uri.md\" / \"`host:port` terminated by a space\"",
    "\"uri.md\" / \"Fragment in URI\"",
    "\"uri.md\" / \"`host:port` and basic auth\"",
];
