#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — runs every bench/*/run.sh (called by `make bench`). Benchmarks are never part of ctest.
set -uo pipefail
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
status=0
for b in "$HERE"/*/run.sh; do
  [ -x "$b" ] || continue
  echo "== $(basename "$(dirname "$b")")"
  "$b" "$BUILD" || { echo "bench: $b failed" >&2; status=1; }
done
exit $status
