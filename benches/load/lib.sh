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
