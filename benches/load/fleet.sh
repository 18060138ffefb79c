#!/usr/bin/env bash
# Whole-binary cost of the fleet-wide limit: 100 000 rotating users at `--rate 10`, with `--redis-url` (A, a
# redis-server started here on an ephemeral port, persistence off) vs without (B), alternating rounds.
#   bash benches/load/fleet.sh       # ROUNDS=5 DURATION=6 CONNS=64; SYNC=50ms
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v redis-server >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}
RP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null &
rpid=$!
trap 'kill $rpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ "$(redis-cli -p "$RP" ping 2>/dev/null)" = PONG ] && break; sleep 0.05; done
secret=$(mktemp); head -c 32 /dev/urandom | base64 > "$secret"
trap 'kill $rpid 2>/dev/null || true; rm -f "$secret"' EXIT
many="--ip-rate 10000000 --ip-burst 10000000" # one load generator stands for 100 000 users (see lib.sh)
EXTRA_PID=$rpid A_ARGS="--rate 10 $many --secret-file $secret --redis-url redis://127.0.0.1:$RP/0 --redis-sync ${SYNC:-50ms}" \
  B_ARGS="--rate 10 $many" SCRIPT=benches/load/users.lua bash benches/load/ab.sh
echo "redis: $(redis-cli -p "$RP" dbsize) keys at the end, $(redis-cli -p "$RP" info stats | grep -E 'total_net_(input|output)_bytes' | tr -d '\r' | tr '\n' ' ')"
