/*
 * nitrocli.c — the nitro-cli adapter (see nd_nitrocli.h): argv builders, a synchronous runner over the process
 * runner, and tolerant parsers for nitro-cli's outputs (error blocks, err logs, nitro_enclaves.log lines, JSON).
 *
 * How an error block looks (docs/nitro.md):
 *     [ E26 ] Insufficient memory requested. User provided `memory` is 512 MB, but … should be 2148 MB
 *     <more message lines>
 *     <blank>
 *     For more details, please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26
 *     <blank>
 *     [Backtrace: … (BACKTRACE=1)]
 *     If you open a support ticket, please provide the error log found at "/var/log/nitro_enclaves/err….log"
 *     Failed connections: 1
 *     [ E39 ] Enclave process connection failure. …
 * The parser is a line state machine; anything it does not understand is kept (preamble / extra lines), never fatal.
 */
#include "nd_nitrocli.h"
#include "nd_buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small string helpers -------------------------------------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int list_push(char ***v, size_t *n, const char *s, size_t len)
{
    size_t cap = nd_array_cap(*n);
    char **nv = nd_grow_array(*v, &cap, *n + 1, sizeof *nv);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    if (!(nv[*n] = dupn(s, len)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

static void list_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Appends "\n" + s to *dst (or sets it). */
static int append_line(char **dst, const char *s, size_t len)
{
    size_t old = *dst ? strlen(*dst) : 0;
    char *d = realloc(*dst, old + len + 2);
    if (!d)
        return -ENOMEM;
    if (old)
        d[old++] = '\n';
    memcpy(d + old, s, len);
    d[old + len] = '\0';
    *dst = d;
    return 0;
}

static bool starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

/* Trims trailing CR/space/tab. */
static size_t rtrim(const char *s, size_t len)
{
    while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    return len;
}

/* ---- error blocks ---------------------------------------------------------------------------------------------- */

/* Recognises "[ E26 ] rest" (leading blanks and inner spaces optional, 1–3 digits). Returns the number and sets
 * *rest, or -1. */
static int block_header(const char *s, size_t len, size_t *rest)
{
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t')) /* pasted output is often indented */
        i++;
    if (i >= len || s[i] != '[')
        return -1;
    i++;
    while (i < len && s[i] == ' ')
        i++;
    if (i >= len || (s[i] != 'E' && s[i] != 'e'))
        return -1;
    i++;
    size_t d0 = i;
    int num = 0;
    while (i < len && isdigit((unsigned char)s[i]) && i - d0 < 3)
        num = num * 10 + (s[i++] - '0');
    if (i == d0 || (i < len && isdigit((unsigned char)s[i])))
        return -1;
    while (i < len && s[i] == ' ')
        i++;
    if (i >= len || s[i] != ']')
        return -1;
    i++;
    while (i < len && s[i] == ' ')
        i++;
    *rest = i;
    return num;
}

static int add_fact(nd_nitro_block *b, const char *key, const char *val, size_t vlen)
{
    nd_nitro_fact *f = nd_grow_array(b->facts, &b->cap_facts, b->n_facts + 1, sizeof *f);
    if (!f)
        return -ENOMEM;
    b->facts = f;
    f[b->n_facts].key = strdup(key);
    f[b->n_facts].value = dupn(val, vlen);
    if (!f[b->n_facts].key || !f[b->n_facts].value) {
        free(f[b->n_facts].key);
        free(f[b->n_facts].value);
        return -ENOMEM;
    }
    b->n_facts++;
    return 0;
}

const char *nd_nitro_fact_get(const nd_nitro_block *b, const char *key)
{
    for (size_t i = 0; i < b->n_facts; i++)
        if (strcmp(b->facts[i].key, key) == 0)
            return b->facts[i].value;
    return NULL;
}

/* Adds the run of digits right after `prefix` in text as fact key. */
static int fact_number_after(nd_nitro_block *b, const char *text, const char *prefix, const char *key)
{
    const char *p = strstr(text, prefix);
    if (!p)
        return 0;
    p += strlen(prefix);
    size_t n = 0;
    while (isdigit((unsigned char)p[n]))
        n++;
    return n ? add_fact(b, key, p, n) : 0;
}

/* Adds the text between `prefix` and the next `end` character as fact key. */
static int fact_between(nd_nitro_block *b, const char *text, const char *prefix, char end, const char *key)
{
    const char *p = strstr(text, prefix);
    if (!p)
        return 0;
    p += strlen(prefix);
    const char *q = strchr(p, end);
    return q ? add_fact(b, key, p, (size_t)(q - p)) : 0;
}

const nd_nitro_ioctl_text nd_nitro_ioctl_texts[] = {
    {"NE_ERR_VCPU_ALREADY_USED", "The provided vCPU is already used"},
    {"NE_ERR_VCPU_NOT_IN_CPU_POOL", "The provided vCPU is not available in the CPU pool"},
    {"NE_ERR_VCPU_INVALID_CPU_CORE", "The vCPU core ID is invalid for the CPU pool"},
    {"NE_ERR_INVALID_MEM_REGION_SIZE", "The memory region's size is not a multiple of 2 MiB"},
    {"NE_ERR_INVALID_MEM_REGION_ADDR", "The memory region's address is invalid"},
    {"NE_ERR_UNALIGNED_MEM_REGION_ADDR", "The memory region's address is not aligned"},
    {"NE_ERR_MEM_REGION_ALREADY_USED", "The memory region is already used"},
    {"NE_ERR_MEM_NOT_HUGE_PAGE", "The memory region is not backed by contiguous physical huge page(s)"},
    {"NE_ERR_MEM_DIFFERENT_NUMA_NODE", "The memory region's pages and the CPUs belong to different NUMA nodes"},
    {"NE_ERR_MEM_MAX_REGIONS", "The maximum number of memory regions per enclave has been reached"},
    {"NE_ERR_NO_MEM_REGIONS_ADDED", "The enclave cannot start because no memory regions have been added"},
    {"NE_ERR_NO_VCPUS_ADDED", "The enclave cannot start because no vCPUs have been added"},
    {"NE_ERR_ENCLAVE_MEM_MIN_SIZE", "The enclave's memory size is lower than the minimum supported"},
    {"NE_ERR_FULL_CORES_NOT_USED", "The enclave cannot start because full CPU cores have not been set"},
    {"NE_ERR_NOT_IN_INIT_STATE", "The enclave is in an incorrect state to set resources or start"},
    {"NE_ERR_INVALID_VCPU", "The provided vCPU is out of range of the available CPUs"},
    {"NE_ERR_NO_CPUS_AVAIL_IN_POOL", "The enclave cannot be created because no CPUs are available in the pool"},
    {"NE_ERR_INVALID_PAGE_SIZE", "The memory region is not backed by page(s) multiple of 2 MiB"},
    {"NE_ERR_INVALID_FLAG_VALUE", "The provided flags value in the ioctl arg data structure is invalid"},
    {"NE_ERR_INVALID_ENCLAVE_CID", "The provided enclave CID is invalid, being a well-known CID or the parent VM CID"},
    {NULL, NULL}};

/* Pulls the numbers and names operators need out of a block's message and backtrace. */
static int extract_facts(nd_nitro_block *b)
{
    const char *m = b->message ? b->message : "";
    int rc = 0;
    /* generic "User provided `memory` is 512 MB" */
    const char *up = strstr(m, "User provided `");
    if (up) {
        rc |= fact_between(b, up, "User provided `", '`', "option");
        const char *q = strchr(up + 15, '`');
        if (q && strncmp(q, "` is ", 5) == 0) {
            size_t n = 0;
            while (isdigit((unsigned char)q[5 + n]))
                n++;
            if (n)
                rc |= add_fact(b, "value", q + 5, n);
        }
    }
    switch (b->number) {
    case 26:
        rc |= fact_number_after(b, m, "User provided `memory` is ", "memory_mib");
        rc |= fact_number_after(b, m, "the minimum memory should be ", "min_memory_mib");
        break;
    case 27:
        rc |= fact_number_after(b, m, "User provided `memory` is ", "memory_mib");
        break;
    case 22:
        rc |= fact_number_after(b, m, "User provided `cpu-count` is ", "cpu_count");
        break;
    case 21:
        rc |= fact_number_after(b, m, "contains CPU ", "cpu_id");
        break;
    case 20:
        rc |= fact_between(b, m, "(CPU(s) ", ')', "cpu_ids");
        break;
    case 19:
        rc |= fact_between(b, m, "File: '", '\'', "file");
        rc |= fact_between(b, m, "failing operation: '", '\'', "operation");
        break;
    case 1:
        rc |= fact_between(b, m, "did not provide the `", '`', "argument");
        break;
    case 2:
        rc |= fact_between(b, m, "provided both `", '`', "argument");
        break;
    case 3:
        rc |= fact_between(b, m, "The parameter `", '`', "argument");
        break;
    default:
        break;
    }
    /* E36 and friends: the boot error kind, wherever it appears */
    static const char *const boot[] = {"VsockTimeoutError", "SocketPollingError", "VsockAcceptingError",
                                       "VsockReceivingError", NULL};
    for (int i = 0; boot[i]; i++) {
        if (strstr(m, boot[i]) || (b->backtrace && strstr(b->backtrace, boot[i]))) {
            rc |= add_fact(b, "boot_error", boot[i], strlen(boot[i]));
            break;
        }
    }
    /* driver errors in backtraces: nitro-cli's English sub-action (driver_message, and its NE_ERR_* name as
     * driver_error), or an NE_ERR_* name as older tools printed it */
    for (const nd_nitro_ioctl_text *d = nd_nitro_ioctl_texts; d->name; d++) {
        if ((b->backtrace && strstr(b->backtrace, d->text)) || strstr(m, d->text)) {
            rc |= add_fact(b, "driver_error", d->name, strlen(d->name));
            rc |= add_fact(b, "driver_message", d->text, strlen(d->text));
            break;
        }
    }
    const char *t = nd_nitro_fact_get(b, "driver_error") ? NULL : b->backtrace ? strstr(b->backtrace, "NE_ERR_") : NULL;
    if (!t && !nd_nitro_fact_get(b, "driver_error"))
        t = strstr(m, "NE_ERR_");
    if (t) {
        size_t n = 0;
        while (isupper((unsigned char)t[n]) || t[n] == '_' || isdigit((unsigned char)t[n]))
            n++;
        rc |= add_fact(b, "driver_error", t, n);
    }
    if (strstr(m, "no CPUs available") || strstr(m, "no CPUs are available") ||
        (b->backtrace && (strstr(b->backtrace, "no CPUs available") || strstr(b->backtrace, "no CPUs are available"))))
        rc |= add_fact(b, "cpus", "none available", 14);
    return rc ? -ENOMEM : 0;
}

static void block_free(nd_nitro_block *b)
{
    free(b->title);
    free(b->message);
    free(b->headline);
    list_free(b->details, b->n_details);
    list_free(b->extra, b->n_extra);
    free(b->doc_url);
    free(b->err_log_path);
    free(b->backtrace);
    for (size_t i = 0; i < b->n_facts; i++) {
        free(b->facts[i].key);
        free(b->facts[i].value);
    }
    free(b->facts);
}

void nd_nitro_errors_free(nd_nitro_errors *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_blocks; i++)
        block_free(&e->blocks[i]);
    free(e->blocks);
    list_free(e->preamble, e->n_preamble);
    free(e->raw);
    memset(e, 0, sizeof *e);
}

static const char DOC_PREFIX[] = "For more details, please visit ";
static const char TICKET_PREFIX[] = "If you open a support ticket, please provide the error log found at ";
static const char FAILED_PREFIX[] = "Failed connections: ";

enum { ST_NONE, ST_MESSAGE, ST_AFTER_DOC, ST_BACKTRACE };

int nd_nitro_parse_errors(const char *text, size_t len, nd_nitro_errors *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    out->failed_connections = -1;
    if (!text)
        len = 0;
    out->raw = dupn(text ? text : "", len);
    out->raw_len = len;
    if (!out->raw)
        return nd_err_set(err, -ENOMEM, "out of memory");
    int state = ST_NONE;
    int pending_failed = -1;
    nd_nitro_block *cur = NULL;
    size_t lineno = 0;
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        lineno++;
        l = rtrim(s, l);
        size_t rest;
        int num = block_header(s, l, &rest);
        if (num >= 0) {
            nd_nitro_block *nb = nd_grow_array(out->blocks, &out->cap_blocks, out->n_blocks + 1, sizeof *nb);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            out->blocks = nb;
            cur = &nb[out->n_blocks++];
            memset(cur, 0, sizeof *cur);
            snprintf(cur->code, sizeof cur->code, "E%02d", num);
            cur->number = num;
            cur->line = lineno;
            cur->failed_connections = pending_failed;
            pending_failed = -1;
            cur->headline = dupn(s, l);
            const char *h = s + rest;
            size_t hl = l - rest;
            const char *dot = memchr(h, '.', hl);
            size_t tl = dot ? (size_t)(dot - h) : hl;
            cur->title = dupn(h, tl);
            size_t mstart = dot ? tl + 1 : hl;
            while (mstart < hl && h[mstart] == ' ')
                mstart++;
            cur->message = dupn(h + mstart, hl - mstart);
            if (!cur->headline || !cur->title || !cur->message)
                rc = -ENOMEM;
            state = ST_MESSAGE;
            continue;
        }
        if (starts(s, l, FAILED_PREFIX)) {
            long n = 0;
            size_t i = sizeof FAILED_PREFIX - 1;
            bool digits = false;
            while (i < l && isdigit((unsigned char)s[i]) && n < 1000000) {
                n = n * 10 + (s[i++] - '0');
                digits = true;
            }
            if (digits) {
                pending_failed = (int)n;
                out->failed_connections = (int)n;
                state = ST_NONE;
                cur = NULL;
                continue;
            }
        }
        if (!cur) {
            if (l > 0)
                rc = list_push(&out->preamble, &out->n_preamble, s, l);
            continue;
        }
        if (l == 0) {
            continue; /* blank lines separate the parts of a block */
        }
        if (starts(s, l, DOC_PREFIX)) {
            free(cur->doc_url);
            cur->doc_url = dupn(s + sizeof DOC_PREFIX - 1, l - (sizeof DOC_PREFIX - 1));
            if (!cur->doc_url)
                rc = -ENOMEM;
            state = ST_AFTER_DOC;
            continue;
        }
        if (starts(s, l, TICKET_PREFIX)) {
            const char *p = s + sizeof TICKET_PREFIX - 1;
            size_t pl = l - (sizeof TICKET_PREFIX - 1);
            if (pl >= 2 && p[0] == '"' && p[pl - 1] == '"') {
                p++;
                pl -= 2;
            }
            free(cur->err_log_path);
            cur->err_log_path = dupn(p, pl);
            if (!cur->err_log_path)
                rc = -ENOMEM;
            state = ST_AFTER_DOC;
            continue;
        }
        if (starts(s, l, "Backtrace:")) {
            state = ST_BACKTRACE;
            size_t k = 10;
            while (k < l && s[k] == ' ')
                k++;
            if (k < l)
                rc = append_line(&cur->backtrace, s + k, l - k);
            else if (!cur->backtrace)
                cur->backtrace = strdup("");
            continue;
        }
        if (state == ST_BACKTRACE) {
            rc = append_line(&cur->backtrace, s, l);
        } else if (state == ST_MESSAGE && !cur->doc_url) {
            rc = list_push(&cur->details, &cur->n_details, s, l);
            if (rc == 0)
                rc = append_line(&cur->message, s, l);
        } else {
            rc = list_push(&cur->extra, &cur->n_extra, s, l);
        }
    }
    for (size_t i = 0; rc == 0 && i < out->n_blocks; i++) {
        nd_nitro_block *b = &out->blocks[i];
        b->root_cause = i == 0;
        b->secondary = i > 0 && b->number == 39;
        rc = extract_facts(b);
    }
    out->recognised = out->n_blocks > 0;
    if (rc < 0) {
        nd_nitro_errors_free(out);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* ---- err logs -------------------------------------------------------------------------------------------------- */

void nd_nitro_errlog_free(nd_nitro_errlog *l)
{
    if (!l)
        return;
    free(l->action);
    list_free(l->subactions, l->n_subactions);
    free(l->root_file);
    free(l->version);
    free(l->build_commit);
    free(l->timestamp);
    free(l->raw);
    memset(l, 0, sizeof *l);
}

/* If the trimmed line starts with key, sets *dst to the rest (trimmed). Returns 1 when it matched. */
static int keyed(const char *s, size_t l, const char *key, char **dst, int *rc)
{
    if (!starts(s, l, key))
        return 0;
    size_t k = strlen(key);
    while (k < l && s[k] == ' ')
        k++;
    free(*dst);
    *dst = dupn(s + k, l - k);
    if (!*dst)
        *rc = -ENOMEM;
    return 1;
}

int nd_nitro_parse_errlog(const char *text, size_t len, nd_nitro_errlog *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    out->root_line = -1;
    if (!text)
        len = 0;
    out->raw = dupn(text ? text : "", len);
    if (!out->raw)
        return nd_err_set(err, -ENOMEM, "out of memory");
    bool in_sub = false;
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        size_t ind = 0;
        while (ind < l && (s[ind] == ' ' || s[ind] == '\t'))
            ind++;
        s += ind;
        l = rtrim(s, l - ind);
        if (l == 0)
            continue;
        char *line = NULL;
        if (keyed(s, l, "Action:", &out->action, &rc)) {
            in_sub = false;
        } else if (starts(s, l, "Subactions:")) {
            in_sub = true;
        } else if (keyed(s, l, "Root error file:", &out->root_file, &rc)) {
            in_sub = false;
        } else if (keyed(s, l, "Root error line:", &line, &rc)) {
            in_sub = false;
            if (line) {
                char *end;
                long v = strtol(line, &end, 10);
                if (end != line && *end == '\0' && v >= 0)
                    out->root_line = v;
                free(line);
            }
        } else if (keyed(s, l, "Version:", &out->version, &rc) ||
                   keyed(s, l, "Build commit:", &out->build_commit, &rc)) {
            in_sub = false;
        } else if (in_sub) {
            rc = list_push(&out->subactions, &out->n_subactions, s, l);
        }
    }
    if (rc < 0) {
        nd_nitro_errlog_free(out);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    out->recognised = out->action != NULL;
    return 0;
}

int nd_nitro_errlog_time(const char *path, char *buf, size_t bufsz)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n < 8 || strncmp(base, "err", 3) != 0 || strcmp(base + n - 4, ".log") != 0)
        return -EINVAL;
    size_t tl = n - 7;
    if (tl < 19 || tl >= bufsz || !isdigit((unsigned char)base[3]) || base[3 + 10] != 'T')
        return -EINVAL;
    memcpy(buf, base + 3, tl);
    buf[tl] = '\0';
    return 0;
}

/* ---- nitro_enclaves.log lines ---------------------------------------------------------------------------------- */

/* Reads "[...]" at *i into dst (without brackets). Returns 0 or -1. */
static int bracket(const char *s, size_t len, size_t *i, char *dst, size_t dstsz)
{
    if (*i >= len || s[*i] != '[')
        return -1;
    const char *e = memchr(s + *i + 1, ']', len - *i - 1);
    if (!e)
        return -1;
    size_t n = (size_t)(e - (s + *i + 1));
    if (n == 0 || n >= dstsz)
        return -1;
    memcpy(dst, s + *i + 1, n);
    dst[n] = '\0';
    *i += n + 2;
    return 0;
}

int nd_nitro_parse_logline(const char *line, size_t len, nd_nitro_logline *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    out->pid = out->line = -1;
    if (!line)
        return nd_err_set(err, -EBADMSG, "unrecognised log line: empty");
    len = rtrim(line, len);
    size_t i = 0;
    char fl[256];
    if (bracket(line, len, &i, out->id, sizeof out->id) < 0)
        return nd_err_set(err, -EBADMSG, "unrecognised log line: no [id] at column 1");
    size_t c2 = i + 1;
    if (bracket(line, len, &i, out->level, sizeof out->level) < 0)
        return nd_err_set(err, -EBADMSG, "unrecognised log line: no [LEVEL] at column %zu", c2);
    for (const char *p = out->level; *p; p++)
        if (!isupper((unsigned char)*p))
            return nd_err_set(err, -EBADMSG, "unrecognised log line: bad level '%s' at column %zu", out->level, c2);
    size_t c3 = i + 1;
    if (bracket(line, len, &i, out->timestamp, sizeof out->timestamp) < 0 || !isdigit((unsigned char)out->timestamp[0]))
        return nd_err_set(err, -EBADMSG, "unrecognised log line: no [timestamp] at column %zu", c3);
    size_t c4 = i + 1;
    if (bracket(line, len, &i, fl, sizeof fl) < 0)
        return nd_err_set(err, -EBADMSG, "unrecognised log line: no [file:line] at column %zu", c4);
    char *colon = strrchr(fl, ':');
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (end != colon + 1 && *end == '\0') {
            out->line = v;
            *colon = '\0';
        }
    }
    snprintf(out->file, sizeof out->file, "%s", fl);
    char *pc = strrchr(out->id, ':');
    size_t srclen = pc ? (size_t)(pc - out->id) : strlen(out->id);
    if (srclen >= sizeof out->source)
        srclen = sizeof out->source - 1;
    memcpy(out->source, out->id, srclen);
    out->source[srclen] = '\0';
    if (pc) {
        char *end;
        long v = strtol(pc + 1, &end, 10);
        if (end != pc + 1 && *end == '\0')
            out->pid = v;
    }
    if (i < len && line[i] == ' ')
        i++;
    out->message = line + i;
    out->message_len = len - i;
    return 0;
}

