/*
 * l_bundlec.c — `nd.bundlec`: the binding of the diagnostic bundle (core/bundle.c, core/collect.c, core/scrub.c).
 * Runbooks use `nd.bundle` (lua/nd/bundle.lua), which wraps this binding and keeps the policy in Lua: JSON encoding
 * through nd.json, report.md/summary.json rendered by nd.report and the manifest fields taken from a runbook result.
 * Here: marshalling only (add_json and finish/abort take JSON text, which jansson parses; _add_proc_result takes the
 * result of nd.proc, the one process runner, through which lua/nd/bundle.lua's add_command runs its commands).
 *
 *   local b = assert(bundle.open{ out_dir = "/tmp", runbook = "diag10", host = host.hostname() })
 *   b:add_file("nitro_enclaves.log.tail", "/var/log/nitro_enclaves/nitro_enclaves.log", { tail_lines = 1000 })
 *   b:add_glob("/var/log/nitro_enclaves/err*.log")
 *   b:add_command("describe_enclaves.json", { "nitro-cli", "describe-enclaves" }, { timeout = 10 })
 *   b:add_rule("customer%-%d+", "customer-[REDACTED]")
 *   local path, err = b:finish(result)          -- or b:abort("interrupted by SIGTERM", result)
 *
 * Every add_* returns the manifest entry of what it recorded (a table: name, status, error, bytes, sha256,
 * truncated, redactions, …) — a missing file is an entry with status "missing", not an error. They return
 * nil, msg, code only when the bundle itself cannot be written (full disk), after which finish() fails too and the
 * temporary file is removed. Bad arguments (a member name with "..") raise.
 *
 * add_command (lua/nd/bundle.lua) runs its command with nd.proc on the shared loop: cancelling the task (step timeout,
 * SIGINT/SIGTERM) kills the command's process group and records it as interrupted; finish()/abort() on a bundle with
 * commands still running records and cancels them first, so the archive is always consistent.
 *
 * __gc / __close of a bundle that was neither finished nor aborted discard it: the temporary file is removed, and no
 * file ever appears under the final name.
 */
#include "ndlua.h"
#include "nd_bundle.h"
#include "nd_tmp.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define BUNDLE_MT "nd.bundle"

/* A scrub rule written as a Lua pattern: matched by Lua's own string.gsub on a thread of its own (anchored in the
 * bundle's user value), which holds gsub, the pattern and the replacement at stack slots 1..3. */
typedef struct lrule {
    lua_State *T;
    const char *in; /* the line being scrubbed (for the protected call) */
    size_t len;
    struct lrule *next;
} lrule;

typedef struct lbundle {
    nd_bundle *b;
    char *path;  /* final path once finished */
    lrule *rules;  /* Lua-pattern scrub rules (the scrubber points at them until the bundle is freed) */
} lbundle;

static lbundle *check_bundle(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, BUNDLE_MT);
}

static lbundle *open_bundle(lua_State *L, int idx)
{
    lbundle *lb = check_bundle(L, idx);
    if (!lb->b || nd_bundle_closed(lb->b))
        luaL_error(L, "nd.bundle: the bundle is already finished or aborted");
    return lb;
}

/* Pushes the manifest entry last recorded (the last element of the artifacts array). */
static void push_last(lua_State *L, lbundle *lb)
{
    const json_t *arts = nd_bundle_artifacts(lb->b);
    size_t n = json_array_size(arts);
    if (n == 0) {
        lua_pushnil(L);
        return;
    }
    ndl_push_json(L, json_array_get(arts, n - 1));
}

static void read_collect_opts(lua_State *L, int idx, nd_collect_opts *o)
{
    memset(o, 0, sizeof *o);
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    double tl = ndl_optfield_num(L, idx, "tail_lines", 0);
    double tb = ndl_optfield_num(L, idx, "tail_bytes", 0);
    double cap = ndl_optfield_num(L, idx, "cap", 0);
    if (tl < 0 || tb < 0 || cap < 0)
        luaL_error(L, "nd.bundle: tail_lines, tail_bytes and cap must be >= 0");
    o->tail_lines = (uint64_t)tl;
    o->tail_bytes = (uint64_t)tb;
    o->cap = (uint64_t)cap;
}

