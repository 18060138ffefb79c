//! The refusal catalogue: every reason the ingress answers a request itself, and the precomputed
//! `application/problem+json` (RFC 9457) responses for them.
//!
//! Responses are rendered once at start (they depend only on the docs URL), so refusing costs a copy.
//!
//! The layers refuse with their own types: the protocol (`http::Refusal`: framing, head, method), the
//! request checks (`guard::Refusal`: Accept, Content-Type, JSON, content codings) and the limit
//! (`limit::Refusal`: rate, credentials, client address). Each maps onto one wire [`Reason`] here, with the
//! connection machine's own (timeouts, upstream faults).

use crate::guard;
use crate::http::{self, Version};
use crate::limit;

/// Why the ingress answered a request itself. `code()` is the stable, machine-readable reason.
///
/// ```
/// use portcullis::problem::Reason;
/// let r = Reason::UnsupportedApiVersion;
/// assert_eq!((r.status(), r.code(), r.is_policy(), r.closes()), (406, "unsupported_api_version", true, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    MalformedRequest,
    AmbiguousFraming,
    MalformedChunkedBody,
    InvalidHost,
    InvalidConnectionHeader,
    UnsupportedTransferCoding,
    UnsupportedMethod,
    ExpectationFailed,
    UriTooLong,
    HeaderTooLarge,
    BodyTooLarge,
    HttpVersionNotSupported,
    RequestTimeout,
    UpstreamUnavailable,
    UpstreamTimeout,
    BadUpstreamResponse,
    AcceptHeaderMissing,
    AcceptHeaderMalformed,
    UnsupportedApiVersion,
    ContentTypeNotJson,
    MalformedJson,
    JsonTooDeep,
    RateLimited,
    AmbiguousUserKey,
    MalformedAuthorization,
    IpRateLimited,
    ContentEncodingNotSupported,
    InvalidForwardedFor,
    InvalidTarget,
    MalformedContentEncoding,
    /// `--max-tunnels` WebSocket tunnels are open (503).
    TooManyTunnels,
    /// The user has `--max-tunnels-per-user` tunnels open (429); on the wire, as [`Reason::TooManyTunnels`],
    /// `too_many_tunnels`.
    TooManyUserTunnels,
    /// No route matches the request and there is no default pool (404).
    NoRoute,
    /// Every server of the request's pool is ejected and `--panic-threshold` is 0 (503, `Retry-After: 1`).
    NoHealthyUpstream,
}

impl Reason {
    pub const ALL: [Reason; 34] = [
        Reason::MalformedRequest,
        Reason::AmbiguousFraming,
        Reason::MalformedChunkedBody,
        Reason::InvalidHost,
        Reason::InvalidConnectionHeader,
        Reason::UnsupportedTransferCoding,
        Reason::UnsupportedMethod,
        Reason::ExpectationFailed,
        Reason::UriTooLong,
        Reason::HeaderTooLarge,
        Reason::BodyTooLarge,
        Reason::HttpVersionNotSupported,
        Reason::RequestTimeout,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::BadUpstreamResponse,
        Reason::AcceptHeaderMissing,
        Reason::AcceptHeaderMalformed,
        Reason::UnsupportedApiVersion,
        Reason::ContentTypeNotJson,
        Reason::MalformedJson,
        Reason::JsonTooDeep,
        Reason::RateLimited,
        Reason::AmbiguousUserKey,
        Reason::MalformedAuthorization,
        Reason::IpRateLimited,
        Reason::ContentEncodingNotSupported,
        Reason::InvalidForwardedFor,
        Reason::InvalidTarget,
        Reason::MalformedContentEncoding,
        Reason::TooManyTunnels,
        Reason::TooManyUserTunnels,
        Reason::NoRoute,
        Reason::NoHealthyUpstream,
    ];

