/*
 * l_textscan.c — `nd.textscan`: the lines of a big text that hold any of a set of plain needles (core/textscan.c).
 *
 *   textscan.lines_with(text, needles) -> { start offsets (1-based), … } | nil, msg, code
 */
#include "ndlua.h"
#include "nd_textscan.h"

#include <stdlib.h>

static int l_lines_with(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    luaL_argcheck(L, n >= 0 && n <= 256, 2, "at most 256 needles");
    const char *needles[256];
    for (lua_Integer k = 1; k <= n; k++) {
        lua_rawgeti(L, 2, k);
        needles[k - 1] = luaL_checkstring(L, -1); /* the table keeps the string alive */
        lua_pop(L, 1);
    }
    size_t *starts;
    nd_err err;
    nd_err_clear(&err);
    int c = nd_text_lines_with(text, len, needles, (size_t)n, &starts, &err);
    if (c < 0)
        return ndl_fail_err(L, &err);
    lua_createtable(L, c, 0);
    for (int i = 0; i < c; i++) {
        lua_pushinteger(L, (lua_Integer)starts[i] + 1);
        lua_rawseti(L, -2, i + 1);
    }
    free(starts);
    return 1;
}

NDL_MODULE(textscan)
{
    static const luaL_Reg funcs[] = {{"lines_with", l_lines_with}, {NULL, NULL}};
    luaL_newlib(L, funcs);
    return 1;
}
