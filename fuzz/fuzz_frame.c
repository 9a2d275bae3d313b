/*
 * fuzz_frame.c — the vsock frame stream (core/frame.c) as the KMS proxy decodes it: a decoder fed in two chunks,
 * every frame taken out. Seeds: frames the core builds (Hello, Heartbeat, a KmsProxy request).
 */
#include "fuzz.h"
#include "nd_frame.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char req[] = "{\"request_id\":\"1\",\"request\":{\"op\":\"GenerateRandom\",\"payload\":{\"number_of_bytes\":32}}}";
    unsigned char *b = NULL;
    size_t n = 0;
    if (nd_frame_build(ND_FRAME_KMS_PROXY, 7, req, sizeof req - 1, &b, &n, NULL) == 0)
        nd_fuzz_seed(*argc, *argv, "kms", b, n);
    free(b);
    if (nd_frame_build(ND_FRAME_HEARTBEAT, 1, NULL, 0, &b, &n, NULL) == 0)
        nd_fuzz_seed(*argc, *argv, "heartbeat", b, n);
    free(b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_frame_decoder d;
    nd_frame_decoder_init(&d, 1 << 16);
    nd_err err;
    size_t split = size ? data[0] % (size + 1) : 0;
    int rc = nd_frame_feed(&d, data, split, &err);
    nd_frame f;
    while (rc >= 0 && (rc = nd_frame_next(&d, &f, &err)) == 1)
        ;
    if (rc >= 0)
        rc = nd_frame_feed(&d, data + split, size - split, &err);
    while (rc >= 0 && (rc = nd_frame_next(&d, &f, &err)) == 1)
        ;
    nd_frame_decoder_free(&d);
    return 0;
}
