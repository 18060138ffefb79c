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
use crate::limit::tiers::{self, Tier, Tiers};
use crate::problem::{Catalogue, Conn};
use crate::proxy::decide::{Checks, Decision};
use crate::proxy::Rules;

pub use crate::guard::Mode;
pub use crate::http::request::{header_storage, HeaderStorage, RequestHead};
pub use crate::limit::{Decision as RateDecision, Gcra, KeyMode, Limiter, Seed};
pub use crate::problem::Reason;

/// The checks' settings, named and defaulted like the binary's flags (`--accept` is `accept`,
/// `--json-methods` is `json_methods`, ...; see `docs/configuration.md`).
///
/// ```
/// use portcullis::check::{Mode, Options};
///
/// let options = Options {
///     accept: vec!["application/vnd.acme.v1+json".into()],
///     rate: 100,
///     burst: Some(200),
///     user_key: "header:x-api-key".into(),
///     json_rule: Mode::Observe,
///     ..Options::default()
/// };
/// assert_eq!(options.json_methods, ["POST", "PATCH"]);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// `--accept`: the API media types served (`application/vnd.<vendor>.v<N>+json`); empty: any
    /// well-formed Accept is usable.
    pub accept: Vec<String>,
    /// `--accept-rule`.
    pub accept_rule: Mode,
    /// `--content-type-rule`.
    pub content_type_rule: Mode,
    /// `--json-rule`.
    pub json_rule: Mode,
    /// `--rate-rule`.
    pub rate_rule: Mode,
    /// `--version-header`: the field that would carry the matched API version upstream.
    pub version_header: String,
    /// `--json-methods`: methods whose body must be JSON.
    pub json_methods: Vec<String>,
    /// `--json-allow-empty`: a JSON method's request without a body passes the Content-Type and JSON rules.
    pub json_allow_empty: bool,
    /// `--json-decode`: content codings a JSON body may come in (`gzip`, `deflate`).
    pub json_decode: Vec<String>,
    /// `--max-decode-ratio`.
    pub max_decode_ratio: u32,
    /// `--max-json-depth`.
    pub max_json_depth: usize,
    /// `--max-head` (raw heads only: a parsed `Parts` has no size left to check).
    pub max_head: usize,
    /// `--max-headers`.
    pub max_headers: usize,
    /// `--max-body`: the largest body, decoded or not.
    pub max_body: u64,
    /// `--rate`: requests per second per user; 0 turns the limit off.
    pub rate: u32,
    /// `--burst` (default: `rate`).
    pub burst: Option<u32>,
    /// `--user-key`: `authorization`, `ip`, or `header:NAME`.
    pub user_key: String,
    /// `--trust-forwarded-for`: take the client's address from the N-th last X-Forwarded-For hop.
    pub trust_forwarded_for: usize,
    /// `--ip-rate` (default: 10 x `rate`; 0: no per-address backstop).
    pub ip_rate: Option<u32>,
    /// `--ip-burst` (default: 10 x the burst).
    pub ip_burst: Option<u32>,
    /// `--ip-rate-exempt`: address blocks the per-address backstop does not apply to.
    pub ip_rate_exempt: Vec<String>,
    /// `--ratelimit-headers`: admitted requests' responses carry the `RateLimit` field.
    pub ratelimit_headers: bool,
    /// `--rate-table-slots`: the fixed size of the rate-limit table (8 bytes a slot).
    pub rate_table_slots: usize,
    /// The contents of a `--limits` file (tiers), not its path: the library reads no file.
    pub limits: Option<String>,
    /// `--docs-url`: each answer's `type` is this URL plus `#reason`.
    pub docs_url: Option<String>,
    /// `--contact`: where to ask for a higher rate, named in the 429 answers.
    pub contact: Option<String>,
}

