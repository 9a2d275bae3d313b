/*
 * kmslog.c — the KMS proxy log scanner declared in nd_kmslog.h, used by the kms-logs runbook (through nd.kmslog)
 * and by anything else that reads proxy logs (triage/explain).
 *
 * Speed comes from never parsing a line that cannot match. The filter gives a "driver" needle (the request id, the
 * trace id, "error_code" for errors-only and code filters, "kms_proxy_" otherwise) that is searched across the rest
 * of the buffer, as grep does (find_any(): a vector compare of three bytes of each needle in one pass, since glibc's memmem was the
 * bottleneck); only
 * the line holding the next hit becomes a candidate, every other line costs one memchr for its end and one for '{'
 * (to count noise). A candidate must also hold the other needles and pass a structural check (the error_code key
 * really has a qualifying value) before jansson parses it. Prefilters only ever reject lines that cannot match a
 * well-formed event: the exact filters run on the parsed event. The wrapped form is unwrapped by parsing the wrapper
 * and then its `json` string (jansson does the unescaping), so needles without '"' or '\' are found verbatim in
 * both forms. Files are read with read(2) in 1 MiB blocks (see nd_kmslog_scan_file).
 *
 * A candidate is read through a kept line shape when it has one ("shapes" below: literal compares and a check per
 * value), else by the fast reader ("fast extraction": one strict pass, no allocation, whose lines teach the shapes),
 * and by jansson only when that reader is not sure to read it exactly as jansson would. The summary is bounded whatever the log's
 * size: durations exact up to DUR_EXACT then a log histogram, ids up to max_ids in a set of 64-bit hashes, pairing
 * in a ring of PAIR_CAP waiting requests with a PAIR_WINDOW of log time. since= on a plain file may start reading
 * at a binary-searched offset (seek_start). Once the callback wants no more records (ND_KMSLOG_ENOUGH), a record's
 * strings are no longer copied: the summary reads what it needs where it lies in the line (lazy_rec).
 */
#include "nd_kmslog.h"
#include "nd_logline.h"

#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_CODES 256
#define MAX_COUNTERS 64
#define MAX_NEEDLES 5
#define PAIR_CAP 65536u       /* requests waiting for a response at once (1.5 MiB) */
#define PAIR_BUCKETS 16384u    /* 64 KiB of chain heads: stays in cache; chains average 4 when the ring is full */
#define PAIR_WINDOW 60.0      /* seconds a request waits for its response */
#define DUR_EXACT 65536u      /* durations kept exactly (512 KiB); past that a histogram */
#define DUR_ALPHA 0.005       /* the histogram's relative accuracy */
#define DUR_BUCKETS 8192u     /* log buckets of the histogram (64 KiB) */
#define DUR_LOW 1e-6          /* values at or below it share bucket 0 */
#define DUR_MEMO 256u         /* buckets of recent values remembered */

enum { OP_NONE, OP_DECRYPT, OP_GDK, OP_OTHER };

typedef struct needle {
    const char *s;
    size_t n;
} needle;

typedef struct code_count {
    char code[64];
    uint64_t n;
} code_count;

/* The last RFC 3339 time parsed: its first 19 bytes (to the seconds) and their value (see ftime). */
typedef struct tcache {
    char prefix[19];
    bool valid;
    double base;
    char full[40];      /* the last whole time string read in place (full_n bytes, 0 = none) and its value */
    size_t full_n;
    double full_t;
} tcache;

struct nd_kmslog {
    nd_kmslog_filter f;
    char *request_id, *trace_id, *op;
    char code[64];      /* normalised code filter, "" = none */
    nd_kmslog_cb cb;
    void *ud;
    bool quiet;         /* the callback wants no more records (ND_KMSLOG_ENOUGH): summary only, strings lazily */
    bool shape_first;   /* no filter but times: a line a kept template reads as a KMS event skips the search */

    needle drv[MAX_NEEDLES]; /* the driver: a line is a candidate when it holds any of these */
    int ndrv;
    needle and_[MAX_NEEDLES]; /* a candidate must also hold all of these */
    int nand;
    needle okf[4];      /* the spellings of ok:false (plain, escaped, with a space) */
    char code_spell[2][64]; /* the code as snake_case and PascalCase */
    bool errors_check;  /* a candidate must hold one of okf (when they do not drive) */
    bool code_check;    /* a code filter: the line's error_code value must be the code (code_value) */

    /* Request/response pairing, bounded: requests wait in a ring of PAIR_CAP slots (oldest first), hashed by
     * request_id into chains; a response takes its request out. A request leaves unpaired when it is older than
     * PAIR_WINDOW seconds than the newest event or when the ring is full. */
    struct pend *ring;
    uint32_t *bucket;   /* PAIR_BUCKETS chain heads: ring index + 1, 0 = empty */
    uint32_t ring_head, ring_count;
    uint64_t pending, evicted;
    double newest_ts;

    char *arena;        /* the fast reader's strings for one line */
    size_t arena_cap;
    json_t *lazy;       /* the event parsed for nd_kmslog_event during one callback */
    const char *json_esc; /* during one callback: the escaped json string of a shape-matched wrapped line */
    size_t json_esc_len;
    char *json_buf;     /* its unescaped copy, made by nd_kmslog_record_json */
    size_t json_buf_cap;
    struct shape *shapes[8], *inner_shapes[8]; /* line templates (SHAPES per level), most used first */
    int nshapes, ninner_shapes;
    struct shape *shape_tmp; /* where a new template is built */
    struct shape *last_shape[2]; /* the templates that matched last (line; json string) */
    struct fobj *fo;    /* [3]: the line's object, its "fields" and the wrapped event, as last read (process_fast) */
    uint32_t fo_dirty[3]; /* per object: the keys that may be set (a template clears those it does not set) */
    struct tcache tc;   /* the last RFC 3339 time's first 19 bytes and their value */

    char *carry;        /* partial line kept between feeds */
    size_t carry_len, carry_cap;

    nd_kmslog_stats st;
    code_count codes[MAX_CODES];
    size_t ncodes;
    double *durs;       /* exact samples while there are at most DUR_EXACT, then NULL */
    size_t ndurs, durs_cap;
    bool durs_sorted;
    uint64_t *hist;     /* log-bucketed histogram once the exact samples are folded in (DUR_BUCKETS counts) */
    uint64_t dmemo_key[DUR_MEMO]; /* recent values' bits and their buckets (direct-mapped; dmemo_ok: filled) */
    uint16_t dmemo_bucket[DUR_MEMO];
    uint8_t dmemo_ok[DUR_MEMO];
    double dur_min, dur_max;
    nd_kmslog_counter counters[MAX_COUNTERS];
    const char *counter_src[MAX_COUNTERS]; /* the shape's name string last counted under each counter */
    size_t ncounters;
    nd_kmslog_id *ids;
    size_t nids, ids_cap;
    uint64_t ids_dropped;
    uint64_t *id_hash;  /* open-addressing set of the kept ids' hashes (0 = empty), id_hash_cap slots */
    size_t id_hash_cap;
};

struct pend {
    uint64_t h;         /* hash of the request_id */
    double ts;          /* NAN when the request had no time */
    uint32_t next;      /* next in the bucket's chain: ring index + 1, 0 = end */
    uint8_t op;         /* OP_* of the request */
    uint8_t live;       /* still waiting for its response */
};

/* ---- helpers ---------------------------------------------------------------------------------------------------- */

size_t nd_kmslog_normalize_code(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    if (outsz == 0)
        return 0;
    for (size_t i = 0; i < n && o + 1 < outsz; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '-' || c == ' ' || c == '.' || c == ':') {
            if (o > 0 && out[o - 1] != '_')
                out[o++] = '_';
            continue;
        }
        if (isupper(c)) {
            bool prev_lower = i > 0 && (islower((unsigned char)in[i - 1]) || isdigit((unsigned char)in[i - 1]));
            bool acronym_end = i > 0 && isupper((unsigned char)in[i - 1]) && i + 1 < n &&
                               islower((unsigned char)in[i + 1]);
            if ((prev_lower || acronym_end) && o > 0 && out[o - 1] != '_' && o + 2 < outsz)
                out[o++] = '_';
            out[o++] = (char)tolower(c);
        } else {
            out[o++] = (char)c;
        }
    }
    while (o > 0 && out[o - 1] == '_')
        o--;
    out[o] = '\0';
    return o;
}

#define ISDIGIT(c) ((unsigned char)((c) - '0') < 10)

static int days_from_civil(int y, unsigned m, unsigned d)
{
    /* Howard Hinnant's algorithm: days since 1970-01-01 for a proleptic Gregorian date (no timegm/TZ state). */
    y -= m <= 2;
    const int era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int)doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* The fraction and zone after the seconds (or after the minutes / the date: the zone only), to end (the string's
 * end: a NUL there or not; the text holds no NUL before it). Returns 0 or -1. */
static int rfc3339_tail(const char *p, const char *end, bool secs, double *frac, int *off)
{
#define AT(q) ((q) < end ? *(q) : '\0')
    *frac = 0;
    *off = 0;
    if (secs && (AT(p) == '.' || AT(p) == ',')) {
        p++;
        /* the i-th digit's weight is 0.1 divided by 10 i times, rounded each time: those doubles, without the
         * divisions' latency (tests/unit/test_kmslog.c checks them against the divisions) */
        static const double w[12] = {0x1.999999999999ap-4,  0x1.47ae147ae147bp-7,  0x1.0624dd2f1a9fcp-10,
                                     0x1.a36e2eb1c432dp-14, 0x1.4f8b588e368f1p-17, 0x1.0c6f7a0b5ed8ep-20,
                                     0x1.ad7f29abcaf4ap-24, 0x1.5798ee2308c3bp-27, 0x1.12e0be826d696p-30,
                                     0x1.b7cdfd9d7bdbdp-34, 0x1.5fd7fe1796497p-37, 0x1.19799812dea12p-40};
        double scale = w[11] / 10;
        if (!ISDIGIT(AT(p)))
            return -1;
        for (int i = 0; ISDIGIT(AT(p)); i++, p++) {
            if (i < 12) {
                *frac += (*p - '0') * w[i];
            } else {
                *frac += (*p - '0') * scale;
                scale /= 10;
            }
        }
    }
    if (AT(p) == 'Z' || AT(p) == 'z') {
        p++;
    } else if (AT(p) == '+' || AT(p) == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (end - p < 2 || digits(&p, 2, &oh))
            return -1;
        if (AT(p) == ':')
            p++;
        if (ISDIGIT(AT(p)) && (end - p < 2 || digits(&p, 2, &om)))
            return -1;
        *off = sign * (oh * 3600 + om * 60);
    }
    return p < end ? -1 : 0;
#undef AT
}

/* RFC 3339 (and the date-only / space-separated / no-zone variants). Returns 0 or -1. When base is not NULL and the
 * string has seconds, *base gets the time of its first 19 bytes (YYYY-MM-DDTHH:MM:SS), so that a later string with
 * the same 19 bytes needs only rfc3339_tail: base + frac - off is the same double either way. */
static int parse_rfc3339_base(const char *s, double *out, double *base)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    bool secs = false;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return -1;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return -1;
            secs = true;
        }
        if (h > 23 || mi > 59 || sec > 60)
            return -1;
    }
    double frac;
    int off;
    if (rfc3339_tail(p, p + strlen(p), secs, &frac, &off) < 0)
        return -1;
    double days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    double b = days * 86400.0 + h * 3600 + mi * 60 + sec;
    if (base && secs && p - s == 19)
        *base = b;
    *out = b + frac - off;
    return 0;
}

static int parse_rfc3339(const char *s, double *out)
{
    return parse_rfc3339_base(s, out, NULL);
}