/* ---- JSON outputs --------------------------------------------------------------------------------------------- */

static const char *cmd_name(nd_nitro_cmd c)
{
    switch (c) {
    case ND_NITRO_RUN_ENCLAVE: return "run-enclave";
    case ND_NITRO_DESCRIBE_ENCLAVES: return "describe-enclaves";
    case ND_NITRO_TERMINATE_ENCLAVE: return "terminate-enclave";
    case ND_NITRO_BUILD_ENCLAVE: return "build-enclave";
    case ND_NITRO_DESCRIBE_EIF: return "describe-eif";
    }
    return "nitro-cli";
}

/* Checks that object o has each of the comma-separated keys. Returns the first missing one or NULL. */
static const char *missing_key(json_t *o, const char *keys, char *buf, size_t bufsz)
{
    while (*keys) {
        const char *e = strchr(keys, ',');
        size_t n = e ? (size_t)(e - keys) : strlen(keys);
        snprintf(buf, bufsz, "%.*s", (int)n, keys);
        if (!json_object_get(o, buf))
            return buf;
        keys += n + (e ? 1 : 0);
    }
    return NULL;
}

static int check_obj(nd_nitro_cmd cmd, json_t *o, const char *keys, nd_err *err)
{
    if (!json_is_object(o))
        return nd_err_set(err, -EBADMSG, "unrecognised output: %s should print a JSON object", cmd_name(cmd));
    char buf[64];
    const char *m = missing_key(o, keys, buf, sizeof buf);
    if (m)
        return nd_err_set(err, -EBADMSG, "unrecognised output: %s JSON has no \"%s\"", cmd_name(cmd), m);
    return 0;
}

