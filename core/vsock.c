/*
 * vsock.c — the stream transport behind nd_vsock.h: AF_VSOCK, unix sockets and loopback TCP behind one address
 * syntax, with timeouts on every wait and failures explained in words.
 *
 * Why one API for three families: the Nitro parent talks to an enclave over AF_VSOCK only, but no development
 * machine or CI has a vsock peer; tests run the very same code over unix sockets and TCP, and only the address
 * changes. Everything here is plain POSIX (socket/poll), with no libuv, so the static enclave programs
 * (enclave/init, enclave/vsock-pingpong) link it directly; the Lua binding drives the same non-blocking fds from
 * the libuv loop with uv_poll.
 */
#include "nd_vsock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define ADDR_FORMS "expected vsock:CID:PORT, unix:PATH or tcp:HOST:PORT"

double nd_vsock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Parses a decimal u32 that fills the whole string. Returns 0 or -1. */
static int parse_u32(const char *s, uint32_t *out)
{
    if (!*s || strlen(s) > 10)
        return -1;
    unsigned long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > 0xFFFFFFFFull)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int nd_vsock_parse(const char *text, nd_sockaddr *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text)
        return nd_err_set(err, -EINVAL, "empty address: " ADDR_FORMS);
    if (strlen(text) >= sizeof out->text)
        return nd_err_set(err, -EINVAL, "address too long (%zu characters): " ADDR_FORMS, strlen(text));

    if (strncmp(text, "vsock:", 6) == 0) {
        const char *rest = text + 6;
        const char *colon = strchr(rest, ':');
        char cid[16];
        if (!colon || (size_t)(colon - rest) >= sizeof cid)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": expected vsock:CID:PORT (e.g. vsock:16:5000)", text);
        memcpy(cid, rest, (size_t)(colon - rest));
        cid[colon - rest] = '\0';
        if (strcmp(cid, "any") == 0 || strcmp(cid, "-1") == 0)
            out->cid = ND_VSOCK_CID_ANY;
        else if (parse_u32(cid, &out->cid) < 0)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": CID \"%s\" is not a number (vsock:CID:PORT)", text, cid);
        if (parse_u32(colon + 1, &out->port) < 0)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": port \"%s\" is not a number (vsock:CID:PORT)", text,
                              colon + 1);
        struct sockaddr_vm *vm = (struct sockaddr_vm *)&out->ss;
        vm->svm_family = AF_VSOCK;
        vm->svm_cid = out->cid;
        vm->svm_port = out->port;
        out->sslen = sizeof *vm;
        out->kind = ND_ADDR_VSOCK;
    } else if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (!*path)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": the unix socket path is empty (unix:PATH)", text);
        if (strlen(path) >= sizeof out->path)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": unix socket paths are limited to %zu bytes", text,
                              sizeof out->path - 1);
        snprintf(out->path, sizeof out->path, "%s", path);
        struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, out->path, strlen(out->path) + 1);
        out->sslen = (socklen_t)sizeof *un;
        out->kind = ND_ADDR_UNIX;
    } else if (strncmp(text, "tcp:", 4) == 0) {
        const char *rest = text + 4;
        const char *colon = strrchr(rest, ':');
        char host[64];
        if (!colon || colon == rest || (size_t)(colon - rest) >= sizeof host)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": expected tcp:HOST:PORT (e.g. tcp:127.0.0.1:8000)", text);
        memcpy(host, rest, (size_t)(colon - rest));
        host[colon - rest] = '\0';
        if (parse_u32(colon + 1, &out->port) < 0 || out->port > 65535)
            return nd_err_set(err, -EINVAL, "bad address \"%s\": port \"%s\" is not a number from 0 to 65535", text,
                              colon + 1);
        char *h = host;
        size_t hl = strlen(h);
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
            h[hl - 1] = '\0';
            h++;
        }
        if (strcmp(h, "localhost") == 0)
            h = "127.0.0.1";
        struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons((uint16_t)out->port);
            out->sslen = sizeof *in4;
        } else if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons((uint16_t)out->port);
            out->sslen = sizeof *in6;
        } else {
            return nd_err_set(err, -EINVAL, "bad address \"%s\": host \"%s\" must be a numeric IP address or localhost",
                              text, host);
        }
        out->kind = ND_ADDR_TCP;
    } else {
        return nd_err_set(err, -EINVAL, "bad address \"%s\": " ADDR_FORMS, text);
    }
    snprintf(out->text, sizeof out->text, "%s", text);
    return 0;
}

