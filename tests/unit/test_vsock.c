/*
 * test_vsock.c — core/vsock.c: address syntax, the wording of failures (no vsock transport, nothing listening,
 * bad address), timeouts on connect/accept/read, and the ping exchange over unix sockets and loopback TCP against a
 * server forked from this test (written with plain POSIX calls, not with the code under test).
 */
#include "ndtest.h"
#include "nd_vsock.h"

#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/vm_sockets.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void parse_ok(void)
{
    nd_sockaddr a;
    nd_err err;
    CHECK_EQ_INT(nd_vsock_parse("vsock:16:5000", &a, &err), 0);
    CHECK_EQ_INT(a.kind, ND_ADDR_VSOCK);
    CHECK_EQ_INT(a.cid, 16);
    CHECK_EQ_INT(a.port, 5000);
    CHECK_EQ_INT(((struct sockaddr_vm *)&a.ss)->svm_family, AF_VSOCK);
    CHECK_EQ_INT(((struct sockaddr_vm *)&a.ss)->svm_cid, 16);
    CHECK_EQ_STR(a.text, "vsock:16:5000");
    CHECK_EQ_INT(nd_vsock_parse("vsock:any:5000", &a, &err), 0);
    CHECK_EQ_INT(a.cid, VMADDR_CID_ANY);
    CHECK_EQ_INT(nd_vsock_parse("vsock:4294967295:1", &a, &err), 0);
    CHECK_EQ_INT(a.cid, 0xFFFFFFFFu);
    CHECK_EQ_INT(nd_vsock_parse("unix:/tmp/x.sock", &a, &err), 0);
    CHECK_EQ_INT(a.kind, ND_ADDR_UNIX);
    CHECK_EQ_STR(((struct sockaddr_un *)&a.ss)->sun_path, "/tmp/x.sock");
    CHECK_EQ_INT(nd_vsock_parse("tcp:127.0.0.1:8000", &a, &err), 0);
    CHECK_EQ_INT(a.kind, ND_ADDR_TCP);
    CHECK_EQ_INT(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 8000);
    CHECK_EQ_INT(nd_vsock_parse("tcp:localhost:1", &a, &err), 0);
    CHECK_EQ_INT(((struct sockaddr_in *)&a.ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    CHECK_EQ_INT(nd_vsock_parse("tcp:[::1]:443", &a, &err), 0);
    CHECK_EQ_INT(a.ss.ss_family, AF_INET6);
}

static void parse_bad(void)
{
    nd_sockaddr a;
    nd_err err;
    CHECK_EQ_INT(nd_vsock_parse("16:5000", &a, &err), -EINVAL);
    CHECK_EQ_STR(err.msg, "bad address \"16:5000\": expected vsock:CID:PORT, unix:PATH or tcp:HOST:PORT");
    CHECK_EQ_INT(nd_vsock_parse("vsock:16", &a, &err), -EINVAL);
    CHECK_EQ_STR(err.msg, "bad address \"vsock:16\": expected vsock:CID:PORT (e.g. vsock:16:5000)");
    CHECK_EQ_INT(nd_vsock_parse("vsock:16:port", &a, &err), -EINVAL);
    CHECK_EQ_STR(err.msg, "bad address \"vsock:16:port\": port \"port\" is not a number (vsock:CID:PORT)");
    CHECK_EQ_INT(nd_vsock_parse("vsock:99999999999:1", &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_vsock_parse("vsock:-5:1", &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_vsock_parse("tcp:example.com:80", &a, &err), -EINVAL);
    CHECK_EQ_STR(err.msg, "bad address \"tcp:example.com:80\": host \"example.com\" must be a numeric IP address or localhost");
    CHECK_EQ_INT(nd_vsock_parse("tcp:127.0.0.1:70000", &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_vsock_parse("unix:", &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_vsock_parse("", &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_vsock_parse(NULL, &a, &err), -EINVAL);
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    memcpy(longp, "unix:", 5);
    CHECK_EQ_INT(nd_vsock_parse(longp, &a, &err), -EINVAL);
    CHECK(strchr(err.msg, '\n') == NULL);
}

static void explain_wording(void)
{
    nd_sockaddr a;
    nd_err err;
    nd_vsock_parse("vsock:16:5000", &a, NULL);
    CHECK_EQ_INT(nd_vsock_explain(-ENODEV, "connect", &a, &err), -ENODEV);
    CHECK(strstr(err.msg, "connect vsock:16:5000: no vsock transport on this machine (ENODEV)") == err.msg);
    nd_vsock_explain(-EAFNOSUPPORT, "socket", &a, &err);
    CHECK(strstr(err.msg, "no vsock transport on this machine (EAFNOSUPPORT)") != NULL);
    nd_vsock_explain(-ECONNRESET, "connect", &a, &err);
    CHECK(strstr(err.msg, "connect vsock:16:5000: nothing listens at CID 16 port 5000 (ECONNRESET): the enclave is "
                          "not running") == err.msg);
    nd_vsock_explain(-ETIMEDOUT, "connect", &a, &err);
    CHECK(strstr(err.msg, "nothing listens at CID 16 port 5000 (ETIMEDOUT)") != NULL);
    nd_vsock_explain(-ECONNREFUSED, "connect", &a, &err);
    CHECK(strstr(err.msg, "nothing listens at CID 16 port 5000 (ECONNREFUSED)") != NULL);
    nd_vsock_parse("unix:/nowhere/x.sock", &a, NULL);
    nd_vsock_explain(-ENOENT, "connect", &a, &err);
    CHECK_EQ_STR(err.msg, "connect unix:/nowhere/x.sock: nothing listens at unix:/nowhere/x.sock (ENOENT)");
}

static void connect_nothing_listening(void)
{
    nd_sockaddr a;
    nd_err err;
    nd_vsock_parse("unix:/tmp/nd-test-vsock-nobody-here.sock", &a, NULL);
    unlink(a.path);
    CHECK_EQ_INT(nd_vsock_connect(&a, 1000, &err), -ENOENT);
    CHECK(strstr(err.msg, "nothing listens at unix:/tmp/nd-test-vsock-nobody-here.sock") != NULL);

    /* TCP: bind a port, close it, connect: refused. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    bind(s, (struct sockaddr *)&sin, sizeof sin);
    getsockname(s, (struct sockaddr *)&sin, &sl);
    close(s);
    char addr[64];
    snprintf(addr, sizeof addr, "tcp:127.0.0.1:%d", ntohs(sin.sin_port));
    nd_vsock_parse(addr, &a, NULL);
    CHECK_EQ_INT(nd_vsock_connect(&a, 1000, &err), -ECONNREFUSED);
    CHECK(strstr(err.msg, "nothing listens at tcp:127.0.0.1:") != NULL);
}

/* A server that answers one connection per fork with `answer` (NULL: accept and say nothing). */
static pid_t serve_once(int lfd, const char *answer, int count)
{
    pid_t p = fork();
    if (p == 0) {
        fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) & ~O_NONBLOCK); /* nd_vsock_listen gives a non-blocking fd */
        for (int i = 0; i < count; i++) {
            int c = accept(lfd, NULL, NULL);
            if (c < 0)
                _exit(1);
            char buf[16];
            if (read(c, buf, sizeof buf) <= 0)
                _exit(1);
            if (answer) {
                if (write(c, answer, strlen(answer)) < 0)
                    _exit(1);
                close(c);
            } else {
                pause();
            }
        }
        _exit(0);
    }
    return p;
}

static void ping_unix_and_tcp(void)
{
    nd_sockaddr a;
    nd_err err;
    char path[64];
    snprintf(path, sizeof path, "/tmp/nd-test-vsock-%d.sock", (int)getpid());
    char addr[80];
    snprintf(addr, sizeof addr, "unix:%s", path);
    CHECK_EQ_INT(nd_vsock_parse(addr, &a, &err), 0);
    int lfd = nd_vsock_listen(&a, 8, &err);
    CHECK(lfd >= 0);
    pid_t srv = serve_once(lfd, "pong", 2);
    char reply[32];
    double rtt = -1;
    /* the server is a forked child: on a loaded machine it may take a while to run, so pings that must be answered
     * get 30 s (they end when answered) */
    CHECK_EQ_INT(nd_vsock_ping(&a, 30000, reply, sizeof reply, &rtt, &err), 0);
    CHECK_EQ_STR(reply, "pong");
    CHECK(rtt >= 0 && rtt < 30000);
    CHECK_EQ_INT(nd_vsock_ping(&a, 30000, reply, sizeof reply, &rtt, &err), 0);
    waitpid(srv, NULL, 0);

    /* A server that accepts and never answers: ETIMEDOUT, in about the time asked for. */
    srv = serve_once(lfd, NULL, 1);
    double t0 = nd_vsock_now_ms();
    CHECK_EQ_INT(nd_vsock_ping(&a, 300, reply, sizeof reply, &rtt, &err), -ETIMEDOUT);
    double took = nd_vsock_now_ms() - t0;
    CHECK(took >= 250 && took < 10000); /* the 300 ms timeout ended it (the server never answers); wall clock, loose */
    CHECK(strstr(err.msg, "connected, but no reply within 300 ms") != NULL);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);

    /* listen again on the same path: the stale socket is replaced. */
    close(lfd);
    lfd = nd_vsock_listen(&a, 8, &err);
    CHECK(lfd >= 0);
    /* accept with a timeout and nobody coming. */
    CHECK_EQ_INT(nd_vsock_accept(lfd, 100, &err), -ETIMEDOUT);
    close(lfd);
    unlink(path);

    /* A regular file at the path is not replaced. */
    FILE *f = fopen(path, "w");
    fclose(f);
    CHECK_EQ_INT(nd_vsock_listen(&a, 8, &err), -EEXIST);
    unlink(path);

    /* TCP on loopback, port picked by the kernel. */
    CHECK_EQ_INT(nd_vsock_parse("tcp:127.0.0.1:0", &a, &err), 0);
    lfd = nd_vsock_listen(&a, 8, &err);
    CHECK(lfd >= 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    getsockname(lfd, (struct sockaddr *)&sin, &sl);
    snprintf(addr, sizeof addr, "tcp:127.0.0.1:%d", ntohs(sin.sin_port));
    nd_vsock_parse(addr, &a, NULL);
    srv = serve_once(lfd, "unknown", 1);
    CHECK_EQ_INT(nd_vsock_ping(&a, 30000, reply, sizeof reply, &rtt, &err), 0);
    CHECK_EQ_STR(reply, "unknown");
    waitpid(srv, NULL, 0);
    close(lfd);
}

static void vsock_on_this_machine(void)
{
    /* Whatever this kernel offers, a vsock connect to a CID nobody has must fail with a worded error, fast. */
    nd_sockaddr a;
    nd_err err;
    nd_vsock_parse("vsock:4242:5000", &a, NULL);
    double t0 = nd_vsock_now_ms();
    int rc = nd_vsock_connect(&a, 500, &err);
    CHECK(rc < 0);
    CHECK(nd_vsock_now_ms() - t0 < 10000); /* the 500 ms limit holds (wall clock, loose for a loaded machine) */
    if (rc < 0) {
        printf("     (this machine: %s)\n", err.msg);
        CHECK(strstr(err.msg, "no vsock transport on this machine") || strstr(err.msg, "nothing listens at CID 4242") ||
              strstr(err.msg, "vsock:4242:5000"));
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    ND_RUN(parse_ok);
    ND_RUN(parse_bad);
    ND_RUN(explain_wording);
    ND_RUN(connect_nothing_listening);
    ND_RUN(ping_unix_and_tcp);
    ND_RUN(vsock_on_this_machine);
    return nd_test_summary();
}
