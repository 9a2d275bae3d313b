/*
 * fuzz_imagelint.c — image-lint (core/imagelint.c): Dockerfiles and `docker inspect` JSON (first byte picks).
 * Seeds: tests/fixtures/imagelint (fuzz/run.sh).
 */
#include "fuzz.h"
#include "nd_imagelint.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_imagelint *r = NULL;
    nd_err err;
    const char *t = (const char *)data;
    if (nd_imagelint_dockerfile(t, size, &r, &err) == 0)
        nd_imagelint_free(r);
    r = NULL;
    if (nd_imagelint_inspect(t, size, &r, &err) == 0)
        nd_imagelint_free(r);
    return 0;
}
