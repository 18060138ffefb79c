#!/usr/bin/env bash
# User-space instructions per request of two portcullis binaries, counted by valgrind (callgrind), not timed:
# the count does not move with the machine's other load, so an old-vs-new comparison holds on a busy machine
# where CPU-time A/Bs swing by 10%. (Kernel work is not counted: compare syscalls with strace.)
#
#   A_BIN=./target/release/portcullis B_BIN=/tmp/old-portcullis SCRIPT=benches/load/users-pre.lua \
#     ARGS="--rate 10 --ip-rate 10000000 --ip-burst 10000000" bash benches/load/instructions.sh
#   A_ARGS / B_ARGS: flags for one of the two only (after ARGS), e.g. the same binary with and without an option;
#   UPSTREAMS=3: the upstream is a pool of three servers (the same nginx on 127.0.0.1, .2 and .3), balanced
#   by the pool's default (p2c);
#   (DURATION=10 CONNS=16 ROUNDS=3 by default; each binary runs under callgrind, warmed up for 2 s, then its
#   counters are zeroed, wrk runs DURATION seconds, and the count is read; prints instructions per request per
#   round, the medians and the ratio A/B; KEEP=DIR keeps each round's callgrind output there, named
#   BINARY.PID.nREQUESTS.out, for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
ARGS=${ARGS:-}
A_ARGS=${A_ARGS:-}
B_ARGS=${B_ARGS:-}
SCRIPT=${SCRIPT:-}
A_BIN=${A_BIN:-./target/release/portcullis}
B_BIN=${B_BIN:?B_BIN: the binary to compare with}
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null || { echo "needs valgrind" >&2; exit 1; }
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port)
ok_upstream_conf "$work" "$UP" 4096
UPSTREAMS=${UPSTREAMS:-1}
UPSTREAM="127.0.0.1:$UP"
if [ "$UPSTREAMS" -gt 1 ]; then
  for i in $(seq 2 "$UPSTREAMS"); do
    sed -i "s|listen 127.0.0.1:$UP backlog=4096;|& listen 127.0.0.$i:$UP;|" "$work/nginx.conf"
    UPSTREAM="$UPSTREAM,127.0.0.$i:$UP"
  done
fi
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
wait_port "$UP"
script_arg=(); [ -n "$SCRIPT" ] && script_arg=(-s "$SCRIPT")
# One round of one binary: prints instructions per request.
measure() {
  local bin=$1 extra=$2 port pid out n ir
  port=$(free_port)
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" ${KEEP:+--compress-strings=no --compress-pos=no} \
    "$bin" --listen "127.0.0.1:$port" --upstream "$UPSTREAM" --workers 1 $ARGS $extra 2>/dev/null &
  pid=$!
  for _ in $(seq 600); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  wrk -t1 -c"$CONNS" -d2s "${script_arg[@]}" "http://127.0.0.1:$port/" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "${script_arg[@]}" "http://127.0.0.1:$port/")
  callgrind_control -d "$pid" >/dev/null 2>&1
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  # The dump after the zeroing holds the counts since it; its `summary:` (or `totals:`) line is the total.
  ir=$(cat "$work"/cg."$pid".* 2>/dev/null | awk '/^(summary|totals):/ {print $2}' | sort -n | tail -1)
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cat "$work"/cg."$pid".* > "$KEEP/$(basename "$bin").$pid.n$n.out"; fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$work"/cg."$pid"*
  awk -v ir="$ir" -v n="$n" 'BEGIN {printf "%.0f\n", ir / n}'
}
for r in $(seq "$ROUNDS"); do
  for name in A B; do
    bin=$A_BIN extra=$A_ARGS; [ $name = B ] && bin=$B_BIN extra=$B_ARGS
    echo -e "$name\t$(measure "$bin" "$extra")" | tee -a "$work/r.tsv" >&2
  done
done
python3 - "$work/r.tsv" <<'PY'
import sys, statistics as st
rows=[l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
m={k: st.median(float(r[1]) for r in rows if r[0] == k) for k in ('A','B')}
print(f"instructions per request: A {m['A']:.0f}, B {m['B']:.0f}, A/B {m['A']/m['B']:.3f}")
PY
