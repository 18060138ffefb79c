#!/usr/bin/env bash
# The full comparison: portcullis, nginx and HAProxy doing the same job in front of the same
# upstream, plus HAProxy in `mode tcp` as the floor an HTTP proxy cannot beat; one worker / thread each;
# alternating rounds with wrk on loopback.
#
#   bash benches/load/compare.sh                         # ROUNDS=3 DURATION=5, every scenario
#   SCENARIOS="get post1k" ROUNDS=5 bash benches/load/compare.sh
#   SCENARIOS="get tls" bash benches/load/compare.sh     # `tls`: the TLS scenarios, run by benches/load/tls.sh
#
# The job (as far as each peer can do it):
#   - Accept required: 406 without it (nginx: map + return; HAProxy: http-request deny);
#   - POST/PATCH must say Content-Type: application/json: 415 otherwise;
#   - 10 requests/s per Authorization value, burst 10: 429 past it (nginx limit_req, HAProxy stick table);
#   - portcullis also validates every JSON body (the peers cannot).
# Scenarios: get (64 connections, 100 000 rotating users), post1k / post64k (a 1 KB / 64 KB JSON body, rotating
# users), conns1000 (get over 1 000 connections), refused10 (get, every 10th request without Accept). The
# requests are built once in the scripts' init() (users-pre.lua...): built per request by wrk.format, wrk's
# own core saturated before the proxies' (scenario get-wrkformat shows that).
# Per proxy and scenario: requests/s, CPU microseconds per request (user / system, from /proc/PID/stat of
# every process of the proxy), p50 / p99 latency (wrk --latency), RSS after the run; medians over rounds, and
# the ratios of portcullis against the best HTTP peer and against the TCP relay.
# PIN=1 (default on 2+ cores): proxies on CPU 1, wrk and the upstream on CPU 0. Bounded: ROUNDS x 4 proxies x
# scenarios x DURATION seconds of load, loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"get post1k post64k conns1000 refused10"}
# TLS (the same proxies and policy, each terminating TLS 1.3 itself) has its own script; `tls` runs it after
# the plain scenarios.
TLS=0
case " $SCENARIOS " in *" tls "*) TLS=1; SCENARIOS=$(tr ' ' '\n' <<<"$SCENARIOS" | grep -vx tls | tr '\n' ' ' || true) ;; esac
if [ "$TLS" = 1 ] && [ -z "${SCENARIOS// /}" ]; then
  ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-5} SCENARIOS= exec bash benches/load/tls.sh
fi
PIN=${PIN:-1}
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then ON_GEN="taskset -c 0"; ON_PROXY="taskset -c 1"; else ON_GEN=""; ON_PROXY=""; fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi
ulimit -n 20000 2>/dev/null || true
cargo build --release --quiet

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port); P_PORT=$(free_port); N_PORT=$(free_port); H_PORT=$(free_port); T_PORT=$(free_port)
mkdir -p "$work/up" "$work/px"

# The upstream: nginx answering 200 "ok" itself (after reading the body), one worker.
ok_upstream_conf "$work/up" "$UP" 8192 "client_body_buffer_size 128k; client_max_body_size 2m;"
$ON_GEN nginx -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)

# nginx with the policy.
policy_nginx_conf "$work/px" "$UP" "listen 127.0.0.1:$N_PORT backlog=4096;"
$ON_PROXY nginx -c "$work/px/nginx.conf" -p "$work/px" & pids+=($!)

# HAProxy with the policy (HTTP mode), and HAProxy in TCP mode (the floor).
policy_haproxy_cfg "$work/haproxy.cfg" "$UP" "bind 127.0.0.1:$H_PORT"
cat > "$work/tcp.cfg" <<CONF
global
  nbthread 1
  maxconn 9000
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$T_PORT
  default_backend be
backend be
  server s1 127.0.0.1:$UP
CONF
$ON_PROXY haproxy -f "$work/haproxy.cfg" -db & pids+=($!)
$ON_PROXY haproxy -f "$work/tcp.cfg" -db & pids+=($!)

$ON_PROXY ./target/release/portcullis --listen 127.0.0.1:$P_PORT --upstream 127.0.0.1:$UP --workers 1 \
  --rate 10 $ONE_ADDRESS_MANY_USERS --max-connections 20000 2>"$work/portcullis.log" & pids+=($!)
PORTCULLIS_PID=$!

for p in $UP $P_PORT $N_PORT $H_PORT $T_PORT; do wait_port "$p"; done

proxy_pids() {
  case $1 in
    portcullis) echo "$PORTCULLIS_PID" ;;
    nginx) m=$(cat "$work/px/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    haproxy) pgrep -f "haproxy -f $work/haproxy.cfg" | tr '\n' ' ' ;;
    tcp-relay) pgrep -f "haproxy -f $work/tcp.cfg" | tr '\n' ' ' ;;
  esac
}
cpu_ticks() { local u=0 s=0; for p in $1; do read -r uu ss < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u+uu)); s=$((s+ss)); done; echo "$u $s"; }
rss_kb() { local t=0; for p in $1; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
port_of() { case $1 in portcullis) echo "$P_PORT" ;; nginx) echo "$N_PORT" ;; haproxy) echo "$H_PORT" ;; tcp-relay) echo "$T_PORT" ;; esac; }

