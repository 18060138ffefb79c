//! The flags: what clap parses (flags override `PORTCULLIS_*` environment variables, which override the
//! defaults). Every flag, its default and its environment variable; the checks are in `validate`.

use std::time::Duration;

use clap::Parser;

use super::validate::{parse_duration, parse_size};

/// portcullis: an edge ingress that refuses bad HTTP/1.1 requests and relays the rest to one upstream.
#[derive(Parser, Debug, Clone)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Args {
    /// Address to accept plain-HTTP clients on ('' for none, with --tls-listen).
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Address to accept TLS clients on (next to, or instead of, --listen); needs certificates.
    #[arg(long, env = "PORTCULLIS_TLS_LISTEN")]
    pub tls_listen: Option<String>,

    /// A certificate chain (PEM, the leaf first) for the TLS listener (repeatable, each with its --tls-key, in
    /// order); chosen by SNI among the DNS names of its SANs.
    #[arg(long = "tls-cert", env = "PORTCULLIS_TLS_CERT", value_delimiter = ',')]
    pub tls_cert: Vec<String>,

    /// The private key (PEM: ECDSA P-256/P-384, Ed25519 or RSA) of the --tls-cert at the same position.
    #[arg(long = "tls-key", env = "PORTCULLIS_TLS_KEY", value_delimiter = ',')]
    pub tls_key: Vec<String>,

    /// A directory of certificates: each NAME.crt with its NAME.key.
    #[arg(long, env = "PORTCULLIS_TLS_CERT_DIR")]
    pub tls_cert_dir: Option<String>,

    /// The certificate for a client without SNI or naming no configured name: NAME of NAME.crt, or the first
    /// SAN of a --tls-cert (default: the first certificate).
    #[arg(long, env = "PORTCULLIS_TLS_DEFAULT_CERT")]
    pub tls_default_cert: Option<String>,

    /// Refuse the handshake of a client without SNI or naming no configured name (instead of the default).
    #[arg(long, env = "PORTCULLIS_TLS_STRICT_SNI", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_strict_sni: bool,

    /// The lowest TLS version accepted: 1.2 or 1.3.
    #[arg(long, env = "PORTCULLIS_TLS_MIN_VERSION", default_value = "1.2")]
    pub tls_min_version: String,

    /// Log a certificate that expires within this, at start and at each reload.
    #[arg(long, env = "PORTCULLIS_TLS_EXPIRY_WARN", default_value = "336h", value_parser = parse_duration)]
    pub tls_expiry_warn: Duration,

    /// Expect a PROXY protocol header (v1, v2 or any) at the start of every client connection, on the plain
    /// and the TLS listener (behind an L4 load balancer): the client address it carries replaces the peer's.
    /// Off by default; needs --proxy-protocol-from.
    #[arg(long, env = "PORTCULLIS_PROXY_PROTOCOL")]
    pub proxy_protocol: Option<String>,

    /// The load balancers allowed to send PROXY protocol headers: an address or CIDR block (repeatable); a
    /// connection from anywhere else is closed at once.
    #[arg(
        long = "proxy-protocol-from",
        env = "PORTCULLIS_PROXY_PROTOCOL_FROM",
        value_delimiter = ','
    )]
    pub proxy_protocol_from: Vec<String>,

    /// Protocol upgrades relayed as tunnels: `websocket` (an upstream's 101 to a WebSocket handshake turns
    /// the connection into a byte tunnel both ways), or '' (off: Upgrade fields are removed).
    #[arg(long, env = "PORTCULLIS_UPGRADE", default_value = "")]
    pub upgrade: String,

    /// A tunnel with no byte either way for this long is closed.
    #[arg(long, env = "PORTCULLIS_TUNNEL_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Duration,

    /// After one side of a tunnel ended (its FIN), how long the other side may still send.
    #[arg(long, env = "PORTCULLIS_TUNNEL_HALF_CLOSE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub tunnel_half_close_timeout: Duration,

    /// Tunnels open at once in the process (at most --max-connections); past it a handshake gets 503.
    #[arg(long, env = "PORTCULLIS_MAX_TUNNELS", default_value_t = 1000)]
    pub max_tunnels: usize,

    /// Tunnels one user (the rate limit's user, else the client address) may have open; past it, 429.
    #[arg(long, env = "PORTCULLIS_MAX_TUNNELS_PER_USER", default_value_t = 10)]
    pub max_tunnels_per_user: u32,

    /// Upstream servers: HOST:PORT (the pool named `default`), or NAME=HOST:PORT[,HOST:PORT...] (a named
    /// pool; repeatable); `HOST:PORT@W` gives a server weight W. Without any, a built-in echo upstream runs
    /// inside the process.
    #[arg(long, env = "PORTCULLIS_UPSTREAM")]
    pub upstream: Vec<String>,

    /// A route to a pool (repeatable): [version:V,][prefix:/P,]POOL, e.g. version:v2,backend-v2 or
    /// prefix:/billing/,billing. Precedence: version and prefix, version, longest prefix, then `default`.
    #[arg(long, env = "PORTCULLIS_ROUTE")]
    pub route: Vec<String>,

    /// How a pool spreads its requests (repeatable): NAME=p2c|round-robin|hash (default p2c).
    #[arg(long, env = "PORTCULLIS_BALANCE")]
    pub balance: Vec<String>,

    /// How often upstream servers given by name are resolved again (off the request path; a failed or empty
    /// answer keeps the last good address); 0 turns it off.
    #[arg(long, env = "PORTCULLIS_DNS_REFRESH", default_value = "5s", value_parser = parse_duration)]
    pub dns_refresh: Duration,

    /// Check a pool's servers actively (repeatable): NAME=/path, a GET every --health-interval; any 2xx
    /// passes.
    #[arg(long, env = "PORTCULLIS_HEALTH")]
    pub health: Vec<String>,

    /// How often each checked server is checked.
    #[arg(long, env = "PORTCULLIS_HEALTH_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub health_interval: Duration,

    /// A check not answered within this fails.
    #[arg(long, env = "PORTCULLIS_HEALTH_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub health_timeout: Duration,

    /// Passed checks in a row that bring a server back (and end a passive ejection early).
    #[arg(long, env = "PORTCULLIS_HEALTH_RISE", default_value_t = 2)]
    pub health_rise: u32,

    /// Failed checks in a row that take a server out.
    #[arg(long, env = "PORTCULLIS_HEALTH_FALL", default_value_t = 3)]
    pub health_fall: u32,

    /// Consecutive failures (connect failures, timeouts, 502/503/504 answers) that eject a server.
    #[arg(long, env = "PORTCULLIS_EJECT_AFTER", default_value_t = 5)]
    pub eject_after: u32,

    /// How long an ejected server gets no request (doubling with each repeated ejection, at most 5m).
    #[arg(long, env = "PORTCULLIS_EJECT_TIME", default_value = "30s", value_parser = parse_duration)]
    pub eject_time: Duration,

    /// The most of a pool's servers ejected at once, in percent.
    #[arg(long, env = "PORTCULLIS_EJECT_MAX_PERCENT", default_value_t = 50)]
    pub eject_max_percent: u32,

    /// Below this percentage of healthy servers a pool uses all of them as if healthy (0: a pool with no
    /// healthy server answers 503 no_healthy_upstream).
    #[arg(long, env = "PORTCULLIS_PANIC_THRESHOLD", default_value_t = 50)]
    pub panic_threshold: u32,

    /// Retries of a request on another server: after a connect failure (any method), or a reset before any
    /// response byte (idempotent methods only); never after a timeout.
    #[arg(long, env = "PORTCULLIS_RETRIES", default_value_t = 1)]
    pub retries: u32,

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

    /// Make the per-user limit fleet-wide through this Redis Cluster: seed nodes,
    /// redis://[user:password@]host:port[,redis://host:port...] (exclusive with --redis-url).
    #[arg(long, env = "PORTCULLIS_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Vec<String>,

    /// Hash-tag groups the fleet's users are spread over (one script call per group and sync; the same on
    /// every node).
    #[arg(long, env = "PORTCULLIS_REDIS_GROUPS", default_value_t = 16)]
    pub redis_groups: u32,

    /// The share of each user's rate and burst a node may admit without reporting it to Redis (0: report
    /// every admission; at most 1 / the number of nodes).
    #[arg(long, env = "PORTCULLIS_REDIS_SHARE", default_value_t = 0.0)]
    pub redis_share: f64,

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

    /// Give every request an id in this header (usually X-Request-Id): sent upstream, returned on every
    /// response (problem+json answers carry it as `request_id`) and logged; a generated id is 32 lowercase hex
    /// digits (128 random bits). Off by default.
    #[arg(long, env = "PORTCULLIS_REQUEST_ID_HEADER")]
    pub request_id_header: Option<String>,

    /// Keep the client's own request id when it is valid (1-128 bytes of A-Z a-z 0-9 . _ : -) instead of
    /// generating one (in the environment: true/false, 1/0, yes/no, on/off).
    #[arg(long, env = "PORTCULLIS_TRUST_REQUEST_ID", value_parser = clap::builder::BoolishValueParser::new())]
    pub trust_request_id: bool,

    /// Per-user limits: a TOML file of named tiers (rate, burst, users); see docs/rate-limit.md.
    #[arg(long, env = "PORTCULLIS_LIMITS")]
    pub limits: Option<String>,

    /// Also add the `RateLimit` field (remaining quota) to every forwarded response (in the environment:
    /// true/false, 1/0, yes/no, on/off).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_HEADERS", value_parser = clap::builder::BoolishValueParser::new())]
    pub ratelimit_headers: bool,
}
