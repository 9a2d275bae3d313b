/*
 * nd_collect.h — reading what goes into a bundle: host files (whole, or a tail by lines or bytes, read from the END
 * with pread so a 5 GiB log costs what a 5 MiB one does), glob expansion, and the outcome vocabulary every collected
 * item is recorded with (ok | missing | denied | timeout | error).
 *
 * Host paths are always resolved under the context's root (nd_ctx_path), so --root and the simulated host work.
 * Nothing here blocks on odd files: a FIFO, socket or device is refused, not opened for a read that could hang
 * (the open itself uses O_NONBLOCK).
 */
#ifndef ND_COLLECT_H
#define ND_COLLECT_H

#include "nd.h"

#include <stdint.h>

/* The outcome of collecting one item. */
typedef enum nd_collect_status {
    ND_COLLECT_OK = 0,
    ND_COLLECT_MISSING, /* the file or command does not exist */
    ND_COLLECT_DENIED,  /* permission denied */
    ND_COLLECT_TIMEOUT, /* the command hit its timeout (what it printed is kept) */
    ND_COLLECT_ERROR,   /* anything else, with the error text */
    ND_COLLECT_SKIPPED, /* never attempted: the step that collects it did not run (interrupted, deadline, …) */
} nd_collect_status;

/* "ok", "missing", "denied", "timeout", "error", "skipped". Never NULL. */
const char *nd_collect_status_name(nd_collect_status st);

/* Maps a negative errno-style code to a status: -ENOENT/-ENOTDIR → missing, -EACCES/-EPERM → denied,
 * -ETIMEDOUT → timeout, anything else → error. */
nd_collect_status nd_collect_status_of(int code);

/* What part of a file to collect. Zeros mean "no limit"; cap 0 means ND_COLLECT_DEFAULT_CAP. */
typedef struct nd_collect_opts {
    uint64_t tail_lines; /* keep only the last N lines */
    uint64_t tail_bytes; /* keep only the last N bytes */
    uint64_t cap;        /* hard size cap; the TAIL is kept and the item is marked truncated */
} nd_collect_opts;

#define ND_COLLECT_DEFAULT_CAP (64ull << 20)

/* An open host file and the byte range [off, off + len) chosen for collection. */
typedef struct nd_collect_span {
    int fd;              /* -1 when closed */
    uint64_t size;       /* the file's size when opened (bytes) */
    uint64_t off, len;   /* the range to collect */
    bool truncated;      /* len < size */
    char reason[64];     /* why it is shorter: "tail_lines=100", "tail_bytes=4096", "cap=65536" ("" when whole) */
    char *mem;           /* files whose size is unknown (/proc, /sys): their content read into memory (tail kept) */
} nd_collect_span;

/* Opens host_path (a host path: resolved under ctx's root) and chooses the range per opts. Returns 0, or a negative
 * code with a one-line message: -ENOENT (missing), -EACCES (denied), -EISDIR, -EINVAL (not a regular file), or the
 * read error. On success call nd_collect_span_close. For files that report size 0 (procfs, sysfs) the content is
 * read sequentially into memory, keeping at most cap bytes of tail. */
int nd_collect_span_open(const nd_ctx *ctx, const char *host_path, const nd_collect_opts *opts, nd_collect_span *sp,
                         nd_err *err);

/* Opens rel (a relative path) beneath the directory root_fd as if root_fd were "/": "..", absolute and relative
 * symlinks never leave it (a userspace RESOLVE_IN_ROOT, used where openat2 is unavailable, e.g. on Linux < 5.6).
 * Every component is opened with O_NOFOLLOW and symlinks are read and re-walked (at most 40, else -ELOOP). The final
 * component is opened with flags | O_NOFOLLOW. Returns the new fd, or a negative errno (-ENOENT, -ENOTDIR, -ELOOP,
 * -ENAMETOOLONG, -EACCES, ...). */
int nd_collect_open_beneath(int root_fd, const char *rel, int flags);

/* Reads up to n bytes of the span starting at offset pos inside it (0 = the span's first byte). Returns the bytes
 * read (0 at the span's end or when the file shrank), or a negative code. */
int64_t nd_collect_span_read(nd_collect_span *sp, uint64_t pos, void *buf, size_t n);

void nd_collect_span_close(nd_collect_span *sp);

/* Keeps the last `lines` lines of the text in buf (len bytes): returns the offset where they start. */
size_t nd_collect_tail_lines_mem(const char *buf, size_t len, uint64_t lines);

/* Expands a glob pattern of HOST paths under ctx's root. Calls cb(ud, host_path) for each match, sorted, with the
 * root prefix removed. Returns the number of matches (0 when none), or a negative code for a read error
 * (-EACCES when a directory on the way cannot be read). */
int nd_collect_glob(const nd_ctx *ctx, const char *pattern, void (*cb)(void *ud, const char *host_path), void *ud,
                    nd_err *err);

/* Current wall-clock time as "2026-11-22T19:47:09.123Z" into buf (>= 32 bytes); returns buf. */
const char *nd_collect_iso_time(double epoch_s, char *buf, size_t bufsz);

/* Wall-clock time in seconds since the epoch (sub-second precision). */
double nd_collect_now(void);

#endif