    pub fn status(self) -> u16 {
        use Reason::*;
        match self {
            MalformedRequest | AmbiguousFraming | MalformedChunkedBody | InvalidHost | InvalidConnectionHeader => 400,
            UnsupportedTransferCoding | UnsupportedMethod => 501,
            ExpectationFailed => 417,
            UriTooLong => 414,
            HeaderTooLarge => 431,
            BodyTooLarge => 413,
            HttpVersionNotSupported => 505,
            RequestTimeout => 408,
            UpstreamUnavailable | BadUpstreamResponse => 502,
            UpstreamTimeout => 504,
            AcceptHeaderMissing | AcceptHeaderMalformed | UnsupportedApiVersion => 406,
            ContentTypeNotJson | ContentEncodingNotSupported => 415,
            MalformedJson | JsonTooDeep | MalformedContentEncoding => 400,
            RateLimited | IpRateLimited | TooManyUserTunnels => 429,
            TooManyTunnels | NoHealthyUpstream => 503,
            NoRoute => 404,
            AmbiguousUserKey | MalformedAuthorization | InvalidForwardedFor | InvalidTarget => 400,
        }
    }

    pub fn code(self) -> &'static str {
        use Reason::*;
        match self {
            MalformedRequest => "malformed_request",
            AmbiguousFraming => "ambiguous_framing",
            MalformedChunkedBody => "malformed_chunked_body",
            InvalidHost => "invalid_host",
            InvalidConnectionHeader => "invalid_connection_header",
            UnsupportedTransferCoding => "unsupported_transfer_coding",
            UnsupportedMethod => "unsupported_method",
            ExpectationFailed => "expectation_failed",
            UriTooLong => "uri_too_long",
            HeaderTooLarge => "header_too_large",
            BodyTooLarge => "body_too_large",
            HttpVersionNotSupported => "http_version_not_supported",
            RequestTimeout => "request_timeout",
            UpstreamUnavailable => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            BadUpstreamResponse => "bad_upstream_response",
            AcceptHeaderMissing => "accept_header_missing",
            AcceptHeaderMalformed => "accept_header_malformed",
            UnsupportedApiVersion => "unsupported_api_version",
            ContentTypeNotJson => "content_type_not_json",
            MalformedJson => "malformed_json",
            JsonTooDeep => "json_too_deep",
            RateLimited => "rate_limited",
            AmbiguousUserKey => "ambiguous_user_key",
            MalformedAuthorization => "malformed_authorization",
            IpRateLimited => "ip_rate_limited",
            ContentEncodingNotSupported => "content_encoding_not_supported",
            InvalidForwardedFor => "invalid_forwarded_for",
            InvalidTarget => "invalid_target",
            MalformedContentEncoding => "malformed_content_encoding",
            TooManyTunnels | TooManyUserTunnels => "too_many_tunnels",
            NoRoute => "no_route",
            NoHealthyUpstream => "no_healthy_upstream",
        }
    }

    pub fn title(self) -> &'static str {
        use Reason::*;
        match self {
            MalformedRequest => "Malformed request",
            AmbiguousFraming => "Ambiguous message framing",
            MalformedChunkedBody => "Malformed chunked body",
            InvalidHost => "Invalid Host",
            InvalidConnectionHeader => "Invalid Connection header",
            UnsupportedTransferCoding => "Unsupported transfer coding",
            UnsupportedMethod => "Unsupported method",
            ExpectationFailed => "Expectation failed",
            UriTooLong => "Request line too long",
            HeaderTooLarge => "Request head too large",
            BodyTooLarge => "Request body too large",
            HttpVersionNotSupported => "HTTP version not supported",
            RequestTimeout => "Request timeout",
            UpstreamUnavailable => "Upstream unavailable",
            UpstreamTimeout => "Upstream timeout",
            BadUpstreamResponse => "Bad upstream response",
            AcceptHeaderMissing => "Accept header missing",
            AcceptHeaderMalformed => "Accept header malformed",
            UnsupportedApiVersion => "API version not available",
            ContentTypeNotJson => "Content-Type must be JSON",
            MalformedJson => "Invalid or malformed JSON",
            JsonTooDeep => "JSON nested too deeply",
            RateLimited => "Too many requests",
            AmbiguousUserKey => "Credentials sent twice",
            MalformedAuthorization => "Malformed Authorization header",
            IpRateLimited => "Too many requests from this address",
            ContentEncodingNotSupported => "Content-Encoding not supported",
            InvalidForwardedFor => "Invalid X-Forwarded-For",
            InvalidTarget => "Invalid request target",
            MalformedContentEncoding => "Body does not decode",
            TooManyTunnels => "Too many WebSocket connections",
            TooManyUserTunnels => "Too many WebSocket connections for this user",
            NoRoute => "No route",
            NoHealthyUpstream => "No healthy upstream",
        }
    }

    pub fn detail(self) -> &'static str {
        use Reason::*;
        match self {
            MalformedRequest => "The request head is not valid HTTP/1.1: send a request line and header fields with CRLF line endings and no control characters.",
            AmbiguousFraming => "The body framing is ambiguous: send either one valid Content-Length or Transfer-Encoding: chunked (HTTP/1.1 only), never both, no body on GET or HEAD, and no look-alike field such as Transfer_Encoding.",
            MalformedChunkedBody => "The chunked body is malformed: use hex chunk sizes without prefixes or spaces and end every line with CRLF.",
            InvalidHost => "HTTP/1.1 requests must carry exactly one Host header field whose value is a host name or IP address with an optional port; an absolute request target must name the same host.",
            InvalidConnectionHeader => "The Connection header must list field names, and may not name Host, Content-Length, Transfer-Encoding or a field the request checks read (Authorization or the user key field, Accept, Content-Type, Content-Encoding, a trusted X-Forwarded-For).",
            UnsupportedTransferCoding => "Only Transfer-Encoding: chunked is supported for request bodies.",
            UnsupportedMethod => "Use one of GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.",
            ExpectationFailed => "Only Expect: 100-continue is supported.",
            UriTooLong => "The request line is longer than this API accepts: shorten the target.",
            HeaderTooLarge => "The request head has too many or too large header fields.",
            BodyTooLarge => "The request body is larger than this API accepts.",
            HttpVersionNotSupported => "Use HTTP/1.1 (or HTTP/1.0).",
            RequestTimeout => "The request was not received in time.",
            UpstreamUnavailable => "The service is temporarily unavailable: retry later.",
            UpstreamTimeout => "The service did not answer in time: retry later.",
            BadUpstreamResponse => "The service sent an invalid response: retry later.",
            AcceptHeaderMissing => "This API is versioned through the Accept header: send Accept: application/vnd.<vendor>.v<N>+json.",
            AcceptHeaderMalformed => "The Accept header is not a valid list of media types (RFC 9110 section 12.5.1).",
            UnsupportedApiVersion => "The Accept header names no API version this service offers.",
            ContentTypeNotJson => "Requests that create or update a resource must send Content-Type: application/json.",
            MalformedJson => "The request body is not one well-formed JSON document (RFC 8259): check it with a JSON linter.",
            JsonTooDeep => "The JSON body nests objects and arrays deeper than this API accepts.",
            AmbiguousUserKey => "The request carries the field that identifies the user (Authorization, or the configured key field) more than once: send it once.",
            RateLimited => "You sent more requests than your rate limit allows: wait for Retry-After seconds. If you need a higher rate, get in touch.",
            MalformedAuthorization => "The Authorization header is not a valid credential: send an authentication scheme, one space and the credentials (Basic credentials in base64).",
            IpRateLimited => "Your network address sent more requests than this API accepts from one address: wait for Retry-After seconds. If many users share your address, get in touch.",
            ContentEncodingNotSupported => "The request body's Content-Encoding is not one this API can read: send it uncompressed, or with one coding this API decodes (gzip or deflate, unless configured otherwise).",
            InvalidForwardedFor => "An X-Forwarded-For hop that identifies the client is not an IP address (optionally with a port).",
            MalformedContentEncoding => "The request body is not valid data of its Content-Encoding (gzip or deflate): it is corrupt, truncated, or followed by other bytes.",
            InvalidTarget => "The request target must be an absolute path (or an absolute URI), without a fragment; '*' is for OPTIONS only.",
            TooManyTunnels => "This API has as many WebSocket connections open as it accepts: retry later.",
            TooManyUserTunnels => "You have as many WebSocket connections open as this API accepts from one user: close one, then retry.",
            NoRoute => "No service of this API answers this request's version and path: check the path and the version your Accept header names.",
            NoHealthyUpstream => "The service that answers this request is unavailable: retry after Retry-After seconds.",
        }
    }

    /// Framing refusals close the connection: the ingress cannot know where the next request starts.
    pub fn closes(self) -> bool {
        use Reason::*;
        !self.is_policy()
            && !matches!(
                self,
                UpstreamUnavailable
                    | UpstreamTimeout
                    | BadUpstreamResponse
                    | TooManyTunnels
                    | TooManyUserTunnels
                    | NoRoute
                    | NoHealthyUpstream
            )
    }

    /// Refusals of the product's rules (not of the protocol): the connection stays usable, and each rule has
    /// an `observe` mode.
    pub fn is_policy(self) -> bool {
        use Reason::*;
        matches!(
            self,
            AcceptHeaderMissing
                | AcceptHeaderMalformed
                | UnsupportedApiVersion
                | ContentTypeNotJson
                | MalformedJson
                | JsonTooDeep
                | RateLimited
                | IpRateLimited
                | ContentEncodingNotSupported
                | MalformedContentEncoding
        )
    }
}

