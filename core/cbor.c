/*
 * cbor.c — safe CBOR loading and serde byte arrays over libcbor (see nd_cbor.h). Used by attest.c and eif.c.
 * Every map of a loaded item is checked for repeated keys (libcbor keeps both pairs; a reader that walks the pairs
 * would see the field twice), so no caller ever sees a duplicate.
 */
#include "nd_cbor.h"

#include <stdlib.h>
#include <string.h>

typedef struct scan {
    size_t limit;
    bool bad;
} scan;

static void scan_coll(void *c, size_t n)
{
    scan *s = c;
    if (n > s->limit / 2 + 1)
        s->bad = true;
}

static void scan_indef(void *c)
{
    ((scan *)c)->bad = true;
}

/* Every declared array/map size must fit in the input and no indefinite-length item may appear. */
static bool prescan(const unsigned char *p, size_t n)
{
    struct cbor_callbacks cb = cbor_empty_callbacks;
    cb.array_start = scan_coll;
    cb.map_start = scan_coll;
    cb.indef_array_start = scan_indef;
    cb.indef_map_start = scan_indef;
    cb.byte_string_start = scan_indef;
    cb.string_start = scan_indef;
    scan s = {.limit = n, .bad = false};
    size_t off = 0;
    while (off < n) {
        struct cbor_decoder_result r = cbor_stream_decode(p + off, n - off, &cb, &s);
        if (r.status != CBOR_DECODER_FINISHED || r.read == 0 || s.bad)
            return false;
        off += r.read;
    }
    return true;
}

/* ---- duplicate map keys ------------------------------------------------------------------------------------- */

/* A key in a canonical form: its major type, then its value (integers as 8 big-endian bytes, whatever width they
 * were encoded with; strings as their bytes; anything else as libcbor re-serializes it). */
typedef struct keyform {
    unsigned char *p;
    size_t n;
} keyform;

static int key_form(const cbor_item_t *k, keyform *f)
{
    f->p = NULL;
    f->n = 0;
    if (cbor_isa_uint(k) || cbor_isa_negint(k)) {
        uint64_t v = cbor_get_int(k);
        f->p = malloc(9);
        if (!f->p)
            return -ENOMEM;
        f->p[0] = cbor_isa_uint(k) ? 0 : 1;
        for (int i = 0; i < 8; i++)
            f->p[1 + i] = (unsigned char)(v >> (56 - 8 * i));
        f->n = 9;
        return 0;
    }
    if ((cbor_isa_string(k) && cbor_string_is_definite(k)) || (cbor_isa_bytestring(k) && cbor_bytestring_is_definite(k))) {
        size_t l = cbor_isa_string(k) ? cbor_string_length(k) : cbor_bytestring_length(k);
        const unsigned char *h = cbor_isa_string(k) ? cbor_string_handle(k) : cbor_bytestring_handle(k);
        f->p = malloc(l + 1);
        if (!f->p)
            return -ENOMEM;
        f->p[0] = cbor_isa_string(k) ? 3 : 2;
        if (l)
            memcpy(f->p + 1, h, l);
        f->n = l + 1;
        return 0;
    }
    size_t cap = 0;
    size_t l = cbor_serialize_alloc(k, &f->p, &cap);
    if (l == 0) {
        free(f->p);
        f->p = NULL;
        return -ENOMEM;
    }
    f->n = l;
    return 0;
}

static int keyform_cmp(const void *a, const void *b)
{
    const keyform *x = a, *y = b;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, m);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

#define MAX_DEPTH 64

/* Returns 0 when no map anywhere in `it` repeats a key, -EBADMSG (duplicate or nesting deeper than MAX_DEPTH) or
 * -ENOMEM. Sorting makes it O(n log n) per map, so a huge hostile map costs no more than its size. */
