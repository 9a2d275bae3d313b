/*
 * vsock.c — the virtio-vsock side of nd-vhost-vsock (see vhost.h): guest stream connections mapped to host unix
 * sockets the way Firecracker does it, credit accounting, and the enclave boot heartbeat.
 *
 * Packets (virtio 1.x 5.10.6, Linux include/uapi/linux/virtio_vsock.h): a 44-byte little-endian header {le64 src_cid,
 * le64 dst_cid, le32 src_port, le32 dst_port, le32 len, le16 type, le16 op, le32 flags, le32 buf_alloc, le32 fwd_cnt}
 * then len payload bytes. Only stream sockets (type 1) are offered.
 *
 * Connections are keyed by (host CID, host port, guest port):
 *  - guest-initiated: REQUEST to CID 2 or 3, port P -> connect the unix socket PREFIX_P; RESPONSE when it connects,
 *    RST when nothing listens. CID 3 port 9000 is the heartbeat when enabled: the byte 0xB7 is answered with 0xB7 and
 *    the stream is closed, as nitro-cli's enclave process does (eif_loader/src/lib.rs enclave_ready()).
 *  - host-initiated: a program connects to the unix socket PREFIX and writes "CONNECT <port>\n"; we send REQUEST from
 *    (CID 3, a fresh host port) to the guest's port; on RESPONSE the program gets "OK <hostport>\n" and its bytes are
 *    spliced; on RST or time-out its socket is closed.
 * Credit (5.10.6.3): we may send the guest at most peer_buf_alloc - (tx_cnt - peer_fwd_cnt) bytes, and read from
 * the host socket only that much; the guest may send us at most VS_BUF_ALLOC bytes beyond the fwd_cnt we last told it
 * (a packet beyond that resets the connection). We tell the guest our fwd_cnt with every packet and with a
 * CREDIT_UPDATE whenever a quarter of our buffer has been forwarded since, or when it asks (CREDIT_REQUEST).
 * Closing: host EOF -> SHUTDOWN(SEND) after the staged bytes; guest SHUTDOWN(SEND) -> shutdown(SHUT_WR) of the host
 * socket after the pending bytes; when both directions are closed (or the guest shut both), RST and free; an RST from
 * the guest frees at once. Every wait (CONNECT line, REQUEST answer, unix connect, close) is bounded by VS_TIMEOUT_MS.
 */
#include "vhost.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { K_UNIX, K_HEARTBEAT };
enum { S_LINE, S_HOST_CONNECTING, S_GUEST_CONNECTING, S_ESTABLISHED };
enum { P_REQUEST = 1, P_RESPONSE = 2, P_CREDIT = 4, P_SHUTDOWN = 8, P_RST = 16 };

struct vs_conn {
    int kind, state, fd;
    uint64_t host_cid;
    uint32_t host_port, guest_port;
    unsigned pend;
    uint32_t shut_flags;          /* flags of the SHUTDOWN we will send */
    int shut_sent;                /* we sent SHUTDOWN with SEND */
    uint32_t peer_shut;           /* the guest's SHUTDOWN flags so far */
    int host_eof;                 /* the host socket reached end of stream */
    int host_wr_shut;             /* we shut the host socket's write side */
    int hb_done;                  /* heartbeat answered (or refused) */
    /* guest -> host */
    uint8_t *out;
    size_t out_off, out_len;      /* bytes waiting to be written to fd */
    uint32_t fwd_cnt, fwd_cnt_sent;
    /* host -> guest */
    uint8_t *stage;
    size_t stage_off, stage_len;  /* bytes read from fd not yet in the guest */
    uint32_t tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    int64_t deadline;             /* 0 = none */
    char line[VS_CONNECT_LINE_MAX];
    size_t line_len;
};

