#!/usr/bin/python3
"""eif_sign_check.py NITRODIAG TMPDIR — signed EIFs in `nitrodiag eif`, against an independent construction.

Builds signed EIFs byte by byte here (struct, zlib, hashlib, python3-cryptography, python3-cbor2: no nitrodiag code) the
way aws-nitro-enclaves-image-format's EifBuilder does (src/utils/mod.rs): the signature section is a CBOR array of one
{signing_certificate: PEM bytes, signature: COSE_Sign1 bytes} with serde's Vec<u8> as integer arrays, the COSE_Sign1
(untagged, protected {1: -35}, unprotected {}) signs PcrInfo {register_index: 0, register_value: PCR0}; PCR8 is
SHA384(48 zero bytes ‖ SHA384(certificate DER)). Then checks that `nitrodiag --json eif` shows describe-eif's
SigningCertificate (as SignCertificateInfo serialises it, eif_reader.rs), SignatureCheck and PCR8, and the findings
for an expired, a soon-expiring and a mismatched signature.
"""
import datetime as dt
import hashlib
import json
import os
import struct
import subprocess
import sys
import zlib

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

NITRODIAG, TMP = sys.argv[1], sys.argv[2]
os.makedirs(TMP, exist_ok=True)
UTC = dt.timezone.utc
NOW = dt.datetime.now(UTC).replace(microsecond=0)
failures = []


def pcr(data):
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(data).digest()).hexdigest()


def signing_cert(key, nb, na):
    # like the AWS user guide: openssl req -subj "/CN=AWS/C=US/ST=WA/L=Seattle/O=Amazon/OU=AWS"; x509 -req -signkey
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS"), x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "WA"),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, "Seattle"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Amazon"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "AWS")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(nb).not_valid_after(na)
            .sign(key, hashes.SHA384()))


def cose_sign1(key, payload):
    prot = cbor2.dumps({1: -35})
    r, s = decode_dss_signature(key.sign(cbor2.dumps(["Signature1", prot, b"", payload]), ec.ECDSA(hashes.SHA384())))
    return cbor2.dumps([prot, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])


def eif(path, cert_pem, key, sign_pcr0=None):
    kernel, cmdline = b"K" * 5000, b"console=ttyS0"
    ramdisks = [b"bootstrap" * 300, b"customer" * 700]
    metadata = json.dumps({"ImageName": "signed", "ImageVersion": "1.0"}).encode()
    pcr0 = pcr(kernel + cmdline + b"".join(ramdisks))
    payload = cbor2.dumps({"register_index": 0, "register_value": list(bytes.fromhex(sign_pcr0 or pcr0))})
    sigsec = cbor2.dumps([{"signing_certificate": list(cert_pem), "signature": list(cose_sign1(key, payload))}])
    sections = [(1, kernel), (2, cmdline), (5, metadata), (3, ramdisks[0]), (3, ramdisks[1]), (4, sigsec)]
    offsets, sizes, off = [], [], 548
    for _, d in sections:
        offsets.append(off)
        sizes.append(len(d))
        off += 12 + len(d)
    hdr = b".eif" + struct.pack(">HHQQHH", 4, 0, 0, 0, 0, len(sections))
    hdr += b"".join(struct.pack(">Q", o) for o in offsets + [0] * (32 - len(offsets)))
    hdr += b"".join(struct.pack(">Q", s) for s in sizes + [0] * (32 - len(sizes)))
    hdr += struct.pack(">I", 0)
    body = b"".join(struct.pack(">HHQ", t, 0, len(d)) + d for t, d in sections)
    crc = zlib.crc32(body, zlib.crc32(hdr))
    with open(path, "wb") as f:
        f.write(hdr + struct.pack(">I", crc) + body)
    return pcr0


def asn1_print(t):
    # OpenSSL's ASN1_TIME_print, which rust-openssl's Asn1TimeRef Display/Debug uses: "Mar  1 12:00:00 2025 GMT"
    return t.strftime("%b ") + ("%2d" % t.day) + t.strftime(" %H:%M:%S %Y GMT")


def expected_signing_certificate(cert):
    long_names = {"CN": "commonName", "C": "countryName", "ST": "stateOrProvinceName", "L": "localityName",
                  "O": "organizationName", "OU": "organizationalUnitName"}
    issuer = {}
    for a in cert.issuer:
        issuer[long_names[a.rfc4514_attribute_name]] = a.value
    return {"IssuerName": dict(sorted(issuer.items())), "Algorithm": "ecdsa-with-SHA384",
            "NotBefore": asn1_print(cert.not_valid_before), "NotAfter": asn1_print(cert.not_valid_after),
            "Signature": ":".join("%02X" % b for b in cert.signature)}


def check(name, nb, na, want_check, want_codes, tamper=False):
    key = ec.generate_private_key(ec.SECP384R1())
    cert = signing_cert(key, nb, na)
    cpem = cert.public_bytes(serialization.Encoding.PEM)
    path = os.path.join(TMP, name + ".eif")
    pcr0 = eif(path, cpem, key, sign_pcr0=("00" * 48) if tamper else None)
    p = subprocess.run([NITRODIAG, "--json", "eif", path], capture_output=True, timeout=60)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        failures.append(f"{name}: no JSON (exit {p.returncode}): {p.stderr.decode()[:300]}")
        return
    m = out.get("Measurements", {})
    if m.get("PCR0") != pcr0:
        failures.append(f"{name}: PCR0 {m.get('PCR0')} != {pcr0}")
    want_pcr8 = pcr(cert.public_bytes(serialization.Encoding.DER))
    if m.get("PCR8") != want_pcr8:
        failures.append(f"{name}: PCR8 {m.get('PCR8')} != {want_pcr8}")
    if out.get("SigningCertificate") != expected_signing_certificate(cert):
        failures.append(f"{name}: SigningCertificate {out.get('SigningCertificate')} != {expected_signing_certificate(cert)}")
    if out.get("SignatureCheck") is not want_check or out.get("IsSigned") is not True:
        failures.append(f"{name}: SignatureCheck {out.get('SignatureCheck')}, IsSigned {out.get('IsSigned')}")
    sc = (out.get("eif") or {}).get("signing_certificate") or {}
    if sc.get("not_after") != int(cert.not_valid_after.replace(tzinfo=UTC).timestamp()) or "CN=AWS" not in sc.get("subject", ""):
        failures.append(f"{name}: eif.signing_certificate {sc}")
    codes = sorted(f["code"] for f in out.get("findings", []) if f.get("severity") in ("fail", "warn"))
    if codes != sorted(want_codes):
        failures.append(f"{name}: findings {codes}, want {sorted(want_codes)}")
    want_rc = 1 if any(c in ("SIGNING_CERT_EXPIRED", "EIF_SIGNATURE_INVALID") for c in want_codes) else 0
    if p.returncode != want_rc:
        failures.append(f"{name}: exit {p.returncode}, want {want_rc}")
    print(f"{name:18s} SignatureCheck={out.get('SignatureCheck')} findings={codes}")


check("valid", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=365), True, [])
check("expires-soon", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=10), True, ["SIGNING_CERT_EXPIRES_SOON"])
check("expired", NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1), True, ["SIGNING_CERT_EXPIRED"])
check("not-yet-valid", NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=90), True, ["SIGNING_CERT_EXPIRED"])
check("other-pcr0", NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=365), False, ["EIF_SIGNATURE_INVALID"], tamper=True)
if failures:
    print("\n".join(["FAILED:"] + failures))
    sys.exit(1)
print("all signed-EIF cases agree")
