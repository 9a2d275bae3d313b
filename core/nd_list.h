/*
 * nd_list.h — the one intrusive doubly-linked list of nitrodiag: a list is a head pointer, a node is any struct with
 * `prev` and `next` pointers to its own type (both NULL while unlinked). Used for the requests, sockets, processes and
 * connections that a loop owner keeps and must find again on close (core/imds.c, kms.c, http.c, creds.c, proc.c,
 * proxy/). Macros, not functions, so the node type stays checked by the compiler; each argument is evaluated more
 * than once: pass plain lvalues. (glibc's <sys/queue.h> would do, but musl, which the static enclave programs use,
 * has none.)
 *
 *   ND_LIST_PUSH(head, node)    inserts node at the front.
 *   ND_LIST_UNLINK(head, node)  removes node; a node that is not in the list (prev NULL and not the head) leaves
 *                               the list alone. The node's prev/next are NULL afterwards.
 * The _F variants take the names of the two link fields, for a node that sits in two lists (e.g. wprev/wnext).
 *
 * A FIFO is the same list with a tail pointer as well (proxy/request.c's requests waiting for an in-flight slot):
 *   ND_FIFO_APPEND_F(head, tail, node, prev, next)  appends node at the tail.
 *   ND_FIFO_UNLINK_F(head, tail, node, prev, next)  removes node (from anywhere); same rules as ND_LIST_UNLINK.
 */
#ifndef ND_LIST_H
#define ND_LIST_H

#define ND_LIST_PUSH_F(head, node, prev, next)                                                                       \
    do {                                                                                                             \
        (node)->prev = NULL;                                                                                         \
        (node)->next = (head);                                                                                       \
        if (head)                                                                                                    \
            (head)->prev = (node);                                                                                   \
        (head) = (node);                                                                                             \
    } while (0)

#define ND_LIST_UNLINK_F(head, node, prev, next)                                                                     \
    do {                                                                                                             \
        if ((node)->prev)                                                                                            \
            (node)->prev->next = (node)->next;                                                                       \
        else if ((head) == (node))                                                                                   \
            (head) = (node)->next;                                                                                   \
        if ((node)->next)                                                                                            \
            (node)->next->prev = (node)->prev;                                                                       \
        (node)->prev = (node)->next = NULL;                                                                          \
    } while (0)

#define ND_FIFO_APPEND_F(head, tail, node, prev, next)                                                               \
    do {                                                                                                             \
        (node)->next = NULL;                                                                                         \
        (node)->prev = (tail);                                                                                       \
        if (tail)                                                                                                    \
            (tail)->next = (node);                                                                                   \
        else                                                                                                         \
            (head) = (node);                                                                                         \
        (tail) = (node);                                                                                             \
    } while (0)

#define ND_FIFO_UNLINK_F(head, tail, node, prev, next)                                                               \
    do {                                                                                                             \
        if ((tail) == (node))                                                                                        \
            (tail) = (node)->prev;                                                                                   \
        ND_LIST_UNLINK_F(head, node, prev, next);                                                                    \
    } while (0)

#define ND_LIST_PUSH(head, node) ND_LIST_PUSH_F(head, node, prev, next)
#define ND_LIST_UNLINK(head, node) ND_LIST_UNLINK_F(head, node, prev, next)

#endif
