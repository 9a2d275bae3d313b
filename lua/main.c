/*
 * main.c — the nitrodiag program. It creates the host (host.c), then hands the command line to the Lua side
 * (lua/nd/cli.lua), which parses options, finds the runbook and runs it in a coroutine that this file drives on
 * the shared loop. When invoked under another name (the simulated host's `nitro-cli`, `systemctl`, … are links to
 * this binary) it runs that stand-in instead: see nd.sim.main.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <libgen.h>

/* Runs module.main(progname, args...) in a coroutine and drives the loop until it returns an exit status. */
static int run_lua_main(ndl_host *h, const char *module, const char *progname, int argc, char **argv)
{
    lua_State *L = h->L;
    lua_State *co = lua_newthread(L);
    int co_idx = lua_gettop(L);
    /* The coroutine may finish inside a loop callback that discards its return values, so the status travels
     * through a global instead. */
    static const char boot[] = "local mod, prog, args = ...\n"
                               "ND_EXIT_STATUS = require(mod).main(prog, args)\n";
    if (luaL_loadbufferx(co, boot, sizeof boot - 1, "=boot", "t") != LUA_OK) {
        fprintf(stderr, "nitrodiag: %s\n", lua_tostring(co, -1));
        return 3;
    }
    lua_pushstring(co, module);
    lua_pushstring(co, progname);
    lua_createtable(co, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(co, argv[i]);
        lua_rawseti(co, -2, i + 1);
    }
    int nres = 0;
    h->loop_depth++;
    int rc = lua_resume(co, L, 3, &nres);
    h->loop_depth--;
    if (rc == LUA_YIELD) {
        lua_pop(co, nres);
        if (ndl_host_run(h, co) == -EDEADLK) {
            fprintf(stderr, "nitrodiag: internal error: the command waits for something that cannot happen\n");
            return 3;
        }
        rc = lua_status(co);
        nres = lua_gettop(co);
    }
    int status = 3;
    if (rc == LUA_OK) {
        lua_getglobal(L, "ND_EXIT_STATUS");
        status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
    } else {
        luaL_traceback(L, co, lua_tostring(co, -1), 0);
        fprintf(stderr, "nitrodiag: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, co_idx - 1);
    return status;
}

/* The host lives for the whole process: its loop cannot be closed after lua_close (luv's close callbacks need the
 * state), so its memory stays owned here until exit rather than on main's stack. */
static ndl_host host;

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    int rc = ndl_host_init(&host);
    if (rc < 0) {
        fprintf(stderr, "nitrodiag: cannot start: %s\n", nd_err_str(rc));
        return 3;
    }
    char *name_copy = strdup(argv[0] ? argv[0] : "nitrodiag");
    const char *prog = basename(name_copy);
    int status;
    if (strncmp(prog, "nitrodiag", 9) == 0 || !ndl_module_exists("nd.sim.main"))
        status = run_lua_main(&host, "nd.cli", "nitrodiag", argc - 1, argv + 1);
    else
        status = run_lua_main(&host, "nd.sim.main", prog, argc - 1, argv + 1);
    free(name_copy);
    /* The result is decided and printed: a Ctrl-C or SIGTERM arriving now (a second Ctrl-C after an interrupted
     * run) must not turn that result into death by signal while the host is torn down. Blocked, it dies with us. */
    sigset_t quit;
    sigemptyset(&quit);
    sigaddset(&quit, SIGINT);
    sigaddset(&quit, SIGTERM);
    sigprocmask(SIG_BLOCK, &quit, NULL);
    fflush(stdout);
    ndl_host_close(&host);
    return status;
}
