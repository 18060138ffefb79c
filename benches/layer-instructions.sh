#!/usr/bin/env bash
# Instructions per request of each case of the layer bench (benches/layer.rs), counted by callgrind over the
# timed part only (`timed_batch`: poll_ready + call + await + drop of each request), not timed: the count does
# not move with the machine's other load. Prints each case's instructions per request and, for each layer,
# what it adds over the bare handler.
#
#   bash benches/layer-instructions.sh            (REQUESTS=20000 per case by default)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-20000}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
cargo bench --bench layer --features tower --no-run 2>/dev/null
bin=$(ls -t target/release/deps/layer-* | grep -v '\.d$' | head -1)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
CASES=${CASES:-"get/bare get/portcullis_by_authorization get/governor_by_authorization+accept get/portcullis_by_ip get/governor_by_ip+accept post_json_1k/bare post_json_1k/portcullis_by_authorization post_json_1k/governor_by_authorization+accept"}
for c in $CASES; do
  LAYER_CASE=$c LAYER_REQUESTS=$REQUESTS valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
    --toggle-collect='layer::timed_batch' "$bin" --bench >/dev/null 2>&1
  ir=$(awk '/^(summary|totals):/ {print $2}' "$work/cg" | sort -n | tail -1)
  # Both runs were counted: per request over 2 x REQUESTS (the first run warms the tables up, the second
  # runs warm; both are within the figure).
  echo -e "$c\t$(awk -v ir="$ir" -v n="$REQUESTS" 'BEGIN {printf "%.0f", ir / (2 * n)}')"
  rm -f "$work"/cg*
done | tee "$work/r.tsv"
python3 - "$work/r.tsv" <<'PY'
import sys
rows = dict(l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l)
rows = {k: float(v) for k, v in rows.items()}
for kind in ('get', 'post_json_1k'):
    bare = rows.get(f'{kind}/bare')
    if bare is None:
        continue
    for k, v in rows.items():
        if k.startswith(kind + '/') and k != f'{kind}/bare':
            print(f'{k}: adds {v - bare:.0f} instructions per request')
PY
