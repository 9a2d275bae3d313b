/*
 * proxy.c — nitrodiag-kms-proxy's server (see proxy.h).
 *
 * Design. Everything runs on one libuv loop and nothing blocks: each enclave connection has its own frame decoder,
 * and every KmsProxy frame becomes an independent request object, so one slow request never holds up another
 * connection or even the next request on the same connection (the old kms_proxy_host served one connection at a
 * time). Responses go back with the request's seq and request_id, in completion order.
 *
 * Request life: received -> parsed (bad JSON: an Error frame with invalid_request) -> local policy (allowed
 * operation, allowed key, recipient required) -> rate limit and in-flight cap (rate_limited) -> circuit breaker
 * (circuit_open) -> upstream attempts through core/nd_kms.h. Each attempt has its own timeout, never beyond the
 * end-to-end deadline; only timeout, throttled and unavailable outcomes are retried, after a full-jitter backoff that
 * must fit in the remaining deadline and only while the retry budget has tokens. A recipient request that comes back
 * with Plaintext, or without CiphertextForRecipient, fails closed (internal).
 *
 * Accounting, so each counter moves only when its event happens: kms_requests_total when a request frame arrives;
 * exactly one of kms_success_total / kms_errors_total when its single response is sent; retries_total when a retry
 * attempt starts; throttled_total / timeouts_total when an attempt ends throttled / timed out; rate_limited_total
 * when the token bucket or the in-flight cap refuses a request; circuit_open_total when the open breaker refuses one.
 *
 * Hostile clients: reading a connection pauses while it has max_pending_per_conn requests outstanding or more than
 * max_unsent_per_conn bytes of answers it has not read; a timer closes a connection that stays above the byte limit
 * for unsent_timeout_ms. Log lines about refused requests pass a per-connection token bucket; what it drops is
 * counted and reported in one kms_proxy_log_suppressed line.
 *
 * Secrets: Plaintext, CiphertextForRecipient, credentials and attestation documents are never logged; buffers that
 * held them are wiped (OPENSSL_cleanse) when freed. Log lines are built with jansson, one compact object per line.
 */
#include "proxy.h"

#include "nd_codec.h"
#include "nd_creds.h"
#include "nd_frame.h"
#include "nd_kms.h"
#include "nd_kmspolicy.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <linux/vm_sockets.h>

/* ---------------------------------------------------------------------------------------------------------------- */

typedef struct counters {
    uint64_t requests, success, errors, retries, throttled, timeouts, rate_limited, circuit_open;
} counters;

enum { K_TCP = 1, K_PIPE = 2 };

typedef struct listener {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    int kind;
    bool open;
    char addr[PX_STR];
    char unlink_path[PX_STR];
    px_server *srv;
    bool metrics;
} listener;

typedef struct conn conn;
struct conn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    px_server *srv;
    nd_frame_decoder dec;
    int refs;          /* 1 for the handle until its close callback, +1 per request and per write in flight */
    int pending;       /* requests of this connection not answered yet */
    bool closing;      /* uv_close called */
    bool reading;
    bool eof;          /* peer finished sending (or Shutdown frame, or framing error): close when idle */
    size_t unsent;     /* bytes of frames queued to the peer and not yet written (a client that does not read) */
    uint64_t over_since; /* loop time unsent went above max_unsent_per_conn, 0 when below */
    uint64_t id;       /* for log lines about this connection */
    double log_tokens; /* per-connection budget of rejection log lines (token bucket) */
    uint64_t log_last_ms;
    uint64_t suppressed; /* rejection log lines not written since the last kms_proxy_log_suppressed line */
    conn *prev, *next;
};

typedef struct mconn { /* a /metrics client */
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    px_server *srv;
    char buf[4096];
    size_t len;
    bool answered;
    bool closing;
    struct mconn *prev, *next;
} mconn;

typedef struct preq {
    px_server *srv;
    conn *c;
    uint32_t seq;
    nd_kms_request r;
    char *body;           /* upstream JSON (may hold an attestation document / plaintext): wiped when freed */
    size_t body_len;
    uint64_t start_ms, deadline_ms;
    int attempts;         /* upstream attempts started by the proxy */
    int http_attempts;    /* HTTP attempts reported by the client (an ExpiredToken retry counts) */
    int budget_spent;
    bool upstream;        /* passed the breaker: its outcome is recorded there */
    bool slot;            /* holds one of the max_in_flight upstream slots */
    bool queued;          /* waiting for a slot (in s->wait) */
    struct preq *wprev, *wnext;
    nd_kms_class last_cls;
    char last_msg[256];
    char kms_request_id[ND_KMS_ID_MAX + 1];
    nd_kms_req *call;
    uv_timer_t timer;     /* attempt timeout, then backoff */
    bool timer_backoff;
    struct preq *prev, *next;
} preq;

struct px_server {
    uv_loop_t *loop;
    nd_ctx ctx;
    px_config cfg;
    const char *config_path;
    int nflags;
    char **flags;
    nd_creds_provider *creds;
    nd_kms_client *kms;
    listener ls[PX_MAX_LISTEN];
    int nls;
    listener metrics;
    int nmetrics;      /* /metrics clients connected now (bounded: a local scraper needs one or two) */
    mconn *mconns;
    conn *conns;
    int nconns;
    preq *reqs;
    preq *wait_head, *wait_tail; /* FIFO of requests waiting for an in-flight slot */
    int in_flight, queued;
    counters m;
    nd_tbucket tb;
    nd_retry_budget rb;
    nd_breaker br;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_timer_t drain_timer;
    uv_timer_t unsent_timer; /* runs while some connection is above max_unsent_per_conn */
    bool unsent_timer_on;
    uint64_t next_conn_id;
    bool draining, stopped;
    uint64_t rng;
    char rbuf[65536];
    bool rbuf_busy;
};

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

static double rand01(px_server *s)
{
    /* xorshift64*: jitter only, not security */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void now_iso(char *out, size_t n)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char b[32];
    strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03dZ", b, (int)(tv.tv_usec / 1000));
}

/* Writes one JSON object as one line on stdout (jansson escapes control characters, so it cannot wrap). */
static void log_line(json_t *o)
{
    if (!o)
        return;
    char ts[40];
    now_iso(ts, sizeof ts);
    json_object_set_new(o, "ts", json_string(ts));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return;
    size_t n = strlen(s);
    s[n] = '\n';
    fwrite(s, 1, n + 1, stdout);
    fflush(stdout);
    free(s);
}

static json_t *jstr_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

static json_t *metrics_json(px_server *s)
{
    json_t *m = json_object();
    json_object_set_new(m, "kms_requests_total", json_integer((json_int_t)s->m.requests));
    json_object_set_new(m, "kms_success_total", json_integer((json_int_t)s->m.success));
    json_object_set_new(m, "kms_errors_total", json_integer((json_int_t)s->m.errors));
    json_object_set_new(m, "retries_total", json_integer((json_int_t)s->m.retries));
    json_object_set_new(m, "throttled_total", json_integer((json_int_t)s->m.throttled));
    json_object_set_new(m, "timeouts_total", json_integer((json_int_t)s->m.timeouts));
    json_object_set_new(m, "rate_limited_total", json_integer((json_int_t)s->m.rate_limited));
    json_object_set_new(m, "circuit_open_total", json_integer((json_int_t)s->m.circuit_open));
    json_object_set_new(m, "in_flight", json_integer(s->in_flight));
    json_object_set_new(m, "queued", json_integer(s->queued));
    return m;
}

