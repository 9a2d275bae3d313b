/*
 * fuzz_scrub.c — the scrubber (core/scrub.c) with its properties checked on every input (fuzz/scrub_props.h):
 * idempotent, output at most the input plus 16 bytes per redaction, the same bytes whatever the chunking, and no
 * planted secret out (a secret key and an access key id after any input; IMDS credential documents and HTTP messages
 * amid it). Member-name scrubbing too. Seeds: tests/data/scrub-shapes.txt templates, fixtures (fuzz/run.sh); every
 * input kept in fuzz/regressions/scrub/ is also replayed by unit.scrub.
 */
#include "fuzz.h"
#include "scrub_props.h"

static nd_scrub *S;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    S = nd_scrub_new(NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    const char *fail = nd_scrub_check_props(S, data, size);
    if (fail) {
        fprintf(stderr, "%s\n", fail);
        abort();
    }
    char name[256];
    char nm[1024];
    size_t l = size < sizeof name - 1 ? size : sizeof name - 1;
    memcpy(name, data, l);
    name[l] = '\0';
    nd_scrub_name(S, name, nm, sizeof nm);
    return 0;
}
