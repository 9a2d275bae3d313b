/*
 * jsonw.c — JSON objects written straight into a buffer, the same text jansson's compact dump gives (nd_jsonw.h).
 */
#include "nd_jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

void nd_jw_key(nd_buf *b, bool *first, const char *key)
{
    if (!*first)
        nd_buf_addc(b, ',');
    *first = false;
    nd_buf_addc(b, '"');
    nd_buf_addstr(b, key);
    nd_buf_add(b, "\":", 2);
}

bool nd_jw_string(nd_buf *b, const char *v)
{
    size_t n = strlen(v);
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++)
        plain = v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\';
    if (plain) {
        nd_buf_addc(b, '"');
        nd_buf_add(b, v, n);
        nd_buf_addc(b, '"');
        return true;
    }
    json_t *j = json_string(v);
    if (!j)
        return false;
    char *t = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    json_decref(j);
    if (!t) {
        b->oom = true;
        return true;
    }
    nd_buf_addstr(b, t);
    free(t);
    return true;
}

bool nd_jw_str(nd_buf *b, bool *first, const char *key, const char *v)
{
    size_t at = b->len;
    bool was_first = *first;
    nd_jw_key(b, first, key);
    if (nd_jw_string(b, v))
        return true;
    b->len = at; /* not UTF-8: the member is left out */
    if (b->p)
        b->p[at] = '\0';
    *first = was_first;
    return false;
}

void nd_jw_str_or_null(nd_buf *b, bool *first, const char *key, const char *v)
{
    if (v && v[0])
        nd_jw_str(b, first, key, v);
    else
        nd_jw_null(b, first, key);
}

void nd_jw_int(nd_buf *b, bool *first, const char *key, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    nd_jw_key(b, first, key);
    nd_buf_add(b, num, (size_t)n);
}

void nd_jw_bool(nd_buf *b, bool *first, const char *key, bool v)
{
    nd_jw_key(b, first, key);
    nd_buf_addstr(b, v ? "true" : "false");
}

void nd_jw_null(nd_buf *b, bool *first, const char *key)
{
    nd_jw_key(b, first, key);
    nd_buf_add(b, "null", 4);
}

void nd_jw_json(nd_buf *b, bool *first, const char *key, const json_t *v)
{
    if (!v)
        return;
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!t) {
        b->oom = true;
        return;
    }
    nd_jw_key(b, first, key);
    nd_buf_addstr(b, t);
    OPENSSL_cleanse(t, strlen(t)); /* may be an encryption context: not left in freed memory */
    free(t);
}
