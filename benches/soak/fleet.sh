#!/usr/bin/env bash
# Fleet soak: one portcullis with --redis-url under steady load (wrk, 64 connections, 100 000 rotating users,
# --rate 10) while its Redis misbehaves on a cycle: answering, hung (SIGSTOP: connections accepted, nothing
# answered), answering again, killed (state lost) and restarted empty on the same port. Samples the proxy's
# RSS, descriptors and threads every second, and its sync metrics at the end.
#
#   bash benches/soak/fleet.sh          # DURATION=180 CYCLE=30 (seconds)
#
# Verdict PASSED when: wrk saw no socket error or timeout, every answer was a 200 or a 429 (the proxy's own
# counts: no 5xx, nothing aborted), the proxy's RSS (within 2%) and descriptor count peak no higher in the
# second half of the run than in the first (after its first cycle), and Redis is synced with again at the end. Loopback only, bounded by
# DURATION; needs wrk, nginx and redis-server (installed with apt-get if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
DURATION=${DURATION:-180}
CYCLE=${CYCLE:-30}
# The four phase changes (CYCLE/6, /3, /2, 2/3) are distinct and after 0 from 6 s on.
(( CYCLE >= 6 && DURATION >= 4 * CYCLE && DURATION >= 60 )) || { echo "need CYCLE >= 6, DURATION >= 60 and >= 4 x CYCLE (warm-up)" >&2; exit 2; }
need() { command -v "$1" >/dev/null 2>&1; }
need python3 || { echo "python3 is needed" >&2; exit 2; }
if ! need wrk || ! need nginx || ! need redis-server; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light redis-server >/dev/null
fi
cargo build --release --quiet
work=$(mktemp -d); pids=(); rpid=
cleanup() {
  local rc=$?
  [ -n "$rpid" ] && kill -CONT "$rpid" 2>/dev/null || true
  for p in "${pids[@]}" $rpid; do kill "$p" 2>/dev/null || true; done
  sleep 0.2
  # On failure the evidence stays: proxy.log, samples.tsv, wrk.txt.
  if [ "$rc" = 0 ]; then rm -rf "$work"; else echo "kept $work" >&2; fi
}
trap cleanup EXIT
UP=$(free_port); PX=$(free_port); AD=$(free_port); RP=$(free_port)
ok_upstream_conf "$work" "$UP"
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
start_redis() {
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --logfile "" >/dev/null &
  rpid=$!
  wait_port "$RP"
}
start_redis
head -c 32 /dev/urandom | base64 > "$work/secret"
# shellcheck disable=SC2086
./target/release/portcullis --listen "127.0.0.1:$PX" --upstream "127.0.0.1:$UP" --workers 1 --rate 10 \
  $ONE_ADDRESS_MANY_USERS --secret-file "$work/secret" --redis-url "redis://127.0.0.1:$RP/0" --redis-sync 50ms --admin "127.0.0.1:$AD" 2> "$work/proxy.log" & pids+=($!)
ppid=$!
wait_port "$UP"; wait_port "$PX"
metric() { python3 - "$AD" "$1" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
want = sys.argv[2]  # a name (summed over its label sets) or a name with its labels
print(sum(float(l.split()[-1]) for l in text.splitlines()
          if (l.split(" ")[0] == want if "{" in want else l.split(" ")[0].split("{")[0] == want)))
PY
}
wrk -t1 -c64 -d"${DURATION}s" --timeout 5s --latency -s benches/load/users-pre.lua "http://127.0.0.1:$PX/" \
  > "$work/wrk.txt" 2>&1 & wpid=$!
pids+=("$wpid")
echo -e "t\tphase\trss_kb\tfds\tthreads\tloaded" > "$work/samples.tsv"
phase=answering
for t in $(seq 1 "$DURATION"); do
  sleep 1  # the sampling period
  c=$((t % CYCLE))
  case $c in
    $((CYCLE / 6))) kill -STOP "$rpid"; phase=hung ;;
    $((CYCLE / 3))) kill -CONT "$rpid"; phase=answering ;;
    $((CYCLE / 2))) kill -9 "$rpid"; wait "$rpid" 2>/dev/null || true; rpid=; phase=down ;;
    $((2 * CYCLE / 3))) start_redis; phase=answering ;;
  esac
  [ -d "/proc/$ppid" ] || { echo "the proxy exited:" >&2; tail "$work/proxy.log" >&2; exit 1; }
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$ppid/status")
  fds=$(find "/proc/$ppid/fd" -mindepth 1 -maxdepth 1 | wc -l)
  thr=$(awk '/Threads/ {print $2}' "/proc/$ppid/status")
  # wrk still running (not exited, not a zombie awaiting `wait`)?
  loaded=0; case $(awk '/^State/ {print $2}' "/proc/$wpid/status" 2>/dev/null) in [RS]) loaded=1 ;; esac
  echo -e "$t\t$phase\t$rss\t$fds\t$thr\t$loaded" >> "$work/samples.tsv"
