/*
 * metrics.c — nitrodiag-kms-proxy: the /metrics responder (Prometheus text over a minimal HTTP/1.0 exchange).
 */
#include "px_internal.h"

static void on_mconn_closed(uv_handle_t *h);
static void on_metrics_written(uv_write_t *w, int status);
static char *metrics_text(px_server *s);
static void metrics_answer(mconn *mc);
static void on_metrics_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_metrics_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/* ---- /metrics ------------------------------------------------------------------------------------------------- */

static void on_mconn_closed(uv_handle_t *h)
{
    mconn *mc = h->data;
    px_server *s = mc->srv;
    s->nmetrics--;
    ND_LIST_UNLINK(s->mconns, mc);
    free(mc);
}

void mconn_close(mconn *mc)
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

void on_metrics_connection(uv_stream_t *server, int status)
{
    listener *l = server->data;
    if (status < 0)
        return;
    mconn *mc = calloc(1, sizeof *mc);
    if (!mc)
        return;
    mc->srv = l->srv;
    l->srv->nmetrics++;
    ND_LIST_PUSH(l->srv->mconns, mc);
    if (l->kind == K_TCP)
        uv_tcp_init(l->srv->loop, &mc->u.tcp);
    else
        uv_pipe_init(l->srv->loop, &mc->u.pipe, 0);
    mc->u.h.data = mc;
    if (uv_accept(server, &mc->u.s) < 0 || l->srv->nmetrics > 32 ||
        uv_read_start(&mc->u.s, on_metrics_alloc, on_metrics_read) < 0)
        mconn_close(mc);
}
