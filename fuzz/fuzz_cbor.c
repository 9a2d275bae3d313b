/*
 * fuzz_cbor.c — nd_cbor_load (core/cbor.c), the one loader of untrusted CBOR: declared sizes, indefinite items,
 * duplicate map keys, nesting; then the serde byte-array reader on whatever loaded.
 */
#include "fuzz.h"
#include "nd_attest.h"
#include "nd_cbor.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    unsigned char *doc = NULL;
    size_t n = 0;
    if (nd_attest_build_dev(NULL, 0, NULL, 0, NULL, 0, 1, &doc, &n, NULL) == 0)
        nd_fuzz_seed(*argc, *argv, "dev-doc", doc + 1, n - 1); /* without the COSE tag */
    free(doc);
    static const unsigned char dup[] = {0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02};
    nd_fuzz_seed(*argc, *argv, "dup-map", dup, sizeof dup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_err err;
    cbor_item_t *it = nd_cbor_load(data, size, "fuzz", &err);
    if (!it)
        return 0;
    unsigned char *b = NULL;
    size_t bl = 0;
    if (nd_cbor_u8_bytes(it, &b, &bl) == 0)
        free(b);
    if (cbor_isa_map(it))
        (void)nd_cbor_map_get(it, "cabundle");
    cbor_decref(&it);
    return 0;
}
