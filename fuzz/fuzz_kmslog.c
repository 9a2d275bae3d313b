/*
 * fuzz_kmslog.c — KMS proxy log lines (core/kmslog.c): plain, tracing-wrapped (escaped JSON), journal-prefixed,
 * with a filter chosen by the first byte; and the time parser. Traps when the kept line shapes, the strict reader
 * alone and a summary without records (ND_KMSLOG_ENOUGH: strings read lazily) disagree on the stats or the summary.
 * Seed: tests/data/kmslogs (fuzz/run.sh).
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

/* Wants no records: the scanner summarises the rest lazily. */
static int on_enough(void *ud, const nd_kmslog_record *rec)
{
    (void)ud;
    (void)rec;
    return ND_KMSLOG_ENOUGH;
}

static size_t mix(size_t h, const char *s)
{
    for (; s && *s; s++)
        h = h * 131 + (unsigned char)*s;
    return h * 31 + (s ? 1 : 2);
}

/* A signature of the summary: error codes, counters, kept ids (every field), percentiles. */
static size_t summary_sig(nd_kmslog *k)
{
    size_t h = 0, n, i;
    for (i = 0; i < nd_kmslog_error_codes(k); i++) {
        const char *code;
        uint64_t c;
        nd_kmslog_error_at(k, i, &code, &c);
        h = mix(h, code) * 7 + c;
    }
    const nd_kmslog_counter *c = nd_kmslog_counters(k, &n);
    for (i = 0; i < n; i++) {
        double v[] = {c[i].first, c[i].last, c[i].min, c[i].max, c[i].delta};
        h = mix(h, c[i].name) + c[i].samples * 3 + c[i].resets;
        for (size_t j = 0; j < 5; j++) {
            uint64_t b;
            memcpy(&b, &v[j], sizeof b);
            h = h * 1099511628211ull + b;
        }
    }
    uint64_t dropped;
    const nd_kmslog_id *ids = nd_kmslog_ids(k, &n, &dropped);
    for (i = 0; i < n; i++) {
        uint64_t b;
        memcpy(&b, &ids[i].ts, sizeof b);
        h = mix(mix(mix(mix(mix(h, ids[i].kms_request_id), ids[i].request_id), ids[i].code), ids[i].attestation_pcr0),
                ids[i].attestation_module_id) + b;
    }
    double p;
    if (nd_kmslog_percentile(k, 50, &p) == 0) {
        uint64_t b;
        memcpy(&b, &p, sizeof b);
        h = h * 31 + b;
    }
    return h * 31 + dropped;
}

/* Scans the input as the harness splits it; returns the stats, *sig the records' signature (quiet: none, the
 * callback says ND_KMSLOG_ENOUGH at once) and *sum the summary's. */
static int scan(const nd_kmslog_filter *f, const uint8_t *data, size_t size, bool quiet, nd_kmslog_stats *st,
                size_t *sig, size_t *sum)
{
    nd_kmslog *k = NULL;
    nd_err err;
    *sig = 0;
    if (nd_kmslog_new(f, quiet ? on_enough : on_rec, sig, &k, &err) != 0)
        return -1;
    size_t split = data[0] % size;
    nd_kmslog_feed(k, data + 1, split ? split - 1 : 0, &err);
    nd_kmslog_feed(k, data + (split ? split : 1), size - (split ? split : 1), &err);
    nd_kmslog_finish(k, &err);
    double p;
    nd_kmslog_percentile(k, 99, &p);
    *sum = summary_sig(k);
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
    f.max_ids = data[0] & 16 ? 2 : 64;
    nd_kmslog_stats a, b, c;
    size_t sa, sb, sc, ua, ub, uc;
    if (scan(&f, data, size, false, &a, &sa, &ua) != 0)
        return 0;
    /* a summary without records (strings read lazily) must be the summary with them */
    if (scan(&f, data, size, true, &c, &sc, &uc) != 0 || memcmp(&a, &c, sizeof a) != 0 || ua != uc)
        __builtin_trap();
    /* the kept line shapes must read every input as the strict reader alone does */
    f.no_shapes = true;
    if (scan(&f, data, size, false, &b, &sb, &ub) != 0 || memcmp(&a, &b, sizeof a) != 0 || sa != sb || ua != ub)
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