int nd_kmslog_parse_time(const char *s, double now, double *out, nd_err *err)
{
    if (!s || !*s)
        return nd_err_set(err, -EINVAL, "empty time");
    if (strcmp(s, "now") == 0) {
        *out = now;
        return 0;
    }
    char *end;
    if (s[0] == '-' && isdigit((unsigned char)s[1])) {
        double v = strtod(s + 1, &end);
        double mult = 1;
        if (*end == 's')
            end++;
        else if (*end == 'm')
            mult = 60, end++;
        else if (*end == 'h')
            mult = 3600, end++;
        else if (*end == 'd')
            mult = 86400, end++;
        if (*end == '\0' && isfinite(v)) {
            *out = now - v * mult;
            return 0;
        }
        return nd_err_set(err, -EINVAL, "bad relative time '%s' (use -30s, -15m, -2h or -1d)", s);
    }
    const char *num = s[0] == '@' ? s + 1 : s;
    if (isdigit((unsigned char)num[0])) {
        double v = strtod(num, &end);
        if (*end == '\0' && isfinite(v)) {
            *out = v > 1e12 ? v / 1000.0 : v; /* milliseconds since the epoch */
            return 0;
        }
    }
    if (parse_rfc3339(s, out) == 0)
        return 0;
    return nd_err_set(err, -EINVAL,
                      "bad time '%s' (use RFC 3339 like 2026-01-27T10:00:00Z, epoch seconds, or -15m / -2h / -1d)", s);
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static double jnum(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static double json_time(const json_t *v)
{
    double t;
    if (json_is_number(v)) {
        t = json_number_value(v);
        return t > 1e12 ? t / 1000.0 : t;
    }
    if (json_is_string(v) && parse_rfc3339(json_string_value(v), &t) == 0)
        return t;
    return NAN;
}

static double event_time(const json_t *o)
{
    static const char *keys[] = {"timestamp", "ts", "time", "@timestamp"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *v = json_object_get(o, keys[i]);
        if (v)
            return json_time(v);
    }
    return NAN;
}

/* ---- prefilters ------------------------------------------------------------------------------------------------- */

/* Prepares a needle for find_any(). */
static void needle_init(needle *nd, const char *s, size_t n)
{
    nd->s = s;
    nd->n = n;
}

/* Searching: glibc's memmem (a generic two-way search) measured at about 2 GB/s here, a third of grep's speed on a
 * 36-character request id, and Boyer–Moore–Horspool skips little in hex-heavy log text. find_any compares each
 * needle's first, middle and last bytes at 16 positions at once (GCC/Clang vector extensions, SSE2 on x86-64) and
 * runs memcmp only where all three match ("ok":false starts and ends with bytes too common in JSON for two to be
 * enough); several needles (both spellings of a code) are looked for in the same pass over memory. */
typedef unsigned char nd_v16 __attribute__((vector_size(16)));

/* The first occurrence of any of the nn needles in [p, end), or NULL: one pass over the memory whatever nn is. */
static const char *find_any(const needle *nds, int nn, const char *p, const char *end)
{
    size_t maxn = 0;
    bool vec = true;
    for (int j = 0; j < nn; j++) {
        if (nds[j].n > maxn)
            maxn = nds[j].n;
        if (nds[j].n < 2)
            vec = false;
    }
    const unsigned char *h = (const unsigned char *)p;
    if (vec && (size_t)(end - p) >= maxn + 16) {
        const unsigned char *stop = (const unsigned char *)end - maxn - 15; /* h + 15 + n - 1 < end for every n */
        nd_v16 first[MAX_NEEDLES], middle[MAX_NEEDLES], last[MAX_NEEDLES];
        for (int j = 0; j < nn; j++) {
            memset(&first[j], (unsigned char)nds[j].s[0], sizeof first[j]);
            memset(&middle[j], (unsigned char)nds[j].s[nds[j].n / 2], sizeof middle[j]);
            memset(&last[j], (unsigned char)nds[j].s[nds[j].n - 1], sizeof last[j]);
        }
        for (; h <= stop; h += 16) {
            nd_v16 a, m[MAX_NEEDLES], any;
            memcpy(&a, h, 16);
            memset(&any, 0, sizeof any);
            for (int j = 0; j < nn; j++) {
                nd_v16 b, c;
                memcpy(&b, h + nds[j].n - 1, 16);
                memcpy(&c, h + nds[j].n / 2, 16);
                m[j] = (nd_v16)(a == first[j]) & (nd_v16)(b == last[j]) & (nd_v16)(c == middle[j]);
                any |= m[j];
            }
            uint64_t w[2];
            memcpy(w, &any, 16);
            for (int half = 0; half < 2; half++) {
                while (w[half]) { /* the candidate positions, lowest first */
                    int bit = __builtin_ctzll(w[half]);
                    int i = half * 8 + bit / 8;
                    w[half] &= ~(0xffull << (bit & ~7));
                    for (int j = 0; j < nn; j++)
                        if (m[j][i] && memcmp(h + i, nds[j].s, nds[j].n) == 0)
                            return (const char *)h + i;
                }
            }
        }
    }
    /* The tail (or needles too short for the vector compare): the earliest memmem hit. */
    const char *best = NULL;
    for (int j = 0; j < nn; j++) {
        const char *x = memmem(h, (size_t)(end - (const char *)h), nds[j].s, nds[j].n);
        if (x && (!best || x < best))
            best = x;
    }
    return best;
}

/* What the error_code value after an occurrence of `error_code` at h says about the line. */
enum { CV_NOT_KEY, CV_NULL, CV_MATCH, CV_OTHER, CV_UNSURE };

static int code_value(const nd_kmslog *k, const char *h, const char *end)
{
    const char *p = h + 10;
    if (p < end && *p == '\\')
        p++;
    if (p >= end || *p != '"')
        return CV_NOT_KEY;
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= end || *p != ':')
        return CV_NOT_KEY;
    p++;
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    if (end - p >= 4 && memcmp(p, "null", 4) == 0)
        return CV_NULL;
    if (p < end && *p == '\\')
        p++;
    if (p >= end || *p != '"')
        return CV_UNSURE; /* not a string: let the parser decide */
    p++;
    if (!k->code[0])
        return CV_MATCH; /* errors-only: any code */
    const char *v = p;
    while (p < end && *p != '"' && *p != '\\' && p - v < 63)
        p++;
    char norm[64];
    nd_kmslog_normalize_code(v, (size_t)(p - v), norm, sizeof norm);
    return strcmp(norm, k->code) == 0 ? CV_MATCH : CV_OTHER;
}

/* true when the line may hold a qualifying error_code: some occurrence is the key with a matching value, or one the
 * quick look cannot judge. */
static bool code_ok(const nd_kmslog *k, const char *line, size_t len)
{
    const char *p = line, *end = line + len;
    while (p < end) {
        const char *h = memmem(p, (size_t)(end - p), ND_LOG_ERROR_CODE, sizeof ND_LOG_ERROR_CODE - 1);
        if (!h)
            return false;
        bool keystart = h > line && (h[-1] == '"' || h[-1] == '\\');
        if (keystart) {
            int cv = code_value(k, h, end);
            if (cv == CV_MATCH || cv == CV_UNSURE)
                return true;
        }
        p = h + 10;
    }
    return false;
}

/* ---- fast extraction -------------------------------------------------------------------------------------------- */

/* A strict, allocation-free reader for the flat objects the proxies log. It validates the JSON grammar as it goes
 * and records the spans of the fields the summary needs; anything it is not sure to read exactly as jansson would
 * (a \u escape, a non-ASCII byte, a key with an escape, deep nesting, an integer too large for jansson, trailing
 * bytes) makes it give up, and the line goes to jansson instead. So a line is read the same either way, and the
 * common line is read about ten times faster (one pass, no tree, no allocation). */
enum { FT_NONE, FT_STR, FT_NUM, FT_TRUE, FT_FALSE, FT_NULL, FT_OBJ, FT_ARR };

/* true, false or null at p (before end): its FT_ type with its length in *n, or FT_NONE. */
static inline unsigned char fliteral(const char *p, const char *end, size_t *n)
{
    size_t left = (size_t)(end - p);
    if (left >= 4 && memcmp(p, "true", 4) == 0)
        return *n = 4, FT_TRUE;
    if (left >= 5 && memcmp(p, "false", 5) == 0)
        return *n = 5, FT_FALSE;
    if (left >= 4 && memcmp(p, "null", 4) == 0)
        return *n = 4, FT_NULL;
    return FT_NONE;
}
enum { FK_EVENT, FK_REQUEST_ID, FK_TRACE_ID, FK_OP, FK_KMS_REQUEST_ID, FK_ERROR_CODE, FK_OK, FK_DURATION,
       FK_TIMESTAMP, FK_TS, FK_TIME, FK_ATTS, FK_METRICS, FK_FIELDS, FK_JSON, FK_ATT_PCR0, FK_ATT_MODULE, FK_COUNT };
#define FK_ALL ((1u << FK_COUNT) - 1)

typedef struct fval {
    const char *p; /* string: its content between the quotes; others: the value's text */
    size_t n;
    unsigned char t;
    bool esc;      /* a string holding backslash escapes (none of them \u) */
} fval;

typedef struct fobj {
    fval v[FK_COUNT];
} fobj;

static int fast_key(const char *p, size_t n)
{
#define FK_IS(s, k) if (n == sizeof(s) - 1 && memcmp(p, s, n) == 0) return k
    switch (n) {
    case 2: FK_IS(ND_LOG_TS, FK_TS); FK_IS(ND_LOG_OP, FK_OP); break;
    case 4: FK_IS("time", FK_TIME); FK_IS("json", FK_JSON); break;
    case 5: FK_IS(ND_LOG_EVENT, FK_EVENT); break;
    case 6: FK_IS("fields", FK_FIELDS); break;
    case 7: FK_IS(ND_LOG_METRICS, FK_METRICS); break;
    case 8: FK_IS(ND_LOG_TRACE_ID, FK_TRACE_ID); break;
    case 9: FK_IS("timestamp", FK_TIMESTAMP); break;
    case 10: FK_IS(ND_LOG_REQUEST_ID, FK_REQUEST_ID); FK_IS(ND_LOG_ERROR_CODE, FK_ERROR_CODE); FK_IS("@timestamp", FK_ATTS); break;
    case 11: FK_IS(ND_LOG_DURATION_MS, FK_DURATION); break;
    case 14: FK_IS(ND_LOG_KMS_REQUEST_ID, FK_KMS_REQUEST_ID); break;
    case 16: FK_IS(ND_LOG_ATTESTATION_PCR0, FK_ATT_PCR0); break;
    case 21: FK_IS(ND_LOG_ATTESTATION_MODULE_ID, FK_ATT_MODULE); break;
    default: break;
    }
    if (n == 2 && p[0] == 'o' && p[1] == 'k')
        return FK_OK;
#undef FK_IS
    return -1;
}

static const char *fws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* The first '"', '\\', control or non-ASCII byte in [p, end), or end: 16 bytes at a time. */
static inline const char *fspecial(const char *p, const char *end)
{
#if defined(__SSE2__)
    /* SSE2 (every x86-64): a signed compare below 0x20 catches controls and non-ASCII bytes at once */
    const __m128i vq = _mm_set1_epi8('"'), vbs = _mm_set1_epi8('\\'), vsp = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i hit = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(a, vq), _mm_cmpeq_epi8(a, vbs)), _mm_cmplt_epi8(a, vsp));
        int m = _mm_movemask_epi8(hit);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (end - p >= 16) {
        nd_v16 a;
        memcpy(&a, p, 16);
        nd_v16 q = {0};
        q += '"';
        nd_v16 b = {0};
        b += '\\';
        nd_v16 lo = {0};
        lo += 0x20;
        nd_v16 span = {0};
        span += 0x5f;
        nd_v16 hit = (nd_v16)(a == q) | (nd_v16)(a == b) | (nd_v16)((nd_v16)(a - lo) > span);
        uint64_t w[2];
        memcpy(w, &hit, 16);
        if (w[0] | w[1])
            return p + (w[0] ? __builtin_ctzll(w[0]) / 8 : 8 + __builtin_ctzll(w[1]) / 8);
        p += 16;
    }
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            return p;
        p++;
    }
    return end;
}

/* p is just after the opening quote. Returns the position of the closing quote, or NULL (give up). */
static const char *fstring(const char *p, const char *end, bool *esc)
{
    *esc = false;
    for (;;) {
        p = fspecial(p, end);
        if (p >= end)
            return NULL;
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p;
        if (c == '\\') {
            if (p + 1 >= end)
                return NULL;
            char e = p[1];
            if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't'))
                return NULL; /* \u (surrogates, NUL) or invalid: jansson decides */
            *esc = true;
            p += 2;
            continue;
        }
        if (c < 0x20 || c >= 0x80)
            return NULL;
        p++;
    }
}

