/*
 * l_allocator.c — `nd.allocator`: /etc/nitro_enclaves/allocator.yaml (core/allocator.c) for Lua.
 *
 *   allocator.load([host_path])            -> cfg, text | nil, msg, code, cfg   (read under nd.host.root())
 *   allocator.parse(text [, display_path]) -> cfg | nil, msg, code, cfg
 *   allocator.edit_text(text, {memory_mib=, cpu_count=, cpu_pool=}) -> new_text | nil, msg, code
 *   allocator.write({memory_mib=, cpu_count=, cpu_pool=} [, host_path]) -> backup_path | nil, msg, code
 *   allocator.parse_cpu_list("2,3,6-9")    -> {2,3,6,7,8,9} | nil, msg, code
 */
#include "ndlua.h"
#include "nd_allocator.h"

#include <stdlib.h>
#include <string.h>

static void push_cfg(lua_State *L, const nd_alloc_config *c)
{
    lua_createtable(L, 0, 12);
    if (c->has_memory) {
        ndl_setint(L, "memory_mib", (lua_Integer)c->memory_mib);
        ndl_setint(L, "memory_line", c->memory_line);
    }
    if (c->has_cpu_count) {
        ndl_setint(L, "cpu_count", (lua_Integer)c->cpu_count);
        ndl_setint(L, "cpu_count_line", c->cpu_count_line);
    }
    if (c->has_cpu_pool) {
        ndl_setstr(L, "cpu_pool", c->cpu_pool);
        ndl_setint(L, "cpu_pool_line", c->cpu_pool_line);
        lua_createtable(L, (int)c->n_pool_cpus, 0);
        for (size_t i = 0; i < c->n_pool_cpus; i++) {
            lua_pushinteger(L, c->pool_cpus[i]);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "pool_cpus");
    }
    if (c->doc_start_line)
        ndl_setint(L, "doc_start_line", c->doc_start_line);
    ndl_setint(L, "lines", c->n_lines);
    lua_createtable(L, c->n_warnings, 0);
    for (int i = 0; i < c->n_warnings; i++) {
        lua_pushstring(L, c->warnings[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "warnings");
}

/* nil, msg, code, partial cfg */
static int fail_cfg(lua_State *L, const nd_err *err, const nd_alloc_config *c)
{
    ndl_fail_err(L, err);
    push_cfg(L, c);
    return 4;
}

static int l_parse(lua_State *L)
{
    size_t n;
    const char *t = luaL_checklstring(L, 1, &n);
    const char *disp = luaL_optstring(L, 2, NULL);
    nd_alloc_config c;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_alloc_parse(t, n, disp, &c, &err);
    int ret = rc < 0 ? fail_cfg(L, &err, &c) : (push_cfg(L, &c), 1);
    nd_alloc_config_free(&c);
    return ret;
}

static int l_load(lua_State *L)
{
    const char *hp = luaL_optstring(L, 1, NULL);
    nd_alloc_config c;
    nd_err err;
    nd_err_clear(&err);
    char *text = NULL;
    int rc = nd_alloc_load(ndl_ctx(L), hp, &c, &text, &err);
    int ret;
    if (rc < 0 && !text) {
        ret = ndl_fail_err(L, &err);
    } else if (rc < 0) {
        ret = fail_cfg(L, &err, &c);
    } else {
        push_cfg(L, &c);
        lua_pushstring(L, text);
        ret = 2;
    }
    free(text);
    nd_alloc_config_free(&c);
    return ret;
}

static void get_edit(lua_State *L, int idx, nd_alloc_edit *e)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    memset(e, 0, sizeof *e);
    lua_getfield(L, idx, "memory_mib");
    if (!lua_isnil(L, -1)) {
        lua_Integer v = luaL_checkinteger(L, -1);
        if (v < 0)
            luaL_argerror(L, idx, "memory_mib must be >= 0");
        e->set_memory = true;
        e->memory_mib = (uint64_t)v;
    }
    lua_getfield(L, idx, "cpu_count");
    if (!lua_isnil(L, -1)) {
        lua_Integer v = luaL_checkinteger(L, -1);
        if (v < 0)
            luaL_argerror(L, idx, "cpu_count must be >= 0");
        e->set_cpu_count = true;
        e->cpu_count = (uint64_t)v;
    }
    lua_pop(L, 2);
    e->cpu_pool = ndl_optfield_str(L, idx, "cpu_pool", NULL); /* the table keeps it alive */
}

static int l_edit_text(lua_State *L)
{
    size_t n;
    const char *t = luaL_checklstring(L, 1, &n);
    nd_alloc_edit e;
    get_edit(L, 2, &e);
    char *out;
    nd_err err;
    nd_err_clear(&err);
    if (nd_alloc_edit_text(t, n, &e, &out, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushstring(L, out);
    free(out);
    return 1;
}

static int l_write(lua_State *L)
{
    nd_alloc_edit e;
    get_edit(L, 1, &e);
    const char *hp = luaL_optstring(L, 2, NULL);
    char bak[8400];
    nd_err err;
    nd_err_clear(&err);
    if (nd_alloc_write(ndl_ctx(L), hp, &e, bak, sizeof bak, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_pushstring(L, bak);
    return 1;
}

static int l_parse_cpu_list(lua_State *L)
{
    const char *s = luaL_checkstring(L, 1);
    unsigned *cpus;
    size_t n;
    nd_err err;
    nd_err_clear(&err);
    if (nd_alloc_parse_cpu_list(s, &cpus, &n, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, cpus[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(cpus);
    return 1;
}

NDL_MODULE(allocator)
{
    static const luaL_Reg funcs[] = {{"parse", l_parse},         {"load", l_load},
                                     {"edit_text", l_edit_text}, {"write", l_write},
                                     {"parse_cpu_list", l_parse_cpu_list}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    ndl_setstr(L, "PATH", ND_ALLOCATOR_YAML);
    return 1;
}
