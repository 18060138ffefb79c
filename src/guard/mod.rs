//! The request checks of the product, as pure functions over a parsed head and a body:
//! the Accept versioning rule (406), the Content-Type rule (415) and the JSON body rule (400).
//!
//! Contract: `check_head` runs after framing was accepted and before any body byte is read; it decides from
//! the head alone. `JsonValidator::validate` runs on the complete, de-chunked body of the methods in
//! `--json-methods`, in place (not modified; copied only on CPUs without AVX2). Neither touches sockets or clocks.

pub mod decode;
pub mod json;
pub mod json_where;
pub mod media;

use crate::http::request::{Framing, RequestHead};
use crate::http::{eq_ci, list_items, named_by_connection};
pub use decode::Coding;
use media::{charset_is_utf8, is_json, parse_accept_element, parse_media, split_list};

/// Most `--accept` types (one bit each in the exclusion mask).
pub const MAX_API_TYPES: usize = 64;

/// A media type the API serves, from `--accept`: `application/vnd.<vendor>.v<N>+json`.
#[derive(Debug, Clone)]
pub struct ApiType {
    /// Lower-case `type/subtype`.
    pub media: String,
    /// Lower-case subtype (the type is `application`).
    pub sub: String,
    /// `v<N>`, passed upstream in the version header.
    pub version: String,
}

impl ApiType {
    /// Parses `application/vnd.<vendor>.v<N>+json`.
    pub fn parse(s: &str) -> Result<ApiType, String> {
        let media = s.trim().to_ascii_lowercase();
        let version = media
            .strip_prefix("application/vnd.")
            .and_then(|r| r.strip_suffix("+json"))
            .and_then(|r| r.rsplit_once('.'))
            .filter(|(vendor, v)| {
                !vendor.is_empty()
                    && vendor.bytes().all(|b| crate::http::is_tchar(b) && b != b'/')
                    && v.len() > 1
                    && v.starts_with('v')
                    && v[1..].bytes().all(|b| b.is_ascii_digit())
            })
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| format!("{s:?} is not of the form application/vnd.<vendor>.v<N>+json"))?;
        let sub = media["application/".len()..].to_string();
        Ok(ApiType { media, sub, version })
    }
}

/// What the checks need, fixed at start.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Each rule's mode (protocol safety, the framing and size limits, is not policy: always enforced).
    pub accept_mode: Mode,
    pub content_type_mode: Mode,
    pub json_mode: Mode,
    /// Accepted API types; empty: any well-formed Accept is usable.
    pub accept: Vec<ApiType>,
    /// Header carrying the matched version upstream (the client's own copy is always removed).
    pub version_header: String,
    /// Methods whose body must be JSON, as a bit mask over `http::request::ALLOWED_METHODS`.
    pub json_methods: u8,
    pub max_json_depth: usize,
    /// A JSON method's request without a body (no framing, `Content-Length: 0`, or a chunked body that turns
    /// out empty) passes the Content-Type and JSON rules: it has no content to check (`--json-allow-empty`).
    pub json_allow_empty: bool,
    /// The content codings a JSON body may come in, decoded to be validated (bits of [`Coding::bit`]; 0: only
    /// identity).
    pub json_decode: u8,
    /// Most decoded bytes per encoded byte (a decompression bomb is refused once past it).
    pub max_decode_ratio: u32,
}

impl Policy {
    /// The bit mask of `methods` (upper-case names from `ALLOWED_METHODS`; others are ignored).
    pub fn method_mask<S: AsRef<str>>(methods: &[S]) -> u8 {
        let all = crate::http::request::ALLOWED_METHODS;
        methods
            .iter()
            .filter_map(|m| all.iter().position(|a| *a == m.as_ref()))
            .fold(0, |acc, i| acc | 1 << i)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            accept_mode: Mode::Enforce,
            content_type_mode: Mode::Enforce,
            json_mode: Mode::Enforce,
            accept: Vec::new(),
            version_header: "X-Api-Version".into(),
            json_methods: Policy::method_mask(&["POST", "PATCH"]),
            max_json_depth: 1024,
            json_allow_empty: true,
            json_decode: Coding::Gzip.bit() | Coding::Deflate.bit(),
            max_decode_ratio: 100,
        }
    }
}

