#!/usr/bin/env bash
# Soak: mixed traffic on loopback at bounded rates against a release build, with the upstream restarted once in
# the middle; RSS and descriptors sampled every 10 s; everything the upstream received verified at the end.
#
#   cargo build --release                     # (honours CARGO_TARGET_DIR)
#   benches/soak/run.sh                       # 600 s; DURATION=60 benches/soak/run.sh for a quick run
#
# The traffic mix, the checks and the verdict are described at the top of benches/soak/soak.py (Python 3
# standard library only; benches/soak/upstream.py is the recording upstream). Output: the report on stdout
# and in $OUT/report.txt, with $OUT/events.jsonl (every client outcome), $OUT/upstream.jsonl (every request
# the upstream received) and $OUT/proxy.log. Exit status 0 when the verdict is PASSED.
# Everything runs under nice -n 19; ports 19120 (proxy) and 19121 (upstream) on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/portcullis}
DURATION=${DURATION:-600}
OUT=${OUT:-/tmp/portcullis-soak}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release first" >&2; exit 1; }
exec nice -n 19 python3 benches/soak/soak.py --bin "$BIN" --duration "$DURATION" --out "$OUT"
