#!/usr/bin/env bash
# bench/kmslogs/big.sh BUILD_DIR SIZES_GIB… — kms-logs' whole-log summary on big logs (run by bench/kmslogs/run.sh
# when KMSLOGS_BIG="1 5" is set; `make bench KMSLOGS_BIG="1 5"`). For each size it generates the log with gen.py into
# $KMSLOGS_BIG_DIR (default /tmp; deleted afterwards), then measures in the same run: `wc -l` against the summary of
# the plain file, `zcat | wc -l` against the summary of the gzip'd file (streamed through zlib), the journal path
# (`source=journal`, with a stand-in `journalctl` on PATH that cats the file, so nitrodiag's own cost of reading a
# pipe is measured, not systemd's), and since= (the last tenth of the log's time) with the bytes the binary search
# skipped. CPU = user + system (children included), one run each after the page cache is warmed; peak RSS.
set -euo pipefail
BUILD=$1; shift
HERE=$(cd "$(dirname "$0")" && pwd)
ND=$(cd "$BUILD" && pwd)/nitrodiag
DIR=${KMSLOGS_BIG_DIR:-/tmp}
OUT=$(cd "$BUILD" && pwd)/bench-results/kmslogs-big.md
RID=7f1c9a52-3b7e-4c1e-9a55-0c1d2e3f4a01
WORK=$(mktemp -d "$DIR/nd-kmslogs-big.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin" "$(dirname "$OUT")"
printf '#!/bin/sh\n# bench stand-in for journalctl -u UNIT -o cat\nexec cat "$ND_FAKE_JOURNAL"\n' > "$WORK/bin/journalctl"
chmod +x "$WORK/bin/journalctl"

run() { # CMD… -> "cpu wall rss_mib" of one run
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" > "$WORK/out" 2>/dev/null || true
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$WORK/time")
  printf '%.2f %.2f %d\n' "$(echo "$user + $sys" | bc)" "$wall" "$((rss / 1024))"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 <= 0) print "-"; else printf "%.1f", a / b }'; }

{
  echo "kms-logs on big logs, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg) at the start, $(date -u +%Y-%m-%d)"
  echo "(CPU = user + system seconds, children included, one run each, page cache warm; wall in parentheses)"
  echo
  echo "| log | lines | peer: CPU s (wall) | nitrodiag summary: CPU s (wall) | peak RSS | nitrodiag / peer (CPU) |"
  echo "|---|---|---|---|---|---|"
} > "$OUT"
for gib in "$@"; do
  LOG=$WORK/kms-${gib}g.log
  echo "kmslogs big: generating ${gib} GiB in $LOG" >&2
  python3 "$HERE/gen.py" "$LOG" $((gib << 30)) "$RID" > "$LOG.truth"
  lines=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines"])' "$LOG.truth")
  cat "$LOG" > /dev/null
  read -r wc_c wc_w _ < <(run wc -l "$LOG")
  read -r s_c s_w s_m < <(run "$ND" kms-logs "$LOG" mode=summary)
  echo "| ${gib} GiB plain | $lines | \`wc -l\` $wc_c ($wc_w) | $s_c ($s_w) | $s_m MiB | $(ratio "$s_c" "$wc_c")x |" >> "$OUT"
  # journal: the same lines through a pipe from a journalctl stand-in
  read -r j_c j_w j_m < <(ND_FAKE_JOURNAL=$LOG PATH=$WORK/bin:$PATH run "$ND" kms-logs journal mode=summary)
  read -r c_c c_w _ < <(run sh -c 'cat "$1" | wc -l' sh "$LOG")
  echo "| ${gib} GiB via journalctl (stand-in: cat) | $lines | \`cat \| wc -l\` $c_c ($c_w) | $j_c ($j_w) | $j_m MiB | $(ratio "$j_c" "$c_c")x |" >> "$OUT"
  # since=: the last tenth of the log's time (gen.py: one pair per ms from 2026-01-27T00:00:00Z)
  SINCE=$(python3 -c 'import sys; print("%.3f" % (1769472000 + int(sys.argv[1]) / 2 * 0.001 * 0.9))' "$lines")
  read -r t_c t_w t_m < <(run "$ND" --json kms-logs "$LOG" mode=summary "since=$SINCE")
  skipped=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["output"]["stats"]["seek_skipped"])' "$WORK/out" 2>/dev/null || echo "?")
  echo "| ${gib} GiB plain, since=<last tenth> | - | whole summary $s_c ($s_w) | $t_c ($t_w); binary search skipped $(numfmt --to=iec "$skipped" 2>/dev/null || echo "$skipped") | $t_m MiB | $(ratio "$t_c" "$s_c")x |" >> "$OUT"
  echo "kmslogs big: compressing" >&2
  gzip -1 -c "$LOG" > "$LOG.gz"
  rm -f "$LOG"
  cat "$LOG.gz" > /dev/null
  read -r z_c z_w _ < <(run sh -c 'zcat "$1" | wc -l' sh "$LOG.gz")
  read -r g_c g_w g_m < <(run "$ND" kms-logs "$LOG.gz" mode=summary)
  echo "| ${gib} GiB gzip'd ($(numfmt --to=iec "$(stat -c %s "$LOG.gz")")) | $lines | \`zcat \| wc -l\` $z_c ($z_w) | $g_c ($g_w) | $g_m MiB | $(ratio "$g_c" "$z_c")x |" >> "$OUT"
  rm -f "$LOG.gz"
done
cat "$OUT"
echo "kmslogs big: results in $OUT" >&2