/// Why the request checks refuse a request that is valid HTTP: the product's rules, each with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    AcceptHeaderMissing,
    AcceptHeaderMalformed,
    UnsupportedApiVersion,
    ContentTypeNotJson,
    ContentEncodingNotSupported,
    /// The body is not valid data of its Content-Encoding.
    MalformedContentEncoding,
    MalformedJson,
    JsonTooDeep,
}

/// What a policy rule does: refuse (`enforce`), forward but count and log the refusal it would have given
/// (`observe`), or nothing (`off`).
///
/// ```
/// use portcullis::guard::Mode;
/// assert_eq!(Mode::parse("observe"), Ok(Mode::Observe));
/// assert_eq!(Mode::Off.name(), "off");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Observe,
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "observe" => Ok(Mode::Observe),
            "off" => Ok(Mode::Off),
            _ => Err(format!("{s:?}: use enforce, observe or off")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
            Mode::Off => "off",
        }
    }
}

/// The head passed the checks (or broke only rules in `observe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Index into `Policy::accept` of the version the request asked for.
    pub version: Option<usize>,
    /// The body must be validated as JSON (the JSON rule is not `off` and the method is a JSON method).
    pub json_body: bool,
    /// The first refusal an `observe` rule would have given.
    pub observed: Option<Refusal>,
    /// The Content-Type rule's refusal of a chunked body, held until the body is complete: an empty body
    /// passes (`json_allow_empty`); any other gets it (in the rule's mode).
    pub deferred: Option<Refusal>,
    /// The body's content coding, to be decoded before it is validated.
    pub coding: Option<Coding>,
}

/// Rules 2 and 3: Accept, then Content-Type for JSON methods, each in its mode.
pub fn check_head(policy: &Policy, head: &RequestHead<'_, '_>) -> Result<Admission, Refusal> {
    let mut observed = None;
    let mut version = None;
    if policy.accept_mode != Mode::Off {
        match check_accept(policy, head) {
            Ok(v) => version = v,
            Err(r) if policy.accept_mode == Mode::Observe => observed = Some(r),
            Err(r) => return Err(r),
        }
    }
    let json_method = policy.json_methods & head.method.bit() != 0;
    // No body, no content to check (`POST /logout`, `curl -X POST`).
    let bodiless = policy.json_allow_empty && matches!(head.framing, Framing::None | Framing::Length(0));
    let json_method = json_method && !bodiless;
    let mut deferred = None;
    // A coded body is validated decoded, in the codings configured (whatever the Content-Type rule's mode).
    let coding_result = if json_method {
        body_coding(policy, head)
    } else {
        Ok(None)
    };
    let coding = coding_result.unwrap_or(None);
    if json_method && policy.content_type_mode != Mode::Off {
        // JSON is UTF-8 (RFC 8259 section 8.1): a charset parameter naming anything else would make an
        // upstream that honours it decode another document than the one validated here.
        let ok = match (head.content_type, head.content_type_count) {
            (Some(i), 1) => {
                let v = head.headers[i].value;
                parse_media(v).is_some_and(|m| is_json(&m)) && charset_is_utf8(v)
            }
            _ => false,
        };
        // Any other coding cannot be validated.
        let refusal = if !ok {
            Some(Refusal::ContentTypeNotJson)
        } else {
            coding_result.err()
        };
        match refusal {
            // A chunked body may turn out empty: decided once it is complete (unless the client waits for
            // `100 Continue`: then the answer comes now, before the body).
            Some(r) if policy.json_allow_empty && head.framing == Framing::Chunked && !head.expect_continue => {
                deferred = Some(r)
            }
            Some(r) if policy.content_type_mode == Mode::Enforce => return Err(r),
            Some(r) => observed = observed.or(Some(r)),
            None => {}
        }
    }
    Ok(Admission {
        version,
        json_body: json_method && policy.json_mode != Mode::Off,
        observed,
        deferred,
        coding,
    })
}

