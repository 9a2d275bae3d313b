/* test_kmslog.c — the KMS proxy log scanner on tests/data/kmslogs/mixed.log (plain, tracing-wrapped, prefixed and
 * malformed lines mixed with journald noise), every filter, code normalisation, hand-computed percentiles and
 * counter deltas, chunked feeding equal to one pass, times, and a fuzz run over random and truncated lines. */
#include "ndtest.h"
#include "nd_kmslog.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>

#define MIXED ND_SOURCE_DIR "/tests/data/kmslogs/mixed.log"
#define R1 "7f1c9a52-3b7e-4c1e-9a55-0c1d2e3f4a01"

typedef struct seen {
    int n;
    char ids[32][48];
    int wrapped;
} seen;

static int collect(void *ud, const nd_kmslog_record *r)
{
    seen *s = ud;
    if (s->n < 32)
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s%s", r->is_response ? "<" : ">",
                 r->request_id ? r->request_id : "?");
    s->n++;
    s->wrapped += r->wrapped;
    return 0;
}

static char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

/* Scans mixed.log with filter f; returns the scanner (caller frees) and fills s. */
static nd_kmslog *scan(const nd_kmslog_filter *f, seen *s)
{
    memset(s, 0, sizeof *s);
    nd_kmslog *k = NULL;
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_kmslog_new(f, collect, s, &k, &err), 0);
    if (!k)
        return NULL;
    CHECK_EQ_INT(nd_kmslog_scan_file(k, MIXED, &err), 0);
    return k;
}

static void whole_log_classified(void)
{
    seen s;
    nd_kmslog *k = scan(NULL, &s);
    const nd_kmslog_stats *st = nd_kmslog_stats_of(k);
    CHECK_EQ_INT(st->lines, 17);
    CHECK_EQ_INT(st->blank, 1);
    CHECK_EQ_INT(st->noise, 3);     /* -- Boot --, Started …, -- No entries -- */
    CHECK_EQ_INT(st->other, 1);     /* the startup event */
    CHECK_EQ_INT(st->malformed, 2); /* a truncated line, a wrapped line whose json is cut */
    CHECK_EQ_INT(st->events, 10);
    CHECK_EQ_INT(st->wrapped, 4);
    CHECK_EQ_INT(st->plain, 6);
    CHECK_EQ_INT(st->prefixed, 1);
    CHECK_EQ_INT(st->matched, 10);
    CHECK_EQ_INT(st->matched_requests, 4);
    CHECK_EQ_INT(st->matched_responses, 6);
    CHECK_EQ_INT(st->lines, st->blank + st->noise + st->skipped + st->parsed);
    CHECK_EQ_INT(s.wrapped, 4);

    /* errors by normalised code, first-seen order */
    CHECK_EQ_INT(nd_kmslog_error_codes(k), 3);
    const char *code;
    uint64_t n;
    CHECK_EQ_INT(nd_kmslog_error_at(k, 0, &code, &n), 0);
    CHECK_EQ_STR(code, "upstream_throttled");
    CHECK_EQ_INT(n, 2); /* UpstreamThrottled (wrapped) + upstream_throttled (plain) */
    nd_kmslog_error_at(k, 1, &code, &n);
    CHECK_EQ_STR(code, "timeout");
    CHECK_EQ_INT(n, 1);
    nd_kmslog_error_at(k, 2, &code, &n);
    CHECK_EQ_STR(code, "upstream_access_denied");
    CHECK_EQ_INT(nd_kmslog_error_at(k, 3, &code, &n), -ERANGE);

    /* durations 12 250 300 800 40 5 → sorted 5 12 40 250 300 800; nearest rank = sorted[ceil(p/100*6)-1] */
    double v;
    CHECK_EQ_INT(nd_kmslog_durations(k), 6);
    CHECK_EQ_INT(nd_kmslog_percentile(k, 50, &v), 0);
    CHECK(v == 40);
    nd_kmslog_percentile(k, 33, &v); /* ceil(1.98) = 2 */
    CHECK(v == 12);
    nd_kmslog_percentile(k, 34, &v); /* ceil(2.04) = 3 */
    CHECK(v == 40);
    nd_kmslog_percentile(k, 90, &v); /* ceil(5.4) = 6 */
    CHECK(v == 800);
    nd_kmslog_percentile(k, 100, &v);
    CHECK(v == 800);
    nd_kmslog_percentile(k, 1, &v);
    CHECK(v == 5);
    CHECK_EQ_INT(nd_kmslog_percentile(k, 0, &v), -EINVAL);
    CHECK_EQ_INT(nd_kmslog_percentile(k, 101, &v), -EINVAL);

    /* counters: first snapshot (r1) vs last (r7) */
    size_t nc;
    const nd_kmslog_counter *c = nd_kmslog_counters(k, &nc);
    CHECK_EQ_INT(nc, 8);
    int found = 0;
    for (size_t i = 0; i < nc; i++) {
        if (strcmp(c[i].name, "rate_limited_total") == 0) {
            CHECK(c[i].first == 0 && c[i].last == 5 && c[i].delta == 5 && c[i].monotonic);
            CHECK_EQ_INT(c[i].samples, 6);
            found++;
        }
        if (strcmp(c[i].name, "retries_total") == 0) {
            CHECK(c[i].first == 0 && c[i].last == 7 && c[i].delta == 7);
            found++;
        }
        if (strcmp(c[i].name, "kms_requests_total") == 0) {
            CHECK(c[i].first == 1 && c[i].last == 6 && c[i].delta == 5);
            CHECK_EQ_INT(c[i].resets, 0);
            found++;
        }
    }
    CHECK_EQ_INT(found, 3);

    /* unique kms_request_ids: …01 (twice), …02, …03, …05; r4 has null */
    size_t nid;
    uint64_t dropped;
    const nd_kmslog_id *ids = nd_kmslog_ids(k, &nid, &dropped);
    CHECK_EQ_INT(nid, 4);
    CHECK_EQ_INT(dropped, 0);
    CHECK_EQ_STR(ids[0].kms_request_id, "1b2c3d4e-0000-4000-8000-000000000001");
    CHECK_EQ_STR(ids[0].request_id, R1);
    CHECK_EQ_STR(ids[1].code, "upstream_throttled");
    CHECK_EQ_STR(ids[3].kms_request_id, "1b2c3d4e-0000-4000-8000-000000000005");
    CHECK_EQ_STR(ids[3].code, "upstream_access_denied");
    nd_kmslog_free(k);
}

