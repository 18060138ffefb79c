//! What the checks decided: a [`Verdict`] for a request that goes on, a [`Refusal`] for one to answer.

use std::time::Instant;

use crate::proxy::decide::Decision;

use super::Reason;

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
    pub(super) decision: Decision,
    pub(super) now: Instant,
    pub(super) head_request: bool,
}

impl Verdict {
    /// The body must be valid JSON: call [`Checker::check_body`](super::Checker::check_body) with it (for
    /// other requests, calling it is harmless).
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

    /// The index in [`Options::accept`](super::Options::accept) of the API version the Accept header asked for.
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
pub(super) enum TierRef {
    User(u8),
    Ip,
}

/// Why a request is refused: answer it with [`Checker::answer`](super::Checker::answer) or
/// [`Checker::response`](super::Checker::response).
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
    pub(super) reason: Reason,
    pub(super) retry_secs: u64,
    pub(super) tier: Option<TierRef>,
    pub(super) json_error: Option<(u32, &'static str)>,
    pub(super) head_request: bool,
}

impl Refusal {
    pub(super) fn new(reason: Reason, head_request: bool) -> Refusal {
        Refusal {
            reason,
            retry_secs: 0,
            tier: None,
            json_error: None,
            head_request,
        }
    }

    pub(super) fn from_decision(reason: Reason, d: &Decision, head_request: bool) -> Refusal {
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
