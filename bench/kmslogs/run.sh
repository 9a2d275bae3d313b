#!/usr/bin/env bash
# bench/kmslogs/run.sh BUILD_DIR — kms-logs against grep -F and jq on a 1 GiB KMS proxy log (mixed plain,
# tracing-wrapped and prefixed lines with journald noise and decoys), for the same three selections: one request
# id, errors only, throttled. Reports wall time (best of 3 for nitrodiag and grep, one run for jq, warm page cache)
# and matches against the generator's truth, so grep's false positives and jq's misses are counted.
# Targets: nitrodiag >= 10x faster than jq and within 2x of grep. Not part of ctest (run by `make bench`).
# Then the whole-log summary (mode=summary, no filter: every event read, every counter): against jq reading every
# event and `wc -l` (which touches every byte: the memory-speed anchor), plain and gzip'd (against `zcat | wc -l`),
# since= by binary search, with peak RSS; ratios are within this run.
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

# time_cmd RUNS CMD… -> "wall cpu lines": the best of RUNS by CPU time (user + system of the tool itself, which a
# loaded shared machine disturbs far less than wall time) and that run's wall time. Output goes to a regular file
# (GNU grep stops at the first match when its output is /dev/null); matching lines are counted afterwards.
time_cmd() {
  local runs=$1; shift
  local best_cpu="" best_wall=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$@" > "$TMP/out" 2>/dev/null || true
    local wall user sys cpu
    read -r wall user sys < <(tail -n 1 "$TMP/time")
    cpu=$(echo "$user + $sys" | bc)
    if [ -z "$best_cpu" ] || [ "$(echo "$cpu < $best_cpu" | bc)" = 1 ]; then best_cpu=$cpu; best_wall=$wall; fi
  done
  printf '%.2f %.2f %d\n' "$best_wall" "$best_cpu" "$(count_lines)"
}

UNWRAP='fromjson? | (if (.fields.json|type) == "string" then (.fields.json|fromjson) else . end)'
count_lines() { if [ "$COUNT" = nd ]; then grep -c "^$LOG:" "$TMP/out" || true; else grep -c . "$TMP/out" || true; fi; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b + 0 <= 0) print "-"; else printf "%.1f", a / b }'; }

declare -A ND_T ND_C ND_N GR_T GR_C GR_N JQ_T JQ_C JQ_N
sel=(rid errors throttled)
nd_args_rid=("request_id=$RID");  grep_rid=(-e "$RID")
nd_args_errors=("errors=true");    grep_errors=(-e '"ok":false' -e '\"ok\":false')
nd_args_throttled=("throttled=true"); grep_throttled=(-e UpstreamThrottled -e upstream_throttled)
jq_rid=(--arg rid "$RID" "$UNWRAP | select(.request_id == \$rid)")
jq_errors=("$UNWRAP | select(.event == \"kms_proxy_response\" and .ok == false)")
jq_throttled=("$UNWRAP | select(.event == \"kms_proxy_response\" and ((.error_code // \"\") | ascii_downcase | gsub(\"_\"; \"\")) == \"upstreamthrottled\")")

for s in "${sel[@]}"; do
  declare -n nda="nd_args_$s" ga="grep_$s" ja="jq_$s"
  COUNT=nd;   read -r ND_T[$s] ND_C[$s] ND_N[$s] < <(time_cmd 3 "$ND" kms-logs "$LOG" "${nda[@]}" limit=0)
  COUNT=grep; read -r GR_T[$s] GR_C[$s] GR_N[$s] < <(time_cmd 3 grep -F "${ga[@]}" "$LOG")
  if [ -z "${KMSLOGS_BENCH_NO_JQ:-}" ]; then
    COUNT=jq; read -r JQ_T[$s] JQ_C[$s] JQ_N[$s] < <(time_cmd 1 jq -R -c "${ja[@]}" "$LOG")
  else
    JQ_T[$s]=nan; JQ_C[$s]=nan; JQ_N[$s]=0
  fi
  echo "kmslogs bench: $s: nitrodiag ${ND_C[$s]} s CPU (${ND_T[$s]} s wall, ${ND_N[$s]}), grep ${GR_C[$s]} s CPU (${GR_T[$s]} s, ${GR_N[$s]}), jq ${JQ_C[$s]} s CPU (${JQ_T[$s]} s, ${JQ_N[$s]})"
  unset -n nda ga ja
done

want_rid=$(truth rid_lines); want_err=$(truth errors); want_thr=$(truth throttled)
declare -A WANT=([rid]=$want_rid [errors]=$want_err [throttled]=$want_thr)
{
  echo "kms-logs on $(numfmt --to=iec "$(truth bytes)") ($(truth lines) lines), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%d)"
  echo "(CPU = user + system seconds of the tool, best of 3 (jq: 1 run); wall time of that run in parentheses)"
  echo
  echo "| selection | true matches | nitrodiag | grep -F | jq | grep false + | nitrodiag / grep (CPU) | jq / nitrodiag (CPU) |"
  echo "|---|---|---|---|---|---|---|---|"
  for s in "${sel[@]}"; do
    w=${WANT[$s]}
    fp=$(( GR_N[$s] > w ? GR_N[$s] - w : 0 ))
    vs=$(ratio "${ND_C[$s]}" "${GR_C[$s]}")
    jqx=$(ratio "${JQ_C[$s]}" "${ND_C[$s]}")
    echo "| $s | $w | ${ND_C[$s]} s (${ND_T[$s]}), ${ND_N[$s]} | ${GR_C[$s]} s (${GR_T[$s]}), ${GR_N[$s]} | ${JQ_C[$s]} s (${JQ_T[$s]}), ${JQ_N[$s]} | +$fp | ${vs}x | ${jqx}x |"
  done
} | tee "$OUT"