int nd_vsock_explain(int code, const char *op, const nd_sockaddr *a, nd_err *err)
{
    const char *where = a ? a->text : "socket";
    const char *name = nd_err_name(code);
    int e = -code;
    if (a && a->kind == ND_ADDR_VSOCK) {
        if (e == ENODEV || e == EAFNOSUPPORT || e == ESOCKTNOSUPPORT || e == EPROTONOSUPPORT)
            return nd_err_set(err, code,
                              "%s %s: no vsock transport on this machine (%s): the kernel has no AF_VSOCK transport "
                              "loaded; run this on the Nitro parent instance (or load the vsock modules)",
                              op, where, name);
        if (e == ECONNRESET || e == ETIMEDOUT || e == ECONNREFUSED) {
            if (strcmp(op, "connect") == 0)
                return nd_err_set(err, code,
                                  "%s %s: nothing listens at CID %u port %u (%s): the enclave is not running, its "
                                  "server has not started yet, or it listens on another port (check the CID with "
                                  "`nitro-cli describe-enclaves`)",
                                  op, where, a->cid, a->port, name);
            if (e == ETIMEDOUT)
                return nd_err_set(err, code, "%s %s: no answer from CID %u port %u in time (%s)", op, where, a->cid,
                                  a->port, name);
            return nd_err_set(err, code, "%s %s: CID %u port %u closed the connection (%s)", op, where, a->cid,
                              a->port, name);
        }
        if (e == EADDRINUSE)
            return nd_err_set(err, code, "%s %s: port %u is already in use on this CID (%s)", op, where, a->port, name);
        if (e == EADDRNOTAVAIL)
            return nd_err_set(err, code, "%s %s: CID %u is not a CID of this machine (%s)", op, where, a->cid, name);
    } else if (a) {
        if (strcmp(op, "connect") == 0 && (e == ECONNREFUSED || e == ENOENT || e == ECONNRESET))
            return nd_err_set(err, code, "%s %s: nothing listens at %s (%s)", op, where, where, name);
        if (strcmp(op, "connect") == 0 && e == ETIMEDOUT)
            return nd_err_set(err, code, "%s %s: no answer in time: nothing accepts connections at %s (%s)", op,
                              where, where, name);
        if (e == EADDRINUSE)
            return nd_err_set(err, code, "%s %s: address already in use (%s)", op, where, name);
    }
    if (e == ETIMEDOUT)
        return nd_err_set(err, code, "%s %s: timed out (%s)", op, where, name);
    if (e == ECONNRESET || e == EPIPE)
        return nd_err_set(err, code, "%s %s: the peer closed the connection (%s)", op, where, name);
    return nd_err_set(err, code, "%s %s: %s (%s)", op, where, nd_err_str(code), name);
}

int nd_vsock_wait(int fd, short events, int timeout_ms)
{
    double deadline = timeout_ms >= 0 ? nd_vsock_now_ms() + timeout_ms : 0;
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            double d = deadline - nd_vsock_now_ms();
            left = d <= 0 ? 0 : (int)(d + 0.999);
        }
        struct pollfd p = {.fd = fd, .events = events, .revents = 0};
        int rc = poll(&p, 1, left);
        if (rc > 0)
            return p.revents;
        if (rc == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
        if (timeout_ms < 0)
            return -EINTR; /* a signal while waiting forever: let the caller look at it */
    }
}

int nd_vsock_socket(const nd_sockaddr *a, nd_err *err)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return nd_vsock_explain(-errno, "socket", a, err);
    return fd;
}

