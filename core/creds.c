/*
 * creds.c — the credentials provider (see nd_creds.h). Static and environment credentials are read synchronously;
 * IMDSv2 role credentials are fetched through nd_imds (role name, then the role's JSON) and cached until
 * refresh_before_s (>= 5 min) before their Expiration. Callers waiting for a refresh are queued and all answered by
 * the one fetch. If a refresh fails while the cached credentials have not actually expired yet, those are returned.
 */
#include "nd_creds.h"
#include "nd_list.h"
#include "nd_http.h"
#include "nd_imds.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <uv.h>

struct nd_creds_req {
    nd_creds_provider *p;
    nd_creds_cb cb;
    void *ud;
    nd_creds_req *prev, *next;
};

struct nd_creds_provider {
    nd_ctx *ctx;
    enum nd_creds_source source;
    nd_creds cur;
    bool valid;
    double refresh_before_s;
    nd_http *http;
    nd_imds *imds;
    nd_imds_req *ireq;          /* the fetch in flight */
    bool fetching_role;         /* stage of the fetch: role name, then credentials */
    nd_creds_req *waiters;
    nd_creds_req *answering;    /* waiters being answered by dispatch() */
    uint64_t fetches;
    int dispatching;
    bool freed;
};

static void wipe(nd_creds *c)
{
    volatile unsigned char *p = (volatile unsigned char *)c;
    for (size_t i = 0; i < sizeof *c; i++)
        p[i] = 0;
}

int nd_creds_parse_time(const char *s, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s)
        return -EINVAL;
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!e)
        return -EINVAL;
    if (*e == '.') { /* fractional seconds */
        e++;
        while (isdigit((unsigned char)*e))
            e++;
    }
    if (strcmp(e, "Z") != 0 && strcmp(e, "+00:00") != 0)
        return -EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int nd_creds_from_env(nd_creds *c, nd_err *err)
{
    memset(c, 0, sizeof *c);
    const char *ak = getenv("AWS_ACCESS_KEY_ID");
    const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tk = getenv("AWS_SESSION_TOKEN");
    if (!ak || !*ak || !sk || !*sk)
        return nd_err_set(err, -ENOENT, "credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set");
    if (strlen(ak) >= sizeof c->access_key_id || strlen(sk) >= sizeof c->secret_access_key ||
        (tk && strlen(tk) >= sizeof c->session_token))
        return nd_err_set(err, -EINVAL, "credentials: an AWS_* credential variable is too long");
    snprintf(c->access_key_id, sizeof c->access_key_id, "%s", ak);
    snprintf(c->secret_access_key, sizeof c->secret_access_key, "%s", sk);
    snprintf(c->session_token, sizeof c->session_token, "%s", tk ? tk : "");
    snprintf(c->source, sizeof c->source, "env");
    return 0;
}

