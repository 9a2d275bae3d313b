/*
 * allocator.c — allocator.yaml as the nitro-enclaves-allocator service reads it, and safe in-place edits (see
 * nd_allocator.h for the rules). Runbooks use it to predict what the service will do with a file (and why it fails)
 * and to change memory_mib / cpu_count / cpu_pool the way an operator would, keeping their comments.
 */
#include "nd_allocator.h"
#include "nd_buf.h"

#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The line of text starting at *pos (without its '\n'; *l bytes); *pos moves past it. */
static const char *next_line(const char *text, size_t len, size_t *pos, size_t *l)
{
    const char *s = text + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    *l = nl ? (size_t)(nl - s) : len - *pos;
    *pos += *l + (nl ? 1 : 0);
    return s;
}

void nd_alloc_config_free(nd_alloc_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->pool_cpus);
    cfg->pool_cpus = NULL;
    cfg->n_pool_cpus = 0;
}

static void warn(nd_alloc_config *cfg, const char *fmt, ...) ND_PRINTF(2, 3);
static void warn(nd_alloc_config *cfg, const char *fmt, ...)
{
    if (cfg->n_warnings >= ND_ALLOC_MAX_WARNINGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->warnings[cfg->n_warnings++], sizeof cfg->warnings[0], fmt, ap);
    va_end(ap);
}

