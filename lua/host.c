/*
 * host.c — the Lua 5.4 host: one lua_State, one libuv loop shared by the core and luv, and the modules built into
 * the binary (C bindings from lua/l_*.c, Lua sources from lua/nd/ and sim/, luv, cjson).
 *
 * How waiting works (see ndlua.h): a binding starts an operation on the loop and calls ndl_await. In a coroutine it
 * yields; the operation's completion callback calls ndl_wait_done, which resumes the coroutine with lua_resume. On
 * the main thread it runs the loop itself until the operation completes. The host drives the loop (ndl_host_run)
 * until the main coroutine of a command finishes, so a runbook reads top to bottom while several coroutines wait at
 * once. Errors in callbacks are reported with a traceback; nothing here ever calls exit().
 */
#include "host.h"
#include "nd_proc.h"

#include <luv/luv.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <jansson.h>

int luaopen_cjson_safe(lua_State *L);

typedef struct { const char *name; lua_CFunction open; } ndl_cmodule;
typedef struct { const char *name; const char *path; const char *src; size_t len; } ndl_lmodule;
extern const ndl_cmodule ndl_cmodules[];
extern const ndl_lmodule ndl_lmodules[];

static const char HOST_KEY = 'h';

ndl_host *ndl_host_of(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
    ndl_host *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

nd_ctx *ndl_ctx(lua_State *L)
{
    ndl_host *h = ndl_host_of(L);
    return h ? &h->ctx : NULL;
}

lua_State *ndl_host_main(lua_State *L)
{
    ndl_host *h = ndl_host_of(L);
    return h ? h->L : L;
}

/* ---- errors ---------------------------------------------------------------------------------------------------- */

int ndl_fail(lua_State *L, int code, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg ? msg : nd_err_str(code));
    lua_pushstring(L, nd_err_name(code));
    return 3;
}

int ndl_fail_err(lua_State *L, const nd_err *err)
{
    return ndl_fail(L, err->code ? err->code : -EINVAL, err->msg[0] ? err->msg : NULL);
}

static int traceback_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

void ndl_report_error(lua_State *L, const char *where, const char *msg)
{
    fprintf(stderr, "nitrodiag: error in %s: %s\n", where, msg ? msg : "(no message)");
    fflush(stderr);
    (void)L;
}

/* luv calls every Lua callback through this: errors are reported, the process lives on (luv's default exits). */
static int host_pcall(lua_State *L, int nargs, int nresults, int flags)
{
    (void)flags;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback_handler);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    lua_remove(L, base);
    if (rc != LUA_OK) {
        ndl_report_error(L, "callback", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -rc;
    }
    if (nresults == LUA_MULTRET)
        return lua_gettop(L) - base + 1;
    return nresults;
}

/* ---- waiting --------------------------------------------------------------------------------------------------- */

int ndl_can_wait(lua_State *L)
{
    ndl_host *h = ndl_host_of(L);
    if (lua_isyieldable(L))
        return 1;
    return h && h->loop_depth == 0;
}

int ndl_await(lua_State *L, ndl_wait *w, lua_KFunction k, lua_KContext kctx)
{
    ndl_host *h = ndl_host_of(L);
    w->done = 0;
    if (lua_isyieldable(L)) {
        w->co = L;
        lua_pushthread(L);
        w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        w->yielded = 1;
        return lua_yieldk(L, 0, kctx, k);
    }
    if (h->loop_depth > 0)
        return luaL_error(L, "cannot wait here: this call must run in a coroutine (nd.spawn) "
                             "or at the top of a runbook, not inside a loop callback");
    w->co = L;
    w->co_ref = LUA_NOREF;
    w->yielded = 0;
    h->loop_depth++;
    while (!w->done) {
        if (h->interrupted) {
            h->loop_depth--;
            h->interrupted = 0;
            return luaL_error(L, "interrupted");
        }
        if (uv_run(&h->loop, UV_RUN_ONCE) == 0 && !w->done) {
            h->loop_depth--;
            return luaL_error(L, "internal error: waiting for an operation the loop does not know");
        }
    }
    h->loop_depth--;
    return k(L, LUA_YIELD, kctx);
}

