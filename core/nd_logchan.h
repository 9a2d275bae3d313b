/*
 * nd_logchan.h — the enclave log channel: nitrodiag-init streams its own check lines and the application's
 * stdout/stderr to the parent over vsock; nitrodiag-logd receives them.
 *
 * Wire format: the frames of nd_frame.h ([u32 BE len][u8 type][u32 BE seq][payload], len = 5 + payload length),
 * so the host decodes them with nd_frame_decoder. The enclave side writes them itself (nd_logq below, plain libc:
 * the init is static and cross-built, and core/frame.c would pull in jansson and OpenSSL); a unit test decodes its
 * output with nd_frame_decoder.
 *   Hello (0x01), seq 0, first frame of every connection: text "nitrodiag-log 1 key=value ..." (cid, records,
 *     dropped, kernel).
 *   Data (0x02), seq = record number (1, 2, ... over the init's whole life, counting dropped records), payload
 *     [u8 source: 'I' init, 'O' stdout, 'E' stderr][u64 BE Unix time in ms][text, no newline].
 * A gap in seq is exactly the number of records the enclave dropped.
 *
 * Back-pressure: the queue is a fixed-size byte ring of whole frames. When a new record does not fit, the oldest
 * records not yet started are dropped (lossy by design: the writer never waits for the reader), and counted.
 */
#ifndef ND_LOGCHAN_H
#define ND_LOGCHAN_H

#include "nd.h"

#include <sys/types.h>

#define ND_LOG_HDR 9u               /* frame header: len(4) type(1) seq(4) */
#define ND_LOG_REC_HDR 9u           /* Data payload prefix: source(1) time(8) */
#define ND_LOG_MAX_TEXT 4096u       /* longer texts are cut (the init splits long lines before this) */
#define ND_LOG_MIN_QUEUE 16384u      /* room for a partly sent frame plus the largest record */
#define ND_LOG_MAX_QUEUE (64u * 1024u * 1024u)
#define ND_LOG_DEFAULT_QUEUE (256u * 1024u)
#define ND_LOG_FRAME_HELLO 0x01u
#define ND_LOG_FRAME_DATA 0x02u

typedef struct nd_logq {
    unsigned char *ring;
    size_t cap;                 /* ring size in bytes */
    size_t head, len;           /* queued frames occupy ring[head .. head+len) modulo cap */
    size_t head_sent;           /* bytes of the head frame already written */
    unsigned char hello[256 + ND_LOG_HDR];
    size_t hello_len, hello_sent; /* a Hello frame to send before the ring, after (re)connecting */
    uint32_t next_seq;          /* seq of the next record (starts at 1) */
    uint64_t queued, sent, dropped, dropped_bytes;
} nd_logq;

/* Allocates a ring of cap bytes (clamped to ND_LOG_MIN_QUEUE..ND_LOG_MAX_QUEUE). Returns 0 or -ENOMEM. */
int nd_logq_init(nd_logq *q, size_t cap);

/* Frees the ring. Safe on a zeroed or already freed queue. */
void nd_logq_free(nd_logq *q);

/* Queues one Data record (source 'I'/'O'/'E', Unix time ms, text of n bytes, cut at ND_LOG_MAX_TEXT). Drops the
 * oldest unsent records to make room. Returns 1 when queued, 0 when the record itself had to be dropped (only when
 * a partly sent frame leaves no room, which the minimum size rules out), and never blocks or allocates. */
int nd_logq_push(nd_logq *q, char source, uint64_t ms, const char *text, size_t n);

/* Starts a new connection: a partly sent head frame is abandoned (its record counts as dropped) and a Hello frame
 * with `text` (cut at 256 bytes) goes first. */
void nd_logq_restart(nd_logq *q, const char *text);

/* True when there is something to write. */
bool nd_logq_pending(const nd_logq *q);

/* Writes as much as the non-blocking fd takes (send with MSG_NOSIGNAL, or write for non-sockets). Returns the bytes
 * written (0 when the fd would block), or a negative errno code (-EPIPE, -ECONNRESET…) when the connection failed. */
ssize_t nd_logq_flush(nd_logq *q, int fd);

/* One decoded Data payload. text points into the payload (not NUL-terminated). */
typedef struct nd_logrec {
    char source;               /* 'I', 'O', 'E' */
    uint64_t ms;
    const char *text;
    size_t len;
} nd_logrec;

/* Decodes a Data payload. Returns 0, or -EBADMSG when it is shorter than the prefix or the source is unknown. */
int nd_logrec_parse(const unsigned char *payload, size_t n, nd_logrec *out, nd_err *err);

/* "init", "stdout", "stderr" for a source byte, "?" otherwise. */
const char *nd_logrec_source_name(char source);

#endif
