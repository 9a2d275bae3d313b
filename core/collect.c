/*
 * collect.c — reading host files for a bundle (contract in nd_collect.h).
 *
 * Cost model: the only bytes ever read are the ones collected, plus, for a tail by lines, the region scanned
 * backwards from the end in 64 KiB blocks until enough newlines are seen. So collecting the last 1000 lines of a
 * 5 GiB log reads a few hundred KiB. The range is fixed when the file is opened; a log that grows meanwhile does not
 * make the read longer. Files that claim size 0 (procfs, sysfs) cannot be read from the end: they are read
 * sequentially into memory with a tail cap, which is fine because such files are small.
 */
#include "nd_collect.h"
#include "nd_buf.h"

#include <fcntl.h>
#include <limits.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#if defined(__has_include)
#if __has_include(<linux/openat2.h>)
#include <linux/openat2.h>
#define HAVE_OPENAT2_H 1
#endif
#endif
#include <time.h>
#include <unistd.h>

#define SCAN_BLOCK (64u * 1024u)

const char *nd_collect_status_name(nd_collect_status st)
{
    switch (st) {
    case ND_COLLECT_OK: return "ok";
    case ND_COLLECT_MISSING: return "missing";
    case ND_COLLECT_DENIED: return "denied";
    case ND_COLLECT_TIMEOUT: return "timeout";
    case ND_COLLECT_SKIPPED: return "skipped";
    default: return "error";
    }
}

nd_collect_status nd_collect_status_of(int code)
{
    switch (-code) {
    case 0: return ND_COLLECT_OK;
    case ENOENT:
    case ENOTDIR: return ND_COLLECT_MISSING;
    case EACCES:
    case EPERM: return ND_COLLECT_DENIED;
    case ETIMEDOUT: return ND_COLLECT_TIMEOUT;
    default: return ND_COLLECT_ERROR;
    }
}

double nd_collect_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *nd_collect_iso_time(double epoch_s, char *buf, size_t bufsz)
{
    time_t t = (time_t)epoch_s;
    int ms = (int)((epoch_s - (double)t) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[32];
    strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, bufsz, "%s.%03dZ", tmp, ms);
    return buf;
}

#define MAX_SYMLINKS 40 /* the kernel's own limit (ELOOP) */
#define MAX_DEPTH 256

int nd_collect_open_beneath(int root_fd, const char *rel, int flags)
{
    char *rem = malloc(2 * PATH_MAX); /* the part of the path still to walk */
    int *stack = malloc(sizeof(int) * MAX_DEPTH); /* directory fds below the root; [depth-1] is the current one */
    if (!rem || !stack) {
        free(rem);
        free(stack);
        return -ENOMEM;
    }
    size_t remlen = strlen(rel);
    int rc = 0, depth = 0, links = 0;
    if (remlen >= 2 * PATH_MAX) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    memcpy(rem, rel, remlen + 1);
    for (;;) {
        char *p = rem;
        while (*p == '/')
            p++;
        if (!*p) { /* the path names the current directory itself */
            int cur = depth ? stack[depth - 1] : root_fd;
            int fd = openat(cur, ".", flags | O_NOFOLLOW);
            rc = fd < 0 ? -errno : fd;
            goto out;
        }
        char *slash = strchr(p, '/');
        size_t clen = slash ? (size_t)(slash - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (clen > NAME_MAX) {
            rc = -ENAMETOOLONG;
            goto out;
        }
        memcpy(comp, p, clen);
        comp[clen] = '\0';
        const char *rest = p + clen;
        bool last = true;
        for (const char *q = rest; *q; q++)
            if (*q != '/') {
                last = false;
                break;
            }
        remlen = strlen(rest);
        memmove(rem, rest, remlen + 1);
        if (strcmp(comp, ".") == 0)
            continue; /* when it was the last one, the loop opens the current directory */
        if (strcmp(comp, "..") == 0) { /* never above the root, as in a chroot */
            if (depth > 0)
                close(stack[--depth]);
            continue;
        }
        int cur = depth ? stack[depth - 1] : root_fd;
        int fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            goto out;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
            rc = -errno;
            close(fd);
            goto out;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(fd, "", target, sizeof target - 1);
            close(fd);
            if (n < 0) {
                rc = -errno;
                goto out;
            }
            if (++links > MAX_SYMLINKS) {
                rc = -ELOOP;
                goto out;
            }
            if ((size_t)n + 1 + remlen + 1 > 2 * PATH_MAX) {
                rc = -ENAMETOOLONG;
                goto out;
            }
            target[n] = '\0';
            size_t sep = remlen ? 1 : 0; /* target "/" rest */
            memmove(rem + n + sep, rem, remlen + 1);
            memcpy(rem, target, (size_t)n);
            if (sep)
                rem[n] = '/';
            if (target[0] == '/') /* absolute: from the root, not from the host's / */
                while (depth > 0)
                    close(stack[--depth]);
            continue;
        }
        if (last) {
            close(fd);
            /* O_NOFOLLOW: a symlink swapped in since the check fails (ELOOP) rather than escapes */
            int ffd = openat(cur, comp, flags | O_NOFOLLOW);
            rc = ffd < 0 ? -errno : ffd;
            goto out;
        }
        if (!S_ISDIR(st.st_mode)) {
            close(fd);
            rc = -ENOTDIR;
            goto out;
        }
        if (depth == MAX_DEPTH) {
            close(fd);
            rc = -ENAMETOOLONG;
            goto out;
        }
        stack[depth++] = fd;
    }
out:
    while (depth > 0)
        close(stack[--depth]);
    free(stack);
    free(rem);
    return rc;
}