int64_t vs_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vs_logv(FILE *f, const char *fmt, va_list ap)
{
    if (!f)
        return;
    fputs("nd-vhost-vsock: ", f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    fflush(f);
}

static void vlog(vs_dev *v, const char *fmt, ...) ND_PRINTF(2, 3);
static void vlog(vs_dev *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vs_logv(v->log, fmt, ap);
    va_end(ap);
}

/* ---- header codec ---- */
static uint64_t g64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }
static uint32_t g32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static uint16_t g16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static void p64(uint8_t *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static void p32(uint8_t *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static void p16(uint8_t *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }

void vs_hdr_decode(const uint8_t *b, vs_hdr *h)
{
    h->src_cid = g64(b);
    h->dst_cid = g64(b + 8);
    h->src_port = g32(b + 16);
    h->dst_port = g32(b + 20);
    h->len = g32(b + 24);
    h->type = g16(b + 28);
    h->op = g16(b + 30);
    h->flags = g32(b + 32);
    h->buf_alloc = g32(b + 36);
    h->fwd_cnt = g32(b + 40);
}

void vs_hdr_encode(const vs_hdr *h, uint8_t *b)
{
    p64(b, h->src_cid);
    p64(b + 8, h->dst_cid);
    p32(b + 16, h->src_port);
    p32(b + 20, h->dst_port);
    p32(b + 24, h->len);
    p16(b + 28, h->type);
    p16(b + 30, h->op);
    p32(b + 32, h->flags);
    p32(b + 36, h->buf_alloc);
    p32(b + 40, h->fwd_cnt);
}

/* ---- connection table ---- */
void vs_init(vs_dev *v, uint64_t guest_cid, const char *prefix, int heartbeat, FILE *log)
{
    memset(v, 0, sizeof *v);
    v->guest_cid = guest_cid;
    snprintf(v->prefix, sizeof v->prefix, "%s", prefix ? prefix : "");
    v->heartbeat = heartbeat;
    v->log = log;
    v->next_port = 1u << 30;
}

static vs_conn *find(vs_dev *v, uint64_t host_cid, uint32_t host_port, uint32_t guest_port)
{
    for (unsigned i = 0; i < v->nconns; i++) {
        vs_conn *c = v->conns[i];
        if (c->state != S_LINE && c->host_port == host_port && c->guest_port == guest_port && c->host_cid == host_cid)
            return c;
    }
    return NULL;
}

static vs_conn *conn_new(vs_dev *v, int kind, int fd)
{
    if (v->nconns >= VS_MAX_CONNS)
        return NULL;
    vs_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->out = malloc(VS_BUF_ALLOC);
    c->stage = malloc(VS_STAGE);
    if (!c->out || !c->stage) {
        free(c->out);
        free(c->stage);
        free(c);
        return NULL;
    }
    c->kind = kind;
    c->fd = fd;
    v->conns[v->nconns++] = c;
    return c;
}

static void conn_free(vs_dev *v, vs_conn *c)
{
    for (unsigned i = 0; i < v->nconns; i++)
        if (v->conns[i] == c) {
            v->conns[i] = v->conns[--v->nconns];
            break;
        }
    if (c->fd >= 0)
        close(c->fd);
    free(c->out);
    free(c->stage);
    free(c);
}

static void queue_rst(vs_dev *v, uint64_t host_cid, uint32_t host_port, uint32_t guest_port)
{
    if (v->nrst >= VS_MAX_RST) {
        vlog(v, "RST queue full: dropping the RST for guest port %u (the guest times out instead)", guest_port);
        return;
    }
    v->rst[v->nrst++] = (vs_rst){host_cid, host_port, guest_port};
}

/* Ends a connection: closes the host socket and frees it; the guest gets an RST unless it sent one (or never heard of
 * the connection). */
static void conn_reset(vs_dev *v, vs_conn *c, int tell_guest)
{
    if (tell_guest && c->state != S_LINE)
        queue_rst(v, c->host_cid, c->host_port, c->guest_port);
    conn_free(v, c);
}

void vs_reset(vs_dev *v)
{
    while (v->nconns)
        conn_free(v, v->conns[v->nconns - 1]);
    v->nrst = 0;
}

static uint32_t peer_credit(const vs_conn *c)
{
    uint32_t inflight = c->tx_cnt - c->peer_fwd_cnt;
    return inflight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - inflight;
}

/* Whether the connection has nothing left to do and can be closed with an RST. */
static int finished(const vs_conn *c)
{
    if (c->state != S_ESTABLISHED || c->out_len)
        return 0;
    if (c->peer_shut == (VS_SHUTDOWN_RCV | VS_SHUTDOWN_SEND))
        return 1;
    return (c->peer_shut & VS_SHUTDOWN_SEND) && c->shut_sent && !c->stage_len;
}

/* Both directions are closed (or the guest closed both): only draining is left, and that is bounded. A half-closed
 * connection may stream for as long as it likes. */
static void closing_deadline(vs_conn *c)
{
    int both = c->peer_shut == (VS_SHUTDOWN_RCV | VS_SHUTDOWN_SEND) ||
               ((c->peer_shut & VS_SHUTDOWN_SEND) && c->shut_sent) || (c->kind == K_HEARTBEAT && c->shut_sent);
    if (both && !c->deadline)
        c->deadline = vs_now_ms() + VS_TIMEOUT_MS;
}

static void check_finished(vs_dev *v, vs_conn *c)
{
    closing_deadline(c);
    if (finished(c) && !(c->pend & P_RST)) {
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
        c->pend = (c->pend & ~(unsigned)(P_CREDIT | P_SHUTDOWN)) | P_RST;
        c->stage_len = 0;
    }
}

/* Writes what is pending to the host socket. Returns 0, or -1 when the connection was reset (and freed). */
static int flush_out(vs_dev *v, vs_conn *c)
{
    while (c->out_len && c->fd >= 0) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            vlog(v, "guest port %u -> host port %u: write: %s; resetting", c->guest_port, c->host_port,
                 strerror(errno));
            conn_reset(v, c, 1);
            return -1;
        }
        c->out_off += (size_t)n;
        c->out_len -= (size_t)n;
        c->fwd_cnt += (uint32_t)n;
    }
    if (!c->out_len)
        c->out_off = 0;
    if (c->fwd_cnt - c->fwd_cnt_sent >= VS_BUF_ALLOC / 4)
        c->pend |= P_CREDIT;
    if (!c->out_len && (c->peer_shut & VS_SHUTDOWN_SEND) && c->fd >= 0 && !c->host_wr_shut) {
        shutdown(c->fd, SHUT_WR);
        c->host_wr_shut = 1;
    }
    check_finished(v, c);
    return 0;
}

