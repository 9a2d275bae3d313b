/*
 * http.c — asynchronous HTTP(S) for the core (see nd_http.h): libcurl's multi interface driven by the shared libuv
 * loop. curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION → one uv_poll_t per socket) and when to wake
 * it (CURLMOPT_TIMERFUNCTION → one uv_timer_t); libuv events are handed back with curl_multi_socket_action, and
 * finished transfers are collected with curl_multi_info_read. The multi handle owns the connection cache, so
 * requests to the same host reuse kept-alive (TLS) connections.
 *
 * Memory: the nd_http lives until nd_http_free AND every libuv handle it opened has been closed (handle count);
 * each request is freed right after its callback or on cancel.
 */
#include "nd_http.h"
#include "nd_buf.h"
#include "nd_list.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <curl/curl.h>
#include <uv.h>

/* A socket curl asked us to watch. When curl stops watching it (CURL_POLL_REMOVE: the transfer is done and the
 * connection goes back to the cache) the poll handle is only stopped ("parked") and picked up again by the next
 * transfer on the same connection: a new uv_poll_t per transfer cost an epoll ADD and DEL (libuv's check of the fd),
 * an ioctl, then an ADD and a DEL again, 5 % of the KMS proxy's CPU. A parked handle is closed when curl closes its
 * socket (CURLOPT_CLOSESOCKETFUNCTION, called while the fd is still open, so the fd number cannot have been taken by
 * anything else yet). */
typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    nd_http *h;
    bool parked;
    struct sock_ctx *prev, *next;
} sock_ctx;

/* Easy handles kept for reuse: curl_easy_init and curl_easy_cleanup per request, with the download and upload
 * buffers curl allocates for each handle, were about 4 % of the KMS proxy's CPU per request. A handle is reset
 * (curl_easy_reset: every option back to its default) before it is used again; connections live in the multi
 * handle's cache either way. Bounded, so idle handles cannot add much memory. */
#define ND_HTTP_IDLE_EASY 16

struct nd_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int open_handles;     /* libuv handles not yet closed (timer + polls) */
    bool freed;
    char *ca_file;
    char *proxy;          /* NULL: curl defaults (env) */
    long connect_timeout_ms;
    nd_http_req *reqs;    /* requests in flight */
    sock_ctx *socks;
    uint64_t connections, requests;
    CURL *idle[ND_HTTP_IDLE_EASY]; /* easy handles of finished transfers, reset, for the next requests */
    int nidle;
};