# ---- the whole-log summary -------------------------------------------------------------------------------------
# time_rss CMD… -> "wall cpu maxrss_kib" of one run (the shell for pipelines: its children are counted).
time_rss() {
  /usr/bin/time -f "%e %U %S %M" -o "$TMP/time" "$@" > /dev/null 2>&1 || true
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$TMP/time")
  printf '%.2f %.2f %d\n' "$wall" "$(echo "$user + $sys" | bc)" "$rss"
}
best_of() { # RUNS CMD… -> the run with the least CPU
  local runs=$1; shift; local best="" line
  for _ in $(seq "$runs"); do
    line=$(time_rss "$@")
    if [ -z "$best" ] || [ "$(echo "$(echo "$line" | cut -d' ' -f2) < $(echo "$best" | cut -d' ' -f2)" | bc)" = 1 ]; then best=$line; fi
  done
  echo "$best"
}
GZ=$LOG.gz
if [ ! -s "$GZ" ] || [ "$LOG" -nt "$GZ" ]; then gzip -1 -c "$LOG" > "$GZ.tmp" && mv "$GZ.tmp" "$GZ"; fi
cat "$GZ" > /dev/null
# since: the last quarter of the log's time (gen.py writes one pair per millisecond from 2026-01-27T00:00:00Z)
SINCE=$(python3 -c 'import sys; print("%.3f" % (1769472000 + int(sys.argv[1]) / 2 * 0.001 * 0.75))' "$(truth lines)")
read -r S_W S_C S_M < <(best_of 3 "$ND" kms-logs "$LOG" mode=summary)
read -r W_W W_C W_M < <(best_of 3 wc -l "$LOG")
read -r G_W G_C G_M < <(best_of 3 "$ND" kms-logs "$GZ" mode=summary)
read -r Z_W Z_C Z_M < <(best_of 3 sh -c 'zcat "$1" | wc -l' sh "$GZ")
read -r T_W T_C T_M < <(best_of 3 "$ND" kms-logs "$LOG" mode=summary "since=$SINCE")
if [ -z "${KMSLOGS_BENCH_NO_JQ:-}" ]; then
  read -r J_W J_C J_M < <(time_rss jq -R -c "$UNWRAP | select(.event == \"kms_proxy_response\") | [.ok, .error_code, .duration_ms]" "$LOG")
else
  J_W=nan; J_C=nan; J_M=0
fi
SUMOUT=$(dirname "$OUT")/kmslogs-summary.md
{
  echo "kms-logs summary of the whole $(numfmt --to=iec "$(truth bytes)") log ($(truth lines) lines), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%d)"
  echo "(CPU = user + system seconds, best of 3 (jq: 1 run); wall time in parentheses; peak RSS)"
  echo
  echo "| what | CPU s (wall) | peak RSS | ratio (CPU) |"
  echo "|---|---|---|---|"
  echo "| \`wc -l\` | $W_C ($W_W) | $((W_M / 1024)) MiB | 1 |"
  echo "| \`nitrodiag kms-logs FILE mode=summary\` | $S_C ($S_W) | $((S_M / 1024)) MiB | $(ratio "$S_C" "$W_C")x wc -l |"
  echo "| jq, every response unwrapped (.ok, .error_code, .duration_ms) | $J_C ($J_W) | $((J_M / 1024)) MiB | $(ratio "$J_C" "$S_C")x nitrodiag |"
  echo "| \`zcat FILE.gz \| wc -l\` | $Z_C ($Z_W) | $((Z_M / 1024)) MiB | 1 |"
  echo "| \`nitrodiag kms-logs FILE.gz mode=summary\` | $G_C ($G_W) | $((G_M / 1024)) MiB | $(ratio "$G_C" "$Z_C")x zcat \| wc -l |"
  echo "| \`nitrodiag kms-logs FILE mode=summary since=<last quarter>\` | $T_C ($T_W) | $((T_M / 1024)) MiB | $(ratio "$T_C" "$S_C")x the whole summary |"
} | tee "$SUMOUT"
echo "kmslogs bench: results in $OUT and $SUMOUT"

# Big logs (1 GiB, 5 GiB …; generated into /tmp and deleted afterwards): only when asked, they take minutes.
if [ -n "${KMSLOGS_BIG:-}" ]; then
  # shellcheck disable=SC2086
  "$HERE/big.sh" "$BUILD" $KMSLOGS_BIG
fi