void ndl_wait_done(ndl_wait *w)
{
    if (w->done)
        return;
    w->done = 1;
    if (!w->yielded || !w->co)
        return;
    if (ndl_host_of(w->co)->shutting_down)
        return; /* no Lua code runs once the host is closing */
    /* The resumed code may finish what a uv_run(UV_RUN_ONCE) loop waits for: stop this iteration so that loop gets
     * to check, instead of blocking in poll until an unrelated event (libuv polls after the timers run). */
    uv_stop(&ndl_host_of(w->co)->loop);
    lua_State *co = w->co;
    int ref = w->co_ref;
    w->co = NULL;
    w->co_ref = LUA_NOREF;
    ndl_host *h = ndl_host_of(co);
    /* Keep the thread referenced until the resume returns, then drop our reference. */
    int nres = 0;
    h->loop_depth++;
    int rc = lua_resume(co, h->L, 0, &nres);
    h->loop_depth--;
    if (rc == LUA_OK || rc == LUA_YIELD) {
        lua_pop(co, nres);
    } else {
        /* A coroutine that was not started by nd.spawn died: report it with its traceback. */
        luaL_traceback(h->L, co, lua_tostring(co, -1), 0);
        ndl_report_error(h->L, "coroutine", lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
}

void ndl_wait_cancel(lua_State *L, ndl_wait *w)
{
    if (w->co_ref != LUA_NOREF && w->co_ref != 0) {
        ndl_host *h = ndl_host_of(L);
        luaL_unref(h->L, LUA_REGISTRYINDEX, w->co_ref);
    }
    w->co_ref = LUA_NOREF;
    w->co = NULL;
    w->done = 1;
}

/* ---- helpers --------------------------------------------------------------------------------------------------- */

void ndl_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta)
{
    if (luaL_newmetatable(L, name)) {
        if (meta)
            luaL_setfuncs(L, meta, 0);
        if (methods) {
            lua_newtable(L);
            luaL_setfuncs(L, methods, 0);
            lua_setfield(L, -2, "__index");
        }
    }
    lua_pop(L, 1);
}

const char *ndl_optfield_str(lua_State *L, int idx, const char *key, size_t *len)
{
    const char *s = NULL;
    lua_getfield(L, idx, key);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "field '%s' must be a string", key);
        s = lua_tolstring(L, -1, len);
    } else if (len) {
        *len = 0;
    }
    lua_pop(L, 1); /* the string stays alive: it is referenced by the table */
    return s;
}

double ndl_optfield_num(lua_State *L, int idx, const char *key, double def)
{
    lua_getfield(L, idx, key);
    double v = def;
    if (!lua_isnil(L, -1)) {
        int ok = 0;
        v = lua_tonumberx(L, -1, &ok);
        if (!ok)
            luaL_error(L, "field '%s' must be a number", key);
    }
    lua_pop(L, 1);
    return v;
}

int ndl_optfield_bool(lua_State *L, int idx, const char *key, int def)
{
    lua_getfield(L, idx, key);
    int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

void ndl_setstr(lua_State *L, const char *key, const char *value)
{
    if (!value)
        return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

void ndl_setlstr(lua_State *L, const char *key, const char *value, size_t len)
{
    lua_pushlstring(L, value ? value : "", value ? len : 0);
    lua_setfield(L, -2, key);
}

void ndl_setint(lua_State *L, const char *key, lua_Integer value)
{
    lua_pushinteger(L, value);
    lua_setfield(L, -2, key);
}

void ndl_setnum(lua_State *L, const char *key, lua_Number value)
{
    lua_pushnumber(L, value);
    lua_setfield(L, -2, key);
}

void ndl_setbool(lua_State *L, const char *key, int value)
{
    lua_pushboolean(L, value);
    lua_setfield(L, -2, key);
}

void ndl_push_json(lua_State *L, const json_t *v)
{
    luaL_checkstack(L, 4, "json too deep");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach((json_t *)v, key, val) {
            ndl_push_json(L, val);
            lua_setfield(L, -2, key);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *val;
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach((json_t *)v, i, val) {
            ndl_push_json(L, val);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default: /* null */
        lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_getfield(L, -1, "cjson");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "null");
            lua_replace(L, -3);
            lua_pop(L, 1);
        } else {
            lua_pop(L, 2);
            lua_pushnil(L);
        }
        break;
    }
}

/* ---- module loading -------------------------------------------------------------------------------------------- */

/* package.searchers entry for the Lua modules compiled into the binary (as bytecode, see tools/embed.cmake). */
static int embedded_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    for (const ndl_lmodule *m = ndl_lmodules; m->name; m++) {
        if (strcmp(m->name, name) == 0) {
            char chunk[256];
            snprintf(chunk, sizeof chunk, "@%s", m->path);
            /* bytecode made at build time by tools/nd-luac.c (source text in a cross build) */
            if (luaL_loadbufferx(L, m->src, m->len, chunk, "bt") != LUA_OK)
                return lua_error(L);
            lua_pushstring(L, m->path);
            return 2;
        }
    }
    lua_pushfstring(L, "no built-in module '%s'", name);
    return 1;
}

