/*
 * l_proc.c — `nd.proc`: the process runner (core/proc.c) for Lua. The model binding: a userdata that owns a core
 * object, __gc/__close that release it, and ndl_await for waiting.
 *
 *   local r, err, code = proc.run{ "nitro-cli", "describe-enclaves", timeout = 10 }
 *   local h <close> = proc.start{ "nitro-cli", "console", "--enclave-id", id,
 *                                 on_line = function(stream, line) ... end }
 *   ... h:wait() / h:signal("TERM") / h:cancel() / h:output() (what it printed so far)
 *
 * Options: argv in the array part; env (table name→value, replaces the environment; nil inherits), cwd, stdin
 * (string), timeout (s), kill_grace (s), cap (bytes kept per stream), on_data(stream, chunk) (output as read,
 * not split), on_line(stream, line) with stream
 * "stdout"|"stderr". The result: {exit_code, signal, timed_out, cancelled, pid, duration, stdout, stderr,
 * stdout_truncated, stderr_truncated, stdout_bytes, stderr_bytes, status (one line: "exit 0", "timed out after 1.0 s")}.
 * A command that cannot start returns nil, "command not found: x" | "permission denied: x", "ENOENT" | "EACCES".
 */
#include "ndlua.h"
#include "nd_proc.h"

#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define PROC_MT "nd.proc.handle"

typedef struct lproc {
    nd_proc *p;
    ndl_wait wait;
    lua_State *L;   /* main state, for on_line callbacks */
    int on_line_ref;
    int on_data_ref;
    int done;
    int waiting;
    char *argv0;
    nd_proc_result res;
} lproc;

static void call_stream_cb(lproc *lp, int ref, int stream, const char *line, size_t len)
{
    lua_State *L = lp->L;
    if (ref == LUA_NOREF)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushstring(L, stream == ND_PROC_STDOUT ? "stdout" : "stderr");
    lua_pushlstring(L, line, len);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        fprintf(stderr, "nitrodiag: error in %s callback: %s\n", ref == lp->on_line_ref ? "on_line" : "on_data",
                lua_tostring(L, -1));
        lua_pop(L, 1);
    }
}

static void on_line(void *ud, int stream, const char *line, size_t len)
{
    lproc *lp = ud;
    call_stream_cb(lp, lp->on_line_ref, stream, line, len);
}

static void on_data(void *ud, int stream, const char *data, size_t len)
{
    lproc *lp = ud;
    call_stream_cb(lp, lp->on_data_ref, stream, data, len);
}

static void on_done(nd_proc *p, void *ud)
{
    lproc *lp = ud;
    nd_proc_take_result(p, &lp->res);
    nd_proc_free(p);
    lp->p = NULL;
    lp->done = 1;
    if (lp->waiting)
        ndl_wait_done(&lp->wait);
}

static void lproc_release(lua_State *L, lproc *lp)
{
    if (lp->p) {
        nd_proc_free(lp->p); /* kills the whole group if still running; no callback after this */
        lp->p = NULL;
    }
    if (lp->waiting)
        ndl_wait_cancel(L, &lp->wait);
    lp->waiting = 0;
    if (lp->on_line_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, lp->on_line_ref);
        lp->on_line_ref = LUA_NOREF;
    }
    if (lp->on_data_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, lp->on_data_ref);
        lp->on_data_ref = LUA_NOREF;
    }
    nd_proc_result_free(&lp->res);
    free(lp->argv0);
    lp->argv0 = NULL;
}

static int lproc_gc(lua_State *L)
{
    lproc_release(L, luaL_checkudata(L, 1, PROC_MT));
    return 0;
}

static void push_result_of(lua_State *L, const nd_proc_result *r, const char *argv0)
{
    char buf[512];
    lua_createtable(L, 0, 14);
    ndl_setint(L, "exit_code", r->exit_code);
    if (r->term_signal) {
        ndl_setint(L, "signal", r->term_signal);
        ndl_setstr(L, "signal_name", sigabbrev_np(r->term_signal));
    }
    ndl_setbool(L, "timed_out", r->timed_out);
    ndl_setbool(L, "cancelled", r->cancelled);
    ndl_setint(L, "pid", r->pid);
    ndl_setnum(L, "duration", r->duration_s);
    ndl_setlstr(L, "stdout", r->out.data, r->out.len);
    ndl_setlstr(L, "stderr", r->err.data, r->err.len);
    ndl_setbool(L, "stdout_truncated", r->out.truncated);
    ndl_setbool(L, "stderr_truncated", r->err.truncated);
    ndl_setint(L, "stdout_bytes", (lua_Integer)r->out.total);
    ndl_setint(L, "stderr_bytes", (lua_Integer)r->err.total);
    ndl_setstr(L, "status", nd_proc_describe(r, argv0, buf, sizeof buf));
}

