#!/usr/bin/env python3
"""bundle.planted — no planted secret survives a real collection (issue 13).

Builds a fake host tree holding every shape of tests/data/scrub-shapes.txt (fresh random values) in every artifact
kind the collection uses (tests/bundle/planted.lua): a log tail whose key BEGIN line is above the cut, err logs (one
with an access key id in its file name, one with NUL bytes), allocator.yaml, command stdout/stderr, the journal,
dmesg, JSON, files at the 4 MiB in-memory limit and across 256 KiB read boundaries, a 4 MiB tail cut inside a key,
the run log and findings. Runs `nitrodiag --root ROOT run planted.lua`, then opens the archive with Python's own
gzip/tarfile (not nitrodiag's reader) and searches the whole decompressed tar stream (every member, every member
name and pax header) and each member's data for every planted value and every 8-byte piece of it. 0 allowed.

usage: planted.py NITRODIAG SOURCE_DIR
"""
import base64
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

ND, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
rng = random.Random(1313)
UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
B64 = ALNUM + "+/"


def rand(n, alpha):
    return "".join(rng.choice(alpha) for _ in range(n))


def url_enc(v):
    return "".join("%%%02X" % ord(c) if c in "/+=%!" else c for c in v)


def body(sep):
    return sep.join([rand(64, B64) for _ in range(3)] + [rand(20, B64) + "=="])


def value(kind):
    k = kind[0]
    if k == "K":
        v = "AKIA" + rand(16, UPPER_DIGITS)
    elif k == "S":
        v = rand(40, B64)
    elif k == "T":
        v = "IQoJb3JpZ2luX2Vj" + rand(150, B64) + "=="
    elif k == "H":
        v = rand(64, "0123456789abcdef")
    elif k == "X":
        v = rand(32, ALNUM)
    elif k == "P":
        v = rand(14, ALNUM) + "!9"
    elif k == "J":
        v = "eyJ" + rand(20, ALNUM + "-_") + ".eyJ" + rand(40, ALNUM + "-_") + "." + rand(43, ALNUM + "-_")
    elif k in "Bb":
        v = body("\n" if k == "B" else "\\n")
    elif k in "GW":
        pem = "-----BEGIN PRIVATE KEY-----\n" + body("\n") + "\n-----END PRIVATE KEY-----\n"
        e = base64.b64encode(pem.encode()).decode()
        v = e if k == "G" else "\n".join(e[i:i + 76] for i in range(0, len(e), 76))
    else:
        raise SystemExit("unknown kind " + kind)
    if kind[1:] == "%":
        v = url_enc(v)
    elif kind[1:] == "%%":
        v = url_enc(url_enc(v))
    elif kind[1:] == "/":
        v = v[:10] + "\n" + v[10:]
    return v


def pieces(v):
    out = []
    for line in v.split("\n"):
        out += [p for p in line.split("\\n") if p]
    return out


SHAPES = []
for line in open(os.path.join(SRC, "tests/data/scrub-shapes.txt"), encoding="utf-8"):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        continue
    name, kind, tmpl = line.split("\t", 2)
    SHAPES.append((name, kind, tmpl))
assert len(SHAPES) >= 50, len(SHAPES)

SECRETS = []  # (where, shape, piece)


def plant(where, shape=None):
    """One instance of a shape (or of each shape) with fresh values; returns the text."""
    texts = []
    for name, kind, tmpl in SHAPES if shape is None else [s for s in SHAPES if s[0] == shape]:
        v = value(kind)
        for p in pieces(v):
            SECRETS.append((where, name, p))
        halves = v.split("\n", 1) + [""]  # {V1} {V2}: the two halves of a split value ("/" kinds)
        t = tmpl.replace("{V1}", halves[0]).replace("{V2}", halves[1])
        t = t.replace("{V}", v).replace("<NL>", "\n").replace("<CR>", "\r").replace("<TAB>", "\t")
        texts.append(t.replace("<NUL>", "\0"))
    return "\n".join(texts) + "\n"