/* Opens a host path. Under a --root other than "/", symlinks are resolved inside the root, like a chroot: a copied
 * host tree whose /var/log/x links to /etc/y reads ROOT/etc/y, never the real /etc/y. openat2 with RESOLVE_IN_ROOT
 * does it in the kernel (Linux >= 5.6); older kernels (Amazon Linux 2's 4.14) get the same answer from
 * nd_collect_open_beneath's walk. */
static int open_in_root(const nd_ctx *ctx, const char *host_path, const char *joined, int flags)
{
    if (!ctx || !ctx->root[0] || strcmp(ctx->root, "/") == 0)
        return open(joined, flags);
    int rfd = open(ctx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0)
        return -1;
    const char *rel = host_path;
    while (*rel == '/')
        rel++;
    int fd = -1, e = ENOSYS;
#if defined(HAVE_OPENAT2_H) && defined(SYS_openat2)
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)flags;
    how.resolve = RESOLVE_IN_ROOT;
    fd = (int)syscall(SYS_openat2, rfd, *rel ? rel : ".", &how, sizeof how);
    e = fd < 0 ? errno : 0;
#endif
    if (fd < 0 && (e == ENOSYS || e == EPERM || e == E2BIG)) { /* no openat2 (or a seccomp filter refusing it) */
        fd = nd_collect_open_beneath(rfd, rel, flags);
        e = fd < 0 ? -fd : 0;
        if (fd < 0)
            fd = -1;
    }
    close(rfd);
    errno = e;
    return fd;
}

/* Where the last `lines` lines of [floor, size) start, scanning backwards with pread. The scan never goes below
 * floor (the cap): a file with fewer newlines than asked costs at most the cap, never the whole file. */
static int tail_lines_start(int fd, uint64_t size, uint64_t lines, uint64_t floor, uint64_t *start, nd_err *err)
{
    *start = floor;
    if (lines == 0 || size == 0) {
        *start = size;
        return 0;
    }
    char *buf = malloc(SCAN_BLOCK);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "out of memory");
    uint64_t end = size;
    uint64_t seen = 0;
    bool skip_last = true; /* a final '\n' ends the last line, it does not start a new one */
    while (end > floor) {
        size_t n = end - floor < SCAN_BLOCK ? (size_t)(end - floor) : SCAN_BLOCK;
        uint64_t pos = end - n;
        ssize_t r = pread(fd, buf, n, (off_t)pos);
        if (r < 0) {
            int e = -errno;
            free(buf);
            return nd_err_set(err, e, "read error: %s", strerror(-e));
        }
        if ((size_t)r < n) { /* the file shrank under us: start over from its new end */
            n = (size_t)r;
        }
        for (size_t i = n; i > 0; i--) {
            if (buf[i - 1] != '\n')
                continue;
            if (skip_last && pos + i == size) {
                continue;
            }
            if (++seen == lines) {
                *start = pos + i;
                free(buf);
                return 0;
            }
        }
        skip_last = false;
        end = pos;
    }
    free(buf);
    return 0;
}

