#!/usr/bin/env bash
# Instructions per body of the JSON validator (UTF-8 check and scan), counted by callgrind inside
# `JsonValidator::validate` only: repeatable where timings are not. Prints, per body, instructions per body,
# per byte and per 64-byte block, and the mispredicted conditional branches per block of callgrind's simple
# predictor model (a CPU's own predictor does better; read them as a comparison between builds).
#
#   bash benches/json-instructions.sh              the validator as built from this tree
#   FLOOR=1 bash benches/json-instructions.sh      the same with the grammar rules step left out
#                                                  (benches/json-floor.patch, applied to a temporary worktree)
#
# FLOOR=1 is a measurement, not a validator: what UTF-8, classification, strings, brackets, numbers and
# literals cost without the rules, so how fast the validator could be with rules that cost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
work=$(mktemp -d)
src=.
target=${CARGO_TARGET_DIR:-$PWD/target}
cleanup() {
  if [ "${FLOOR:-0}" = 1 ]; then git worktree remove --force "$work/tree" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
if [ "${FLOOR:-0}" = 1 ]; then
  git worktree add --detach "$work/tree" HEAD >/dev/null 2>&1
  git -C "$work/tree" apply "$PWD/benches/json-floor.patch"
  src=$work/tree
  # A build of its own: the tree's own example binary stays the validator.
  target=$target/json-floor
fi
CARGO_TARGET_DIR=$target cargo build -q --release --example validate_json --manifest-path "$src/Cargo.toml"
bin=$target/release/examples/validate_json
printf '%-26s %12s %9s %10s %16s\n' body instructions per-byte per-block mispredicts/block
for f in benches/load/body-1k.json benches/load/body-64k.json \
  benches/corpora/json-bench/{twitter,citm_catalog,canada,github_events}.json; do
  valgrind --tool=callgrind --branch-sim=yes --callgrind-out-file="$work/cg" \
    --toggle-collect='*JsonValidator*validate*' "$bin" "$f" "$N" >/dev/null 2>&1
  # The example validates once more than N (a first check before the timed loop).
  awk -v f="$(basename "$f")" -v n=$((N + 1)) -v size="$(stat -c %s "$f")" '
    /^events:/ { for (i = 2; i <= NF; i++) col[$i] = i }
    /^(summary|totals):/ { ir = $col["Ir"]; bcm = $col["Bcm"] }
    END {
      blocks = size / 64
      printf "%-26s %12.0f %9.2f %10.1f %16.2f\n", f, ir / n, ir / n / size, ir / n / blocks, bcm / n / blocks
    }' "$work/cg"
  rm -f "$work"/cg*
done
