/*
 * l_attest.c — `nd.attest`: Nitro attestation documents (core/attest.c).
 *
 *   local d, err = attest.parse(bytes)   -- {module_id, digest, timestamp, pcrs = {[0] = hex, …}, public_key, …}
 *   local doc = attest.dev_document{ public_key = spki_der, user_data = nil, nonce = nil }  -- NOT attested
 */
#include "ndlua.h"
#include "nd_attest.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void set_bytes(lua_State *L, const char *k, const nd_attest_bytes *b)
{
    if (b->p)
        ndl_setlstr(L, k, (const char *)b->p, b->len);
}

static int l_parse(lua_State *L)
{
    size_t n;
    const char *data = luaL_checklstring(L, 1, &n);
    nd_attest_doc *d = NULL;
    nd_err err;
    nd_err_clear(&err);
    if (nd_attest_parse(data, n, &d, &err) < 0)
        return ndl_fail_err(L, &err);
    static const char hex[] = "0123456789abcdef";
    lua_createtable(L, 0, 12);
    ndl_setstr(L, "module_id", d->module_id);
    ndl_setstr(L, "digest", d->digest);
    ndl_setint(L, "timestamp", (lua_Integer)d->timestamp_ms);
    ndl_setint(L, "alg", (lua_Integer)d->alg);
    ndl_setbool(L, "dev", d->dev);
    lua_createtable(L, 0, (int)d->npcrs);
    for (size_t i = 0; i < d->npcrs; i++) {
        char h[129];
        for (size_t j = 0; j < d->pcrs[i].len; j++) {
            h[2 * j] = hex[d->pcrs[i].value[j] >> 4];
            h[2 * j + 1] = hex[d->pcrs[i].value[j] & 15];
        }
        lua_pushlstring(L, h, 2 * d->pcrs[i].len);
        lua_rawseti(L, -2, (lua_Integer)d->pcrs[i].index);
    }
    lua_setfield(L, -2, "pcrs");
    set_bytes(L, "certificate", &d->certificate);
    lua_createtable(L, (int)d->ncabundle, 0);
    for (size_t i = 0; i < d->ncabundle; i++) {
        lua_pushlstring(L, (const char *)d->cabundle[i].p, d->cabundle[i].len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "cabundle");
    set_bytes(L, "public_key", &d->public_key);
    set_bytes(L, "user_data", &d->user_data);
    set_bytes(L, "nonce", &d->nonce);
    set_bytes(L, "signature", &d->signature);
    nd_attest_free(d);
    return 1;
}

static int l_dev_document(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t pl = 0, ul = 0, nl = 0;
    const char *pk = ndl_optfield_str(L, 1, "public_key", &pl);
    const char *ud = ndl_optfield_str(L, 1, "user_data", &ul);
    const char *nonce = ndl_optfield_str(L, 1, "nonce", &nl);
    double ts = ndl_optfield_num(L, 1, "timestamp", (double)time(NULL) * 1000.0);
    unsigned char *out = NULL;
    size_t outlen = 0;
    nd_err err;
    nd_err_clear(&err);
    if (nd_attest_build_dev(pk, pl, ud, ul, nonce, nl, (uint64_t)ts, &out, &outlen, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushlstring(L, (const char *)out, outlen);
    free(out);
    return 1;
}

NDL_MODULE(attest)
{
    static const luaL_Reg fns[] = { { "parse", l_parse }, { "dev_document", l_dev_document }, { NULL, NULL } };
    luaL_newlib(L, fns);
    lua_pushstring(L, ND_ATTEST_DEV_MODULE_ID);
    lua_setfield(L, -2, "DEV_MODULE_ID");
    return 1;
}
