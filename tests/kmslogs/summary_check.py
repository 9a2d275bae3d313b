#!/usr/bin/env python3
"""kms-logs' whole-log summary checked against an independent computation (python3's json module) over the same
generated log: every counter of the scan, the error breakdown, nearest-rank latency percentiles (exact below 65536
responses, within 0.5 % above, min/max exact), counter deltas with a proxy restart, request/response pairing within
60 s with the unpaired counted; the gzip'd copy gives the same summary (streamed through zlib); since= gives the same
matches after a binary search that skipped bytes; peak RSS does not grow with the log.

Usage: summary_check.py NITRODIAG TMPDIR
"""
import gzip, json, math, os, random, re, resource, subprocess, sys

nd, tmp = sys.argv[1], sys.argv[2]
os.makedirs(tmp, exist_ok=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def gen(path, pairs, seed):
    """Writes the log and returns the lines' kinds for the independent reader (it re-reads the file anyway)."""
    rng = random.Random(seed)
    t0 = 1769472000.0  # 2026-01-27T00:00:00Z
    out = []
    late = []  # (due_time, line) responses written 90 s after their request
    counters = {"kms_requests_total": 0, "kms_errors_total": 0, "retries_total": 0}
    for i in range(pairs):
        t = t0 + i * 0.004
        while late and late[0][0] <= t:
            out.append(late.pop(0)[1])
        stamp = "2026-01-27T%02d:%02d:%06.3fZ" % (int(t - t0) // 3600, (int(t - t0) // 60) % 60, (t - t0) % 60)
        r = rng.random()
        if r < 0.003:
            out.append(rng.choice(["-- Boot 4f2a9c0e1d6b4e7f8a9b0c1d2e3f4a5b --", "", "Started kms-proxy-host.service.",
                                   '{"event":"kms_proxy_response","request_id":"cut', '{"level":"INFO","event":"accept"}']))
        if i == pairs // 2:
            counters = {k: 0 for k in counters}  # the proxy restarted
        rid = "r%07d-%04x" % (i, rng.getrandbits(16))
        op = "Decrypt" if rng.random() < 0.6 else "GenerateDataKey"
        e = rng.random()
        code = None
        if e < 0.02: code = "UpstreamThrottled"
        elif e < 0.03: code = "timeout"
        elif e < 0.034: code = "upstream_access_denied"
        counters["kms_requests_total"] += 1
        if code:
            counters["kms_errors_total"] += 1
            counters["retries_total"] += rng.randrange(3)
        dur = rng.randrange(1, 900) + (0.5 if rng.random() < 0.1 else 0)
        req = {"event": "kms_proxy_request", "request_id": rid, "trace_id": "t%d" % i, "op": op}
        resp = {"event": "kms_proxy_response", "request_id": rid, "trace_id": "t%d" % i, "ok": code is None,
                "error_code": code, "kms_request_id": None if code else "k%d" % i, "duration_ms": dur,
                "metrics": dict(counters, in_flight=rng.randrange(5))}
        form = rng.random()

        def line(ev, when):
            if form < 0.3:  # tracing-wrapped: the time is the wrapper's
                st = "2026-01-27T%02d:%02d:%06.3fZ" % (int(when - t0) // 3600, (int(when - t0) // 60) % 60, (when - t0) % 60)
                return json.dumps({"timestamp": st, "level": "INFO",
                                   "fields": {"event": ev["event"], "json": json.dumps(ev, separators=(",", ":"))},
                                   "target": "kms_proxy_host"}, separators=(",", ":"))
            ev = dict(ev, ts=round(when, 3))
            s = json.dumps(ev, separators=(",", ":"))
            if form > 0.9:  # journalctl -o short-iso
                return "2026-01-27T00:00:00+0000 ip-10-0-1-23 kms_proxy_host[4242]: " + s
            return s

        if rng.random() > 0.004:  # some requests were never logged
            out.append(line(req, t))
        x = rng.random()
        if x < 0.002:
            late.append((t + 90, line(resp, t + 90)))
        elif x < 0.006:
            pass  # no response
        else:
            out.append(line(resp, t + 0.001))
    out += [l for _, l in late]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def norm(code):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", code).lower()


def events_of(path):
    """Independent reader: every line, json.loads, unwrap fields.json, the time from ts or the wrapper."""
    evs, st = [], dict(lines=0, events=0, wrapped=0, plain=0, prefixed=0, malformed=0, other=0, blank=0, noise=0,
                       skipped=0)
    for raw in open(path, encoding="utf-8").read().split("\n")[:-1]:
        st["lines"] += 1
        if raw == "":
            st["blank"] += 1
            continue
        b = raw.find("{")
        if b < 0:
            st["noise"] += 1
            continue
        if "kms_proxy_" not in raw:  # what the scanner's prefilter skips unread: JSON that is no proxy event
            st["skipped"] += 1
            continue
        try:
            o = json.loads(raw[b:])
        except ValueError:
            st["malformed"] += 1
            continue
        wrapped = isinstance(o.get("fields"), dict) and isinstance(o["fields"].get("json"), str)
        ev = json.loads(o["fields"]["json"]) if wrapped else o
        if not str(ev.get("event", "")).startswith("kms_proxy_"):
            st["other"] += 1
            continue
        st["events"] += 1
        st["wrapped" if wrapped else "plain"] += 1
        st["prefixed"] += b > 0
        ts = ev.get("ts")
        if ts is None and wrapped:
            s = o["timestamp"]
            h, m, sec = int(s[11:13]), int(s[14:16]), float(s[17:-1])
            ts = 1769472000.0 + h * 3600 + m * 60 + sec
        evs.append((ev, ts))
    return evs, st


def expected(evs, st, since=None):
    errors, durs, counters, matched = {}, [], {}, 0
    pending, paired, unp_req, unp_resp = {}, 0, 0, 0
    for ev, ts in evs:
        resp = ev["event"] == "kms_proxy_response"
        if resp:
            r = pending.pop(ev["request_id"], None)
            if r is not None and ts - r <= 60:
                paired += 1
            else:
                unp_resp += 1
                unp_req += r is not None
        else:
            pending[ev["request_id"]] = ts
        if since is not None and ts < since:
            continue
        matched += 1
        if not resp:
            continue
        if ev["ok"] is False:
            c = norm(ev["error_code"]) if ev.get("error_code") else "unknown"
            errors[c] = errors.get(c, 0) + 1
        durs.append(ev["duration_ms"])
        for name, v in ev["metrics"].items():
            c = counters.setdefault(name, dict(first=v, last=v, delta=0, resets=0))
            if name.endswith("_total"):
                if v < c["last"]:
                    c["resets"] += 1
                    c["delta"] += v
                else:
                    c["delta"] += v - c["last"]
            c["last"] = v
            if not name.endswith("_total"):
                c["delta"] = v - c["first"]
    unp_req += len(pending)
    durs.sort()
    pct = lambda p: durs[max(0, math.ceil(p / 100 * len(durs)) - 1)]
    lat = dict(count=len(durs), min=durs[0], max=durs[-1], p50=pct(50), p90=pct(90), p95=pct(95), p99=pct(99))
    return dict(errors=errors, latency=lat, counters=counters, matched=matched, paired=paired,
                unpaired_requests=unp_req, unpaired_responses=unp_resp, stats=st)


def run(*args):
    p = subprocess.run([nd, "--json", "kms-logs", *args], capture_output=True, text=True)
    check(p.returncode in (0, 1), "exit %d for %s: %s" % (p.returncode, args, p.stderr[-300:]))
    return json.loads(p.stdout)["output"]


def compare(out, want, label, approx):
    st = out["stats"]
    for k, v in want["stats"].items():
        check(st[k] == v, "%s: stats.%s = %s, python %s" % (label, k, st[k], v))
    for k in ("paired", "unpaired_requests", "unpaired_responses"):
        check(st[k] == want[k], "%s: stats.%s = %s, python %s" % (label, k, st[k], want[k]))
    check(st["matched"] == want["matched"], "%s: matched %s, python %s" % (label, st["matched"], want["matched"]))
    got_err = {e["code"]: e["count"] for e in out["errors"]}
    check(got_err == want["errors"], "%s: errors %s, python %s" % (label, got_err, want["errors"]))
    lat, wl = out["latency"], want["latency"]
    check(bool(lat.get("approx")) == approx, "%s: latency approx=%s, expected %s" % (label, lat.get("approx"), approx))
    for k, v in wl.items():
        tol = 0.005 * abs(v) + 1e-9 if approx and k not in ("count", "min", "max") else 0
        check(abs(lat[k] - v) <= tol, "%s: latency %s = %s, python %s" % (label, k, lat[k], v))
    got_c = {c["name"]: c for c in out["counters"]}
    for name, c in want["counters"].items():
        g = got_c.get(name)
        check(g is not None and all(abs(g[k] - c[k]) < 1e-9 for k in c),
              "%s: counter %s = %s, python %s" % (label, name, g, c))


small, big = os.path.join(tmp, "kms-small.log"), os.path.join(tmp, "kms-big.log")
gen(small, 5000, 1)       # 10 000 events: exact percentiles
gen(big, 70000, 2)        # 110 000 events, over 65 536 responses: the histogram
read = {}
for path, approx in ((small, False), (big, True)):
    evs, st = read[path] = events_of(path)
    want = expected(evs, st)
    check(want["unpaired_requests"] > 0 and want["unpaired_responses"] > 0 and st["malformed"] > 0
          and st["prefixed"] > 0 and st["wrapped"] > 0, "the generated log has every case")
    out = run(path, "mode=summary")
    compare(out, want, os.path.basename(path), approx)
    # the same log gzip'd: read through zlib, the same summary
    gz = path + ".gz"
    with open(path, "rb") as f, gzip.open(gz, "wb") as g:
        g.write(f.read())
    compare(run(gz, "mode=summary"), want, os.path.basename(gz), approx)
    os.unlink(gz)

# since= on a plain log: the binary search skips most of the file, the matches are the same
evs, st = read[big]
since = evs[len(evs) * 3 // 4][1]
want = expected(evs, st, since)
out = run(big, "mode=summary", "since=%.3f" % since)
check(out["stats"]["matched"] == want["matched"], "since: matched %s, python %s" % (out["stats"]["matched"], want["matched"]))
check(out["stats"]["seek_skipped"] > os.path.getsize(big) // 2,
      "since: skipped %s of %s bytes" % (out["stats"]["seek_skipped"], os.path.getsize(big)))
got_err = {e["code"]: e["count"] for e in out["errors"]}
check(got_err == want["errors"], "since: errors %s, python %s" % (got_err, want["errors"]))
out = run(big, "mode=lines", "limit=1", "since=%.3f" % since)  # lines mode reads from the start (line numbers)
check(out["stats"]["seek_skipped"] == 0 and out["stats"]["matched"] == want["matched"], "since in lines mode")

# peak RSS does not grow with the log: 5 copies of the big log cost what one does
five = os.path.join(tmp, "kms-five.log")
with open(big, "rb") as f:
    data = f.read()
with open(five, "wb") as f:
    for _ in range(5):
        f.write(data)


def peak_rss_kib(path):
    code = ("import resource,subprocess,sys;subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    return int(subprocess.run([sys.executable, "-c", code, nd, "kms-logs", path, "mode=summary"],
                              capture_output=True, text=True).stdout)


one_rss, five_rss = peak_rss_kib(big), peak_rss_kib(five)
check(five_rss <= 32 * 1024 and five_rss - one_rss < 4 * 1024,
      "peak RSS %d KiB for the log, %d KiB for 5x the log (at most 32 MiB, growth under 4 MiB)" % (one_rss, five_rss))
for p in (small, big, five):
    os.unlink(p)
print("kms-logs summary vs python: %d failures" % len(failures))
sys.exit(1 if failures else 0)
