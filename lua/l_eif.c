/*
 * l_eif.c — `nd.eif`: EIF files (core/eif.c) for Lua.
 *
 *   local info, err, code = eif.read(path)     -- describe-eif fields + sections, crc, metadata, min_memory_mib
 *   local text = eif.describe(path)            -- exactly what `nitro-cli describe-eif` prints (JSON text)
 *   local info = eif.write(path, { kernel = k, cmdline = c, ramdisks = { r1, r2 }, metadata = { … } })
 *   eif.min_memory_mib(path_or_size)           -- ceil(size / MiB) * 4
 *   eif.pcr8(cert_pem_or_der)                  -- PCR8 of a signing certificate (nitro-cli pcr --signing-certificate)
 */
#include "ndlua.h"
#include "nd_eif.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void push_info(lua_State *L, const nd_eif_info *in, const char *path)
{
    lua_createtable(L, 0, 24);
    /* the describe-eif fields, same names */
    json_t *d = nd_eif_describe_json(in);
    if (d) {
        const char *k;
        json_t *v;
        json_object_foreach(d, k, v) {
            ndl_push_json(L, v);
            lua_setfield(L, -2, k);
        }
        json_decref(d);
    }
    if (path)
        ndl_setstr(L, "path", path);
    ndl_setint(L, "file_size", (lua_Integer)in->file_size);
    ndl_setint(L, "version", in->version);
    ndl_setint(L, "flags", in->flags);
    ndl_setstr(L, "arch", in->flags & 1 ? "aarch64" : "x86_64");
    ndl_setint(L, "default_mem", (lua_Integer)in->default_mem);
    ndl_setint(L, "default_cpus", (lua_Integer)in->default_cpus);
    ndl_setint(L, "num_sections", in->num_sections);
    ndl_setint(L, "min_memory_mib", (lua_Integer)in->min_memory_mib);
    ndl_setint(L, "trailing_bytes", (lua_Integer)in->trailing_bytes);
    ndl_setbool(L, "crc_ok", in->crc_ok);
    char hex[16];
    snprintf(hex, sizeof hex, "%08x", in->crc_stored);
    ndl_setstr(L, "crc_stored", hex);
    snprintf(hex, sizeof hex, "%08x", in->crc_computed);
    ndl_setstr(L, "crc_computed", hex);
    ndl_setbool(L, "is_signed", in->is_signed);
    lua_createtable(L, 0, 4);
    ndl_setstr(L, "PCR0", in->pcr0);
    ndl_setstr(L, "PCR1", in->pcr1);
    ndl_setstr(L, "PCR2", in->pcr2);
    if (in->has_pcr8)
        ndl_setstr(L, "PCR8", in->pcr8);
    lua_setfield(L, -2, "pcrs");
    if (in->signing_cert) {
        lua_createtable(L, 0, 7);
        ndl_setstr(L, "subject", in->cert_subject);
        ndl_setstr(L, "issuer", in->cert_issuer);
        ndl_setint(L, "not_before", in->cert_not_before);
        ndl_setint(L, "not_after", in->cert_not_after);
        ndl_setbool(L, "signature_ok", in->signature_check == 1);
        if (in->signature_error[0])
            ndl_setstr(L, "signature_error", in->signature_error);
        lua_setfield(L, -2, "signing");
    }
    if (in->cmdline)
        ndl_setstr(L, "cmdline", in->cmdline);
    if (in->metadata) {
        ndl_setlstr(L, "metadata_raw", in->metadata, in->metadata_len);
        json_error_t je;
        json_t *m = json_loadb(in->metadata, in->metadata_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (m) {
            ndl_push_json(L, m);
            lua_setfield(L, -2, "metadata");
            json_decref(m);
        } else {
            lua_pushfstring(L, "metadata is not JSON: %s at offset %d", je.text, je.position);
            lua_setfield(L, -2, "metadata_error");
        }
    }
    lua_createtable(L, in->num_sections, 0);
    unsigned ramdisk = 0;
    for (unsigned i = 0; i < in->num_sections; i++) {
        const nd_eif_section *s = &in->sections[i];
        lua_createtable(L, 0, 6);
        ndl_setint(L, "index", i);
        ndl_setint(L, "type", s->type);
        ndl_setstr(L, "name", nd_eif_section_name(s->type));
        ndl_setint(L, "flags", s->flags);
        ndl_setint(L, "offset", (lua_Integer)s->offset);
        ndl_setint(L, "size", (lua_Integer)s->size);
        if (s->type == ND_EIF_SEC_RAMDISK)
            ndl_setint(L, "ramdisk", ++ramdisk);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "sections");
}

/* eif.read(path [, {measure=false}]) -> info | nil, msg, code (measure=false: PCRs not computed, empty) */
static int l_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    bool measure = true;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "measure");
        measure = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    nd_eif_info info;
    nd_err err;
    nd_err_clear(&err);
    if ((measure ? nd_eif_read(path, &info, &err) : nd_eif_read_unmeasured(path, &info, &err)) < 0)
        return ndl_fail_err(L, &err);
    push_info(L, &info, path);
    nd_eif_info_free(&info);
    return 1;
}

