#!/usr/bin/python3
"""attest_check.py NITRODIAG FIXTURES_DIR TMPDIR — `nitrodiag attest` against an independent verifier.

Generates P-384 certificate chains and COSE_Sign1 ES384 attestation documents with Debian's python3-cryptography and
python3-cbor2 (not nitrodiag's code), one per way verification can fail, verifies each one here independently
(ECDSA over the Sig_structure, each certificate's signature by its issuer, validity at the document's time, CA
constraints, bundle order), and checks that `nitrodiag attest --json` reaches the same verdict and the expected
first reason. The real NSM documents in tests/fixtures/attest are verified the same way against the AWS root.
"""
import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

NITRODIAG, FIXTURES, TMP = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(TMP, exist_ok=True)
UTC = dt.timezone.utc
T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)  # the documents' time
NOW = int(dt.datetime(2025, 3, 1, 13, 0, 0, tzinfo=UTC).timestamp())
failures = []


def key(curve=ec.SECP384R1()):
    return ec.generate_private_key(curve)


def cert(subject_cn, pub, issuer_cn, issuer_key, ca, pathlen=None, nb=None, na=None):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(pub).serial_number(x509.random_serial_number())
         .not_valid_before(nb or T0 - dt.timedelta(days=1)).not_valid_after(na or T0 + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
    return b.sign(issuer_key, hashes.SHA384())


def der(c):
    return c.public_bytes(serialization.Encoding.DER)


def pem(c):
    return c.public_bytes(serialization.Encoding.PEM)


def sig_structure(prot, payload):
    return cbor2.dumps(["Signature1", prot, b"", payload])


def document(leaf_key, leaf, bundle, alg=-35, digest="SHA384", pcrs=None, ts=None, nonce=None, tamper=None):
    pcrs = pcrs if pcrs is not None else {i: hashlib.sha384(bytes([i])).digest() for i in range(16)}
    payload = {"module_id": "i-0123456789abcdef0-enc0123456789abcdef", "digest": digest,
               "timestamp": ts if ts is not None else int(T0.timestamp() * 1000), "pcrs": pcrs,
               "certificate": der(leaf), "cabundle": [der(c) for c in bundle], "public_key": None,
               "user_data": b"hello", "nonce": nonce}
    pb = cbor2.dumps(payload)
    prot = cbor2.dumps({1: alg})
    r, s = decode_dss_signature(leaf_key.sign(sig_structure(prot, pb), ec.ECDSA(hashes.SHA384())))
    n = (leaf_key.curve.key_size + 7) // 8
    sig = r.to_bytes(n, "big") + s.to_bytes(n, "big")
    if tamper == "signature":
        sig = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
    if tamper == "payload":
        pb = pb.replace(b"hello", b"hellp")
    return cbor2.dumps([prot, {}, pb, sig])


# ---- the independent verifier -------------------------------------------------------------------------------------
def independent(doc_bytes, root_der, nonce=None):
    """Returns (verified, code) decided with python3-cryptography only."""
    if len(doc_bytes) > 65536:
        return False, "unreadable"  # the size limit nitrodiag documents (ND_ATTEST_MAX_DOC)
    try:
        obj = cbor2.loads(doc_bytes)
        if isinstance(obj, cbor2.CBORTag):
            obj = obj.value
        prot, _unprot, pb, sig = obj
        p = cbor2.loads(pb)
        alg = cbor2.loads(prot).get(1)
        leaf = x509.load_der_x509_certificate(p["certificate"])
        bundle = [x509.load_der_x509_certificate(c) for c in p["cabundle"]]
        if not isinstance(p["digest"], str) or not isinstance(p["pcrs"], dict) or not isinstance(p["module_id"], str):
            raise TypeError("wrong type")
    except Exception:
        return False, "unreadable"
    if p["digest"] != "SHA384" or any(len(v) != 48 for v in p["pcrs"].values()):
        return False, "fields"
    if alg != -35 or not isinstance(leaf.public_key(), ec.EllipticCurvePublicKey) or leaf.public_key().curve.name != "secp384r1":
        return False, "alg"
    if len(sig) != 96:
        return False, "signature"
    try:
        leaf.public_key().verify(encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big")),
                                 sig_structure(prot, pb), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False, "signature"
    if der(bundle[0]) != root_der:
        return False, "root"
    chain = bundle + [leaf]  # root first
    for i in range(1, len(chain)):
        if chain[i].issuer != chain[i - 1].subject:
            return False, "chain_order"
    t = dt.datetime.fromtimestamp(p["timestamp"] / 1000, UTC).replace(tzinfo=None)
    if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
        return False, "ca"
    # OpenSSL reports the first problem it meets walking from the leaf up; so do we
    for i in range(len(chain) - 1, -1, -1):
        c = chain[i]
        if i < len(chain) - 1:
            bc = c.extensions.get_extension_for_class(x509.BasicConstraints).value
            below = len(chain) - 2 - i  # CAs between this one and the leaf
            if not bc.ca or (bc.path_length is not None and below > bc.path_length):
                return False, "ca"
        try:
            chain[max(i - 1, 0)].public_key().verify(c.signature, c.tbs_certificate_bytes, ec.ECDSA(c.signature_hash_algorithm))
        except InvalidSignature:
            return False, "chain"
        if t > c.not_valid_after:
            return False, "expired"
        if t < c.not_valid_before:
            return False, "not_yet_valid"
    if nonce is not None and p.get("nonce") != nonce:
        return False, "nonce"
    return True, None


def run(path, root_pem=None, nonce=None, now=NOW):
    args = [NITRODIAG, "--json", "attest", path, "now=%d" % now]
    if root_pem:
        rp = os.path.join(TMP, "root.pem")
        with open(rp, "wb") as f:
            f.write(root_pem)
        args.append("root=" + rp)
    if nonce is not None:
        args.append("nonce=" + nonce.hex())
    p = subprocess.run(args, capture_output=True, timeout=60)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return p.returncode, out, p.stderr.decode(errors="replace")


def case(name, doc_bytes, root, want_code, root_pem=None, nonce=None, fmt="raw", now=NOW):
    """root: the anchor the independent verifier uses; root_pem: what nitrodiag gets (None: root's PEM, b"": none,
    i.e. its embedded AWS root)."""
    path = os.path.join(TMP, name + ".doc")
    with open(path, "wb") as f:
        f.write({"raw": doc_bytes, "b64": base64.b64encode(doc_bytes), "hex": doc_bytes.hex().encode(),
                 "tag": b"\xd2" + doc_bytes}[fmt])
    iv, icode = independent(doc_bytes, der(root), nonce)
    if icode != want_code:
        failures.append(f"{name}: the independent verifier says {icode}, the test expects {want_code}")
    rc, out, err = run(path, root_pem if root_pem is not None else pem(root), nonce, now)
    a = (out or {}).get("attestation")
    if want_code == "unreadable":
        got = "unreadable" if (rc == 1 and a is None and out and out["findings"][0]["code"] == "ATTEST_UNREADABLE") else repr((rc, a))
    elif a is None:
        got = f"no attestation in the output (exit {rc}): {err.strip()[:200]}"
    else:
        got = a.get("code")
        if a["verified"] != (want_code is None) or rc != (0 if want_code is None else 1):
            got = f"verified={a['verified']} exit={rc} code={got}"
    if got != want_code:
        failures.append(f"{name}: nitrodiag gives {got!r}, want {want_code!r}")
    print(f"{name:28s} independent={icode!s:14s} nitrodiag={got!s}")
    return a


def main():
    rk = key()
    root = cert("Test Nitro Root", rk.public_key(), "Test Nitro Root", rk, True, 3,
                T0 - dt.timedelta(days=3650), T0 + dt.timedelta(days=3650))
    ik1, ik2, lk = key(), key(), key()
    i1 = cert("Regional CA", ik1.public_key(), "Test Nitro Root", rk, True, 2)
    i2 = cert("Zonal CA", ik2.public_key(), "Regional CA", ik1, True, 1)
    leaf = cert("i-0123456789abcdef0-enc0123456789abcdef", lk.public_key(), "Zonal CA", ik2, False)
    good = [root, i1, i2]

    a = case("good", document(lk, leaf, good), root, None)
    if a and (a["pcrs"]["0"] != hashlib.sha384(b"\0").hexdigest() or a["debug"]):
        failures.append("good: PCR0 or debug wrong")
    case("good-base64", document(lk, leaf, good), root, None, fmt="b64")
    case("good-hex", document(lk, leaf, good), root, None, fmt="hex")
    case("good-tag18", document(lk, leaf, good), root, None, fmt="tag")
    a = case("stale-now", document(lk, leaf, good), root, None, now=int((T0 + dt.timedelta(days=2)).timestamp()))
    if a and a["valid_now"]:
        failures.append("stale-now: valid_now should be false two days later")
    zero = {i: bytes(48) for i in range(16)}
    a = case("debug-mode", document(lk, leaf, good, pcrs=zero), root, None)
    if a and not a["debug"]:
        failures.append("debug-mode: debug should be true")
    case("bad-signature", document(lk, leaf, good, tamper="signature"), root, "signature")
    case("altered-payload", document(lk, leaf, good, tamper="payload"), root, "signature")
    case("wrong-alg", document(lk, leaf, good, alg=-7), root, "alg")
    pk = key(ec.SECP256R1())
    leaf256 = cert("p256 leaf", pk.public_key(), "Zonal CA", ik2, False)
    case("p256-leaf-key", document(pk, leaf256, good), root, "alg")
    case("digest-sha256", document(lk, leaf, good, digest="SHA256"), root, "fields")
    case("pcr-32-bytes", document(lk, leaf, good, pcrs={0: bytes(32)}), root, "fields")
    for nm, nb, na, code in [("leaf-expired", T0 - dt.timedelta(hours=5), T0 - dt.timedelta(hours=2), "expired"),
                             ("leaf-not-yet-valid", T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=4), "not_yet_valid")]:
        l2 = cert("leaf", lk.public_key(), "Zonal CA", ik2, False, nb=nb, na=na)
        case(nm, document(lk, l2, good), root, code)
    for nm, nb, na, code in [("intermediate-expired", T0 - dt.timedelta(days=9), T0 - dt.timedelta(days=1), "expired"),
                             ("intermediate-not-yet-valid", T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=9), "not_yet_valid")]:
        x = cert("Zonal CA", ik2.public_key(), "Regional CA", ik1, True, 1, nb=nb, na=na)
        case(nm, document(lk, leaf, [root, i1, x]), root, code)
    ok_root = key()
    other = cert("Other Root", ok_root.public_key(), "Other Root", ok_root, True, 3,
                 T0 - dt.timedelta(days=3650), T0 + dt.timedelta(days=3650))
    case("wrong-root", document(lk, leaf, good), other, "root", root_pem=pem(other))
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "aws-root-g1.pem"), "rb") as f:
        aws_root = x509.load_pem_x509_certificate(f.read())
    case("aws-root-for-test-chain", document(lk, leaf, good), aws_root, "root", root_pem=b"")  # the embedded root
    case("out-of-order", document(lk, leaf, [root, i2, i1]), root, "chain_order")
    notca = cert("Zonal CA", ik2.public_key(), "Regional CA", ik1, False)
    case("intermediate-not-ca", document(lk, leaf, [root, i1, notca]), root, "ca")
    i1p0 = cert("Regional CA", ik1.public_key(), "Test Nitro Root", rk, True, 0)  # no CA may follow it
    case("path-length-exceeded", document(lk, leaf, [root, i1p0, i2]), root, "ca")
    leafca = cert("leaf", lk.public_key(), "Zonal CA", ik2, True, 0)
    case("leaf-is-ca", document(lk, leafca, good), root, "ca")
    forged = cert("Zonal CA", ik2.public_key(), "Regional CA", key(), True, 1)  # signed by a key that is not Regional CA's
    case("forged-intermediate", document(lk, leaf, [root, i1, forged]), root, "chain")
    case("nonce-mismatch", document(lk, leaf, good, nonce=b"abc"), root, "nonce", nonce=b"abd")
    case("nonce-match", document(lk, leaf, good, nonce=b"abc"), root, None, nonce=b"abc")
    d = document(lk, leaf, good)
    case("truncated", d[:-7], root, "unreadable")
    case("oversized", d + bytes(70000), root, "unreadable")
    p = cbor2.loads(d)
    pl = cbor2.loads(p[2])
    pl["digest"] = 384
    case("digest-wrong-type", cbor2.dumps([p[0], {}, cbor2.dumps(pl), p[3]]), root, "unreadable")
    pl["digest"] = "SHA384"
    pl["pcrs"] = [bytes(48)]
    case("pcrs-wrong-type", cbor2.dumps([p[0], {}, cbor2.dumps(pl), p[3]]), root, "unreadable")
    case("not-an-array", cbor2.dumps({"a": 1}), root, "unreadable")

    # real NSM documents against the real AWS root, at their own time: both verifiers must say verified
    if hashlib.sha256(der(aws_root)).hexdigest() != "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b":
        failures.append("tests/attest/aws-root-g1.pem is not the pinned AWS root")
    for fn in ("nitrite-2024-09-07.b64", "nitrite-debug-2024-09-07.b64"):
        raw = base64.b64decode(open(os.path.join(FIXTURES, fn)).read())
        ts = cbor2.loads(cbor2.loads(raw)[2])["timestamp"] // 1000
        iv, icode = independent(raw, der(aws_root))
        rc, out, err = run(os.path.join(FIXTURES, fn), now=ts + 60)
        a = (out or {}).get("attestation") or {}
        print(f"{fn:28s} independent={icode!s:14s} nitrodiag={a.get('code')} verified={a.get('verified')}")
        if not iv or not a.get("verified") or not a.get("valid_now") or rc != 0:
            failures.append(f"{fn}: independent={iv}/{icode}, nitrodiag verified={a.get('verified')} "
                            f"valid_now={a.get('valid_now')} exit={rc} {err.strip()[:200]}")
        rc, out, _ = run(os.path.join(FIXTURES, fn), now=ts + 30 * 86400)
        a = (out or {}).get("attestation") or {}
        if not a.get("verified") or a.get("valid_now") is not False:
            failures.append(f"{fn}: thirty days later it must still verify at its own time but not be valid now")
    if failures:
        print("\n".join(["FAILED:"] + failures))
        sys.exit(1)
    print("all cases agree")


main()
