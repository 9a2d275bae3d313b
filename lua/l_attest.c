/*
 * l_attest.c — `nd.attest`: Nitro attestation documents (core/attest.c).
 *
 *   local d, err = attest.parse(bytes)   -- {module_id, digest, timestamp, pcrs = {[0] = hex, …}, public_key, …}
 *   local doc = attest.dev_document{ public_key = spki_der, user_data = nil, nonce = nil }  -- NOT attested
 *   local v = attest.verify(bytes, { root = pem, now = unix_s, nonce = bytes })  -- offline: signature, chain, times
 *   local bytes = attest.decode(text)           -- raw CBOR, hex or base64 -> the document's bytes
 *   local hex = attest.pcr_extend(s)            -- SHA384(48 zero bytes ‖ s): PCR3 from a role ARN, PCR4 from an id
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

static void push_doc(lua_State *L, const nd_attest_doc *d)
{
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
    push_doc(L, d);
    nd_attest_free(d);
    return 1;
}

static void push_utc(lua_State *L, const char *key, int64_t t)
{
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0)
        ndl_setstr(L, key, buf);
}

/* attest.verify(bytes [, {root = pem, now = seconds, nonce = bytes}]) -> result | nil, msg, code
 * result: the parsed fields (as attest.parse) plus verified, code, reason, valid_now, now_reason, debug,
 * root_sha256, time, public_key_info = {type, bits, sha256, size}, chain = {{role, subject, issuer, not_before,
 * not_after, is_ca, sha256}, …}. A document that cannot be parsed returns nil, msg, "EBADMSG". */
static int l_verify(lua_State *L)
{
    size_t n;
    const char *data = luaL_checklstring(L, 1, &n);
    nd_attest_verify_opts o;
    memset(&o, 0, sizeof o);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        o.root_pem = ndl_optfield_str(L, 2, "root", &o.root_pem_len);
        o.now = (int64_t)ndl_optfield_num(L, 2, "now", 0);
        o.nonce = (const unsigned char *)ndl_optfield_str(L, 2, "nonce", &o.nonce_len);
    }
    nd_attest_doc *d = NULL;
    nd_err err;
    nd_err_clear(&err);
    if (nd_attest_parse(data, n, &d, &err) < 0)
        return ndl_fail_err(L, &err);
    nd_attest_verdict *v = calloc(1, sizeof *v);
    if (!v) {
        nd_attest_free(d);
        return ndl_fail(L, -ENOMEM, "attestation: out of memory");
    }
    if (nd_attest_verify(d, &o, v, &err) < 0) {
        nd_attest_free(d);
        free(v);
        return ndl_fail_err(L, &err);
    }
    push_doc(L, d);
    ndl_setbool(L, "verified", v->verified);
    if (v->code[0]) {
        ndl_setstr(L, "code", v->code);
        ndl_setstr(L, "reason", v->reason);
    }
    ndl_setbool(L, "valid_now", v->valid_now);
    if (v->now_reason[0])
        ndl_setstr(L, "now_reason", v->now_reason);
    ndl_setbool(L, "debug", v->debug);
    ndl_setstr(L, "root_sha256", v->root_sha256);
    push_utc(L, "time", (int64_t)(d->timestamp_ms / 1000));
    if (d->public_key.p) {
        lua_createtable(L, 0, 4);
        ndl_setstr(L, "type", v->pk_type);
        if (v->pk_bits > 0)
            ndl_setint(L, "bits", v->pk_bits);
        ndl_setstr(L, "sha256", v->pk_sha256);
        ndl_setint(L, "size", (lua_Integer)d->public_key.len);
        lua_setfield(L, -2, "public_key_info");
    }
    lua_createtable(L, (int)v->nchain, 0);
    for (size_t i = 0; i < v->nchain; i++) {
        const nd_attest_cert *c = &v->chain[i];
        lua_createtable(L, 0, 9);
        ndl_setstr(L, "role", c->role);
        ndl_setstr(L, "subject", c->subject);
        ndl_setstr(L, "issuer", c->issuer);
        push_utc(L, "not_before", c->not_before);
        push_utc(L, "not_after", c->not_after);
        ndl_setint(L, "not_before_unix", c->not_before);
        ndl_setint(L, "not_after_unix", c->not_after);
        ndl_setbool(L, "is_ca", c->is_ca);
        ndl_setstr(L, "sha256", c->sha256);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "chain");
    nd_attest_free(d);
    free(v);
    return 1;
}

/* attest.decode(text) -> bytes | nil, msg, code */
static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char *out = NULL;
    size_t outlen = 0;
    nd_err err;
    nd_err_clear(&err);
    if (nd_attest_decode_input(s, n, &out, &outlen, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushlstring(L, (const char *)out, outlen);
    free(out);
    return 1;
}

/* attest.pcr_extend(bytes) -> 96 hex digits */
static int l_pcr_extend(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char hex[97];
    nd_err err;
    nd_err_clear(&err);
    if (nd_attest_pcr_extend(s, n, hex, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushstring(L, hex);
    return 1;
}

/* attest.pcr_meaning(i) -> text | nil */
static int l_pcr_meaning(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 1);
    const char *m = i >= 0 && i < 32 ? nd_attest_pcr_meaning((unsigned)i) : NULL;
    if (m)
        lua_pushstring(L, m);
    else
        lua_pushnil(L);
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
    static const luaL_Reg fns[] = { { "parse", l_parse },           { "dev_document", l_dev_document },
                                    { "verify", l_verify },         { "decode", l_decode },
                                    { "pcr_extend", l_pcr_extend }, { "pcr_meaning", l_pcr_meaning },
                                    { NULL, NULL } };
    luaL_newlib(L, fns);
    lua_pushstring(L, ND_ATTEST_AWS_ROOT_SHA256);
    lua_setfield(L, -2, "AWS_ROOT_SHA256");
    lua_pushstring(L, nd_attest_aws_root_pem);
    lua_setfield(L, -2, "AWS_ROOT_PEM");
    lua_pushstring(L, ND_ATTEST_DEV_MODULE_ID);
    lua_setfield(L, -2, "DEV_MODULE_ID");
    return 1;
}
