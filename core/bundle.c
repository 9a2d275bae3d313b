/*
 * bundle.c — the bundle writer and reader (contract in nd_bundle.h).
 *
 * Writing. libarchive streams a pax (ustar when names allow) archive through gzip straight into a temporary file
 * in the output directory; nothing is staged on disk. A tar header needs the member's size before its data, and the
 * scrubber changes sizes, so a file member is produced in two passes over the same fixed byte range: pass 1 scrubs
 * into a byte counter, pass 2 scrubs into the archive while hashing (SHA-256, OpenSSL EVP). If the file changed
 * between the passes (rotation), the member is cut or padded to the declared size and the item says so. Memory is
 * bounded by the read buffer and one line, whatever the file size. Text items up to SMALL_ITEM (4 MiB) skip the
 * second scrub: pass 1 keeps its output in memory and pass 2 writes that.
 *
 * JSON (add_json, summary.json, manifest.json) is scrubbed value by value rather than as text, so a redaction can
 * never break the JSON syntax; members whose key names a credential (SecretAccessKey, Token, Authorization, …) are
 * replaced whole.
 *
 * Failure model: any archive or I/O error marks the bundle broken (b->broken); every later call returns that error
 * and finish() removes the temporary file. Only a complete archive is ever renamed to the final name, with
 * RENAME_NOREPLACE so an existing bundle is never overwritten.
 *
 * Reading (nd_bundle_read/verify) streams the archive once, hashing each member, and keeps manifest.json,
 * summary.json and report.md in memory for the caller.
 */
#include "nd_bundle.h"
#include "nd_lazylib.h"
#include "nd_tmp.h"
#include "nd_buf.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define IO_BUF (256u * 1024u)
#define READ_KEEP_MAX (64u << 20)
#define SMALL_ITEM (4u << 20) /* items up to this size are scrubbed once, into memory */

struct nd_bundle {
    nd_ctx *ctx;
    struct archive *a;
    int fd;
    char dir[4096];
    char final[4096];
    char tmp[4096];
    char top[512];
    char runbook[128], host[256];
    nd_scrub *scrub;
    json_t *artifacts;
    json_t *names; /* member names in use */
    json_t *json_redactions; /* counts from scrub_json for the current item */
    nd_err broken;
    bool closed;
    double created_at;
    char *buf;
    z_stream z;      /* the gzip layer (ours, so that it can be flushed after every member) */
    bool z_open;
    unsigned char *zbuf;
    nd_bundle_key *key; /* signs the manifest at finish, when set */
};

/* ---- helpers ------------------------------------------------------------------------------------------------- */

static void sanitize(char *dst, size_t dsz, const char *src)
{
    size_t j = 0;
    for (size_t i = 0; src && src[i] && j + 1 < dsz; i++) {
        char c = src[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        dst[j++] = ok ? c : '_';
    }
    dst[j] = '\0';
    if (j == 0)
        snprintf(dst, dsz, "unknown");
}

static int set_broken(nd_bundle *b, int code, const char *what)
{
    if (!b->broken.code)
        nd_err_set(&b->broken, code, "cannot write the bundle %s: %s: %s", b->final, what, nd_err_str(code));
    return b->broken.code;
}

static int archive_fail(nd_bundle *b, const char *what)
{
    int e = archive_errno(b->a);
    if (e <= 0)
        e = EIO;
    if (!b->broken.code) {
        const char *s = archive_error_string(b->a);
        nd_err_set(&b->broken, -e, "cannot write the bundle %s: %s: %s (%s)", b->final, what, s ? s : "error",
                   strerror(e));
    }
    return b->broken.code;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 when the bytes there are not valid UTF-8.
 * C1 controls (U+0080..U+009F) count as invalid here: a terminal acts on them like on ASCII controls. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    if (c == 0xC2 && s[1] <= 0x9F)
        return 0; /* C1 control */
    return len;
}

size_t nd_bundle_escape(const char *in, bool keep_slash, char *out, size_t outsz)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *s = (const unsigned char *)(in ? in : "");
    size_t n = strlen((const char *)s), i = 0, j = 0;
    if (outsz == 0)
        return 0;
    while (i < n) {
        size_t l = utf8_len(s + i, n - i);
        bool esc = l == 0 || s[i] < 0x20 || s[i] == 0x7F || s[i] == '%' || (!keep_slash && s[i] == '/');
        size_t need = esc ? 3 : l;
        if (j + need + 1 > outsz)
            break; /* cut at a character boundary, never inside an escape */
        if (esc) {
            out[j++] = '%';
            out[j++] = hex[s[i] >> 4];
            out[j++] = hex[s[i] & 15];
            i++;
        } else {
            memcpy(out + j, s + i, l);
            j += l;
            i += l;
        }
    }
    out[j] = '\0';
    return j;
}

/* True when name is a relative path of non-empty components, none of them "." or "..". */
static bool name_shape_ok(const char *name)
{
    if (!name[0] || name[0] == '/')
        return false;
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0 || (l == 2 && p[0] == '.' && p[1] == '.') || (l == 1 && p[0] == '.'))
            return false;
        p += l + (e ? 1 : 0);
        if (e && !*p)
            return false; /* trailing slash */
    }
    return true;
}

/*
 * The member name, decided once and used for both the archive member and the manifest entry (so they always agree):
 * `name` (from the caller) followed by `host_part` (a base name from the host, or NULL). The bundle's scrubber runs
 * over it (a secret in a file name is redacted like one in a file), then control characters, invalid UTF-8, C1
 * controls and '%' are percent-escaped (nd_bundle_escape), and a name used twice gets a "~2", "~3" suffix. A host
 * part of "." or ".." is escaped; nothing from the host can make this fail. The caller's part must give a relative
 * path with no empty, "." or ".." component, at most 255 bytes, else -EINVAL (a programming error).
 */
static int check_name(nd_bundle *b, const char *name, const char *host_part, char *out, size_t outsz, nd_err *err)
{
    char raw[1024];
    if (!name)
        name = "";
    if (host_part) {
        if (!host_part[0])
            host_part = "unnamed";
        else if (!strcmp(host_part, ".") || !strcmp(host_part, ".."))
            host_part = host_part[1] ? "%2E%2E" : "%2E";
        snprintf(raw, sizeof raw, "%s%s", name, host_part);
    } else {
        snprintf(raw, sizeof raw, "%s", name);
    }
    if (strlen(name) > 255 || !name_shape_ok(host_part ? (name[0] ? raw : "x") : name)) {
        char shown[300];
        nd_bundle_escape(name, true, shown, sizeof shown);
        return nd_err_set(err, -EINVAL,
                          "bundle: bad member name%s '%s' (must be relative, at most 255 bytes, no empty, '.' or '..' "
                          "component)", host_part ? " prefix" : "", shown);
    }
    /* escaped (control bytes, invalid UTF-8), then scrubbed with the same rules as the data (nd_scrub_name); never
     * the unscrubbed name */
    char escraw[1100];
    nd_bundle_escape(raw, true, escraw, sizeof escraw);
    char esc[400];
    if (nd_scrub_name(b->scrub, escraw, esc, sizeof esc) < 0)
        snprintf(esc, sizeof esc, "[REDACTED]");
    if (!name_shape_ok(esc)) {
        /* a custom scrub rule or a cut produced a bad path: keep it flat and visible */
        char flat[400];
        nd_bundle_escape(esc, false, flat, sizeof flat);
        snprintf(esc, sizeof esc, "%s", flat[0] && name_shape_ok(flat) ? flat : "unnamed");
    }
    snprintf(out, outsz, "%s", esc);
    /* a name used twice gets a "~2", "~3" suffix: nothing collected is ever hidden by a later member */
    for (int i = 2; json_object_get(b->names, out); i++)
        snprintf(out, outsz, "%s~%d", esc, i);
    json_object_set_new(b->names, out, json_true());
    return 0;
}

