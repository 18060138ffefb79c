#!/usr/bin/env bash
# wrk at constant load through an in-place upgrade (SIGUSR2) and through a socket-activated stop/start
# (systemd-style: the socket is held by this script's python helper, passed as descriptor 3 with LISTEN_FDS).
# Prints wrk's totals for each: no connect error (wrk's "Socket errors: connect") and no non-2xx expected.
#   bash benches/load/upgrade.sh       # DURATION=6 (s of load around each event)
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/load/lib.sh
DURATION=${DURATION:-6}
command -v wrk >/dev/null && command -v nginx >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light >/dev/null
}
cargo build --release --quiet
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pkill -f "portcullis --listen 127.0.0.1:$PP" 2>/dev/null || true; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
UP=$(free_port); PP=$(free_port); PS=$(free_port)
ok_upstream_conf "$work" "$UP"
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)
wait_port "$UP"
BIN=$PWD/target/release/portcullis

echo "== in-place upgrade (SIGUSR2) under load"
"$BIN" --listen 127.0.0.1:$PP --upstream 127.0.0.1:$UP --workers 2 --rate 0 2>"$work/a.log" & old=$!; pids+=($old)
wait_port "$PP"
wrk -t2 -c64 -d"${DURATION}s" -s benches/load/get.lua "http://127.0.0.1:$PP/" > "$work/wrk1.txt" & w=$!
sleep $((DURATION / 3))
kill -USR2 "$old"
wait "$w"; cat "$work/wrk1.txt" | grep -E "requests in|Socket errors|Non-2xx" || true
grep -E "SIGUSR2|stopped" "$work/a.log" || true

echo "== socket-activated stop/start under load"
python3 - "$BIN" "$PS" "$UP" "$DURATION" <<'PY'
import os, socket, subprocess, sys, time
binary, port, up, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(4096); os.set_inheritable(s.fileno(), True)
def start():
    script = f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=listen exec "$0" --listen 127.0.0.1:1 --upstream 127.0.0.1:{up} --workers 2 --rate 0 3<&{s.fileno()}'
    return subprocess.Popen(["sh", "-c", script, binary], pass_fds=[s.fileno()], stderr=subprocess.DEVNULL)
a = start(); time.sleep(0.5)
wrk = subprocess.Popen(["wrk", "-t2", "-c64", f"-d{duration}s", "-s", "benches/load/get.lua", f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
time.sleep(duration / 3); a.terminate(); a.wait(); b = start()
out = wrk.communicate()[0]; b.terminate(); b.wait()
print("\n".join(l for l in out.splitlines() if "requests in" in l or "Socket errors" in l or "Non-2xx" in l) or out)
PY
