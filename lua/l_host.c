/*
 * l_host.c — `nd.host`: facts about this host process that runbooks and the simulator need: the --root prefix, the
 * nitro-cli path, the binary's own path and share directory, the host name, and the environment children inherit.
 * The values live in the host's nd_ctx (the one context object), so core modules see the same settings.
 */
#include "ndlua.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#ifndef ND_SHARE_DIR
#define ND_SHARE_DIR "/usr/local/share/nitrodiag"
#endif
#ifndef ND_SOURCE_DIR
#define ND_SOURCE_DIR ""
#endif

/* root() -> "/" or the --root directory */
static int l_root(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    lua_pushstring(L, ctx->root[0] ? ctx->root : "/");
    return 1;
}

/* set_root(dir) -> true | nil, msg, code */
static int l_set_root(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    size_t n;
    const char *dir = luaL_checklstring(L, 1, &n);
    if (n >= sizeof ctx->root)
        return ndl_fail(L, -ENAMETOOLONG, "root path too long");
    if (n > 0 && strcmp(dir, "/") != 0 && access(dir, F_OK) != 0)
        return ndl_fail(L, -errno, lua_pushfstring(L, "root directory %s: %s", dir, strerror(errno)));
    memcpy(ctx->root, dir, n + 1);
    if (strcmp(ctx->root, "/") == 0)
        ctx->root[0] = '\0';
    lua_pushboolean(L, 1);
    return 1;
}

/* path(host_path) -> the path under root */
static int l_path(lua_State *L)
{
    char buf[8192];
    if (nd_ctx_path(ndl_ctx(L), luaL_checkstring(L, 1), buf, sizeof buf) < 0)
        return ndl_fail(L, -ENAMETOOLONG, "path too long");
    lua_pushstring(L, buf);
    return 1;
}

static int l_nitro_cli(lua_State *L)
{
    lua_pushstring(L, ndl_ctx(L)->nitro_cli);
    return 1;
}

static int l_set_nitro_cli(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    size_t n;
    const char *p = luaL_checklstring(L, 1, &n);
    if (n == 0 || n >= sizeof ctx->nitro_cli)
        return luaL_argerror(L, 1, "empty or too long");
    if (ctx->sim_root[0]) /* the simulated host's nitro-cli stays; the runner refuses any other command anyway */
        return ndl_fail(L, -EPERM, "a simulated host is active: nitro-cli is its own");
    memcpy(ctx->nitro_cli, p, n + 1);
    lua_pushboolean(L, 1);
    return 1;
}

/* set_sim(root, time_scale) / set_sim(nil): enters or leaves a simulated host (nd.sim does it). While set, commands
 * run only from root/bin (nd_ctx_sim_command), nitro-cli is root/bin/nitro-cli whatever NITRODIAG_NITRO_CLI says,
 * vsock goes through the simulator's router, and waits are divided by time_scale. Returns true. */
static int l_set_sim(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    if (lua_isnoneornil(L, 1)) {
        ctx->sim_root[0] = '\0';
        ctx->time_scale = 0;
        lua_pushboolean(L, 1);
        return 1;
    }
    size_t n;
    const char *root = luaL_checklstring(L, 1, &n);
    double scale = luaL_optnumber(L, 2, 1.0);
    if (n == 0 || root[0] != '/' || n + sizeof "/bin/nitro-cli" > sizeof ctx->sim_root)
        return luaL_argerror(L, 1, "an absolute path that is not too long");
    if (!(scale >= 1.0 && scale <= 10000.0))
        return luaL_argerror(L, 2, "a time scale between 1 and 10000");
    memcpy(ctx->sim_root, root, n + 1);
    ctx->time_scale = scale;
    snprintf(ctx->nitro_cli, sizeof ctx->nitro_cli, "%s/bin/nitro-cli", root);
    lua_pushboolean(L, 1);
    return 1;
}

/* sim() -> root, time_scale of the active simulated host, or nil */
static int l_sim(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    if (!ctx->sim_root[0])
        return 0;
    lua_pushstring(L, ctx->sim_root);
    lua_pushnumber(L, ctx->time_scale > 1.0 ? ctx->time_scale : 1.0);
    return 2;
}

/* real_wait(seconds) -> the real seconds a wait of that many (simulated) seconds takes */
static int l_real_wait(lua_State *L)
{
    lua_pushnumber(L, nd_ctx_real_wait(ndl_ctx(L), luaL_checknumber(L, 1)));
    return 1;
}