int nd_nitro_parse_json(nd_nitro_cmd cmd, const char *text, size_t len, json_t **out, size_t *end_off, nd_err *err)
{
    *out = NULL;
    if (end_off)
        *end_off = 0;
    if (!text)
        len = 0;
    /* the document starts at the first line beginning with { or [ */
    size_t start = len;
    for (size_t pos = 0; pos < len;) {
        size_t k = pos;
        while (k < len && (text[k] == ' ' || text[k] == '\t'))
            k++;
        if (k < len && (text[k] == '{' || text[k] == '[')) {
            start = k;
            break;
        }
        const char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl)
            break;
        pos = (size_t)(nl - text) + 1;
    }
    if (start >= len)
        return nd_err_set(err, -EBADMSG, "unrecognised output: no JSON document in %zu bytes of %s output", len,
                          cmd_name(cmd));
    json_error_t je;
    json_t *j = json_loadb(text + start, len - start,
                           JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!j)
        return nd_err_set(err, -EBADMSG, "unrecognised output: %s JSON: %s at offset %zu", cmd_name(cmd), je.text,
                          start + (size_t)je.position);
    int rc = 0;
    switch (cmd) {
    case ND_NITRO_RUN_ENCLAVE:
        rc = check_obj(cmd, j, "EnclaveID,EnclaveCID,NumberOfCPUs,CPUIDs,MemoryMiB", err);
        break;
    case ND_NITRO_DESCRIBE_ENCLAVES:
        if (!json_is_array(j)) {
            rc = nd_err_set(err, -EBADMSG, "unrecognised output: describe-enclaves should print a JSON array");
            break;
        }
        for (size_t i = 0; rc == 0 && i < json_array_size(j); i++)
            rc = check_obj(cmd, json_array_get(j, i), "EnclaveID,EnclaveCID,NumberOfCPUs,MemoryMiB,State", err);
        break;
    case ND_NITRO_TERMINATE_ENCLAVE:
        if (json_is_array(j)) {
            for (size_t i = 0; rc == 0 && i < json_array_size(j); i++)
                rc = check_obj(cmd, json_array_get(j, i), "EnclaveID,Terminated", err);
        } else {
            rc = check_obj(cmd, j, "EnclaveID,Terminated", err);
        }
        break;
    case ND_NITRO_BUILD_ENCLAVE:
        rc = check_obj(cmd, j, "Measurements", err);
        if (rc == 0)
            rc = check_obj(cmd, json_object_get(j, "Measurements"), "PCR0,PCR1,PCR2", err);
        break;
    case ND_NITRO_DESCRIBE_EIF:
        rc = check_obj(cmd, j, "Measurements", err);
        break;
    }
    if (rc < 0) {
        json_decref(j);
        return rc;
    }
    *out = j;
    if (end_off)
        *end_off = start + (size_t)je.position;
    return 0;
}

