//! Every flag, its default, its environment variable and its check, in one place.
//!
//! `Args` is what clap parses (flags override `PORTCULLIS_*` environment variables, which override the
//! defaults); `Config` is the validated, plain value the rest of the process is built from.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

pub use crate::http::MAX_HEADERS_LIMIT;

/// portcullis: an edge ingress that refuses bad HTTP/1.1 requests and relays the rest to one upstream.
#[derive(Parser, Debug, Clone)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Args {
    /// Address to accept clients on.
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Upstream service as HOST:PORT. Without it a built-in echo upstream runs inside the process.
    #[arg(long, env = "PORTCULLIS_UPSTREAM")]
    pub upstream: Option<String>,

    /// Worker threads, each with its own event loop and listener (0 = one per core).
    #[arg(long, env = "PORTCULLIS_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Largest request head (request line and fields); larger is refused with 431 (414 for the line alone).
    #[arg(long, env = "PORTCULLIS_MAX_HEAD", default_value = "16KiB", value_parser = parse_size)]
    pub max_head: u64,

    /// Most header fields in a request; more is refused with 431 (at most 512).
    #[arg(long, env = "PORTCULLIS_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,

    /// Largest request body; larger is refused with 413.
    #[arg(long, env = "PORTCULLIS_MAX_BODY", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: u64,

    /// Most client connections open at once in the process; past it the ingress stops accepting.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a client has to send a complete request head (408 after it).
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Time a client has to send a complete request body, and to read a response (408 / close).
    #[arg(long, env = "PORTCULLIS_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long an idle keep-alive client connection is kept.
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Time allowed to connect to the upstream (504 after it).
    #[arg(long, env = "PORTCULLIS_UPSTREAM_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub upstream_connect_timeout: Duration,

    /// Time allowed for the upstream's first response byte, and between its reads (504 / close).
    #[arg(long, env = "PORTCULLIS_UPSTREAM_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub upstream_timeout: Duration,

    /// Idle upstream connections kept open per worker for reuse.
    #[arg(long, env = "PORTCULLIS_UPSTREAM_POOL", default_value_t = 1024)]
    pub upstream_pool: usize,

    /// After a refusal that closes the connection, how long the client may go without sending before the
    /// ingress stops reading (and dropping) what it still sends and closes.
    #[arg(long, env = "PORTCULLIS_LINGER_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub linger_timeout: Duration,

    /// After a refusal that closes the connection, the longest the ingress keeps reading (and dropping) what the
    /// client still sends, so that the client reads the answer instead of a reset.
    #[arg(long, env = "PORTCULLIS_LINGER_TIME", default_value = "30s", value_parser = parse_duration)]
    pub linger_time: Duration,

    /// After SIGTERM/SIGINT/SIGQUIT, how long `/readyz` answers 503 while the ingress still accepts, before it
    /// stops accepting (give the load balancer time to take the node out, e.g. 5s).
    #[arg(long, env = "PORTCULLIS_DRAIN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub drain_delay: Duration,

    /// After SIGTERM/SIGINT/SIGQUIT (and the drain delay), how long in-flight requests may take before the
    /// process exits anyway (exit 3).
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Base URL of the troubleshooting docs; each error's `type` is this URL plus `#reason`.
    #[arg(long, env = "PORTCULLIS_DOCS_URL")]
    pub docs_url: Option<String>,

    /// Where users ask for a higher rate (a URL or an address), named in the 429 answers.
    #[arg(long, env = "PORTCULLIS_CONTACT")]
    pub contact: Option<String>,

    /// An API media type the Accept header may name (repeatable), e.g. application/vnd.acme.v2+json.
    /// Without any, every request needs a well-formed, non-empty Accept.
    #[arg(long = "accept", env = "PORTCULLIS_ACCEPT", value_delimiter = ',')]
    pub accept: Vec<String>,

    /// Header that carries the matched API version (e.g. `v2`) upstream; the client's own copy is removed.
    #[arg(long, env = "PORTCULLIS_VERSION_HEADER", default_value = "X-Api-Version")]
    pub version_header: String,

    /// Methods whose body must be JSON with a JSON Content-Type (comma-separated; '' turns the rules off).
    #[arg(long, env = "PORTCULLIS_JSON_METHODS", default_value = "POST,PATCH")]
    pub json_methods: String,

    /// Let a JSON method's request without a body (no body, `Content-Length: 0`, or an empty chunked body)
    /// pass the Content-Type and JSON rules (true/false, 1/0).
    #[arg(long, env = "PORTCULLIS_JSON_ALLOW_EMPTY", default_value = "true", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    pub json_allow_empty: bool,

    /// Content codings a JSON body may be sent in (comma-separated: gzip, deflate; '' = none): such bodies are
    /// decoded to be validated and forwarded as sent. Others are refused with 415.
    #[arg(long, env = "PORTCULLIS_JSON_DECODE", default_value = "gzip,deflate")]
    pub json_decode: String,

    /// Most bytes a coded body may decode to per byte sent (past it: 413, a decompression bomb).
    #[arg(long, env = "PORTCULLIS_MAX_DECODE_RATIO", default_value_t = 100)]
    pub max_decode_ratio: u32,

    /// Deepest nesting of JSON objects and arrays accepted in a body.
    #[arg(long, env = "PORTCULLIS_MAX_JSON_DEPTH", default_value_t = 1024)]
    pub max_json_depth: usize,

    /// Requests per second per user (0 turns the limit off).
    #[arg(long, env = "PORTCULLIS_RATE", default_value_t = 10)]
    pub rate: u32,

    /// Requests a user may send back to back after idling (default: the rate).
    #[arg(long, env = "PORTCULLIS_BURST")]
    pub burst: Option<u32>,

    /// Who the user is: `authorization` (the Authorization value, else the client IP), `header:NAME`
    /// (that field's value, else the client IP), or `ip`.
    #[arg(long, env = "PORTCULLIS_USER_KEY", default_value = "authorization")]
    pub user_key: String,

    /// Take the client IP from the N-th last X-Forwarded-For hop (behind N trusted proxies; 0: the peer).
    #[arg(long, env = "PORTCULLIS_TRUST_FORWARDED_FOR", default_value_t = 0)]
    pub trust_forwarded_for: usize,

    /// Make the per-user limit fleet-wide through this Redis: redis://[user:password@]host:port[/db]
    /// (off: each node limits on its own).
    #[arg(long, env = "PORTCULLIS_REDIS_URL")]
    pub redis_url: Option<String>,

    /// How often the fleet-wide limit syncs with Redis.
    #[arg(long, env = "PORTCULLIS_REDIS_SYNC", default_value = "50ms", value_parser = parse_duration)]
    pub redis_sync: Duration,

    /// A file holding at least 32 bytes of secret (the same on every node): user ids (the fleet's Redis keys,
    /// the access log's `user`) are keyed with it. Required with --redis-url.
    #[arg(long, env = "PORTCULLIS_SECRET_FILE")]
    pub secret_file: Option<String>,

    /// Requests per second per client address, whatever credential they carry (0 = off; default: 10 x --rate).
    /// Not applied with --user-key ip or to users of a --limits tier.
    #[arg(long, env = "PORTCULLIS_IP_RATE")]
    pub ip_rate: Option<u32>,

    /// Requests one client address may send back to back (default: 10 x --burst).
    #[arg(long, env = "PORTCULLIS_IP_BURST")]
    pub ip_burst: Option<u32>,

    /// An address or CIDR block the per-address limit does not apply to (repeatable), e.g. a known NAT gateway.
    #[arg(long = "ip-rate-exempt", env = "PORTCULLIS_IP_RATE_EXEMPT", value_delimiter = ',')]
    pub ip_rate_exempt: Vec<String>,

    /// Slots of the process-wide rate-limit table (8 bytes each; fixed at start).
    #[arg(long, env = "PORTCULLIS_RATE_TABLE_SLOTS", default_value_t = 1_048_576)]
    pub rate_table_slots: usize,

    /// Settings file (TOML, one key per flag's long name). Precedence: file < environment < flags.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<String>,

    /// Validate the configuration, print the effective settings, and exit (0 valid, 1 invalid).
    #[arg(long)]
    pub check_config: bool,

    /// Process log level on stderr: error, warn, info, or debug.
    #[arg(long, env = "PORTCULLIS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Access log: a file path, or `-` for stdout (JSON lines; off by default).
    #[arg(long, env = "PORTCULLIS_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// Address of the admin listener (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9901; off by default.
    #[arg(long, env = "PORTCULLIS_ADMIN")]
    pub admin: Option<String>,

    /// The Accept rule: enforce (refuse), observe (forward; count and log what it would refuse), or off.
    #[arg(long, env = "PORTCULLIS_ACCEPT_RULE", default_value = "enforce")]
    pub accept_rule: String,

    /// The Content-Type rule (JSON methods): enforce, observe, or off.
    #[arg(long, env = "PORTCULLIS_CONTENT_TYPE_RULE", default_value = "enforce")]
    pub content_type_rule: String,

    /// The JSON body rule: enforce, observe, or off.
    #[arg(long, env = "PORTCULLIS_JSON_RULE", default_value = "enforce")]
    pub json_rule: String,

    /// The per-user rate limit rule: enforce, observe, or off.
    #[arg(long, env = "PORTCULLIS_RATE_RULE", default_value = "enforce")]
    pub rate_rule: String,

    /// Tell the upstream what an `observe` rule would have refused, in this request header (the client's own
    /// copy is removed); off by default.
    #[arg(long, env = "PORTCULLIS_OBSERVE_HEADER")]
    pub observe_header: Option<String>,

    /// Per-user limits: a TOML file of named tiers (rate, burst, users); see docs/rate-limit.md.
    #[arg(long, env = "PORTCULLIS_LIMITS")]
    pub limits: Option<String>,

    /// Also add the `RateLimit` field (remaining quota) to every forwarded response (in the environment:
    /// true/false, 1/0, yes/no, on/off).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_HEADERS", value_parser = clap::builder::BoolishValueParser::new())]
    pub ratelimit_headers: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None`: start the built-in echo upstream.
    pub upstream: Option<SocketAddr>,
    pub workers: usize,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub max_connections: usize,
    pub upstream_pool: usize,
    pub docs_url: Option<String>,
    /// `--contact`: where to ask for a higher rate.
    pub contact: Option<String>,
    pub policy: crate::guard::Policy,
    /// `--observe-header`: the request header naming what an observe rule would have refused.
    pub observe_header: Option<String>,
    pub rate: Option<RateConfig>,
    pub admin: Option<SocketAddr>,
    pub access_log: Option<String>,
    pub log_level: crate::log::Level,
}

/// The per-user limit, when on.
#[derive(Debug, Clone)]
pub struct RateConfig {
    pub rate: u32,
    pub burst: u32,
    pub key: crate::limit::KeyMode,
    pub trust_forwarded_for: usize,
    pub table_slots: usize,
    pub headers: bool,
    pub mode: crate::guard::Mode,
    /// `--limits FILE`: the tiers file (read at start and on SIGHUP).
    pub limits_path: Option<String>,
    /// Fleet-wide through this Redis (the URL as given: it may hold a password, never log it).
    pub redis_url: Option<String>,
    pub redis_sync: Duration,
    /// `--secret-file`: its path, and the secret (never printed).
    pub secret: Option<(String, Secret)>,
    /// The per-address backstop (`None`: off, or keyed on the address already).
    pub ip: Option<crate::limit::IpBackstop>,
    /// `--ip-rate` / `--ip-burst` as configured (0 when off), for describing the configuration.
    pub ip_rate: u32,
    pub ip_burst: u32,
}

/// Secret bytes: `Debug` shows only their length.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The shortest `--secret-file` content accepted.
pub const MIN_SECRET: usize = 32;

/// Reads a `--secret-file`: at least [`MIN_SECRET`] bytes (one trailing newline is not part of it).
pub fn read_secret(path: &str) -> Result<Secret, String> {
    let mut bytes = std::fs::read(path).map_err(|e| format!("--secret-file {path}: {e}"))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.len() < MIN_SECRET {
        return Err(format!(
            "--secret-file {path}: holds {} bytes; at least {MIN_SECRET} are needed (e.g. `head -c 32 /dev/urandom | base64 > {path}`)",
            bytes.len()
        ));
    }
    Ok(Secret(bytes))
}

/// The HTTP layer's size limits: owned by `http` (a pure layer imports nothing of the configuration), built here.
pub use crate::http::Limits;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    pub upstream_connect: Duration,
    pub upstream: Duration,
    pub shutdown: Duration,
    pub linger_timeout: Duration,
    pub linger_time: Duration,
    pub drain_delay: Duration,
}

impl Config {
    /// Validates parsed flags. The error names the flag and the accepted range.
    pub fn from_args(a: Args) -> Result<Config, String> {
        let listen = resolve(&a.listen).map_err(|e| format!("--listen {:?}: {e}", a.listen))?;
        let upstream = match a.upstream.as_ref().filter(|u| !u.is_empty()) {
            Some(u) if u.contains("://") => {
                let bare = u.split_once("://").map_or("", |(_, r)| r).trim_end_matches('/');
                return Err(format!(
                    "--upstream {u:?}: give HOST:PORT without a scheme (e.g. --upstream {bare}); the upstream speaks plain HTTP/1.1"
                ));
            }
            Some(u) => Some(resolve(u).map_err(|e| format!("--upstream {u:?}: {e}"))?),
            None => None,
        };
        let workers = if a.workers == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            a.workers
        };
        if workers > 1024 {
            return Err(format!(
                "--workers {}: must be between 0 (one per core) and 1024",
                a.workers
            ));
        }
        if !(1024..=1 << 20).contains(&a.max_head) {
            return Err(format!("--max-head {}: must be between 1KiB and 1MiB", a.max_head));
        }
        if !(1..=MAX_HEADERS_LIMIT).contains(&a.max_headers) {
            return Err(format!(
                "--max-headers {}: must be between 1 and {MAX_HEADERS_LIMIT}",
                a.max_headers
            ));
        }
        if a.max_body > 1 << 30 {
            return Err(format!("--max-body {}: must be at most 1GiB", a.max_body));
        }
        if a.max_connections == 0 || a.max_connections > 10_000_000 {
            return Err(format!(
                "--max-connections {}: must be between 1 and 10000000",
                a.max_connections
            ));
        }
        for (flag, d) in [
            ("--header-timeout", a.header_timeout),
            ("--body-timeout", a.body_timeout),
            ("--idle-timeout", a.idle_timeout),
            ("--upstream-connect-timeout", a.upstream_connect_timeout),
            ("--upstream-timeout", a.upstream_timeout),
            ("--linger-timeout", a.linger_timeout),
            ("--linger-time", a.linger_time),
        ] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(24 * 3600) {
                return Err(format!("{flag} {d:?}: must be between 10ms and 24h"));
            }
        }
        if a.upstream_pool > 1_000_000 {
            return Err(format!(
                "--upstream-pool {}: must be between 0 and 1000000",
                a.upstream_pool
            ));
        }
        if a.drain_delay > Duration::from_secs(600) {
            return Err(format!("--drain-delay {:?}: must be at most 10m", a.drain_delay));
        }
        if a.shutdown_timeout > Duration::from_secs(3600) {
            return Err(format!(
                "--shutdown-timeout {:?}: must be at most 1h",
                a.shutdown_timeout
            ));
        }
        if let Some(c) = &a.contact {
            if c.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f) {
                return Err(format!(
                    "--contact {c:?}: must be printable ASCII without quotes or backslashes"
                ));
            }
        }
        if let Some(u) = &a.docs_url {
            if u.bytes().any(|b| b < 0x21 || b == b'"' || b == b'\\' || b >= 0x7f) {
                return Err(format!(
                    "--docs-url {u:?}: must be a URL without spaces, quotes or backslashes"
                ));
            }
        }
        let accept = a
            .accept
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| crate::guard::ApiType::parse(t).map_err(|e| format!("--accept {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if accept.len() > crate::guard::MAX_API_TYPES {
            return Err(format!("--accept: at most {} types", crate::guard::MAX_API_TYPES));
        }
        if a.version_header.is_empty() || !a.version_header.bytes().all(crate::http::is_tchar) {
            return Err(format!(
                "--version-header {:?}: must be a header field name",
                a.version_header
            ));
        }
        let json_methods: Vec<String> = a
            .json_methods
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        if let Some(m) = json_methods
            .iter()
            .find(|m| !crate::http::request::ALLOWED_METHODS.contains(&m.as_str()))
        {
            return Err(format!(
                "--json-methods: {m:?} is not one of {:?}",
                crate::http::request::ALLOWED_METHODS
            ));
        }
        let mut json_decode = 0;
        for c in a.json_decode.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            json_decode |= crate::guard::Coding::parse(c.as_bytes())
                .ok_or_else(|| format!("--json-decode {c:?}: use gzip and/or deflate ('' for none)"))?
                .bit();
        }
        if !(1..=10_000).contains(&a.max_decode_ratio) {
            return Err(format!(
                "--max-decode-ratio {}: must be between 1 and 10000",
                a.max_decode_ratio
            ));
        }
        if !(1..=100_000).contains(&a.max_json_depth) {
            return Err(format!(
                "--max-json-depth {}: must be between 1 and 100000",
                a.max_json_depth
            ));
        }
        mode("--rate-rule", &a.rate_rule)?;
        if a.rate == 0 && (a.ip_rate.is_some_and(|r| r > 0) || a.ip_burst.is_some() || !a.ip_rate_exempt.is_empty()) {
            return Err("--ip-rate: the per-address limit is part of the rate limit (--rate above 0)".into());
        }
        if a.rate == 0 && a.limits.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err("--limits: per-user limits need the rate limit on (--rate above 0)".into());
        }
        let secret = match a.secret_file.as_ref().filter(|p| !p.is_empty()) {
            Some(p) => Some((p.clone(), read_secret(p)?)),
            None => None,
        };
        if let Some(u) = a.redis_url.as_ref().filter(|u| !u.is_empty()) {
            if a.rate == 0 {
                return Err("--redis-url: the fleet-wide limit needs the rate limit on (--rate above 0)".into());
            }
            if secret.is_none() {
                return Err(
                    "--redis-url: the fleet-wide limit needs --secret-file (the same secret on every node keys the user ids)"
                        .into(),
                );
            }
            redis::IntoConnectionInfo::into_connection_info(u.as_str())
                .map_err(|e| format!("--redis-url {}: {e}", crate::redis_sync::redact(u)))?;
            if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&a.redis_sync) {
                return Err(format!("--redis-sync {:?}: must be between 1ms and 10s", a.redis_sync));
            }
        }
        let rate = if a.rate == 0 {
            None
        } else {
            if a.rate > 1_000_000 {
                return Err(format!("--rate {}: must be between 0 (off) and 1000000", a.rate));
            }
            let burst = a.burst.unwrap_or(a.rate);
            if burst == 0 || burst as u64 > a.rate as u64 * 3600 {
                return Err(format!(
                    "--burst {burst}: must be between 1 and an hour of requests at --rate"
                ));
            }
            if !(8..=1 << 30).contains(&a.rate_table_slots) {
                return Err(format!(
                    "--rate-table-slots {}: must be between 8 and 2^30",
                    a.rate_table_slots
                ));
            }
            if a.trust_forwarded_for > 64 {
                return Err(format!(
                    "--trust-forwarded-for {}: must be between 0 and 64",
                    a.trust_forwarded_for
                ));
            }
            let key = crate::limit::KeyMode::parse(&a.user_key).map_err(|e| format!("--user-key {e}"))?;
            let ip_rate = a.ip_rate.unwrap_or(a.rate.saturating_mul(10).min(10_000_000));
            if ip_rate > 10_000_000 {
                return Err(format!("--ip-rate {ip_rate}: must be between 0 (off) and 10000000"));
            }
            let ip_burst = a.ip_burst.unwrap_or(burst.saturating_mul(10));
            if ip_rate > 0 && (ip_burst == 0 || ip_burst as u64 > ip_rate as u64 * 3600) {
                return Err(format!(
                    "--ip-burst {ip_burst}: must be between 1 and an hour of requests at --ip-rate"
                ));
            }
            let exempt = a
                .ip_rate_exempt
                .iter()
                .filter(|c| !c.trim().is_empty())
                .map(|c| crate::limit::Cidr::parse(c).map_err(|e| format!("--ip-rate-exempt {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let ip = (ip_rate > 0 && key != crate::limit::KeyMode::Ip).then(|| crate::limit::IpBackstop {
                rate: ip_rate,
                burst: ip_burst,
                gcra: crate::limit::Gcra::new(ip_rate, ip_burst),
                exempt,
            });
            Some(RateConfig {
                secret,
                ip,
                ip_rate,
                ip_burst: if ip_rate > 0 { ip_burst } else { 0 },
                rate: a.rate,
                burst,
                key,
                trust_forwarded_for: a.trust_forwarded_for,
                table_slots: a.rate_table_slots,
                headers: a.ratelimit_headers,
                redis_url: a.redis_url.clone().filter(|u| !u.is_empty()),
                redis_sync: a.redis_sync,
                mode: crate::guard::Mode::parse(&a.rate_rule).map_err(|e| format!("--rate-rule {e}"))?,
                limits_path: a.limits.clone().filter(|p| !p.is_empty()),
            })
        };
        let admin = match a.admin.as_ref().filter(|s| !s.is_empty()) {
            Some(s) => Some(resolve(s).map_err(|e| format!("--admin {s:?}: {e}"))?),
            None => None,
        };
        let log_level = crate::log::Level::parse(&a.log_level)
            .ok_or_else(|| format!("--log-level {:?}: must be error, warn, info or debug", a.log_level))?;
        Ok(Config {
            log_level,
            access_log: a.access_log.filter(|p| !p.is_empty()),
            admin,
            rate,
            observe_header: match a.observe_header.as_ref().filter(|h| !h.is_empty()) {
                Some(h) if h.bytes().all(crate::http::is_tchar) => Some(h.clone()),
                Some(h) => return Err(format!("--observe-header {h:?}: not a field name")),
                None => None,
            },
            policy: crate::guard::Policy {
                accept_mode: mode("--accept-rule", &a.accept_rule)?,
                content_type_mode: mode("--content-type-rule", &a.content_type_rule)?,
                json_mode: mode("--json-rule", &a.json_rule)?,
                accept,
                version_header: a.version_header,
                json_methods: crate::guard::Policy::method_mask(&json_methods),
                max_json_depth: a.max_json_depth,
                json_allow_empty: a.json_allow_empty,
                json_decode,
                max_decode_ratio: a.max_decode_ratio,
            },
            listen,
            upstream,
            workers,
            limits: Limits {
                max_head: a.max_head as usize,
                max_headers: a.max_headers,
                max_body: a.max_body,
            },
            timeouts: Timeouts {
                header: a.header_timeout,
                body: a.body_timeout,
                idle: a.idle_timeout,
                upstream_connect: a.upstream_connect_timeout,
                upstream: a.upstream_timeout,
                shutdown: a.shutdown_timeout,
                linger_timeout: a.linger_timeout,
                linger_time: a.linger_time,
                drain_delay: a.drain_delay,
            },
            max_connections: a.max_connections,
            upstream_pool: a.upstream_pool,
            docs_url: a.docs_url.filter(|u| !u.is_empty()),
            contact: a.contact.filter(|c| !c.is_empty()),
        })
    }

    /// The effective settings, as `--config` file lines (secrets are never part of the configuration).
    pub fn describe(&self) -> String {
        let d = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let s = |v: &str| format!("{v:?}");
        let t = self.timeouts;
        let mut lines = vec![
            ("listen", s(&self.listen.to_string())),
            ("upstream", s(&self.upstream.map_or(String::new(), |u| u.to_string()))),
            ("workers", self.workers.to_string()),
            ("max-head", self.limits.max_head.to_string()),
            ("max-headers", self.limits.max_headers.to_string()),
            ("max-body", self.limits.max_body.to_string()),
            ("max-connections", self.max_connections.to_string()),
            ("header-timeout", d(t.header)),
            ("body-timeout", d(t.body)),
            ("idle-timeout", d(t.idle)),
            ("upstream-connect-timeout", d(t.upstream_connect)),
            ("upstream-timeout", d(t.upstream)),
            ("shutdown-timeout", d(t.shutdown)),
            ("linger-timeout", d(t.linger_timeout)),
            ("linger-time", d(t.linger_time)),
            ("drain-delay", d(t.drain_delay)),
            ("upstream-pool", self.upstream_pool.to_string()),
            ("docs-url", s(self.docs_url.as_deref().unwrap_or(""))),
            ("contact", s(self.contact.as_deref().unwrap_or(""))),
            (
                "accept",
                format!(
                    "[{}]",
                    self.policy
                        .accept
                        .iter()
                        .map(|a| s(&a.media))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            ("accept-rule", s(self.policy.accept_mode.name())),
            ("content-type-rule", s(self.policy.content_type_mode.name())),
            ("json-rule", s(self.policy.json_mode.name())),
            ("observe-header", s(self.observe_header.as_deref().unwrap_or(""))),
            ("version-header", s(&self.policy.version_header)),
            (
                "json-methods",
                s(&crate::http::request::ALLOWED_METHODS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| self.policy.json_methods & (1 << i) != 0)
                    .map(|(_, m)| *m)
                    .collect::<Vec<_>>()
                    .join(",")),
            ),
            ("max-json-depth", self.policy.max_json_depth.to_string()),
            ("json-allow-empty", self.policy.json_allow_empty.to_string()),
            (
                "json-decode",
                s(&[crate::guard::Coding::Gzip, crate::guard::Coding::Deflate]
                    .iter()
                    .filter(|c| self.policy.json_decode & c.bit() != 0)
                    .map(|c| {
                        if *c == crate::guard::Coding::Gzip {
                            "gzip"
                        } else {
                            "deflate"
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")),
            ),
            ("max-decode-ratio", self.policy.max_decode_ratio.to_string()),
            ("admin", s(&self.admin.map_or(String::new(), |a| a.to_string()))),
            ("access-log", s(self.access_log.as_deref().unwrap_or(""))),
            ("log-level", s(self.log_level.name())),
        ];
        match &self.rate {
            None => lines.push(("rate", "0".into())),
            Some(r) => {
                let key = match &r.key {
                    crate::limit::KeyMode::Authorization => "authorization".to_string(),
                    crate::limit::KeyMode::Ip => "ip".to_string(),
                    crate::limit::KeyMode::Header(h) => format!("header:{h}"),
                };
                lines.extend([
                    ("rate", r.rate.to_string()),
                    ("burst", r.burst.to_string()),
                    ("user-key", s(&key)),
                    ("trust-forwarded-for", r.trust_forwarded_for.to_string()),
                    ("rate-table-slots", r.table_slots.to_string()),
                    ("ratelimit-headers", r.headers.to_string()),
                    ("rate-rule", s(r.mode.name())),
                    ("limits", s(r.limits_path.as_deref().unwrap_or(""))),
                    (
                        "redis-url",
                        s(&r.redis_url
                            .as_deref()
                            .map(crate::redis_sync::redact)
                            .unwrap_or_default()),
                    ),
                    ("redis-sync", s(&format!("{}ms", r.redis_sync.as_millis()))),
                    ("secret-file", s(r.secret.as_ref().map_or("", |(p, _)| p))),
                    ("ip-rate", r.ip_rate.to_string()),
                    ("ip-burst", r.ip_burst.to_string()),
                    (
                        "ip-rate-exempt",
                        format!(
                            "[{}]",
                            r.ip.as_ref()
                                .map(|b| b
                                    .exempt
                                    .iter()
                                    .map(|c| s(&c.to_string()))
                                    .collect::<Vec<_>>()
                                    .join(", "))
                                .unwrap_or_default()
                        ),
                    ),
                ]);
            }
        }
        lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
    }

    /// Parses a command line (for tests and embedding).
    pub fn parse_from<I, T>(args: I) -> Result<Config, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let a = Args::try_parse_from(args).map_err(|e| e.to_string())?;
        Config::from_args(a)
    }
}

fn mode(flag: &str, s: &str) -> Result<crate::guard::Mode, String> {
    crate::guard::Mode::parse(s).map_err(|e| format!("{flag} {e}"))
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    let mut it = s.to_socket_addrs().map_err(|e| e.to_string())?;
    it.next().ok_or_else(|| "resolves to no address".to_string())
}

/// `500ms`, `10s`, `2m`, `1h`; a plain number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => return Err(format!("{s:?}: unknown unit (use ms, s, m or h)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `16KiB`, `1MiB`, `1GiB`, `512KB`, or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16KiB, 1MiB, 4096)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(format!("{s:?}: unknown unit (use KiB, MiB, GiB or plain bytes)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_size("16KiB").unwrap(), 16384);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn defaults_and_checks() {
        let c = Config::parse_from(["portcullis"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.upstream.is_none());
        assert_eq!(c.limits.max_head, 16384);
        assert_eq!(c.limits.max_body, 1 << 20);
        assert_eq!(c.timeouts.header, Duration::from_secs(10));
        let e = Config::parse_from(["portcullis", "--max-headers", "0"]).unwrap_err();
        assert!(e.contains("--max-headers"), "{e}");
        let e = Config::parse_from(["portcullis", "--header-timeout", "1ms"]).unwrap_err();
        assert!(e.contains("--header-timeout"), "{e}");
        let e = Config::parse_from(["portcullis", "--accept", "text/html"]).unwrap_err();
        assert!(e.contains("--accept"), "{e}");
        let c = Config::parse_from([
            "portcullis",
            "--accept",
            "application/vnd.a.v1+json",
            "--accept",
            "application/vnd.a.v2+json",
            "--json-methods",
            "",
        ])
        .unwrap();
        assert_eq!(c.policy.accept.len(), 2);
        assert_eq!(c.policy.json_methods, 0);
        assert_eq!(Config::parse_from(["portcullis"]).unwrap().policy.json_methods, 0b10100);
    }
}
