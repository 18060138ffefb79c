# Shared by the load and soak scripts (sourced after `cd` to the repository root): free ports, readiness, and
# the upstream they all put behind the proxies (nginx answering 200 "ok" itself).

# The load generator is one address standing for 100 000 users: the per-address limit stays on (its table
# decision is part of what is measured) but out of reach. Without this it refuses past 10 x --rate per second.
ONE_ADDRESS_MANY_USERS="--ip-rate 10000000 --ip-burst 10000000"

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Until something accepts on 127.0.0.1:PORT (10 s at most), else exits the script.
wait_port() {
  for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2; exit 1
}

# ok_upstream_conf DIR PORT [WORKER_CONNECTIONS] [HTTP_DIRECTIVES]: writes DIR/nginx.conf for one nginx worker
# answering 200 "ok" on 127.0.0.1:PORT, keep-alive without limit (run: nginx -c DIR/nginx.conf -p DIR).
ok_upstream_conf() {
  cat > "$1/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $1/nginx.pid; error_log stderr error;
events { worker_connections ${3:-4096}; }
http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s; ${4:-}
  server { listen 127.0.0.1:$2 backlog=4096; location / { return 200 "ok\n"; } } }
CONF
}

# policy_nginx_conf DIR UPSTREAM_PORT "LISTEN DIRECTIVES": writes DIR/nginx.conf for nginx doing the job the
# comparisons ask of every proxy (Accept required: 406; POST/PATCH need Content-Type: application/json: 415;
# 10 requests/s per Authorization value, burst 10: 429), one worker, in front of 127.0.0.1:UPSTREAM_PORT. The
# listen directives (and any TLS settings) go in the server block as given.
policy_nginx_conf() {
  cat > "$1/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $1/nginx.pid; error_log stderr error;
worker_rlimit_nofile 20000;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s; client_body_buffer_size 128k;
  client_max_body_size 1m;
  map \$http_accept \$no_accept { "" 1; default 0; }
  map "\$request_method:\$content_type" \$bad_ct { "~^(POST|PATCH):application/json(\\s*;.*)?\$" 0; "~^(POST|PATCH):" 1; default 0; }
  limit_req_zone \$http_authorization zone=users:32m rate=10r/s;
  limit_req_status 429; limit_req_log_level info;
  upstream up { server 127.0.0.1:$2; keepalive 1024; keepalive_requests 1000000000; }
  server { $3
    location / {
      if (\$no_accept) { return 406; }
      if (\$bad_ct) { return 415; }
      limit_req zone=users burst=10 nodelay;
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
CONF
}

# policy_haproxy_cfg FILE UPSTREAM_PORT "BIND LINE" ["GLOBAL LINES"]: the same job for HAProxy (HTTP mode, one
# thread, a stick table for the per-user rate).
policy_haproxy_cfg() {
  cat > "$1" <<CONF
global
  nbthread 1
  maxconn 9000
  ${4:-}
defaults
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend fe
  mode http
  $3
  option forwardfor
  stick-table type string len 64 size 200k expire 10s store http_req_rate(1s)
  http-request return status 406 content-type application/problem+json string '{"status":406}' unless { req.hdr(accept) -m found }
  http-request return status 415 content-type application/problem+json string '{"status":415}' if { method POST PATCH } !{ req.hdr(content-type) -m reg ^application/json(\s*;.*)?\$ }
  http-request track-sc0 req.hdr(authorization)
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 10 }
  default_backend be
backend be
  mode http
  http-reuse always
  server s1 127.0.0.1:$2
CONF
}

# A redis-server on a free port, persistence off: sets RP (its port) and RPID (its pid) once it answers.
start_redis() {
  command -v redis-server >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  }
  RP=$(free_port)
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null &
  RPID=$!
  for _ in $(seq 100); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
}
