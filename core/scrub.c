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
#include "nd_buf.h"

#include <jansson.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRIGGERS 16
#define BLOCK_MAX (256u * 1024u)
#define HOLD_MAX (64u * 1024u) /* key-body lines held back waiting for an END marker (a 16384-bit RSA key is 13 KB) */
#define MARK "[REDACTED]"
#define MARKLEN 10
#define ND_RULE_ROUNDS 4 /* rounds of the rules over one line (do_line) */
#define JSON_SPLIT_MIN 256 /* a JSON string value a log driver cut is long (Docker's json-file: 16 KiB, journald: LineMax) */

/* A rule written in C instead of a regular expression: rewrites line (in, len) into s->b (NUL-terminated) and
 * returns the number of replacements (the result is used only when > 0), or -ENOMEM. */
typedef int (*rule_fn)(nd_scrub *s, const char *in, size_t len, size_t *outlen);

typedef struct rule {
    char *name;
    regex_t re;
    rule_fn fn;                     /* set for C rules (no regex) */
    nd_scrub_line_fn ufn;           /* set for a caller's rule (no regex): nd_scrub_add_rule_fn */
    void *uud;
    char *repl;
    int marks;                      /* markers one replacement writes (a regex rule's "[REDACTED]"s, at least 1) */
    const char *trig[MAX_TRIGGERS]; /* lower-case literals; none means "always run" */
    int ntrig;
    size_t count;
    bool found;                     /* a trigger occurs in the current block */
} rule;

typedef struct trigent {
    const char *s;
    size_t len;
    int rule; /* index, or -1 for the PEM marker */
    unsigned key; /* first two bytes: the table is sorted by it */
} trigent;

struct nd_scrub {
    bool adding_ufn; /* add_rule is adding a caller's rule (no expression) */
    rule *rules;
    size_t nrules, rcap;
    nd_scrub_sink sink;
    void *ud;
    int sink_err;
    bool in_pem;
    bool in_b64;     /* inside a base64-wrapped PEM private key: base64 lines are dropped */
    bool at_start;   /* nothing of the stream processed yet (a tail cut may start inside a key) */
    bool force;      /* rules run whatever the block's trigger scan found (lines held from an earlier block) */
    size_t akid_carry; /* characters of an access key id cut by a line wrap still expected at the next line start */
    size_t jneed;      /* characters of an access key id cut at the end of a long JSON string value still expected at
                        * the start of the next line's value of the same key (jkey) */
    char jkey[64];
    size_t jql;        /* its quote: " (1) or \" (2) */
    char *jl;          /* the next line with those characters replaced */
    size_t jlcap;
    size_t pem_count;
    size_t extra_count; /* access key id halves across a line wrap */
    char *hold;      /* complete lines that look like a key body, held until we know whether an END marker follows */
    size_t hlen, holdcap;
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
    "aws_secret_access_key", "sigv4_signature", "aws_access_key_id", "keyed_secret", "session_token_value",
    "jwt", "bearer_token", "url_password", "base64_private_key", NULL};

const char *const *nd_scrub_builtin_names(void)
{
    return builtin_names;
}

#define PEM_RULE "private_key"

/* ---- small buffers ------------------------------------------------------------------------------------------- */

/* Room for need bytes in *buf: core's one overflow-checked growth (nd_buf.h). Returns 0 or -ENOMEM. */
static int reserve(char **buf, size_t *cap, size_t need) { return nd_grow(buf, cap, need); }

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
                    const char *const *trig, rule_fn fn, nd_err *err)
{
    if (!name || (!ere && !fn && !s->adding_ufn) || !repl)
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
    r->fn = fn;
    int rc = fn || !ere ? 0 : regcomp(&r->re, ere, REG_EXTENDED | (icase ? REG_ICASE : 0));
    if (rc != 0) {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof msg);
        return nd_err_set(err, -EINVAL, "scrub rule '%s': bad regular expression: %s", name, msg);
    }
    r->name = strdup(name);
    r->repl = strdup(repl);
    if (!r->name || !r->repl) {
        if (!fn && ere)
            regfree(&r->re);
        free(r->name);
        free(r->repl);
        return nd_err_set(err, -ENOMEM, "scrub rule: out of memory");
    }
    for (int i = 0; trig && trig[i] && i < MAX_TRIGGERS; i++)
        r->trig[r->ntrig++] = trig[i];
    /* a redaction is one marker written: a replacement with two markers counts twice, so the bound "output at most
     * input + 16 bytes per redaction" holds for every rule (a wrap-cut key id writes one for each half) */
    r->marks = 0;
    for (const char *m = r->repl; (m = strstr(m, MARK)) != NULL; m += MARKLEN)
        r->marks++;
    if (r->marks == 0)
        r->marks = 1;
    return (int)s->nrules++;
}

int nd_scrub_add_rule(nd_scrub *s, const char *name, const char *ere, const char *replacement, bool icase, nd_err *err)
{
    if (!ere)
        return nd_err_set(err, -EINVAL, "scrub rule: name, expression and replacement are required");
    return add_rule(s, name, ere, replacement, icase, NULL, NULL, err);
}

int nd_scrub_add_rule_fn(nd_scrub *s, const char *name, nd_scrub_line_fn fn, void *ud, nd_err *err)
{
    if (!fn)
        return nd_err_set(err, -EINVAL, "scrub rule: name and function are required");
    s->adding_ufn = true;
    int rc = add_rule(s, name, NULL, "", false, NULL, NULL, err);
    s->adding_ufn = false;
    if (rc >= 0) {
        s->rules[rc].ufn = fn;
        s->rules[rc].uud = ud;
    }
    return rc;
}

typedef struct builtin {
    const char *name, *ere, *repl;
    bool icase;
    const char *trig[MAX_TRIGGERS];
    rule_fn fn;
} builtin;

static int keyed_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen);
static int b64pem_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen);
static int pemtail_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen);
static const char *find_marker(const char *p, size_t n, const char *what, size_t *mlen);

/* Order matters: the IMDS document first (its fields would otherwise be counted by the generic rules), the
 * Authorization header before what it contains (credential, signature). Each replacement leaves text the later rules
 * do not match again ("[REDACTED]" is outside every value class); do_line repeats the list while a round changes
 * the line, for a marker that lets an earlier rule match. */
