#!/usr/bin/env bash
# `make demo`: the main job — diag10 against the simulated Nitro host — printing the verdict and the bundle path.
# Falls back to the engine self-check runbook while diag10 or the simulator are not in this build.
set -uo pipefail
BUILD=${1:-build}
BIN="$BUILD/nitrodiag"
OUT=${ND_DEMO_OUT:-$PWD/demo-out}
mkdir -p "$OUT"
export NITRODIAG_PATH=
if "$BIN" list 2>/dev/null | grep -q '^diag10 ' && "$BIN" help diag10 >/dev/null 2>&1; then
  "$BIN" --sim healthy --out "$OUT" diag10
else
  "$BIN" --out "$OUT" selfcheck
fi
rc=$?
echo "(exit status $rc; bundles in $OUT)"
exit $rc
