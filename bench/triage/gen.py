#!/usr/bin/env python3
"""bench/triage/gen.py OUT BYTES — a mixed run log for the triage benchmark: nitro-cli main-log lines, journald
lines, enclave console lines, KMS proxy JSON lines and a few Latin-1 bytes, with one E26 block (and its E39) and
one allocator failure buried in the middle. Deterministic (fixed seed). Prints the expected cause as JSON."""
import json, random, sys

out, size = sys.argv[1], int(sys.argv[2])
rnd = random.Random(10)
noise = [
    b"[nitro-cli:4242][INFO][2026-12-06T11:00:00.%03dZ][src/main.rs:63] Start Nitro CLI\n",
    b"[enc-1a2b3c4d5e6f:4243][INFO][2026-12-06T11:00:01.%03dZ][src/enclave_proc/mod.rs:479] Received command: Describe\n",
    b"Dec 06 11:00:02 ip-10-0-0-1 systemd[1]: Started Session %d of user ec2-user.\n",
    b"[   12.%06d] random: crng init done\n",
    b'{"event":"kms_proxy_response","request_id":"r%d","ok":true,"status":200,"latency_ms":12}\n',
    b"Dec 06 11:00:03 ip-10-0-0-1 app[77]: processed batch %d caf\xe9 ok\n",
]
block = (b"Start building the Enclave Image...\n"
         b"[ E26 ] Insufficient memory requested. User provided `memory` is 512 MB, but based on the EIF file size, "
         b"the minimum memory should be 2148 MB\n\nFor more details, please visit "
         b"https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26\n\n"
         b"If you open a support ticket, please provide the error log found at "
         b"\"/var/log/nitro_enclaves/err2026-12-06T11:00:05.249503129+00:00.log\"\nFailed connections: 1\n"
         b"[ E39 ] Enclave process connection failure. Such error appears when the enclave manager fails to connect "
         b"to at least one enclave process for retrieving the description information.\n\n")
written = 0
with open(out, "wb") as f:
    half = size // 2
    placed = False
    while written < size:
        if not placed and written >= half:
            f.write(block)
            written += len(block)
            placed = True
        chunk = b"".join(rnd.choice(noise) % rnd.randrange(1000) for _ in range(2000))
        f.write(chunk)
        written += len(chunk)
print(json.dumps({"bytes": written, "cause": "ENCLAVE_MEMORY_BELOW_EIF", "nitro_cli": "E26"}))
