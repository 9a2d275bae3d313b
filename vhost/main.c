/*
 * main.c — nd-vhost-vsock: the vhost-user-vsock backend QEMU's nitro-enclave machine needs on its vsock chardev
 * (see vhost.h and vhost/README.md). Options, one poll loop, signals and clean-up: it listens on the vhost-user socket
 * and on the host-initiated socket PREFIX, serves one QEMU at a time, moves packets between the guest's virtqueues
 * and the connections of vsock.c, and on SIGTERM/SIGINT (or, with --once, when QEMU disconnects) closes everything
 * and removes the two socket files it created.
 */
#include "vhost.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_POLL (8 + VS_MAX_CONNS)

typedef struct app {
    const char *sock_path, *prefix;
    int once, trace;    /* trace: ND_VHOST_VSOCK_TRACE=1 logs every vhost-user message */
    FILE *log;
    int listen_fd, prefix_fd, client_fd, sig_fd;
    int created_sock, created_prefix;
    vu_dev dev;
    vs_dev vs;
    unsigned seen_stops;
    /* the message being read from QEMU */
    vu_msg msg;
    uint8_t hdr[VU_HDR_SIZE];
    size_t have;        /* bytes of header + payload read so far */
    int fds_lost;       /* more fds came with the current message than it may carry */
    uint8_t reply[VU_HDR_SIZE + VU_MAX_PAYLOAD];
    uint8_t pkt[VS_HDR_SIZE + VS_MAX_PKT];
} app;

static void lg(app *a, const char *fmt, ...) ND_PRINTF(2, 3);
static void lg(app *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vs_logv(a->log, fmt, ap);
    va_end(ap);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nd-vhost-vsock --socket PATH --uds-path PREFIX [--guest-cid N] [--heartbeat|--no-heartbeat]\n"
            "                      [--log FILE] [--once]\n"
            "  The vhost-user-vsock backend for QEMU (-M nitro-enclave,vsock=CHARDEV or -device vhost-user-vsock-*).\n"
            "  --socket PATH      the vhost-user unix socket QEMU connects to (created here, removed at exit)\n"
            "  --uds-path PREFIX  guest connections to port P go to the unix socket PREFIX_P; host programs connect\n"
            "                     to PREFIX and write \"CONNECT <port>\\n\" (answer \"OK <hostport>\\n\")\n"
            "  --guest-cid N      the guest's CID (default 16)\n"
            "  --heartbeat        answer the enclave boot heartbeat (CID 3 port 9000, 0xB7) here (default)\n"
            "  --no-heartbeat     send CID 3 port 9000 to PREFIX_9000 like any other port\n"
            "  --log FILE         write events and errors there (default stderr)\n"
            "  --once             exit when QEMU disconnects\n");
}

/* Creates a listening unix socket at path; a stale socket file is replaced, any other file is an error. */
static int listen_unix(const char *path, int *created, nd_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return nd_err_set(err, -ENAMETOOLONG, "%s: path too long for a unix socket", path);
    strcpy(sa.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return nd_err_set(err, -EEXIST, "%s exists and is not a socket; not replacing it", path);
        /* a socket someone still listens on is not stale */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(probe);
            return nd_err_set(err, -EADDRINUSE, "%s: another program is listening there", path);
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return nd_err_set(err, -errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        return nd_err_set(err, -e, "%s: %s", path, strerror(e));
    }
    *created = 1;
    return fd;
}

static void client_close(app *a)
{
    if (a->client_fd >= 0)
        close(a->client_fd);
    a->client_fd = -1;
    for (int i = 0; i < a->msg.nfds; i++)
        close(a->msg.fds[i]);
    a->msg.nfds = 0;
    a->have = 0;
    a->fds_lost = 0;
    vs_reset(&a->vs);
    vu_dev_reset(&a->dev);
    a->seen_stops = a->dev.stops;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads what is available of the current message; handles it when complete. Returns 0, or -1 when the connection
 * to QEMU is over (closed, or a message we cannot recover from). */
static int client_read(app *a)
{
    vu_msg *m = &a->msg;
    size_t want = a->have < VU_HDR_SIZE ? VU_HDR_SIZE - a->have : VU_HDR_SIZE + m->size - a->have;
    uint8_t *dst = a->have < VU_HDR_SIZE ? a->hdr + a->have : m->payload + (a->have - VU_HDR_SIZE);
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
    } cm;
    struct iovec iov = {dst, want};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf};
    ssize_t n = recvmsg(a->client_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (m->nfds < (int)VU_MAX_FDS)
                m->fds[m->nfds++] = fd;
            else {
                close(fd);
                a->fds_lost = 1;
            }
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        a->fds_lost = 1;
    if (n <= 0) {
        if (n < 0)
            lg(a, "vhost-user: read: %s", strerror(errno));
        return -1;
    }
    a->have += (size_t)n;
    nd_err err;
    nd_err_clear(&err);
    if (a->have == VU_HDR_SIZE) {
        if (vu_hdr_check(a->hdr, &m->request, &m->flags, &m->size, &err) < 0) {
            lg(a, "%s; closing the connection", err.msg);
            return -1;
        }
        if (m->size)
            return 0;
    }
    if (a->have < VU_HDR_SIZE || a->have < VU_HDR_SIZE + m->size)
        return 0;
    /* a complete message */
    a->have = 0;
    if (a->fds_lost) {
        lg(a, "vhost-user: %s came with more than %u fds; closing the connection", vu_request_name(m->request),
           VU_MAX_FDS);
        return -1;
    }
    if (a->trace)
        lg(a, "vhost-user: %s (flags 0x%x, %u bytes, %d fd(s))", vu_request_name(m->request), m->flags, m->size,
           m->nfds);
    size_t err_len = 0;
    int rc = vu_dev_handle(&a->dev, m, a->reply, &err_len, &err);
    if (rc < 0) {
        lg(a, "%s", err.msg);
        if (err_len)
            return send_all(a->client_fd, a->reply, err_len);
        /* QEMU waits for the answer to a GET_*: without one it would hang, so the connection ends */
        if (vu_request_has_reply(m->request)) {
            lg(a, "vhost-user: %s cannot be answered; closing the connection", vu_request_name(m->request));
            return -1;
        }
        return 0;
    }
    if (rc > 0 && send_all(a->client_fd, a->reply, (size_t)rc) < 0) {
        lg(a, "vhost-user: cannot send the reply to %s: %s", vu_request_name(m->request), strerror(errno));
        return -1;
    }
    return 0;
}

static void drain_eventfd(int fd)
{
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof v);
    (void)n;
}

