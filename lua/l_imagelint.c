/*
 * l_imagelint.c — `nd.imagelint`: the enclave image lint of core/imagelint.c for Lua (used by the image-lint
 * runbook and by diag10 on the docker inspect it records).
 *
 *   local r = assert(imagelint.file("enclave/Dockerfile"))      -- or imagelint.dockerfile(text) / .inspect(json)
 *   r.ok, r.command, r.findings[i].code / .severity / .message / .rule (the registry's text, nd.findings) / .line / .evidence
 */
#include "ndlua.h"
#include "nd_imagelint.h"

#include <string.h>

static void push_argv(lua_State *L, const nd_lint_argv *a)
{
    lua_createtable(L, (int)a->argc, 0);
    for (size_t i = 0; i < a->argc; i++) {
        lua_pushstring(L, a->argv[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* Sets t[key] = {argv…, form = "exec"|"shell", line = n} when a is set; inherited = true when unknown. */
static void set_argv(lua_State *L, const char *key, const nd_lint_argv *a)
{
    if (!a->set)
        return;
    push_argv(L, a);
    ndl_setstr(L, "form", a->shell_form ? "shell" : "exec");
    if (a->line)
        ndl_setint(L, "line", a->line);
    lua_setfield(L, -2, key);
}

static void set_rule(lua_State *L, const char *code);

static int push_result(lua_State *L, const nd_imagelint *r)
{
    lua_createtable(L, 0, 12);
    ndl_setstr(L, "source", r->source);
    if (r->base[0])
        ndl_setstr(L, "base", r->base);
    if (r->stages)
        ndl_setint(L, "stages", r->stages);
    set_argv(L, "entrypoint", &r->entrypoint);
    set_argv(L, "cmd", &r->cmd);
    ndl_setbool(L, "inherited", !r->entrypoint.known || !r->cmd.known);
    if (r->command) {
        push_argv(L, r->command);
        lua_setfield(L, -2, "command");
    }
    lua_createtable(L, 0, (int)r->n_env);
    for (size_t i = 0; i < r->n_env; i++) {
        const char *eq = strchr(r->env[i], '=');
        if (!eq)
            continue;
        lua_pushlstring(L, r->env[i], (size_t)(eq - r->env[i]));
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "env");
    lua_createtable(L, (int)r->n_findings, 0);
    for (size_t i = 0; i < r->n_findings; i++) {
        const nd_lint_finding *f = &r->findings[i];
        lua_createtable(L, 0, 6);
        ndl_setstr(L, "severity", nd_lint_severity_name(f->severity));
        ndl_setstr(L, "code", f->code);
        ndl_setstr(L, "message", f->message);
        set_rule(L, f->code);
        if (f->line)
            ndl_setint(L, "line", f->line);
        ndl_setstr(L, "evidence", f->evidence);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "findings");
    ndl_setint(L, "fails", r->fails);
    ndl_setint(L, "warns", r->warns);
    ndl_setbool(L, "ok", r->fails == 0);
    return 1;
}

/* Sets field "rule" of the table on top to the registry's knowledge for code (nd.findings), when it has any. */
static void set_rule(lua_State *L, const char *code)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, "nd.findings");
    if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "get");
        lua_pushstring(L, code);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_istable(L, -1)) {
            lua_getfield(L, -1, "remediation");
            if (lua_istable(L, -1)) {
                lua_rawgeti(L, -1, 1);
                if (lua_isstring(L, -1))
                    lua_setfield(L, top, "rule");
            }
        }
    }
    lua_settop(L, top);
}

static int finish(lua_State *L, int rc, nd_imagelint *r, const nd_err *err)
{
    if (rc < 0)
        return ndl_fail_err(L, err);
    push_result(L, r);
    nd_imagelint_free(r);
    return 1;
}

/* imagelint.file(path) -> result | nil, msg, code */
static int l_file(lua_State *L)
{
    nd_imagelint *r = NULL;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_imagelint_file(luaL_checkstring(L, 1), &r, &err);
    return finish(L, rc, r, &err);
}

/* imagelint.dockerfile(text) -> result | nil, msg, code */
static int l_dockerfile(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    nd_imagelint *r = NULL;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_imagelint_dockerfile(s, n, &r, &err);
    return finish(L, rc, r, &err);
}

/* imagelint.inspect(json_text) -> result | nil, msg, code */
static int l_inspect(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    nd_imagelint *r = NULL;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_imagelint_inspect(s, n, &r, &err);
    return finish(L, rc, r, &err);
}

NDL_MODULE(imagelint)
{
    static const luaL_Reg funcs[] = {
        {"file", l_file}, {"dockerfile", l_dockerfile}, {"inspect", l_inspect}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