/* A JSON string for text that may hold any bytes (host paths, error messages): escaped when not valid UTF-8. */
static json_t *jstr(const char *s)
{
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    if (v)
        return v;
    char buf[2048];
    nd_bundle_escape(s, true, buf, sizeof buf);
    return json_string(buf);
}

static void sha_hex(EVP_MD_CTX *md, char hex[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, d, &n);
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    hex[64] = '\0';
}

/* A new manifest item with the fields every item has. */
static json_t *new_item(nd_bundle *b, const char *name, const char *kind, const char *source, double started,
                        double ended)
{
    char t1[40], t2[40];
    json_t *it = json_object();
    json_object_set_new(it, "name", json_string(name));
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", b->top, name);
    json_object_set_new(it, "path", json_string(path));
    json_object_set_new(it, "kind", json_string(kind));
    json_object_set_new(it, "source", jstr(source));
    json_object_set_new(it, "status", json_string("ok"));
    json_object_set_new(it, "error", json_null());
    json_object_set_new(it, "started_at", json_string(nd_collect_iso_time(started, t1, sizeof t1)));
    json_object_set_new(it, "ended_at", json_string(nd_collect_iso_time(ended, t2, sizeof t2)));
    json_object_set_new(it, "duration", json_real((double)(long long)((ended - started) * 1e6) / 1e6));
    json_object_set_new(it, "bytes", json_integer(0));
    json_object_set_new(it, "sha256", json_null());
    json_object_set_new(it, "truncated", json_false());
    json_object_set_new(it, "redactions", json_object());
    return it;
}

static void item_status(json_t *it, nd_collect_status st, const char *error)
{
    json_object_set_new(it, "status", json_string(nd_collect_status_name(st)));
    json_object_set_new(it, "error", jstr(error));
}

static void item_end(json_t *it, double started)
{
    char t[40];
    double now = nd_collect_now();
    json_object_set_new(it, "ended_at", json_string(nd_collect_iso_time(now, t, sizeof t)));
    json_object_set_new(it, "duration", json_real((double)(long long)((now - started) * 1e6) / 1e6));
}

/* out = a b c d (the caller checked that it fits; cut otherwise). */
static void join_path(char *out, size_t outsz, const char *a, const char *b, const char *c, const char *d)
{
    const char *parts[4] = {a, b, c, d};
    size_t j = 0;
    for (int i = 0; i < 4; i++) {
        size_t l = strlen(parts[i]);
        if (j + l >= outsz)
            l = outsz - 1 - j;
        memcpy(out + j, parts[i], l);
        j += l;
    }
    out[j] = '\0';
}

/* ---- the gzip layer ------------------------------------------------------------------------------------------ */

#define ZBUF (64u * 1024u)

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Deflates in[0..n) with `flush` and writes what zlib produced. Returns 0 or a negative code. */
static int gz_push(nd_bundle *b, const void *in, size_t n, int flush)
{
    b->z.next_in = (Bytef *)(uintptr_t)in;
    b->z.avail_in = (uInt)n;
    for (;;) {
        b->z.next_out = b->zbuf;
        b->z.avail_out = ZBUF;
        int zr = deflate(&b->z, flush);
        if (zr == Z_STREAM_ERROR)
            return -EIO;
        size_t have = ZBUF - b->z.avail_out;
        if (have > 0) {
            int rc = write_all(b->fd, b->zbuf, have);
            if (rc < 0)
                return rc;
        }
        if (zr == Z_STREAM_END || (b->z.avail_in == 0 && b->z.avail_out != 0))
            return 0;
    }
}

static la_ssize_t gz_write(struct archive *a, void *ud, const void *buf, size_t n)
{
    nd_bundle *b = ud;
    if (!b->z_open || b->fd < 0) {
        archive_set_error(a, EIO, "the bundle file is closed");
        return -1;
    }
    size_t done = 0;
    while (done < n) { /* avail_in is a uInt */
        size_t part = n - done > (1u << 30) ? (1u << 30) : n - done;
        int rc = gz_push(b, (const char *)buf + done, part, Z_NO_FLUSH);
        if (rc < 0) {
            archive_set_error(a, -rc, "write");
            return -1;
        }
        done += part;
    }
    return (la_ssize_t)n;
}

static int gz_close(struct archive *a, void *ud)
{
    nd_bundle *b = ud;
    if (!b->z_open || b->fd < 0 || b->broken.code || b->closed)
        return ARCHIVE_OK; /* discarding: nothing more is written */
    int rc = gz_push(b, NULL, 0, Z_FINISH);
    if (rc < 0) {
        archive_set_error(a, -rc, "write");
        return ARCHIVE_FATAL;
    }
    return ARCHIVE_OK;
}

/* Pushes everything written so far to the file (a gzip sync point after a member). */
static int gz_flush(nd_bundle *b)
{
    int rc = gz_push(b, NULL, 0, Z_SYNC_FLUSH);
    return rc < 0 ? set_broken(b, rc, "write") : 0;
}

/* ---- open ---------------------------------------------------------------------------------------------------- */