/* ---- guest -> host ---- */
static int connect_port(vs_dev *v, uint32_t port, int *fd_out, nd_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s_%u", v->prefix, port);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path)
        return nd_err_set(err, -ENAMETOOLONG, "%s_%u: path too long for a unix socket", v->prefix, port);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return nd_err_set(err, -errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        *fd_out = fd;
        return 0;
    }
    int e = errno;
    if (e == EINPROGRESS || e == EAGAIN) {
        *fd_out = fd;
        return 1;
    }
    close(fd);
    return nd_err_set(err, -e, "%s: connect: %s", sa.sun_path, strerror(e));
}

static int guest_request(vs_dev *v, const vs_hdr *h, nd_err *err)
{
    if (h->dst_cid != VS_CID_HOST && h->dst_cid != VS_CID_PARENT) {
        queue_rst(v, h->dst_cid, h->dst_port, h->src_port);
        return nd_err_set(err, -EHOSTUNREACH, "guest port %u: connection to CID %llu port %u refused (only CIDs 2 "
                          "and 3 are the host)", h->src_port, (unsigned long long)h->dst_cid, h->dst_port);
    }
    int hb = v->heartbeat && h->dst_cid == VS_CID_PARENT && h->dst_port == VS_HEARTBEAT_PORT;
    int fd = -1, rc = 0;
    if (!hb && (rc = connect_port(v, h->dst_port, &fd, err)) < 0) {
        queue_rst(v, h->dst_cid, h->dst_port, h->src_port);
        vlog(v, "guest port %u -> CID %llu port %u: %s; RST", h->src_port, (unsigned long long)h->dst_cid,
             h->dst_port, err ? err->msg : "refused");
        return 0;
    }
    vs_conn *c = conn_new(v, hb ? K_HEARTBEAT : K_UNIX, fd);
    if (!c) {
        if (fd >= 0)
            close(fd);
        queue_rst(v, h->dst_cid, h->dst_port, h->src_port);
        return nd_err_set(err, -ENOMEM, "guest port %u -> port %u: too many connections (%u); RST", h->src_port,
                          h->dst_port, VS_MAX_CONNS);
    }
    c->host_cid = h->dst_cid;
    c->host_port = h->dst_port;
    c->guest_port = h->src_port;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    if (rc == 1) {
        c->state = S_HOST_CONNECTING;
        c->deadline = vs_now_ms() + VS_TIMEOUT_MS;
    } else {
        c->state = S_ESTABLISHED;
        c->pend |= P_RESPONSE;
    }
    return 0;
}

