#!/usr/bin/env bash
# bench/kmslogs/run.sh BUILD_DIR — kms-logs against grep -F and jq on a 1 GiB KMS proxy log (mixed plain,
# tracing-wrapped and prefixed lines with journald noise and decoys), for the same three selections: one request
# id, errors only, throttled. Reports wall time (best of 3 for nitrodiag and grep, one run for jq, warm page cache)
# and matches against the generator's truth, so grep's false positives and jq's misses are counted.
# Targets: nitrodiag >= 10x faster than jq and within 2x of grep. Not part of ctest (run by `make bench`).
set -euo pipefail

BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ND=$(cd "$BUILD" && pwd)/nitrodiag
SIZE=${KMSLOGS_BENCH_BYTES:-1073741824}
DATA=$(cd "$BUILD" && pwd)/bench-data
LOG=$DATA/kms-$SIZE.log
RID=7f1c9a52-3b7e-4c1e-9a55-0c1d2e3f4a01
OUT=$(cd "$BUILD" && pwd)/bench-results/kmslogs.md

[ -x "$ND" ] || { echo "kmslogs bench: $ND not built" >&2; exit 1; }
# Bench-only tools are installed here, not by tools/install-deps.sh.
if ! command -v jq >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get install -y -qq --no-install-recommends jq >/dev/null
  else
    echo "kmslogs bench: jq is missing: sudo apt-get install jq" >&2; exit 1
  fi
fi

mkdir -p "$DATA" "$(dirname "$OUT")"
if [ ! -s "$LOG" ] || [ ! -s "$LOG.truth" ] || [ "$HERE/gen.py" -nt "$LOG" ]; then
  echo "kmslogs bench: generating $(numfmt --to=iec "$SIZE") log in $LOG"
  python3 "$HERE/gen.py" "$LOG.tmp" "$SIZE" "$RID" > "$LOG.truth"
  mv "$LOG.tmp" "$LOG"
fi
TRUTH=$(cat "$LOG.truth")
truth() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$TRUTH" "$1"; }
cat "$LOG" > /dev/null # warm the page cache for every tool alike

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# time_cmd RUNS CMD… -> "seconds lines" (best wall time of RUNS; output lines counted through a pipe, as a user
# would consume them: GNU grep stops early when its output is /dev/null)
time_cmd() {
  local runs=$1; shift
  local best="" lines=0
  for _ in $(seq "$runs"); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" > "$TMP/out" 2>/dev/null || true
    t1=$(date +%s.%N)
    local el
    el=$(echo "$t1 - $t0" | bc)
    if [ -z "$best" ] || [ "$(echo "$el < $best" | bc)" = 1 ]; then best=$el; fi
  done
  lines=$(grep -c . "$TMP/out" || true)
  printf '%.2f %d\n' "$best" "$lines"
}

UNWRAP='fromjson? | (if (.fields.json|type) == "string" then (.fields.json|fromjson) else . end)'
run_nd()   { "$ND" kms-logs "$LOG" "$@" limit=0 | grep "^$LOG:"; }
run_grep() { grep -F "$@" "$LOG"; }
run_jq()   { jq -R -c "$@" "$LOG"; }

declare -A ND_T ND_N GR_T GR_N JQ_T JQ_N
sel=(rid errors throttled)
nd_args_rid=("request_id=$RID");  grep_rid=(-e "$RID")
nd_args_errors=("errors=true");    grep_errors=(-e '"ok":false' -e '\"ok\":false')
nd_args_throttled=("throttled=true"); grep_throttled=(-e UpstreamThrottled -e upstream_throttled)
jq_rid=(--arg rid "$RID" "$UNWRAP | select(.request_id == \$rid)")
jq_errors=("$UNWRAP | select(.event == \"kms_proxy_response\" and .ok == false)")
jq_throttled=("$UNWRAP | select(.event == \"kms_proxy_response\" and ((.error_code // \"\") | ascii_downcase | gsub(\"_\"; \"\")) == \"upstreamthrottled\")")

for s in "${sel[@]}"; do
  declare -n nda="nd_args_$s" ga="grep_$s" ja="jq_$s"
  read -r ND_T[$s] ND_N[$s] < <(time_cmd 3 run_nd "${nda[@]}")
  read -r GR_T[$s] GR_N[$s] < <(time_cmd 3 run_grep "${ga[@]}")
  if [ -z "${KMSLOGS_BENCH_NO_JQ:-}" ]; then
    read -r JQ_T[$s] JQ_N[$s] < <(time_cmd 1 run_jq "${ja[@]}")
  else
    JQ_T[$s]=nan; JQ_N[$s]=0
  fi
  echo "kmslogs bench: $s: nitrodiag ${ND_T[$s]} s (${ND_N[$s]}), grep ${GR_T[$s]} s (${GR_N[$s]}), jq ${JQ_T[$s]} s (${JQ_N[$s]})"
  unset -n nda ga ja
done

want_rid=$(truth rid_lines); want_err=$(truth errors); want_thr=$(truth throttled)
declare -A WANT=([rid]=$want_rid [errors]=$want_err [throttled]=$want_thr)
{
  echo "kms-logs on $(numfmt --to=iec "$(truth bytes)") ($(truth lines) lines; $(nproc) CPUs; $(date -u +%Y-%m-%d))"
  echo
  echo "| selection | true matches | nitrodiag | grep -F | jq | grep false +/− | vs grep | jq / nitrodiag |"
  echo "|---|---|---|---|---|---|---|---|"
  for s in "${sel[@]}"; do
    w=${WANT[$s]}
    fp=$(( GR_N[$s] > w ? GR_N[$s] - w : 0 ))
    vs=$(echo "scale=2; ${ND_T[$s]} / ${GR_T[$s]}" | bc)
    if [ "${JQ_T[$s]}" = nan ]; then jqx="-"; else jqx=$(echo "scale=1; ${JQ_T[$s]} / ${ND_T[$s]}" | bc); fi
    echo "| $s | $w | ${ND_T[$s]} s, ${ND_N[$s]} | ${GR_T[$s]} s, ${GR_N[$s]} | ${JQ_T[$s]} s, ${JQ_N[$s]} | +$fp | ${vs}x | ${jqx}x |"
  done
} | tee "$OUT"
echo "kmslogs bench: results in $OUT"
