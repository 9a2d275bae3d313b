/*
 * fuzz_kmslog.c — KMS proxy log lines (core/kmslog.c): plain, tracing-wrapped (escaped JSON), journal-prefixed,
 * with a filter chosen by the first byte; and the time parser. Seed: tests/data/kmslogs (fuzz/run.sh).
 */
#include "fuzz.h"
#include "nd_kmslog.h"

static int on_rec(void *ud, const nd_kmslog_record *rec)
{
    (*(size_t *)ud)++;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) { return 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    nd_kmslog_filter f;
    memset(&f, 0, sizeof f);
    f.errors_only = data[0] & 1;
    f.throttled = data[0] & 2;
    f.op = (data[0] & 4) ? "Decrypt" : NULL;
    f.code = (data[0] & 8) ? "upstream_throttled" : NULL;
    f.max_ids = 64;
    nd_kmslog *k = NULL;
    size_t n = 0;
    nd_err err;
    if (nd_kmslog_new(&f, on_rec, &n, &k, &err) != 0)
        return 0;
    size_t split = data[0] % size;
    nd_kmslog_feed(k, data + 1, split ? split - 1 : 0, &err);
    nd_kmslog_feed(k, data + (split ? split : 1), size - (split ? split : 1), &err);
    nd_kmslog_finish(k, &err);
    double p;
    nd_kmslog_percentile(k, 99, &p);
    nd_kmslog_free(k);
    char ts[64];
    size_t tl = size - 1 < sizeof ts - 1 ? size - 1 : sizeof ts - 1;
    memcpy(ts, data + 1, tl);
    ts[tl] = '\0';
    double out;
    nd_kmslog_parse_time(ts, 1700000000.0, &out, &err);
    return 0;
}
