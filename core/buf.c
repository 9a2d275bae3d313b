/*
 * buf.c — the growable byte buffer of nd_buf.h: overflow-checked doubling growth, NUL-terminated, sticky oom; and
 * the same growth for arrays (nd_grow_array).
 */
#include "nd_buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int nd_grow(char **p, size_t *cap, size_t need)
{
    if (need == 0)
        need = 1; /* always a valid pointer, even for zero bytes (memcpy's arguments must not be NULL) */
    if (need <= *cap && *p)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    char *np = realloc(*p, n);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = n;
    return 0;
}

void *nd_grow_array(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need == 0)
        need = 1;
    if (elem == 0 || need > SIZE_MAX / elem)
        return NULL;
    if (need <= *cap && p)
        return p;
    size_t n = *cap ? *cap : 8;
    while (n < need)
        n = n > SIZE_MAX / 2 / elem ? need : n * 2;
    void *np = realloc(p, n * elem);
    if (!np)
        return NULL;
    *cap = n;
    return np;
}

size_t nd_array_cap(size_t n)
{
    size_t c = 8;
    while (c < n && c <= SIZE_MAX / 2)
        c *= 2;
    return c < n ? n : c;
}

int nd_buf_reserve(nd_buf *b, size_t n)
{
    if (b->oom)
        return -ENOMEM;
    if (n > SIZE_MAX - 1 - b->len || nd_grow(&b->p, &b->cap, b->len + n + 1) < 0) {
        /* len + n + 1 would wrap (no buffer can hold it), or out of memory */
        b->oom = true;
        return -ENOMEM;
    }
    return 0;
}

int nd_buf_add(nd_buf *b, const void *d, size_t n)
{
    int rc = nd_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int nd_buf_addstr(nd_buf *b, const char *s) { return nd_buf_add(b, s, strlen(s)); }

int nd_buf_addc(nd_buf *b, char c) { return nd_buf_add(b, &c, 1); }

char *nd_buf_take(nd_buf *b)
{
    char *p = b->p;
    bool oom = b->oom;
    *b = (nd_buf)ND_BUF_INIT;
    if (oom) {
        free(p);
        return NULL;
    }
    return p ? p : strdup("");
}

void nd_buf_free(nd_buf *b)
{
    free(b->p);
    *b = (nd_buf)ND_BUF_INIT;
}