struct nd_http_req {
    nd_http *h;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    char *resp;
    size_t resp_len, resp_cap, max_response;
    bool overflow;
    char **rhdr;          /* response header lines "Name: value" (of the last response) */
    size_t nrhdr, rhdr_cap;
    nd_http_cb cb;
    void *ud;
    uint64_t t0;
    char errbuf[CURL_ERROR_SIZE];
    nd_http_req *prev, *next;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- lifetime ---------------------------------------------------------------------------------------------------- */

static void maybe_release(nd_http *h)
{
    if (h->freed && h->open_handles == 0) {
        free(h->ca_file);
        free(h->proxy);
        free(h);
    }
}

static void on_handle_closed(uv_handle_t *hd)
{
    nd_http *h = hd->data;
    h->open_handles--;
    maybe_release(h);
}

static void on_sock_closed(uv_handle_t *hd)
{
    sock_ctx *s = (sock_ctx *)hd;
    nd_http *h = s->h;
    free(s);
    h->open_handles--;
    maybe_release(h);
}

static void sock_close(sock_ctx *s)
{
    ND_LIST_UNLINK(s->h->socks, s);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void req_unlink(nd_http_req *r)
{
    ND_LIST_UNLINK(r->h->reqs, r);
}

static void req_free(nd_http_req *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->h->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    curl_slist_free_all(r->hdrs);
    free(r->body);
    free(r->resp);
    for (size_t i = 0; i < r->nrhdr; i++)
        free(r->rhdr[i]);
    free(r->rhdr);
    free(r);
}

/* ---- curl → libuv ------------------------------------------------------------------------------------------------ */

static void check_multi_info(nd_http *h);

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *s = (sock_ctx *)p;
    nd_http *h = s->h;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    check_multi_info(h);
}

static void on_timer(uv_timer_t *t)
{
    nd_http *h = t->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(h);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    nd_http *h = userp;
    sock_ctx *s = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            uv_poll_stop(&s->poll);
            s->parked = true;
        }
        return 0;
    }
    if (!s) {
        for (sock_ctx *p = h->socks; p; p = p->next)
            if (p->parked && p->fd == fd) {
                s = p;
                s->parked = false;
                curl_multi_assign(h->multi, fd, s);
                break;
            }
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->fd = fd;
        s->h = h;
        if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        h->open_handles++;
        ND_LIST_PUSH(h->socks, s);
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        ev |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

/* curl closes a socket: close its poll handle first (parked or not), while the fd number is still this socket's. */
static int closesocket_cb(void *clientp, curl_socket_t fd)
{
    nd_http *h = clientp;
    for (sock_ctx *p = h->socks; p; p = p->next)
        if (p->fd == fd) {
            if (!p->parked)
                curl_multi_assign(h->multi, fd, NULL);
            sock_close(p);
            break;
        }
    return close(fd) == 0 ? 0 : 1; /* curl: 0 success, 1 error */
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    nd_http *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- transfers ----------------------------------------------------------------------------------------------- */

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    nd_http_req *r = ud;
    size_t n = size * nmemb;
    if (r->resp_len + n > r->max_response) {
        r->overflow = true;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (nd_grow(&r->resp, &r->resp_cap, r->resp_len + n + 1) < 0)
        return 0;
    memcpy(r->resp + r->resp_len, ptr, n);
    r->resp_len += n;
    r->resp[r->resp_len] = '\0';
    return n;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    nd_http_req *r = ud;
    size_t n = size * nitems;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (after 100 Continue, or a retried request): forget earlier headers */
        for (size_t i = 0; i < r->nrhdr; i++)
            free(r->rhdr[i]);
        r->nrhdr = 0;
        return n;
    }
    while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n'))
        n--;
    if (n == 0 || !memchr(buf, ':', n) || r->nrhdr >= 256)
        return size * nitems;
    char **np = nd_grow_array(r->rhdr, &r->rhdr_cap, r->nrhdr + 1, sizeof *np);
    if (!np)
        return 0;
    r->rhdr = np;
    char *line = strndup(buf, n);
    if (!line)
        return 0;
    r->rhdr[r->nrhdr++] = line;
    return size * nitems;
}

const char *nd_http_response_header(const nd_http_req *req, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; req && i < req->nrhdr; i++) {
        const char *l = req->rhdr[i];
        if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
            const char *v = l + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

static int map_curl_error(nd_http_req *r, CURLcode rc)
{
    long oserr = 0;
    curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &oserr);
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        if (oserr == EHOSTUNREACH || oserr == ENETUNREACH)
            return -EHOSTUNREACH;
        if (oserr == ETIMEDOUT)
            return -ETIMEDOUT;
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    case CURLE_WRITE_ERROR:
        return r->overflow ? -EMSGSIZE : -EIO;
    case CURLE_SSL_CONNECT_ERROR:
        return oserr == ECONNRESET ? -ECONNRESET : -EPROTO;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_HTTP2:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static void finish(nd_http *h, nd_http_req *r, CURLcode rc)
{
    nd_http_response resp;
    memset(&resp, 0, sizeof resp);
    resp.error = map_curl_error(r, rc);
    if (resp.error)
        snprintf(resp.errmsg, sizeof resp.errmsg, "%s", r->overflow ? "response body over the size cap"
                                                                     : (r->errbuf[0] ? r->errbuf
                                                                                     : curl_easy_strerror(rc)));
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp.status);
    long nconn = 0;
    curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &nconn);
    resp.new_connection = nconn > 0;
    h->connections += (uint64_t)(nconn > 0 ? nconn : 0);
    h->requests++;
    resp.body = r->resp ? r->resp : "";
    resp.body_len = r->resp ? r->resp_len : 0;
    resp.duration_s = (double)(uv_hrtime() - r->t0) / 1e9;
    req_unlink(r);
    curl_multi_remove_handle(h->multi, r->easy);
    r->cb(r->ud, &resp, r);
    if (!h->freed && h->nidle < ND_HTTP_IDLE_EASY) {
        curl_easy_reset(r->easy);
        h->idle[h->nidle++] = r->easy;
    } else {
        curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    req_free(r);
}

static void check_multi_info(nd_http *h)
{
    CURLMsg *m;
    int left;
    while (!h->freed && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        nd_http_req *r = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = m->data.result;
        if (r)
            finish(h, r, rc);
    }
}

/* ---- public API ------------------------------------------------------------------------------------------------ */

int nd_http_new(struct uv_loop_s *loop, const nd_http_opts *opts, nd_http **out, nd_err *err)
{
    *out = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return nd_err_set(err, -EIO, "http: curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
    nd_http_opts o = { 0 };
    if (opts)
        o = *opts;
    nd_http *h = calloc(1, sizeof *h);
    if (!h)
        return nd_err_set(err, -ENOMEM, "http: out of memory");
    h->loop = loop;
    h->connect_timeout_ms = (long)((o.connect_timeout_s > 0 ? o.connect_timeout_s : 5.0) * 1000);
    if ((o.ca_file && !(h->ca_file = strdup(o.ca_file))) || (o.proxy && !(h->proxy = strdup(o.proxy)))) {
        free(h->ca_file);
        free(h);
        return nd_err_set(err, -ENOMEM, "http: out of memory");
    }
    h->multi = curl_multi_init();
    if (!h->multi) {
        free(h->ca_file);
        free(h->proxy);
        free(h);
        return nd_err_set(err, -EIO, "http: curl_multi_init failed");
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, o.max_connections > 0 ? o.max_connections : 64L);
    if (o.max_host_connections > 0)
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o.max_host_connections);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    *out = h;
    return 0;
}

void nd_http_free(nd_http *h)
{
    if (!h || h->freed)
        return;
    h->freed = true;
    while (h->reqs) {
        nd_http_req *r = h->reqs;
        req_unlink(r);
        req_free(r);
    }
    /* Stop watching the sockets BEFORE curl closes them (a closed fd number may be reused at once), and stop curl
     * from calling back into us during cleanup. */
    while (h->socks)
        sock_close(h->socks);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, NULL);
    while (h->nidle > 0)
        curl_easy_cleanup(h->idle[--h->nidle]);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
}

