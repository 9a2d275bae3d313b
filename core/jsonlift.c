/*
 * jsonlift.c — jansson parsing with large byte values read straight from the text (nd_jsonlift.h).
 */
#include "nd_jsonlift.h"
#include "nd_codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

/* base64's alphabet and '=' (what a lifted string may hold) */
static const unsigned char b64_chars[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['+'] = 1, ['/'] = 1, ['='] = 1,
};

static bool json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Checks an array of plain numbers 0..255 (JSON integers without sign, leading zero, fraction or exponent) at
 * t[i] == '['. Returns the index after its ']' and sets *count, or 0 when it is anything else. */
static size_t scan_byte_array(const char *t, size_t n, size_t i, size_t *count)
{
    size_t k = 0;
    i++;
    while (i < n && json_ws(t[i]))
        i++;
    if (i < n && t[i] == ']') {
        *count = 0;
        return i + 1;
    }
    for (;;) {
        if (i >= n || t[i] < '0' || t[i] > '9')
            return 0;
        unsigned v = (unsigned)(t[i++] - '0');
        if (v != 0)
            while (i < n && t[i] >= '0' && t[i] <= '9' && v <= 255)
                v = v * 10 + (unsigned)(t[i++] - '0');
        if (v > 255)
            return 0;
        k++;
        while (i < n && json_ws(t[i]))
            i++;
        if (i >= n)
            return 0;
        if (t[i] == ']') {
            *count = k;
            return i + 1;
        }
        if (t[i] != ',')
            return 0;
        i++;
        while (i < n && json_ws(t[i]))
            i++;
    }
}

static bool key_is(const char *k, size_t kl, const char *s)
{
    return k && kl == strlen(s) && memcmp(k, s, kl) == 0;
}

/* The path (index) the value at depth d belongs to, or -1. */
static int match_path(size_t d, const char *const *kp, const size_t *kl, const nd_jl_path *paths, int npaths)
{
    for (int i = 0; i < npaths; i++) {
        size_t j = 0;
        while (j < d && paths[i][j] && key_is(kp[j], kl[j], paths[i][j]))
            j++;
        if (j == d && !paths[i][d])
            return i;
    }
    return -1;
}

/* Follows the text's structure and records the values at the paths. Returns how many, or -1 (declined). Syntax is
 * not checked here: jansson checks the text afterwards. */
static int scan(const char *t, size_t n, const nd_jl_path *paths, int npaths, bool arrays, nd_jl *jl)
{
    enum { MAXD = ND_JL_DEPTH };
    char kind[MAXD];
    const char *kp[MAXD]; /* the current key of each open object (NULL: none yet, or written with escapes) */
    size_t kl[MAXD];
    bool colon[MAXD];     /* a ':' came after the current key: the next value belongs to it */
    size_t d = 0;         /* open containers */
    jl->n = 0;
    for (size_t i = 0; i < n;) {
        char c = t[i];
        if (c != '"' && c != '[' && c != '{' && c != ']' && c != '}' && c != ':' && c != ',') {
            i++;
            continue;
        }
        int path = -1;
        if ((c == '"' || c == '[') && d >= 1 && d <= MAXD && colon[d - 1]) {
            bool objects = true; /* the value is in an object in an object … from the root */
            for (size_t j = 0; j < d; j++)
                objects = objects && kind[j] == '{';
            if (objects)
                path = match_path(d, kp, kl, paths, npaths);
        }
        if (path >= 0) {
            if (jl->n == ND_JL_MAX)
                return -1;
            nd_jl_value *v = &jl->v[jl->n];
            memset(v, 0, sizeof *v);
            v->path = path;
            if (c == '[') {
                size_t end = arrays ? scan_byte_array(t, n, i, &v->count) : 0;
                if (!end)
                    return -1;
                v->array = true;
                v->p = t + i;
                v->n = end - i;
                i = end;
            } else {
                size_t s = ++i;
                while (i < n && b64_chars[(unsigned char)t[i]])
                    i++;
                if (i >= n || t[i] != '"')
                    return -1;
                v->p = t + s;
                v->n = i - s;
                i++;
            }
            jl->n++;
            continue;
        }
        switch (c) {
        case '"': {
            size_t s = ++i;
            bool esc = false;
            while (i < n && t[i] != '"') {
                if (t[i] == '\\') {
                    esc = true;
                    i++;
                }
                i++;
            }
            if (i >= n)
                return -1;
            if (d >= 1 && d <= MAXD && kind[d - 1] == '{' && !colon[d - 1]) {
                kp[d - 1] = esc ? NULL : t + s;
                kl[d - 1] = i - s;
            }
            i++;
            break;
        }
        case '{':
        case '[':
            if (d < MAXD) {
                kind[d] = c;
                kp[d] = NULL;
                kl[d] = 0;
                colon[d] = false;
            }
            d++;
            i++;
            break;
        case '}':
        case ']':
            if (d == 0 || (d <= MAXD && kind[d - 1] != (c == '}' ? '{' : '[')))
                return -1;
            d--;
            i++;
            break;
        case ':':
            if (d >= 1 && d <= MAXD)
                colon[d - 1] = true;
            i++;
            break;
        default: /* ',' */
            if (d >= 1 && d <= MAXD) {
                colon[d - 1] = false;
                kp[d - 1] = NULL;
            }
            i++;
            break;
        }
    }
    return jl->n;
}

