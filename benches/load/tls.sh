#!/usr/bin/env bash
# TLS termination: portcullis against nginx and HAProxy (Debian packages, OpenSSL), one worker each, the same
# ECDSA P-256 certificate, TLS 1.3 only, the same policy as compare.sh (Accept, Content-Type, a per-user
# limit) in front of the same upstream (nginx answering 200 itself).
#
#   bash benches/load/tls.sh                       # ROUNDS=3 DURATION=5, every scenario
#   SCENARIOS="get close" ROUNDS=5 bash benches/load/tls.sh
#
# Scenarios:
#   get     keep-alive GET over TLS, 64 connections, 100 000 rotating users (wrk)
#   close   a new connection per request (`Connection: close`): wrk resumes the TLS 1.3 session each time
#           (with a ticket), so this is a resumed handshake plus a request; the script prints how many of
#           portcullis's handshakes resumed, from its metrics
#   full    full handshakes only (`openssl s_time -new`: connect, handshake, close; s_time closes right after
#           its side, so what is counted is the server's part: key exchange and signature)
#   post64k keep-alive POST of a 64 KB JSON body over TLS, 64 connections (CPU per byte: divide by 65 536)
#   get1m   keep-alive GET of a 1 MiB response over TLS, 16 connections
#   idle    RSS per idle keep-alive TLS connection (2 000 connections, each served one GET)
# (`openssl s_time -reuse` does not resume TLS 1.3 sessions, so there is no separate resumed-only scenario.)
# Per proxy: requests (or handshakes) per second and CPU microseconds per request (or handshake), from
# /proc/PID/stat (all its processes and threads); medians over ROUNDS, proxies in rotating order each round.
# Proxies on CPU 1, load generators and the upstream on CPU 0 (PIN=0 to not pin). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SCENARIOS=${SCENARIOS:-"get close full post64k get1m idle"}
PIN=${PIN:-1}
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then ON_GEN="taskset -c 0"; ON_PROXY="taskset -c 1"; else ON_GEN=""; ON_PROXY=""; fi
need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy || ! need openssl; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy openssl >/dev/null
fi
ulimit -n 20000 2>/dev/null || true
cargo build --release --quiet

work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port); P_PORT=$(free_port); N_PORT=$(free_port); H_PORT=$(free_port); ADMIN=$(free_port)
mkdir -p "$work/up" "$work/px"
openssl req -x509 -nodes -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/haproxy.pem"

ok_upstream_conf "$work/up" "$UP" 8192 "client_body_buffer_size 128k; client_max_body_size 2m;"
head -c 1048576 /dev/zero > "$work/up/big.bin"
chmod 755 "$work" "$work/up"; chmod 644 "$work/up/big.bin"  # nginx workers run as nobody
sed -i "s|location / {|location = /big { alias $work/up/big.bin; } location / {|" "$work/up/nginx.conf"
$ON_GEN nginx -c "$work/up/nginx.conf" -p "$work/up" & pids+=($!)

policy_nginx_conf "$work/px" "$UP" "listen 127.0.0.1:$N_PORT ssl backlog=4096;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem; ssl_protocols TLSv1.3;
    ssl_session_tickets on; ssl_session_cache shared:TLS:20m;"
$ON_PROXY nginx -c "$work/px/nginx.conf" -p "$work/px" & pids+=($!)

policy_haproxy_cfg "$work/haproxy.cfg" "$UP" "bind 127.0.0.1:$H_PORT ssl crt $work/haproxy.pem alpn http/1.1" \
  "ssl-default-bind-options ssl-min-ver TLSv1.3"
$ON_PROXY haproxy -f "$work/haproxy.cfg" -db & pids+=($!)

$ON_PROXY ./target/release/portcullis --listen '' --tls-listen 127.0.0.1:$P_PORT --tls-cert "$work/cert.pem" \
  --tls-key "$work/key.pem" --tls-min-version 1.3 --upstream 127.0.0.1:$UP --workers 1 \
  --rate 10 $ONE_ADDRESS_MANY_USERS --max-connections 20000 --admin 127.0.0.1:$ADMIN 2>"$work/portcullis.log" & pids+=($!)
PORTCULLIS_PID=$!
for p in $UP $P_PORT $N_PORT $H_PORT; do wait_port "$p"; done

proxy_pids() {
  case $1 in
    portcullis) echo "$PORTCULLIS_PID" ;;
    nginx) m=$(cat "$work/px/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    haproxy) pgrep -f "haproxy -f $work/haproxy.cfg" | tr '\n' ' ' ;;
  esac
}
cpu_ticks() { local t=0; for p in $1; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
port_of() { case $1 in portcullis) echo "$P_PORT" ;; nginx) echo "$N_PORT" ;; haproxy) echo "$H_PORT" ;; esac; }

# Each proxy does the job over TLS before anything is measured.
for px in portcullis nginx haproxy; do
  u="https://localhost:$(port_of $px)/"
  r=(--cacert "$work/cert.pem" --resolve "localhost:$(port_of $px):127.0.0.1" -s -o /dev/null -w '%{http_code}')
  ok=$(curl "${r[@]}" -H 'Accept: application/json' -H 'Authorization: Bearer check' "$u")
  na=$(curl "${r[@]}" -H 'Accept:' -H 'Authorization: Bearer check' "$u")
  echo "check $px: with Accept $ok, without $na" >&2
  [ "$ok" = 200 ] && [ "$na" = 406 ] || { echo "$px does not do the job over TLS" >&2; exit 1; }
