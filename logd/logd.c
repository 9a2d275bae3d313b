/*
 * logd.c — nitrodiag-logd: the host side of the enclave log channel. Enclaves running nitrodiag-init with
 * `--log vsock:3:PORT` connect to this daemon on the parent; it decodes their frames (core/frame.c's decoder, the
 * records of nd_logchan.h) and writes one line per record, with the enclave's id, to a file per enclave in --dir
 * and/or to stdout (which the systemd unit sends to the journal, like the KMS proxy's lines).
 *
 *   2026-12-06T11:30:00.123Z enclave=i-0abc-enc18f0 cid=16 seq=12 stderr: panic: listen tcp 127.0.0.1:8080: ...
 *
 * The enclave id comes from `nitro-cli describe-enclaves` (EnclaveCID -> EnclaveID), else `cid-N`; --enclave-id
 * forces one. A gap in the record numbers is written as a line saying how many lines the enclave dropped. Files are
 * bounded (--max-bytes, one rotated generation), texts are printable-escaped, at most 64 enclaves at once; a
 * connection that sends a bad frame is closed and said so. SIGTERM/SIGINT end it cleanly.
 */
#include "nd_frame.h"
#include "nd_logchan.h"
#include "nd_vsock.h"

#include <fcntl.h>
#include <jansson.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64

typedef struct conn {
    int fd;
    uint32_t cid;              /* peer CID (vsock), or UINT32_MAX */
    char id[96];               /* enclave id or cid-N */
    char path[600];            /* its file in --dir, "" without --dir */
    FILE *file;
    nd_frame_decoder dec;
    uint32_t last_seq;
    int hello;
    unsigned long long records, lost;
} conn;

typedef struct logd {
    const char *dir;
    int to_stdout;
    const char *forced_id;
    const char *nitro_cli;
    long long max_bytes;
    conn conns[MAX_CONNS];
} logd;

static volatile sig_atomic_t stop_sig;
static void on_stop(int sig)
{
    stop_sig = sig;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nitrodiag-logd [--listen ADDR] [--dir DIR] [--stdout] [--max-bytes N] [--enclave-id ID]\n"
               "\n"
               "Receives the log channel of enclaves that run nitrodiag-init with --log vsock:3:PORT.\n"
               "  --listen ADDR     vsock:any:PORT (default vsock:any:9100), or unix:PATH / tcp:127.0.0.1:PORT\n"
               "  --dir DIR         one file per enclave, DIR/<enclave-id>.log (default /var/log/nitrodiag/enclaves\n"
               "                    unless --stdout is given alone)\n"
               "  --stdout          also write every line to stdout (the systemd unit sends it to the journal)\n"
               "  --max-bytes N     rotate a file to .1 beyond N bytes (default 16777216)\n"
               "  --enclave-id ID   name every connection ID instead of asking nitro-cli describe-enclaves\n"
               "  --nitro-cli PATH  the nitro-cli to ask (default nitro-cli on PATH)\n"
               "  --version         show the version\n"
               "SIGTERM or SIGINT: close the files and exit 0.\n");
}

static void stamp(uint64_t ms, char *buf, size_t n)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03uZ", (unsigned)(ms % 1000));
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Writes one line for connection c (the text escaped to printable bytes). */
static void emit(logd *L, conn *c, uint64_t ms, const char *what, const char *text, size_t n)
{
    char ts[40], esc[4 * ND_LOG_MAX_TEXT + 1];
    stamp(ms, ts, sizeof ts);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\t' || (ch >= 0x20 && ch != 0x7f) ) {
            esc[k++] = (char)ch;
        } else {
            snprintf(esc + k, 5, "\\x%02x", ch);
            k += 4;
        }
    }
    esc[k] = '\0';
    char cidtxt[24] = "";
    if (c->cid != UINT32_MAX)
        snprintf(cidtxt, sizeof cidtxt, " cid=%u", c->cid);
    if (c->file) {
        fprintf(c->file, "%s enclave=%s%s %s: %s\n", ts, c->id, cidtxt, what, esc);
        fflush(c->file);
        long pos = ftell(c->file);
        if (L->max_bytes > 0 && pos > L->max_bytes) {
            char old[620];
            snprintf(old, sizeof old, "%s.1", c->path);
            fclose(c->file);
            rename(c->path, old);
            c->file = fopen(c->path, "a");
        }
    }
    if (L->to_stdout) {
        printf("%s enclave=%s%s %s: %s\n", ts, c->id, cidtxt, what, esc);
        fflush(stdout);
    }
}

