/* test_textscan.c — core/textscan.c: lines holding any needle (first, middle, last line without '\n', several
 * needles in one line counted once, needles sharing a first byte, empty needles ignored), limits, and random input
 * checked against a naive line-by-line search. */
#include "ndtest.h"
#include "nd_textscan.h"

#include <stdlib.h>

static void basic(void)
{
    const char *t = "ok\n[ E26 ] bad\nfine\nError here and error there\nlast error";
    const char *nd[] = {"[ E", "rror", ""};
    size_t *s;
    int c = nd_text_lines_with(t, strlen(t), nd, 3, &s, NULL);
    CHECK_EQ_INT(c, 3);
    CHECK_EQ_INT(s[0], 3);
    CHECK_EQ_INT(s[1], 20);
    CHECK_EQ_INT(s[2], 47);
    free(s);
    c = nd_text_lines_with(t, strlen(t), nd, 0, &s, NULL);
    CHECK_EQ_INT(c, 0);
    CHECK(s == NULL);
    const char *same[] = {"fa", "fine"};
    c = nd_text_lines_with(t, strlen(t), same, 2, &s, NULL);
    CHECK_EQ_INT(c, 1);
    CHECK_EQ_INT(s[0], 15);
    free(s);
}

static void limits(void)
{
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const char *nd[] = {big};
    size_t *s;
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_text_lines_with("x", 1, nd, 1, &s, &err), -EINVAL);
    CHECK(strstr(err.msg, "at most 255") != NULL);
}

static int naive_has(const char *l, size_t n, const char *nd)
{
    size_t k = strlen(nd);
    for (size_t i = 0; k && i + k <= n; i++)
        if (memcmp(l + i, nd, k) == 0)
            return 1;
    return 0;
}

static void random_vs_naive(void)
{
    srand(10);
    const char *nd[] = {"ab", "ba", "\nb", "zzz"};
    for (int round = 0; round < 200; round++) {
        size_t len = (size_t)(rand() % 400);
        char *t = malloc(len + 1);
        for (size_t i = 0; i < len; i++)
            t[i] = "ab\nz"[rand() % 4];
        size_t *s;
        int c = nd_text_lines_with(t, len, nd, 4, &s, NULL);
        int want = 0, got_i = 0;
        for (size_t i = 0; i <= len;) {
            const char *e = memchr(t + i, '\n', len - i);
            size_t end = e ? (size_t)(e - t) : len;
            int hit = 0;
            for (int k = 0; k < 4; k++)
                hit |= naive_has(t + i, end - i, nd[k]);
            if (hit) {
                want++;
                CHECK(got_i < c && s[got_i] == i);
                got_i++;
            }
            if (!e)
                break;
            i = end + 1;
        }
        CHECK_EQ_INT(c, want);
        free(s);
        free(t);
    }
}

int main(void)
{
    ND_RUN(basic);
    ND_RUN(limits);
    ND_RUN(random_vs_naive);
    return nd_test_summary();
}
