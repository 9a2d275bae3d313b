/*
 * px_internal.h — what the rooms of nitrodiag-kms-proxy share (not an interface: proxy.h is). The server object and
 * its parts, and the functions one room calls in another:
 *   proxy.c    the server: log lines, reload (SIGHUP), drain and shutdown (SIGTERM/SIGINT), start and free
 *   listen.c   listeners (TCP, unix, vsock) for enclaves and for /metrics
 *   conn.c     enclave connections: reading frames, writing responses, reference counts and closing
 *   request.c  requests: policy, rate limit, breaker, upstream attempts with retries, the one response
 *   metrics.c  the /metrics responder (Prometheus text over HTTP)
 */
#ifndef PX_INTERNAL_H
#define PX_INTERNAL_H

#include "proxy.h"
#include "nd_list.h"
#include "nd_logline.h"

#include "nd_attest.h"
#include "nd_codec.h"
#include "nd_creds.h"
#include "nd_frame.h"
#include "nd_jsonw.h"
#include "nd_jsonlift.h"
#include "nd_kms.h"
#include "nd_kmspolicy.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <linux/vm_sockets.h>


/* The handle of a listener or a connection: TCP or a unix/vsock pipe, used as a stream. */
typedef union px_stream {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} px_stream;

typedef struct counters {
    uint64_t requests, success, errors, retries, throttled, timeouts, rate_limited, circuit_open;
} counters;

enum { K_TCP = 1, K_PIPE = 2 };

typedef struct listener {
    px_stream u;
    int kind;
    bool open;
    char addr[PX_STR];
    char unlink_path[PX_STR];
    px_server *srv;
    bool metrics;
} listener;

typedef struct conn conn;
struct conn {
    px_stream u;
    px_server *srv;
    nd_frame_decoder dec;
    int refs;          /* 1 for the handle until its close callback, +1 per request and per write in flight */
    int pending;       /* requests of this connection not answered yet */
    bool closing;      /* uv_close called */
    bool reading;
    bool eof;          /* peer finished sending (or Shutdown frame, or framing error): close when idle */
    size_t unsent;     /* bytes of frames queued to the peer and not yet written (a client that does not read) */
    uint64_t over_since; /* loop time unsent went above max_unsent_per_conn, 0 when below */
    uint64_t id;       /* for log lines about this connection */
    double log_tokens; /* per-connection budget of rejection log lines (token bucket) */
    uint64_t log_last_ms;
    uint64_t suppressed; /* rejection log lines not written since the last kms_proxy_log_suppressed line */
    conn *prev, *next;
};

typedef struct mconn { /* a /metrics client */
    px_stream u;
    px_server *srv;
    char buf[4096];
    size_t len;
    bool answered;
    bool closing;
    struct mconn *prev, *next;
} mconn;

typedef struct preq {
    px_server *srv;
    conn *c;
    uint32_t seq;
    nd_kms_request r;
    char *body;           /* upstream JSON (may hold an attestation document / plaintext): wiped when freed */
    size_t body_len;
    uint64_t start_ms, deadline_ms;
    int attempts;         /* upstream attempts started by the proxy */
    int http_attempts;    /* HTTP attempts reported by the client (an ExpiredToken retry counts) */
    int budget_spent;
    bool upstream;        /* passed the breaker: its outcome is recorded there */
    bool slot;            /* holds one of the max_in_flight upstream slots */
    bool queued;          /* waiting for a slot (in s->wait) */
    struct preq *wprev, *wnext;
    nd_kms_class last_cls;
    char last_msg[256];
    char kms_request_id[ND_KMS_ID_MAX + 1];
    nd_kms_req *call;
    uv_timer_t timer;     /* attempt timeout, then backoff */
    bool timer_backoff;
    struct preq *prev, *next;
} preq;