/// The body's content coding (`None`: identity): at most one coding besides `identity`, one of those the
/// policy decodes.
fn body_coding(policy: &Policy, head: &RequestHead<'_, '_>) -> Result<Option<Coding>, Refusal> {
    let Some(first) = head.content_encoding else {
        return Ok(None);
    };
    let mut coding = None;
    for c in head.headers[first..]
        .iter()
        .filter(|h| eq_ci(h.name.as_bytes(), b"content-encoding"))
        .flat_map(|h| list_items(h.value))
        .filter(|c| !eq_ci(c, b"identity"))
    {
        match Coding::parse(c) {
            Some(k) if coding.is_none() && policy.json_decode & k.bit() != 0 => coding = Some(k),
            _ => return Err(Refusal::ContentEncodingNotSupported),
        }
    }
    Ok(coding)
}

/// True if a Connection field of `head` names a field an enforcing check reads (so that forwarding would drop
/// it after it was checked): Accept (Accept rule enforced), Content-Type and Content-Encoding (on a JSON
/// method, Content-Type rule enforced), and, with the rate limit enforced (`limited`: the key field, whether
/// X-Forwarded-For is trusted), the user's key field and X-Forwarded-For.
pub fn connection_names_checked(
    policy: &Policy,
    head: &RequestHead<'_, '_>,
    limited: Option<(Option<&[u8]>, bool)>,
) -> bool {
    let names = |f: &[u8]| named_by_connection(head.headers, f);
    let json_method = policy.json_methods & head.method.bit() != 0;
    (policy.accept_mode == Mode::Enforce && names(b"accept"))
        || (json_method
            && policy.content_type_mode == Mode::Enforce
            && (names(b"content-type") || names(b"content-encoding")))
        || limited.is_some_and(|(key, xff)| key.is_some_and(names) || (xff && names(b"x-forwarded-for")))
}

fn check_accept(policy: &Policy, head: &RequestHead<'_, '_>) -> Result<Option<usize>, Refusal> {
    let Some(first) = head.accept else {
        return Err(Refusal::AcceptHeaderMissing);
    };
    // Fastest path: the one Accept field is exactly one of the configured types (valid by construction).
    if head.accept_count == 1 {
        let v = head.headers[first].value;
        if let Some(i) = policy
            .accept
            .iter()
            .position(|t| v.eq_ignore_ascii_case(t.media.as_bytes()))
        {
            return Ok(Some(i));
        }
    }
    // Fast path: one Accept field holding one bare `type/subtype` (no list, no parameters): one pass.
    if head.accept_count == 1 {
        if let Some(m) = bare_media(head.headers[first].value) {
            if policy.accept.is_empty() {
                return Ok(None);
            }
            return match_type(policy, &m).ok_or(Refusal::UnsupportedApiVersion).map(Some);
        }
    }
    let mut present = false;
    // The best q named for each configured type (a q=0 range for a type excludes it), then the best type.
    let mut best_q = [0u16; MAX_API_TYPES];
    let mut excluded = 0u64;
    for h in head.headers[first..]
        .iter()
        .filter(|h| eq_ci(h.name.as_bytes(), b"accept"))
    {
        for elem in split_list(h.value).filter(|e| !e.is_empty()) {
            present = true;
            let m = parse_accept_element(elem).ok_or(Refusal::AcceptHeaderMalformed)?;
            if let Some(i) = match_type(policy, &m) {
                if m.q == 0 {
                    excluded |= 1 << i;
                }
                best_q[i] = best_q[i].max(m.q);
            }
        }
    }
    if !present {
        return Err(Refusal::AcceptHeaderMissing);
    }
    if policy.accept.is_empty() {
        return Ok(None);
    }
    let mut best: Option<(u16, usize)> = None;
    for (i, &q) in best_q.iter().enumerate().take(policy.accept.len()) {
        if q > 0 && excluded & (1 << i) == 0 && best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, i));
        }
    }
    best.map(|(_, i)| Some(i)).ok_or(Refusal::UnsupportedApiVersion)
}