size_t nd_collect_tail_lines_mem(const char *buf, size_t len, uint64_t lines)
{
    if (lines == 0)
        return len;
    uint64_t seen = 0;
    for (size_t i = len; i > 0; i--) {
        if (buf[i - 1] != '\n' || i == len)
            continue;
        if (++seen == lines)
            return i;
    }
    return 0;
}

/* Reads a file of unknown size sequentially, keeping the last cap bytes. */
static int read_unsized(nd_collect_span *sp, uint64_t cap, nd_err *err)
{
    size_t bcap = 64 * 1024, len = 0;
    uint64_t total = 0;
    char *buf = malloc(bcap);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "out of memory");
    for (;;) {
        if (len == bcap) {
            if (bcap < cap * 2) {
                if (nd_grow(&buf, &bcap, bcap + 1) < 0) { /* doubles */
                    free(buf);
                    return nd_err_set(err, -ENOMEM, "out of memory");
                }
            } else { /* keep only the tail */
                size_t keep = (size_t)cap;
                memmove(buf, buf + len - keep, keep);
                len = keep;
            }
        }
        ssize_t r = read(sp->fd, buf + len, bcap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            free(buf);
            return nd_err_set(err, e, "read error: %s", strerror(-e));
        }
        if (r == 0)
            break;
        len += (size_t)r;
        total += (uint64_t)r;
    }
    size_t off = len > cap ? len - (size_t)cap : 0;
    if (off) {
        memmove(buf, buf + off, len - off);
        len -= off;
    }
    sp->mem = buf;
    sp->size = total;
    sp->off = 0;
    sp->len = len;
    return 0;
}