static void log_event(px_server *s, const char *event, const char *fmt, ...) ND_PRINTF(3, 4);
static void log_event(px_server *s, const char *event, const char *fmt, ...)
{
    (void)s;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string(event));
    json_object_set_new(o, "message", json_string(msg));
    log_line(o);
}

static void maybe_finish_drain(px_server *s);

/* ---- connections ------------------------------------------------------------------------------------------------ */

/* Per-connection log budget: lines about requests the proxy refused (bad frames, policy, rate limit) are what a
 * hostile enclave can produce at will, so each connection gets a token bucket of conn_log_rate lines/s (burst
 * conn_log_burst). Lines over budget are counted; the count goes out in one kms_proxy_log_suppressed line before the
 * next line the connection may write, and when the connection ends. Returns true when the line may be written. */
static void log_suppressed(conn *c)
{
    if (!c->suppressed)
        return;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_log_suppressed"));
    json_object_set_new(o, "conn", json_integer((json_int_t)c->id));
    json_object_set_new(o, "suppressed", json_integer((json_int_t)c->suppressed));
    json_object_set_new(o, "message", json_string("log lines about refused requests of this connection not written "
                                                  "(conn_log_rate, conn_log_burst)"));
    log_line(o);
    c->suppressed = 0;
}

static bool conn_log_ok(conn *c)
{
    px_server *s = c->srv;
    uint64_t now = uv_now(s->loop);
    double rate = s->cfg.conn_log_rate, burst = s->cfg.conn_log_burst;
    c->log_tokens += (double)(now - c->log_last_ms) / 1000.0 * rate;
    if (c->log_tokens > burst)
        c->log_tokens = burst;
    c->log_last_ms = now;
    if (c->log_tokens < 1.0) {
        c->suppressed++;
        return false;
    }
    c->log_tokens -= 1.0;
    log_suppressed(c);
    return true;
}

/* Drops one reference; returns false when that freed the connection. */
static bool conn_unref(conn *c)
{
    if (--c->refs > 0)
        return true;
    px_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    log_suppressed(c);
    nd_frame_decoder_free(&c->dec);
    free(c);
    maybe_finish_drain(s);
    return false;
}

static void on_conn_closed(uv_handle_t *h)
{
    conn_unref((conn *)h->data);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close(&c->u.h, on_conn_closed);
}

/* Closes the connection when it has nothing left to do (peer done, no pending request, no write queued). */
static void conn_maybe_close(conn *c)
{
    if (!c->closing && (c->eof || c->srv->draining) && c->pending == 0 && c->refs == 1)
        conn_close(c);
}

typedef struct wreq {
    uv_write_t w;
    conn *c;
    unsigned char *buf;
    size_t len;
} wreq;

static void conn_update_reading(conn *c);
static void on_unsent_timer(uv_timer_t *t);

static void on_written(uv_write_t *w, int status)
{
    wreq *wr = (wreq *)w;
    conn *c = wr->c;
    c->unsent -= wr->len;
    if (c->unsent <= (size_t)c->srv->cfg.max_unsent_per_conn)
        c->over_since = 0;
    OPENSSL_cleanse(wr->buf, wr->len);
    free(wr->buf);
    free(wr);
    if (status < 0 && !c->closing)
        conn_close(c);
    px_server *s = c->srv;
    if (conn_unref(c)) {
        conn_update_reading(c);
        conn_maybe_close(c);
    }
    maybe_finish_drain(s);
}

/* Queues one frame on c. Takes no ownership of payload. */
static void conn_send(conn *c, unsigned type, uint32_t seq, const void *payload, size_t len)
{
    if (c->closing)
        return;
    wreq *wr = calloc(1, sizeof *wr);
    if (!wr)
        return;
    if (nd_frame_build(type, seq, payload, len, &wr->buf, &wr->len, NULL) < 0) {
        free(wr);
        return;
    }
    wr->c = c;
    c->refs++;
    uv_buf_t b = uv_buf_init((char *)wr->buf, (unsigned)wr->len);
    if (uv_write(&wr->w, &c->u.s, &b, 1, on_written) < 0) {
        OPENSSL_cleanse(wr->buf, wr->len);
        free(wr->buf);
        free(wr);
        c->refs--;
        conn_close(c);
        return;
    }
    /* Output the peer has not read yet is bounded: above max_unsent_per_conn, reading pauses (on_read's caller
     * updates it) and a timer closes the connection if it stays there for unsent_timeout_ms. */
    c->unsent += wr->len;
    px_server *s = c->srv;
    if (c->unsent > (size_t)s->cfg.max_unsent_per_conn && !c->over_since) {
        c->over_since = uv_now(s->loop) ? uv_now(s->loop) : 1;
        if (!s->unsent_timer_on && !s->stopped) {
            uint64_t every = (uint64_t)s->cfg.unsent_timeout_ms / 4;
            uv_timer_start(&s->unsent_timer, on_unsent_timer, every ? every : 1, every ? every : 1);
            s->unsent_timer_on = true;
        }
    }
}

