/*
 * l_kms.c — `nd.kms`: the asynchronous KMS client (core/kms.c) for runbooks (doctor: is KMS reachable, are the
 * credentials accepted, what does the key policy answer) and tests.
 *
 *   local c <close> = kms.client{ region = "us-east-1", endpoint = nil, ca_file = nil, proxy = nil,
 *                                 connect_timeout = 2, credentials = "auto" | "env" | "imds" |
 *                                 { access_key_id = …, secret_access_key = …, session_token = … },
 *                                 imds_endpoint = nil, imds_timeout = 2 }
 *   local r, err, code = c:call("GenerateRandom", { NumberOfBytes = 8 }, { timeout = 5 })
 *   -- r.status, r.ok, r.body, r.json, r.request_id, r.error_code, r.message, r.class, r.retryable,
 *   -- r.transport_error, r.attempts, r.duration, r.new_connection
 *
 * A KMS error is a result (r.ok == false), not a Lua failure; nil, msg, code only when the call cannot start.
 */
#include "ndlua.h"
#include "nd_http.h"
#include "nd_imds.h"
#include "nd_kms.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_MT "nd.kms.client"
#define CALL_MT "nd.kms.call"
#define IMDS_MT "nd.kms.imds"

typedef struct lclient {
    nd_kms_client *c;
    nd_creds_provider *p;
    int inflight;
} lclient;

typedef struct lcall {
    nd_kms_req *req;
    lclient *owner;
    ndl_wait wait;
    int waiting, done;
    long status;
    char *body;
    size_t body_len;
    char request_id[128], error_code[128], message[1024];
    int transport_error, attempts;
    nd_kms_class cls;
    double duration;
    bool new_connection;
} lcall;

static void client_release(lclient *lc)
{
    nd_kms_client_free(lc->c);
    nd_creds_provider_free(lc->p);
    lc->c = NULL;
    lc->p = NULL;
}

/* __gc: no call can be alive any more (each call holds its client). __close: with calls still in flight (waiting in
 * other tasks) the release is left to __gc, so those calls still complete. */
static int client_gc(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (lc->inflight == 0)
        client_release(lc);
    return 0;
}

static int client_close(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    if (lc->inflight > 0)
        return luaL_error(L, "nd.kms: client:close() while %d call(s) are in flight", lc->inflight);
    client_release(lc);
    return 0;
}

static int client_tostring(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushfstring(L, "nd.kms.client (%s)", lc->c ? "open" : "closed");
    return 1;
}

static int l_client(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    nd_ctx *ctx = ndl_ctx(L);
    lclient *lc = lua_newuserdatauv(L, sizeof *lc, 0);
    memset(lc, 0, sizeof *lc);
    luaL_setmetatable(L, CLIENT_MT);
    nd_creds_opts co;
    memset(&co, 0, sizeof co);
    nd_creds st;
    memset(&st, 0, sizeof st);
    lua_getfield(L, 1, "credentials");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        const char *ak = ndl_optfield_str(L, t, "access_key_id", NULL);
        const char *sk = ndl_optfield_str(L, t, "secret_access_key", NULL);
        const char *tk = ndl_optfield_str(L, t, "session_token", NULL);
        if (!ak || !sk)
            return luaL_argerror(L, 1, "credentials need access_key_id and secret_access_key");
        snprintf(st.access_key_id, sizeof st.access_key_id, "%s", ak);
        snprintf(st.secret_access_key, sizeof st.secret_access_key, "%s", sk);
        snprintf(st.session_token, sizeof st.session_token, "%s", tk ? tk : "");
        co.source = ND_CREDS_STATIC;
        co.static_creds = &st;
    } else {
        const char *s = lua_isnil(L, -1) ? "auto" : luaL_checkstring(L, -1);
        if (strcmp(s, "auto") == 0)
            co.source = ND_CREDS_AUTO;
        else if (strcmp(s, "env") == 0)
            co.source = ND_CREDS_ENV;
        else if (strcmp(s, "imds") == 0)
            co.source = ND_CREDS_IMDS;
        else
            return luaL_argerror(L, 1, "credentials: want \"auto\", \"env\", \"imds\" or a table");
    }
    lua_pop(L, 1);
    co.imds_endpoint = ndl_optfield_str(L, 1, "imds_endpoint", NULL);
    co.imds_timeout_s = ndl_optfield_num(L, 1, "imds_timeout", 0);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_creds_provider_new(ctx, &co, &lc->p, &err);
    memset(&st, 0, sizeof st);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    nd_kms_opts ko;
    memset(&ko, 0, sizeof ko);
    ko.region = ndl_optfield_str(L, 1, "region", NULL);
    ko.endpoint = ndl_optfield_str(L, 1, "endpoint", NULL);
    ko.ca_file = ndl_optfield_str(L, 1, "ca_file", NULL);
    ko.proxy = ndl_optfield_str(L, 1, "proxy", NULL);
    ko.connect_timeout_s = ndl_optfield_num(L, 1, "connect_timeout", 0);
    ko.creds = lc->p;
    if (!ko.region)
        ko.region = getenv("AWS_REGION");
    if (!ko.region)
        ko.region = getenv("AWS_DEFAULT_REGION");
    rc = nd_kms_client_new(ctx, &ko, &lc->c, &err);
    if (rc < 0) {
        client_release(lc);
        return ndl_fail_err(L, &err);
    }
    return 1;
}