int nd_creds_provider_new(nd_ctx *ctx, const nd_creds_opts *opts, nd_creds_provider **out, nd_err *err)
{
    *out = NULL;
    nd_creds_opts o = { 0 };
    if (opts)
        o = *opts;
    nd_creds_provider *p = calloc(1, sizeof *p);
    if (!p)
        return nd_err_set(err, -ENOMEM, "credentials: out of memory");
    p->ctx = ctx;
    p->refresh_before_s = o.refresh_before_s < 300 ? 300 : o.refresh_before_s;
    enum nd_creds_source src = o.source;
    if (src == ND_CREDS_AUTO) {
        const char *ak = getenv("AWS_ACCESS_KEY_ID");
        src = ak && *ak ? ND_CREDS_ENV : ND_CREDS_IMDS;
    }
    p->source = src;
    int rc = 0;
    if (src == ND_CREDS_STATIC) {
        if (!o.static_creds || !o.static_creds->access_key_id[0] || !o.static_creds->secret_access_key[0]) {
            rc = nd_err_set(err, -EINVAL, "credentials: static credentials need an access key id and a secret");
        } else {
            p->cur = *o.static_creds;
            snprintf(p->cur.source, sizeof p->cur.source, "static");
            p->valid = true;
        }
    } else if (src == ND_CREDS_ENV) {
        rc = nd_creds_from_env(&p->cur, err);
        p->valid = rc == 0;
    } else if (src == ND_CREDS_IMDS) {
        if (!ctx || !ctx->loop) {
            rc = nd_err_set(err, -EINVAL, "credentials: IMDS needs a context with a loop");
        } else {
            const char *ep = nd_imds_endpoint(o.imds_endpoint);
            nd_http_opts ho = { .proxy = "", .connect_timeout_s = o.imds_timeout_s > 0 ? o.imds_timeout_s : 2.0 };
            rc = nd_http_new(ctx->loop, &ho, &p->http, err);
            if (rc == 0)
                rc = nd_imds_new(p->http, ep, o.imds_timeout_s, o.imds_token_ttl_s, &p->imds, err);
        }
    } else {
        rc = nd_err_set(err, -EINVAL, "credentials: unknown source %d", (int)src);
    }
    if (rc < 0) {
        nd_imds_free(p->imds);
        nd_http_free(p->http);
        wipe(&p->cur);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void nd_creds_provider_free(nd_creds_provider *p)
{
    if (!p || p->freed)
        return;
    p->freed = true;
    while (p->waiters) {
        nd_creds_req *r = p->waiters;
        ND_LIST_UNLINK(p->waiters, r);
        free(r);
    }
    nd_imds_cancel(p->ireq);
    p->ireq = NULL;
    nd_imds_free(p->imds);
    p->imds = NULL;
    nd_http_free(p->http);
    p->http = NULL;
    wipe(&p->cur);
    if (!p->dispatching)
        free(p);
}

const nd_creds *nd_creds_current(nd_creds_provider *p)
{
    if (!p || !p->valid)
        return NULL;
    if (p->cur.expiration && (double)time(NULL) + p->refresh_before_s >= (double)p->cur.expiration)
        return NULL;
    return &p->cur;
}

void nd_creds_invalidate(nd_creds_provider *p)
{
    if (!p)
        return;
    if (p->source == ND_CREDS_ENV) {
        nd_creds c;
        if (nd_creds_from_env(&c, NULL) == 0)
            p->cur = c;
        wipe(&c);
        return;
    }
    if (p->source == ND_CREDS_IMDS)
        p->valid = false;
}

void nd_creds_stats(const nd_creds_provider *p, uint64_t *fetches, uint64_t *tokens)
{
    if (fetches)
        *fetches = p ? p->fetches : 0;
    if (tokens)
        *tokens = p && p->imds ? nd_imds_tokens_fetched(p->imds) : 0;
}

void nd_creds_cancel(nd_creds_req *r)
{
    if (!r)
        return;
    nd_creds_provider *p = r->p;
    /* r waits in one of two lists: the waiters of the next answer, or those dispatch() is answering now */
    if (p->answering == r)
        ND_LIST_UNLINK(p->answering, r);
    else
        ND_LIST_UNLINK(p->waiters, r);
    free(r);
}

/* Answers every waiter. A waiter's callback may free the provider or queue new waiters (which start a new fetch). */
static void dispatch(nd_creds_provider *p, int status, const nd_err *err)
{
    p->answering = p->waiters;
    p->waiters = NULL;
    p->dispatching++;
    nd_creds snapshot = p->cur;
    while (p->answering && !p->freed) {
        nd_creds_req *r = p->answering;
        ND_LIST_UNLINK(p->answering, r);
        r->cb(r->ud, status, status == 0 ? &snapshot : NULL, err);
        free(r);
    }
    while (p->answering) {
        nd_creds_req *r = p->answering;
        ND_LIST_UNLINK(p->answering, r);
        free(r);
    }
    wipe(&snapshot);
    p->dispatching--;
    if (p->freed && !p->dispatching)
        free(p);
}

static void finish_fetch(nd_creds_provider *p, int status, const nd_err *err)
{
    p->ireq = NULL;
    if (status < 0 && p->valid && p->cur.expiration > (int64_t)time(NULL) + 30) {
        /* The refresh failed but what we have still works for a while: use it. */
        dispatch(p, 0, NULL);
        return;
    }
    dispatch(p, status, err);
}

static void on_imds(void *ud, int status, const char *body, size_t len, const nd_err *ierr)
{
    nd_creds_provider *p = ud;
    nd_err err;
    p->ireq = NULL;
    if (status < 0) {
        nd_err_set(&err, status, "%s", ierr ? ierr->msg : "imds failed");
        if (status == -ENOENT && p->fetching_role)
            nd_err_set(&err, -ENOENT, "credentials: the instance has no IAM role (IMDS: %s)", ierr ? ierr->msg : "");
        finish_fetch(p, status, &err);
        return;
    }
    if (p->fetching_role) {
        char role[128];
        size_t l = 0;
        while (l < len && body[l] != '\n' && body[l] != '\r' && l < sizeof role - 1) {
            role[l] = body[l];
            l++;
        }
        role[l] = '\0';
        if (l == 0 || strchr(role, '/')) {
            nd_err_set(&err, -ENOENT, "credentials: IMDS lists no IAM role");
            finish_fetch(p, -ENOENT, &err);
            return;
        }
        snprintf(p->cur.role, sizeof p->cur.role, "%s", role);
        char path[256];
        snprintf(path, sizeof path, "/latest/meta-data/iam/security-credentials/%s", role);
        p->fetching_role = false;
        int rc = nd_imds_get(p->imds, path, on_imds, p, &p->ireq, &err);
        if (rc < 0)
            finish_fetch(p, rc, &err);
        return;
    }
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    const char *code = j ? json_string_value(json_object_get(j, "Code")) : NULL;
    const char *ak = j ? json_string_value(json_object_get(j, "AccessKeyId")) : NULL;
    const char *sk = j ? json_string_value(json_object_get(j, "SecretAccessKey")) : NULL;
    const char *tk = j ? json_string_value(json_object_get(j, "Token")) : NULL;
    const char *ex = j ? json_string_value(json_object_get(j, "Expiration")) : NULL;
    int64_t exp = 0;
    int rc = 0;
    if (!j)
        rc = nd_err_set(&err, -EBADMSG, "credentials: IMDS credentials are not JSON: %s", je.text);
    else if (code && strcmp(code, "Success") != 0)
        rc = nd_err_set(&err, -EACCES, "credentials: IMDS credentials Code is '%s'", code);
    else if (!ak || !sk || !*ak || !*sk)
        rc = nd_err_set(&err, -EBADMSG, "credentials: IMDS credentials lack AccessKeyId/SecretAccessKey");
    else if (strlen(ak) >= sizeof p->cur.access_key_id || strlen(sk) >= sizeof p->cur.secret_access_key ||
             (tk && strlen(tk) >= sizeof p->cur.session_token))
        rc = nd_err_set(&err, -EBADMSG, "credentials: IMDS credentials field too long");
    else if (ex && nd_creds_parse_time(ex, &exp) < 0)
        rc = nd_err_set(&err, -EBADMSG, "credentials: IMDS Expiration '%.40s' is not an ISO-8601 UTC time", ex);
    if (rc == 0 && ak && sk) {
        snprintf(p->cur.access_key_id, sizeof p->cur.access_key_id, "%s", ak);
        snprintf(p->cur.secret_access_key, sizeof p->cur.secret_access_key, "%s", sk);
        snprintf(p->cur.session_token, sizeof p->cur.session_token, "%s", tk ? tk : "");
        snprintf(p->cur.source, sizeof p->cur.source, "imds");
        p->cur.expiration = exp;
        p->valid = true;
        p->fetches++;
    }
    json_decref(j);
    finish_fetch(p, rc, rc ? &err : NULL);
}

int nd_creds_get(nd_creds_provider *p, bool force, nd_creds_cb cb, void *ud, const nd_creds **now,
                 nd_creds_req **out, nd_err *err)
{
    if (out)
        *out = NULL;
    if (now)
        *now = NULL;
    if (!p || p->freed)
        return nd_err_set(err, -EINVAL, "credentials: no provider");
    if (p->source != ND_CREDS_IMDS) {
        if (force)
            nd_creds_invalidate(p);
        if (!p->valid)
            return nd_err_set(err, -ENOENT, "credentials: none available");
        if (now)
            *now = &p->cur;
        return 1;
    }
    const nd_creds *c = nd_creds_current(p);
    if (c && !force) {
        if (now)
            *now = c;
        return 1;
    }
    if (!cb)
        return nd_err_set(err, -EINVAL, "credentials: a refresh is needed and no callback was given");
    nd_creds_req *r = calloc(1, sizeof *r);
    if (!r)
        return nd_err_set(err, -ENOMEM, "credentials: out of memory");
    r->p = p;
    r->cb = cb;
    r->ud = ud;
    if (!p->ireq) {
        p->fetching_role = true;
        int rc = nd_imds_get(p->imds, "/latest/meta-data/iam/security-credentials/", on_imds, p, &p->ireq, err);
        if (rc < 0) {
            free(r);
            return rc;
        }
    }
    ND_LIST_PUSH(p->waiters, r);
    if (out)
        *out = r;
    return 0;
}