/* Turns a core result into Lua results: the entry, or nil, msg, code (bundle broken), or raise (bad argument). */
static int add_result(lua_State *L, lbundle *lb, int rc, nd_err *err)
{
    if (rc == -EINVAL)
        return luaL_error(L, "nd.bundle: %s", err->msg);
    if (rc < 0)
        return ndl_fail_err(L, err);
    push_last(L, lb);
    return 1;
}

/* bundle.open{ out_dir=, runbook=, host= } -> b | nil, msg, code */
static int l_open(lua_State *L)
{
    nd_bundle_opts o = {0};
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        o.out_dir = ndl_optfield_str(L, 1, "out_dir", NULL);
        o.runbook = ndl_optfield_str(L, 1, "runbook", NULL);
        o.host = ndl_optfield_str(L, 1, "host", NULL);
        o.sign_key = ndl_optfield_str(L, 1, "sign_key", NULL);
    }
    lbundle *lb = lua_newuserdatauv(L, sizeof *lb, 1);
    memset(lb, 0, sizeof *lb);
    luaL_setmetatable(L, BUNDLE_MT);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_bundle_open(ndl_ctx(L), &o, &lb->b, &err);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    return 1;
}

/* b:add_file(name|nil, host_path, {tail_lines=, tail_bytes=, cap=}) -> entry */
static int b_add_file(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    const char *name = luaL_optstring(L, 2, NULL);
    const char *path = luaL_checkstring(L, 3);
    nd_collect_opts o;
    read_collect_opts(L, 4, &o);
    nd_err err;
    nd_err_clear(&err);
    return add_result(L, lb, nd_bundle_add_file(lb->b, name, path, &o, &err), &err);
}

/* b:add_glob(pattern, {prefix=, tail_lines=, tail_bytes=, cap=}) -> list of entries */
static int b_add_glob(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    const char *pattern = luaL_checkstring(L, 2);
    nd_collect_opts o;
    read_collect_opts(L, 3, &o);
    const char *prefix = lua_istable(L, 3) ? ndl_optfield_str(L, 3, "prefix", NULL) : NULL;
    size_t before = json_array_size(nd_bundle_artifacts(lb->b));
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_bundle_add_glob(lb->b, pattern, prefix, &o, &err);
    if (rc == -EINVAL)
        return luaL_error(L, "nd.bundle: %s", err.msg);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    const json_t *arts = nd_bundle_artifacts(lb->b);
    lua_newtable(L);
    for (size_t i = before; i < json_array_size(arts); i++) {
        ndl_push_json(L, json_array_get(arts, i));
        lua_rawseti(L, -2, (lua_Integer)(i - before + 1));
    }
    return 1;
}

/* An optional {kind=, source=} table at idx overrides the member's manifest fields. */
static void opt_meta(lua_State *L, int idx, nd_bundle_meta *m)
{
    if (!lua_istable(L, idx))
        return;
    const char *k = ndl_optfield_str(L, idx, "kind", NULL), *src = ndl_optfield_str(L, idx, "source", NULL);
    if (k)
        m->kind = k;
    if (src)
        m->source = src;
}

/* b:add_string(name, text) -> entry */
static int b_add_string(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    const char *name = luaL_checkstring(L, 2);
    size_t len;
    const char *text = luaL_checklstring(L, 3, &len);
    nd_bundle_meta m = {.kind = "string", .source = "lua"};
    opt_meta(L, 4, &m);
    nd_err err;
    nd_err_clear(&err);
    return add_result(L, lb, nd_bundle_add_data(lb->b, name, text, len, &m, &err), &err);
}

/* Parses the JSON text at idx (made by nd.json in lua/nd/bundle.lua); raises when it is not JSON. */
static json_t *to_json(lua_State *L, int idx)
{
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    json_error_t je;
    json_t *v = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!v)
        luaL_error(L, "nd.bundle: cannot encode the value as JSON: %s", je.text);
    return v;
}