int nd_vsock_connect_start(int fd, const nd_sockaddr *a, nd_err *err)
{
    if (connect(fd, (const struct sockaddr *)&a->ss, a->sslen) == 0)
        return 0;
    if (errno == EINPROGRESS || errno == EINTR)
        return 1;
    if (errno == EAGAIN && a->kind == ND_ADDR_UNIX) /* unix: the listener's backlog is full */
        return nd_err_set(err, -EAGAIN, "connect %s: the listener's backlog is full (EAGAIN)", a->text);
    return nd_vsock_explain(-errno, "connect", a, err);
}

int nd_vsock_connect_finish(int fd, const nd_sockaddr *a, nd_err *err)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        return nd_vsock_explain(-errno, "connect", a, err);
    if (soerr)
        return nd_vsock_explain(-soerr, "connect", a, err);
    return 0;
}

int nd_vsock_connect(const nd_sockaddr *a, int timeout_ms, nd_err *err)
{
    int fd = nd_vsock_socket(a, err);
    if (fd < 0)
        return fd;
    int rc = nd_vsock_connect_start(fd, a, err);
    if (rc == 1) {
        rc = nd_vsock_wait(fd, POLLOUT, timeout_ms);
        if (rc == -ETIMEDOUT)
            rc = nd_vsock_explain(-ETIMEDOUT, "connect", a, err);
        else if (rc < 0)
            rc = nd_vsock_explain(rc, "connect", a, err);
        else
            rc = nd_vsock_connect_finish(fd, a, err);
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int nd_vsock_listen(const nd_sockaddr *a, int backlog, nd_err *err)
{
    if (a->kind == ND_ADDR_UNIX) {
        struct stat st;
        if (lstat(a->path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                return nd_err_set(err, -EEXIST, "listen %s: %s exists and is not a socket", a->text, a->path);
            unlink(a->path); /* a stale socket from an earlier run */
        }
    }
    int fd = nd_vsock_socket(a, err);
    if (fd < 0)
        return fd;
    if (a->kind == ND_ADDR_TCP) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) < 0) {
        int rc = nd_vsock_explain(-errno, "bind", a, err);
        close(fd);
        return rc;
    }
    if (listen(fd, backlog > 0 ? backlog : 64) < 0) {
        int rc = nd_vsock_explain(-errno, "listen", a, err);
        close(fd);
        return rc;
    }
    return fd;
}

int nd_vsock_accept(int lfd, int timeout_ms, nd_err *err)
{
    double deadline = timeout_ms >= 0 ? nd_vsock_now_ms() + timeout_ms : 0;
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        int e = errno;
        /* Errors that concern only the connection being accepted: skip it and keep serving. */
        if (e == ECONNABORTED || e == EPROTO || e == ECONNRESET || e == EINTR)
            continue;
        if (e != EAGAIN && e != EWOULDBLOCK)
            return nd_err_set(err, -e, "accept: %s (%s)", nd_err_str(-e), nd_err_name(-e));
        int left = -1;
        if (timeout_ms >= 0) {
            double d = deadline - nd_vsock_now_ms();
            if (d <= 0)
                return nd_err_set(err, -ETIMEDOUT, "accept: no connection within %d ms (ETIMEDOUT)", timeout_ms);
            left = (int)(d + 0.999);
        }
        int rc = nd_vsock_wait(lfd, POLLIN, left);
        if (rc == -EINTR)
            return nd_err_set(err, -EINTR, "accept: interrupted by a signal (EINTR)");
        if (rc < 0 && rc != -ETIMEDOUT)
            return nd_err_set(err, rc, "accept: %s (%s)", nd_err_str(rc), nd_err_name(rc));
    }
}

ssize_t nd_vsock_read(int fd, void *buf, size_t n, int timeout_ms, const nd_sockaddr *a, nd_err *err)
{
    for (;;) {
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return nd_vsock_explain(-errno, "read", a, err);
        int rc = nd_vsock_wait(fd, POLLIN, timeout_ms);
        if (rc < 0)
            return nd_vsock_explain(rc, "read", a, err);
    }
}

