#!/usr/bin/env python3
"""botocore's own KMS client against nitrodiag-fake-kms: proves that the fake speaks the KMS JSON protocol the way
AWS SDKs expect and that its SigV4 verification (core/sigv4.c) accepts an independent signer's requests and rejects a
wrong secret the way KMS does.

usage: botocore_fakekms.py PATH_TO_nitrodiag-fake-kms
"""
import subprocess
import sys

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def main():
    fake = subprocess.Popen([sys.argv[1], "--max-seconds", "60"], stdout=subprocess.PIPE)
    try:
        port = int(fake.stdout.readline())
        ca = fake.stdout.readline().decode().strip()
        sess = botocore.session.get_session()
        cfg = Config(retries={"max_attempts": 1}, proxies={})

        def client(secret, token=None):
            return sess.create_client("kms", region_name="us-east-1", endpoint_url="https://127.0.0.1:%d" % port,
                                      verify=ca, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key=secret,
                                      aws_session_token=token, config=cfg)

        kms = client(SECRET)
        g = kms.generate_data_key(KeyId="alias/ephemeral-ml-test", KeySpec="AES_256")
        assert len(g["Plaintext"]) == 32, g
        assert len(g["ResponseMetadata"]["RequestId"]) == 36
        d = kms.decrypt(CiphertextBlob=g["CiphertextBlob"])
        assert d["Plaintext"] == g["Plaintext"]
        assert d["KeyId"].endswith(":key/1234abcd-12ab-34cd-56ef-1234567890ab")
        e = kms.encrypt(KeyId="alias/ephemeral-ml-test", Plaintext=b"x" * 100, EncryptionContext={"k": "v"})
        assert client(SECRET, token="SESSION").decrypt(CiphertextBlob=e["CiphertextBlob"],
                                                       EncryptionContext={"k": "v"})["Plaintext"] == b"x" * 100
        assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024
        expected = [
            (lambda: kms.generate_data_key(KeyId="alias/ephemeral-ml-test"), "ValidationException",
             "specify either number of bytes or key spec"),
            (lambda: kms.generate_data_key(KeyId="alias/missing", NumberOfBytes=8), "NotFoundException", "not found"),
            (lambda: kms.decrypt(CiphertextBlob=b"garbage"), "InvalidCiphertextException", ""),
            (lambda: client("wrong-secret").generate_random(NumberOfBytes=8), "InvalidSignatureException",
             "does not match the signature you provided"),
        ]
        for fn, code, text in expected:
            try:
                fn()
                raise AssertionError("expected " + code)
            except ClientError as ex:
                err = ex.response["Error"]
                assert err["Code"] == code, (err, code)
                assert text in err.get("Message", ""), (err, text)
                assert len(ex.response["ResponseMetadata"]["RequestId"]) == 36
        print("botocore %s KMS client: all operations and errors as expected" % botocore.__version__)
        return 0
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    sys.exit(main())
