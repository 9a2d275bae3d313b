/*
 * scrub.c — the secret scrubber (contract in nd_scrub.h).
 *
 * Design. Secrets never contain a newline (except PEM blocks, handled separately), so the stream is cut into lines
 * and every rule runs on whole lines: a secret split across two feed() chunks is reassembled before any rule sees
 * it. Regular expressions are slow on gigabytes of logs, so each built-in rule carries literal "triggers"
 * (lower-case). One pass over a block of complete lines finds every trigger occurrence (a bitmap of the triggers'
 * first two bytes, then a case-insensitive compare): a block with none goes to the sink in one call, untouched;
 * otherwise only the lines holding a trigger are rewritten and the runs between them go out as they are. Only
 * those lines pay for regexec. Rules added at run time have no trigger and run on every line.
 *
 * PEM private keys: a BEGIN…PRIVATE KEY marker with its END on the same line (JSON-escaped keys) is a plain rule;
 * a BEGIN marker without its END opens a block: the marker line is kept, a "[REDACTED]" line is written, every line
 * up to the END marker is dropped, and the END marker line is kept. A stream that ends inside a block drops the rest.
 *
 * Replacement is done with REG_STARTEND (glibc/BSD), so lines need no NUL terminator and can hold NUL bytes.
 */
#include "nd_scrub.h"

#include <jansson.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRIGGERS 4
#define BLOCK_MAX (256u * 1024u)

typedef struct rule {
    char *name;
    regex_t re;
    char *repl;
    const char *trig[MAX_TRIGGERS]; /* lower-case literals; none means "always run" */
    int ntrig;
    size_t count;
    bool found;                     /* a trigger occurs in the current block */
} rule;

typedef struct trigent {
    const char *s;
    size_t len;
    int rule; /* index, or -1 for the PEM marker */
} trigent;

struct nd_scrub {
    rule *rules;
    size_t nrules, rcap;
    nd_scrub_sink sink;
    void *ud;
    int sink_err;
    bool in_pem;
    size_t pem_count;
    char *pend; /* partial line carried between feeds */
    size_t plen, pcap;
    char *lower; /* lower-cased copy of the block being examined */
    size_t lcap;
    char *a, *b; /* work buffers for rewriting one line */
    size_t acap, bcap;
    char *t;     /* lower-cased copy of a rewritten line */
    size_t tcap;
    size_t *hits; /* offsets of trigger occurrences in the block */
    size_t nhits, hcap;
    trigent *trigs;  /* every trigger, for the one-pass search */
    size_t ntrigs, table_rules;
    unsigned char bigram[65536 / 8]; /* first two bytes of some trigger */
};

static const char *const builtin_names[] = {
    "imds_credentials", "private_key", "authorization", "x_amz_security_token", "aws_session_token",
    "aws_secret_access_key", "sigv4_signature", "aws_access_key_id", NULL};

const char *const *nd_scrub_builtin_names(void)
{
    return builtin_names;
}

#define PEM_RULE "private_key"

/* ---- small buffers ------------------------------------------------------------------------------------------- */

static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need == 0)
        need = 1; /* always a valid pointer, even for zero bytes (memcpy's arguments must not be NULL) */
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *p = realloc(*buf, n);
    if (!p)
        return -ENOMEM;
    *buf = p;
    *cap = n;
    return 0;
}

static int emit(nd_scrub *s, const void *p, size_t n)
{
    if (s->sink_err || n == 0)
        return s->sink_err;
    int rc = s->sink(s->ud, p, n);
    if (rc < 0)
        s->sink_err = rc;
    return s->sink_err;
}

static void lower_into(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
}

/* ---- rules --------------------------------------------------------------------------------------------------- */

static int add_rule(nd_scrub *s, const char *name, const char *ere, const char *repl, bool icase,
                    const char *const *trig, nd_err *err)
{
    if (!name || !ere || !repl)
        return nd_err_set(err, -EINVAL, "scrub rule: name, expression and replacement are required");
    if (s->nrules == s->rcap) {
        size_t n = s->rcap ? s->rcap * 2 : 16;
        rule *r = realloc(s->rules, n * sizeof *r);
        if (!r)
            return nd_err_set(err, -ENOMEM, "scrub rule: out of memory");
        s->rules = r;
        s->rcap = n;
    }
    rule *r = &s->rules[s->nrules];
    memset(r, 0, sizeof *r);
    int rc = regcomp(&r->re, ere, REG_EXTENDED | (icase ? REG_ICASE : 0));
    if (rc != 0) {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof msg);
        return nd_err_set(err, -EINVAL, "scrub rule '%s': bad regular expression: %s", name, msg);
    }
    r->name = strdup(name);
    r->repl = strdup(repl);
    if (!r->name || !r->repl) {
        regfree(&r->re);
        free(r->name);
        free(r->repl);
        return nd_err_set(err, -ENOMEM, "scrub rule: out of memory");
    }
    for (int i = 0; trig && trig[i] && i < MAX_TRIGGERS; i++)
        r->trig[r->ntrig++] = trig[i];
    return (int)s->nrules++;
}

