/*
 * imds.c — IMDSv2 client (see nd_imds.h). Each get is a small state machine: [PUT token] → GET path; a 401 on the
 * GET drops the cached token and goes once more through PUT → GET. The token is cached in the nd_imds until a minute
 * before its TTL runs out. Never falls back to IMDSv1.
 */
#include "nd_imds.h"
#include "nd_list.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct nd_imds {
    nd_http *http;
    char *endpoint;
    double timeout_s;
    int ttl_s;
    char token[1024];
    uint64_t token_expiry_ns;  /* uv_hrtime() value after which the token is not used */
    uint64_t tokens;
    nd_imds_req *reqs;
};

struct nd_imds_req {
    nd_imds *m;
    char *path;
    nd_imds_cb cb;
    void *ud;
    nd_http_req *hreq;
    bool getting;      /* stage: false = PUT token, true = GET */
    bool retried;      /* already went through a 401 */
    nd_imds_req *prev, *next;
};

const char *nd_imds_endpoint(const char *configured)
{
    if (configured && *configured)
        return configured;
    const char *env = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    return env && *env ? env : "http://169.254.169.254";
}

int nd_imds_new(nd_http *http, const char *endpoint, double timeout_s, int token_ttl_s, nd_imds **out, nd_err *err)
{
    *out = NULL;
    if (!http || !endpoint || strncmp(endpoint, "http", 4) != 0)
        return nd_err_set(err, -EINVAL, "imds: endpoint must be an http:// URL, got '%s'", endpoint ? endpoint : "");
    nd_imds *m = calloc(1, sizeof *m);
    if (!m || !(m->endpoint = strdup(endpoint))) {
        free(m);
        return nd_err_set(err, -ENOMEM, "imds: out of memory");
    }
    size_t l = strlen(m->endpoint);
    while (l > 0 && m->endpoint[l - 1] == '/')
        m->endpoint[--l] = '\0';
    m->http = http;
    m->timeout_s = timeout_s > 0 ? timeout_s : 2.0;
    m->ttl_s = token_ttl_s > 0 ? token_ttl_s : 21600;
    *out = m;
    return 0;
}

static void req_unlink(nd_imds_req *r)
{
    ND_LIST_UNLINK(r->m->reqs, r);
}

static void req_free(nd_imds_req *r)
{
    nd_http_cancel(r->hreq);
    free(r->path);
    free(r);
}

void nd_imds_free(nd_imds *m)
{
    if (!m)
        return;
    while (m->reqs) {
        nd_imds_req *r = m->reqs;
        req_unlink(r);
        req_free(r);
    }
    free(m->endpoint);
    free(m);
}

void nd_imds_cancel(nd_imds_req *r)
{
    if (!r)
        return;
    req_unlink(r);
    req_free(r);
}

uint64_t nd_imds_tokens_fetched(const nd_imds *m) { return m ? m->tokens : 0; }

static void complete(nd_imds_req *r, int status, const char *body, size_t len, const nd_err *err)
{
    req_unlink(r);
    r->hreq = NULL;
    r->cb(r->ud, status, body, len, err);
    req_free(r);
}

static void fail(nd_imds_req *r, const nd_err *e)
{
    complete(r, e->code, NULL, 0, e);
}

static int step(nd_imds_req *r, nd_err *err);

static void on_http(void *ud, const nd_http_response *resp, nd_http_req *hreq)
{
    (void)hreq;
    nd_imds_req *r = ud;
    nd_imds *m = r->m;
    r->hreq = NULL;
    const char *what = r->getting ? r->path : "/latest/api/token";
    if (resp->error) {
        nd_err e;
        nd_err_set(&e, resp->error, "imds: %s %s: %s", r->getting ? "GET" : "PUT", what, resp->errmsg);
        fail(r, &e);
        return;
    }
    if (!r->getting) {
        if (resp->status != 200 || resp->body_len == 0 || resp->body_len >= sizeof m->token) {
            nd_err e;
            nd_err_set(&e, resp->status == 403 ? -EACCES : -EPROTO, "imds: PUT /latest/api/token answered HTTP %ld",
                       resp->status);
            fail(r, &e);
            return;
        }
        memcpy(m->token, resp->body, resp->body_len);
        m->token[resp->body_len] = '\0';
        m->token_expiry_ns = uv_hrtime() + (uint64_t)(m->ttl_s > 120 ? m->ttl_s - 60 : m->ttl_s / 2) * 1000000000ull;
        m->tokens++;
        r->getting = true;
    } else {
        if (resp->status == 200) {
            complete(r, 0, resp->body, resp->body_len, NULL);
            return;
        }
        if (resp->status == 401 && !r->retried) {
            r->retried = true;
            m->token[0] = '\0';
            m->token_expiry_ns = 0;
            r->getting = false;
        } else {
            int code = resp->status == 404 ? -ENOENT : (resp->status == 401 || resp->status == 403) ? -EACCES : -EPROTO;
            nd_err e;
            nd_err_set(&e, code, "imds: GET %s answered HTTP %ld", r->path, resp->status);
            fail(r, &e);
            return;
        }
    }
    nd_err e;
    int rc = step(r, &e);
    if (rc < 0)
        complete(r, rc, NULL, 0, &e);
}

static int step(nd_imds_req *r, nd_err *err)
{
    nd_imds *m = r->m;
    char url[2048];
    if (!r->getting && m->token[0] && uv_hrtime() < m->token_expiry_ns)
        r->getting = true;
    if (!r->getting) {
        char ttl[32];
        snprintf(ttl, sizeof ttl, "%d", m->ttl_s);
        nd_http_header h[] = { { "X-aws-ec2-metadata-token-ttl-seconds", ttl } };
        snprintf(url, sizeof url, "%s/latest/api/token", m->endpoint);
        nd_http_request q = { .method = "PUT", .url = url, .headers = h, .nheaders = 1, .timeout_s = m->timeout_s,
                              .max_response = 4096 };
        return nd_http_start(m->http, &q, on_http, r, &r->hreq, err);
    }
    nd_http_header h[] = { { "X-aws-ec2-metadata-token", m->token } };
    if ((size_t)snprintf(url, sizeof url, "%s%s", m->endpoint, r->path) >= sizeof url)
        return nd_err_set(err, -ENAMETOOLONG, "imds: path too long");
    nd_http_request q = { .method = "GET", .url = url, .headers = h, .nheaders = 1, .timeout_s = m->timeout_s,
                          .max_response = 64 * 1024 };
    return nd_http_start(m->http, &q, on_http, r, &r->hreq, err);
}

int nd_imds_get(nd_imds *m, const char *path, nd_imds_cb cb, void *ud, nd_imds_req **out, nd_err *err)
{
    if (out)
        *out = NULL;
    if (!m || !path || path[0] != '/' || !cb)
        return nd_err_set(err, -EINVAL, "imds: a path starting with '/' and a callback are required");
    nd_imds_req *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return nd_err_set(err, -ENOMEM, "imds: out of memory");
    }
    r->m = m;
    r->cb = cb;
    r->ud = ud;
    int rc = step(r, err);
    if (rc < 0) {
        free(r->path);
        free(r);
        return rc;
    }
    ND_LIST_PUSH(m->reqs, r);
    if (out)
        *out = r;
    return 0;
}
