/*
 * kms.c — the AWS KMS client (see nd_kms.h). A call: get credentials (cached, or refreshed through nd_creds) → sign
 * with SigV4 (core/sigv4.c) at the current time → POST through nd_http (libcurl multi on the shared loop, keep-alive)
 * → parse the outcome into an nd_kms_result (request id, normalised error code, message, class) → callback.
 * ExpiredTokenException: invalidate + refresh the credentials and repeat once (unless disabled).
 */
#include "nd_kms.h"
#include "nd_list.h"
#include "nd_http.h"
#include "nd_sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <jansson.h>
#include <uv.h>

struct nd_kms_client {
    nd_ctx *ctx;
    nd_http *http;
    nd_creds_provider *creds;
    char *url;       /* https://host[:port]/ */
    char *host;      /* host[:port] as sent in Host and signed */
    char *region;
    bool expired_retry;
    size_t max_response;
    nd_kms_req *reqs;
};

struct nd_kms_req {
    nd_kms_client *c;
    char op[64];
    char target[96];
    char *body;
    size_t len;
    double attempt_timeout_s;
    nd_kms_cb cb;
    void *ud;
    nd_creds_req *creq;
    nd_http_req *hreq;
    int attempts;
    bool force_creds;
    uint64_t t0;
    nd_kms_req *prev, *next;
};

/* ---- error normalisation and classification ------------------------------------------------------------------ */

const char *nd_kms_normalize_error(const char *header_value, const char *type_value, char *out, size_t outsz)
{
    const char *src = header_value && *header_value ? header_value : type_value;
    if (!outsz)
        return out;
    out[0] = '\0';
    if (!src)
        return out;
    size_t n = strcspn(src, ":");
    const char *hash = NULL;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '#')
            hash = src + i;
    }
    const char *b = hash ? hash + 1 : src;
    size_t l = (size_t)(src + n - b);
    while (l > 0 && isspace((unsigned char)*b)) {
        b++;
        l--;
    }
    while (l > 0 && isspace((unsigned char)b[l - 1]))
        l--;
    if (l >= outsz)
        l = outsz - 1;
    memcpy(out, b, l);
    out[l] = '\0';
    return out;
}

static bool in_list(const char *code, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(code, *list) == 0)
            return true;
    }
    return false;
}

nd_kms_class nd_kms_classify(long http_status, const char *error_code, int transport_error)
{
    static const char *const throttling[] = {
        "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
        "PriorRequestNotComplete", "EC2ThrottledException", NULL
    };
    static const char *const expired[] = { "ExpiredTokenException", "ExpiredToken", "RequestExpired", NULL };
    static const char *const denied[] = {
        "AccessDeniedException", "AccessDenied", "UnrecognizedClientException", "InvalidSignatureException",
        "IncompleteSignature", "MissingAuthenticationToken", "InvalidClientTokenId", "SignatureDoesNotMatch",
        "NotAuthorized", NULL
    };
    static const char *const unavailable[] = {
        "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException", "InternalFailure",
        "InternalError", "ServiceUnavailable", "ServiceUnavailableException", "InternalServerError", NULL
    };
    if (transport_error < 0) {
        switch (-transport_error) {
        case ETIMEDOUT:
            return ND_KMS_TIMEOUT;
        case ENOENT:
        case EMSGSIZE:
        case ECANCELED:
        case ENOMEM:
        case EINVAL:
            return ND_KMS_INTERNAL;
        default:
            return ND_KMS_UNAVAILABLE; /* connection refused/reset, unreachable, TLS, I/O */
        }
    }
    if (http_status >= 200 && http_status < 300)
        return ND_KMS_OK;
    const char *code = error_code ? error_code : "";
    if (in_list(code, throttling) || http_status == 429)
        return ND_KMS_THROTTLED;
    if (in_list(code, expired))
        return ND_KMS_EXPIRED_TOKEN;
    if (in_list(code, denied))
        return ND_KMS_ACCESS_DENIED;
    if (in_list(code, unavailable) || http_status >= 500)
        return ND_KMS_UNAVAILABLE;
    if (http_status >= 400)
        return ND_KMS_CLIENT_ERROR;
    return ND_KMS_INTERNAL; /* 1xx/3xx or no status: not a KMS answer */
}

bool nd_kms_class_retryable(nd_kms_class cls)
{
    return cls == ND_KMS_THROTTLED || cls == ND_KMS_TIMEOUT || cls == ND_KMS_UNAVAILABLE;
}