static void check_stops(app *a)
{
    if (a->dev.stops != a->seen_stops) {
        a->seen_stops = a->dev.stops;
        if (a->vs.nconns)
            lg(a, "the guest's device stopped: closing %u connection(s)", a->vs.nconns);
        vs_reset(&a->vs);
    }
}

static int run(app *a)
{
    struct pollfd pfd[MAX_POLL];
    vs_conn *who[MAX_POLL];
    int more = 0;
    for (;;) {
        int64_t now = vs_now_ms();
        int timeout = vs_timers(&a->vs, now);
        if (more)
            timeout = 0;
        unsigned n = 0;
        pfd[n++] = (struct pollfd){.fd = a->sig_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = a->client_fd < 0 ? a->listen_fd : a->client_fd, .events = POLLIN};
        pfd[n++] = (struct pollfd){.fd = a->prefix_fd, .events = POLLIN};
        unsigned kick0 = n;
        for (unsigned i = 0; i < VU_NQUEUES; i++)
            pfd[n++] = (struct pollfd){.fd = a->dev.vq[i].kick_fd, .events = POLLIN}; /* -1 is ignored by poll */
        unsigned conn0 = n;
        n += vs_pollfds(&a->vs, pfd + n, who + n, MAX_POLL - n);
        int r = poll(pfd, n, timeout);
        if (r < 0 && errno != EINTR) {
            lg(a, "poll: %s", strerror(errno));
            return 1;
        }
        if (r < 0)
            continue;
        if (pfd[0].revents) {
            struct signalfd_siginfo si;
            if (read(a->sig_fd, &si, sizeof si) == (ssize_t)sizeof si)
                lg(a, "signal %u: exiting", si.ssi_signo);
            return 0;
        }
        if (pfd[1].revents) {
            if (a->client_fd < 0) {
                int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    a->client_fd = fd;
                    lg(a, "QEMU connected on %s", a->sock_path);
                }
            } else {
                /* one message at a time; poll again for the next */
                if (client_read(a) < 0) {
                    /* what the guest queued before QEMU went (its memory stays mapped here) is still delivered:
                     * an enclave that writes and powers off at once loses nothing */
                    while (vs_service_tx(&a->vs, &a->dev.vq[VQ_TX], &a->dev.mem, a->pkt))
                        ;
                    vs_flush(&a->vs);
                    lg(a, "QEMU disconnected (%u heartbeat(s) answered, %llu packets in, %llu out)",
                       a->vs.heartbeats, a->vs.pkts_in, a->vs.pkts_out);
                    client_close(a);
                    if (a->once)
                        return 0;
                }
                check_stops(a);
            }
        }
        if (pfd[2].revents) {
            int fd = accept4(a->prefix_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            nd_err err;
            if (fd >= 0 && vs_host_accept(&a->vs, fd, &err) < 0)
                lg(a, "%s", err.msg);
        }
        for (unsigned i = 0; i < VU_NQUEUES; i++)
            if (pfd[kick0 + i].fd >= 0 && pfd[kick0 + i].revents)
                drain_eventfd(pfd[kick0 + i].fd);
        for (unsigned i = conn0; i < n; i++)
            if (pfd[i].revents)
                vs_on_fd(&a->vs, who[i], pfd[i].revents);
        if (a->client_fd >= 0) {
            more = vs_service_tx(&a->vs, &a->dev.vq[VQ_TX], &a->dev.mem, a->pkt);
            vs_service_rx(&a->vs, &a->dev.vq[VQ_RX], &a->dev.mem, a->pkt);
        } else {
            more = 0;
        }
    }
}

