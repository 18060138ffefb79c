//! Building a [`Config`] from the flags: every check, each error naming the flag and the accepted range.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

use super::{Args, Config, Limits, RateConfig, Secret, Timeouts, MAX_HEADERS_LIMIT};

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

impl Config {
    /// Validates parsed flags. The error names the flag and the accepted range.
    pub fn from_args(a: Args) -> Result<Config, String> {
        let listen = match a.listen.trim() {
            "" => None,
            l => Some(resolve(l).map_err(|e| format!("--listen {:?}: {e}", a.listen))?),
        };
        let tls = tls_config(&a)?;
        if listen.is_none() && tls.is_none() {
            return Err("--listen '': give --tls-listen too, or there is nothing to accept clients on".to_string());
        }
        let upstreams = super::upstreams::upstreams(&a)?;
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
        let cluster: Vec<String> = a
            .redis_cluster
            .iter()
            .filter(|u| !u.trim().is_empty())
            .cloned()
            .collect();
        if !cluster.is_empty() {
            if a.redis_url.as_ref().is_some_and(|u| !u.is_empty()) {
                return Err("--redis-cluster and --redis-url: give one (a cluster's seed nodes, or one Redis)".into());
            }
            if a.rate == 0 {
                return Err("--redis-cluster: the fleet-wide limit needs the rate limit on (--rate above 0)".into());
            }
            if secret.is_none() {
                return Err(
                    "--redis-cluster: the fleet-wide limit needs --secret-file (the same secret on every node keys the user ids)"
                        .into(),
                );
            }
            for u in &cluster {
                let info = redis::IntoConnectionInfo::into_connection_info(u.as_str())
                    .map_err(|e| format!("--redis-cluster {}: {e}", crate::redis_sync::redact(u)))?;
                if !matches!(info.addr(), redis::ConnectionAddr::Tcp(..)) {
                    return Err(format!(
                        "--redis-cluster {}: must be redis://host:port",
                        crate::redis_sync::redact(u)
                    ));
                }
            }
            if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&a.redis_sync) {
                return Err(format!("--redis-sync {:?}: must be between 1ms and 10s", a.redis_sync));
            }
        }
        if !(1..=crate::limit::fleet::MAX_GROUPS).contains(&a.redis_groups) {
            return Err(format!(
                "--redis-groups {}: must be between 1 and {}",
                a.redis_groups,
                crate::limit::fleet::MAX_GROUPS
            ));
        }
        if !(0.0..=1.0).contains(&a.redis_share) {
            return Err(format!("--redis-share {}: must be between 0 and 1", a.redis_share));
        }
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
                redis_cluster: cluster,
                redis_groups: a.redis_groups,
                redis_share_ppm: (a.redis_share * 1e6).round() as u32,
                mode: crate::guard::Mode::parse(&a.rate_rule).map_err(|e| format!("--rate-rule {e}"))?,
                limits_path: a.limits.clone().filter(|p| !p.is_empty()),
            })
        };
        let admin = match a.admin.as_ref().filter(|s| !s.is_empty()) {
            Some(s) => Some(resolve(s).map_err(|e| format!("--admin {s:?}: {e}"))?),
            None => None,
        };
        let proxy_protocol = proxy_protocol(&a)?;
        let tunnel = match a.upgrade.trim() {
            "" | "off" => None,
            "websocket" => Some(crate::proxy::tunnel::TunnelSettings {
                idle: a.tunnel_idle_timeout,
                half_close: a.tunnel_half_close_timeout,
                max: a.max_tunnels.min(a.max_connections),
                per_user: a.max_tunnels_per_user,
            }),
            v => return Err(format!("--upgrade {v:?}: use websocket, or '' for none")),
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
            request_id_header: match a.request_id_header.as_ref().filter(|h| !h.is_empty()) {
                Some(h) if h.bytes().all(crate::http::is_tchar) => Some(h.clone()),
                Some(h) => return Err(format!("--request-id-header {h:?}: not a field name")),
                None => None,
            },
            trust_request_id: a.trust_request_id,
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
            tls,
            proxy_protocol,
            tunnel,
            upstreams,
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

/// The TLS listener's settings, when `--tls-listen` is given (the other TLS flags need it).
fn tls_config(a: &Args) -> Result<Option<super::TlsConfig>, String> {
    // Empty values (`tls-cert = []`, `tls-cert-dir = ""` in a printed configuration) are absent.
    let certs: Vec<&String> = a.tls_cert.iter().filter(|c| !c.is_empty()).collect();
    let keys: Vec<&String> = a.tls_key.iter().filter(|k| !k.is_empty()).collect();
    let dir = a.tls_cert_dir.as_ref().filter(|d| !d.is_empty());
    let default_cert = a.tls_default_cert.clone().filter(|d| !d.is_empty());
    let Some(addr) = a.tls_listen.as_deref().filter(|l| !l.trim().is_empty()) else {
        let given = [
            ("--tls-cert", !certs.is_empty()),
            ("--tls-key", !keys.is_empty()),
            ("--tls-cert-dir", dir.is_some()),
            ("--tls-default-cert", default_cert.is_some()),
            ("--tls-strict-sni", a.tls_strict_sni),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            return Err(format!("{flag} needs --tls-listen"));
        }
        return Ok(None);
    };
    let listen = resolve(addr).map_err(|e| format!("--tls-listen {addr:?}: {e}"))?;
    if certs.len() != keys.len() {
        return Err(format!(
            "--tls-cert and --tls-key come in pairs: {} certificates, {} keys",
            certs.len(),
            keys.len()
        ));
    }
    if certs.is_empty() && dir.is_none() {
        return Err("--tls-listen needs certificates: --tls-cert FILE --tls-key FILE, or --tls-cert-dir DIR".into());
    }
    let min_version = match a.tls_min_version.trim() {
        "1.2" => crate::tls::MinVersion::Tls12,
        "1.3" => crate::tls::MinVersion::Tls13,
        v => return Err(format!("--tls-min-version {v:?}: use 1.2 or 1.3")),
    };
    Ok(Some(super::TlsConfig {
        listen,
        settings: crate::tls::Settings {
            pairs: certs.iter().zip(&keys).map(|(c, k)| (c.into(), k.into())).collect(),
            dir: dir.map(Into::into),
            default_cert,
            strict_sni: a.tls_strict_sni,
            min_version,
            expiry_warn: a.tls_expiry_warn,
        },
    }))
}

/// `--proxy-protocol` and the peers it is accepted from (each needs the other).
fn proxy_protocol(a: &Args) -> Result<Option<super::ProxyProtocol>, String> {
    let from = a
        .proxy_protocol_from
        .iter()
        .filter(|c| !c.trim().is_empty())
        .map(|c| crate::limit::Cidr::parse(c).map_err(|e| format!("--proxy-protocol-from {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    match a
        .proxy_protocol
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "off")
    {
        None if from.is_empty() => Ok(None),
        None => Err("--proxy-protocol-from needs --proxy-protocol v1|v2|any".into()),
        Some(_) if from.is_empty() => Err(
            "--proxy-protocol needs --proxy-protocol-from: the load balancers' addresses (a header from anyone \
             else would let a client choose its own address)"
                .into(),
        ),
        Some(v) => Ok(Some(super::ProxyProtocol {
            accept: crate::proxy_protocol::Accept::parse(v).map_err(|e| format!("--proxy-protocol {e}"))?,
            from,
        })),
    }
}

pub(super) fn resolve(s: &str) -> Result<SocketAddr, String> {
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
    fn tls_flags_are_checked_together() {
        let err = |args: &[&str]| {
            let mut all = vec!["portcullis"];
            all.extend_from_slice(args);
            Config::parse_from(all).unwrap_err()
        };
        assert!(err(&["--tls-cert", "a.crt", "--tls-key", "a.key"]).contains("--tls-cert needs --tls-listen"));
        assert!(err(&["--listen", ""]).contains("--tls-listen"));
        assert!(err(&["--tls-listen", "127.0.0.1:0"]).contains("needs certificates"));
        assert!(err(&["--tls-listen", "127.0.0.1:0", "--tls-cert", "a.crt"]).contains("come in pairs"));
        let e = err(&[
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert-dir",
            "d",
            "--tls-min-version",
            "1.1",
        ]);
        assert!(e.contains("--tls-min-version \"1.1\""), "{e}");
        let c = Config::parse_from([
            "portcullis",
            "--listen",
            "",
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "a.crt,b.crt",
            "--tls-key",
            "a.key,b.key",
            "--tls-min-version",
            "1.3",
        ])
        .unwrap();
        assert!(c.listen.is_none());
        let t = c.tls.unwrap();
        assert_eq!(t.settings.pairs.len(), 2);
        assert_eq!(t.settings.min_version, crate::tls::MinVersion::Tls13);
        assert_eq!(t.settings.expiry_warn, Duration::from_secs(14 * 24 * 3600));
    }

    #[test]
    fn defaults_and_checks() {
        let c = Config::parse_from(["portcullis"]).unwrap();
        assert_eq!(c.listen.unwrap().to_string(), "127.0.0.1:8080");
        assert!(c.upstreams.pools.is_empty());
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