/* b:add_json(name, json_text [, {kind=, source=}]) -> entry */
static int b_add_json(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    const char *name = luaL_checkstring(L, 2);
    nd_bundle_meta m = {.kind = "json", .source = "lua"};
    opt_meta(L, 4, &m); /* before the JSON is parsed: a bad option raises with nothing to free */
    json_t *v = to_json(L, 3);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_bundle_add_json(lb->b, name, v, &m, &err);
    json_decref(v);
    return add_result(L, lb, rc, &err);
}

/* b:record(name, {status=, error=, kind=, source=, started_at=}) -> entry   (an item with no member: not collected, and why) */
static int b_record(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const names[] = {"ok", "missing", "denied", "timeout", "error", "skipped", NULL};
    lua_getfield(L, 3, "status");
    int st = luaL_checkoption(L, -1, "error", names);
    lua_pop(L, 1);
    nd_bundle_meta m = {.kind = ndl_optfield_str(L, 3, "kind", NULL), .source = ndl_optfield_str(L, 3, "source", NULL),
                        .status = (nd_collect_status)st, .error = ndl_optfield_str(L, 3, "error", NULL),
                        .started_at = ndl_optfield_num(L, 3, "started_at", 0)};
    nd_err err;
    nd_err_clear(&err);
    return add_result(L, lb, nd_bundle_record(lb->b, name, &m, &err), &err);
}

/* ---- commands ------------------------------------------------------------------------------------------------ */

/* Reads the stream `name` of an nd.proc result table (its text, truncated and byte-count fields) into *st, borrowing
 * the text (the table at idx keeps it alive). */
static void read_stream(lua_State *L, int idx, const char *name, nd_proc_stream *st)
{
    char key[32];
    st->data = (char *)ndl_optfield_str(L, idx, name, &st->len);
    snprintf(key, sizeof key, "%s_truncated", name);
    st->truncated = ndl_optfield_bool(L, idx, key, 0);
    snprintf(key, sizeof key, "%s_bytes", name);
    double total = ndl_optfield_num(L, idx, key, (double)st->len);
    st->total = total > (double)st->len ? (size_t)total : st->len;
}

/* b:_add_proc_result(name, argv, started_at, lines, result | nil, code [, interrupted]) -> entry | nil, msg, code
 * result is what nd.proc's wait returned; nil with code (the errno name) when the command never started. With
 * interrupted (why), result is what the command printed before it was interrupted (nd.proc's handle:output()). The
 * commands themselves are run by lua/nd/bundle.lua (add_command). A bundle closed meanwhile gives ECANCELED. */
static int b_add_proc_result(lua_State *L)
{
    lua_settop(L, 8); /* the argv vector below goes on top of the arguments */
    lbundle *lb = check_bundle(L, 1);
    const char *name = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    double started_at = luaL_checknumber(L, 4);
    lua_Integer lines = luaL_optinteger(L, 5, 0);
    int n = (int)lua_rawlen(L, 3);
    if (n < 1)
        return luaL_error(L, "nd.bundle: add_command needs a non-empty argv table");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 3, i);
        argv[i - 1] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the argv table keeps the string alive */
        if (!argv[i - 1])
            return luaL_error(L, "nd.bundle: argv[%d] is not a string", i);
    }
    argv[n] = NULL;
    if (!lb->b || nd_bundle_closed(lb->b))
        return ndl_fail(L, -ECANCELED, "interrupted: the bundle was closed before the command finished");
    nd_proc_result res;
    memset(&res, 0, sizeof res);
    if (lua_istable(L, 6)) {
        res.exit_code = (int)ndl_optfield_num(L, 6, "exit_code", -1);
        res.term_signal = (int)ndl_optfield_num(L, 6, "signal", 0);
        res.timed_out = ndl_optfield_bool(L, 6, "timed_out", 0);
        res.cancelled = ndl_optfield_bool(L, 6, "cancelled", 0);
        res.pid = (int)ndl_optfield_num(L, 6, "pid", 0);
        res.duration_s = ndl_optfield_num(L, 6, "duration", 0);
        read_stream(L, 6, "stdout", &res.out);
        read_stream(L, 6, "stderr", &res.err);
    } else {
        res.exit_code = -1;
        res.spawn_error = nd_err_code(luaL_optstring(L, 7, NULL));
        if (res.spawn_error == 0)
            res.spawn_error = -EIO;
    }
    const char *why = luaL_optstring(L, 8, NULL);
    nd_err err;
    nd_err_clear(&err);
    uint64_t keep = lines > 0 ? (uint64_t)lines : 0;
    int rc = why ? nd_bundle_add_proc_partial(lb->b, name, argv, &res, started_at, keep, why, &err)
                 : nd_bundle_add_proc_result(lb->b, name, argv, &res, started_at, keep, &err);
    return add_result(L, lb, rc, &err);
}