done

printf 'local r = {}\nfor i = 1, 100000 do r[i] = "GET / HTTP/1.1\\r\\nHost: localhost\\r\\nAccept: application/json\\r\\nConnection: close\\r\\nAuthorization: Bearer user-" .. i .. "\\r\\n\\r\\n" end\nlocal n = 0\nrequest = function() n = n %% 100000 + 1; return r[n] end\n' > "$work/close.lua"

printf 'local r = {}\nfor i = 1, 100000 do r[i] = "GET /big HTTP/1.1\\r\\nHost: localhost\\r\\nAccept: application/json\\r\\nAuthorization: Bearer user-" .. i .. "\\r\\n\\r\\n" end\nlocal n = 0\nrequest = function() n = n %% 100000 + 1; return r[n] end\n' > "$work/big.lua"

HZ=$(getconf CLK_TCK)
results="$work/results.tsv"
order=(portcullis nginx haproxy)
for sc in $SCENARIOS; do
  for round in $(seq "$ROUNDS"); do
    k=$(( (round - 1) % 3 ))
    for px in "${order[@]:$k}" "${order[@]:0:$k}"; do
      pp=$(proxy_pids $px); port=$(port_of $px)
      if [ "$sc" = idle ]; then
        [ "$round" -gt 1 ] && continue
        line=$(python3 benches/load/idle.py "$(echo $pp | tr ' ' ',')" "127.0.0.1:$port" 2000 tls)
        bytes=$(awk '{print $(NF-3)}' <<<"$line")
        echo -e "$sc\t$px\t0\t$bytes" | tee -a "$results" >&2
        continue
      fi
      c0=$(cpu_ticks "$pp")
      case $sc in
        get) out=$($ON_GEN wrk -t1 -c64 -d"${DURATION}s" -s benches/load/users-pre.lua "https://127.0.0.1:$port/")
             n=$(awk '/requests in/ {print $1}' <<<"$out") ;;
        close) out=$($ON_GEN wrk -t1 -c16 -d"${DURATION}s" -s "$work/close.lua" "https://127.0.0.1:$port/")
             n=$(awk '/requests in/ {print $1}' <<<"$out") ;;
        post64k) out=$(BODY_FILE=benches/load/body-64k.json $ON_GEN wrk -t1 -c64 -d"${DURATION}s" -s benches/load/post-users.lua "https://127.0.0.1:$port/")
             n=$(awk '/requests in/ {print $1}' <<<"$out") ;;
        get1m) out=$($ON_GEN wrk -t1 -c16 -d"${DURATION}s" -s "$work/big.lua" "https://127.0.0.1:$port/big")
             n=$(awk '/requests in/ {print $1}' <<<"$out") ;;
        full) out=$($ON_GEN openssl s_time -connect "127.0.0.1:$port" -new -time "$DURATION" 2>&1)
             n=$(awk '/connections in .* real seconds/ {print $1; exit}' <<<"$out") ;;
      esac
      c1=$(cpu_ticks "$pp")
      [ -n "${DEBUG:-}" ] && echo "$out" >&2
      bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
      [ -n "$bad" ] && echo "$sc $px: $bad non-2xx answers" >&2
      us=$(awk -v c=$((c1 - c0)) -v n="${n:-0}" -v hz="$HZ" 'BEGIN {printf "%.2f", (n > 0 ? c / hz * 1e6 / n : 0)}')
      echo -e "$sc\t$px\t$(awk -v n="${n:-0}" -v d="$DURATION" 'BEGIN {printf "%.0f", n / d}')\t$us" | tee -a "$results" >&2
    done
  done
done

curl -s "127.0.0.1:$ADMIN/metrics" | grep -E '^portcullis_tls_(handshakes_total|resumed)' | grep -v ' 0$' >&2 || true
python3 - "$results" <<'PY'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
scen = []
for r in rows:
    if r[0] not in scen:
        scen.append(r[0])
for sc in scen:
    print(f"\n## {sc}\n")
    if sc == "idle":
        print("| proxy | bytes per idle keep-alive TLS connection |\n|---|---:|")
        for px in ("portcullis", "nginx", "haproxy"):
            v = [float(r[3]) for r in rows if r[0] == sc and r[1] == px]
            if v:
                print(f"| {px} | {v[0]:.0f} |")
        continue
    unit = "handshake" if sc == "full" else "request"
    m = {}
    for px in ("portcullis", "nginx", "haproxy"):
        rs = [r for r in rows if r[0] == sc and r[1] == px]
        m[px] = (st.median(float(r[2]) for r in rs), st.median(float(r[3]) for r in rs))
    print(f"| proxy | {unit}s/s | CPU us per {unit} |\n|---|---:|---:|")
    for px, (rate, us) in m.items():
        print(f"| {px} | {rate:.0f} | {us:.2f} |")
    best_rate = max(m["nginx"][0], m["haproxy"][0])
    best_cpu = min(m["nginx"][1], m["haproxy"][1])
    print(f"\nportcullis vs the best peer: {m['portcullis'][0] / best_rate:.2f}x the {unit}s/s, "
          f"{m['portcullis'][1] / best_cpu:.2f}x the CPU per {unit}")
PY
