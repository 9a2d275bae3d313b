/*
 * nd_vsock.h — one stream transport over AF_VSOCK (`vsock:CID:PORT`), unix sockets (`unix:PATH`) and TCP on
 * loopback (`tcp:HOST:PORT`, HOST numeric or `localhost`).
 *
 * Two ways to use it:
 *  - blocking, with millisecond timeouts (nd_vsock_connect, nd_vsock_accept, nd_vsock_read, nd_vsock_write_all,
 *    nd_vsock_ping): the static enclave programs use these and need nothing but libc;
 *  - loop-integrated: nd_vsock_socket + nd_vsock_connect_start / nd_vsock_connect_finish give a non-blocking fd
 *    that a libuv uv_poll watches (lua/l_vsock.c does this for `nd.vsock`).
 *
 * Every failure is explained in words in the nd_err (nd_vsock_explain): no vsock transport on this machine
 * (ENODEV/EAFNOSUPPORT), nothing listening at that CID and port (ECONNRESET/ETIMEDOUT/ECONNREFUSED), bad address
 * syntax. The negative code is kept so callers can branch on it.
 */
#ifndef ND_VSOCK_H
#define ND_VSOCK_H

#include "nd.h"

#include <sys/types.h>
#include <sys/socket.h>

/* The default port of the vsock-pingpong test enclave and of `nitrodiag vsock-ping`. */
#define ND_VSOCK_PINGPONG_PORT 5000
/* VMADDR_CID_ANY, for listening on every CID. */
#define ND_VSOCK_CID_ANY 0xFFFFFFFFu

typedef enum nd_addr_kind { ND_ADDR_VSOCK = 1, ND_ADDR_UNIX = 2, ND_ADDR_TCP = 3 } nd_addr_kind;

/* A parsed address. `text` is the canonical spelling used in messages ("vsock:16:5000"). */
typedef struct nd_sockaddr {
    nd_addr_kind kind;
    uint32_t cid;                 /* vsock */
    uint32_t port;                /* vsock and tcp */
    char path[108];               /* unix (sun_path) */
    char text[160];
    struct sockaddr_storage ss;   /* ready for connect/bind */
    socklen_t sslen;
} nd_sockaddr;

/* Parses "vsock:CID:PORT" (CID decimal, or "any" for CID_ANY; PORT decimal), "unix:PATH" or "tcp:HOST:PORT" (HOST a
 * numeric IPv4/IPv6 address — [::1] brackets allowed — or "localhost"). Returns 0, or -EINVAL with one line naming
 * the problem and the accepted forms. */
int nd_vsock_parse(const char *text, nd_sockaddr *out, nd_err *err);

/* Opens a non-blocking, close-on-exec stream socket of the address's family. Returns the fd, or a negative code
 * (ENODEV/EAFNOSUPPORT for vsock when the kernel has no vsock transport), explained. */
int nd_vsock_socket(const nd_sockaddr *a, nd_err *err);

/* Starts connecting fd (from nd_vsock_socket) to a. Returns 0 when connected at once, 1 when in progress (wait until
 * fd is writable, then call nd_vsock_connect_finish), or a negative code, explained. */
int nd_vsock_connect_start(int fd, const nd_sockaddr *a, nd_err *err);

/* Completes a connection started by nd_vsock_connect_start once fd is writable. Returns 0 or the negative code of
 * the failure (SO_ERROR), explained. */
int nd_vsock_connect_finish(int fd, const nd_sockaddr *a, nd_err *err);

/* Blocking connect with a timeout (ms; < 0 waits forever). Returns a connected non-blocking fd, or a negative code:
 * -ETIMEDOUT when the time ran out, otherwise the socket's error, explained. */
int nd_vsock_connect(const nd_sockaddr *a, int timeout_ms, nd_err *err);

/* Creates a listening socket bound to a (unix: a stale socket file is removed first; an existing non-socket file is
 * an error). Returns the non-blocking fd or a negative code, explained. */
int nd_vsock_listen(const nd_sockaddr *a, int backlog, nd_err *err);

