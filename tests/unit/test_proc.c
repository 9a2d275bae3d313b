/* test_proc.c — the process runner: capture, tail cap, timeouts, group kill, not found, streaming, stdin. */
#include "ndtest.h"
#include "nd_proc.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

/* Seconds on the monotonic clock (the waits below are bounded by a deadline, not by a count of naps). */
static double now_s(void)
{
    return (double)uv_hrtime() / 1e9;
}

/* Waits (polling, up to secs) until path holds a whole line "<pid>\n" and returns the pid, or 0. The shell creates
 * the file (the redirection) before echo writes into it, so the file existing says nothing yet. */
static int wait_pid_line(const char *path, double secs)
{
    double t0 = now_s();
    do {
        FILE *f = fopen(path, "r");
        if (f) {
            char line[64] = "";
            bool whole = fgets(line, sizeof line, f) && strchr(line, '\n');
            fclose(f);
            if (whole && atoi(line) > 0)
                return atoi(line);
        }
        usleep(10000);
    } while (now_s() - t0 < secs);
    return 0;
}

/* Whether pid is gone or only a zombie (not yet reaped by whoever inherited it), within secs. */
static bool dead_within(int pid, double secs)
{
    double t0 = now_s();
    for (;;) {
        if (kill(pid, 0) != 0)
            return true;
        char p[64], buf[512];
        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        FILE *f = fopen(p, "r");
        if (f) {
            size_t len = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[len] = 0;
            const char *rp = strrchr(buf, ')');
            if (rp && (rp[2] == 'Z' || rp[2] == 'X'))
                return true;
        }
        if (now_s() - t0 > secs)
            return false;
        usleep(10000);
    }
}

static void echo_and_exit_code(void)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    nd_proc_opts o = {.argv = argv};
    nd_proc_result r;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_INT(r.exit_code, 3);
    CHECK_EQ_STR(r.out.data, "out\n");
    CHECK_EQ_STR(r.err.data, "err\n");
    CHECK(!r.timed_out && !r.out.truncated);
    nd_proc_result_free(&r);
}

static void tail_is_kept(void)
{
    const char *argv[] = {"sh", "-c", "seq 1 100000", NULL};
    nd_proc_opts o = {.argv = argv, .capture_cap = 16};
    nd_proc_result r;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK(r.out.truncated);
    CHECK_EQ_INT(r.out.len, 16);
    CHECK(strcmp(r.out.data + r.out.len - 14, "\n99999\n100000\n") == 0);
    CHECK_EQ_INT(r.out.total, 588895);
    nd_proc_result_free(&r);
}

static void not_found_and_denied(void)
{
    const char *argv[] = {"/nonexistent/nitro-cli", "describe-enclaves", NULL};
    nd_proc_opts o = {.argv = argv};
    nd_proc_result r;
    char buf[256];
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_INT(r.spawn_error, -ENOENT);
    CHECK_EQ_STR(nd_proc_describe(&r, argv[0], buf, sizeof buf), "command not found: /nonexistent/nitro-cli");
    nd_proc_result_free(&r);

    char plain[] = "/tmp/nd_proc_plain_XXXXXX"; /* exists, but not executable */
    int fd = mkstemp(plain);
    CHECK(fd >= 0);
    close(fd);
    const char *argv2[] = {plain, NULL};
    o.argv = argv2;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_INT(r.spawn_error, -EACCES);
    CHECK(strncmp(nd_proc_describe(&r, argv2[0], buf, sizeof buf), "permission denied: /tmp/", 24) == 0);
    nd_proc_result_free(&r);
    unlink(plain);
}

/* A timeout must take down the whole tree, including a grandchild that ignores nothing and a child that traps TERM.
 * The timeout leaves the shell ample time to set its trap and write the grandchild's pid even on a loaded machine
 * (with 0.5 s, a slow shell was still starting when TERM came: it died of TERM, with no pid written); the commands
 * sleep 100 s, so ending well before that can only be the timeout and the grace kill. */
