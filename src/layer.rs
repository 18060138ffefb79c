//! A `tower` layer that runs the edge binary's checks in front of any `Service<http::Request<B>>` (an axum
//! router, a hyper service): with the `tower` feature.
//!
//! For each request, [`Checked`] checks the head ([`Checker::check_parts`]: framing and field rules, the rate
//! limit, Accept, Content-Type), buffers the body of the JSON methods up to `max_body` and validates it
//! ([`Checker::check_body`]), and answers refusals itself with the binary's problem+json, `Retry-After` and
//! `RateLimit` fields; everything else goes on to the inner service, with the `RateLimit` field added to its
//! response when `ratelimit_headers` is on. Who the user is follows `user_key` (`authorization`: the
//! canonical credential; `header:NAME`; `ip`); the client's address comes from [`CheckLayer::peer_from`]
//! (with axum, from `ConnectInfo`).
//!
//! Bodies that are not checked as JSON are passed on as they stream, unbuffered: only a Content-Length over
//! `max_body` is refused for them (limit the rest with your server's own body limit).
//!
//! ```
//! use portcullis::check::Options;
//! use portcullis::layer::CheckLayer;
//!
//! let layer = CheckLayer::new(&Options { rate: 100, ..Options::default() })
//!     .unwrap()
//!     .peer_from(|parts| parts.extensions.get::<std::net::SocketAddr>().map(|a| a.ip()));
//! // axum: Router::new().route(...).layer(layer)
//! # drop(layer);
//! ```

use core::net::{IpAddr, Ipv4Addr};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::check::{Checker, Options, Reason, Refusal, Scratch, Seed};

/// How the layer finds the client's address in a request.
type PeerFn = dyn Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync;

struct Shared {
    checker: Checker,
    /// Working memory, one per request in flight at most (taken and given back; grows to the concurrency).
    scratch: Mutex<Vec<Scratch>>,
    peer: Box<PeerFn>,
}

impl Shared {
    fn take(&self) -> Scratch {
        let popped = self.scratch.lock().unwrap_or_else(|e| e.into_inner()).pop();
        popped.unwrap_or_else(|| self.checker.scratch())
    }