static void heartbeat_data(vs_dev *v, vs_conn *c, const uint8_t *p, uint32_t n)
{
    c->fwd_cnt += n; /* consumed here */
    if (c->hb_done || !n)
        return;
    c->hb_done = 1;
    if (p[0] == VS_HEARTBEAT_BYTE) {
        c->stage[0] = VS_HEARTBEAT_BYTE;
        c->stage_off = 0;
        c->stage_len = 1;
        v->heartbeats++;
        vlog(v, "heartbeat: answered 0xb7 from CID %llu port %u (enclave ready)", (unsigned long long)v->guest_cid,
             c->guest_port);
    } else {
        vlog(v, "heartbeat: expected 0xb7 from CID %llu port %u, got 0x%02x; closing as nitro-cli does",
             (unsigned long long)v->guest_cid, c->guest_port, p[0]);
    }
    /* nitro-cli drops the stream once it has written the byte back */
    c->host_eof = 1;
}

int vs_tx(vs_dev *v, const vs_hdr *h, const uint8_t *payload, nd_err *err)
{
    v->pkts_in++;
    if (h->src_cid != v->guest_cid)
        return nd_err_set(err, -EINVAL, "packet from CID %llu (the guest is CID %llu): dropped",
                          (unsigned long long)h->src_cid, (unsigned long long)v->guest_cid);
    if (h->len > VS_MAX_PKT)
        return nd_err_set(err, -EMSGSIZE, "packet of %u bytes (at most %u): dropped", h->len, VS_MAX_PKT);
    if (h->type != VS_TYPE_STREAM) {
        if (h->op != VS_OP_RST)
            queue_rst(v, h->dst_cid, h->dst_port, h->src_port);
        return nd_err_set(err, -EPROTONOSUPPORT, "packet of type %u (only streams): RST", h->type);
    }
    vs_conn *c = find(v, h->dst_cid, h->dst_port, h->src_port);
    if (!c) {
        if (h->op == VS_OP_REQUEST)
            return guest_request(v, h, err);
        if (h->op != VS_OP_RST)
            queue_rst(v, h->dst_cid, h->dst_port, h->src_port);
        return 0; /* a late packet of a closed connection: normal */
    }
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    switch (h->op) {
    case VS_OP_RST:
        if (c->state == S_GUEST_CONNECTING)
            vlog(v, "host port %u -> guest port %u: refused by the guest (RST); closing the host socket",
                 c->host_port, c->guest_port);
        conn_free(v, c);
        return 0;
    case VS_OP_RESPONSE:
        if (c->state != S_GUEST_CONNECTING) {
            conn_reset(v, c, 1);
            return nd_err_set(err, -EPROTO, "unexpected RESPONSE from guest port %u: RST", h->src_port);
        } else {
            char ok[32];
            int n = snprintf(ok, sizeof ok, "OK %u\n", c->host_port);
            if (send(c->fd, ok, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
                vlog(v, "host port %u -> guest port %u: the host program went away before OK", c->host_port,
                     c->guest_port);
                conn_reset(v, c, 1);
                return 0;
            }
            c->state = S_ESTABLISHED;
            c->deadline = 0;
            vlog(v, "host port %u -> guest port %u: connected", c->host_port, c->guest_port);
        }
        return 0;
    case VS_OP_REQUEST:
        conn_reset(v, c, 1);
        return nd_err_set(err, -EPROTO, "REQUEST for an open connection (guest port %u): RST", h->src_port);
    case VS_OP_CREDIT_UPDATE:
        return 0;
    case VS_OP_CREDIT_REQUEST:
        c->pend |= P_CREDIT;
        return 0;
    case VS_OP_SHUTDOWN:
        c->peer_shut |= h->flags & (VS_SHUTDOWN_RCV | VS_SHUTDOWN_SEND);
        if (c->state != S_ESTABLISHED) {
            conn_reset(v, c, 1);
            return 0;
        }
        if (c->peer_shut & VS_SHUTDOWN_RCV)
            c->stage_len = 0; /* the guest reads no more */
        if (c->kind == K_HEARTBEAT)
            c->out_len = 0;
        (void)flush_out(v, c); /* may end the connection */
        return 0;
    case VS_OP_RW:
        if (c->state != S_ESTABLISHED) {
            conn_reset(v, c, 1);
            return nd_err_set(err, -EPROTO, "data before the connection was established (guest port %u): RST",
                              h->src_port);
        }
        if (c->peer_shut & VS_SHUTDOWN_SEND) {
            conn_reset(v, c, 1);
            return nd_err_set(err, -EPROTO, "data after SHUTDOWN(SEND) from guest port %u: RST", h->src_port);
        }
        if (c->kind == K_HEARTBEAT) {
            heartbeat_data(v, c, payload, h->len);
            return 0;
        }
        if (c->out_len + h->len > VS_BUF_ALLOC) {
            conn_reset(v, c, 1);
            return nd_err_set(err, -ENOBUFS, "guest port %u sent %u bytes beyond its credit: RST", h->src_port,
                              h->len);
        }
        if (c->out_off + c->out_len + h->len > VS_BUF_ALLOC) {
            memmove(c->out, c->out + c->out_off, c->out_len);
            c->out_off = 0;
        }
        if (h->len)
            memcpy(c->out + c->out_off + c->out_len, payload, h->len);
        c->out_len += h->len;
        (void)flush_out(v, c);
        return 0;
    default:
        conn_reset(v, c, 1);
        return nd_err_set(err, -EPROTO, "unknown op %u from guest port %u: RST", h->op, h->src_port);
    }
}

/* ---- host -> guest ---- */
int vs_host_accept(vs_dev *v, int fd, nd_err *err)
{
    vs_conn *c = conn_new(v, K_UNIX, fd);
    if (!c) {
        close(fd);
        return nd_err_set(err, -ENOMEM, "host connection refused: too many connections (%u)", VS_MAX_CONNS);
    }
    c->state = S_LINE;
    c->deadline = vs_now_ms() + VS_TIMEOUT_MS;
    return 0;
}

/* Parses "CONNECT <port>" (the newline already removed; an optional trailing CR). Returns 0 or -EINVAL. */
static int parse_connect(const char *s, size_t n, uint32_t *port)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n < 9 || memcmp(s, "CONNECT ", 8) != 0 || n - 8 > 10)
        return -EINVAL;
    uint64_t p = 0;
    for (size_t i = 8; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        p = p * 10 + (uint64_t)(s[i] - '0');
    }
    if (p > 0xffffffffull)
        return -EINVAL;
    *port = (uint32_t)p;
    return 0;
}

