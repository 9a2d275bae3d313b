/*
 * l_vsock.c — `nd.vsock`: the stream transport of core/vsock.c (vsock:CID:PORT, unix:PATH, tcp:HOST:PORT) on the
 * shared libuv loop. Sockets are the core's non-blocking fds watched with uv_poll (one path for all three families,
 * AF_VSOCK included, which libuv has no handle type for) plus a uv_timer for the timeout; every wait goes through
 * ndl_await, with the request object held as a to-be-closed value, so cancelling the waiting task stops the watch.
 *
 *   local c <close> = assert(vsock.connect("vsock:16:5000", { timeout = 5 }))
 *   c:write("ping"); local reply = c:read(16, { timeout = 5 })
 *   local r, err = vsock.ping("vsock:16:5000", { timeout = 5 })   -- { reply = "pong", rtt_ms = 0.8, address = … }
 *
 * Failures are `nil, message, code` with the core's wording ("nothing listens at CID 16 port 5000 (ECONNRESET)…",
 * "no vsock transport on this machine (ENODEV)…", "bad address …").
 */
#include "ndlua.h"
#include "nd_vsock.h"

#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* What ping() writes; the peer (enclave/pingpong.c) answers "pong". */
static const char PING[] = "ping";

#define SOCK_MT "nd.vsock.socket"
#define REQ_MT "nd.vsock.request"
#define DEFAULT_TIMEOUT_S 5.0
#define READ_DEFAULT_TIMEOUT_S 30.0
#define PING_MAX 16

struct lreq;

/* The uv handles of one socket; malloc'd because libuv frees handles asynchronously (after uv_close). */
typedef struct watch {
    uv_poll_t poll;
    uv_timer_t timer;
    int pending_close;
    struct lreq *req;      /* the request waiting now, or NULL */
    int cancel_on_close;   /* the socket was closed while req waited: complete it with ECANCELED first */
} watch;

typedef struct lsock {
    int fd;
    int listener;
    watch *w;
    nd_sockaddr addr;
} lsock;

enum { OP_CONNECT, OP_ACCEPT, OP_READ, OP_WRITE, OP_PING };

typedef struct lreq {
    ndl_wait wait;
    lsock *s;
    int op, phase, status, waiting;
    double deadline, t0;     /* monotonic ms; deadline 0 = none */
    int timeout_ms;
    int sock_idx;            /* stack index of the socket userdata (the frame survives the yields) */
    const char *wdata;       /* write: anchored at a stack index */
    size_t wlen, woff;
    char *rbuf;
    size_t rcap, rgot;
    struct watch *cancel_w;  /* set while a closed socket's watch is about to wake this request */
} lreq;

/* ---- watching fds ---------------------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    watch *w = h->data;
    if (--w->pending_close == 0)
        free(w);
}

static void close_watch(watch *w)
{
    w->pending_close = 2;
    uv_close((uv_handle_t *)&w->poll, on_handle_closed);
    uv_close((uv_handle_t *)&w->timer, on_handle_closed);
}

static void disarm(watch *w)
{
    uv_poll_stop(&w->poll);
    uv_timer_stop(&w->timer);
}

static void complete(watch *w, int status)
{
    lreq *r = w->req;
    disarm(w);
    w->req = NULL;
    if (!r)
        return;
    r->status = status;
    r->waiting = 0;
    ndl_wait_done(&r->wait); /* may resume the task, which may close everything: touch nothing after this */
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    /* libuv reports POLLERR as status UV_EBADF: the socket has a pending error (a failed connect, a reset). Treat it
     * as "ready": the next syscall (SO_ERROR, recv, send) returns the real error, which is what must be explained. */
    (void)status;
    (void)events;
    complete(h->data, 0);
}

static void on_timer(uv_timer_t *h)
{
    complete(h->data, -ETIMEDOUT);
}

static void on_cancel_timer(uv_timer_t *h)
{
    watch *w = h->data;
    lreq *r = w->req;
    w->req = NULL;
    close_watch(w);
    if (r) {
        r->cancel_w = NULL;
        r->status = -ECANCELED;
        r->waiting = 0;
        ndl_wait_done(&r->wait);
    }
}