/* ---- rules --------------------------------------------------------------------------------------------------- */

/* In the rule's thread: gsub(line, pattern, replacement) -> text, count (protected: the line is pushed here). */
static int lua_rule_call(lua_State *T)
{
    lrule *r = lua_touserdata(T, 1);
    lua_pushvalue(T, lua_upvalueindex(1));
    lua_pushlstring(T, r->in, r->len);
    lua_pushvalue(T, lua_upvalueindex(2));
    lua_pushvalue(T, lua_upvalueindex(3));
    lua_call(T, 3, 2);
    return 2;
}

/* nd_scrub_line_fn of a Lua-pattern rule: the rewritten line stays on the thread's stack until the next call. */
static int lua_rule_line(void *ud, const char *in, size_t len, const char **out, size_t *outlen)
{
    lrule *r = ud;
    lua_State *T = r->T;
    lua_settop(T, 1); /* slot 1: the protected caller (a closure over gsub, pattern, replacement) */
    r->in = in;
    r->len = len;
    lua_pushvalue(T, 1);
    lua_pushlightuserdata(T, r);
    if (lua_pcall(T, 1, 2, 0) != LUA_OK) {
        lua_settop(T, 1);
        return -ENOMEM;
    }
    lua_Integer n = lua_tointeger(T, -1);
    if (n <= 0)
        return 0;
    *out = lua_tolstring(T, -2, outlen);
    return n > INT_MAX ? INT_MAX : (int)n;
}

/* Adds a Lua-pattern rule matched by Lua itself (so '-' is lazy, %b and %f work); raises on a malformed pattern or
 * replacement. */
static void add_lua_rule(lua_State *L, lbundle *lb, const char *name, int pidx, int ridx)
{
    const char *repl = lua_tostring(L, ridx);
    for (const char *q = repl; *q; q++) {
        if (*q == '%') {
            q++;
            if (!(*q == '%' || (*q >= '0' && *q <= '9')))
                luaL_error(L, "nd.bundle: invalid use of '%%' in the replacement (%%0..%%9 or %%%%)");
        }
    }
    /* the pattern is checked by Lua on an empty subject (a malformed one raises "malformed pattern …") */
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "gsub");
    lua_remove(L, -2);
    int gidx = lua_gettop(L);
    lua_pushvalue(L, gidx);
    lua_pushliteral(L, "");
    lua_pushvalue(L, pidx);
    lua_pushvalue(L, ridx);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        luaL_error(L, "nd.bundle: %s", lua_tostring(L, -1));
    lrule *r = calloc(1, sizeof *r);
    if (!r)
        luaL_error(L, "nd.bundle: out of memory");
    r->next = lb->rules;
    lb->rules = r;
    if (lua_getiuservalue(L, 1, 1) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, 1);
    }
    r->T = lua_newthread(L);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1); /* anchored by the bundle */
    lua_pop(L, 1);
    lua_pushvalue(L, gidx);
    lua_pushvalue(L, pidx);
    lua_pushvalue(L, ridx);
    lua_pushcclosure(L, lua_rule_call, 3);
    lua_xmove(L, r->T, 1);
    lua_pop(L, 1); /* gsub */
    nd_err err;
    nd_err_clear(&err);
    if (nd_scrub_add_rule_fn(nd_bundle_scrubber(lb->b), name, lua_rule_line, r, &err) < 0)
        luaL_error(L, "nd.bundle: %s", err.msg);
}