static void read_line(vs_dev *v, vs_conn *c)
{
    ssize_t n = recv(c->fd, c->line + c->line_len, sizeof c->line - c->line_len, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_free(v, c);
        return;
    }
    c->line_len += (size_t)n;
    char *nl = memchr(c->line, '\n', c->line_len);
    if (!nl) {
        if (c->line_len == sizeof c->line) {
            vlog(v, "host connection: no CONNECT line in the first %zu bytes; closed", sizeof c->line);
            conn_free(v, c);
        }
        return;
    }
    uint32_t port;
    size_t linelen = (size_t)(nl - c->line);
    if (parse_connect(c->line, linelen, &port) < 0) {
        vlog(v, "host connection: expected \"CONNECT <port>\", got %zu bytes that are not; closed", linelen);
        conn_free(v, c);
        return;
    }
    /* bytes after the line are the first data for the guest */
    size_t extra = c->line_len - linelen - 1;
    memcpy(c->stage, nl + 1, extra);
    c->stage_off = 0;
    c->stage_len = extra;
    for (unsigned tries = 0;; tries++) {
        uint32_t hp = v->next_port++;
        if (v->next_port == 0)
            v->next_port = 1u << 30;
        if (!find(v, VS_CID_PARENT, hp, port)) {
            c->host_port = hp;
            break;
        }
        if (tries > VS_MAX_CONNS) { /* cannot happen with at most VS_MAX_CONNS connections */
            conn_free(v, c);
            return;
        }
    }
    c->host_cid = VS_CID_PARENT;
    c->guest_port = port;
    c->state = S_GUEST_CONNECTING;
    c->pend |= P_REQUEST;
    c->deadline = vs_now_ms() + VS_TIMEOUT_MS;
}

