/*
 * proc.c — the process runner (see nd_proc.h for the contract).
 *
 * One nd_proc owns: the uv_process_t, up to three pipes (stdin when there is data, stdout, stderr) and two timers
 * (timeout, kill grace). The command is spawned detached (setsid), so its pid is also its process-group id and every
 * signal goes to -pid. "Done" means: the process has exited AND both output pipes reached EOF (or were cut off after
 * a short drain window, for daemons that escaped with our pipes). Then every handle is closed; when the last close
 * callback fires, on_done runs, or, if the owner already freed the proc, the memory is released.
 *
 * Output is kept in a ring buffer of capture_cap bytes per stream so only the tail survives, at O(1) per byte.
 */
#include "nd_proc.h"
#include "nd_list.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define ND_PROC_DEFAULT_CAP (1u << 20)
#define ND_PROC_LINE_CAP (64u * 1024u)
#define ND_PROC_DRAIN_MS 300

typedef struct ring {
    char *buf;
    size_t cap, head, len; /* head: index of the oldest byte */
    size_t total;
} ring;

typedef struct out_pipe {
    uv_pipe_t pipe;
    nd_proc *owner;
    int stream;
    bool open;     /* handle initialised and not yet closed */
    bool eof;
    ring tail;
    char *line;    /* partial line for streaming mode */
    size_t line_len;
} out_pipe;

struct nd_proc {
    nd_ctx *ctx;
    nd_proc *next, *prev;  /* in ctx->procs while not released */
    uv_loop_t *loop;
    uv_process_t process;
    uv_pipe_t in;
    out_pipe out, err;
    uv_timer_t timeout_timer, grace_timer, drain_timer;
    uv_write_t write_req;
    uv_buf_t in_buf;
    char *stdin_copy;
    bool process_open, in_open, timers_open;
    bool exited, finishing, freed, done_called;
    int open_handles;
    double grace_s;
    uint64_t t0;
    nd_proc_line_cb on_line;
    nd_proc_line_cb on_data;
    void *line_ud;
    nd_proc_done_cb on_done;
    void *ud;
    nd_proc_result res;
};

/* ---- ring buffer ---------------------------------------------------------------------------------------------- */

static int ring_init(ring *r, size_t cap)
{
    r->buf = malloc(cap ? cap : 1);
    r->cap = cap;
    r->head = r->len = r->total = 0;
    return r->buf ? 0 : -ENOMEM;
}

static void ring_push(ring *r, const char *p, size_t n)
{
    r->total += n;
    if (r->cap == 0)
        return;
    if (n >= r->cap) { /* only the last cap bytes of this chunk survive */
        memcpy(r->buf, p + (n - r->cap), r->cap);
        r->head = 0;
        r->len = r->cap;
        return;
    }
    size_t tail_idx = (r->head + r->len) % r->cap;
    size_t first = r->cap - tail_idx < n ? r->cap - tail_idx : n;
    memcpy(r->buf + tail_idx, p, first);
    memcpy(r->buf, p + first, n - first);
    if (r->len + n > r->cap) {
        size_t drop = r->len + n - r->cap;
        r->head = (r->head + drop) % r->cap;
        r->len = r->cap;
    } else {
        r->len += n;
    }
}

/* Linearises the ring into a fresh NUL-terminated string and frees the ring. */
static void ring_finish(ring *r, nd_proc_stream *s)
{
    s->data = malloc(r->len + 1);
    if (s->data) {
        size_t first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
        memcpy(s->data, r->buf + r->head, first);
        memcpy(s->data + first, r->buf, r->len - first);
        s->data[r->len] = '\0';
        s->len = r->len;
    } else {
        s->len = 0;
    }
    s->total = r->total;
    s->truncated = r->total > s->len;
    free(r->buf);
    r->buf = NULL;
}

