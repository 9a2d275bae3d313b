/*
 * l_nitrocli.c — `nd.nitrocli`: the C half of the nitro-cli adapter (core/nitrocli.c) for Lua: the parsers and the
 * argv builders. Runbooks use `nd.nitro` (lua/nd/nitro.lua), which runs nitro-cli through nd.proc and uses these.
 *
 *   nitrocli.parse_errors(text)      -> { recognised, blocks = {…}, preamble = {…}, failed_connections, raw, reason }
 *   nitrocli.parse_err_log(text)     -> { recognised, action, subactions, root_file, root_line, version, … }
 *   nitrocli.parse_log_line(line)    -> { id, source, pid, level, timestamp, file, line, message } | nil, msg, code
 *   nitrocli.parse_json(kind, text)  -> value, rest | nil, msg, code   (kind: "run-enclave", "describe-enclaves", …)
 *   nitrocli.argv(kind, opts)        -> { "nitro-cli", "run-enclave", … } | nil, msg, code
 *   nitrocli.err_log_time(path)      -> "2021-06-18T21:46:43.249503129+00:00" | nil
 */
#include "ndlua.h"
#include "nd_nitrocli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void push_list(lua_State *L, char **v, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* Pushes a fact value: an integer when it is all digits (and fits), else the string. */
static void push_fact_value(lua_State *L, const char *v)
{
    size_t n = strlen(v);
    bool digits = n > 0 && n < 16;
    for (size_t i = 0; digits && i < n; i++)
        digits = v[i] >= '0' && v[i] <= '9';
    if (digits)
        lua_pushinteger(L, strtoll(v, NULL, 10));
    else
        lua_pushstring(L, v);
}

static void push_block(lua_State *L, const nd_nitro_block *b)
{
    lua_createtable(L, 0, 16);
    ndl_setstr(L, "code", b->code);
    ndl_setint(L, "number", b->number);
    ndl_setstr(L, "title", b->title);
    ndl_setstr(L, "message", b->message);
    ndl_setstr(L, "headline", b->headline);
    push_list(L, b->details, b->n_details);
    lua_setfield(L, -2, "details");
    push_list(L, b->extra, b->n_extra);
    lua_setfield(L, -2, "extra");
    if (b->doc_url)
        ndl_setstr(L, "doc_url", b->doc_url);
    if (b->err_log_path)
        ndl_setstr(L, "err_log_path", b->err_log_path);
    if (b->backtrace)
        ndl_setstr(L, "backtrace", b->backtrace);
    lua_createtable(L, 0, (int)b->n_facts);
    for (size_t i = 0; i < b->n_facts; i++) {
        push_fact_value(L, b->facts[i].value);
        lua_setfield(L, -2, b->facts[i].key);
    }
    lua_setfield(L, -2, "facts");
    ndl_setbool(L, "root_cause", b->root_cause);
    ndl_setbool(L, "secondary", b->secondary);
    if (b->failed_connections >= 0)
        ndl_setint(L, "failed_connections", b->failed_connections);
    ndl_setint(L, "line", (lua_Integer)b->line);
}

