/*
 * l_codec.c — `nd.codec`: base64, hex and digests (core/codec.c) for Lua.
 *
 *   codec.b64encode(s) -> string
 *   codec.b64decode(s) -> bytes | nil, msg, "EBADMSG"     (strict; msg names the offset)
 *   codec.hex(s) -> lowercase hex
 *   codec.unhex(s) -> bytes | nil, msg, "EBADMSG"
 *   codec.sha256(s), codec.sha384(s) -> lowercase hex digest
 */
#include "ndlua.h"
#include "nd_codec.h"

#include <stdlib.h>

static int l_b64encode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char *out;
    size_t len;
    nd_err err;
    nd_err_clear(&err);
    if (nd_b64_encode(s, n, &out, &len, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushlstring(L, out, len);
    free(out);
    return 1;
}

static int l_b64decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char *out;
    size_t len;
    nd_err err;
    nd_err_clear(&err);
    if (nd_b64_decode(s, n, &out, &len, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushlstring(L, (const char *)out, len);
    free(out);
    return 1;
}

static int l_hex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * n + 1);
    nd_hex_encode(s, n, out);
    luaL_pushresultsize(&b, 2 * n);
    return 1;
}

static int l_unhex(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n / 2 + 1);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_hex_decode(s, n, out, n / 2 + 1, &err);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    luaL_pushresultsize(&b, (size_t)rc);
    return 1;
}

static int digest(lua_State *L, const char *alg)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char md[ND_DIGEST_MAX];
    char hex[2 * ND_DIGEST_MAX + 1];
    size_t len;
    nd_err err;
    nd_err_clear(&err);
    if (nd_digest(alg, s, n, md, &len, &err) < 0)
        return ndl_fail_err(L, &err);
    nd_hex_encode(md, len, hex);
    lua_pushlstring(L, hex, 2 * len);
    return 1;
}

static int l_sha256(lua_State *L)
{
    return digest(L, "sha256");
}

static int l_sha384(lua_State *L)
{
    return digest(L, "sha384");
}

NDL_MODULE(codec)
{
    static const luaL_Reg funcs[] = {{"b64encode", l_b64encode}, {"b64decode", l_b64decode}, {"hex", l_hex},
                                     {"unhex", l_unhex},         {"sha256", l_sha256},       {"sha384", l_sha384},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