/* Closes the connections that stayed above max_unsent_per_conn for unsent_timeout_ms; stops when none is above. */
static void on_unsent_timer(uv_timer_t *t)
{
    px_server *s = t->data;
    uint64_t now = uv_now(s->loop);
    bool any = false;
    for (conn *c = s->conns; c; c = c->next) {
        if (c->closing || !c->over_since)
            continue;
        if (now - c->over_since >= (uint64_t)s->cfg.unsent_timeout_ms) {
            json_t *o = json_object();
            json_object_set_new(o, "event", json_string("kms_proxy_connection_closed"));
            json_object_set_new(o, "conn", json_integer((json_int_t)c->id));
            json_object_set_new(o, "unsent_bytes", json_integer((json_int_t)c->unsent));
            json_object_set_new(o, "message", json_string("the client did not read its answers: more than "
                                                          "max_unsent_per_conn bytes queued for unsent_timeout_ms"));
            log_line(o);
            conn_close(c);
        } else {
            any = true;
        }
    }
    if (!any) {
        uv_timer_stop(t);
        s->unsent_timer_on = false;
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn *c = h->data;
    /* One read buffer for the whole server: libuv calls on_read right after on_alloc and on_read copies the bytes
     * into the connection's decoder, so the buffer is free again before the next allocation. */
    buf->base = c->srv->rbuf;
    buf->len = sizeof c->srv->rbuf;
}

static void conn_update_reading(conn *c)
{
    px_server *s = c->srv;
    bool want = !c->closing && !c->eof && !s->draining && c->pending < s->cfg.max_pending_per_conn &&
                c->unsent <= (size_t)s->cfg.max_unsent_per_conn;
    if (want && !c->reading) {
        if (uv_read_start(&c->u.s, on_alloc, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop(&c->u.s);
        c->reading = false;
    }
}

/* ---- requests --------------------------------------------------------------------------------------------------- */

static const char *class_error_code(nd_kms_class cls)
{
    switch (cls) {
    case ND_KMS_THROTTLED: return "upstream_throttled";
    case ND_KMS_TIMEOUT: return "timeout";
    case ND_KMS_UNAVAILABLE: return "upstream_unavailable";
    case ND_KMS_ACCESS_DENIED:
    case ND_KMS_EXPIRED_TOKEN: return "upstream_access_denied";
    case ND_KMS_CLIENT_ERROR: return "invalid_request";
    default: return "internal";
    }
}

/* Logs a request line. `refused` marks a request the proxy answers itself (bad frame or JSON, policy, rate limit):
 * such lines of connection c are subject to its log budget (conn_log_ok). */
static void log_request(px_server *s, conn *c, const nd_kms_request *r, bool parsed, bool refused)
{
    if (c && refused && !conn_log_ok(c))
        return;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_request"));
    json_object_set_new(o, "request_id", jstr_or_null(r ? r->request_id : NULL));
    json_object_set_new(o, "trace_id", jstr_or_null(r ? r->trace_id : NULL));
    json_object_set_new(o, "op", parsed ? json_string(nd_kms_op_name(r->op)) : json_null());
    json_object_set_new(o, "recipient", json_boolean(parsed && r->recipient.len > 0));
    json_object_set_new(o, "ciphertext_len", json_integer(parsed ? (json_int_t)r->ciphertext_blob.len : 0));
    json_object_set_new(o, "key_id", jstr_or_null(parsed ? r->key_id : NULL));
    log_line(o);
}

/* Sends the single response of a request and logs it. resp is a success body (NULL for errors). */
static void respond(px_server *s, conn *c, unsigned frame_type, uint32_t seq, const char *request_id,
                    const char *trace_id, const char *kms_request_id, const char *error_code, const char *message,
                    const nd_kms_response *resp, int attempts, uint64_t start_ms)
{
    nd_kms_response e;
    if (!resp) {
        memset(&e, 0, sizeof e);
        e.is_error = true;
        snprintf(e.error_code, sizeof e.error_code, "%s", error_code);
        snprintf(e.error_message, sizeof e.error_message, "%s", message ? message : "");
        snprintf(e.kms_request_id, sizeof e.kms_request_id, "%s", kms_request_id ? kms_request_id : "");
        resp = &e;
    }
    /* request_id/trace_id are copied into the response for the client to match. */
    nd_kms_response *w = (nd_kms_response *)resp;
    snprintf(w->request_id, sizeof w->request_id, "%s", request_id ? request_id : "");
    snprintf(w->trace_id, sizeof w->trace_id, "%s", trace_id ? trace_id : "");
    bool ok = !resp->is_error;
    if (ok)
        s->m.success++;
    else
        s->m.errors++;
    /* an error answered without any upstream attempt is a refusal: it counts against the connection's log budget */
    if (!ok && attempts == 0 && c && !conn_log_ok(c))
        goto send;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_response"));
    json_object_set_new(o, "request_id", jstr_or_null(request_id));
    json_object_set_new(o, "trace_id", jstr_or_null(trace_id));
    json_object_set_new(o, "ok", json_boolean(ok));
    json_object_set_new(o, "error_code", ok ? json_null() : json_string(resp->error_code));
    json_object_set_new(o, "kms_request_id", jstr_or_null(resp->kms_request_id));
    json_object_set_new(o, "attempts", json_integer(attempts));
    json_object_set_new(o, "duration_ms", json_integer((json_int_t)(uv_now(s->loop) - start_ms)));
    if (!ok && message && message[0])
        json_object_set_new(o, "message", json_string(message));
    json_object_set_new(o, "metrics", metrics_json(s));
    log_line(o); /* logged before it is sent, so a client that got its answer finds the line */
send:;
    size_t len = 0;
    char *payload = nd_kms_response_encode(resp, &len);
    if (c && payload)
        conn_send(c, frame_type, seq, payload, len);
    if (payload) {
        OPENSSL_cleanse(payload, len);
        free(payload);
    }
}

static void on_req_timer_closed(uv_handle_t *h)
{
    preq *q = h->data;
    px_server *s = q->srv;
    if (q->body) {
        OPENSSL_cleanse(q->body, q->body_len);
        free(q->body);
    }
    nd_kms_request_free(&q->r);
    conn *c = q->c;
    free(q);
    if (c) {
        c->pending--;
        if (conn_unref(c)) {
            conn_update_reading(c);
            conn_maybe_close(c);
        }
    }
    maybe_finish_drain(s);
}

static void start_attempt(preq *q);
static void req_finish(preq *q, const char *error_code, const char *message, const nd_kms_response *resp);

static void wait_remove(preq *q)
{
    px_server *s = q->srv;
    if (q->wprev)
        q->wprev->wnext = q->wnext;
    else
        s->wait_head = q->wnext;
    if (q->wnext)
        q->wnext->wprev = q->wprev;
    else
        s->wait_tail = q->wprev;
    q->wprev = q->wnext = NULL;
    q->queued = false;
    s->queued--;
}

static void on_wait_deadline(uv_timer_t *t)
{
    preq *q = t->data;
    q->last_cls = ND_KMS_TIMEOUT;
    req_finish(q, "timeout", "no in-flight slot became free before the deadline (max_in_flight)", NULL);
}

/* Gives free in-flight slots to waiting requests, oldest first. */
static void dispatch_waiting(px_server *s)
{
    while (s->wait_head && s->in_flight < s->cfg.max_in_flight) {
        preq *q = s->wait_head;
        wait_remove(q);
        uv_timer_stop(&q->timer);
        q->slot = true;
        s->in_flight++;
        start_attempt(q);
    }
}

/* Ends a request that went into the upstream path: records the breaker/budget outcome, answers, frees. */
static void req_finish(preq *q, const char *error_code, const char *message, const nd_kms_response *resp)
{
    px_server *s = q->srv;
    if (q->call) {
        nd_kms_cancel(q->call);
        q->call = NULL;
    }
    uv_timer_stop(&q->timer);
    if (q->queued)
        wait_remove(q);
    if (q->upstream) {
        bool err = !resp && (q->last_cls == ND_KMS_TIMEOUT || q->last_cls == ND_KMS_THROTTLED ||
                             q->last_cls == ND_KMS_UNAVAILABLE);
        nd_breaker_record(&s->br, uv_now(s->loop), err);
        if (resp)
            nd_retry_budget_success(&s->rb, q->budget_spent);
    }
    bool freed_slot = q->slot;
    if (q->slot) {
        q->slot = false;
        s->in_flight--;
    }
    if (q->prev)
        q->prev->next = q->next;
    else
        s->reqs = q->next;
    if (q->next)
        q->next->prev = q->prev;
    conn *c = q->c && !q->c->closing ? q->c : NULL;
    respond(s, c, ND_FRAME_KMS_PROXY, q->seq, q->r.request_id, q->r.trace_id, q->kms_request_id, error_code,
            message, resp, q->attempts, q->start_ms);
    uv_close((uv_handle_t *)&q->timer, on_req_timer_closed);
    if (freed_slot)
        dispatch_waiting(s);
}

static int b64_field(json_t *o, const char *key, const nd_bytes *b)
{
    if (!b->data)
        return 0;
    char *t = NULL;
    size_t tl = 0;
    if (nd_b64_encode(b->data, b->len, &t, &tl, NULL) < 0)
        return -ENOMEM;
    int rc = json_object_set_new(o, key, json_stringn(t, tl));
    OPENSSL_cleanse(t, tl);
    free(t);
    return rc;
}

/* The KMS JSON 1.1 request body for r. */
static char *upstream_body(const nd_kms_request *r, size_t *len)
{
    json_t *o = json_object();
    if (r->key_id[0])
        json_object_set_new(o, "KeyId", json_string(r->key_id));
    if (r->key_spec[0])
        json_object_set_new(o, "KeySpec", json_string(r->key_spec));
    if (r->number_of_bytes)
        json_object_set_new(o, "NumberOfBytes", json_integer(r->number_of_bytes));
    if (r->encryption_algorithm[0])
        json_object_set_new(o, "EncryptionAlgorithm", json_string(r->encryption_algorithm));
    if (r->encryption_context)
        json_object_set(o, "EncryptionContext", r->encryption_context);
    if (r->grant_tokens)
        json_object_set(o, "GrantTokens", r->grant_tokens);
    int rc = b64_field(o, "CiphertextBlob", &r->ciphertext_blob);
    rc |= b64_field(o, "Plaintext", &r->plaintext);
    if (r->recipient.data) {
        json_t *rec = json_object();
        json_object_set_new(rec, "KeyEncryptionAlgorithm", json_string(r->key_encryption_algorithm));
        rc |= b64_field(rec, "AttestationDocument", &r->recipient);
        json_object_set_new(o, "Recipient", rec);
    }
    char *out = rc ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (out)
        *len = strlen(out);
    return out;
}

/* Reads a base64 blob field of a KMS response. Returns 0 (absent or decoded) or -EBADMSG. */
static int kms_blob(json_t *o, const char *key, nd_bytes *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -EBADMSG;
    if (json_string_length(v) == 0) {
        out->data = malloc(1);
        out->len = 0;
        return out->data ? 0 : -ENOMEM;
    }
    return nd_b64_decode(json_string_value(v), json_string_length(v), &out->data, &out->len, NULL) < 0 ? -EBADMSG
                                                                                                          : 0;
}

static void on_backoff_done(uv_timer_t *t)
{
    start_attempt((preq *)t->data);
}

/* After a retryable failure: retry when attempts, deadline and budget allow, else answer with the last error. */
static void maybe_retry(preq *q)
{
    px_server *s = q->srv;
    const px_config *cfg = &s->cfg;
    uint64_t now = uv_now(s->loop);
    const char *code = class_error_code(q->last_cls);
    if (s->draining) {
        req_finish(q, code, q->last_msg, NULL);
        return;
    }
    if (q->attempts >= cfg->max_attempts) {
        req_finish(q, code, q->last_msg, NULL);
        return;
    }
    uint64_t wait = nd_backoff_ms(q->attempts, (uint64_t)cfg->backoff_base_ms, (uint64_t)cfg->backoff_cap_ms,
                                  rand01(s));
    /* The retry must fit in the deadline: the backoff plus at least a few ms of attempt. */
    if (now + wait + 5 >= q->deadline_ms) {
        char m[400];
        snprintf(m, sizeof m, "%.250s (no time left for a retry within the %ld ms deadline)", q->last_msg,
                 cfg->deadline_ms);
        req_finish(q, code, m, NULL);
        return;
    }
    int cost = nd_retry_budget_take(&s->rb, q->last_cls == ND_KMS_TIMEOUT);
    if (cost == 0) {
        char m[400];
        snprintf(m, sizeof m, "%.250s (retry budget exhausted)", q->last_msg);
        req_finish(q, code, m, NULL);
        return;
    }
    q->budget_spent += cost;
    q->timer_backoff = true;
    uv_timer_start(&q->timer, on_backoff_done, wait, 0);
}

static void on_attempt_timeout(uv_timer_t *t)
{
    preq *q = t->data;
    if (q->call) {
        nd_kms_cancel(q->call);
        q->call = NULL;
    }
    q->srv->m.timeouts++;
    q->last_cls = ND_KMS_TIMEOUT;
    snprintf(q->last_msg, sizeof q->last_msg, "KMS did not answer within the attempt timeout");
    maybe_retry(q);
}

static void on_kms_result(void *ud, const nd_kms_result *res)
{
    preq *q = ud;
    px_server *s = q->srv;
    q->call = NULL;
    uv_timer_stop(&q->timer);
    q->http_attempts += res->attempts;
    if (res->request_id && res->request_id[0])
        snprintf(q->kms_request_id, sizeof q->kms_request_id, "%s", res->request_id);
    q->last_cls = res->cls;
    if (res->cls != ND_KMS_OK) {
        snprintf(q->last_msg, sizeof q->last_msg, "KMS %.64s: %.160s", res->error_code[0] ? res->error_code : "error",
                 res->message ? res->message : "");
        if (res->cls == ND_KMS_THROTTLED)
            s->m.throttled++;
        else if (res->cls == ND_KMS_TIMEOUT)
            s->m.timeouts++;
        if (nd_kms_class_retryable(res->cls))
            maybe_retry(q);
        else
            req_finish(q, class_error_code(res->cls), q->last_msg, NULL);
        return;
    }
    /* Success: parse what KMS returned and check it fails closed for recipient requests. */
    nd_kms_response out;
    memset(&out, 0, sizeof out);
    out.op = q->r.op;
    snprintf(out.kms_request_id, sizeof out.kms_request_id, "%s", q->kms_request_id);
    json_t *o = json_loadb(res->body, res->body_len, JSON_REJECT_DUPLICATES, NULL);
    const char *err = NULL;
    if (!json_is_object(o)) {
        err = "KMS returned a body that is not a JSON object";
    } else if (kms_blob(o, "CiphertextBlob", &out.ciphertext_blob) < 0 || kms_blob(o, "Plaintext", &out.plaintext) < 0 ||
               kms_blob(o, "CiphertextForRecipient", &out.ciphertext_for_recipient) < 0) {
        err = "KMS returned a blob that is not base64";
    } else {
        json_t *k = json_object_get(o, "KeyId");
        if (json_is_string(k))
            nd_frame_strfield(out.key_id, sizeof out.key_id, json_string_value(k));
        json_t *ea = json_object_get(o, "EncryptionAlgorithm");
        if (json_is_string(ea))
            nd_frame_strfield(out.encryption_algorithm, sizeof out.encryption_algorithm, json_string_value(ea));
        if (q->r.recipient.len > 0 && out.plaintext.data)
            err = "KMS returned Plaintext for a recipient request; refused (fail closed)";
        else if (q->r.recipient.len > 0 && !out.ciphertext_for_recipient.data)
            err = "KMS returned no CiphertextForRecipient for a recipient request; refused (fail closed)";
    }
    json_decref(o); /* jansson's copies of the blobs go with it; our decoded copies are wiped below */
    if (err)
        req_finish(q, "internal", err, NULL);
    else
        req_finish(q, NULL, NULL, &out);
    nd_kms_response_free(&out);
}

static void start_attempt(preq *q)
{
    px_server *s = q->srv;
    uint64_t now = uv_now(s->loop);
    q->timer_backoff = false;
    if (now >= q->deadline_ms) {
        q->srv->m.timeouts++;
        req_finish(q, "timeout", "deadline reached before an attempt could start", NULL);
        return;
    }
    uint64_t remaining = q->deadline_ms - now;
    uint64_t t = (uint64_t)s->cfg.attempt_timeout_ms < remaining ? (uint64_t)s->cfg.attempt_timeout_ms : remaining;
    if (q->attempts > 0)
        s->m.retries++;
    q->attempts++;
    nd_err e;
    nd_err_clear(&e);
    /* The client's own per-request timeout is a little longer: the proxy's timer decides, deterministically. */
    int rc = nd_kms_call(s->kms, nd_kms_op_name(q->r.op), q->body, q->body_len, (double)(t + 50) / 1000.0,
                         on_kms_result, q, &q->call, &e);
    if (rc < 0) {
        q->call = NULL;
        q->last_cls = ND_KMS_INTERNAL;
        req_finish(q, "internal", e.msg[0] ? e.msg : "could not start the KMS call", NULL);
        return;
    }
    uv_timer_start(&q->timer, on_attempt_timeout, t, 0);
}

/* Handles one KmsProxy frame. */
static void handle_request(conn *c, const nd_frame *f)
{
    px_server *s = c->srv;
    const px_config *cfg = &s->cfg;
    uint64_t start = uv_now(s->loop);
    s->m.requests++;
    preq *q = calloc(1, sizeof *q);
    if (!q) {
        log_request(s, c, NULL, false, true);
        respond(s, c, ND_FRAME_ERROR, f->seq, NULL, NULL, NULL, "internal", "out of memory", NULL, 0, start);
        return;
    }
    nd_err e;
    nd_err_clear(&e);
    if (nd_kms_request_parse(f->payload, f->len, &q->r, &e) < 0) {
        log_request(s, c, &q->r, false, true);
        respond(s, c, ND_FRAME_ERROR, f->seq, q->r.request_id, q->r.trace_id, NULL, "invalid_request", e.msg, NULL,
                0, start);
        nd_kms_request_free(&q->r);
        free(q);
        return;
    }
    const char *code = NULL;
    char msg[300] = "";
    const char *op = nd_kms_op_name(q->r.op);
    bool wants_recipient = q->r.op != ND_KMS_OP_ENCRYPT;
    if (!px_config_op_allowed(cfg, op)) {
        code = "invalid_request";
        snprintf(msg, sizeof msg, "operation %s is not allowed by allow_ops", op);
    } else if (cfg->require_recipient && wants_recipient && q->r.recipient.len == 0) {
        code = "invalid_request";
        snprintf(msg, sizeof msg, "%s without a recipient is refused (require_recipient)", op);
    } else if (!px_config_key_allowed(cfg, q->r.key_id)) {
        code = "invalid_request";
        snprintf(msg, sizeof msg, "%s is not allowed by allow_keys", q->r.key_id[0] ? "key" : "a request without key_id");
    } else if (!nd_tbucket_take(&s->tb, start)) {
        code = "rate_limited";
        s->m.rate_limited++;
        snprintf(msg, sizeof msg, "rate limit of %g requests/s exceeded", cfg->rate_limit_rps);
    } else if (s->in_flight >= cfg->max_in_flight && s->queued >= cfg->max_queue) {
        code = "rate_limited";
        s->m.rate_limited++;
        snprintf(msg, sizeof msg, "%ld requests in flight and %ld waiting (max_in_flight, max_queue)",
                 cfg->max_in_flight, cfg->max_queue);
    } else if (!nd_breaker_allow(&s->br, start)) {
        code = "circuit_open";
        s->m.circuit_open++;
        snprintf(msg, sizeof msg, "circuit breaker open after upstream errors");
    }
    log_request(s, c, &q->r, true, code != NULL);
    if (code) {
        respond(s, c, ND_FRAME_KMS_PROXY, f->seq, q->r.request_id, q->r.trace_id, NULL, code, msg, NULL, 0, start);
        nd_kms_request_free(&q->r);
        free(q);
        return;
    }
    q->body = upstream_body(&q->r, &q->body_len);
    q->srv = s;
    q->c = c;
    q->seq = f->seq;
    q->start_ms = start;
    q->deadline_ms = start + (uint64_t)cfg->deadline_ms;
    q->upstream = true;
    c->refs++;
    c->pending++;
    q->next = s->reqs;
    if (s->reqs)
        s->reqs->prev = q;
    s->reqs = q;
    uv_timer_init(s->loop, &q->timer);
    q->timer.data = q;
    if (!q->body) {
        q->last_cls = ND_KMS_INTERNAL;
        req_finish(q, "internal", "out of memory", NULL);
        return;
    }
    conn_update_reading(c);
    if (s->in_flight < cfg->max_in_flight) {
        q->slot = true;
        s->in_flight++;
        start_attempt(q);
        return;
    }
    /* Wait for a slot, FIFO, at most until the deadline. */
    q->queued = true;
    q->wprev = s->wait_tail;
    if (s->wait_tail)
        s->wait_tail->wnext = q;
    else
        s->wait_head = q;
    s->wait_tail = q;
    s->queued++;
    uv_timer_start(&q->timer, on_wait_deadline, (uint64_t)cfg->deadline_ms, 0);
}

static void handle_frame(conn *c, const nd_frame *f)
{
    px_server *s = c->srv;
    switch (f->type) {
    case ND_FRAME_KMS_PROXY:
        handle_request(c, f);
        return;
    case ND_FRAME_HEARTBEAT:
        conn_send(c, ND_FRAME_HEARTBEAT, f->seq, NULL, 0);
        return;
    case ND_FRAME_HELLO: {
        const char *hello = "{\"server\":\"nitrodiag-kms-proxy\",\"version\":\"" ND_VERSION "\"}";
        conn_send(c, ND_FRAME_HELLO, f->seq, hello, strlen(hello));
        return;
    }
    case ND_FRAME_SHUTDOWN:
        c->eof = true;
        conn_update_reading(c);
        conn_maybe_close(c);
        return;
    default: {
        char m[120];
        snprintf(m, sizeof m, "frame type %s (0x%02x) is not served by the KMS proxy", nd_frame_type_name(f->type),
                 f->type);
        s->m.requests++;
        log_request(s, c, NULL, false, true);
        respond(s, c, ND_FRAME_ERROR, f->seq, NULL, NULL, NULL, "invalid_request", m, NULL, 0, uv_now(s->loop));
        return;
    }
    }
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
    px_server *s = c->srv;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: no more requests; answer what is pending, then close. */
        c->eof = true;
        conn_update_reading(c);
        if (nread != UV_EOF && c->pending == 0)
            conn_close(c);
        else
            conn_maybe_close(c);
        return;
    }
    nd_err e;
    nd_err_clear(&e);
    int rc = nd_frame_feed(&c->dec, buf->base, (size_t)nread, &e);
    OPENSSL_cleanse(buf->base, (size_t)nread);
    nd_frame f;
    while (rc >= 0 && !c->closing && (rc = nd_frame_next(&c->dec, &f, &e)) == 1)
        handle_frame(c, &f);
    if (rc < 0 && !c->closing) {
        /* The stream cannot be resynchronised: answer once with an Error frame, then close after pending work. */
        s->m.requests++;
        log_request(s, c, NULL, false, true);
        respond(s, c, ND_FRAME_ERROR, 0, NULL, NULL, NULL, "invalid_request", e.msg, NULL, 0, uv_now(s->loop));
        c->eof = true;
        conn_update_reading(c);
        conn_maybe_close(c);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    px_server *s = l->srv;
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    if (l->kind == K_TCP)
        uv_tcp_init(s->loop, &c->u.tcp);
    else
        uv_pipe_init(s->loop, &c->u.pipe, 0);
    c->u.h.data = c;
    c->srv = s;
    c->refs = 1;
    c->id = ++s->next_conn_id;
    c->log_tokens = s->cfg.conn_log_burst;
    c->log_last_ms = uv_now(s->loop);
    nd_frame_decoder_init(&c->dec, (size_t)s->cfg.max_frame);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, &c->u.s) < 0 || s->draining || s->nconns > s->cfg.max_connections) {
        if (s->nconns > s->cfg.max_connections)
            log_event(s, "kms_proxy_connection_refused", "%d connections open (max_connections %ld)",
                      s->nconns - 1, s->cfg.max_connections);
        conn_close(c);
        return;
    }
    if (l->kind == K_TCP)
        uv_tcp_nodelay(&c->u.tcp, 1);
    conn_update_reading(c);
}

/* ---- /metrics ------------------------------------------------------------------------------------------------- */

static void on_mconn_closed(uv_handle_t *h)
{
    mconn *mc = h->data;
    px_server *s = mc->srv;
    s->nmetrics--;
    if (mc->prev)
        mc->prev->next = mc->next;
    else
        s->mconns = mc->next;
    if (mc->next)
        mc->next->prev = mc->prev;
    free(mc);
}

static void mconn_close(mconn *mc)
{
    if (mc->closing)
        return;
    mc->closing = true;
    uv_close(&mc->u.h, on_mconn_closed);
}

typedef struct mwreq {
    uv_write_t w;
    char *text;
} mwreq;

static void on_metrics_written(uv_write_t *w, int status)
{
    mwreq *m = (mwreq *)w;
    mconn *mc = w->handle->data;
    free(m->text);
    free(m);
    mconn_close(mc);
}

static char *metrics_text(px_server *s)
{
    static const struct { const char *name, *help; size_t off; } cs[] = {
        {"kms_requests_total", "Requests received from enclaves (every request frame).",
         offsetof(counters, requests)},
        {"kms_success_total", "Requests answered with a KMS result.", offsetof(counters, success)},
        {"kms_errors_total", "Requests answered with an error.", offsetof(counters, errors)},
        {"retries_total", "Upstream retry attempts started.", offsetof(counters, retries)},
        {"throttled_total", "Upstream attempts answered with throttling.", offsetof(counters, throttled)},
        {"timeouts_total", "Upstream attempts that timed out.", offsetof(counters, timeouts)},
        {"rate_limited_total", "Requests refused by the rate limit or a full in-flight queue.",
         offsetof(counters, rate_limited)},
        {"circuit_open_total", "Requests refused because the circuit breaker was open.",
         offsetof(counters, circuit_open)},
    };
    size_t cap = 4096, len = 0;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        uint64_t v = *(const uint64_t *)((const char *)&s->m + cs[i].off);
        len += (size_t)snprintf(t + len, cap - len, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", cs[i].name,
                                cs[i].help, cs[i].name, cs[i].name, (unsigned long long)v);
    }
    nd_breaker_state st = nd_breaker_state_at(&s->br, uv_now(s->loop));
    len += (size_t)snprintf(t + len, cap - len,
                            "# HELP in_flight Requests waiting for KMS now.\n# TYPE in_flight gauge\nin_flight %d\n"
                            "# HELP queued Requests waiting for an in-flight slot.\n# TYPE queued gauge\nqueued %d\n"
                            "# HELP connections Enclave connections open now.\n# TYPE connections gauge\n"
                            "connections %d\n"
                            "# HELP circuit_state Circuit breaker state (0 closed, 1 open, 2 half-open).\n"
                            "# TYPE circuit_state gauge\ncircuit_state %d\n",
                            s->in_flight, s->queued, s->nconns, (int)st);
    (void)len;
    return t;
}