int nd_scrub_add_rule(nd_scrub *s, const char *name, const char *ere, const char *replacement, bool icase, nd_err *err)
{
    return add_rule(s, name, ere, replacement, icase, NULL, err);
}

typedef struct builtin {
    const char *name, *ere, *repl;
    bool icase;
    const char *trig[MAX_TRIGGERS];
} builtin;

/* Order matters: the IMDS document first (its fields would otherwise be counted by the generic rules), the
 * Authorization header before what it contains (credential, signature). Each replacement leaves text the later rules
 * do not match again ("[REDACTED]" is outside every value class). */
static const builtin builtins[] = {
    {"imds_credentials", "(\"(AccessKeyId|SecretAccessKey|Token|SessionToken)\"[[:space:]]*:[[:space:]]*\")[^\"]*\"",
     "\\1[REDACTED]\"", false, {"accesskeyid\"", "secretaccesskey\"", "token\""}},
    {"private_key", "(-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----)[^-]*(-----END [A-Z0-9 ]*PRIVATE KEY-----)",
     "\\1[REDACTED]\\2", false, {"private key-----"}},
    {"authorization", "(authorization[\"']?[[:space:]]*[:=][[:space:]]*)(\"[^\"]*\"|'[^']*')", "\\1\"[REDACTED]\"",
     true, {"authorization"}},
    {"authorization", "(authorization[[:space:]]*[:=][[:space:]]*)[^\"'[:space:]][^\r\n]*", "\\1[REDACTED]", true,
     {"authorization"}},
    {"x_amz_security_token", "(x-amz-security-token[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)[^[:space:]&\"',;]+",
     "\\1[REDACTED]", true, {"x-amz-security-token"}},
    {"aws_session_token",
     "((aws_?session_?token|aws_?security_?token|session_?token)[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)"
     "[A-Za-z0-9/+=%_-]{16,}",
     "\\1[REDACTED]", true, {"token"}},
    {"aws_secret_access_key",
     "((aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)"
     "[A-Za-z0-9/+=]{20,}",
     "\\1[REDACTED]", true, {"secret"}},
    {"sigv4_signature", "((x-amz-signature|signature)[[:space:]]*=[[:space:]]*)[0-9a-fA-F]{64}", "\\1[REDACTED]", true,
     {"signature"}},
    {"aws_access_key_id", "(^|[^A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{16}", "\\1\\2[REDACTED]", false, {"akia", "asia"}},
};

nd_scrub *nd_scrub_new_empty(nd_err *err)
{
    nd_scrub *s = calloc(1, sizeof *s);
    if (!s)
        nd_err_set(err, -ENOMEM, "scrubber: out of memory");
    return s;
}

nd_scrub *nd_scrub_new(nd_err *err)
{
    nd_scrub *s = nd_scrub_new_empty(err);
    if (!s)
        return NULL;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const builtin *b = &builtins[i];
        if (add_rule(s, b->name, b->ere, b->repl, b->icase, b->trig, err) < 0) {
            nd_scrub_free(s);
            return NULL;
        }
    }
    return s;
}

void nd_scrub_free(nd_scrub *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nrules; i++) {
        regfree(&s->rules[i].re);
        free(s->rules[i].name);
        free(s->rules[i].repl);
    }
    free(s->rules);
    free(s->pend);
    free(s->lower);
    free(s->a);
    free(s->b);
    free(s->t);
    free(s->hits);
    free(s->trigs);
    free(s);
}

/* ---- one line ------------------------------------------------------------------------------------------------ */

