/*
 * nd_creds.h — AWS credentials for the KMS client: static, from the environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or from the instance role through IMDSv2 (core/imds.c).
 *
 * A provider caches the current credentials. IMDS credentials are refreshed at least refresh_before_s (>= 300 s)
 * before their Expiration. Concurrent refreshes are coalesced into one fetch. The KMS client uses
 * nd_creds_invalidate() when KMS answers ExpiredTokenException, then refreshes and retries once.
 *
 * IMDSv2 only (never the v1 GET without a token): PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds,
 * GET /latest/meta-data/iam/security-credentials/ (role name), GET .../<role> (the JSON credentials). A 401 on a GET
 * means the token expired: a new token is fetched and the GET repeated once.
 */
#ifndef ND_CREDS_H
#define ND_CREDS_H

#include "nd.h"

typedef struct nd_creds {
    char access_key_id[128];
    char secret_access_key[256];
    char session_token[4096];   /* "" when none */
    int64_t expiration;         /* Unix seconds; 0 = does not expire */
    char source[16];            /* "static", "env" or "imds" */
    char role[128];             /* IMDS role name ("" otherwise) */
} nd_creds;

enum nd_creds_source {
    ND_CREDS_AUTO = 0,  /* env when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set, otherwise IMDSv2 */
    ND_CREDS_ENV,
    ND_CREDS_IMDS,
    ND_CREDS_STATIC,
};

typedef struct nd_creds_opts {
    enum nd_creds_source source;
    const nd_creds *static_creds;   /* for ND_CREDS_STATIC (copied) */
    const char *imds_endpoint;      /* NULL: $AWS_EC2_METADATA_SERVICE_ENDPOINT or "http://169.254.169.254" */
    double imds_timeout_s;          /* per IMDS request; <= 0 means 2 s */
    int imds_token_ttl_s;           /* <= 0 means 21600 */
    double refresh_before_s;        /* refresh this long before Expiration; values under 300 are raised to 300 */
} nd_creds_opts;

typedef struct nd_creds_provider nd_creds_provider;
typedef struct nd_creds_req nd_creds_req;

/* Called once, on the loop: status 0 and creds (valid during the call; copy what you keep), or a negative code
 * (-ENOENT no credentials/role, -ETIMEDOUT, -ECONNREFUSED, -EBADMSG bad IMDS answer, -EACCES IMDS refused) with err. */
typedef void (*nd_creds_cb)(void *ud, int status, const nd_creds *creds, const nd_err *err);

/* Creates a provider on ctx->loop. For ND_CREDS_ENV/AUTO the environment is read here (so it fails at once with
 * -ENOENT when ENV is asked for and the variables are missing). Returns 0 and *out, or a negative code with err. */
int nd_creds_provider_new(nd_ctx *ctx, const nd_creds_opts *opts, nd_creds_provider **out, nd_err *err);

/* Frees the provider; pending requests are dropped without callbacks. Safe with NULL. */
void nd_creds_provider_free(nd_creds_provider *p);

/* The cached credentials when they are usable now (not within the refresh window), else NULL. Never blocks. */
const nd_creds *nd_creds_current(nd_creds_provider *p);

/* Gets credentials: when the cache is fresh (and force is false) cb is NOT called and 1 is returned with *now set
 * to the cached credentials; otherwise a refresh starts (or joins the one in flight), 0 is returned, and cb runs
 * later. *out (may be NULL) gets a handle for nd_creds_cancel. Returns a negative code when it cannot start. */
int nd_creds_get(nd_creds_provider *p, bool force, nd_creds_cb cb, void *ud, const nd_creds **now,
                 nd_creds_req **out, nd_err *err);

/* Cancels a pending nd_creds_get: its callback is never called. Safe with NULL. */
void nd_creds_cancel(nd_creds_req *req);

/* Marks the cached credentials as unusable (e.g. after ExpiredTokenException) so the next get refreshes. For env
 * and static credentials the environment is read again. */
void nd_creds_invalidate(nd_creds_provider *p);

/* How many times credentials were fetched from IMDS, and IMDS tokens fetched (for tests and metrics). */
void nd_creds_stats(const nd_creds_provider *p, uint64_t *fetches, uint64_t *tokens);

/* Parses an ISO-8601 UTC time "2026-11-22T20:00:00Z" into Unix seconds. Returns 0 or -EINVAL. */
int nd_creds_parse_time(const char *s, int64_t *out);

/* Fills c from the environment. Returns 0, or -ENOENT when AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are missing. */
int nd_creds_from_env(nd_creds *c, nd_err *err);

#endif
