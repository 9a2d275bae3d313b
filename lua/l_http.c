/*
 * l_http.c — `nd.http`: one HTTP(S) request from Lua over the core's client (core/http.c: libcurl multi on the
 * shared loop). For runbooks' reachability checks (doctor: IMDSv2, the KMS proxy's /metrics, clock skew from a Date
 * header). One client per Lua host, created on first use and kept for connection reuse.
 *
 *   local r, err, code = http.request{ method = "PUT", url = "http://169.254.169.254/latest/api/token",
 *                                      headers = { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600" }, timeout = 2 }
 *   -- r = { status = 200, body = "...", headers = { date = "...", ... }, duration = 0.003, new_connection = true }
 */
#include "ndlua.h"
#include "nd_http.h"

#include <stdlib.h>
#include <string.h>

#define CLIENT_MT "nd.http.client"
#define REQ_MT "nd.http.request"

/* Response headers captured for Lua (lower-case names). */
static const char *const CAPTURED[] = {"date", "content-type", "server", "x-amzn-requestid", "x-amzn-errortype",
                                       "x-aws-ec2-metadata-token-ttl-seconds", NULL};

typedef struct lclient {
    nd_http *h;
} lclient;

typedef struct lreq {
    nd_http_req *req;   /* in flight, NULL once done or cancelled */
    ndl_wait wait;
    int done, waiting;
    long status;
    int error;
    char errmsg[256];
    char *body;
    size_t body_len;
    double duration;
    int new_connection;
    char *headers[sizeof CAPTURED / sizeof CAPTURED[0]];
} lreq;

static int client_gc(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (c->h) {
        nd_http_free(c->h);
        c->h = NULL;
    }
    return 0;
}

/* The host's shared client, created on first use. */
static nd_http *client(lua_State *L, const char *ca_file)
{
    lua_getfield(L, LUA_REGISTRYINDEX, CLIENT_MT ".shared");
    lclient *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (c && c->h && !ca_file)
        return c->h;
    c = lua_newuserdatauv(L, sizeof *c, 0);
    c->h = NULL;
    luaL_setmetatable(L, CLIENT_MT);
    nd_http_opts o;
    memset(&o, 0, sizeof o);
    o.ca_file = ca_file;
    o.connect_timeout_s = 5;
    nd_err err;
    nd_err_clear(&err);
    if (nd_http_new(ndl_ctx(L)->loop, &o, &c->h, &err) < 0)
        luaL_error(L, "nd.http: %s", err.msg);
    if (!ca_file)
        lua_setfield(L, LUA_REGISTRYINDEX, CLIENT_MT ".shared");
    else
        lua_setfield(L, LUA_REGISTRYINDEX, CLIENT_MT ".ca"); /* kept alive until the next call with a CA file */
    return c->h;
}

static void on_done(void *ud, const nd_http_response *resp, nd_http_req *req)
{
    lreq *r = ud;
    r->req = NULL;
    r->done = 1;
    r->status = resp->status;
    r->error = resp->error;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", resp->errmsg);
    r->duration = resp->duration_s;
    r->new_connection = resp->new_connection;
    if (resp->body && resp->body_len) {
        r->body = malloc(resp->body_len);
        if (r->body) {
            memcpy(r->body, resp->body, resp->body_len);
            r->body_len = resp->body_len;
        }
    }
    for (int i = 0; CAPTURED[i]; i++) {
        const char *v = nd_http_response_header(req, CAPTURED[i]);
        r->headers[i] = v ? strdup(v) : NULL;
    }
    if (r->waiting)
        ndl_wait_done(&r->wait);
}

static int req_gc(lua_State *L)
{
    lreq *r = luaL_checkudata(L, 1, REQ_MT);
    if (r->req) {
        nd_http_cancel(r->req); /* no callback after this */
        r->req = NULL;
    }
    if (r->waiting)
        ndl_wait_cancel(L, &r->wait);
    r->waiting = 0;
    free(r->body);
    r->body = NULL;
    for (int i = 0; CAPTURED[i]; i++) {
        free(r->headers[i]);
        r->headers[i] = NULL;
    }
    return 0;
}

static int finish(lua_State *L, lreq *r)
{
    if (r->error)
        return ndl_fail(L, r->error, r->errmsg[0] ? r->errmsg : NULL);
    lua_createtable(L, 0, 5);
    ndl_setint(L, "status", r->status);
    ndl_setlstr(L, "body", r->body, r->body_len);
    ndl_setnum(L, "duration", r->duration);
    ndl_setbool(L, "new_connection", r->new_connection);
    lua_newtable(L);
    for (int i = 0; CAPTURED[i]; i++)
        ndl_setstr(L, CAPTURED[i], r->headers[i]);
    lua_setfield(L, -2, "headers");
    return 1;
}

static int wait_k(lua_State *L, int status, lua_KContext k)
{
    (void)status;
    lreq *r = (lreq *)k;
    r->waiting = 0;
    return finish(L, r);
}

/* request{method=, url=, headers={name=value}, body=, timeout=, ca_file=, max_response=} -> response | nil, msg, code */
static int l_request(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *url = ndl_optfield_str(L, 1, "url", NULL);
    if (!url)
        return luaL_error(L, "nd.http.request: url is required");
    const char *method = ndl_optfield_str(L, 1, "method", NULL);
    size_t body_len = 0;
    const char *body = ndl_optfield_str(L, 1, "body", &body_len);
    const char *ca_file = ndl_optfield_str(L, 1, "ca_file", NULL);

    nd_http_header hdrs[32];
    size_t nh = 0;
    lua_getfield(L, 1, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2) && nh < sizeof hdrs / sizeof hdrs[0]) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                hdrs[nh].name = lua_tostring(L, -2);
                hdrs[nh].value = luaL_tolstring(L, -1, NULL);
                lua_pop(L, 1);
                nh++;
            }
            lua_pop(L, 1);
        }
    }
    /* the headers table stays on the stack: its strings live until the request is started (they are copied) */

    nd_http_request rq;
    memset(&rq, 0, sizeof rq);
    rq.method = method ? method : "GET";
    rq.url = url;
    rq.headers = hdrs;
    rq.nheaders = nh;
    rq.body = body;
    rq.body_len = body_len;
    rq.timeout_s = ndl_optfield_num(L, 1, "timeout", 10);
    rq.max_response = (size_t)ndl_optfield_num(L, 1, "max_response", 0);

    nd_http *h = client(L, ca_file);
    lreq *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->wait.co_ref = LUA_NOREF;
    luaL_setmetatable(L, REQ_MT);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_http_start(h, &rq, on_done, r, &r->req, &err);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    lua_toclose(L, -1); /* closing the task cancels the request */
    if (r->done)
        return finish(L, r);
    r->waiting = 1;
    return ndl_await(L, &r->wait, wait_k, (lua_KContext)r);
}

NDL_MODULE(http)
{
    static const luaL_Reg cmeta[] = {{"__gc", client_gc}, {"__close", client_gc}, {NULL, NULL}};
    ndl_newclass(L, CLIENT_MT, NULL, cmeta);
    static const luaL_Reg rmeta[] = {{"__gc", req_gc}, {"__close", req_gc}, {NULL, NULL}};
    ndl_newclass(L, REQ_MT, NULL, rmeta);
    static const luaL_Reg funcs[] = {{"request", l_request}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