static void expect(const nd_kmslog_filter *f, const char *const *want)
{
    seen s;
    nd_kmslog *k = scan(f, &s);
    int n = 0;
    while (want[n])
        n++;
    CHECK_EQ_INT(s.n, n);
    for (int i = 0; i < n && i < s.n; i++)
        CHECK_EQ_STR(s.ids[i], want[i]);
    const nd_kmslog_stats *st = nd_kmslog_stats_of(k);
    CHECK_EQ_INT(st->lines, 17);
    CHECK_EQ_INT(st->lines, st->blank + st->noise + st->skipped + st->parsed);
    nd_kmslog_free(k);
}

static void filters(void)
{
    expect(&(nd_kmslog_filter){.request_id = R1}, (const char *[]){">" R1, "<" R1, NULL});
    expect(&(nd_kmslog_filter){.request_id = "r2"}, (const char *[]){">r2", "<r2", NULL}); /* wrapped lines */
    expect(&(nd_kmslog_filter){.request_id = "nope"}, (const char *[]){NULL});
    expect(&(nd_kmslog_filter){.trace_id = "t-2"}, (const char *[]){">r2", "<r2", "<r3", NULL});
    expect(&(nd_kmslog_filter){.op = "Decrypt"}, (const char *[]){">r2", "<r2", ">r4", "<r4", NULL});
    expect(&(nd_kmslog_filter){.op = "generatedatakey"}, (const char *[]){">" R1, "<" R1, ">r7", "<r7", NULL});
    expect(&(nd_kmslog_filter){.errors_only = true}, (const char *[]){"<r2", "<r3", "<r4", "<r5", NULL});
    expect(&(nd_kmslog_filter){.throttled = true}, (const char *[]){"<r2", "<r3", NULL});
    expect(&(nd_kmslog_filter){.code = "UpstreamThrottled"}, (const char *[]){"<r2", "<r3", NULL});
    expect(&(nd_kmslog_filter){.code = "timeout"}, (const char *[]){"<r4", NULL});
    expect(&(nd_kmslog_filter){.code = "upstream_access_denied"}, (const char *[]){"<r5", NULL});
    expect(&(nd_kmslog_filter){.code = "internal"}, (const char *[]){NULL});
    expect(&(nd_kmslog_filter){.errors_only = true, .op = "Decrypt"}, (const char *[]){"<r2", "<r4", NULL});
    expect(&(nd_kmslog_filter){.throttled = true, .trace_id = "t-2"}, (const char *[]){"<r2", "<r3", NULL});
    /* time range: only the wrapped lines carry a timestamp; r7's response (10:00:07.005) is past the end */
    expect(&(nd_kmslog_filter){.has_since = true, .since = 1769508001, .has_until = true, .until = 1769508007},
           (const char *[]){">r2", "<r2", ">r7", NULL});

    seen s;
    nd_kmslog *k = scan(&(nd_kmslog_filter){.has_since = true, .since = 0}, &s);
    CHECK_EQ_INT(nd_kmslog_stats_of(k)->untimed, 6);
    nd_kmslog_free(k);

    /* prefilters did their job: the request-id scan parsed only the two lines holding it */
    k = scan(&(nd_kmslog_filter){.request_id = R1}, &s);
    CHECK_EQ_INT(nd_kmslog_stats_of(k)->parsed, 2);
    nd_kmslog_free(k);
    k = scan(&(nd_kmslog_filter){.throttled = true}, &s);
    CHECK_EQ_INT(nd_kmslog_stats_of(k)->parsed, 2);
    nd_kmslog_free(k);

    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_kmslog_new(&(nd_kmslog_filter){.request_id = ""}, NULL, NULL, &k, &err), -EINVAL);
    CHECK_EQ_INT(nd_kmslog_new(&(nd_kmslog_filter){.throttled = true, .code = "timeout"}, NULL, NULL, &k, &err),
                 -EINVAL);
    CHECK_EQ_INT(nd_kmslog_new(&(nd_kmslog_filter){.has_since = true, .since = 10, .has_until = true, .until = 5},
                               NULL, NULL, &k, &err),
                 -EINVAL);
}

/* The prefilters: the code in both spellings with spaces around ':' and escaped keys, a look-alike key holding the
 * code, a counter named like the code, a numeric error_code; errors-only by the ok:false spellings. */
