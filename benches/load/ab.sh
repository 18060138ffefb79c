#!/usr/bin/env bash
# A/B of two portcullis configurations in front of the same upstream, alternating wrk rounds.
#
#   A_ARGS='...' B_ARGS='...' SCRIPT=benches/load/x.lua bash benches/load/ab.sh
#   (ROUNDS=5 DURATION=6 CONNS=64 by default; prints the median requests/s of each and the ratio A/B, and each
#   portcullis's CPU per request (user + system, all threads, from /proc); EXTRA_PID=pid adds that process's
#   CPU per request in the A rounds, e.g. a redis-server A talks to; A_BIN / B_BIN: other binaries to run,
#   e.g. the previous version's release build, for an old-vs-new comparison)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-6}
CONNS=${CONNS:-64}
A_ARGS=${A_ARGS:-}
B_ARGS=${B_ARGS:-}
SCRIPT=${SCRIPT:-}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
cargo build --release --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port); PA=$(free_port); PB=$(free_port)
ok_upstream_conf "$work" "$UP" 4096 "client_body_buffer_size 64k;"
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
# shellcheck disable=SC2086
${A_BIN:-./target/release/portcullis} --listen 127.0.0.1:$PA --upstream 127.0.0.1:$UP --workers 1 $A_ARGS 2>/dev/null & pids+=($!)
pid_a=$!
# shellcheck disable=SC2086
${B_BIN:-./target/release/portcullis} --listen 127.0.0.1:$PB --upstream 127.0.0.1:$UP --workers 1 $B_ARGS 2>/dev/null & pids+=($!)
pid_b=$!
# utime + stime of a process (all threads), in clock ticks.
ticks() {
  [ -z "$1" ] && { echo 0; return; }
  [ -r "/proc/$1/stat" ] || { echo "process $1 is gone" >&2; exit 1; }
  awk '{print $14 + $15}' "/proc/$1/stat"
}
hz=$(getconf CLK_TCK)
for p in $UP $PA $PB; do wait_port "$p"; done
script_arg=(); [ -n "$SCRIPT" ] && script_arg=(-s "$SCRIPT")
for r in $(seq "$ROUNDS"); do
  for name in A B; do
    port=$PA; pid=$pid_a; extra=${EXTRA_PID:-}
    [ $name = B ] && port=$PB && pid=$pid_b && extra=
    c0=$(ticks "$pid"); e0=$(ticks "$extra")
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "${script_arg[@]}" "http://127.0.0.1:$port/")
    c1=$(ticks "$pid"); e1=$(ticks "$extra")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    cpu=$(awk -v c=$((c1 - c0)) -v n="${n:-0}" -v hz="$hz" 'BEGIN {printf "%.2f", (n > 0 ? c / hz * 1e6 / n : 0)}')
    ecpu=$(awk -v c=$((e1 - e0)) -v n="${n:-0}" -v hz="$hz" 'BEGIN {printf "%.2f", (n > 0 ? c / hz * 1e6 / n : 0)}')
    echo -e "$name\t$rps\t$non2xx\t$cpu\t$ecpu" | tee -a "$work/r.tsv" >&2
  done
done
python3 - "$work/r.tsv" <<'PY'
import sys, statistics as st
rows=[l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
m={k: st.median(float(r[1]) for r in rows if r[0] == k) for k in ('A','B')}
bad={k: sum(int(r[2]) for r in rows if r[0] == k) for k in ('A','B')}
cpu={k: st.median(float(r[3]) for r in rows if r[0] == k) for k in ('A','B')}
extra=st.median(float(r[4]) for r in rows if r[0] == 'A')
print(f"A {m['A']:.0f} req/s, B {m['B']:.0f} req/s, A/B {m['A']/m['B']:.3f} (non-2xx: A {bad['A']}, B {bad['B']})")
print(f"portcullis CPU per request: A {cpu['A']:.2f} us, B {cpu['B']:.2f} us, A/B {cpu['A']/cpu['B']:.3f}"
      + (f"; the extra process during A: {extra:.2f} us per request" if extra else ""))
PY