/* Accepts one connection (timeout ms, < 0 forever). Returns a non-blocking fd, -ETIMEDOUT, -EINTR when a signal
 * interrupted the wait, or another negative code. */
int nd_vsock_accept(int lfd, int timeout_ms, nd_err *err);

/* Reads at most n bytes, waiting up to timeout_ms (< 0 forever) for the first byte. Returns the byte count (0 at
 * end of stream), -ETIMEDOUT, or a negative code (ECONNRESET…), explained for address a (may be NULL). */
ssize_t nd_vsock_read(int fd, void *buf, size_t n, int timeout_ms, const nd_sockaddr *a, nd_err *err);

/* Writes all n bytes within timeout_ms (< 0 forever). Returns 0, -ETIMEDOUT or a negative code (EPIPE…), explained.
 * SIGPIPE is never raised (MSG_NOSIGNAL). */
int nd_vsock_write_all(int fd, const void *buf, size_t n, int timeout_ms, const nd_sockaddr *a, nd_err *err);

/* Waits until fd has events (POLLIN/POLLOUT) or timeout_ms passes. Returns the revents (> 0), -ETIMEDOUT or a
 * negative code. */
int nd_vsock_wait(int fd, short events, int timeout_ms);

/* The most a ping reads back ("pong" is 4 bytes; more is kept up to this many). */
#define ND_VSOCK_PING_MAX 16

/* The ping exchange of vsock-pingpong over a connected non-blocking fd, as a state machine that never blocks: the
 * one ping, driven by nd_vsock_ping below (waiting with poll) and by nd.vsock's ping (waiting on the libuv loop).
 * Send "ping", then read the reply until the server closes or ND_VSOCK_PING_MAX bytes. */
typedef struct nd_vsock_pinger {
    int fd;                              /* not owned */
    const nd_sockaddr *a;                /* for messages */
    int timeout_ms;                      /* for the timeout message */
    size_t sent, got;
    char reply[ND_VSOCK_PING_MAX + 1];   /* NUL-terminated */
} nd_vsock_pinger;

void nd_vsock_pinger_init(nd_vsock_pinger *p, int fd, const nd_sockaddr *a, int timeout_ms);

/* Advances the exchange as far as it can without waiting. Returns 0 when done (p->reply, p->got > 0), POLLOUT or
 * POLLIN when the fd must become writable/readable first, or a negative code, explained (ECONNRESET when the server
 * closed without a reply). */
int nd_vsock_pinger_step(nd_vsock_pinger *p, nd_err *err);

/* The deadline passed: returns 0 when a partial reply arrived (it counts; the caller judges it), otherwise
 * -ETIMEDOUT, explained ("connected, but no reply within N ms" once "ping" was sent). */
int nd_vsock_pinger_expired(nd_vsock_pinger *p, nd_err *err);

/* The blocking ping: connect, then the exchange above — all within timeout_ms. Returns 0 and fills reply
 * (NUL-terminated, cut to replysz - 1) and *rtt_ms (connect to reply), or a negative code, explained. A reply other
 * than "pong" is NOT an error here: the caller judges it. */
int nd_vsock_ping(const nd_sockaddr *a, int timeout_ms, char *reply, size_t replysz, double *rtt_ms, nd_err *err);

/* Fills err with the explanation of failure `code` while doing `op` ("connect", "read", "listen", …) at address a
 * (may be NULL) and returns code. Used by every function above; public so the loop-integrated binding words its
 * failures the same way. Examples:
 *   "connect vsock:16:5000: nothing listens at CID 16 port 5000 (ECONNRESET): the enclave is not running, or its
 *    server has not started, or it listens on another port"
 *   "socket vsock:16:5000: no vsock transport on this machine (ENODEV): …" */
int nd_vsock_explain(int code, const char *op, const nd_sockaddr *a, nd_err *err);

/* Milliseconds on the monotonic clock (for deadlines and round-trip times). */
double nd_vsock_now_ms(void);

#endif
