//! The edge binary's request checks as a library: the same rules, the same rate limit and the same answers,
//! inside your own service.
//!
//! A [`Checker`] holds the policy (built once from [`Options`], named like the binary's flags), the
//! problem+json answers (rendered once) and, when the rate limit is on, the fixed-size rate-limit table. Share
//! it between threads (`Arc<Checker>`); give each thread or task its own [`Scratch`] (the checks' working
//! memory, reused from request to request).
//!
//! Per request:
//! 1. the head: from raw bytes ([`Checker::parse_head`], then [`Checker::check_head`]) or from the
//!    `http::request::Parts` your HTTP server already parsed ([`Checker::check_parts`], without parsing
//!    again): HTTP framing rules, then the rate limit, then Accept and Content-Type;
//! 2. the body, once it is complete ([`Checker::check_body`]): its size, Content-Type of a body of unknown
//!    length, then JSON (decoded first when it comes gzip- or deflate-coded);
//! 3. a refusal ([`Refusal`]) is answered with [`Checker::answer`] (HTTP/1.1 bytes, as the binary writes
//!    them) or [`Checker::response`] (an `http::Response`): the same status, problem+json body, `Retry-After`
//!    and `RateLimit` fields as the binary's; an admitted request may carry [`Checker::ratelimit_header`] on
//!    its response.
//!
//! Nothing here does I/O, reads a clock or draws randomness: the time is passed in (`now`, an `Instant`), and
//! so are the hash seed of the rate-limit table ([`Seed`]) and the peer's address. No thread, no async
//! runtime. The rate-limit table is allocated once ([`Options::rate_table_slots`]): memory stays flat
//! whatever the number of distinct users.
//!
//! ```
//! use std::time::Instant;
//! use portcullis::check::{Checker, Options, Seed};
//!
//! let checker = Checker::new(&Options::default(), Instant::now(), Seed([1, 2, 3, 4, 5, 6, 7, 8])).unwrap();
//! let mut scratch = checker.scratch();
//! let peer = "192.0.2.1".parse().unwrap();
//!
//! let raw = b"POST /orders HTTP/1.1\r\nHost: api\r\nAccept: application/json\r\n\
//!             Content-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"a\":1,";
//! let mut storage = portcullis::check::header_storage();
//! let head = checker.parse_head(raw, &mut storage).unwrap().expect("a complete head");
//! let mut verdict = checker.check_head(&mut scratch, &head, peer, Instant::now()).unwrap();
//! let refusal = checker.check_body(&mut scratch, &mut verdict, &raw[head.head_len..]).unwrap_err();
//! assert_eq!((refusal.status(), refusal.code()), (400, "malformed_json"));
//! let answer = String::from_utf8(checker.answer(&refusal)).unwrap();
//! assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\n"));
//! ```
#![deny(missing_docs)]

use core::net::IpAddr;
use std::time::Instant;

use crate::http::request::{check_authority, check_fields, check_target, Framing};
use crate::http::{Header, Limits, Method, Version};
use crate::problem::Conn;
use crate::proxy::decide::{Checks, Decision};
use crate::proxy::Rules;

pub use crate::guard::Mode;
pub use crate::http::request::{header_storage, HeaderStorage, RequestHead};
pub use crate::limit::{Decision as RateDecision, Gcra, KeyMode, Limiter, Seed};
pub use crate::problem::Reason;

mod options;
mod outcome;

pub use options::Options;
use outcome::TierRef;
pub use outcome::{Refusal, Verdict};

/// The checks, their answers and the rate-limit table: build one, share it (it is `Sync`).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Instant;
/// use portcullis::check::{Checker, Options, Seed};
///
/// let checker = Arc::new(Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap());
/// let other_thread = Arc::clone(&checker);
/// std::thread::spawn(move || drop(other_thread.scratch())).join().unwrap();
/// ```
pub struct Checker {
    rules: Rules,
    limiter: Option<Limiter>,
    limits: Limits,
}

