/*
 * vmtest.c — the guest side of the enclave real-kernel test (static; the initramfs's rdinit=/vmtest).
 *
 * As PID 1 it loads vsock.ko, vmw_vsock_virtio_transport_common.ko and vsock_loopback.ko (in that order, with
 * finit_module), forks the in-guest client, and then EXECS /init — so enclave/init really is PID 1, with the
 * client as a child it inherited (whose exit init must reap). init mounts proc/sys, launches /vsock-pingpong in
 * vsock mode (VSOCK_PINGPONG_MODE comes from the kernel command line, like the image's ENV).
 *
 * Before that, the failure cases of nitrodiag-init run one after another in the same VM (init as an ordinary child
 * with --linger 0, not PID 1): an app that is missing, a script without its interpreter, an app that exits 1, one
 * that segfaults, one that binds 127.0.0.1 with lo down (and again with --lo-up), each with `--log vsock:1:9100`
 * to /logd (nitrodiag-logd, started first, listening on vsock:any:9100 over the loopback transport). Each case is
 * framed on the console by `[vmtest] case NAME: begin` / `[vmtest] case NAME: end rc=N`.
 *
 * The client talks to the server over AF_VSOCK loopback (CID 1, port 5000): pings, concurrent clients, a bad
 * client, "hello" → "unknown"; then sends SIGTERM to PID 1 (init must forward it to the app) and waits until the
 * app is gone. At the end it stops /logd and prints what it received, each line as `[vmtest] log: LINE`. It ends the VM through qemu's isa-debug-exit device (I/O port 0xf4): qemu then exits with
 * (value << 1) | 1, i.e. 33 for PASS and 35 for FAIL. The host script (run-vm-test.sh) checks that exit status and
 * init's console lines.
 */
#include "nd_vsock.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define GUEST_TAG "[vmtest]"
#include "guest.h"

#define EXIT_PASS GUEST_EXIT_PASS
#define EXIT_FAIL GUEST_EXIT_FAIL

static pid_t logd_pid;

/* The guest client's whole budget: every wait below ends as soon as its condition holds, and the VM runs under TCG,
 * which a loaded host slows several times over (40 s where an idle one takes 17): the watchdog only catches a hang. */
#define CLIENT_WATCHDOG_S 240
#define WAIT_MS 60000

static void on_alarm(int sig)
{
    (void)sig;
    say("[vmtest] FAIL: watchdog: the guest test took more than %d s", CLIENT_WATCHDOG_S);
    vm_exit(EXIT_FAIL);
}

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* pid of the process whose /proc/PID/cmdline starts with `exe`, or 0. */
static pid_t find_process(const char *exe)
{
    DIR *d = opendir("/proc");
    pid_t found = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && !found) {
        pid_t pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[256] = "";
        snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0 && strcmp(buf, exe) == 0) {
            char st[64], sbuf[256] = "";
            snprintf(st, sizeof st, "/proc/%d/stat", (int)pid);
            fd = open(st, O_RDONLY);
            if (fd >= 0) {
                n = read(fd, sbuf, sizeof sbuf - 1);
                close(fd);
                char *rp = strrchr(sbuf, ')');
                if (rp && rp[1] == ' ' && rp[2] != 'Z')
                    found = pid;
            }
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* Whether the file holds needle, waiting up to ms for it (logd writes each line as it gets it). */
static int wait_file_has(const char *path, const char *needle, int ms)
{
    double t0 = nd_vsock_now_ms();
    do {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            static char buf[1 << 20];
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            buf[n > 0 ? n : 0] = '\0';
            if (strstr(buf, needle))
                return 1;
        }
        msleep(20);
    } while (nd_vsock_now_ms() - t0 < ms);
    return 0;
}