static void metrics_answer(mconn *mc)
{
    mc->answered = true;
    px_server *s = mc->srv;
    char *body = NULL;
    const char *status = "404 Not Found";
    if (strncmp(mc->buf, "GET /metrics ", 13) == 0 || strncmp(mc->buf, "GET /metrics?", 13) == 0) {
        body = metrics_text(s);
        status = "200 OK";
    }
    const char *b = body ? body : "not found\n";
    size_t bl = strlen(b);
    mwreq *w = calloc(1, sizeof *w);
    size_t cap = bl + 256;
    if (w)
        w->text = malloc(cap);
    if (!w || !w->text) {
        free(w);
        free(body);
        mconn_close(mc);
        return;
    }
    int n = snprintf(w->text, cap,
                     "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     status, bl, b);
    free(body);
    uv_buf_t ub = uv_buf_init(w->text, (unsigned)n);
    uv_read_stop(&mc->u.s);
    if (uv_write(&w->w, &mc->u.s, &ub, 1, on_metrics_written) < 0) {
        free(w->text);
        free(w);
        mconn_close(mc);
    }
}

static void on_metrics_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    mconn *mc = h->data;
    buf->base = mc->buf + mc->len;
    buf->len = sizeof mc->buf - 1 - mc->len;
}

static void on_metrics_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    mconn *mc = st->data;
    if (mc->answered)
        return;
    if (nread < 0) {
        mconn_close(mc);
        return;
    }
    mc->len += (size_t)nread;
    mc->buf[mc->len] = '\0';
    if (strstr(mc->buf, "\r\n\r\n") || strstr(mc->buf, "\n\n") || mc->len >= sizeof mc->buf - 1)
        metrics_answer(mc);
}

