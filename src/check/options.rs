//! The checks' settings ([`Options`], named like the binary's flags) and how a [`Checker`] is built from
//! them: the same validation and the same policy, tiers, answers and limiter as the binary's configuration.

use std::time::Instant;

use crate::http::Limits;
use crate::limit::tiers::{self, Tier, Tiers};
use crate::problem::Catalogue;
use crate::proxy::Rules;

use super::{Checker, Gcra, KeyMode, Limiter, Mode, Seed};

/// The checks' settings, named and defaulted like the binary's flags (`--accept` is `accept`,
/// `--json-methods` is `json_methods`, ...; the README's table of flags says what each does).
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

/// Builds the checker of `options` (see [`Checker::new`]).
pub(super) fn build(options: &Options, epoch: Instant, seed: Seed) -> Result<Checker, String> {
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
            stable_user_hash: false,
        },
        limiter,
        limits: Limits {
            max_head: o.max_head,
            max_headers: o.max_headers,
            max_body: o.max_body,
        },
    })
}
