/*
 * request.c — nitrodiag-kms-proxy: one request from its frame to its single response (policy, rate limit,
 * in-flight cap and queue, circuit breaker, upstream attempts with timeouts, backoff and retry budget, fail-closed
 * checks, log lines).
 */
#include "px_internal.h"

static const char *class_error_code(nd_kms_class cls);
static void on_req_timer_closed(uv_handle_t *h);
static void wait_remove(preq *q);
static void on_wait_deadline(uv_timer_t *t);
static void dispatch_waiting(px_server *s);
static int kms_blob(json_t *o, const char *key, nd_bytes *out, const nd_jl *jl);
static void on_backoff_done(uv_timer_t *t);
static void maybe_retry(preq *q);
static void on_attempt_timeout(uv_timer_t *t);
static void on_kms_result(void *ud, const nd_kms_result *res);
static void start_attempt(preq *q);
static void handle_request(conn *c, const nd_frame *f);
static void log_request(px_server *s, conn *c, const nd_kms_request *r, bool parsed, bool refused);
static void respond(px_server *s, conn *c, const px_answer *a);

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
    nd_buf b = ND_BUF_INIT;
    bool first = true;
    nd_buf_addc(&b, '{');
    nd_jw_str(&b, &first, ND_LOG_EVENT, ND_LOG_EVENT_REQUEST);
    nd_jw_str_or_null(&b, &first, ND_LOG_REQUEST_ID, r ? r->request_id : NULL);
    nd_jw_str_or_null(&b, &first, ND_LOG_TRACE_ID, r ? r->trace_id : NULL);
    if (parsed)
        nd_jw_str(&b, &first, ND_LOG_OP, nd_kms_op_name(r->op));
    else
        nd_jw_null(&b, &first, ND_LOG_OP);
    nd_jw_bool(&b, &first, "recipient", parsed && r->recipient.len > 0);
    nd_jw_int(&b, &first, "ciphertext_len", parsed ? (int64_t)r->ciphertext_blob.len : 0);
    nd_jw_str_or_null(&b, &first, "key_id", parsed ? r->key_id : NULL);
    log_text(&b);
}

/* Sends the single response of a request and logs it: the one writer of answers and of kms_proxy_response lines,
 * called by req_finish (requests that went upstream) and refuse (answers made here). */