/* A JSON number at p. Returns its end, or NULL. */
static const char *fnumber(const char *p, const char *end)
{
    const char *s = p;
    if (p < end && *p == '-')
        p++;
    if (p >= end || !ISDIGIT(*p))
        return NULL;
    if (*p == '0')
        p++;
    else
        while (p < end && ISDIGIT(*p))
            p++;
    bool integer = true;
    if (p < end && *p == '.') {
        integer = false;
        p++;
        if (p >= end || !ISDIGIT(*p))
            return NULL;
        while (p < end && ISDIGIT(*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *e = p;
        if (p >= end || !ISDIGIT(*p))
            return NULL;
        while (p < end && ISDIGIT(*p))
            p++;
        if (p - e > 2)
            return NULL; /* may overflow, which jansson rejects */
    }
    if ((integer && p - s > 18) || p - s > 40)
        return NULL; /* may not fit jansson's json_int_t, or overflow a double */
    return p;
}

static const char *fobject(const char *p, const char *end, fobj *o, fobj *sub, int depth);

/* Any value at p (after whitespace). Fills *v when v is not NULL. Returns the end, or NULL. */
static const char *fvalue(const char *p, const char *end, fval *v, fobj *sub, int depth)
{
    if (p >= end)
        return NULL;
    const char *s = p;
    unsigned char t;
    bool esc = false;
    switch (*p) {
    case '"': {
        const char *q = fstring(p + 1, end, &esc);
        if (!q)
            return NULL;
        if (v) {
            v->p = p + 1;
            v->n = (size_t)(q - p - 1);
            v->t = FT_STR;
            v->esc = esc;
        }
        return q + 1;
    }
    case '{':
        if (depth >= 32)
            return NULL;
        p = fobject(p, end, sub, NULL, depth + 1);
        t = FT_OBJ;
        break;
    case '[':
        if (depth >= 32)
            return NULL;
        p = fws(p + 1, end);
        if (p < end && *p == ']') {
            p++;
        } else {
            for (;;) {
                p = fvalue(p, end, NULL, NULL, depth + 1);
                if (!p)
                    return NULL;
                p = fws(p, end);
                if (p < end && *p == ',') {
                    p = fws(p + 1, end);
                    continue;
                }
                if (p < end && *p == ']') {
                    p++;
                    break;
                }
                return NULL;
            }
        }
        t = FT_ARR;
        break;
    case 't':
    case 'f':
    case 'n': {
        size_t n;
        if ((t = fliteral(p, end, &n)) == FT_NONE)
            return NULL;
        p += n;
        break;
    }
    default:
        p = fnumber(p, end);
        t = FT_NUM;
        break;
    }
    if (p && v) {
        v->p = s;
        v->n = (size_t)(p - s);
        v->t = t;
        v->esc = false;
    }
    return p;
}

/* An object at p ('{'). Known keys are recorded in o (when not NULL; a later duplicate wins, as in jansson); the
 * value of "fields" is read into sub (when not NULL). Returns the end, or NULL. */
static const char *fobject(const char *p, const char *end, fobj *o, fobj *sub, int depth)
{
    p = fws(p + 1, end);
    if (p < end && *p == '}')
        return p + 1;
    for (;;) {
        if (p >= end || *p != '"')
            return NULL;
        bool esc;
        const char *q = fstring(p + 1, end, &esc);
        if (!q)
            return NULL;
        int key = -1;
        if (o) {
            if (esc)
                return NULL; /* an escaped key might spell a known one */
            key = fast_key(p + 1, (size_t)(q - p - 1));
        }
        p = fws(q + 1, end);
        if (p >= end || *p != ':')
            return NULL;
        p = fws(p + 1, end);
        fval tmp;
        if (key == FK_FIELDS && sub && p < end && *p == '{')
            memset(sub, 0, sizeof *sub);
        p = fvalue(p, end, key >= 0 ? &o->v[key] : &tmp, key == FK_FIELDS ? sub : NULL, depth);
        if (!p)
            return NULL;
        if (key == FK_FIELDS && sub && o->v[key].t != FT_OBJ)
            memset(sub, 0, sizeof *sub); /* a later non-object "fields" replaces an earlier object */
        p = fws(p, end);
        if (p < end && *p == ',') {
            p = fws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}')
            return p + 1;
        return NULL;
    }
}

/* Copies a string value into the arena, NUL-terminated, undoing the escapes fstring accepted. Returns the copy, or
 * NULL when the arena is full. */
static char *fcopy(char **arena, const char *aend, const fval *v, size_t *len)
{
    char *out = *arena;
    if ((size_t)(aend - out) < v->n + 1)
        return NULL;
    char *o = out;
    if (!v->esc) {
        memcpy(o, v->p, v->n);
        o += v->n;
    } else {
        const char *p = v->p, *e = v->p + v->n;
        while (p < e) {
            const char *bs = memchr(p, '\\', (size_t)(e - p));
            size_t run = (size_t)((bs ? bs : e) - p);
            memcpy(o, p, run); /* the run up to the next escape */
            o += run;
            if (!bs)
                break;
            switch (bs[1]) {
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            default: *o++ = bs[1]; break; /* " \ / */
            }
            p = bs + 2;
        }
    }
    *o = '\0';
    if (len)
        *len = (size_t)(o - out);
    *arena = o + 1;
    return out;
}

/* A number value (fnumber-validated text). */
static double fnum(const fval *v)
{
    const char *p = v->p, *e = v->p + v->n;
    bool neg = *p == '-';
    if (neg)
        p++;
    uint64_t x = 0;
    const char *q = p;
    while (q < e && ISDIGIT(*q))
        x = x * 10 + (uint64_t)(*q++ - '0');
    if (q == e && q - p <= 15)
        return neg ? -(double)x : (double)x;
    char buf[64];
    if (v->n >= sizeof buf)
        return NAN;
    memcpy(buf, v->p, v->n);
    buf[v->n] = '\0';
    return strtod(buf, NULL);
}

/* The time of a timestamp/ts/time/@timestamp value, as json_time does. A string sharing its first 19 bytes (up to
 * the seconds) with the last one parsed reuses that part (tc: the cache, NULL for none). */
static double ftime(const fval *v, char **arena, const char *aend, tcache *tc)
{
    if (v->t == FT_NUM) {
        double t = fnum(v);
        return t > 1e12 ? t / 1000.0 : t;
    }
    if (v->t == FT_STR) {
        double t, frac;
        int off;
        /* the usual time shares its first 19 bytes with the last one (or is the same): read in place (no escapes) */
        if (tc && tc->valid && !v->esc && v->n >= 19 && memcmp(v->p, tc->prefix, 19) == 0) {
            if (v->n == tc->full_n && memcmp(v->p, tc->full, v->n) == 0)
                return tc->full_t;
            t = rfc3339_tail(v->p + 19, v->p + v->n, true, &frac, &off) == 0 ? tc->base + frac - off : NAN;
            if (v->n <= sizeof tc->full) {
                memcpy(tc->full, v->p, v->n);
                tc->full_n = v->n;
                tc->full_t = t;
            }
            return t;
        }
        size_t n;
        char *s = fcopy(arena, aend, v, &n);
        if (!s)
            return NAN;
        if (tc && tc->valid && n >= 19 && memcmp(s, tc->prefix, 19) == 0)
            return rfc3339_tail(s + 19, s + n, true, &frac, &off) == 0 ? tc->base + frac - off : NAN;
        double base = NAN;
        if (parse_rfc3339_base(s, &t, tc ? &base : NULL) == 0) {
            if (tc && !isnan(base)) {
                memcpy(tc->prefix, s, 19);
                tc->base = base;
                tc->valid = true;
            }
            return t;
        }
    }
    return NAN;
}

static double fevent_time(const fobj *o, char **arena, const char *aend, tcache *tc)
{
    static const int keys[] = {FK_TIMESTAMP, FK_TS, FK_TIME, FK_ATTS};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (o->v[keys[i]].t != FT_NONE)
            return ftime(&o->v[keys[i]], arena, aend, tc);
    return NAN;
}

/* ---- shapes ----------------------------------------------------------------------------------------------------- */

/* A log holds few line shapes: the same keys in the same order, only the values change. Once the strict reader has
 * read a line, its shape is kept as a template: the exact bytes between the scalar values (braces, keys, colons,
 * commas, whitespace) and a slot for each scalar. A later line matches a template when every literal run is equal
 * byte for byte and every slot holds a scalar that the strict reader's own rules accept (fstring, fnumber, true,
 * false, null). Such a line is valid JSON of the same structure, so its fields come out exactly as the strict reader
 * (and so jansson) reads them, from a few compares instead of a walk over the grammar. The json string of a wrapped
 * line is matched in place by an inner template kept in its escaped form (\" for "), so it is neither copied nor
 * unescaped unless a caller asks for the event's JSON text (nd_kmslog_record_json). Anything else (a new shape, an
 * escape inside an inner value, full tables, a duplicate known key) goes to the strict reader, as before. */
#define SHAPES 8           /* templates kept per level (lines; wrapped json strings) */
#define SHAPE_ITEMS 96
#define SHAPE_BYTES 1536
#define SHAPE_METRICS 64

enum { SI_LIT, SI_VAL, SI_SET, SI_INNER, SI_MET, SI_FIX };
enum { SO_TOP, SO_SUB, SO_NONE };
enum { SM_TOP, SM_SUB, SM_MET, SM_NONE };

typedef struct sitem {
    uint64_t lw[2], lm[2]; /* the first 16 literal bytes (masked) and the mask of the literal's bytes among them */
    uint8_t kind;
    uint8_t obj;        /* SO_*: the fobj a keyed value goes to */
    int8_t key;         /* FK_* or -1 */
    uint8_t t;          /* SI_SET: the FT_ type of an object or array value */
    uint16_t off, len;  /* SI_FIX: the bytes; SI_MET: the metric's NUL-terminated name */
    uint16_t loff, llen; /* the literal bytes before the item (SI_LIT: only those, at the end) */
} sitem;

enum { EK_UNKNOWN, EK_OTHER, EK_REQUEST, EK_RESPONSE };

typedef struct shape {
    bool esc;           /* an inner template: literals as they appear inside a JSON string */
    uint16_t nitems, nbytes;
    uint32_t mask[2];   /* the known keys it sets, per object (SO_TOP, SO_SUB): the others read as absent */
    /* Derived from the items (so equal shapes agree) or learnt while counting; not compared by shape_equal: */
    uint8_t evkind;     /* EK_*: what its top object's event is (a fixed name), EK_UNKNOWN: read it */
    char evname[48];    /* that name, NUL-terminated (EK_REQUEST, EK_RESPONSE) */
    uint16_t met_ctr[SHAPE_ITEMS]; /* per SI_MET item: the counter its name is counted under + 1, 0 = not yet */
    struct shape *next; /* the template that matched the next line (json string) after this one's, tried first */
    sitem it[SHAPE_ITEMS];
    char bytes[SHAPE_BYTES + 16]; /* 16 zero bytes after nbytes: literals are read 16 bytes at a time (lit_eq) */
} shape;

typedef struct smatch {
    fobj *o, *sub, *in;
    uint32_t *dirty;    /* per object (o, sub, in): the keys set since it was last cleared */
    const char *inner;  /* the matched json string's content (escaped), NULL when none */
    size_t inner_n;
    const shape *shape, *inner_shape; /* the templates that matched the line and its json string */
    int nmet;
    const char *met_name[SHAPE_METRICS];
    uint16_t *met_ctr[SHAPE_METRICS]; /* the template's counter cache for each */
    double met_x[SHAPE_METRICS];
} smatch;

typedef struct sbuild {
    shape *s;
    bool fail;
    bool has_sub;       /* "fields" objects are read into sub (the line level) */
    bool metrics_here;  /* this level's metrics are the event's */
    const char *js;     /* the chosen json string's content (SI_INNER there), NULL when none */
    uint32_t seen[2];   /* known keys seen per object: a duplicate refuses the shape */
    uint16_t pend_off, pend_len; /* literal bytes waiting for the next item */
} sbuild;

/* Adds an item; the literal bytes appended since the last one are compared before it. */
static sitem *sb_item(sbuild *b, int kind, int obj, int key)
{
    shape *s = b->s;
    if (b->fail || s->nitems == SHAPE_ITEMS) {
        b->fail = true;
        return NULL;
    }
    sitem *it = &s->it[s->nitems++];
    memset(it, 0, sizeof *it);
    it->kind = (uint8_t)kind;
    it->obj = (uint8_t)obj;
    it->key = (int8_t)key;
    it->loff = b->pend_off;
    it->llen = b->pend_len;
    b->pend_len = 0;
    if (key >= 0 && obj != SO_NONE)
        s->mask[obj] |= 1u << key;
    return it;
}

/* Appends literal bytes (escaped as inside a JSON string for an inner template). */
static void sb_lit(sbuild *b, const char *p, size_t n)
{
    shape *s = b->s;
    if (b->fail || n == 0)
        return;
    if (b->pend_len == 0)
        b->pend_off = s->nbytes;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool two = s->esc && (c == '"' || c == '\\');
        if ((s->esc && c < 0x20) || s->nbytes + 2u > SHAPE_BYTES || b->pend_off + b->pend_len != s->nbytes) {
            b->fail = true;
            return;
        }
        if (two)
            s->bytes[s->nbytes++] = '\\';
        s->bytes[s->nbytes++] = (char)c;
        b->pend_len = (uint16_t)(b->pend_len + (two ? 2 : 1));
    }
}

static bool slot_key(sbuild *b, int obj, int key)
{
    if (key < 0 || obj == SO_NONE)
        return true;
    if (b->seen[obj] & (1u << key))
        return false;
    b->seen[obj] |= 1u << key;
    return true;
}

/* The end of a scalar the strict reader accepted. */
static const char *sb_scalar_end(const char *p, const char *end)
{
    bool esc;
    switch (*p) {
    case '"': {
        const char *q = fstring(p + 1, end, &esc);
        return q ? q + 1 : NULL;
    }
    case 't': case 'n': return p + 4;
    case 'f': return p + 5;
    default: return fnumber(p, end);
    }
}

static const char *sb_value(sbuild *b, const char *p, const char *end, int mode, int obj, int key);

/* An object the strict reader accepted, at p. Returns its end (NULL: no shape). */
static const char *sb_object(sbuild *b, const char *p, const char *end, int mode)
{
    const char *lit = p;
    p = fws(p + 1, end);
    if (p < end && *p == '}') {
        sb_lit(b, lit, (size_t)(p + 1 - lit));
        return p + 1;
    }
    while (p && p < end && !b->fail) {
        bool esc;
        const char *q = fstring(p + 1, end, &esc);
        if (!q)
            return NULL;
        const char *name = p + 1;
        size_t name_n = (size_t)(q - name);
        int key = -1, obj = SO_NONE;
        if (mode == SM_TOP || mode == SM_SUB) {
            if (esc)
                return NULL;
            key = fast_key(name, name_n);
            obj = mode == SM_TOP ? SO_TOP : SO_SUB;
            if (!slot_key(b, obj, key))
                return NULL;
        }
        p = fws(fws(q + 1, end) + 1, end); /* past ':' */
        sb_lit(b, lit, (size_t)(p - lit));
        if (mode == SM_MET && p < end && *p != '{' && *p != '[') {
            /* a metric: a number is counted under its name, other scalars are skipped (as fmetrics does) */
            if (esc || name_n >= 256 || b->s->nbytes + name_n + 1 > SHAPE_BYTES)
                return NULL;
            sitem *it = sb_item(b, SI_MET, SO_NONE, -1);
            if (!it)
                return NULL;
            it->off = b->s->nbytes;
            memcpy(b->s->bytes + b->s->nbytes, name, name_n);
            b->s->bytes[b->s->nbytes + name_n] = '\0';
            b->s->nbytes = (uint16_t)(b->s->nbytes + name_n + 1);
            p = sb_scalar_end(p, end);
        } else {
            p = sb_value(b, p, end, mode == SM_MET ? SM_NONE : mode, obj, key);
        }
        if (!p)
            return NULL;
        lit = p;
        p = fws(p, end);
        if (p < end && *p == ',') {
            p = fws(p + 1, end);
            continue;
        }
        sb_lit(b, lit, (size_t)(p + 1 - lit)); /* '}' */
        return p + 1;
    }
    return NULL;
}

static const char *sb_value(sbuild *b, const char *p, const char *end, int mode, int obj, int key)
{
    if (*p == '{' || *p == '[') {
        if (key >= 0) {
            sitem *it = sb_item(b, SI_SET, obj, key);
            if (!it)
                return NULL;
            it->t = *p == '{' ? FT_OBJ : FT_ARR;
        }
        if (*p == '{') {
            int sub = SM_NONE;
            if (mode == SM_TOP && key == FK_FIELDS && b->has_sub)
                sub = SM_SUB;
            else if (mode == SM_TOP && key == FK_METRICS && b->metrics_here)
                sub = SM_MET;
            return sb_object(b, p, end, sub);
        }
        const char *lit = p;
        p = fws(p + 1, end);
        if (p < end && *p == ']') {
            sb_lit(b, lit, (size_t)(p + 1 - lit));
            return p + 1;
        }
        for (;;) {
            sb_lit(b, lit, (size_t)(p - lit));
            p = sb_value(b, p, end, SM_NONE, SO_NONE, -1);
            if (!p || b->fail)
                return NULL;
            lit = p;
            p = fws(p, end);
            if (p < end && *p == ',') {
                p = fws(p + 1, end);
                continue;
            }
            sb_lit(b, lit, (size_t)(p + 1 - lit)); /* ']' */
            return p + 1;
        }
    }
    if (*p == '"' && b->js && p + 1 == b->js) {
        bool esc;
        const char *q = fstring(p + 1, end, &esc);
        if (!q)
            return NULL;
        sb_lit(b, p, 1);
        sb_item(b, SI_INNER, obj, key);
        sb_lit(b, q, 1);
        return q + 1;
    }
    if (*p == '"' && key == FK_EVENT) {
        /* the event name is part of the shape (a request and a response differ from the first bytes on); the
         * value is still read as a string, the bytes compared as they appear */
        bool esc;
        const char *q = fstring(p + 1, end, &esc);
        if (!q || esc)
            return NULL;
        sb_lit(b, p, 1);
        uint16_t before = b->s->nbytes;
        sitem *it = sb_item(b, SI_FIX, obj, key);
        if (!it)
            return NULL;
        it->off = before;
        size_t n = (size_t)(q - p - 1);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)p[1 + i];
            if ((b->s->esc && (c == '"' || c == '\\')) || c < 0x20 || b->s->nbytes + 1u > SHAPE_BYTES)
                return NULL;
            b->s->bytes[b->s->nbytes++] = (char)c;
        }
        it->len = (uint16_t)n;
        sb_lit(b, q, 1);
        return q + 1;
    }
    sb_item(b, SI_VAL, obj, key);
    return sb_scalar_end(p, end);
}