int nd_collect_span_open(const nd_ctx *ctx, const char *host_path, const nd_collect_opts *opts, nd_collect_span *sp,
                         nd_err *err)
{
    memset(sp, 0, sizeof *sp);
    sp->fd = -1;
    char path[4096];
    if (!host_path || !host_path[0])
        return nd_err_set(err, -EINVAL, "empty path");
    if (nd_ctx_path(ctx, host_path, path, sizeof path) < 0)
        return nd_err_set(err, -ENAMETOOLONG, "%s: path too long", host_path);
    uint64_t cap = opts && opts->cap ? opts->cap : ND_COLLECT_DEFAULT_CAP;
    uint64_t tail_lines = opts ? opts->tail_lines : 0, tail_bytes = opts ? opts->tail_bytes : 0;

    /* O_NONBLOCK: opening a FIFO must never wait for a writer. */
    int fd = open_in_root(ctx, host_path, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int e = -errno;
        if (e == -ENOENT || e == -ENOTDIR)
            return nd_err_set(err, e, "%s: no such file", host_path);
        if (e == -EACCES || e == -EPERM)
            return nd_err_set(err, e, "%s: permission denied", host_path);
        return nd_err_set(err, e, "%s: %s", host_path, strerror(-e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return nd_err_set(err, e, "%s: %s", host_path, strerror(-e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return nd_err_set(err, -EISDIR, "%s: is a directory", host_path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return nd_err_set(err, -EINVAL, "%s: not a regular file (FIFO, socket or device): not read", host_path);
    }
    /* Back to blocking reads for a regular file. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    sp->fd = fd;

    if (st.st_size == 0) {
        int rc = read_unsized(sp, cap, err);
        if (rc < 0) {
            nd_collect_span_close(sp);
            return rc == -EACCES || rc == -EPERM ? nd_err_set(err, rc, "%s: permission denied", host_path) : rc;
        }
        uint64_t keep = sp->len;
        const char *why = NULL;
        char whybuf[64];
        if (tail_lines) {
            size_t s = nd_collect_tail_lines_mem(sp->mem, sp->len, tail_lines);
            if (s > 0) {
                snprintf(whybuf, sizeof whybuf, "tail_lines=%llu", (unsigned long long)tail_lines);
                why = whybuf;
            }
            sp->off = s;
            keep = sp->len - s;
        }
        if (tail_bytes && keep > tail_bytes) {
            sp->off += keep - tail_bytes;
            keep = tail_bytes;
            snprintf(whybuf, sizeof whybuf, "tail_bytes=%llu", (unsigned long long)tail_bytes);
            why = whybuf;
        }
        if (!why && sp->size > sp->len) {
            snprintf(whybuf, sizeof whybuf, "cap=%llu", (unsigned long long)cap);
            why = whybuf;
        }
        sp->len = keep;
        sp->truncated = sp->len < sp->size;
        if (why && sp->truncated)
            snprintf(sp->reason, sizeof sp->reason, "%s", why);
        return 0;
    }

    uint64_t size = (uint64_t)st.st_size;
    uint64_t start = 0;
    sp->size = size;
    if (tail_lines) {
        uint64_t floor = size > cap ? size - cap : 0;
        int rc = tail_lines_start(fd, size, tail_lines, floor, &start, err);
        if (rc < 0) {
            nd_collect_span_close(sp);
            return rc;
        }
        if (start > 0 && start == floor) /* fewer newlines than asked within the cap */
            snprintf(sp->reason, sizeof sp->reason, "cap=%llu", (unsigned long long)cap);
        else if (start > 0)
            snprintf(sp->reason, sizeof sp->reason, "tail_lines=%llu", (unsigned long long)tail_lines);
    }
    if (tail_bytes && size - start > tail_bytes) {
        start = size - tail_bytes;
        snprintf(sp->reason, sizeof sp->reason, "tail_bytes=%llu", (unsigned long long)tail_bytes);
    }
    if (size - start > cap) {
        start = size - cap;
        snprintf(sp->reason, sizeof sp->reason, "cap=%llu", (unsigned long long)cap);
    }
    sp->off = start;
    sp->len = size - start;
    sp->truncated = start > 0;
    return 0;
}

int64_t nd_collect_span_read(nd_collect_span *sp, uint64_t pos, void *buf, size_t n)
{
    if (pos >= sp->len)
        return 0;
    if (n > sp->len - pos)
        n = (size_t)(sp->len - pos);
    if (sp->mem) {
        memcpy(buf, sp->mem + sp->off + pos, n);
        return (int64_t)n;
    }
    for (;;) {
        ssize_t r = pread(sp->fd, buf, n, (off_t)(sp->off + pos));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        return r;
    }
}

void nd_collect_span_close(nd_collect_span *sp)
{
    if (sp->fd >= 0)
        close(sp->fd);
    sp->fd = -1;
    free(sp->mem);
    sp->mem = NULL;
}

int nd_collect_glob(const nd_ctx *ctx, const char *pattern, void (*cb)(void *ud, const char *host_path), void *ud,
                    nd_err *err)
{
    char full[4096];
    if (!pattern || !pattern[0])
        return nd_err_set(err, -EINVAL, "empty glob pattern");
    if (nd_ctx_path(ctx, pattern, full, sizeof full) < 0)
        return nd_err_set(err, -ENAMETOOLONG, "%s: pattern too long", pattern);
    char rootp[4096];
    nd_ctx_path(ctx, "", rootp, sizeof rootp);
    size_t rl = strlen(rootp);
    while (rl > 0 && rootp[rl - 1] == '/')
        rl--;
    glob_t g;
    memset(&g, 0, sizeof g);
    int rc = glob(full, GLOB_ERR, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        globfree(&g);
        return 0;
    }
    if (rc == GLOB_ABORTED) {
        int e = errno ? -errno : -EACCES;
        globfree(&g);
        if (e == -ENOENT || e == -ENOTDIR)
            return 0;
        return nd_err_set(err, e, "%s: cannot read a directory on the way: %s", pattern, strerror(-e));
    }
    if (rc != 0) {
        globfree(&g);
        return nd_err_set(err, -ENOMEM, "%s: out of memory", pattern);
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *p = g.gl_pathv[i];
        cb(ud, rl ? p + rl : p);
    }
    int n = (int)g.gl_pathc;
    globfree(&g);
    return n;
}
