#!/usr/bin/env python3
"""measure.py LABEL CMD... — runs CMD once under /usr/bin/time and prints
'LABEL<TAB>wall_s<TAB>max_rss_kib<TAB>exit<TAB>cpu_s' (cpu = user + system; steadier than wall time on a busy host).
The peak RSS is /usr/bin/time's "Maximum resident set size" (getrusage of the command, not of this script; for a
pipeline such as tar czf it is the largest process of it)."""
import os, subprocess, sys, tempfile

label, cmd = sys.argv[1], sys.argv[2:]
with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
    rc = subprocess.call(["/usr/bin/time", "-o", tf.name, "-f", "%e %M %U %S"] + cmd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, rss, user, system = tf.read().strip().splitlines()[-1].split()
print(f"{label}\t{float(wall):.3f}\t{rss}\t{rc}\t{float(user) + float(system):.2f}", flush=True)
