/*
 * pingpong.c — vsock-pingpong, the test application of the nitrodiag test enclave (static, started by /init).
 *
 * Modes (from --mode, else VSOCK_PINGPONG_MODE, else vsock):
 *   basic  prints that it is alive and sleeps forever: proves the image's command runs at all;
 *   vsock  listens on AF_VSOCK CID_ANY port 5000 and answers "ping" with "pong" (anything else: "unknown"), one
 *          short exchange per connection, many clients at once; a bad client (silent, reset, garbage) only ever
 *          costs its own connection, never the server;
 *   kms    the enclave side of the KMS flow (enclave/pingpong_kms.c, see pingpong_kms.h), when built in.
 * The listen address can be overridden (--listen ADDR or VSOCK_PINGPONG_LISTEN, any nd_vsock address such as
 * unix:/tmp/x), so the same program is tested over unix sockets on machines without vsock.
 * Everything goes to stdout, one `[enclave] …` line per event, flushed at once (stdout is the enclave console).
 */
#include "nd_vsock.h"
#ifdef ND_HAVE_PINGPONG_KMS
#include "pingpong_kms.h"
#endif

#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define CLIENT_TIMEOUT_MS 10000
#define READ_MAX 16

static void say(const char *fmt, ...) ND_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[enclave] ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vsock-pingpong [--mode basic|vsock|kms] [--listen ADDR] [--connect ADDR]\n"
               "  mode defaults to $VSOCK_PINGPONG_MODE, then vsock; ADDR: vsock:CID:PORT | unix:PATH | tcp:HOST:PORT\n"
               "  --listen defaults to $VSOCK_PINGPONG_LISTEN, then vsock:any:5000\n");
}

/* Quotes up to n received bytes for the log: printable ASCII as is, the rest as \xNN. */
static void quote(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, outsz - o, "\\%c", c);
        else if (isprint(c))
            out[o++] = (char)c;
        else if (c == '\n')
            o += (size_t)snprintf(out + o, outsz - o, "\\n");
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
    }
    out[o] = '\0';
}

static void basic_mode(void)
{
    say("basic mode: alive; sleeping forever");
    for (;;)
        pause();
}

typedef struct client {
    int fd;
    double deadline;
    unsigned long id;
} client;

static void drop(client *c)
{
    close(c->fd);
    c->fd = -1;
}

/* One exchange: a single read of up to 16 bytes (as the original server did), then the answer, then close. */
static void serve(client *c)
{
    char buf[READ_MAX];
    nd_err err;
    ssize_t r = nd_vsock_read(c->fd, buf, sizeof buf, 0, NULL, &err);
    if (r == -ETIMEDOUT)
        return; /* spurious wake-up: nothing to read yet */
    if (r < 0) {
        say("client %lu: read failed: %s; dropping it", c->id, err.msg);
        drop(c);
        return;
    }
    if (r == 0) {
        say("client %lu closed the connection without sending anything", c->id);
        drop(c);
        return;
    }
    char q[READ_MAX * 4 + 8];
    quote(buf, (size_t)r, q, sizeof q);
    say("received: \"%s\"", q);
    size_t n = (size_t)r;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--; /* "ping\n" from a person typing into socat counts as ping */
    const char *answer = (n == 4 && memcmp(buf, "ping", 4) == 0) ? "pong" : "unknown";
    if (nd_vsock_write_all(c->fd, answer, strlen(answer), 1000, NULL, &err) < 0)
        say("client %lu: could not answer: %s", c->id, err.msg);
    else
        say("sent: \"%s\"", answer);
    drop(c);
}