/* b:add_rule(pattern, replacement [, {regex=false, name="custom", icase=false}]) -> true
 * pattern is a Lua pattern matched by Lua (string.gsub, %1..%9 in the replacement), or a POSIX ERE when opts.regex
 * or it starts with "re:" (\1..\9). Raises on a malformed pattern. */
static int b_add_rule(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    luaL_checkstring(L, 2);
    if (lua_isnoneornil(L, 3)) {
        lua_settop(L, 4);
        lua_pushliteral(L, "[REDACTED]");
        lua_replace(L, 3);
    }
    const char *repl = luaL_checkstring(L, 3);
    const char *pat = lua_tostring(L, 2);
    bool regex = false, icase = false;
    const char *name = "custom";
    if (lua_istable(L, 4)) {
        regex = ndl_optfield_bool(L, 4, "regex", 0);
        icase = ndl_optfield_bool(L, 4, "icase", 0);
        const char *nm = ndl_optfield_str(L, 4, "name", NULL);
        if (nm)
            name = nm;
    }
    if (strncmp(pat, "re:", 3) == 0) {
        regex = true;
        pat += 3;
    }
    if (!pat[0])
        return luaL_error(L, "nd.bundle: empty scrub pattern");
    if (!regex) {
        if (icase)
            return luaL_error(L, "nd.bundle: icase needs a regular expression (regex = true or \"re:\")");
        add_lua_rule(L, lb, name, 2, 3);
        lua_pushboolean(L, 1);
        return 1;
    }
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_scrub_add_rule(nd_bundle_scrubber(lb->b), name, pat, repl, icase, &err);
    if (rc < 0)
        return luaL_error(L, "nd.bundle: %s", err.msg);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- finish / abort ------------------------------------------------------------------------------------------ */

/* b:_state() -> "open" | "broken" (open, but a write failed: finish will fail) | "closed" (finished, aborted, closed).
 * lua/nd/bundle.lua stops its commands and adds the reports only to an open bundle. */
static int b_state(lua_State *L)
{
    lbundle *lb = check_bundle(L, 1);
    if (!lb->b || nd_bundle_closed(lb->b))
        lua_pushliteral(L, "closed");
    else if (nd_bundle_error(lb->b)->code)
        lua_pushliteral(L, "broken");
    else
        lua_pushliteral(L, "open");
    return 1;
}

/* b:_topdir() -> the directory every member is under */
static int b_topdir(lua_State *L)
{
    lbundle *lb = open_bundle(L, 1);
    lua_pushstring(L, nd_bundle_topdir(lb->b));
    return 1;
}

/* Finishes with the manifest fields in the JSON object text at xidx (or none). */
static int do_finish(lua_State *L, int xidx)
{
    lbundle *lb = check_bundle(L, 1);
    if (!lb->b)
        return ndl_fail(L, -EBADF, "nd.bundle: the bundle is closed");
    if (nd_bundle_closed(lb->b)) {
        if (lb->path) {
            lua_pushstring(L, lb->path);
            return 1;
        }
        return ndl_fail(L, -EALREADY, "nd.bundle: the bundle was already finished or aborted");
    }
    json_t *extra = lua_isnoneornil(L, xidx) ? NULL : to_json(L, xidx);
    if (extra && !json_is_object(extra)) {
        json_decref(extra);
        return luaL_error(L, "nd.bundle: the manifest fields must be a JSON object");
    }
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_bundle_finish(lb->b, extra, &err);
    json_decref(extra);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    lb->path = strdup(nd_bundle_path(lb->b));
    lua_pushstring(L, nd_bundle_path(lb->b));
    return 1;
}

/* b:finish([fields_json]) -> path | nil, msg, code */
static int b_finish(lua_State *L)
{
    check_bundle(L, 1);
    return do_finish(L, 2);
}

/* b:abort(reason, [fields_json]) -> path | nil, msg, code   (a valid bundle marked interrupted) */
static int b_abort(lua_State *L)
{
    check_bundle(L, 1);
    luaL_optstring(L, 2, "aborted"); /* the reason is in the manifest fields (lua/nd/bundle.lua) */
    return do_finish(L, 3);
}

/* b:path() -> the final path (the file exists only after finish/abort succeeded) */
static int b_path(lua_State *L)
{
    lbundle *lb = check_bundle(L, 1);
    if (lb->path)
        lua_pushstring(L, lb->path);
    else if (lb->b)
        lua_pushstring(L, nd_bundle_path(lb->b));
    else
        lua_pushnil(L);
    return 1;
}

/* b:entries() -> the manifest entries recorded so far */
static int b_entries(lua_State *L)
{
    lbundle *lb = check_bundle(L, 1);
    if (!lb->b) {
        lua_newtable(L);
        return 1;
    }
    ndl_push_json(L, nd_bundle_artifacts(lb->b));
    return 1;
}

static int b_gc(lua_State *L)
{
    lbundle *lb = check_bundle(L, 1);
    if (lb->b) {
        nd_bundle_free(lb->b); /* discards (removes the temporary file) unless finished */
        lb->b = NULL;
    }
    while (lb->rules) {
        lrule *r = lb->rules;
        lb->rules = r->next;
        free(r);
    }
    free(lb->path);
    lb->path = NULL;
    return 0;
}

static int b_tostring(lua_State *L)
{
    lbundle *lb = check_bundle(L, 1);
    const char *state = !lb->b ? "closed" : lb->path ? "finished" : nd_bundle_closed(lb->b) ? "failed" : "open";
    lua_pushfstring(L, "nd.bundle(%s, %s)", lb->path ? lb->path : lb->b ? nd_bundle_path(lb->b) : "?", state);
    return 1;
}

/* ---- reading ------------------------------------------------------------------------------------------------- */

static void problem_cb(void *ud, const char *name, const char *problem)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 2);
    ndl_setstr(L, "name", name);
    ndl_setstr(L, "problem", problem);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* Pushes the signature table: { present, algorithm, key_id, verified = true|false|nil, problem }. */