static void cleanup(app *a)
{
    vs_reset(&a->vs);
    if (a->client_fd >= 0)
        close(a->client_fd);
    vu_dev_reset(&a->dev);
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    if (a->prefix_fd >= 0)
        close(a->prefix_fd);
    if (a->created_sock)
        unlink(a->sock_path);
    if (a->created_prefix)
        unlink(a->prefix);
    if (a->sig_fd >= 0)
        close(a->sig_fd);
}

int main(int argc, char **argv)
{
    static app A;
    app *a = &A;
    a->log = stderr;
    a->listen_fd = a->prefix_fd = a->client_fd = a->sig_fd = -1;
    a->trace = getenv("ND_VHOST_VSOCK_TRACE") && strcmp(getenv("ND_VHOST_VSOCK_TRACE"), "1") == 0;
    uint64_t cid = 16;
    int heartbeat = 1;
    const char *log_path = NULL;
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},   {"uds-path", required_argument, NULL, 'u'},
        {"guest-cid", required_argument, NULL, 'c'}, {"heartbeat", no_argument, NULL, 'H'},
        {"no-heartbeat", no_argument, NULL, 'N'},   {"log", required_argument, NULL, 'l'},
        {"once", no_argument, NULL, 'o'},           {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    int o;
    opterr = 0;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 's': a->sock_path = optarg; break;
        case 'u': a->prefix = optarg; break;
        case 'c': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            /* 0, 1, 2 are reserved, 3 is the parent; CIDs are 32-bit (VMADDR_CID_ANY = 2^32-1 is not one) */
            if (errno || *end || !*optarg || optarg[0] == '-' || v < 4 || v >= 0xffffffffull) {
                fprintf(stderr, "nd-vhost-vsock: --guest-cid %s: expected a number from 4 to 4294967294\n", optarg);
                return 2;
            }
            cid = v;
            break;
        }
        case 'H': heartbeat = 1; break;
        case 'N': heartbeat = 0; break;
        case 'l': log_path = optarg; break;
        case 'o': a->once = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("nd-vhost-vsock %s\n", ND_VERSION); return 0;
        default:
            fprintf(stderr, "nd-vhost-vsock: unknown or incomplete option %s (see --help)\n", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "nd-vhost-vsock: unexpected argument %s (see --help)\n", argv[optind]);
        return 2;
    }
    if (!a->sock_path || !*a->sock_path || !a->prefix || !*a->prefix) {
        fprintf(stderr, "nd-vhost-vsock: --socket PATH and --uds-path PREFIX are required (see --help)\n");
        return 2;
    }
    if (strlen(a->prefix) + 12 > sizeof ((struct sockaddr_un *)0)->sun_path) {
        fprintf(stderr, "nd-vhost-vsock: --uds-path %s: too long (PREFIX_PORT must fit in 107 bytes)\n", a->prefix);
        return 2;
    }
    if (log_path) {
        a->log = fopen(log_path, "ae");
        if (!a->log) {
            fprintf(stderr, "nd-vhost-vsock: --log %s: %s\n", log_path, strerror(errno));
            return 1;
        }
    }
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGHUP);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    signal(SIGPIPE, SIG_IGN);
    a->sig_fd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
    vu_dev_init(&a->dev, cid);
    vs_init(&a->vs, cid, a->prefix, heartbeat, a->log);
    nd_err err;
    int rc = 1;
    if (a->sig_fd < 0) {
        lg(a, "signalfd: %s", strerror(errno));
        goto out;
    }
    if ((a->listen_fd = listen_unix(a->sock_path, &a->created_sock, &err)) < 0 ||
        (a->prefix_fd = listen_unix(a->prefix, &a->created_prefix, &err)) < 0) {
        lg(a, "%s", err.msg);
        goto out;
    }
    lg(a, "listening on %s (vhost-user) and %s (CONNECT <port>); guest CID %llu, heartbeat %s", a->sock_path,
       a->prefix, (unsigned long long)cid, heartbeat ? "on" : "off");
    rc = run(a);
out:
    cleanup(a);
    if (a->log != stderr)
        fclose(a->log);
    return rc;
}