static void on_metrics_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0)
        return;
    mconn *mc = calloc(1, sizeof *mc);
    if (!mc)
        return;
    mc->srv = l->srv;
    l->srv->nmetrics++;
    mc->next = l->srv->mconns;
    if (mc->next)
        mc->next->prev = mc;
    l->srv->mconns = mc;
    if (l->kind == K_TCP)
        uv_tcp_init(l->srv->loop, &mc->u.tcp);
    else
        uv_pipe_init(l->srv->loop, &mc->u.pipe, 0);
    mc->u.h.data = mc;
    if (uv_accept(server, &mc->u.s) < 0 || l->srv->nmetrics > 32 ||
        uv_read_start(&mc->u.s, on_metrics_alloc, on_metrics_read) < 0)
        mconn_close(mc);
}

/* ---- listeners -------------------------------------------------------------------------------------------------- */

/* Opens l on addr ("vsock:CID|any:PORT", "unix:PATH", "tcp:HOST:PORT"). loopback_only refuses non-loopback tcp. */
static int listener_open(px_server *s, listener *l, const char *addr, bool loopback_only, uv_connection_cb cb,
                         nd_err *err)
{
    memset(l, 0, sizeof *l);
    l->srv = s;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    int rc;
    if (strncmp(addr, "unix:", 5) == 0) {
        const char *path = addr + 5;
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path); /* a stale socket from an earlier run */
        l->kind = K_PIPE;
        uv_pipe_init(s->loop, &l->u.pipe, 0);
        rc = uv_pipe_bind(&l->u.pipe, path);
        if (rc == 0)
            snprintf(l->unlink_path, sizeof l->unlink_path, "%s", path);
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        char host[256];
        const char *hp = addr + 4, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof host)
            return nd_err_set(err, -EINVAL, "listen address %s: expected tcp:HOST:PORT", addr);
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = '\0';
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        int port = atoi(colon + 1);
        struct sockaddr_storage ss;
        if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
            uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
            return nd_err_set(err, -EINVAL, "listen address %s: %s is not an IP address", addr, host);
        if (loopback_only && strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0)
            return nd_err_set(err, -EINVAL, "listen address %s: tcp listeners must be on loopback", addr);
        l->kind = K_TCP;
        uv_tcp_init(s->loop, &l->u.tcp);
        rc = uv_tcp_bind(&l->u.tcp, (const struct sockaddr *)&ss, 0);
    } else if (strncmp(addr, "vsock:", 6) == 0) {
        const char *p = addr + 6, *colon = strchr(p, ':');
        if (!colon)
            return nd_err_set(err, -EINVAL, "listen address %s: expected vsock:CID:PORT", addr);
        unsigned cid = strncmp(p, "any:", 4) == 0 ? VMADDR_CID_ANY : (unsigned)strtoul(p, NULL, 10);
        unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return nd_err_set(err, -errno, "listen %s: no vsock transport on this host (%s)", addr, strerror(errno));
        struct sockaddr_vm vm;
        memset(&vm, 0, sizeof vm);
        vm.svm_family = AF_VSOCK;
        vm.svm_cid = cid;
        vm.svm_port = port;
        if (bind(fd, (struct sockaddr *)&vm, sizeof vm) < 0) {
            int e = errno;
            close(fd);
            return nd_err_set(err, -e, "listen %s: bind: %s", addr, strerror(e));
        }
        l->kind = K_PIPE;
        uv_pipe_init(s->loop, &l->u.pipe, 0);
        rc = uv_pipe_open(&l->u.pipe, fd);
    } else {
        return nd_err_set(err, -EINVAL, "listen address %s: expected vsock:, unix: or tcp:", addr);
    }
    l->u.h.data = l;
    l->open = true;
    if (rc == 0)
        rc = uv_listen(&l->u.s, 511, cb);
    if (rc < 0)
        return nd_err_set(err, rc, "listen %s: %s", addr, uv_strerror(rc));
    return 0;
}