/* Copies the ring into a fresh NUL-terminated string, leaving the ring as it is. Returns 0 or -ENOMEM. */
static int ring_copy(const ring *r, nd_proc_stream *s)
{
    s->data = malloc(r->len + 1);
    if (!s->data)
        return -ENOMEM;
    size_t first = r->cap - r->head < r->len ? r->cap - r->head : r->len;
    if (r->len) {
        memcpy(s->data, r->buf + r->head, first);
        memcpy(s->data + first, r->buf, r->len - first);
    }
    s->data[r->len] = '\0';
    s->len = r->len;
    s->total = r->total;
    s->truncated = r->total > s->len;
    return 0;
}

static int stream_dup(const nd_proc_stream *from, nd_proc_stream *to)
{
    *to = *from;
    to->data = malloc(from->len + 1);
    if (!to->data)
        return -ENOMEM;
    if (from->len)
        memcpy(to->data, from->data, from->len);
    to->data[from->len] = '\0';
    return 0;
}

/* ---- completion --------------------------------------------------------------------------------------------- */

static void proc_unlink(nd_proc *p)
{
    nd_ctx *ctx = p->ctx;
    if (!ctx)
        return;
    ND_LIST_UNLINK(ctx->procs, p);
    ctx->live_procs--;
    p->ctx = NULL;
}

static void proc_release(nd_proc *p)
{
    proc_unlink(p);
    free(p->out.line);
    free(p->err.line);
    free(p->out.tail.buf);
    free(p->err.tail.buf);
    free(p->stdin_copy);
    nd_proc_result_free(&p->res);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    nd_proc *p = h->data;
    /* Handles closed early (stdin after its data is written) do not end the command. */
    if (--p->open_handles > 0 || !p->finishing)
        return;
    if (p->freed) {
        proc_release(p);
        return;
    }
    if (!p->done_called) {
        p->done_called = true;
        if (p->on_done)
            p->on_done(p, p->ud);
    }
}

static void close_handle(nd_proc *p, uv_handle_t *h, bool *open_flag)
{
    if (*open_flag) {
        *open_flag = false;
        p->open_handles++;
        h->data = p;
        uv_close(h, on_handle_closed);
    }
}

static void flush_line(out_pipe *o)
{
    nd_proc *p = o->owner;
    if (o->line_len > 0 && p->on_line && !p->freed)
        p->on_line(p->line_ud, o->stream, o->line, o->line_len);
    o->line_len = 0;
}

/* Closes everything once the process exited and the outputs are drained. Idempotent. */
static void maybe_finish(nd_proc *p, bool force)
{
    if (p->finishing)
        return;
    if (!force && (!p->exited || (p->out.open && !p->out.eof) || (p->err.open && !p->err.eof)))
        return;
    p->finishing = true;
    flush_line(&p->out);
    flush_line(&p->err);
    ring_finish(&p->out.tail, &p->res.out);
    ring_finish(&p->err.tail, &p->res.err);
    /* The extra reference taken in start keeps on_done from firing before every handle is closed. */
    p->open_handles++;
    close_handle(p, (uv_handle_t *)&p->process, &p->process_open);
    close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
    close_handle(p, (uv_handle_t *)&p->out.pipe, &p->out.open);
    close_handle(p, (uv_handle_t *)&p->err.pipe, &p->err.open);
    if (p->timers_open) {
        bool t1 = true, t2 = true, t3 = true;
        close_handle(p, (uv_handle_t *)&p->timeout_timer, &t1);
        close_handle(p, (uv_handle_t *)&p->grace_timer, &t2);
        close_handle(p, (uv_handle_t *)&p->drain_timer, &t3);
        p->timers_open = false;
    }
    uv_handle_t fake;
    fake.data = p;
    on_handle_closed(&fake); /* drop the extra reference */
}

static void on_drain_timeout(uv_timer_t *t)
{
    maybe_finish(t->data, true);
}

/* ---- the watchdog ---------------------------------------------------------------------------------------------- */

#define WD_MAX 4096