static void note(logd *L, conn *c, const char *fmt, ...) ND_PRINTF(3, 4);
static void note(logd *L, conn *c, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(L, c, now_ms(), "logd", msg, strlen(msg));
}

/* The enclave id of `cid` from `nitro-cli describe-enclaves` (at most 5 s), or "" . */
static void lookup_enclave_id(const logd *L, uint32_t cid, char *out, size_t n)
{
    out[0] = '\0';
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(p[1], STDOUT_FILENO);
        if (devnull >= 0)
            dup2(devnull, STDERR_FILENO);
        execlp(L->nitro_cli, L->nitro_cli, "describe-enclaves", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return;
    }
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap + 1);
    double until = nd_vsock_now_ms() + 5000;
    while (buf && len < cap) {
        double left = until - nd_vsock_now_ms();
        if (left <= 0 || poll(&(struct pollfd){p[0], POLLIN, 0}, 1, (int)left) <= 0)
            break;
        ssize_t r = read(p[0], buf + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(p[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    if (!buf)
        return;
    buf[len] = '\0';
    json_error_t je;
    json_t *arr = json_loadb(buf, len, 0, &je);
    free(buf);
    size_t i;
    json_t *e;
    if (json_is_array(arr))
        json_array_foreach(arr, i, e) {
            json_t *c = json_object_get(e, "EnclaveCID"), *id = json_object_get(e, "EnclaveID");
            if (json_is_integer(c) && (uint32_t)json_integer_value(c) == cid && json_is_string(id)) {
                snprintf(out, n, "%s", json_string_value(id));
                break;
            }
        }
    json_decref(arr);
}

/* Keeps a label safe as a file name. */
static void safe_name(char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            *s = '_';
}

static void conn_open(logd *L, int fd)
{
    conn *c = NULL;
    for (int i = 0; i < MAX_CONNS; i++)
        if (L->conns[i].fd < 0) {
            c = &L->conns[i];
            break;
        }
    if (!c) {
        fprintf(stderr, "nitrodiag-logd: %d enclaves already connected; refusing one more\n", MAX_CONNS);
        close(fd);
        return;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->cid = UINT32_MAX;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_VSOCK)
        c->cid = ((struct sockaddr_vm *)&ss)->svm_cid;
    if (L->forced_id)
        snprintf(c->id, sizeof c->id, "%s", L->forced_id);
    else if (c->cid != UINT32_MAX)
        lookup_enclave_id(L, c->cid, c->id, sizeof c->id);
    if (!c->id[0]) {
        if (c->cid != UINT32_MAX)
            snprintf(c->id, sizeof c->id, "cid-%u", c->cid);
        else
            snprintf(c->id, sizeof c->id, "local");
    }
    safe_name(c->id);
    nd_frame_decoder_init(&c->dec, ND_LOG_REC_HDR + ND_LOG_MAX_TEXT);
    if (L->dir) {
        char id[sizeof c->id];
        memcpy(id, c->id, sizeof id);
        snprintf(c->path, sizeof c->path, "%s/%s.log", L->dir, id);
        c->file = fopen(c->path, "a");
        if (!c->file)
            fprintf(stderr, "nitrodiag-logd: cannot open %s: %s (lines of %s go to stdout only)\n", c->path,
                    strerror(errno), c->id);
    }
    note(L, c, "connected");
}

static void conn_close(logd *L, conn *c, const char *why)
{
    note(L, c, "disconnected (%s) after %llu line(s), %llu lost in the enclave", why, c->records, c->lost);
    if (c->file)
        fclose(c->file);
    nd_frame_decoder_free(&c->dec);
    close(c->fd);
    c->fd = -1;
    c->file = NULL;
}

static void conn_read(logd *L, conn *c)
{
    unsigned char buf[16384];
    ssize_t r = read(c->fd, buf, sizeof buf);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        conn_close(L, c, r == 0 ? "end of stream" : strerror(errno));
        return;
    }
    nd_err err = {0};
    if (nd_frame_feed(&c->dec, buf, (size_t)r, &err) < 0) {
        conn_close(L, c, err.msg);
        return;
    }
    nd_frame f;
    int rc;
    while ((rc = nd_frame_next(&c->dec, &f, &err)) == 1) {
        if (f.type == ND_LOG_FRAME_HELLO) {
            note(L, c, "hello: %.*s", (int)(f.len > 256 ? 256 : f.len), (const char *)f.payload);
            c->hello = 1;
            continue;
        }
        nd_logrec rec;
        if (f.type != ND_LOG_FRAME_DATA || nd_logrec_parse(f.payload, f.len, &rec, &err) < 0) {
            char why[600];
            snprintf(why, sizeof why, "bad frame: %s",
                     f.type != ND_LOG_FRAME_DATA ? nd_frame_type_name(f.type) : err.msg);
            conn_close(L, c, why);
            return;
        }
        if (c->last_seq && f.seq > c->last_seq + 1) {
            c->lost += f.seq - c->last_seq - 1;
            note(L, c, "%u line(s) lost in the enclave (records %u..%u: its queue was full or the connection broke)",
                 f.seq - c->last_seq - 1, c->last_seq + 1, f.seq - 1);
        } else if (!c->last_seq && f.seq > 1 && c->hello) {
            note(L, c, "first record is %u: %u earlier line(s) were sent before, or dropped", f.seq, f.seq - 1);
        }
        c->last_seq = f.seq;
        c->records++;
        char what[40];
        snprintf(what, sizeof what, "seq=%u %s", f.seq, nd_logrec_source_name(rec.source));
        emit(L, c, rec.ms, what, rec.text, rec.len);
    }
    if (rc < 0)
        conn_close(L, c, err.msg);
}

int main(int argc, char **argv)
{
    logd L;
    memset(&L, 0, sizeof L);
    const char *listen_text = "vsock:any:9100";
    L.max_bytes = 16 << 20;
    L.nitro_cli = "nitro-cli";
    int dir_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && strcmp(a, "--listen") == 0)
            listen_text = v, i++;
        else if (v && strcmp(a, "--dir") == 0)
            L.dir = v, dir_given = 1, i++;
        else if (strcmp(a, "--stdout") == 0)
            L.to_stdout = 1;
        else if (v && strcmp(a, "--max-bytes") == 0)
            L.max_bytes = strtoll(v, NULL, 10), i++;
        else if (v && strcmp(a, "--enclave-id") == 0)
            L.forced_id = v, i++;
        else if (v && strcmp(a, "--nitro-cli") == 0)
            L.nitro_cli = v, i++;
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("nitrodiag-logd %s\n", ND_VERSION);
            return 0;
        } else {
            fprintf(stderr, "nitrodiag-logd: unknown or incomplete argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!dir_given && !L.to_stdout)
        L.dir = "/var/log/nitrodiag/enclaves";
    if (L.dir) {
        struct stat st;
        if (stat(L.dir, &st) < 0 && mkdir(L.dir, 0750) < 0) {
            fprintf(stderr, "nitrodiag-logd: cannot create %s: %s\n", L.dir, strerror(errno));
            return 1;
        }
    }
    nd_sockaddr addr;
    nd_err err = {0};
    if (nd_vsock_parse(listen_text, &addr, &err) < 0) {
        fprintf(stderr, "nitrodiag-logd: %s\n", err.msg);
        return 2;
    }
    int lfd = nd_vsock_listen(&addr, 16, &err);
    if (lfd < 0) {
        fprintf(stderr, "nitrodiag-logd: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < MAX_CONNS; i++)
        L.conns[i].fd = -1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, empty;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, NULL);
    sigemptyset(&empty);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fprintf(stderr, "nitrodiag-logd: listening on %s, writing to %s%s\n", addr.text, L.dir ? L.dir : "",
            L.to_stdout ? (L.dir ? " and stdout" : "stdout") : "");
    while (!stop_sig) {
        struct pollfd pf[MAX_CONNS + 1];
        int map[MAX_CONNS + 1], n = 0;
        pf[n] = (struct pollfd){lfd, POLLIN, 0};
        map[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++)
            if (L.conns[i].fd >= 0) {
                pf[n] = (struct pollfd){L.conns[i].fd, POLLIN, 0};
                map[n++] = i;
            }
        int pr = ppoll(pf, (nfds_t)n, NULL, &empty);
        if (pr < 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!pf[k].revents)
                continue;
            if (map[k] < 0) {
                int fd = nd_vsock_accept(lfd, 0, &err);
                if (fd >= 0)
                    conn_open(&L, fd);
            } else {
                conn_read(&L, &L.conns[map[k]]);
            }
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        if (L.conns[i].fd >= 0)
            conn_close(&L, &L.conns[i], "nitrodiag-logd stopping");
    close(lfd);
    if (addr.kind == ND_ADDR_UNIX)
        unlink(addr.path);
    fprintf(stderr, "nitrodiag-logd: stopped by SIG%s\n", sigabbrev_np(stop_sig));
    return 0;
}
