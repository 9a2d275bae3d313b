/*
 * nd_imds.h — an IMDSv2 client (EC2 instance metadata) on the shared loop, through nd_http. v2 only: every GET
 * carries a session token obtained with PUT /latest/api/token; a 401 on a GET fetches a new token and repeats the GET
 * once. Used by nd_creds (role credentials); usable for any metadata path (doctor: instance id, region).
 */
#ifndef ND_IMDS_H
#define ND_IMDS_H

#include "nd.h"
#include "nd_http.h"

typedef struct nd_imds nd_imds;
typedef struct nd_imds_req nd_imds_req;

/* Called once on the loop: status 0 with the body (HTTP 200), or a negative code with err: -ENOENT (404),
 * -EACCES (403 or 401 twice), -ETIMEDOUT/-ECONNREFUSED/... (transport), -EPROTO (other HTTP status). */
typedef void (*nd_imds_cb)(void *ud, int status, const char *body, size_t len, const nd_err *err);

/* endpoint: "http://169.254.169.254" (no trailing path); timeout_s per HTTP request; token_ttl_s for the token.
 * http is not owned. Returns 0 and *out, or -ENOMEM/-EINVAL. */
int nd_imds_new(nd_http *http, const char *endpoint, double timeout_s, int token_ttl_s, nd_imds **out,
                nd_err *err);

void nd_imds_free(nd_imds *m);

/* The endpoint to use, as the AWS SDKs choose it: configured when non-empty, else $AWS_EC2_METADATA_SERVICE_ENDPOINT,
 * else "http://169.254.169.254". Never NULL. */
const char *nd_imds_endpoint(const char *configured);

/* GETs path ("/latest/meta-data/iam/security-credentials/") with a token (fetching one first when needed). */
int nd_imds_get(nd_imds *m, const char *path, nd_imds_cb cb, void *ud, nd_imds_req **out, nd_err *err);

/* Cancels a pending get; its callback is never called. Safe with NULL. */
void nd_imds_cancel(nd_imds_req *r);

/* Number of tokens fetched so far (each PUT that succeeded). */
uint64_t nd_imds_tokens_fetched(const nd_imds *m);

#endif
