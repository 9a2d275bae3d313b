#!/usr/bin/env bash
# bench/startup/run.sh BUILD_DIR — how long nitrodiag takes to start: `nitrodiag --version` and a one-step runbook
# (bench/startup/one.lua, one empty step), against `/bin/true` (the cost of exec itself) in the same run. Median of
# 20 runs after 3 warm-ups (page cache warm), measured by hyperfine (Debian's; tools/install-deps.sh lists it),
# else a python3 fork/exec loop (which adds its own ~3 ms). The peer is `lua5.4 -e ''` (the bare interpreter nitrodiag
# embeds), measured in the same run: on a shared machine the ratio to it says more than the milliseconds.
# STARTUP_BASELINE=/path/to/older/nitrodiag adds its rows, measured in the same run (before/after ratios).
# Targets: --version <= 8 ms, a one-step runbook <= 10 ms. Not part of ctest (run by `make bench`).
set -euo pipefail
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
ND=$(cd "$BUILD" && pwd)/nitrodiag
OUT=$(cd "$BUILD" && pwd)/bench-results/startup.md
[ -x "$ND" ] || { echo "startup bench: $ND not built" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if ! command -v hyperfine >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  apt-get install -y -qq --no-install-recommends hyperfine >/dev/null 2>&1 || true
fi
cp "$HERE/one.lua" "$TMP/one.lua"
cd "$TMP"

median_ms() { # CMD… -> median wall ms of 20 runs
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N -w 3 -r 20 --export-json "$TMP/h.json" "$(printf '%q ' "$@")" >/dev/null 2>&1
    python3 -c 'import json,sys; print("%.2f" % (json.load(open(sys.argv[1]))["results"][0]["median"] * 1000))' "$TMP/h.json"
    return
  fi
  python3 - "$@" <<'PY'
import os, statistics, subprocess, sys, time
cmd = sys.argv[1:]
def once():
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000
for _ in range(3):
    once()
print("%.2f" % statistics.median(once() for _ in range(20)))
PY
}

# Instructions (user space, dynamic loader included) by valgrind's callgrind: the same on a loaded machine, where the
# milliseconds follow the neighbours. Empty when valgrind is missing.
instr() {
  command -v valgrind >/dev/null 2>&1 || { echo "-"; return; }
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : \([0-9]*\).*/\1/p' | tail -n 1
}
declare -A MS IN
names=(true lua version runbook)
cmds_true=(/bin/true)
cmds_lua=(lua5.4 -e '')
cmds_version=("$ND" --version)
cmds_runbook=("$ND" run one.lua)
if [ -n "${STARTUP_BASELINE:-}" ]; then
  names+=(base_version base_runbook)
  cmds_base_version=("$STARTUP_BASELINE" --version)
  cmds_base_runbook=("$STARTUP_BASELINE" run one.lua)
fi
for n in "${names[@]}"; do
  declare -n c="cmds_$n"
  MS[$n]=$(median_ms "${c[@]}")
  IN[$n]=$(instr "${c[@]}")
  unset -n c
done
libs=$(ldd "$ND" | grep -c '=>' || true)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.1f", a / b }'; }
mi() { awk -v a="$1" 'BEGIN { if (a == "-" || a == "") print "-"; else printf "%.1f", a / 1e6 }'; }
lua_libs=$(ldd "$(command -v lua5.4)" | grep -c '=>' || true)
{
  echo "start-up, median of 20 (warm, $(command -v hyperfine >/dev/null && echo hyperfine || echo 'python3 loop')), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%Y-%m-%d); $libs shared libraries at start"
  echo
  echo "| command | median ms | / \`true\` | / \`lua5.4 -e ''\` | M instructions (callgrind) | instructions / \`lua5.4 -e ''\` |"
  echo "|---|---|---|---|---|---|"
  echo "| \`/bin/true\` | ${MS[true]} | 1 | $(ratio "${MS[true]}" "${MS[lua]}")x | $(mi "${IN[true]}") | $(ratio "${IN[true]}" "${IN[lua]}")x |"
  echo "| \`lua5.4 -e ''\` ($lua_libs libraries) | ${MS[lua]} | $(ratio "${MS[lua]}" "${MS[true]}")x | 1 | $(mi "${IN[lua]}") | 1 |"
  echo "| \`nitrodiag --version\` | ${MS[version]} | $(ratio "${MS[version]}" "${MS[true]}")x | $(ratio "${MS[version]}" "${MS[lua]}")x | $(mi "${IN[version]}") | $(ratio "${IN[version]}" "${IN[lua]}")x |"
  echo "| \`nitrodiag run one.lua\` (one empty step) | ${MS[runbook]} | $(ratio "${MS[runbook]}" "${MS[true]}")x | $(ratio "${MS[runbook]}" "${MS[lua]}")x | $(mi "${IN[runbook]}") | $(ratio "${IN[runbook]}" "${IN[lua]}")x |"
  if [ -n "${STARTUP_BASELINE:-}" ]; then
    echo "| baseline \`--version\` ($STARTUP_BASELINE, $(ldd "$STARTUP_BASELINE" | grep -c '=>' || true) libraries) | ${MS[base_version]} | $(ratio "${MS[base_version]}" "${MS[true]}")x | $(ratio "${MS[base_version]}" "${MS[lua]}")x | $(mi "${IN[base_version]}") | $(ratio "${IN[base_version]}" "${IN[lua]}")x |"
    echo "| baseline \`run one.lua\` | ${MS[base_runbook]} | $(ratio "${MS[base_runbook]}" "${MS[true]}")x | $(ratio "${MS[base_runbook]}" "${MS[lua]}")x | $(mi "${IN[base_runbook]}") | $(ratio "${IN[base_runbook]}" "${IN[lua]}")x |"
  fi
} | tee "$OUT"
echo "startup bench: results in $OUT"
