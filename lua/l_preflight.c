/*
 * l_preflight.c — `nd.preflight`: predicts run-enclave's E20/E21/E22/E26/E27/E29 with their numbers (core/preflight.c).
 *
 *   Issues come in nitro-cli 1.4/1.5's order of checks (core/nd_preflight.h); `note` carries the E29 sub-action.
 *   preflight.check{ eif = path | eif_size = bytes, memory = MiB, cpu_count = n | cpu_ids = {1,3} | "1,3",
 *                    allocator = cfg (from nd.allocator) | false (do not use it) | nil (load it under the root),
 *                    host = true (read hugepages and ne_cpus under the root; default true),
 *                    running = describe-enclaves list (MemoryMiB and CPUIDs they hold) }
 *     -> { ok, issues = { {code, message, headline, requested, limit}, … }, first, min_memory_mib, memory_known,
 *          memory_total_mib, memory_free_mib, memory_source, pool_known, pool = {…}, pool_free, pool_source,
 *          eif_size, allocator_error } | nil, msg, code
 */
#include "ndlua.h"
#include "nd_preflight.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Reads a list of integers from a table or a "1,3" string at the field `key` of the table at idx. */
static unsigned *int_list(lua_State *L, int idx, const char *key, size_t *n)
{
    *n = 0;
    lua_getfield(L, idx, key);
    unsigned *v = NULL;
    if (lua_istable(L, -1)) {
        size_t len = lua_rawlen(L, -1);
        v = lua_newuserdatauv(L, sizeof(unsigned) * (len + 1), 0);
        for (size_t i = 0; i < len; i++) {
            lua_rawgeti(L, -2, (lua_Integer)i + 1);
            v[i] = (unsigned)luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        }
        *n = len;
        lua_replace(L, -2); /* keep the userdata (GC anchor) where the field was */
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        unsigned *cpus;
        size_t cnt;
        nd_err err;
        if (nd_alloc_parse_cpu_list(lua_tostring(L, -1), &cpus, &cnt, &err) < 0)
            luaL_error(L, "nd.preflight: %s: %s", key, err.msg);
        v = lua_newuserdatauv(L, sizeof(unsigned) * (cnt + 1), 0);
        memcpy(v, cpus, sizeof(unsigned) * cnt);
        free(cpus);
        *n = cnt;
        lua_replace(L, -2);
    }
    return v; /* the anchor stays on the stack */
}

