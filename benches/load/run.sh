#!/usr/bin/env bash
# Whole-binary load benchmark: portcullis, nginx and HAProxy (one worker / thread each) as reverse proxies in
# front of the same upstream, measured in alternating rounds with wrk on loopback.
#
#   bash benches/load/run.sh                 # 5 rounds of 10 s each per proxy
#   ROUNDS=3 DURATION=5 CONNS=64 bash benches/load/run.sh
#
# The order of the proxies rotates from round to round. Prints, per proxy, the median requests/s and CPU microseconds per request (user and system, from
# /proc/PID/stat of every process of that proxy), and the ratios against the best peer.
# Bounded: ROUNDS x 3 proxies x DURATION seconds of load, loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PATH_Q=${PATH_Q:-/}
# The peers here neither limit rates nor check Accept: portcullis runs with its limit off (--rate 0) and
# every request carries an Accept header, so all three do the same job (issue 8 adds the full-policy runs).
EXTRA_PORTCULLIS_ARGS=${EXTRA_PORTCULLIS_ARGS:---rate 0}
# PIN=1 (default on machines with 2+ cores): the proxies run on CPU 1, wrk and the upstream on CPU 0, so the
# proxy under test has a core of its own and the scheduler's placement of three busy processes on two cores
# does not decide the ranking. PIN=0 lets the scheduler place everything.
PIN=${PIN:-1}
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
  ON_GEN="taskset -c 0"; ON_PROXY="taskset -c 1"
else
  ON_GEN=""; ON_PROXY=""
fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT

UP=$(free_port); P_PORT=$(free_port); N_PORT=$(free_port); H_PORT=$(free_port)

# The upstream: nginx answering 200 "ok" itself, one worker, keep-alive without limit.
mkdir -p "$work/up" "$work/px"
ok_upstream_conf "$work/up" "$UP"
$ON_GEN nginx -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)

# nginx as the reverse proxy.
cat > "$work/px/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/px/nginx.pid; error_log stderr error;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000000; keepalive_timeout 300s;
  upstream up { server 127.0.0.1:$UP; keepalive 1024; keepalive_requests 1000000000; }
  server { listen 127.0.0.1:$N_PORT backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_buffering on; } } }
CONF
$ON_PROXY nginx -c "$work/px/nginx.conf" -p "$work/px" & pids+=($!)

# HAProxy, one thread, HTTP mode with server-side keep-alive reuse.
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:$H_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$UP
CONF
$ON_PROXY haproxy -f "$work/haproxy.cfg" -db & pids+=($!)

# shellcheck disable=SC2086
$ON_PROXY ./target/release/portcullis --listen 127.0.0.1:$P_PORT --upstream 127.0.0.1:$UP --workers 1 $EXTRA_PORTCULLIS_ARGS 2>"$work/portcullis.log" &
pids+=($!)
PORTCULLIS_PID=$!

for p in $UP $P_PORT $N_PORT $H_PORT; do wait_port "$p"; done

# PIDs whose CPU counts for each proxy (nginx: master and workers).
proxy_pids() {
  case $1 in
    portcullis) echo "$PORTCULLIS_PID" ;;
    nginx) m=$(cat "$work/px/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    haproxy) pgrep -f "haproxy -f $work/haproxy.cfg" | tr '\n' ' ' ;;
  esac
}
cpu_ticks() { # user system, summed
  local u=0 s=0
  for p in $1; do read -r uu ss < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u+uu)); s=$((s+ss)); done
  echo "$u $s"
}
port_of() { case $1 in portcullis) echo "$P_PORT" ;; nginx) echo "$N_PORT" ;; haproxy) echo "$H_PORT" ;; esac; }

# Check that each proxy relays before measuring.
for px in portcullis nginx haproxy; do
  out=$(curl -s -H 'Accept: application/json' "http://127.0.0.1:$(port_of $px)$PATH_Q")
  [ "$out" = "ok" ] || { echo "$px does not relay: $out" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
results="$work/results.tsv"
order=(portcullis nginx haproxy)
for round in $(seq "$ROUNDS"); do
  # Rotate the order each round so no proxy always runs first or last.
  k=$(( (round - 1) % 3 ))
  for px in "${order[@]:k}" "${order[@]:0:k}"; do
    pp=$(proxy_pids $px)
    read -r u0 s0 < <(cpu_ticks "$pp")
    rps=$($ON_GEN wrk -t1 -c"$CONNS" -d"${DURATION}s" -H 'Accept: application/json' "http://127.0.0.1:$(port_of $px)$PATH_Q" | awk '/Requests\/sec/ {print $2}')
    read -r u1 s1 < <(cpu_ticks "$pp")
    echo -e "$px\t$round\t$rps\t$((u1-u0))\t$((s1-s0))" >> "$results"
    echo "round $round $px: $rps req/s" >&2
  done
done

python3 - "$results" "$HZ" "$DURATION" <<'PY'
import sys, statistics as st
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
hz, dur = int(sys.argv[2]), float(sys.argv[3])
by = {}
for px, rnd, rps, u, s in rows:
    rps = float(rps); n = rps * dur
    by.setdefault(px, []).append((rps, int(u) / hz * 1e6 / n, int(s) / hz * 1e6 / n))
med = {px: tuple(st.median(x[i] for x in v) for i in range(3)) for px, v in by.items()}
print(f"{'proxy':<12}{'req/s':>10}{'us/req user':>13}{'us/req sys':>12}{'us/req total':>14}")
for px, (r, u, s) in med.items():
    print(f"{px:<12}{r:>10.0f}{u:>13.2f}{s:>12.2f}{u+s:>14.2f}")
peers = [p for p in med if p != 'portcullis']
best_rps = max(peers, key=lambda p: med[p][0])
best_cpu = min(peers, key=lambda p: med[p][1] + med[p][2])
best_usr = min(peers, key=lambda p: med[p][1])
r, u, s = med['portcullis']
print(f"\nportcullis vs best peer: req/s {r/med[best_rps][0]:.2f}x ({best_rps}); "
      f"CPU/req {(u+s)/(med[best_cpu][1]+med[best_cpu][2]):.2f}x ({best_cpu}); "
      f"user CPU/req {u/med[best_usr][1]:.2f}x ({best_usr})")
PY