static int check_dups(const cbor_item_t *it, int depth)
{
    if (depth > MAX_DEPTH)
        return -EBADMSG;
    if (cbor_isa_tag(it)) {
        cbor_item_t *t = cbor_tag_item(it);
        int rc = check_dups(t, depth + 1);
        cbor_decref(&t);
        return rc;
    }
    if (cbor_isa_array(it)) {
        cbor_item_t **items = cbor_array_handle(it);
        for (size_t i = 0; i < cbor_array_size(it); i++) {
            int rc = check_dups(items[i], depth + 1);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    if (!cbor_isa_map(it))
        return 0;
    size_t n = cbor_map_size(it);
    struct cbor_pair *pairs = cbor_map_handle(it);
    for (size_t i = 0; i < n; i++) {
        int rc = check_dups(pairs[i].key, depth + 1);
        if (rc == 0)
            rc = check_dups(pairs[i].value, depth + 1);
        if (rc < 0)
            return rc;
    }
    if (n < 2)
        return 0;
    keyform *f = calloc(n, sizeof *f);
    if (!f)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = key_form(pairs[i].key, &f[i]);
    if (rc == 0) {
        qsort(f, n, sizeof *f, keyform_cmp);
        for (size_t i = 1; i < n && rc == 0; i++)
            if (keyform_cmp(&f[i - 1], &f[i]) == 0)
                rc = -EBADMSG;
    }
    for (size_t i = 0; i < n; i++)
        free(f[i].p);
    free(f);
    return rc;
}

cbor_item_t *nd_cbor_load(const void *data, size_t n, const char *what, nd_err *err)
{
    const unsigned char *p = data;
    if (!prescan(p, n)) {
        nd_err_set(err, -EBADMSG, "%s is not well-formed definite-length CBOR", what);
        return NULL;
    }
    struct cbor_load_result r;
    cbor_item_t *it = cbor_load(p, n, &r);
    if (!it) {
        nd_err_set(err, -EBADMSG, "%s is not valid CBOR (error %d at byte %zu)", what, (int)r.error.code,
                   r.error.position);
        return NULL;
    }
    if (r.read != n) {
        cbor_decref(&it);
        nd_err_set(err, -EBADMSG, "%s has %zu trailing bytes", what, n - r.read);
        return NULL;
    }
    int rc = check_dups(it, 0);
    if (rc < 0) {
        cbor_decref(&it);
        if (rc == -ENOMEM)
            nd_err_set(err, rc, "%s: out of memory", what);
        else
            nd_err_set(err, rc, "%s repeats a map key or nests deeper than %d levels", what, MAX_DEPTH);
        return NULL;
    }
    return it;
}

cbor_item_t *nd_cbor_map_get(const cbor_item_t *map, const char *key)
{
    if (!map || !cbor_isa_map(map) || !cbor_map_is_definite(map))
        return NULL;
    size_t kl = strlen(key);
    struct cbor_pair *pairs = cbor_map_handle(map);
    for (size_t i = 0; i < cbor_map_size(map); i++) {
        cbor_item_t *k = pairs[i].key;
        if (cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == kl &&
            memcmp(cbor_string_handle(k), key, kl) == 0)
            return pairs[i].value;
    }
    return NULL;
}

int nd_cbor_u8_bytes(const cbor_item_t *it, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (cbor_isa_bytestring(it) && cbor_bytestring_is_definite(it)) {
        size_t n = cbor_bytestring_length(it);
        *out = malloc(n ? n : 1);
        if (!*out)
            return -ENOMEM;
        memcpy(*out, cbor_bytestring_handle(it), n);
        *outlen = n;
        return 0;
    }
    if (!cbor_isa_array(it) || !cbor_array_is_definite(it))
        return -EBADMSG;
    size_t n = cbor_array_size(it);
    cbor_item_t **items = cbor_array_handle(it);
    *out = malloc(n ? n : 1);
    if (!*out)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!cbor_isa_uint(items[i]) || cbor_get_int(items[i]) > 255) {
            free(*out);
            *out = NULL;
            return -EBADMSG;
        }
        (*out)[i] = (unsigned char)cbor_get_int(items[i]);
    }
    *outlen = n;
    return 0;
}

cbor_item_t *nd_cbor_u8_array(const void *data, size_t n)
{
    const unsigned char *d = data;
    cbor_item_t *a = cbor_new_definite_array(n);
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        cbor_item_t *v = cbor_build_uint8(d[i]);
        bool ok = v && cbor_array_push(a, v);
        if (v)
            cbor_decref(&v);
        if (!ok) {
            cbor_decref(&a);
            return NULL;
        }
    }
    return a;
}
