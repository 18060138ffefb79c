//! Per-worker counters and the Prometheus text format.
//!
//! Each worker owns one cache-line-aligned block and is its only writer: increments are a plain load and
//! store (no locked read-modify-write, no sharing on the request path). The admin thread sums the blocks when
//! scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::problem::Reason;

/// Upper bounds of the request-duration histogram buckets, in microseconds.
pub const DURATION_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 10_000_000,
];

#[derive(Default)]
#[repr(align(128))]
pub struct WorkerMetrics {
    pub forwarded: AtomicU64,
    /// Requests the ingress answered itself, by `Reason` index.
    pub refused: Counters<{ Reason::ALL.len() }>,
    /// Forwarded requests an `observe` rule would have refused, by `Reason` index.
    pub observed: Counters<{ Reason::ALL.len() }>,
    /// Forwarded requests whose response was cut (upstream failure or timeout mid-body, client gone).
    pub aborted: AtomicU64,
    /// Responses by status class 1xx..5xx.
    pub status: [AtomicU64; 5],
    pub upstream_connect_failures: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub upstream_resets: AtomicU64,
    pub upstream_opened: AtomicU64,
    pub upstream_reused: AtomicU64,
    pub conns_accepted: AtomicU64,
    pub conns_closed: AtomicU64,
    pub duration: [AtomicU64; DURATION_BUCKETS_US.len() + 1],
    pub duration_sum_us: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub json_bytes: AtomicU64,
    /// Request fields not forwarded because their name holds `_` (`write::forward_head`).
    pub underscore_fields_dropped: AtomicU64,
    /// TLS handshakes that finished, of them resumed, and failed ones by [`TLS_FAILURES`] index.
    pub tls_handshakes_ok: AtomicU64,
    pub tls_resumed: AtomicU64,
    pub tls_failed: [AtomicU64; TLS_FAILURES.len()],
    /// TLS client connections accepted and closed (the open ones are the difference).
    pub tls_opened: AtomicU64,
    pub tls_closed: AtomicU64,
    /// WebSocket tunnels opened and closed (the open ones are the difference), and the bytes they relayed:
    /// client to upstream, upstream to client.
    pub tunnels_opened: AtomicU64,
    pub tunnels_closed: AtomicU64,
    pub tunnel_bytes_up: AtomicU64,
    pub tunnel_bytes_down: AtomicU64,
    /// PROXY protocol headers by [`PROXY_RESULTS`] index.
    pub proxy_headers: [AtomicU64; PROXY_RESULTS.len()],
}

/// A fixed array of counters (any length: `Default` for arrays stops at 32).
pub struct Counters<const N: usize>(pub [AtomicU64; N]);

impl<const N: usize> Default for Counters<N> {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl<const N: usize> std::ops::Deref for Counters<N> {
    type Target = [AtomicU64; N];
    fn deref(&self) -> &[AtomicU64; N] {
        &self.0
    }
}

/// Adds `n` to a counter this thread alone writes.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerMetrics {
    /// One finished request: its status, the reason if the ingress answered, its duration.
    pub fn request(&self, status: u16, reason: Option<Reason>, duration_us: u64) {
        match reason {
            Some(r) => add(&self.refused[r as usize], 1),
            None => add(&self.forwarded, 1),
        }
        if (100..600).contains(&status) {
            add(&self.status[(status / 100 - 1) as usize], 1);
        }
        let b = DURATION_BUCKETS_US
            .iter()
            .position(|&ub| duration_us <= ub)
            .unwrap_or(DURATION_BUCKETS_US.len());
        add(&self.duration[b], 1);
        add(&self.duration_sum_us, duration_us);
    }
}

/// Why a TLS handshake failed, as `portcullis_tls_handshakes_total{result="failed",reason=...}` names it:
/// no protocol version or cipher suite in common, no certificate for the name asked (strict SNI), a
/// malformed or unexpected message (plain HTTP on the TLS port among them), an alert from the client, the
/// client closing mid-handshake, the header timeout running out, anything else.
pub const TLS_FAILURES: [&str; 7] = [
    "incompatible",
    "no_certificate",
    "bad_message",
    "alert_received",
    "closed",
    "timeout",
    "other",
];