/// The checks' working memory: one per thread or task, reused from request to request (it grows to the
/// largest request seen, then stays).
///
/// ```
/// # use std::time::Instant;
/// # use portcullis::check::{Checker, Options, Seed};
/// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
/// let mut scratch = checker.scratch();
/// # let _ = &mut scratch;
/// ```
pub struct Scratch {
    inner: crate::proxy::Scratch,
    /// The fields of a `Parts`, borrowed for one call (kept empty between calls, its allocation reused).
    fields: Vec<Header<'static>>,
}

impl Checker {
    /// Builds the checks of `options`. `epoch`: the instant the rate-limit table counts time from (any
    /// instant not later than the first `now` you will pass). `seed`: random keys for the table's hashes,
    /// drawn once per process from a random source (so that no one can compute which keys share a slot); the
    /// library draws no randomness of its own. `Err` says which option is wrong, as the binary would.
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// use std::hash::BuildHasher;
    /// use std::time::Instant;
    /// use portcullis::check::{Checker, Options, Seed};
    ///
    /// // A seed from the standard library's per-process random keys.
    /// let random = RandomState::new();
    /// let seed = Seed(std::array::from_fn(|i| random.hash_one(i)));
    /// let checker = Checker::new(&Options::default(), Instant::now(), seed).unwrap();
    /// # drop(checker);
    /// let bad = Options { user_key: "cookie".into(), ..Options::default() };
    /// assert!(Checker::new(&bad, Instant::now(), Seed([0; 8])).is_err());
    /// ```
    pub fn new(options: &Options, epoch: Instant, seed: Seed) -> Result<Checker, String> {
        options::build(options, epoch, seed)
    }