static int can_read(const vs_conn *c)
{
    return c->state == S_ESTABLISHED && c->kind == K_UNIX && c->fd >= 0 && !c->host_eof &&
           !(c->peer_shut & VS_SHUTDOWN_RCV) && c->stage_len < VS_STAGE && peer_credit(c) > c->stage_len;
}

static void read_host(vs_dev *v, vs_conn *c)
{
    if (c->stage_off && c->stage_off + c->stage_len == VS_STAGE) {
        memmove(c->stage, c->stage + c->stage_off, c->stage_len);
        c->stage_off = 0;
    }
    size_t room = VS_STAGE - c->stage_off - c->stage_len, credit = peer_credit(c) - c->stage_len;
    if (room > credit)
        room = credit;
    ssize_t n = recv(c->fd, c->stage + c->stage_off + c->stage_len, room, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        vlog(v, "host port %u -> guest port %u: read: %s; resetting", c->host_port, c->guest_port, strerror(errno));
        conn_reset(v, c, 1);
        return;
    }
    if (n == 0) {
        c->host_eof = 1;
        return;
    }
    c->stage_len += (size_t)n;
}

unsigned vs_pollfds(vs_dev *v, struct pollfd *pfd, vs_conn **who, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; i < v->nconns && n < max; i++) {
        vs_conn *c = v->conns[i];
        if (c->fd < 0)
            continue;
        short ev = 0;
        if (c->state == S_LINE)
            ev = POLLIN;
        else if (c->state == S_HOST_CONNECTING)
            ev = POLLOUT;
        else if (c->state == S_ESTABLISHED) {
            if (can_read(c))
                ev |= POLLIN;
            if (c->out_len)
                ev |= POLLOUT;
            /* nothing wanted (no credit, or end of stream seen): not polled at all, since poll reports POLLHUP
             * of a closed peer whatever the events, and the loop would spin */
            if (!ev)
                continue;
        }
        pfd[n] = (struct pollfd){.fd = c->fd, .events = ev};
        who[n++] = c;
    }
    return n;
}

static int alive(const vs_dev *v, const vs_conn *c)
{
    for (unsigned i = 0; i < v->nconns; i++)
        if (v->conns[i] == c)
            return 1;
    return 0;
}

void vs_on_fd(vs_dev *v, vs_conn *c, short revents)
{
    if (!alive(v, c) || c->fd < 0 || !revents)
        return;
    switch (c->state) {
    case S_LINE:
        read_line(v, c);
        return;
    case S_HOST_CONNECTING: {
        int e = 0;
        socklen_t l = sizeof e;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
            e = errno;
        if (e) {
            vlog(v, "guest port %u -> %s_%u: connect: %s; RST", c->guest_port, v->prefix, c->host_port, strerror(e));
            conn_reset(v, c, 1);
            return;
        }
        c->state = S_ESTABLISHED;
        c->deadline = 0;
        c->pend |= P_RESPONSE;
        return;
    }
    case S_GUEST_CONNECTING:
        if (revents & (POLLHUP | POLLERR)) {
            vlog(v, "host connection to guest port %u: the host program went away before the guest answered",
                 c->guest_port);
            conn_reset(v, c, 1);
        }
        return;
    default:
        break;
    }
    if (revents & POLLOUT) {
        if (flush_out(v, c) < 0)
            return;
    }
    if (c->fd >= 0 && (revents & (POLLIN | POLLHUP | POLLERR)) && can_read(c))
        read_host(v, c);
    else if (c->fd >= 0 && (revents & POLLERR)) {
        conn_reset(v, c, 1);
    }
}