static int exchange(const nd_sockaddr *a, const char *msg, char *reply, size_t n, nd_err *err)
{
    int fd = nd_vsock_connect(a, WAIT_MS, err);
    if (fd < 0)
        return fd;
    int rc = nd_vsock_write_all(fd, msg, strlen(msg), WAIT_MS, a, err);
    size_t got = 0;
    while (rc == 0 && got + 1 < n) {
        ssize_t r = nd_vsock_read(fd, reply + got, n - 1 - got, WAIT_MS, a, err);
        if (r < 0)
            rc = (int)r;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    reply[got] = '\0';
    close(fd);
    return rc;
}

static void client(void)
{
    signal(SIGALRM, on_alarm);
    alarm(CLIENT_WATCHDOG_S);
    nd_sockaddr a;
    nd_err err;
    nd_vsock_parse("vsock:1:5000", &a, NULL);

    /* Wait for the server: init must have mounted proc and started the app. */
    char reply[64];
    double rtt = 0, t0 = nd_vsock_now_ms();
    int rc = -1;
    while (nd_vsock_now_ms() - t0 < WAIT_MS) {
        rc = nd_vsock_ping(&a, WAIT_MS, reply, sizeof reply, &rtt, &err);
        if (rc == 0)
            break;
        msleep(50);
    }
    if (rc < 0)
        fail("no pong from vsock:1:5000 within %d s: %s", WAIT_MS / 1000, err.msg);
    if (strcmp(reply, "pong") != 0)
        fail("ping got \"%s\" instead of \"pong\"", reply);
    say("[vmtest] ping vsock:1:5000 -> %s (%.2f ms)", reply, rtt);

    /* Many clients at once: connect 16, then answer each. */
    enum { N = 16 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = nd_vsock_connect(&a, WAIT_MS, &err);
        if (fds[i] < 0)
            fail("concurrent client %d: %s", i, err.msg);
    }
    for (int i = N - 1; i >= 0; i--) {
        if (nd_vsock_write_all(fds[i], "ping", 4, WAIT_MS, &a, &err) < 0)
            fail("concurrent client %d write: %s", i, err.msg);
        ssize_t r = nd_vsock_read(fds[i], reply, sizeof reply - 1, WAIT_MS, &a, &err);
        if (r != 4 || memcmp(reply, "pong", 4) != 0)
            fail("concurrent client %d: no pong (%zd: %s)", i, r, r < 0 ? err.msg : "short reply");
        close(fds[i]);
    }
    say("[vmtest] %d concurrent clients got pong", N);

    /* Bad clients: connect and vanish; garbage. The server must stay up. */
    for (int i = 0; i < 4; i++) {
        int fd = nd_vsock_connect(&a, WAIT_MS, &err);
        if (fd >= 0)
            close(fd);
    }
    if (exchange(&a, "hello", reply, sizeof reply, &err) < 0 || strcmp(reply, "unknown") != 0)
        fail("\"hello\" did not get \"unknown\" (%s)", reply);
    if (nd_vsock_ping(&a, WAIT_MS, reply, sizeof reply, &rtt, &err) < 0 || strcmp(reply, "pong") != 0)
        fail("the server stopped answering after bad clients: %s", err.msg);
    say("[vmtest] bad clients survived; hello -> unknown");

    /* Nothing at another port: the wording says so. */
    nd_sockaddr other;
    nd_vsock_parse("vsock:1:5999", &other, NULL);
    if (nd_vsock_connect(&other, 2000, &err) >= 0)
        fail("connect to vsock:1:5999 succeeded, nothing should listen there");
    if (!strstr(err.msg, "nothing listens at CID 1 port 5999"))
        fail("unexpected wording: %s", err.msg);
    say("[vmtest] %s", err.msg);

    /* An orphan: its parent exits at once, so it is re-parented to PID 1 (init), which must reap it. */
    int pfd[2];
    if (pipe(pfd) < 0)
        fail("pipe: %s", strerror(errno));
    pid_t y = fork();
    if (y == 0) {
        pid_t z = fork();
        if (z == 0) {
            msleep(100);
            _exit(42);
        }
        if (write(pfd[1], &z, sizeof z) != (ssize_t)sizeof z)
            _exit(1);
        _exit(0);
    }
    pid_t z = 0;
    if (read(pfd[0], &z, sizeof z) != (ssize_t)sizeof z || z <= 0)
        fail("no orphan pid");
    waitpid(y, NULL, 0);
    char zpath[64];
    snprintf(zpath, sizeof zpath, "/proc/%d", (int)z);
    for (double t1 = nd_vsock_now_ms(); access(zpath, F_OK) == 0 && nd_vsock_now_ms() - t1 < WAIT_MS;)
        msleep(20);
    if (access(zpath, F_OK) == 0)
        fail("orphan %d was not reaped by init (still in /proc)", (int)z);
    say("[vmtest] orphan pid %d reaped by PID 1", (int)z);

    /* SIGTERM to PID 1 (init) must reach the app. */
    pid_t app = find_process("/vsock-pingpong");
    if (!app)
        fail("no /vsock-pingpong process");
    kill(1, SIGTERM);
    for (double t1 = nd_vsock_now_ms(); find_process("/vsock-pingpong") && nd_vsock_now_ms() - t1 < WAIT_MS;)
        msleep(30);
    if (find_process("/vsock-pingpong"))
        fail("/vsock-pingpong (pid %d) still runs after SIGTERM to init", (int)app);
    /* init has said how the app ended once logd has its line (init writes the console first, then sends): the host
     * checks both, and a fixed pause could end before init got a CPU */
    if (!wait_file_has("/logs/cid-1.log", "[init] /vsock-pingpong exited ", WAIT_MS))
        fail("init's exit line for /vsock-pingpong did not reach logd within %d s", WAIT_MS / 1000);

    /* The log channel: stop logd (it closes its files) and show what it received. */
    kill(logd_pid, SIGTERM);
    char lpath[64];
    snprintf(lpath, sizeof lpath, "/proc/%d/stat", (int)logd_pid);
    for (double t1 = nd_vsock_now_ms(); nd_vsock_now_ms() - t1 < WAIT_MS;) {
        char st[256] = "";
        int fd = open(lpath, O_RDONLY);
        if (fd < 0)
            break;
        ssize_t n = read(fd, st, sizeof st - 1);
        close(fd);
        char *rp = n > 0 ? strrchr(st, ')') : NULL;
        if (rp && rp[1] == ' ' && rp[2] == 'Z')
            break;
        msleep(20);
    }
    DIR *d = opendir("/logs");
    struct dirent *e;
    int files = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char fp[300];
        snprintf(fp, sizeof fp, "/logs/%s", e->d_name);
        FILE *f = fopen(fp, "r");
        char line[1200];
        say("[vmtest] log file %s", fp);
        while (f && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            say("[vmtest] log: %s", line);
        }
        if (f)
            fclose(f);
        files++;
    }
    if (d)
        closedir(d);
    if (!files)
        fail("logd wrote no file in /logs");
    say("[vmtest] PASS");
    vm_exit(EXIT_PASS);
}