static const builtin builtins[] = {
    {"imds_credentials", "(\"(AccessKeyId|SecretAccessKey|Token|SessionToken)\"[[:space:]]*:[[:space:]]*\")[^\"]*\"",
     "\\1[REDACTED]\"", false, {"accesskeyid\"", "secretaccesskey\"", "token\""}, NULL},
    /* the body may hold single dashes (Proc-Type, DEK-Info: AES-128-CBC) but never two */
    {"private_key",
     "(-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----)([^-]|-[^-])*(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----)",
     "\\1[REDACTED]\\4", false, {"private key-----", "private key block-----"}, NULL},
    /* a JSON-escaped key whose BEGIN was cut: base64 and \n escapes right before the END marker */
    {"private_key", NULL, "", false, {"private key-----", "private key block-----"}, pemtail_rule},
    {"authorization", "(authorization[\"']?[[:space:]]*[:=][[:space:]]*)(\"[^\"]*\"|'[^']*')", "\\1\"[REDACTED]\"",
     true, {"authorization"}, NULL},
    {"authorization", "(authorization[[:space:]]*[:=][[:space:]]*)[^\"'[:space:]][^\r\n]*", "\\1[REDACTED]", true,
     {"authorization"}, NULL},
    {"x_amz_security_token", "(x-amz-security-token[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)[^[:space:]&\"',;]+",
     "\\1[REDACTED]", true, {"x-amz-security-token"}, NULL},
    {"aws_session_token",
     "((aws_?session_?token|aws_?security_?token|session_?token)[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)"
     "[A-Za-z0-9/+=%_-]{16,}",
     "\\1[REDACTED]", true, {"token"}, NULL},
    {"aws_secret_access_key",
     "((aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)[\"']?[[:space:]]*[:=][[:space:]]*[\"']?)"
     "[A-Za-z0-9/+=%]{20,}",
     "\\1[REDACTED]", true, {"secret"}, NULL},
    {"sigv4_signature", "((x-amz-signature|signature)[[:space:]]*=[[:space:]]*)[0-9a-fA-F]{64}", "\\1[REDACTED]", true,
     {"signature"}, NULL},
    /* the id may follow a URL-encoded separator (%3D, %253D: "Credential%253DAKIA…") */
    {"aws_access_key_id", "(^|[^A-Za-z0-9]|%(25)?[0-9A-Fa-f]{2})(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
     "\\1\\3[REDACTED]", false, {"akia", "asia", "abia", "acca"}, NULL},
    /* …and one a wrap cut inside a JSON string ("AKIAABC\nDEF…") */
    {"aws_access_key_id", "(^|[^A-Za-z0-9])(AKIA|ASIA)[A-Z0-9]{0,15}((\\\\r)?\\\\n)+[A-Z0-9]{1,16}",
     "\\1\\2[REDACTED]\\\\n[REDACTED]", false, {"akia", "asia"}, NULL},
    /* Value rules that replace a run of letters and digits wherever it starts run before keyed_secret: such a run
     * may be the start of an identifier ("tLS0t…U4n---api_key", "IQoJb3Jp…-password"), and replacing it after
     * keyed_secret left "[REDACTED]---api_key" for the next pass, which keyed_secret then read as a --flag followed
     * by its value — scrubbing the output again redacted more (fuzz/regressions/scrub/scrub-crash-14ab84…). */
    {"session_token_value", "(IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)(\\\\/|[A-Za-z0-9/+=%])+", "[REDACTED]", false,
     {"iqojb3jpz2lu", "fwogzxivyxdz", "fqogzxivyxdz"}, NULL},
    /* a PEM private key in base64 (a Kubernetes secret, a user-data blob), at any of the three alignments */
    {"base64_private_key", NULL, "", false, {"ls0tls1crudjti", "0tls0tqkvhsu4", "tls0tlujfr0lo"}, b64pem_rule},
    /* any spelling of a secret's name followed by a separator, in any quoting or encoding (C rule, below) */
    {"keyed_secret", NULL, "", false,
     {"secret", "token", "passw", "passphrase", "signature", "apikey", "api_key", "api-key", "privatekey",
      "private_key", "private-key", "plaintext", "cookie", "authorization", "credentials"},
     keyed_rule},
    /* more values recognisable without a name: JWTs, bearer tokens, passwords in URLs */
    {"jwt", "eyJ[A-Za-z0-9_-]{6,}\\.eyJ[A-Za-z0-9_-]{6,}\\.[A-Za-z0-9_-]{6,}", "[REDACTED]", false, {"eyj"}, NULL},
    {"bearer_token", "(bearer[[:space:]]+)[A-Za-z0-9._~+/=-]{8,}", "\\1[REDACTED]", true, {"bearer"}, NULL},
    {"url_password", "([a-zA-Z][a-zA-Z0-9+.-]*://[^/:@[:space:]\"']+:)[^/@[:space:]\"'\\[]+@", "\\1[REDACTED]@", false,
     {"://"}, NULL},
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
        if (add_rule(s, b->name, b->ere, b->repl, b->icase, b->trig, b->fn, err) < 0) {
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
        if (!s->rules[i].fn && !s->rules[i].ufn)
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
    free(s->hold);
    free(s->jl);
    free(s);
}


/* ---- C rules ------------------------------------------------------------------------------------------------- */

static bool is_ident(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

static bool is_b64(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '/' ||
           c == '=';
}

static int hexval(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* A byte that ends an unquoted value. */
static bool delim_byte(unsigned char c)
{
    return c <= 32 || c == 127 || (c && strchr("\"'`\\&,;<>()[]{}|", c) != NULL);
}

/* The byte %XX (or, URL-encoded twice, %25XX) at p encodes, or -1. Sets *n to the length of the escape. */
static int pct_byte(const char *p, const char *e, size_t *n)
{
    if (p >= e || *p != '%' || e - p < 3 || hexval((unsigned char)p[1]) < 0 || hexval((unsigned char)p[2]) < 0)
        return -1;
    int v = hexval((unsigned char)p[1]) * 16 + hexval((unsigned char)p[2]);
    if (v == 0x25 && e - p >= 5 && hexval((unsigned char)p[3]) >= 0 && hexval((unsigned char)p[4]) >= 0) {
        *n = 5;
        return hexval((unsigned char)p[3]) * 16 + hexval((unsigned char)p[4]);
    }
    *n = 3;
    return v;
}

static bool starts_icase(const char *p, const char *e, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(e - p) < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((char)((c >= 'A' && c <= 'Z') ? c + 32 : c) != lit[i])
            return false;
    }
    return true;
}

/* Length of one quote-like token at p: " ' ` \ (JSON and shell escaping), %22 %27 %2522 %2527, &quot; &#34; &#39;,
 * \u0022 \u0027 — or 0. */
static size_t quote_at(const char *p, const char *e)
{
    if (p >= e)
        return 0;
    if (*p == '\\' && (starts_icase(p, e, "\\u0022") || starts_icase(p, e, "\\u0027")))
        return 6;
    if (*p == '"' || *p == '\'' || *p == '`' || *p == '\\')
        return 1;
    size_t n = 0;
    int v = pct_byte(p, e, &n);
    if (v == '"' || v == '\'')
        return n;
    if (starts_icase(p, e, "&quot;"))
        return 6;
    if (starts_icase(p, e, "&#34;") || starts_icase(p, e, "&#39;"))
        return 5;
    return 0;
}

/* Length of a name/value separator at p: : = := => (also URL-encoded once or twice), > after an XML tag name. */
static size_t sep_at(const char *p, const char *e, bool xml)
{
    if (p >= e)
        return 0;
    if (*p == ':' || *p == '=')
        return (p + 1 < e && (p[1] == '=' || p[1] == '>')) ? 2 : 1;
    if (xml && *p == '>')
        return 1;
    size_t n = 0;
    int v = pct_byte(p, e, &n);
    return (v == ':' || v == '=') ? n : 0;
}

/* Names whose value is a secret, compared on the name's tail with '_', '-', '.' removed and lower-cased (so
 * aws_secret_access_key, SecretAccessKey, secret-access-key, aws.secretKey and X-Amz-Security-Token all match). */
static const struct {
    const char *suffix;
    unsigned minlen; /* shorter values are left alone (true, null, a port number) */
    bool to_eol;     /* an unquoted value runs to the end of the line (it holds spaces) */
} secret_names[] = {
    {"secretaccesskey", 8, false}, {"secretkey", 8, false},      {"secret", 6, false},
    {"sessiontoken", 8, false},    {"securitytoken", 8, false},  {"token", 8, false},
    {"password", 3, false},        {"passwd", 3, false},         {"passphrase", 3, false},
    {"apikey", 8, false},          {"privatekey", 8, false},     {"signature", 16, false},
    {"plaintext", 8, false},       {"cookie", 4, true},          {"authorization", 4, true},
    {"secretstring", 3, false},    {"clientsecret", 6, false},   {"credentials", 8, false},
};

/* The entry whose suffix ends the identifier p[0..n), or -1. */
static int secret_name(const char *p, size_t n)
{
    char norm[64];
    size_t m = 0;
    for (size_t i = n; i > 0 && m < sizeof norm; i--) { /* backwards: only the tail matters */
        unsigned char c = (unsigned char)p[i - 1];
        if (c == '_' || c == '-' || c == '.')
            continue;
        norm[m++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    for (size_t k = 0; k < sizeof secret_names / sizeof secret_names[0]; k++) {
        const char *suf = secret_names[k].suffix;
        size_t l = strlen(suf);
        if (l > m)
            continue;
        size_t j = 0;
        while (j < l && norm[j] == suf[l - 1 - j])
            j++;
        if (j == l)
            return (int)k;
    }
    return -1;
}

static bool is_literal_word(const char *v, size_t n)
{
    static const char *const words[] = {"null", "true", "false", "none", "nil", "undefined", NULL};
    for (int i = 0; words[i]; i++)
        if (n == strlen(words[i]) && starts_icase(v, v + n, words[i]))
            return true;
    return false;
}

static int out_put(nd_scrub *s, size_t *olen, const char *p, size_t n)
{
    if (reserve(&s->b, &s->bcap, *olen + n + 1) < 0)
        return -ENOMEM;
    if (n)
        memcpy(s->b + *olen, p, n);
    *olen += n;
    return 0;
}

/* keyed_secret: every identifier whose tail names a secret, followed by (quotes) separator (quotes) and a value, in
 * whatever quoting the text uses — plain, JSON-escaped once or twice, URL-encoded once or twice, HTML entities,
 * XML elements, YAML/INI/env, `--flag value` — gets its value replaced. A quoted value runs to the same closing
 * quote; an unquoted one to the first delimiter (also URL-encoded ones), Authorization/Cookie to the end of the
 * line. A value that is exactly the marker is left alone (idempotence); one that merely holds a marker (an earlier
 * rule redacted a key id inside an Authorization value) is replaced whole. */
static int keyed_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen)
{
    const char *e = in + len;
    size_t olen = 0, last = 0;
    int n = 0;
    size_t i = 0;
    while (i < len) {
        if (!is_ident((unsigned char)in[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_ident((unsigned char)in[j]))
            j++;
        int k = j - i >= 5 ? secret_name(in + i, j - i) : -1;
        if (k < 0) {
            i = j;
            continue;
        }
        bool xml = i > 0 && in[i - 1] == '<';
        bool flag = in[i] == '-';
        const char *p = in + j, *q;
        size_t t;
        while ((t = quote_at(p, e)) > 0)
            p += t;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        size_t sl = sep_at(p, e, xml);
        if (sl == 0 && !(flag && p > in + j && (p[-1] == ' ' || p[-1] == '\t'))) {
            i = j;
            continue;
        }
        p += sl;
        while (p < e && (*p == ' ' || *p == '\t'))
            p++;
        const char *qs = p;
        while ((t = quote_at(p, e)) > 0)
            p += t;
        size_t ql = (size_t)(p - qs);
        const char *v = p, *ve = NULL;
        if (ql > 0) {
            /* quoted: the same quote sequence closes it, unless it is escaped by a backslash */
            for (q = v; q + ql <= e; q++) {
                if (memcmp(q, qs, ql) == 0 && !(ql == 1 && q > v && q[-1] == '\\')) {
                    ve = q;
                    break;
                }
            }
        }
        if (!ve && secret_names[k].to_eol && ql == 0) {
            ve = e;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
        }
        bool tail = false;
        if (!ve) {
            /* an earlier rule may have redacted only the start of the value ("[REDACTED]%2FF4"): take the rest */
            const char *from = v;
            if ((size_t)(e - v) > MARKLEN && memcmp(v, MARK, MARKLEN) == 0) {
                from = v + MARKLEN;
                tail = true;
            }
            for (q = from; q < e;) {
                if (*q == '\\' && q + 1 < e && q[1] == '/') { /* JSON's escaped slash is part of a base64 value */
                    q += 2;
                    continue;
                }
                size_t pn = 0;
                int pv = pct_byte(q, e, &pn);
                if (delim_byte((unsigned char)*q) || (pv >= 0 && delim_byte((unsigned char)pv)))
                    break;
                q++;
            }
            ve = q;
            if (tail && ve == from)
                tail = false;
        }
        size_t vl = (size_t)(ve - v);
        if (tail) {
            /* fall through: [v, ve) is the marker and the rest of the value */
        } else if (vl < secret_names[k].minlen || is_literal_word(v, vl) ||
                   (vl == MARKLEN && memcmp(v, MARK, MARKLEN) == 0)) {
            i = j;
            continue;
        }
        if (out_put(s, &olen, in + last, (size_t)(v - (in + last))) < 0 || out_put(s, &olen, MARK, MARKLEN) < 0)
            return -ENOMEM;
        last = (size_t)(ve - in);
        i = last;
        n++;
    }
    if (n == 0)
        return 0;
    if (out_put(s, &olen, in + last, len - last) < 0)
        return -ENOMEM;
    s->b[olen] = '\0';
    *outlen = olen;
    return n;
}

static void undecorate(const char **pp, size_t *pn);

/* pemtail (counted as private_key): an END …PRIVATE KEY marker with no BEGIN before it on the line, preceded by a
 * run of base64 and literal \n escapes (a JSON-escaped key cut above its BEGIN): the run is replaced. */
static int pemtail_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen)
{
    size_t olen = 0, last = 0;
    int n = 0;
    size_t from = 0, ml = 0;
    const char *m;
    while ((m = find_marker(in + from, len - from, "-----END ", &ml)) != NULL) {
        size_t at = (size_t)(m - in);
        size_t bl = 0;
        if (find_marker(in + last, at - last, "-----BEGIN ", &bl)) {
            from = at + ml;
            continue;
        }
        size_t r0 = at, nb64 = 0;
        for (;;) {
            if (r0 >= last + 2 && in[r0 - 2] == '\\' && (in[r0 - 1] == 'n' || in[r0 - 1] == 'r')) {
                r0 -= 2;
            } else if (r0 > last && is_b64((unsigned char)in[r0 - 1])) {
                r0--;
                nb64++;
            } else {
                break;
            }
        }
        if (nb64 >= 16) {
            if (out_put(s, &olen, in + last, r0 - last) < 0 || out_put(s, &olen, MARK "\\n", MARKLEN + 2) < 0)
                return -ENOMEM;
            last = at;
            n++;
        }
        from = at + ml;
    }
    if (n == 0)
        return 0;
    if (out_put(s, &olen, in + last, len - last) < 0)
        return -ENOMEM;
    s->b[olen] = '\0';
    *outlen = olen;
    return n;
}

/* Decodes standard base64 from p[0..n) (stops at the first non-alphabet byte) into out (at most outsz bytes). */
static size_t b64_decode(const char *p, size_t n, unsigned char *out, size_t outsz)
{
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n && o < outsz; i++) {
        unsigned char c = (unsigned char)p[i];
        int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
              : c == '+' ? 62 : c == '/' ? 63 : -1;
        if (v < 0)
            break;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return o;
}

/* base64_private_key: a base64 run holding "-----BEGIN" (at any alignment) is a PEM in disguise. When the decoded
 * start shows the marker line and it is not a private key (a certificate), it stays; otherwise the run is replaced,
 * and when it reaches the end of the line without padding (wrapped base64) the following base64 lines are dropped. */
static int b64pem_rule(nd_scrub *s, const char *in, size_t len, size_t *outlen)
{
    static const char *const pats[] = {"LS0tLS1CRUdJTi", "0tLS0tQkVHSU4", "tLS0tLUJFR0lO"};
    size_t olen = 0, last = 0;
    int n = 0;
    size_t i = 0;
    while (i < len) {
        const char *hit = NULL;
        for (int k = 0; k < 3; k++) {
            const char *h = memmem(in + i, len - i, pats[k], strlen(pats[k]));
            if (h && (!hit || h < hit))
                hit = h;
        }
        if (!hit)
            break;
        size_t r0 = (size_t)(hit - in), r1 = r0;
        while (r0 > last && is_b64((unsigned char)in[r0 - 1]))
            r0--;
        while (r1 < len && is_b64((unsigned char)in[r1]))
            r1++;
        size_t first_end = r1;
        /* JSON-escaped wrapping: more base64 after a literal \n (or \r\n) is the same key */
        for (;;) {
            size_t q = r1;
            if (q + 4 <= len && in[q] == '\\' && in[q + 1] == 'r' && in[q + 2] == '\\' && in[q + 3] == 'n')
                q += 4;
            else if (q + 2 <= len && in[q] == '\\' && in[q + 1] == 'n')
                q += 2;
            else
                break;
            size_t q2 = q;
            while (q2 < len && is_b64((unsigned char)in[q2]))
                q2++;
            if (q2 == q)
                break;
            r1 = q2;
        }
        unsigned char dec[768];
        size_t dl = b64_decode(in + r0, first_end - r0, dec, sizeof dec);
        const unsigned char *b = memmem(dec, dl, "-----BEGIN ", 11);
        bool keep = false;
        if (b) {
            const unsigned char *ee = memmem(b + 11, dl - (size_t)(b + 11 - dec), "-----", 5);
            keep = ee && !memmem(b, (size_t)(ee - b), "PRIVATE", 7); /* a full marker line naming no private key */
        }
        if (keep) {
            i = r1;
            continue;
        }
        if (out_put(s, &olen, in + last, r0 - last) < 0 || out_put(s, &olen, MARK, MARKLEN) < 0)
            return -ENOMEM;
        const char *c = in;
        size_t cn = len;
        undecorate(&c, &cn);
        size_t end = (size_t)(c - in) + cn;
        if (r1 == end && in[r1 - 1] != '=')
            s->in_b64 = true;
        last = i = r1;
        n++;
    }
    if (n == 0)
        return 0;
    if (out_put(s, &olen, in + last, len - last) < 0)
        return -ENOMEM;
    s->b[olen] = '\0';
    *outlen = olen;
    return n;
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
    if (r->fn)
        return r->fn(s, cur, len, outlen);
    if (r->ufn) {
        const char *out = NULL;
        size_t n_out = 0;
        int n = r->ufn(r->uud, cur, len, &out, &n_out);
        if (n <= 0)
            return n;
        if (reserve(&s->b, &s->bcap, n_out + 1) < 0)
            return -ENOMEM;
        memcpy(s->b, out, n_out);
        s->b[n_out] = '\0';
        *outlen = n_out;
        return n;
    }
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
    n *= r->marks;
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
        bool key = q - (m + wl) >= 11 && memcmp(q - 11, "PRIVATE KEY", 11) == 0;
        bool block = q - (m + wl) >= 17 && memcmp(q - 17, "PRIVATE KEY BLOCK", 17) == 0; /* PGP */
        if ((key || block) && end - q >= 5 && memcmp(q, "-----", 5) == 0) {
            *mlen = (size_t)(q + 5 - m);
            return m;
        }
        p = m + 1;
    }
    return NULL;
}

static bool is_akid_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Runs the rules over one line (line, len; low its lower-cased copy or NULL) until it stops changing (at most
 * ND_RULE_ROUNDS rounds): one rule's marker can let an earlier rule match (a redacted value that held "--" between a
 * BEGIN and an END marker leaves a body the PEM rule matches), and the next scrub of the output would make that
 * change — not idempotent. Sets *outp and *outlen to the result (line itself, or s->a). dry: counts nothing (a look
 * ahead). Returns 0 or -ENOMEM. */
static int run_rules(nd_scrub *s, const char *line, size_t len, const char *low, bool dry, const char **outp,
                     size_t *outlen)
{
    const char *cur = line;
    size_t curlen = len;
    bool copied = false;
    for (int round = 0; round < ND_RULE_ROUNDS; round++) {
        bool changed = false;
        for (size_t i = 0; i < s->nrules; i++) {
            rule *r = &s->rules[i];
            if (r->ntrig > 0) {
                if (!r->found && !s->force)
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
            /* a rule whose marker it matches again (imds_credentials, private_key) leaves the text as it was: that is
             * no change, and after the first round no replacement */
            bool same = n > 0 && olen == curlen && memcmp(s->b, cur, curlen) == 0;
            if (n > 0 && !(round > 0 && same)) {
                if (!dry)
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
                changed = changed || !same;
            }
        }
        if (!changed)
            break;
    }
    *outp = cur;
    *outlen = curlen;
    return 0;
}

/* The first END marker of p[0..n) that has no BEGIN marker before it (the end of a key whose BEGIN was cut off), or
 * NULL. */
static const char *orphan_end(const char *p, size_t n)
{
    size_t ml = 0, bl = 0;
    const char *m = find_marker(p, n, "-----END ", &ml);
    if (m && !find_marker(p, (size_t)(m - p), "-----BEGIN ", &bl))
        return m;
    return NULL;
}

/* How many characters of the access key id a line wrap cut (s->akid_carry expected) start this line, after its
 * decoration (at most 8 bytes of indent, "# ", quotes, '>' or '*'; *deco gets its length). */
static size_t akid_continues(const nd_scrub *s, const char *line, size_t len, size_t *deco)
{
    size_t d = 0;
    while (d < len && d < 8 && line[d] && strchr(" \t#\"'>*", line[d]))
        d++;
    size_t k = 0;
    while (d + k < len && k < s->akid_carry && is_akid_char((unsigned char)line[d + k]))
        k++;
    *deco = d;
    return k;
}

/* A log driver that splits a long message into records (Docker's json-file at 16 KiB, journald at LineMax) can cut an
 * access key id between two JSON values: {"log":"… AKIAIOSF",…} then {"log":"ODNN7EXAMPLE …",…}, on two lines, or on
 * one line when the records are themselves quoted in JSON (docker inspect, a log of logs: \"log\":\"…\"). The quote
 * of such a value is " or \" (ql 1 or 2). */

/* The first value of `key` (quoted with the ql-byte quote Q: Q key Q : Q) in p[from..n), if it starts with need
 * access key id characters: returns the value's start, or SIZE_MAX. Only the first value of the key counts (the next
 * record's). */
static size_t json_key_value(const char *p, size_t n, size_t from, const char *key, size_t ql, size_t need)
{
    const char *qs = ql == 2 ? "\\\"" : "\"";
    size_t kl = strlen(key);
    for (size_t i = from; i + kl + 2 * ql < n;) {
        const char *h = memmem(p + i, n - i, key, kl);
        if (!h)
            return SIZE_MAX;
        size_t ks = (size_t)(h - p), v = ks + kl;
        i = ks + 1;
        if (ks < ql || memcmp(p + ks - ql, qs, ql) != 0 || n - v < ql || memcmp(p + v, qs, ql) != 0)
            continue;
        v += ql;
        while (v < n && (p[v] == ' ' || p[v] == '\t'))
            v++;
        if (v >= n || p[v] != ':')
            continue;
        v++;
        while (v < n && (p[v] == ' ' || p[v] == '\t'))
            v++;
        if (n - v < ql || memcmp(p + v, qs, ql) != 0)
            return SIZE_MAX;
        v += ql;
        size_t k = 0;
        while (v + k < n && k < need && is_akid_char((unsigned char)p[v + k]))
            k++;
        return k == need ? v : SIZE_MAX;
    }
    return SIZE_MAX;
}

/* Finds the last JSON string value of p[0..n) that is at least JSON_SPLIT_MIN long and ends with AKIA/ASIA + 0..15 id
 * characters (not inside a longer word): sets *at (just after AKIA), *q (its closing quote), *ql and key (the value's
 * key, NUL-terminated, at most keysz - 1 bytes), and returns the characters the id still needs (1..16); 0 when there
 * is none. */
static size_t json_cut_id(const char *p, size_t n, size_t *at, size_t *q, size_t *qlp, char *key, size_t keysz)
{
    for (size_t c = n; c-- > 4;) {
        if (p[c] != '"')
            continue;
        size_t ql = p[c - 1] == '\\' ? 2 : 1, e = c + 1 - ql; /* the run of id characters ends at e */
        size_t r = e;
        while (r > 0 && e - r < 20 && is_akid_char((unsigned char)p[r - 1]))
            r--;
        if (e - r < 4 || e - r > 19 || (memcmp(p + r, "AKIA", 4) != 0 && memcmp(p + r, "ASIA", 4) != 0))
            continue;
        if (r > 0 && ((p[r - 1] >= 'a' && p[r - 1] <= 'z') || is_akid_char((unsigned char)p[r - 1])))
            continue;
        /* the value's opening quote: the previous quote of the same kind (" not escaped, or \") */
        size_t o = r;
        while (o > 0 && !(p[o - 1] == '"' && (ql == 2) == (o > 1 && p[o - 2] == '\\')))
            o--;
        if (o < ql || e - o < JSON_SPLIT_MIN)
            continue;
        size_t k = o - ql; /* before the opening quote: Q key Q : */
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k == 0 || p[k - 1] != ':')
            continue;
        k--;
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k < ql + 2 || p[k - 1] != '"' || (ql == 2 && p[k - 2] != '\\'))
            continue;
        size_t ke = k - ql, ks = ke;
        while (ks > 0 && p[ks - 1] != '"' && p[ks - 1] != '\\' && ke - ks < keysz - 1)
            ks--;
        if (ks < ql || p[ks - 1] != '"' || (ql == 2 && p[ks - 2] != '\\') || ks == ke)
            continue;
        memcpy(key, p + ks, ke - ks);
        key[ke - ks] = '\0';
        *at = r + 4;
        *q = e;
        *qlp = ql;
        return 16 - (e - r - 4);
    }
    return 0;
}

/* Scrubs one line (without its newline) and emits it, plus the newline when nl. cut_end: the line closes a key whose
 * BEGIN was never seen, and only the part from its first orphan END marker (after the rules) is kept. */
static int do_line(nd_scrub *s, const char *line, size_t len, bool nl, const char *low, bool cut_end)
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
    if (s->akid_carry) {
        /* the rest of an access key id that a line wrap cut, after the line's decoration (indent, "# ", a quote) */
        size_t d = 0, k = akid_continues(s, line, len, &d);
        s->akid_carry = 0;
        if (k > 0) {
            s->extra_count++;
            int rc = emit(s, line, d);
            if (rc == 0)
                rc = emit(s, MARK, MARKLEN);
            if (rc < 0)
                return rc;
            line += d + k;
            len -= d + k;
            low = low ? low + d + k : NULL;
        }
    }
    if (s->jneed) {
        /* the rest of an access key id cut at the end of a JSON value: at the start of this line's value of the same
         * key, replaced before the rules run, so they still see the whole line */
        size_t need = s->jneed;
        s->jneed = 0;
        size_t v = json_key_value(line, len, 0, s->jkey, s->jql, need);
        if (v != SIZE_MAX) {
            if (reserve(&s->jl, &s->jlcap, len + MARKLEN + 1) < 0)
                return -ENOMEM;
            memcpy(s->jl, line, v);
            memcpy(s->jl + v, MARK, MARKLEN);
            memcpy(s->jl + v + MARKLEN, line + v + need, len - v - need);
            len = len - need + MARKLEN;
            line = s->jl;
            low = NULL;
            s->extra_count++;
        }
    }

    const char *cur = line;
    size_t curlen = len;
    int rrc = run_rules(s, line, len, low, false, &cur, &curlen);
    if (rrc < 0)
        return rrc;
    if (cut_end) {
        /* held key-body lines end here: the line is kept from its END marker on (line_in decided that on this same
         * scrubbed text) */
        const char *m = orphan_end(cur, curlen);
        if (m) {
            curlen -= (size_t)(m - cur);
            cur = m;
        }
    }
    if (curlen >= JSON_SPLIT_MIN && (memmem(cur, curlen, "AKIA", 4) || memmem(cur, curlen, "ASIA", 4))) {
        /* a key id a log driver cut at the end of a JSON value: this half, and the rest at the start of the next
         * value of the same key — later on this line, or else on the next line */
        size_t at = 0, q = 0, ql = 1, need = json_cut_id(cur, curlen, &at, &q, &ql, s->jkey, sizeof s->jkey);
        if (need) {
            size_t v = json_key_value(cur, curlen, q + ql, s->jkey, ql, need);
            /* cur is the line or s->a, never s->b */
            if (reserve(&s->b, &s->bcap, curlen + 2 * MARKLEN + 1) < 0)
                return -ENOMEM;
            size_t o = 0;
            memcpy(s->b, cur, at);
            memcpy(s->b + at, MARK, MARKLEN);
            o = at + MARKLEN;
            s->extra_count++;
            if (v != SIZE_MAX) {
                memcpy(s->b + o, cur + q, v - q);
                o += v - q;
                memcpy(s->b + o, MARK, MARKLEN);
                o += MARKLEN;
                memcpy(s->b + o, cur + v + need, curlen - v - need);
                o += curlen - v - need;
                s->extra_count++;
            } else {
                memcpy(s->b + o, cur + q, curlen - q);
                o += curlen - q;
                s->jneed = need;
                s->jql = ql;
            }
            curlen = o;
            cur = s->b;
        }
    }
    /* The last BEGIN marker of the (scrubbed) line with no END after it opens a block: the line is kept up to the
     * end of that marker. Decided after the rules, on what will be written, so scrubbing the output again finds the
     * same marker. */
    const char *beg = NULL;
    {
        const char *p = cur, *bm, *lastb = NULL;
        size_t rem = curlen, lastml = 0, dummy;
        while ((bm = find_marker(p, rem, "-----BEGIN ", &mlen)) != NULL) {
            lastb = bm;
            lastml = mlen;
            rem -= (size_t)(bm + 1 - p);
            p = bm + 1;
        }
        if (lastb && !find_marker(lastb + lastml, curlen - (size_t)(lastb - cur) - lastml, "-----END ", &dummy)) {
            beg = lastb;
            curlen = (size_t)(lastb - cur) + lastml;
        }
    }
    /* an access key id prefix ending the line (AKIA + fewer than 16 characters): a line wrap cut it */
    bool cut_id = false;
    size_t id_end = curlen, keep_to = curlen;
    if (!beg && curlen >= 4) {
        /* the line may end with decoration after the id (a closing quote, a comma) */
        while (id_end > 0 && curlen - id_end < 4 && cur[id_end - 1] && strchr(" \t\r\"',;})]", cur[id_end - 1]))
            id_end--;
        size_t q = id_end;
        while (q > 0 && id_end - q < 19 && is_akid_char((unsigned char)cur[q - 1]))
            q--;
        /* q: start of the trailing upper-case run (at most 15 + 4 long); look for the prefix inside it */
        for (size_t at = q; at + 4 <= id_end; at++) {
            if ((memcmp(cur + at, "AKIA", 4) == 0 || memcmp(cur + at, "ASIA", 4) == 0) && id_end - at - 4 < 16 &&
                (at == 0 || !((cur[at - 1] >= 'a' && cur[at - 1] <= 'z') || is_akid_char((unsigned char)cur[at - 1])))) {
                s->akid_carry = 16 - (id_end - at - 4);
                cut_id = true;
                s->extra_count++;
                keep_to = at + 4;
                break;
            }
        }
    }
    int rc = emit(s, cur, keep_to);
    if (rc == 0 && cut_id) {
        rc = emit(s, MARK, MARKLEN);
        if (rc == 0)
            rc = emit(s, cur + id_end, curlen - id_end);
    }
    if (rc == 0 && beg) {
        s->in_pem = true;
        s->pem_count++;
        /* the marker line always ends with a newline here, so scrubbing the output again gives the same bytes */
        rc = emit(s, "\n[REDACTED]\n", 12);
        return rc;
    }
    if (rc == 0 && nl)
        rc = emit(s, "\n", 1);
    return rc;
}

