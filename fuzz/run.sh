#!/usr/bin/env bash
# fuzz/run.sh — builds and runs the libFuzzer targets of fuzz/ (see fuzz/CMakeLists.txt).
#   run.sh build BUILD_DIR [CLANG]      configure fuzz/ as its own project with clang into BUILD_DIR, build it
#   run.sh ci BUILD_DIR TARGET          run one target deterministically for CI (ctest): a fresh corpus of the seeds
#                                       only, -seed=1, FUZZ_CI_RUNS inputs (default 20000; at most 20 s)
#   run.sh fuzz BUILD_DIR [SECONDS]     build, then run every target (or those in FUZZ_TARGETS) for FUZZ_SECONDS
#                                       (default 60) and record executions and time per target in docs/fuzzing.md
#                                       (`make fuzz`)
# The corpus of a target is BUILD_DIR/corpus/TARGET: its seeds (fixtures of the repository, tests/field/ when it
# exists, and seeds the target writes itself) plus everything earlier runs found. A crash leaves its input in
# BUILD_DIR/crashes/ and fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
mode="$1"
build="$2"
ALL_TARGETS=(scrub attest cbor nitrocli errlog eif allocator kmslog frame kms_request kms_response imagelint vhost)
read -r -a TARGETS <<< "${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"  # `make fuzz FUZZ_TARGETS="scrub kmslog"`: only those

do_build() {
  local clang="${1:-clang}"
  cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="$clang" >/dev/null
  cmake --build "$build" -j "${FUZZ_JOBS:-2}"
}

# copies seeds from the repository into the corpus (files up to 256 KiB; bigger ones cut to their first 64 KiB)
seed() {
  local t="$1" dir="${build_corpus_root:-$build/corpus}/$1"
  mkdir -p "$dir"
  local files=()
  case "$t" in
    scrub) files=("$src"/tests/data/kmslogs/* "$src"/tests/nitro/fixtures/*.txt "$src"/tests/fixtures/imagelint/*)
           # each planted shape on its own (templates with their placeholders)
           awk -F'\t' '!/^#/ && NF == 3 { f = sprintf("%s/shape-%s", d, $1); gsub(/<NL>/, "\n", $3); print $3 > f }' \
             d="$dir" "$src/tests/data/scrub-shapes.txt" ;;
    nitrocli|errlog) files=("$src"/tests/nitro/fixtures/*.txt) ;;
    kmslog) files=("$src"/tests/data/kmslogs/*) ;;
    imagelint) files=("$src"/tests/fixtures/imagelint/*) ;;
  esac
  # inputs that once failed (kept so CI replays them first), and any in fuzz/known/ (none today): every one must pass
  for d in "$here/regressions/$t" "$here/known/$t"; do
    [ -d "$d" ] || continue
    for f in "$d"/*; do [ -f "$f" ] && files+=("$f"); done
  done
  if [ -d "$src/tests/field" ]; then
    while IFS= read -r f; do files+=("$f"); done < <(find "$src/tests/field" -type f -size -256k | head -200)
  fi
  for f in "${files[@]}"; do
    [ -f "$f" ] || continue
    local name="repo-$(printf '%s' "${f#$src/}" | tr '/' '_')"
    [ -e "$dir/$name" ] || head -c 65536 "$f" > "$dir/$name"
  done
}

# runs one target; prints "TARGET EXECS SECONDS". CI (ci=1): seeds only, fixed seed and number of runs, so the
# same tree gives the same result.
run_one() {
  local t="$1" secs="$2" ci="${3:-0}" log corpus extra=()
  if [ "$ci" = 1 ]; then
    build_ci="$build/ci-corpus"
    rm -rf "$build_ci/$t"
    build_corpus_root="$build_ci"
    extra=(-seed=1 -runs="${FUZZ_CI_RUNS:-20000}")
  else
    build_corpus_root="$build/corpus"
  fi
  seed "$t"
  corpus="$build_corpus_root/$t"
  mkdir -p "$build/crashes"
  log="$build/fuzz-$t.log"
  local t0=$SECONDS ok=1 execs
  if ! "$build/fuzz_$t" -max_total_time="$secs" "${extra[@]}" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
       -artifact_prefix="$build/crashes/$t-" -print_final_stats=1 "$corpus" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz_$t: FAILED (input saved in $build/crashes/)" >&2
    ok=0
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  # one line: target, executions, seconds, and "failed" when the run stopped on a failing input
  echo "$t ${execs:-0} $((SECONDS - t0))$([ "$ok" = 1 ] || echo " failed")"
  [ "$ok" = 1 ]
}

case "$mode" in
  build) do_build "${3:-clang}" ;;
  ci)
    [ -x "$build/fuzz_$3" ] || { echo "fuzz_$3 not built (fuzz.build failed?)" >&2; exit 1; }
    run_one "$3" "${FUZZ_CI_SECONDS:-20}" 1 ;;
  fuzz)
    secs="${3:-${FUZZ_SECONDS:-60}}"
    do_build "${FUZZ_CC:-clang}"
    results=()
    status=0
    for t in "${TARGETS[@]}"; do
      r="$(run_one "$t" "$secs")" || status=1
      results+=("$r")
      echo "$r"
    done
    {
      echo
      echo "### $(date -u +%Y-%m-%dT%H:%MZ), FUZZ_SECONDS=$secs, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
      echo
      echo "| target | executions | seconds | corpus files | result |"
      echo "|---|---:|---:|---:|---|"
      for r in "${results[@]}"; do
        set -- $r
        echo "| $1 | $2 | $3 | $(ls "$build/corpus/$1" | wc -l) | ${4:-ok} |"
      done
    } >> "$src/docs/fuzzing.md"
    exit $status ;;
  *) echo "usage: run.sh build|ci|fuzz BUILD_DIR ..." >&2; exit 2 ;;
esac