/* One nitrodiag-init run, as an ordinary child (not PID 1), framed by begin/end lines on the console. */
static void run_case(const char *name, const char *const *extra, const char *const *cmd)
{
    const char *argv[32];
    int k = 0;
    argv[k++] = "/nitrodiag-init";
    argv[k++] = "--no-mount";
    argv[k++] = "--linger";
    argv[k++] = "0";
    argv[k++] = "--log";
    argv[k++] = "vsock:1:9100";
    for (int i = 0; extra && extra[i]; i++)
        argv[k++] = extra[i];
    argv[k++] = "--";
    for (int i = 0; cmd[i]; i++)
        argv[k++] = cmd[i];
    argv[k] = NULL;
    say("[vmtest] case %s: begin", name);
    pid_t p = fork();
    if (p == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(126);
    }
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
        ;
    say("[vmtest] case %s: end rc=%d", name, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* Back-pressure over the real AF_VSOCK: logd is stopped (SIGSTOP: it accepts nothing more and reads nothing) while
 * an app writes 2 MB through nitrodiag-init with a 16 KiB queue. The app must finish while logd is still stopped
 * (init never waits for the parent), init's memory must stay bounded, and once logd runs again the newest lines —
 * the exit line and the drop count — arrive, with the gap said by logd. */
static void run_flood_case(void)
{
    say("[vmtest] case flood-stalled: begin");
    if (mount("proc", "/proc", "proc", 0, NULL) < 0)
        fail("mount proc: %s", strerror(errno));
    kill(logd_pid, SIGSTOP);
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = {"/nitrodiag-init", "--no-mount", "--no-checks", "--console", "/dev/null", "--linger", "2",
                        "--log-buffer", "16384", "--log", "vsock:1:9100", "--", "/vmapp", "flood", "20000", NULL};
        execv(argv[0], argv);
        _exit(126);
    }
    /* wait for the app to start, then to end, with logd stopped all along */
    int seen = 0;
    for (double t1 = nd_vsock_now_ms(); !seen && nd_vsock_now_ms() - t1 < WAIT_MS;) {
        seen = find_process("/vmapp") != 0;
        if (!seen)
            msleep(10);
    }
    int gone = 0;
    long hwm = -1;
    for (double t1 = nd_vsock_now_ms(); seen && !gone && nd_vsock_now_ms() - t1 < WAIT_MS;) {
        gone = find_process("/vmapp") == 0;
        if (!gone)
            msleep(10);
    }
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)p);
    FILE *f = fopen(path, "r");
    /* VmPeak (peak virtual size), not VmHWM: this kernel (6.1) syncs the RSS counters of a small process lazily,
     * so VmHWM reads a few kB; the virtual peak bounds the resident one and is exact. */
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmPeak:", 7) == 0)
            hwm = strtol(line + 7, NULL, 10);
    if (f)
        fclose(f);
    say("[vmtest] flood-stalled: app %s while logd was stopped; init VmPeak %ld kB", gone ? "finished" : "STALLED", hwm);
    kill(logd_pid, SIGCONT);
    int st = 0;
    while (waitpid(p, &st, 0) < 0 && errno == EINTR)
        ;
    umount("/proc");
    if (!seen || !gone)
        fail("the flooding app did not finish while the parent stopped reading (seen %d, gone %d)", seen, gone);
    if (hwm <= 0 || hwm > 4096)
        fail("init's peak virtual size %ld kB is not bounded by its 16 KiB queue", hwm);
    say("[vmtest] case flood-stalled: end rc=%d", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static void run_cases(void)
{
    static const char *const missing[] = {"/app/server", NULL};
    static const char *const script[] = {"/app/run.sh", NULL};
    static const char *const exit1[] = {"/vmapp", "exit1", NULL};
    static const char *const segv[] = {"/vmapp", "segv", NULL};
    static const char *const bindlo[] = {"/vmapp", "bind-lo", NULL};
    static const char *const lo_up[] = {"--lo-up", NULL};
    run_case("missing", NULL, missing);
    run_case("script", NULL, script);
    run_case("exit1", NULL, exit1);
    run_case("segv", NULL, segv);
    run_case("bind-lo", NULL, bindlo);
    run_case("bind-lo-up", lo_up, bindlo);
    run_flood_case();
}

int main(void)
{
    static const char *mods[] = {"/lib/modules/vsock.ko", "/lib/modules/vmw_vsock_virtio_transport_common.ko",
                                 "/lib/modules/vsock_loopback.ko"};
    say("[vmtest] pid %d: loading the vsock modules", (int)getpid());
    nd_sockaddr lo;
    nd_err err;
    nd_vsock_parse("vsock:1:5000", &lo, NULL);
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        /* Before the first module there is no AF_VSOCK at all; before vsock_loopback there is no transport: both
         * must be explained as "no vsock transport on this machine". */
        if (i == 0 || i == 2) {
            int rc = nd_vsock_connect(&lo, 1000, &err);
            if (rc >= 0 || !strstr(err.msg, "no vsock transport on this machine"))
                fail("without a vsock transport, connect gave: %s", rc >= 0 ? "a connection" : err.msg);
            say("[vmtest] before %s: %s", mods[i], err.msg);
        }
        int rc = load_module(mods[i]);
        if (rc < 0 && rc != -EEXIST)
            fail("finit_module %s: %s", mods[i], strerror(-rc));
        say("[vmtest] loaded %s", mods[i]);
    }
    /* /dev as in a real enclave (the AWS bootstrap init mounts devtmpfs): /dev/vsock, /dev/null… */
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0)
        fail("mount devtmpfs on /dev: %s", strerror(errno));

    /* The host side of the log channel: nitrodiag-logd on vsock:any:9100 (the parent's CID 3 in a real enclave; here
     * the loopback transport, CID 1). Wait until it accepts. */
    logd_pid = fork();
    if (logd_pid == 0) {
        char *largv[] = {"/logd", "--listen", "vsock:any:9100", "--dir", "/logs", NULL};
        execv("/logd", largv);
        _exit(127);
    }
    nd_sockaddr la;
    nd_vsock_parse("vsock:1:9100", &la, NULL);
    int probe = -1;
    for (double t1 = nd_vsock_now_ms(); probe < 0 && nd_vsock_now_ms() - t1 < WAIT_MS;) {
        probe = nd_vsock_connect(&la, 1000, &err);
        if (probe < 0)
            msleep(20);
    }
    if (probe < 0)
        fail("nitrodiag-logd does not accept on vsock:1:9100: %s", err.msg);
    close(probe);
    run_cases();

    pid_t c = fork();
    if (c == 0) {
        client();
        _exit(0);
    }
    if (c < 0)
        fail("fork: %s", strerror(errno));
    /* Become /init, still PID 1. The client stays our child: init inherits it and must reap it. */
    char *argv[] = {"/init", NULL};
    execv("/init", argv);
    fail("exec /init: %s", strerror(errno));
}