/* Appends the replacement of rule r for match pm (offsets into src) to *dst. */
static int append_repl(char **dst, size_t *dcap, size_t *dlen, const char *repl, const char *src,
                       const regmatch_t *pm)
{
    for (const char *p = repl; *p; p++) {
        const char *piece = p;
        size_t plen = 1;
        if (*p == '\\' && p[1] >= '0' && p[1] <= '9') {
            const regmatch_t *m = &pm[p[1] - '0'];
            p++;
            if (m->rm_so < 0)
                continue;
            piece = src + m->rm_so;
            plen = (size_t)(m->rm_eo - m->rm_so);
        } else if (*p == '\\' && p[1] == '\\') {
            p++;
        }
        if (reserve(dst, dcap, *dlen + plen) < 0)
            return -ENOMEM;
        memcpy(*dst + *dlen, piece, plen);
        *dlen += plen;
    }
    return 0;
}

/* Runs rule r over line (cur, len) into s->b; returns the number of replacements (the result is in b), or < 0. */
static int apply_rule(nd_scrub *s, rule *r, const char *cur, size_t len, size_t *outlen)
{
    regmatch_t pm[10];
    size_t pos = 0, olen = 0;
    int n = 0;
    while (pos <= len) {
        pm[0].rm_so = (regoff_t)pos;
        pm[0].rm_eo = (regoff_t)len;
        if (regexec(&r->re, cur, 10, pm, REG_STARTEND | (pos > 0 ? REG_NOTBOL : 0)) != 0)
            break;
        size_t so = (size_t)pm[0].rm_so, eo = (size_t)pm[0].rm_eo;
        if (reserve(&s->b, &s->bcap, olen + (so - pos)) < 0)
            return -ENOMEM;
        memcpy(s->b + olen, cur + pos, so - pos);
        olen += so - pos;
        if (append_repl(&s->b, &s->bcap, &olen, r->repl, cur, pm) < 0)
            return -ENOMEM;
        n++;
        if (eo == so) { /* empty match: copy one byte and move on */
            if (eo < len) {
                if (reserve(&s->b, &s->bcap, olen + 1) < 0)
                    return -ENOMEM;
                s->b[olen++] = cur[eo];
            }
            pos = eo + 1;
        } else {
            pos = eo;
        }
    }
    if (n == 0)
        return 0;
    if (pos < len) {
        if (reserve(&s->b, &s->bcap, olen + (len - pos)) < 0)
            return -ENOMEM;
        memcpy(s->b + olen, cur + pos, len - pos);
        olen += len - pos;
    }
    if (reserve(&s->b, &s->bcap, olen + 1) < 0)
        return -ENOMEM;
    s->b[olen] = '\0';
    *outlen = olen;
    return n;
}