static void code_prefilter_variants(void)
{
    const char *log =
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"a\",\"ok\":false,\"error_code\" : \"UpstreamThrottled\"}\n"
        "{\"fields\":{\"json\":\"{\\\"event\\\":\\\"kms_proxy_response\\\",\\\"request_id\\\":\\\"b\\\",\\\"ok\\\":false,"
        "\\\"error_code\\\": \\\"upstream_throttled\\\"}\"}}\n"
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"c\",\"ok\":false,\"my_error_code\":\"upstream_throttled\",\"error_code\":\"timeout\"}\n"
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"d\",\"ok\":true,\"error_code\":null,\"metrics\":{\"throttled_total\":3}}\n"
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"e\",\"ok\":false,\"error_code\":7}\n";
    seen s;
    nd_kmslog *k;
    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(nd_kmslog_new(&(nd_kmslog_filter){.throttled = true}, collect, &s, &k, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_feed(k, log, strlen(log), NULL), 0);
    CHECK_EQ_INT(s.n, 2);
    CHECK_EQ_STR(s.ids[0], "<a");
    CHECK_EQ_STR(s.ids[1], "<b");
    CHECK_EQ_INT(nd_kmslog_stats_of(k)->parsed, 2); /* a and b: c (the code under a look-alike key) is rejected unparsed */
    nd_kmslog_free(k);

    memset(&s, 0, sizeof s);
    CHECK_EQ_INT(nd_kmslog_new(&(nd_kmslog_filter){.errors_only = true}, collect, &s, &k, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_feed(k, log, strlen(log), NULL), 0);
    CHECK_EQ_INT(s.n, 4); /* a b c e; d is ok */
    CHECK_EQ_STR(s.ids[2], "<c");
    CHECK_EQ_STR(s.ids[3], "<e");
    nd_kmslog_free(k);
}

static void check_norm(const char *in, const char *want)
{
    char out[64];
    nd_kmslog_normalize_code(in, strlen(in), out, sizeof out);
    CHECK_EQ_STR(out, want);
}

static void normalize_codes(void)
{
    check_norm("UpstreamThrottled", "upstream_throttled");
    check_norm("upstream_throttled", "upstream_throttled");
    check_norm("UpstreamAccessDenied", "upstream_access_denied");
    check_norm("Timeout", "timeout");
    check_norm("InvalidRequest", "invalid_request");
    check_norm("KMSTimeout", "kms_timeout");
    check_norm("HTTP503Error", "http503_error");
    check_norm("circuit-open", "circuit_open");
    check_norm("RATE_LIMITED", "rate_limited");
    check_norm("", "");
    char small[6];
    CHECK_EQ_INT(nd_kmslog_normalize_code("UpstreamThrottled", 17, small, sizeof small), 5);
    CHECK_EQ_STR(small, "upstr");
}

static void times(void)
{
    double t;
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_kmslog_parse_time("2026-01-27T10:00:00Z", 0, &t, &err), 0);
    CHECK(t == 1769508000);
    CHECK_EQ_INT(nd_kmslog_parse_time("2026-01-27 12:00:00.5+02:00", 0, &t, &err), 0);
    CHECK(t == 1769508000.5);
    CHECK_EQ_INT(nd_kmslog_parse_time("2026-01-27", 0, &t, &err), 0);
    CHECK(t == 1769472000);
    CHECK_EQ_INT(nd_kmslog_parse_time("2024-02-29T23:59:59Z", 0, &t, &err), 0);
    CHECK(t == 1709251199);
    CHECK_EQ_INT(nd_kmslog_parse_time("@1769508000", 0, &t, &err), 0);
    CHECK(t == 1769508000);
    CHECK_EQ_INT(nd_kmslog_parse_time("1769508000123", 0, &t, &err), 0); /* milliseconds */
    CHECK(fabs(t - 1769508000.123) < 1e-6);
    CHECK_EQ_INT(nd_kmslog_parse_time("-15m", 1000, &t, &err), 0);
    CHECK(t == 100);
    CHECK_EQ_INT(nd_kmslog_parse_time("-2h", 10000, &t, &err), 0);
    CHECK(t == 2800);
    CHECK_EQ_INT(nd_kmslog_parse_time("now", 42, &t, &err), 0);
    CHECK(t == 42);
    CHECK_EQ_INT(nd_kmslog_parse_time("yesterday", 0, &t, &err), -EINVAL);
    CHECK(strstr(err.msg, "bad time 'yesterday'") != NULL);
    CHECK_EQ_INT(nd_kmslog_parse_time("2026-13-01", 0, &t, &err), -EINVAL);
    CHECK_EQ_INT(nd_kmslog_parse_time("-5x", 0, &t, &err), -EINVAL);

    /* fractions of 1 to 20 digits: the scanner's table of digit weights gives the doubles that repeated division by
     * 10 gives (the reference below), bit for bit */
    double base;
    CHECK_EQ_INT(nd_kmslog_parse_time("2026-01-27T10:00:00Z", 0, &base, &err), 0);
    srand(7);
    for (int i = 0; i < 2000; i++) {
        char s[64], *o = s + snprintf(s, sizeof s, "2026-01-27T10:00:00.");
        int nd = 1 + i % 20;
        double frac = 0, scale = 0.1;
        for (int j = 0; j < nd; j++) {
            int d = rand() % 10;
            *o++ = (char)('0' + d);
            frac += d * scale;
            scale /= 10;
        }
        snprintf(o, 2, "Z");
        CHECK_EQ_INT(nd_kmslog_parse_time(s, 0, &t, &err), 0);
        if (t != base + frac) {
            fprintf(stderr, "%s: %.17g, want %.17g\n", s, t, base + frac);
            CHECK(t == base + frac);
            break;
        }
    }
}

typedef struct sig {
    uint64_t sum;
} sig;

static uint64_t mix_str(uint64_t h, const char *p, size_t n)
{
    if (!p)
        return h * 131 + 7;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h * 131 + n;
}

static uint64_t mix_num(uint64_t h, double v)
{
    char b[64];
    snprintf(b, sizeof b, "%.17g", v);
    return mix_str(h, b, strlen(b));
}

/* A signature of everything a record carries, the event (as jansson reads it) included: the fast reader and
 * jansson must give the same. */
static int sign(void *ud, const nd_kmslog_record *r)
{
    sig *s = ud;
    uint64_t h = s->sum * 31 + r->line_no * 7 + r->line_len + (r->wrapped ? 1 : 0) + (r->prefixed ? 2 : 0);
    size_t jn;
    const char *js = nd_kmslog_record_json(r, &jn);
    h = mix_str(h, js, jn);
    h = mix_str(h, r->event_name, r->event_name ? strlen(r->event_name) : 0);
    h = mix_str(h, r->request_id, r->request_id ? strlen(r->request_id) : 0);
    h = mix_str(h, r->trace_id, r->trace_id ? strlen(r->trace_id) : 0);
    h = mix_str(h, r->op, r->op ? strlen(r->op) : 0);
    h = mix_str(h, r->kms_request_id, r->kms_request_id ? strlen(r->kms_request_id) : 0);
    h = mix_str(h, r->raw_code, r->raw_code ? strlen(r->raw_code) : 0);
    h = mix_str(h, r->code, strlen(r->code));
    h = mix_num(h, r->ok);
    h = mix_num(h, r->duration_ms);
    h = mix_num(h, r->ts);
    const json_t *ev = nd_kmslog_event(r);
    CHECK(ev != NULL);
    char *d = ev ? json_dumps(ev, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    h = mix_str(h, d, d ? strlen(d) : 0);
    free(d);
    s->sum = h;
    return 0;
}

/* A signature of the summary: errors, percentiles, counters, ids. */
static uint64_t summary_sig(nd_kmslog *k)
{
    uint64_t h = 0;
    for (size_t i = 0; i < nd_kmslog_error_codes(k); i++) {
        const char *code;
        uint64_t n;
        nd_kmslog_error_at(k, i, &code, &n);
        h = mix_num(mix_str(h, code, strlen(code)), (double)n);
    }
    static const double ps[] = {1e-9, 50, 90, 99, 100};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double v = -1;
        nd_kmslog_percentile(k, ps[i], &v);
        h = mix_num(h, v);
    }
    size_t nc, ni;
    const nd_kmslog_counter *c = nd_kmslog_counters(k, &nc);
    for (size_t i = 0; i < nc; i++) {
        h = mix_str(h, c[i].name, strlen(c[i].name));
        h = mix_num(mix_num(mix_num(h, c[i].first), c[i].last), c[i].delta);
    }
    uint64_t dropped;
    const nd_kmslog_id *ids = nd_kmslog_ids(k, &ni, &dropped);
    for (size_t i = 0; i < ni; i++) {
        h = mix_str(h, ids[i].kms_request_id, strlen(ids[i].kms_request_id));
        h = mix_str(h, ids[i].request_id, ids[i].request_id ? strlen(ids[i].request_id) : 0);
        h = mix_str(h, ids[i].code, strlen(ids[i].code));
        h = mix_str(h, ids[i].attestation_pcr0, strlen(ids[i].attestation_pcr0));
        h = mix_str(h, ids[i].attestation_module_id, strlen(ids[i].attestation_module_id));
        h = mix_num(h, ids[i].ts);
    }
    for (size_t i = 0; i < nc; i++)
        h = mix_num(mix_num(mix_num(mix_num(h, c[i].min), c[i].max), (double)c[i].samples), (double)c[i].resets);
    return mix_num(h, (double)dropped);
}

/* Feeds buf in chunks of random sizes; returns the stats and a signature of the records. */
static void feed_chunked(const char *buf, size_t n, const nd_kmslog_filter *f, unsigned seed, nd_kmslog_stats *st,
                         uint64_t *sigsum, size_t maxchunk)
{
    sig s = {0};
    nd_kmslog *k;
    CHECK_EQ_INT(nd_kmslog_new(f, sign, &s, &k, NULL), 0);
    srand(seed);
    size_t off = 0;
    while (off < n) {
        size_t c = maxchunk ? 1 + (size_t)rand() % maxchunk : n - off;
        if (c > n - off)
            c = n - off;
        CHECK_EQ_INT(nd_kmslog_feed(k, buf + off, c, NULL), 0);
        off += c;
    }
    CHECK_EQ_INT(nd_kmslog_finish(k, NULL), 0);
    *st = *nd_kmslog_stats_of(k);
    *sigsum = s.sum * 31 + summary_sig(k);
    nd_kmslog_free(k);
}

static void chunked_equals_whole(void)
{
    size_t n;
    char *buf = read_all(MIXED, &n);
    CHECK(buf != NULL);
    if (!buf)
        return;
    nd_kmslog_filter fs[] = {{0}, {.errors_only = true}, {.throttled = true}, {.request_id = "r2"}, {.op = "Decrypt"}};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        nd_kmslog_stats a, b;
        uint64_t sa, sb;
        feed_chunked(buf, n, &fs[i], 1, &a, &sa, 0);
        for (unsigned seed = 1; seed < 20; seed++) {
            feed_chunked(buf, n, &fs[i], seed, &b, &sb, seed % 2 ? 7 : 300);
            CHECK(memcmp(&a, &b, sizeof a) == 0);
            CHECK(sa == sb);
        }
        nd_kmslog_filter slow = fs[i];
        slow.no_fast = true;
        feed_chunked(buf, n, &slow, 1, &b, &sb, 0);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
        CHECK(sa == sb);
    }
    /* no final newline: the last line still counts, via finish */
    nd_kmslog_stats st;
    uint64_t ss;
    feed_chunked(buf, n - 1, NULL, 3, &st, &ss, 0);
    CHECK_EQ_INT(st.lines, 17);
    free(buf);
}

