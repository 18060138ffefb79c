//! Which differences between two configurations a reload (SIGHUP) cannot apply.
//!
//! A reload swaps the policy: the request rules, the rate limit's rates, tiers and mode, the answers' texts, the
//! log level. What the process was built from at start (the sockets, the workers, the limiter and its table, the
//! helper threads) keeps its value until a restart. Each field of [`Config`] is classed here by destructuring
//! without `..`: a new field does not compile until it is classed as one or the other.

use std::fmt;

use super::{Config, Limits, RateConfig, Secret, Timeouts};
use crate::limit::{Cidr, IpBackstop};

/// A setting a reload cannot change, named by its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOnly {
    Listen,
    TlsListen,
    TlsCert,
    TlsKey,
    TlsCertDir,
    TlsDefaultCert,
    TlsStrictSni,
    TlsMinVersion,
    TlsExpiryWarn,
    ProxyProtocol,
    ProxyProtocolFrom,
    Upgrade,
    TunnelIdleTimeout,
    TunnelHalfCloseTimeout,
    MaxTunnels,
    MaxTunnelsPerUser,
    Retries,
    HealthChecks,
    DnsRefresh,
    Workers,
    MaxHead,
    MaxHeaders,
    MaxBody,
    MaxConnections,
    HeaderTimeout,
    BodyTimeout,
    IdleTimeout,
    UpstreamConnectTimeout,
    UpstreamTimeout,
    ShutdownTimeout,
    LingerTimeout,
    LingerTime,
    DrainDelay,
    UpstreamPool,
    Admin,
    AccessLog,
    UserKey,
    TrustForwardedFor,
    RateTableSlots,
    RedisUrl,
    RedisSync,
    RedisCluster,
    RedisGroups,
    RedisShare,
    SecretFile,
    IpRate,
    IpBurst,
    IpRateExempt,
}

impl RestartOnly {
    /// Every variant, in the order [`Config::describe`] lists the settings.
    pub const ALL: [RestartOnly; 48] = {
        use RestartOnly::*;
        [
            Listen,
            TlsListen,
            TlsCert,
            TlsKey,
            TlsCertDir,
            TlsDefaultCert,
            TlsStrictSni,
            TlsMinVersion,
            TlsExpiryWarn,
            ProxyProtocol,
            ProxyProtocolFrom,
            Upgrade,
            TunnelIdleTimeout,
            TunnelHalfCloseTimeout,
            MaxTunnels,
            MaxTunnelsPerUser,
            Retries,
            HealthChecks,
            DnsRefresh,
            Workers,
            MaxHead,
            MaxHeaders,
            MaxBody,
            MaxConnections,
            HeaderTimeout,
            BodyTimeout,
            IdleTimeout,
            UpstreamConnectTimeout,
            UpstreamTimeout,
            ShutdownTimeout,
            LingerTimeout,
            LingerTime,
            DrainDelay,
            UpstreamPool,
            Admin,
            AccessLog,
            UserKey,
            TrustForwardedFor,
            RateTableSlots,
            RedisUrl,
            RedisSync,
            RedisCluster,
            RedisGroups,
            RedisShare,
            SecretFile,
            IpRate,
            IpBurst,
            IpRateExempt,
        ]
    };

    /// The flag's long name (also its key in a `--config` file and in [`Config::describe`]).
    pub fn flag(self) -> &'static str {
        use RestartOnly::*;
        match self {
            Listen => "listen",
            TlsListen => "tls-listen",
            TlsCert => "tls-cert",
            TlsKey => "tls-key",
            TlsCertDir => "tls-cert-dir",
            TlsDefaultCert => "tls-default-cert",
            TlsStrictSni => "tls-strict-sni",
            TlsMinVersion => "tls-min-version",
            TlsExpiryWarn => "tls-expiry-warn",
            ProxyProtocol => "proxy-protocol",
            ProxyProtocolFrom => "proxy-protocol-from",
            Upgrade => "upgrade",
            TunnelIdleTimeout => "tunnel-idle-timeout",
            TunnelHalfCloseTimeout => "tunnel-half-close-timeout",
            MaxTunnels => "max-tunnels",
            MaxTunnelsPerUser => "max-tunnels-per-user",
            Retries => "retries",
            HealthChecks => "health-interval",
            DnsRefresh => "dns-refresh",
            Workers => "workers",
            MaxHead => "max-head",
            MaxHeaders => "max-headers",
            MaxBody => "max-body",
            MaxConnections => "max-connections",
            HeaderTimeout => "header-timeout",
            BodyTimeout => "body-timeout",
            IdleTimeout => "idle-timeout",
            UpstreamConnectTimeout => "upstream-connect-timeout",
            UpstreamTimeout => "upstream-timeout",
            ShutdownTimeout => "shutdown-timeout",
            LingerTimeout => "linger-timeout",
            LingerTime => "linger-time",
            DrainDelay => "drain-delay",
            UpstreamPool => "upstream-pool",
            Admin => "admin",
            AccessLog => "access-log",
            UserKey => "user-key",
            TrustForwardedFor => "trust-forwarded-for",
            RateTableSlots => "rate-table-slots",
            RedisUrl => "redis-url",
            RedisSync => "redis-sync",
            RedisCluster => "redis-cluster",
            RedisGroups => "redis-groups",
            RedisShare => "redis-share",
            SecretFile => "secret-file",
            IpRate => "ip-rate",
            IpBurst => "ip-burst",
            IpRateExempt => "ip-rate-exempt",
        }
    }
}

