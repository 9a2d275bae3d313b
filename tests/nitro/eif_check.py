#!/usr/bin/env python3
"""Independent EIF checker for the tests: parses an EIF with struct and recomputes the CRC (zlib) and the PCRs
(hashlib) straight from docs/nitro.md, without any nitrodiag code. Prints one JSON object."""
import base64, hashlib, json, struct, sys, zlib

def pcr(data):
    return hashlib.sha384(b"\0" * 48 + hashlib.sha384(data).digest()).hexdigest()

def cbor_item(b, i):
    ib = b[i]; major, info = ib >> 5, ib & 31; i += 1
    if info < 24: arg = info
    else:
        n = {24: 1, 25: 2, 26: 4, 27: 8}[info]; arg = int.from_bytes(b[i:i + n], "big"); i += n
    if major == 0: return arg, i
    if major in (2, 3):
        v = b[i:i + arg]; return (v.decode() if major == 3 else v), i + arg
    if major == 4:
        out = []
        for _ in range(arg):
            v, i = cbor_item(b, i); out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(arg):
            k, i = cbor_item(b, i); v, i = cbor_item(b, i); out[k] = v
        return out, i
    raise ValueError("unsupported cbor")

def main(path):
    raw = open(path, "rb").read()
    assert raw[:4] == b".eif"
    version, flags, dmem, dcpus, _res, nsec = struct.unpack(">HHQQHH", raw[4:28])
    offs = struct.unpack(">32Q", raw[28:284])[:nsec]
    sizes = struct.unpack(">32Q", raw[284:540])[:nsec]
    crc = zlib.crc32(raw[:544])
    kernel_cmdline, ramdisks, cert = b"", [], None
    secs = []
    for off, size in zip(offs, sizes):
        typ, sflags, ssize = struct.unpack(">HHQ", raw[off:off + 12])
        assert ssize == size
        data = raw[off + 12:off + 12 + size]
        crc = zlib.crc32(raw[off:off + 12], crc)
        crc = zlib.crc32(data, crc)
        secs.append({"type": typ, "offset": off, "size": size})
        if typ in (1, 2): kernel_cmdline += data
        elif typ == 3: ramdisks.append(data)
        elif typ == 4:
            sig, _ = cbor_item(data, 0)
            c = sig[0]["signing_certificate"]
            c = bytes(c) if isinstance(c, list) else c
            if c.startswith(b"-----BEGIN"):
                body = b"".join(l for l in c.splitlines() if l and not l.startswith(b"-----"))
                c = base64.b64decode(body)
            cert = c
    out = {
        "version": version, "flags": flags, "num_sections": nsec, "sections": secs,
        "crc_stored": "%08x" % struct.unpack(">I", raw[544:548])[0], "crc_computed": "%08x" % crc,
        "PCR0": pcr(kernel_cmdline + b"".join(ramdisks)),
        "PCR1": pcr(kernel_cmdline + (ramdisks[0] if ramdisks else b"")),
        "PCR2": pcr(b"".join(ramdisks[1:])),
        "min_memory_mib": -(-len(raw) // (1024 * 1024)) * 4,
    }
    if cert is not None: out["PCR8"] = pcr(cert)
    print(json.dumps(out))

if __name__ == "__main__":
    main(sys.argv[1])