static void push_result(lua_State *L, lproc *lp)
{
    push_result_of(L, &lp->res, lp->argv0);
}

/* Pushes the results of a finished command: the table, or nil, msg, code when it never started. */
static int finish(lua_State *L, lproc *lp)
{
    if (lp->res.spawn_error) {
        char buf[512];
        return ndl_fail(L, lp->res.spawn_error, nd_proc_describe(&lp->res, lp->argv0, buf, sizeof buf));
    }
    push_result(L, lp);
    return 1;
}

static int wait_k(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    lproc *lp = (lproc *)kctx;
    lp->waiting = 0;
    return finish(L, lp);
}

/* Builds argv/env from the options table at idx and starts the command. Leaves the handle on the stack. */
static lproc *start(lua_State *L, int idx)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_rawlen(L, idx);
    if (n < 1)
        luaL_error(L, "nd.proc: the command is empty (argv goes in the array part: {\"nitro-cli\", \"describe-enclaves\"})");
    const char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0); /* freed by GC */
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        argv[i - 1] = lua_tostring(L, -1);
        if (!argv[i - 1])
            luaL_error(L, "nd.proc: argv[%d] is not a string", i);
        lua_pop(L, 1); /* the table keeps the string alive */
    }
    argv[n] = NULL;

    /* env strings only need to live until nd_proc_start returns (uv_spawn execs at once): anchor them in a table
     * on this function's stack. */
    const char **env = NULL;
    lua_getfield(L, idx, "env");
    if (lua_istable(L, -1)) {
        int envt = lua_gettop(L);
        int cnt = 0;
        lua_pushnil(L);
        while (lua_next(L, envt)) {
            cnt++;
            lua_pop(L, 1);
        }
        env = lua_newuserdatauv(L, sizeof(char *) * (size_t)(cnt + 1), 0);
        lua_newtable(L); /* anchor */
        int anchor = lua_gettop(L);
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, envt)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                const char *v = luaL_tolstring(L, -1, NULL);
                const char *kv = lua_pushfstring(L, "%s=%s", lua_tostring(L, -3), v);
                env[i++] = kv;
                lua_rawseti(L, anchor, i);
                lua_pop(L, 1); /* tolstring result */
            }
            lua_pop(L, 1);
        }
        env[i] = NULL;
    }

    nd_proc_opts o;
    memset(&o, 0, sizeof o);
    o.argv = argv;
    o.env = env;
    o.cwd = ndl_optfield_str(L, idx, "cwd", NULL);
    o.stdin_data = ndl_optfield_str(L, idx, "stdin", &o.stdin_len);
    o.timeout_s = ndl_optfield_num(L, idx, "timeout", 0);
    o.kill_grace_s = ndl_optfield_num(L, idx, "kill_grace", 0);
    o.capture_cap = (size_t)ndl_optfield_num(L, idx, "cap", 0);

    lproc *lp = lua_newuserdatauv(L, sizeof *lp, 0);
    memset(lp, 0, sizeof *lp);
    lp->on_line_ref = LUA_NOREF;
    lp->on_data_ref = LUA_NOREF;
    lp->wait.co_ref = LUA_NOREF;
    lp->L = ndl_host_main(L);
    luaL_setmetatable(L, PROC_MT);
    lp->argv0 = strdup(argv[0]);
    lua_getfield(L, idx, "on_line");
    if (lua_isfunction(L, -1)) {
        lp->on_line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        o.on_line = on_line;
        o.line_ud = lp;
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, idx, "on_data");
    if (lua_isfunction(L, -1)) {
        lp->on_data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        o.on_data = on_data;
        o.line_ud = lp;
    } else {
        lua_pop(L, 1);
    }
    nd_err err;
    nd_err_clear(&err);
    int rc = nd_proc_start(ndl_ctx(L), &o, on_done, lp, &lp->p, &err);
    if (rc < 0)
        luaL_error(L, "nd.proc: %s", err.msg);
    return lp;
}