int nd_vsock_write_all(int fd, const void *buf, size_t n, int timeout_ms, const nd_sockaddr *a, nd_err *err)
{
    const char *p = buf;
    double deadline = timeout_ms >= 0 ? nd_vsock_now_ms() + timeout_ms : 0;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return nd_vsock_explain(-errno, "write", a, err);
        int left = -1;
        if (timeout_ms >= 0) {
            double d = deadline - nd_vsock_now_ms();
            left = d <= 0 ? 0 : (int)(d + 0.999);
        }
        int rc = nd_vsock_wait(fd, POLLOUT, left);
        if (rc < 0)
            return nd_vsock_explain(rc, "write", a, err);
    }
    return 0;
}

void nd_vsock_pinger_init(nd_vsock_pinger *p, int fd, const nd_sockaddr *a, int timeout_ms)
{
    memset(p, 0, sizeof *p);
    p->fd = fd;
    p->a = a;
    p->timeout_ms = timeout_ms;
}

int nd_vsock_pinger_step(nd_vsock_pinger *p, nd_err *err)
{
    static const char PING[] = "ping";
    while (p->sent < sizeof PING - 1) {
        ssize_t w = send(p->fd, PING + p->sent, sizeof PING - 1 - p->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            p->sent += (size_t)w;
        else if (w < 0 && errno == EAGAIN)
            return POLLOUT;
        else if (w < 0 && errno != EINTR)
            return nd_vsock_explain(-errno, "write", p->a, err);
    }
    for (;;) {
        ssize_t n = recv(p->fd, p->reply + p->got, ND_VSOCK_PING_MAX - p->got, MSG_DONTWAIT);
        if (n > 0) {
            p->got += (size_t)n;
            p->reply[p->got] = '\0';
            if (p->got >= ND_VSOCK_PING_MAX)
                return 0;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return POLLIN;
        /* closed or failed: a reply followed by a reset still counts (the server answered and closed abruptly) */
        if (p->got > 0)
            return 0;
        if (n == 0)
            return nd_err_set(err, -ECONNRESET, "ping %s: the server closed the connection without a reply "
                              "(ECONNRESET)", p->a->text);
        return nd_vsock_explain(-errno, "read", p->a, err);
    }
}

int nd_vsock_pinger_expired(nd_vsock_pinger *p, nd_err *err)
{
    if (p->sent < 4)
        return nd_vsock_explain(-ETIMEDOUT, "write", p->a, err);
    if (p->got > 0)
        return 0;
    return nd_err_set(err, -ETIMEDOUT, "ping %s: connected, but no reply within %d ms (ETIMEDOUT): the server "
                      "accepted the connection and never answered", p->a->text, p->timeout_ms);
}

int nd_vsock_ping(const nd_sockaddr *a, int timeout_ms, char *reply, size_t replysz, double *rtt_ms, nd_err *err)
{
    if (replysz == 0)
        return nd_err_set(err, -EINVAL, "ping: no room for the reply");
    reply[0] = '\0';
    double t0 = nd_vsock_now_ms();
    int fd = nd_vsock_connect(a, timeout_ms, err);
    if (fd < 0)
        return fd;
    nd_vsock_pinger p;
    nd_vsock_pinger_init(&p, fd, a, timeout_ms);
    int rc;
    while ((rc = nd_vsock_pinger_step(&p, err)) > 0) {
        int left = -1;
        if (timeout_ms >= 0) {
            left = timeout_ms - (int)(nd_vsock_now_ms() - t0);
            if (left < 0)
                left = 0;
        }
        int w = nd_vsock_wait(fd, (short)rc, left);
        if (w == -ETIMEDOUT) {
            rc = nd_vsock_pinger_expired(&p, err);
            break;
        }
        if (w < 0 && w != -EINTR) {
            rc = nd_vsock_explain(w, "poll", a, err);
            break;
        }
    }
    if (rc == 0)
        snprintf(reply, replysz, "%s", p.reply);
    if (rtt_ms)
        *rtt_ms = nd_vsock_now_ms() - t0;
    close(fd);
    return rc;
}
