#!/usr/bin/env bash
# Cost of observe mode: every rule in `observe` (A) vs every rule in `enforce` (B), with traffic that passes
# (GET with Accept, 100 000 rotating users far below --rate 10), alternating rounds.
#   bash benches/load/observe.sh       # ROUNDS=5 DURATION=6 CONNS=64
cd "$(dirname "$0")/../.." || exit 1
A_ARGS="--rate 10 --ip-rate 10000000 --ip-burst 10000000 --accept-rule observe --content-type-rule observe --json-rule observe --rate-rule observe" \
  B_ARGS="--rate 10 --ip-rate 10000000 --ip-burst 10000000" SCRIPT=benches/load/users.lua exec bash benches/load/ab.sh
