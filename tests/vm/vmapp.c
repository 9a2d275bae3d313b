/*
 * vmapp.c — the misbehaving applications of the real-kernel test (static), one per mode, each failing the way real
 * applications fail inside an enclave, with the kernel's own errors (strerror of the real syscall):
 *   exit1    cannot open its config file, says so on stderr, exits 1
 *   segv     says it starts, then dereferences NULL (SIGSEGV)
 *   bind-lo  listens on TCP 127.0.0.1:8080, then connects to itself there (a health check, or a sidecar such as a
 *            local traffic forwarder): with lo down the bind succeeds (the real kernel allows it) but the connect
 *            fails with "Network is unreachable"; it says which step failed and exits 1, else exits 0
 *   flood N  writes N lines of 100 bytes on stdout as fast as it can, then "vmapp: flood done", exits 0
 *   ok       says hello on stdout and stderr and exits 0
 * Output is written with write(2), unbuffered, so nothing is lost when the process dies.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void out(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) < 0)
        _exit(3);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "ok";
    char line[256];
    if (strcmp(mode, "exit1") == 0) {
        int fd = open("/etc/vmapp.conf", O_RDONLY);
        if (fd < 0) {
            snprintf(line, sizeof line, "vmapp: cannot read /etc/vmapp.conf: %s\n", strerror(errno));
            out(2, line);
            return 1;
        }
        close(fd);
        return 0;
    }
    if (strcmp(mode, "segv") == 0) {
        out(1, "vmapp: starting the worker\n");
        volatile int *p = NULL;
        *p = 1;
        return 0;
    }
    if (strcmp(mode, "bind-lo") == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(8080);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4) < 0) {
            snprintf(line, sizeof line, "vmapp: listen tcp 127.0.0.1:8080: bind: %s\n", strerror(errno));
            out(2, line);
            return 1;
        }
        out(1, "vmapp: listening on 127.0.0.1:8080\n");
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) {
            snprintf(line, sizeof line, "vmapp: health check: dial tcp 127.0.0.1:8080: connect: %s\n", strerror(errno));
            out(2, line);
            return 1;
        }
        out(1, "vmapp: health check ok\n");
        close(c);
        close(s);
        return 0;
    }
    if (strcmp(mode, "flood") == 0) {
        long n = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
        for (long i = 0; i < n; i++) {
            int k = snprintf(line, sizeof line, "vmapp: flood %ld ", i);
            memset(line + k, 'y', 99 - (size_t)k);
            line[99] = '\n';
            if (write(1, line, 100) != 100)
                return 2;
        }
        out(1, "vmapp: flood done\n");
        return 0;
    }
    out(1, "vmapp: hello from stdout\n");
    out(2, "vmapp: hello from stderr\n");
    return 0;
}