/* The watchdog's body, in the forked child: async-signal-safe calls only (the parent may have threads). */
static void __attribute__((noreturn)) watchdog_main(int fd)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_NAME, "nitrodiag-wd", 0, 0, 0);
    /* hold nothing of the parent's: stdio to /dev/null, every other descriptor closed */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
    }
    if (fd != 3) {
        dup2(fd, 3);
        fd = 3;
    }
    if (close_range(4, ~0U, 0) < 0)
        for (int i = 4; i < 1024; i++)
            close(i);
    static int32_t groups[WD_MAX];
    int n = 0;
    for (;;) {
        int32_t msg;
        ssize_t r = recv(fd, &msg, sizeof msg, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != (ssize_t)sizeof msg)
            break; /* the parent is gone (EOF) */
        if (msg > 0) {
            if (n < WD_MAX)
                groups[n++] = msg;
        } else {
            for (int i = 0; i < n; i++) {
                if (groups[i] == -msg) {
                    groups[i] = groups[--n];
                    break;
                }
            }
        }
    }
    for (int i = 0; i < n; i++)
        kill(-groups[i], SIGKILL);
    _exit(0);
}

int nd_proc_watchdog_start(nd_ctx *ctx, nd_err *err)
{
    if (ctx->watchdog_pid > 0)
        return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return nd_err_set(err, -errno, "process watchdog: socketpair: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return nd_err_set(err, -e, "process watchdog: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(sv[0]);
        watchdog_main(sv[1]);
    }
    close(sv[1]);
    ctx->watchdog_fd = sv[0];
    ctx->watchdog_pid = (int)pid;
    return 0;
}

static void watchdog_tell(nd_ctx *ctx, int32_t msg)
{
    if (!ctx || ctx->watchdog_pid <= 0)
        return;
    while (send(ctx->watchdog_fd, &msg, sizeof msg, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

void nd_proc_watchdog_stop(nd_ctx *ctx)
{
    if (!ctx || ctx->watchdog_pid <= 0)
        return;
    close(ctx->watchdog_fd); /* to the watchdog, exactly as if we had died */
    /* it exits at once; reap it so no zombie is left (libuv reaps only its own children) */
    while (waitpid(ctx->watchdog_pid, NULL, 0) < 0 && errno == EINTR)
        ;
    ctx->watchdog_fd = -1;
    ctx->watchdog_pid = 0;
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
    nd_proc *p = proc->data;
    p->exited = true;
    p->res.duration_s = (double)(uv_hrtime() - p->t0) / 1e9;
    p->res.term_signal = term_signal;
    p->res.exit_code = term_signal ? -1 : (int)exit_status;
    /* Whatever the command left in its process group dies with it: no orphans. */
    kill(-p->res.pid, SIGKILL);
    watchdog_tell(p->ctx, -(int32_t)p->res.pid);
    uv_timer_stop(&p->timeout_timer);
    uv_timer_stop(&p->grace_timer);
    /* A daemon that setsid()'d away may still hold our pipes: give them a short window, then cut them off. */
    uv_timer_start(&p->drain_timer, on_drain_timeout, ND_PROC_DRAIN_MS, 0);
    maybe_finish(p, false);
}

/* ---- output ------------------------------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void deliver_lines(out_pipe *o, const char *p, size_t n)
{
    nd_proc *proc = o->owner;
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        size_t room = ND_PROC_LINE_CAP - o->line_len;
        size_t c = take < room ? take : room;
        memcpy(o->line + o->line_len, p, c);
        o->line_len += c;
        if (o->line_len == ND_PROC_LINE_CAP || nl) {
            if (!proc->freed)
                proc->on_line(proc->line_ud, o->stream, o->line, o->line_len);
            o->line_len = 0;
        }
        if (c < take) { /* line longer than the cap: continue with the rest */
            p += c;
            n -= c;
            continue;
        }
        p += take + (nl ? 1 : 0);
        n -= take + (nl ? 1 : 0);
    }
}

