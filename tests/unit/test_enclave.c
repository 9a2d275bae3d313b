/*
 * test_enclave.c — enclave/init and enclave/vsock-pingpong run as ordinary processes over unix sockets: the
 * console lines, many clients at once, bad clients that must not hurt the server, zombie reaping (init as a child
 * subreaper collects the orphans of its app) and signal forwarding. The real-kernel run (PID 1, AF_VSOCK) is
 * tests/vm. The expected outputs are the ones the issue and docs/enclave.md specify.
 *
 * This executable doubles as a misbehaving app for init: run as `test_enclave --mode orphans` it leaves orphans
 * and zombies behind and exits 7.
 */
#include "ndtest.h"
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

static char tmpdir[512];
static char self_exe[4096];
#define INIT_BIN ND_BINARY_DIR "/enclave/nitrodiag-init"
#define PP_BIN ND_BINARY_DIR "/enclave/vsock-pingpong"

static void msleep(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts argv with extra environment entries (NULL-terminated "K=V"), stdout+stderr appended to `out`. */
static pid_t spawn(const char *const *argv, const char *const *env_extra, const char *out)
{
    pid_t p = fork();
    if (p == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        unsetenv("VSOCK_PINGPONG_MODE");
        unsetenv("VSOCK_PINGPONG_LISTEN");
        for (int i = 0; env_extra && env_extra[i]; i++)
            putenv((char *)env_extra[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return p;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return calloc(1, 1);
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Every wait below ends as soon as its condition holds; ms is what it needs on an idle machine, but a loaded one (a
 * CI runner with two CPUs running the suite in parallel) can take far longer: no wait gives up before this. */
#define WAIT_FLOOR_MS 30000

/* Waits up to ms (at least WAIT_FLOOR_MS, on the clock) for `needle` to appear in the file; returns 1 when it did. */
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
    fprintf(stderr, "  timed out waiting for \"%s\" in %s\n", needle, path);
    char *s = slurp(path);
    fprintf(stderr, "  --- %s ---\n%s  ---\n", path, s);
    free(s);
    return 0;
}

static int count_of(const char *path, const char *needle)
{
    char *s = slurp(path);
    int n = 0;
    for (char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
        n++;
    free(s);
    return n;
}

static void stop(pid_t p)
{
    if (p > 0) {
        kill(p, SIGKILL);
        waitpid(p, NULL, 0);
    }
}

/* State of pid from /proc/PID/stat ('R', 'S', 'Z'…), or 0 when gone. */
static char proc_state(pid_t pid, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    char st = 0;
    int pp = 0;
    if (!rp || sscanf(rp + 1, " %c %d", &st, &pp) != 2)
        return 0;
    if (ppid)
        *ppid = pp;
    return st;
}

/* Children of parent in the zombie state. */
static int zombies_of(pid_t parent)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        pid_t pid = atoi(e->d_name);
        pid_t pp = 0;
        if (pid > 0 && proc_state(pid, &pp) == 'Z' && pp == parent)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

static int connect_unix(const char *addr)
{
    nd_sockaddr a;
    if (nd_vsock_parse(addr, &a, NULL) < 0)
        return -1;
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    do { /* the server may still be starting */
        int fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
        if (fd >= 0)
            return fd;
        msleep(20);
    } while (nd_vsock_now_ms() < deadline);
    return -1;
}

static int exchange(int fd, const char *msg, char *reply, size_t n)
{
    if (nd_vsock_write_all(fd, msg, strlen(msg), WAIT_FLOOR_MS, NULL, NULL) < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < n) {
        ssize_t r = nd_vsock_read(fd, reply + got, n - 1 - got, WAIT_FLOOR_MS, NULL, NULL);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    reply[got] = '\0';
    return (int)got;
}

static void path_in_tmp(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* ---- vsock-pingpong ------------------------------------------------------------------------------------------- */

static void pingpong_many_clients(void)
{
    char sock[600], addr[700], log[600];
    path_in_tmp(sock, sizeof sock, "pp.sock");
    path_in_tmp(log, sizeof log, "pp.log");
    snprintf(addr, sizeof addr, "unix:%s", sock);
    const char *argv[] = {PP_BIN, "--mode", "vsock", "--listen", addr, NULL};
    pid_t pp = spawn(argv, NULL, log);
    CHECK(wait_for(log, "[enclave] mode=vsock", 3000));
    CHECK(wait_for(log, "listening on", 3000));

    /* A silent client first: it must not hold up anybody else. */
    int silent = connect_unix(addr);
    CHECK(silent >= 0);

    /* 40 clients connected at the same time, then each sends ping. */
    enum { N = 40 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_unix(addr);
        CHECK(fds[i] >= 0);
    }
    int pongs = 0;
    for (int i = 0; i < N; i++) {
        char reply[32];
        if (fds[i] >= 0 && exchange(fds[i], "ping", reply, sizeof reply) == 4 && strcmp(reply, "pong") == 0)
            pongs++;
        close(fds[i]);
    }
    CHECK_EQ_INT(pongs, N);

    /* Anything else gets "unknown". */
    int fd = connect_unix(addr);
    char reply[32] = "";
    exchange(fd, "hello", reply, sizeof reply);
    CHECK_EQ_STR(reply, "unknown");
    close(fd);
    CHECK(wait_for(log, "[enclave] received: \"hello\"", 2000));

    /* Bad clients: connect and leave; garbage longer than 16 bytes then leave without reading; binary bytes. */
    for (int i = 0; i < 5; i++)
        close(connect_unix(addr));
    fd = connect_unix(addr);
    const char junk[] = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz";
    nd_vsock_write_all(fd, junk, sizeof junk - 1, 1000, NULL, NULL);
    close(fd);
    fd = connect_unix(addr);
    nd_vsock_write_all(fd, "\x01\x02\xff", 3, 1000, NULL, NULL);
    shutdown(fd, SHUT_WR);
    exchange(fd, "", reply, sizeof reply);
    CHECK_EQ_STR(reply, "unknown");
    close(fd);
    CHECK(wait_for(log, "received: \"\\x01\\x02\\xff\"", 2000));

    /* Still serving, still alive. */
    nd_sockaddr a;
    nd_vsock_parse(addr, &a, NULL);
    double rtt = -1;
    char pr[32];
    CHECK_EQ_INT(nd_vsock_ping(&a, WAIT_FLOOR_MS, pr, sizeof pr, &rtt, NULL), 0);
    CHECK_EQ_STR(pr, "pong");
    CHECK(rtt >= 0 && rtt < WAIT_FLOOR_MS);
    CHECK(proc_state(pp, NULL) != 0 && proc_state(pp, NULL) != 'Z');
    CHECK(count_of(log, "[enclave] received: \"ping\"") >= N + 1);
    close(silent);
    stop(pp);
}

static void pingpong_modes_and_errors(void)
{
    char log[600];
    path_in_tmp(log, sizeof log, "modes.log");
    /* basic: alive, sleeping (mode from the environment). */
    const char *argv[] = {PP_BIN, NULL};
    const char *env[] = {"VSOCK_PINGPONG_MODE=basic", NULL};
    pid_t p = spawn(argv, env, log);
    CHECK(wait_for(log, "[enclave] mode=basic\n[enclave] basic mode: alive; sleeping forever\n", 3000));
    /* it sleeps (a busy loop would never be seen in S); right after its line it may still be runnable, waiting for a
     * CPU on a loaded machine: look until it is seen asleep */
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    while (proc_state(p, NULL) != 'S' && nd_vsock_now_ms() < deadline)
        msleep(20);
    CHECK(proc_state(p, NULL) == 'S');
    stop(p);

    /* unknown mode, bad address: exit 2 with one clear line. */
    int st = 0;
    const char *bad_mode[] = {PP_BIN, "--mode", "bogus", NULL};
    waitpid(spawn(bad_mode, NULL, log), &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    CHECK(wait_for(log, "[enclave] error: unknown mode \"bogus\" (expected basic, vsock or kms)", 1000));
    const char *bad_addr[] = {PP_BIN, "--listen", "vsock:x:5000", NULL};
    waitpid(spawn(bad_addr, NULL, log), &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    CHECK(wait_for(log, "[enclave] error: bad address \"vsock:x:5000\": CID \"x\" is not a number", 1000));

    /* kms mode without pingpong_kms.c: a clear error and exit 2. */
    struct stat sb;
    if (stat(ND_SOURCE_DIR "/enclave/pingpong_kms.c", &sb) != 0) {
        const char *kms[] = {PP_BIN, "--mode", "kms", NULL};
        waitpid(spawn(kms, NULL, log), &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
        CHECK(wait_for(log, "[enclave] error: kms mode is not built into this vsock-pingpong", 1000));
    }
}

/* ---- init ----------------------------------------------------------------------------------------------------- */

static void init_launches_and_forwards_signals(void)
{
    char console[600], sock[600], addr[700];
    path_in_tmp(console, sizeof console, "init1.console");
    path_in_tmp(sock, sizeof sock, "init1.sock");
    snprintf(addr, sizeof addr, "unix:%s", sock);
    char listen_env[800];
    snprintf(listen_env, sizeof listen_env, "VSOCK_PINGPONG_LISTEN=%s", addr);
    /* Mode from VSOCK_PINGPONG_MODE (as the image's ENV sets it), listen address through the environment. */
    const char *argv[] = {INIT_BIN, "--app", PP_BIN, "--console", console, NULL};
    const char *env[] = {"VSOCK_PINGPONG_MODE=vsock", listen_env, NULL};
    pid_t init = spawn(argv, env, "/dev/null");
    CHECK(wait_for(console, "[init] starting\n", 3000));
    CHECK(wait_for(console, "[init] launching " PP_BIN " --mode vsock\n", 3000));
    CHECK(wait_for(console, "[enclave] mode=vsock\n", 3000));
    CHECK(wait_for(console, "[init] proc already mounted on /proc", 100));

    nd_sockaddr a;
    nd_vsock_parse(addr, &a, NULL);
    char reply[32] = "";
    double rtt;
    int rc = -1;
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    for (;;) { /* the app may not listen yet */
        rc = nd_vsock_ping(&a, WAIT_FLOOR_MS, reply, sizeof reply, &rtt, NULL);
        if (rc == 0 || nd_vsock_now_ms() > deadline)
            break;
        msleep(20);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(reply, "pong");
    CHECK(wait_for(console, "[enclave] received: \"ping\"", 2000));

    /* SIGTERM to init reaches the app, which dies of it; init reports it and stays alive. */
    kill(init, SIGTERM);
    CHECK(wait_for(console, "[init] forwarding SIGTERM to " PP_BIN, 3000));
    CHECK(wait_for(console, "[init] " PP_BIN " exited signal=15 (SIGTERM) after ", 3000));
    msleep(100);
    char st = proc_state(init, NULL);
    CHECK(st == 'S' || st == 'R');
    kill(init, SIGINT);
    CHECK(wait_for(console, "[init] SIGINT received; " PP_BIN " is not running; staying alive", 3000));
    CHECK_EQ_INT(zombies_of(init), 0);
    stop(init);
}

static void init_forwards_sigint_and_mode_flag(void)
{
    char console[600];
    path_in_tmp(console, sizeof console, "init2.console");
    /* --mode wins over the environment. */
    const char *argv[] = {INIT_BIN, "--mode", "basic", "--app", PP_BIN, "--console", console, "--no-mount", NULL};
    const char *env[] = {"VSOCK_PINGPONG_MODE=vsock", NULL};
    pid_t init = spawn(argv, env, "/dev/null");
    CHECK(wait_for(console, "[init] launching " PP_BIN " --mode basic\n", 3000));
    CHECK(wait_for(console, "[enclave] basic mode: alive; sleeping forever", 3000));
    CHECK_EQ_INT(count_of(console, "mounted"), 0);
    kill(init, SIGINT);
    CHECK(wait_for(console, "[init] " PP_BIN " exited signal=2 (SIGINT) after ", 3000));
    stop(init);
}

static void init_reaps_orphans(void)
{
    char console[600];
    path_in_tmp(console, sizeof console, "init3.console");
    const char *argv[] = {INIT_BIN, "--mode", "orphans", "--app", self_exe, "--console", console, NULL};
    pid_t init = spawn(argv, NULL, "/dev/null");
    CHECK(wait_for(console, "[init] " , 3000));
    CHECK(wait_for(console, " exited rc=7 after ", 5000));
    /* 5 children left as zombies by the app plus 5 orphaned grandchildren: all reaped by init. */
    double deadline = nd_vsock_now_ms() + WAIT_FLOOR_MS;
    while (count_of(console, "[init] reaped pid") < 10 && nd_vsock_now_ms() < deadline)
        msleep(20);
    CHECK_EQ_INT(count_of(console, "[init] reaped pid"), 10);
    CHECK_EQ_INT(zombies_of(init), 0);
    CHECK(wait_for(console, "[init] staying alive so the console stays readable", 1000));
    stop(init);
}

static void init_missing_app(void)
{
    char console[600];
    path_in_tmp(console, sizeof console, "init4.console");
    const char *argv[] = {INIT_BIN, "--app", "/nonexistent/vsock-pingpong", "--console", console, NULL};
    pid_t init = spawn(argv, NULL, "/dev/null");
    CHECK(wait_for(console, "[init] cannot run /nonexistent/vsock-pingpong: No such file or directory", 3000));
    CHECK(wait_for(console, "[init] /nonexistent/vsock-pingpong exited rc=127", 3000));
    stop(init);
    int st = 0;
    const char *bad[] = {INIT_BIN, "--bogus", NULL};
    waitpid(spawn(bad, NULL, console), &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

/* The misbehaving app: children that exit at once and are never waited for (zombies), and grandchildren that
 * outlive their parents (orphans). */
static int orphan_maker(void)
{
    for (int i = 0; i < 5; i++) {
        pid_t c = fork();
        if (c == 0) {
            if (fork() == 0) {
                msleep(200);
                _exit(0);
            }
            _exit(0);
        }
    }
    msleep(500);
    return 7;
}


/* Waits for pid to end (up to ms, at least WAIT_FLOOR_MS); returns its wait status, or -1 (then kills it). */
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
    stop(pid);
    return -1;
}

/* Writes a file with mode; returns 0. */
static int put_file(const char *path, const void *data, size_t n, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, data, n);
    close(fd);
    chmod(path, mode);
    return w == (ssize_t)n ? 0 : -1;
}

/* The command from ND_INIT_CMD, the check lines (names of variables, never their values), the exec report, the
 * exit line with the run time, and --linger: init ends with the app's status after the linger time. */
static void init_checks_env_command_and_linger(void)
{
    char console[600];
    path_in_tmp(console, sizeof console, "init5.console");
    const char *argv[] = {INIT_BIN, "--console", console, "--no-mount", "--linger", "0.3", NULL};
    const char *env[] = {"ND_INIT_CMD=/bin/sh\t/nonexistent/nd-script.sh  arg", "SECRET_TOKEN=hunter2-do-not-log", NULL};
    double t0 = nd_vsock_now_ms();
    pid_t init = spawn(argv, env, "/dev/null");
    int st = wait_exit(init, 10000);
    double took = nd_vsock_now_ms() - t0;
    /* sh cannot open the script: dash and bash both exit 127 or 2; init exits with that status */
    CHECK(st != -1 && WIFEXITED(st) && (WEXITSTATUS(st) == 127 || WEXITSTATUS(st) == 2));
    CHECK(took >= 300);
    char *s = slurp(console);
    CHECK(strstr(s, "[init] check kernel ok: Linux ") != NULL);
    CHECK(strstr(s, "[init] check memory ") != NULL);
    CHECK(strstr(s, "[init] check command ok: /bin/sh (ELF ") != NULL);
    CHECK(strstr(s, "[init] check nsm ") != NULL);
    CHECK(strstr(s, "[init] check vsock ") != NULL);
    CHECK(strstr(s, "[init] check loopback ") != NULL);
    CHECK(strstr(s, "[init] check ca-bundle ") != NULL);
    CHECK(strstr(s, "[init] check clock ") != NULL);
    CHECK(strstr(s, "[init] check env info: ") != NULL && strstr(s, " SECRET_TOKEN") != NULL);
    CHECK(strstr(s, "hunter2") == NULL); /* values are never printed */
    CHECK(strstr(s, "[init] check log info: console only") != NULL);
    CHECK(strstr(s, "[init] launching /bin/sh /nonexistent/nd-script.sh arg\n") != NULL);
    CHECK(strstr(s, "[init] started /bin/sh (pid ") != NULL);
    CHECK(strstr(s, "[init] /bin/sh exited rc=") != NULL && strstr(s, " after ") != NULL);
    CHECK(strstr(s, "[init] staying alive for 0.3 s so the evidence can be read, then exiting\n") != NULL);
    free(s);
}

/* What makes execve fail although the file is there: a script whose interpreter is missing (#! and #!/usr/bin/env),
 * a dynamically linked binary whose loader is missing (a copy of /bin/true with its PT_INTERP changed), a file that
 * is neither ELF nor script, a file that is not executable. Each is named by the check line before the exec, and
 * init reports the exec failure it predicted. */
static void init_explains_exec_failures(void)
{
    char console[600], p1[600], p2[600], p3[600], p4[600], p5[600];
    path_in_tmp(console, sizeof console, "init6.console");
    path_in_tmp(p1, sizeof p1, "app-python.sh");
    path_in_tmp(p2, sizeof p2, "app-env.sh");
    path_in_tmp(p3, sizeof p3, "app-noloader");
    path_in_tmp(p4, sizeof p4, "app-text");
    path_in_tmp(p5, sizeof p5, "app-noexec");
    CHECK_EQ_INT(put_file(p1, "#!/usr/bin/python3.99 -u\nprint(1)\n", 33, 0755), 0);
    CHECK_EQ_INT(put_file(p2, "#!/usr/bin/env nd-no-such-interpreter\n", 38, 0755), 0);
    CHECK_EQ_INT(put_file(p4, "just text\n", 10, 0755), 0);
    CHECK_EQ_INT(put_file(p5, "#!/bin/sh\n", 10, 0644), 0);
    /* /bin/true with its loader renamed: same length, so the ELF stays valid. */
    char *elf = NULL;
    size_t elf_len = 0;
    FILE *f = fopen("/bin/true", "rb");
    if (f) {
        elf = malloc(4 << 20);
        elf_len = fread(elf, 1, 4 << 20, f);
        fclose(f);
    }
    const char *loader = "/lib64/ld-linux-x86-64.so.2";
    char *at = elf ? memmem(elf, elf_len, loader, strlen(loader)) : NULL;
    int have_loader_case = at != NULL;
    if (at) {
        memcpy(at, "/nonexistent/ld-nd-test.so", strlen(loader)); /* 27 bytes, NUL included at the end */
        CHECK_EQ_INT(put_file(p3, elf, elf_len, 0755), 0);
    }
    free(elf);
    const char *apps[] = {p1, p2, have_loader_case ? p3 : NULL, p4, p5};
    const char *want[] = {": script; its interpreter /usr/bin/python3.99 (from #!) cannot run: /usr/bin/python3.99: No such file or directory",
                          ": script for `/usr/bin/env nd-no-such-interpreter`, and nd-no-such-interpreter is not on PATH",
                          ": dynamically linked, and its loader /nonexistent/ld-nd-test.so is missing from the image",
                          ": neither an ELF binary nor a #! script (execve fails with Exec format error)",
                          ": not executable (mode 0644)"};
    /* NULL: the exec succeeds (/usr/bin/env exists) and env itself ends with 127 */
    const char *exec_err[] = {"No such file or directory", NULL, "No such file or directory", "Exec format error",
                              "Permission denied"};
    for (size_t i = 0; i < sizeof apps / sizeof apps[0]; i++) {
        if (!apps[i])
            continue;
        unlink(console);
        const char *argv[] = {INIT_BIN, "--console", console, "--no-mount", "--linger", "0", "--", apps[i], NULL};
        pid_t init = spawn(argv, NULL, "/dev/null");
        int st = wait_exit(init, 10000);
        CHECK(st != -1 && WIFEXITED(st) && (WEXITSTATUS(st) == 127 || WEXITSTATUS(st) == 126));
        char line[1200];
        snprintf(line, sizeof line, "[init] check command fail: %s%s", apps[i], want[i]);
        CHECK(wait_for(console, line, 100));
        if (exec_err[i])
            snprintf(line, sizeof line, "[init] cannot run %s: %s\n", apps[i], exec_err[i]);
        else
            snprintf(line, sizeof line, "[init] %s exited rc=127 after ", apps[i]);
        CHECK(wait_for(console, line, 100));
    }
    if (!have_loader_case)
        fprintf(stderr, "  note: /bin/true has no %s; the missing-loader case was not run\n", loader);
}

/* Signals other than TERM/INT reach the app too, and usage errors exit 2 with one line. */
static void init_forwards_usr1_and_refuses_bad_usage(void)
{
    char console[600], out[600];
    path_in_tmp(console, sizeof console, "init7.console");
    path_in_tmp(out, sizeof out, "init7.out");
    const char *argv[] = {INIT_BIN, "--console", console, "--no-mount", "--no-checks", "--linger", "0", "--",
                          "/bin/sleep", "30", NULL};
    pid_t init = spawn(argv, NULL, "/dev/null");
    CHECK(wait_for(console, "[init] started /bin/sleep", 3000));
    char *text = slurp(console);
    CHECK(!strstr(text, "[init] check ")); /* --no-checks */
    free(text);
    kill(init, SIGUSR1);
    CHECK(wait_for(console, "[init] forwarding SIGUSR1 to /bin/sleep", 3000));
    CHECK(wait_for(console, "[init] /bin/sleep exited signal=10 (SIGUSR1) after ", 3000));
    int st = wait_exit(init, 5000);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGUSR1);
    const char *bad1[] = {INIT_BIN, "--", NULL};
    const char *bad2[] = {INIT_BIN, "--linger", "soon", "--", "/bin/true", NULL};
    const char *bad3[] = {INIT_BIN, "--log", "vsock:3", "--", "/bin/true", NULL};
    const char *const *bads[] = {bad1, bad2, bad3};
    const char *msgs[] = {"[init] error: nothing after --", "[init] error: --linger wants seconds, got \"soon\"",
                          "[init] error: --log vsock:3: bad address"};
    for (int i = 0; i < 3; i++) {
        unlink(out);
        st = wait_exit(spawn(bads[i], NULL, out), 5000);
        CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 2);
        CHECK(wait_for(out, msgs[i], 100));
    }
}

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--mode") == 0 && strcmp(argv[2], "orphans") == 0)
        return orphan_maker();
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    self_exe[n > 0 ? n : 0] = '\0';
    signal(SIGPIPE, SIG_IGN);
    /* unix socket paths are short (108 bytes): use /tmp, not the build tree. */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nd-enclave-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    ND_RUN(pingpong_many_clients);
    ND_RUN(pingpong_modes_and_errors);
    ND_RUN(init_launches_and_forwards_signals);
    ND_RUN(init_forwards_sigint_and_mode_flag);
    ND_RUN(init_reaps_orphans);
    ND_RUN(init_missing_app);
    ND_RUN(init_checks_env_command_and_linger);
    ND_RUN(init_explains_exec_failures);
    ND_RUN(init_forwards_usr1_and_refuses_bad_usage);
    rmtree(tmpdir);
    return nd_test_summary();
}
