/*
 * proxy.c — nitrodiag-kms-proxy's server (see proxy.h); its rooms are listed in px_internal.h.
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
#include "px_internal.h"
#include "nd_imds.h"

static void now_iso(char *out, size_t n);
static void apply_policy(px_server *s, bool first);
static void on_sighup(uv_signal_t *h, int sig);
static void stop_everything(px_server *s);
static void on_drain_timeout(uv_timer_t *t);
static void on_sigterm(uv_signal_t *h, int sig);

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

double rand01(px_server *s)
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
void log_line(json_t *o)
{
    if (!o)
        return;
    char ts[40];
    now_iso(ts, sizeof ts);
    json_object_set_new(o, ND_LOG_TS, json_string(ts));
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

void log_text(nd_buf *b)
{
    char ts[40];
    now_iso(ts, sizeof ts);
    bool first = false;
    nd_jw_str(b, &first, ND_LOG_TS, ts);
    nd_buf_add(b, "}\n", 2);
    if (!b->oom)
        fwrite(b->p, 1, b->len, stdout);
    fflush(stdout);
    nd_buf_free(b);
}

void metrics_jw(nd_buf *b, bool *first, px_server *s)
{
    bool f = true;
    nd_jw_key(b, first, ND_LOG_METRICS);
    nd_buf_addc(b, '{');
    nd_jw_int(b, &f, "kms_requests_total", (int64_t)s->m.requests);
    nd_jw_int(b, &f, "kms_success_total", (int64_t)s->m.success);
    nd_jw_int(b, &f, "kms_errors_total", (int64_t)s->m.errors);
    nd_jw_int(b, &f, "retries_total", (int64_t)s->m.retries);
    nd_jw_int(b, &f, "throttled_total", (int64_t)s->m.throttled);
    nd_jw_int(b, &f, "timeouts_total", (int64_t)s->m.timeouts);
    nd_jw_int(b, &f, "rate_limited_total", (int64_t)s->m.rate_limited);
    nd_jw_int(b, &f, "circuit_open_total", (int64_t)s->m.circuit_open);
    nd_jw_int(b, &f, "in_flight", s->in_flight);
    nd_jw_int(b, &f, "queued", s->queued);
    nd_buf_addc(b, '}');
}

json_t *jstr_or_null(const char *s)
{
    return s && s[0] ? json_string(s) : json_null();
}

json_t *metrics_json(px_server *s)
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

void log_event(px_server *s, const char *event, const char *fmt, ...)
{
    (void)s;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, ND_LOG_EVENT, json_string(event));
    json_object_set_new(o, ND_LOG_MESSAGE, json_string(msg));
    log_line(o);
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
        json_object_set_new(o, ND_LOG_EVENT, json_string(ND_LOG_EVENT_RELOAD));
        json_object_set_new(o, ND_LOG_OK, json_false());
        json_object_set_new(o, ND_LOG_MESSAGE, json_string(e.msg));
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
    if (!n.region[0] && s->region_from_imds)
        memcpy(n.region, s->cfg.region, sizeof n.region); /* still unset: the region IMDS gave at start */
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
    json_object_set_new(o, ND_LOG_EVENT, json_string(ND_LOG_EVENT_RELOAD));
    json_object_set_new(o, ND_LOG_OK, json_true());
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
    json_object_set_new(o, ND_LOG_EVENT, json_string("kms_proxy_stop"));
    json_object_set_new(o, ND_LOG_METRICS, metrics_json(s));
    log_line(o);
}

void maybe_finish_drain(px_server *s)
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

/* ---- the region, when none is configured ----------------------------------------------------------------------- */

typedef struct region_fetch {
    bool done;
    int status;
    char region[32];
    nd_err err;
} region_fetch;

static void on_region(void *ud, int status, const char *body, size_t len, const nd_err *err)
{
    region_fetch *f = ud;
    f->done = true;
    f->status = status;
    if (status < 0) {
        nd_err_set(&f->err, status, "%s", err && err->msg[0] ? err->msg : "IMDS request failed");
        return;
    }
    /* an AWS region name: lower-case letters, digits and dashes ("us-east-1", "us-gov-west-1") */
    bool ok = len > 0 && len < 32;
    for (size_t i = 0; ok && i < len; i++)
        ok = (body[i] >= 'a' && body[i] <= 'z') || (body[i] >= '0' && body[i] <= '9') || body[i] == '-';
    if (!ok) {
        f->status = nd_err_set(&f->err, -EPROTO, "IMDS placement/region is not a region name");
        return;
    }
    memcpy(f->region, body, len);
    f->region[len] = '\0';
}

/* Asks IMDSv2 for the instance's region (GET /latest/meta-data/placement/region), as the AWS SDKs do when no region
 * is configured; runs the loop until the answer or the 2 s IMDS timeouts. Returns 0 with s->cfg.region set, or a
 * negative code with a one-line message that says how to set a region. */
static int region_from_imds(px_server *s, nd_err *err)
{
    nd_http *http = NULL;
    nd_imds *m = NULL;
    region_fetch f = {0};
    nd_err_clear(&f.err);
    const char *ep = nd_imds_endpoint(s->cfg.imds_endpoint);
    nd_http_opts ho = {.proxy = "", .connect_timeout_s = 2.0};
    int rc = nd_http_new(s->loop, &ho, &http, &f.err);
    if (rc == 0)
        rc = nd_imds_new(http, ep, 2.0, 60, &m, &f.err);
    if (rc == 0)
        rc = nd_imds_get(m, "/latest/meta-data/placement/region", on_region, &f, NULL, &f.err);
    while (rc == 0 && !f.done && uv_run(s->loop, UV_RUN_ONCE))
        ;
    if (rc == 0)
        rc = f.done ? f.status : nd_err_set(&f.err, -EIO, "IMDS request did not finish");
    nd_imds_free(m);
    nd_http_free(http);
    if (rc < 0)
        return nd_err_set(err, rc, "no region: set region (or AWS_REGION); the instance metadata at %s did not give one: %s",
                          ep, f.err.msg);
    snprintf(s->cfg.region, sizeof s->cfg.region, "%s", f.region);
    s->region_from_imds = true;
    return 0;
}

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
    if (!s->cfg.region[0] && (rc = region_from_imds(s, err)) < 0)
        goto fail;

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
    json_object_set_new(o, ND_LOG_EVENT, json_string("kms_proxy_start"));
    json_object_set_new(o, "version", json_string(ND_VERSION));
    json_object_set_new(o, "listen", json_string(cfg->listen));
    json_object_set_new(o, "metrics_listen", json_string(cfg->metrics_listen));
    json_object_set_new(o, "region", json_string(s->cfg.region));
    json_object_set_new(o, "region_source", json_string(s->region_from_imds ? "imds" : "config"));
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
