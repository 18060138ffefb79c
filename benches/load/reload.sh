#!/usr/bin/env bash
# Requests/s and p99 latency across SIGHUP reloads under load: two wrk runs of DURATION seconds against one
# portcullis (one worker, --config and --limits files, 100 000 rotating users), the first without reloads,
# the second with a SIGHUP every RELOAD_EVERY seconds that flips the Accept rule (observe <-> enforce: the
# traffic carries Accept, so both pass) and a tier's rate. Requests/s per 1 s slot are read from /metrics.
#   bash benches/load/reload.sh        # DURATION=10 CONNS=64 RELOAD_EVERY=1
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
RELOAD_EVERY=${RELOAD_EVERY:-1}
cargo build --release --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port); PP=$(free_port); AP=$(free_port)
ok_upstream_conf "$work" "$UP"
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
python3 - "$work/limits.toml" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("[tiers.gold]\nrate = 100\nusers = [\n")
    f.write("".join(f'  "Bearer gold-{i}",\n' for i in range(100000)))
    f.write("]\n")
PY
echo 'accept-rule = "observe"' > "$work/portcullis.toml"
./target/release/portcullis --listen 127.0.0.1:$PP --upstream 127.0.0.1:$UP --workers 1 --rate 10 $ONE_ADDRESS_MANY_USERS \
  --config "$work/portcullis.toml" --limits "$work/limits.toml" --admin 127.0.0.1:$AP 2>"$work/log" & pp=$!; pids+=($pp)
for p in $UP $PP $AP; do wait_port "$p"; done
sample() {  # forwarded+refused every 100 ms for $1 s
  python3 - "$AP" "$1" <<'PY'
import sys, time, urllib.request
port, secs = sys.argv[1], float(sys.argv[2])
def total():
    t = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return sum(int(l.rsplit(" ", 1)[1]) for l in t.splitlines() if l.startswith("portcullis_responses_total"))
t0 = time.time(); last = total(); per = []
while time.time() - t0 < secs:
    time.sleep(1.0); n = total(); per.append(n - last); last = n
print(" ".join(str(x) for x in per))
PY
}
for mode in steady reloading; do
  (sample $((DURATION - 1)) > "$work/$mode.per") & sp=$!
  if [ $mode = reloading ]; then
    ( end=$((SECONDS + DURATION)); flip=0
      while [ $SECONDS -lt $end ]; do
        sleep "$RELOAD_EVERY"; flip=$((1 - flip))
        if [ $flip = 1 ]; then echo 'accept-rule = "enforce"' > "$work/portcullis.toml"; sed -i 's/^rate = 100$/rate = 200/' "$work/limits.toml"
        else echo 'accept-rule = "observe"' > "$work/portcullis.toml"; sed -i 's/^rate = 200$/rate = 100/' "$work/limits.toml"; fi
        kill -HUP $pp
      done ) & rp=$!
  fi
  wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s benches/load/users.lua "http://127.0.0.1:$PP/" > "$work/$mode.wrk"
  wait $sp; [ $mode = reloading ] && wait $rp
  p99=$(awk '/^ +99%/ {print $2}' "$work/$mode.wrk"); rps=$(awk '/Requests\/sec/ {print $2}' "$work/$mode.wrk")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/$mode.wrk")
  echo -e "$mode\treq/s $rps\tp99 $p99\tnon-2xx ${non2xx:-0}\tper second: $(cat "$work/$mode.per")"
done
echo "reloads: $(curl -s 127.0.0.1:$AP/metrics | grep '^portcullis_reloads_total' | tr '\n' ' ')"
