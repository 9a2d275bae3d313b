/*
 * conn.c — nitrodiag-kms-proxy: enclave connections (frame decoding on read, response writes, reference counts,
 * closing when idle or at end of stream).
 */
#include "px_internal.h"

static void log_suppressed(conn *c);
static void on_conn_closed(uv_handle_t *h);
static void on_written(uv_write_t *w, int status);
static void on_unsent_timer(uv_timer_t *t);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

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
    json_object_set_new(o, ND_LOG_EVENT, json_string("kms_proxy_log_suppressed"));
    json_object_set_new(o, "conn", json_integer((json_int_t)c->id));
    json_object_set_new(o, "suppressed", json_integer((json_int_t)c->suppressed));
    json_object_set_new(o, ND_LOG_MESSAGE, json_string("log lines about refused requests of this connection not written "
                                                  "(conn_log_rate, conn_log_burst)"));
    log_line(o);
    c->suppressed = 0;
}

bool conn_log_ok(conn *c)
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
bool conn_unref(conn *c)
{
    if (--c->refs > 0)
        return true;
    px_server *s = c->srv;
    ND_LIST_UNLINK(s->conns, c);
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

void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close(&c->u.h, on_conn_closed);
}

/* Closes the connection when it has nothing left to do (peer done, no pending request, no write queued). */
void conn_maybe_close(conn *c)
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
void conn_send(conn *c, unsigned type, uint32_t seq, const void *payload, size_t len)
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
            json_object_set_new(o, ND_LOG_EVENT, json_string("kms_proxy_connection_closed"));
            json_object_set_new(o, "conn", json_integer((json_int_t)c->id));
            json_object_set_new(o, "unsent_bytes", json_integer((json_int_t)c->unsent));
            json_object_set_new(o, ND_LOG_MESSAGE, json_string("the client did not read its answers: more than "
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


static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn *c = h->data;
    /* One read buffer for the whole server: libuv calls on_read right after on_alloc and on_read copies the bytes
     * into the connection's decoder, so the buffer is free again before the next allocation. */
    buf->base = c->srv->rbuf;
    buf->len = sizeof c->srv->rbuf;
}

void conn_update_reading(conn *c)
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

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = st->data;
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
        refuse(c, NULL, false, (px_answer){.frame_type = ND_FRAME_ERROR, .error_code = "invalid_request",
                                           .message = e.msg});
        c->eof = true;
        conn_update_reading(c);
        conn_maybe_close(c);
    }
}

void on_connection(uv_stream_t *server, int status)
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
    ND_LIST_PUSH(s->conns, c);
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