static int cmp_uint(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

int nd_alloc_parse_cpu_list(const char *s, unsigned **cpus, size_t *n, nd_err *err)
{
    *cpus = NULL;
    *n = 0;
    size_t cap = 0;
    const char *p = s;
    if (!*p)
        return nd_err_set(err, -EINVAL, "empty CPU list");
    while (*p) {
        const char *part = p;
        unsigned long a, b;
        if (!isdigit((unsigned char)*p))
            goto bad;
        a = strtoul(p, (char **)&p, 10);
        b = a;
        if (*p == '-') {
            p++;
            if (!isdigit((unsigned char)*p))
                goto bad;
            b = strtoul(p, (char **)&p, 10);
        }
        if (*p && *p != ',')
            goto bad;
        if (b < a || b > 8191) {
            free(*cpus);
            *cpus = NULL;
            *n = 0;
            return nd_err_set(err, -EINVAL, "invalid CPU range '%.*s' at column %zu", (int)(p - part), part,
                              (size_t)(part - s) + 1);
        }
        for (unsigned long c = a; c <= b; c++) {
            if (*n == cap) {
                unsigned *nc = nd_grow_array(*cpus, &cap, *n + 1, sizeof *nc);
                if (!nc) {
                    free(*cpus);
                    *cpus = NULL;
                    *n = 0;
                    return nd_err_set(err, -ENOMEM, "out of memory");
                }
                *cpus = nc;
            }
            (*cpus)[(*n)++] = (unsigned)c;
        }
        if (*p == ',') {
            p++;
            if (!*p)
                goto bad_end;
        }
        continue;
    bad:
        free(*cpus);
        *cpus = NULL;
        *n = 0;
        return nd_err_set(err, -EINVAL, "invalid CPU list '%s': unexpected '%c' at column %zu", s, *p ? *p : ' ',
                          (size_t)(p - s) + 1);
    }
    qsort(*cpus, *n, sizeof **cpus, cmp_uint);
    size_t w = 0;
    for (size_t i = 0; i < *n; i++)
        if (w == 0 || (*cpus)[w - 1] != (*cpus)[i])
            (*cpus)[w++] = (*cpus)[i];
    *n = w;
    return 0;
bad_end:
    free(*cpus);
    *cpus = NULL;
    *n = 0;
    return nd_err_set(err, -EINVAL, "invalid CPU list '%s': ends with ','", s);
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* One line as `read line` leaves it: leading/trailing blanks removed. */
static void trim(const char **s, size_t *l)
{
    while (*l && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*l)--;
    }
    /* bash `read` trims blanks, not a CR: a CRLF file's "---\r" is not "---" (nothing after it is ever read) */
    while (*l && ((*s)[*l - 1] == ' ' || (*s)[*l - 1] == '\t'))
        (*l)--;
}

int nd_alloc_parse(const char *text, size_t len, const char *display_path, nd_alloc_config *cfg, nd_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    const char *file = display_path ? display_path : ND_ALLOCATOR_YAML;
    if (!text)
        len = 0;
    bool data = false;
    int count = 0;
    char val[256];
    for (size_t pos = 0; pos < len;) {
        const char *s = text + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        count++;
        cfg->n_lines = count;
        if (memchr(s, '\0', l))
            return nd_err_set(err, -EINVAL, "Error in %s:%d - the line contains a NUL byte", file, count);
        trim(&s, &l);
        if (!nl) {
            if (l)
                warn(cfg, "line %d has no newline at the end: the allocator service never reads it", count);
            break;
        }
        if (l && s[0] == '#')
            continue;
        if (l == 3 && memcmp(s, "---", 3) == 0) {
            data = true;
            if (!cfg->doc_start_line)
                cfg->doc_start_line = count;
            continue;
        }
        if (!data) {
            if (l)
                warn(cfg, "line %d comes before '---' and is ignored by the allocator service", count);
            continue;
        }
        /* key: leading run of [-_a-zA-Z0-9] of the text before the first ':' */
        const char *colon = memchr(s, ':', l);
        size_t before = colon ? (size_t)(colon - s) : l;
        size_t kl = 0;
        while (kl < before && (isalnum((unsigned char)s[kl]) || s[kl] == '-' || s[kl] == '_'))
            kl++;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(kl < 100 ? kl : 100), s);
        enum { K_MEM, K_COUNT, K_POOL, K_NONE } k = K_NONE;
        if (strcmp(key, "memory_mib") == 0)
            k = K_MEM;
        else if (strcmp(key, "cpu_count") == 0)
            k = K_COUNT;
        else if (strcmp(key, "cpu_pool") == 0)
            k = K_POOL;
        /* an unknown key — and no key at all (a blank line, bash's "bad array subscript") — fails first */
        if (k == K_NONE)
            return nd_err_set(err, -EINVAL, "Error in %s:%d - unexpected: %s", file, count, key);
        /* value: `sed -E "s/^.+://" | sed -E "s/\s+\"?//" | sed -E "s/\"?$//"`: what follows the LAST ':' (an
         * inline comment with a ':' replaces the value, one without stays in it), its first blank run and a quote
         * after it removed, a trailing quote removed */
        const char *v = s;
        size_t vl = l;
        for (size_t i = l; i > 1; i--)
            if (s[i - 1] == ':') {
                v = s + i;
                vl = l - i;
                break;
            }
        char raw[256];
        size_t rl = 0;
        bool cut = false;
        for (size_t i = 0; i < vl && rl < sizeof raw - 1; i++) {
            if (!cut && (v[i] == ' ' || v[i] == '\t')) {
                while (i < vl && (v[i] == ' ' || v[i] == '\t'))
                    i++;
                if (i < vl && v[i] == '"')
                    i++;
                cut = true;
                i--;
                continue;
            }
            raw[rl++] = v[i];
        }
        if (rl && raw[rl - 1] == '"')
            rl--;
        raw[rl] = '\0';
        if (rl == 0)
            return nd_err_set(err, -EINVAL, "Error in %s:%d - missing value for %s", file, count, key);
        if (memchr(s, '#', l))
            warn(cfg, "line %d: a comment after the value is part of it for the allocator script (it reads everything "
                      "after the last ':'); put comments on their own line", count);
        snprintf(val, sizeof val, "%s", raw);
        if (k == K_MEM) {
            if (!all_digits(val) || strlen(val) > 12)
                return nd_err_set(err, -EINVAL, "The needed memory amount (%s) is invalid. (%s:%d)", val, file, count);
            if (cfg->has_memory)
                warn(cfg, "line %d: memory_mib repeated (line %d): the last one wins", count, cfg->memory_line);
            cfg->has_memory = true;
            cfg->memory_mib = strtoull(val, NULL, 10);
            cfg->memory_line = count;
        } else if (k == K_COUNT) {
            if (!all_digits(val) || strlen(val) > 6)
                return nd_err_set(err, -EINVAL, "The CPU count value (%s) is invalid. (%s:%d)", val, file, count);
            if (cfg->has_cpu_count)
                warn(cfg, "line %d: cpu_count repeated (line %d): the last one wins", count, cfg->cpu_count_line);
            cfg->has_cpu_count = true;
            cfg->cpu_count = strtoull(val, NULL, 10);
            cfg->cpu_count_line = count;
        } else {
            nd_err e2;
            unsigned *cpus;
            size_t n;
            if (nd_alloc_parse_cpu_list(val, &cpus, &n, &e2) < 0)
                return nd_err_set(err, -EINVAL, "Error in %s:%d - cpu_pool: %s", file, count, e2.msg);
            if (cfg->has_cpu_pool)
                warn(cfg, "line %d: cpu_pool repeated (line %d): the last one wins", count, cfg->cpu_pool_line);
            free(cfg->pool_cpus);
            cfg->pool_cpus = cpus;
            cfg->n_pool_cpus = n;
            cfg->has_cpu_pool = true;
            snprintf(cfg->cpu_pool, sizeof cfg->cpu_pool, "%s", val);
            cfg->cpu_pool_line = count;
        }
    }
    if (!cfg->doc_start_line)
        warn(cfg, "no '---' line: the allocator service ignores every line before it, so it reads nothing");
    if (!cfg->has_memory)
        return nd_err_set(err, -EINVAL, "Config error: missing memory reservation (`memory_mib`).");
    if (!cfg->has_cpu_count && !cfg->has_cpu_pool)
        return nd_err_set(err, -EINVAL, "Config error: missing CPU reservation (either `cpu_count` or `cpu_pool`).");
    if (cfg->has_cpu_count && cfg->has_cpu_pool)
        return nd_err_set(err, -EINVAL, "Config error: `cpu_count` conflicts with `cpu_pool`.");
    if (cfg->has_cpu_pool && cfg->n_pool_cpus && cfg->pool_cpus[0] == 0)
        warn(cfg, "cpu_pool contains CPU 0: CPU 0 and its siblings must stay with the parent instance");
    return 0;
}

