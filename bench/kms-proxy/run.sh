#!/usr/bin/env bash
# bench/kms-proxy/run.sh BUILD_DIR — nitrodiag-kms-proxy throughput and latency (`make bench` runs it).
#
# At 1, 16 and 256 concurrent enclave connections (each with one request outstanding) it sends GenerateDataKey with
# a recipient through the proxy (unix socket) to nitrodiag-fake-kms (HTTPS on loopback), and compares with the
# baseline: the same number of concurrent request loops calling the fake KMS directly through the KMS client
# (core/nd_kms.h: its own TLS keep-alive and SigV4). It reports requests/s, p50/p99 latency, the proxy's CPU seconds
# per 1000 requests and its peak RSS, checks the targets (>= 80 % of direct throughput, p99 added latency <= 1 ms,
# RSS < 32 MiB) and prints a Markdown table for docs/performance.md, then the CPU per request of each process on each
# path (client, proxy, fake KMS) so the comparison can be judged. BENCH_REQUESTS (default 2000) sets the
# requests per concurrency level; BENCH_ARRAYS=1 makes the enclave side send byte fields as arrays of numbers (what
# the reference's Rust clients send) instead of base64. The driver is tests/proxy/proxytest.c
# (`nitrodiag-proxytest bench`).
set -euo pipefail
build="$(cd "${1:-build}" && pwd)"
drv="$build/nitrodiag-proxytest"
if [ ! -x "$drv" ] || [ ! -x "$build/nitrodiag-fake-kms" ]; then
  echo "kms-proxy bench: $drv or nitrodiag-fake-kms not built" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ND_TEST_TMP="$tmp" "$drv" bench "$build" > "$tmp/result.json" 2> "$tmp/stderr" || {
  cat "$tmp/stderr" >&2
  exit 1
}
python3 - "$tmp/result.json" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
cpus = os.cpu_count()
load = open("/proc/loadavg").read().split()[0]
print(f"machine: {cpus} CPUs, load average {load} at the end of the run")
print()
print("| concurrency | requests | direct req/s | proxy req/s | proxy/direct | direct p50 / p99 ms | proxy p50 / p99 ms | added p99 ms | proxy CPU s / 1000 req |")
print("|---|---|---|---|---|---|---|---|---|")
ok = True
for x in r["results"]:
    d, p = x["direct"], x["proxy"]
    ratio = p["rps"] / d["rps"] if d["rps"] else 0
    added = p["p99_ms"] - d["p99_ms"]
    print(f"| {x['concurrency']} | {x['requests']} | {d['rps']:.0f} | {p['rps']:.0f} | {ratio:.0%} | "
          f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {p['p50_ms']:.2f} / {p['p99_ms']:.2f} | {added:+.2f} | "
          f"{p['proxy_cpu_s_per_1000']:.3f} |")
    if p["answered"] != x["requests"] or p["ok"] != x["requests"]:
        print(f"  !! {x['requests'] - p['ok']} proxy requests failed at concurrency {x['concurrency']}")
    if d.get("errors"):
        print(f"  (direct baseline: {d['errors']} errors at concurrency {x['concurrency']})")
print()
print("CPU seconds per 1000 requests, by process (both paths run the same fake KMS; the enclave-side client runs on")
print("the enclave's own CPUs on a real host, here on the same CPUs as the proxy and the fake KMS):")
for x in r["results"]:
    d, p = x["direct"], x["proxy"]
    if "kms_cpu_s_per_1000" not in d:
        continue
    print(f"  at {x['concurrency']}: direct path: client {d['client_cpu_s_per_1000']:.3f} + fake KMS "
          f"{d['kms_cpu_s_per_1000']:.3f}; proxy path: enclave client {p['client_cpu_s_per_1000']:.3f} + proxy "
          f"{p['proxy_cpu_s_per_1000']:.3f} + fake KMS {p['kms_cpu_s_per_1000']:.3f}")
rss = r["proxy_rss_kib"] / 1024
print()
print(f"proxy peak RSS: {rss:.1f} MiB (target < 32 MiB)")
for x in r["results"]:
    d, p = x["direct"], x["proxy"]
    t1 = p["rps"] >= 0.8 * d["rps"]
    t2 = p["p99_ms"] - d["p99_ms"] <= 1.0
    print(f"targets at {x['concurrency']}: throughput >= 80% {'met' if t1 else 'NOT met'}; "
          f"p99 added <= 1 ms {'met' if t2 else 'NOT met'}")
print(f"target RSS < 32 MiB: {'met' if rss < 32 else 'NOT met'}")
PY