/* ---- argv and running ------------------------------------------------------------------------------------------ */

void nd_nitro_argv_free(nd_nitro_argv *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    a->v = NULL;
    a->n = 0;
}

static int arg(nd_nitro_argv *a, const char *fmt, ...) ND_PRINTF(2, 3);
static int arg(nd_nitro_argv *a, const char *fmt, ...)
{
    size_t cap = nd_array_cap(a->n + 1); /* n arguments and the NULL */
    char **nv = nd_grow_array(a->v, &cap, a->n + 2, sizeof *nv);
    if (!nv)
        return -ENOMEM;
    a->v = nv;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&nv[a->n], fmt, ap);
    va_end(ap);
    if (n < 0)
        return -ENOMEM;
    a->n++;
    nv[a->n] = NULL;
    return 0;
}

static int begin(const nd_ctx *ctx, nd_nitro_argv *a, const char *sub)
{
    a->v = NULL;
    a->n = 0;
    const char *exe = ctx && ctx->nitro_cli[0] ? ctx->nitro_cli : "nitro-cli";
    return arg(a, "%s", exe) | arg(a, "%s", sub);
}

static int done(nd_nitro_argv *a, int rc, nd_err *err)
{
    if (rc < 0) {
        nd_nitro_argv_free(a);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

int nd_nitro_argv_run_enclave(const nd_ctx *ctx, const nd_nitro_run_opts *o, nd_nitro_argv *a, nd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!o->eif_path || !*o->eif_path)
        return nd_err_set(err, -EINVAL, "run-enclave: eif path is required");
    if (o->memory_mib <= 0)
        return nd_err_set(err, -EINVAL, "run-enclave: memory (MiB) is required");
    if (o->cpu_count <= 0 && !o->cpu_ids)
        return nd_err_set(err, -EINVAL, "run-enclave: cpu_count or cpu_ids is required");
    if (o->cpu_count > 0 && o->cpu_ids)
        return nd_err_set(err, -EINVAL, "run-enclave: cpu_count and cpu_ids exclude each other");
    int rc = begin(ctx, a, "run-enclave");
    if (o->name)
        rc |= arg(a, "--enclave-name") | arg(a, "%s", o->name);
    if (o->cpu_count > 0)
        rc |= arg(a, "--cpu-count") | arg(a, "%ld", o->cpu_count);
    if (o->cpu_ids) {
        rc |= arg(a, "--cpu-ids");
        const char *p = o->cpu_ids;
        while (*p) {
            size_t n = strcspn(p, ", ");
            if (n)
                rc |= arg(a, "%.*s", (int)n, p);
            p += n;
            while (*p == ',' || *p == ' ')
                p++;
        }
    }
    rc |= arg(a, "--memory") | arg(a, "%ld", o->memory_mib);
    rc |= arg(a, "--eif-path") | arg(a, "%s", o->eif_path);
    if (o->cid >= 0)
        rc |= arg(a, "--enclave-cid") | arg(a, "%lld", o->cid);
    if (o->debug_mode)
        rc |= arg(a, "--debug-mode");
    if (o->attach_console)
        rc |= arg(a, "--attach-console");
    return done(a, rc, err);
}

int nd_nitro_argv_describe_enclaves(const nd_ctx *ctx, nd_nitro_argv *a, nd_err *err)
{
    return done(a, begin(ctx, a, "describe-enclaves"), err);
}

int nd_nitro_argv_terminate(const nd_ctx *ctx, const char *enclave_id, nd_nitro_argv *a, nd_err *err)
{
    int rc = begin(ctx, a, "terminate-enclave");
    if (enclave_id)
        rc |= arg(a, "--enclave-id") | arg(a, "%s", enclave_id);
    else
        rc |= arg(a, "--all");
    return done(a, rc, err);
}

int nd_nitro_argv_build_enclave(const nd_ctx *ctx, const char *docker_uri, const char *docker_dir, const char *output,
                                nd_nitro_argv *a, nd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!docker_uri || !*docker_uri)
        return nd_err_set(err, -EINVAL, "build-enclave: docker uri is required");
    if (!output || !*output)
        return nd_err_set(err, -EINVAL, "build-enclave: output file is required");
    int rc = begin(ctx, a, "build-enclave");
    if (docker_dir)
        rc |= arg(a, "--docker-dir") | arg(a, "%s", docker_dir);
    rc |= arg(a, "--docker-uri") | arg(a, "%s", docker_uri);
    rc |= arg(a, "--output-file") | arg(a, "%s", output);
    return done(a, rc, err);
}

