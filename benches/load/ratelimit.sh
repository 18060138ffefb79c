#!/usr/bin/env bash
# Whole-binary cost of the rate limit: 100 000 rotating users, `--rate 10` (A) vs `--rate 0` (B).
#   bash benches/load/ratelimit.sh       # ROUNDS=5 DURATION=6 CONNS=64
cd "$(dirname "$0")/../.." || exit 1
A_ARGS="--rate 10 --ip-rate 10000000 --ip-burst 10000000" B_ARGS="--rate 0" SCRIPT=benches/load/users.lua exec bash benches/load/ab.sh