static int stop_after_one(void *ud, const nd_kmslog_record *r)
{
    (void)r;
    return ++*(int *)ud >= 1 ? -ECANCELED : 0;
}

static void callback_stops_and_files(void)
{
    int count = 0;
    nd_kmslog *k;
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_kmslog_new(NULL, stop_after_one, &count, &k, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_scan_file(k, MIXED, &err), -ECANCELED);
    CHECK_EQ_INT(count, 1);
    CHECK_EQ_INT(nd_kmslog_scan_file(k, "/nonexistent/kms.log", &err), -ENOENT);
    CHECK_EQ_STR(err.msg, "/nonexistent/kms.log: No such file or directory");
    CHECK_EQ_INT(nd_kmslog_scan_file(k, ND_SOURCE_DIR "/tests", &err), -EISDIR);
    nd_kmslog_free(k);
}

static void fuzz(void)
{
    size_t n;
    char *src = read_all(MIXED, &n);
    CHECK(src != NULL);
    if (!src)
        return;
    /* Collect the fixture's lines. */
    char *lines[32];
    size_t lens[32], nl = 0;
    for (char *p = src; p < src + n && nl < 32;) {
        char *e = memchr(p, '\n', (size_t)(src + n - p));
        if (!e)
            e = src + n;
        lines[nl] = p;
        lens[nl++] = (size_t)(e - p);
        p = e + 1;
    }
    srand(12345);
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    const nd_kmslog_filter fs[] = {{0}, {.errors_only = true}, {.throttled = true}, {.request_id = "r2"},
                                   {.op = "Decrypt"}, {.has_since = true, .since = 1}};
    for (int round = 0; round < 400; round++) {
        size_t len = 0;
        while (len < cap - 1024) {
            int kind = rand() % 6;
            size_t i = (size_t)rand() % nl;
            size_t l = lens[i];
            if (kind == 0) { /* random bytes, including NUL, quotes and braces */
                l = (size_t)rand() % 200;
                for (size_t j = 0; j < l; j++)
                    buf[len + j] = "{}\"\\:,ab\0\n\r 0123tfn[]"[rand() % 21];
            } else {
                if (kind == 1) /* truncated */
                    l = (size_t)rand() % (l + 1);
                memcpy(buf + len, lines[i], l);
                if (kind == 2 && l) /* one corrupted byte */
                    buf[len + (size_t)rand() % l] = (char)(rand() & 0xff);
            }
            len += l;
            buf[len++] = '\n';
            if (rand() % 50 == 0)
                break;
        }
        const nd_kmslog_filter *f = &fs[round % (int)(sizeof fs / sizeof fs[0])];
        nd_kmslog_stats a, b;
        uint64_t sa, sb;
        feed_chunked(buf, len, f, (unsigned)round, &a, &sa, 0);
        feed_chunked(buf, len, f, (unsigned)round, &b, &sb, 1 + (size_t)round % 97);
        CHECK(memcmp(&a, &b, sizeof a) == 0 && sa == sb);
        /* the fast reader and jansson read every line alike */
        nd_kmslog_filter slow = *f;
        slow.no_fast = true;
        feed_chunked(buf, len, &slow, (unsigned)round, &b, &sb, 0);
        CHECK(memcmp(&a, &b, sizeof a) == 0 && sa == sb);
        CHECK_EQ_INT(a.lines, a.blank + a.noise + a.skipped + a.parsed);
        CHECK(a.parsed >= a.malformed + a.other + a.events);
    }
    free(buf);
    free(src);
}

