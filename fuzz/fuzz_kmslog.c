/*
 * fuzz_kmslog.c — KMS proxy log lines (core/kmslog.c): plain, tracing-wrapped (escaped JSON), journal-prefixed,
 * with a filter chosen by the first byte; and the time parser. Seed: tests/data/kmslogs (fuzz/run.sh).
 */
#include "fuzz.h"
#include "nd_kmslog.h"

/* Counts records and folds in every byte of the event's JSON text (a wrapped line read through a kept shape is
 * unescaped here, on demand), so the kept-shape and strict readers can be compared. */
static int on_rec(void *ud, const nd_kmslog_record *rec)
{
    size_t *n = ud, len = 0;
    const unsigned char *j = (const unsigned char *)nd_kmslog_record_json(rec, &len);
    *n = *n * 31 + 1;
    for (size_t i = 0; j && i < len; i++)
        *n = *n * 131 + j[i];
    return 0;
}

/* Scans the input as the harness splits it; returns the stats, *sig the records' signature. */
static int scan(const nd_kmslog_filter *f, const uint8_t *data, size_t size, nd_kmslog_stats *st, size_t *sig)
{
    nd_kmslog *k = NULL;
    nd_err err;
    *sig = 0;
    if (nd_kmslog_new(f, on_rec, sig, &k, &err) != 0)
        return -1;
    size_t split = data[0] % size;
    nd_kmslog_feed(k, data + 1, split ? split - 1 : 0, &err);
    nd_kmslog_feed(k, data + (split ? split : 1), size - (split ? split : 1), &err);
    nd_kmslog_finish(k, &err);
    double p;
    nd_kmslog_percentile(k, 99, &p);
    *st = *nd_kmslog_stats_of(k);
    nd_kmslog_free(k);
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
    nd_kmslog_stats a, b;
    size_t sa, sb;
    if (scan(&f, data, size, &a, &sa) != 0)
        return 0;
    /* the kept line shapes must read every input as the strict reader alone does */
    f.no_shapes = true;
    if (scan(&f, data, size, &b, &sb) != 0 || memcmp(&a, &b, sizeof a) != 0 || sa != sb)
        __builtin_trap();
    nd_err err;
    char ts[64];
    size_t tl = size - 1 < sizeof ts - 1 ? size - 1 : sizeof ts - 1;
    memcpy(ts, data + 1, tl);
    ts[tl] = '\0';
    double out;
    nd_kmslog_parse_time(ts, 1700000000.0, &out, &err);
    return 0;
}
