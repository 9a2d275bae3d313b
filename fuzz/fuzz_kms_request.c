/*
 * fuzz_kms_request.c — the KMS proxy's request JSON (nd_kms_request_parse, core/frame.c): what an enclave sends.
 * Differential too: whatever the parser's fast path (byte fields read from the text) takes must parse the same way
 * through the slow path (a jansson tree), or the target aborts.
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
    static const char c[] = "{\"request_id\":\"y\",\"request\":{\"payload\":{\"recipient\":{\"attestation_document\":"
                            "[0, 255 ,\n7],\"key_encryption_algorithm\":\"RSAES_OAEP_SHA_256\"},\"key_id\":\"k\","
                            "\"number_of_bytes\":32,\"plaintext\":\"AQID\"},\"op\":\"GenerateRandom\"}}";
    nd_fuzz_seed(*argc, *argv, "random", c, sizeof c - 1);
    return 0;
}

static int same_bytes(const nd_bytes *a, const nd_bytes *b)
{
    return a->len == b->len && !a->data == !b->data && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static int same_json(json_t *a, json_t *b)
{
    return (!a && !b) || (a && b && json_equal(a, b));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_kms_request r;
    memset(&r, 0, sizeof r);
    nd_err err;
    nd_kms_request_parse(data, size, &r, &err);
    nd_kms_request_free(&r);

    nd_kms_request f, s;
    if (nd_kms_request_parse_fast(data, size, &f) == 0) {
        int rs = nd_kms_request_parse_slow(data, size, &s, &err);
        if (rs != 0 || strcmp(f.request_id, s.request_id) || strcmp(f.trace_id, s.trace_id) || f.op != s.op ||
            strcmp(f.key_id, s.key_id) || strcmp(f.key_spec, s.key_spec) || f.number_of_bytes != s.number_of_bytes ||
            strcmp(f.encryption_algorithm, s.encryption_algorithm) ||
            strcmp(f.key_encryption_algorithm, s.key_encryption_algorithm) ||
            !same_bytes(&f.ciphertext_blob, &s.ciphertext_blob) || !same_bytes(&f.plaintext, &s.plaintext) ||
            !same_bytes(&f.recipient, &s.recipient) || !same_json(f.encryption_context, s.encryption_context) ||
            !same_json(f.grant_tokens, s.grant_tokens)) {
            fprintf(stderr, "fast and slow request parsers differ (slow: %d %s)\n", rs, rs ? err.msg : "");
            abort();
        }
        nd_kms_request_free(&s);
    }
    nd_kms_request_free(&f);
    return 0;
}
