#!/usr/bin/env bash
# Slow-client attacks (slowhttptest: slow headers -H, slow body -B, slow read -X) against a release build, on
# loopback, while a second client (curl, a new connection per request) checks the service stays available.
#
#   cargo build --release                 # (with CARGO_TARGET_DIR if you use one)
#   benches/soak/slowhttp.sh              # modes H B X M; MODES="H" for one; LEN=60 CONNS=1000 RATE=200
#
# Modes: H slow headers (slowloris), B slow body (Content-Length 8192), X slow read (1 MiB responses, the
# receive window kept at 512-1024 bytes), M slow body announcing Content-Length: 1048576 (= --max-body):
# what a slow body can pin when it announces the largest body allowed.
# Accept: portcullis refuses requests without one (406, connection kept). `-m` sets it in -H/-B; -X ignores
# `-m`, so there it is added through slowhttptest's Cookie option (-j 'a=b\r\nAccept: */*'), which
# writes the value verbatim: without it every slow-read request gets a 327-byte 406 and nothing is slow.
#
# Needs slowhttptest (Debian: apt-get install slowhttptest), curl, python3. Everything runs under nice -n 19.
# The proxy runs with its default timeouts and limits, `--rate 0` (the attack comes from one address: with the
# default per-address limit most slow-body heads would get 429 and the run would measure the limiter, not the
# body timeout; a real attacker has many addresses) and the recording upstream of benches/soak/upstream.py,
# which serves `GET /big?n=1048576` for the slow-read mode. Per mode it records: slowhttptest's summary,
# the probe's status codes and worst latency, and the proxy's RSS (VmRSS) and open descriptors every 5 s
# before, during and after the attack. Output: $OUT (default /tmp/portcullis-slowhttp).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}
OUT=${OUT:-/tmp/portcullis-slowhttp}
MODES=${MODES:-"H B X M"}
LEN=${LEN:-60}          # seconds of attack per mode
CONNS=${CONNS:-1000}    # slowhttptest -c
RATE=${RATE:-200}       # slowhttptest -r (connections per second)
PORT=${PORT:-19110}
UPORT=${UPORT:-19111}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release first" >&2; exit 1; }
command -v slowhttptest >/dev/null || { echo "slowhttptest not installed" >&2; exit 1; }
need=$((CONNS * 2 + 100))
if [ "$(ulimit -n)" -lt "$need" ]; then ulimit -n "$need" 2>/dev/null || { echo "ulimit -n $(ulimit -n) < $need" >&2; exit 1; }; fi
mkdir -p "$OUT"
rm -f "$OUT"/*.log "$OUT"/*.txt "$OUT"/upstream.jsonl

nice -n 19 python3 benches/soak/upstream.py "$UPORT" "$OUT/upstream.jsonl" &
UPID=$!
nice -n 19 "$BIN" --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$UPORT" --rate 0 --log-level warn \
    2>"$OUT/proxy.log" &
PID=$!
cleanup() { kill "$PID" "$UPID" 2>/dev/null || true; }
trap cleanup EXIT
sleep 1
kill -0 "$PID"

sample() { # label -> "label rss_kib fds tcp_mem" (tcp_mem: the kernel's TCP buffers, all sockets, KiB)
    local rss fds tcp
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    fds=$(ls "/proc/$PID/fd" | wc -l)
    tcp=$(awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * 4}' /proc/net/sockstat)
    echo "$1 rss_kib=$rss fds=$fds kernel_tcp_mem_kib=$tcp"
}

for mode in $MODES; do
    case $mode in
    H) args=(-H -i 10 -x 24 -u "http://127.0.0.1:$PORT/slowloris") ;;
    B) args=(-B -i 10 -s 8192 -x 24 -t POST -f application/json -u "http://127.0.0.1:$PORT/slowbody") ;;
    X) args=(-X -k 1 -n 1 -w 512 -y 1024 -z 32 -j $'a=b\r\nAccept: */*' -u "http://127.0.0.1:$PORT/big?n=1048576") ;;
    M) args=(-B -i 10 -s 1048576 -x 24 -t POST -f application/json -u "http://127.0.0.1:$PORT/slowbody") ;;
    *) echo "unknown mode $mode" >&2; exit 1 ;;
    esac
    log="$OUT/mode-$mode.txt"
    {
        echo "== mode $mode: slowhttptest $(printf '%q ' "${args[@]}")-c $CONNS -r $RATE -l $LEN -p 3 -m '*/*'"
        sample before
    } | tee "$log"
    # The attack (bounded by -l; slowhttptest also stops once its probe says the service is down for good).
    nice -n 19 slowhttptest "${args[@]}" -c "$CONNS" -r "$RATE" -l "$LEN" -p 3 -m '*/*' \
        >"$OUT/slowhttptest-$mode.log" 2>&1 &
    SPID=$!
    # The probe: a new connection per request, 2 per second, bounded in count.
    probes=$((LEN * 2 + 20))
    (
        for _ in $(seq "$probes"); do
            curl -s -o /dev/null --max-time 5 -H 'Accept: */*' -w '%{http_code} %{time_total}\n' \
                "http://127.0.0.1:$PORT/probe" || echo "000 5"
            sleep 0.5
            kill -0 "$SPID" 2>/dev/null || break
        done
    ) >"$OUT/probe-$mode.txt" &
    PRPID=$!
    t=0
    while kill -0 "$SPID" 2>/dev/null && [ "$t" -lt $((LEN + 60)) ]; do
        sleep 5
        t=$((t + 5))
        sample "during+${t}s" | tee -a "$log"
    done
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    wait "$PRPID" 2>/dev/null || true
    for s in 5 35; do # after the attack: every client timeout has passed by +35 s (body timeout 30 s)
        sleep $((s == 5 ? 5 : 30))
        sample "after+${s}s" | tee -a "$log"
    done
    {
        echo "-- slowhttptest summary:"
        # The last status block slowhttptest printed, and its verdict.
        sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$OUT/slowhttptest-$mode.log" | grep -E \
            "Exit status|service available|closed:|connected:|pending:|error:|initializing" | tail -7
        echo "-- probe (curl, Accept: */*): $(wc -l <"$OUT/probe-$mode.txt") requests, by status:"
        awk '{print $1}' "$OUT/probe-$mode.txt" | sort | uniq -c
        awk '{ if ($2 > m) m = $2 } END { printf "   slowest probe: %.3f s\n", m }' "$OUT/probe-$mode.txt"
    } | tee -a "$log"
done
kill -0 "$PID" && echo "proxy still running (pid $PID): no crash"
grep -E "panic|error" "$OUT/proxy.log" | head -5 || true
