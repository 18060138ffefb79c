complete -c portcullis -l listen -d 'Address to accept plain-HTTP clients on (\'\' for none, with --tls-listen)' -r
complete -c portcullis -l tls-listen -d 'Address to accept TLS clients on (next to, or instead of, --listen); needs certificates' -r
complete -c portcullis -l tls-cert -d 'A certificate chain (PEM, the leaf first) for the TLS listener (repeatable, each with its --tls-key, in order); chosen by SNI among the DNS names of its SANs' -r
complete -c portcullis -l tls-key -d 'The private key (PEM: ECDSA P-256/P-384, Ed25519 or RSA) of the --tls-cert at the same position' -r
complete -c portcullis -l tls-cert-dir -d 'A directory of certificates: each NAME.crt with its NAME.key' -r
complete -c portcullis -l tls-default-cert -d 'The certificate for a client without SNI or naming no configured name: NAME of NAME.crt, or the first SAN of a --tls-cert (default: the first certificate)' -r
complete -c portcullis -l tls-min-version -d 'The lowest TLS version accepted: 1.2 or 1.3' -r
complete -c portcullis -l tls-expiry-warn -d 'Log a certificate that expires within this, at start and at each reload' -r
complete -c portcullis -l proxy-protocol -d 'Expect a PROXY protocol header (v1, v2 or any) at the start of every client connection, on the plain and the TLS listener (behind an L4 load balancer): the client address it carries replaces the peer\'s. Off by default; needs --proxy-protocol-from' -r
complete -c portcullis -l proxy-protocol-from -d 'The load balancers allowed to send PROXY protocol headers: an address or CIDR block (repeatable); a connection from anywhere else is closed at once' -r
complete -c portcullis -l upgrade -d 'Protocol upgrades relayed as tunnels: `websocket` (an upstream\'s 101 to a WebSocket handshake turns the connection into a byte tunnel both ways), or \'\' (off: Upgrade fields are removed)' -r
complete -c portcullis -l tunnel-idle-timeout -d 'A tunnel with no byte either way for this long is closed' -r
complete -c portcullis -l tunnel-half-close-timeout -d 'After one side of a tunnel ended (its FIN), how long the other side may still send' -r
complete -c portcullis -l max-tunnels -d 'Tunnels open at once in the process (at most --max-connections); past it a handshake gets 503' -r
complete -c portcullis -l max-tunnels-per-user -d 'Tunnels one user (the rate limit\'s user, else the client address) may have open; past it, 429' -r
complete -c portcullis -l upstream -d 'Upstream servers: HOST:PORT (the pool named `default`), or NAME=HOST:PORT[,HOST:PORT...] (a named pool; repeatable); `HOST:PORT@W` gives a server weight W. Without any, a built-in echo upstream runs inside the process' -r
complete -c portcullis -l route -d 'A route to a pool (repeatable): [version:V,][prefix:/P,]POOL, e.g. version:v2,backend-v2 or prefix:/billing/,billing. Precedence: version and prefix, version, longest prefix, then `default`' -r
complete -c portcullis -l balance -d 'How a pool spreads its requests (repeatable): NAME=p2c|round-robin|hash (default p2c)' -r
complete -c portcullis -l dns-refresh -d 'How often upstream servers given by name are resolved again (off the request path; a failed or empty answer keeps the last good address); 0 turns it off' -r
complete -c portcullis -l health -d 'Check a pool\'s servers actively (repeatable): NAME=/path, a GET every --health-interval; any 2xx passes' -r
complete -c portcullis -l health-interval -d 'How often each checked server is checked' -r
complete -c portcullis -l health-timeout -d 'A check not answered within this fails' -r
complete -c portcullis -l health-rise -d 'Passed checks in a row that bring a server back (and end a passive ejection early)' -r
complete -c portcullis -l health-fall -d 'Failed checks in a row that take a server out' -r
complete -c portcullis -l eject-after -d 'Consecutive failures (connect failures, timeouts, 502/503/504 answers) that eject a server' -r
complete -c portcullis -l eject-time -d 'How long an ejected server gets no request (doubling with each repeated ejection, at most 5m)' -r
complete -c portcullis -l eject-max-percent -d 'The most of a pool\'s servers ejected at once, in percent' -r
complete -c portcullis -l panic-threshold -d 'Below this percentage of healthy servers a pool uses all of them as if healthy (0: a pool with no healthy server answers 503 no_healthy_upstream)' -r
complete -c portcullis -l retries -d 'Retries of a request on another server: after a connect failure (any method), or a reset before any response byte (idempotent methods only); never after a timeout' -r
complete -c portcullis -l workers -d 'Worker threads, each with its own event loop and listener (0 = one per core)' -r
complete -c portcullis -l max-head -d 'Largest request head (request line and fields); larger is refused with 431 (414 for the line alone)' -r
complete -c portcullis -l max-headers -d 'Most header fields in a request; more is refused with 431 (at most 512)' -r
complete -c portcullis -l max-body -d 'Largest request body; larger is refused with 413' -r
complete -c portcullis -l max-connections -d 'Most client connections open at once in the process; past it the ingress stops accepting' -r
complete -c portcullis -l header-timeout -d 'Time a client has to send a complete request head (408 after it)' -r
complete -c portcullis -l body-timeout -d 'Time a client has to send a complete request body, and to read a response (408 / close)' -r
complete -c portcullis -l idle-timeout -d 'How long an idle keep-alive client connection is kept' -r
complete -c portcullis -l upstream-connect-timeout -d 'Time allowed to connect to the upstream (504 after it)' -r
complete -c portcullis -l upstream-timeout -d 'Time allowed for the upstream\'s first response byte, and between its reads (504 / close)' -r
complete -c portcullis -l upstream-pool -d 'Idle upstream connections kept open per worker for reuse' -r
complete -c portcullis -l linger-timeout -d 'After a refusal that closes the connection, how long the client may go without sending before the ingress stops reading (and dropping) what it still sends and closes' -r
complete -c portcullis -l linger-time -d 'After a refusal that closes the connection, the longest the ingress keeps reading (and dropping) what the client still sends, so that the client reads the answer instead of a reset' -r
complete -c portcullis -l drain-delay -d 'After SIGTERM/SIGINT/SIGQUIT, how long `/readyz` answers 503 while the ingress still accepts, before it stops accepting (give the load balancer time to take the node out, e.g. 5s)' -r
complete -c portcullis -l shutdown-timeout -d 'After SIGTERM/SIGINT/SIGQUIT (and the drain delay), how long in-flight requests may take before the process exits anyway (exit 3)' -r
complete -c portcullis -l docs-url -d 'Base URL of the troubleshooting docs; each error\'s `type` is this URL plus `#reason`' -r
complete -c portcullis -l contact -d 'Where users ask for a higher rate (a URL or an address), named in the 429 answers' -r
complete -c portcullis -l accept -d 'An API media type the Accept header may name (repeatable), e.g. application/vnd.acme.v2+json. Without any, every request needs a well-formed, non-empty Accept' -r
complete -c portcullis -l version-header -d 'Header that carries the matched API version (e.g. `v2`) upstream; the client\'s own copy is removed' -r
complete -c portcullis -l json-methods -d 'Methods whose body must be JSON with a JSON Content-Type (comma-separated; \'\' turns the rules off)' -r
complete -c portcullis -l json-allow-empty -d 'Let a JSON method\'s request without a body (no body, `Content-Length: 0`, or an empty chunked body) pass the Content-Type and JSON rules (true/false, 1/0)' -r -f -a "true\t''
false\t''"
complete -c portcullis -l json-decode -d 'Content codings a JSON body may be sent in (comma-separated: gzip, deflate; \'\' = none): such bodies are decoded to be validated and forwarded as sent. Others are refused with 415' -r
complete -c portcullis -l max-decode-ratio -d 'Most bytes a coded body may decode to per byte sent (past it: 413, a decompression bomb)' -r
complete -c portcullis -l max-json-depth -d 'Deepest nesting of JSON objects and arrays accepted in a body' -r
complete -c portcullis -l rate -d 'Requests per second per user (0 turns the limit off)' -r
complete -c portcullis -l burst -d 'Requests a user may send back to back after idling (default: the rate)' -r
complete -c portcullis -l user-key -d 'Who the user is: `authorization` (the Authorization value, else the client IP), `header:NAME` (that field\'s value, else the client IP), or `ip`' -r
complete -c portcullis -l trust-forwarded-for -d 'Take the client IP from the N-th last X-Forwarded-For hop (behind N trusted proxies; 0: the peer)' -r
complete -c portcullis -l redis-url -d 'Make the per-user limit fleet-wide through this Redis: redis://[user:password@]host:port[/db] (off: each node limits on its own)' -r
complete -c portcullis -l redis-sync -d 'How often the fleet-wide limit syncs with Redis' -r
complete -c portcullis -l redis-cluster -d 'Make the per-user limit fleet-wide through this Redis Cluster: seed nodes, redis://[user:password@]host:port[,redis://host:port...] (exclusive with --redis-url)' -r
complete -c portcullis -l redis-groups -d 'Hash-tag groups the fleet\'s users are spread over (one script call per group and sync; the same on every node)' -r
complete -c portcullis -l redis-share -d 'The share of each user\'s rate and burst a node may admit without reporting it to Redis (0: report every admission; at most 1 / the number of nodes)' -r
complete -c portcullis -l secret-file -d 'A file holding at least 32 bytes of secret (the same on every node): user ids (the fleet\'s Redis keys, the access log\'s `user`) are keyed with it. Required with --redis-url' -r
complete -c portcullis -l ip-rate -d 'Requests per second per client address, whatever credential they carry (0 = off; default: 10 x --rate). Not applied with --user-key ip or to users of a --limits tier' -r
complete -c portcullis -l ip-burst -d 'Requests one client address may send back to back (default: 10 x --burst)' -r
complete -c portcullis -l ip-rate-exempt -d 'An address or CIDR block the per-address limit does not apply to (repeatable), e.g. a known NAT gateway' -r
complete -c portcullis -l rate-table-slots -d 'Slots of the process-wide rate-limit table (8 bytes each; fixed at start)' -r
complete -c portcullis -l config -d 'Settings file (TOML, one key per flag\'s long name). Precedence: file < environment < flags' -r
complete -c portcullis -l log-level -d 'Process log level on stderr: error, warn, info, or debug' -r
complete -c portcullis -l access-log -d 'Access log: a file path, or `-` for stdout (JSON lines; off by default)' -r
complete -c portcullis -l admin -d 'Address of the admin listener (/metrics, /healthz, /readyz), e.g. 127.0.0.1:9901; off by default' -r
complete -c portcullis -l accept-rule -d 'The Accept rule: enforce (refuse), observe (forward; count and log what it would refuse), or off' -r
complete -c portcullis -l content-type-rule -d 'The Content-Type rule (JSON methods): enforce, observe, or off' -r
complete -c portcullis -l json-rule -d 'The JSON body rule: enforce, observe, or off' -r
complete -c portcullis -l rate-rule -d 'The per-user rate limit rule: enforce, observe, or off' -r
complete -c portcullis -l observe-header -d 'Tell the upstream what an `observe` rule would have refused, in this request header (the client\'s own copy is removed); off by default' -r
complete -c portcullis -l request-id-header -d 'Give every request an id in this header (usually X-Request-Id): sent upstream, returned on every response (problem+json answers carry it as `request_id`) and logged; a generated id is 32 lowercase hex digits (128 random bits). Off by default' -r
complete -c portcullis -l limits -d 'Per-user limits: a TOML file of named tiers (rate, burst, users); see docs/rate-limit.md' -r
complete -c portcullis -l tls-strict-sni -d 'Refuse the handshake of a client without SNI or naming no configured name (instead of the default)'
complete -c portcullis -l check-config -d 'Validate the configuration, print the effective settings, and exit (0 valid, 1 invalid)'
complete -c portcullis -l trust-request-id -d 'Keep the client\'s own request id when it is valid (1-128 bytes of A-Z a-z 0-9 . _ : -) instead of generating one (in the environment: true/false, 1/0, yes/no, on/off)'
complete -c portcullis -l ratelimit-headers -d 'Also add the `RateLimit` field (remaining quota) to every forwarded response (in the environment: true/false, 1/0, yes/no, on/off)'
complete -c portcullis -s h -l help -d 'Print help'
complete -c portcullis -s V -l version -d 'Print version'