static int vsock_mode(const char *listen_addr)
{
    nd_sockaddr a;
    nd_err err;
    if (nd_vsock_parse(listen_addr, &a, &err) < 0) {
        say("error: %s", err.msg);
        return 2;
    }
    int lfd = -1;
    /* The vsock transport may come up a moment after the app starts (modules still loading): retry a few times. */
    for (int attempt = 0; attempt < 50; attempt++) {
        lfd = nd_vsock_listen(&a, 64, &err);
        if (lfd >= 0 || (lfd != -ENODEV && lfd != -EADDRNOTAVAIL))
            break;
        usleep(100 * 1000);
    }
    if (lfd < 0) {
        say("error: %s", err.msg);
        return 1;
    }
    say("vsock mode: listening on %s", a.text);

    client clients[MAX_CLIENTS];
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i].fd = -1;
    unsigned long next_id = 1;
    for (;;) {
        struct pollfd pf[MAX_CLIENTS + 1];
        int map[MAX_CLIENTS + 1];
        int np = 0;
        int nclients = 0;
        double now = nd_vsock_now_ms();
        int wait_ms = -1;
        for (int i = 0; i < MAX_CLIENTS; i++) {
            if (clients[i].fd < 0)
                continue;
            nclients++;
            if (clients[i].deadline <= now) {
                say("client %lu sent nothing in %d s; closing it", clients[i].id, CLIENT_TIMEOUT_MS / 1000);
                drop(&clients[i]);
                nclients--;
                continue;
            }
            int left = (int)(clients[i].deadline - now) + 1;
            if (wait_ms < 0 || left < wait_ms)
                wait_ms = left;
            pf[np].fd = clients[i].fd;
            pf[np].events = POLLIN;
            map[np++] = i;
        }
        if (nclients < MAX_CLIENTS) { /* when full, stop accepting until a slot frees: the backlog holds the rest */
            pf[np].fd = lfd;
            pf[np].events = POLLIN;
            map[np++] = -1;
        }
        int rc = poll(pf, (nfds_t)np, wait_ms);
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            say("error: poll: %s", strerror(errno));
            usleep(100 * 1000);
            continue;
        }
        for (int k = 0; k < np; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] >= 0) {
                serve(&clients[map[k]]);
                continue;
            }
            for (;;) { /* accept everything waiting, up to the free slots */
                int slot = -1;
                for (int i = 0; i < MAX_CLIENTS; i++)
                    if (clients[i].fd < 0) {
                        slot = i;
                        break;
                    }
                if (slot < 0)
                    break;
                int fd = nd_vsock_accept(lfd, 0, &err);
                if (fd == -ETIMEDOUT)
                    break;
                if (fd < 0) {
                    say("error: %s; still serving", err.msg);
                    if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM || fd == -ENOBUFS)
                        usleep(100 * 1000);
                    break;
                }
                clients[slot].fd = fd;
                clients[slot].id = next_id++;
                clients[slot].deadline = nd_vsock_now_ms() + CLIENT_TIMEOUT_MS;
            }
        }
    }
}

int main(int argc, char **argv)
{
    const char *mode = getenv("VSOCK_PINGPONG_MODE");
    const char *listen_addr = getenv("VSOCK_PINGPONG_LISTEN");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) {
            mode = argv[++i];
        } else if (strncmp(argv[i], "--mode=", 7) == 0) {
            mode = argv[i] + 7;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_addr = argv[++i];
        } else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            i++; /* for kms mode, which reads argv itself */
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "[enclave] error: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!mode || !*mode)
        mode = "vsock";
    if (!listen_addr || !*listen_addr)
        listen_addr = "vsock:any:5000";
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    say("mode=%s", mode);
    if (strcmp(mode, "basic") == 0) {
        basic_mode();
    } else if (strcmp(mode, "vsock") == 0) {
        return vsock_mode(listen_addr);
    } else if (strcmp(mode, "kms") == 0) {
#ifdef ND_HAVE_PINGPONG_KMS
        return pingpong_kms_main(argc, argv);
#else
        say("error: kms mode is not built into this vsock-pingpong (enclave/pingpong_kms.c was missing at build time)");
        return 2;
#endif
    }
    say("error: unknown mode \"%s\" (expected basic, vsock or kms)", mode);
    return 2;
}
