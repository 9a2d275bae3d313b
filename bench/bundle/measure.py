#!/usr/bin/env python3
"""measure.py LABEL CMD... — runs CMD once and prints 'LABEL<TAB>wall_s<TAB>max_rss_kib<TAB>exit' using
getrusage(RUSAGE_CHILDREN), the same counters /usr/bin/time -v reports as "Maximum resident set size"."""
import resource, subprocess, sys, time

label, cmd = sys.argv[1], sys.argv[2:]
t0 = time.monotonic()
rc = subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.monotonic() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{label}\t{wall:.3f}\t{ru.ru_maxrss}\t{rc}", flush=True)
