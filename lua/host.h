/*
 * host.h — the host object behind ndlua.h, for host.c, main.c and l_replc.c (the REPL line editor) only (bindings use ndlua.h).
 */
#ifndef ND_HOST_H
#define ND_HOST_H

#include "ndlua.h"
#include <uv.h>

typedef struct ndl_host {
    uv_loop_t loop;
    nd_ctx ctx;
    lua_State *L;
    int loop_depth;              /* > 0 while the loop runs (inside callbacks no one may run it again) */
    volatile int interrupted;    /* set by SIGINT in the REPL */
    int shutting_down;           /* ndl_host_close started: no more resumes */
} ndl_host;

int ndl_host_init(ndl_host *h);
void ndl_host_close(ndl_host *h);
ndl_host *ndl_host_of(lua_State *L);

/* Drives the loop while coroutine co is suspended in a wait; returns 0 when co finished or yielded for good,
 * -EDEADLK when co waits but nothing on the loop can wake it. */
int ndl_host_run(ndl_host *h, lua_State *co);

/* Runs the loop until at most max_live commands are left (bounded by timeout_ms), so that killed commands are
 * reaped; with kill, keeps killing the ones that are left. */
void ndl_host_settle(ndl_host *h, int max_live, unsigned timeout_ms, int kill);

void ndl_report_error(lua_State *L, const char *where, const char *msg);
int ndl_module_exists(const char *name);

#endif