impl fmt::Display for RestartOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag())
    }
}

/// The settings that differ between `old` and `new` but need a restart, in [`RestartOnly::ALL`] order. The rate
/// limit's own settings are compared when it is on in both (turning it on or off is refused as a whole).
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<RestartOnly> {
    use RestartOnly::*;
    let Config {
        listen,
        // The certificates' contents are re-read by a reload; where they are and how they are served is not.
        tls,
        proxy_protocol,
        // Tunnels are built into every connection's settings at start.
        tunnel,
        // Pools, routes, balancing and health are reloaded; retries, the checks' timing and the DNS refresh
        // are built in at start.
        upstreams,
        workers,
        limits,
        timeouts,
        max_connections,
        upstream_pool,
        admin,
        access_log,
        rate,
        // Reloaded: the policy, the answers' texts, the request-id rule, the log level.
        docs_url: _,
        contact: _,
        policy: _,
        observe_header: _,
        request_id_header: _,
        trust_request_id: _,
        log_level: _,
    } = old;
    let Limits {
        max_head,
        max_headers,
        max_body,
    } = limits;
    let Timeouts {
        header,
        body,
        idle,
        upstream_connect,
        upstream: upstream_timeout,
        shutdown,
        linger_timeout,
        linger_time,
        drain_delay,
    } = timeouts;
    let (nl, nt) = (&new.limits, &new.timeouts);
    let mut changed = vec![
        (Listen, *listen != new.listen),
        (
            ProxyProtocol,
            proxy_protocol.as_ref().map(|p| p.accept) != new.proxy_protocol.as_ref().map(|p| p.accept),
        ),
        (
            ProxyProtocolFrom,
            proxy_protocol.as_ref().map(|p| &p.from) != new.proxy_protocol.as_ref().map(|p| &p.from),
        ),
        (Upgrade, tunnel.is_some() != new.tunnel.is_some()),
        (TunnelIdleTimeout, tunnel.map(|t| t.idle) != new.tunnel.map(|t| t.idle)),
        (
            TunnelHalfCloseTimeout,
            tunnel.map(|t| t.half_close) != new.tunnel.map(|t| t.half_close),
        ),
        (MaxTunnels, tunnel.map(|t| t.max) != new.tunnel.map(|t| t.max)),
        (
            MaxTunnelsPerUser,
            tunnel.map(|t| t.per_user) != new.tunnel.map(|t| t.per_user),
        ),
        (Retries, upstreams.retries != new.upstreams.retries),
        (HealthChecks, upstreams.checks != new.upstreams.checks),
        (DnsRefresh, upstreams.dns_refresh != new.upstreams.dns_refresh),
        (Workers, *workers != new.workers),
        (MaxHead, *max_head != nl.max_head),
        (MaxHeaders, *max_headers != nl.max_headers),
        (MaxBody, *max_body != nl.max_body),
        (MaxConnections, *max_connections != new.max_connections),
        (HeaderTimeout, *header != nt.header),
        (BodyTimeout, *body != nt.body),
        (IdleTimeout, *idle != nt.idle),
        (UpstreamConnectTimeout, *upstream_connect != nt.upstream_connect),
        (UpstreamTimeout, *upstream_timeout != nt.upstream),
        (ShutdownTimeout, *shutdown != nt.shutdown),
        (LingerTimeout, *linger_timeout != nt.linger_timeout),
        (LingerTime, *linger_time != nt.linger_time),
        (DrainDelay, *drain_delay != nt.drain_delay),
        (UpstreamPool, *upstream_pool != new.upstream_pool),
        (Admin, *admin != new.admin),
        (AccessLog, *access_log != new.access_log),
    ];
    changed.extend(tls_changes(tls.as_ref(), new.tls.as_ref()));
    if let (Some(old), Some(new)) = (rate, &new.rate) {
        changed.extend(rate_changes(old, new));
    }
    changed
        .into_iter()
        .filter(|&(_, differs)| differs)
        .map(|(f, _)| f)
        .collect()
}

