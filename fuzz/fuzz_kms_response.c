/*
 * fuzz_kms_response.c — responses: the proxy's response JSON as an enclave client reads it (nd_kms_response_parse)
 * and the IMDS credential expiry time format (nd_creds_parse_time). The HTTP layer itself is libcurl's.
 */
#include "fuzz.h"
#include "nd_creds.h"
#include "nd_frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char a[] = "{\"request_id\":\"1\",\"trace_id\":null,\"kms_request_id\":\"k\",\"response\":{\"GenerateDataKey\":"
                            "{\"key_id\":\"arn:aws:kms:us-east-1:1:key/1\",\"ciphertext_blob\":[1,2],"
                            "\"ciphertext_for_recipient\":[3,4]}}}";
    static const char b[] = "{\"request_id\":\"1\",\"response\":{\"Error\":{\"code\":\"upstream_throttled\",\"message\":\"m\"}}}";
    nd_fuzz_seed(*argc, *argv, "gdk", a, sizeof a - 1);
    nd_fuzz_seed(*argc, *argv, "error", b, sizeof b - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_kms_response r;
    memset(&r, 0, sizeof r);
    nd_err err;
    nd_kms_response_parse(data, size, &r, &err);
    nd_kms_response_free(&r);
    char t[64];
    size_t l = size < sizeof t - 1 ? size : sizeof t - 1;
    memcpy(t, data, l);
    t[l] = '\0';
    int64_t v;
    nd_creds_parse_time(t, &v);
    return 0;
}
