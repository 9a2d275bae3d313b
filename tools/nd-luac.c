/*
 * nd-luac.c — a build-time helper: compiles one Lua source file to Lua bytecode with the very liblua that nitrodiag
 * links, for tools/embed.cmake. nitrodiag then loads its built-in modules without running the Lua parser at each
 * start (the parser was half of the instructions of `nitrodiag run one.lua`). Debug information is kept, so errors
 * and tracebacks still name the source file and line.
 *
 * Usage: nd-luac CHUNKNAME IN.lua OUT.luac   (CHUNKNAME as the loader would give it, e.g. "@/src/lua/nd/cli.lua")
 * Exits 0, or 1 with the Lua error (a syntax error fails the build) or the I/O error on stderr.
 */
#include <lauxlib.h>
#include <lua.h>

#include <stdio.h>
#include <stdlib.h>

static int writer(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return fwrite(p, 1, n, (FILE *)ud) == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: nd-luac CHUNKNAME IN.lua OUT.luac\n");
        return 1;
    }
    FILE *in = fopen(argv[2], "rb");
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    size_t cap = 1 << 16, len = 0;
    char *src = malloc(cap);
    while (src) {
        if (len == cap) {
            char *b = realloc(src, cap * 2);
            if (!b) {
                free(src);
                src = NULL;
                break;
            }
            src = b;
            cap *= 2;
        }
        size_t n = fread(src + len, 1, cap - len, in);
        if (n == 0)
            break;
        len += n;
    }
    fclose(in);
    lua_State *L = luaL_newstate();
    if (!src || !L) {
        fprintf(stderr, "nd-luac: out of memory\n");
        return 1;
    }
    if (luaL_loadbufferx(L, src, len, argv[1], "t") != LUA_OK) {
        fprintf(stderr, "nd-luac: %s\n", lua_tostring(L, -1));
        return 1;
    }
    FILE *out = fopen(argv[3], "wb");
    if (!out) {
        perror(argv[3]);
        return 1;
    }
    int rc = lua_dump(L, writer, out, 0);
    if (fclose(out) != 0 || rc != 0) {
        fprintf(stderr, "nd-luac: cannot write %s\n", argv[3]);
        remove(argv[3]);
        return 1;
    }
    lua_close(L);
    free(src);
    return 0;
}