    fn give(&self, s: Scratch) {
        self.scratch.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

/// The layer: checks in front of a service. Cheap to clone (the checks and the rate-limit table are shared:
/// every service it wraps counts against the same users' budgets).
///
/// ```
/// use portcullis::check::Options;
/// use portcullis::layer::CheckLayer;
///
/// let options = Options { accept: vec!["application/vnd.acme.v1+json".into()], ..Options::default() };
/// let layer = CheckLayer::new(&options).unwrap();
/// # drop(layer);
/// ```
#[derive(Clone)]
pub struct CheckLayer {
    shared: Arc<Shared>,
}

impl CheckLayer {
    /// The checks of `options` (named like the binary's flags), with the rate-limit table's hash keys drawn
    /// from the process's random source and its epoch now. `Err` names the option that is wrong.
    ///
    /// ```
    /// use portcullis::check::Options;
    /// use portcullis::layer::CheckLayer;
    ///
    /// assert!(CheckLayer::new(&Options { json_methods: vec!["BREW".into()], ..Options::default() }).is_err());
    /// ```
    pub fn new(options: &Options) -> Result<CheckLayer, String> {
        let random = RandomState::new();
        let seed = Seed(std::array::from_fn(|i| random.hash_one(i)));
        Ok(CheckLayer::from_checker(Checker::new(options, Instant::now(), seed)?))
    }

    /// A layer over a checker you built (your own seed and epoch).
    ///
    /// ```
    /// use std::time::Instant;
    /// use portcullis::check::{Checker, Options, Seed};
    /// use portcullis::layer::CheckLayer;
    ///
    /// let checker = Checker::new(&Options::default(), Instant::now(), Seed([5; 8])).unwrap();
    /// let layer = CheckLayer::from_checker(checker);
    /// # drop(layer);
    /// ```
    pub fn from_checker(checker: Checker) -> CheckLayer {
        CheckLayer {
            shared: Arc::new(Shared {
                checker,
                scratch: Mutex::new(Vec::new()),
                peer: Box::new(|parts| {
                    let ext = &parts.extensions;
                    ext.get::<IpAddr>()
                        .copied()
                        .or_else(|| ext.get::<std::net::SocketAddr>().map(|a| a.ip()))
                }),
            }),
        }
    }

    /// Where the client's address is (by default: an `IpAddr` or a `SocketAddr` in the request's
    /// extensions; without one, `0.0.0.0`, so that every request without an address shares one budget in
    /// `ip` mode). With axum's `into_make_service_with_connect_info::<SocketAddr>()`:
    ///
    /// ```ignore
    /// layer.peer_from(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
    /// ```
    ///
    /// ```
    /// use portcullis::check::Options;
    /// use portcullis::layer::CheckLayer;
    ///
    /// let layer = CheckLayer::new(&Options::default())
    ///     .unwrap()
    ///     .peer_from(|parts| parts.headers.get("x-test-peer")?.to_str().ok()?.parse().ok());
    /// # drop(layer);
    /// ```
    pub fn peer_from(self, f: impl Fn(&http::request::Parts) -> Option<IpAddr> + Send + Sync + 'static) -> CheckLayer {
        let shared = match Arc::try_unwrap(self.shared) {
            Ok(s) => s,
            Err(_) => panic!("peer_from: configure the layer before cloning it"),
        };
        CheckLayer {
            shared: Arc::new(Shared {
                peer: Box::new(f),
                ..shared
            }),
        }
    }

    /// The checks (for the limiter on keys of your own: `layer.checker().limiter()`).
    ///
    /// ```
    /// use portcullis::check::Options;
    /// use portcullis::layer::CheckLayer;
    ///
    /// let layer = CheckLayer::new(&Options::default()).unwrap();
    /// assert!(layer.checker().limiter().is_some());
    /// ```
    pub fn checker(&self) -> &Checker {
        &self.shared.checker
    }
}

impl<S> tower_layer::Layer<S> for CheckLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// A service behind the checks (made by [`CheckLayer`]).
///
/// ```
/// use portcullis::check::Options;
/// use portcullis::layer::{CheckLayer, Checked};
/// use tower_layer::Layer;
///
/// #[derive(Clone)]
/// struct Inner;
/// let service: Checked<Inner> = CheckLayer::new(&Options::default()).unwrap().layer(Inner);
/// # drop(service);
/// ```
#[derive(Clone)]
pub struct Checked<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The answer to a refusal, in the inner service's response type.
fn refuse<RB: From<Bytes>>(checker: &Checker, refusal: &Refusal, version: http::Version) -> http::Response<RB> {
    let mut response = checker.response(refusal).map(|b| RB::from(Bytes::from(b)));
    // HTTP/1: the binary closes the connection after a framing refusal; so does hyper when told.
    if refusal.closes() && version <= http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for Checked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    RB: From<Bytes> + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The head is checked here, before any await: a refusal never reaches the inner service, and a
        // request without a body to validate goes on to it at once (no clone of it, one future).
        let shared = &self.shared;
        let checker = &shared.checker;
        let (parts, body) = request.into_parts();
        let version = parts.version;
        let peer = (shared.peer)(&parts).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let mut scratch = shared.take();
        let verdict = match checker.check_parts(&mut scratch, &parts, peer, Instant::now()) {
            Ok(v) => v,
            Err(r) => {
                shared.give(scratch);
                let response = refuse(checker, &r, version);
                return Box::pin(async move { Ok(response) });
            }
        };
        if !verdict.json_body() {
            shared.give(scratch);
            let ratelimit = ratelimit_field(checker, &verdict);
            let future = self.inner.call(http::Request::from_parts(parts, body));
            return Box::pin(async move {
                let mut response = future.await?;
                if let Some((name, value)) = ratelimit {
                    response.headers_mut().insert(name, value);
                }
                Ok(response)
            });
        }
        // A JSON body: buffered and validated before the inner service is called. The clone is the one
        // polled ready: take it, leave the fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let mut verdict = verdict;
        Box::pin(async move {
            let checker = &shared.checker;
            let limit = usize::try_from(checker.max_body()).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    shared.give(scratch);
                    // Past the limit: 413, as the binary. A body that fails to arrive (the client went
                    // away): the answer will not be read; say what happened anyway.
                    let reason = if e.is::<LengthLimitError>() {
                        Reason::BodyTooLarge
                    } else {
                        Reason::MalformedRequest
                    };
                    return Ok(refuse(checker, &Refusal::of(reason), version));
                }
            };
            let checked = checker.check_body(&mut scratch, &mut verdict, &bytes);
            shared.give(scratch);
            if let Err(r) = checked {
                return Ok(refuse(checker, &r, version));
            }
            let ratelimit = ratelimit_field(checker, &verdict);
            let mut response = inner.call(http::Request::from_parts(parts, B::from(bytes))).await?;
            if let Some((name, value)) = ratelimit {
                response.headers_mut().insert(name, value);
            }
            Ok(response)
        })
    }
}

/// The `RateLimit` field for an admitted request's response (with `ratelimit_headers`).
fn ratelimit_field(checker: &Checker, verdict: &crate::check::Verdict) -> Option<(&'static str, http::HeaderValue)> {
    let (name, value) = checker.ratelimit_header(verdict)?;
    Some((name, http::HeaderValue::from_str(&value).ok()?))
}
