#!/usr/bin/env bash
# bench/run.sh BUILD_DIR — runs every benchmark (bench/*/run.sh) against the nitrodiag in BUILD_DIR. `make bench`
# calls it. Benchmarks are not tests: they print numbers (and the Markdown tables for docs/performance.md); they
# fail only when a benchmark cannot run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$(cd "${1:-build}" && pwd)"
status=0
for b in "$here"/*/run.sh; do
  [ -x "$b" ] || continue
  echo "== $(basename "$(dirname "$b")") =="
  if ! "$b" "$build"; then
    echo "bench: $(basename "$(dirname "$b")") failed" >&2
    status=1
  fi
done
exit $status