static int l_parse_errors(lua_State *L)
{
    size_t n = 0;
    const char *t = luaL_optlstring(L, 1, "", &n);
    nd_nitro_errors e;
    nd_err err;
    nd_err_clear(&err);
    if (nd_nitro_parse_errors(t, n, &e, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 8);
    ndl_setbool(L, "recognised", e.recognised);
    lua_createtable(L, (int)e.n_blocks, 0);
    for (size_t i = 0; i < e.n_blocks; i++) {
        push_block(L, &e.blocks[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (e.n_blocks) {
        lua_rawgeti(L, -1, 1);
        lua_setfield(L, -3, "root");
    }
    lua_setfield(L, -2, "blocks");
    push_list(L, e.preamble, e.n_preamble);
    lua_setfield(L, -2, "preamble");
    if (e.failed_connections >= 0)
        ndl_setint(L, "failed_connections", e.failed_connections);
    ndl_setlstr(L, "raw", e.raw, e.raw_len);
    if (!e.recognised) {
        lua_pushfstring(L, "unrecognised output: no \"[ Exx ]\" error block in %d bytes", (int)n);
        lua_setfield(L, -2, "reason");
    }
    nd_nitro_errors_free(&e);
    return 1;
}

static int l_parse_err_log(lua_State *L)
{
    size_t n = 0;
    const char *t = luaL_optlstring(L, 1, "", &n);
    nd_nitro_errlog l;
    nd_err err;
    nd_err_clear(&err);
    if (nd_nitro_parse_errlog(t, n, &l, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 9);
    ndl_setbool(L, "recognised", l.recognised);
    if (l.action)
        ndl_setstr(L, "action", l.action);
    push_list(L, l.subactions, l.n_subactions);
    lua_setfield(L, -2, "subactions");
    if (l.root_file)
        ndl_setstr(L, "root_file", l.root_file);
    if (l.root_line >= 0)
        ndl_setint(L, "root_line", l.root_line);
    if (l.version)
        ndl_setstr(L, "version", l.version);
    if (l.build_commit)
        ndl_setstr(L, "build_commit", l.build_commit);
    ndl_setlstr(L, "raw", t, n);
    if (!l.recognised)
        ndl_setstr(L, "reason", "unrecognised err log: no \"Action:\" line");
    nd_nitro_errlog_free(&l);
    return 1;
}

static int l_parse_log_line(lua_State *L)
{
    size_t n;
    const char *t = luaL_checklstring(L, 1, &n);
    nd_nitro_logline l;
    nd_err err;
    nd_err_clear(&err);
    if (nd_nitro_parse_logline(t, n, &l, &err) < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 8);
    ndl_setstr(L, "id", l.id);
    ndl_setstr(L, "source", l.source);
    if (l.pid >= 0)
        ndl_setint(L, "pid", l.pid);
    ndl_setstr(L, "level", l.level);
    ndl_setstr(L, "timestamp", l.timestamp);
    ndl_setstr(L, "file", l.file);
    if (l.line >= 0)
        ndl_setint(L, "line", l.line);
    ndl_setlstr(L, "message", l.message, l.message_len);
    return 1;
}

static const struct {
    const char *name;
    nd_nitro_cmd cmd;
} kinds[] = {{"run-enclave", ND_NITRO_RUN_ENCLAVE},
             {"describe-enclaves", ND_NITRO_DESCRIBE_ENCLAVES},
             {"terminate-enclave", ND_NITRO_TERMINATE_ENCLAVE},
             {"build-enclave", ND_NITRO_BUILD_ENCLAVE},
             {"describe-eif", ND_NITRO_DESCRIBE_EIF}};

static int l_parse_json(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    size_t n = 0;
    const char *t = luaL_optlstring(L, 2, "", &n);
    int k = -1;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, kind) == 0)
            k = (int)i;
    if (k < 0)
        return luaL_argerror(L, 1, "kind: run-enclave, describe-enclaves, terminate-enclave, build-enclave or describe-eif");
    json_t *j;
    size_t end = 0;
    nd_err err;
    nd_err_clear(&err);
    if (nd_nitro_parse_json(kinds[k].cmd, t, n, &j, &end, &err) < 0)
        return ndl_fail_err(L, &err);
    ndl_push_json(L, j);
    json_decref(j);
    lua_pushlstring(L, t + end, n - end);
    return 2;
}

static const char *opt_str(lua_State *L, const char *key)
{
    return ndl_optfield_str(L, 2, key, NULL);
}

static int l_argv(lua_State *L)
{
    const char *kind = luaL_checkstring(L, 1);
    if (lua_isnoneornil(L, 2))
        lua_newtable(L), lua_replace(L, 2);
    luaL_checktype(L, 2, LUA_TTABLE);
    const nd_ctx *ctx = ndl_ctx(L);
    nd_nitro_argv a = {0};
    nd_err err;
    nd_err_clear(&err);
    int rc;
    if (strcmp(kind, "run-enclave") == 0) {
        nd_nitro_run_opts o;
        memset(&o, 0, sizeof o);
        o.eif_path = opt_str(L, "eif");
        o.memory_mib = (long)ndl_optfield_num(L, 2, "memory", 0);
        o.cpu_count = (long)ndl_optfield_num(L, 2, "cpu_count", 0);
        o.cpu_ids = opt_str(L, "cpu_ids");
        o.cid = (long long)ndl_optfield_num(L, 2, "cid", -1);
        o.name = opt_str(L, "name");
        o.debug_mode = ndl_optfield_bool(L, 2, "debug", 0);
        o.attach_console = ndl_optfield_bool(L, 2, "attach_console", 0);
        rc = nd_nitro_argv_run_enclave(ctx, &o, &a, &err);
    } else if (strcmp(kind, "describe-enclaves") == 0) {
        rc = nd_nitro_argv_describe_enclaves(ctx, &a, &err);
    } else if (strcmp(kind, "terminate-enclave") == 0) {
        const char *id = opt_str(L, "id");
        if (!id && !ndl_optfield_bool(L, 2, "all", 0))
            return ndl_fail(L, -EINVAL, "terminate-enclave: give id= or all=true");
        rc = nd_nitro_argv_terminate(ctx, id, &a, &err);
    } else if (strcmp(kind, "build-enclave") == 0) {
        rc = nd_nitro_argv_build_enclave(ctx, opt_str(L, "docker_uri"), opt_str(L, "docker_dir"), opt_str(L, "output"),
                                         &a, &err);
    } else if (strcmp(kind, "describe-eif") == 0) {
        rc = nd_nitro_argv_describe_eif(ctx, opt_str(L, "eif"), &a, &err);
    } else if (strcmp(kind, "console") == 0) {
        rc = nd_nitro_argv_console(ctx, opt_str(L, "id"), ndl_optfield_num(L, 2, "disconnect_timeout", 0), &a, &err);
    } else if (strcmp(kind, "explain") == 0) {
        rc = nd_nitro_argv_explain(ctx, opt_str(L, "code"), &a, &err);
    } else {
        return luaL_argerror(L, 1, "unknown nitro-cli subcommand");
    }
    if (rc < 0)
        return ndl_fail_err(L, &err);
    push_list(L, a.v, a.n);
    nd_nitro_argv_free(&a);
    return 1;
}

static int l_err_log_time(lua_State *L)
{
    char buf[128];
    if (nd_nitro_errlog_time(luaL_checkstring(L, 1), buf, sizeof buf) < 0)
        return 0;
    lua_pushstring(L, buf);
    return 1;
}

NDL_MODULE(nitrocli)
{
    static const luaL_Reg funcs[] = {{"parse_errors", l_parse_errors},     {"parse_err_log", l_parse_err_log},
                                     {"parse_log_line", l_parse_log_line}, {"parse_json", l_parse_json},
                                     {"argv", l_argv},                     {"err_log_time", l_err_log_time},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    lua_newtable(L); /* IOCTL: NE_ERR_* name -> nitro-cli's text */
    for (const nd_nitro_ioctl_text *d = nd_nitro_ioctl_texts; d->name; d++) {
        lua_pushstring(L, d->text);
        lua_setfield(L, -2, d->name);
    }
    lua_setfield(L, -2, "IOCTL");
    return 1;
}
