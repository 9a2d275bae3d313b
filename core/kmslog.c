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
 */
#include "nd_kmslog.h"

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

#define MAX_CODES 256
#define MAX_COUNTERS 64
#define MAX_NEEDLES 5

typedef struct needle {
    const char *s;
    size_t n;
} needle;

typedef struct code_count {
    char code[64];
    uint64_t n;
} code_count;

struct nd_kmslog {
    nd_kmslog_filter f;
    char *request_id, *trace_id, *op;
    char code[64];      /* normalised code filter, "" = none */
    nd_kmslog_cb cb;
    void *ud;

    needle drv[MAX_NEEDLES]; /* the driver: a line is a candidate when it holds any of these */
    int ndrv;
    needle and_[MAX_NEEDLES]; /* a candidate must also hold all of these */
    int nand;
    needle okf[4];      /* the spellings of ok:false (plain, escaped, with a space) */
    char code_spell[2][64]; /* the code as snake_case and PascalCase */
    bool errors_check;  /* a candidate must hold one of okf (when they do not drive) */
    bool code_check;    /* a code filter: the line's error_code value must be the code (code_value) */

    json_t *op_ids;     /* request_ids of request lines that matched the op filter (a jansson object as a set) */

    char *carry;        /* partial line kept between feeds */
    size_t carry_len, carry_cap;

