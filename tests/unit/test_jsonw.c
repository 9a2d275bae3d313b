/*
 * test_jsonw.c — core/jsonw.c writes the text jansson's compact dump gives for the same object: random objects of
 * strings (quotes, backslashes, control characters, DEL, UTF-8, invalid UTF-8), integers, booleans, nulls and nested
 * values, written both ways and compared byte for byte; jansson (json_object_set_new + json_dumps) is the reference.
 */
#include "nd_jsonw.h"
#include "ndtest.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void test_like_jansson(void)
{
    static const char *const pieces[] = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\x7f",
                                         "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xff", "\xc3", "key-1"};
    srand(2323);
    int left_out = 0;
    for (int round = 0; round < 2000; round++) {
        json_t *ref = json_object();
        nd_buf b = ND_BUF_INIT;
        bool first = true;
        nd_buf_addc(&b, '{');
        int members = rand() % 8;
        for (int m = 0; m < members; m++) {
            char key[16];
            snprintf(key, sizeof key, "k%d", m);
            int kind = rand() % 7;
            if (kind <= 1) {
                char v[64] = "";
                for (int j = rand() % 5; j > 0; j--)
                    strcat(v, pieces[rand() % (int)(sizeof pieces / sizeof pieces[0])]);
                json_t *j = json_string(v);
                if (!j)
                    left_out++;
                json_object_set_new(ref, key, j); /* NULL: refused, the member is left out */
                if (kind == 0)
                    CHECK_EQ_INT(nd_jw_str(&b, &first, key, v), j != NULL);
                else
                    nd_jw_str_or_null(&b, &first, key, v);
                if (kind == 1 && !v[0]) /* str_or_null: "" is null */
                    json_object_set_new(ref, key, json_null());
            } else if (kind == 2) {
                int64_t v = (int64_t)rand() * (rand() % 2 ? 1 : -1) * (rand() % 2 ? 1 : 4294967296LL);
                json_object_set_new(ref, key, json_integer(v));
                nd_jw_int(&b, &first, key, v);
            } else if (kind == 3) {
                bool v = rand() % 2;
                json_object_set_new(ref, key, json_boolean(v));
                nd_jw_bool(&b, &first, key, v);
            } else if (kind == 4) {
                json_object_set_new(ref, key, json_null());
                nd_jw_null(&b, &first, key);
            } else if (kind == 5) {
                json_t *v = json_pack("{s:s,s:[i,s],s:{}}", "b\"/", "\xc3\xa9\n", "a", rand() % 100, "x\\", "e");
                json_object_set(ref, key, v);
                nd_jw_json(&b, &first, key, v);
                json_decref(v);
            } else {
                nd_jw_str_or_null(&b, &first, key, NULL);
                json_object_set_new(ref, key, json_null());
            }
        }
        nd_buf_addc(&b, '}');
        char *want = json_dumps(ref, JSON_COMPACT | JSON_PRESERVE_ORDER);
        char *got = nd_buf_take(&b);
        CHECK(got && want);
        if (got && want && strcmp(got, want) != 0) {
            fprintf(stderr, "  got  %s\n  want %s\n", got, want);
            CHECK(0);
        }
        free(got);
        free(want);
        json_decref(ref);
    }
    CHECK(left_out > 0); /* invalid UTF-8 came up, and was left out the same way */
}

int main(void)
{
    ND_RUN(test_like_jansson);
    return nd_test_summary();
}
