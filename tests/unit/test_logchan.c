/*
 * test_logchan.c — the enclave log channel: core/logchan.c's queue decoded by core/frame.c's decoder (the two are
 * written separately, so this checks the wire format one against the other), drop-oldest under back-pressure, a
 * partly written frame kept intact, and then the real programs as ordinary processes over a unix socket:
 * nitrodiag-init --log streaming to nitrodiag-logd (file per enclave), and init in front of a host that never reads
 * (the app must finish, init's memory stay bounded, drops be counted and seen as seq gaps).
 *
 * This executable doubles as the flooding app: `test_logchan --flood N` writes N lines of 100 bytes and exits 0.
 */
#include "ndtest.h"
#include "nd_frame.h"
#include "nd_logchan.h"
#include "nd_vsock.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define INIT_BIN ND_BINARY_DIR "/enclave/nitrodiag-init"
#define LOGD_BIN ND_BINARY_DIR "/logd/nitrodiag-logd"

static char tmpdir[512];
static char self_exe[4096];

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct got {
    uint32_t seq[4096];
    char text[4096][128];
    char source[4096];
    int n;
    int hellos;
    char hello[300];
    uint64_t gaps;
} got;

/* Decodes everything in buf[0..n) with nd_frame_decoder; fails the test on any framing error. */
static void decode_all(const unsigned char *buf, size_t n, got *g)
{
    nd_frame_decoder d;
    nd_frame_decoder_init(&d, ND_LOG_REC_HDR + ND_LOG_MAX_TEXT);
    nd_err err = {0};
    CHECK_EQ_INT(nd_frame_feed(&d, buf, n, &err), 0);
    nd_frame f;
    int rc;
    uint32_t last = 0;
    while ((rc = nd_frame_next(&d, &f, &err)) == 1) {
        if (f.type == ND_FRAME_HELLO) {
            g->hellos++;
            snprintf(g->hello, sizeof g->hello, "%.*s", (int)f.len, (const char *)f.payload);
            continue;
        }
        CHECK_EQ_INT(f.type, ND_FRAME_DATA);
        nd_logrec r;
        CHECK_EQ_INT(nd_logrec_parse(f.payload, f.len, &r, &err), 0);
        if (last && f.seq > last + 1)
            g->gaps += f.seq - last - 1;
        CHECK(f.seq > last);
        last = f.seq;
        if (g->n < 4096) {
            g->seq[g->n] = f.seq;
            g->source[g->n] = r.source;
            snprintf(g->text[g->n], sizeof g->text[0], "%.*s", (int)r.len, r.text);
            g->n++;
        }
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(nd_frame_pending(&d), 0);
    nd_frame_decoder_free(&d);
}

/* Reads everything a socket holds now (non-blocking) into a growing buffer. */
static size_t drain(int fd, unsigned char **buf, size_t len)
{
    for (;;) {
        *buf = realloc(*buf, len + 65536);
        ssize_t r = recv(fd, *buf + len, 65536, MSG_DONTWAIT);
        if (r <= 0)
            return len;
        len += (size_t)r;
    }
}

static void queue_roundtrip(void)
{
    nd_logq q;
    CHECK_EQ_INT(nd_logq_init(&q, 0), 0);
    CHECK_EQ_INT(q.cap, ND_LOG_MIN_QUEUE);
    CHECK_EQ_INT(nd_logq_push(&q, 'I', 1700000000123ull, "[init] starting", 15), 1);
    CHECK_EQ_INT(nd_logq_push(&q, 'O', 1700000000124ull, "hello", 5), 1);
    CHECK_EQ_INT(nd_logq_push(&q, 'E', 1700000000125ull, "", 0), 1);
    nd_logq_restart(&q, "nitrodiag-log 1 cid=16");
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    ssize_t w = nd_logq_flush(&q, sv[0]);
    CHECK(w > 0);
    CHECK(!nd_logq_pending(&q));
    CHECK_EQ_INT(q.sent, 3);
    unsigned char *buf = NULL;
    size_t n = drain(sv[1], &buf, 0);
    CHECK_EQ_INT(n, (size_t)w);
    /* First frame, byte by byte: len 5+22, Hello, seq 0 — the nd_frame.h layout. */
    static const unsigned char hdr[] = {0, 0, 0, 27, 0x01, 0, 0, 0, 0};
    CHECK(n > 9 && memcmp(buf, hdr, 9) == 0);
    got *g = calloc(1, sizeof *g);
    decode_all(buf, n, g);
    CHECK_EQ_INT(g->hellos, 1);
    CHECK_EQ_STR(g->hello, "nitrodiag-log 1 cid=16");
    CHECK_EQ_INT(g->n, 3);
    CHECK_EQ_INT(g->seq[0], 1);
    CHECK_EQ_INT(g->seq[2], 3);
    CHECK_EQ_STR(g->text[0], "[init] starting");
    CHECK_EQ_STR(g->text[1], "hello");
    CHECK_EQ_INT(g->source[1], 'O');
    CHECK_EQ_INT(g->source[2], 'E');
    nd_err err = {0};
    nd_logrec r;
    CHECK_EQ_INT(nd_logrec_parse((const unsigned char *)"X12345678", 9, &r, &err), -EBADMSG);
    CHECK_EQ_INT(nd_logrec_parse((const unsigned char *)"I", 1, &r, &err), -EBADMSG);
    free(g);
    free(buf);
    close(sv[0]);
    close(sv[1]);
    nd_logq_free(&q);
    nd_logq_free(&q);
}

static void queue_drops_oldest_and_keeps_partial_frame(void)
{
    nd_logq q;
    CHECK_EQ_INT(nd_logq_init(&q, 16384), 0);
    char line[101];
    memset(line, 'x', 100);
    line[100] = '\0';
    /* A reader with a tiny buffer: the first flush leaves a frame half written. */
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int small = 1024;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    nd_logq_restart(&q, "hello");
    unsigned char *buf = NULL;
    size_t n = 0;
    for (int i = 1; i <= 2000; i++) {
        snprintf(line, sizeof line, "line %d ", i);
        line[strlen(line)] = 'x';
        nd_logq_push(&q, 'O', (uint64_t)i, line, 100);
        CHECK(q.len <= q.cap);
        if (i == 10)
            CHECK(nd_logq_flush(&q, sv[0]) >= 0);
    }
    CHECK_EQ_INT(q.queued, 2000);
    CHECK(q.dropped > 1000);
    /* Now the reader reads everything, flushing as it goes. */
    for (int k = 0; k < 1000 && nd_logq_pending(&q); k++) {
        CHECK(nd_logq_flush(&q, sv[0]) >= 0);
        n = drain(sv[1], &buf, n);
    }
    CHECK(!nd_logq_pending(&q));
    n = drain(sv[1], &buf, n);
    got *g = calloc(1, sizeof *g);
    decode_all(buf, n, g);
    /* Every record is either received or counted as dropped; the newest one made it (drop-oldest). */
    CHECK_EQ_INT((uint64_t)g->n + q.dropped, 2000);
    CHECK_EQ_INT(g->seq[g->n - 1], 2000);
    CHECK(strncmp(g->text[g->n - 1], "line 2000 ", 10) == 0);
    CHECK_EQ_INT(g->gaps, q.dropped);
    free(g);
    free(buf);
    close(sv[0]);
    close(sv[1]);
    nd_logq_free(&q);
}

/* ---- the programs ------------------------------------------------------------------------------------------- */

static pid_t spawn(const char *const *argv, const char *out)
{
    pid_t p = fork();
    if (p == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        unsetenv("ND_INIT_LOG");
        unsetenv("ND_INIT_CMD");
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 8 << 20;
    char *buf = calloc(1, cap);
    if (!f)
        return buf;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Every wait below ends as soon as its condition holds; ms is what it needs on an idle machine, but a loaded one (a
 * CI runner with two CPUs running the suite in parallel) can take far longer: no wait gives up before this. */
#define WAIT_FLOOR_MS 30000

static int wait_for(const char *path, const char *needle, int ms)
{
    double deadline = nd_vsock_now_ms() + (ms > WAIT_FLOOR_MS ? ms : WAIT_FLOOR_MS);
    for (;;) {
        char *s = slurp(path);
        int found = strstr(s, needle) != NULL;
        free(s);
        if (found)
            return 1;
        if (nd_vsock_now_ms() > deadline)
            break;
        msleep(20);
    }
    char *s = slurp(path);
    fprintf(stderr, "  timed out waiting for \"%s\" in %s\n  --- %s ---\n%.3000s\n  ---\n", needle, path, path, s);
    free(s);
    return 0;
}

/* Waits for pid to end (up to ms); returns its status, or -1 (then kills it). */
static int wait_exit(pid_t pid, int ms)
{
    int st;
    double deadline = nd_vsock_now_ms() + (ms > WAIT_FLOOR_MS ? ms : WAIT_FLOOR_MS);
    for (;;) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        if (nd_vsock_now_ms() > deadline)
            break;
        msleep(20);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void init_streams_to_logd(void)
{
    char sock[600], addr[700], dir[600], console[600], logdout[600], file[700];
    snprintf(sock, sizeof sock, "%s/logd.sock", tmpdir);
    snprintf(addr, sizeof addr, "unix:%s", sock);
    snprintf(dir, sizeof dir, "%s/logs", tmpdir);
    snprintf(console, sizeof console, "%s/init.console", tmpdir);
    snprintf(logdout, sizeof logdout, "%s/logd.out", tmpdir);
    snprintf(file, sizeof file, "%s/i-0123456789abcdef0-enc0123456789abcd.log", dir);
    const char *largv[] = {LOGD_BIN, "--listen", addr, "--dir", dir, "--stdout", "--enclave-id",
                           "i-0123456789abcdef0-enc0123456789abcd", NULL};
    pid_t logd = spawn(largv, logdout);
    CHECK(wait_for(logdout, "listening on", 3000));
    const char *iargv[] = {INIT_BIN, "--console", console, "--no-mount", "--linger", "0", "--log", addr, "--",
                           "/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; printf 'no newline\\033'; exit 3",
                           NULL};
    pid_t init = spawn(iargv, "/dev/null");
    int st = wait_exit(init, 10000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 3);
    CHECK(wait_for(file, "disconnected (end of stream)", 5000));
    char *s = slurp(file);
    CHECK(strstr(s, "enclave=i-0123456789abcdef0-enc0123456789abcd logd: connected") != NULL);
    CHECK(strstr(s, "logd: hello: nitrodiag-log 1 cid=") != NULL);
    CHECK(strstr(s, " seq=1 init: [init] starting\n") != NULL);
    CHECK(strstr(s, " init: [init] check command ok: /bin/sh (ELF ") != NULL);
    CHECK(strstr(s, " init: [init] check env info: ") != NULL);
    CHECK(strstr(s, " stdout: to-stdout\n") != NULL);
    CHECK(strstr(s, " stderr: to-stderr\n") != NULL);
    CHECK(strstr(s, " stdout: no newline\\x1b\n") != NULL); /* escaped, and the last partial line kept */
    CHECK(strstr(s, " init: [init] /bin/sh exited rc=3 after ") != NULL);
    CHECK(strstr(s, "line(s) lost in the enclave (records") == NULL);
    CHECK(strstr(s, "disconnected (end of stream) after ") != NULL && strstr(s, " line(s), 0 lost in the enclave") != NULL);
    free(s);
    /* The console got the app's output as well (copied through). */
    s = slurp(console);
    CHECK(strstr(s, "to-stdout\n") != NULL && strstr(s, "to-stderr\n") != NULL);
    free(s);
    /* The journal side: the same lines on logd's stdout. */
    s = slurp(logdout);
    CHECK(strstr(s, " stdout: to-stdout\n") != NULL);
    free(s);
    kill(logd, SIGTERM);
    st = wait_exit(logd, 5000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(access(sock, F_OK) != 0);
}

static long vm_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void stalled_host_never_stalls_the_app(void)
{
    char sock[600], addr[700], console[600];
    snprintf(sock, sizeof sock, "%s/stall.sock", tmpdir);
    snprintf(addr, sizeof addr, "unix:%s", sock);
    snprintf(console, sizeof console, "%s/stall.console", tmpdir);
    nd_sockaddr a;
    nd_err err = {0};
    CHECK_EQ_INT(nd_vsock_parse(addr, &a, &err), 0);
    int lfd = nd_vsock_listen(&a, 4, &err);
    CHECK(lfd >= 0);
    /* The app writes 40000 lines of 100 bytes (4 MB) as fast as it can; the host accepts and then never reads. */
    const char *iargv[] = {INIT_BIN, "--console", console, "--no-mount", "--linger", "30", "--log-buffer", "16384",
                           "--log", addr, "--", self_exe, "--flood", "40000", NULL};
    pid_t init = spawn(iargv, "/dev/null");
    int cfd = nd_vsock_accept(lfd, WAIT_FLOOR_MS, &err);
    CHECK(cfd >= 0);
    CHECK(wait_for(console, "exited rc=0 after ", 30000));
    long hwm = vm_hwm_kb(init);
    char *s = slurp(console);
    unsigned long long queued = 0, sent = 0, dropped = 0;
    const char *p = strstr(s, "[init] log channel: ");
    while (p && sscanf(p, "[init] log channel: %llu line(s) queued, %llu sent, %llu dropped", &queued, &sent,
                       &dropped) != 3)
        p = strstr(p + 1, "[init] log channel: ");
    CHECK(p != NULL);
    CHECK(queued >= 40000);
    CHECK(dropped > 30000);
    CHECK(strstr(s, "line(s) dropped so far (the parent does not read fast enough)") != NULL);
    free(s);
    /* Bounded memory: a 16 KiB queue while 4 MB went by. Static init is ~1 MB resident; allow 6 MB (sanitizer
     * builds link it dynamically with ASan, whose shadow memory is larger: there only report). */
    fprintf(stderr, "  init VmHWM %ld kB after 4 MB of output with a host that never reads\n", hwm);
#ifndef __SANITIZE_ADDRESS__
    CHECK(hwm > 0 && hwm < 6 * 1024);
#endif
    /* Now the host reads: what arrives is well-framed, ends with the newest lines, and its gaps are the drops. */
    unsigned char *buf = NULL;
    size_t n = 0;
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    for (;;) {
        n = drain(cfd, &buf, n);
        if ((n > 0 && memmem(buf, n, "staying alive for 30 s", 22)) || nd_vsock_now_ms() > deadline)
            break;
        msleep(10);
    }
    got *g = calloc(1, sizeof *g);
    decode_all(buf, n, g);
    CHECK_EQ_INT(g->hellos, 1);
    CHECK(g->gaps > 30000);
    int saw_last = 0;
    for (int i = 0; i < g->n; i++)
        saw_last |= strncmp(g->text[i], "flood 39999 ", 12) == 0;
    CHECK(saw_last);
    free(g);
    free(buf);
    close(cfd);
    close(lfd);
    unlink(sock);
    kill(init, SIGKILL);
    waitpid(init, NULL, 0);
}


/* A console nobody reads (a FIFO whose reader never reads: a serial console slower than the app) must not stall init
 * or the app: the app's 4 MB pass, init's lines arrive over the log channel, and the exit line says the console was
 * too slow for part of the output. */
static void slow_console_never_stalls_the_app(void)
{
    char sock[600], addr[700], fifo[600];
    snprintf(sock, sizeof sock, "%s/slow.sock", tmpdir);
    snprintf(addr, sizeof addr, "unix:%s", sock);
    snprintf(fifo, sizeof fifo, "%s/console.fifo", tmpdir);
    CHECK_EQ_INT(mkfifo(fifo, 0600), 0);
    int rfd = open(fifo, O_RDONLY | O_NONBLOCK); /* held open, never read */
    CHECK(rfd >= 0);
    nd_sockaddr a;
    nd_err err = {0};
    CHECK_EQ_INT(nd_vsock_parse(addr, &a, &err), 0);
    int lfd = nd_vsock_listen(&a, 4, &err);
    CHECK(lfd >= 0);
    const char *iargv[] = {INIT_BIN, "--console", fifo, "--no-mount", "--linger", "30", "--log", addr, "--",
                           self_exe, "--flood", "40000", NULL};
    pid_t init = spawn(iargv, "/dev/null");
    int cfd = nd_vsock_accept(lfd, WAIT_FLOOR_MS, &err);
    CHECK(cfd >= 0);
    unsigned char *buf = NULL;
    size_t n = 0;
    int done = 0;
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    while (!done) {
        n = drain(cfd, &buf, n);
        done = n > 0 && memmem(buf, n, "staying alive for 30 s", 22) != NULL;
        if (done || nd_vsock_now_ms() > deadline)
            break;
        msleep(20);
    }
    CHECK(done);
    CHECK(n > 0 && memmem(buf, n, "[init] started ", 15) != NULL);
    CHECK(n > 0 && memmem(buf, n, "exited rc=0 after ", 18) != NULL);
    CHECK(n > 0 && memmem(buf, n, "the console was too slow for part of the output", 47) != NULL);
    got *g = calloc(1, sizeof *g);
    decode_all(buf, n, g);
    free(g);
    free(buf);
    kill(init, SIGKILL);
    waitpid(init, NULL, 0);
    close(cfd);
    close(lfd);
    close(rfd);
    unlink(sock);
}


/* nitrodiag-logd against enclaves that send garbage: a length below 5, a length far above the limit, a frame of
 * another protocol, a record with an unknown source, a peer that vanishes mid-frame. Each costs only its own
 * connection, said in the file; a good enclave after them is served. */
static void logd_survives_bad_enclaves(void)
{
    char sock[600], addr[700], dir[600], out[600], file[700];
    snprintf(sock, sizeof sock, "%s/logd2.sock", tmpdir);
    snprintf(addr, sizeof addr, "unix:%s", sock);
    snprintf(dir, sizeof dir, "%s/logs2", tmpdir);
    snprintf(out, sizeof out, "%s/logd2.out", tmpdir);
    snprintf(file, sizeof file, "%s/bad-enclave.log", dir);
    const char *largv[] = {LOGD_BIN, "--listen", addr, "--dir", dir, "--enclave-id", "bad-enclave", NULL};
    pid_t logd = spawn(largv, out);
    CHECK(wait_for(out, "listening on", 3000));
    nd_sockaddr a;
    nd_err err = {0};
    CHECK_EQ_INT(nd_vsock_parse(addr, &a, &err), 0);
    static const unsigned char short_len[] = {0, 0, 0, 1, 'X'};
    static const unsigned char huge_len[] = {0x7f, 0xff, 0xff, 0xff, 2, 0, 0, 0, 1};
    static const unsigned char other_proto[] = {0, 0, 0, 7, 0x07, 0, 0, 0, 1, '{', '}'};
    static const unsigned char bad_source[] = {0, 0, 0, 15, 0x02, 0, 0, 0, 1, 'Z', 0, 0, 0, 0, 0, 0, 0, 0, 'x'};
    static const unsigned char cut[] = {0, 0, 0, 40, 0x02, 0, 0, 0, 1, 'O'};
    const unsigned char *bad[] = {short_len, huge_len, other_proto, bad_source, cut};
    size_t len[] = {sizeof short_len, sizeof huge_len, sizeof other_proto, sizeof bad_source, sizeof cut};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, &err);
        CHECK(fd >= 0);
        if (fd >= 0) {
            CHECK_EQ_INT(nd_vsock_write_all(fd, bad[i], len[i], WAIT_FLOOR_MS, &a, &err), 0);
            close(fd);
        }
    }
    const char *iargv[] = {INIT_BIN, "--console", "/dev/null", "--no-mount", "--no-checks", "--linger", "0", "--log",
                           addr, "--", "/bin/echo", "still served", NULL};
    int st = wait_exit(spawn(iargv, "/dev/null"), 10000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(wait_for(file, " stdout: still served\n", 5000));
    /* logd may still be writing what it says of a connection (its reads and its closes interleave with the good
     * enclave's): wait until all six connections (five bad, then the good one, which ended) are said closed */
    char *s = NULL;
    int closed = 0;
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    for (;;) {
        free(s);
        s = slurp(file);
        closed = 0;
        for (const char *p = strstr(s, "logd: disconnected ("); p; p = strstr(p + 1, "logd: disconnected ("))
            closed++;
        if (closed >= 6 || nd_vsock_now_ms() > deadline)
            break;
        msleep(20);
    }
    CHECK(closed >= 6);
    CHECK(strstr(s, "length field") != NULL || strstr(s, "bad frame") != NULL);
    CHECK(strstr(s, "bad frame: Storage") != NULL);
    CHECK(strstr(s, "unknown source byte 0x5a") != NULL);
    free(s);
    kill(logd, SIGTERM);
    st = wait_exit(logd, 5000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void init_bad_log_address(void)
{
    char out[600];
    snprintf(out, sizeof out, "%s/badaddr.out", tmpdir);
    const char *iargv[] = {INIT_BIN, "--console", "-", "--log", "vsock:x:1", "--", "/bin/true", NULL};
    pid_t init = spawn(iargv, out);
    int st = wait_exit(init, 5000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
    CHECK(wait_for(out, "[init] error: --log vsock:x:1: bad address", 100));
}

static int flood(long n)
{
    char line[101];
    for (long i = 0; i < n; i++) {
        int k = snprintf(line, sizeof line, "flood %ld ", i);
        memset(line + k, 'y', sizeof line - 1 - (size_t)k);
        line[100] = '\n';
        if (write(STDOUT_FILENO, line, 101) != 101)
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--flood") == 0)
        return flood(strtol(argv[2], NULL, 10));
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    self_exe[n > 0 ? n : 0] = '\0';
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nd-logchan-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    ND_RUN(queue_roundtrip);
    ND_RUN(queue_drops_oldest_and_keeps_partial_frame);
    ND_RUN(init_streams_to_logd);
    ND_RUN(stalled_host_never_stalls_the_app);
    ND_RUN(slow_console_never_stalls_the_app);
    ND_RUN(logd_survives_bad_enclaves);
    ND_RUN(init_bad_log_address);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    return nd_test_summary();
}