/* ---- key bodies without their BEGIN line, and the per-line state ------------------------------------------------ */

static bool all_b64(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_b64((unsigned char)p[i]))
            return false;
    return true;
}

/* Could this line be part of a PEM/PGP key body? Base64 lines of 16+ characters; once a run is held (or at the very
 * start of a stream, which a tail cut may have started inside a key) also short base64, blank and armor header
 * lines. */
/* The line without its decoration: leading blanks, '#', quotes, '>' and '*'; trailing blanks, CR, quotes, commas
 * and a JSON-escaped "\n" — so a key body quoted in a YAML comment or a JSON array is still recognised. */
static void undecorate(const char **pp, size_t *pn)
{
    const char *p = *pp;
    size_t n = *pn;
    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '#' || *p == '"' || *p == '\'' || *p == '>' || *p == '*')) {
        p++;
        n--;
    }
    for (;;) {
        if (n > 0 && strchr(" \t\r\"',", p[n - 1]) && p[n - 1])
            n--;
        else if (n >= 2 && p[n - 2] == '\\' && p[n - 1] == 'n')
            n -= 2;
        else
            break;
    }
    *pp = p;
    *pn = n;
}

static bool key_body_line(const nd_scrub *s, const char *p, size_t n)
{
    undecorate(&p, &n);
    bool cont = s->hlen > 0 || s->at_start;
    if (n == 0)
        return s->hlen > 0;
    static const char *const hdr[] = {"Proc-Type:", "DEK-Info:", "Version:", "Comment:", "Hash:", NULL};
    for (int i = 0; hdr[i]; i++) /* armor headers only inside a held run, never to start one */
        if (s->hlen > 0 && n >= strlen(hdr[i]) && memcmp(p, hdr[i], strlen(hdr[i])) == 0)
            return true;
    if (!all_b64(p, n))
        return false;
    return cont || n >= 16;
}