/// The rate limit's restart-only settings, each with whether it differs. The rates, the tiers file, the mode
/// and the `RateLimit` field are part of the policy; the key, the table, the fleet sync and the per-address
/// backstop are built into the limiter at start.
fn tls_changes(old: Option<&super::TlsConfig>, new: Option<&super::TlsConfig>) -> [(RestartOnly, bool); 8] {
    use RestartOnly::*;
    let (o, n) = (old.map(|t| &t.settings), new.map(|t| &t.settings));
    let differs = |f: &dyn Fn(&crate::tls::Settings) -> String| o.map(f) != n.map(f);
    [
        (TlsListen, old.map(|t| t.listen) != new.map(|t| t.listen)),
        (
            TlsCert,
            differs(&|s| format!("{:?}", s.pairs.iter().map(|p| &p.0).collect::<Vec<_>>())),
        ),
        (
            TlsKey,
            differs(&|s| format!("{:?}", s.pairs.iter().map(|p| &p.1).collect::<Vec<_>>())),
        ),
        (TlsCertDir, differs(&|s| format!("{:?}", s.dir))),
        (TlsDefaultCert, differs(&|s| format!("{:?}", s.default_cert))),
        (TlsStrictSni, differs(&|s| s.strict_sni.to_string())),
        (TlsMinVersion, differs(&|s| format!("{:?}", s.min_version))),
        (TlsExpiryWarn, differs(&|s| format!("{:?}", s.expiry_warn))),
    ]
}

fn rate_changes(old: &RateConfig, new: &RateConfig) -> [(RestartOnly, bool); 12] {
    use RestartOnly::*;
    let RateConfig {
        key,
        trust_forwarded_for,
        table_slots,
        redis_url,
        redis_sync,
        redis_cluster,
        redis_groups,
        redis_share_ppm,
        secret,
        ip,
        ip_rate,
        ip_burst,
        rate: _,
        burst: _,
        headers: _,
        mode: _,
        limits_path: _,
    } = old;
    [
        (UserKey, *key != new.key),
        (TrustForwardedFor, *trust_forwarded_for != new.trust_forwarded_for),
        (RateTableSlots, *table_slots != new.table_slots),
        (RedisUrl, *redis_url != new.redis_url),
        (RedisSync, *redis_sync != new.redis_sync),
        (RedisCluster, *redis_cluster != new.redis_cluster),
        (RedisGroups, *redis_groups != new.redis_groups),
        (RedisShare, *redis_share_ppm != new.redis_share_ppm),
        // The file's path, or the secret it holds.
        (SecretFile, !same_secret(secret, &new.secret)),
        (IpRate, *ip_rate != new.ip_rate),
        (IpBurst, *ip_burst != new.ip_burst),
        (IpRateExempt, exempt(ip) != exempt(&new.ip)),
    ]
}

fn same_secret(a: &Option<(String, Secret)>, b: &Option<(String, Secret)>) -> bool {
    match (a, b) {
        (Some((pa, sa)), Some((pb, sb))) => pa == pb && sa.0 == sb.0,
        (None, None) => true,
        _ => false,
    }
}

/// The blocks exempt from the per-address backstop (none when it is off).
fn exempt(ip: &Option<IpBackstop>) -> &[Cidr] {
    ip.as_ref().map_or(&[], |b| &b.exempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> Config {
        let mut argv = vec!["portcullis"];
        argv.extend_from_slice(extra);
        Config::parse_from(argv).unwrap()
    }

    #[test]
    fn nothing_changed_nothing_to_restart() {
        let c = config(&[]);
        assert!(restart_only_changes(&c, &c.clone()).is_empty());
    }

    #[test]
    fn policy_changes_apply_and_the_rest_is_listed_in_order() {
        // The per-address backstop's rates given (by default they follow --rate and --burst).
        let base = [
            "--ip-rate",
            "100",
            "--ip-burst",
            "100",
            "--ip-rate-exempt",
            "10.0.0.0/8",
        ];
        let old = config(&base);
        // Only what a reload applies: nothing to restart for.
        let reloadable = config(
            &[
                &base[..],
                &[
                    "--rate",
                    "20",
                    "--burst",
                    "40",
                    "--accept-rule",
                    "observe",
                    "--json-methods",
                    "POST",
                    "--log-level",
                    "debug",
                    "--docs-url",
                    "https://docs.example/e",
                    "--ratelimit-headers",
                ],
            ]
            .concat(),
        );
        assert_eq!(restart_only_changes(&old, &reloadable), []);
        let restart = config(
            &[
                &base[..],
                &[
                    "--user-key",
                    "ip",
                    "--workers",
                    "1023",
                    "--max-body",
                    "2MiB",
                    "--header-timeout",
                    "5s",
                    "--admin",
                    "127.0.0.1:9901",
                    "--rate",
                    "20",
                ],
            ]
            .concat(),
        );
        use RestartOnly::*;
        // `--user-key ip` turns the per-address backstop off: its exemptions went with it.
        assert_eq!(
            restart_only_changes(&old, &restart),
            [Workers, MaxBody, HeaderTimeout, Admin, UserKey, IpRateExempt]
        );
        // The rate limit turned off: its own settings are not compared (the reload refuses it whole).
        assert_eq!(restart_only_changes(&old, &config(&["--rate", "0"])), []);
    }

    #[test]
    fn every_setting_is_named_as_describe_names_it() {
        let text = config(&[]).describe();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, _)| k)
            .collect();
        let mut at = 0;
        for f in RestartOnly::ALL {
            let i = keys
                .iter()
                .position(|k| *k == f.flag())
                .unwrap_or_else(|| panic!("{f} is not a setting"));
            assert!(i >= at, "{f}: out of describe's order");
            at = i;
        }
    }
}