static int ensure_watch(lua_State *L, lsock *s)
{
    if (s->w)
        return 0;
    watch *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    uv_loop_t *loop = ndl_ctx(L)->loop;
    int rc = uv_poll_init(loop, &w->poll, s->fd);
    if (rc < 0) {
        free(w);
        return rc;
    }
    uv_timer_init(loop, &w->timer);
    w->poll.data = w;
    w->timer.data = w;
    s->w = w;
    return 0;
}

static void sock_close(lsock *s)
{
    if (s->w) {
        watch *w = s->w;
        s->w = NULL;
        if (w->req && !w->cancel_on_close) {
            /* Another task waits on this socket: wake it (from the loop, not from inside this call). */
            uv_poll_stop(&w->poll);
            w->req->s = NULL;
            w->req->cancel_w = w;
            w->cancel_on_close = 1;
            uv_timer_start(&w->timer, on_cancel_timer, 0, 0);
        } else if (!w->cancel_on_close) {
            close_watch(w);
        }
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* ---- requests -------------------------------------------------------------------------------------------------- */

static int req_gc(lua_State *L)
{
    lreq *r = luaL_checkudata(L, 1, REQ_MT);
    if (r->waiting) {
        if (r->s && r->s->w && r->s->w->req == r) {
            disarm(r->s->w);
            r->s->w->req = NULL;
        }
        if (r->cancel_w) {
            r->cancel_w->req = NULL; /* its timer still runs and closes the handles, without waking anyone */
            r->cancel_w = NULL;
        }
        ndl_wait_cancel(L, &r->wait);
        r->waiting = 0;
    }
    free(r->rbuf);
    r->rbuf = NULL;
    return 0;
}

static lreq *new_req(lua_State *L, lsock *s, int sock_idx, int op, double timeout_s)
{
    lreq *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->wait.co_ref = LUA_NOREF;
    luaL_setmetatable(L, REQ_MT);
    lua_toclose(L, -1);
    r->s = s;
    r->sock_idx = sock_idx;
    r->op = op;
    r->t0 = nd_vsock_now_ms();
    r->timeout_ms = timeout_s > 0 ? (int)(timeout_s * 1000 + 0.5) : -1;
    r->deadline = timeout_s > 0 ? r->t0 + timeout_s * 1000 : 0;
    return r;
}

static int step(lua_State *L, lreq *r);

static int req_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    return step(L, (lreq *)ctx);
}

/* Waits until the socket is readable/writable (or the deadline), then runs step again. */
static int wait_then_step(lua_State *L, lreq *r, int uv_events)
{
    r->status = 0;
    if (!r->s || r->s->fd < 0) {
        r->status = -ECANCELED;
        return step(L, r);
    }
    double left = -1;
    if (r->deadline > 0) {
        left = r->deadline - nd_vsock_now_ms();
        if (left <= 0) {
            r->status = -ETIMEDOUT;
            return step(L, r);
        }
    }
    int rc = ensure_watch(L, r->s);
    if (rc == 0)
        rc = uv_poll_start(&r->s->w->poll, uv_events, on_poll);
    if (rc < 0) {
        r->status = rc;
        return step(L, r);
    }
    if (left > 0)
        uv_timer_start(&r->s->w->timer, on_timer, (uint64_t)(left + 0.999), 0);
    r->s->w->req = r;
    r->waiting = 1;
    return ndl_await(L, &r->wait, req_k, (lua_KContext)r);
}

static int fail_close(lua_State *L, lreq *r, int code, const char *op)
{
    nd_err err;
    nd_vsock_explain(code, op, r->s ? &r->s->addr : NULL, &err);
    if (r->s)
        sock_close(r->s);
    return ndl_fail_err(L, &err);
}

static int step_ping_done(lua_State *L, lreq *r)
{
    double rtt = nd_vsock_now_ms() - r->t0;
    char text[sizeof r->s->addr.text];
    snprintf(text, sizeof text, "%s", r->s->addr.text);
    sock_close(r->s);
    lua_createtable(L, 0, 3);
    ndl_setlstr(L, "reply", r->rbuf, r->rgot);
    ndl_setnum(L, "rtt_ms", rtt);
    ndl_setstr(L, "address", text);
    return 1;
}

static int step(lua_State *L, lreq *r)
{
    lsock *s = r->s;
    if (r->status == -ECANCELED || !s || s->fd < 0)
        return ndl_fail(L, -ECANCELED, "the socket was closed while waiting");
    nd_err err;
    switch (r->op) {
    case OP_CONNECT:
    case OP_PING:
        if (r->phase == 0) { /* connecting */
            if (r->status < 0)
                return fail_close(L, r, r->status, "connect");
            int rc = nd_vsock_connect_finish(s->fd, &s->addr, &err);
            if (rc < 0) {
                sock_close(s);
                return ndl_fail_err(L, &err);
            }
            if (r->op == OP_CONNECT) {
                lua_pushvalue(L, r->sock_idx);
                return 1;
            }
            r->phase = 1;
        }
        if (r->phase == 1) { /* sending "ping" */
            if (r->status < 0)
                return fail_close(L, r, r->status, "write");
            ssize_t w = send(s->fd, &PING[r->woff], sizeof PING - 1 - r->woff, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return fail_close(L, r, -errno, "write");
            if (w > 0)
                r->woff += (size_t)w;
            if (r->woff < sizeof PING - 1)
                return wait_then_step(L, r, UV_WRITABLE);
            r->phase = 2;
            r->status = 0;
        }
        /* phase 2: reading the reply until the server closes or PING_MAX bytes */
        if (r->status == -ETIMEDOUT) {
            if (r->rgot > 0)
                return step_ping_done(L, r);
            nd_err_set(&err, -ETIMEDOUT, "ping %s: connected, but no reply within %d ms (ETIMEDOUT): the server "
                       "accepted the connection and never answered", s->addr.text, r->timeout_ms);
            sock_close(s);
            return ndl_fail_err(L, &err);
        }
        for (;;) {
            ssize_t n = recv(s->fd, r->rbuf + r->rgot, r->rcap - r->rgot, MSG_DONTWAIT);
            if (n > 0) {
                r->rgot += (size_t)n;
                if (r->rgot >= r->rcap)
                    return step_ping_done(L, r);
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (r->rgot > 0)
                    return step_ping_done(L, r);
                if (n == 0) {
                    nd_err_set(&err, -ECONNRESET, "ping %s: the server closed the connection without a reply "
                               "(ECONNRESET)", s->addr.text);
                    sock_close(s);
                    return ndl_fail_err(L, &err);
                }
                return fail_close(L, r, -errno, "read");
            }
            if (errno == EAGAIN)
                return wait_then_step(L, r, UV_READABLE);
        }
    case OP_ACCEPT:
        if (r->status == -ETIMEDOUT)
            return ndl_fail(L, -ETIMEDOUT, "accept: no connection in time (ETIMEDOUT)");
        if (r->status < 0) {
            nd_err_set(&err, r->status, "accept %s: %s", s->addr.text, nd_err_str(r->status));
            return ndl_fail_err(L, &err);
        }
        {
            int fd = nd_vsock_accept(s->fd, 0, &err);
            if (fd == -ETIMEDOUT)
                return wait_then_step(L, r, UV_READABLE);
            if (fd < 0)
                return ndl_fail_err(L, &err);
            lsock *c = lua_newuserdatauv(L, sizeof *c, 0);
            memset(c, 0, sizeof *c);
            c->fd = fd;
            c->addr = s->addr;
            luaL_setmetatable(L, SOCK_MT);
            return 1;
        }
    case OP_READ:
        if (r->status == -ETIMEDOUT)
            return ndl_fail(L, -ETIMEDOUT, "read: no data in time (ETIMEDOUT)");
        if (r->status < 0) {
            nd_vsock_explain(r->status, "read", &s->addr, &err);
            return ndl_fail_err(L, &err);
        }
        for (;;) {
            ssize_t n = recv(s->fd, r->rbuf, r->rcap, MSG_DONTWAIT);
            if (n > 0) {
                lua_pushlstring(L, r->rbuf, (size_t)n);
                return 1;
            }
            if (n == 0)
                return ndl_fail(L, UV_EOF, "end of stream: the peer closed the connection");
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return wait_then_step(L, r, UV_READABLE);
            nd_vsock_explain(-errno, "read", &s->addr, &err);
            return ndl_fail_err(L, &err);
        }
    case OP_WRITE:
        if (r->status == -ETIMEDOUT)
            return ndl_fail(L, -ETIMEDOUT, "write: the peer did not take the data in time (ETIMEDOUT)");
        if (r->status < 0) {
            nd_vsock_explain(r->status, "write", &s->addr, &err);
            return ndl_fail_err(L, &err);
        }
        while (r->woff < r->wlen) {
            ssize_t n = send(s->fd, r->wdata + r->woff, r->wlen - r->woff, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                r->woff += (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN)
                return wait_then_step(L, r, UV_WRITABLE);
            nd_vsock_explain(n < 0 ? -errno : -EPIPE, "write", &s->addr, &err);
            return ndl_fail_err(L, &err);
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    return luaL_error(L, "nd.vsock: internal error (op %d)", r->op);
}

/* ---- module functions ------------------------------------------------------------------------------------------ */

static double opt_timeout(lua_State *L, int idx, double def)
{
    if (lua_isnoneornil(L, idx))
        return def;
    luaL_checktype(L, idx, LUA_TTABLE);
    return ndl_optfield_num(L, idx, "timeout", def);
}

static int must_wait(lua_State *L)
{
    if (!ndl_can_wait(L))
        return luaL_error(L, "nd.vsock: cannot wait here (call it from a task or the top of a runbook)");
    return 0;
}

/* The simulated host's vsock router (nd.sim.vsock), kept in the registry: under a simulated host every vsock
 * address goes through it, whatever the Lua module table holds. */
static const char SIM_ROUTER_KEY = 'r';

/* vsock.set_sim_router(fn | nil): fn(addr) -> "unix:…" | nil, msg, code. Returns true. */
static int l_set_sim_router(lua_State *L)
{
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &SIM_ROUTER_KEY);
    lua_pushboolean(L, 1);
    return 1;
}

/* Under a simulated host: a vsock address becomes the router's unix address (a->text keeps the vsock address, so
 * results and messages name it). Returns 0, or -1 after pushing nil, msg, code. */
static int sim_route(lua_State *L, const char *text, nd_sockaddr *a)
{
    if (a->kind != ND_ADDR_VSOCK || !ndl_ctx(L)->sim_root[0])
        return 0;
    char shown[sizeof a->text];
    snprintf(shown, sizeof shown, "%s", a->text);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &SIM_ROUTER_KEY);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_pushfstring(L, "connect %s: the simulated host has no vsock router (nothing listens) (ECONNRESET)", text);
        lua_pushstring(L, "ECONNRESET");
        return -1;
    }
    lua_pushstring(L, text);
    lua_call(L, 1, 3);
    if (!lua_isstring(L, -3))
        return -1; /* the router's nil, msg, code */
    nd_err err;
    if (nd_vsock_parse(lua_tostring(L, -3), a, &err) < 0) {
        lua_pop(L, 3);
        ndl_fail_err(L, &err);
        return -1;
    }
    lua_pop(L, 3);
    snprintf(a->text, sizeof a->text, "%s", shown);
    return 0;
}

/* Parses addr and opens a socket that starts connecting; pushes the socket userdata. Returns it or NULL after
 * pushing nil, msg, code (3 values). */
static lsock *start_connect(lua_State *L, const char *text, int *rc_out)
{
    nd_sockaddr a;
    nd_err err;
    *rc_out = nd_vsock_parse(text, &a, &err);
    if (*rc_out < 0) {
        ndl_fail_err(L, &err);
        return NULL;
    }
    if (sim_route(L, text, &a) < 0) {
        *rc_out = -ECONNRESET;
        return NULL;
    }
    lsock *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->addr = a;
    luaL_setmetatable(L, SOCK_MT);
    int fd = nd_vsock_socket(&a, &err);
    if (fd < 0) {
        *rc_out = fd;
        ndl_fail_err(L, &err);
        return NULL;
    }
    s->fd = fd;
    *rc_out = nd_vsock_connect_start(fd, &a, &err);
    if (*rc_out < 0) {
        sock_close(s);
        ndl_fail_err(L, &err);
        return NULL;
    }
    return s;
}

/* vsock.connect(addr [, {timeout = 5}]) -> conn | nil, msg, code */
static int l_connect(lua_State *L)
{
    const char *text = luaL_checkstring(L, 1);
    double timeout = opt_timeout(L, 2, DEFAULT_TIMEOUT_S);
    lua_settop(L, 2);
    must_wait(L);
    int rc;
    lsock *s = start_connect(L, text, &rc);
    if (!s)
        return 3;
    int idx = lua_gettop(L);
    if (rc == 0)
        return 1;
    lreq *r = new_req(L, s, idx, OP_CONNECT, timeout);
    return wait_then_step(L, r, UV_WRITABLE);
}

/* vsock.ping(addr [, {timeout = 5}]) -> {reply, rtt_ms, address} | nil, msg, code */
static int l_ping(lua_State *L)
{
    const char *text = luaL_checkstring(L, 1);
    double timeout = opt_timeout(L, 2, DEFAULT_TIMEOUT_S);
    lua_settop(L, 2);
    must_wait(L);
    int rc;
    lsock *s = start_connect(L, text, &rc);
    if (!s)
        return 3;
    int idx = lua_gettop(L);
    lreq *r = new_req(L, s, idx, OP_PING, timeout);
    r->rbuf = malloc(PING_MAX);
    r->rcap = PING_MAX;
    if (!r->rbuf)
        return luaL_error(L, "nd.vsock: out of memory");
    if (rc == 0) {
        r->phase = 1;
        return step(L, r);
    }
    return wait_then_step(L, r, UV_WRITABLE);
}

/* vsock.listen(addr [, {backlog = 64}]) -> listener | nil, msg, code */
static int l_listen(lua_State *L)
{
    const char *text = luaL_checkstring(L, 1);
    int backlog = 64;
    if (lua_istable(L, 2))
        backlog = (int)ndl_optfield_num(L, 2, "backlog", 64);
    nd_sockaddr a;
    nd_err err;
    if (nd_vsock_parse(text, &a, &err) < 0)
        return ndl_fail_err(L, &err);
    int fd = nd_vsock_listen(&a, backlog, &err);
    if (fd < 0)
        return ndl_fail_err(L, &err);
    lsock *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->listener = 1;
    s->addr = a;
    luaL_setmetatable(L, SOCK_MT);
    /* Record the address actually bound (tcp port 0 → the port the kernel chose). */
    if (a.kind == ND_ADDR_TCP && a.port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
            unsigned port = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                                    : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
            char host[64];
            const char *colon = strrchr(a.text, ':');
            snprintf(host, sizeof host, "%.*s", (int)(colon - a.text), a.text);
            char t[sizeof a.text];
            snprintf(t, sizeof t, "%s:%u", host, port);
            nd_vsock_parse(t, &s->addr, NULL);
        }
    }
    return 1;
}

/* vsock.parse(addr) -> {kind, cid, port, path, text} | nil, msg, code */
static int l_parse(lua_State *L)
{
    nd_sockaddr a;
    nd_err err;
    if (nd_vsock_parse(luaL_checkstring(L, 1), &a, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 5);
    ndl_setstr(L, "kind", a.kind == ND_ADDR_VSOCK ? "vsock" : a.kind == ND_ADDR_UNIX ? "unix" : "tcp");
    if (a.kind == ND_ADDR_VSOCK)
        ndl_setint(L, "cid", a.cid);
    if (a.kind != ND_ADDR_UNIX)
        ndl_setint(L, "port", a.port);
    if (a.kind == ND_ADDR_UNIX)
        ndl_setstr(L, "path", a.path);
    ndl_setstr(L, "text", a.text);
    return 1;
}

/* ---- socket methods -------------------------------------------------------------------------------------------- */

static lsock *check_open(lua_State *L, int want_listener)
{
    lsock *s = luaL_checkudata(L, 1, SOCK_MT);
    if (s->fd < 0)
        luaL_error(L, "nd.vsock: the socket is closed");
    if (want_listener >= 0 && s->listener != want_listener)
        luaL_error(L, want_listener ? "nd.vsock: accept() needs a listener" : "nd.vsock: a listener cannot read or write");
    if (s->w && s->w->req)
        luaL_error(L, "nd.vsock: another task is already waiting on this socket");
    return s;
}

/* listener:accept([{timeout = nil}]) -> conn | nil, msg, code   (no timeout: waits until a client comes) */
static int s_accept(lua_State *L)
{
    lsock *s = check_open(L, 1);
    double timeout = opt_timeout(L, 2, 0);
    lua_settop(L, 2);
    must_wait(L);
    lreq *r = new_req(L, s, 1, OP_ACCEPT, timeout);
    return step(L, r);
}

/* conn:read(n [, {timeout = 30}]) -> data (1..n bytes) | nil, msg, code ("EOF" at end of stream) */
static int s_read(lua_State *L)
{
    lsock *s = check_open(L, 0);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n > 0 && n <= (1 << 24), 2, "read size must be 1..16 MiB");
    double timeout = opt_timeout(L, 3, READ_DEFAULT_TIMEOUT_S);
    lua_settop(L, 3);
    must_wait(L);
    lreq *r = new_req(L, s, 1, OP_READ, timeout);
    r->rbuf = malloc((size_t)n);
    if (!r->rbuf)
        return luaL_error(L, "nd.vsock: out of memory");
    r->rcap = (size_t)n;
    return step(L, r);
}

/* conn:write(data [, {timeout = 30}]) -> true | nil, msg, code */
static int s_write(lua_State *L)
{
    lsock *s = check_open(L, 0);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    double timeout = opt_timeout(L, 3, READ_DEFAULT_TIMEOUT_S);
    lua_settop(L, 3);
    must_wait(L);
    lreq *r = new_req(L, s, 1, OP_WRITE, timeout);
    r->wdata = data; /* anchored: argument 2 stays on this frame's stack */
    r->wlen = len;
    return step(L, r);
}

static int s_close(lua_State *L)
{
    sock_close(luaL_checkudata(L, 1, SOCK_MT));
    return 0;
}

static int s_address(lua_State *L)
{
    lsock *s = luaL_checkudata(L, 1, SOCK_MT);
    lua_pushstring(L, s->addr.text);
    return 1;
}

static int s_tostring(lua_State *L)
{
    lsock *s = luaL_checkudata(L, 1, SOCK_MT);
    lua_pushfstring(L, "nd.vsock.%s(%s%s)", s->listener ? "listener" : "conn", s->addr.text,
                    s->fd < 0 ? ", closed" : "");
    return 1;
}

NDL_MODULE(vsock)
{
    static const luaL_Reg methods[] = {{"accept", s_accept}, {"read", s_read},       {"write", s_write},
                                       {"close", s_close},   {"address", s_address}, {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", s_close}, {"__close", s_close}, {"__tostring", s_tostring}, {NULL, NULL}};
    ndl_newclass(L, SOCK_MT, methods, meta);
    static const luaL_Reg req_meta[] = {{"__gc", req_gc}, {"__close", req_gc}, {NULL, NULL}};
    ndl_newclass(L, REQ_MT, NULL, req_meta);
    static const luaL_Reg funcs[] = {{"connect", l_connect}, {"listen", l_listen}, {"ping", l_ping},
                                     {"parse", l_parse},     {"set_sim_router", l_set_sim_router}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    lua_pushinteger(L, ND_VSOCK_PINGPONG_PORT);
    lua_setfield(L, -2, "PINGPONG_PORT");
    return 1;
}
