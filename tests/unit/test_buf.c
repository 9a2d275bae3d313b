/* test_buf.c — core/buf.c (nd_buf) and core/nd_list.h: appends keep a NUL and grow past the first capacity, an
 * append whose size would wrap sets oom and everything after it fails, take hands over "" for an empty buffer and
 * NULL after oom; arrays grow the same way and refuse a size that would wrap; list push/unlink of the head, the
 * middle, the tail and of a node not in the list; a FIFO keeps order and its tail through unlinks anywhere. */
#include "ndtest.h"
#include "nd_buf.h"
#include "nd_list.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void appends(void)
{
    nd_buf b = ND_BUF_INIT;
    CHECK_EQ_INT(nd_buf_addstr(&b, "key="), 0);
    CHECK_EQ_INT(nd_buf_addc(&b, 'v'), 0);
    CHECK_EQ_STR(b.p, "key=v");
    CHECK_EQ_INT(b.len, 5);
    char big[1000];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(nd_buf_add(&b, big, sizeof big), 0);
    CHECK_EQ_INT(b.len, 10005);
    CHECK(b.cap > b.len);
    CHECK(b.p[b.len] == '\0');
    char *s = nd_buf_take(&b);
    CHECK(s != NULL && strlen(s) == 10005);
    CHECK(b.p == NULL && b.len == 0);
    free(s);
    s = nd_buf_take(&b);
    CHECK_EQ_STR(s, "");
    free(s);
}

static void overflow(void)
{
    nd_buf b = ND_BUF_INIT;
    CHECK_EQ_INT(nd_buf_addstr(&b, "abc"), 0);
    CHECK_EQ_INT(nd_buf_reserve(&b, SIZE_MAX - 2), -ENOMEM);
    CHECK(b.oom);
    CHECK_EQ_INT(nd_buf_addstr(&b, "d"), -ENOMEM);
    CHECK(nd_buf_take(&b) == NULL);
    CHECK(!b.oom);
    nd_buf_free(&b);
}

static void arrays(void)
{
    size_t cap = 0;
    long *a = NULL;
    for (size_t i = 0; i < 1000; i++) {
        long *na = nd_grow_array(a, &cap, i + 1, sizeof *na);
        CHECK(na != NULL);
        if (!na)
            break;
        a = na;
        a[i] = (long)i * 3;
        CHECK(cap >= i + 1);
    }
    CHECK_EQ_INT(cap, 1024); /* 8 doubled: growth is geometric, not one element at a time */
    CHECK(a[999] == 2997 && a[0] == 0);
    /* a count whose size would wrap is refused and leaves the array alone */
    CHECK(nd_grow_array(a, &cap, SIZE_MAX / sizeof(long) + 2, sizeof(long)) == NULL);
    CHECK(nd_grow_array(a, &cap, SIZE_MAX / 2, sizeof(long)) == NULL);
    CHECK_EQ_INT(cap, 1024);
    CHECK(a[999] == 2997);
    CHECK(nd_grow_array(a, &cap, 10, sizeof(long)) == a); /* already big enough: unchanged */
    free(a);
    /* a vector with a count and no capacity: nd_array_cap(n) is what nd_grow_array gave it, so appending one at a
     * time reallocates only at powers of two */
    char **v = NULL;
    size_t n = 0;
    int reallocs = 0;
    for (; n < 100; n++) {
        size_t c = nd_array_cap(n + 1);
        char **nv = nd_grow_array(v, &c, n + 2, sizeof *nv);
        CHECK(nv != NULL);
        if (!nv)
            break;
        reallocs += nv != v || c != nd_array_cap(n + 1);
        CHECK_EQ_INT(c, nd_array_cap(n + 2));
        v = nv;
        v[n] = NULL;
        v[n + 1] = NULL;
    }
    CHECK(reallocs <= 6); /* 8, 16, 32, 64, 128: not one per append */
    CHECK_EQ_INT(nd_array_cap(0), 8);
    CHECK_EQ_INT(nd_array_cap(9), 16);
    CHECK_EQ_INT(nd_array_cap(SIZE_MAX), SIZE_MAX);
    free(v);
}

typedef struct node {
    int v;
    struct node *prev, *next;
} node;

static void list(void)
{
    node n[4] = {{1, NULL, NULL}, {2, NULL, NULL}, {3, NULL, NULL}, {4, NULL, NULL}};
    node *head = NULL;
    for (int i = 0; i < 3; i++)
        ND_LIST_PUSH(head, &n[i]);
    CHECK_EQ_INT(head->v, 3);
    ND_LIST_UNLINK(head, &n[1]); /* middle */
    CHECK_EQ_INT(head->v, 3);
    CHECK(head->next == &n[0] && n[0].prev == &n[2]);
    CHECK(n[1].prev == NULL && n[1].next == NULL);
    ND_LIST_UNLINK(head, &n[3]); /* not in the list */
    CHECK(head == &n[2]);
    ND_LIST_UNLINK(head, &n[2]); /* head */
    CHECK(head == &n[0] && n[0].prev == NULL);
    ND_LIST_UNLINK(head, &n[0]); /* last */
    CHECK(head == NULL);
}

typedef struct qnode {
    int v;
    struct qnode *wprev, *wnext;
} qnode;

static void fifo(void)
{
    qnode n[4] = {{1, NULL, NULL}, {2, NULL, NULL}, {3, NULL, NULL}, {4, NULL, NULL}};
    qnode *head = NULL, *tail = NULL;
    for (int i = 0; i < 4; i++)
        ND_FIFO_APPEND_F(head, tail, &n[i], wprev, wnext);
    CHECK(head == &n[0] && tail == &n[3]);
    ND_FIFO_UNLINK_F(head, tail, &n[3], wprev, wnext); /* the tail */
    CHECK(tail == &n[2] && n[2].wnext == NULL);
    ND_FIFO_UNLINK_F(head, tail, &n[1], wprev, wnext); /* the middle */
    CHECK(n[0].wnext == &n[2] && n[2].wprev == &n[0]);
    ND_FIFO_UNLINK_F(head, tail, &n[0], wprev, wnext); /* the head */
    CHECK(head == &n[2] && tail == &n[2] && n[2].wprev == NULL);
    ND_FIFO_APPEND_F(head, tail, &n[3], wprev, wnext); /* order kept: 3 then 4 */
    CHECK(head->v == 3 && head->wnext->v == 4 && tail->v == 4);
    ND_FIFO_UNLINK_F(head, tail, &n[2], wprev, wnext);
    ND_FIFO_UNLINK_F(head, tail, &n[3], wprev, wnext);
    CHECK(head == NULL && tail == NULL);
}

int main(void)
{
    ND_RUN(appends);
    ND_RUN(overflow);
    ND_RUN(arrays);
    ND_RUN(list);
    ND_RUN(fifo);
    return nd_test_summary();
}