    /// The largest body accepted (`max_body`): buffer no more than this for [`Checker::check_body`].
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options { max_body: 4096, ..Options::default() }, Instant::now(), Seed([9; 8])).unwrap();
    /// assert_eq!(checker.max_body(), 4096);
    /// ```
    pub fn max_body(&self) -> u64 {
        self.limits.max_body
    }

    /// Fresh working memory for the checks (one per thread or task).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let scratch = checker.scratch();
    /// # drop(scratch);
    /// ```
    pub fn scratch(&self) -> Scratch {
        Scratch {
            inner: crate::proxy::Scratch::new(&self.rules),
            fields: Vec::new(),
        }
    }

    /// The rate limiter, when the limit is on (`rate` > 0): decide for keys of your own with
    /// [`Limiter::key_id`] and [`Limiter::decide`].
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, RateDecision, Seed};
    /// let now = Instant::now();
    /// let checker = Checker::new(&Options { rate: 1, burst: Some(1), ..Options::default() }, now, Seed([9; 8])).unwrap();
    /// let limiter = checker.limiter().unwrap();
    /// let id = limiter.key_id(b"tenant-42");
    /// assert!(matches!(limiter.decide(id, now), RateDecision::Allow { .. }));
    /// assert!(matches!(limiter.decide(id, now), RateDecision::Deny { .. }));
    /// ```
    pub fn limiter(&self) -> Option<&Limiter> {
        self.limiter.as_ref()
    }

    /// Parses a request head from raw bytes: `Ok(None)` while it is incomplete (and within `max_head`), the
    /// head (a view over `buf`, its framing decided) once complete, or the refusal of an invalid or ambiguous
    /// one. `storage` holds the fields (`header_storage()`, on your stack).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{header_storage, Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let mut storage = header_storage();
    /// assert!(checker.parse_head(b"GET / HTTP/1.1\r\nHost: a", &mut storage).unwrap().is_none());
    /// let mut storage = header_storage();
    /// let smuggle = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    /// let refusal = checker.parse_head(smuggle, &mut storage).unwrap_err();
    /// assert_eq!((refusal.status(), refusal.code()), (400, "ambiguous_framing"));
    /// ```
    pub fn parse_head<'h, 'b>(
        &self,
        buf: &'b [u8],
        storage: &'h mut HeaderStorage<'b>,
    ) -> Result<Option<RequestHead<'h, 'b>>, Refusal> {
        crate::http::request::parse_head(buf, &self.limits, storage).map_err(|r| {
            // The method is known only once the request line is whole.
            let head_request = buf.starts_with(b"HEAD ");
            Refusal::new(r.into(), head_request)
        })
    }

    /// The decision pipeline's view of these checks, at `now`, with `scratch`.
    fn checks<'a>(&'a self, scratch: &'a mut Scratch, now: Instant) -> Checks<'a> {
        Checks {
            rules: &self.rules,
            limiter: self.limiter.as_ref(),
            worker: 0,
            scratch: &mut scratch.inner,
            max_body: self.limits.max_body,
            now,
            // The library does not tunnel: a WebSocket handshake is checked as any GET (Accept included).
            tunnel: false,
        }
    }

    /// Checks a parsed head, at `now`, from a client at `peer` (the socket's peer address): the rate limit
    /// (the user's budget is spent only if the request is admitted), then Accept and Content-Type.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{header_storage, Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let mut storage = header_storage();
    /// let raw = b"PATCH /a HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n";
    /// let head = checker.parse_head(raw, &mut storage).unwrap().unwrap();
    /// let r = checker.check_head(&mut checker.scratch(), &head, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(r.unwrap_err().code(), "content_type_not_json");
    /// ```
    pub fn check_head(
        &self,
        scratch: &mut Scratch,
        head: &RequestHead<'_, '_>,
        peer: IpAddr,
        now: Instant,
    ) -> Result<Verdict, Refusal> {
        let head_request = head.method == Method::Head;
        let mut decision = Decision::default();
        let mut checks = self.checks(scratch, now);
        match decision.head(&mut checks, head, peer) {
            Ok(()) => Ok(Verdict {
                decision,
                now,
                head_request,
            }),
            Err(r) => Err(Refusal::from_decision(r, &decision, head_request)),
        }
    }

    /// Checks the head of a request your HTTP server parsed (`http::Request::into_parts`), without parsing
    /// it again: the same rules as [`Checker::parse_head`] and [`Checker::check_head`] over its method,
    /// target, version and fields. HTTP/2 and HTTP/3 requests are checked as HTTP/1.1 ones whose Host is the
    /// target's authority, and whose body is of unknown length unless they carry Content-Length.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/things")
    ///     .header("host", "api")
    ///     .header("accept", "application/json")
    ///     .header("authorization", "Basic !!")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let r = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(r.unwrap_err().code(), "malformed_authorization");
    /// ```
    pub fn check_parts(
        &self,
        scratch: &mut Scratch,
        parts: &http::request::Parts,
        peer: IpAddr,
        now: Instant,
    ) -> Result<Verdict, Refusal> {
        let head_request = parts.method == http::Method::HEAD;
        let refuse = |r: crate::http::Refusal| Refusal::new(r.into(), head_request);
        let method = Method::parse(parts.method.as_str().as_bytes())
            .ok_or_else(|| refuse(crate::http::Refusal::UnsupportedMethod))?;
        let (version, later) = match parts.version {
            http::Version::HTTP_10 => (Version::Http10, false),
            http::Version::HTTP_11 => (Version::Http11, false),
            http::Version::HTTP_09 => return Err(refuse(crate::http::Refusal::HttpVersionNotSupported)),
            _ => (Version::Http11, true),
        };
        if parts.headers.len() > self.limits.max_headers {
            return Err(refuse(crate::http::Refusal::HeaderTooLarge));
        }
        // The fields, borrowed from `parts` for this call, in a vector whose allocation is reused (collecting
        // an emptied vector into one of the same layout keeps its buffer).
        let mut fields: Vec<Header<'_>> = std::mem::take(&mut scratch.fields)
            .into_iter()
            .map(|_| unreachable!("kept empty"))
            .collect();
        fields.extend(parts.headers.iter().map(|(name, value)| Header {
            name: name.as_str(),
            value: value.as_bytes(),
        }));
        if later && !parts.headers.contains_key(http::header::HOST) {
            if let Some(a) = parts.uri.authority() {
                fields.push(Header {
                    name: "host",
                    value: a.as_str().as_bytes(),
                });
            }
        }
        let uri = &parts.uri;
        let target = |host: Option<&[u8]>| -> Result<&str, crate::http::Refusal> {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            match (uri.scheme_str(), uri.authority()) {
                (None, None) => check_target(method, path.as_bytes(), host).map(|()| path),
                (Some(scheme), Some(authority)) => {
                    let https = scheme.eq_ignore_ascii_case("https");
                    if !https && !scheme.eq_ignore_ascii_case("http") {
                        return Err(crate::http::Refusal::InvalidTarget);
                    }
                    check_authority(https, authority.as_str().as_bytes(), host).map(|()| path)
                }
                _ => Err(crate::http::Refusal::InvalidTarget),
            }
        };
        let result = match check_fields(method, version, &fields, 0, &self.limits, target) {
            Ok(mut head) => {
                // Without Content-Length, an HTTP/2 or HTTP/3 request may still have a body.
                if later && head.framing == Framing::None && !matches!(method, Method::Get | Method::Head) {
                    head.framing = Framing::Chunked;
                }
                self.check_head(scratch, &head, peer, now)
            }
            Err(r) => Err(refuse(r)),
        };
        fields.clear();
        scratch.fields = fields.into_iter().map(|_| unreachable!("cleared")).collect();
        result
    }

    /// Checks the complete body (de-chunked, as received: a coded body is decoded here to be validated) of a
    /// request whose head passed: its size (`max_body`), then, for a JSON method, Content-Type (of a body whose
    /// length was not announced) and JSON. The JSON check needs the whole body: buffer it up to `max_body`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let mut scratch = checker.scratch();
    /// let (parts, ()) = http::Request::post("/orders")
    ///     .header("host", "api")
    ///     .header("accept", "application/json")
    ///     .header("content-type", "application/json")
    ///     .header("content-length", "7")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let peer = "192.0.2.1".parse().unwrap();
    /// let mut verdict = checker.check_parts(&mut scratch, &parts, peer, Instant::now()).unwrap();
    /// assert!(checker.check_body(&mut scratch, &mut verdict, br#"{"a":1}"#).is_ok());
    /// let refusal = checker.check_body(&mut scratch, &mut verdict, br#"{"a":}"#).unwrap_err();
    /// assert_eq!(refusal.code(), "malformed_json");
    /// ```
    pub fn check_body(&self, scratch: &mut Scratch, verdict: &mut Verdict, body: &[u8]) -> Result<(), Refusal> {
        if body.len() as u64 > self.limits.max_body {
            return Err(Refusal::new(Reason::BodyTooLarge, verdict.head_request));
        }
        let mut checks = self.checks(scratch, verdict.now);
        verdict
            .decision
            .body(&mut checks, body)
            .map_err(|r| Refusal::from_decision(r, &verdict.decision, verdict.head_request))
    }

    /// Writes the answer to `refusal` as the binary does, into `out`: the HTTP/1.1 status line, the
    /// problem+json body (none for a HEAD request), and the fields `Content-Type`, `Content-Length`,
    /// `Cache-Control`, `Connection: close` for a refusal that closes, and for a 429 `Retry-After`,
    /// `RateLimit-Policy` and `RateLimit`. No `Date`: your server adds its own.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let mut storage = portcullis::check::header_storage();
    /// let refusal = checker.parse_head(b"GET / HTTP/1.1\r\n\r\n", &mut storage).unwrap_err();
    /// let mut out = Vec::new();
    /// checker.write_answer(&refusal, &mut out);
    /// let text = String::from_utf8(out).unwrap();
    /// assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n") && text.contains("\r\nConnection: close\r\n"));
    /// assert!(text.ends_with("\"reason\":\"invalid_host\"}\n"));
    /// ```
    pub fn write_answer(&self, refusal: &Refusal, out: &mut Vec<u8>) {
        let rules = &self.rules;
        let tier = match refusal.tier {
            Some(TierRef::User(i)) => rules.tiers.as_ref().and_then(|t| t.tiers.get(i as usize)),
            Some(TierRef::Ip) => rules.ip_tier.as_ref(),
            None => None,
        };
        let secs = refusal.retry_secs;
        let fields = |o: &mut Vec<u8>| {
            if let Some(tier) = tier {
                o.extend_from_slice(b"Retry-After: ");
                crate::buf::put_u64(o, secs);
                o.extend_from_slice(b"\r\n");
                o.extend_from_slice(&tier.policy_field);
                o.extend_from_slice(b"RateLimit: ");
                o.extend_from_slice(&tier.quoted);
                o.extend_from_slice(b";r=0;t=");
                crate::buf::put_u64(o, secs);
                o.extend_from_slice(b"\r\n");
            }
        };
        let conn = if refusal.closes() { Conn::Close } else { Conn::Keep };
        let body = !refusal.head_request;
        match (refusal.reason, refusal.json_error) {
            (Reason::MalformedJson, Some((at, expected))) => rules
                .catalogue
                .write_malformed_json(out, conn, body, at as u64, expected, None, fields),
            _ => rules
                .catalogue
                .write_with(out, refusal.reason, conn, body, None, fields),
        }
    }

    /// The answer to `refusal` as HTTP/1.1 bytes (see [`Checker::write_answer`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let mut storage = portcullis::check::header_storage();
    /// let refusal = checker.parse_head(b"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", &mut storage).unwrap_err();
    /// assert!(checker.answer(&refusal).starts_with(b"HTTP/1.1 501 Not Implemented\r\n"));
    /// ```
    pub fn answer(&self, refusal: &Refusal) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_answer(refusal, &mut out);
        out
    }

    /// The answer to `refusal` as an `http::Response`: the same status, fields and body as
    /// [`Checker::answer`], less `Connection` (your server manages its connections: close it after a
    /// refusal that [`Refusal::closes`]).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/").header("host", "api").body(()).unwrap().into_parts();
    /// let r = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// let response = checker.response(&r.unwrap_err());
    /// assert_eq!(response.status(), 406);
    /// assert_eq!(response.headers()["content-type"], "application/problem+json");
    /// assert!(response.body().starts_with(b"{\"type\":\"about:blank\""));
    /// ```
    pub fn response(&self, refusal: &Refusal) -> http::Response<Vec<u8>> {
        let bytes = self.answer(refusal);
        let mut fields = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut fields);
        let head_len = match parsed.parse(&bytes) {
            Ok(httparse::Status::Complete(n)) => n,
            // The catalogue's answers are complete, valid heads (tested): unreachable.
            _ => bytes.len(),
        };
        let mut response = http::Response::new(bytes[head_len..].to_vec());
        *response.status_mut() = http::StatusCode::from_u16(refusal.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
        for f in parsed
            .headers
            .iter()
            .filter(|f| !f.name.eq_ignore_ascii_case("connection"))
        {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(f.name.as_bytes()),
                http::HeaderValue::from_bytes(f.value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }

    /// The `RateLimit` field an admitted request's response carries (`"<tier>";r=<remaining>;t=<seconds>`),
    /// with `ratelimit_headers` on, as the binary adds it to the upstream's response.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let options = Options { rate: 5, burst: Some(3), ratelimit_headers: true, ..Options::default() };
    /// let checker = Checker::new(&options, Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("host", "api")
    ///     .header("accept", "*/*")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let v = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// let (name, value) = checker.ratelimit_header(&v.unwrap()).unwrap();
    /// assert_eq!((name, value.as_str()), ("RateLimit", "\"default\";r=2;t=1"));
    /// ```
    pub fn ratelimit_header(&self, verdict: &Verdict) -> Option<(&'static str, String)> {
        let rules = &self.rules;
        match (rules.ratelimit_headers, verdict.decision.quota, &rules.tiers) {
            (true, Some((remaining, secs)), Some(tiers)) => tiers.tiers.get(verdict.decision.tier as usize).map(|t| {
                (
                    "RateLimit",
                    format!("{};r={remaining};t={secs}", String::from_utf8_lossy(&t.quoted)),
                )
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