impl From<http::Refusal> for Reason {
    fn from(r: http::Refusal) -> Reason {
        use http::Refusal as R;
        match r {
            R::MalformedRequest => Reason::MalformedRequest,
            R::AmbiguousFraming => Reason::AmbiguousFraming,
            R::MalformedChunkedBody => Reason::MalformedChunkedBody,
            R::InvalidHost => Reason::InvalidHost,
            R::InvalidConnectionHeader => Reason::InvalidConnectionHeader,
            R::UnsupportedTransferCoding => Reason::UnsupportedTransferCoding,
            R::UnsupportedMethod => Reason::UnsupportedMethod,
            R::ExpectationFailed => Reason::ExpectationFailed,
            R::UriTooLong => Reason::UriTooLong,
            R::HeaderTooLarge => Reason::HeaderTooLarge,
            R::BodyTooLarge => Reason::BodyTooLarge,
            R::HttpVersionNotSupported => Reason::HttpVersionNotSupported,
            R::InvalidTarget => Reason::InvalidTarget,
        }
    }
}

impl From<guard::Refusal> for Reason {
    fn from(r: guard::Refusal) -> Reason {
        use guard::Refusal as R;
        match r {
            R::AcceptHeaderMissing => Reason::AcceptHeaderMissing,
            R::AcceptHeaderMalformed => Reason::AcceptHeaderMalformed,
            R::UnsupportedApiVersion => Reason::UnsupportedApiVersion,
            R::ContentTypeNotJson => Reason::ContentTypeNotJson,
            R::ContentEncodingNotSupported => Reason::ContentEncodingNotSupported,
            R::MalformedContentEncoding => Reason::MalformedContentEncoding,
            R::MalformedJson => Reason::MalformedJson,
            R::JsonTooDeep => Reason::JsonTooDeep,
        }
    }
}