int ndl_module_exists(const char *name)
{
    for (const ndl_lmodule *m = ndl_lmodules; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return 1;
    for (const ndl_cmodule *c = ndl_cmodules; c->name; c++)
        if (strcmp(c->name, name) == 0)
            return 1;
    return 0;
}

static int list_modules(lua_State *L)
{
    lua_newtable(L);
    int i = 1;
    for (const ndl_cmodule *c = ndl_cmodules; c->name; c++) {
        lua_pushstring(L, c->name);
        lua_rawseti(L, -2, i++);
    }
    for (const ndl_lmodule *m = ndl_lmodules; m->name; m++) {
        lua_pushstring(L, m->name);
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static int open_luv(lua_State *L)
{
    return luaopen_luv(L);
}

int ndl_host_init(ndl_host *h)
{
    memset(h, 0, sizeof *h);
    int rc = uv_loop_init(&h->loop);
    if (rc < 0)
        return rc;
    nd_ctx_init(&h->ctx, &h->loop);
    /* no command may outlive nitrodiag, even a SIGKILLed one (a failure to start it is not fatal) */
    nd_proc_watchdog_start(&h->ctx, NULL);
    const char *cli = getenv("NITRODIAG_NITRO_CLI");
    if (cli && *cli)
        snprintf(h->ctx.nitro_cli, sizeof h->ctx.nitro_cli, "%s", cli);
    size_t exelen = sizeof h->ctx.self_exe;
    if (uv_exepath(h->ctx.self_exe, &exelen) != 0)
        h->ctx.self_exe[0] = '\0';
    /* Started inside a simulated host (a runbook ran nitrodiag, or a shell under `nitrodiag --sim`): stay on it —
     * its commands only, its nitro-cli whatever NITRODIAG_NITRO_CLI says, its host root, its clock. */
    const char *sim = getenv("NITRODIAG_SIM_ROOT");
    if (sim && sim[0] == '/' && strlen(sim) + sizeof "/bin/nitro-cli" <= sizeof h->ctx.sim_root) {
        snprintf(h->ctx.sim_root, sizeof h->ctx.sim_root, "%s", sim);
        snprintf(h->ctx.nitro_cli, sizeof h->ctx.nitro_cli, "%s/bin/nitro-cli", sim);
        snprintf(h->ctx.root, sizeof h->ctx.root, "%s", sim);
        const char *clock = getenv("NITRODIAG_SIM_CLOCK");
        const char *colon = clock ? strchr(clock, ':') : NULL;
        double scale = colon ? strtod(colon + 1, NULL) : 1.0;
        h->ctx.time_scale = scale >= 1.0 && scale <= 10000.0 ? scale : 1.0;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        uv_loop_close(&h->loop);
        return -ENOMEM;
    }
    h->L = L;
    luaL_openlibs(L);
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);

    /* luv shares our loop and reports callback errors through host_pcall; register it once in package.loaded. */
    luv_set_loop(L, &h->loop);
    luv_set_callback(L, host_pcall);
    luaL_requiref(L, "luv", open_luv, 0);
    lua_pop(L, 1);
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    luaL_requiref(L, "cjson.safe", luaopen_cjson_safe, 0);
    lua_pop(L, 1);

    for (const ndl_cmodule *c = ndl_cmodules; c->name; c++)
        preload(L, c->name, c->open);

    /* Embedded Lua modules come after preload and before the file system searchers. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    int n = (int)lua_rawlen(L, -1);
    for (int i = n; i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, embedded_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);

    lua_pushcfunction(L, list_modules);
    lua_setfield(L, LUA_REGISTRYINDEX, "nd.builtin_modules");
    return 0;
}

int ndl_host_run(ndl_host *h, lua_State *co)
{
    h->loop_depth++;
    while (lua_status(co) == LUA_YIELD) {
        if (h->interrupted)
            break;
        if (uv_run(&h->loop, UV_RUN_ONCE) == 0 && lua_status(co) == LUA_YIELD) {
            h->loop_depth--;
            return -EDEADLK;
        }
    }
    h->loop_depth--;
    return 0;
}

static void on_settle_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop up so the bound below is checked */
}

void ndl_host_settle(ndl_host *h, int max_live, unsigned timeout_ms, int kill)
{
    if (h->ctx.live_procs <= max_live)
        return;
    uv_timer_t tick;
    uv_timer_init(&h->loop, &tick);
    uv_timer_start(&tick, on_settle_tick, 20, 20);
    uint64_t t0 = uv_now(&h->loop);
    h->loop_depth++;
    while (h->ctx.live_procs > max_live && uv_now(&h->loop) - t0 < timeout_ms) {
        if (kill)
            nd_proc_kill_all(&h->ctx);
        uv_run(&h->loop, UV_RUN_ONCE);
    }
    h->loop_depth--;
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&h->loop, UV_RUN_NOWAIT);
}

void ndl_host_close(ndl_host *h)
{
    /* First make sure no command outlives us: kill every running one and let the loop reap them (bounded), while
     * the Lua state is still alive for any callback that fires meanwhile. */
    h->shutting_down = 1;
    if (h->L)
        lua_gc(h->L, LUA_GCCOLLECT);
    ndl_host_settle(h, 0, 3000, 1);
    /* Handles closed by Lua code or by __gc (sockets, timers) free their memory in close callbacks: run those now,
     * while the Lua state they may call into still exists. */
    if (h->L)
        lua_gc(h->L, LUA_GCCOLLECT);
    for (int i = 0; i < 4; i++)
        uv_run(&h->loop, UV_RUN_NOWAIT);

    /* lua_close runs every __gc: running commands are killed (whole process group), sockets closed. The loop is NOT
     * run afterwards: luv's close callbacks would touch the freed state. This is only called at process exit, where
     * the kernel reaps what is left. */
    if (h->L) {
        lua_close(h->L);
        h->L = NULL;
    }
    nd_proc_watchdog_stop(&h->ctx);
}