static int l_hostname(lua_State *L)
{
    char buf[256];
    size_t n = sizeof buf;
    if (uv_os_gethostname(buf, &n) != 0)
        snprintf(buf, sizeof buf, "unknown-host");
    lua_pushstring(L, buf);
    return 1;
}

static int l_version(lua_State *L)
{
    lua_pushstring(L, ND_VERSION);
    return 1;
}

/* exe() -> absolute path of the running nitrodiag binary (in the portable build, the launcher that starts it, which
 * is what the simulator links its stand-ins to) */
static int l_exe(lua_State *L)
{
    const char *launcher = getenv("NITRODIAG_EXE");
    if (launcher && launcher[0] == '/') {
        lua_pushstring(L, launcher);
        return 1;
    }
    char buf[PATH_MAX];
    size_t n = sizeof buf;
    if (uv_exepath(buf, &n) != 0)
        return ndl_fail(L, -ENOENT, "cannot find the running binary");
    lua_pushlstring(L, buf, n);
    return 1;
}

/* share_dir() -> the directory of shipped runbooks, scenarios and the image context. An installed tree is
 * relocatable: <dir of the binary>/ND_SHARE_REL (../share/nitrodiag) wins when it exists, so a copied or unpacked
 * tree (the portable build) finds its own files; else the configured ND_SHARE_DIR. */
static int l_share_dir(lua_State *L)
{
#ifdef ND_SHARE_REL
    char buf[PATH_MAX];
    size_t n = sizeof buf;
    const char *exe = getenv("NITRODIAG_EXE"); /* set by the portable build's launcher: the real binary is elsewhere */
    if (exe && exe[0] == '/' && strlen(exe) < sizeof buf) {
        snprintf(buf, sizeof buf, "%s", exe);
        n = strlen(buf);
    } else if (uv_exepath(buf, &n) != 0) {
        n = 0;
    }
    char *slash = n ? strrchr(buf, '/') : NULL;
    if (slash && (size_t)(slash - buf) + 1 + sizeof ND_SHARE_REL < sizeof buf) {
        strcpy(slash + 1, ND_SHARE_REL);
        char real[PATH_MAX];
        if (realpath(buf, real)) {
            lua_pushstring(L, real);
            return 1;
        }
    }
#endif
    lua_pushstring(L, ND_SHARE_DIR);
    return 1;
}

/* source_dir() -> the source tree this binary was built from (used when running from a build directory) */
static int l_source_dir(lua_State *L)
{
    lua_pushstring(L, ND_SOURCE_DIR);
    return 1;
}

/* setenv(name, value|nil): changes the environment that commands started from now on inherit. */
static int l_setenv(lua_State *L)
{
    const char *k = luaL_checkstring(L, 1);
    int rc = lua_isnoneornil(L, 2) ? uv_os_unsetenv(k) : uv_os_setenv(k, luaL_checkstring(L, 2));
    if (rc < 0)
        return ndl_fail(L, rc, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_getenv(lua_State *L)
{
    const char *v = getenv(luaL_checkstring(L, 1));
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    return 1;
}

static int l_verbosity(lua_State *L)
{
    nd_ctx *ctx = ndl_ctx(L);
    if (lua_isinteger(L, 1))
        ctx->verbosity = (int)lua_tointeger(L, 1);
    lua_pushinteger(L, ctx->verbosity);
    return 1;
}

/* isatty(fd) -> boolean */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
    return 1;
}

/* columns(fd) -> the width of the terminal on fd (default 1) | nil when fd is not a terminal or reports no size */
static int l_columns(lua_State *L)
{
    struct winsize ws;
    int fd = (int)luaL_optinteger(L, 1, 1);
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        lua_pushinteger(L, ws.ws_col);
    else
        lua_pushnil(L);
    return 1;
}

NDL_MODULE(host)
{
    static const luaL_Reg funcs[] = {
        {"root", l_root},         {"set_root", l_set_root},     {"path", l_path},
        {"nitro_cli", l_nitro_cli}, {"set_nitro_cli", l_set_nitro_cli}, {"hostname", l_hostname},
        {"version", l_version},   {"exe", l_exe},               {"share_dir", l_share_dir},
        {"source_dir", l_source_dir}, {"setenv", l_setenv},     {"getenv", l_getenv},
        {"verbosity", l_verbosity}, {"isatty", l_isatty},       {"columns", l_columns},
        {"set_sim", l_set_sim},   {"sim", l_sim},               {"real_wait", l_real_wait},
        {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