/* ---- loading and editing -------------------------------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len, nd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (n + 1 >= cap) {
            if (cap >= (64u << 20))
                break;
            if (nd_grow(&b, &cap, cap * 2) < 0) {
                free(b);
                b = NULL;
                break;
            }
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!b)
        return nd_err_set(err, -ENOMEM, "out of memory");
    if (bad) {
        free(b);
        return nd_err_set(err, -EIO, "cannot read %s", path);
    }
    b[n] = '\0';
    *out = b;
    *len = n;
    return 0;
}

int nd_alloc_load(const nd_ctx *ctx, const char *host_path, nd_alloc_config *cfg, char **text_out, nd_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (text_out)
        *text_out = NULL;
    const char *hp = host_path ? host_path : ND_ALLOCATOR_YAML;
    char path[8192];
    if (nd_ctx_path(ctx, hp, path, sizeof path) < 0)
        return nd_err_set(err, -ENAMETOOLONG, "path too long: %s", hp);
    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, err);
    if (rc < 0)
        return rc;
    rc = nd_alloc_parse(text, len, hp, cfg, err);
    if (text_out)
        *text_out = text;
    else
        free(text);
    return rc;
}

/* The key a data line sets (after trimming), or NULL. */
static const char *line_key(const char *s, size_t l)
{
    trim(&s, &l);
    static const char *const keys[] = {"memory_mib", "cpu_count", "cpu_pool"};
    for (int i = 0; i < 3; i++) {
        size_t kl = strlen(keys[i]);
        if (l > kl && memcmp(s, keys[i], kl) == 0 && (s[kl] == ':' || s[kl] == ' ' || s[kl] == '\t'))
            return keys[i];
    }
    return NULL;
}

/* Writes line s (without newline) with its value replaced by nv, keeping indentation and the key part up to the
 * value. A trailing " # comment" is dropped: the allocator script would read it as part of the value. */
static void replace_value(nd_buf *b, const char *s, size_t l, const char *nv)
{
    const char *colon = memchr(s, ':', l);
    if (!colon) {
        nd_buf_add(b, s, l);
        return;
    }
    size_t vs = (size_t)(colon - s) + 1;
    while (vs < l && (s[vs] == ' ' || s[vs] == '\t'))
        vs++;
    nd_buf_add(b, s, vs);
    if (vs == (size_t)(colon - s) + 1)
        nd_buf_addstr(b, " ");
    nd_buf_addstr(b, nv);
}