void vs_flush(vs_dev *v)
{
    for (unsigned i = v->nconns; i-- > 0;)
        if (i < v->nconns && v->conns[i]->state == S_ESTABLISHED && v->conns[i]->out_len)
            (void)flush_out(v, v->conns[i]);
}

int vs_timers(vs_dev *v, int64_t now)
{
    int64_t next = -1;
    for (unsigned i = 0; i < v->nconns;) {
        vs_conn *c = v->conns[i];
        if (c->deadline && now >= c->deadline) {
            vlog(v, "guest port %u / host port %u: no answer in %d ms; closed", c->guest_port, c->host_port,
                 VS_TIMEOUT_MS);
            conn_reset(v, c, c->state != S_LINE);
            continue; /* conns[i] is now another connection */
        }
        if (c->deadline && (next < 0 || c->deadline - now < next))
            next = c->deadline - now;
        i++;
    }
    return next > 0x7fffffff ? 0x7fffffff : (int)next;
}

int vs_rx_pending(const vs_dev *v)
{
    if (v->nrst)
        return 1;
    for (unsigned i = 0; i < v->nconns; i++) {
        const vs_conn *c = v->conns[i];
        if (c->pend & (P_REQUEST | P_RESPONSE | P_CREDIT | P_RST))
            return 1;
        if (c->state == S_ESTABLISHED && c->stage_len && peer_credit(c))
            return 1;
        if (c->state == S_ESTABLISHED && c->host_eof && !c->stage_len && !c->shut_sent)
            return 1;
    }
    return 0;
}

static size_t emit(vs_dev *v, uint8_t *buf, uint64_t host_cid, uint32_t host_port, uint32_t guest_port, uint16_t op,
                   uint32_t flags, uint32_t len, const vs_conn *c)
{
    vs_hdr h = {.src_cid = host_cid, .dst_cid = v->guest_cid, .src_port = host_port, .dst_port = guest_port,
                .len = len, .type = VS_TYPE_STREAM, .op = op, .flags = flags,
                .buf_alloc = c ? VS_BUF_ALLOC : 0, .fwd_cnt = c ? c->fwd_cnt : 0};
    vs_hdr_encode(&h, buf);
    v->pkts_out++;
    return VS_HDR_SIZE + len;
}

/* One packet of connection c, or 0 when it has nothing for the guest now. */
static size_t conn_rx(vs_dev *v, vs_conn *c, uint8_t *buf, size_t room)
{
    if (c->pend & P_RST) {
        size_t n = emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_RST, 0, 0, NULL);
        conn_free(v, c);
        return n;
    }
    if (c->pend & P_REQUEST) {
        c->pend &= ~(unsigned)P_REQUEST;
        c->fwd_cnt_sent = c->fwd_cnt;
        return emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_REQUEST, 0, 0, c);
    }
    if (c->state != S_ESTABLISHED)
        return 0;
    if (c->pend & P_RESPONSE) {
        c->pend &= ~(unsigned)P_RESPONSE;
        c->fwd_cnt_sent = c->fwd_cnt;
        return emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_RESPONSE, 0, 0, c);
    }
    uint32_t credit = peer_credit(c);
    if (c->stage_len && credit && room > VS_HDR_SIZE) {
        size_t n = c->stage_len;
        if (n > room - VS_HDR_SIZE)
            n = room - VS_HDR_SIZE;
        if (n > credit)
            n = credit;
        memcpy(buf + VS_HDR_SIZE, c->stage + c->stage_off, n);
        c->stage_off += n;
        c->stage_len -= n;
        if (!c->stage_len)
            c->stage_off = 0;
        c->tx_cnt += (uint32_t)n;
        c->pend &= ~(unsigned)P_CREDIT;
        c->fwd_cnt_sent = c->fwd_cnt;
        return emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_RW, 0, (uint32_t)n, c);
    }
    if (c->pend & P_CREDIT) {
        c->pend &= ~(unsigned)P_CREDIT;
        c->fwd_cnt_sent = c->fwd_cnt;
        return emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_CREDIT_UPDATE, 0, 0, c);
    }
    if (c->host_eof && !c->stage_len && !c->shut_sent) {
        c->shut_sent = 1;
        c->fwd_cnt_sent = c->fwd_cnt;
        uint32_t fl = VS_SHUTDOWN_SEND;
        if (c->kind == K_HEARTBEAT)
            fl |= VS_SHUTDOWN_RCV; /* nitro-cli closes the whole stream */
        size_t n = emit(v, buf, c->host_cid, c->host_port, c->guest_port, VS_OP_SHUTDOWN, fl, 0, c);
        check_finished(v, c);
        return n;
    }
    return 0;
}