static int l_check(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    nd_preflight_input in;
    memset(&in, 0, sizeof in);
    const char *eif = ndl_optfield_str(L, 1, "eif", NULL);
    if (eif) {
        struct stat st;
        if (stat(eif, &st) != 0) {
            int e = errno;
            return ndl_fail(L, -e, lua_pushfstring(L, "EIF %s: %s", eif, strerror(e)));
        }
        in.eif_size = (uint64_t)st.st_size;
        in.has_eif = true;
    } else {
        double sz = ndl_optfield_num(L, 1, "eif_size", -1);
        if (sz >= 0) {
            in.eif_size = (uint64_t)sz;
            in.has_eif = true;
        }
    }
    double mem = ndl_optfield_num(L, 1, "memory", -1);
    if (mem < 0)
        return luaL_argerror(L, 1, "memory (MiB) is required");
    in.memory_mib = (uint64_t)mem;
    in.cpu_count = (uint64_t)ndl_optfield_num(L, 1, "cpu_count", 0);
    in.cpu_ids = int_list(L, 1, "cpu_ids", &in.n_cpu_ids);
    if (ndl_optfield_bool(L, 1, "host", 1))
        in.ctx = ndl_ctx(L);

    /* allocator */
    nd_alloc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const char *alloc_error = NULL;
    char alloc_msg[600];
    bool loaded = false;
    lua_getfield(L, 1, "allocator");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        lua_getfield(L, t, "memory_mib");
        if (lua_isinteger(L, -1)) {
            cfg.has_memory = true;
            cfg.memory_mib = (uint64_t)lua_tointeger(L, -1);
        }
        lua_getfield(L, t, "cpu_count");
        if (lua_isinteger(L, -1)) {
            cfg.has_cpu_count = true;
            cfg.cpu_count = (uint64_t)lua_tointeger(L, -1);
        }
        lua_pop(L, 2);
        size_t n;
        unsigned *pool = int_list(L, t, "pool_cpus", &n);
        if (pool) {
            cfg.has_cpu_pool = true;
            cfg.pool_cpus = pool; /* anchored on the stack, not freed */
            cfg.n_pool_cpus = n;
        }
        in.alloc = &cfg;
    } else if (lua_isnil(L, -1)) {
        nd_err err;
        nd_err_clear(&err);
        if (nd_alloc_load(ndl_ctx(L), NULL, &cfg, NULL, &err) == 0) {
            in.alloc = &cfg;
        } else {
            snprintf(alloc_msg, sizeof alloc_msg, "%s", err.msg);
            alloc_error = alloc_msg;
        }
        loaded = true;
    }

    /* running enclaves */
    uint64_t used_mem = 0;
    size_t n_used = 0, cap = 0;
    unsigned *used = NULL;
    lua_getfield(L, 1, "running");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        size_t len = lua_rawlen(L, t);
        for (size_t i = 1; i <= len; i++) {
            lua_rawgeti(L, t, (lua_Integer)i);
            if (lua_istable(L, -1)) {
                lua_getfield(L, -1, "MemoryMiB");
                if (lua_isinteger(L, -1))
                    used_mem += (uint64_t)lua_tointeger(L, -1);
                lua_pop(L, 1);
                lua_getfield(L, -1, "CPUIDs");
                if (lua_istable(L, -1)) {
                    size_t m = lua_rawlen(L, -1);
                    for (size_t k = 1; k <= m; k++) {
                        lua_rawgeti(L, -1, (lua_Integer)k);
                        if (lua_isinteger(L, -1)) {
                            if (n_used == cap) {
                                cap = cap ? cap * 2 : 16;
                                unsigned *nu = realloc(used, cap * sizeof *nu);
                                if (!nu) {
                                    free(used);
                                    if (loaded)
                                        nd_alloc_config_free(&cfg);
                                    return ndl_fail(L, -ENOMEM, "out of memory");
                                }
                                used = nu;
                            }
                            used[n_used++] = (unsigned)lua_tointeger(L, -1);
                        }
                        lua_pop(L, 1);
                    }
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    in.used_memory_mib = used_mem;
    in.used_cpus = used;
    in.n_used_cpus = n_used;

    nd_preflight_result r;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_preflight_check(&in, &r, &err);
    free(used);
    if (loaded)
        nd_alloc_config_free(&cfg);
    if (rc < 0)
        return ndl_fail_err(L, &err);

    lua_createtable(L, 0, 16);
    ndl_setbool(L, "ok", r.n_issues == 0);
    lua_createtable(L, r.n_issues, 0);
    for (int i = 0; i < r.n_issues; i++) {
        const nd_preflight_issue *is = &r.issues[i];
        lua_createtable(L, 0, 5);
        ndl_setstr(L, "code", is->code);
        ndl_setstr(L, "message", is->message);
        lua_pushfstring(L, "[ %s ] %s", is->code, is->message);
        lua_setfield(L, -2, "headline");
        ndl_setint(L, "requested", (lua_Integer)is->requested);
        ndl_setint(L, "limit", (lua_Integer)is->limit);
        if (is->note[0])
            ndl_setstr(L, "note", is->note);
        lua_rawseti(L, -2, i + 1);
    }
    if (r.n_issues) {
        lua_rawgeti(L, -1, 1);
        lua_setfield(L, -3, "first");
    }
    lua_setfield(L, -2, "issues");
    if (in.has_eif) {
        ndl_setint(L, "eif_size", (lua_Integer)in.eif_size);
        ndl_setint(L, "min_memory_mib", (lua_Integer)r.min_memory_mib);
    }
    ndl_setbool(L, "memory_known", r.memory_known);
    ndl_setint(L, "memory_total_mib", (lua_Integer)r.memory_total_mib);
    ndl_setint(L, "memory_free_mib", (lua_Integer)r.memory_free_mib);
    ndl_setstr(L, "memory_source", r.memory_source);
    ndl_setbool(L, "pool_known", r.pool_known);
    lua_createtable(L, (int)r.n_pool, 0);
    for (size_t i = 0; i < r.n_pool; i++) {
        lua_pushinteger(L, r.pool[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "pool");
    ndl_setint(L, "pool_free", (lua_Integer)r.n_pool_free);
    ndl_setstr(L, "pool_source", r.pool_source);
    if (alloc_error)
        ndl_setstr(L, "allocator_error", alloc_error);
    return 1;
}

NDL_MODULE(preflight)
{
    static const luaL_Reg funcs[] = {{"check", l_check}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