impl From<limit::Refusal> for Reason {
    fn from(r: limit::Refusal) -> Reason {
        use limit::Refusal as R;
        match r {
            R::RateLimited => Reason::RateLimited,
            R::IpRateLimited => Reason::IpRateLimited,
            R::AmbiguousUserKey => Reason::AmbiguousUserKey,
            R::MalformedAuthorization => Reason::MalformedAuthorization,
            R::InvalidForwardedFor => Reason::InvalidForwardedFor,
        }
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        404 => "Not Found",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// What a response says about the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Persistent by default (HTTP/1.1): no Connection field.
    Keep,
    /// `Connection: close`.
    Close,
    /// `Connection: keep-alive`: an HTTP/1.0 client asked to keep the connection, and it is kept.
    KeepAlive,
}

impl Conn {
    /// The answer to a request of `version` after which the connection is closed or not.
    pub fn new(close: bool, version: Version) -> Conn {
        match (close, version) {
            (true, _) => Conn::Close,
            (false, Version::Http10) => Conn::KeepAlive,
            (false, Version::Http11) => Conn::Keep,
        }
    }
}

/// The precomputed responses, three per reason: one for each [`Conn`].
#[derive(Debug, Clone)]
pub struct Catalogue {
    keep: Vec<Vec<u8>>,
    close: Vec<Vec<u8>>,
    keep_alive: Vec<Vec<u8>>,
    /// The `malformed_json` body up to its detail's text, for answers that say where the error is.
    json_body_start: Vec<u8>,
    /// Per reason: where the digits of its Content-Length are in its responses (the same in all three).
    length_at: Vec<(usize, usize)>,
}

/// What a request id adds to a problem+json body: `,"request_id":"` + the id + `"` before the closing brace.
const ID_MEMBER: &[u8] = b",\"request_id\":\"";
/// The end of every problem+json body.
const BODY_END: &[u8] = b"}\n";

/// Writes a body's end (`}\n`), with the request id member first when there is one.
fn put_body_end<O: crate::buf::Out>(out: &mut O, id: Option<(&[u8], &[u8])>) {
    if let Some((_, id)) = id {
        out.put(ID_MEMBER);
        out.put(id);
        out.put(b"\"");
    }
    out.put(BODY_END);
}

/// The request id's header field, when there is one.
fn put_id_field<O: crate::buf::Out>(out: &mut O, id: Option<(&[u8], &[u8])>) {
    if let Some((name, id)) = id {
        out.put(name);
        out.put(b": ");
        out.put(id);
        out.put(b"\r\n");
    }
}

/// Bytes a request id adds to a body.
fn id_len(id: Option<(&[u8], &[u8])>) -> usize {
    id.map_or(0, |(_, id)| ID_MEMBER.len() + id.len() + 1)
}

/// The text of a `malformed_json` detail that says where: before the offset, between it and what was
/// expected, and the end of the body after it.
const JSON_AT: &[u8] = b"The request body is not one well-formed JSON document (RFC 8259): at byte ";
const JSON_EXPECTED: &[u8] = b", expected ";
const JSON_END: &[u8] = b".\",\"reason\":\"malformed_json\"";

/// Length of a response's head without its final CRLF (where extra fields go).
fn head_end(resp: &[u8]) -> usize {
    resp.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 2)
}