/* Finds "<what>[A-Z0-9 ]*PRIVATE KEY-----" (what is "-----BEGIN " or "-----END ") in p[0..n); sets *mlen. */
static const char *find_marker(const char *p, size_t n, const char *what, size_t *mlen)
{
    size_t wl = strlen(what);
    const char *end = p + n;
    while (p < end) {
        const char *m = memmem(p, (size_t)(end - p), what, wl);
        if (!m)
            return NULL;
        const char *q = m + wl;
        while (q < end && ((*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == ' '))
            q++;
        if (q - (m + wl) >= 11 && memcmp(q - 11, "PRIVATE KEY", 11) == 0 && end - q >= 5 &&
            memcmp(q, "-----", 5) == 0) {
            *mlen = (size_t)(q + 5 - m);
            return m;
        }
        p = m + 1;
    }
    return NULL;
}

/* Scrubs one line (without its newline) and emits it, plus the newline when nl. */
static int do_line(nd_scrub *s, const char *line, size_t len, bool nl, const char *low)
{
    size_t mlen = 0;
    if (s->in_pem) {
        const char *m = find_marker(line, len, "-----END ", &mlen);
        if (!m)
            return 0; /* inside the key: drop the line */
        s->in_pem = false;
        len -= (size_t)(m - line);
        low = low ? low + (m - line) : NULL;
        line = m;
    }
    /* A BEGIN marker whose END is not on this line opens a block. */
    const char *beg = NULL;
    const char *bm = find_marker(line, len, "-----BEGIN ", &mlen);
    if (bm) {
        size_t dummy;
        if (!find_marker(bm + mlen, len - (size_t)(bm - line) - mlen, "-----END ", &dummy)) {
            beg = bm;
            len = (size_t)(bm - line) + mlen; /* keep up to the end of the marker */
        }
    }

    const char *cur = line;
    size_t curlen = len;
    bool copied = false;
    for (size_t i = 0; i < s->nrules; i++) {
        rule *r = &s->rules[i];
        if (r->ntrig > 0) {
            if (!r->found)
                continue;
            bool hit = false;
            if (!copied && low) {
                for (int t = 0; t < r->ntrig && !hit; t++)
                    hit = memmem(low, len, r->trig[t], strlen(r->trig[t])) != NULL;
            } else {
                /* the line was rewritten by an earlier rule: look at the current text */
                if (reserve(&s->t, &s->tcap, curlen ? curlen : 1) < 0)
                    return -ENOMEM;
                lower_into(s->t, cur, curlen);
                for (int t = 0; t < r->ntrig && !hit; t++)
                    hit = memmem(s->t, curlen, r->trig[t], strlen(r->trig[t])) != NULL;
            }
            if (!hit)
                continue;
        }
        if (cur != s->a) {
            /* regexec gets a NUL-terminated copy: REG_STARTEND bounds the match, but sanitizers' interceptors and
             * other libcs still read up to a NUL */
            if (reserve(&s->a, &s->acap, curlen + 1) < 0)
                return -ENOMEM;
            memcpy(s->a, cur, curlen);
            s->a[curlen] = '\0';
            cur = s->a;
        }
        size_t olen = 0;
        int n = apply_rule(s, r, cur, curlen, &olen);
        if (n < 0)
            return n;
        if (n > 0) {
            r->count += (size_t)n;
            /* result in b: swap into a so the next rule reads it */
            char *t = s->a;
            size_t tc = s->acap;
            s->a = s->b;
            s->acap = s->bcap;
            s->b = t;
            s->bcap = tc;
            cur = s->a;
            curlen = olen;
            copied = true;
        }
    }
    int rc = emit(s, cur, curlen);
    if (rc == 0 && beg) {
        s->in_pem = true;
        s->pem_count++;
        rc = emit(s, "\n[REDACTED]", 11);
    }
    if (rc == 0 && nl)
        rc = emit(s, "\n", 1);
    return rc;
}

/* (Re)builds the trigger table: every trigger of every rule, plus the PEM marker, indexed by its first two
 * (lower-case) bytes in a bitmap, so one pass over a block finds every candidate position. */
static int build_triggers(nd_scrub *s)
{
    size_t n = 1;
    for (size_t i = 0; i < s->nrules; i++)
        n += (size_t)s->rules[i].ntrig;
    trigent *t = realloc(s->trigs, n * sizeof *t);
    if (!t)
        return -ENOMEM;
    s->trigs = t;
    s->ntrigs = 0;
    memset(s->bigram, 0, sizeof s->bigram);
    for (size_t i = 0; i <= s->nrules; i++) {
        int cnt = i < s->nrules ? s->rules[i].ntrig : 1;
        for (int k = 0; k < cnt; k++) {
            const char *str = i < s->nrules ? s->rules[i].trig[k] : "private key-----";
            trigent *e = &s->trigs[s->ntrigs++];
            e->s = str;
            e->len = strlen(str);
            e->rule = i < s->nrules ? (int)i : -1;
            unsigned key = ((unsigned)(unsigned char)str[0] << 8) | (unsigned char)str[1];
            s->bigram[key >> 3] |= (unsigned char)(1u << (key & 7));
        }
    }
    s->table_rules = s->nrules;
    return 0;
}

static bool same_lower(const char *p, const char *lowtrig, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((char)((c >= 'A' && c <= 'Z') ? c + 32 : c) != lowtrig[i])
            return false;
    }
    return true;
}

static int add_hit(nd_scrub *s, size_t at)
{
    if (s->nhits == s->hcap) {
        size_t nc = s->hcap ? s->hcap * 2 : 64;
        size_t *nh = realloc(s->hits, nc * sizeof *nh);
        if (!nh)
            return -ENOMEM;
        s->hits = nh;
        s->hcap = nc;
    }
    s->hits[s->nhits++] = at;
    return 0;
}