/* Output as read from a pipe: kept in the ring, handed to the streaming callbacks. */
static void take_output(out_pipe *o, const char *p, size_t n)
{
    ring_push(&o->tail, p, n);
    if (o->owner->on_data && !o->owner->freed)
        o->owner->on_data(o->owner->line_ud, o->stream, p, n);
    if (o->owner->on_line && o->line)
        deliver_lines(o, p, n);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    out_pipe *o = s->data;
    if (nread > 0) {
        take_output(o, buf->base, (size_t)nread);
    } else if (nread < 0) {
        o->eof = true;
        uv_read_stop(s);
    }
    free(buf->base);
    if (o->eof)
        maybe_finish(o->owner, false);
}

static void write_cb(uv_write_t *req, int status)
{
    nd_proc *p = req->data;
    (void)status; /* EPIPE when the command does not read stdin: not an error of ours */
    close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
}

/* ---- timeout ------------------------------------------------------------------------------------------------ */

static void on_grace(uv_timer_t *t)
{
    nd_proc *p = t->data;
    kill(-p->res.pid, SIGKILL);
}

static void terminate_group(nd_proc *p)
{
    if (p->exited || p->res.pid <= 0)
        return;
    kill(-p->res.pid, SIGTERM);
    uv_timer_start(&p->grace_timer, on_grace, (uint64_t)(p->grace_s * 1000.0), 0);
}

static void on_timeout(uv_timer_t *t)
{
    nd_proc *p = t->data;
    p->res.timed_out = true;
    terminate_group(p);
}

/* ---- public ------------------------------------------------------------------------------------------------- */

static int init_out(nd_proc *p, out_pipe *o, int stream, size_t cap)
{
    o->owner = p;
    o->stream = stream;
    if (ring_init(&o->tail, cap) < 0)
        return -ENOMEM;
    if (p->on_line) {
        o->line = malloc(ND_PROC_LINE_CAP);
        if (!o->line)
            return -ENOMEM;
    }
    uv_pipe_init(p->loop, &o->pipe, 0);
    o->pipe.data = o;
    o->open = true;
    return 0;
}