/// What the catalogue's answers name besides the reason.
#[derive(Debug, Clone, Default)]
pub struct Settings<'a> {
    /// `--docs-url`: each answer's `type` is this URL plus `#reason`.
    pub docs_url: Option<&'a str>,
    /// The API media types configured, named in the 406 answers.
    pub accepted: &'a [String],
    /// The request content codings accepted (the `Accept-Encoding` of a 415 about one), e.g. `gzip, identity`.
    pub encodings: &'a str,
    /// `--max-body` and `--max-json-depth`, named in the 413 and `json_too_deep` answers (0: not named).
    pub max_body: u64,
    pub max_json_depth: usize,
    /// `--contact`: where to ask for a higher rate, named in the 429 answers.
    pub contact: Option<&'a str>,
}

impl Catalogue {
    pub fn new(s: &Settings<'_>) -> Catalogue {
        let (docs_url, accepted, encodings) = (s.docs_url, s.accepted, s.encodings);
        let render = |r: Reason, conn: Conn| {
            let detail = match r {
                Reason::BodyTooLarge if s.max_body > 0 => format!(
                    "The request body is larger than this API accepts: at most {} bytes (decoded, for a compressed body).",
                    s.max_body
                ),
                Reason::JsonTooDeep if s.max_json_depth > 0 => format!(
                    "The JSON body nests objects and arrays deeper than this API accepts: at most {} levels.",
                    s.max_json_depth
                ),
                Reason::RateLimited | Reason::IpRateLimited => match (s.contact, docs_url) {
                    (Some(c), _) => format!("{} To ask for a higher rate: {c}.", r.detail()),
                    (None, Some(u)) => format!("{} How to ask for a higher rate: {u}#{}.", r.detail(), r.code()),
                    (None, None) => r.detail().to_string(),
                },
                Reason::UnsupportedApiVersion if !accepted.is_empty() => {
                    format!("{} Send Accept with one of: {}.", r.detail(), accepted.join(", "))
                }
                Reason::AcceptHeaderMissing if accepted.is_empty() => {
                    "This API needs an Accept header: any valid one will do, e.g. Accept: application/json or Accept: */*.".to_string()
                }
                Reason::AcceptHeaderMissing => {
                    format!("This API is versioned through the Accept header: send Accept with one of: {}.", accepted.join(", "))
                }
                _ => r.detail().to_string(),
            };
            let ty = match docs_url {
                Some(u) => format!("{u}#{}", r.code()),
                None => "about:blank".to_string(),
            };
            let body = format!(
                "{{\"type\":\"{ty}\",\"title\":\"{}\",\"status\":{},\"detail\":\"{}\",\"reason\":\"{}\"}}\n",
                r.title(),
                r.status(),
                detail,
                r.code()
            );
            // RFC 9110 section 15.5.16: a 415 for a content coding says which codings are accepted.
            let extra = match r {
                Reason::ContentEncodingNotSupported => format!("Accept-Encoding: {encodings}\r\n"),
                _ => String::new(),
            };
            format!(
                "HTTP/1.1 {} {}\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{extra}{}\r\n{}",
                r.status(),
                status_text(r.status()),
                body.len(),
                match conn {
                    Conn::Keep => "",
                    Conn::Close => "Connection: close\r\n",
                    Conn::KeepAlive => "Connection: keep-alive\r\n",
                },
                body
            )
            .into_bytes()
        };
        let ty = match docs_url {
            Some(u) => format!("{u}#malformed_json"),
            None => "about:blank".to_string(),
        };
        let keep: Vec<Vec<u8>> = Reason::ALL.iter().map(|&r| render(r, Conn::Keep)).collect();
        let length_at = keep
            .iter()
            .map(|resp| {
                const CL: &[u8] = b"\r\nContent-Length: ";
                let start = resp.windows(CL.len()).position(|w| w == CL).map_or(0, |i| i + CL.len());
                let end = start + resp[start..].iter().take_while(|b| b.is_ascii_digit()).count();
                (start, end)
            })
            .collect();
        Catalogue {
            length_at,
            keep,
            close: Reason::ALL.iter().map(|&r| render(r, Conn::Close)).collect(),
            keep_alive: Reason::ALL.iter().map(|&r| render(r, Conn::KeepAlive)).collect(),
            json_body_start: format!(
                "{{\"type\":\"{ty}\",\"title\":\"{}\",\"status\":400,\"detail\":\"",
                Reason::MalformedJson.title()
            )
            .into_bytes(),
        }
    }