/* eif.read_string(bytes) -> info | nil, msg, code */
static int l_read_string(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    nd_eif_info info;
    nd_err err;
    nd_err_clear(&err);
    if (nd_eif_read_mem(s, n, &info, &err) < 0)
        return ndl_fail_err(L, &err);
    push_info(L, &info, NULL);
    nd_eif_info_free(&info);
    return 1;
}

/* eif.pcr8(certificate PEM or DER) -> 96 hex digits | nil, msg, code */
static int l_pcr8(lua_State *L)
{
    size_t n;
    const char *c = luaL_checklstring(L, 1, &n);
    char hex[ND_EIF_PCR_HEX];
    nd_err err;
    nd_err_clear(&err);
    if (nd_eif_pcr8_cert(c, n, hex, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushstring(L, hex);
    return 1;
}

/* eif.describe(path) -> describe-eif JSON text | nil, msg, code */
static int l_describe(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    bool measure = true;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "measure");
        measure = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    nd_eif_info info;
    nd_err err;
    nd_err_clear(&err);
    if ((measure ? nd_eif_read(path, &info, &err) : nd_eif_read_unmeasured(path, &info, &err)) < 0)
        return ndl_fail_err(L, &err);
    /* nitro-cli's EifReader reads section headers until the file ends: bytes after the last section that hold a
     * section header (12 bytes or more; zeros are type 0) end in "Found invalid EIF section" (E35) */
    if (info.trailing_bytes >= ND_EIF_SECTION_HEADER_SIZE) {
        nd_eif_info_free(&info);
        return ndl_fail(L, -EBADMSG, "Found invalid EIF section");
    }
    char *s = nd_eif_describe_text(&info);
    nd_eif_info_free(&info);
    if (!s)
        return ndl_fail(L, -ENOMEM, "out of memory");
    lua_pushstring(L, s);
    free(s);
    return 1;
}

static nd_eif_blob field_blob(lua_State *L, int idx, const char *key)
{
    nd_eif_blob b = {NULL, 0};
    b.data = ndl_optfield_str(L, idx, key, &b.len);
    return b;
}

/* eif.write(path, {kernel=, cmdline=, ramdisks={…}, metadata=table|string, certificate=, signature=,
 *                  default_mem=, default_cpus=, arch="x86_64"|"aarch64", pad_zeros=n}) -> info | nil, msg, code
 * pad_zeros: zero bytes ending the last ramdisk, written as a sparse hole; measure=false: true instead of the info
 * (the file is not read back) */
static int l_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    nd_eif_input in;
    memset(&in, 0, sizeof in);
    in.kernel = field_blob(L, 2, "kernel");
    if (!in.kernel.data)
        return luaL_argerror(L, 2, "kernel (a string) is required");
    in.cmdline = field_blob(L, 2, "cmdline");
    in.certificate = field_blob(L, 2, "certificate");
    in.signature = field_blob(L, 2, "signature");
    in.default_mem = (uint64_t)ndl_optfield_num(L, 2, "default_mem", 0);
    in.default_cpus = (uint64_t)ndl_optfield_num(L, 2, "default_cpus", 0);
    lua_Number pad = ndl_optfield_num(L, 2, "pad_zeros", 0);
    if (pad < 0 || pad > 64.0 * 1024 * 1024 * 1024)
        return luaL_argerror(L, 2, "pad_zeros must be between 0 and 64 GiB");
    in.pad_zeros = (uint64_t)pad;
    const char *arch = ndl_optfield_str(L, 2, "arch", NULL);
    if (arch && strcmp(arch, "aarch64") == 0)
        in.flags = 1;
    else if (arch && strcmp(arch, "x86_64") != 0)
        return luaL_argerror(L, 2, "arch must be \"x86_64\" or \"aarch64\"");

    lua_getfield(L, 2, "metadata");
    if (lua_istable(L, -1)) {
        lua_getglobal(L, "require");
        lua_pushstring(L, "cjson");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "encode");
        lua_pushvalue(L, -3);
        lua_call(L, 1, 1); /* stays on the stack: anchors the string */
    }
    if (lua_type(L, -1) == LUA_TSTRING)
        in.metadata.data = lua_tolstring(L, -1, &in.metadata.len);

    nd_eif_blob rd[ND_EIF_MAX_SECTIONS];
    lua_getfield(L, 2, "ramdisks");
    if (lua_istable(L, -1)) {
        size_t n = lua_rawlen(L, -1);
        if (n > ND_EIF_MAX_SECTIONS - 3)
            return ndl_fail(L, -EINVAL, "EIF writer: too many ramdisks");
        for (size_t i = 0; i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            rd[i].data = lua_tolstring(L, -1, &rd[i].len);
            if (!rd[i].data)
                return luaL_argerror(L, 2, "ramdisks must be strings");
            lua_pop(L, 1); /* the table keeps it alive */
        }
        in.ramdisks = rd;
        in.n_ramdisks = n;
    }
    nd_eif_info info;
    nd_err err;
    nd_err_clear(&err);
    lua_getfield(L, 2, "measure");
    bool measure = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!measure) { /* the caller knows the PCRs: skip reading the file back (a large padded image) */
        if (nd_eif_write(path, &in, NULL, &err) < 0)
            return ndl_fail_err(L, &err);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (nd_eif_write(path, &in, &info, &err) < 0)
        return ndl_fail_err(L, &err);
    push_info(L, &info, path);
    nd_eif_info_free(&info);
    return 1;
}

