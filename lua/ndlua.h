/*
 * ndlua.h — what every Lua binding in lua/l_<name>.c uses. Each such file defines
 *     int luaopen_nd_<name>(lua_State *L);
 * (write it as NDL_MODULE(<name>) { … }) and the build registers it as `require "nd.<name>"` (see lua/CMakeLists.txt: no list to edit).
 *
 * Conventions:
 *  - Expected failures return nil, message, code (code is the errno-style name: "ENOENT", "ETIMEDOUT", "EBADMSG").
 *    Programming errors (wrong argument types) raise through luaL_argerror/luaL_error.
 *  - Objects that own resources are full userdata with a named metatable (ndl_newclass) that has __gc and __close
 *    on the same function, __tostring, and methods in __index. Create them "closed" first, then open the resource.
 *  - Asynchronous work (a process, a socket, an HTTP call) uses ndl_await: inside a coroutine the caller yields and
 *    the loop resumes it from the completion callback; on the main thread (no coroutine) the loop is run until the
 *    operation completes. The binding keeps its request object on the Lua stack as a to-be-closed value
 *    (lua_toclose) before it awaits, so closing the coroutine (a step timeout, Ctrl-C in the REPL) runs __close,
 *    which must cancel the operation (kill the process, close the socket) and guarantee no later callback.
 */
#ifndef NDLUA_H
#define NDLUA_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "nd.h"

/* Opens the definition of a binding's entry point: `NDL_MODULE(proc) { ... return 1; }` is require "nd.proc". */
#define NDL_MODULE(name)                   \
    int luaopen_nd_##name(lua_State *L); \
    int luaopen_nd_##name(lua_State *L)

/* The context object of this Lua host (loop, --root, nitro-cli path). Never NULL inside nitrodiag. */
nd_ctx *ndl_ctx(lua_State *L);

/* The host's main Lua state (for calling Lua callbacks from loop callbacks). */
lua_State *ndl_host_main(lua_State *L);

/* Pushes nil, msg, nd_err_name(code) and returns 3. */
int ndl_fail(lua_State *L, int code, const char *msg);

/* Same with an nd_err (uses its code and message). */
int ndl_fail_err(lua_State *L, const nd_err *err);

/* Creates (once) the metatable `name` with methods (index) and meta entries (meta, e.g. __gc/__close/__tostring). */
void ndl_newclass(lua_State *L, const char *name, const luaL_Reg *methods, const luaL_Reg *meta);

/* ---- waiting for asynchronous work ----------------------------------------------------------------------------- */

/* A wait handle: embed it in the request's userdata; it remembers which coroutine waits. */
typedef struct ndl_wait {
    lua_State *co;   /* the waiting coroutine, or the main thread when not in a coroutine */
    int co_ref;      /* registry reference keeping the coroutine alive while it waits */
    int done;        /* set by ndl_wait_done */
    int yielded;     /* 1 when the waiter yielded (coroutine), 0 when it runs the loop itself */
} ndl_wait;

/* Suspends the calling Lua function until ndl_wait_done(w) is called, then calls k(L, LUA_YIELD, kctx) whose
 * return values become the results of the Lua call. Use as `return ndl_await(L, &req->wait, k, (lua_KContext)req);`.
 * Raises an error when called where waiting is impossible (inside a loop callback outside any coroutine). */
int ndl_await(lua_State *L, ndl_wait *w, lua_KFunction k, lua_KContext kctx);

/* Called from the completion callback (on the loop): marks the wait done and resumes the coroutine, if it yielded.
 * Errors raised by the resumed coroutine are reported by the host, never propagated into libuv. */
void ndl_wait_done(ndl_wait *w);

/* Call from __close/__gc when the request is abandoned while waiting: drops the coroutine reference. Safe twice. */
void ndl_wait_cancel(lua_State *L, ndl_wait *w);

/* Returns 1 when the current function may wait (in a coroutine, or on the main thread outside loop callbacks). */
int ndl_can_wait(lua_State *L);

/* ---- small helpers ------------------------------------------------------------------------------------------- */

/* Reads an optional field of the table at idx: string (NULL when absent), number (def when absent), boolean. */
const char *ndl_optfield_str(lua_State *L, int idx, const char *key, size_t *len);
double ndl_optfield_num(lua_State *L, int idx, const char *key, double def);
int ndl_optfield_bool(lua_State *L, int idx, const char *key, int def);

/* Sets t[key] = value on the table at the top of the stack. */
void ndl_setstr(lua_State *L, const char *key, const char *value);
void ndl_setlstr(lua_State *L, const char *key, const char *value, size_t len);
void ndl_setint(lua_State *L, const char *key, lua_Integer value);
void ndl_setnum(lua_State *L, const char *key, lua_Number value);
void ndl_setbool(lua_State *L, const char *key, int value);

/* Pushes a Lua value converted from a jansson value (objects → tables, arrays → sequences, null → cjson.null
 * when cjson is loaded, otherwise nil). Declared here, defined in lua/host.c. */
struct json_t;
void ndl_push_json(lua_State *L, const struct json_t *v);

#endif