    /// Writes the `malformed_json` answer saying where the body goes wrong: at byte `offset`, `expected`
    /// (plain text without quotes or backslashes), with extra fields written by `fields` and the request id
    /// `id` (its field's name and value) in a field and in the body. No allocation.
    #[allow(clippy::too_many_arguments)]
    pub fn write_malformed_json<O: crate::buf::Out>(
        &self,
        out: &mut O,
        conn: Conn,
        body: bool,
        offset: u64,
        expected: &str,
        id: Option<(&[u8], &[u8])>,
        fields: impl FnOnce(&mut O),
    ) {
        let digits = offset.checked_ilog10().unwrap_or(0) as usize + 1;
        let len = self.json_body_start.len()
            + JSON_AT.len()
            + digits
            + JSON_EXPECTED.len()
            + expected.len()
            + JSON_END.len()
            + id_len(id)
            + BODY_END.len();
        out.put(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\nContent-Length: ");
        crate::buf::put_u64(out, len as u64);
        out.put(b"\r\nCache-Control: no-store\r\n");
        out.put(match conn {
            Conn::Keep => b"",
            Conn::Close => b"Connection: close\r\n",
            Conn::KeepAlive => b"Connection: keep-alive\r\n",
        });
        put_id_field(out, id);
        fields(out);
        out.put(b"\r\n");
        if body {
            out.put(&self.json_body_start);
            out.put(JSON_AT);
            crate::buf::put_u64(out, offset);
            out.put(JSON_EXPECTED);
            out.put(expected.as_bytes());
            out.put(JSON_END);
            put_body_end(out, id);
        }
    }

    /// Writes the response for `reason` with extra header fields (each ending in CRLF) written by `fields`,
    /// and the request id `id` (its field's name and value) in a field and in the body (its Content-Length
    /// adjusted). No allocation.
    pub fn write_with<O: crate::buf::Out>(
        &self,
        out: &mut O,
        reason: Reason,
        conn: Conn,
        body: bool,
        id: Option<(&[u8], &[u8])>,
        fields: impl FnOnce(&mut O),
    ) {
        let resp = self.response(reason, conn);
        let end = head_end(resp);
        match id {
            None => out.put(&resp[..end]),
            Some(_) => {
                let (at, digits_end) = self.length_at[reason as usize];
                let body_len = resp.len() - end - 2;
                out.put(&resp[..at]);
                crate::buf::put_u64(out, (body_len + id_len(id)) as u64);
                out.put(&resp[digits_end..end]);
                put_id_field(out, id);
            }
        }
        fields(out);
        match (body, id) {
            (false, _) => out.put(b"\r\n"),
            (true, None) => out.put(&resp[end..]),
            (true, Some(_)) => {
                out.put(&resp[end..resp.len() - BODY_END.len()]);
                put_body_end(out, id);
            }
        }
    }

    /// The answer to a HEAD request: the same head (its Content-Length names the body a GET would get), no
    /// body (RFC 9110 9.3.2); a body here would be read as the start of the next response.
    pub fn head(&self, reason: Reason, conn: Conn) -> &[u8] {
        let resp = self.response(reason, conn);
        &resp[..head_end(resp) + 2]
    }

    /// The full response bytes for `reason`, with the Connection field `conn` asks for.
    pub fn response(&self, reason: Reason, conn: Conn) -> &[u8] {
        let i = reason as usize;
        match conn {
            Conn::Keep => &self.keep[i],
            Conn::Close => &self.close[i],
            Conn::KeepAlive => &self.keep_alive[i],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_layer_refuses_with_its_own_reasons() {
        use crate::http::Refusal as H;
        use guard::Refusal as G;
        use limit::Refusal as L;
        let protocol = [
            H::MalformedRequest,
            H::AmbiguousFraming,
            H::MalformedChunkedBody,
            H::InvalidHost,
            H::InvalidConnectionHeader,
            H::UnsupportedTransferCoding,
            H::UnsupportedMethod,
            H::ExpectationFailed,
            H::UriTooLong,
            H::HeaderTooLarge,
            H::BodyTooLarge,
            H::HttpVersionNotSupported,
            H::InvalidTarget,
        ];
        let checks = [
            G::AcceptHeaderMissing,
            G::AcceptHeaderMalformed,
            G::UnsupportedApiVersion,
            G::ContentTypeNotJson,
            G::ContentEncodingNotSupported,
            G::MalformedContentEncoding,
            G::MalformedJson,
            G::JsonTooDeep,
        ];
        let limit = [
            L::RateLimited,
            L::IpRateLimited,
            L::AmbiguousUserKey,
            L::MalformedAuthorization,
            L::InvalidForwardedFor,
        ];
        // A protocol refusal closes the connection (where the next request starts is unknown) and is no rule
        // of the product's; a check's refusal is a rule (it has an observe mode) and keeps the connection.
        for r in protocol.map(Reason::from) {
            assert!(r.closes() && !r.is_policy(), "{r:?}");
        }
        for r in checks.map(Reason::from) {
            assert!(!r.closes() && r.is_policy(), "{r:?}");
        }
        let machine = [
            Reason::RequestTimeout,
            Reason::UpstreamUnavailable,
            Reason::UpstreamTimeout,
            Reason::BadUpstreamResponse,
            Reason::TooManyTunnels,
            Reason::TooManyUserTunnels,
            Reason::NoRoute,
            Reason::NoHealthyUpstream,
        ];
        // Every wire reason is exactly one layer's (or the machine's own).
        let mut all: Vec<Reason> = protocol.map(Reason::from).to_vec();
        all.extend(checks.map(Reason::from));
        all.extend(limit.map(Reason::from));
        all.extend(machine);
        all.sort_by_key(|r| *r as usize);
        assert_eq!(all, Reason::ALL);
    }

    #[test]
    fn catalogue_is_indexed_by_reason_and_valid() {
        let accepted = ["application/vnd.a.v1+json".to_string()];
        let c = Catalogue::new(&Settings {
            docs_url: Some("https://docs.example.com/troubleshooting"),
            accepted: &accepted,
            encodings: "identity",
            max_body: 1 << 20,
            max_json_depth: 64,
            contact: Some("mailto:api@example.com"),
        });
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
            let resp = std::str::from_utf8(c.response(*r, Conn::Close)).unwrap();
            assert!(resp.starts_with(&format!("HTTP/1.1 {} ", r.status())));
            assert!(resp.contains("Connection: close\r\n"));
            let body = resp.split("\r\n\r\n").nth(1).unwrap();
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["reason"], r.code());
            assert_eq!(v["status"], r.status());
            assert_eq!(
                v["type"],
                format!("https://docs.example.com/troubleshooting#{}", r.code())
            );
            assert!(resp.contains(&format!("Content-Length: {}\r\n", body.len())));
            assert!(!std::str::from_utf8(c.response(*r, Conn::Keep))
                .unwrap()
                .contains("Connection:"));
            assert!(std::str::from_utf8(c.response(*r, Conn::KeepAlive))
                .unwrap()
                .contains("\r\nConnection: keep-alive\r\n"));
        }
        let c = Catalogue::new(&Settings::default());
        assert!(std::str::from_utf8(c.response(Reason::BodyTooLarge, Conn::Keep))
            .unwrap()
            .contains("about:blank"));
    }

    #[test]
    fn malformed_json_answers_say_where() {
        let c = Catalogue::new(&Settings {
            docs_url: Some("https://d.example/t"),
            ..Settings::default()
        });
        for (conn, body) in [(Conn::Keep, true), (Conn::Close, true), (Conn::KeepAlive, false)] {
            let mut out = Vec::new();
            c.write_malformed_json(&mut out, conn, body, 1234, "':' after a member name", None, |o| {
                o.extend_from_slice(b"Date: x\r\n")
            });
            let text = String::from_utf8(out).unwrap();
            let (head, rest) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with("HTTP/1.1 400 ") && head.contains("\r\nDate: x"),
                "{head}"
            );
            let len: usize = head
                .split("Content-Length: ")
                .nth(1)
                .unwrap()
                .split("\r\n")
                .next()
                .unwrap()
                .parse()
                .unwrap();
            if !body {
                assert_eq!(rest, "");
                continue;
            }
            assert_eq!(len, rest.len());
            let v: serde_json::Value = serde_json::from_str(rest).unwrap();
            assert_eq!(v["reason"], "malformed_json");
            assert_eq!(v["type"], "https://d.example/t#malformed_json");
            assert!(v["detail"]
                .as_str()
                .unwrap()
                .contains("at byte 1234, expected ':' after a member name."));
        }
    }