/* eif.min_memory_mib(path_or_size) -> MiB | nil, msg, code */
static int l_min_memory(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TNUMBER) {
        lua_Integer n = luaL_checkinteger(L, 1);
        if (n < 0)
            return luaL_argerror(L, 1, "size must be >= 0");
        lua_pushinteger(L, (lua_Integer)nd_eif_min_memory_mib((uint64_t)n));
        return 1;
    }
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "cannot stat %s: %s", path, strerror(e));
        lua_pushstring(L, nd_err_name(-e));
        return 3;
    }
    lua_pushinteger(L, (lua_Integer)nd_eif_min_memory_mib((uint64_t)st.st_size));
    return 1;
}

static int l_section_name(lua_State *L)
{
    lua_pushstring(L, nd_eif_section_name((unsigned)luaL_checkinteger(L, 1)));
    return 1;
}

NDL_MODULE(eif)
{
    static const luaL_Reg funcs[] = {{"read", l_read},
                                     {"read_string", l_read_string},
                                     {"describe", l_describe},
                                     {"pcr8", l_pcr8},
                                     {"write", l_write},
                                     {"min_memory_mib", l_min_memory},
                                     {"section_name", l_section_name},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    ndl_setint(L, "HEADER_SIZE", ND_EIF_HEADER_SIZE);
    return 1;
}
