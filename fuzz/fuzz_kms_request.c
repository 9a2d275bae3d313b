/*
 * fuzz_kms_request.c — the KMS proxy's request JSON (nd_kms_request_parse, core/frame.c): what an enclave sends.
 */
#include "fuzz.h"
#include "nd_frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char a[] = "{\"request_id\":\"9b2c\",\"trace_id\":\"t\",\"request\":{\"op\":\"GenerateDataKey\",\"payload\":"
                            "{\"key_id\":\"alias/app\",\"key_spec\":\"AES_256\",\"encryption_context\":{\"a\":\"b\"},"
                            "\"recipient\":{\"attestation_document\":\"AAEC\",\"key_encryption_algorithm\":"
                            "\"RSAES_OAEP_SHA_256\"}}}}";
    static const char b[] = "{\"request_id\":\"x\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1,2,3],"
                            "\"grant_tokens\":[\"g\"],\"recipient\":[0,1,2]}}}";
    nd_fuzz_seed(*argc, *argv, "gdk", a, sizeof a - 1);
    nd_fuzz_seed(*argc, *argv, "decrypt", b, sizeof b - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_kms_request r;
    memset(&r, 0, sizeof r);
    nd_err err;
    nd_kms_request_parse(data, size, &r, &err);
    nd_kms_request_free(&r);
    return 0;
}
