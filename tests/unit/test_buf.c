/* test_buf.c — core/buf.c (nd_buf) and core/nd_list.h: appends keep a NUL and grow past the first capacity, an
 * append whose size would wrap sets oom and everything after it fails, take hands over "" for an empty buffer and
 * NULL after oom; list push/unlink of the head, the middle, the tail and of a node not in the list. */
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

int main(void)
{
    ND_RUN(appends);
    ND_RUN(overflow);
    ND_RUN(list);
    return nd_test_summary();
}