def write(root, path, data, mode=0o644):
    p = root + path
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape"))
    os.chmod(p, mode)


def filler(i):
    return "2026-11-22T19:%02d:%02d host nitro-enclaves-allocator[812]: routine line %d\n" % (i // 60 % 60, i % 60, i)


def big_file(where, size, boundaries):
    """size bytes of log lines with a shape instance straddling each boundary (and a PEM BEGIN just above the last
    4 MiB, so a 4 MiB tail cut starts inside the key body)."""
    out = io.StringIO()
    n = 0
    i = 0
    pending = sorted(boundaries)
    for b in pending:
        shape_text = plant(where, SHAPES[i % len(SHAPES)][0])
        # pad with filler so the shape's value straddles b
        start = b - len(shape_text) // 2
        while n + 80 < start:
            line = filler(i)
            out.write(line)
            n += len(line)
            i += 1
        pad = start - n
        if pad > 0:
            out.write("#" * (pad - 1) + "\n")
            n += pad
        out.write(shape_text)
        n += len(shape_text)
        i += 1
    while n < size:
        line = filler(i)
        out.write(line)
        n += len(line)
        i += 1
    data = out.getvalue()
    return data[:size - 1] + "\n" if len(data) >= size else data


def main():
    base = os.environ.get("ND_TEST_TMP") or None
    if base:
        os.makedirs(base, exist_ok=True)  # run alone (ctest -R bundle.planted), nothing else has made it yet
    tmp = tempfile.mkdtemp(prefix="planted-", dir=base)
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    root = tmp + "/root"
    fakebin = tmp + "/bin"
    out = tmp + "/out"
    os.makedirs(out)
    # nitro_enclaves.log: shapes, then a key whose BEGIN is the 251st line from the end (tail_lines = 250 cuts it)
    head = "".join(filler(i) for i in range(50)) + plant("nitro_enclaves.log")
    key = body("\n")
    for p in pieces(key):
        SECRETS.append(("nitro_enclaves.log.tail", "pem_begin_above_tail_cut", p))
    key_lines = ["-----BEGIN RSA PRIVATE KEY-----"] + key.split("\n") + ["-----END RSA PRIVATE KEY-----"]
    tail_rest = plant("nitro_enclaves.log").split("\n")[:-1]
    after = 250 - (len(key_lines) - 1)
    assert len(tail_rest) <= after, (len(tail_rest), after)
    tail_rest += [filler(1000 + i).rstrip("\n") for i in range(after - len(tail_rest))]
    write(root, "/var/log/nitro_enclaves/nitro_enclaves.log", head + "\n".join(key_lines + tail_rest) + "\n")
    # err logs: a key id in the file name; NUL bytes in a text log
    akid = value("K")
    SECRETS.append(("err log name", "akid_file_name", akid))
    write(root, "/var/log/nitro_enclaves/err2026-11-22T19:00:00-%s.log" % akid, "[ E26 ] Insufficient memory\n" +
          plant("err log"))
    write(root, "/var/log/nitro_enclaves/err2026-11-22T19:01:00.log", "\0\0binary prefix\0\n" + plant("err log nul"))
    write(root, "/etc/nitro_enclaves/allocator.yaml", "---\n# planted\nmemory_mib: 512\ncpu_count: 2\n" +
          "".join("# " + l + "\n" for l in plant("allocator.yaml").split("\n") if l))
    shapes_txt = plant("shapes.txt")
    write(root, "/shapes.txt", shapes_txt)
    # the run log and the findings get one message per shape (a runbook logs a command's output as one message)
    write(root, "/shapes.log", "\n----8<----\n".join(plant("run log", name).rstrip("\n") for name, _, _ in SHAPES))
    # (a NUL byte cannot go through add_json: nd.bundle refuses to encode it)
    doc = {name: plant("shapes.json", name) for name, _, t in SHAPES if "<NUL>" not in t}
    ak, sk, tk = value("K"), value("S"), value("T")
    SECRETS.extend([("shapes.json", "json_credentials", x) for x in (ak, sk, tk)])
    doc["Credentials"] = {"AccessKeyId": ak, "SecretAccessKey": sk, "SessionToken": tk}
    write(root, "/shapes.json", json.dumps(doc))
    env_vars = ["PLANTED_%d=%s" % (i, plant("docker inspect", name).rstrip("\n")) for i, (name, _, t) in
                enumerate(SHAPES) if "<NUL>" not in t]
    inspect = [{"Id": "sha256:1", "Config": {"Env": env_vars}}]
    write(root, "/docker_inspect.json", json.dumps(inspect, indent=2))
    ak2, sk2 = value("K"), value("S")
    SECRETS.extend([("credentials", "aws_credentials_file", x) for x in (ak2, sk2)])
    write(root, "/root/.aws/credentials", "[default]\naws_access_key_id=%s\naws_secret_access_key=%s\n" % (ak2, sk2))
    # 4 MiB boundaries: a file over 4 MiB with a shape across every 256 KiB read boundary and across 4 MiB; a file of
    # exactly 4 MiB ending in a secret; a key BEGIN just above the 4 MiB tail cut
    M4 = 4 * 1024 * 1024
    size = M4 + 300000
    bounds = [k * 262144 for k in range(1, size // 262144 + 1)] + [M4 - 1, M4 + 1]
    key2 = body("\n")
    for p in pieces(key2):
        SECRETS.append(("big.tail", "pem_begin_above_4mib_cut", p))
    block = "-----BEGIN PRIVATE KEY-----\n" + key2 + "\n-----END PRIVATE KEY-----\n"
    base = big_file("big.log", size, sorted(set(bounds)))
    # the 4 MiB tail starts 10 bytes into this key's first body line
    at = size - M4 - len("-----BEGIN PRIVATE KEY-----\n") - 10
    big = (base[:at - 1] + "\n" + block + base[at:])[:size - 1] + "\n"
    assert len(big) == size and at < size - M4 < at + len(block)
    write(root, "/var/log/big.log", big)
    last = value("S")
    SECRETS.append(("exact4m.log", "secret_at_4mib_end", last))
    tailtxt = "aws_secret_access_key = " + last + "\n"
    ex = big_file("exact4m.log", M4 - len(tailtxt), [262144, 524288, M4 - 262144])
    ex = ex[:M4 - len(tailtxt)]
    write(root, "/var/log/exact4m.log", ex + tailtxt)
    assert os.path.getsize(root + "/var/log/exact4m.log") == M4
    # a line longer than the scrubber's 1 MiB line limit, cut near it: a secret's value straddling the limit, with its
    # name before it and no separator in the last 8 KiB but the one between them (the cut must not part them)
    L1 = 1024 * 1024
    sk3 = value("S")
    SECRETS.append(("longline.log", "secret_across_1mib_line_cut", sk3))
    ll = list(("x" * 999 + " ") * ((L1 + 4096) // 1000))
    for i in range(L1 - 9000, len(ll)):
        ll[i] = "x"
    item = ', "aws_secret_access_key": "%s", ' % sk3
    at = L1 - item.index(sk3) - 20  # the value's 21st byte falls on the limit
    ll[at:at + len(item)] = list(item)
    write(root, "/var/log/longline.log", "".join(ll) + "\n")
    # fake commands: systemctl, journalctl, dmesg print planted text (stdout and stderr)
    sysd = plant("systemctl status")
    journal = plant("journal")
    dmesg = plant("dmesg")
    write(tmp, "/data/systemctl.txt", sysd)
    write(tmp, "/data/journal.txt", journal)
    write(tmp, "/data/dmesg.txt", dmesg)
    for cmd, f in (("systemctl", "systemctl.txt"), ("journalctl", "journal.txt"), ("dmesg", "dmesg.txt")):
        write(fakebin, "/" + cmd, "#!/bin/sh\ncat '%s/data/%s'\nhead -c 2000 '%s/data/%s' >&2\n" % (tmp, f, tmp, f),
              0o755)

    env = dict(os.environ, PATH=fakebin + ":" + os.environ.get("PATH", "/usr/bin:/bin"), NITRODIAG_PATH="")
    r = subprocess.run([ND, "--root", root, "--out", out, "run", os.path.join(SRC, "tests/bundle/planted.lua")],
                       cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    bundles = [f for f in os.listdir(out) if f.endswith(".tar.gz")]
    if len(bundles) != 1:
        print("FAIL: expected one bundle, got %s\nstdout: %s\nstderr: %s" % (bundles, r.stdout[-2000:],
                                                                            r.stderr[-2000:]))
        return 1
    # member names and manifest entries agree (scrubbed the same way): nitrodiag's own verifier accepts the bundle
    v = subprocess.run([ND, "bundle", os.path.join(out, bundles[0])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=300)
    if v.returncode != 0:
        print("FAIL: the bundle does not verify:\n" + v.stdout.decode("utf-8", "replace")[-3000:])
        return 1
    raw = gzip.decompress(open(os.path.join(out, bundles[0]), "rb").read())
    hay = [("<tar stream>", raw)]
    kinds = set()
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        for m in t.getmembers():
            hay.append(("name:" + m.name, m.name.encode("utf-8", "surrogateescape")))
            if m.isfile():
                data = t.extractfile(m).read()
                hay.append((m.name, data))
                kinds.add(m.name.split("/", 1)[-1])
    for need in ("nitro_enclaves.log.tail", "allocator.yaml", "allocator_service.status", "journal_kms-proxy-host",
                 "dmesg.tail", "describe_enclaves.json", "stderr.txt", "big.log", "big.tail", "exact4m.log",
                 "manifest.json", "summary.json", "report.md"):
        if not any(k.startswith(need) or need in k for k in kinds):
            print("FAIL: no member like %s in %s\nstdout: %s\nstderr: %s" % (need, sorted(kinds), r.stdout[-3000:],
                                                                          r.stderr[-3000:]))
            return 1
    # every 8-byte piece of every planted value, then one pass over the whole decompressed tar stream (it holds every
    # member's bytes, every member name and pax header); pieces shorter than 8 bytes are searched whole
    frag = {}
    short = []
    for idx, (where, shape, p) in enumerate(SECRETS):
        pb = p.encode("utf-8", "surrogateescape")
        if len(pb) < 8:
            short.append((idx, pb))
        for i in range(len(pb) - 7):
            f = pb[i:i + 8]
            # a piece made of URL escapes ("%252F%25") also occurs in ordinary encoded URLs: not evidence
            if sum(c not in b"%0123456789ABCDEF" for c in f) >= 3:
                frag.setdefault(f, idx)
    leaked = {}
    for i in range(len(raw) - 7):
        idx = frag.get(raw[i:i + 8])
        if idx is not None and idx not in leaked:
            leaked[idx] = i
    for idx, pb in short:
        if pb in raw and idx not in leaked:
            leaked[idx] = raw.find(pb)
    for idx, at in sorted(leaked.items(), key=lambda x: x[1]):
        where, shape, p = SECRETS[idx]
        member = next((m for m in hay[1:] if m[0].startswith("name:") is False and p[:8].encode() in m[1]), ("?",))[0]
        print("LEAK %s/%s (member %s) %r: %r" % (where, shape, member, raw[at:at + 8], raw[max(0, at - 100):at + 40]))
    leaks = len(leaked)
    checked = len(SECRETS)
    print("bundle.planted: %d shapes, %d planted values in %d places, %d members searched, %d leaks" %
          (len(SHAPES), checked, len(set(w for w, _, _ in SECRETS)), len(hay) - 1, leaks))
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