/// What became of a connection's PROXY protocol header, as
/// `portcullis_proxy_protocol_headers_total{result=...}` names it: a client address taken from it, a `LOCAL`
/// (or address-less) header that leaves the peer's address, a malformed header or the connection ending
/// before one was complete (closed without an answer), a connection from outside `--proxy-protocol-from`
/// (closed at once). A connection whose header did not come within `--header-timeout` is counted as
/// `timeout`.
pub const PROXY_RESULTS: [&str; 5] = ["ok", "local", "invalid", "untrusted", "timeout"];

/// Values read at scrape time from outside the workers.
pub struct Gauges {
    /// Reloads by result: ok, failed.
    pub reloads: [u64; 2],
    pub rate_table_live: Option<u64>,
    pub rate_evictions: Option<u64>,
    pub redis: Option<RedisGauges>,
    /// Access-log lines dropped because its writer was behind (`None` without an access log).
    pub access_log_dropped: Option<u64>,
    /// Each TLS certificate's name and expiry (Unix seconds), when a TLS listener is on.
    pub tls_certificates: Vec<(String, u64)>,
    /// The listeners expect a PROXY protocol header.
    pub proxy_protocol: bool,
    /// WebSocket tunnels are on (`--upgrade websocket`).
    pub tunnels: bool,
    /// Each upstream server's figures.
    pub upstreams: Vec<crate::pool::ServerStats>,
    /// Each pool's request durations: (name, buckets, sum in microseconds).
    pub pool_latency: Vec<(String, Vec<u64>, u64)>,
}

/// The fleet sync's state (see `crate::redis_sync::Stats`).
pub struct RedisGauges {
    pub up: u64,
    pub syncs_ok: u64,
    pub syncs_failed: u64,
    pub users: u64,
    pub sent_bytes: u64,
    pub last_duration_us: u64,
    pub last_users: u64,
    /// Admitted requests not reported to the fleet: sync failed, batch or journal full.
    pub unreported: u64,
    /// Admitted requests kept quiet: within the user's share on this node (`--redis-share`).
    pub quiet: u64,
}