/* proc.run(opts) -> result | nil, msg, code */
static int l_run(lua_State *L)
{
    lproc *lp = start(L, 1);
    lua_toclose(L, -1); /* closing the coroutine while it waits kills the command */
    if (lp->done)
        return finish(L, lp);
    lp->waiting = 1;
    return ndl_await(L, &lp->wait, wait_k, (lua_KContext)lp);
}

/* proc.start(opts) -> handle */
static int l_start(lua_State *L)
{
    start(L, 1);
    return 1;
}

/* handle:wait() -> result | nil, msg, code */
static int h_wait(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    if (lp->done)
        return finish(L, lp);
    if (!lp->p)
        return ndl_fail(L, -EBADF, "nd.proc: handle is closed");
    if (lp->waiting)
        return luaL_error(L, "nd.proc: another coroutine is already waiting for this command");
    lp->waiting = 1;
    return ndl_await(L, &lp->wait, wait_k, (lua_KContext)lp);
}

static int signal_number(lua_State *L, int idx)
{
    if (lua_isinteger(L, idx))
        return (int)lua_tointeger(L, idx);
    const char *s = luaL_optstring(L, idx, "TERM");
    if (strncmp(s, "SIG", 3) == 0)
        s += 3;
    static const struct { const char *n; int v; } sigs[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
        {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP}, {"CONT", SIGCONT}};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (strcmp(s, sigs[i].n) == 0)
            return sigs[i].v;
    return luaL_argerror(L, idx, "unknown signal name");
}

/* handle:signal([sig]) -> true | nil, msg, code   (to the whole process group) */
static int h_signal(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    int sig = signal_number(L, 2);
    if (!lp->p)
        return ndl_fail(L, -ESRCH, "the command has already ended");
    int rc = nd_proc_signal(lp->p, sig);
    if (rc < 0)
        return ndl_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* handle:cancel(): SIGTERM, then SIGKILL after the grace period. */
static int h_cancel(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    if (lp->p)
        nd_proc_cancel(lp->p);
    return 0;
}

/* handle:output() -> what the command printed so far: the result table's stdout, stderr, *_bytes, *_truncated, pid
 * and duration (running = true while it runs; the exit fields say nothing then); the result once it is done. */
static int h_output(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    if (!lp->p) {
        if (!lp->done)
            return ndl_fail(L, -EBADF, "nd.proc: handle is closed");
        push_result(L, lp);
        ndl_setbool(L, "running", 0);
        return 1;
    }
    nd_proc_result r;
    int rc = nd_proc_peek(lp->p, &r);
    if (rc < 0)
        return ndl_fail(L, rc, "nd.proc: out of memory");
    push_result_of(L, &r, lp->argv0);
    ndl_setbool(L, "running", !lp->done);
    if (!lp->done)
        ndl_setstr(L, "status", "running");
    nd_proc_result_free(&r);
    return 1;
}

static int h_index_pid(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    lua_pushinteger(L, lp->p ? nd_proc_result_of(lp->p)->pid : lp->res.pid);
    return 1;
}

static int h_running(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    lua_pushboolean(L, lp->p != NULL && !lp->done);
    return 1;
}

static int h_tostring(lua_State *L)
{
    lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    lua_pushfstring(L, "nd.proc(%s, %s)", lp->argv0 ? lp->argv0 : "?", lp->done ? "done" : lp->p ? "running" : "closed");
    return 1;
}

NDL_MODULE(proc)
{
    static const luaL_Reg methods[] = {{"wait", h_wait},     {"signal", h_signal}, {"cancel", h_cancel},
                                       {"pid", h_index_pid}, {"running", h_running}, {"close", lproc_gc},
                                       {"output", h_output},
                                       {NULL, NULL}};
    static const luaL_Reg meta[] = {{"__gc", lproc_gc}, {"__close", lproc_gc}, {"__tostring", h_tostring}, {NULL, NULL}};
    ndl_newclass(L, PROC_MT, methods, meta);
    static const luaL_Reg funcs[] = {{"run", l_run}, {"start", l_start}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