static void listener_close(listener *l)
{
    if (!l->open)
        return;
    l->open = false;
    uv_close(&l->u.h, NULL);
    if (l->unlink_path[0])
        unlink(l->unlink_path);
}

/* ---- config reload and shutdown ---------------------------------------------------------------------------------- */

int px_build_config(px_config *cfg, const char *path, int nflags, char **flags, nd_err *err)
{
    px_config_defaults(cfg);
    int rc;
    if (path && (rc = px_config_load_file(cfg, path, err)) < 0)
        return rc;
    for (int i = 0; i < nflags; i++) {
        const char *f = flags[i] + 2;
        const char *eq = strchr(f, '=');
        char key[128];
        if (!eq || (size_t)(eq - f) >= sizeof key)
            return nd_err_set(err, -EINVAL, "bad flag %s", flags[i]);
        memcpy(key, f, (size_t)(eq - f));
        key[eq - f] = '\0';
        if ((rc = px_config_set(cfg, key, eq + 1, err)) < 0)
            return rc;
    }
    return px_config_validate(cfg, err);
}

static void apply_policy(px_server *s, bool first)
{
    const px_config *c = &s->cfg;
    uint64_t now = uv_now(s->loop);
    if (first) {
        nd_tbucket_init(&s->tb, c->rate_limit_rps, c->rate_limit_burst, now);
        nd_retry_budget_init(&s->rb, (int)c->retry_budget, (int)c->retry_cost, (int)c->retry_timeout_cost,
                             (int)c->retry_refund);
        nd_breaker_init(&s->br, (uint64_t)(c->breaker_window_s * 1000), (int)c->breaker_min_requests,
                        c->breaker_error_ratio, (uint64_t)(c->breaker_open_s * 1000));
    } else {
        nd_tbucket_configure(&s->tb, c->rate_limit_rps, c->rate_limit_burst, now);
        nd_retry_budget_configure(&s->rb, (int)c->retry_budget, (int)c->retry_cost, (int)c->retry_timeout_cost,
                                  (int)c->retry_refund);
        nd_breaker_configure(&s->br, (uint64_t)(c->breaker_window_s * 1000), (int)c->breaker_min_requests,
                             c->breaker_error_ratio, (uint64_t)(c->breaker_open_s * 1000));
    }
}