/* ---- calls ----------------------------------------------------------------------------------------------------- */

static void call_release(lua_State *L, lcall *k)
{
    if (k->req) {
        nd_kms_cancel(k->req);
        k->req = NULL;
        if (k->owner)
            k->owner->inflight--;
    }
    if (k->waiting)
        ndl_wait_cancel(L, &k->wait);
    k->waiting = 0;
    free(k->body);
    k->body = NULL;
}

static int call_gc(lua_State *L)
{
    call_release(L, luaL_checkudata(L, 1, CALL_MT));
    return 0;
}

static void on_result(void *ud, const nd_kms_result *r)
{
    lcall *k = ud;
    k->req = NULL;
    if (k->owner)
        k->owner->inflight--;
    k->done = 1;
    k->status = r->http_status;
    k->body = malloc(r->body_len + 1);
    if (k->body) {
        memcpy(k->body, r->body, r->body_len);
        k->body[r->body_len] = '\0';
        k->body_len = r->body_len;
    }
    snprintf(k->request_id, sizeof k->request_id, "%s", r->request_id);
    snprintf(k->error_code, sizeof k->error_code, "%s", r->error_code);
    snprintf(k->message, sizeof k->message, "%s", r->message);
    k->transport_error = r->transport_error;
    k->attempts = r->attempts;
    k->cls = r->cls;
    k->duration = r->duration_s;
    k->new_connection = r->new_connection;
    if (k->waiting)
        ndl_wait_done(&k->wait);
}