int nd_nitro_argv_describe_eif(const nd_ctx *ctx, const char *eif_path, nd_nitro_argv *a, nd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!eif_path || !*eif_path)
        return nd_err_set(err, -EINVAL, "describe-eif: eif path is required");
    return done(a, begin(ctx, a, "describe-eif") | arg(a, "--eif-path") | arg(a, "%s", eif_path), err);
}

int nd_nitro_argv_console(const nd_ctx *ctx, const char *enclave_id, double disconnect_timeout, nd_nitro_argv *a,
                          nd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!enclave_id || !*enclave_id)
        return nd_err_set(err, -EINVAL, "console: enclave id is required");
    int rc = begin(ctx, a, "console") | arg(a, "--enclave-id") | arg(a, "%s", enclave_id);
    if (disconnect_timeout > 0)
        rc |= arg(a, "--disconnect-timeout") | arg(a, "%ld", (long)disconnect_timeout);
    return done(a, rc, err);
}

int nd_nitro_argv_explain(const nd_ctx *ctx, const char *code, nd_nitro_argv *a, nd_err *err)
{
    memset(a, 0, sizeof *a);
    if (!code || !*code)
        return nd_err_set(err, -EINVAL, "explain: error code is required");
    return done(a, begin(ctx, a, "explain") | arg(a, "--error-code") | arg(a, "%s", code), err);
}

int nd_nitro_run_sync(const nd_nitro_argv *a, double timeout_s, nd_proc_result *res, nd_err *err)
{
    if (!a || !a->v || a->n == 0)
        return nd_err_set(err, -EINVAL, "nitro-cli: empty command");
    nd_proc_opts o;
    memset(&o, 0, sizeof o);
    o.argv = (const char *const *)a->v;
    o.timeout_s = timeout_s;
    return nd_proc_run(&o, res, err);
}