const char *nd_kms_class_name(nd_kms_class cls)
{
    switch (cls) {
    case ND_KMS_OK: return "ok";
    case ND_KMS_THROTTLED: return "throttled";
    case ND_KMS_TIMEOUT: return "timeout";
    case ND_KMS_UNAVAILABLE: return "unavailable";
    case ND_KMS_ACCESS_DENIED: return "access_denied";
    case ND_KMS_EXPIRED_TOKEN: return "expired_token";
    case ND_KMS_CLIENT_ERROR: return "client_error";
    case ND_KMS_INTERNAL: return "internal";
    }
    return "internal";
}

/* ---- client ------------------------------------------------------------------------------------------------------ */

int nd_kms_client_new(nd_ctx *ctx, const nd_kms_opts *opts, nd_kms_client **out, nd_err *err)
{
    *out = NULL;
    if (!ctx || !ctx->loop)
        return nd_err_set(err, -EINVAL, "kms: a context with a loop is required");
    if (!opts || !opts->region || !*opts->region)
        return nd_err_set(err, -EINVAL, "kms: a region is required");
    if (!opts->creds)
        return nd_err_set(err, -EINVAL, "kms: a credentials provider is required");
    for (const char *p = opts->region; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-')
            return nd_err_set(err, -EINVAL, "kms: bad region '%s'", opts->region);
    }
    char hostbuf[512];
    const char *ep = opts->endpoint;
    if (!ep || !*ep) {
        snprintf(hostbuf, sizeof hostbuf, "kms.%s.amazonaws.com", opts->region);
    } else {
        const char *h = ep;
        if (strncmp(h, "https://", 8) == 0)
            h += 8;
        else if (strstr(h, "://"))
            return nd_err_set(err, -EINVAL, "kms: the endpoint must be https:// (got '%s')", ep);
        size_t l = strcspn(h, "/?#");
        if (l == 0 || l >= sizeof hostbuf || strpbrk(h, " \t\r\n@"))
            return nd_err_set(err, -EINVAL, "kms: bad endpoint '%s'", ep);
        if (h[l] && strcmp(h + l, "/") != 0)
            return nd_err_set(err, -EINVAL, "kms: the endpoint must not have a path (got '%s')", ep);
        memcpy(hostbuf, h, l);
        hostbuf[l] = '\0';
    }
    nd_kms_client *c = calloc(1, sizeof *c);
    if (!c)
        return nd_err_set(err, -ENOMEM, "kms: out of memory");
    size_t ul = strlen(hostbuf) + 10;
    c->url = malloc(ul);
    c->host = strdup(hostbuf);
    c->region = strdup(opts->region);
    if (!c->url || !c->host || !c->region) {
        free(c->url);
        free(c->host);
        free(c->region);
        free(c);
        return nd_err_set(err, -ENOMEM, "kms: out of memory");
    }
    snprintf(c->url, ul, "https://%s/", hostbuf);
    c->ctx = ctx;
    c->creds = opts->creds;
    c->expired_retry = !opts->no_expired_token_retry;
    c->max_response = opts->max_response > 0 ? opts->max_response : (1u << 20);
    /* The pool is also the cap on connections at once: with more requests in flight than kept-alive connections,
     * curl opened extra connections and the pool closed them again after one request, so every request beyond the
     * pool paid a TCP connect, a TLS handshake and a load of the CA file (the KMS proxy's bench at 256 connections:
     * ~1 ms of CPU per request, in the proxy and the direct client alike). Now such requests wait in curl for a
     * kept-alive connection. */
    long pool = opts->max_connections > 0 ? opts->max_connections : 64;
    nd_http_opts ho = { .ca_file = opts->ca_file, .proxy = opts->proxy,
                        .connect_timeout_s = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 2.0,
                        .max_connections = pool, .max_host_connections = pool };
    int rc = nd_http_new(ctx->loop, &ho, &c->http, err);
    if (rc < 0) {
        free(c->url);
        free(c->host);
        free(c->region);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void req_unlink(nd_kms_req *r)
{
    ND_LIST_UNLINK(r->c->reqs, r);
}

static void req_free(nd_kms_req *r)
{
    nd_creds_cancel(r->creq);
    nd_http_cancel(r->hreq);
    free(r->body);
    free(r);
}

void nd_kms_client_free(nd_kms_client *c)
{
    if (!c)
        return;
    while (c->reqs) {
        nd_kms_req *r = c->reqs;
        req_unlink(r);
        req_free(r);
    }
    nd_http_free(c->http);
    free(c->url);
    free(c->host);
    free(c->region);
    free(c);
}

void nd_kms_cancel(nd_kms_req *r)
{
    if (!r)
        return;
    req_unlink(r);
    req_free(r);
}

void nd_kms_stats(const nd_kms_client *c, uint64_t *connections, uint64_t *requests)
{
    nd_http_stats(c ? c->http : NULL, connections, requests);
}

/* Delivers a result and frees the request. */
static void deliver(nd_kms_req *r, nd_kms_result *res)
{
    req_unlink(r);
    r->creq = NULL;
    r->hreq = NULL;
    res->attempts = r->attempts;
    res->duration_s = (double)(uv_hrtime() - r->t0) / 1e9;
    res->cls = nd_kms_classify(res->http_status, res->error_code, res->transport_error);
    r->cb(r->ud, res);
    req_free(r);
}

static void deliver_local(nd_kms_req *r, int code, const char *ecode, const char *msg)
{
    nd_kms_result res;
    memset(&res, 0, sizeof res);
    res.body = "";
    res.request_id = "";
    res.error_code = ecode;
    res.message = msg;
    res.transport_error = code;
    deliver(r, &res);
}

static void on_http(void *ud, const nd_http_response *resp, nd_http_req *hreq);
static void on_creds(void *ud, int status, const nd_creds *creds, const nd_err *err);

/* Signs and sends one attempt with creds. Returns 0 or a negative code with err. */
static int send_attempt(nd_kms_req *r, const nd_creds *creds, nd_err *err)
{
    nd_kms_client *c = r->c;
    char date[17];
    nd_sigv4_amz_date((int64_t)time(NULL), date);
    nd_sigv4_header sh[] = {
        { "Content-Type", "application/x-amz-json-1.1" },
        { "Host", c->host },
        { "X-Amz-Target", r->target },
    };
    nd_sigv4_request sreq = { .method = "POST", .path = "/", .headers = sh, .nheaders = 3, .body = r->body,
                              .body_len = r->len };
    nd_sigv4_key key = { creds->access_key_id, creds->secret_access_key, creds->session_token };
    nd_sigv4_result sig;
    int rc = nd_sigv4_sign(&sreq, &key, c->region, "kms", date, true, &sig, err);
    if (rc < 0)
        return rc;
    nd_http_header hh[7];
    size_t n = 0;
    hh[n++] = (nd_http_header){ "Content-Type", "application/x-amz-json-1.1" };
    hh[n++] = (nd_http_header){ "Host", c->host };
    hh[n++] = (nd_http_header){ "X-Amz-Target", r->target };
    for (size_t i = 0; i < sig.nadd; i++)
        hh[n++] = (nd_http_header){ sig.add[i].name, sig.add[i].value };
    hh[n++] = (nd_http_header){ "Authorization", sig.authorization };
    hh[n++] = (nd_http_header){ "Accept", "application/json" };
    nd_http_request q = { .method = "POST", .url = c->url, .headers = hh, .nheaders = n, .body = r->body,
                          .body_len = r->len, .timeout_s = r->attempt_timeout_s, .max_response = c->max_response };
    r->attempts++;
    rc = nd_http_start(c->http, &q, on_http, r, &r->hreq, err);
    nd_sigv4_result_free(&sig);
    return rc;
}

/* Gets credentials (possibly forcing a refresh) and sends; on immediate failure delivers a local error. */
static void start_attempt(nd_kms_req *r)
{
    const nd_creds *now = NULL;
    nd_err err;
    nd_err_clear(&err);
    bool force = r->force_creds;
    r->force_creds = false;
    int rc = nd_creds_get(r->c->creds, force, on_creds, r, &now, &r->creq, &err);
    if (rc == 1) {
        rc = send_attempt(r, now, &err);
        if (rc < 0)
            deliver_local(r, rc, "InternalError", err.msg);
        return;
    }
    if (rc < 0)
        deliver_local(r, -ENOENT, "CredentialsError", err.msg);
}

static void on_creds(void *ud, int status, const nd_creds *creds, const nd_err *cerr)
{
    nd_kms_req *r = ud;
    r->creq = NULL;
    if (status < 0 || !creds) {
        char msg[600];
        snprintf(msg, sizeof msg, "no credentials: %s", cerr ? cerr->msg : nd_err_str(status));
        deliver_local(r, -ENOENT, "CredentialsError", msg);
        return;
    }
    nd_err err;
    nd_err_clear(&err);
    if (send_attempt(r, creds, &err) < 0)
        deliver_local(r, err.code ? err.code : -EIO, "InternalError", err.msg);
}

static void on_http(void *ud, const nd_http_response *resp, nd_http_req *hreq)
{
    nd_kms_req *r = ud;
    r->hreq = NULL;
    nd_kms_result res;
    memset(&res, 0, sizeof res);
    res.http_status = resp->status;
    res.body = resp->body;
    res.body_len = resp->body_len;
    res.new_connection = resp->new_connection;
    const char *rid = nd_http_response_header(hreq, "x-amzn-RequestId");
    res.request_id = rid ? rid : "";
    char code[256] = "";
    char msg[1024] = "";
    if (resp->error) {
        res.transport_error = resp->error;
        snprintf(code, sizeof code, "%s", nd_err_name(resp->error));
        snprintf(msg, sizeof msg, "%s", resp->errmsg);
    } else if (resp->status < 200 || resp->status >= 300) {
        json_t *j = json_loadb(resp->body, resp->body_len, JSON_REJECT_DUPLICATES, NULL);
        const char *type = j ? json_string_value(json_object_get(j, "__type")) : NULL;
        const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;
        if (!m && j)
            m = json_string_value(json_object_get(j, "Message"));
        nd_kms_normalize_error(nd_http_response_header(hreq, "X-Amzn-ErrorType"), type, code, sizeof code);
        if (!code[0])
            snprintf(code, sizeof code, "HTTP%ld", resp->status);
        snprintf(msg, sizeof msg, "%s", m ? m : "");
        for (char *p = msg; *p; p++) {
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        }
        json_decref(j);
    }
    res.error_code = code;
    res.message = msg;
    nd_kms_class cls = nd_kms_classify(res.http_status, code, res.transport_error);
    if (cls == ND_KMS_EXPIRED_TOKEN && r->c->expired_retry && r->attempts == 1) {
        nd_creds_invalidate(r->c->creds);
        r->force_creds = true;
        start_attempt(r);
        return;
    }
    deliver(r, &res);
}

int nd_kms_call(nd_kms_client *c, const char *op, const char *json, size_t len, double attempt_timeout_s,
                nd_kms_cb cb, void *ud, nd_kms_req **out, nd_err *err)
{
    if (out)
        *out = NULL;
    if (!c || !cb)
        return nd_err_set(err, -EINVAL, "kms: a client and a callback are required");
    if (!op || !*op || strlen(op) >= 64)
        return nd_err_set(err, -EINVAL, "kms: bad operation name");
    for (const char *p = op; *p; p++) {
        if (!isalnum((unsigned char)*p))
            return nd_err_set(err, -EINVAL, "kms: bad operation name '%s'", op);
    }
    if (!json && len)
        return nd_err_set(err, -EINVAL, "kms: body length without a body");
    nd_kms_req *r = calloc(1, sizeof *r);
    if (!r)
        return nd_err_set(err, -ENOMEM, "kms: out of memory");
    r->body = malloc(len + 1);
    if (!r->body) {
        free(r);
        return nd_err_set(err, -ENOMEM, "kms: out of memory");
    }
    if (len)
        memcpy(r->body, json, len);
    r->body[len] = '\0';
    r->len = len;
    r->c = c;
    snprintf(r->op, sizeof r->op, "%s", op);
    snprintf(r->target, sizeof r->target, "TrentService.%s", op);
    r->attempt_timeout_s = attempt_timeout_s > 0 ? attempt_timeout_s : 10.0;
    r->cb = cb;
    r->ud = ud;
    r->t0 = uv_hrtime();
    ND_LIST_PUSH(c->reqs, r);
    /* A failure to get credentials or to send that happens right now is returned here (never through cb). */
    const nd_creds *now = NULL;
    int rc = nd_creds_get(c->creds, false, on_creds, r, &now, &r->creq, err);
    if (rc == 1)
        rc = send_attempt(r, now, err);
    if (rc < 0) {
        req_unlink(r);
        req_free(r);
        return rc;
    }
    if (out)
        *out = r;
    return 0;
}