/* Lines at the edges of JSON that the fast reader must read exactly as jansson (or leave to it). */
static void fast_reader_edges(void)
{
    static const char *const lines[] = {
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"a\\u0062\",\"ok\":false,\"error_code\":\"Timeout\"}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"x\",\"ok\":true,\"duration_ms\":1e400}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"x\",\"ok\":true,\"duration_ms\":1.5e2}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"x\",\"ok\":true} trailing",
        "{\"event\":\"other\",\"event\":\"kms_proxy_request\",\"request_id\":\"d\",\"request_id\":\"e\"}",
        "{\"event\":\"kms_proxy_request\",\"request_id\":\"\xc3\xa9\"}",
        "{\"event\":\"kms_proxy_request\",\"request_id\":\"\xc3\"}",
        "{ \"event\" : \"kms_proxy_request\" , \"request_id\" : \"s\" , \"op\" : \"Decrypt\" }  ",
        "{\"fields\":{\"json\":\"{\\\"event\\\":\\\"kms_proxy_response\\\",\\\"request_id\\\":\\\"w\\\\/1\\\",\\\"ok\\\":false}\"},\"timestamp\":\"2026-01-27T10:00:00Z\"}",
        "{\"fields\":7,\"json\":\"{\\\"event\\\":\\\"kms_proxy_request\\\",\\\"request_id\\\":\\\"t\\\"}\",\"ts\":1769508000123}",
        "{\"fields\":{\"json\":\"[1]\"}}",
        "{\"fields\":{\"json\":\"  {\\\"event\\\":\\\"kms_proxy_request\\\"}  \"},\"fields\":{\"x\":1}}",
        "{\"event\":\"kms_proxy_response\",\"duration_ms\":12345678901234567890,\"ok\":true}",
        "{\"event\":\"kms_proxy_response\",\"duration_ms\":-0.5e-3,\"ok\":null,\"error_code\":\"KMSTimeout\"}",
        "{\"event\":\"kms_proxy_request\",\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"event\":\"kms_proxy_request\",\"request_id\":\"tab\there\"}",
        "{\"\":1,\"event\":\"kms_proxy_request\",\"op\":\"Decrypt\",\"request_id\":\"q\"}",
        "{\"event\":\"kms_proxy_response\",\"duration_ms\":01}",
        "{\"event\":\"kms_proxy_response\",\"duration_ms\":1.}",
        "{\"event\":\"kms_proxy_response\",\"ok\":tru}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a\\\"b_total\":1,\"x\":{\"y\":1},\"c_total\":2.5,\"s\":\"v\"}}",
        "{\"ev\\u0065nt\":\"kms_proxy_request\",\"request_id\":\"u\"}",
        "{\"ev\\/ent\":\"kms_proxy_request\",\"request_id\":\"u\"}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":false,\"time\":\"2026-01-27 10:00:00.5+02:00\",\"timestamp\":null}",
        "Jan 27 10:00:00 host kms_proxy_host[1]: {\"event\":\"kms_proxy_response\",\"request_id\":\"s\",\"ok\":true,\"duration_ms\":3}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"s\",\"ok\":true,\"duration_ms\":3,}",
        "{\"event\":\"kms_proxy_response\",\"request_id\":\"s\" \"ok\":true}",
        "{\"event\":\"kms_proxy_\\nresponse\",\"request_id\":\"s\"}",
    };
    const nd_kmslog_filter fs[] = {{0}, {.errors_only = true}, {.op = "Decrypt"}, {.has_since = true, .since = 1}};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        for (size_t j = 0; j < sizeof fs / sizeof fs[0]; j++) {
            char buf[1024];
            size_t len = (size_t)snprintf(buf, sizeof buf, "%s\n%s\n", lines[i], lines[(i + 1) % (sizeof lines / sizeof lines[0])]);
            nd_kmslog_stats a, b;
            uint64_t sa, sb;
            nd_kmslog_filter slow = fs[j];
            slow.no_fast = true;
            feed_chunked(buf, len, &fs[j], 1, &a, &sa, 0);
            feed_chunked(buf, len, &slow, 1, &b, &sb, 0);
            if (memcmp(&a, &b, sizeof a) != 0 || sa != sb)
                fprintf(stderr, "fast and jansson differ on line %zu, filter %zu: %s\n", i, j, lines[i]);
            CHECK(memcmp(&a, &b, sizeof a) == 0 && sa == sb);
        }
    }
}