static void on_sighup(uv_signal_t *h, int sig)
{
    px_server *s = h->data;
    px_config n;
    nd_err e;
    nd_err_clear(&e);
    if (px_build_config(&n, s->config_path, s->nflags, s->flags, &e) < 0) {
        json_t *o = json_object();
        json_object_set_new(o, "event", json_string("kms_proxy_reload"));
        json_object_set_new(o, "ok", json_false());
        json_object_set_new(o, "message", json_string(e.msg));
        log_line(o);
        return;
    }
    /* Listeners and the upstream client are fixed for the life of the process. */
    static const char *const fixed[] = {"listen", "metrics_listen", "region", "endpoint", "ca_file", "https_proxy",
                                        "credentials", "imds_endpoint", "max_upstream_connections", "max_frame",
                                        "connect_timeout_ms"};
    json_t *restart = json_array();
    if (strcmp(n.listen, s->cfg.listen)) json_array_append_new(restart, json_string(fixed[0]));
    if (strcmp(n.metrics_listen, s->cfg.metrics_listen)) json_array_append_new(restart, json_string(fixed[1]));
    if (strcmp(n.region, s->cfg.region)) json_array_append_new(restart, json_string(fixed[2]));
    if (strcmp(n.endpoint, s->cfg.endpoint)) json_array_append_new(restart, json_string(fixed[3]));
    if (strcmp(n.ca_file, s->cfg.ca_file)) json_array_append_new(restart, json_string(fixed[4]));
    if (strcmp(n.https_proxy, s->cfg.https_proxy)) json_array_append_new(restart, json_string(fixed[5]));
    if (strcmp(n.credentials, s->cfg.credentials)) json_array_append_new(restart, json_string(fixed[6]));
    if (strcmp(n.imds_endpoint, s->cfg.imds_endpoint)) json_array_append_new(restart, json_string(fixed[7]));
    if (n.max_upstream_connections != s->cfg.max_upstream_connections)
        json_array_append_new(restart, json_string(fixed[8]));
    if (n.max_frame != s->cfg.max_frame) json_array_append_new(restart, json_string(fixed[9]));
    if (n.connect_timeout_ms != s->cfg.connect_timeout_ms) json_array_append_new(restart, json_string(fixed[10]));
    memcpy(n.listen, s->cfg.listen, sizeof n.listen);
    memcpy(n.metrics_listen, s->cfg.metrics_listen, sizeof n.metrics_listen);
    memcpy(n.region, s->cfg.region, sizeof n.region);
    memcpy(n.endpoint, s->cfg.endpoint, sizeof n.endpoint);
    memcpy(n.ca_file, s->cfg.ca_file, sizeof n.ca_file);
    memcpy(n.https_proxy, s->cfg.https_proxy, sizeof n.https_proxy);
    memcpy(n.credentials, s->cfg.credentials, sizeof n.credentials);
    memcpy(n.imds_endpoint, s->cfg.imds_endpoint, sizeof n.imds_endpoint);
    n.max_upstream_connections = s->cfg.max_upstream_connections;
    n.max_frame = s->cfg.max_frame;
    n.connect_timeout_ms = s->cfg.connect_timeout_ms;
    s->cfg = n;
    apply_policy(s, false);
    for (conn *c = s->conns; c; c = c->next)
        conn_update_reading(c);
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_reload"));
    json_object_set_new(o, "ok", json_true());
    json_object_set_new(o, "deadline_ms", json_integer(n.deadline_ms));
    json_object_set_new(o, "rate_limit_rps", json_real(n.rate_limit_rps));
    json_object_set_new(o, "max_in_flight", json_integer(n.max_in_flight));
    json_object_set_new(o, "allow_ops", json_string(n.allow_ops));
    json_object_set_new(o, "require_recipient", json_boolean(n.require_recipient));
    json_object_set_new(o, "needs_restart", restart);
    log_line(o);
}