struct px_server {
    uv_loop_t *loop;
    nd_ctx ctx;
    px_config cfg;
    bool region_from_imds;      /* cfg.region came from IMDS at start (no region configured) */
    const char *config_path;
    int nflags;
    char **flags;
    nd_creds_provider *creds;
    nd_kms_client *kms;
    listener ls[PX_MAX_LISTEN];
    int nls;
    listener metrics;
    int nmetrics;      /* /metrics clients connected now (bounded: a local scraper needs one or two) */
    mconn *mconns;
    conn *conns;
    int nconns;
    preq *reqs;
    preq *wait_head, *wait_tail; /* FIFO of requests waiting for an in-flight slot */
    int in_flight, queued;
    counters m;
    nd_tbucket tb;
    nd_retry_budget rb;
    nd_breaker br;
    uv_signal_t sig_hup, sig_term, sig_int;
    uv_timer_t drain_timer;
    uv_timer_t unsent_timer; /* runs while some connection is above max_unsent_per_conn */
    bool unsent_timer_on;
    uint64_t next_conn_id;
    bool draining, stopped;
    uint64_t rng;
    char rbuf[65536];
    bool rbuf_busy;
};

/* ---- functions one room calls in another ---- */

double rand01(px_server *s);
void log_line(json_t *o);
/* The hot lines (one request, one response per request) are written with nd_jsonw.h instead of a jansson tree:
 * b holds "{" and the members; log_text adds "ts" (last, as log_line does), "}" and the newline, writes the line,
 * and frees b. The same text as log_line gives for the same members. */
void log_text(nd_buf *b);
json_t *jstr_or_null(const char *s);
json_t *metrics_json(px_server *s);
/* The member "metrics": the counter snapshot metrics_json builds, written into b. */
void metrics_jw(nd_buf *b, bool *first, px_server *s);
void log_event(px_server *s, const char *event, const char *fmt, ...) ND_PRINTF(3, 4);
void maybe_finish_drain(px_server *s);
bool conn_log_ok(conn *c);
bool conn_unref(conn *c);
void conn_close(conn *c);
void conn_maybe_close(conn *c);
void conn_send(conn *c, unsigned type, uint32_t seq, const void *payload, size_t len);
void conn_update_reading(conn *c);
void on_connection(uv_stream_t *server, int status);
/* One answer to an enclave: the frame it goes in, the ids the client matches it by, and either the upstream's
 * response (resp) or an error made here (error_code, message). */
typedef struct px_answer {
    unsigned frame_type;           /* ND_FRAME_KMS_PROXY, or ND_FRAME_ERROR for a frame that is not a request */
    uint32_t seq;
    const char *request_id, *trace_id, *kms_request_id; /* may be NULL */
    const char *error_code;        /* when resp is NULL */
    const char *message;
    const nd_kms_response *resp;   /* NULL: an error answer */
    int attempts;                  /* upstream attempts (0: refused before any) */
    uint64_t start_ms;             /* loop time the request arrived, for duration_ms */
    json_t *log_extra;             /* more fields for the response line (e.g. a denied request's attestation), or NULL */
} px_answer;

/* An answer the proxy makes itself, before (or instead of) any upstream attempt — the one path for a frame it cannot
 * read (framing error, payload over max_frame), a frame type it does not serve, a request that does not parse (bad
 * JSON), one that policy or the limits refuse, no memory: counts it as a request, writes its kms_proxy_request line
 * (what was parsed of r; r NULL when nothing was) and its kms_proxy_response line with a.error_code (both under c's
 * log budget), and answers on c in a.frame_type with a.seq (request_id and trace_id from r). a.start_ms 0: now. */
void refuse(conn *c, const nd_kms_request *r, bool parsed, px_answer a);
/* Ends a request that went into the upstream path (a preq): breaker and budget outcome, the answer (the upstream's
 * response resp, or error_code and message), its kms_proxy_response line, then frees it. */
void req_finish(preq *q, const char *error_code, const char *message, const nd_kms_response *resp);
void handle_frame(conn *c, const nd_frame *f);
void mconn_close(mconn *mc);
void on_metrics_connection(uv_stream_t *server, int status);
int listener_open(px_server *s, listener *l, const char *addr, bool loopback_only, uv_connection_cb cb,
                         nd_err *err);
void listener_close(listener *l);

#endif