int nd_proc_start(nd_ctx *ctx, const nd_proc_opts *opts, nd_proc_done_cb on_done, void *ud, nd_proc **out,
                  nd_err *err)
{
    *out = NULL;
    if (!ctx || !ctx->loop || !opts || !opts->argv || !opts->argv[0] || !opts->argv[0][0])
        return nd_err_set(err, -EINVAL, "process runner: empty command");
    /* Under a simulated host only its commands run (nd_ctx_sim_command): never the real host's. A refused command
     * fails like one that cannot start (spawn_error -EPERM). */
    char file[4096 + 64];
    int src = nd_ctx_sim_command(ctx, opts->argv[0], file, sizeof file);
    nd_proc *p = calloc(1, sizeof *p);
    if (!p)
        return nd_err_set(err, -ENOMEM, "process runner: out of memory");
    p->ctx = ctx;
    p->loop = ctx->loop;
    ND_LIST_PUSH(ctx->procs, p);
    ctx->live_procs++;
    p->on_done = on_done;
    p->ud = ud;
    p->on_line = opts->on_line;
    p->on_data = opts->on_data;
    p->line_ud = opts->line_ud;
    p->grace_s = opts->kill_grace_s > 0 ? opts->kill_grace_s : 2.0;
    p->res.exit_code = -1;
    size_t cap = opts->capture_cap ? opts->capture_cap : ND_PROC_DEFAULT_CAP;

    int rc = init_out(p, &p->out, ND_PROC_STDOUT, cap);
    if (rc == 0)
        rc = init_out(p, &p->err, ND_PROC_STDERR, cap);
    if (rc < 0) {
        /* The pipes are plain initialised handles: close them through the normal path. */
        p->freed = true;
        p->exited = true;
        maybe_finish(p, true);
        return nd_err_set(err, rc, "process runner: out of memory");
    }
    uv_timer_init(p->loop, &p->timeout_timer);
    uv_timer_init(p->loop, &p->grace_timer);
    uv_timer_init(p->loop, &p->drain_timer);
    p->timeout_timer.data = p->grace_timer.data = p->drain_timer.data = p;
    p->timers_open = true;

    uv_stdio_container_t stdio[3];
    if (opts->stdin_data) {
        uv_pipe_init(p->loop, &p->in, 0);
        p->in.data = p;
        p->in_open = true;
        stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
        stdio[0].data.stream = (uv_stream_t *)&p->in;
    } else {
        stdio[0].flags = UV_IGNORE;
    }
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out.pipe;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&p->err.pipe;

    uv_process_options_t po;
    memset(&po, 0, sizeof po);
    po.file = file;
    po.args = (char **)opts->argv;
    po.env = (char **)opts->env;
    po.cwd = opts->cwd;
    po.exit_cb = on_exit_cb;
    po.flags = UV_PROCESS_DETACHED; /* setsid: the pid is the process-group id */
    po.stdio_count = 3;
    po.stdio = stdio;
    p->process.data = p;
    p->t0 = uv_hrtime();
    if (src < 0) {
        rc = src;
    } else {
        rc = uv_spawn(p->loop, &p->process, &po);
        p->process_open = true; /* uv_spawn initialises the handle even when it fails */
    }
    if (rc < 0) {
        p->res.spawn_error = rc;
        p->exited = true;
        p->out.eof = p->err.eof = true;
        *out = p;
        maybe_finish(p, true);
        return 0;
    }
    p->res.pid = p->process.pid;
    watchdog_tell(ctx, (int32_t)p->res.pid);
    if (opts->timeout_s > 0) {
        uv_update_time(p->loop); /* the loop's cached time may be old after a long synchronous stretch */
        uv_timer_start(&p->timeout_timer, on_timeout, (uint64_t)(opts->timeout_s * 1000.0), 0);
    }
    uv_read_start((uv_stream_t *)&p->out.pipe, alloc_cb, read_cb);
    uv_read_start((uv_stream_t *)&p->err.pipe, alloc_cb, read_cb);
    if (opts->stdin_data) {
        p->stdin_copy = malloc(opts->stdin_len ? opts->stdin_len : 1);
        if (p->stdin_copy) {
            memcpy(p->stdin_copy, opts->stdin_data, opts->stdin_len);
            p->in_buf = uv_buf_init(p->stdin_copy, (unsigned)opts->stdin_len);
            p->write_req.data = p;
            if (uv_write(&p->write_req, (uv_stream_t *)&p->in, &p->in_buf, 1, write_cb) < 0)
                close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
        } else {
            close_handle(p, (uv_handle_t *)&p->in, &p->in_open);
        }
    }
    *out = p;
    return 0;
}

const nd_proc_result *nd_proc_result_of(const nd_proc *proc)
{
    return &proc->res;
}

/* Takes what the command already wrote into an output pipe but the loop has not read yet (the loop reads only when
 * it polls), without blocking: so "what it printed so far" holds every byte it wrote before the call. EOF and
 * errors are left for the loop's own read to see. */
static void drain_pending(out_pipe *o)
{
    uv_os_fd_t fd;
    if (!o->open || o->eof || uv_fileno((const uv_handle_t *)&o->pipe, &fd) != 0)
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK)) /* libuv's pipes are non-blocking; never risk a blocking read */
        return;
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0)
            take_output(o, buf, (size_t)n);
        else if (!(n < 0 && errno == EINTR))
            break;
    }
}

int nd_proc_peek(nd_proc *proc, nd_proc_result *dst)
{
    if (!proc->finishing) {
        drain_pending(&proc->out);
        drain_pending(&proc->err);
    }
    *dst = proc->res;
    memset(&dst->out, 0, sizeof dst->out);
    memset(&dst->err, 0, sizeof dst->err);
    int rc;
    if (proc->finishing) { /* the rings are already the result's strings */
        rc = stream_dup(&proc->res.out, &dst->out);
        if (rc == 0)
            rc = stream_dup(&proc->res.err, &dst->err);
    } else {
        dst->duration_s = (double)(uv_hrtime() - proc->t0) / 1e9;
        rc = ring_copy(&proc->out.tail, &dst->out);
        if (rc == 0)
            rc = ring_copy(&proc->err.tail, &dst->err);
    }
    if (rc < 0)
        nd_proc_result_free(dst);
    return rc;
}