/* Finds each lifted value's "[]" in the tree. Returns 0, or -1 when one is not where it should be. */
static int find_placeholders(json_t *root, const nd_jl_path *paths, nd_jl *jl)
{
    for (int k = 0; k < jl->n; k++) {
        nd_jl_value *v = &jl->v[k];
        json_t *x = root;
        for (int j = 0; x && paths[v->path][j]; j++)
            x = json_object_get(x, paths[v->path][j]);
        if (!json_is_array(x) || json_array_size(x) != 0)
            return -1;
        for (int j = 0; j < k; j++)
            if (jl->v[j].ph == x)
                return -1;
        v->ph = x;
    }
    return 0;
}

json_t *nd_jl_loadb(const char *text, size_t n, size_t flags, const nd_jl_path *paths, int npaths, bool arrays,
                    nd_jl *jl, bool *declined)
{
    *declined = false;
    if (scan(text, n, paths, npaths, arrays, jl) <= 0) {
        jl->n = 0;
        *declined = true;
        return NULL;
    }
    char *sub = malloc(n + 1);
    if (!sub)
        return NULL;
    size_t w = 0, r = 0;
    for (int k = 0; k < jl->n; k++) {
        const nd_jl_value *v = &jl->v[k];
        size_t at = (size_t)(v->p - text);
        size_t s = at - (v->array ? 0 : 1), e = at + v->n + (v->array ? 0 : 1); /* strings: with their quotes */
        memcpy(sub + w, text + r, s - r);
        w += s - r;
        memcpy(sub + w, "[]", 2);
        w += 2;
        r = e;
    }
    memcpy(sub + w, text + r, n - r);
    w += n - r;
    json_t *root = json_loadb(sub, w, flags, NULL);
    OPENSSL_cleanse(sub, w); /* the rest of the text may be sensitive too (an encryption context) */
    free(sub);
    if (root && find_placeholders(root, paths, jl) < 0) {
        json_decref(root);
        jl->n = 0;
        *declined = true; /* cannot happen for text jansson accepts; declined all the same */
        return NULL;
    }
    return root;
}

const nd_jl_value *nd_jl_find(const nd_jl *jl, const json_t *v)
{
    for (int k = 0; jl && v && k < jl->n; k++)
        if (jl->v[k].ph == v)
            return &jl->v[k];
    return NULL;
}

int nd_jl_bytes(const nd_jl_value *v, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!v->array) {
        if (v->n == 0) {
            *out = malloc(1);
            return *out ? 0 : -ENOMEM;
        }
        int rc = nd_b64_decode(v->p, v->n, out, len, NULL);
        return rc == -ENOMEM ? rc : rc < 0 ? -EBADMSG : 0;
    }
    unsigned char *d = malloc(v->count + 1);
    if (!d)
        return -ENOMEM;
    size_t k = 0;
    unsigned x = 0;
    bool in = false;
    for (size_t i = 1; i < v->n; i++) { /* checked by scan_byte_array */
        char c = v->p[i];
        if (c >= '0' && c <= '9') {
            x = x * 10 + (unsigned)(c - '0');
            in = true;
        } else if (in) {
            d[k++] = (unsigned char)x;
            x = 0;
            in = false;
        }
    }
    *out = d;
    *len = k;
    return 0;
}
