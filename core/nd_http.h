/*
 * nd_http.h — asynchronous HTTP(S) on the shared libuv loop: libcurl's multi interface driven by libuv
 * (curl_multi_socket_action + uv_poll for sockets + one uv_timer for curl's timeouts). Used by the KMS client and the
 * IMDSv2 credentials provider; usable by anything else that needs an HTTP call (doctor's reachability checks).
 *
 * One nd_http (a curl multi handle) keeps a pool of idle connections, so requests to the same host reuse TLS
 * connections (keep-alive). Requests complete through a callback on the loop; a cancelled request never calls back.
 */
#ifndef ND_HTTP_H
#define ND_HTTP_H

#include "nd.h"

typedef struct nd_http nd_http;
typedef struct nd_http_req nd_http_req;

typedef struct nd_http_opts {
    const char *ca_file;        /* CA bundle (PEM) to verify servers with; NULL: the system store */
    const char *proxy;          /* NULL: libcurl's defaults (HTTPS_PROXY/https_proxy/NO_PROXY are honoured);
                                   "": never use a proxy; otherwise a proxy URL such as "http://10.0.0.1:3128" */
    double connect_timeout_s;   /* TCP+TLS connect timeout; <= 0 means 5 s */
    long max_connections;       /* connection cache size (idle connections kept); <= 0 means 64 */
    long max_host_connections;  /* parallel connections per host; <= 0 means no limit */
} nd_http_opts;

typedef struct nd_http_header {
    const char *name;
    const char *value;
} nd_http_header;

typedef struct nd_http_request {
    const char *method;                /* "GET", "PUT", "POST" */
    const char *url;
    const nd_http_header *headers;     /* sent as given */
    size_t nheaders;
    const void *body;                  /* copied: the caller's buffer may go once nd_http_start returns */
    size_t body_len;
    double timeout_s;                  /* whole request (connect + transfer); <= 0 means 30 s */
    size_t max_response;               /* response body cap; <= 0 means 1 MiB; over the cap: -EMSGSIZE */
} nd_http_request;

typedef struct nd_http_response {
    int error;            /* 0, or a negative errno for transport failures: -ETIMEDOUT, -ECONNREFUSED,
                             -ECONNRESET, -EHOSTUNREACH, -EPROTO (TLS/HTTP protocol), -EMSGSIZE (body over cap),
                             -ECANCELED, -EIO (anything else) */
    char errmsg[256];     /* one line describing error ("" when error is 0) */
    long status;          /* HTTP status, 0 when no response */
    const char *body;     /* NUL-terminated (the NUL is not counted) */
    size_t body_len;
    double duration_s;    /* from start to completion */
    bool new_connection;  /* this request opened a new connection (false: it reused a kept-alive one) */
} nd_http_response;

/* Called once per request, on the loop. resp (and its body) is valid only during the call. */
typedef void (*nd_http_cb)(void *ud, const nd_http_response *resp, nd_http_req *req);

/* Creates a client on loop. Returns 0 and *out, or -ENOMEM/-EIO with err. */
int nd_http_new(struct uv_loop_s *loop, const nd_http_opts *opts, nd_http **out, nd_err *err);

/* Releases the client: requests still in flight are cancelled WITHOUT callbacks; libuv handles are closed (the
 * memory goes once their close callbacks ran, so run the loop a little after this). Safe with NULL. */
void nd_http_free(nd_http *h);

/* Starts a request. Returns 0 and (when out is non-NULL) a handle valid until the callback returns or until
 * nd_http_cancel; or a negative code (-EINVAL bad request, -ENOMEM, -ESHUTDOWN after nd_http_free). */
int nd_http_start(nd_http *h, const nd_http_request *req, nd_http_cb cb, void *ud, nd_http_req **out, nd_err *err);

/* Cancels a request still in flight: its callback is never called. Safe with NULL. Not for use after the callback. */
void nd_http_cancel(nd_http_req *req);

/* The value of the first response header called name (case-insensitive), or NULL. Only inside the callback. */
const char *nd_http_response_header(const nd_http_req *req, const char *name);

/* Counters of this client: new connections opened and requests completed (for keep-alive checks). */
void nd_http_stats(const nd_http *h, uint64_t *connections, uint64_t *requests);

#endif
