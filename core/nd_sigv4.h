/*
 * nd_sigv4.h — AWS Signature Version 4 (header signing, AWS4-HMAC-SHA256) for the KMS client, the fake KMS (which
 * verifies with the same code) and runbooks (nd.sigv4).
 *
 * The signer is pure: it takes a request description and the time, and returns the canonical request, the string to
 * sign, the signature and the headers to add. It never reads the clock or the environment.
 *
 * Canonicalisation (as the AWS test suite and botocore do it for every service but S3):
 *  - path: dot segments removed and repeated '/' collapsed, then every byte except unreserved (A-Z a-z 0-9 - _ . ~)
 *    and '/' percent-encoded (so an already-encoded path is encoded again, as AWS specifies for non-S3 services);
 *  - query: split on '&', each part split at the first '='; names and values percent-decoded then re-encoded
 *    (unreserved kept), sorted by name then value; "a" becomes "a=";
 *  - headers: names lower-cased, values trimmed with inner runs of spaces/tabs collapsed to one space; headers with
 *    the same name joined with ','; sorted by name. Every header given is signed.
 */
#ifndef ND_SIGV4_H
#define ND_SIGV4_H

#include "nd.h"

typedef struct nd_sigv4_header {
    const char *name;
    const char *value;
} nd_sigv4_header;

typedef struct nd_sigv4_request {
    const char *method;                /* "POST" */
    const char *host;                  /* signed as "host" unless headers already contain a Host header */
    const char *path;                  /* as sent on the wire, e.g. "/"; NULL or "" means "/" */
    const char *query;                 /* without '?', may be NULL */
    const nd_sigv4_header *headers;    /* headers to sign (x-amz-date and x-amz-security-token may be included:
                                          then they are used as given and not added) */
    size_t nheaders;
    const void *body;                  /* payload, may be NULL when body_len is 0 */
    size_t body_len;
} nd_sigv4_request;

typedef struct nd_sigv4_key {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;         /* NULL or "" when the credentials have none */
} nd_sigv4_key;

/* What signing produced. All strings are owned by the result (nd_sigv4_result_free). */
typedef struct nd_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signed_headers;              /* "content-type;host;x-amz-date;x-amz-target" */
    char *authorization;               /* the full Authorization header value */
    char *scope;                       /* "20150830/us-east-1/service/aws4_request" */
    char signature[65];                /* lower-case hex */
    char payload_hash[65];             /* hex SHA-256 of the body */
    /* Headers the caller must add to the request (besides Authorization), in this order; absent when the request
     * already had them: X-Amz-Date, then X-Amz-Security-Token when the key has a session token. */
    nd_sigv4_header add[2];
    size_t nadd;
} nd_sigv4_result;

/* Signs req for region/service at amz_date ("YYYYMMDDTHHMMSSZ"). sign_token: when true and the key has a session
 * token, X-Amz-Security-Token is signed (KMS, STS); when false it is still returned in add[] but not signed.
 * Returns 0 and fills *out, or -EINVAL (missing field, bad date, header name with ':' or control characters) or
 * -ENOMEM, with a message in err. On failure *out holds nothing to free. */
int nd_sigv4_sign(const nd_sigv4_request *req, const nd_sigv4_key *key, const char *region, const char *service,
                  const char *amz_date, bool sign_token, nd_sigv4_result *out, nd_err *err);

void nd_sigv4_result_free(nd_sigv4_result *res);

/* Formats a Unix time as an x-amz-date ("20150830T123600Z") into out (at least 17 bytes). Returns out. */
char *nd_sigv4_amz_date(int64_t unix_time, char out[17]);

/* A parsed Authorization header (for verification, e.g. by the fake KMS). Strings point into storage owned by the
 * struct; no freeing needed. */
typedef struct nd_sigv4_auth {
    char access_key_id[128];
    char date[9];          /* YYYYMMDD */
    char region[64];
    char service[64];
    char signed_headers[1024];
    char signature[65];
} nd_sigv4_auth;

/* Parses "AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex".
 * Returns 0, or -EBADMSG with a message naming what is wrong. */
int nd_sigv4_parse_authorization(const char *value, nd_sigv4_auth *out, nd_err *err);

/* Constant-time comparison of two hex signatures; true when equal. */
bool nd_sigv4_signature_equal(const char *a, const char *b);

/* The SigV4 URI encoding of n bytes (unreserved kept; '/' kept when keep_slash). Returns a malloc'd string or
 * NULL when out of memory. */
char *nd_sigv4_uri_encode(const char *s, size_t n, bool keep_slash);

#endif