done
wait "$wpid"
# Redis answering again (whatever phase the run ended in), then the sync metrics once the proxy says so.
if [ -n "$rpid" ]; then kill -CONT "$rpid"; else start_redis; fi
for _ in $(seq 100); do [ "$(metric portcullis_redis_up)" = 1.0 ] && break; sleep 0.1; done  # polls the metric
up=$(metric portcullis_redis_up); ok=$(metric 'portcullis_redis_syncs_total{result="ok"}')
failed=$(metric 'portcullis_redis_syncs_total{result="failed"}')
unreported=$(metric portcullis_redis_unreported_requests_total)
users=$(metric portcullis_redis_synced_users_total)
r5xx=$(metric 'portcullis_responses_total{class="5xx"}'); aborted=$(metric 'portcullis_requests_total{outcome="aborted"}')
r429=$(metric 'portcullis_requests_total{outcome="refused",reason="rate_limited"}')
python3 - "$work/samples.tsv" "$work/wrk.txt" "$CYCLE" "$up" "$ok" "$unreported" "$users" "$(grep -c 'redis ' "$work/proxy.log" || true)" "$r5xx" "$aborted" "$r429" "$failed" <<'PY'
import re, sys
samples = [l.split('\t') for l in open(sys.argv[1]).read().split('\n')[1:] if l]
wrk = open(sys.argv[2]).read()
cycle = int(sys.argv[3])
up, syncs, unreported, users = (float(a) for a in sys.argv[4:8])
loglines = int(sys.argv[8])
r5xx, aborted, r429, failed = (float(a) for a in sys.argv[9:13])
# RSS moves with the batch sizes (an outage's backlog makes the next sync large; the buffers shrink back
# after), so the halves are compared by their peaks: a leak makes the second half's peak higher than the
# first's. The first cycle (the table and the pools filling) is left out.
loaded = [s for s in samples if s[5] == '1']
mid = len(loaded) // 2
first = [s for s in loaded[:mid] if int(s[0]) > cycle] or loaded[:mid]
second = loaded[mid:]
rss0, rss1 = max(int(s[2]) for s in first), max(int(s[2]) for s in second)
fd0, fd1 = max(int(s[3]) for s in first), max(int(s[3]) for s in second)
last = loaded[-1]
peak = max(int(s[2]) for s in samples)
reqs = int(re.search(r'(\d+) requests in', wrk).group(1))
non2xx = int(m.group(1)) if (m := re.search(r'Non-2xx or 3xx responses: (\d+)', wrk)) else 0
sockerr = re.search(r'Socket errors: (.*)', wrk)
p99 = re.search(r'99%\s+(\S+)', wrk).group(1)
print(wrk)
print(f"requests {reqs}, non-2xx {non2xx}, p99 {p99}; {'socket errors: ' + sockerr.group(1) if sockerr else 'no socket errors'}")
print(f"RSS peak {rss0} KiB in the first half (after the first cycle), {rss1} KiB in the second "
      f"({(rss1 - rss0) / rss0 * 100:+.1f}%)")
ends = [s for s in samples if int(s[0]) % cycle == 0 and s[5] == '1']
print("RSS at the end of each cycle (KiB): " + " ".join(s[2] for s in ends))
print(f"descriptors at most {fd0} in the first half, {fd1} in the second; threads {last[4]}")
print(f"syncs {syncs:.0f} ok, {failed:.0f} failed, users synced {users:.0f}, admissions unreported (Redis hung or down) {unreported:.0f}; "
      f"redis up at the end: {up:.0f}; redis log lines: {loglines}")
print(f"the proxy's own count: 5xx {r5xx:.0f}, aborted {aborted:.0f}, 429 {r429:.0f} (wrk's non-2xx: {non2xx})")
ok = (not sockerr and rss1 <= rss0 * 1.02 and fd1 <= fd0 + 2 and up == 1
      and r5xx == 0 and aborted == 0 and non2xx == r429)
print("FLEET SOAK " + ("PASSED" if ok else "FAILED"))
sys.exit(0 if ok else 1)
PY