# Each HTTP proxy does the job before anything is measured.
for px in portcullis nginx haproxy; do
  u="http://127.0.0.1:$(port_of $px)/"
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H 'Authorization: Bearer check' "$u")
  na=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept:' -H 'Authorization: Bearer check' "$u")
  ct=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H 'Authorization: Bearer check' -H 'Content-Type: text/plain' -d '{}' "$u")
  lim=0; for _ in $(seq 15); do c=$(curl -s -o /dev/null -w '%{http_code}' -H 'Accept: application/json' -H 'Authorization: Bearer burst' "$u"); [ "$c" = 429 ] && lim=$((lim+1)); done
  echo "check $px: with Accept $ok, without $na, POST text/plain $ct, 15 back to back: $lim refused" >&2
  [ "$ok" = 200 ] && [ "$na" = 406 ] && [ "$ct" = 415 ] && [ "$lim" -ge 2 ] || { echo "$px does not do the job" >&2; exit 1; }
done

wrk_args() {  # scenario -> connections, script
  case $1 in
    get) echo "64 benches/load/users-pre.lua" ;;
    post1k) echo "64 benches/load/post-users-pre.lua" ;;
    post64k) echo "64 benches/load/post-users.lua" ;;
    conns1000) echo "1000 benches/load/users-pre.lua" ;;
    refused10) echo "64 benches/load/refuse10-pre.lua" ;;
    # The same with each request built by wrk.format per request: wrk's core saturates first (every proxy and
    # the TCP relay then land within 3%: the first table in docs/performance.md).
    get-wrkformat) echo "64 benches/load/users.lua" ;;
  esac
}
to_us() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else if (v ~ /s$/) {sub(/s/,"",v); print v*1e6} else print v}'; }
HZ=$(getconf CLK_TCK)
results="$work/results.tsv"
order=(portcullis nginx haproxy tcp-relay)
for sc in $SCENARIOS; do
  read -r conns script < <(wrk_args "$sc")
  body=benches/load/body-1k.json; [ "$sc" = post64k ] && body=benches/load/body-64k.json
  for round in $(seq "$ROUNDS"); do
    k=$(( (round - 1) % 4 ))
    for px in "${order[@]:k}" "${order[@]:0:k}"; do
      pp=$(proxy_pids $px)
      read -r u0 s0 < <(cpu_ticks "$pp")
      out=$(BODY_FILE=$body $ON_GEN wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:$(port_of $px)/")
      read -r u1 s1 < <(cpu_ticks "$pp")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(awk '/^ +50%/ {print $2}' <<<"$out" | to_us); p99=$(awk '/^ +99%/ {print $2}' <<<"$out" | to_us)
      non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); errs=$(awk '/Socket errors/ {print $0}' <<<"$out")
      echo -e "$sc\t$px\t$round\t$rps\t$((u1-u0))\t$((s1-s0))\t$p50\t$p99\t$(rss_kb "$pp")\t${non2xx:-0}" >> "$results"
      echo "$sc round $round $px: $rps req/s, non-2xx ${non2xx:-0} ${errs}" >&2
    done
  done
done

python3 - "$results" "$HZ" "$DURATION" <<'PY'
import sys, statistics as st
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
hz, dur = int(sys.argv[2]), float(sys.argv[3])
data = {}
for sc, px, rnd, rps, u, s, p50, p99, rss, bad in rows:
    rps = float(rps); n = rps * dur
    data.setdefault(sc, {}).setdefault(px, []).append(
        (rps, int(u) / hz * 1e6 / n, int(s) / hz * 1e6 / n, float(p50), float(p99), int(rss) / 1024, int(bad) / n))
for sc, by in data.items():
    med = {px: [st.median(x[i] for x in v) for i in range(7)] for px, v in by.items()}
    print(f"\n## {sc}\n")
    print("| proxy | req/s | user us/req | sys us/req | total us/req | p50 | p99 | RSS MB | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for px, (r, u, s, p50, p99, rss, bad) in med.items():
        print(f"| {px} | {r:.0f} | {u:.2f} | {s:.2f} | {u+s:.2f} | {p50/1000:.2f} ms | {p99/1000:.2f} ms | {rss:.1f} | {bad*100:.1f}% |")
    peers = [p for p in med if p in ('nginx', 'haproxy')]
    r, u, s = med['portcullis'][:3]
    best_rps = max(peers, key=lambda p: med[p][0])
    best_cpu = min(peers, key=lambda p: med[p][1] + med[p][2])
    best_usr = min(peers, key=lambda p: med[p][1])
    line = (f"\nportcullis vs best peer: req/s {r/med[best_rps][0]:.2f}x ({best_rps}); CPU/req "
            f"{(u+s)/(med[best_cpu][1]+med[best_cpu][2]):.2f}x ({best_cpu}); user CPU/req {u/med[best_usr][1]:.2f}x ({best_usr})")
    if 'tcp-relay' in med:
        t = med['tcp-relay']
        line += f"; vs TCP relay: req/s {r/t[0]:.2f}x, CPU/req {(u+s)/(t[1]+t[2]):.2f}x"
    print(line)
PY
if [ "$TLS" = 1 ]; then
  ROUNDS=$ROUNDS DURATION=$DURATION SCENARIOS= bash benches/load/tls.sh
fi
