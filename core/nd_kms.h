/*
 * nd_kms.h — an asynchronous AWS KMS client (JSON 1.1 protocol over HTTPS) on the shared libuv loop.
 *
 * nd_kms_call() signs a request with SigV4 (service "kms"), sends it through nd_http (libcurl multi driven by libuv,
 * keep-alive connection reuse, HTTPS_PROXY honoured unless overridden, CA bundle option) and reports ONE result per
 * call through a callback: the HTTP status, body, x-amzn-RequestId, the normalised error code and message, or a
 * transport error as a negative errno. It does no retry policy of its own — the caller (the proxy) owns deadlines,
 * backoff, budgets and breakers — with one exception: when KMS answers ExpiredTokenException and expired_token_retry
 * is on, the credentials are invalidated, refreshed, and the call is repeated once (result.attempts == 2).
 *
 * Request bodies and responses may carry Plaintext and CiphertextForRecipient: this module never logs them.
 */
#ifndef ND_KMS_H
#define ND_KMS_H

#include "nd.h"
#include "nd_creds.h"

typedef struct nd_kms_client nd_kms_client;
typedef struct nd_kms_req nd_kms_req;

typedef struct nd_kms_opts {
    const char *region;            /* required, e.g. "us-east-1" */
    const char *endpoint;          /* NULL: https://kms.<region>.amazonaws.com; else an override for FIPS
                                      ("https://kms-fips.us-east-1.amazonaws.com"), VPC endpoints or a test server
                                      ("https://127.0.0.1:4567"); "host[:port]" alone means https://host[:port] */
    const char *ca_file;           /* CA bundle (PEM); NULL: the system store */
    const char *proxy;             /* NULL: HTTPS_PROXY/NO_PROXY from the environment; "": no proxy; or a URL */
    double connect_timeout_s;      /* <= 0 means 2 s */
    long max_connections;          /* connections at once, all kept alive (more requests wait); <= 0 means 64 */
    nd_creds_provider *creds;      /* required, not owned (must outlive the client) */
    bool no_expired_token_retry;   /* true: report ExpiredTokenException as is instead of refresh + retry once */
    size_t max_response;           /* response cap; <= 0 means 1 MiB */
} nd_kms_opts;

/* Coarse classes of an outcome, for retry decisions and error codes. */
typedef enum nd_kms_class {
    ND_KMS_OK = 0,              /* HTTP 2xx */
    ND_KMS_THROTTLED,           /* ThrottlingException & co (retryable with backoff) */
    ND_KMS_TIMEOUT,             /* transport timeout (retryable) */
    ND_KMS_UNAVAILABLE,         /* 500/502/503/504, KMSInternal/DependencyTimeout/KeyUnavailable, connection errors
                                   (retryable) */
    ND_KMS_ACCESS_DENIED,       /* AccessDeniedException, UnrecognizedClient, InvalidSignature (never retried) */
    ND_KMS_EXPIRED_TOKEN,       /* ExpiredTokenException (refresh credentials, retry once) */
    ND_KMS_CLIENT_ERROR,        /* any other 4xx: NotFound, Disabled, InvalidCiphertext, Validation… (not retried) */
    ND_KMS_INTERNAL,            /* local failure: no credentials, signing failed, bad response, cancelled */
} nd_kms_class;

typedef struct nd_kms_result {
    long http_status;              /* 0 when no HTTP response */
    const char *body;              /* response body (NUL-terminated), "" when none; valid during the callback */
    size_t body_len;
    const char *request_id;        /* x-amzn-RequestId header, "" when absent */
    const char *error_code;        /* normalised KMS error code ("ThrottlingException"), "" on success; for
                                      transport errors the errno name ("ETIMEDOUT"); "HTTP<status>" for an
                                      error status without a code; for local failures "CredentialsError" or
                                      "InternalError" */
    const char *message;           /* error message from the body ("message" or "Message"), or a transport/local
                                      error description; "" on success */
    int transport_error;           /* 0 or a negative errno: -ETIMEDOUT, -ECONNRESET, -ECONNREFUSED, -EHOSTUNREACH,
                                      -EPROTO, -EMSGSIZE, -EIO; -ENOENT when credentials could not be obtained
                                      (error_code "CredentialsError") */
    nd_kms_class cls;              /* classification of this result (nd_kms_classify) */
    double duration_s;             /* from nd_kms_call to the callback (including a credentials refresh) */
    int attempts;                  /* HTTP attempts made: 1, or 2 after an ExpiredTokenException retry */
    bool new_connection;           /* the last attempt opened a new connection (false: keep-alive reuse) */
} nd_kms_result;

/* Called exactly once per nd_kms_call that returned 0 (never after nd_kms_cancel or nd_kms_client_free). res and
 * everything it points to is valid only during the call. */
typedef void (*nd_kms_cb)(void *ud, const nd_kms_result *res);

/* Creates a client on ctx->loop. Returns 0 and *out, or -EINVAL (no region/creds, bad endpoint), -ENOMEM. */
int nd_kms_client_new(nd_ctx *ctx, const nd_kms_opts *opts, nd_kms_client **out, nd_err *err);

/* Frees the client: calls in flight are cancelled without callbacks. Run the loop briefly afterwards so libuv can
 * close its handles. Safe with NULL. */
void nd_kms_client_free(nd_kms_client *c);

/* Starts operation op ("Decrypt", "GenerateDataKey", "Encrypt", "GenerateRandom", …: sent as
 * X-Amz-Target: TrentService.<op>) with the JSON body json (len bytes, copied). attempt_timeout_s bounds each HTTP
 * attempt (<= 0 means 10 s). Returns 0 and, when out is non-NULL, a handle for nd_kms_cancel (valid until the
 * callback starts); or -EINVAL (bad op), -ENOMEM, or the credentials provider's error when credentials are not
 * available right now (-ENOENT: env variables missing) — then cb is never called. Credentials that must be fetched
 * (IMDS) and fail later are reported through cb with transport_error -ENOENT and error_code "CredentialsError". */
int nd_kms_call(nd_kms_client *c, const char *op, const char *json, size_t len, double attempt_timeout_s,
                nd_kms_cb cb, void *ud, nd_kms_req **out, nd_err *err);

/* Cancels a call in flight: no callback will follow. Safe with NULL; not after the callback started. */
void nd_kms_cancel(nd_kms_req *r);

/* Normalises an error code: the X-Amzn-ErrorType header value wins over the body's __type; anything after ':' is
 * dropped; only what follows the last '#' is kept ("com.amazonaws.kms#NotFoundException" -> "NotFoundException").
 * Writes into out (outsz bytes) and returns out; "" when both are NULL/empty. */
const char *nd_kms_normalize_error(const char *header_value, const char *type_value, char *out, size_t outsz);

/* Classifies an outcome from the HTTP status, the normalised error code and the transport error. */
nd_kms_class nd_kms_classify(long http_status, const char *error_code, int transport_error);

/* True for the classes worth retrying with backoff: THROTTLED, TIMEOUT, UNAVAILABLE. */
bool nd_kms_class_retryable(nd_kms_class cls);

/* A stable snake_case name: "ok", "throttled", "timeout", "unavailable", "access_denied", "expired_token",
 * "client_error", "internal". */
const char *nd_kms_class_name(nd_kms_class cls);

/* Counters of this client's HTTP layer: connections opened and HTTP requests completed. */
void nd_kms_stats(const nd_kms_client *c, uint64_t *connections, uint64_t *requests);

#endif
