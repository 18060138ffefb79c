#!/usr/bin/env bash
# Whole-binary cost of JSON validation: POST of a 1 KB JSON body through two portcullis instances in front of
# the same upstream, one validating (default) and one with `--json-methods ''`, in alternating rounds.
#
#   bash benches/load/json.sh            # ROUNDS=5 DURATION=6 CONNS=64
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-6}
CONNS=${CONNS:-64}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
cargo build --release --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); ON=$(free_port); OFF=$(free_port)
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s; client_body_buffer_size 64k;
  server { listen 127.0.0.1:$UP backlog=4096; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
./target/release/portcullis --listen 127.0.0.1:$ON --upstream 127.0.0.1:$UP --workers 1 2>/dev/null & pids+=($!)
./target/release/portcullis --listen 127.0.0.1:$OFF --upstream 127.0.0.1:$UP --workers 1 --json-methods '' 2>/dev/null & pids+=($!)
for p in $UP $ON $OFF; do for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done; done
for p in $ON $OFF; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H 'Content-Type: application/json' \
    --data-binary @benches/load/body-1k.json "http://127.0.0.1:$p/")
  [ "$code" = 200 ] || { echo "port $p answered $code" >&2; exit 1; }
done
for r in $(seq "$ROUNDS"); do
  for name in validating off; do
    port=$ON; [ $name = off ] && port=$OFF
    rps=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" -s benches/load/post.lua "http://127.0.0.1:$port/" | awk '/Requests\/sec/ {print $2}')
    echo -e "$name\t$rps" | tee -a "$work/r.tsv" >&2
  done
done
python3 - "$work/r.tsv" <<'PY'
import sys, statistics as st
rows=[l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
m={k: st.median(float(r) for n, r in rows if n == k) for k in ('validating','off')}
print(f"validating {m['validating']:.0f} req/s, off {m['off']:.0f} req/s, ratio {m['validating']/m['off']:.3f}")
PY
