#!/usr/bin/env bash
# `make demo`: the main job — diag10 against the simulated Nitro host (scenario "healthy") — printing the verdict,
# the findings and where the bundle went. Its exit status is diag10's (0 pass/warn, 1 a step failed, 4 deadline).
set -uo pipefail
BUILD=${1:-build}
OUT=${ND_DEMO_OUT:-$PWD/demo-out}
mkdir -p "$OUT"
NITRODIAG_PATH= "$BUILD/nitrodiag" --sim healthy --out "$OUT" diag10
rc=$?
echo "(exit status $rc; open the bundle with: $BUILD/nitrodiag bundle $OUT/<file>.tar.gz)"
exit $rc