impl Default for Options {
    /// The binary's defaults.
    ///
    /// ```
    /// let o = portcullis::check::Options::default();
    /// assert_eq!((o.rate, o.max_body, o.user_key.as_str()), (10, 1 << 20, "authorization"));
    /// ```
    fn default() -> Options {
        Options {
            accept: Vec::new(),
            accept_rule: Mode::Enforce,
            content_type_rule: Mode::Enforce,
            json_rule: Mode::Enforce,
            rate_rule: Mode::Enforce,
            version_header: "X-Api-Version".into(),
            json_methods: vec!["POST".into(), "PATCH".into()],
            json_allow_empty: true,
            json_decode: vec!["gzip".into(), "deflate".into()],
            max_decode_ratio: 100,
            max_json_depth: 1024,
            max_head: 16 * 1024,
            max_headers: 100,
            max_body: 1024 * 1024,
            rate: 10,
            burst: None,
            user_key: "authorization".into(),
            trust_forwarded_for: 0,
            ip_rate: None,
            ip_burst: None,
            ip_rate_exempt: Vec::new(),
            ratelimit_headers: false,
            rate_table_slots: 1 << 20,
            limits: None,
            docs_url: None,
            contact: None,
        }
    }
}

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

/// A head that passed the checks: what they decided, for the body check and the response.
///
/// ```
/// # use std::time::Instant;
/// # use portcullis::check::{Checker, Options, Seed};
/// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
/// let mut storage = portcullis::check::header_storage();
/// let raw = b"GET /things HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n";
/// let head = checker.parse_head(raw, &mut storage).unwrap().unwrap();
/// let verdict = checker
///     .check_head(&mut checker.scratch(), &head, "192.0.2.1".parse().unwrap(), Instant::now())
///     .unwrap();
/// assert!(!verdict.json_body());
/// assert_eq!(verdict.quota(), Some((9, 1)));
/// ```
#[derive(Debug, Clone)]
pub struct Verdict {
    decision: Decision,
    now: Instant,
    head_request: bool,
}

impl Verdict {
    /// The body must be valid JSON: call [`Checker::check_body`] with it (for other requests, calling it is
    /// harmless).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// # let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::post("/orders")
    ///     .header("host", "api")
    ///     .header("accept", "application/json")
    ///     .header("content-type", "application/json")
    ///     .header("content-length", "2")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let peer = "192.0.2.1".parse().unwrap();
    /// let verdict = checker.check_parts(&mut checker.scratch(), &parts, peer, Instant::now()).unwrap();
    /// assert!(verdict.json_body());
    /// ```
    pub fn json_body(&self) -> bool {
        self.decision.json || self.decision.deferred.is_some()
    }

    /// The index in [`Options::accept`] of the API version the Accept header asked for.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let options = Options {
    ///     accept: vec!["application/vnd.acme.v1+json".into(), "application/vnd.acme.v2+json".into()],
    ///     ..Options::default()
    /// };
    /// let checker = Checker::new(&options, Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("host", "api")
    ///     .header("accept", "application/vnd.acme.v2+json")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let v = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(v.unwrap().api_version(), Some(1));
    /// ```
    pub fn api_version(&self) -> Option<usize> {
        self.decision.api_version
    }

    /// The first refusal a rule in `observe` mode would have given (the request goes on).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Mode, Options, Reason, Seed};
    /// let options = Options { accept_rule: Mode::Observe, ..Options::default() };
    /// let checker = Checker::new(&options, Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/").header("host", "api").body(()).unwrap().into_parts();
    /// let v = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(v.unwrap().observed(), Some(Reason::AcceptHeaderMissing));
    /// ```
    pub fn observed(&self) -> Option<Reason> {
        self.decision.observed
    }

    /// With the rate limit on: the user's remaining requests right now and the seconds until the quota is
    /// full again, after this request.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let options = Options { rate: 5, burst: Some(3), ..Options::default() };
    /// let checker = Checker::new(&options, Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("host", "api")
    ///     .header("accept", "*/*")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let v = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(v.unwrap().quota(), Some((2, 1)));
    /// ```
    pub fn quota(&self) -> Option<(u32, u64)> {
        self.decision.quota
    }

    /// With the rate limit on: the user's id in the rate-limit table (what the binary's access log shows).
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("host", "api")
    ///     .header("accept", "*/*")
    ///     .header("authorization", "Bearer alice")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let v = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// let id = checker.limiter().unwrap().key_id(b"Bearer alice");
    /// assert_eq!(v.unwrap().user(), Some(id));
    /// ```
    pub fn user(&self) -> Option<u64> {
        self.decision.user
    }
}

