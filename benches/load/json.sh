#!/usr/bin/env bash
# Whole-binary cost of JSON validation: POST of a 1 KB JSON body, validating (A) vs `--json-methods ''` (B).
#   bash benches/load/json.sh            # ROUNDS=5 DURATION=6 CONNS=64
cd "$(dirname "$0")/../.." || exit 1
A_ARGS="--rate 0" B_ARGS="--rate 0 --json-methods=" SCRIPT=benches/load/post.lua exec bash benches/load/ab.sh