static void respond(px_server *s, conn *c, const px_answer *a)
{
    unsigned frame_type = a->frame_type;
    uint32_t seq = a->seq;
    const char *request_id = a->request_id, *trace_id = a->trace_id, *kms_request_id = a->kms_request_id;
    const char *error_code = a->error_code, *message = a->message;
    const nd_kms_response *resp = a->resp;
    int attempts = a->attempts;
    uint64_t start_ms = a->start_ms;
    /* The answer sent: the upstream's (a shallow copy: the caller keeps what it owns) or an error made here, with
     * request_id/trace_id copied in for the client to match. */
    nd_kms_response e;
    if (resp) {
        e = *resp;
    } else {
        memset(&e, 0, sizeof e);
        e.is_error = true;
        snprintf(e.error_code, sizeof e.error_code, "%s", error_code);
        snprintf(e.error_message, sizeof e.error_message, "%s", message ? message : "");
        snprintf(e.kms_request_id, sizeof e.kms_request_id, "%s", kms_request_id ? kms_request_id : "");
    }
    resp = &e;
    snprintf(e.request_id, sizeof e.request_id, "%s", request_id ? request_id : "");
    snprintf(e.trace_id, sizeof e.trace_id, "%s", trace_id ? trace_id : "");
    bool ok = !resp->is_error;
    if (ok)
        s->m.success++;
    else
        s->m.errors++;
    /* an error answered without any upstream attempt is a refusal: it counts against the connection's log budget */
    if (!ok && attempts == 0 && c && !conn_log_ok(c))
        goto send;
    nd_buf b = ND_BUF_INIT;
    bool first = true;
    nd_buf_addc(&b, '{');
    nd_jw_str(&b, &first, ND_LOG_EVENT, ND_LOG_EVENT_RESPONSE);
    nd_jw_str_or_null(&b, &first, ND_LOG_REQUEST_ID, request_id);
    nd_jw_str_or_null(&b, &first, ND_LOG_TRACE_ID, trace_id);
    nd_jw_bool(&b, &first, ND_LOG_OK, ok);
    if (ok)
        nd_jw_null(&b, &first, ND_LOG_ERROR_CODE);
    else
        nd_jw_str(&b, &first, ND_LOG_ERROR_CODE, resp->error_code);
    nd_jw_str_or_null(&b, &first, ND_LOG_KMS_REQUEST_ID, resp->kms_request_id);
    nd_jw_int(&b, &first, ND_LOG_ATTEMPTS, attempts);
    nd_jw_int(&b, &first, ND_LOG_DURATION_MS, (int64_t)(uv_now(s->loop) - start_ms));
    if (!ok && message && message[0])
        nd_jw_str(&b, &first, ND_LOG_MESSAGE, message);
    if (a->log_extra) { /* its keys are none of the above (json_object_update would replace them in place) */
        const char *k;
        json_t *v;
        json_object_foreach(a->log_extra, k, v)
            nd_jw_json(&b, &first, k, v);
    }
    metrics_jw(&b, &first, s);
    log_text(&b); /* logged before it is sent, so a client that got its answer finds the line */
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

void refuse(conn *c, const nd_kms_request *r, bool parsed, px_answer a)
{
    px_server *s = c->srv;
    s->m.requests++;
    log_request(s, c, r, parsed, true);
    if (r) {
        a.request_id = r->request_id;
        a.trace_id = r->trace_id;
    }
    if (!a.start_ms)
        a.start_ms = uv_now(s->loop);
    a.resp = NULL;
    a.attempts = 0;
    respond(s, c, &a);
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


static void wait_remove(preq *q)
{
    px_server *s = q->srv;
    ND_FIFO_UNLINK_F(s->wait_head, s->wait_tail, q, wprev, wnext);
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

/* For the response line of a Recipient request KMS denied: the attestation's PCR0 and module_id (public values), so
 * kms-logs and triage can name the image that was refused. NULL when the request had no (parsable) document. */
static json_t *denied_attestation(const nd_kms_request *r)
{
    nd_attest_doc *d = NULL;
    if (r->recipient.len == 0 || nd_attest_parse(r->recipient.data, r->recipient.len, &d, NULL) < 0)
        return NULL;
    json_t *o = json_object();
    char hex[129] = "";
    for (size_t i = 0; i < d->npcrs; i++)
        if (d->pcrs[i].index == 0)
            nd_hex_encode(d->pcrs[i].value, d->pcrs[i].len, hex);
    if (o && hex[0])
        json_object_set_new(o, ND_LOG_ATTESTATION_PCR0, json_string(hex));
    if (o)
        json_object_set_new(o, ND_LOG_ATTESTATION_MODULE_ID, json_string(d->module_id));
    nd_attest_free(d);
    return o;
}

/* Ends a request that went into the upstream path: records the breaker/budget outcome, answers, frees. */
void req_finish(preq *q, const char *error_code, const char *message, const nd_kms_response *resp)
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
    ND_LIST_UNLINK(s->reqs, q);
    conn *c = q->c && !q->c->closing ? q->c : NULL;
    json_t *extra = !resp && q->last_cls == ND_KMS_ACCESS_DENIED ? denied_attestation(&q->r) : NULL;
    respond(s, c, &(px_answer){.frame_type = ND_FRAME_KMS_PROXY, .seq = q->seq, .request_id = q->r.request_id,
                               .trace_id = q->r.trace_id, .kms_request_id = q->kms_request_id,
                               .error_code = error_code, .message = message, .resp = resp, .attempts = q->attempts,
                               .start_ms = q->start_ms, .log_extra = extra});
    json_decref(extra);
    uv_close((uv_handle_t *)&q->timer, on_req_timer_closed);
    if (freed_slot)
        dispatch_waiting(s);
}

/* The base64 blobs of a KMS response, read straight from its text (core/nd_jsonlift.h): the CMS EnvelopedData of a
 * recipient request made json_loadb the largest single cost of the proxy per request after the request itself. */
static const nd_jl_path kms_blob_paths[] = {
    {"CiphertextBlob", NULL},
    {"Plaintext", NULL},
    {"CiphertextForRecipient", NULL},
};

/* Reads a base64 blob field of a KMS response (lifted into jl, or in the tree). Returns 0 (absent or decoded) or
 * -EBADMSG. */
static int kms_blob(json_t *o, const char *key, nd_bytes *out, const nd_jl *jl)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    const nd_jl_value *f = nd_jl_find(jl, v);
    if (f)
        return nd_jl_bytes(f, &out->data, &out->len) < 0 ? (f->n ? -EBADMSG : -ENOMEM) : 0;
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
    nd_jl jl;
    bool declined;
    json_t *o = nd_jl_loadb(res->body, res->body_len, JSON_REJECT_DUPLICATES, kms_blob_paths, 3, false, &jl, &declined);
    if (!o) { /* nothing lifted (or jansson refused): jansson alone decides */
        jl.n = 0;
        o = json_loadb(res->body, res->body_len, JSON_REJECT_DUPLICATES, NULL);
    }
    const char *err = NULL;
    if (!json_is_object(o)) {
        err = "KMS returned a body that is not a JSON object";
    } else if (kms_blob(o, "CiphertextBlob", &out.ciphertext_blob, &jl) < 0 ||
               kms_blob(o, "Plaintext", &out.plaintext, &jl) < 0 ||
               kms_blob(o, "CiphertextForRecipient", &out.ciphertext_for_recipient, &jl) < 0) {
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
    preq *q = calloc(1, sizeof *q);
    if (!q) {
        refuse(c, NULL, false, (px_answer){.frame_type = ND_FRAME_ERROR, .seq = f->seq, .error_code = "internal",
                                           .message = "out of memory", .start_ms = start});
        return;
    }
    nd_err e;
    nd_err_clear(&e);
    if (nd_kms_request_parse(f->payload, f->len, &q->r, &e) < 0) {
        refuse(c, &q->r, false, (px_answer){.frame_type = ND_FRAME_ERROR, .seq = f->seq,
                                            .error_code = "invalid_request", .message = e.msg, .start_ms = start});
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
    if (code) {
        refuse(c, &q->r, true, (px_answer){.frame_type = ND_FRAME_KMS_PROXY, .seq = f->seq, .error_code = code,
                                           .message = msg, .start_ms = start});
        nd_kms_request_free(&q->r);
        free(q);
        return;
    }
    s->m.requests++;
    log_request(s, c, &q->r, true, false);
    q->body = nd_kms_upstream_body(&q->r, &q->body_len);
    q->srv = s;
    q->c = c;
    q->seq = f->seq;
    q->start_ms = start;
    q->deadline_ms = start + (uint64_t)cfg->deadline_ms;
    q->upstream = true;
    c->refs++;
    c->pending++;
    ND_LIST_PUSH(s->reqs, q);
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
    ND_FIFO_APPEND_F(s->wait_head, s->wait_tail, q, wprev, wnext);
    s->queued++;
    uv_timer_start(&q->timer, on_wait_deadline, (uint64_t)cfg->deadline_ms, 0);
}

void handle_frame(conn *c, const nd_frame *f)
{
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
        refuse(c, NULL, false, (px_answer){.frame_type = ND_FRAME_ERROR, .seq = f->seq, .error_code = "invalid_request",
                                           .message = m});
        return;
    }
    }
}