fn sum(blocks: &[WorkerMetrics], f: impl Fn(&WorkerMetrics) -> &AtomicU64) -> u64 {
    blocks.iter().map(|b| f(b).load(Relaxed)).sum()
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The Prometheus text exposition (version 0.0.4) of the summed blocks.
pub fn render(blocks: &[WorkerMetrics], g: &Gauges) -> String {
    let mut o = String::with_capacity(8192);
    family(
        &mut o,
        "portcullis_requests_total",
        "counter",
        "Requests by outcome: forwarded, refused by the ingress (with the reason), aborted mid-response; observed: forwarded requests an observe rule would have refused (also counted as forwarded).",
    );
    let _ = writeln!(
        o,
        "portcullis_requests_total{{outcome=\"forwarded\"}} {}",
        sum(blocks, |b| &b.forwarded)
    );
    for r in Reason::ALL {
        // Reasons that share a wire code (the two `too_many_tunnels`) are one series.
        if Reason::ALL
            .iter()
            .take_while(|&&o| o != r)
            .any(|o| o.code() == r.code())
        {
            continue;
        }
        let n: u64 = Reason::ALL
            .iter()
            .filter(|o| o.code() == r.code())
            .map(|&o| sum(blocks, |b| &b.refused[o as usize]))
            .sum();
        let _ = writeln!(
            o,
            "portcullis_requests_total{{outcome=\"refused\",reason=\"{}\"}} {n}",
            r.code()
        );
    }
    for r in Reason::ALL {
        let n = sum(blocks, |b| &b.observed[r as usize]);
        if n > 0 || r.is_policy() {
            let _ = writeln!(
                o,
                "portcullis_requests_total{{outcome=\"observed\",reason=\"{}\"}} {n}",
                r.code()
            );
        }
    }
    let _ = writeln!(
        o,
        "portcullis_requests_total{{outcome=\"aborted\"}} {}",
        sum(blocks, |b| &b.aborted)
    );
    family(
        &mut o,
        "portcullis_responses_total",
        "counter",
        "Responses sent to clients by status class.",
    );
    for c in 0..5 {
        let _ = writeln!(
            o,
            "portcullis_responses_total{{class=\"{}xx\"}} {}",
            c + 1,
            sum(blocks, |b| &b.status[c])
        );
    }
    for (name, help, f) in [
        (
            "portcullis_upstream_connect_failures_total",
            "Upstream connections refused or failed.",
            (|b: &WorkerMetrics| &b.upstream_connect_failures) as fn(&WorkerMetrics) -> &AtomicU64,
        ),
        (
            "portcullis_upstream_timeouts_total",
            "Upstream connect or response timeouts.",
            |b| &b.upstream_timeouts,
        ),
        (
            "portcullis_upstream_resets_total",
            "Upstream connections closed or reset before or during a response.",
            |b| &b.upstream_resets,
        ),
        (
            "portcullis_upstream_connections_opened_total",
            "New upstream connections.",
            |b| &b.upstream_opened,
        ),
        (
            "portcullis_upstream_connections_reused_total",
            "Requests sent on a pooled upstream connection.",
            |b| &b.upstream_reused,
        ),
        (
            "portcullis_client_connections_accepted_total",
            "Client connections accepted.",
            |b| &b.conns_accepted,
        ),
        (
            "portcullis_received_bytes_total",
            "Request bytes received from clients (heads and bodies).",
            |b| &b.bytes_in,
        ),
        ("portcullis_sent_bytes_total", "Response bytes sent to clients.", |b| {
            &b.bytes_out
        }),
        (
            "portcullis_json_validated_bytes_total",
            "Request body bytes validated as JSON.",
            |b| &b.json_bytes,
        ),
        (
            "portcullis_underscore_fields_dropped_total",
            "Request fields not forwarded because their name holds an underscore.",
            |b| &b.underscore_fields_dropped,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {}", sum(blocks, f));
    }
    family(
        &mut o,
        "portcullis_client_connections_open",
        "gauge",
        "Client connections open now.",
    );
    let open = sum(blocks, |b| &b.conns_accepted).saturating_sub(sum(blocks, |b| &b.conns_closed));
    let _ = writeln!(o, "portcullis_client_connections_open {open}");
    if !g.tls_certificates.is_empty() {
        family(
            &mut o,
            "portcullis_tls_handshakes_total",
            "counter",
            "TLS handshakes by result: ok, or failed with a reason.",
        );
        let ok = sum(blocks, |b| &b.tls_handshakes_ok);
        let _ = writeln!(o, "portcullis_tls_handshakes_total{{result=\"ok\"}} {ok}");
        for (i, r) in TLS_FAILURES.iter().enumerate() {
            let n = sum(blocks, |b| &b.tls_failed[i]);
            let _ = writeln!(
                o,
                "portcullis_tls_handshakes_total{{result=\"failed\",reason=\"{r}\"}} {n}"
            );
        }
        family(
            &mut o,
            "portcullis_tls_resumed_handshakes_total",
            "counter",
            "TLS handshakes that resumed a session (ticket or cache).",
        );
        let _ = writeln!(
            o,
            "portcullis_tls_resumed_handshakes_total {}",
            sum(blocks, |b| &b.tls_resumed)
        );
        family(
            &mut o,
            "portcullis_tls_connections_open",
            "gauge",
            "TLS client connections open now.",
        );
        let open = sum(blocks, |b| &b.tls_opened).saturating_sub(sum(blocks, |b| &b.tls_closed));
        let _ = writeln!(o, "portcullis_tls_connections_open {open}");
        family(
            &mut o,
            "portcullis_tls_certificate_expiry_seconds",
            "gauge",
            "When each TLS certificate in force expires (notAfter), in Unix seconds.",
        );
        for (name, at) in &g.tls_certificates {
            let name = name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(o, "portcullis_tls_certificate_expiry_seconds{{name=\"{name}\"}} {at}");
        }
    }
    if !g.upstreams.is_empty() {
        let label = |s: &crate::pool::ServerStats| {
            let q = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
            format!("pool=\"{}\",server=\"{}\"", q(&s.pool), q(&s.server))
        };
        family(
            &mut o,
            "portcullis_upstream_requests_total",
            "counter",
            "Requests sent to each upstream server, by the class of its answer (failed: no answer).",
        );
        for s in &g.upstreams {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx", "failed"].iter().enumerate() {
                let _ = writeln!(
                    o,
                    "portcullis_upstream_requests_total{{{},class=\"{class}\"}} {}",
                    label(s),
                    s.requests[i]
                );
            }
        }
        family(
            &mut o,
            "portcullis_upstream_healthy",
            "gauge",
            "1 while the server takes requests, 0 while it is ejected.",
        );
        for s in &g.upstreams {
            let _ = writeln!(o, "portcullis_upstream_healthy{{{}}} {}", label(s), u8::from(s.healthy));
        }
        family(
            &mut o,
            "portcullis_upstream_ejections_total",
            "counter",
            "Passive-health ejections of each server.",
        );
        for s in &g.upstreams {
            let _ = writeln!(o, "portcullis_upstream_ejections_total{{{}}} {}", label(s), s.ejections);
        }
        family(
            &mut o,
            "portcullis_upstream_outstanding",
            "gauge",
            "Requests in flight to each server.",
        );
        for s in &g.upstreams {
            let _ = writeln!(o, "portcullis_upstream_outstanding{{{}}} {}", label(s), s.outstanding);
        }
    }
    if !g.pool_latency.is_empty() {
        family(
            &mut o,
            "portcullis_upstream_request_duration_seconds",
            "histogram",
            "Per pool: from an upstream connection given to a request to its release (the upstream's part).",
        );
        for (name, buckets, sum) in &g.pool_latency {
            let name = name.replace('\\', "\\\\").replace('"', "\\\"");
            let mut cum = 0;
            for (i, ub) in DURATION_BUCKETS_US.iter().enumerate() {
                cum += buckets[i];
                let _ = writeln!(
                    o,
                    "portcullis_upstream_request_duration_seconds_bucket{{pool=\"{name}\",le=\"{}\"}} {cum}",
                    *ub as f64 / 1e6
                );
            }
            cum += buckets[DURATION_BUCKETS_US.len()];
            let _ = writeln!(
                o,
                "portcullis_upstream_request_duration_seconds_bucket{{pool=\"{name}\",le=\"+Inf\"}} {cum}"
            );
            let _ = writeln!(
                o,
                "portcullis_upstream_request_duration_seconds_sum{{pool=\"{name}\"}} {}",
                *sum as f64 / 1e6
            );
            let _ = writeln!(
                o,
                "portcullis_upstream_request_duration_seconds_count{{pool=\"{name}\"}} {cum}"
            );
        }
    }
    if g.tunnels {
        family(
            &mut o,
            "portcullis_tunnels_open",
            "gauge",
            "WebSocket tunnels open now.",
        );
        let open = sum(blocks, |b| &b.tunnels_opened).saturating_sub(sum(blocks, |b| &b.tunnels_closed));
        let _ = writeln!(o, "portcullis_tunnels_open {open}");
        family(
            &mut o,
            "portcullis_tunnels_opened_total",
            "counter",
            "WebSocket tunnels opened (upstream answered 101).",
        );
        let _ = writeln!(
            o,
            "portcullis_tunnels_opened_total {}",
            sum(blocks, |b| &b.tunnels_opened)
        );
        family(
            &mut o,
            "portcullis_tunnel_bytes_total",
            "counter",
            "Bytes relayed through WebSocket tunnels, by direction.",
        );
        let _ = writeln!(
            o,
            "portcullis_tunnel_bytes_total{{direction=\"client_to_upstream\"}} {}",
            sum(blocks, |b| &b.tunnel_bytes_up)
        );
        let _ = writeln!(
            o,
            "portcullis_tunnel_bytes_total{{direction=\"upstream_to_client\"}} {}",
            sum(blocks, |b| &b.tunnel_bytes_down)
        );
    }
    if g.proxy_protocol {
        family(
            &mut o,
            "portcullis_proxy_protocol_headers_total",
            "counter",
            "PROXY protocol headers by result: ok, local, invalid, untrusted (source), timeout.",
        );
        for (i, r) in PROXY_RESULTS.iter().enumerate() {
            let n = sum(blocks, |b| &b.proxy_headers[i]);
            let _ = writeln!(o, "portcullis_proxy_protocol_headers_total{{result=\"{r}\"}} {n}");
        }
    }
    family(
        &mut o,
        "portcullis_request_duration_seconds",
        "histogram",
        "Time from a complete request head to the end of the answer.",
    );
    let mut cum = 0;
    for (i, ub) in DURATION_BUCKETS_US.iter().enumerate() {
        cum += sum(blocks, |b| &b.duration[i]);
        let _ = writeln!(
            o,
            "portcullis_request_duration_seconds_bucket{{le=\"{}\"}} {cum}",
            *ub as f64 / 1e6
        );
    }
    cum += sum(blocks, |b| &b.duration[DURATION_BUCKETS_US.len()]);
    let _ = writeln!(o, "portcullis_request_duration_seconds_bucket{{le=\"+Inf\"}} {cum}");
    let _ = writeln!(
        o,
        "portcullis_request_duration_seconds_sum {}",
        sum(blocks, |b| &b.duration_sum_us) as f64 / 1e6
    );
    let _ = writeln!(o, "portcullis_request_duration_seconds_count {cum}");
    if let Some(n) = g.access_log_dropped {
        family(
            &mut o,
            "portcullis_access_log_dropped_lines_total",
            "counter",
            "Access-log lines dropped because the log's writer was behind (a slow or stalled file).",
        );
        let _ = writeln!(o, "portcullis_access_log_dropped_lines_total {n}");
    }
    if let (Some(live), Some(ev)) = (g.rate_table_live, g.rate_evictions) {
        family(
            &mut o,
            "portcullis_rate_limit_table_live_slots",
            "gauge",
            "Rate-limit table slots holding a live schedule.",
        );
        let _ = writeln!(o, "portcullis_rate_limit_table_live_slots {live}");
        family(
            &mut o,
            "portcullis_rate_limit_evictions_total",
            "counter",
            "Live rate-limit slots evicted because their bucket was full.",
        );
        let _ = writeln!(o, "portcullis_rate_limit_evictions_total {ev}");
    }
    family(
        &mut o,
        "portcullis_reloads_total",
        "counter",
        "Policy reloads (SIGHUP) by result; a failed one leaves the old policy in force.",
    );
    let _ = writeln!(o, "portcullis_reloads_total{{result=\"ok\"}} {}", g.reloads[0]);
    let _ = writeln!(o, "portcullis_reloads_total{{result=\"failed\"}} {}", g.reloads[1]);
    if let Some(r) = &g.redis {
        family(
            &mut o,
            "portcullis_redis_up",
            "gauge",
            "1 while the fleet-wide limit syncs with Redis; 0 while each node limits on its own.",
        );
        let _ = writeln!(o, "portcullis_redis_up {}", r.up);
        family(
            &mut o,
            "portcullis_redis_syncs_total",
            "counter",
            "Syncs with Redis that carried users, by result.",
        );
        let _ = writeln!(o, "portcullis_redis_syncs_total{{result=\"ok\"}} {}", r.syncs_ok);
        let _ = writeln!(
            o,
            "portcullis_redis_syncs_total{{result=\"failed\"}} {}",
            r.syncs_failed
        );
        for (name, kind, help, v) in [
            (
                "portcullis_redis_synced_users_total",
                "counter",
                "Users sent to Redis (one per user and sync).",
                r.users,
            ),
            (
                "portcullis_redis_sent_bytes_total",
                "counter",
                "Bytes of sync commands sent to Redis.",
                r.sent_bytes,
            ),
            (
                "portcullis_redis_unreported_requests_total",
                "counter",
                "Admitted requests not counted fleet-wide (Redis down, batch or journal full).",
                r.unreported,
            ),
            (
                "portcullis_redis_quiet_requests_total",
                "counter",
                "Admitted requests kept within the user's share on this node when made (--redis-share; a bucket that overflows later reports what it held).",
                r.quiet,
            ),
            (
                "portcullis_redis_last_sync_users",
                "gauge",
                "Users carried by the last successful sync.",
                r.last_users,
            ),
        ] {
            family(&mut o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(
            &mut o,
            "portcullis_redis_last_sync_seconds",
            "gauge",
            "Duration of the last successful sync.",
        );
        let _ = writeln!(
            o,
            "portcullis_redis_last_sync_seconds {}",
            r.last_duration_us as f64 / 1e6
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_and_cumulative_buckets() {
        let blocks = [WorkerMetrics::default(), WorkerMetrics::default()];
        blocks[0].request(200, None, 150);
        blocks[1].request(406, Some(Reason::AcceptHeaderMissing), 50);
        blocks[1].request(200, None, 2_000_000);
        let text = render(
            &blocks,
            &Gauges {
                reloads: [0, 0],
                rate_table_live: Some(3),
                rate_evictions: Some(0),
                redis: None,
                access_log_dropped: None,
                tls_certificates: Vec::new(),
                proxy_protocol: false,
                tunnels: false,
                upstreams: Vec::new(),
                pool_latency: Vec::new(),
            },
        );
        assert!(text.contains("portcullis_requests_total{outcome=\"forwarded\"} 2\n"));
        assert!(text.contains("portcullis_requests_total{outcome=\"refused\",reason=\"accept_header_missing\"} 1\n"));
        assert!(text.contains("portcullis_responses_total{class=\"2xx\"} 2\n"));
        assert!(text.contains("portcullis_responses_total{class=\"4xx\"} 1\n"));
        assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"0.00025\"} 2\n"));
        assert!(text.contains("portcullis_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("portcullis_rate_limit_table_live_slots 3\n"));
    }
}