/// Which tier's fields a 429 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TierRef {
    User(u8),
    Ip,
}

/// Why a request is refused: answer it with [`Checker::answer`] or [`Checker::response`].
///
/// ```
/// # use std::time::Instant;
/// # use portcullis::check::{Checker, Options, Reason, Seed};
/// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
/// let (parts, ()) = http::Request::get("/").header("host", "api").body(()).unwrap().into_parts();
/// let peer = "192.0.2.1".parse().unwrap();
/// let refusal = checker.check_parts(&mut checker.scratch(), &parts, peer, Instant::now()).unwrap_err();
/// assert_eq!(refusal.reason(), Reason::AcceptHeaderMissing);
/// assert_eq!((refusal.status(), refusal.code()), (406, "accept_header_missing"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    reason: Reason,
    retry_secs: u64,
    tier: Option<TierRef>,
    json_error: Option<(u32, &'static str)>,
    head_request: bool,
}

impl Refusal {
    fn new(reason: Reason, head_request: bool) -> Refusal {
        Refusal {
            reason,
            retry_secs: 0,
            tier: None,
            json_error: None,
            head_request,
        }
    }

    fn from_decision(reason: Reason, d: &Decision, head_request: bool) -> Refusal {
        Refusal {
            reason,
            retry_secs: d.retry_secs,
            tier: match reason {
                Reason::RateLimited => Some(TierRef::User(d.tier)),
                Reason::IpRateLimited => Some(TierRef::Ip),
                _ => None,
            },
            json_error: d.json_error.filter(|_| reason == Reason::MalformedJson),
            head_request,
        }
    }

    /// A refusal your server decides itself, answered like the checks' own (for example `BodyTooLarge` for a
    /// body that streams past `max_body` without having announced its length).
    ///
    /// ```
    /// use portcullis::check::{Reason, Refusal};
    /// let r = Refusal::of(Reason::BodyTooLarge);
    /// assert_eq!((r.status(), r.code(), r.retry_after()), (413, "body_too_large", None));
    /// ```
    pub fn of(reason: Reason) -> Refusal {
        Refusal::new(reason, false)
    }

    /// The wire reason (its stable code is the answer's `reason` field).
    ///
    /// ```
    /// use portcullis::check::Reason;
    /// assert_eq!(Reason::RateLimited.code(), "rate_limited");
    /// ```
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The answer's status code.
    ///
    /// ```
    /// use portcullis::check::Reason;
    /// assert_eq!(Reason::ContentTypeNotJson.status(), 415);
    /// ```
    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The answer's `reason` field (`rate_limited`, `malformed_json`, ...).
    ///
    /// ```
    /// use portcullis::check::Reason;
    /// assert_eq!(Reason::MalformedJson.code(), "malformed_json");
    /// ```
    pub fn code(&self) -> &'static str {
        self.reason.code()
    }

    /// Seconds to wait (the answer's `Retry-After`), for a rate-limit refusal.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options { rate: 1, burst: Some(1), ..Options::default() }, Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("host", "api")
    ///     .header("accept", "*/*")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let (mut scratch, peer, now) = (checker.scratch(), "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert!(checker.check_parts(&mut scratch, &parts, peer, now).is_ok());
    /// let refusal = checker.check_parts(&mut scratch, &parts, peer, now).unwrap_err();
    /// assert_eq!(refusal.retry_after(), Some(1));
    /// ```
    pub fn retry_after(&self) -> Option<u64> {
        self.tier.map(|_| self.retry_secs)
    }

    /// The binary closes the connection after this refusal (a framing refusal: where the next request
    /// starts is unknown). A server embedding the checks should do the same.
    ///
    /// ```
    /// use portcullis::check::Reason;
    /// assert!(Reason::AmbiguousFraming.closes() && !Reason::MalformedJson.closes());
    /// ```
    pub fn closes(&self) -> bool {
        self.reason.closes()
    }
}

