/*
 * nd.c — the shared basics declared in nd.h: error values and the context object.
 */
#include "nd.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

int nd_err_set(nd_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* Keep the message on one line whatever the caller passed. */
        for (char *p = err->msg; *p; p++) {
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        }
    }
    return code;
}

void nd_err_clear(nd_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

/* The codes with a name: ours first (uv_err_name allocates, and leaks, a string for codes libuv does not know), then
 * those libuv names. */
static const struct {
    int code;
    const char *name;
} own_names[] = {{-EBADMSG, "EBADMSG"}, {-EPROTO, "EPROTO"},     {-ENODATA, "ENODATA"},
                 {-EOVERFLOW, "EOVERFLOW"}, {-ENOTSUP, "ENOTSUP"}, {-EDQUOT, "EDQUOT"},
                 {-EDEADLK, "EDEADLK"}, {-ESRCH, "ESRCH"},       {-ENAMETOOLONG, "ENAMETOOLONG"}};
static const int uv_known[] = {UV_E2BIG, UV_EACCES, UV_EADDRINUSE, UV_EADDRNOTAVAIL, UV_EAFNOSUPPORT, UV_EAGAIN,
                               UV_EALREADY, UV_EBADF, UV_EBUSY, UV_ECANCELED, UV_ECONNABORTED, UV_ECONNREFUSED,
                               UV_ECONNRESET, UV_EEXIST, UV_EFAULT, UV_EFBIG, UV_EHOSTUNREACH, UV_EINTR, UV_EINVAL,
                               UV_EIO, UV_EISCONN, UV_EISDIR, UV_ELOOP, UV_EMFILE, UV_EMSGSIZE, UV_ENETDOWN,
                               UV_ENETUNREACH, UV_ENFILE, UV_ENOBUFS, UV_ENODEV, UV_ENOENT, UV_ENOMEM, UV_ENOSPC,
                               UV_ENOSYS, UV_ENOTCONN, UV_ENOTDIR, UV_ENOTEMPTY, UV_ENOTSOCK, UV_ENOTSUP, UV_EPERM,
                               UV_EPIPE, UV_EPROTO, UV_EROFS, UV_ESHUTDOWN, UV_ESPIPE, UV_ETIMEDOUT, UV_ETXTBSY,
                               UV_EXDEV, UV_EOF, UV_ENXIO, UV_EMLINK, UV_EHOSTDOWN, UV_EREMOTEIO, UV_ENOTTY, UV_EILSEQ};

const char *nd_err_name(int code)
{
    if (code >= 0)
        return "OK";
    for (size_t i = 0; i < sizeof own_names / sizeof own_names[0]; i++)
        if (own_names[i].code == code)
            return own_names[i].name;
    for (size_t i = 0; i < sizeof uv_known / sizeof uv_known[0]; i++)
        if (uv_known[i] == code)
            return uv_err_name(code);
    return "EUNKNOWN";
}

int nd_err_code(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof own_names / sizeof own_names[0]; i++)
        if (strcmp(own_names[i].name, name) == 0)
            return own_names[i].code;
    for (size_t i = 0; i < sizeof uv_known / sizeof uv_known[0]; i++)
        if (strcmp(uv_err_name(uv_known[i]), name) == 0)
            return uv_known[i];
    return 0;
}

const char *nd_err_str(int code)
{
    if (code >= 0)
        return "success";
    return strerror(-code);
}

int nd_ctx_init(nd_ctx *ctx, struct uv_loop_s *loop)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->loop = loop;
    snprintf(ctx->nitro_cli, sizeof ctx->nitro_cli, "%s", "nitro-cli");
    return 0;
}

int nd_ctx_sim_command(const nd_ctx *ctx, const char *argv0, char *out, size_t outsz)
{
    if (!ctx || !ctx->sim_root[0]) {
        if (snprintf(out, outsz, "%s", argv0) >= (int)outsz)
            return -ENAMETOOLONG;
        return 0;
    }
    if (ctx->self_exe[0] && strcmp(argv0, ctx->self_exe) == 0) /* nitrodiag itself: it inherits the simulated host */
        return snprintf(out, outsz, "%s", argv0) >= (int)outsz ? -ENAMETOOLONG : 0;
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    if (!base[0] || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EPERM;
    if (snprintf(out, outsz, "%s/bin/%s", ctx->sim_root, base) >= (int)outsz)
        return -ENAMETOOLONG;
    if (access(out, X_OK) != 0)
        return -EPERM;
    return 0;
}

double nd_ctx_real_wait(const nd_ctx *ctx, double seconds)
{
    if (!ctx || ctx->time_scale <= 1.0 || seconds <= 0)
        return seconds;
    double w = seconds / ctx->time_scale;
    double floor = seconds < 1.0 ? seconds : 1.0; /* a console window still lets the enclave's first lines through */
    return w < floor ? floor : w;
}

int nd_ctx_path(const nd_ctx *ctx, const char *host_path, char *out, size_t outsz)
{
    const char *root = (ctx && ctx->root[0] && strcmp(ctx->root, "/") != 0) ? ctx->root : "";
    size_t rl = strlen(root);
    while (rl > 0 && root[rl - 1] == '/')
        rl--;
    int n = snprintf(out, outsz, "%.*s%s%s", (int)rl, root,
                     (rl && host_path[0] != '/') ? "/" : "", host_path);
    if (n < 0 || (size_t)n >= outsz)
        return -ENAMETOOLONG;
    return 0;
}