int nd_http_start(nd_http *h, const nd_http_request *req, nd_http_cb cb, void *ud, nd_http_req **out, nd_err *err)
{
    if (out)
        *out = NULL;
    if (!h || h->freed)
        return nd_err_set(err, -ESHUTDOWN, "http: client is closed");
    if (!req || !req->url || !req->method || !cb)
        return nd_err_set(err, -EINVAL, "http: request needs a method, a url and a callback");
    nd_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return nd_err_set(err, -ENOMEM, "http: out of memory");
    r->h = h;
    r->cb = cb;
    r->ud = ud;
    r->max_response = req->max_response > 0 ? req->max_response : (1u << 20);
    r->easy = h->nidle > 0 ? h->idle[--h->nidle] : curl_easy_init();
    if (!r->easy) {
        free(r);
        return nd_err_set(err, -ENOMEM, "http: curl_easy_init failed");
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)((req->timeout_s > 0 ? req->timeout_s : 30.0) * 1000));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
    /* No CA file given: SSL_CERT_FILE (OpenSSL's convention; the portable build's launcher sets it to the host's
     * bundle when the host keeps it elsewhere than where this libcurl was built to look), else libcurl's default. */
    const char *env_ca = getenv("SSL_CERT_FILE");
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    else if (env_ca && env_ca[0])
        curl_easy_setopt(e, CURLOPT_CAINFO, env_ca);
    if (h->proxy)
        curl_easy_setopt(e, CURLOPT_PROXY, h->proxy);
    bool has_body = req->body_len > 0 || strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0;
    if (has_body) {
        r->body = malloc(req->body_len + 1);
        if (!r->body) {
            req_free(r);
            return nd_err_set(err, -ENOMEM, "http: out of memory");
        }
        if (req->body_len)
            memcpy(r->body, req->body, req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    }
    if (strcmp(req->method, "GET") == 0) {
        if (!has_body)
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    /* No "Expect: 100-continue" round trip; no default form content type. */
    struct curl_slist *l = curl_slist_append(NULL, "Expect:");
    if (l && has_body)
        l = curl_slist_append(l, "Content-Type:");
    for (size_t i = 0; l && i < req->nheaders; i++) {
        const nd_http_header *hd = &req->headers[i];
        if (!hd->name || !hd->value || strpbrk(hd->name, "\r\n:") || strpbrk(hd->value, "\r\n")) {
            curl_slist_free_all(l);
            req_free(r);
            return nd_err_set(err, -EINVAL, "http: bad header '%s'", hd->name ? hd->name : "(null)");
        }
        size_t n = strlen(hd->name) + strlen(hd->value) + 3;
        char *line = malloc(n);
        if (!line) {
            curl_slist_free_all(l);
            l = NULL;
            break;
        }
        snprintf(line, n, "%s: %s", hd->name, hd->value);
        struct curl_slist *nl = curl_slist_append(l, line);
        free(line);
        if (!nl) {
            curl_slist_free_all(l);
            l = NULL;
            break;
        }
        l = nl;
    }
    if (!l) {
        req_free(r);
        return nd_err_set(err, -ENOMEM, "http: out of memory");
    }
    r->hdrs = l;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
    r->t0 = uv_hrtime();
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) {
        req_free(r);
        return nd_err_set(err, -EIO, "http: curl_multi_add_handle: %s", curl_multi_strerror(mc));
    }
    ND_LIST_PUSH(h->reqs, r);
    if (out)
        *out = r;
    return 0;
}

void nd_http_cancel(nd_http_req *req)
{
    if (!req)
        return;
    req_unlink(req);
    req_free(req);
}

void nd_http_stats(const nd_http *h, uint64_t *connections, uint64_t *requests)
{
    if (connections)
        *connections = h ? h->connections : 0;
    if (requests)
        *requests = h ? h->requests : 0;
}