static void timeout_kills_group(void)
{
    char pidfile[] = "/tmp/nd_proc_test_XXXXXX";
    int fd = mkstemp(pidfile);
    CHECK(fd >= 0);
    close(fd);
    char script[512];
    snprintf(script, sizeof script, "sleep 100 & echo $! > %s; trap '' TERM; sleep 100; wait", pidfile);
    const char *argv[] = {"sh", "-c", script, NULL};
    nd_proc_opts o = {.argv = argv, .timeout_s = 5, .kill_grace_s = 0.3};
    nd_proc_result r;
    uint64_t t0 = uv_hrtime();
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    double el = (double)(uv_hrtime() - t0) / 1e9;
    CHECK(r.timed_out);
    CHECK(el < 60.0); /* not the 100 s of the sleeps */
    CHECK_EQ_INT(r.term_signal, SIGKILL); /* the shell traps TERM, so the grace SIGKILL ended it */
    int gpid = wait_pid_line(pidfile, 1); /* written long before the timeout: no real wait here */
    unlink(pidfile);
    CHECK(gpid > 0);
    /* the grandchild is gone too (killed with the group; its new parent reaps it when it gets to it) */
    CHECK(gpid > 0 && dead_within(gpid, 30));
    nd_proc_result_free(&r);
}

static void set_done(nd_proc *proc, void *ud)
{
    (void)proc;
    *(bool *)ud = true;
}

/* What a command already wrote is in nd_proc_peek even when the loop has not polled since: the loop never runs here
 * between the start and the peek, and the command writes its pid only after its output. An interrupted command's
 * record keeps every byte it printed before the interruption, however late the loop would have read it. */
static void peek_has_unread_output(void)
{
    char pidfile[] = "/tmp/nd_proc_peek_XXXXXX";
    int fd = mkstemp(pidfile);
    CHECK(fd >= 0);
    close(fd);
    char script[512];
    snprintf(script, sizeof script, "echo partial; echo oops >&2; echo $$ > %s; exec sleep 30", pidfile);
    const char *argv[] = {"sh", "-c", script, NULL};
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    nd_ctx ctx;
    nd_ctx_init(&ctx, &loop);
    bool done = false;
    nd_proc *p = NULL;
    nd_proc_opts o = {.argv = argv, .kill_grace_s = 0.3};
    CHECK_EQ_INT(nd_proc_start(&ctx, &o, set_done, &done, &p, NULL), 0);
    CHECK(wait_pid_line(pidfile, 60) > 0);
    nd_proc_result r;
    CHECK_EQ_INT(nd_proc_peek(p, &r), 0);
    CHECK_EQ_STR(r.out.data, "partial\n");
    CHECK_EQ_STR(r.err.data, "oops\n");
    CHECK_EQ_INT(r.out.total, 8);
    nd_proc_result_free(&r);
    /* peeking again reads nothing twice */
    CHECK_EQ_INT(nd_proc_peek(p, &r), 0);
    CHECK_EQ_STR(r.out.data, "partial\n");
    nd_proc_result_free(&r);
    nd_proc_cancel(p);
    double t0 = now_s();
    while (!done && now_s() - t0 < 60)
        uv_run(&loop, UV_RUN_ONCE);
    CHECK(done);
    CHECK(nd_proc_result_of(p)->cancelled);
    CHECK_EQ_INT(nd_proc_result_of(p)->term_signal, SIGTERM);
    nd_proc_free(p);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    unlink(pidfile);
}

static void stdin_is_fed(void)
{
    const char *argv[] = {"tr", "a-z", "A-Z", NULL};
    nd_proc_opts o = {.argv = argv, .stdin_data = "hello nitro", .stdin_len = 11};
    nd_proc_result r;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_STR(r.out.data, "HELLO NITRO");
    nd_proc_result_free(&r);
}

static char lines_seen[256];
static void on_line(void *ud, int stream, const char *line, size_t len)
{
    (void)ud;
    size_t n = strlen(lines_seen);
    snprintf(lines_seen + n, sizeof lines_seen - n, "%d:%.*s|", stream, (int)len, line);
}

static void streaming_lines(void)
{
    const char *argv[] = {"sh", "-c", "echo a; echo b; printf c", NULL};
    nd_proc_opts o = {.argv = argv, .on_line = on_line};
    nd_proc_result r;
    lines_seen[0] = 0;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_STR(lines_seen, "1:a|1:b|1:c|");
    nd_proc_result_free(&r);
}

