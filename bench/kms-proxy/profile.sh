#!/usr/bin/env bash
# bench/kms-proxy/profile.sh BUILD_DIR [CONCURRENCY] — where the time goes at one connection (or CONCURRENCY):
# runs only that level of the proxy bench (direct client, then the same requests through the proxy) under
# `perf record -a` (cpu-clock samples of every process: this paravirtualised machine has no hardware counters) and
# prints the share of each program (proxy, fake KMS, the bench client, kernel threads) and the proxy's own top
# symbols. Needs perf and root (or perf_event_paranoid <= 0). Not run by `make bench` (it needs perf); see
# docs/performance.md.
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
conc=${2:-1}
command -v perf >/dev/null || { echo "profile: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
BENCH_CONCURRENCY=$conc BENCH_REQUESTS=${BENCH_REQUESTS:-2000} ND_TEST_TMP="$tmp" \
  perf record -q -a -g -e cpu-clock -F 2000 -o "$tmp/perf.data" -- "$build/nitrodiag-proxytest" bench "$build" \
  > "$tmp/result.json" 2> "$tmp/stderr" || { cat "$tmp/stderr" >&2; exit 1; }
echo "== result (concurrency $conc)"
cat "$tmp/result.json"; echo
echo "== samples by program, among the bench's own (fake KMS, the client/driver, the proxy; whole run: the direct"
echo "   phase, then the proxy phase; comm names are cut at 15 bytes)"
perf report -i "$tmp/perf.data" --no-children --comms nitrodiag-fake-,nitrodiag-proxy,nitrodiag-kms-p \
  --percentage relative --sort comm,dso --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -16 || true
[ -n "${PROFILE_KEEP:-}" ] && cp "$tmp/perf.data" "$PROFILE_KEEP" # for perf report -g by hand
echo "== the proxy's top symbols"
perf report -i "$tmp/perf.data" --no-children --comms nitrodiag-kms-p --percentage relative --sort dso,sym --stdio 2>/dev/null \
  | grep -E "^ +[0-9]" | head -25 || true
