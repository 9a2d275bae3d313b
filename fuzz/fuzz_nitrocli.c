/*
 * fuzz_nitrocli.c — what nitro-cli prints (core/nitrocli.c): the JSON documents of each command (first byte picks
 * the command), error blocks ([ Exx ] …) and log lines. Seeds: tests/nitro/fixtures.
 */
#include "fuzz.h"
#include "nd_nitrocli.h"

#include <jansson.h>

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    nd_err err;
    const char *t = (const char *)data + 1;
    size_t n = size - 1;
    json_t *j = NULL;
    size_t end = 0;
    if (nd_nitro_parse_json((nd_nitro_cmd)(data[0] % 5), t, n, &j, &end, &err) == 0) {
        if (end > n)
            abort();
        json_decref(j);
    }
    nd_nitro_errors e;
    if (nd_nitro_parse_errors(t, n, &e, &err) == 0)
        nd_nitro_errors_free(&e);
    nd_nitro_logline l;
    memset(&l, 0, sizeof l);
    nd_nitro_parse_logline(t, n, &l, &err);
    return 0;
}