void nd_proc_take_result(nd_proc *proc, nd_proc_result *dst)
{
    *dst = proc->res;
    memset(&proc->res.out, 0, sizeof proc->res.out);
    memset(&proc->res.err, 0, sizeof proc->res.err);
}

int nd_proc_signal(nd_proc *proc, int signum)
{
    if (proc->exited || proc->res.pid <= 0)
        return -ESRCH;
    return kill(-proc->res.pid, signum) == 0 ? 0 : -errno;
}

void nd_proc_cancel(nd_proc *proc)
{
    if (proc->exited)
        return;
    proc->res.cancelled = true;
    terminate_group(proc);
}

void nd_proc_free(nd_proc *proc)
{
    if (!proc)
        return;
    if (proc->done_called) {
        proc_release(proc);
        return;
    }
    proc->freed = true;
    if (!proc->exited && proc->res.pid > 0) {
        /* Still running: kill the group now; the exit callback then finishes and releases it. */
        kill(-proc->res.pid, SIGKILL);
        return;
    }
    maybe_finish(proc, true);
}

int nd_proc_kill_all(nd_ctx *ctx)
{
    int n = 0;
    for (nd_proc *p = ctx->procs; p; p = p->next) {
        if (!p->exited && p->res.pid > 0) {
            kill(-p->res.pid, SIGKILL);
            n++;
        }
    }
    return n;
}

static void sync_done(nd_proc *proc, void *ud)
{
    (void)proc;
    *(bool *)ud = true;
}

int nd_proc_run(const nd_proc_opts *opts, nd_proc_result *res, nd_err *err)
{
    memset(res, 0, sizeof *res);
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc < 0)
        return nd_err_set(err, rc, "process runner: cannot create a loop: %s", uv_strerror(rc));
    nd_ctx ctx;
    nd_ctx_init(&ctx, &loop);
    bool done = false;
    nd_proc *p = NULL;
    rc = nd_proc_start(&ctx, opts, sync_done, &done, &p, err);
    if (rc == 0) {
        while (!done)
            uv_run(&loop, UV_RUN_ONCE);
        nd_proc_take_result(p, res);
        nd_proc_free(p);
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return rc;
}

void nd_proc_result_free(nd_proc_result *res)
{
    free(res->out.data);
    free(res->err.data);
    res->out.data = res->err.data = NULL;
}

const char *nd_proc_describe(const nd_proc_result *res, const char *argv0, char *buf, size_t bufsz)
{
    if (res->spawn_error == -ENOENT)
        snprintf(buf, bufsz, "command not found: %s", argv0 ? argv0 : "?");
    else if (res->spawn_error == -EACCES)
        snprintf(buf, bufsz, "permission denied: %s", argv0 ? argv0 : "?");
    else if (res->spawn_error == -EPERM)
        snprintf(buf, bufsz, "%s: not a command of the simulated host (under --sim only the simulated nitro-cli, "
                 "systemctl, docker, dmesg and journalctl run)", argv0 ? argv0 : "?");
    else if (res->spawn_error)
        snprintf(buf, bufsz, "cannot run %s: %s", argv0 ? argv0 : "?", uv_strerror(res->spawn_error));
    else if (res->timed_out)
        snprintf(buf, bufsz, "timed out after %.1f s", res->duration_s);
    else if (res->cancelled && res->term_signal)
        snprintf(buf, bufsz, "cancelled (%s)", strsignal(res->term_signal));
    else if (res->term_signal)
        snprintf(buf, bufsz, "killed by signal %d (%s)", res->term_signal, strsignal(res->term_signal));
    else
        snprintf(buf, bufsz, "exit %d", res->exit_code);
    return buf;
}
