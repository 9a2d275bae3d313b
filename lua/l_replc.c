/*
 * l_repl.c — `nd.replc`: the terminal side of the REPL (lua/nd/repl.lua holds its logic). It wraps libedit's
 * readline (line editing, history file, tab completion through a Lua function) and runs each chunk as a coroutine
 * while driving the shared loop, so asynchronous primitives can be called directly at the prompt.
 *
 * Ctrl-C: a SIGINT handler sets the host's interrupted flag, installs a count hook that raises "interrupted" inside
 * a chunk that is busy in Lua (as lua.c does), and wakes the loop with uv_async_send (async-signal-safe) so a chunk
 * that waits is closed: closing its coroutine runs its to-be-closed values, which kill its processes.
 */
#include "host.h"

#include <editline/readline.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* A signal handler can only reach the REPL through a static: this is the one piece of state outside nd_ctx, as in
 * lua.c. It points at the REPL of this process while one runs. */
static struct repl_state {
    ndl_host *host;
    lua_State *L;            /* main state, for the completer */
    lua_State *running;      /* coroutine of the chunk being run, or NULL */
    uv_async_t wake;
    int wake_open;
    int completer_ref;
    struct termios saved_tty; /* the terminal as the REPL found it, restored at the end */
    int tty_saved;
} *the_repl;

static void interrupt_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted");
}

static void on_sigint(int sig)
{
    (void)sig;
    struct repl_state *r = the_repl;
    if (!r)
        return;
    r->host->interrupted = 1;
    if (r->running)
        lua_sethook(r->running, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    if (r->wake_open)
        uv_async_send(&r->wake);
}

static void on_wake(uv_async_t *a)
{
    (void)a; /* only makes uv_run return so the flag is seen */
}

/* readline(prompt) -> line | nil (end of input) | false (Ctrl-C at the prompt) */
static int l_readline(lua_State *L)
{
    const char *prompt = luaL_optstring(L, 1, "> ");
    struct repl_state *r = the_repl;
    if (r) {
        r->host->interrupted = 0;
        r->L = L; /* the completer runs on this thread, from inside readline() */
    }
    char *line = readline(prompt);
    if (r && r->host->interrupted) {
        r->host->interrupted = 0;
        free(line);
        lua_pushboolean(L, 0);
        return 1;
    }
    if (!line) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, line);
    free(line);
    return 1;
}

static int l_history_add(lua_State *L)
{
    add_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_history_load(lua_State *L)
{
    read_history(luaL_checkstring(L, 1));
    return 0;
}

static int l_history_save(lua_State *L)
{
    int rc = write_history(luaL_checkstring(L, 1));
    lua_pushboolean(L, rc == 0);
    return 1;
}

static char **complete(const char *text, int start, int end)
{
    (void)start;
    (void)end;
    struct repl_state *r = the_repl;
    rl_attempted_completion_over = 1;
    if (!r || r->completer_ref == LUA_NOREF)
        return NULL;
    lua_State *L = r->L;
    int top = lua_gettop(L);
    /* libedit's idea of the word may stop at '.', so complete the whole dotted name before the cursor and hand back
     * only the part after what libedit calls the word. */
    int wstart = rl_point;
    while (wstart > 0) {
        char c = rl_line_buffer[wstart - 1];
        if (!(c == '_' || c == '.' || c == ':' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z')))
            break;
        wstart--;
    }
    size_t skip = (size_t)(rl_point - wstart) - strlen(text);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->completer_ref);
    lua_pushlstring(L, rl_line_buffer + wstart, (size_t)(rl_point - wstart));
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        lua_settop(L, top);
        return NULL;
    }
    size_t n = lua_rawlen(L, -1);
    if (n == 0) {
        lua_settop(L, top);
        return NULL;
    }
    /* readline's convention: [0] is the common prefix (substitution), then the matches, then NULL. */
    char **m = calloc(n + 2, sizeof *m);
    if (!m) {
        lua_settop(L, top);
        return NULL;
    }
    size_t k = 1;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        size_t sl = 0;
        const char *s = lua_tolstring(L, -1, &sl);
        if (s && sl >= skip)
            m[k++] = strdup(s + skip);
        lua_pop(L, 1);
    }
    if (k == 1) {
        free(m);
        lua_settop(L, top);
        return NULL;
    }
    size_t pre = strlen(m[1]);
    for (size_t i = 2; i < k; i++) {
        size_t j = 0;
        while (j < pre && m[i][j] == m[1][j])
            j++;
        pre = j;
    }
    m[0] = strndup(m[1], pre);
    if (k == 2) { /* a single match: it is the substitution */
        free(m[0]);
        m[0] = m[1];
        m[1] = NULL;
    }
    rl_completion_append_character = '\0';
    lua_settop(L, top);
    return m;
}