    #[test]
    fn every_answer_carries_a_request_id_with_its_length_counted() {
        let c = Catalogue::new(&Settings::default());
        let id: Option<(&[u8], &[u8])> = Some((b"X-Request-Id", b"abc-123"));
        for &r in Reason::ALL.iter() {
            for conn in [Conn::Keep, Conn::Close, Conn::KeepAlive] {
                let mut out = Vec::new();
                c.write_with(&mut out, r, conn, true, id, |o| o.extend_from_slice(b"Date: x\r\n"));
                let text = String::from_utf8(out).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.contains("\r\nX-Request-Id: abc-123\r\nDate: x"), "{head}");
                assert!(
                    head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
                    "{head}"
                );
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(
                    (v["request_id"].as_str(), v["reason"].as_str()),
                    (Some("abc-123"), Some(r.code()))
                );
                let mut no_body = Vec::new();
                c.write_with(&mut no_body, r, conn, false, id, |_| {});
                assert_eq!(
                    String::from_utf8(no_body).unwrap(),
                    format!("{head}\r\n\r\n").replace("Date: x\r\n", "")
                );
            }
        }
        let mut out = Vec::new();
        c.write_malformed_json(&mut out, Conn::Keep, true, 7, "a value", id, |_| {});
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["request_id"], "abc-123");
    }
}