/* Writes the held lines out through the rules (all of them: the lines came from an earlier block). */
static int flush_hold(nd_scrub *s)
{
    if (s->hlen == 0)
        return 0;
    char *h = s->hold;
    size_t n = s->hlen;
    s->hold = NULL;
    s->hlen = 0;
    size_t cap = s->holdcap;
    s->holdcap = 0;
    bool was = s->force;
    s->force = true;
    int rc = 0;
    size_t off = 0;
    while (off < n && rc == 0) {
        const char *nl = memchr(h + off, '\n', n - off);
        size_t ll = nl ? (size_t)(nl - (h + off)) : n - off;
        const char *c = h + off;
        size_t t = ll;
        undecorate(&c, &t);
        if (s->in_b64 && t > 0 && all_b64(c, t)) {
            off += ll + (nl ? 1 : 0); /* the rest of a base64-wrapped private key */
            continue;
        }
        s->in_b64 = false;
        rc = do_line(s, h + off, ll, nl != NULL, NULL, false);
        off += ll + (nl ? 1 : 0);
    }
    s->force = was;
    /* give the buffer back for reuse */
    if (!s->hold) {
        s->hold = h;
        s->holdcap = cap;
    } else {
        free(h);
    }
    return rc;
}

/* One line through the per-line state (key body held back, base64 key continuation, access key id cut by a wrap),
 * then the rules. */