/* Processes a block of complete lines (ending with '\n'), or a final or forced partial line (no '\n'). */
static int do_block(nd_scrub *s, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    if (s->table_rules != s->nrules || !s->trigs) {
        if (build_triggers(s) < 0)
            return -ENOMEM;
    }
    bool untriggered = false, pem = s->in_pem;
    for (size_t i = 0; i < s->nrules; i++) {
        s->rules[i].found = false;
        if (s->rules[i].ntrig == 0)
            untriggered = true;
    }
    /* one pass: candidate positions by their first two bytes, then the whole trigger */
    s->nhits = 0;
    const unsigned char *u = (const unsigned char *)p;
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned a = u[i], b = u[i + 1];
        a = (a >= 'A' && a <= 'Z') ? a + 32 : a;
        b = (b >= 'A' && b <= 'Z') ? b + 32 : b;
        unsigned key = (a << 8) | b;
        if (!(s->bigram[key >> 3] & (1u << (key & 7))))
            continue;
        for (size_t k = 0; k < s->ntrigs; k++) {
            const trigent *t = &s->trigs[k];
            if ((unsigned char)t->s[0] != a || (unsigned char)t->s[1] != b || i + t->len > n ||
                !same_lower(p + i, t->s, t->len))
                continue;
            if (t->rule < 0) {
                pem = true;
            } else {
                s->rules[t->rule].found = true;
                if (add_hit(s, i) < 0)
                    return -ENOMEM;
            }
        }
    }
    if (s->nhits == 0 && !pem && !untriggered)
        return emit(s, p, n);
    if (pem || untriggered) {
        /* slow path: every line (PEM state machine, or rules without triggers), with a lower-cased copy */
        if (reserve(&s->lower, &s->lcap, n) < 0)
            return -ENOMEM;
        lower_into(s->lower, p, n);
        size_t off = 0;
        while (off < n) {
            const char *nl = memchr(p + off, '\n', n - off);
            size_t ll = nl ? (size_t)(nl - (p + off)) : n - off;
            int rc = do_line(s, p + off, ll, nl != NULL, s->lower + off);
            if (rc < 0)
                return rc;
            off += ll + (nl ? 1 : 0);
        }
        return 0;
    }
    /* fast path: only the lines holding a trigger are scrubbed; the runs of lines between them go out untouched.
     * Hits are in ascending order already (one forward pass). */
    size_t off = 0; /* everything before off has been emitted */
    for (size_t h = 0; h < s->nhits; h++) {
        size_t at = s->hits[h];
        if (at < off)
            continue; /* inside a line already scrubbed */
        const char *ls = memrchr(p + off, '\n', at - off);
        size_t start = ls ? (size_t)(ls - p) + 1 : off;
        const char *le = memchr(p + at, '\n', n - at);
        size_t end = le ? (size_t)(le - p) : n;
        int rc = emit(s, p + off, start - off);
        if (rc < 0)
            return rc;
        if (reserve(&s->lower, &s->lcap, end - start) < 0)
            return -ENOMEM;
        lower_into(s->lower, p + start, end - start);
        rc = do_line(s, p + start, end - start, le != NULL, s->lower);
        if (rc < 0)
            return rc;
        off = end + (le ? 1 : 0);
    }
    return emit(s, p + off, n - off);
}

/* ---- stream -------------------------------------------------------------------------------------------------- */

void nd_scrub_begin(nd_scrub *s, nd_scrub_sink sink, void *ud)
{
    s->sink = sink;
    s->ud = ud;
    s->sink_err = 0;
    s->in_pem = false;
    s->pem_count = 0;
    s->plen = 0;
    for (size_t i = 0; i < s->nrules; i++)
        s->rules[i].count = 0;
}

/* Where to cut an over-long line: the last separator in its final 8 KiB, else the hard limit. */
static size_t cut_point(const char *p, size_t n)
{
    size_t lo = n > 8192 ? n - 8192 : 0;
    for (size_t i = n; i > lo; i--) {
        char c = p[i - 1];
        if (c == ' ' || c == '\t' || c == ',' || c == ';' || c == '&' || c == '>' || c == '<')
            return i;
    }
    return n;
}