static void push_signature(lua_State *L, const nd_bundle_contents *c, const char *key_path)
{
    lua_createtable(L, 0, 5);
    ndl_setbool(L, "present", c->signature != NULL);
    if (c->signature) {
        json_t *j = json_loads(c->signature, 0, NULL);
        ndl_setstr(L, "algorithm", json_string_value(json_object_get(j, "algorithm")));
        ndl_setstr(L, "key_id", json_string_value(json_object_get(j, "key_id")));
        json_decref(j);
    }
    if (!key_path)
        return;
    nd_err err;
    nd_err_clear(&err);
    char desc[128];
    int rc = nd_bundle_check_signature(c, key_path, desc, sizeof desc, &err);
    ndl_setbool(L, "verified", rc == 0);
    if (rc < 0)
        ndl_setstr(L, "problem", err.msg);
}

/* bundle.read(path [, {key = FILE}]) -> { members = {{name, size, sha256}}, topdir, manifest, summary, report,
 *     verified = n, problems = {{name, problem}}, partial, partial_reason,
 *     signature = {present, algorithm, key_id, verified, problem} } | nil, msg, code
 * With key, the signature is checked (verified = true/false); without, verified is nil. */
static int l_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *key_path = lua_istable(L, 2) ? ndl_optfield_str(L, 2, "key", NULL) : NULL;
    nd_bundle_contents c;
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_bundle_read(path, &c, &err);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, 0, 8);
    lua_createtable(L, (int)c.nmembers, 0);
    for (size_t i = 0; i < c.nmembers; i++) {
        lua_createtable(L, 0, 3);
        ndl_setstr(L, "name", c.members[i].name);
        ndl_setint(L, "size", (lua_Integer)c.members[i].size);
        ndl_setstr(L, "sha256", c.members[i].sha256);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "members");
    ndl_setstr(L, "topdir", c.topdir);
    if (c.manifest) {
        ndl_push_json(L, c.manifest);
        lua_setfield(L, -2, "manifest");
    }
    if (c.summary) {
        ndl_push_json(L, c.summary);
        lua_setfield(L, -2, "summary");
    }
    ndl_setstr(L, "report", c.report);
    lua_newtable(L);
    size_t checked = 0;
    nd_err verr;
    nd_err_clear(&verr);
    rc = nd_bundle_verify(&c, problem_cb, L, &checked, &verr);
    if (rc < 0) {
        lua_createtable(L, 0, 2);
        ndl_setstr(L, "name", "manifest.json");
        ndl_setstr(L, "problem", verr.msg);
        lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    }
    lua_setfield(L, -2, "problems");
    ndl_setint(L, "verified", (lua_Integer)checked);
    ndl_setbool(L, "partial", c.partial);
    push_signature(L, &c, key_path);
    lua_setfield(L, -2, "signature");
    ndl_setstr(L, "partial_reason", c.partial_reason);
    nd_bundle_contents_free(&c);
    return 1;
}

