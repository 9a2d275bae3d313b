/*
 * nd_buf.h — the one growable byte buffer of core/: appends with overflow-checked growth (doubling, never past
 * SIZE_MAX), always NUL-terminated so text can be used as a C string, and a sticky out-of-memory flag so a writer
 * can append many pieces and check once at the end. nd_grow_array gives arrays of any element the same growth.
 *
 *   nd_buf b = ND_BUF_INIT;
 *   nd_buf_add(&b, "key=", 4); nd_buf_addstr(&b, value);
 *   char *s = nd_buf_take(&b);   // NULL when any append ran out of memory (everything freed)
 */
#ifndef ND_BUF_H
#define ND_BUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nd_buf {
    char *p;       /* NULL until the first append; then len bytes and a NUL */
    size_t len, cap;
    bool oom;      /* an append failed (out of memory, or a size that would wrap): later appends do nothing */
} nd_buf;

#define ND_BUF_INIT {NULL, 0, 0, false}

/* The growth every buffer of core/ uses: makes *p (realloc'd, *cap bytes) hold at least need bytes (at least 1, so
 * *p is never NULL afterwards), doubling from *cap (256 at first) without ever wrapping. Returns 0 or -ENOMEM (*p
 * and *cap unchanged). For buffers that keep their own length (core/scrub.c); nd_buf below is built on it. */
int nd_grow(char **p, size_t *cap, size_t need);

/* The same growth for an array of elem-byte elements: returns p (realloc'd) holding at least need elements (at least
 * 1), *cap (in elements) doubled from 8 as needed, or NULL when memory ran out or need × elem would wrap (p is then
 * unchanged and still the caller's). For every growable array of core/:
 *   nd_lint_finding *nf = nd_grow_array(r->findings, &r->cap_findings, r->n_findings + 1, sizeof *nf);
 *   if (!nf) return -ENOMEM;
 *   r->findings = nf; */
void *nd_grow_array(void *p, size_t *cap, size_t need, size_t elem);

/* The capacity nd_grow_array gave an array that started empty (cap 0) and only ever grew through it to hold n
 * elements: for the small vectors that keep a count and no capacity (NULL-terminated string lists), so they grow
 * geometrically all the same:  size_t cap = nd_array_cap(n + 1); v = nd_grow_array(v, &cap, n + 2, sizeof *v); */
size_t nd_array_cap(size_t n);

/* Makes room for n more bytes (plus the NUL). Returns 0, or -ENOMEM (and sets oom) when memory ran out or the
 * size would wrap. */
int nd_buf_reserve(nd_buf *b, size_t n);

/* Appends n bytes (and keeps a NUL after them). Returns 0 or -ENOMEM (sets oom; also after an earlier failure). */
int nd_buf_add(nd_buf *b, const void *d, size_t n);
int nd_buf_addstr(nd_buf *b, const char *s);
int nd_buf_addc(nd_buf *b, char c);

/* Hands over the text (the caller frees it): "" (allocated) when nothing was appended, NULL when oom (the buffer
 * is freed). The buffer is empty afterwards. */
char *nd_buf_take(nd_buf *b);

/* Frees the contents; the buffer is empty afterwards. */
void nd_buf_free(nd_buf *b);

#endif