int nd_bundle_open(nd_ctx *ctx, const nd_bundle_opts *opts, nd_bundle **out, nd_err *err)
{
    *out = NULL;
    nd_bundle_opts o = {0};
    if (opts)
        o = *opts;
    nd_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return nd_err_set(err, -ENOMEM, "bundle: out of memory");
    b->fd = -1;
    b->ctx = ctx;
    b->created_at = o.created_at > 0 ? o.created_at : nd_collect_now();
    snprintf(b->dir, sizeof b->dir, "%s", o.out_dir && o.out_dir[0] ? o.out_dir : ".");
    char hostbuf[256] = "";
    if (!o.host || !o.host[0]) {
        gethostname(hostbuf, sizeof hostbuf - 1);
        o.host = hostbuf;
    }
    sanitize(b->runbook, sizeof b->runbook, o.runbook && o.runbook[0] ? o.runbook : "run");
    sanitize(b->host, sizeof b->host, o.host);
    time_t t = (time_t)b->created_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(b->top, sizeof b->top, "nitrodiag-%s-%s-%s", b->runbook, b->host, ts);
    int n1 = snprintf(b->final, sizeof b->final, "%s/%s.tar.gz", b->dir, b->top);
    char tail[64];
    snprintf(tail, sizeof tail, ".tar.gz" ND_BUNDLE_TEMP_MARK "%ld-XXXXXX", (long)getpid());
    int n2 = snprintf(b->tmp, sizeof b->tmp, "%s/.%s%s", b->dir, b->top, tail);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof b->final || (size_t)n2 >= sizeof b->tmp) {
        free(b);
        return nd_err_set(err, -ENAMETOOLONG, "bundle: output directory path too long");
    }

    struct stat st;
    if (stat(b->dir, &st) < 0) {
        int e = -errno;
        if (e == -ENOENT && mkdir(b->dir, 0700) == 0) {
            /* created */
        } else {
            if (e == -ENOENT)
                e = -errno;
            nd_err_set(err, e, "cannot write the bundle in %s: %s", b->dir, nd_err_str(e));
            free(b);
            return e;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        free(b);
        return nd_err_set(err, -ENOTDIR, "cannot write the bundle in %s: not a directory", o.out_dir);
    }
    /* absolute paths from here on: the result, the report and scripts (ssm-pack) show where the bundle really is */
    char absdir[4096];
    if (realpath(b->dir, absdir) && strlen(absdir) + strlen(b->top) + 24 < sizeof b->final) {
        snprintf(b->dir, sizeof b->dir, "%s", absdir);
        join_path(b->final, sizeof b->final, absdir, "/", b->top, ".tar.gz");
        join_path(b->tmp, sizeof b->tmp, absdir, "/.", b->top, tail);
    }
    b->fd = mkostemp(b->tmp, O_CLOEXEC);
    if (b->fd < 0) {
        int e = -errno;
        nd_err_set(err, e, "cannot write the bundle in %s: %s", b->dir, nd_err_str(e));
        free(b);
        return e;
    }
    if (o.sign_key && o.sign_key[0]) {
        int krc = nd_bundle_key_load(o.sign_key, &b->key, err);
        if (krc < 0) {
            close(b->fd);
            unlink(b->tmp);
            free(b);
            return krc;
        }
    }
    b->scrub = nd_scrub_new(err);
    b->artifacts = json_array();
    b->names = json_object();
    b->buf = malloc(IO_BUF);
    b->a = archive_write_new();
    if (!b->a && nd_lazylib_error("archive")[0]) {
        /* a package installed without libarchive: say so, not "out of memory" */
        nd_bundle_free(b);
        return nd_err_set(err, -ENOENT, "bundle: %s", nd_lazylib_error("archive"));
    }
    if (!b->scrub || !b->artifacts || !b->names || !b->buf || !b->a) {
        nd_bundle_free(b);
        return nd_err_set(err, -ENOMEM, "bundle: out of memory");
    }
    b->zbuf = malloc(ZBUF);
    if (!b->zbuf || deflateInit2(&b->z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        nd_bundle_free(b);
        return nd_err_set(err, -ENOMEM, "bundle: out of memory");
    }
    b->z_open = true;
    /* tar blocks go straight to gz_write (no libarchive blocking or compression), so that gz_flush can push every
     * finished member to the file: a run killed half-way leaves an archive readable up to its last member */
    if (archive_write_set_format_pax_restricted(b->a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(b->a, 0) != ARCHIVE_OK ||
        archive_write_open(b->a, b, NULL, gz_write, gz_close) != ARCHIVE_OK) {
        nd_err_set(err, -EIO, "bundle: libarchive: %s", archive_error_string(b->a));
        nd_bundle_free(b);
        return -EIO;
    }
    *out = b;
    return 0;
}

const char *nd_bundle_path(const nd_bundle *b) { return b->final; }
const char *nd_bundle_topdir(const nd_bundle *b) { return b->top; }
const char *nd_bundle_temp_path(const nd_bundle *b) { return b->tmp; }
nd_scrub *nd_bundle_scrubber(nd_bundle *b) { return b->scrub; }
const nd_err *nd_bundle_error(const nd_bundle *b) { return &b->broken; }
bool nd_bundle_closed(const nd_bundle *b) { return b->closed; }
const json_t *nd_bundle_artifacts(const nd_bundle *b) { return b->artifacts; }

static int usable(nd_bundle *b, nd_err *err)
{
    if (b->closed)
        return nd_err_set(err, -EBADF, "bundle: already finished or aborted");
    if (b->broken.code) {
        if (err)
            *err = b->broken;
        return b->broken.code;
    }
    return 0;
}

/* ---- writing a member from any source ------------------------------------------------------------------------- */

typedef int64_t (*src_read_fn)(void *ud, uint64_t pos, void *buf, size_t n);

typedef struct memsrc {
    const char *p;
    size_t len;
} memsrc;

static int64_t mem_read(void *ud, uint64_t pos, void *buf, size_t n)
{
    memsrc *m = ud;
    if (pos >= m->len)
        return 0;
    if (n > m->len - pos)
        n = (size_t)(m->len - pos);
    memcpy(buf, m->p + pos, n);
    return (int64_t)n;
}


typedef struct wctx {
    nd_bundle *b;
    EVP_MD_CTX *md;
    uint64_t declared, written;
    bool overflow;
} wctx;

static int count_sink(void *ud, const void *d, size_t n)
{
    (void)d;
    *(uint64_t *)ud += n;
    return 0;
}

static int ar_sink(void *ud, const void *d, size_t n)
{
    wctx *w = ud;
    if (w->written + n > w->declared) {
        w->overflow = true;
        n = (size_t)(w->declared - w->written);
    }
    const char *p = d;
    while (n > 0) {
        la_ssize_t r = archive_write_data(w->b->a, p, n);
        if (r <= 0)
            return archive_fail(w->b, "write");
        EVP_DigestUpdate(w->md, p, (size_t)r);
        w->written += (uint64_t)r;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The scrubbed text of a small item, kept from the first pass. */
/* The scrubbed copy of a member kept in memory (for kept members): an nd_buf (core/nd_buf.h). */
static int keep_sink(void *ud, const void *d, size_t n) { return nd_buf_add(ud, d, n); }

/* Pass over the source through the scrubber (or raw) into sink. Returns 0, a read error (> -1000 style negative,
 * *read_err set), or the sink's error. */
static int pump(nd_bundle *b, src_read_fn rd, void *ud, uint64_t len, bool raw, nd_scrub_sink sink, void *sud,
                int *read_err)
{
    if (!raw)
        nd_scrub_begin(b->scrub, sink, sud);
    uint64_t pos = 0;
    while (pos < len) {
        size_t want = len - pos < IO_BUF ? (size_t)(len - pos) : IO_BUF;
        int64_t r = rd(ud, pos, b->buf, want);
        if (r < 0) {
            *read_err = (int)r;
            return (int)r;
        }
        if (r == 0)
            break; /* the source shrank */
        int rc = raw ? sink(sud, b->buf, (size_t)r) : nd_scrub_feed(b->scrub, b->buf, (size_t)r);
        if (rc < 0)
            return rc;
        pos += (uint64_t)r;
    }
    return raw ? 0 : nd_scrub_end(b->scrub);
}

/* Writes member `name` (already checked) from the source into the archive and completes item `it`.
 * Returns 0 (including a read error, recorded in the item) or the archive error. */
static int write_member(nd_bundle *b, const char *name, src_read_fn rd, void *ud, uint64_t len, bool raw, json_t *it)
{
    /* binary data is stored as is */
    bool binary = false;
    if (len > 0) {
        size_t probe = len < 8192 ? (size_t)len : 8192;
        int64_t r = rd(ud, 0, b->buf, probe);
        if (r < 0) {
            nd_collect_status st = nd_collect_status_of((int)r);
            item_status(it, st, nd_err_str((int)r));
            return 0;
        }
        binary = nd_scrub_looks_binary(b->buf, (size_t)r);
    }
    if (binary) {
        raw = true;
        json_object_set_new(it, "binary", json_true());
    }

    uint64_t declared = len;
    int read_err = 0;
    nd_buf kb = ND_BUF_INIT;
    bool kept = false;
    if (!raw) {
        declared = 0;
        /* small items: keep the scrubbed text from the first pass and write it from memory (one scrub, not two) */
        kept = len <= SMALL_ITEM;
        int rc = kept ? pump(b, rd, ud, len, false, keep_sink, &kb, &read_err)
                      : pump(b, rd, ud, len, false, count_sink, &declared, &read_err);
        if (rc < 0) {
            free(kb.p);
            item_status(it, nd_collect_status_of(read_err ? read_err : rc), nd_err_str(read_err ? read_err : rc));
            return 0;
        }
        if (kept)
            declared = kb.len;
    }

    struct archive_entry *e = archive_entry_new();
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", b->top, name);
    archive_entry_set_pathname(e, path);
    archive_entry_set_size(e, (la_int64_t)declared);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, (time_t)nd_collect_now(), 0);
    archive_entry_set_uname(e, "root");
    archive_entry_set_gname(e, "root");
    int hr = archive_write_header(b->a, e);
    archive_entry_free(e);
    if (hr != ARCHIVE_OK && hr != ARCHIVE_WARN) {
        free(kb.p);
        return archive_fail(b, "header");
    }

    wctx w = {.b = b, .md = EVP_MD_CTX_new(), .declared = declared};
    if (!w.md) {
        free(kb.p);
        return set_broken(b, -ENOMEM, "hash");
    }
    EVP_DigestInit_ex(w.md, EVP_sha256(), NULL);
    read_err = 0;
    int rc;
    if (kept) {
        memsrc ks = {kb.p ? kb.p : "", kb.len};
        rc = pump(b, mem_read, &ks, kb.len, true, ar_sink, &w, &read_err);
    } else {
        rc = pump(b, rd, ud, len, raw, ar_sink, &w, &read_err);
    }
    free(kb.p);
    if (rc < 0 && !read_err) {
        EVP_MD_CTX_free(w.md);
        return rc; /* archive error: broken */
    }
    const char *changed = NULL;
    if (w.written < declared) {
        /* the source shrank or failed between the passes: pad so the archive stays consistent */
        memset(b->buf, '\n', IO_BUF);
        while (w.written < declared) {
            size_t n = declared - w.written < IO_BUF ? (size_t)(declared - w.written) : IO_BUF;
            if (ar_sink(&w, b->buf, n) < 0) {
                EVP_MD_CTX_free(w.md);
                return b->broken.code;
            }
        }
        changed = read_err ? nd_err_str(read_err) : "the file shrank while it was collected (padded with newlines)";
    } else if (w.overflow) {
        changed = "the file changed while it was collected (cut to the measured size)";
    }
    char hex[65];
    sha_hex(w.md, hex);
    EVP_MD_CTX_free(w.md);
    if (archive_write_finish_entry(b->a) != ARCHIVE_OK)
        return archive_fail(b, "write");
    if (gz_flush(b) < 0)
        return b->broken.code;
    json_object_set_new(it, "bytes", json_integer((json_int_t)declared));
    json_object_set_new(it, "sha256", json_string(hex));
    if (changed)
        item_status(it, ND_COLLECT_ERROR, changed);
    if (!raw) {
        json_t *c = nd_scrub_counts(b->scrub);
        if (c)
            json_object_set_new(it, "redactions", c);
    }
    return 0;
}

/* ---- sources ------------------------------------------------------------------------------------------------- */

static int64_t span_read(void *ud, uint64_t pos, void *buf, size_t n)
{
    return nd_collect_span_read(ud, pos, buf, n);
}

/* ---- public adds --------------------------------------------------------------------------------------------- */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

/* Adds one host file as member `name`, or (name NULL) as `prefix` + its base name. */
static int add_file_item(nd_bundle *b, const char *name, const char *prefix, const char *host_path,
                         const nd_collect_opts *opts, const char *kind, const char *glob_src, nd_err *err)
{
    char nm[512];
    int rc = check_name(b, name ? name : prefix, name ? NULL : base_name(host_path), nm, sizeof nm, err);
    if (rc < 0)
        return rc;
    double t0 = nd_collect_now();
    json_t *it = new_item(b, nm, kind, host_path, t0, t0);
    if (glob_src)
        json_object_set_new(it, "glob", jstr(glob_src));
    nd_collect_span sp;
    nd_err ferr;
    nd_err_clear(&ferr);
    rc = nd_collect_span_open(b->ctx, host_path, opts, &sp, &ferr);
    if (rc < 0) {
        item_status(it, nd_collect_status_of(rc), ferr.msg);
        json_object_set_new(it, "path", json_null());
        item_end(it, t0);
        json_array_append_new(b->artifacts, it);
        return 0;
    }
    json_object_set_new(it, "source_bytes", json_integer((json_int_t)sp.size));
    json_object_set_new(it, "truncated", json_boolean(sp.truncated));
    if (sp.truncated && sp.reason[0])
        json_object_set_new(it, "truncated_reason", json_string(sp.reason));
    rc = write_member(b, nm, span_read, &sp, sp.len, false, it);
    nd_collect_span_close(&sp);
    if (json_is_null(json_object_get(it, "sha256")))
        json_object_set_new(it, "path", json_null());
    item_end(it, t0);
    json_array_append_new(b->artifacts, it);
    if (rc < 0 && err)
        *err = b->broken;
    return rc;
}

int nd_bundle_add_file(nd_bundle *b, const char *name, const char *host_path, const nd_collect_opts *opts, nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    if (!host_path || !host_path[0])
        return nd_err_set(err, -EINVAL, "bundle: add_file needs a path");
    return add_file_item(b, name, NULL, host_path, opts, "file", NULL, err);
}

/* Ends the JSON text *text (malloc'd, from json_dumps) with a newline, when memory allows. Returns its length. */
static size_t end_line(char **text)
{
    size_t len = strlen(*text);
    char *t = realloc(*text, len + 2);
    if (t) {
        *text = t;
        t[len++] = '\n';
        t[len] = '\0';
    }
    return len;
}

typedef struct glob_acc {
    char **paths;
    size_t n, cap;
} glob_acc;

static void glob_cb(void *ud, const char *p)
{
    glob_acc *g = ud;
    char **np = nd_grow_array(g->paths, &g->cap, g->n + 1, sizeof *np);
    if (!np)
        return;
    g->paths = np;
    g->paths[g->n] = strdup(p);
    if (g->paths[g->n])
        g->n++;
}

static void record_item(nd_bundle *b, const char *nm, const nd_bundle_meta *meta);

int nd_bundle_add_glob(nd_bundle *b, const char *pattern, const char *prefix, const nd_collect_opts *opts, nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    if (!prefix)
        prefix = "";
    char probe[300];
    snprintf(probe, sizeof probe, "%sx", prefix);
    if (strlen(prefix) > 200 || !name_shape_ok(probe))
        return nd_err_set(err, -EINVAL, "bundle: bad prefix for glob %s (must be relative, no '.' or '..')",
                          pattern ? pattern : "");
    glob_acc g = {0};
    nd_err gerr;
    nd_err_clear(&gerr);
    double t0 = nd_collect_now();
    int n = nd_collect_glob(b->ctx, pattern, glob_cb, &g, &gerr);
    if (n <= 0) {
        free(g.paths);
        if (n == -EINVAL)
            return nd_err_set(err, n, "%s", gerr.msg);
        nd_bundle_meta m = {.kind = "glob", .source = pattern};
        m.status = n < 0 ? nd_collect_status_of(n) : ND_COLLECT_MISSING;
        m.error = n < 0 ? gerr.msg : "no file matches the pattern";
        m.started_at = t0;
        char nm[512];
        if (check_name(b, prefix, base_name(pattern), nm, sizeof nm, err) < 0)
            return -EINVAL;
        record_item(b, nm, &m);
        return 0;
    }
    /* each match succeeds or fails on its own (an odd name is escaped, an unreadable file is recorded); only a
     * bundle that can no longer be written stops the loop */
    rc = 0;
    for (size_t i = 0; i < g.n; i++) {
        if (rc == 0)
            rc = add_file_item(b, NULL, prefix, g.paths[i], opts, "glob", pattern, err);
        free(g.paths[i]);
    }
    free(g.paths);
    return rc < 0 ? rc : (int)g.n;
}

static void apply_meta(json_t *it, const nd_bundle_meta *m, uint64_t len)
{
    if (m->status != ND_COLLECT_OK || m->error)
        item_status(it, m->status, m->error);
    if (m->has_exit_code)
        json_object_set_new(it, "exit_code", json_integer(m->exit_code));
    if (m->truncated) {
        json_object_set_new(it, "truncated", json_true());
        if (m->truncated_reason)
            json_object_set_new(it, "truncated_reason", json_string(m->truncated_reason));
    }
    json_object_set_new(it, "source_bytes", json_integer((json_int_t)(m->source_bytes ? m->source_bytes : len)));
}

int nd_bundle_add_data(nd_bundle *b, const char *name, const void *data, size_t len, const nd_bundle_meta *meta,
                       nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    nd_bundle_meta m = {0};
    if (meta)
        m = *meta;
    char nm[512];
    rc = check_name(b, name, NULL, nm, sizeof nm, err);
    if (rc < 0)
        return rc;
    double t0 = m.started_at > 0 ? m.started_at : nd_collect_now();
    json_t *it = new_item(b, nm, m.kind ? m.kind : "string", m.source, t0, t0);
    apply_meta(it, &m, len);
    memsrc ms = {data ? data : "", data ? len : 0};
    rc = write_member(b, nm, mem_read, &ms, ms.len, m.raw, it);
    if (m.ended_at > 0) {
        char t[40];
        json_object_set_new(it, "ended_at", json_string(nd_collect_iso_time(m.ended_at, t, sizeof t)));
        json_object_set_new(it, "duration", json_real((double)(long long)((m.ended_at - t0) * 1e6) / 1e6));
    } else {
        item_end(it, t0);
    }
    if (b->json_redactions && json_object_size(b->json_redactions) > 0) {
        json_t *r = json_object_get(it, "redactions");
        const char *k;
        json_t *v;
        json_object_foreach(b->json_redactions, k, v) {
            json_int_t old = json_integer_value(json_object_get(r, k));
            json_object_set_new(r, k, json_integer(old + json_integer_value(v)));
        }
    }
    json_array_append_new(b->artifacts, it);
    if (rc < 0 && err)
        *err = b->broken;
    return rc;
}

/* Records an item with no member under an already decided name. */
static void record_item(nd_bundle *b, const char *nm, const nd_bundle_meta *meta)
{
    nd_bundle_meta m = {0};
    if (meta)
        m = *meta;
    double t0 = m.started_at > 0 ? m.started_at : nd_collect_now();
    json_t *it = new_item(b, nm, m.kind ? m.kind : "string", m.source, t0, m.ended_at > 0 ? m.ended_at : nd_collect_now());
    json_object_set_new(it, "path", json_null());
    apply_meta(it, &m, 0);
    json_object_set_new(it, "source_bytes", json_integer((json_int_t)m.source_bytes));
    json_array_append_new(b->artifacts, it);
}

int nd_bundle_record(nd_bundle *b, const char *name, const nd_bundle_meta *meta, nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    char nm[512];
    rc = check_name(b, name, NULL, nm, sizeof nm, err);
    if (rc < 0)
        return rc;
    record_item(b, nm, meta);
    return 0;
}

/* ---- JSON scrubbing ------------------------------------------------------------------------------------------ */

/* The rule a JSON key names when its value is a credential, or NULL. */
static const char *sensitive_key(const char *key)
{
    if (!strcmp(key, "AccessKeyId") || !strcmp(key, "SecretAccessKey") || !strcmp(key, "Token"))
        return "imds_credentials";
    char k[64];
    size_t j = 0;
    for (size_t i = 0; key[i] && j + 1 < sizeof k; i++) {
        char c = key[i];
        if (c == '_' || c == '-')
            continue;
        k[j++] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    k[j] = 0;
    if (!strcmp(k, "secretaccesskey") || !strcmp(k, "awssecretaccesskey") || !strcmp(k, "secretkey"))
        return "aws_secret_access_key";
    if (!strcmp(k, "sessiontoken") || !strcmp(k, "awssessiontoken") || !strcmp(k, "securitytoken") ||
        !strcmp(k, "awssecuritytoken"))
        return "aws_session_token";
    if (!strcmp(k, "xamzsecuritytoken"))
        return "x_amz_security_token";
    if (!strcmp(k, "authorization"))
        return "authorization";
    if (!strcmp(k, "privatekey"))
        return "private_key";
    return NULL;
}

static void bump(json_t *counts, const char *rule, json_int_t n)
{
    if (!counts || n <= 0)
        return;
    json_int_t old = json_integer_value(json_object_get(counts, rule));
    json_object_set_new(counts, rule, json_integer(old + n));
}

/* Scrubs every string of v in place (v must be owned by the caller), adding counts to `counts` (may be NULL). */
static int scrub_json(nd_scrub *s, json_t *v, json_t *counts)
{
    if (json_is_object(v)) {
        const char *key;
        json_t *val;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, val) {
            const char *rule = sensitive_key(key);
            if (rule && json_is_string(val) && json_string_length(val) > 0 &&
                strcmp(json_string_value(val), "[REDACTED]") != 0) {
                json_object_set_new(v, key, json_string("[REDACTED]"));
                bump(counts, rule, 1);
                continue;
            }
            int rc = scrub_json(s, val, counts);
            if (rc < 0)
                return rc;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *val;
        json_array_foreach(v, i, val) {
            int rc = scrub_json(s, val, counts);
            if (rc < 0)
                return rc;
        }
    } else if (json_is_string(v)) {
        char *out = NULL;
        size_t olen = 0;
        int n = nd_scrub_buffer(s, json_string_value(v), json_string_length(v), &out, &olen);
        if (n < 0)
            return n;
        if (n > 0) {
            json_t *c = nd_scrub_counts(s);
            const char *k;
            json_t *cv;
            json_object_foreach(c, k, cv) bump(counts, k, json_integer_value(cv));
            json_decref(c);
            json_string_setn(v, out, olen);
        }
        free(out);
    }
    return 0;
}

int nd_bundle_add_json(nd_bundle *b, const char *name, const json_t *value, const nd_bundle_meta *meta, nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    json_t *copy = json_deep_copy(value);
    json_t *counts = json_object();
    if (!copy || !counts) {
        json_decref(copy);
        json_decref(counts);
        return nd_err_set(err, -ENOMEM, "bundle: out of memory");
    }
    rc = scrub_json(b->scrub, copy, counts);
    char *text = rc < 0 ? NULL : json_dumps(copy, JSON_INDENT(2) | JSON_ENCODE_ANY);
    json_decref(copy);
    if (!text) {
        json_decref(counts);
        return nd_err_set(err, -ENOMEM, "bundle: cannot encode JSON for %s", name);
    }
    nd_bundle_meta m = {0};
    if (meta)
        m = *meta;
    if (!m.kind)
        m.kind = "json";
    m.raw = true; /* already scrubbed value by value */
    size_t len = end_line(&text);
    b->json_redactions = counts;
    rc = nd_bundle_add_data(b, name, text, len, &m, err);
    b->json_redactions = NULL;
    json_decref(counts);
    free(text);
    return rc;
}

/* ---- commands ------------------------------------------------------------------------------------------------ */

static void join_argv(const char *const *argv, char *out, size_t outsz)
{
    size_t j = 0;
    out[0] = '\0';
    for (int i = 0; argv[i] && j + 4 < outsz; i++) {
        bool q = argv[i][0] == '\0' || strpbrk(argv[i], " \t\"'\\$") != NULL;
        int n = snprintf(out + j, outsz - j, "%s%s%s%s", i ? " " : "", q ? "'" : "", argv[i], q ? "'" : "");
        if (n < 0)
            break;
        j += (size_t)n;
        if (j >= outsz) {
            j = outsz - 1;
            break;
        }
    }
}

/* The body of nd_bundle_add_proc_result and nd_bundle_add_proc_partial (interrupted: why, else NULL). */
static int add_proc(nd_bundle *b, const char *name, const char *const *argv, const nd_proc_result *res,
                    double started_at, uint64_t lines, const char *interrupted, nd_err *err)
{
    int rc = usable(b, err);
    if (rc < 0)
        return rc;
    char src[2048], desc[512], reason[64];
    join_argv(argv, src, sizeof src);
    nd_proc_describe(res, argv[0], desc, sizeof desc);
    nd_bundle_meta m = {.kind = "command", .source = src, .started_at = started_at};
    m.ended_at = started_at + res->duration_s;
    if (interrupted) {
        m.status = ND_COLLECT_ERROR;
        m.error = interrupted;
    } else if (res->spawn_error) {
        m.status = nd_collect_status_of(res->spawn_error);
        m.error = desc;
        m.ended_at = nd_collect_now();
        return nd_bundle_record(b, name, &m, err);
    }
    if (interrupted) {
        /* no exit status: it had none yet */
    } else if (res->timed_out) {
        m.status = ND_COLLECT_TIMEOUT;
        m.error = desc;
    } else if (res->term_signal) {
        m.status = ND_COLLECT_ERROR;
        m.error = desc;
    }
    if (!interrupted && !res->timed_out && !res->term_signal) {
        m.has_exit_code = true;
        m.exit_code = res->exit_code;
    }
    const char *data = res->out.data ? res->out.data : "";
    size_t len = res->out.data ? res->out.len : 0;
    m.source_bytes = res->out.total;
    if (res->out.truncated) {
        m.truncated = true;
        snprintf(reason, sizeof reason, "cap=%zu", res->out.len);
        m.truncated_reason = reason;
    }
    if (lines > 0) {
        size_t off = nd_collect_tail_lines_mem(data, len, lines);
        if (off > 0) {
            data += off;
            len -= off;
            m.truncated = true;
            snprintf(reason, sizeof reason, "tail_lines=%llu", (unsigned long long)lines);
            m.truncated_reason = reason;
        }
    }
    rc = nd_bundle_add_data(b, name, data, len, &m, err);
    if (rc == 0 && res->err.data && res->err.len > 0) {
        char en[512];
        snprintf(en, sizeof en, "%s.stderr", name);
        nd_bundle_meta me = m;
        me.source_bytes = res->err.total;
        me.truncated = res->err.truncated;
        snprintf(reason, sizeof reason, "cap=%zu", res->err.len);
        me.truncated_reason = res->err.truncated ? reason : NULL;
        rc = nd_bundle_add_data(b, en, res->err.data, res->err.len, &me, err);
    }
    return rc;
}

int nd_bundle_add_proc_result(nd_bundle *b, const char *name, const char *const *argv, const nd_proc_result *res,
                              double started_at, uint64_t lines, nd_err *err)
{
    return add_proc(b, name, argv, res, started_at, lines, NULL, err);
}

int nd_bundle_add_proc_partial(nd_bundle *b, const char *name, const char *const *argv, const nd_proc_result *res,
                               double started_at, uint64_t lines, const char *why, nd_err *err)
{
    return add_proc(b, name, argv, res, started_at, lines, why && why[0] ? why : "interrupted", err);
}

/* ---- finish / discard ---------------------------------------------------------------------------------------- */

static void close_archive(nd_bundle *b)
{
    if (b->a) {
        archive_write_free(b->a);
        b->a = NULL;
    }
    if (b->z_open) {
        deflateEnd(&b->z);
        b->z_open = false;
    }
    if (b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
}

void nd_bundle_discard(nd_bundle *b)
{
    if (!b || b->closed)
        return;
    b->closed = true;
    close_archive(b);
    unlink(b->tmp);
}

static json_t *build_manifest(nd_bundle *b, const json_t *extra)
{
    char t1[40], t2[40];
    json_t *m = json_object();
    json_object_set_new(m, "format", json_string("nitrodiag-bundle"));
    json_object_set_new(m, "format_version", json_integer(1));
    json_object_set_new(m, "nitrodiag_version", json_string(ND_VERSION));
    json_object_set_new(m, "runbook", json_string(b->runbook));
    json_object_set_new(m, "host", json_string(b->host));
    json_object_set_new(m, "topdir", json_string(b->top));
    json_object_set_new(m, "root", json_string(b->ctx && b->ctx->root[0] ? b->ctx->root : "/"));
    json_object_set_new(m, "created_at", json_string(nd_collect_iso_time(b->created_at, t1, sizeof t1)));
    json_object_set_new(m, "finished_at", json_string(nd_collect_iso_time(nd_collect_now(), t2, sizeof t2)));
    json_object_set_new(m, "interrupted", json_false());
    json_object_set_new(m, "interrupt_reason", json_null());
    if (extra && json_is_object(extra))
        json_object_update(m, (json_t *)extra);

    json_t *by_status = json_object();
    json_t *red = json_object();
    json_t *incomplete = json_array();
    json_t *truncated = json_array();
    json_int_t red_total = 0;
    size_t i;
    json_t *it;
    json_array_foreach(b->artifacts, i, it) {
        const char *st = json_string_value(json_object_get(it, "status"));
        bump(by_status, st ? st : "error", 1);
        if (st && strcmp(st, "ok") != 0)
            json_array_append_new(incomplete, json_string(json_string_value(json_object_get(it, "name"))));
        if (json_is_true(json_object_get(it, "truncated")))
            json_array_append_new(truncated, json_string(json_string_value(json_object_get(it, "name"))));
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(it, "redactions"), k, v) {
            bump(red, k, json_integer_value(v));
            red_total += json_integer_value(v);
        }
    }
    json_t *counts = json_object();
    json_object_set_new(counts, "artifacts", json_integer((json_int_t)json_array_size(b->artifacts)));
    json_object_set_new(counts, "by_status", by_status);
    json_object_set_new(m, "counts", counts);
    json_object_set_new(m, "not_ok", incomplete);
    json_object_set_new(m, "truncated", truncated);
    json_object_set_new(m, "redactions_total", json_integer(red_total));
    json_object_set_new(m, "redactions", red);
    json_t *rules = json_array();
    for (const char *const *n = nd_scrub_builtin_names(); *n; n++)
        json_array_append_new(rules, json_string(*n));
    json_object_set_new(m, "scrub_rules", rules);
    json_object_set(m, "artifacts", b->artifacts);
    return m;
}

/* Scrubs the manifest copy value by value, except the member names: those were scrubbed and escaped once, when
 * the item was added, and must stay exactly the archive's member names (scrubbing them twice could differ). */
static void scrub_manifest(nd_bundle *b, json_t *copy, const json_t *orig)
{
    scrub_json(b->scrub, copy, NULL);
    static const char *const keep_top[] = {"topdir", "not_ok", "truncated", NULL};
    for (int i = 0; keep_top[i]; i++) {
        json_t *v = json_object_get(orig, keep_top[i]);
        if (v)
            json_object_set_new(copy, keep_top[i], json_deep_copy(v));
    }
    const json_t *oa = json_object_get(orig, "artifacts");
    json_t *ca = json_object_get(copy, "artifacts");
    for (size_t i = 0; i < json_array_size(oa) && i < json_array_size(ca); i++) {
        const json_t *o = json_array_get(oa, i);
        json_t *c = json_array_get(ca, i);
        json_object_set(c, "name", json_object_get(o, "name"));
        json_object_set(c, "path", json_object_get(o, "path"));
    }
}

static int rename_noreplace(const char *from, char *to, size_t tosz)
{
    char base[4096];
    snprintf(base, sizeof base, "%s", to);
    size_t bl = strlen(base);
    if (bl > 7 && strcmp(base + bl - 7, ".tar.gz") == 0)
        base[bl - 7] = '\0';
    for (int i = 1; i < 100; i++) {
        if (i > 1) {
            int n = snprintf(to, tosz, "%s-%d.tar.gz", base, i);
            if (n < 0 || (size_t)n >= tosz) /* a cut name could be someone else's file */
                return -ENAMETOOLONG;
        }
        int rc = nd_rename_noreplace(from, to);
        if (rc != -EEXIST)
            return rc;
    }
    return -EEXIST;
}

int nd_bundle_finish(nd_bundle *b, const json_t *extra, nd_err *err)
{
    if (b->closed)
        return nd_err_set(err, -EALREADY, "bundle: already finished or aborted");
    int rc = 0;
    if (!b->broken.code) {
        json_t *m = build_manifest(b, extra);
        json_t *copy = json_deep_copy(m);
        if (copy)
            scrub_manifest(b, copy, m);
        json_decref(m);
        char *text = copy ? json_dumps(copy, JSON_INDENT(2)) : NULL;
        json_decref(copy);
        if (!text) {
            set_broken(b, -ENOMEM, "manifest");
        } else {
            size_t len = end_line(&text);
            char nm[64];
            /* the manifest describes every other member; it is not listed in itself */
            snprintf(nm, sizeof nm, "manifest.json");
            json_t *it = json_object();
            memsrc ms = {text, len};
            rc = write_member(b, nm, mem_read, &ms, len, true, it);
            if (!b->broken.code && b->key) {
                /* the signature covers the manifest's exact bytes, hence every member's sha256 */
                char *sig = NULL;
                nd_err serr;
                if (nd_bundle_key_sign(b->key, text, len, &sig, &serr) < 0) {
                    set_broken(b, serr.code, serr.msg);
                } else {
                    size_t sl = strlen(sig);
                    memsrc ss = {sig, sl};
                    json_t *it2 = json_object();
                    write_member(b, "manifest.sig", mem_read, &ss, sl, true, it2);
                    json_decref(it2);
                    free(sig);
                }
            }
            json_decref(it);
            free(text);
        }
    }
    if (!b->broken.code && archive_write_close(b->a) != ARCHIVE_OK)
        archive_fail(b, "close");
    if (!b->broken.code && fsync(b->fd) < 0)
        set_broken(b, -errno, "sync");
    if (!b->broken.code) {
        int fd = b->fd;
        b->fd = -1;
        if (close(fd) < 0)
            set_broken(b, -errno, "close");
    }
    if (!b->broken.code) {
        rc = rename_noreplace(b->tmp, b->final, sizeof b->final);
        if (rc < 0)
            set_broken(b, rc, "rename");
    }
    if (b->broken.code) {
        nd_bundle_discard(b);
        if (err) {
            *err = b->broken;
            snprintf(err->msg + strlen(err->msg), sizeof err->msg - strlen(err->msg), " (temporary file removed)");
        }
        return b->broken.code;
    }
    b->closed = true;
    close_archive(b);
    (void)rc;
    return 0;
}

void nd_bundle_free(nd_bundle *b)
{
    if (!b)
        return;
    if (!b->closed)
        nd_bundle_discard(b);
    close_archive(b);
    nd_scrub_free(b->scrub);
    json_decref(b->artifacts);
    json_decref(b->names);
    free(b->buf);
    free(b->zbuf);
    nd_bundle_key_free(b->key);
    free(b);
}

/* ---- reading ------------------------------------------------------------------------------------------------- */

void nd_bundle_contents_free(nd_bundle_contents *c)
{
    for (size_t i = 0; i < c->nmembers; i++)
        free(c->members[i].name);
    free(c->members);
    free(c->topdir);
    json_decref(c->manifest);
    json_decref(c->summary);
    free(c->report);
    free(c->partial_reason);
    free(c->manifest_raw);
    free(c->signature);
    memset(c, 0, sizeof *c);
}

static void partial_at(nd_bundle_contents *c, const char *why)
{
    c->partial = true;
    char msg[600];
    snprintf(msg, sizeof msg, "the archive ends early or is damaged after %zu member(s): %s", c->nmembers,
             why ? why : "read error");
    free(c->partial_reason);
    c->partial_reason = strdup(msg);
}

/* Reading gzip ourselves (zlib) rather than through libarchive's filter: a gzip stream cut short (a killed run's
 * archive) then simply ends, and libarchive sees a tar stream that stops after the last complete member, instead of
 * refusing the whole file. Concatenated gzip members are read in sequence, as gzip(1) does. */
typedef struct gzin {
    int fd;
    z_stream z;
    bool z_open, in_stream, cut, bad;
    unsigned char in[64 * 1024];
    unsigned char out[256 * 1024];
} gzin;

static la_ssize_t gzin_read(struct archive *a, void *ud, const void **buf)
{
    gzin *g = ud;
    *buf = g->out;
    g->z.next_out = g->out;
    g->z.avail_out = sizeof g->out;
    while (g->z.avail_out == sizeof g->out) {
        if (g->z.avail_in == 0) {
            ssize_t n;
            do
                n = read(g->fd, g->in, sizeof g->in);
            while (n < 0 && errno == EINTR);
            if (n < 0) {
                archive_set_error(a, errno, "read");
                return -1;
            }
            if (n == 0) {
                if (g->in_stream)
                    g->cut = true; /* the gzip stream stops early: end of data */
                break;
            }
            g->z.next_in = g->in;
            g->z.avail_in = (uInt)n;
        }
        if (!g->in_stream) {
            inflateReset(&g->z);
            g->in_stream = true;
        }
        int zr = inflate(&g->z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END) {
            g->in_stream = false;
        } else if (zr != Z_OK && zr != Z_BUF_ERROR) {
            g->bad = true;
            if (g->z.avail_out != sizeof g->out)
                break; /* hand out what was decoded before the damage */
            archive_set_error(a, EIO, "corrupt gzip data");
            return -1;
        }
    }
    return (la_ssize_t)(sizeof g->out - g->z.avail_out);
}

int nd_bundle_read(const char *path, nd_bundle_contents *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) < 0)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    unsigned char magic[2] = {0, 0};
    int mfd = open(path, O_RDONLY | O_CLOEXEC);
    if (mfd < 0)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    gzin *g = NULL;
    if (pread(mfd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        g = calloc(1, sizeof *g);
        if (!g || inflateInit2(&g->z, 15 + 16) != Z_OK) {
            free(g);
            close(mfd);
            return nd_err_set(err, -ENOMEM, "out of memory");
        }
        g->z_open = true;
        g->fd = mfd;
    } else {
        close(mfd);
    }
    struct archive *a = archive_read_new();
    if (!a) {
        if (g) {
            inflateEnd(&g->z);
            close(g->fd);
            free(g);
        }
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int orc = g ? archive_read_open(a, g, NULL, gzin_read, NULL) : archive_read_open_filename(a, path, 64 * 1024);
    if (orc != ARCHIVE_OK) {
        int rc = nd_err_set(err, -EBADMSG, "%s: not a readable tar.gz: %s", path, archive_error_string(a));
        archive_read_free(a);
        if (g) {
            inflateEnd(&g->z);
            close(g->fd);
            free(g);
        }
        return rc;
    }
    size_t cap = 0;
    char *buf = malloc(IO_BUF);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = 0;
    if (!buf || !md) {
        rc = nd_err_set(err, -ENOMEM, "out of memory");
        goto done;
    }
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            if (out->nmembers > 0) { /* a partial archive (a killed run): keep what is readable */
                partial_at(out, archive_error_string(a));
                break;
            }
            rc = nd_err_set(err, -EBADMSG, "%s: corrupt archive: %s", path, archive_error_string(a));
            goto done;
        }
        const char *name = archive_entry_pathname(e);
        if (!name)
            name = "";
        if (archive_entry_filetype(e) != AE_IFREG)
            continue;
        nd_bundle_member *nm = nd_grow_array(out->members, &cap, out->nmembers + 1, sizeof *nm);
        if (!nm) {
            rc = nd_err_set(err, -ENOMEM, "out of memory");
            goto done;
        }
        out->members = nm;
        nd_bundle_member *m = &out->members[out->nmembers++];
        memset(m, 0, sizeof *m);
        m->name = strdup(name);
        if (!out->topdir) {
            const char *sl = strchr(name, '/');
            out->topdir = sl ? strndup(name, (size_t)(sl - name)) : strdup("");
        }
        const char *rel = strchr(name, '/');
        rel = rel ? rel + 1 : name;
        bool keep = !strcmp(rel, "manifest.json") || !strcmp(rel, "summary.json") || !strcmp(rel, "report.md") ||
                    !strcmp(rel, "manifest.sig");
        nd_buf keep_buf = ND_BUF_INIT;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        for (;;) {
            la_ssize_t n = archive_read_data(a, buf, IO_BUF);
            if (n < 0) {
                nd_buf_free(&keep_buf);
                if (out->nmembers > 1) { /* the archive ends inside this member: drop it, keep the others */
                    free(m->name);
                    out->nmembers--;
                    partial_at(out, archive_error_string(a));
                    goto done;
                }
                rc = nd_err_set(err, -EBADMSG, "%s: corrupt member %s: %s", path, name, archive_error_string(a));
                goto done;
            }
            if (n == 0)
                break;
            EVP_DigestUpdate(md, buf, (size_t)n);
            m->size += (uint64_t)n;
            if (keep && keep_buf.len + (size_t)n <= READ_KEEP_MAX)
                nd_buf_add(&keep_buf, buf, (size_t)n);
        }
        sha_hex(md, m->sha256);
        size_t klen = keep_buf.len;
        char *kept = keep_buf.p ? nd_buf_take(&keep_buf) : NULL; /* NULL: nothing kept, or out of memory */
        if (kept) {
            if (!strcmp(rel, "report.md")) {
                free(out->report);
                out->report = kept;
                kept = NULL;
            } else if (!strcmp(rel, "manifest.sig")) {
                free(out->signature);
                out->signature = kept;
                kept = NULL;
            } else {
                json_t *j = json_loadb(kept, klen, JSON_REJECT_DUPLICATES, NULL);
                if (!strcmp(rel, "manifest.json")) {
                    json_decref(out->manifest);
                    out->manifest = j;
                    free(out->manifest_raw);
                    out->manifest_raw = kept;
                    out->manifest_len = klen;
                    kept = NULL;
                } else {
                    json_decref(out->summary);
                    out->summary = j;
                }
            }
            free(kept);
        }
    }
done:
    free(buf);
    EVP_MD_CTX_free(md);
    archive_read_free(a);
    if (g) {
        if (rc == 0 && !out->partial && (g->cut || g->bad) && out->nmembers > 0)
            partial_at(out, g->cut ? "the gzip stream is cut short" : "corrupt gzip data");
        inflateEnd(&g->z);
        close(g->fd);
        free(g);
    }
    if (rc < 0)
        nd_bundle_contents_free(out);
    return rc;
}

int nd_bundle_verify(const nd_bundle_contents *c, void (*cb)(void *ud, const char *name, const char *problem),
                     void *ud, size_t *checked, nd_err *err)
{
    if (checked)
        *checked = 0;
    json_t *arts = c->manifest ? json_object_get(c->manifest, "artifacts") : NULL;
    if (!json_is_array(arts))
        return nd_err_set(err, -EBADMSG, "the bundle has no valid manifest.json");
    int problems = 0;
    char msg[256];
    json_t *listed = json_object();
    size_t i;
    json_t *it;
    json_array_foreach(arts, i, it) {
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *path = json_string_value(json_object_get(it, "path"));
        const char *sha = json_string_value(json_object_get(it, "sha256"));
        if (!name)
            name = "?";
        if (!sha || !path)
            continue; /* recorded but not collected: nothing to verify */
        json_object_set_new(listed, path, json_true());
        const nd_bundle_member *m = NULL;
        for (size_t k = 0; k < c->nmembers; k++)
            if (!strcmp(c->members[k].name, path))
                m = &c->members[k];
        if (!m) {
            problems++;
            if (cb)
                cb(ud, name, "missing from the archive");
            continue;
        }
        json_int_t bytes = json_integer_value(json_object_get(it, "bytes"));
        if ((uint64_t)bytes != m->size) {
            problems++;
            snprintf(msg, sizeof msg, "size %llu, manifest says %lld", (unsigned long long)m->size, (long long)bytes);
            if (cb)
                cb(ud, name, msg);
        } else if (strcmp(sha, m->sha256) != 0) {
            problems++;
            snprintf(msg, sizeof msg, "sha256 %s, manifest says %s", m->sha256, sha);
            if (cb)
                cb(ud, name, msg);
        } else if (checked) {
            (*checked)++;
        }
    }
    for (size_t k = 0; k < c->nmembers; k++) {
        const char *n = c->members[k].name;
        const char *rel = strchr(n, '/');
        rel = rel ? rel + 1 : n;
        if (!strcmp(rel, "manifest.json") || !strcmp(rel, "manifest.sig") || json_object_get(listed, n))
            continue;
        problems++;
        if (cb)
            cb(ud, n, "not listed in the manifest");
    }
    json_decref(listed);
    return problems;
}