static void sweep_cb(void *ud, const char *path, const char *action, const char *detail)
{
    lua_State *L = ud;
    lua_createtable(L, 0, 3);
    ndl_setstr(L, "path", path);
    ndl_setstr(L, "action", action);
    if (detail && detail[0])
        ndl_setstr(L, "detail", detail);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* bundle.sweep(dir) -> { {path, action = "removed"|"salvaged"|"failed", detail} } | nil, msg, code
 * (core/nd_tmp.h: the stale temporaries of killed runs in dir) */
static int l_sweep(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    lua_newtable(L);
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_tmp_sweep(dir, sweep_cb, L, &err);
    if (rc < 0)
        return ndl_fail_err(L, &err);
    return 1;
}

/* bundle.scrub(text [, rules]) -> scrubbed, count, counts_by_rule   (the built-in rules, for tests and tooling) */
static int l_scrub(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    nd_err err;
    nd_scrub *s = nd_scrub_new(&err);
    if (!s)
        return ndl_fail_err(L, &err);
    char *out = NULL;
    size_t olen = 0;
    int n = nd_scrub_buffer(s, text, len, &out, &olen);
    if (n < 0) {
        nd_scrub_free(s);
        return ndl_fail(L, n, NULL);
    }
    lua_pushlstring(L, out, olen);
    lua_pushinteger(L, n);
    json_t *c = nd_scrub_counts(s);
    ndl_push_json(L, c);
    json_decref(c);
    free(out);
    nd_scrub_free(s);
    return 3;
}

NDL_MODULE(bundlec)
{
    static const luaL_Reg methods[] = {
        {"add_file", b_add_file},       {"add_glob", b_add_glob},   {"_add_proc_result", b_add_proc_result},
        {"add_string", b_add_string},   {"add_json", b_add_json},   {"add_rule", b_add_rule},
        {"finish", b_finish},
        {"abort", b_abort},             {"path", b_path},           {"entries", b_entries},
        {"close", b_gc},                {"record", b_record},       {"_state", b_state},
        {"_topdir", b_topdir},          {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", b_gc}, {"__close", b_gc}, {"__tostring", b_tostring}, {NULL, NULL}};
    ndl_newclass(L, BUNDLE_MT, methods, meta);
    static const luaL_Reg funcs[] = {{"open", l_open}, {"read", l_read}, {"scrub", l_scrub}, {"sweep", l_sweep},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    luaL_getmetatable(L, BUNDLE_MT);
    lua_getfield(L, -1, "__index");
    lua_setfield(L, -3, "_methods"); /* lua/nd/bundle.lua wraps add_json, finish and abort here */
    lua_pop(L, 1);
    return 1;
}
