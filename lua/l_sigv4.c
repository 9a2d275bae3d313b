/*
 * l_sigv4.c — `nd.sigv4`: AWS Signature Version 4 (core/sigv4.c) for runbooks and tests.
 *
 *   local s = sigv4.sign{ method = "POST", host = "kms.us-east-1.amazonaws.com", path = "/",
 *                         headers = { ["Content-Type"] = "application/x-amz-json-1.1", ["X-Amz-Target"] = "..." },
 *                         body = "{}", access_key_id = "AK…", secret_access_key = "…", session_token = nil,
 *                         region = "us-east-1", service = "kms", date = "20150830T123600Z" }
 *   -- s.authorization, s.signature, s.canonical_request, s.string_to_sign, s.signed_headers, s.scope,
 *   -- s.payload_hash, s.headers (the headers to add: X-Amz-Date, X-Amz-Security-Token)
 */
#include "ndlua.h"
#include "nd_sigv4.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int l_sign(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    nd_sigv4_request r;
    memset(&r, 0, sizeof r);
    r.method = ndl_optfield_str(L, 1, "method", NULL);
    r.host = ndl_optfield_str(L, 1, "host", NULL);
    r.path = ndl_optfield_str(L, 1, "path", NULL);
    r.query = ndl_optfield_str(L, 1, "query", NULL);
    r.body = ndl_optfield_str(L, 1, "body", &r.body_len);
    nd_sigv4_key k = { ndl_optfield_str(L, 1, "access_key_id", NULL), ndl_optfield_str(L, 1, "secret_access_key", NULL),
                       ndl_optfield_str(L, 1, "session_token", NULL) };
    const char *region = ndl_optfield_str(L, 1, "region", NULL);
    const char *service = ndl_optfield_str(L, 1, "service", NULL);
    const char *date = ndl_optfield_str(L, 1, "date", NULL);
    int sign_token = ndl_optfield_bool(L, 1, "sign_token", 1);
    char now[17];
    if (!date)
        date = nd_sigv4_amz_date((int64_t)time(NULL), now);
    /* headers: { name = value } or { {name, value}, … } (the list form allows repeated names) */
    lua_getfield(L, 1, "headers");
    int ht = lua_gettop(L);
    size_t n = 0;
    if (lua_istable(L, ht)) {
        lua_pushnil(L);
        while (lua_next(L, ht)) {
            n++;
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, ht)) {
        return luaL_argerror(L, 1, "headers must be a table");
    }
    nd_sigv4_header *h = lua_newuserdatauv(L, sizeof *h * (n + 1), 0);
    size_t i = 0;
    if (n) {
        lua_pushnil(L);
        while (lua_next(L, ht)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
                h[i].name = lua_tostring(L, -2);
                h[i].value = lua_tostring(L, -1);
                i++;
            } else if (lua_istable(L, -1)) {
                lua_rawgeti(L, -1, 1);
                lua_rawgeti(L, -2, 2);
                h[i].name = lua_tostring(L, -2);
                h[i].value = lua_tostring(L, -1);
                lua_pop(L, 2); /* the strings stay alive in the table */
                if (!h[i].name || !h[i].value)
                    return luaL_argerror(L, 1, "a header pair must be {name, value}");
                i++;
            } else {
                return luaL_argerror(L, 1, "headers: want name = value or {name, value}");
            }
            lua_pop(L, 1);
        }
    }
    r.headers = h;
    r.nheaders = i;
    nd_sigv4_result s;
    nd_err err;
    nd_err_clear(&err);
    if (nd_sigv4_sign(&r, &k, region, service, date, sign_token, &s, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 8);
    ndl_setstr(L, "authorization", s.authorization);
    ndl_setstr(L, "signature", s.signature);
    ndl_setstr(L, "canonical_request", s.canonical_request);
    ndl_setstr(L, "string_to_sign", s.string_to_sign);
    ndl_setstr(L, "signed_headers", s.signed_headers);
    ndl_setstr(L, "scope", s.scope);
    ndl_setstr(L, "payload_hash", s.payload_hash);
    lua_createtable(L, 0, 3);
    for (size_t j = 0; j < s.nadd; j++)
        ndl_setstr(L, s.add[j].name, s.add[j].value);
    ndl_setstr(L, "Authorization", s.authorization);
    lua_setfield(L, -2, "headers");
    nd_sigv4_result_free(&s);
    return 1;
}

NDL_MODULE(sigv4)
{
    static const luaL_Reg fns[] = { { "sign", l_sign }, { NULL, NULL } };
    luaL_newlib(L, fns);
    return 1;
}