static int line_in(nd_scrub *s, const char *line, size_t len, bool nl, const char *low)
{
    bool start = s->at_start;
    s->at_start = false;
    if (s->in_b64) {
        const char *c = line;
        size_t n = len;
        undecorate(&c, &n);
        if (n > 0 && all_b64(c, n))
            return 0; /* the rest of a base64-wrapped private key */
        s->in_b64 = false;
    }
    /* A pending continuation (a key id cut by a wrap or between JSON records) that this line does not continue is
     * dropped now, so the line is judged as any other (held as a possible key body or not): the output has no
     * pending continuation there (its first half is redacted), and scrubbing it again must judge the line the same
     * (fuzz/regressions/scrub/scrub-crash-f1aeaef…). */
    size_t deco = 0;
    if (s->akid_carry && akid_continues(s, line, len, &deco) == 0)
        s->akid_carry = 0;
    if (s->jneed && json_key_value(line, len, 0, s->jkey, s->jql, s->jneed) == SIZE_MAX)
        s->jneed = 0;
    if (!s->in_pem && !s->akid_carry && !s->jneed && nl) {
        s->at_start = start;
        bool body = key_body_line(s, line, len);
        s->at_start = false;
        if (body) {
            if (reserve(&s->hold, &s->holdcap, s->hlen + len + 1) < 0)
                return -ENOMEM;
            memcpy(s->hold + s->hlen, line, len);
            s->hold[s->hlen + len] = '\n';
            s->hlen += len + 1;
            return s->hlen > HOLD_MAX ? flush_hold(s) : 0;
        }
    }
    bool cut_end = false;
    if (s->hlen > 0 && !s->in_pem) {
        /* Is this the END of a key whose BEGIN was never seen (cut above), so the held lines were its body? Decided on
         * the line as the rules leave it — what the output will hold — so that scrubbing the output again decides
         * the same (a BEGIN inside a value keyed_secret redacts must not count: fuzz/regressions/scrub/scrub-crash-9dabb5…). The
         * rules run here without side effects (counts and the base64 state are put back); do_line runs them again. */
        bool b64 = s->in_b64;
        const char *scrubbed = NULL;
        size_t sl = 0;
        int rc = run_rules(s, line, len, low, true, &scrubbed, &sl);
        cut_end = rc == 0 && orphan_end(scrubbed, sl) != NULL;
        s->in_b64 = b64;
        if (rc < 0)
            return rc;
    }
    if (cut_end) {
        s->hlen = 0;
        s->pem_count++;
        int rc = emit(s, MARK "\n", MARKLEN + 1);
        if (rc < 0)
            return rc;
    } else if (s->hlen > 0) {
        int rc = flush_hold(s);
        if (rc < 0)
            return rc;
        if (s->in_b64) { /* the held lines opened a base64 key: this line may continue it */
            const char *c = line;
            size_t n = len;
            undecorate(&c, &n);
            if (n > 0 && all_b64(c, n))
                return 0;
            s->in_b64 = false;
        }
    }
    return do_line(s, line, len, nl, low, cut_end);
}