/* Builds the template of text [p, end) (an object with optional whitespace around it, already read by the strict
 * reader). Returns true when it holds. */
static bool shape_build(shape *s, bool esc, const char *p, const char *end, bool has_sub, bool metrics_here,
                        const char *js)
{
    memset(s, 0, offsetof(shape, it));
    s->esc = esc;
    sbuild b = {.s = s, .has_sub = has_sub, .metrics_here = metrics_here, .js = js};
    const char *o = fws(p, end);
    sb_lit(&b, p, (size_t)(o - p));
    if (o >= end || *o != '{')
        return false;
    const char *q = sb_object(&b, o, end, SM_TOP);
    if (!q || b.fail)
        return false;
    sb_lit(&b, q, (size_t)(end - q));
    if (b.pend_len)
        sb_item(&b, SI_LIT, SO_NONE, -1);
    /* the event, as process_fast would read it from a line of this shape: absent or not a string is not a KMS
     * event; a string is a fixed name (SI_FIX), known from here on */
    s->evkind = EK_OTHER;
    for (int i = 0; i < s->nitems; i++) {
        const sitem *it = &s->it[i];
        if (it->key != FK_EVENT || it->obj != SO_TOP)
            continue;
        s->evkind = EK_UNKNOWN;
        if (it->kind == SI_SET)
            s->evkind = EK_OTHER;
        else if (it->kind == SI_FIX && it->len < sizeof s->evname) {
            memcpy(s->evname, s->bytes + it->off, it->len);
            s->evname[it->len] = '\0';
            if (strncmp(s->evname, ND_LOG_EVENT_PREFIX, sizeof ND_LOG_EVENT_PREFIX - 1) != 0)
                s->evkind = EK_OTHER;
            else
                s->evkind = strcmp(s->evname, ND_LOG_EVENT_RESPONSE) == 0 ? EK_RESPONSE : EK_REQUEST;
        }
    }
    memset(s->bytes + s->nbytes, 0, 16);
    for (int i = 0; i < s->nitems; i++) {
        sitem *it = &s->it[i];
        size_t n = it->llen < 16 ? it->llen : 16;
        uint64_t m0 = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
        uint64_t m1 = n >= 16 ? ~0ull : n <= 8 ? 0 : (1ull << (8 * (n - 8))) - 1;
        memcpy(it->lw, s->bytes + it->loff, 16);
        it->lm[0] = m0;
        it->lm[1] = m1;
        it->lw[0] &= m0;
        it->lw[1] &= m1;
    }
    return !b.fail && fws(q, end) == end;
}

static bool shape_equal(const shape *a, const shape *b)
{
    return a->esc == b->esc && a->nitems == b->nitems && a->nbytes == b->nbytes &&
           memcmp(a->it, b->it, a->nitems * sizeof a->it[0]) == 0 && memcmp(a->bytes, b->bytes, a->nbytes) == 0;
}

/* true when the n bytes at p (before end) are the n bytes at l (a template's: 16 bytes readable past n). */
static inline bool lit_eq(const char *p, const char *end, const char *l, size_t n)
{
    if ((size_t)(end - p) < n)
        return false;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n <= 16 && end - p >= 16) {
        /* one 16-byte compare, the bytes past n masked out */
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, p, 8);
        memcpy(&a1, p + 8, 8);
        memcpy(&b0, l, 8);
        memcpy(&b1, l + 8, 8);
        uint64_t m0 = n >= 8 ? ~0ull : (1ull << (8 * n)) - 1;
        uint64_t m1 = n >= 16 ? ~0ull : n <= 8 ? 0 : (1ull << (8 * (n - 8))) - 1;
        return (((a0 ^ b0) & m0) | ((a1 ^ b1) & m1)) == 0;
    }
#endif
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t a, b;
            memcpy(&a, p + i, 8);
            memcpy(&b, l + i, 8);
            if (a != b)
                return false;
        }
        uint64_t a, b; /* the last 8 bytes, overlapping */
        memcpy(&a, p + n - 8, 8);
        memcpy(&b, l + n - 8, 8);
        return a == b;
    }
    for (size_t i = 0; i < n; i++)
        if (p[i] != l[i])
            return false;
    return true;
}

/* A scalar at p as the strict reader reads one; esc: inside a JSON string, where a string value is \"…\" and holds no
 * backslash. Returns its end, or NULL. */
static inline const char *sm_scalar(const char *p, const char *end, bool esc, fval *v)
{
    if (p >= end)
        return NULL;
    const char *q;
    v->p = p;
    v->esc = false;
    switch (*p) {
    case '"':
        if (esc)
            return NULL;
        q = fstring(p + 1, end, &v->esc);
        if (!q)
            return NULL;
        v->p = p + 1;
        v->n = (size_t)(q - p - 1);
        v->t = FT_STR;
        return q + 1;
    case '\\':
        if (!esc || end - p < 2 || p[1] != '"')
            return NULL;
        q = fspecial(p + 2, end);
        if (end - q < 2 || q[0] != '\\' || q[1] != '"')
            return NULL;
        v->p = p + 2;
        v->n = (size_t)(q - p - 2);
        v->t = FT_STR;
        return q + 2;
    case 't':
    case 'f':
    case 'n':
        if ((v->t = fliteral(p, end, &v->n)) == FT_NONE)
            return NULL;
        return p + v->n;
    default:
        q = fnumber(p, end);
        if (!q)
            return NULL;
        v->n = (size_t)(q - p);
        v->t = FT_NUM;
        return q;
    }
}

static const char *shape_match_level(shape *const *tab, int *n, const char *p, const char *end, smatch *m, int level,
                                     shape **last, shape *const *inner, int *ninner, shape **inner_last);

