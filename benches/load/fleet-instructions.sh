#!/usr/bin/env bash
# The ingress's own cost of the fleet-wide limit, counted (not timed): user-space instructions per request,
# all threads (the sync thread included), of the same binary with the fleet limit (A: `--redis-url` to a
# redis-server started here, `--redis-share`) and without it (B), 100 000 rotating users at `--rate 10`, each
# far below the limit; by benches/load/instructions.sh (callgrind).
#   bash benches/load/fleet-instructions.sh     # ROUNDS=3 DURATION=5; SYNC=50ms SHARE=0.1 REDIS_GROUPS=16
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
start_redis
secret=$(mktemp)
trap 'kill $RPID 2>/dev/null || true; rm -f "$secret"' EXIT
head -c 32 /dev/urandom | base64 > "$secret"
fleet="--redis-url redis://127.0.0.1:$RP/0 --redis-sync ${SYNC:-50ms} --redis-share ${SHARE:-0.1} --redis-groups ${REDIS_GROUPS:-16}"
ARGS="--rate 10 --ip-rate 10000000 --ip-burst 10000000 --secret-file $secret" A_ARGS="$fleet" B_ARGS="" \
  SCRIPT=benches/load/users-pre.lua DURATION=${DURATION:-5} ROUNDS=${ROUNDS:-3} \
  B_BIN=${B_BIN:-${A_BIN:-./target/release/portcullis}} KEEP=${KEEP:-} bash benches/load/instructions.sh
echo "redis: $(redis-cli -p "$RP" info commandstats | grep -cE '^cmdstat_') command kinds, $(redis-cli -p "$RP" dbsize) keys at the end"
