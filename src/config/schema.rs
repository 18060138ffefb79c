//! The validated configuration: the plain values the rest of the process is built from.

use std::net::SocketAddr;
use std::time::Duration;

pub use crate::http::Limits;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The plain-HTTP listener (`None`: `--listen ''`, TLS only).
    pub listen: Option<SocketAddr>,
    /// The TLS listener and its certificates, when on.
    pub tls: Option<TlsConfig>,
    /// `--upgrade websocket`: WebSocket handshakes become tunnels, with these limits (None: off).
    pub tunnel: Option<crate::proxy::tunnel::TunnelSettings>,
    /// `--proxy-protocol`: the header every client connection starts with, and who may send it.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// The upstream pools and routes (no pool: start the built-in echo upstream as the pool `default`).
    pub upstreams: super::Upstreams,
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
    /// `--request-id-header`: the header carrying each request's id (None: off).
    pub request_id_header: Option<String>,
    /// `--trust-request-id`: keep a client's valid id.
    pub trust_request_id: bool,
    pub rate: Option<RateConfig>,
    pub admin: Option<SocketAddr>,
    pub access_log: Option<String>,
    pub log_level: crate::log::Level,
}

/// The PROXY protocol on the client listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyProtocol {
    pub accept: crate::proxy_protocol::Accept,
    /// `--proxy-protocol-from`: the peers allowed to send it (never empty).
    pub from: Vec<crate::limit::Cidr>,
}

/// The TLS listener.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub settings: crate::tls::Settings,
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
    /// Fleet-wide through this Redis Cluster (seed URLs as given; empty: not a cluster).
    pub redis_cluster: Vec<String>,
    /// `--redis-groups`.
    pub redis_groups: u32,
    /// `--redis-share`, in millionths.
    pub redis_share_ppm: u32,
    /// `--secret-file`: its path, and the secret (never printed).
    pub(crate) secret: Option<(String, Secret)>,
    /// The per-address backstop (`None`: off, or keyed on the address already).
    pub ip: Option<crate::limit::IpBackstop>,
    /// `--ip-rate` / `--ip-burst` as configured (0 when off), for describing the configuration.
    pub ip_rate: u32,
    pub ip_burst: u32,
}

impl RateConfig {
    /// Whether the limit is fleet-wide (through one Redis or a cluster).
    pub fn fleet(&self) -> bool {
        self.redis_url.is_some() || !self.redis_cluster.is_empty()
    }
}

/// Secret bytes: `Debug` shows only their length.
#[derive(Clone)]
pub struct Secret(pub(crate) Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

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
