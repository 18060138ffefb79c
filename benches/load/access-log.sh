#!/usr/bin/env bash
# Whole-binary cost of the access log: GET keep-alive with `--access-log FILE` (A) vs without (B).
#   bash benches/load/access-log.sh      # ROUNDS=5 DURATION=6 CONNS=64
cd "$(dirname "$0")/../.." || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
A_ARGS="--rate 0 --access-log $log" B_ARGS="--rate 0" SCRIPT=benches/load/get.lua bash benches/load/ab.sh