/* True while the next line must go through line_in whatever the trigger scan says. */
static bool line_state(const nd_scrub *s)
{
    return s->hlen > 0 || s->in_b64 || s->akid_carry > 0 || s->jneed > 0 || s->in_pem;
}

/* (Re)builds the trigger table: every trigger of every rule, plus the PEM marker, indexed by its first two
 * (lower-case) bytes in a bitmap, so one pass over a block finds every candidate position. */
static int build_triggers(nd_scrub *s)
{
    static const char *const pem_trig[] = {"private key-----", "private key block-----"};
    size_t n = 2;
    for (size_t i = 0; i < s->nrules; i++)
        n += (size_t)s->rules[i].ntrig;
    trigent *t = realloc(s->trigs, n * sizeof *t);
    if (!t)
        return -ENOMEM;
    s->trigs = t;
    s->ntrigs = 0;
    memset(s->bigram, 0, sizeof s->bigram);
    for (size_t i = 0; i <= s->nrules; i++) {
        int cnt = i < s->nrules ? s->rules[i].ntrig : 2;
        for (int k = 0; k < cnt; k++) {
            const char *str = i < s->nrules ? s->rules[i].trig[k] : pem_trig[k];
            trigent *e = &s->trigs[s->ntrigs++];
            e->s = str;
            e->len = strlen(str);
            e->rule = i < s->nrules ? (int)i : -1;
            unsigned key = ((unsigned)(unsigned char)str[0] << 8) | (unsigned char)str[1];
            e->key = key;
            s->bigram[key >> 3] |= (unsigned char)(1u << (key & 7));
        }
    }
    /* sorted by key (stable in rule order within a key), so a candidate position looks only at its own triggers */
    for (size_t i = 1; i < s->ntrigs; i++) {
        trigent v = s->trigs[i];
        size_t j = i;
        while (j > 0 && s->trigs[j - 1].key > v.key) {
            s->trigs[j] = s->trigs[j - 1];
            j--;
        }
        s->trigs[j] = v;
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
    bool untriggered = false, pem = line_state(s) || s->at_start;
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
        size_t lo = 0, hi = s->ntrigs;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (s->trigs[mid].key < key)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t k = lo; k < s->ntrigs && s->trigs[k].key == key; k++) {
            const trigent *t = &s->trigs[k];
            if (i + t->len > n || !same_lower(p + i, t->s, t->len))
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
    if (pem || untriggered) {
        /* slow path: every line (PEM state machine, or rules without triggers), with a lower-cased copy */
        if (reserve(&s->lower, &s->lcap, n) < 0)
            return -ENOMEM;
        lower_into(s->lower, p, n);
        size_t off = 0;
        while (off < n) {
            const char *nl = memchr(p + off, '\n', n - off);
            size_t ll = nl ? (size_t)(nl - (p + off)) : n - off;
            int rc = line_in(s, p + off, ll, nl != NULL, s->lower + off);
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
        rc = line_in(s, p + start, end - start, le != NULL, s->lower);
        if (rc < 0)
            return rc;
        off = end + (le ? 1 : 0);
        /* state the line opened (a key id cut by the wrap, a base64 key) continues on the next lines */
        while (off < n && line_state(s)) {
            le = memchr(p + off, '\n', n - off);
            end = le ? (size_t)(le - p) : n;
            rc = line_in(s, p + off, end - off, le != NULL, NULL);
            if (rc < 0)
                return rc;
            off = end + (le ? 1 : 0);
        }
    }
    /* lines at the end of the block that may be a key body are held: the END marker may be in the next block */
    size_t keep = n;
    while (keep > off) {
        if (p[keep - 1] != '\n')
            break;
        const char *ls = keep - 1 > off ? memrchr(p + off, '\n', keep - 1 - off) : NULL;
        size_t st = ls ? (size_t)(ls - p) + 1 : off;
        if (n - st > HOLD_MAX || !key_body_line(s, p + st, keep - 1 - st))
            break;
        keep = st;
    }
    int rc = emit(s, p + off, keep - off);
    for (size_t q = keep; rc == 0 && q < n;) {
        const char *le = memchr(p + q, '\n', n - q);
        size_t end = le ? (size_t)(le - p) : n;
        rc = line_in(s, p + q, end - q, le != NULL, NULL);
        q = end + (le ? 1 : 0);
    }
    return rc;
}

/* ---- stream -------------------------------------------------------------------------------------------------- */

void nd_scrub_begin(nd_scrub *s, nd_scrub_sink sink, void *ud)
{
    s->sink = sink;
    s->ud = ud;
    s->sink_err = 0;
    s->in_pem = false;
    s->in_b64 = false;
    s->at_start = true;
    s->force = false;
    s->akid_carry = 0;
    s->jneed = 0;
    s->hlen = 0;
    s->pem_count = 0;
    s->extra_count = 0;
    s->plen = 0;
    for (size_t i = 0; i < s->nrules; i++)
        s->rules[i].count = 0;
}

/* The start of the first trigger (a secret's name or shape: "secret", "token", "akia", "eyj", a PEM marker…) that
 * begins in p[from..n), also one the end of p cuts (its first two bytes or more match); SIZE_MAX when there is none. */
static size_t first_trigger(nd_scrub *s, const char *p, size_t from, size_t n)
{
    if ((s->table_rules != s->nrules || !s->trigs) && build_triggers(s) < 0)
        return SIZE_MAX;
    for (size_t i = from; i + 1 < n; i++) {
        unsigned a = (unsigned char)p[i], b = (unsigned char)p[i + 1];
        a = (a >= 'A' && a <= 'Z') ? a + 32 : a;
        b = (b >= 'A' && b <= 'Z') ? b + 32 : b;
        unsigned key = (a << 8) | b;
        if (!(s->bigram[key >> 3] & (1u << (key & 7))))
            continue;
        for (size_t k = 0; k < s->ntrigs; k++) {
            const trigent *t = &s->trigs[k];
            size_t m = n - i < t->len ? n - i : t->len;
            if (t->key == key && same_lower(p + i, t->s, m))
                return i;
        }
    }
    return SIZE_MAX;
}

static bool cut_sep(char c)
{
    return c == ' ' || c == '\t' || c == ',' || c == ';' || c == '&' || c == '>' || c == '<';
}

/* Where to cut an over-long line p[0..n) (n is ND_SCRUB_LINE_MAX), looking only at its final 8 KiB. A secret must
 * not straddle the cut: its name and its value (or a value recognised by its shape) have to land in the same piece.
 * So every trigger of the last 4 KiB goes to the next piece: the cut is before the first of them, at the last
 * separator (blank , ; & < >) before it, else at the start of the token holding it; with no trigger there, at the
 * last separator; else at the last byte that can end no token (not a letter, digit, _ - . + / =); else at the hard
 * limit (a single token of more than 8 KiB). Left open (docs/bundle.md): a value of more than 4 KiB whose name is
 * further back. Never returns 0. */
static size_t cut_point(nd_scrub *s, const char *p, size_t n)
{
    size_t lo = n > 8192 ? n - 8192 : 0;
    size_t t = first_trigger(s, p, n > 4096 ? n - 4096 : 0, n);
    if (t != SIZE_MAX) {
        for (size_t i = t; i > lo; i--)
            if (cut_sep(p[i - 1]))
                return i;
        size_t i = t;
        while (i > lo && (is_ident((unsigned char)p[i - 1]) || is_b64((unsigned char)p[i - 1])))
            i--;
        if (i > lo)
            return i;
    }
    for (size_t i = n; i > lo; i--)
        if (cut_sep(p[i - 1]))
            return i;
    for (size_t i = n; i > lo; i--)
        if (!is_ident((unsigned char)p[i - 1]) && !is_b64((unsigned char)p[i - 1]))
            return i;
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
                size_t cut = cut_point(s, s->pend, s->plen);
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
                size_t cut = cut_point(s, s->pend, s->plen);
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
    if (s->hlen > 0 && !s->sink_err) {
        int rc = flush_hold(s);
        if (rc < 0)
            return rc;
    }
    return s->sink_err;
}

size_t nd_scrub_total(const nd_scrub *s)
{
    size_t t = s->pem_count + s->extra_count;
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
    if (s->extra_count) {
        json_t *c = json_object_get(o, "aws_access_key_id");
        json_int_t v = (c ? json_integer_value(c) : 0) + (json_int_t)s->extra_count;
        json_object_set_new(o, "aws_access_key_id", json_integer(v));
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
    static const struct {
        const char *magic;
        size_t len;
    } magics[] = {
        {"\x1f\x8b", 2},                        /* gzip */
        {"\xfd" "7zXZ\x00", 6},                 /* xz */
        {"\x28\xb5\x2f\xfd", 4},                /* zstd */
        {"BZh", 3},                               /* bzip2 */
        {"PK\x03\x04", 4},                       /* zip */
        {"7z\xbc\xaf\x27\x1c", 6},                /* 7z */
    };
    const unsigned char *p = data;
    for (size_t i = 0; i < sizeof magics / sizeof magics[0]; i++)
        if (n >= magics[i].len && memcmp(p, magics[i].magic, magics[i].len) == 0)
            return true;
    return false;
}

int nd_scrub_name(nd_scrub *s, const char *name, char *out, size_t outsz)
{
    nd_scrub *own = NULL;
    if (!s) {
        own = s = nd_scrub_new(NULL);
        if (!s)
            return -ENOMEM;
    }
    char *o = NULL;
    size_t ol = 0;
    int n = nd_scrub_buffer(s, name, strlen(name), &o, &ol);
    nd_scrub_free(own);
    if (n < 0)
        return n;
    while (ol > 0 && o[ol - 1] == '\n')
        ol--; /* a PEM marker's "\n[REDACTED]\n" */
    if (ol + 1 > outsz) {
        free(o);
        return -ENAMETOOLONG;
    }
    for (size_t i = 0; i < ol; i++)
        out[i] = ((unsigned char)o[i] < 32 || o[i] == 127) ? '_' : o[i];
    out[ol] = '\0';
    free(o);
    return n;
}