int nd_alloc_edit_text(const char *text, size_t len, const nd_alloc_edit *e, char **out, nd_err *err)
{
    *out = NULL;
    if (!text)
        len = 0;
    if (e->set_cpu_count && e->cpu_pool)
        return nd_err_set(err, -EINVAL, "cpu_count and cpu_pool exclude each other: set only one");
    char memv[32] = "", countv[32] = "";
    if (e->set_memory)
        snprintf(memv, sizeof memv, "%llu", (unsigned long long)e->memory_mib);
    if (e->set_cpu_count)
        snprintf(countv, sizeof countv, "%llu", (unsigned long long)e->cpu_count);
    if (e->cpu_pool) {
        unsigned *cpus;
        size_t n;
        nd_err e2;
        if (nd_alloc_parse_cpu_list(e->cpu_pool, &cpus, &n, &e2) < 0)
            return nd_err_set(err, -EINVAL, "cpu_pool: %s", e2.msg);
        free(cpus);
    }
    bool has_doc = false, done_mem = false, done_count = false, done_pool = false;
    for (size_t pos = 0; pos < len;) {
        size_t l;
        const char *s = next_line(text, len, &pos, &l);
        const char *t = s;
        size_t tl = l;
        trim(&t, &tl);
        if (tl == 3 && memcmp(t, "---", 3) == 0)
            has_doc = true;
    }
    nd_buf b = ND_BUF_INIT;
    if (!has_doc)
        nd_buf_addstr(&b, "---\n");
    bool data = !has_doc;
    size_t insert_at = has_doc ? (size_t)-1 : b.len; /* where missing keys go: after the last data line */
    for (size_t pos = 0; pos < len;) {
        size_t l;
        const char *s = next_line(text, len, &pos, &l);
        const char *t = s;
        size_t tl = l;
        trim(&t, &tl);
        if (!data) {
            nd_buf_add(&b, s, l);
            nd_buf_addstr(&b, "\n");
            if (tl == 3 && memcmp(t, "---", 3) == 0) {
                data = true;
                insert_at = b.len;
            }
            continue;
        }
        const char *k = (tl && t[0] != '#') ? line_key(s, l) : NULL;
        if (k && strcmp(k, "memory_mib") == 0 && e->set_memory) {
            replace_value(&b, s, l, memv);
            done_mem = true;
        } else if (k && strcmp(k, "cpu_count") == 0 && e->set_cpu_count) {
            replace_value(&b, s, l, countv);
            done_count = true;
        } else if (k && strcmp(k, "cpu_pool") == 0 && e->cpu_pool) {
            replace_value(&b, s, l, e->cpu_pool);
            done_pool = true;
        } else if (k && ((strcmp(k, "cpu_pool") == 0 && e->set_cpu_count) ||
                         (strcmp(k, "cpu_count") == 0 && e->cpu_pool))) {
            nd_buf_add(&b, s, (size_t)(t - s));
            nd_buf_addstr(&b, "# ");
            nd_buf_add(&b, t, l - (size_t)(t - s));
        } else {
            nd_buf_add(&b, s, l);
        }
        nd_buf_addstr(&b, "\n");
        if (k)
            insert_at = b.len;
    }
    /* keys that were not in the file go after the last data line */
    char add[160] = "";
    if (e->set_memory && !done_mem)
        snprintf(add + strlen(add), sizeof add - strlen(add), "memory_mib: %s\n", memv);
    if (e->set_cpu_count && !done_count)
        snprintf(add + strlen(add), sizeof add - strlen(add), "cpu_count: %s\n", countv);
    if (e->cpu_pool && !done_pool)
        snprintf(add + strlen(add), sizeof add - strlen(add), "cpu_pool: %.100s\n", e->cpu_pool);
    if (add[0] && !b.oom) {
        if (insert_at == (size_t)-1 || insert_at > b.len)
            insert_at = b.len;
        nd_buf nb = ND_BUF_INIT;
        nd_buf_add(&nb, b.p ? b.p : "", insert_at);
        nd_buf_addstr(&nb, add);
        nd_buf_add(&nb, b.p ? b.p + insert_at : "", b.len - insert_at);
        free(b.p);
        b = nb;
    }
    if (b.oom || !b.p) {
        free(b.p);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    nd_alloc_config cfg;
    nd_err perr;
    int rc = nd_alloc_parse(b.p, b.len, NULL, &cfg, &perr);
    nd_alloc_config_free(&cfg);
    if (rc < 0) {
        free(b.p);
        return nd_err_set(err, -EINVAL, "the edited file would not be valid: %s", perr.msg);
    }
    *out = b.p;
    return 0;
}

static int copy_file(const char *from, const char *to, const char *data, size_t len, mode_t mode, nd_err *err)
{
    (void)from;
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return nd_err_set(err, -errno, "cannot create %s: %s", to, strerror(errno));
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            close(fd);
            return nd_err_set(err, -e, "cannot write %s: %s", to, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return nd_err_set(err, -EIO, "cannot write %s", to);
    return 0;
}

int nd_alloc_write(const nd_ctx *ctx, const char *host_path, const nd_alloc_edit *e, char *backup, size_t backupsz,
                   nd_err *err)
{
    const char *hp = host_path ? host_path : ND_ALLOCATOR_YAML;
    char path[8192], bak[8300], tmp[8300];
    if (nd_ctx_path(ctx, hp, path, sizeof path) < 0)
        return nd_err_set(err, -ENAMETOOLONG, "path too long: %s", hp);
    char *text = NULL, *nt = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, err);
    if (rc < 0)
        return rc;
    struct stat st;
    mode_t mode = 0644;
    if (stat(path, &st) == 0)
        mode = st.st_mode & 07777;
    rc = nd_alloc_edit_text(text, len, e, &nt, err);
    if (rc < 0)
        goto out;
    snprintf(bak, sizeof bak, "%s.bak", path);
    rc = copy_file(path, bak, text, len, mode, err);
    if (rc < 0)
        goto out;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    rc = copy_file(NULL, tmp, nt, strlen(nt), mode, err);
    if (rc < 0) {
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = nd_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (backup)
        snprintf(backup, backupsz, "%s", bak);
    rc = 0;
out:
    free(text);
    free(nt);
    return rc;
}