    nd_kmslog_stats st;
    code_count codes[MAX_CODES];
    size_t ncodes;
    double *durs;
    size_t ndurs, durs_cap;
    bool durs_sorted;
    nd_kmslog_counter counters[MAX_COUNTERS];
    size_t ncounters;
    nd_kmslog_id *ids;
    size_t nids, ids_cap;
    uint64_t ids_dropped;
    json_t *id_set;
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

/* RFC 3339 (and the date-only / space-separated / no-zone variants). Returns 0 or -1. */
static int parse_rfc3339(const char *s, double *out)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    double frac = 0;
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
            if (*p == '.' || *p == ',') {
                p++;
                double scale = 0.1;
                if (!isdigit((unsigned char)*p))
                    return -1;
                while (isdigit((unsigned char)*p)) {
                    frac += (*p - '0') * scale;
                    scale /= 10;
                    p++;
                }
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return -1;
    }
    int off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (digits(&p, 2, &oh))
            return -1;
        if (*p == ':')
            p++;
        if (isdigit((unsigned char)*p) && digits(&p, 2, &om))
            return -1;
        off = sign * (oh * 3600 + om * 60);
    }
    if (*p)
        return -1;
    double days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out = days * 86400.0 + h * 3600 + mi * 60 + sec + frac - off;
    return 0;
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
            if (w[0] | w[1]) {
                for (int i = 0; i < 16; i++) {
                    if (!any[i])
                        continue;
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
        const char *h = memmem(p, (size_t)(end - p), "error_code", 10);
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

static void add_duration(nd_kmslog *k, double v)
{
    if (k->ndurs == k->durs_cap) {
        size_t cap = k->durs_cap ? k->durs_cap * 2 : 1024;
        double *d = realloc(k->durs, cap * sizeof *d);
        if (!d)
            return; /* summary degrades, scanning goes on */
        k->durs = d;
        k->durs_cap = cap;
    }
    k->durs[k->ndurs++] = v;
    k->durs_sorted = false;
}

static void add_metrics(nd_kmslog *k, const json_t *m)
{
    const char *name;
    const json_t *v;
    json_object_foreach((json_t *)m, name, v) {
        if (!json_is_number(v))
            continue;
        double x = json_number_value(v);
        nd_kmslog_counter *c = NULL;
        for (size_t i = 0; i < k->ncounters; i++)
            if (strcmp(k->counters[i].name, name) == 0) {
                c = &k->counters[i];
                break;
            }
        if (!c) {
            if (k->ncounters == MAX_COUNTERS || strlen(name) >= sizeof c->name)
                continue;
            c = &k->counters[k->ncounters++];
            memset(c, 0, sizeof *c);
            snprintf(c->name, sizeof c->name, "%s", name);
            size_t nl = strlen(name);
            c->monotonic = nl > 6 && strcmp(name + nl - 6, "_total") == 0;
            c->first = c->last = c->min = c->max = x;
            c->samples = 1;
            continue;
        }
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
}

static void add_id(nd_kmslog *k, const nd_kmslog_record *r)
{
    if (json_object_get(k->id_set, r->kms_request_id))
        return;
    size_t cap = k->f.max_ids ? k->f.max_ids : 100000;
    if (k->nids >= cap) {
        k->ids_dropped++;
        json_object_set_new(k->id_set, r->kms_request_id, json_true()); /* count each dropped value once */
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
    json_object_set_new(k->id_set, r->kms_request_id, json_true());
}

/* ---- one line --------------------------------------------------------------------------------------------------- */

static bool is_kms_event(const json_t *o)
{
    const char *ev = jstr(o, "event");
    return ev && strncmp(ev, "kms_proxy_", 10) == 0;
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

static bool op_matches(nd_kmslog *k, nd_kmslog_record *r)
{
    if (!k->op)
        return true;
    if (r->op && strcasecmp(r->op, k->op) == 0) {
        if (!r->is_response && r->request_id)
            json_object_set_new(k->op_ids, r->request_id, json_true());
        return true;
    }
    if (r->op) /* the line names another op */
        return false;
    return r->is_response && r->request_id && json_object_get(k->op_ids, r->request_id) != NULL;
}

static int process_candidate(nd_kmslog *k, const char *line, size_t len, uint64_t line_no)
{
    const char *brace = memchr(line, '{', len);
    if (!brace) {
        k->st.noise++;
        return 0;
    }
    /* With an op filter, request lines naming the op are parsed whatever the other needles say: their request_id
     * is how the responses (which carry no op) are matched. */
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
    json_error_t je;
    size_t jlen = len - (size_t)(brace - line);
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
    k->st.events++;
    if (wrapped)
        k->st.wrapped++;
    else
        k->st.plain++;
    if (brace != line)
        k->st.prefixed++;

    nd_kmslog_record r;
    memset(&r, 0, sizeof r);
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
    r.event_name = jstr(ev, "event");
    r.is_response = strcmp(r.event_name, "kms_proxy_response") == 0;
    r.request_id = jstr(ev, "request_id");
    r.trace_id = jstr(ev, "trace_id");
    r.op = jstr(ev, "op");
    r.kms_request_id = jstr(ev, "kms_request_id");
    r.raw_code = jstr(ev, "error_code");
    r.attestation_pcr0 = jstr(ev, "attestation_pcr0");
    r.attestation_module_id = jstr(ev, "attestation_module_id");
    if (r.raw_code)
        nd_kmslog_normalize_code(r.raw_code, strlen(r.raw_code), r.code, sizeof r.code);
    const json_t *okv = json_object_get(ev, "ok");
    r.ok = json_is_boolean(okv) ? json_is_true(okv) : -1;
    if (r.ok == 0 && !r.code[0])
        snprintf(r.code, sizeof r.code, "%s", "unknown");
    r.duration_ms = jnum(ev, "duration_ms");
    r.ts = event_time(ev);
    if (isnan(r.ts) && wrapped)
        r.ts = event_time(outer);

    bool match = true;
    if (k->request_id && (!r.request_id || strcmp(r.request_id, k->request_id) != 0))
        match = false;
    if (match && k->trace_id && (!r.trace_id || strcmp(r.trace_id, k->trace_id) != 0))
        match = false;
    bool op_ok = op_matches(k, &r); /* always evaluated: it records the request ids of the op */
    bool is_error = r.is_response && (r.ok == 0 || (r.ok < 0 && r.code[0]));
    if (match && k->f.errors_only && !is_error)
        match = false;
    if (match && k->code[0] && strcmp(r.code, k->code) != 0)
        match = false;
    if (match && (k->f.has_since || k->f.has_until)) {
        if (isnan(r.ts)) {
            k->st.untimed++;
            match = false;
        } else if ((k->f.has_since && r.ts < k->f.since) || (k->f.has_until && r.ts > k->f.until)) {
            match = false;
        }
    }
    if (!op_ok)
        match = false;

    int rc = 0;
    if (match) {
        k->st.matched++;
        if (r.is_response) {
            k->st.matched_responses++;
            if (is_error)
                count_code(k, r.code);
            if (!isnan(r.duration_ms))
                add_duration(k, r.duration_ms);
            const json_t *m = json_object_get(ev, "metrics");
            if (json_is_object(m))
                add_metrics(k, m);
        } else {
            k->st.matched_requests++;
        }
        if (r.kms_request_id && *r.kms_request_id)
            add_id(k, &r);
        if (k->cb)
            rc = k->cb(k->ud, &r);
    }
    json_decref(inner);
    json_decref(outer);
    return rc < 0 ? rc : 0;
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
        if (ll == 0) {
            k->st.blank++;
        } else {
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
    k->id_set = json_object();
    k->op_ids = json_object();
    if ((f->request_id && !k->request_id) || (f->trace_id && !k->trace_id) || (f->op && !k->op) || !k->id_set ||
        !k->op_ids) {
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
        needle_init(&k->drv[k->ndrv++], "kms_proxy_", 10);
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
        needle_init(&k->drv[k->ndrv++], "kms_proxy_", 10);
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

static int scan_fd_read(nd_kmslog *k, int fd, const char *path, nd_err *err)
{
    /* 1 MiB read(2) blocks rather than mmap: on a 1 GiB log in the page cache, mmap cost 4x the CPU time (every
     * first touch of a page is a cache miss in the scanner), while the kernel's copy leaves each block in cache. */
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "kmslog: out of memory");
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
        rc = nd_kmslog_feed(k, buf, (size_t)r, err);
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
    rc = scan_fd_read(k, fd, path, err);
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

int nd_kmslog_percentile(nd_kmslog *k, double p, double *out)
{
    if (!(p > 0 && p <= 100))
        return -EINVAL;
    if (!k->ndurs)
        return -ENODATA;
    if (!k->durs_sorted) {
        qsort(k->durs, k->ndurs, sizeof *k->durs, cmp_double);
        k->durs_sorted = true;
    }
    double rank = ceil(p / 100.0 * (double)k->ndurs);
    size_t idx = rank < 1 ? 0 : (size_t)rank - 1;
    if (idx >= k->ndurs)
        idx = k->ndurs - 1;
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
    for (size_t i = 0; i < k->nids; i++) {
        free(k->ids[i].kms_request_id);
        free(k->ids[i].request_id);
    }
    free(k->ids);
    json_decref(k->id_set);
    json_decref(k->op_ids);
    free(k);
}
