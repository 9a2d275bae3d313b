/* test_proc.c — the process runner: capture, tail cap, timeouts, group kill, not found, streaming, stdin. */
#include "ndtest.h"
#include "nd_proc.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

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

/* A timeout must take down the whole tree, including a grandchild that ignores nothing and a child that traps TERM. */
static void timeout_kills_group(void)
{
    char pidfile[] = "/tmp/nd_proc_test_XXXXXX";
    int fd = mkstemp(pidfile);
    CHECK(fd >= 0);
    close(fd);
    char script[512];
    snprintf(script, sizeof script, "sleep 100 & echo $! > %s; trap '' TERM; sleep 100; wait", pidfile);
    const char *argv[] = {"sh", "-c", script, NULL};
    nd_proc_opts o = {.argv = argv, .timeout_s = 0.5, .kill_grace_s = 0.3};
    nd_proc_result r;
    uint64_t t0 = uv_hrtime();
    CHECK_EQ_INT(nd_proc_run(&o, &r, NULL), 0);
    double el = (double)(uv_hrtime() - t0) / 1e9;
    CHECK(r.timed_out);
    CHECK(el < 3.0);
    CHECK_EQ_INT(r.term_signal, SIGKILL); /* the shell traps TERM, so the grace SIGKILL ended it */
    FILE *f = fopen(pidfile, "r");
    int gpid = 0;
    if (f) {
        if (fscanf(f, "%d", &gpid) != 1)
            gpid = 0;
        fclose(f);
    }
    unlink(pidfile);
    CHECK(gpid > 0);
    usleep(100000);
    CHECK(gpid > 0 && kill(gpid, 0) != 0); /* the grandchild is gone too */
    nd_proc_result_free(&r);
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

int main(void)
{
    ND_RUN(echo_and_exit_code);
    ND_RUN(tail_is_kept);
    ND_RUN(not_found_and_denied);
    ND_RUN(timeout_kills_group);
    ND_RUN(stdin_is_fed);
    ND_RUN(streaming_lines);
    ND_RUN(env_and_cwd);
    ND_RUN(empty_argv_is_an_error);
    return nd_test_summary();
}