/* Repeated keys (issue 13: rejected, or the last one wins and the first is freed): a log line that repeats a key
 * reads the same through the kept line shapes, the strict reader, jansson and nd_kmslog_event's lazy parse — the
 * last value, as in jansson and Python's json. (Leaks of the first value would show under ASan.) */
typedef struct dupseen {
    int n;
    char rid[8], op[16], ev_rid[8], ev_op[16];
} dupseen;

static int dup_cb(void *ud, const nd_kmslog_record *r)
{
    dupseen *d = ud;
    d->n++;
    snprintf(d->rid, sizeof d->rid, "%s", r->request_id ? r->request_id : "-");
    snprintf(d->op, sizeof d->op, "%s", r->op ? r->op : "-");
    const json_t *ev = nd_kmslog_event(r);
    const char *er = json_string_value(json_object_get(ev, "request_id"));
    const char *eo = json_string_value(json_object_get(ev, "op"));
    snprintf(d->ev_rid, sizeof d->ev_rid, "%s", er ? er : "-");
    snprintf(d->ev_op, sizeof d->ev_op, "%s", eo ? eo : "-");
    return 0;
}

static void repeated_keys_last_wins(void)
{
    static const char *const lines[] = {
        "{\"event\":\"kms_proxy_request\",\"request_id\":\"a\",\"op\":\"Decrypt\",\"request_id\":\"b\",\"op\":\"Encrypt\"}\n",
        "{\"fields\":{\"json\":\"{\\\"event\\\":\\\"kms_proxy_request\\\",\\\"request_id\\\":\\\"a\\\",\\\"op\\\":"
        "\\\"Decrypt\\\",\\\"request_id\\\":\\\"b\\\",\\\"op\\\":\\\"Encrypt\\\"}\"}}\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        for (int mode = 0; mode < 3; mode++) { /* line shapes (the line three times), the strict reader, jansson */
            nd_kmslog_filter f = {0};
            f.no_shapes = mode == 1;
            f.no_fast = mode == 2;
            dupseen d = {0};
            nd_kmslog *k;
            CHECK_EQ_INT(nd_kmslog_new(&f, dup_cb, &d, &k, NULL), 0);
            for (int t = 0; t < 3; t++)
                CHECK_EQ_INT(nd_kmslog_feed(k, lines[i], strlen(lines[i]), NULL), 0);
            CHECK_EQ_INT(nd_kmslog_finish(k, NULL), 0);
            nd_kmslog_free(k);
            CHECK_EQ_INT(d.n, 3);
            CHECK_EQ_STR(d.rid, "b");
            CHECK_EQ_STR(d.op, "Encrypt");
            CHECK_EQ_STR(d.ev_rid, "b");
            CHECK_EQ_STR(d.ev_op, "Encrypt");
        }
    }
}

