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
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    /// This layer's name among the spare working memory of each thread ([`SPARE`]).
    id: u64,
    peer: Box<PeerFn>,
}

/// Layers made so far (each gets the next number as its id).
static LAYERS: AtomicU64 = AtomicU64::new(0);

/// The most working memories a thread keeps, one per layer: past that, the least recently used one goes (an
/// application with more layers than this on one thread makes one per request; a dropped layer's goes once
/// the others have pushed it out).
const SPARE_MAX: usize = 8;

thread_local! {
    /// Each thread's working memory, by layer id. A check uses it in place and is done with it before any
    /// await (never held across one), so one per layer and thread is enough, and no lock is taken.
    static SPARE: RefCell<Vec<(u64, Scratch)>> = const { RefCell::new(Vec::new()) };
}

impl Shared {
    /// Runs `f` with this thread's working memory for this layer (made on first use).
    fn with_scratch<R>(&self, f: impl FnOnce(&mut Scratch) -> R) -> R {
        let mut f = Some(f);
        let run = |spare: &RefCell<Vec<(u64, Scratch)>>| {
            // Not re-entered (a check awaits nothing and calls no layer); if it ever were, a fresh one.
            let Ok(mut v) = spare.try_borrow_mut() else {
                return None;
            };
            let i = match v.iter().position(|e| e.0 == self.id) {
                Some(i) if i + 1 == v.len() => i,
                Some(i) => {
                    // Least recently used first: this one moves to the end.
                    let e = v.remove(i);
                    v.push(e);
                    v.len() - 1
                }
                None => {
                    if v.len() >= SPARE_MAX {
                        v.remove(0);
                    }
                    v.push((self.id, self.checker.scratch()));
                    v.len() - 1
                }
            };
            f.take().map(|f| f(&mut v[i].1))
        };
        match SPARE.try_with(run) {
            Ok(Some(r)) => r,
            // The thread is going away (its locals are gone) or the memory is in use: a fresh one.
            _ => f.take().expect("not run")(&mut self.checker.scratch()),
        }
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
                id: LAYERS.fetch_add(1, Ordering::Relaxed),
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
    type Future = ResponseFuture<S::Future, RB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The head is checked here, before any await: a refusal never reaches the inner service, and a
        // request without a body to validate goes on to it at once (no clone of it, no boxed future: the
        // future is the inner one, wrapped; with `ratelimit_headers`, the field's value is made per request).
        let shared = &self.shared;
        let checker = &shared.checker;
        let (parts, body) = request.into_parts();
        let version = parts.version;
        let peer = (shared.peer)(&parts).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        let checked = shared.with_scratch(|scratch| checker.check_parts(scratch, &parts, peer, now));
        let verdict = match checked {
            Ok(v) => v,
            Err(r) => return ResponseFuture::refused(refuse(checker, &r, version)),
        };
        if !verdict.json_body() {
            let ratelimit = ratelimit_field(checker, &verdict);
            let future = self.inner.call(http::Request::from_parts(parts, body));
            return ResponseFuture {
                kind: Kind::Inner { future, ratelimit },
            };
        }
        // A JSON body: buffered and validated before the inner service is called. The clone is the one
        // polled ready: take it, leave the fresh clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let mut verdict = verdict;
        let future = Box::pin(async move {
            let checker = &shared.checker;
            let limit = usize::try_from(checker.max_body()).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
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
            let checked = shared.with_scratch(|scratch| checker.check_body(scratch, &mut verdict, &bytes));
            if let Err(r) = checked {
                return Ok(refuse(checker, &r, version));
            }
            let ratelimit = ratelimit_field(checker, &verdict);
            let mut response = inner.call(http::Request::from_parts(parts, B::from(bytes))).await?;
            if let Some((name, value)) = ratelimit {
                response.headers_mut().insert(name, value);
            }
            Ok(response)
        });
        ResponseFuture {
            kind: Kind::Body { future },
        }
    }
}

/// A boxed response future (the JSON body path: it awaits the body, then the inner service).
type BoxFuture<RB, E> = Pin<Box<dyn Future<Output = Result<http::Response<RB>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The response future of a [`Checked`] service: a refusal ready at once, the inner service's own future
    /// (a request without a body to validate: not boxed), or, for a JSON body, a boxed one that collects and
    /// validates the body first. `Unpin` when the inner service's future is.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// use bytes::Bytes;
    /// use http_body_util::Full;
    /// use portcullis::check::Options;
    /// use portcullis::layer::CheckLayer;
    /// use tower_layer::Layer;
    /// use tower_service::Service;
    ///
    /// #[derive(Clone)]
    /// struct Hello;
    /// impl Service<http::Request<Full<Bytes>>> for Hello {
    ///     type Response = http::Response<Full<Bytes>>;
    ///     type Error = Infallible;
    ///     type Future = std::future::Ready<Result<http::Response<Full<Bytes>>, Infallible>>;
    ///     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
    ///         Poll::Ready(Ok(()))
    ///     }
    ///     fn call(&mut self, _: http::Request<Full<Bytes>>) -> Self::Future {
    ///         std::future::ready(Ok(http::Response::new(Full::new(Bytes::from("hello")))))
    ///     }
    /// }
    ///
    /// let accept = "application/vnd.acme.v1+json";
    /// let options = Options { accept: vec![accept.into()], ..Options::default() };
    /// let mut service = CheckLayer::new(&options).unwrap().layer(Hello);
    /// let mut status = |accept: &str| {
    ///     let request = http::Request::get("/orders/7")
    ///         .header("host", "api.example")
    ///         .header("accept", accept)
    ///         .body(Full::default())
    ///         .unwrap();
    ///     let mut future = std::pin::pin!(service.call(request));
    ///     // A request without a body is answered without waiting (the handler's future is ready).
    ///     match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
    ///         Poll::Ready(Ok(response)) => response.status(),
    ///         _ => unreachable!(),
    ///     }
    /// };
    /// assert_eq!(status(accept), 200);
    /// assert_eq!(status("text/html"), 406);
    /// ```
    pub struct ResponseFuture<F, RB, E> {
        #[pin]
        kind: Kind<F, RB, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F, RB, E> {
        Refused { response: Option<http::Response<RB>> },
        Inner { #[pin] future: F, ratelimit: Option<(&'static str, http::HeaderValue)> },
        Body { future: BoxFuture<RB, E> },
    }
}

impl<F, RB, E> ResponseFuture<F, RB, E> {
    fn refused(response: http::Response<RB>) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F, RB, E>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { response } => Poll::Ready(Ok(response.take().expect("polled after it completed"))),
            KindProj::Inner { future, ratelimit } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                if let Some((name, value)) = ratelimit.take() {
                    response.headers_mut().insert(name, value);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Body { future } => future.as_mut().poll(cx),
        }
    }
}

/// The `RateLimit` field for an admitted request's response (with `ratelimit_headers`).
fn ratelimit_field(checker: &Checker, verdict: &crate::check::Verdict) -> Option<(&'static str, http::HeaderValue)> {
    let (name, value) = checker.ratelimit_header(verdict)?;
    Some((name, http::HeaderValue::from_str(&value).ok()?))
}