/// `token "/" token` and nothing else, checked in one pass.
fn bare_media(v: &[u8]) -> Option<media::MediaRange<'_>> {
    let mut slash = None;
    for (i, &b) in v.iter().enumerate() {
        if b == b'/' {
            if slash.is_some() {
                return None;
            }
            slash = Some(i);
        } else if !crate::http::is_tchar(b) {
            return None;
        }
    }
    let i = slash?;
    (i > 0 && i + 1 < v.len()).then(|| media::MediaRange {
        ty: &v[..i],
        sub: &v[i + 1..],
        q: 1000,
    })
}

/// The configured API type `m` names exactly (`*/*` and `application/*` name none).
fn match_type(policy: &Policy, m: &media::MediaRange<'_>) -> Option<usize> {
    if !m.ty.eq_ignore_ascii_case(b"application") {
        return None;
    }
    policy
        .accept
        .iter()
        .position(|t| m.sub.eq_ignore_ascii_case(t.sub.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{header_storage, parse_head};
    use crate::http::Limits;

    fn policy() -> Policy {
        Policy {
            accept: vec![
                ApiType::parse("application/vnd.acme.v1+json").unwrap(),
                ApiType::parse("application/vnd.acme.v2+json").unwrap(),
            ],
            ..Policy::default()
        }
    }

    /// Checks a request with `fields`; one with a body (`Content-Length: 2`) unless it is a GET or HEAD or
    /// `fields` frame it themselves.
    fn check(p: &Policy, fields: &str, method: &str) -> Result<Admission, Refusal> {
        let framed = fields.contains("Content-Length") || fields.contains("Transfer-Encoding");
        let body = if framed || method == "GET" || method == "HEAD" {
            ""
        } else {
            "Content-Length: 2\r\n"
        };
        let raw = format!("{method} / HTTP/1.1\r\nHost: a\r\n{fields}{body}\r\n");
        let mut st = header_storage();
        let head = parse_head(raw.as_bytes(), &Limits::default(), &mut st)
            .unwrap()
            .unwrap();
        check_head(p, &head)
    }

    #[test]
    fn accept_rule() {
        let p = policy();
        let v = |f: &str| check(&p, f, "GET").map(|a| a.version);
        assert_eq!(v(""), Err(Refusal::AcceptHeaderMissing));
        assert_eq!(v("Accept: \r\n"), Err(Refusal::AcceptHeaderMissing));
        assert_eq!(v("Accept: ,\r\n"), Err(Refusal::AcceptHeaderMissing));
        assert_eq!(v("Accept: application/vnd.acme.v2+json\r\n"), Ok(Some(1)));
        assert_eq!(
            v("Accept: APPLICATION/VND.ACME.V1+JSON; charset=utf-8\r\n"),
            Ok(Some(0))
        );
        assert_eq!(
            v("Accept: application/vnd.acme.v1+json;q=0.5, application/vnd.acme.v2+json\r\n"),
            Ok(Some(1))
        );
        assert_eq!(
            v("Accept: text/html\r\nAccept: application/vnd.acme.v1+json\r\n"),
            Ok(Some(0))
        );
        assert_eq!(v("Accept: */*\r\n"), Err(Refusal::UnsupportedApiVersion));
        assert_eq!(v("Accept: application/*\r\n"), Err(Refusal::UnsupportedApiVersion));
        assert_eq!(
            v("Accept: application/vnd.acme.v3+json\r\n"),
            Err(Refusal::UnsupportedApiVersion)
        );
        assert_eq!(
            v("Accept: application/vnd.acme.v2+json;q=0\r\n"),
            Err(Refusal::UnsupportedApiVersion)
        );
        assert_eq!(
            v("Accept: application/vnd.acme.v2+json;q=2\r\n"),
            Err(Refusal::AcceptHeaderMalformed)
        );
        assert_eq!(v("Accept: nonsense\r\n"), Err(Refusal::AcceptHeaderMalformed));
        let open = Policy::default();
        assert_eq!(check(&open, "Accept: */*\r\n", "GET").map(|a| a.version), Ok(None));
        assert_eq!(check(&open, "", "GET"), Err(Refusal::AcceptHeaderMissing));
    }

    #[test]
    fn content_type_rule() {
        let p = Policy::default();
        let a = "Accept: application/json\r\n";
        let ct = |m: &str, f: &str| check(&p, &format!("{a}{f}"), m).map(|x| x.json_body);
        assert_eq!(ct("POST", "Content-Type: application/json\r\n"), Ok(true));
        assert_eq!(ct("PATCH", "Content-Type: application/merge-patch+json\r\n"), Ok(true));
        assert_eq!(
            ct("POST", "Content-Type: Application/Json; charset=utf-8\r\n"),
            Ok(true)
        );
        assert_eq!(ct("POST", ""), Err(Refusal::ContentTypeNotJson));
        assert_eq!(
            ct("POST", "Content-Type: text/plain\r\n"),
            Err(Refusal::ContentTypeNotJson)
        );
        assert_eq!(
            ct(
                "POST",
                "Content-Type: application/json\r\nContent-Type: application/json\r\n"
            ),
            Err(Refusal::ContentTypeNotJson)
        );
        assert_eq!(ct("PUT", ""), Ok(false));
        assert_eq!(ct("GET", "Content-Type: text/plain\r\n"), Ok(false));
    }

    #[test]
    fn bodiless_json_requests_have_nothing_to_check() {
        let mut p = Policy::default();
        let a = "Accept: */*\r\n";
        for framing in [
            "Content-Length: 0\r\n",
            "Content-Length: 0\r\nContent-Type: text/plain\r\n",
            "X-None: 1\r\n",
        ] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\n{a}{framing}\r\n");
            let mut st = header_storage();
            let head = parse_head(raw.as_bytes(), &Limits::default(), &mut st)
                .unwrap()
                .unwrap();
            let adm = check_head(&p, &head).unwrap();
            assert!(!adm.json_body && adm.deferred.is_none(), "{framing:?}");
            p.json_allow_empty = false;
            assert_eq!(
                check_head(&p, &head),
                Err(Refusal::ContentTypeNotJson),
                "strict: {framing:?}"
            );
            p.json_allow_empty = true;
        }
        // A chunked body may turn out empty: the refusal waits for it (unless the client waits for 100).
        let chunked = check(&p, "Accept: */*\r\nTransfer-Encoding: chunked\r\n", "POST").unwrap();
        assert_eq!(
            (chunked.deferred, chunked.json_body),
            (Some(Refusal::ContentTypeNotJson), true)
        );
        assert_eq!(
            check(
                &p,
                "Accept: */*\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n",
                "POST"
            ),
            Err(Refusal::ContentTypeNotJson)
        );
    }

    #[test]
    fn api_types() {
        assert_eq!(ApiType::parse("application/vnd.acme.v12+json").unwrap().version, "v12");
        assert!(ApiType::parse("application/json").is_err());
        assert!(ApiType::parse("application/vnd.acme.vx+json").is_err());
        assert!(ApiType::parse("application/vnd..v1+json").is_err());
    }

    #[test]
    fn modes_observe_and_off() {
        let mut p = policy();
        p.accept_mode = Mode::Observe;
        let a = check(&p, "Content-Type: text/plain\r\n", "POST").unwrap_err();
        assert_eq!(
            a,
            Refusal::ContentTypeNotJson,
            "an enforced rule still refuses after an observed one"
        );
        p.content_type_mode = Mode::Observe;
        let a = check(&p, "Content-Type: text/plain\r\n", "POST").unwrap();
        assert_eq!(
            (a.observed, a.version, a.json_body),
            (Some(Refusal::AcceptHeaderMissing), None, true)
        );
        p.accept_mode = Mode::Off;
        let a = check(&p, "Content-Type: text/plain\r\n", "POST").unwrap();
        assert_eq!(a.observed, Some(Refusal::ContentTypeNotJson));
        p.content_type_mode = Mode::Off;
        p.json_mode = Mode::Off;
        let a = check(&p, "", "POST").unwrap();
        assert_eq!((a.observed, a.json_body), (None, false));
        assert_eq!(Mode::parse("observe"), Ok(Mode::Observe));
        assert!(Mode::parse("audit").is_err());
    }
}
