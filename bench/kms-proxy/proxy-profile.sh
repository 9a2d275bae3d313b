#!/usr/bin/env bash
# bench/kms-proxy/proxy-profile.sh BUILD_DIR [CONCURRENCY] — where the proxy's own CPU goes: runs one level of the
# proxy bench (BENCH_REQUESTS, default 6000) and records only the nitrodiag-kms-proxy process with
# `perf record --call-graph dwarf -e cpu-clock` (this paravirtualised machine has no hardware counters), then prints
# each function's inclusive and self share of the proxy's samples (a function counted once per sample however deep it
# recurses). Needs perf and root (or perf_event_paranoid <= 0). PROFILE_KEEP=FILE keeps perf.data. Not run by
# `make bench`; bench/kms-proxy/profile.sh shares the machine among the bench's processes instead. The figures in
# docs/performance.md ("The proxy's CPU per request") come from this.
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
conc=${2:-16}
command -v perf >/dev/null || { echo "proxy-profile: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
tmp="$(mktemp -d)"
drv=""
cleanup() { [ -n "$drv" ] && kill "$drv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
BENCH_CONCURRENCY=$conc BENCH_REQUESTS=${BENCH_REQUESTS:-6000} ND_TEST_TMP="$tmp" \
  "$build/nitrodiag-proxytest" bench "$build" > "$tmp/result.json" 2> "$tmp/stderr" &
drv=$!
pid=""
for _ in $(seq 1 400); do
  pid=$(pgrep -P "$drv" -f nitrodiag-kms-proxy | head -1 || true)
  [ -n "$pid" ] && break
  sleep 0.05
done
[ -n "$pid" ] || { echo "proxy-profile: the proxy did not start" >&2; cat "$tmp/stderr" >&2; exit 1; }
perf record -q -F 3000 --call-graph dwarf,16384 -e cpu-clock -p "$pid" -o "$tmp/perf.data" 2>/dev/null &
rec=$!
wait "$drv" || { cat "$tmp/stderr" >&2; exit 1; }
drv=""
kill -INT "$rec" 2>/dev/null || true
wait "$rec" || true
echo "== result (concurrency $conc)"
cat "$tmp/result.json"; echo
[ -n "${PROFILE_KEEP:-}" ] && cp "$tmp/perf.data" "$PROFILE_KEEP"
echo "== the proxy's functions: inclusive % / self % of its samples"
perf script -i "$tmp/perf.data" 2>/dev/null | python3 -c '
import collections, re, sys
incl, selfc, n, stack = collections.Counter(), collections.Counter(), 0, []
def flush():
    global n
    if not stack:
        return
    n += 1
    selfc[stack[0]] += 1
    for s in set(stack):
        incl[s] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack = []; continue
    if line[0] in "\t ":
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            m = re.match(r"(.*?) \((.*)\)$", parts[1])
            sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1) if m else parts[1])
            stack.append("?" + m.group(2).split("/")[-1] if sym == "[unknown]" and m else sym)
flush()
print("samples", n)
for s, c in incl.most_common(int(sys.argv[1])):
    print(f"{100 * c / n:6.2f}% {100 * selfc[s] / n:6.2f}%  {s}")
' "${PROFILE_TOP:-60}"
