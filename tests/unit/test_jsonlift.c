/*
 * test_jsonlift.c — core/jsonlift.c against jansson alone: for random JSON texts and mutations of them, a tree
 * nd_jl_loadb returns, with each lifted value put back where its "[]" stands, equals what json_loadb makes of the
 * original text; a text jansson rejected after the substitution is rejected by json_loadb too.
 */
#include "nd_jsonlift.h"
#include "nd_codec.h"
#include "ndtest.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const nd_jl_path paths[] = {{"blob", NULL}, {"a", "b", "blob", NULL}, {"a", "b", "c", "blob"}};

static void rnd_value(char **p, int depth);

static void rnd_bytes(char **p)
{
    int n = rand() % 40;
    if (rand() % 2) {
        unsigned char b[40];
        for (int i = 0; i < n; i++)
            b[i] = (unsigned char)rand();
        char *t = NULL;
        size_t tl = 0;
        nd_b64_encode(b, (size_t)n, &t, &tl, NULL);
        *p += sprintf(*p, "\"%s\"", t);
        free(t);
    } else {
        *p += sprintf(*p, "[");
        for (int i = 0; i < n; i++)
            *p += sprintf(*p, "%s%s%d", i ? "," : "", rand() % 3 ? "" : " ", rand() % 256);
        *p += sprintf(*p, "]");
    }
}

static void rnd_object(char **p, int depth)
{
    static const char *const keys[] = {"blob", "a", "b", "c", "x", "bl\\u006fb", "blob"};
    *p += sprintf(*p, "{");
    int n = rand() % 4;
    for (int i = 0; i < n; i++) {
        const char *k = keys[rand() % 7];
        *p += sprintf(*p, "%s\"%s\":", i ? "," : "", k);
        if (!strcmp(k, "blob") && rand() % 4)
            rnd_bytes(p);
        else
            rnd_value(p, depth + 1);
    }
    *p += sprintf(*p, "}");
}

static void rnd_value(char **p, int depth)
{
    int k = depth > 5 ? rand() % 3 : rand() % 6;
    switch (k) {
    case 0: *p += sprintf(*p, "%d", rand() % 1000); break;
    case 1: *p += sprintf(*p, "\"s\\\"%d\"", rand() % 10); break;
    case 2: rnd_bytes(p); break;
    case 3: *p += sprintf(*p, "[1,\"blob\",{\"blob\":[2]}]"); break;
    default: rnd_object(p, depth); break;
    }
}

/* Puts the lifted values back into tree (where their "[]" are). */
static void restore(json_t *tree, const nd_jl *jl)
{
    for (int k = 0; k < jl->n; k++) {
        const nd_jl_value *v = &jl->v[k];
        json_t *parent = tree;
        int d = 0;
        while (paths[v->path][d + 1])
            parent = json_object_get(parent, paths[v->path][d++]);
        json_t *val;
        if (v->array) {
            unsigned char *b = NULL;
            size_t n = 0;
            CHECK_EQ_INT(nd_jl_bytes(v, &b, &n), 0);
            CHECK_EQ_INT(n, v->count);
            val = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(val, json_integer(b[i]));
            free(b);
        } else {
            val = json_stringn(v->p, v->n);
        }
        CHECK(nd_jl_find(jl, json_object_get(parent, paths[v->path][d])) == v);
        json_object_set_new(parent, paths[v->path][d], val);
    }
}

static void test_like_jansson(void)
{
    static const char pick[] = "\"[]{}:,\\ 0123456789-.eAZaz+/=u";
    char *buf = malloc(65536);
    srand(3131);
    int lifted = 0, rejected = 0;
    for (int round = 0; round < 20000; round++) {
        char *p = buf;
        rnd_object(&p, 0);
        size_t n = (size_t)(p - buf);
        if (round % 2) { /* mutations */
            for (int m = 1 + rand() % 2; m > 0 && n > 0; m--) {
                size_t at = (size_t)rand() % n;
                if (rand() % 2)
                    buf[at] = pick[rand() % (int)(sizeof pick - 1)];
                else {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
            }
        }
        nd_jl jl;
        bool declined = false;
        json_t *tree = nd_jl_loadb(buf, n, JSON_REJECT_DUPLICATES, paths, 3, round % 3 != 0, &jl, &declined);
        json_t *ref = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
        if (tree) {
            CHECK(!declined && jl.n > 0);
            CHECK(ref != NULL);
            restore(tree, &jl);
            if (ref && !json_equal(tree, ref)) {
                fprintf(stderr, "  differs on: %.*s\n", (int)n, buf);
                CHECK(0);
            }
            lifted++;
        } else if (!declined) {
            CHECK(ref == NULL); /* jansson refused the substituted text: it refuses the original too */
            rejected++;
        }
        json_decref(tree);
        json_decref(ref);
    }
    fprintf(stderr, "  lifted %d, rejected after substitution %d of 20000\n", lifted, rejected);
    CHECK(lifted > 1000 && rejected > 100);
    free(buf);
}

int main(void)
{
    ND_RUN(test_like_jansson);
    return nd_test_summary();
}