/* set_completer(fn): fn(word) -> list of completions of word */
static int l_set_completer(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    struct repl_state *r = the_repl;
    if (!r)
        return luaL_error(L, "the REPL is not running");
    if (r->completer_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, r->completer_ref);
    lua_pushvalue(L, 1);
    r->completer_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* run(fn) -> "ok" | "interrupted" | "stuck": runs fn in a new coroutine, driving the loop while it waits. fn
 * reports its own results and errors (the Lua side wraps it in xpcall). */
static int l_run(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    struct repl_state *r = the_repl;
    if (!r)
        return luaL_error(L, "the REPL is not running");
    ndl_host *h = r->host;
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    h->interrupted = 0;
    /* The loop does not run while the prompt waits for a line, so its cached "now" is as old as the prompt: a timer
     * started from it (nd.sleep, a command's timeout) would fire early by the time spent typing. */
    uv_update_time(&h->loop);
    int live_before = h->ctx.live_procs;
    r->running = co;
    int nres = 0;
    int depth = h->loop_depth;
    h->loop_depth = 1; /* the chunk is a coroutine: it waits by yielding */
    int rc = lua_resume(co, L, 0, &nres);
    const char *status = "ok";
    if (rc == LUA_YIELD) {
        lua_pop(co, nres);
        if (ndl_host_run(h, co) == -EDEADLK)
            status = "stuck";
        if (lua_status(co) == LUA_YIELD) {
            /* Ctrl-C while it waits, or nothing can wake it: close it (kills its processes, stops its timers). */
            if (strcmp(status, "stuck") != 0)
                status = "interrupted";
            lua_sethook(co, NULL, 0, 0); /* the hook must not fire inside the __close handlers */
            lua_resetthread(co);
        }
    } else if (rc != LUA_OK) {
        status = h->interrupted ? "interrupted" : "ok";
        if (!h->interrupted)
            fprintf(stderr, "%s\n", lua_tostring(co, -1));
    }
    lua_sethook(co, NULL, 0, 0);
    r->running = NULL;
    h->loop_depth = depth;
    /* What the chunk started and its closing killed must be reaped now: the loop does not run at the prompt. */
    ndl_host_settle(h, live_before, 2000, 0);
    h->interrupted = 0;
    lua_pop(L, 1); /* the thread */
    lua_pushstring(L, status);
    return 1;
}

static int repl_gc(lua_State *L)
{
    struct repl_state *r = luaL_checkudata(L, 1, "nd.replc.state");
    if (the_repl == r) {
        signal(SIGINT, SIG_DFL);
        the_repl = NULL;
    }
    if (r->wake_open) {
        uv_close((uv_handle_t *)&r->wake, NULL);
        r->wake_open = 0;
    }
    if (r->tty_saved) {
        tcsetattr(STDIN_FILENO, TCSANOW, &r->saved_tty);
        r->tty_saved = 0;
    }
    return 0;
}

/* start() -> state: installs the SIGINT handler and completion; keep the state alive while the REPL runs and close
 * it (or let it be collected) at the end. */
static int l_start(lua_State *L)
{
    if (the_repl)
        return luaL_error(L, "a REPL is already running");
    struct repl_state *r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    r->completer_ref = LUA_NOREF;
    luaL_setmetatable(L, "nd.replc.state");
    r->host = ndl_host_of(L);
    r->L = ndl_host_main(L);
    uv_async_init(&r->host->loop, &r->wake, on_wake);
    uv_unref((uv_handle_t *)&r->wake);
    r->wake_open = 1;
    the_repl = r;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: readline returns at Ctrl-C */
    /* A Ctrl-D typed while a chunk runs reaches a terminal in cooked mode, where the kernel turns the EOF character
     * into an empty marker; once libedit switches to raw mode that marker arrives as a NUL byte, so the line is no
     * longer empty and every later Ctrl-D only deletes. With VEOF disabled outside readline() the byte stays 0x04 and
     * libedit sees the Ctrl-D the operator typed. Restored when the REPL ends. */
    struct termios t;
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t) == 0) {
        r->saved_tty = t;
        r->tty_saved = 1;
        t.c_cc[VEOF] = _POSIX_VDISABLE;
        tcsetattr(STDIN_FILENO, TCSANOW, &t);
    }
    rl_catch_signals = 0;
    rl_attempted_completion_function = complete;
    rl_completer_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^#~[]";
    return 1;
}

NDL_MODULE(replc)
{
    static const luaL_Reg meta[] = {{"__gc", repl_gc}, {"__close", repl_gc}, {NULL, NULL}};
    ndl_newclass(L, "nd.replc.state", NULL, meta);
    static const luaL_Reg funcs[] = {{"start", l_start},
                                     {"readline", l_readline},
                                     {"history_add", l_history_add},
                                     {"history_load", l_history_load},
                                     {"history_save", l_history_save},
                                     {"set_completer", l_set_completer},
                                     {"run", l_run},
                                     {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
