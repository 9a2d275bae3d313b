/*
 * fuzz_attest.c — nd_attest_parse (core/attest.c over core/cbor.c): COSE_Sign1 attestation documents, which the
 * KMS proxy and `nitrodiag attest` read from enclaves. Seed: a development document built by the core.
 */
#include "fuzz.h"
#include "nd_attest.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    unsigned char pk[64], ud[8] = "userdata", nonce[4] = {1, 2, 3, 4};
    memset(pk, 7, sizeof pk);
    unsigned char *doc = NULL;
    size_t n = 0;
    if (nd_attest_build_dev(pk, sizeof pk, ud, sizeof ud, nonce, sizeof nonce, 1700000000000ull, &doc, &n, NULL) == 0)
        nd_fuzz_seed(*argc, *argv, "dev-doc", doc, n);
    free(doc);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_attest_doc *d = NULL;
    nd_err err;
    if (nd_attest_parse(data, size, &d, &err) == 0 && !d)
        abort();
    nd_attest_free(d);
    return 0;
}