int nd_scrub_feed(nd_scrub *s, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0 && !s->sink_err) {
        if (s->plen > 0) {
            /* complete the pending partial line first */
            const char *nl = memchr(p, '\n', n);
            size_t take = nl ? (size_t)(nl - p) + 1 : n;
            if (reserve(&s->pend, &s->pcap, s->plen + take) < 0)
                return -ENOMEM;
            memcpy(s->pend + s->plen, p, take);
            s->plen += take;
            p += take;
            n -= take;
            if (nl) {
                int rc = do_block(s, s->pend, s->plen);
                s->plen = 0;
                if (rc < 0)
                    return rc;
            } else if (s->plen >= ND_SCRUB_LINE_MAX) {
                size_t cut = cut_point(s->pend, s->plen);
                int rc = do_block(s, s->pend, cut);
                if (rc < 0)
                    return rc;
                memmove(s->pend, s->pend + cut, s->plen - cut);
                s->plen -= cut;
            }
            continue;
        }
        /* complete lines straight from the input, in blocks of bounded size */
        size_t span = n < BLOCK_MAX ? n : BLOCK_MAX;
        const char *last = memrchr(p, '\n', span);
        if (!last && span < n) {
            /* a very long line: find its end beyond the block */
            last = memchr(p + span, '\n', n - span);
            if (last && (size_t)(last - p) + 1 > ND_SCRUB_LINE_MAX)
                last = NULL;
        }
        if (!last) {
            if (reserve(&s->pend, &s->pcap, n < ND_SCRUB_LINE_MAX ? n : ND_SCRUB_LINE_MAX) < 0)
                return -ENOMEM;
            size_t take = n < ND_SCRUB_LINE_MAX ? n : ND_SCRUB_LINE_MAX;
            memcpy(s->pend, p, take);
            s->plen = take;
            p += take;
            n -= take;
            if (s->plen >= ND_SCRUB_LINE_MAX) {
                size_t cut = cut_point(s->pend, s->plen);
                int rc = do_block(s, s->pend, cut);
                if (rc < 0)
                    return rc;
                memmove(s->pend, s->pend + cut, s->plen - cut);
                s->plen -= cut;
            }
            continue;
        }
        size_t blen = (size_t)(last - p) + 1;
        int rc = do_block(s, p, blen);
        if (rc < 0)
            return rc;
        p += blen;
        n -= blen;
    }
    return s->sink_err;
}

int nd_scrub_end(nd_scrub *s)
{
    if (s->plen > 0 && !s->sink_err) {
        int rc = do_block(s, s->pend, s->plen);
        s->plen = 0;
        if (rc < 0)
            return rc;
    }
    return s->sink_err;
}

size_t nd_scrub_total(const nd_scrub *s)
{
    size_t t = s->pem_count;
    for (size_t i = 0; i < s->nrules; i++)
        t += s->rules[i].count;
    return t;
}

json_t *nd_scrub_counts(const nd_scrub *s)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (size_t i = 0; i < s->nrules; i++) {
        if (!s->rules[i].count)
            continue;
        json_t *c = json_object_get(o, s->rules[i].name);
        json_int_t v = (c ? json_integer_value(c) : 0) + (json_int_t)s->rules[i].count;
        json_object_set_new(o, s->rules[i].name, json_integer(v));
    }
    if (s->pem_count) {
        json_t *c = json_object_get(o, PEM_RULE);
        json_int_t v = (c ? json_integer_value(c) : 0) + (json_int_t)s->pem_count;
        json_object_set_new(o, PEM_RULE, json_integer(v));
    }
    return o;
}

typedef struct membuf {
    char *p;
    size_t len, cap;
} membuf;

static int mem_sink(void *ud, const void *data, size_t n)
{
    membuf *m = ud;
    if (reserve(&m->p, &m->cap, m->len + n + 1) < 0)
        return -ENOMEM;
    memcpy(m->p + m->len, data, n);
    m->len += n;
    return 0;
}

int nd_scrub_buffer(nd_scrub *s, const void *in, size_t n, char **out, size_t *outlen)
{
    membuf m = {0};
    if (reserve(&m.p, &m.cap, n + 1) < 0)
        return -ENOMEM;
    nd_scrub_begin(s, mem_sink, &m);
    int rc = nd_scrub_feed(s, in, n);
    if (rc == 0)
        rc = nd_scrub_end(s);
    if (rc < 0) {
        free(m.p);
        return rc;
    }
    m.p[m.len] = '\0';
    *out = m.p;
    if (outlen)
        *outlen = m.len;
    return (int)nd_scrub_total(s);
}

bool nd_scrub_looks_binary(const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t lim = n < 8192 ? n : 8192, ctl = 0;
    for (size_t i = 0; i < lim; i++) {
        if (p[i] == 0)
            return true;
        if (p[i] < 8 || (p[i] > 13 && p[i] < 32 && p[i] != 27))
            ctl++;
    }
    return lim > 0 && ctl * 10 > lim; /* more than 10% control bytes */
}