typedef struct quiet {
    int left;   /* records wanted before ND_KMSLOG_ENOUGH */
    int calls;
} quiet;

static int enough_after(void *ud, const nd_kmslog_record *r)
{
    quiet *q = ud;
    (void)r;
    q->calls++;
    return q->left-- > 0 ? 0 : ND_KMSLOG_ENOUGH;
}

/* Feeds buf with a callback that wants `records` records and then says ND_KMSLOG_ENOUGH (the summary's lazy reading
 * from there on); returns the stats and the summary's signature. */
static void feed_quiet(const char *buf, size_t n, const nd_kmslog_filter *f, int records, nd_kmslog_stats *st,
                       uint64_t *sum)
{
    quiet q = {records, 0};
    nd_kmslog *k;
    CHECK_EQ_INT(nd_kmslog_new(f, enough_after, &q, &k, NULL), 0);
    size_t half = n / 2;
    CHECK_EQ_INT(nd_kmslog_feed(k, buf, half, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_feed(k, buf + half, n - half, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_finish(k, NULL), 0);
    *st = *nd_kmslog_stats_of(k);
    *sum = summary_sig(k);
    /* no call after ND_KMSLOG_ENOUGH */
    CHECK(q.calls == (st->matched < (uint64_t)records + 1 ? (int)st->matched : records + 1));
    nd_kmslog_free(k);
}

/* Reads buf three ways, kept line shapes (the default), the strict reader alone, and jansson alone, under filter f:
 * the stats and the signature of every record and of the summary must be the same; and a summary without records
 * (ND_KMSLOG_ENOUGH at once, or after a few records), whose strings are read lazily, gives the same stats and
 * summary as the strict reader's. */
static void three_readers(const char *buf, size_t len, const nd_kmslog_filter *f, const char *what)
{
    nd_kmslog_stats a, b, c;
    uint64_t sa, sb, sc;
    nd_kmslog_filter strict = *f, slow = *f;
    strict.no_shapes = true;
    slow.no_fast = true;
    feed_chunked(buf, len, f, 1, &a, &sa, 0);
    feed_chunked(buf, len, &strict, 1, &b, &sb, 0);
    feed_chunked(buf, len, &slow, 1, &c, &sc, 0);
    bool same = memcmp(&a, &b, sizeof a) == 0 && sa == sb && memcmp(&a, &c, sizeof a) == 0 && sa == sc;
    if (!same)
        fprintf(stderr, "shapes, strict reader and jansson differ on %s\n", what);
    CHECK(same);
    nd_kmslog *k;
    CHECK_EQ_INT(nd_kmslog_new(&strict, NULL, NULL, &k, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_feed(k, buf, len, NULL), 0);
    CHECK_EQ_INT(nd_kmslog_finish(k, NULL), 0);
    uint64_t want = summary_sig(k);
    nd_kmslog_free(k);
    static const int after[] = {0, 3};
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        nd_kmslog_filter lazy = *f, lazy_strict = strict;
        nd_kmslog_stats d, e;
        uint64_t sd, se;
        feed_quiet(buf, len, &lazy, after[i], &d, &sd);
        feed_quiet(buf, len, &lazy_strict, after[i], &e, &se);
        bool q = memcmp(&a, &d, sizeof a) == 0 && sd == want && memcmp(&a, &e, sizeof a) == 0 && se == want;
        if (!q)
            fprintf(stderr, "the summary without records (after %d) differs on %s\n", after[i], what);
        CHECK(q);
    }
}

/* A shape learnt from the first line of each pair must read the second exactly as the strict reader and jansson do,
 * or leave it to them: values that change type, escapes inside a wrapped json string, odd numbers in metrics. */
static void shape_edges(void)
{
#define W(inner) "{\"timestamp\":\"2026-01-27T10:00:00.5Z\",\"fields\":{\"event\":\"e\",\"json\":\"" inner "\"},\"x\":1}"
#define REQ(id) "{\\\"event\\\":\\\"kms_proxy_request\\\",\\\"request_id\\\":\\\"" id "\\\",\\\"op\\\":\\\"Decrypt\\\"}"
    static const char *const pairs[][2] = {
        {"{\"event\":\"kms_proxy_request\",\"request_id\":\"a\",\"json\":5}",
         "{\"event\":\"kms_proxy_request\",\"request_id\":\"b\",\"json\":\"{\\\"event\\\":\\\"kms_proxy_response\\\"}\"}"},
        {"{\"event\":\"kms_proxy_request\",\"request_id\":\"a\",\"op\":null}",
         "{\"event\":\"kms_proxy_request\",\"request_id\":\"b\\n\\\"c\",\"op\":\"Decrypt\"}"},
        {W(REQ("a")), W(REQ("b\\\\\\\"c"))},
        {W(REQ("a")), W(REQ("b\\\\u0041"))},
        {W(REQ("a")), W("{\\\"event\\\":\\\"kms_proxy_request\\\",\\\"request_id\\\":\\\"b\\\",\\\"op\\\":\\\"Decrypt\\\"}  ")},
        {W(REQ("a")), "{\"timestamp\":\"2026-01-27T10:00:00.5Z\",\"fields\":{\"event\":\"e\",\"json\":\"{\\\"event\\\":\\\"kms_proxy_request\\\",\\\"request_id\\\":\\\"b\\\",\\\"op\\\":\\\"Decrypt\\\"}\"},\"x\":1,\"json\":\"{}\"}"},
        {W(REQ("a")), "{\"timestamp\":\"2026-01-27T10:00:00.5Z\",\"fields\":{\"event\":\"e\",\"json\":\"{\\/\\\"event\\\":1}\"},\"x\":1}"},
        {W(REQ("a")), "{\"timestamp\":\"2026-01-27T10:00:01,25+02:00\",\"fields\":{\"event\":\"e\",\"json\":\"" REQ("c") "\"},\"x\":1}"},
        {W(REQ("a")), "{\"timestamp\":\"2026-01-27T10:00:00.5Zjunk\",\"fields\":{\"event\":\"e\",\"json\":\"" REQ("c") "\"},\"x\":1}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":01,\"b\":2}}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":-1.5e3,\"b\":\"x\"}}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1234567890123456789,\"b\":2}}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":12345678901234567,\"b\":null}}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}} x"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"metrics\":{\"a_total\":1,\"b\":2}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"duration_ms\":3}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":tru,\"duration_ms\":3}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"duration_ms\":3}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":\"true\",\"duration_ms\":[3]}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"duration_ms\":3}",
         "{\"event\":\"kms_proxy_responsf\",\"request_id\":\"q\",\"ok\":true,\"duration_ms\":3}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"ok\":true,\"duration_ms\":3}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\xc3\xa9\",\"ok\":true,\"duration_ms\":3}"},
        {"{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"request_id\":\"r\",\"ok\":true}",
         "{\"event\":\"kms_proxy_response\",\"request_id\":\"q\",\"request_id\":\"s\",\"ok\":true}"},
    };
#undef W
#undef REQ
    const nd_kmslog_filter fs[] = {{0}, {.errors_only = true}, {.op = "Decrypt"}, {.has_since = true, .since = 1}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char buf[4096], what[64];
        /* the first line three times (a shape), then the probe, then the first again */
        size_t len = (size_t)snprintf(buf, sizeof buf, "%s\n%s\n%s\n%s\n%s\n", pairs[i][0], pairs[i][0], pairs[i][0],
                                      pairs[i][1], pairs[i][0]);
        for (size_t j = 0; j < sizeof fs / sizeof fs[0]; j++) {
            snprintf(what, sizeof what, "pair %zu, filter %zu", i, j);
            three_readers(buf, len, &fs[j], what);
        }
    }
}

/* The benchmark's generated log (bench/kmslogs/gen.py, 4 MB: plain, wrapped and prefixed pairs, noise, decoys):
 * shapes, strict reader and jansson give the same records and summary under every filter. */
static void generated_log(void)
{
    const char *tmp = getenv("ND_TEST_TMP");
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/kmslog-gen.log", tmp && *tmp ? tmp : "/tmp");
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\" && python3 '%s/bench/kmslogs/gen.py' '%s' 4000000 %s > /dev/null",
             path, ND_SOURCE_DIR, path, R1);
    CHECK_EQ_INT(system(cmd), 0);
    size_t n;
    char *buf = read_all(path, &n);
    CHECK(buf != NULL && n > 3000000);
    if (!buf)
        return;
    const nd_kmslog_filter fs[] = {{0}, {.errors_only = true}, {.throttled = true}, {.request_id = R1},
                                   {.op = "Decrypt"}, {.has_since = true, .since = 1769472005.5},
                                   {.max_ids = 7}, {.trace_id = R1}};
    for (size_t j = 0; j < sizeof fs / sizeof fs[0]; j++) {
        char what[64];
        snprintf(what, sizeof what, "the generated log, filter %zu", j);
        three_readers(buf, n, &fs[j], what);
    }
    free(buf);
    unlink(path);
}

int main(void)
{
    ND_RUN(whole_log_classified);
    ND_RUN(filters);
    ND_RUN(code_prefilter_variants);
    ND_RUN(normalize_codes);
    ND_RUN(times);
    ND_RUN(chunked_equals_whole);
    ND_RUN(callback_stops_and_files);
    ND_RUN(fuzz);
    ND_RUN(fast_reader_edges);
    ND_RUN(shape_edges);
    ND_RUN(generated_log);
    ND_RUN(repeated_keys_last_wins);
    return nd_test_summary();
}