static int push_call_result(lua_State *L, lcall *k)
{
    lua_createtable(L, 0, 14);
    ndl_setint(L, "status", k->status);
    ndl_setbool(L, "ok", k->cls == ND_KMS_OK);
    ndl_setlstr(L, "body", k->body ? k->body : "", k->body ? k->body_len : 0);
    json_t *j = k->body ? json_loadb(k->body, k->body_len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (j) {
        ndl_push_json(L, j);
        lua_setfield(L, -2, "json");
        json_decref(j);
    }
    if (k->request_id[0])
        ndl_setstr(L, "request_id", k->request_id);
    if (k->error_code[0])
        ndl_setstr(L, "error_code", k->error_code);
    if (k->message[0])
        ndl_setstr(L, "message", k->message);
    ndl_setstr(L, "class", nd_kms_class_name(k->cls));
    ndl_setbool(L, "retryable", nd_kms_class_retryable(k->cls));
    if (k->transport_error)
        ndl_setstr(L, "transport_error", nd_err_name(k->transport_error));
    ndl_setint(L, "attempts", k->attempts);
    ndl_setnum(L, "duration", k->duration);
    ndl_setbool(L, "new_connection", k->new_connection);
    return 1;
}

static int call_k(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    lcall *k = (lcall *)kctx;
    k->waiting = 0;
    return push_call_result(L, k);
}

/* client:call(op, body_table_or_json_string [, {timeout=}]) -> result | nil, msg, code */
static int client_call(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    const char *op = luaL_checkstring(L, 2);
    if (!lc->c)
        return ndl_fail(L, -EBADF, "nd.kms: the client is closed");
    const char *json;
    size_t len;
    char *owned = NULL;
    if (lua_type(L, 3) == LUA_TSTRING) {
        json = lua_tolstring(L, 3, &len);
    } else if (lua_istable(L, 3) || lua_isnoneornil(L, 3)) {
        /* encode the table with cjson (bytes fields must already be base64 strings) */
        if (lua_isnoneornil(L, 3)) {
            json = "{}";
            len = 2;
        } else {
            lua_getglobal(L, "require");
            lua_pushstring(L, "cjson");
            lua_call(L, 1, 1);
            lua_getfield(L, -1, "encode");
            lua_pushvalue(L, 3);
            lua_call(L, 1, 1);
            json = lua_tolstring(L, -1, &len);
            owned = strndup(json, len);
            lua_pop(L, 2);
            json = owned;
        }
    } else {
        return luaL_argerror(L, 3, "want a table or a JSON string");
    }
    double timeout = 10;
    if (lua_istable(L, 4))
        timeout = ndl_optfield_num(L, 4, "timeout", 10);
    lcall *k = lua_newuserdatauv(L, sizeof *k, 1);
    memset(k, 0, sizeof *k);
    k->wait.co_ref = LUA_NOREF;
    luaL_setmetatable(L, CALL_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* the call keeps its client alive */
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_kms_call(lc->c, op, json, len, timeout, on_result, k, &k->req, &err);
    free(owned);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    k->owner = lc;
    lc->inflight++;
    lua_toclose(L, -1); /* closing the waiting coroutine cancels the call */
    k->waiting = 1;
    return ndl_await(L, &k->wait, call_k, (lua_KContext)k);
}

static int client_stats(lua_State *L)
{
    lclient *lc = luaL_checkudata(L, 1, CLIENT_MT);
    uint64_t conns = 0, reqs = 0;
    nd_kms_stats(lc->c, &conns, &reqs);
    lua_createtable(L, 0, 3);
    ndl_setint(L, "connections", (lua_Integer)conns);
    ndl_setint(L, "requests", (lua_Integer)reqs);
    ndl_setint(L, "in_flight", lc->inflight);
    return 1;
}

/* kms.normalize_error(header_value, type_value) -> code */
static int l_normalize_error(lua_State *L)
{
    char out[256];
    lua_pushstring(L, nd_kms_normalize_error(luaL_optstring(L, 1, NULL), luaL_optstring(L, 2, NULL), out, sizeof out));
    return 1;
}

/* kms.classify(http_status, error_code [, transport_error_name]) -> class, retryable */
static int l_classify(lua_State *L)
{
    long st = (long)luaL_optinteger(L, 1, 0);
    const char *code = luaL_optstring(L, 2, "");
    const char *te = luaL_optstring(L, 3, NULL);
    int terr = 0;
    if (te) {
        terr = nd_err_code(te); /* the name a failed call returned; one nd_err_name does not give counts as I/O */
        if (terr == 0)
            terr = -EIO;
    }
    nd_kms_class c = nd_kms_classify(st, code, terr);
    lua_pushstring(L, nd_kms_class_name(c));
    lua_pushboolean(L, nd_kms_class_retryable(c));
    return 2;
}

/* ---- IMDSv2 GET (for doctor's reachability checks) -------------------------------------------------------------- */

typedef struct limds {
    nd_http *http;
    nd_imds *m;
    nd_imds_req *req;
    ndl_wait wait;
    int waiting, done, status;
    char *body;
    size_t len;
    nd_err err;
} limds;

static void imds_release(lua_State *L, limds *x)
{
    nd_imds_cancel(x->req);
    x->req = NULL;
    nd_imds_free(x->m);
    x->m = NULL;
    nd_http_free(x->http);
    x->http = NULL;
    if (x->waiting)
        ndl_wait_cancel(L, &x->wait);
    x->waiting = 0;
    free(x->body);
    x->body = NULL;
}

static int imds_gc(lua_State *L)
{
    imds_release(L, luaL_checkudata(L, 1, IMDS_MT));
    return 0;
}

static void on_imds(void *ud, int status, const char *body, size_t len, const nd_err *err)
{
    limds *x = ud;
    x->req = NULL;
    x->done = 1;
    x->status = status;
    if (status == 0 && (x->body = malloc(len + 1)) != NULL) {
        memcpy(x->body, body, len);
        x->body[len] = '\0';
        x->len = len;
    } else if (err) {
        x->err = *err;
    }
    if (x->waiting)
        ndl_wait_done(&x->wait);
}

static int imds_k(lua_State *L, int st, lua_KContext kctx)
{
    (void)st;
    limds *x = (limds *)kctx;
    x->waiting = 0;
    if (x->status < 0)
        return ndl_fail_err(L, &x->err);
    lua_pushlstring(L, x->body ? x->body : "", x->body ? x->len : 0);
    return 1;
}

/* kms.imds_get(path [, {endpoint=, timeout=2}]) -> body | nil, msg, code */
static int l_imds_get(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *ep = NULL;
    double timeout = 2;
    if (lua_istable(L, 2)) {
        ep = ndl_optfield_str(L, 2, "endpoint", NULL);
        timeout = ndl_optfield_num(L, 2, "timeout", 2);
    }
    if (!ep)
        ep = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!ep || !*ep)
        ep = "http://169.254.169.254";
    limds *x = lua_newuserdatauv(L, sizeof *x, 0);
    memset(x, 0, sizeof *x);
    x->wait.co_ref = LUA_NOREF;
    luaL_setmetatable(L, IMDS_MT);
    nd_err err;
    nd_err_clear(&err);
    nd_http_opts ho = { .proxy = "", .connect_timeout_s = timeout };
    int rc = nd_http_new(ndl_ctx(L)->loop, &ho, &x->http, &err);
    if (rc == 0)
        rc = nd_imds_new(x->http, ep, timeout, 0, &x->m, &err);
    if (rc == 0)
        rc = nd_imds_get(x->m, path, on_imds, x, &x->req, &err);
    if (rc < 0) {
        imds_release(L, x);
        return ndl_fail_err(L, &err);
    }
    lua_toclose(L, -1);
    x->waiting = 1;
    return ndl_await(L, &x->wait, imds_k, (lua_KContext)x);
}

NDL_MODULE(kms)
{
    static const luaL_Reg client_methods[] = { { "call", client_call }, { "close", client_close },
                                               { "stats", client_stats }, { NULL, NULL } };
    static const luaL_Reg client_meta[] = { { "__gc", client_gc }, { "__close", client_gc },
                                            { "__tostring", client_tostring }, { NULL, NULL } };
    static const luaL_Reg call_meta[] = { { "__gc", call_gc }, { "__close", call_gc }, { NULL, NULL } };
    static const luaL_Reg none[] = { { NULL, NULL } };
    ndl_newclass(L, CLIENT_MT, client_methods, client_meta);
    ndl_newclass(L, CALL_MT, none, call_meta);
    static const luaL_Reg imds_meta[] = { { "__gc", imds_gc }, { "__close", imds_gc }, { NULL, NULL } };
    ndl_newclass(L, IMDS_MT, none, imds_meta);
    static const luaL_Reg fns[] = { { "client", l_client }, { "normalize_error", l_normalize_error },
                                    { "classify", l_classify }, { "imds_get", l_imds_get }, { NULL, NULL } };
    luaL_newlib(L, fns);
    return 1;
}