size_t vs_rx(vs_dev *v, uint8_t *buf, size_t room)
{
    if (room < VS_HDR_SIZE)
        return 0;
    if (v->nrst) {
        vs_rst r = v->rst[0];
        memmove(v->rst, v->rst + 1, (v->nrst - 1) * sizeof v->rst[0]);
        v->nrst--;
        return emit(v, buf, r.host_cid, r.host_port, r.guest_port, VS_OP_RST, 0, 0, NULL);
    }
    for (unsigned k = 0; k < v->nconns; k++) {
        unsigned i = (v->rr + k) % v->nconns;
        vs_conn *c = v->conns[i];
        size_t n = conn_rx(v, c, buf, room);
        if (n) {
            v->rr = i + 1;
            return n;
        }
    }
    return 0;
}

/* ---- the rings ---- */
#define TX_BATCH 256 /* packets taken per call, so one busy guest cannot starve the rest of the loop */

int vs_service_tx(vs_dev *v, vu_vq *q, const vu_mem *mem, uint8_t *pkt)
{
    vq_elem e;
    nd_err err;
    int done = 0, rc = 0;
    for (; done < TX_BATCH; done++) {
        nd_err_clear(&err);
        rc = vq_pop(q, mem, &e, &err);
        if (rc < 0)
            vlog(v, "tx %s", err.msg);
        if (rc <= 0)
            break;
        vs_hdr h;
        if (e.in_len < VS_HDR_SIZE) {
            vlog(v, "tx: a %zu-byte buffer holds no packet header; dropped", e.in_len);
        } else {
            iov_read(e.in, e.nin, 0, pkt, VS_HDR_SIZE);
            vs_hdr_decode(pkt, &h);
            if (h.len > VS_MAX_PKT || h.len > e.in_len - VS_HDR_SIZE) {
                vlog(v, "tx: packet says %u payload bytes, its buffer holds %zu; dropped", h.len,
                   e.in_len - VS_HDR_SIZE);
            } else {
                iov_read(e.in, e.nin, VS_HDR_SIZE, pkt + VS_HDR_SIZE, h.len);
                if (vs_tx(v, &h, pkt + VS_HDR_SIZE, &err) < 0)
                    vlog(v, "%s", err.msg);
            }
        }
        vq_push(q, e.head, 0);
    }
    if (done)
        vq_notify(q);
    return done == TX_BATCH;
}

void vs_service_rx(vs_dev *v, vu_vq *q, const vu_mem *mem, uint8_t *pkt)
{
    vq_elem e;
    nd_err err;
    int done = 0;
    while (vs_rx_pending(v)) {
        nd_err_clear(&err);
        int rc = vq_pop(q, mem, &e, &err);
        if (rc < 0)
            vlog(v, "rx %s", err.msg);
        if (rc <= 0)
            break;
        size_t room = e.out_len < (size_t)(VS_HDR_SIZE + VS_MAX_PKT) ? e.out_len : (size_t)(VS_HDR_SIZE + VS_MAX_PKT);
        size_t n = vs_rx(v, pkt, room);
        if (!n) {
            if (room <= VS_HDR_SIZE) { /* no room for data either: the ring would be stuck on it */
                vlog(v, "rx: a %zu-byte buffer cannot hold a data packet; returned empty", e.out_len);
                vq_push(q, e.head, 0);
                done++;
                continue;
            }
            vq_unpop(q);
            break;
        }
        iov_write(e.out, e.nout, 0, pkt, n);
        vq_push(q, e.head, (uint32_t)n);
        done++;
    }
    if (done)
        vq_notify(q);
}