impl std::fmt::Display for Refusal {
    /// The status and reason, e.g. `429 rate_limited`.
    ///
    /// ```
    /// # use std::time::Instant;
    /// # use portcullis::check::{Checker, Options, Seed};
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([9; 8])).unwrap();
    /// let (parts, ()) = http::Request::get("/").header("host", "api").body(()).unwrap().into_parts();
    /// let r = checker.check_parts(&mut checker.scratch(), &parts, "192.0.2.1".parse().unwrap(), Instant::now());
    /// assert_eq!(r.unwrap_err().to_string(), "406 accept_header_missing");
    /// ```
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.code())
    }
}

impl std::error::Error for Refusal {}

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
        let o = options;
        let accept = o
            .accept
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| crate::guard::ApiType::parse(t).map_err(|e| format!("accept: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if accept.len() > crate::guard::MAX_API_TYPES {
            return Err(format!("accept: at most {} types", crate::guard::MAX_API_TYPES));
        }
        if o.version_header.is_empty() || !o.version_header.bytes().all(crate::http::is_tchar) {
            return Err(format!(
                "version_header {:?}: must be a header field name",
                o.version_header
            ));
        }
        let methods: Vec<String> = o.json_methods.iter().map(|m| m.trim().to_ascii_uppercase()).collect();
        if let Some(m) = methods
            .iter()
            .find(|m| !crate::http::request::ALLOWED_METHODS.contains(&m.as_str()))
        {
            return Err(format!(
                "json_methods: {m:?} is not one of {:?}",
                crate::http::request::ALLOWED_METHODS
            ));
        }
        let mut json_decode = 0;
        for c in o.json_decode.iter().map(|c| c.trim()).filter(|c| !c.is_empty()) {
            json_decode |= crate::guard::Coding::parse(c.as_bytes())
                .ok_or_else(|| format!("json_decode {c:?}: use gzip and/or deflate"))?
                .bit();
        }
        if !(1..=10_000).contains(&o.max_decode_ratio) {
            return Err(format!(
                "max_decode_ratio {}: must be between 1 and 10000",
                o.max_decode_ratio
            ));
        }
        if !(1..=100_000).contains(&o.max_json_depth) {
            return Err(format!(
                "max_json_depth {}: must be between 1 and 100000",
                o.max_json_depth
            ));
        }
        if !(1..=crate::http::MAX_HEADERS_LIMIT).contains(&o.max_headers) {
            return Err(format!(
                "max_headers {}: must be between 1 and {}",
                o.max_headers,
                crate::http::MAX_HEADERS_LIMIT
            ));
        }
        let policy = crate::guard::Policy {
            accept_mode: o.accept_rule,
            content_type_mode: o.content_type_rule,
            json_mode: o.json_rule,
            accept,
            version_header: o.version_header.clone(),
            json_methods: crate::guard::Policy::method_mask(&methods),
            max_json_depth: o.max_json_depth,
            json_allow_empty: o.json_allow_empty,
            json_decode,
            max_decode_ratio: o.max_decode_ratio,
        };
        let (limiter, tiers, ip_tier) = if o.rate == 0 {
            (None, None, None)
        } else {
            if o.rate > 1_000_000 {
                return Err(format!("rate {}: must be between 0 (off) and 1000000", o.rate));
            }
            let burst = o.burst.unwrap_or(o.rate);
            if burst == 0 || burst as u64 > o.rate as u64 * 3600 {
                return Err(format!(
                    "burst {burst}: must be between 1 and an hour of requests at rate"
                ));
            }
            if !(8..=1 << 30).contains(&o.rate_table_slots) {
                return Err(format!(
                    "rate_table_slots {}: must be between 8 and 2^30",
                    o.rate_table_slots
                ));
            }
            if o.trust_forwarded_for > 64 {
                return Err(format!(
                    "trust_forwarded_for {}: must be between 0 and 64",
                    o.trust_forwarded_for
                ));
            }
            let key = KeyMode::parse(&o.user_key).map_err(|e| format!("user_key {e}"))?;
            let ip_rate = o.ip_rate.unwrap_or(o.rate.saturating_mul(10).min(10_000_000));
            if ip_rate > 10_000_000 {
                return Err(format!("ip_rate {ip_rate}: must be between 0 (off) and 10000000"));
            }
            let ip_burst = o.ip_burst.unwrap_or(burst.saturating_mul(10));
            if ip_rate > 0 && (ip_burst == 0 || ip_burst as u64 > ip_rate as u64 * 3600) {
                return Err(format!(
                    "ip_burst {ip_burst}: must be between 1 and an hour of requests at ip_rate"
                ));
            }
            let exempt = o
                .ip_rate_exempt
                .iter()
                .filter(|c| !c.trim().is_empty())
                .map(|c| crate::limit::Cidr::parse(c).map_err(|e| format!("ip_rate_exempt {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let backstop = (ip_rate > 0 && key != KeyMode::Ip).then(|| crate::limit::IpBackstop {
                rate: ip_rate,
                burst: ip_burst,
                gcra: Gcra::new(ip_rate, ip_burst),
                exempt,
            });
            let ip_tier = backstop.as_ref().map(|b| Tier::new("ip", b.rate, b.burst));
            let limiter = Limiter::new(
                Gcra::new(o.rate, burst),
                o.rate_table_slots,
                key,
                o.trust_forwarded_for,
                epoch,
                seed,
            )
            .with_ip_backstop(backstop);
            let default = Tier::new("default", o.rate, burst);
            let tiers = match &o.limits {
                Some(text) => {
                    let specs = tiers::parse(text).map_err(|e| format!("limits: {e}"))?;
                    Tiers::build(default, &specs, |v| limiter.value_hash(v)).map_err(|e| format!("limits: {e}"))?
                }
                None => Tiers::single(default),
            };
            (Some(limiter), Some(tiers), ip_tier)
        };
        let encodings = [
            (crate::guard::Coding::Gzip, "gzip, "),
            (crate::guard::Coding::Deflate, "deflate, "),
        ]
        .iter()
        .filter(|(c, _)| json_decode & c.bit() != 0)
        .map(|(_, n)| *n)
        .chain(["identity"])
        .collect::<String>();
        let catalogue = Catalogue::new(&crate::problem::Settings {
            docs_url: o.docs_url.as_deref(),
            accepted: &policy.accept.iter().map(|t| t.media.clone()).collect::<Vec<_>>(),
            encodings: &encodings,
            max_body: o.max_body,
            max_json_depth: o.max_json_depth,
            contact: o.contact.as_deref(),
        });
        Ok(Checker {
            rules: Rules {
                policy,
                catalogue,
                rate_mode: if o.rate == 0 { Mode::Off } else { o.rate_rule },
                tiers,
                ip_tier,
                ratelimit_headers: o.ratelimit_headers,
                observe_header: None,
                request_id: None,
            },
            limiter,
            limits: Limits {
                max_head: o.max_head,
                max_headers: o.max_headers,
                max_body: o.max_body,
            },
        })
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
        let mut checks = Checks {
            rules: &self.rules,
            limiter: self.limiter.as_ref(),
            worker: 0,
            scratch: &mut scratch.inner,
            max_body: self.limits.max_body,
            now,
        };
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
        let mut checks = Checks {
            rules: &self.rules,
            limiter: self.limiter.as_ref(),
            worker: 0,
            scratch: &mut scratch.inner,
            max_body: self.limits.max_body,
            now: verdict.now,
        };
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
mod tests {
    use super::*;

    fn checker(o: Options) -> Checker {
        Checker::new(&o, Instant::now(), Seed([1, 2, 3, 4, 5, 6, 7, 8])).unwrap()
    }

    /// The same request, as raw bytes and as `Parts`, gets the same decision.
    #[test]
    fn raw_and_parts_agree() {
        let c = checker(Options {
            accept: vec!["application/vnd.a.v1+json".into()],
            rate: 0,
            ..Options::default()
        });
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let cases: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v2+json\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v1+json\r\n\r\n",
            b"GET http://b/x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            b"GET http://a:80/x HTTP/1.1\r\nHost: a\r\nAccept: application/vnd.a.v1+json\r\n\r\n",
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.0\r\nAccept: */*\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: nothing\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        ];
        for raw in cases {
            let mut storage = header_storage();
            let from_raw = c
                .parse_head(raw, &mut storage)
                .map(Option::unwrap)
                .and_then(|h| c.check_head(&mut c.scratch(), &h, peer, now))
                .map(|v| v.api_version());
            // The same request through `http`'s types.
            let mut fields = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut fields);
            req.parse(raw).unwrap();
            let mut b = http::Request::builder()
                .method(req.method.unwrap())
                .uri(req.path.unwrap())
                .version(if req.version == Some(0) {
                    http::Version::HTTP_10
                } else {
                    http::Version::HTTP_11
                });
            for f in req.headers.iter() {
                b = b.header(f.name, f.value);
            }
            let (parts, ()) = b.body(()).unwrap().into_parts();
            let from_parts = c
                .check_parts(&mut c.scratch(), &parts, peer, now)
                .map(|v| v.api_version());
            assert_eq!(
                from_raw.map_err(|r| r.code()),
                from_parts.map_err(|r| r.code()),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn parts_fields_reuse_their_allocation() {
        let c = checker(Options::default());
        let mut s = c.scratch();
        let (parts, ()) = http::Request::get("/")
            .header("host", "a")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts();
        c.check_parts(&mut s, &parts, "192.0.2.1".parse().unwrap(), Instant::now())
            .unwrap();
        let cap = s.fields.capacity();
        assert!(cap >= 2 && s.fields.is_empty());
        let at = s.fields.as_ptr();
        c.check_parts(&mut s, &parts, "192.0.2.1".parse().unwrap(), Instant::now())
            .unwrap();
        assert_eq!((s.fields.capacity(), s.fields.as_ptr()), (cap, at));
    }

    #[test]
    fn http2_requests_take_host_from_the_authority() {
        let c = checker(Options::default());
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let req = |method: &str, ct: Option<&str>| {
            let mut b = http::Request::builder()
                .method(method)
                .uri("https://api.example/orders")
                .version(http::Version::HTTP_2)
                .header("accept", "*/*");
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            b.body(()).unwrap().into_parts().0
        };
        let mut s = c.scratch();
        assert!(c.check_parts(&mut s, &req("GET", None), peer, Instant::now()).is_ok());
        // A POST without Content-Length may have a body: its Content-Type is checked once the body is known.
        let mut v = c
            .check_parts(&mut s, &req("POST", Some("text/plain")), peer, Instant::now())
            .unwrap();
        assert!(v.json_body());
        assert!(c.check_body(&mut s, &mut v, b"").is_ok());
        assert_eq!(
            c.check_body(&mut s, &mut v, b"{}").unwrap_err().code(),
            "content_type_not_json"
        );
    }

    #[test]
    fn answers_parse_into_responses() {
        let c = checker(Options {
            rate: 1,
            burst: Some(1),
            docs_url: Some("https://d.example/e".into()),
            ..Options::default()
        });
        let (parts, ()) = http::Request::get("/")
            .header("host", "a")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts();
        let (mut s, peer, now) = (c.scratch(), "192.0.2.1".parse().unwrap(), Instant::now());
        c.check_parts(&mut s, &parts, peer, now).unwrap();
        let r = c.check_parts(&mut s, &parts, peer, now).unwrap_err();
        let resp = c.response(&r);
        assert_eq!(resp.status(), 429);
        let h = resp.headers();
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-policy"], "\"default\";q=1;w=1");
        assert_eq!(h["ratelimit"], "\"default\";r=0;t=1");
        assert_eq!(h["content-length"], resp.body().len().to_string().as_str());
        let v: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(v["type"], "https://d.example/e#rate_limited");
        // A HEAD request's answer has no body.
        let head = http::Request::head("/")
            .header("host", "a")
            .header("accept", "*/*")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let r = c.check_parts(&mut s, &head, peer, now).unwrap_err();
        let bytes = c.answer(&r);
        assert!(bytes.ends_with(b"\r\n\r\n"), "{}", String::from_utf8_lossy(&bytes));
    }
}