static void env_and_cwd(void)
{
    const char *argv[] = {"/bin/sh", "-c", "echo \"$FOO\"; pwd", NULL};
    const char *env[] = {"FOO=bar", "PATH=/usr/bin:/bin", NULL};
    nd_proc_opts o = {.argv = argv, .env = env, .cwd = "/tmp"};
    nd_proc_result r;
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    CHECK_EQ_STR(r.out.data, "bar\n/tmp\n");
    nd_proc_result_free(&r);
}

static void empty_argv_is_an_error(void)
{
    const char *argv[] = {NULL};
    nd_proc_opts o = {.argv = argv};
    nd_proc_result r;
    nd_err e;
    CHECK_EQ_INT(nd_proc_run(&o, &r, &e), -EINVAL);
}

/* Live (not zombie) processes in process group pgid. */
static int group_size(int pgid)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        char p[64], buf[512];
        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        const char *rp = strrchr(buf, ')');
        char state;
        int ppid, pg;
        if (rp && sscanf(rp + 2, "%c %d %d", &state, &ppid, &pg) == 3 && pg == pgid && state != 'Z' && state != 'X')
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* SIGKILL of the owner: the watchdog kills every command group still running (the child and its own children),
 * and a command that ended is forgotten (its pid may be reused by another program). */
static void watchdog_kills_orphans(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t owner = fork();
    if (owner == 0) {
        /* the "nitrodiag" process: a loop, the watchdog, one command that ends and one that would run forever */
        close(fds[0]);
        uv_loop_t loop;
        uv_loop_init(&loop);
        nd_ctx ctx;
        nd_ctx_init(&ctx, &loop);
        if (nd_proc_watchdog_start(&ctx, NULL) < 0)
            _exit(2);
        const char *quick[] = {"true", NULL};
        nd_proc *q = NULL;
        nd_proc_opts qo = {.argv = quick};
        nd_proc_start(&ctx, &qo, NULL, NULL, &q, NULL);
        while (!nd_proc_result_of(q)->duration_s && uv_run(&loop, UV_RUN_ONCE))
            ;
        /* the group leader's pid is written once nd_proc_start has returned, i.e. once the group is registered (a
         * kill in the instant between a spawn and its registration is the documented limit, not what this tests) */
        const char *argv[] = {"sh", "-c", "sleep 300 & wait", NULL};
        nd_proc *p = NULL;
        nd_proc_opts o = {.argv = argv};
        nd_proc_start(&ctx, &o, NULL, NULL, &p, NULL);
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d\n", nd_proc_result_of(p)->pid);
        if (write(fds[1], buf, (size_t)n) != n)
            _exit(3);
        for (;;)
            if (uv_run(&loop, UV_RUN_ONCE) == 0)
                pause(); /* until killed */
    }
    close(fds[1]);
    char line[64] = "";
    FILE *f = fdopen(fds[0], "r");
    CHECK(f && fgets(line, sizeof line, f) != NULL);
    int shpid = atoi(line);
    CHECK(shpid > 0);
    /* wait (bounded by a deadline, polling) until the group has its second member (the sleep) */
    double t0 = now_s();
    while (group_size(shpid) < 2 && now_s() - t0 < 60)
        usleep(25000);
    CHECK(group_size(shpid) >= 2);
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    /* both must die without anyone signalling them but the watchdog */
    bool gone = false;
    t0 = now_s();
    while (!gone) {
        gone = group_size(shpid) == 0;
        if (gone || now_s() - t0 > 60)
            break;
        usleep(25000);
    }
    CHECK(gone);
    if (!gone) /* do not leave them behind in the test run */
        kill(-shpid, SIGKILL);
    if (f)
        fclose(f);
}

int main(void)
{
    ND_RUN(echo_and_exit_code);
    ND_RUN(tail_is_kept);
    ND_RUN(not_found_and_denied);
    ND_RUN(timeout_kills_group);
    ND_RUN(peek_has_unread_output);
    ND_RUN(stdin_is_fed);
    ND_RUN(streaming_lines);
    ND_RUN(env_and_cwd);
    ND_RUN(empty_argv_is_an_error);
    ND_RUN(watchdog_kills_orphans);
    return nd_test_summary();
}
