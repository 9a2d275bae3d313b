/*
 * nd_proc.h — the process runner: every external command nitrodiag runs (nitro-cli, docker, systemctl, journalctl,
 * the collectors' commands) goes through here.
 *
 * A command runs from an argv, never through a shell, in its own process group (so a timeout can take down the whole
 * tree), with optional env/cwd/stdin data. stdout and stderr are captured up to a cap that keeps the TAIL, and can
 * also be streamed line by line as they arrive. A timeout sends SIGTERM to the group, then SIGKILL after a grace
 * period. When the command exits, anything it left behind in its process group is killed, so no command leaves an
 * orphan; libuv reaps the child, so none leaves a zombie.
 */
#ifndef ND_PROC_H
#define ND_PROC_H

#include "nd.h"

enum { ND_PROC_STDOUT = 1, ND_PROC_STDERR = 2 };

/* Called for each complete line (without its '\n'), or for a partial line at EOF or past the line cap. */
typedef void (*nd_proc_line_cb)(void *ud, int stream, const char *line, size_t len);

typedef struct nd_proc_opts {
    const char *const *argv;  /* NULL-terminated; argv[0] is looked up on PATH when it has no '/' */
    const char *const *env;   /* NULL-terminated "K=V" list replacing the environment, or NULL to inherit */
    const char *cwd;          /* NULL: inherit */
    const char *stdin_data;   /* NULL: stdin is /dev/null */
    size_t stdin_len;
    double timeout_s;         /* <= 0: no timeout */
    double kill_grace_s;      /* SIGTERM→SIGKILL delay after a timeout or cancel; <= 0 means 2 s */
    size_t capture_cap;       /* bytes kept per stream (the tail); 0 means 1 MiB */
    nd_proc_line_cb on_line;  /* streaming mode when set (output is still captured) */
    nd_proc_line_cb on_data;  /* when set: each chunk as read, not split into lines (a scanner that splits lines
                                 itself, e.g. kms-logs over journalctl); output is still captured */
    void *line_ud;            /* for on_line and on_data */
} nd_proc_opts;

typedef struct nd_proc_stream {
    char *data;      /* NUL-terminated tail of the output (owned by the result) */
    size_t len;      /* bytes in data */
    size_t total;    /* bytes the command wrote in all */
    bool truncated;  /* total > len: the head was dropped */
} nd_proc_stream;

typedef struct nd_proc_result {
    int spawn_error;    /* 0, or negative code when it never started (-ENOENT not found, -EACCES denied) */
    int exit_code;      /* exit status, or -1 when killed by a signal or never started */
    int term_signal;    /* signal that ended it, 0 if none */
    bool timed_out;     /* the timeout fired (the command was then killed) */
    bool cancelled;     /* nd_proc_cancel was called */
    int pid;
    double duration_s;
    nd_proc_stream out, err;
} nd_proc_result;

typedef struct nd_proc nd_proc;
typedef void (*nd_proc_done_cb)(nd_proc *proc, void *ud);

/* Starts a command on ctx->loop. On success returns 0 and sets *out; on_done runs once, from the loop, when the
 * command has exited and its output is drained; then the caller reads nd_proc_result_of() and calls nd_proc_free().
 * A command that cannot start (not found, permission denied) is NOT an error here: it completes at once with
 * result.spawn_error set, so callers handle one path. Returns a negative code only for bad options or no memory. */
int nd_proc_start(nd_ctx *ctx, const nd_proc_opts *opts, nd_proc_done_cb on_done, void *ud, nd_proc **out,
                  nd_err *err);

/* The result; complete once on_done has run. Owned by proc. */
const nd_proc_result *nd_proc_result_of(const nd_proc *proc);

/* Copies what the command printed so far (the kept tails of stdout and stderr and their byte counts), its pid and its
 * running time into *dst (free with nd_proc_result_free; the exit fields say nothing yet while it runs): for recording
 * a command that is being interrupted. "So far" includes what it wrote into its pipes that the loop has not read yet
 * (read here, without blocking, and handed to on_data/on_line as the loop would). Once it is done, a copy of the
 * result. Returns 0 or -ENOMEM. */
int nd_proc_peek(nd_proc *proc, nd_proc_result *dst);

/* Moves the result out of proc into *dst (the caller then owns it and must nd_proc_result_free it). */
void nd_proc_take_result(nd_proc *proc, nd_proc_result *dst);

/* Sends signum to the command's whole process group. Returns 0 or a negative code (-ESRCH when already gone). */
int nd_proc_signal(nd_proc *proc, int signum);

/* Asks the command to stop: SIGTERM to the group, SIGKILL after the grace period. on_done still runs. */
void nd_proc_cancel(nd_proc *proc);

/* Releases proc. Safe at any time: a command still running is killed (whole group) and on_done is NOT called. */
void nd_proc_free(nd_proc *proc);

/* Kills (SIGKILL, whole group) every command of ctx still running: for shutdown. Returns how many were signalled.
 * Their completion still arrives through the loop; ctx->live_procs reaches 0 once all are reaped and released. */
int nd_proc_kill_all(nd_ctx *ctx);

/* Starts the watchdog of ctx: a small process (forked now, before any command) that is told the process group of
 * every command nd_proc_start spawns and of every one that ends. When this process dies, however it dies (SIGKILL
 * included: the kernel closes our end of the watchdog's socket), the watchdog kills every group still registered
 * with SIGKILL and exits, so no command outlives nitrodiag. It ignores SIGINT/SIGTERM/SIGHUP (a Ctrl-C reaches the
 * whole foreground group: the watchdog must outlive us to do its work) and holds no other file descriptor.
 * Returns 0 (also when already started) or a negative code (fork/socketpair failed). Limits: a command that detaches
 * into a new session of its own escapes (as it escapes a timeout), and a kill in the microseconds between a spawn
 * and its registration is not covered. */
int nd_proc_watchdog_start(nd_ctx *ctx, nd_err *err);

/* Stops the watchdog as our death would: it kills the groups still registered (commands whose end was never seen)
 * and exits; then it is reaped. Safe when none runs. */
void nd_proc_watchdog_stop(nd_ctx *ctx);

/* Runs a command to completion on a private loop (usable from any thread that is not inside a loop callback).
 * Returns 0 and fills *res (free with nd_proc_result_free), or a negative code for bad options. */
int nd_proc_run(const nd_proc_opts *opts, nd_proc_result *res, nd_err *err);

void nd_proc_result_free(nd_proc_result *res);

/* One line describing how the command ended: "exit 0", "exit 3", "killed by SIGKILL", "timed out after 1.0 s",
 * "command not found: foo", "permission denied: foo". Writes into buf and returns it. */
const char *nd_proc_describe(const nd_proc_result *res, const char *argv0, char *buf, size_t bufsz);

#endif
