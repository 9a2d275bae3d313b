#!/usr/bin/env python3
"""Deterministic KMS proxy log for the kms-logs benchmark (bench/kmslogs/run.sh).

Usage: gen.py OUT SIZE_BYTES RID
Writes request/response pairs — plain (55 %), tracing-wrapped (40 %), after a journal prefix (5 %) — with
journald noise, other events and decoy WARN lines that mention UpstreamThrottled and the request id in free text
(grep's false positives). Errors: 2 % throttled (PascalCase when wrapped, snake_case when plain), 1 % timeout,
0.3 % access denied, 0.2 % unavailable. The request id RID appears in exactly one request/response pair, and as
the trace_id of three other requests. Prints the true counts as JSON on stdout.
"""
import json, random, sys

out, size, rid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = random.Random(20260127)
def uuid():
    return "%08x-%04x-4%03x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(12),
                                           0x8000 | rng.getrandbits(14), rng.getrandbits(48))
REQ = '{"event":"kms_proxy_request","request_id":"%s","trace_id":"%s","op":"%s","recipient":%s,"ciphertext_len":%d}'
RESP = ('{"event":"kms_proxy_response","request_id":"%s","trace_id":"%s","ok":%s,"error_code":%s,"kms_request_id":%s,'
        '"duration_ms":%d,"metrics":{"kms_requests_total":%d,"kms_success_total":%d,"kms_errors_total":%d,'
        '"retries_total":%d,"throttled_total":%d,"timeouts_total":%d,"rate_limited_total":%d,"circuit_wait_total":%d}}')
WRAP = ('{"timestamp":"%s","level":"INFO","fields":{"event":"%s","json":"%s"},"target":"kms_proxy_host",'
        '"span":{"request_id":"%s","name":"serve_one"},"spans":[{"request_id":"%s","name":"serve_one"}]}')
PREFIX = "Jan 27 %02d:%02d:%02d ip-10-0-1-23 kms_proxy_host[4242]: "
NOISE = ["-- Boot 4f2a9c0e1d6b4e7f8a9b0c1d2e3f4a5b --", "Started kms-proxy-host.service - EphemeralML KMS proxy.",
         "kms-proxy-host.service: Consumed 1.234s CPU time.", ""]
c = dict(req=0, succ=0, err=0, retr=0, thr=0, tmo=0, rl=0, cw=0)
truth = dict(lines=0, events=0, errors=0, throttled=0, rid_lines=0, decoys=0)
n = 0
t0 = 1769472000.0
special = None
buf = []
written = 0
with open(out, "w") as f:
    while written < size:
        n += 1
        ts = t0 + n * 0.001
        sec = int(ts)
        stamp = "2026-01-27T%02d:%02d:%02d.%06dZ" % ((sec // 3600) % 24, (sec // 60) % 60, sec % 60, int((ts - sec) * 1e6))
        lines = []
        r = rng.random()
        if r < 0.004:
            lines.append(NOISE[rng.randrange(len(NOISE))])
        elif r < 0.008:
            lines.append('{"timestamp":"%s","level":"INFO","fields":{"event":"accept","transport":"vsock","cid":16,"message":"accepted connection"},"target":"kms_proxy_host"}' % stamp)
        elif r < 0.010 or (n % 500000 == 7 and truth["decoys"] < 6):
            # a WARN line quoting the code and (sometimes) the request id in free text: grep matches it, kms-logs not
            lines.append('{"timestamp":"%s","level":"WARN","fields":{"event":"retry","message":"attempt 1 for %s failed: UpstreamThrottled, \\"ok\\":false; retrying"},"target":"kms_proxy_host"}'
                         % (stamp, rid if truth["decoys"] < 6 else uuid()))
            truth["decoys"] += 1
        reqid = uuid()
        trace = uuid()
        if special is None and written > size // 2:
            special, reqid = True, rid
        elif n % 400000 == 3:
            trace = rid  # rid as another request's trace_id: a grep false positive
        op = "Decrypt" if rng.random() < 0.6 else "GenerateDataKey"
        e = rng.random()
        code = None
        if e < 0.02: code = "upstream_throttled"
        elif e < 0.03: code = "timeout"
        elif e < 0.033: code = "upstream_access_denied"
        elif e < 0.035: code = "upstream_unavailable"
        c["req"] += 1; c["cw"] += 1
        if code:
            c["err"] += 1
            if code == "upstream_throttled": c["thr"] += 1; c["rl"] += rng.randrange(3); c["retr"] += 2
            if code == "timeout": c["tmo"] += 1; c["retr"] += 2
        else:
            c["succ"] += 1
        form = rng.random()
        wrapped = 0.55 <= form < 0.95
        logged_code = code
        if code and wrapped:
            logged_code = "".join(w.capitalize() for w in code.split("_"))
        kid = None if code == "timeout" else uuid()
        rq = REQ % (reqid, trace, op, "true" if op == "Decrypt" and rng.random() < 0.5 else "false",
                    rng.randrange(64, 512) if op == "Decrypt" else 0)
        rs = RESP % (reqid, trace, "false" if code else "true", '"%s"' % logged_code if code else "null",
                     '"%s"' % kid if kid else "null", rng.randrange(3, 120) if not code else rng.randrange(100, 800),
                     c["req"], c["succ"], c["err"], c["retr"], c["thr"], c["tmo"], c["rl"], c["cw"])
        if wrapped:
            for ev, js in (("kms_proxy_request", rq), ("kms_proxy_response", rs)):
                lines.append(WRAP % (stamp, ev, js.replace('"', '\\"'), reqid, reqid))
        elif form >= 0.95:
            p = PREFIX % ((sec // 3600) % 24, (sec // 60) % 60, sec % 60)
            lines += [p + rq, p + rs]
        else:
            lines += [rq, rs]
        truth["events"] += 2
        if code:
            truth["errors"] += 1
            if code == "upstream_throttled": truth["throttled"] += 1
        if reqid == rid: truth["rid_lines"] += 2
        s = "\n".join(lines) + "\n"
        buf.append(s)
        written += len(s)
        truth["lines"] += len(lines)
        if len(buf) >= 4096:
            f.write("".join(buf)); buf = []
    f.write("".join(buf))
truth["bytes"] = written
print(json.dumps(truth))
