#!/usr/bin/env bash
# Whole-binary cost of the fleet-wide limit: 100 000 rotating users at `--rate 10`, with `--redis-url` (A, a
# redis-server started here on an ephemeral port, persistence off) vs without (B), alternating rounds; then
# what Redis did per proxied request of A (commands, from INFO commandstats, and redis-server's CPU).
#   bash benches/load/fleet.sh       # ROUNDS=5 DURATION=6 CONNS=64; SYNC=50ms SHARE=0.1 REDIS_GROUPS=16
#   SHARE=0 bash benches/load/fleet.sh   # every admission reported (no quiet share)
# With CARGO_TARGET_DIR set, pass A_BIN and B_BIN (ab.sh runs ./target/release/portcullis by default).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
start_redis
rpid=$RPID
trap 'kill $rpid 2>/dev/null || true' EXIT
secret=$(mktemp); rounds=$(mktemp); head -c 32 /dev/urandom | base64 > "$secret"
trap 'kill $rpid 2>/dev/null || true; rm -f "$secret" "$rounds"' EXIT
redis-cli -p "$RP" config resetstat >/dev/null
many="--ip-rate 10000000 --ip-burst 10000000" # one load generator stands for 100 000 users (see lib.sh)
fleet="--redis-url redis://127.0.0.1:$RP/0 --redis-sync ${SYNC:-50ms} --redis-share ${SHARE:-0.1} --redis-groups ${REDIS_GROUPS:-16}"
EXTRA_PID=$rpid A_ARGS="--rate 10 $many --secret-file $secret $fleet" \
  B_ARGS="--rate 10 $many" SCRIPT=benches/load/users.lua bash benches/load/ab.sh 2> >(tee "$rounds" >&2)
sleep 0.2 # the tee above finishing its file
echo "redis: $(redis-cli -p "$RP" dbsize) keys at the end, $(redis-cli -p "$RP" info stats | grep -E 'total_net_(input|output)_bytes' | tr -d '\r' | tr '\n' ' ')"
# What Redis does per proxied request, measured apart (the A/B above charges A's requests with what A's sync
# does during the B rounds too): A alone for DURATION s after a warm-up round, Redis's commands (EVALSHA and the
# commands inside the script, from INFO commandstats; not this script's own) and its CPU over A's requests.
work=$(mktemp -d)
UP=$(free_port); PA=$(free_port)
ok_upstream_conf "$work" "$UP" 4096
nginx -c "$work/nginx.conf" -p "$work" & npid=$!
# shellcheck disable=SC2086
${A_BIN:-./target/release/portcullis} --listen 127.0.0.1:$PA --upstream 127.0.0.1:$UP --workers 1 \
  --rate 10 $many --secret-file "$secret" $fleet 2>/dev/null & apid=$!
trap 'kill $rpid $npid $apid 2>/dev/null || true; sleep 0.2; rm -rf "$secret" "$rounds" "$work"' EXIT
wait_port "$UP"; wait_port "$PA"
wrk -t1 -c"${CONNS:-64}" -d2s -s benches/load/users.lua "http://127.0.0.1:$PA/" >/dev/null
redis-cli -p "$RP" config resetstat >/dev/null
r0=$(awk '{print $14 + $15}' "/proc/$rpid/stat"); p0=$(awk '{print $14 + $15}' "/proc/$apid/stat")
n=$(wrk -t1 -c"${CONNS:-64}" -d"${DURATION:-6}s" -s benches/load/users.lua "http://127.0.0.1:$PA/" | awk '/requests in/ {print $1}')
r1=$(awk '{print $14 + $15}' "/proc/$rpid/stat"); p1=$(awk '{print $14 + $15}' "/proc/$apid/stat")
redis-cli -p "$RP" info commandstats | tr -d '\r' | python3 -c "
import re, sys
calls = {m.group(1): int(m.group(2)) for m in re.finditer(r'cmdstat_(\w+):calls=(\d+)', sys.stdin.read())}
for c in ('ping', 'info', 'config', 'dbsize'):
    calls.pop(c, None)
total, n, hz = sum(calls.values()), $n, $(getconf CLK_TCK)
print(f'A alone: {n} requests in ${DURATION:-6} s; redis commands {total}: {total / n:.4f} per request ('
      + ', '.join(f'{k} {v}' for k, v in sorted(calls.items(), key=lambda kv: -kv[1])) + ')')
print(f'redis-server CPU {($r1 - $r0) / hz * 1e6 / n:.2f} us per request; portcullis {($p1 - $p0) / hz * 1e6 / n:.2f} us')
"
