//! The effective configuration as text: `--check-config` prints it, the debug log shows it at start.

use std::time::Duration;

use super::Config;

/// A TOML array of strings.
fn list(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "))
}

impl Config {
    /// The effective settings, as `--config` file lines (secrets are never part of the configuration).
    pub fn describe(&self) -> String {
        let d = |d: Duration| format!("\"{}ms\"", d.as_millis());
        let s = |v: &str| format!("{v:?}");
        let t = self.timeouts;
        let mut lines = vec![
            ("listen", s(&self.listen.map_or(String::new(), |l| l.to_string()))),
            (
                "tls-listen",
                s(&self.tls.as_ref().map_or(String::new(), |t| t.listen.to_string())),
            ),
            (
                "tls-cert",
                list(
                    self.tls
                        .iter()
                        .flat_map(|t| &t.settings.pairs)
                        .map(|(c, _)| c.display().to_string()),
                ),
            ),
            (
                "tls-key",
                list(
                    self.tls
                        .iter()
                        .flat_map(|t| &t.settings.pairs)
                        .map(|(_, k)| k.display().to_string()),
                ),
            ),
            (
                "tls-cert-dir",
                s(&self
                    .tls
                    .as_ref()
                    .and_then(|t| t.settings.dir.as_ref())
                    .map_or(String::new(), |d| d.display().to_string())),
            ),
            (
                "tls-default-cert",
                s(self
                    .tls
                    .as_ref()
                    .and_then(|t| t.settings.default_cert.as_deref())
                    .unwrap_or("")),
            ),
            (
                "tls-strict-sni",
                self.tls.as_ref().is_some_and(|t| t.settings.strict_sni).to_string(),
            ),
            (
                "tls-min-version",
                s(match self.tls.as_ref().map(|t| t.settings.min_version) {
                    Some(crate::tls::MinVersion::Tls13) => "1.3",
                    _ => "1.2",
                }),
            ),
            (
                "tls-expiry-warn",
                d(self
                    .tls
                    .as_ref()
                    .map_or(Duration::from_secs(336 * 3600), |t| t.settings.expiry_warn)),
            ),
            (
                "proxy-protocol",
                s(self.proxy_protocol.as_ref().map_or("", |p| p.accept.name())),
            ),
            (
                "proxy-protocol-from",
                format!(
                    "[{}]",
                    self.proxy_protocol
                        .as_ref()
                        .map(|p| p.from.iter().map(|c| s(&c.to_string())).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                ),
            ),
            ("upgrade", s(if self.tunnel.is_some() { "websocket" } else { "" })),
            (
                "tunnel-idle-timeout",
                d(self.tunnel.map_or(Duration::from_secs(300), |t| t.idle)),
            ),
            (
                "tunnel-half-close-timeout",
                d(self.tunnel.map_or(Duration::from_secs(30), |t| t.half_close)),
            ),
            ("max-tunnels", self.tunnel.map_or(1000, |t| t.max).to_string()),
            (
                "max-tunnels-per-user",
                self.tunnel.map_or(10, |t| t.per_user).to_string(),
            ),
            (
                "upstream",
                list(self.upstreams.pools.iter().flat_map(|p| {
                    p.servers.iter().enumerate().map(move |(i, s)| {
                        let w = if s.weight == 1 {
                            String::new()
                        } else {
                            format!("@{}", s.weight)
                        };
                        if i == 0 {
                            format!("{}={}{w}", p.name, s.name)
                        } else {
                            format!("{}{w}", s.name)
                        }
                    })
                })),
            ),
            (
                "route",
                list(self.upstreams.routes.entries().iter().flat_map(|r| {
                    let mut v = Vec::new();
                    if let Some(x) = &r.version {
                        v.push(format!("version:{x}"));
                    }
                    if let Some(x) = &r.prefix {
                        v.push(format!("prefix:{x}"));
                    }
                    v.push(self.upstreams.pools[r.pool].name.clone());
                    v
                })),
            ),
            (
                "balance",
                list(
                    self.upstreams
                        .pools
                        .iter()
                        .map(|p| format!("{}={}", p.name, p.balance.name())),
                ),
            ),
            ("eject-after", self.upstreams.health.eject_after.to_string()),
            ("eject-time", d(self.upstreams.health.eject_time)),
            ("eject-max-percent", self.upstreams.health.eject_max_percent.to_string()),
            ("panic-threshold", self.upstreams.health.panic_threshold.to_string()),
            ("retries", self.upstreams.retries.to_string()),
            (
                "health",
                list(
                    self.upstreams
                        .pools
                        .iter()
                        .filter_map(|p| p.health.as_ref().map(|h| format!("{}={h}", p.name))),
                ),
            ),
            ("health-interval", d(self.upstreams.checks.interval)),
            ("health-timeout", d(self.upstreams.checks.timeout)),
            ("health-rise", self.upstreams.checks.rise.to_string()),
            ("health-fall", self.upstreams.checks.fall.to_string()),
            ("dns-refresh", d(self.upstreams.dns_refresh)),
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
            ("request-id-header", s(self.request_id_header.as_deref().unwrap_or(""))),
            ("trust-request-id", self.trust_request_id.to_string()),
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
                    (
                        "redis-cluster",
                        format!(
                            "[{}]",
                            r.redis_cluster
                                .iter()
                                .map(|u| s(&crate::redis_sync::redact(u)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                    ("redis-groups", r.redis_groups.to_string()),
                    ("redis-share", format!("{}", r.redis_share_ppm as f64 / 1e6)),
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
        let mut out: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        // The route table as requests meet it (comments: the settings above are what a file would hold).
        if !self.upstreams.pools.is_empty() {
            out.push_str("# routes, in precedence order:\n");
            for r in self.upstreams.routes.describe(&self.upstreams.pools) {
                out.push_str(&format!("#   {r}\n"));
            }
        }
        out
    }
}
