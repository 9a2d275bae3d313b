#!/usr/bin/env python3
"""Compares core/sigv4.c (through nitrodiag-sigv4-sign) with botocore's SigV4Auth on random requests.

botocore (Debian's python3-botocore) is an independent implementation of the same algorithm: for every random
request -- random method, host (with and without port), path (unreserved, reserved, spaces, UTF-8, '%', dot segments,
repeated slashes), pre-encoded query, headers (mixed case, inner/outer whitespace), body, with and without a session
token -- the canonical request, the string to sign and the signature must be identical.

usage: botocore_compare.py PATH_TO_nitrodiag-sigv4-sign [COUNT] [SEED]
"""
import base64
import json
import random
import subprocess
import sys
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

PATH_CHARS = "abcXYZ019-_.~!$&'()*+,;=:@ %" + "\u00e9\u1234"
HDR_VALUE_CHARS = "abcXYZ019-_.~!$&'()*+,;=:@/\"?#[]{}<>|\\^`% \t"
RESERVED_HEADERS = {"authorization", "x-amz-date", "x-amz-security-token", "host", "expect", "user-agent",
                    "x-amzn-trace-id", "transfer-encoding", "x-amz-content-sha256"}


def rand_str(rng, chars, lo, hi):
    return "".join(rng.choice(chars) for _ in range(rng.randint(lo, hi)))


def rand_path(rng):
    segs = []
    for _ in range(rng.randint(0, 5)):
        r = rng.random()
        if r < 0.1:
            segs.append(".")
        elif r < 0.2:
            segs.append("..")
        elif r < 0.3:
            segs.append("")
        else:
            segs.append(rand_str(rng, PATH_CHARS, 1, 8))
    path = "/" + "/".join(segs)
    if rng.random() < 0.3 and not path.endswith("/"):
        path += "/"
    return path


def rand_query(rng):
    if rng.random() < 0.3:
        return ""
    parts = []
    for _ in range(rng.randint(1, 5)):
        k = quote(rand_str(rng, PATH_CHARS + "/?&=", 1, 6), safe="-_.~")
        if rng.random() < 0.15:
            parts.append(k + "=")
        else:
            parts.append(k + "=" + quote(rand_str(rng, PATH_CHARS + "/?&=", 0, 8), safe="-_.~"))
    return "&".join(parts)


def rand_headers(rng):
    headers = {}
    for _ in range(rng.randint(0, 6)):
        name = rand_str(rng, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", 1, 12)
        if name.lower() in RESERVED_HEADERS or name.lower() in (n.lower() for n in headers):
            continue
        value = rand_str(rng, HDR_VALUE_CHARS, 0, 20)
        headers[name] = value
    if rng.random() < 0.5:
        headers["Content-Type"] = "application/x-amz-json-1.1"
    return headers


def botocore_sign(d):
    url = "https://" + d["host"] + d["path"] + ("?" + d["query"] if d["query"] else "")
    body = base64.b64decode(d["body_b64"])
    req = AWSRequest(method=d["method"], url=url, headers=dict(d["headers"]), data=body)
    auth = SigV4Auth(Credentials(d["access_key"], d["secret"], d["token"] or None), d["service"], d["region"])
    req.context["timestamp"] = d["date"]
    auth._modify_request_before_signing(req)
    cr = auth.canonical_request(req)
    sts = auth.string_to_sign(req, cr)
    sig = auth.signature(sts, req)
    return cr, sts, sig


def main():
    cli = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20261122
    rng = random.Random(seed)
    reqs = []
    for i in range(count):
        host = rng.choice(["kms.us-east-1.amazonaws.com", "example.amazonaws.com", "127.0.0.1:4443",
                           "vpce-0abc.kms.eu-west-1.vpce.amazonaws.com"])
        body = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 0, 1, 17, 200, 3000])))
        token = rng.choice(["", "", "FQoGZXIvYXdzEJr//////////wEaDEXAMPLE" + str(i)])
        # 1..100 characters: "AWS4" + a secret over 60 is an HMAC key longer than a block (hashed first)
        secret = rand_str(rng, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/", 1, 100)
        date = "2026%02d%02dT%02d%02d%02dZ" % (rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23),
                                              rng.randint(0, 59), rng.randint(0, 59))
        reqs.append({
            "method": rng.choice(["GET", "POST", "PUT", "DELETE"]),
            "host": host, "path": rand_path(rng), "query": rand_query(rng),
            "headers": list(rand_headers(rng).items()),
            "body_b64": base64.b64encode(body).decode(),
            "access_key": "AKID" + rand_str(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 16, 16),
            "secret": secret, "token": token,
            "region": rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"]),
            "service": rng.choice(["kms", "sts", "service"]), "date": date,
        })
    inp = "".join(json.dumps(r) + "\n" for r in reqs)
    out = subprocess.run([cli], input=inp.encode(), stdout=subprocess.PIPE, check=True, timeout=60)
    lines = out.stdout.decode().splitlines()
    if len(lines) != len(reqs):
        print("FAIL: %d answers for %d requests" % (len(lines), len(reqs)))
        return 1
    bad = 0
    for d, line in zip(reqs, lines):
        got = json.loads(line)
        cr, sts, sig = botocore_sign(d)
        if got.get("canonical_request") != cr or got.get("string_to_sign") != sts or got.get("signature") != sig:
            bad += 1
            if bad <= 3:
                print("MISMATCH for", json.dumps(d)[:400])
                print("  botocore canonical request:\n" + cr)
                print("  nitrodiag canonical request:\n" + str(got.get("canonical_request", got.get("error"))))
    print("%d/%d random requests sign identically to botocore %s" % (len(reqs) - bad, len(reqs),
                                                                     __import__("botocore").__version__))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
