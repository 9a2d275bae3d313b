#!/usr/bin/env bash
# bench/bundle/run.sh BUILD_DIR — nd.bundle against the tools an operator would otherwise use, on the same files:
#  1. the last 1000 lines of a 4 GiB sparse log: `tail -n 1000` vs a nitrodiag bundle holding that tail (and the
#     worst case, a 4 GiB sparse log with a single line: tail scans all of it, nitrodiag stops at its 64 MiB cap);
#  2. a bundle of 1 GiB of logs (16 x 64 MiB, realistic lines, a few secrets): `tar czf` vs a nitrodiag bundle
#     (scrubbed, hashed, with manifest and report).
# Wall time and peak RSS (/usr/bin/time "Maximum resident set size", the getrusage counter) of one run
# each, after one warm-up run so the page cache is equally warm for both. BENCH_DIR (default /tmp) holds ~2.5 GiB.
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
nd="$build/nitrodiag"
here="$(cd "$(dirname "$0")" && pwd)"
m="$here/measure.py"
w="$(mktemp -d "${BENCH_DIR:-/tmp}/nd-bench-bundle.XXXXXX")"
trap 'rm -rf "$w"' EXIT
cd "$w"
mkdir out logs

# 1. a 4 GiB sparse log with 1 MiB of real lines at its end
truncate -s 4G big.log
python3 - <<'PY'
with open("big.log", "ab") as f:
    for i in range(12000):
        f.write(b"2026-11-22T19:%02d:%02d nitro-enclaves-allocator[812]: request %d served in 12 ms\n" % (i // 60 % 60, i % 60, i))
PY
size=$(stat -c %s big.log)
echo "# tail: $(numfmt --to=iec "$size") sparse log, last 1000 lines"
rows=()
tail -n 1000 big.log >/dev/null
rows+=("$("$m" "tail -n 1000" tail -n 1000 big.log)")
NITRODIAG_PATH= "$nd" -q --out out run "$here/collect.lua" mode=tail path="$w/big.log" >/dev/null 2>&1 || true
rm -f out/* ./*.tar.gz
rows+=("$("$m" "nitrodiag bundle (tail_lines=1000)" env NITRODIAG_PATH= "$nd" -q --out out run "$here/collect.lua" mode=tail path="$w/big.log")")
rm -f out/* ./*.tar.gz

# 1b. the worst case for a backwards scan: 4 GiB of holes and a single line, but 1000 lines asked
truncate -s 4G holes.log
echo "the only line" >> holes.log
echo "# tail: $(numfmt --to=iec "$(stat -c %s holes.log)") sparse log holding ONE line, last 1000 lines asked"
rows+=("$("$m" "tail -n 1000 (1-line sparse log)" tail -n 1000 holes.log)")
rows+=("$("$m" "nitrodiag bundle (1-line sparse log)" env NITRODIAG_PATH= "$nd" -q --out out run "$here/collect.lua" mode=tail path="$w/holes.log")")
rm -f out/* ./*.tar.gz holes.log

# 2. 1 GiB of logs
python3 - <<'PY'
import random
random.seed(7)
units = ["nitro-enclaves-allocator", "nitro-enclaves-vsock-proxy", "kernel", "systemd", "dockerd"]
msgs = ["allocated %d MiB of hugepages on node 0", "connection from vsock:16:%d accepted", "request %d done in 3 ms",
        "enclave i-0abc-enc%d state RUNNING", "health check %d ok", "GET /v1/keys/%d 200"]
block = []
for i in range(20000):
    block.append("2026-11-22T19:%02d:%02d.%03dZ ip-10-0-0-1 %s[%d]: %s\n" % (
        i // 60 % 60, i % 60, i % 1000, random.choice(units), 800 + i % 50, random.choice(msgs) % i))
    if i % 5000 == 0:
        block.append("2026-11-22T19:00:00Z proxy: Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/x\n")
data = "".join(block).encode()
for n in range(16):
    with open("logs/app-%02d.log" % n, "wb") as f:
        left = 64 * 1024 * 1024
        while left > 0:
            chunk = data[:left]
            f.write(chunk)
            left -= len(chunk)
PY
total=$(du -cb logs/*.log | tail -1 | cut -f1)
echo "# bundle: $(numfmt --to=iec "$total") of logs in 16 files"
tar czf /dev/null logs >/dev/null 2>&1
rows+=("$("$m" "tar czf (gzip -6)" tar czf "$w/logs.tar.gz" logs)")
tarsize=$(stat -c %s logs.tar.gz)
rm -f logs.tar.gz
rows+=("$("$m" "nitrodiag bundle (scrub+sha256+manifest)" env NITRODIAG_PATH= "$nd" -q --out out run "$here/collect.lua" mode=glob path="$w/logs/*.log")")
b=$(find out . -maxdepth 1 -name 'nitrodiag-*.tar.gz' | head -1)
ndsize=$(stat -c %s "$b")

echo
echo "| What | Wall time | CPU (user+sys) | Peak RSS | Exit |"
echo "| ---- | --------: | -------------: | -------: | ---: |"
for r in "${rows[@]}"; do
  IFS=$'\t' read -r label wall rss rc cpu <<<"$r"
  printf '| %s | %.2f s | %.2f s | %s MiB | %s |\n' "$label" "$wall" "$cpu" "$((rss / 1024))" "$rc"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "archive sizes: tar czf $(numfmt --to=iec "$tarsize"), nitrodiag $(numfmt --to=iec "$ndsize")"
echo "machine: $(nproc) CPUs, $(uname -r), $(date -u +%Y-%m-%d)"