/* Matches one template at p. Returns the end of what it covers, or NULL. */
static const char *shape_match(const shape *s, const char *p, const char *end, smatch *m, int level,
                               shape *const *inner, int *ninner, shape **inner_last)
{
    fobj *top = level ? m->in : m->o, *sub = level ? NULL : m->sub;
    for (const sitem *it = s->it, *e = s->it + s->nitems; it < e; it++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (it->llen <= 16 && end - p >= 16) {
            /* the literal as one masked 16-byte compare (little-endian: the mask keeps its first llen bytes) */
            uint64_t a0, a1;
            memcpy(&a0, p, 8);
            memcpy(&a1, p + 8, 8);
            if (((a0 & it->lm[0]) ^ it->lw[0]) | ((a1 & it->lm[1]) ^ it->lw[1]))
                return NULL;
        } else
#endif
        if (!lit_eq(p, end, s->bytes + it->loff, it->llen))
            return NULL;
        p += it->llen;
        switch (it->kind) {
        case SI_LIT:
            break;
        case SI_VAL: {
            /* read straight into its place (a copy through the stack stalled on store forwarding) */
            fval scratch, *dst = it->key >= 0 ? &(it->obj == SO_TOP ? top : sub)->v[it->key] : &scratch;
            if (p < end && *p == (s->esc ? '\\' : '"')) {
                /* the usual value, a string without escapes, here; anything else as sm_scalar reads it */
                const char *b = p + (s->esc ? 2 : 1);
                if (s->esc && (end - p < 2 || p[1] != '"'))
                    return NULL;
                const char *q = fspecial(b, end);
                if (!s->esc && q < end && *q == '"') {
                    dst->p = b;
                    dst->n = (size_t)(q - b);
                    dst->t = FT_STR;
                    dst->esc = false;
                    p = q + 1;
                    break;
                }
                if (s->esc) {
                    if (end - q < 2 || q[0] != '\\' || q[1] != '"')
                        return NULL;
                    dst->p = b;
                    dst->n = (size_t)(q - b);
                    dst->t = FT_STR;
                    dst->esc = false;
                    p = q + 2;
                    break;
                }
            } else if (end - p >= 8) {
                /* true, false, null and short integers, as sm_scalar reads them, without the call */
                uint32_t w4;
                memcpy(&w4, p, 4);
                unsigned char t = 0;
                size_t n = 0;
                if (memcmp(&w4, "true", 4) == 0)
                    t = FT_TRUE, n = 4;
                else if (memcmp(&w4, "null", 4) == 0)
                    t = FT_NULL, n = 4;
                else if (memcmp(&w4, "fals", 4) == 0 && p[4] == 'e')
                    t = FT_FALSE, n = 5;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                else if (ISDIGIT(*p)) {
                    uint64_t w;
                    memcpy(&w, p, 8);
                    uint64_t nd = ((w & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull) |
                                  (((w + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull);
                    size_t d = nd ? (size_t)__builtin_ctzll(nd) / 8 : 8; /* digits, then p[d] is not one */
                    if (d < 8 && (*p != '0' || d == 1) && p[d] != '.' && p[d] != 'e' && p[d] != 'E')
                        t = FT_NUM, n = d; /* an integer fnumber accepts */
                }
#endif
                if (t) {
                    dst->p = p;
                    dst->n = n;
                    dst->t = t;
                    dst->esc = false;
                    p += n;
                    break;
                }
            }
            p = sm_scalar(p, end, s->esc, dst);
            if (!p)
                return NULL;
            break;
        }
        case SI_FIX: {
            if (!lit_eq(p, end, s->bytes + it->off, it->len))
                return NULL;
            fval *v = &(it->obj == SO_TOP ? top : sub)->v[it->key];
            v->p = p;
            v->n = it->len;
            v->t = FT_STR;
            v->esc = false;
            p += it->len;
            break;
        }
        case SI_SET: {
            fval *v = &(it->obj == SO_TOP ? top : sub)->v[it->key];
            v->p = p;
            v->n = 0;
            v->t = it->t;
            v->esc = false;
            break;
        }
        case SI_MET: {
            /* a plain integer (the usual counter) is validated and read in one pass: what fnumber accepts and
             * fnum reads for up to 15 digits */
            const char *d = p;
            uint64_t x = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            uint64_t w, nd = 0;
            if (end - p >= 8) {
                /* up to 7 digits from one 8-byte load: a byte is a digit when its high nibble is 3 before and
                 * after adding 6 (a carry out of a non-digit only disturbs the bytes after it) */
                memcpy(&w, p, 8);
                nd = ((w & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull) |
                     (((w + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) ^ 0x3030303030303030ull);
            }
            if (nd) {
                int n = __builtin_ctzll(nd) / 8; /* the digits before the first non-digit */
                if (n > 0) {
                    uint64_t v = (w << (8 * (8 - n))) & 0x0F0F0F0F0F0F0F0Full; /* as 8 digits, zeros first */
                    v = (v * 2561) >> 8;
                    v = ((v & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
                    x = ((v & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
                }
                d = p + n;
            } else
#endif
            while (d < end && ISDIGIT(*d) && d - p < 16)
                x = x * 10 + (uint64_t)(*d++ - '0');
            if (d > p && d - p <= 15 && (*p != '0' || d - p == 1) && d < end && *d != '.' && *d != 'e' &&
                *d != 'E' && !ISDIGIT(*d)) {
                if (m->nmet == SHAPE_METRICS)
                    return NULL;
                m->met_name[m->nmet] = s->bytes + it->off;
                m->met_ctr[m->nmet] = (uint16_t *)&s->met_ctr[it - s->it];
                m->met_x[m->nmet++] = (double)x;
                p = d;
                break;
            }
            fval v;
            p = sm_scalar(p, end, s->esc, &v);
            if (!p)
                return NULL;
            if (v.t == FT_NUM) {
                if (m->nmet == SHAPE_METRICS)
                    return NULL;
                m->met_name[m->nmet] = s->bytes + it->off;
                m->met_ctr[m->nmet] = (uint16_t *)&s->met_ctr[it - s->it];
                m->met_x[m->nmet++] = fnum(&v);
            }
            break;
        }
        case SI_INNER: {
            if (!inner)
                return NULL;
            const char *q = shape_match_level(inner, ninner, p, end, m, 1, inner_last, NULL, NULL, NULL);
            if (!q)
                return NULL;
            fval *v = &(it->obj == SO_TOP ? top : sub)->v[it->key];
            v->p = p;
            v->n = (size_t)(q - p);
            v->t = FT_STR;
            v->esc = true;
            m->inner = p;
            m->inner_n = (size_t)(q - p);
            p = q;
            break;
        }
        }
    }
    return p;
}

/* One template of a level, with the keys it does not set cleared when it matches. Returns the end or NULL. */
static const char *shape_try(const shape *s, const char *p, const char *end, smatch *m, int level,
                             shape *const *inner, int *ninner, shape **inner_last)
{
    int nmet = m->nmet;
    if (!level)
        m->inner = NULL;
    uint32_t *dtop = &m->dirty[level ? 2 : 0], *dsub = &m->dirty[1];
    *dtop |= s->mask[SO_TOP]; /* the keys this try may set */
    if (!level)
        *dsub |= s->mask[SO_SUB];
    const char *q = shape_match(s, p, end, m, level, inner, ninner, inner_last);
    if (q && (level ? (q < end && *q == '"') : q == end)) {
        /* the keys this shape does not set are absent: clear those set since the last clearing */
        if (level)
            m->inner_shape = s;
        else
            m->shape = s;
        fobj *top = level ? m->in : m->o;
        for (uint32_t c = *dtop & ~s->mask[SO_TOP]; c; c &= c - 1)
            top->v[__builtin_ctz(c)].t = FT_NONE;
        *dtop = s->mask[SO_TOP];
        if (!level) {
            for (uint32_t c = *dsub & ~s->mask[SO_SUB]; c; c &= c - 1)
                m->sub->v[__builtin_ctz(c)].t = FT_NONE;
            *dsub = s->mask[SO_SUB];
        }
        return q;
    }
    m->nmet = nmet;
    return NULL;
}

/* Tries the template that followed the last matched one last time (a request's line is followed by its response's),
 * then the n templates of the level in turn; one that matches there moves one place forward (the common shapes end
 * up first). Any template that matches reads the text as the strict reader does, so the order only saves time. A
 * line template must cover the text to its end; an inner one must stop at the json string's closing quote. */
static const char *shape_match_level(shape *const *tab, int *n, const char *p, const char *end, smatch *m, int level,
                                     shape **last, shape *const *inner, int *ninner, shape **inner_last)
{
    shape *pred = *last ? (*last)->next : NULL, *hit = NULL;
    const char *q = pred ? shape_try(pred, p, end, m, level, inner, ninner, inner_last) : NULL;
    if (q)
        hit = pred;
    for (int i = 0; !hit && i < *n; i++) {
        if (tab[i] == pred)
            continue;
        q = shape_try(tab[i], p, end, m, level, inner, ninner, inner_last);
        if (q) {
            hit = tab[i];
            if (i > 0) {
                shape *t = tab[i - 1];
                ((shape **)tab)[i - 1] = tab[i];
                ((shape **)tab)[i] = t;
            }
        }
    }
    if (!hit)
        return NULL;
    if (*last)
        (*last)->next = hit;
    *last = hit;
    return q;
}

/* Keeps s in the table unless an equal one is there or the table is full. Returns the kept copy or NULL. */
static bool shape_keep(shape **tab, int *n, const shape *s)
{
    for (int i = 0; i < *n; i++)
        if (shape_equal(tab[i], s))
            return true;
    if (*n == SHAPES)
        return false;
    shape *c = malloc(sizeof *c);
    if (!c)
        return false;
    memcpy(c, s, sizeof *c);
    tab[(*n)++] = c;
    return true;
}

/* ---- summary ---------------------------------------------------------------------------------------------------- */

static void count_code(nd_kmslog *k, const char *code)
{
    for (size_t i = 0; i < k->ncodes; i++) {
        if (strcmp(k->codes[i].code, code) == 0) {
            k->codes[i].n++;
            return;
        }
    }
    size_t i = k->ncodes;
    if (i == MAX_CODES) { /* bounded: everything past the cap is folded into the last slot */
        i = MAX_CODES - 1;
        snprintf(k->codes[i].code, sizeof k->codes[i].code, "%s", "other");
        k->codes[i].n++;
        return;
    }
    snprintf(k->codes[i].code, sizeof k->codes[i].code, "%s", code);
    k->codes[i].n = 1;
    k->ncodes++;
}

static double dur_gamma(void)
{
    return (1 + DUR_ALPHA) / (1 - DUR_ALPHA);
}

static size_t dur_bucket(double v)
{
    if (!(v > DUR_LOW))
        return 0;
    double i = ceil(log(v / DUR_LOW) / log(dur_gamma()));
    if (i < 1)
        return 1;
    return i >= DUR_BUCKETS - 1 ? DUR_BUCKETS - 1 : (size_t)i;
}

/* Bounded: DUR_EXACT samples are kept exactly; the next one folds them all into the log histogram. */
static void add_duration(nd_kmslog *k, double v)
{
    if (k->ndurs == 0 || v < k->dur_min)
        k->dur_min = v;
    if (k->ndurs == 0 || v > k->dur_max)
        k->dur_max = v;
    if (!k->hist && k->ndurs == DUR_EXACT) {
        k->hist = calloc(DUR_BUCKETS, sizeof *k->hist);
        if (!k->hist)
            return; /* summary degrades, scanning goes on */
        for (size_t i = 0; i < k->ndurs; i++)
            k->hist[dur_bucket(k->durs[i])]++;
        free(k->durs);
        k->durs = NULL;
        k->durs_cap = 0;
    }
    if (k->hist) {
        /* the bucket of a recent value is remembered (durations repeat: whole milliseconds) */
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        size_t slot = (size_t)((bits ^ (bits >> 29) ^ (bits >> 47)) & (DUR_MEMO - 1));
        if (k->dmemo_key[slot] != bits || !k->dmemo_ok[slot]) {
            k->dmemo_key[slot] = bits;
            k->dmemo_bucket[slot] = (uint16_t)dur_bucket(v);
            k->dmemo_ok[slot] = 1;
        }
        k->hist[k->dmemo_bucket[slot]]++;
        k->ndurs++;
        return;
    }
    if (k->ndurs == k->durs_cap) {
        size_t cap = k->durs_cap ? k->durs_cap * 2 : 1024;
        double *d = realloc(k->durs, cap * sizeof *d);
        if (!d)
            return;
        k->durs = d;
        k->durs_cap = cap;
    }
    k->durs[k->ndurs++] = v;
    k->durs_sorted = false;
}

/* A sample of an existing counter. */
static inline void counter_sample(nd_kmslog_counter *c, double x)
{
    if (c->monotonic) {
        if (x < c->last) {
            c->resets++;
            c->delta += x;
        } else {
            c->delta += x - c->last;
        }
    }
    c->last = x;
    if (!c->monotonic)
        c->delta = c->last - c->first;
    if (x < c->min)
        c->min = x;
    if (x > c->max)
        c->max = x;
    c->samples++;
}

/* pos: the name's position in its metrics object, tried first (snapshots list their counters in the same order). */
/* src: a name that stays put (a shape's), remembered so that the next sample under it needs no compare. Returns the
 * counter's index, or -1 when the table is full (the sample is dropped). */
static int add_metric(nd_kmslog *k, const char *name, double x, size_t pos, const char *src)
{
    nd_kmslog_counter *c = NULL;
    if (src && pos < k->ncounters && k->counter_src[pos] == src)
        c = &k->counters[pos];
    else if (pos < k->ncounters && strcmp(k->counters[pos].name, name) == 0)
        c = &k->counters[pos];
    for (size_t i = 0; i < k->ncounters && !c; i++)
        if (strcmp(k->counters[i].name, name) == 0) {
            c = &k->counters[i];
            break;
        }
    if (!c) {
        if (k->ncounters == MAX_COUNTERS || strlen(name) >= sizeof c->name)
            return -1;
        c = &k->counters[k->ncounters++];
        memset(c, 0, sizeof *c);
        k->counter_src[c - k->counters] = src;
        snprintf(c->name, sizeof c->name, "%s", name);
        size_t nl = strlen(name);
        c->monotonic = nl > 6 && strcmp(name + nl - 6, "_total") == 0;
        c->first = c->last = c->min = c->max = x;
        c->samples = 1;
        return (int)(c - k->counters);
    }
    k->counter_src[c - k->counters] = src;
    counter_sample(c, x);
    return (int)(c - k->counters);
}

static void add_metrics(nd_kmslog *k, const json_t *m)
{
    const char *name;
    const json_t *v;
    size_t pos = 0;
    json_object_foreach((json_t *)m, name, v) {
        if (json_is_number(v))
            add_metric(k, name, json_number_value(v), pos++, NULL);
    }
}

/* 16 bytes at a time in two independent multiply-xorshift lanes, the last 16 (or 8, or 4) bytes loaded overlapping
 * instead of byte by byte: ids are 36-byte UUIDs, hashed three times per pair. Never 0. */
static uint64_t hash_mem(const char *s, size_t n)
{
    uint64_t a = 0x9e3779b97f4a7c15ull ^ n, b = 0x6a09e667f3bcc909ull, w1 = 0, w2 = 0;
    const char *e = s + n;
    if (n >= 16) {
        for (; e - s > 16; s += 16) {
            memcpy(&w1, s, 8);
            memcpy(&w2, s + 8, 8);
            a = (a ^ w1) * 0xff51afd7ed558ccdull;
            b = (b ^ w2) * 0xc4ceb9fe1a85ec53ull;
            a ^= a >> 32;
            b ^= b >> 29;
        }
        memcpy(&w1, e - 16, 8);
        memcpy(&w2, e - 8, 8);
    } else if (n >= 8) {
        memcpy(&w1, s, 8);
        memcpy(&w2, e - 8, 8);
    } else if (n >= 4) {
        uint32_t x, y;
        memcpy(&x, s, 4);
        memcpy(&y, e - 4, 4);
        w1 = x;
        w2 = y;
    } else if (n > 0) {
        w1 = (uint64_t)(unsigned char)s[0] | (uint64_t)(unsigned char)s[n / 2] << 8 |
             (uint64_t)(unsigned char)s[n - 1] << 16;
    }
    a = (a ^ w1) * 0xff51afd7ed558ccdull;
    b = (b ^ w2) * 0xc4ceb9fe1a85ec53ull;
    uint64_t h = (a ^ (b >> 31) ^ (b << 33)) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return h ? h : 1;
}

static uint64_t hash_str(const char *s)
{
    return hash_mem(s, strlen(s));
}

/* true when the set of kept ids holds h; adds it when add. */
static bool id_seen(nd_kmslog *k, uint64_t h, bool add)
{
    /* at most a quarter full while small (a miss, the usual look-up once max_ids are kept, then probes ~1.4 slots),
     * half full past 64 Ki slots */
    if (add && (k->nids + 1) * (k->id_hash_cap < 65536 ? 4 : 2) > k->id_hash_cap) {
        size_t cap = k->id_hash_cap ? k->id_hash_cap * 2 : 1024;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return false;
        for (size_t i = 0; i < k->id_hash_cap; i++) {
            if (!k->id_hash[i])
                continue;
            size_t j = k->id_hash[i] & (cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = k->id_hash[i];
        }
        free(k->id_hash);
        k->id_hash = t;
        k->id_hash_cap = cap;
    }
    if (!k->id_hash_cap)
        return false;
    size_t j = h & (k->id_hash_cap - 1);
    while (k->id_hash[j]) {
        if (k->id_hash[j] == h)
            return true;
        j = (j + 1) & (k->id_hash_cap - 1);
    }
    if (add)
        k->id_hash[j] = h;
    return false;
}

/* Keeps r's kms_request_id (whose hash is h) unless it is kept already or the cap is reached. */
static void add_id(nd_kmslog *k, const nd_kmslog_record *r, uint64_t h)
{
    if (id_seen(k, h, false))
        return;
    size_t cap = k->f.max_ids ? k->f.max_ids : 100000;
    if (k->nids >= cap) {
        k->ids_dropped++; /* bounded: a value repeated after the cap counts again */
        return;
    }
    if (k->nids == k->ids_cap) {
        size_t ncap = k->ids_cap ? k->ids_cap * 2 : 64;
        nd_kmslog_id *n = realloc(k->ids, ncap * sizeof *n);
        if (!n)
            return;
        k->ids = n;
        k->ids_cap = ncap;
    }
    nd_kmslog_id *id = &k->ids[k->nids];
    id->kms_request_id = strdup(r->kms_request_id);
    id->request_id = r->request_id ? strdup(r->request_id) : NULL;
    if (!id->kms_request_id) {
        free(id->request_id);
        return;
    }
    snprintf(id->code, sizeof id->code, "%s", r->code);
    snprintf(id->attestation_pcr0, sizeof id->attestation_pcr0, "%s", r->attestation_pcr0 ? r->attestation_pcr0 : "");
    snprintf(id->attestation_module_id, sizeof id->attestation_module_id, "%s",
             r->attestation_module_id ? r->attestation_module_id : "");
    id->ts = r->ts;
    k->nids++;
    id_seen(k, h, true);
}

/* ---- pairing ---------------------------------------------------------------------------------------------------- */

static void pend_unlink(nd_kmslog *k, uint32_t idx)
{
    struct pend *e = &k->ring[idx];
    uint32_t *link = &k->bucket[e->h & (PAIR_BUCKETS - 1)];
    while (*link && *link != idx + 1)
        link = &k->ring[*link - 1].next;
    if (*link)
        *link = e->next;
    e->live = 0;
    k->pending--;
}

/* Drops the oldest waiting slot; a request still waiting there leaves unpaired. */
static void pend_evict(nd_kmslog *k)
{
    uint32_t idx = k->ring_head;
    if (k->ring[idx].live) {
        pend_unlink(k, idx);
        k->evicted++;
    }
    k->ring_head = (k->ring_head + 1) % PAIR_CAP;
    k->ring_count--;
    if (k->ring_count == 0)
        k->ring_head = 0; /* nothing waits (no chain holds a slot): start again where the ring is warm in cache */
}

static void pend_expire(nd_kmslog *k, double ts)
{
    if (isnan(ts))
        return;
    if (isnan(k->newest_ts) || ts > k->newest_ts)
        k->newest_ts = ts;
    while (k->ring_count) {
        const struct pend *e = &k->ring[k->ring_head];
        if (e->live && !(e->ts < k->newest_ts - PAIR_WINDOW))
            break;
        pend_evict(k);
    }
}

static int op_code(const char *op)
{
    if (!op)
        return OP_NONE;
    if (strcasecmp(op, "Decrypt") == 0)
        return OP_DECRYPT;
    if (strcasecmp(op, "GenerateDataKey") == 0)
        return OP_GDK;
    return OP_OTHER;
}

/* A record whose strings are copied only when the summary needs them (the callback wants no more records): its
 * request_id's presence and hash, and the event's values for a kms_request_id that is kept. */
typedef struct lazy_rec {
    const fobj *ev;
    char **arena;
    const char *aend;
    bool has_rid;
    uint64_t rid_h;
} lazy_rec;

/* Pairs an event: a request starts waiting, a response takes its request out. Returns the op of the paired
 * request for a response (OP_NONE when unpaired or for a request). */
static int pair_event(nd_kmslog *k, const nd_kmslog_record *r, const lazy_rec *lz)
{
    if (!k->ring) {
        k->ring = malloc(PAIR_CAP * sizeof *k->ring);
        k->bucket = calloc(PAIR_BUCKETS, sizeof *k->bucket);
        if (!k->ring || !k->bucket) {
            free(k->ring);
            free(k->bucket);
            k->ring = NULL;
            k->bucket = NULL;
            return OP_NONE;
        }
    }
    pend_expire(k, r->ts);
    int op = OP_NONE;
    if (!(lz ? lz->has_rid : r->request_id != NULL)) {
        if (r->is_response)
            k->st.unpaired_responses++;
    } else if (!r->is_response) {
        if (k->ring_count == PAIR_CAP)
            pend_evict(k);
        uint32_t idx = (k->ring_head + k->ring_count) % PAIR_CAP;
        k->ring_count++;
        struct pend *e = &k->ring[idx];
        e->h = lz ? lz->rid_h : hash_str(r->request_id);
        e->ts = r->ts;
        e->op = (uint8_t)(k->op ? op_code(r->op) : OP_NONE); /* read by the op filter only */
        e->live = 1;
        uint32_t *head = &k->bucket[e->h & (PAIR_BUCKETS - 1)];
        e->next = *head;
        *head = idx + 1;
        k->pending++;
    } else {
        uint64_t h = lz ? lz->rid_h : hash_str(r->request_id);
        uint32_t i = k->bucket[h & (PAIR_BUCKETS - 1)];
        while (i && k->ring[i - 1].h != h)
            i = k->ring[i - 1].next;
        if (i) {
            op = k->ring[i - 1].op;
            pend_unlink(k, i - 1);
            k->st.paired++;
        } else {
            k->st.unpaired_responses++;
        }
    }
    k->st.unpaired_requests = k->evicted + k->pending;
    return op;
}

/* ---- one line --------------------------------------------------------------------------------------------------- */

static bool is_kms_event(const json_t *o)
{
    const char *ev = jstr(o, ND_LOG_EVENT);
    return ev && strncmp(ev, ND_LOG_EVENT_PREFIX, sizeof ND_LOG_EVENT_PREFIX - 1) == 0;
}

/* Finds the event inside a parsed line: the object itself (plain), or the json string in fields.json / json
 * (wrapped), which is parsed into *inner (the caller frees it). Returns the event or NULL; sets *bad when the
 * wrapped json string is not valid JSON. */
static const json_t *unwrap(const json_t *outer, json_t **inner, bool *wrapped, bool *bad, const json_t **text)
{
    *inner = NULL;
    *wrapped = false;
    const json_t *fields = json_object_get(outer, "fields");
    const json_t *js = json_is_object(fields) ? json_object_get(fields, "json") : NULL;
    if (!json_is_string(js))
        js = json_object_get(outer, "json");
    if (json_is_string(js)) {
        json_error_t je;
        *inner = json_loadb(json_string_value(js), json_string_length(js), 0, &je);
        if (!json_is_object(*inner)) {
            json_decref(*inner);
            *inner = NULL;
            *bad = true;
            return NULL;
        }
        *wrapped = true;
        *text = js;
        return *inner;
    }
    return outer;
}

/* The op filter: a line naming the op matches, a response without op matches when its paired request named it. */
static bool op_matches(const nd_kmslog *k, const nd_kmslog_record *r, int paired_op)
{
    if (!k->op)
        return true;
    if (r->op)
        return strcasecmp(r->op, k->op) == 0;
    return r->is_response && paired_op != OP_NONE && paired_op == op_code(k->op);
}

/* Walks a metrics object the fast reader validated. */
static void fmetrics(nd_kmslog *k, const fval *m)
{
    const char *end = m->p + m->n - 1; /* the closing brace */
    const char *p = fws(m->p + 1, end);
    size_t pos = 0;
    while (p < end && *p == '"') {
        bool esc;
        const char *q = fstring(p + 1, end, &esc);
        if (!q)
            return;
        fval key = {p + 1, (size_t)(q - p - 1), FT_STR, esc};
        p = fws(q + 1, end);
        p = fws(p + 1, end); /* ':' */
        fval v;
        p = fvalue(p, end, &v, NULL, 1);
        if (!p)
            return;
        char name[256], *a = name;
        if (v.t == FT_NUM && fcopy(&a, name + sizeof name, &key, NULL))
            add_metric(k, name, fnum(&v), pos++, NULL);
        p = fws(p, end);
        if (p < end && *p == ',')
            p = fws(p + 1, end);
        else
            break;
    }
}

/* A lazy record's kms_request_id: hashed in place; its strings are copied only when it is kept. */
static void add_id_lazy(nd_kmslog *k, nd_kmslog_record *r, const lazy_rec *lz)
{
    const fobj *ev = lz->ev;
    const fval *v = &ev->v[FK_KMS_REQUEST_ID];
    if (v->t != FT_STR || v->n == 0) /* absent, null or "" (an escape unescapes to at least one byte) */
        return;
    if (!v->esc) {
        uint64_t h = hash_mem(v->p, v->n);
        if (id_seen(k, h, false))
            return;
        size_t cap = k->f.max_ids ? k->f.max_ids : 100000;
        if (k->nids >= cap) {
            k->ids_dropped++;
            return;
        }
    }
    /* kept (or escaped): the strings add_id copies */
    r->kms_request_id = fcopy(lz->arena, lz->aend, v, NULL);
    if (!r->request_id && ev->v[FK_REQUEST_ID].t == FT_STR)
        r->request_id = fcopy(lz->arena, lz->aend, &ev->v[FK_REQUEST_ID], NULL);
    if (ev->v[FK_ATT_PCR0].t == FT_STR)
        r->attestation_pcr0 = fcopy(lz->arena, lz->aend, &ev->v[FK_ATT_PCR0], NULL);
    if (ev->v[FK_ATT_MODULE].t == FT_STR)
        r->attestation_module_id = fcopy(lz->arena, lz->aend, &ev->v[FK_ATT_MODULE], NULL);
    if (r->kms_request_id)
        add_id(k, r, hash_str(r->kms_request_id));
}

/* The filters and the summary for a read event; metrics come as a jansson object (mj) or a fast-read span (mf), or
 * from a kept shape (ms); lz: a lazy record (no callback). */
static int accept_event(nd_kmslog *k, nd_kmslog_record *r, const json_t *mj, const fval *mf, const smatch *ms,
                        const lazy_rec *lz)
{
    k->st.events++;
    if (r->wrapped)
        k->st.wrapped++;
    else
        k->st.plain++;
    if (r->prefixed)
        k->st.prefixed++;
    if (r->ok == 0 && !r->code[0])
        snprintf(r->code, sizeof r->code, "%s", "unknown");
    int paired_op = pair_event(k, r, lz);

    bool match = true;
    if (k->request_id && (!r->request_id || strcmp(r->request_id, k->request_id) != 0))
        match = false;
    if (match && k->trace_id && (!r->trace_id || strcmp(r->trace_id, k->trace_id) != 0))
        match = false;
    bool is_error = r->is_response && (r->ok == 0 || (r->ok < 0 && r->code[0]));
    if (match && k->f.errors_only && !is_error)
        match = false;
    if (match && k->code[0] && strcmp(r->code, k->code) != 0)
        match = false;
    if (match && (k->f.has_since || k->f.has_until)) {
        if (isnan(r->ts)) {
            k->st.untimed++;
            match = false;
        } else if ((k->f.has_since && r->ts < k->f.since) || (k->f.has_until && r->ts > k->f.until)) {
            match = false;
        }
    }
    if (match && !op_matches(k, r, paired_op))
        match = false;
    if (!match)
        return 0;

    k->st.matched++;
    if (r->is_response) {
        k->st.matched_responses++;
        if (is_error)
            count_code(k, r->code);
        if (!isnan(r->duration_ms))
            add_duration(k, r->duration_ms);
        if (mj)
            add_metrics(k, mj);
        else if (mf)
            fmetrics(k, mf);
        else if (ms)
            for (int i = 0; i < ms->nmet; i++) {
                /* the template remembers the counter each of its names is counted under */
                uint16_t *cc = ms->met_ctr[i];
                if (*cc) {
                    counter_sample(&k->counters[*cc - 1], ms->met_x[i]);
                    k->counter_src[*cc - 1] = ms->met_name[i];
                } else {
                    int c = add_metric(k, ms->met_name[i], ms->met_x[i], (size_t)i, ms->met_name[i]);
                    if (c >= 0)
                        *cc = (uint16_t)(c + 1);
                }
            }
    } else {
        k->st.matched_requests++;
    }
    if (lz)
        add_id_lazy(k, r, lz);
    else if (r->kms_request_id && *r->kms_request_id)
        add_id(k, r, hash_str(r->kms_request_id));
    int rc = 0;
    if (k->cb && !k->quiet) {
        rc = k->cb(k->ud, r);
        json_decref(k->lazy);
        k->lazy = NULL;
        if (rc == ND_KMSLOG_ENOUGH)
            k->quiet = true; /* no more records: the rest is summarised lazily */
    }
    return rc < 0 ? rc : 0;
}

const char *nd_kmslog_record_json(const nd_kmslog_record *r, size_t *len)
{
    nd_kmslog *k = (nd_kmslog *)r->owner;
    if (r->json || !k || !k->json_esc) {
        *len = r->json_len;
        return r->json ? r->json : "";
    }
    if (k->json_buf_cap < k->json_esc_len + 1) {
        char *b = realloc(k->json_buf, k->json_esc_len + 1);
        if (!b) {
            *len = 0;
            return NULL;
        }
        k->json_buf = b;
        k->json_buf_cap = k->json_esc_len + 1;
    }
    char *a = k->json_buf;
    fval v = {k->json_esc, k->json_esc_len, FT_STR, true};
    fcopy(&a, k->json_buf + k->json_buf_cap, &v, len);
    return k->json_buf;
}

const struct json_t *nd_kmslog_event(const nd_kmslog_record *r)
{
    if (r->event)
        return r->event;
    nd_kmslog *k = (nd_kmslog *)r->owner;
    if (!k)
        return NULL;
    if (!k->lazy) {
        json_error_t je;
        size_t n;
        const char *j = nd_kmslog_record_json(r, &n);
        k->lazy = j ? json_loadb(j, n, 0, &je) : NULL;
    }
    return k->lazy;
}

static const char *fstr_or(const char *s, bool *full)
{
    if (!s)
        *full = true;
    return s;
}

/* The fast reader on a candidate: a kept shape, else the strict reader (whose line then gives a shape). Returns 1
 * when it read the line (an event, or other JSON; *rc: 0 or a negative callback value), 0 when jansson must.
 * shape_first: the line is not known to be a candidate: read it only when a kept template matches it and names a
 * KMS event (so the line holds the driver needle; it is then counted as parsed), else return -1 having counted
 * nothing. */
static int process_fast(nd_kmslog *k, const char *line, size_t len, const char *brace, size_t jlen,
                        uint64_t line_no, int *rc, bool shape_first)
{
    /* the objects read: kept in the scanner, where each template clears only the keys an earlier one may have set */
    fobj *o = &k->fo[0], *sub = &k->fo[1], *in = &k->fo[2];
    smatch sm;
    sm.o = o;
    sm.sub = sub;
    sm.in = in;
    sm.dirty = k->fo_dirty;
    sm.nmet = 0;
    sm.inner = NULL;
    const char *end = brace + jlen;
    size_t need = 2 * jlen + 1024;
    if (k->arena_cap < need) {
        char *a = realloc(k->arena, need);
        if (!a)
            return shape_first ? -1 : 0;
        k->arena = a;
        k->arena_cap = need;
    }
    char *a = k->arena, *aend = k->arena + k->arena_cap;
    const fobj *ev = o;
    bool wrapped = false, shaped = false;
    const char *json = brace;
    size_t json_len = jlen;
    const fval *js = NULL;
    if (!k->f.no_shapes && k->nshapes &&
        shape_match_level(k->shapes, &k->nshapes, brace, end, &sm, 0, &k->last_shape[0], k->inner_shapes,
                          &k->ninner_shapes, &k->last_shape[1])) {
        /* the json string the strict reader would unwrap must be the one the inner template matched */
        if (o->v[FK_FIELDS].t == FT_OBJ && sub->v[FK_JSON].t == FT_STR)
            js = &sub->v[FK_JSON];
        else if (o->v[FK_JSON].t == FT_STR)
            js = &o->v[FK_JSON];
        if (js ? js->p == sm.inner : sm.inner == NULL) {
            shaped = true;
            if (sm.inner) {
                ev = in;
                wrapped = true;
                json = NULL; /* unescaped on demand (nd_kmslog_record_json) */
                json_len = 0;
            }
        }
    }
    if (shape_first) {
        const shape *evs = shaped ? (sm.inner ? sm.inner_shape : sm.shape) : NULL;
        if (!evs || (evs->evkind != EK_REQUEST && evs->evkind != EK_RESPONSE))
            return -1; /* the driver search decides, as for any line */
        k->st.parsed++;
    }
    if (!shaped) {
        sm.nmet = 0;
        memset(o, 0, sizeof *o);
        memset(sub, 0, sizeof *sub);
        k->fo_dirty[0] = k->fo_dirty[1] = FK_ALL; /* the strict reader may set any key */
        js = NULL;
        const char *p = fobject(brace, end, o, sub, 0);
        if (!p || fws(p, end) != end)
            return 0;
        if (o->v[FK_FIELDS].t == FT_OBJ && sub->v[FK_JSON].t == FT_STR)
            js = &sub->v[FK_JSON];
        else if (o->v[FK_JSON].t == FT_STR)
            js = &o->v[FK_JSON];
        if (js) {
            size_t n;
            char *t = fcopy(&a, aend, js, &n);
            if (!t)
                return 0;
            const char *s = fws(t, t + n);
            if (s >= t + n || *s != '{')
                return 0;
            memset(in, 0, sizeof *in);
            k->fo_dirty[2] = FK_ALL;
            const char *q = fobject(s, t + n, in, NULL, 0);
            if (!q || fws(q, t + n) != t + n)
                return 0;
            ev = in;
            wrapped = true;
            json = t;
            json_len = n;
        }
        if (!k->f.no_shapes && (k->nshapes < SHAPES || k->ninner_shapes < SHAPES)) {
            /* learn the line's shape (and its json string's) for the lines that follow */
            shape *ts = k->shape_tmp;
            if (!ts)
                ts = k->shape_tmp = malloc(sizeof *ts);
            bool ok = ts != NULL;
            if (ok && js)
                ok = shape_build(ts, true, json, json + json_len, false, true, NULL) &&
                     shape_keep(k->inner_shapes, &k->ninner_shapes, ts);
            if (ok && shape_build(ts, false, brace, end, true, js == NULL, js ? js->p : NULL))
                shape_keep(k->shapes, &k->nshapes, ts);
        }
    }
    /* the event's name: a kept template knows it (and whether it is a KMS event), else it is read */
    const shape *evs = shaped ? (sm.inner ? sm.inner_shape : sm.shape) : NULL;
    const char *name;
    bool is_response;
    if (evs && evs->evkind != EK_UNKNOWN) {
        if (evs->evkind == EK_OTHER) {
            k->st.other++;
            return 1;
        }
        name = evs->evname;
        is_response = evs->evkind == EK_RESPONSE;
    } else {
        name = ev->v[FK_EVENT].t == FT_STR ? fcopy(&a, aend, &ev->v[FK_EVENT], NULL) : NULL;
        if (!name || strncmp(name, ND_LOG_EVENT_PREFIX, sizeof ND_LOG_EVENT_PREFIX - 1) != 0) {
            if (ev->v[FK_EVENT].t == FT_STR && !name)
                return 0;
            k->st.other++;
            return 1;
        }
        is_response = strcmp(name, ND_LOG_EVENT_RESPONSE) == 0;
    }
    nd_kmslog_record r; /* every field set here or below (a memset of it cost more than the rest of this) */
    r.event = NULL;
    r.request_id = r.trace_id = r.op = r.kms_request_id = r.raw_code = NULL;
    r.attestation_pcr0 = r.attestation_module_id = NULL;
    r.code[0] = '\0';
    r.owner = k;
    r.line_no = line_no;
    r.line = line;
    r.line_len = len;
    r.json = json;
    r.json_len = json_len;
    k->json_esc = json ? NULL : sm.inner;
    k->json_esc_len = sm.inner_n;
    r.wrapped = wrapped;
    r.prefixed = brace != line;
    r.event_name = name;
    r.is_response = is_response;
    bool full = false; /* cannot happen with the arena sized above; jansson reads the line if it does */
#define FSTR(key) (ev->v[key].t == FT_STR ? (fstr_or(fcopy(&a, aend, &ev->v[key], NULL), &full)) : NULL)
    lazy_rec lz, *lzp = NULL;
    if (k->quiet) {
        /* no callback: only what the filters and the summary read; request_id is hashed in place, the code
         * normalised in place, the rest copied when a filter needs it (kms_request_id: add_id_lazy) */
        lzp = &lz;
        lz.ev = ev;
        lz.arena = &a;
        lz.aend = aend;
        const fval *rid = &ev->v[FK_REQUEST_ID];
        lz.has_rid = rid->t == FT_STR;
        lz.rid_h = 0;
        if (lz.has_rid && (k->request_id || rid->esc)) {
            r.request_id = FSTR(FK_REQUEST_ID);
            lz.rid_h = r.request_id ? hash_str(r.request_id) : 0;
        } else if (lz.has_rid) {
            lz.rid_h = hash_mem(rid->p, rid->n);
        }
        if (k->trace_id)
            r.trace_id = FSTR(FK_TRACE_ID);
        if (k->op)
            r.op = FSTR(FK_OP);
        const fval *c = &ev->v[FK_ERROR_CODE];
        if (c->t == FT_STR && !c->esc)
            nd_kmslog_normalize_code(c->p, c->n, r.code, sizeof r.code);
        else if (c->t == FT_STR)
            r.raw_code = FSTR(FK_ERROR_CODE);
    } else {
        r.request_id = FSTR(FK_REQUEST_ID);
        r.trace_id = FSTR(FK_TRACE_ID);
        r.op = FSTR(FK_OP);
        r.kms_request_id = FSTR(FK_KMS_REQUEST_ID);
        r.attestation_pcr0 = FSTR(FK_ATT_PCR0);
        r.attestation_module_id = FSTR(FK_ATT_MODULE);
        r.raw_code = FSTR(FK_ERROR_CODE);
    }
#undef FSTR
    if (full)
        return 0;
    if (r.raw_code)
        nd_kmslog_normalize_code(r.raw_code, strlen(r.raw_code), r.code, sizeof r.code);
    r.ok = ev->v[FK_OK].t == FT_TRUE ? 1 : ev->v[FK_OK].t == FT_FALSE ? 0 : -1;
    r.duration_ms = ev->v[FK_DURATION].t == FT_NUM ? fnum(&ev->v[FK_DURATION]) : NAN;
    r.ts = fevent_time(ev, &a, aend, &k->tc);
    if (isnan(r.ts) && wrapped)
        r.ts = fevent_time(o, &a, aend, &k->tc);
    if (shaped)
        *rc = accept_event(k, &r, NULL, NULL, ev->v[FK_METRICS].t == FT_OBJ ? &sm : NULL, lzp);
    else
        *rc = accept_event(k, &r, NULL, ev->v[FK_METRICS].t == FT_OBJ ? &ev->v[FK_METRICS] : NULL, NULL, lzp);
    k->json_esc = NULL;
    return 1;
}

static int process_slow(nd_kmslog *k, const char *line, size_t len, const char *brace, size_t jlen, uint64_t line_no);

static int process_candidate(nd_kmslog *k, const char *line, size_t len, uint64_t line_no)
{
    const char *brace = memchr(line, '{', len);
    if (!brace) {
        k->st.noise++;
        return 0;
    }
    /* With an op filter, request lines naming the op are parsed whatever the other needles say: their request_id
     * is how the responses (which carry no op) are paired. */
    bool op_line = k->op && memmem(line, len, k->op, strlen(k->op)) != NULL;
    for (int i = 0; i < k->nand && !op_line; i++) {
        if (!memmem(line, len, k->and_[i].s, k->and_[i].n)) {
            k->st.skipped++;
            return 0;
        }
    }
    if (!op_line && k->errors_check) {
        bool any = false;
        for (int i = 0; i < 4 && !any; i++)
            any = memmem(line, len, k->okf[i].s, k->okf[i].n) != NULL;
        if (!any) {
            k->st.skipped++;
            return 0;
        }
    }
    if (!op_line && k->code_check && !code_ok(k, line, len)) {
        k->st.skipped++;
        return 0;
    }

    k->st.parsed++;
    size_t jlen = len - (size_t)(brace - line);
    int rc = 0;
    if (!k->f.no_fast && process_fast(k, line, len, brace, jlen, line_no, &rc, false))
        return rc;
    return process_slow(k, line, len, brace, jlen, line_no);
}

/* jansson on a parsed candidate (counted as parsed already). Returns 0 or a negative callback value. */
static int process_slow(nd_kmslog *k, const char *line, size_t len, const char *brace, size_t jlen, uint64_t line_no)
{
    int rc;
    json_error_t je;
    json_t *outer = json_loadb(brace, jlen, JSON_ALLOW_NUL, &je);
    if (!json_is_object(outer)) {
        json_decref(outer);
        k->st.malformed++;
        return 0;
    }
    json_t *inner;
    bool wrapped, bad = false;
    const json_t *text = NULL;
    const json_t *ev = unwrap(outer, &inner, &wrapped, &bad, &text);
    if (!ev || !is_kms_event(ev)) {
        if (bad)
            k->st.malformed++;
        else
            k->st.other++;
        json_decref(inner);
        json_decref(outer);
        return 0;
    }
    nd_kmslog_record r;
    memset(&r, 0, sizeof r);
    r.owner = k;
    r.line_no = line_no;
    r.line = line;
    r.line_len = len;
    r.event = ev;
    if (text) {
        r.json = json_string_value(text);
        r.json_len = json_string_length(text);
    } else {
        r.json = brace;
        r.json_len = jlen;
    }
    r.wrapped = wrapped;
    r.prefixed = brace != line;
    r.event_name = jstr(ev, ND_LOG_EVENT);
    r.is_response = strcmp(r.event_name, ND_LOG_EVENT_RESPONSE) == 0;
    r.request_id = jstr(ev, ND_LOG_REQUEST_ID);
    r.trace_id = jstr(ev, ND_LOG_TRACE_ID);
    r.op = jstr(ev, ND_LOG_OP);
    r.kms_request_id = jstr(ev, ND_LOG_KMS_REQUEST_ID);
    r.raw_code = jstr(ev, ND_LOG_ERROR_CODE);
    r.attestation_pcr0 = jstr(ev, ND_LOG_ATTESTATION_PCR0);
    r.attestation_module_id = jstr(ev, ND_LOG_ATTESTATION_MODULE_ID);
    if (r.raw_code)
        nd_kmslog_normalize_code(r.raw_code, strlen(r.raw_code), r.code, sizeof r.code);
    const json_t *okv = json_object_get(ev, ND_LOG_OK);
    r.ok = json_is_boolean(okv) ? json_is_true(okv) : -1;
    r.duration_ms = jnum(ev, ND_LOG_DURATION_MS);
    r.ts = event_time(ev);
    if (isnan(r.ts) && wrapped)
        r.ts = event_time(outer);
    const json_t *m = json_object_get(ev, ND_LOG_METRICS);
    rc = accept_event(k, &r, json_is_object(m) ? m : NULL, NULL, NULL, NULL);
    json_decref(inner);
    json_decref(outer);
    return rc;
}
/* Scans the complete lines of buf (and the last partial one when final). Returns the bytes consumed through
 * *used and 0, or the callback's negative value. */
static int scan_block(nd_kmslog *k, const char *buf, size_t len, bool final, size_t *used)
{
    const char *p = buf, *end = buf + len;
    const char *hit = NULL;
    bool gone = false;
    int rc = 0;
    *used = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            if (!final)
                break;
            nl = end;
        }
        size_t ll = (size_t)(nl - p);
        uint64_t line_no = ++k->st.lines;
        if (ll && p[ll - 1] == '\r')
            ll--;
        int done = 0;
        if (ll == 0) {
            k->st.blank++;
            done = 1;
        } else if (k->shape_first && k->nshapes) {
            /* a line a kept template reads as a KMS event holds the driver needle: no search for it */
            const char *brace = *p == '{' ? p : memchr(p, '{', ll);
            if (!brace) {
                k->st.noise++;
                done = 1;
            } else {
                size_t jlen = ll - (size_t)(brace - p);
                done = process_fast(k, p, ll, brace, jlen, line_no, &rc, true);
                if (done == 0) /* counted as parsed, not read: jansson reads it, as process_candidate would */
                    rc = process_slow(k, p, ll, brace, jlen, line_no);
                done = done >= 0;
            }
        }
        if (!done) {
            /* The next hit of any driver needle at or after this line. */
            if (!gone && (!hit || hit < p)) {
                hit = find_any(k->drv, k->ndrv, p, end);
                gone = hit == NULL;
            }
            if (!hit || hit >= nl) {
                if (memchr(p, '{', ll))
                    k->st.skipped++;
                else
                    k->st.noise++;
            } else {
                rc = process_candidate(k, p, ll, line_no);
            }
        }
        p = nl < end ? nl + 1 : end;
        if (rc < 0)
            break;
    }
    *used = (size_t)(p - buf);
    return rc;
}

/* ---- public ----------------------------------------------------------------------------------------------------- */

static bool plain_needle(const char *s)
{
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

int nd_kmslog_new(const nd_kmslog_filter *f, nd_kmslog_cb cb, void *ud, nd_kmslog **out, nd_err *err)
{
    *out = NULL;
    nd_kmslog_filter zero;
    memset(&zero, 0, sizeof zero);
    if (!f)
        f = &zero;
    if ((f->request_id && !*f->request_id) || (f->trace_id && !*f->trace_id) || (f->op && !*f->op) ||
        (f->code && !*f->code))
        return nd_err_set(err, -EINVAL, "kmslog: an empty filter value matches nothing (leave it out instead)");
    if (f->has_since && f->has_until && f->since > f->until)
        return nd_err_set(err, -EINVAL, "kmslog: the time range ends before it starts");
    nd_kmslog *k = calloc(1, sizeof *k);
    if (!k)
        return nd_err_set(err, -ENOMEM, "kmslog: out of memory");
    k->fo = calloc(3, sizeof *k->fo);
    if (!k->fo) {
        free(k);
        return nd_err_set(err, -ENOMEM, "kmslog: out of memory");
    }
    k->f = *f;
    k->cb = cb;
    k->ud = ud;
    k->request_id = f->request_id ? strdup(f->request_id) : NULL;
    k->trace_id = f->trace_id ? strdup(f->trace_id) : NULL;
    const char *op = f->op;
    if (op && strcasecmp(op, "decrypt") == 0)
        op = "Decrypt";
    else if (op && (strcasecmp(op, "generatedatakey") == 0 || strcasecmp(op, "generate_data_key") == 0))
        op = "GenerateDataKey";
    k->op = op ? strdup(op) : NULL;
    k->f.request_id = k->request_id;
    k->f.trace_id = k->trace_id;
    k->f.op = k->op;
    k->f.code = NULL;
    k->newest_ts = NAN;
    if ((f->request_id && !k->request_id) || (f->trace_id && !k->trace_id) || (f->op && !k->op)) {
        nd_kmslog_free(k);
        return nd_err_set(err, -ENOMEM, "kmslog: out of memory");
    }
    const char *code = f->code ? f->code : f->throttled ? "upstream_throttled" : NULL;
    if (f->code && f->throttled) {
        char a[64];
        nd_kmslog_normalize_code(f->code, strlen(f->code), a, sizeof a);
        if (strcmp(a, "upstream_throttled") != 0) {
            nd_kmslog_free(k);
            return nd_err_set(err, -EINVAL, "kmslog: throttled and code=%s cannot both match", f->code);
        }
    }
    if (code) {
        nd_kmslog_normalize_code(code, strlen(code), k->code, sizeof k->code);
        if (!k->code[0]) {
            nd_kmslog_free(k);
            return nd_err_set(err, -EINVAL, "kmslog: bad error code '%s'", code);
        }
    }

    /* The driver is the most selective filter; the others become checks on its candidates. */
    static const char *const okf[4] = {"\"ok\":false", "\\\"ok\\\":false", "\"ok\": false", "\\\"ok\\\": false"};
    for (int i = 0; i < 4; i++)
        needle_init(&k->okf[i], okf[i], strlen(okf[i]));
    needle ids[2];
    int nids = 0;
    if (k->request_id && plain_needle(k->request_id))
        needle_init(&ids[nids++], k->request_id, strlen(k->request_id));
    if (k->trace_id && plain_needle(k->trace_id))
        needle_init(&ids[nids++], k->trace_id, strlen(k->trace_id));
    k->code_check = k->code[0] != 0;
    if (k->op) {
        /* Request lines of the op carry none of the other needles: drive with the event prefix, check the rest. */
        needle_init(&k->drv[k->ndrv++], ND_LOG_EVENT_PREFIX, sizeof ND_LOG_EVENT_PREFIX - 1);
        for (int i = 0; i < nids; i++)
            k->and_[k->nand++] = ids[i];
        k->errors_check = f->errors_only;
    } else if (nids > 0) {
        k->drv[k->ndrv++] = ids[0];
        for (int i = 1; i < nids; i++)
            k->and_[k->nand++] = ids[i];
        k->errors_check = f->errors_only;
    } else if (k->code[0]) {
        /* The code as both proxies spell it: upstream_throttled and UpstreamThrottled (the value check after
         * "error_code" then rejects a code quoted in a message). */
        snprintf(k->code_spell[0], sizeof k->code_spell[0], "%s", k->code);
        size_t o = 0;
        bool up = true;
        for (const char *c = k->code; *c && o + 1 < sizeof k->code_spell[1]; c++) {
            if (*c == '_') {
                up = true;
                continue;
            }
            k->code_spell[1][o++] = up ? (char)toupper((unsigned char)*c) : *c;
            up = false;
        }
        k->code_spell[1][o] = '\0';
        needle_init(&k->drv[k->ndrv++], k->code_spell[0], strlen(k->code_spell[0]));
        if (strcmp(k->code_spell[0], k->code_spell[1]) != 0)
            needle_init(&k->drv[k->ndrv++], k->code_spell[1], strlen(k->code_spell[1]));
        k->errors_check = f->errors_only;
    } else if (f->errors_only) {
        for (int i = 0; i < 4; i++)
            k->drv[k->ndrv++] = k->okf[i];
    } else {
        needle_init(&k->drv[k->ndrv++], ND_LOG_EVENT_PREFIX, sizeof ND_LOG_EVENT_PREFIX - 1);
        k->shape_first = !f->no_shapes && !f->no_fast;
    }
    *out = k;
    return 0;
}

int nd_kmslog_feed(nd_kmslog *k, const void *data, size_t n, nd_err *err)
{
    const char *buf = data;
    k->st.bytes += n;
    size_t used;
    int rc;
    if (k->carry_len) {
        /* Complete the kept partial line first. */
        const char *nl = memchr(buf, '\n', n);
        size_t take = nl ? (size_t)(nl - buf) + 1 : n;
        if (k->carry_len + take > k->carry_cap) {
            size_t cap = k->carry_cap ? k->carry_cap : 4096;
            while (cap < k->carry_len + take)
                cap *= 2;
            char *c = realloc(k->carry, cap);
            if (!c)
                return nd_err_set(err, -ENOMEM, "kmslog: out of memory for a %zu-byte line", k->carry_len + take);
            k->carry = c;
            k->carry_cap = cap;
        }
        memcpy(k->carry + k->carry_len, buf, take);
        k->carry_len += take;
        buf += take;
        n -= take;
        if (!nl)
            return 0;
        rc = scan_block(k, k->carry, k->carry_len, false, &used);
        k->carry_len = 0;
        if (rc < 0)
            return rc;
    }
    rc = scan_block(k, buf, n, false, &used);
    if (rc < 0)
        return rc;
    if (used < n) {
        size_t rest = n - used;
        if (rest > k->carry_cap) {
            size_t cap = k->carry_cap ? k->carry_cap : 4096;
            while (cap < rest)
                cap *= 2;
            char *c = realloc(k->carry, cap);
            if (!c)
                return nd_err_set(err, -ENOMEM, "kmslog: out of memory for a %zu-byte line", rest);
            k->carry = c;
            k->carry_cap = cap;
        }
        memcpy(k->carry, buf + used, rest);
        k->carry_len = rest;
    }
    return 0;
}

int nd_kmslog_finish(nd_kmslog *k, nd_err *err)
{
    (void)err;
    if (!k->carry_len)
        return 0;
    size_t used;
    int rc = scan_block(k, k->carry, k->carry_len, true, &used);
    k->carry_len = 0;
    return rc;
}

/* The time of the first line at or after off (from the next line start) that carries one in its JSON (the wrapper's
 * or the event's timestamp/ts/time), within 64 KiB; NAN when none. */
static double probe_time(nd_kmslog *k, int fd, off_t off, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap, off);
    if (n <= 0)
        return NAN;
    const char *p = buf, *end = buf + n;
    if (off > 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return NAN;
        p = nl + 1;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        const char *brace = memchr(p, '{', (size_t)(nl - p));
        if (brace) {
            fobj o, sub;
            memset(&o, 0, sizeof o);
            memset(&sub, 0, sizeof sub);
            const char *q = fobject(brace, nl, &o, &sub, 0);
            if (q) {
                size_t need = 2 * (size_t)(nl - brace) + 1024;
                if (k->arena_cap < need) {
                    char *a = realloc(k->arena, need);
                    if (!a)
                        return NAN;
                    k->arena = a;
                    k->arena_cap = need;
                }
                char *a = k->arena;
                double t = fevent_time(&o, &a, k->arena + k->arena_cap, NULL);
                if (!isnan(t))
                    return t;
            }
        }
        p = nl + 1;
    }
    return NAN;
}

/* Where to start reading a regular file for since=: binary search on the lines' times, from a margin of PAIR_WINDOW
 * before since (logs written by several threads are almost, not exactly, in time order). A probe that finds no
 * time moves the start earlier, never later, so a log without times is read whole. */
static off_t seek_start(nd_kmslog *k, int fd, off_t size)
{
    size_t cap = 64 << 10;
    char *buf = malloc(cap);
    if (!buf)
        return 0;
    off_t lo = 0, hi = size;
    double target = k->f.since - PAIR_WINDOW;
    while (hi - lo > (off_t)(1 << 20)) {
        off_t mid = lo + (hi - lo) / 2;
        double t = probe_time(k, fd, mid, buf, cap);
        if (!isnan(t) && t < target)
            lo = mid;
        else
            hi = mid;
    }
    free(buf);
    return lo;
}

static int scan_fd_read(nd_kmslog *k, int fd, const char *path, off_t start, nd_err *err)
{
    /* 1 MiB read(2) blocks rather than mmap: on a 1 GiB log in the page cache, mmap cost 4x the CPU time (every
     * first touch of a page is a cache miss in the scanner), while the kernel's copy leaves each block in cache. */
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "kmslog: out of memory");
    if (start > 0 && lseek(fd, start, SEEK_SET) < 0) {
        free(buf);
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    }
    bool partial = start > 0; /* the first line may be cut: skip to the next line start */
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        const char *b = buf;
        size_t n = (size_t)r;
        if (partial) {
            const char *nl = memchr(b, '\n', n);
            size_t skip = nl ? (size_t)(nl - b) + 1 : n;
            k->st.seek_skipped += skip;
            b += skip;
            n -= skip;
            partial = nl == NULL;
        }
        rc = nd_kmslog_feed(k, b, n, err);
        if (rc < 0)
            break;
    }
    free(buf);
    if (rc == 0)
        rc = nd_kmslog_finish(k, err);
    return rc;
}

static int scan_gzip(nd_kmslog *k, int fd, const char *path, nd_err *err)
{
    int dfd = dup(fd);
    if (dfd < 0)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    gzFile gz = gzdopen(dfd, "rb");
    if (!gz) {
        close(dfd);
        return nd_err_set(err, -ENOMEM, "%s: cannot open gzip stream", path);
    }
    gzbuffer(gz, 1 << 18);
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int rc = buf ? 0 : nd_err_set(err, -ENOMEM, "kmslog: out of memory");
    while (rc == 0) {
        int r = gzread(gz, buf, (unsigned)cap);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(gz, &zerr);
            rc = nd_err_set(err, -EIO, "%s: gzip: %s", path, m ? m : "read error");
            break;
        }
        if (r == 0)
            break;
        rc = nd_kmslog_feed(k, buf, (size_t)r, err);
    }
    free(buf);
    gzclose(gz);
    if (rc == 0)
        rc = nd_kmslog_finish(k, err);
    return rc;
}

int nd_kmslog_scan_file(nd_kmslog *k, const char *path, nd_err *err)
{
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat sb;
    int rc;
    if (fstat(fd, &sb) < 0) {
        rc = nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (S_ISDIR(sb.st_mode)) {
        rc = nd_err_set(err, -EISDIR, "%s: is a directory", path);
        goto out;
    }
    /* Finish any partial line from an earlier source so lines never join across files. */
    rc = nd_kmslog_finish(k, err);
    if (rc < 0)
        goto out;
    unsigned char magic[2];
    if (S_ISREG(sb.st_mode) && sb.st_size >= 2 && pread(fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        rc = scan_gzip(k, fd, path, err);
        goto out;
    }
    off_t start = 0;
    if (k->f.seek && k->f.has_since && S_ISREG(sb.st_mode) && sb.st_size > (off_t)(4 << 20)) {
        start = seek_start(k, fd, sb.st_size);
        k->st.seek_skipped += (uint64_t)start;
    }
    rc = scan_fd_read(k, fd, path, start, err);
out:
    if (!is_stdin)
        close(fd);
    return rc;
}

const nd_kmslog_stats *nd_kmslog_stats_of(const nd_kmslog *k)
{
    return &k->st;
}

size_t nd_kmslog_error_codes(const nd_kmslog *k)
{
    return k->ncodes;
}

int nd_kmslog_error_at(const nd_kmslog *k, size_t i, const char **code, uint64_t *count)
{
    if (i >= k->ncodes)
        return -ERANGE;
    *code = k->codes[i].code;
    *count = k->codes[i].n;
    return 0;
}

size_t nd_kmslog_durations(const nd_kmslog *k)
{
    return k->ndurs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

bool nd_kmslog_latency_exact(const nd_kmslog *k)
{
    return k->hist == NULL;
}

int nd_kmslog_percentile(nd_kmslog *k, double p, double *out)
{
    if (!(p > 0 && p <= 100))
        return -EINVAL;
    if (!k->ndurs)
        return -ENODATA;
    double rank = ceil(p / 100.0 * (double)k->ndurs);
    size_t idx = rank < 1 ? 0 : (size_t)rank - 1;
    if (idx >= k->ndurs)
        idx = k->ndurs - 1;
    if (k->hist) {
        if (idx == 0 || idx == k->ndurs - 1) {
            *out = idx == 0 ? k->dur_min : k->dur_max;
            return 0;
        }
        uint64_t seen = 0;
        size_t b = 0;
        for (; b < DUR_BUCKETS; b++) {
            seen += k->hist[b];
            if (seen > idx)
                break;
        }
        double v = b == 0 ? 0 : DUR_LOW * pow(dur_gamma(), (double)b) * 2 / (1 + dur_gamma());
        *out = v < k->dur_min ? k->dur_min : v > k->dur_max ? k->dur_max : v;
        return 0;
    }
    if (!k->durs_sorted) {
        qsort(k->durs, k->ndurs, sizeof *k->durs, cmp_double);
        k->durs_sorted = true;
    }
    *out = k->durs[idx];
    return 0;
}

const nd_kmslog_counter *nd_kmslog_counters(const nd_kmslog *k, size_t *n)
{
    *n = k->ncounters;
    return k->counters;
}

const nd_kmslog_id *nd_kmslog_ids(const nd_kmslog *k, size_t *n, uint64_t *dropped)
{
    *n = k->nids;
    if (dropped)
        *dropped = k->ids_dropped;
    return k->ids;
}

void nd_kmslog_free(nd_kmslog *k)
{
    if (!k)
        return;
    free(k->request_id);
    free(k->trace_id);
    free(k->op);
    free(k->carry);
    free(k->durs);
    free(k->hist);
    free(k->ring);
    free(k->bucket);
    free(k->arena);
    free(k->id_hash);
    free(k->json_buf);
    free(k->shape_tmp);
    free(k->fo);
    for (int i = 0; i < k->nshapes; i++)
        free(k->shapes[i]);
    for (int i = 0; i < k->ninner_shapes; i++)
        free(k->inner_shapes[i]);
    json_decref(k->lazy);
    for (size_t i = 0; i < k->nids; i++) {
        free(k->ids[i].kms_request_id);
        free(k->ids[i].request_id);
    }
    free(k->ids);
    free(k);
}
