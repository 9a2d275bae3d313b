/*
 * logchan.c — the enclave log channel's queue and record format (nd_logchan.h): a fixed-size ring of whole frames
 * that drops its oldest records rather than ever waiting for the reader. Plain libc, no allocation after init, so
 * the static nitrodiag-init links it alone.
 */
#include "nd_logchan.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ND_LOG_MAX_FRAME (ND_LOG_HDR + ND_LOG_REC_HDR + ND_LOG_MAX_TEXT)

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes the nd_frame header (same layout as nd_frame_header in frame.c). */
static void frame_header(unsigned char *h, unsigned type, uint32_t seq, size_t payload)
{
    be32(h, (uint32_t)(5 + payload));
    h[4] = (unsigned char)type;
    be32(h + 5, seq);
}

int nd_logq_init(nd_logq *q, size_t cap)
{
    memset(q, 0, sizeof *q);
    if (cap < ND_LOG_MIN_QUEUE)
        cap = ND_LOG_MIN_QUEUE;
    if (cap > ND_LOG_MAX_QUEUE)
        cap = ND_LOG_MAX_QUEUE;
    q->ring = malloc(cap);
    if (!q->ring)
        return -ENOMEM;
    q->cap = cap;
    q->next_seq = 1;
    return 0;
}

void nd_logq_free(nd_logq *q)
{
    free(q->ring);
    q->ring = NULL;
    q->cap = q->len = q->head = q->head_sent = 0;
}

static void ring_put(nd_logq *q, size_t pos, const void *src, size_t n)
{
    pos %= q->cap;
    size_t first = n < q->cap - pos ? n : q->cap - pos;
    memcpy(q->ring + pos, src, first);
    memcpy(q->ring, (const unsigned char *)src + first, n - first);
}

static void ring_get(const nd_logq *q, size_t pos, void *dst, size_t n)
{
    pos %= q->cap;
    size_t first = n < q->cap - pos ? n : q->cap - pos;
    memcpy(dst, q->ring + pos, first);
    memcpy((unsigned char *)dst + first, q->ring, n - first);
}

/* Length of the whole frame starting at ring offset pos. */
static size_t frame_len_at(const nd_logq *q, size_t pos)
{
    unsigned char h[4];
    ring_get(q, pos, h, 4);
    return 4 + (((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3]);
}

/* Drops the oldest record that has not started to go out. Returns false when there is none. */
static bool drop_oldest(nd_logq *q)
{
    if (q->len == 0)
        return false;
    size_t first = frame_len_at(q, q->head);
    if (q->head_sent == 0) {
        q->head = (q->head + first) % q->cap;
        q->len -= first;
        q->dropped++;
        q->dropped_bytes += first;
        return true;
    }
    /* The head frame is partly written: keep it and drop the one behind it, moving the head frame forward. */
    if (q->len == first)
        return false;
    size_t second = frame_len_at(q, q->head + first);
    unsigned char keep[ND_LOG_MAX_FRAME];
    ring_get(q, q->head, keep, first);
    q->head = (q->head + second) % q->cap;
    ring_put(q, q->head, keep, first);
    q->len -= second;
    q->dropped++;
    q->dropped_bytes += second;
    return true;
}

int nd_logq_push(nd_logq *q, char source, uint64_t ms, const char *text, size_t n)
{
    if (n > ND_LOG_MAX_TEXT)
        n = ND_LOG_MAX_TEXT;
    size_t need = ND_LOG_HDR + ND_LOG_REC_HDR + n;
    uint32_t seq = q->next_seq++;
    while (q->cap - q->len < need)
        if (!drop_oldest(q)) {
            q->dropped++;
            q->dropped_bytes += need;
            return 0;
        }
    unsigned char h[ND_LOG_HDR + ND_LOG_REC_HDR];
    frame_header(h, ND_LOG_FRAME_DATA, seq, ND_LOG_REC_HDR + n);
    h[ND_LOG_HDR] = (unsigned char)source;
    for (int i = 0; i < 8; i++)
        h[ND_LOG_HDR + 1 + i] = (unsigned char)(ms >> (56 - 8 * i));
    size_t tail = (q->head + q->len) % q->cap;
    ring_put(q, tail, h, sizeof h);
    ring_put(q, tail + sizeof h, text, n);
    q->len += need;
    q->queued++;
    return 1;
}

void nd_logq_restart(nd_logq *q, const char *text)
{
    if (q->head_sent > 0) {
        size_t first = frame_len_at(q, q->head);
        q->head = (q->head + first) % q->cap;
        q->len -= first;
        q->head_sent = 0;
        q->dropped++;
        q->dropped_bytes += first;
    }
    size_t n = strlen(text);
    if (n > sizeof q->hello - ND_LOG_HDR)
        n = sizeof q->hello - ND_LOG_HDR;
    frame_header(q->hello, ND_LOG_FRAME_HELLO, 0, n);
    memcpy(q->hello + ND_LOG_HDR, text, n);
    q->hello_len = ND_LOG_HDR + n;
    q->hello_sent = 0;
}

bool nd_logq_pending(const nd_logq *q)
{
    return q->hello_sent < q->hello_len || q->len > 0;
}

static ssize_t put(int fd, const void *p, size_t n)
{
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno == ENOTSOCK)
        w = write(fd, p, n);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    return w;
}

ssize_t nd_logq_flush(nd_logq *q, int fd)
{
    ssize_t total = 0;
    while (q->hello_sent < q->hello_len) {
        ssize_t w = put(fd, q->hello + q->hello_sent, q->hello_len - q->hello_sent);
        if (w <= 0)
            return w < 0 ? w : total;
        q->hello_sent += (size_t)w;
        total += w;
    }
    while (q->len > q->head_sent) {
        size_t pos = (q->head + q->head_sent) % q->cap;
        size_t avail = q->len - q->head_sent;
        size_t chunk = avail < q->cap - pos ? avail : q->cap - pos;
        ssize_t w = put(fd, q->ring + pos, chunk);
        if (w <= 0)
            return w < 0 ? w : total;
        total += w;
        size_t left = (size_t)w;
        while (left > 0) {
            size_t flen = frame_len_at(q, q->head);
            size_t rest = flen - q->head_sent;
            if (left < rest) {
                q->head_sent += left;
                break;
            }
            left -= rest;
            q->head = (q->head + flen) % q->cap;
            q->len -= flen;
            q->head_sent = 0;
            q->sent++;
        }
    }
    return total;
}

int nd_logrec_parse(const unsigned char *p, size_t n, nd_logrec *out, nd_err *err)
{
    if (n < ND_LOG_REC_HDR)
        return nd_err_set(err, -EBADMSG, "log record of %zu bytes is shorter than its %u-byte prefix", n,
                          ND_LOG_REC_HDR);
    if (p[0] != 'I' && p[0] != 'O' && p[0] != 'E')
        return nd_err_set(err, -EBADMSG, "log record with unknown source byte 0x%02x", p[0]);
    out->source = (char)p[0];
    out->ms = 0;
    for (int i = 0; i < 8; i++)
        out->ms = (out->ms << 8) | p[1 + i];
    out->text = (const char *)p + ND_LOG_REC_HDR;
    out->len = n - ND_LOG_REC_HDR;
    return 0;
}

const char *nd_logrec_source_name(char source)
{
    return source == 'I' ? "init" : source == 'O' ? "stdout" : source == 'E' ? "stderr" : "?";
}