static void stop_everything(px_server *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    for (conn *c = s->conns; c; c = c->next)
        conn_close(c);
    listener_close(&s->metrics);
    for (mconn *mc = s->mconns; mc; mc = mc->next)
        mconn_close(mc);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->unsent_timer, NULL);
    nd_kms_client_free(s->kms);
    s->kms = NULL;
    nd_creds_provider_free(s->creds);
    s->creds = NULL;
    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_stop"));
    json_object_set_new(o, "metrics", metrics_json(s));
    log_line(o);
}

static void maybe_finish_drain(px_server *s)
{
    if (!s->draining || s->stopped || s->in_flight > 0 || s->queued > 0)
        return;
    for (conn *c = s->conns; c; c = c->next)
        if (c->refs > 1 && !c->closing)
            return; /* responses still being written */
    stop_everything(s);
}

static void on_drain_timeout(uv_timer_t *t)
{
    px_server *s = t->data;
    log_event(s, "kms_proxy_drain_timeout", "%d requests still in flight after drain_timeout_ms; answering timeout",
              s->in_flight);
    while (s->reqs)
        req_finish(s->reqs, "timeout", "the proxy is shutting down", NULL);
    stop_everything(s);
}

static void on_sigterm(uv_signal_t *h, int sig)
{
    px_server *s = h->data;
    if (s->draining)
        return;
    s->draining = true;
    log_event(s, "kms_proxy_draining", "signal %d: no new connections; %d requests in flight", sig, s->in_flight);
    for (int i = 0; i < s->nls; i++)
        listener_close(&s->ls[i]);
    for (conn *c = s->conns; c; c = c->next) {
        conn_update_reading(c);
        if (c->pending == 0 && c->refs == 1)
            conn_close(c);
    }
    uv_timer_start(&s->drain_timer, on_drain_timeout, (uint64_t)s->cfg.drain_timeout_ms, 0);
    maybe_finish_drain(s);
}

/* ---- start / free ----------------------------------------------------------------------------------------------- */

int px_server_start(uv_loop_t *loop, const px_config *cfg, const char *config_path, int nflags, char **flags,
                    px_server **out, nd_err *err)
{
    *out = NULL;
    px_server *s = calloc(1, sizeof *s);
    if (!s)
        return nd_err_set(err, -ENOMEM, "out of memory");
    s->loop = loop;
    nd_ctx_init(&s->ctx, loop);
    s->cfg = *cfg;
    s->config_path = config_path;
    s->nflags = nflags;
    s->flags = flags;
    s->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    apply_policy(s, true);
    int rc;

    nd_creds_opts co;
    memset(&co, 0, sizeof co);
    co.source = !strcmp(cfg->credentials, "env") ? ND_CREDS_ENV : !strcmp(cfg->credentials, "imds") ? ND_CREDS_IMDS
                                                                                                      : ND_CREDS_AUTO;
    co.imds_endpoint = cfg->imds_endpoint[0] ? s->cfg.imds_endpoint : NULL;
    if ((rc = nd_creds_provider_new(&s->ctx, &co, &s->creds, err)) < 0)
        goto fail;
    nd_kms_opts ko;
    memset(&ko, 0, sizeof ko);
    ko.region = s->cfg.region;
    ko.endpoint = s->cfg.endpoint[0] ? s->cfg.endpoint : NULL;
    ko.ca_file = s->cfg.ca_file[0] ? s->cfg.ca_file : NULL;
    ko.proxy = !strcmp(s->cfg.https_proxy, "none") ? "" : s->cfg.https_proxy[0] ? s->cfg.https_proxy : NULL;
    ko.max_connections = s->cfg.max_upstream_connections;
    ko.connect_timeout_s = (double)s->cfg.connect_timeout_ms / 1000.0;
    ko.creds = s->creds;
    if ((rc = nd_kms_client_new(&s->ctx, &ko, &s->kms, err)) < 0)
        goto fail;

    char buf[PX_STR];
    snprintf(buf, sizeof buf, "%s", cfg->listen);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        if (s->nls >= PX_MAX_LISTEN) {
            rc = nd_err_set(err, -EINVAL, "at most %d listen addresses", PX_MAX_LISTEN);
            goto fail;
        }
        if ((rc = listener_open(s, &s->ls[s->nls], t, true, on_connection, err)) < 0) {
            s->nls++;
            goto fail;
        }
        s->nls++;
    }
    if (cfg->metrics_listen[0] && strcmp(cfg->metrics_listen, "off") != 0 &&
        (rc = listener_open(s, &s->metrics, cfg->metrics_listen, true, on_metrics_connection, err)) < 0)
        goto fail;

    uv_signal_init(loop, &s->sig_hup);
    uv_signal_init(loop, &s->sig_term);
    uv_signal_init(loop, &s->sig_int);
    s->sig_hup.data = s->sig_term.data = s->sig_int.data = s;
    uv_signal_start(&s->sig_hup, on_sighup, SIGHUP);
    uv_signal_start(&s->sig_term, on_sigterm, SIGTERM);
    uv_signal_start(&s->sig_int, on_sigterm, SIGINT);
    uv_timer_init(loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_init(loop, &s->unsent_timer);
    s->unsent_timer.data = s;

    json_t *o = json_object();
    json_object_set_new(o, "event", json_string("kms_proxy_start"));
    json_object_set_new(o, "version", json_string(ND_VERSION));
    json_object_set_new(o, "listen", json_string(cfg->listen));
    json_object_set_new(o, "metrics_listen", json_string(cfg->metrics_listen));
    json_object_set_new(o, "region", json_string(cfg->region));
    json_object_set_new(o, "endpoint", jstr_or_null(cfg->endpoint));
    json_object_set_new(o, "allow_ops", json_string(cfg->allow_ops));
    json_object_set_new(o, "require_recipient", json_boolean(cfg->require_recipient));
    json_object_set_new(o, "deadline_ms", json_integer(cfg->deadline_ms));
    log_line(o);
    *out = s;
    return 0;
fail:
    for (int i = 0; i < s->nls; i++)
        listener_close(&s->ls[i]);
    listener_close(&s->metrics);
    nd_kms_client_free(s->kms);
    nd_creds_provider_free(s->creds);
    uv_run(loop, UV_RUN_NOWAIT);
    free(s);
    return rc;
}

void px_server_free(px_server *s)
{
    free(s);
}
