/*
 * init.c — /init of the nitrodiag test enclave image (static, no shell ever).
 *
 * It is the image's ENTRYPOINT, so it runs either under the AWS bootstrap init (which has already mounted proc/sys
 * in the chroot and runs it as a child) or as PID 1 itself (an initramfs, the real-kernel test). In both cases:
 *   - stdout/stderr go to the console (/dev/console; devtmpfs is mounted on /dev first when the node is missing);
 *   - `[init] starting`; proc and sys are mounted when they are missing;
 *   - the mode comes from --mode, else VSOCK_PINGPONG_MODE, else vsock;
 *   - `[init] launching /vsock-pingpong --mode <mode>`: the app runs as a child in its own session;
 *   - every child that ends is reaped (as PID 1 the kernel gives us every orphan; otherwise we ask to be a
 *     "child subreaper" so the app's orphans still come to us), SIGTERM and SIGINT are forwarded to the app;
 *   - when the app ends: `[init] /vsock-pingpong exited rc=<rc>` (or `exited signal=<n> (<NAME>)`), and init stays
 *     alive, because under Nitro the enclave reboots as soon as its command ends and the console output is lost.
 * Every path is overridable (flags or ND_INIT_* variables) so the tests run it as an ordinary process, without
 * mounts and with the console in a file.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROC_MAGIC 0x9fa0
#define SYSFS_MAGIC_ 0x62656572

#define MAX_APP_ARGS 32

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line, so lines from init and the app never interleave mid-line on the console. */
    const char *p = line;
    size_t left = (size_t)n;
    while (left > 0) {
        ssize_t w = write(STDOUT_FILENO, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        left -= (size_t)w;
    }
}

static void usage(void)
{
    fputs("usage: init [--mode MODE] [--app PATH] [--console PATH|-] [--proc DIR] [--sys DIR] [--no-mount] "
          "[-- APP-ARGS...]\n"
          "  MODE defaults to $VSOCK_PINGPONG_MODE, then vsock; --app defaults to $ND_INIT_APP, then /vsock-pingpong;\n"
          "  --console defaults to $ND_INIT_CONSOLE, then /dev/console (- keeps the current stdout/stderr)\n",
          stderr);
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* Points stdout/stderr at the console. When /dev/console is missing (an initramfs without device nodes), mounts
 * devtmpfs on /dev first, as the AWS bootstrap init does. */
static void open_console(const char *path, int pid1)
{
    if (strcmp(path, "-") == 0)
        return;
    int fd = open(path, O_WRONLY | O_NOCTTY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && pid1 && strcmp(path, "/dev/console") == 0) {
        mkdir("/dev", 0755);
        if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") == 0)
            fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    }
    if (fd < 0) {
        /* Nothing better to do than keep the stdout we were given; say why on it. */
        say("[init] cannot open console %s: %s; keeping the inherited stdout", path, strerror(errno));
        return;
    }
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
}

/* Mounts fstype on dir unless a filesystem with that magic is already there. Never fatal. */
static void ensure_mounted(const char *fstype, const char *dir, long magic)
{
    struct statfs sf;
    if (statfs(dir, &sf) == 0 && (long)sf.f_type == magic) {
        say("[init] %s already mounted on %s", fstype, dir);
        return;
    }
    mkdir(dir, 0555);
    if (mount(fstype, dir, fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
        say("[init] mounted %s on %s", fstype, dir);
    else
        say("[init] could not mount %s on %s: %s (going on without it)", fstype, dir, strerror(errno));
}

static void on_signal(int sig)
{
    (void)sig; /* never runs: the signals are blocked and taken with sigwaitinfo */
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status))
        snprintf(buf, n, "rc=%d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, n, "signal=%d (SIG%s)%s", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?",
                 WCOREDUMP(status) ? " core dumped" : "");
    else
        snprintf(buf, n, "status=0x%x", (unsigned)status);
}

int main(int argc, char **argv)
{
    const char *mode = NULL;
    const char *app = env_or("ND_INIT_APP", "/vsock-pingpong");
    const char *console = env_or("ND_INIT_CONSOLE", "/dev/console");
    const char *proc_dir = env_or("ND_INIT_PROC", "/proc");
    const char *sys_dir = env_or("ND_INIT_SYS", "/sys");
    int do_mount = getenv("ND_INIT_NO_MOUNT") == NULL;
    const char *app_extra[MAX_APP_ARGS];
    int n_extra = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                if (n_extra == MAX_APP_ARGS) {
                    fprintf(stderr, "[init] error: more than %d app arguments\n", MAX_APP_ARGS);
                    return 2;
                }
                app_extra[n_extra++] = argv[i];
            }
        } else if (strncmp(a, "--mode=", 7) == 0) {
            mode = a + 7;
        } else if (v && strcmp(a, "--mode") == 0) {
            mode = v, i++;
        } else if (v && strcmp(a, "--app") == 0) {
            app = v, i++;
        } else if (v && strcmp(a, "--console") == 0) {
            console = v, i++;
        } else if (v && strcmp(a, "--proc") == 0) {
            proc_dir = v, i++;
        } else if (v && strcmp(a, "--sys") == 0) {
            sys_dir = v, i++;
        } else if (strcmp(a, "--no-mount") == 0) {
            do_mount = 0;
        } else if (strcmp(a, "--help") == 0) {
            usage();
            return 0;
        } else {
            fprintf(stderr, "[init] error: unknown argument \"%s\"\n", a);
            usage();
            return 2;
        }
    }
    if (!mode)
        mode = env_or("VSOCK_PINGPONG_MODE", "vsock");

    int pid1 = getpid() == 1;
    open_console(console, pid1);
    say("[init] starting");
    if (do_mount) {
        ensure_mounted("proc", proc_dir, PROC_MAGIC);
        ensure_mounted("sysfs", sys_dir, SYSFS_MAGIC_);
    }
    if (!pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        say("[init] cannot become a child subreaper: %s (orphans go to the real init)", strerror(errno));
    if (!getenv("PATH"))
        setenv("PATH", "/sbin:/usr/sbin:/bin:/usr/bin", 0);

    /* Signals are taken synchronously with sigwaitinfo: block them (and give them handlers, since the kernel
     * drops default-action signals sent to PID 1). The child gets the original mask and default actions back. */
    sigset_t waitset, oldmask;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGCHLD);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGHUP);
    sigprocmask(SIG_BLOCK, &waitset, &oldmask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);

    const char *child_argv[MAX_APP_ARGS + 4];
    int k = 0;
    child_argv[k++] = app;
    child_argv[k++] = "--mode";
    child_argv[k++] = mode;
    for (int i = 0; i < n_extra; i++)
        child_argv[k++] = app_extra[i];
    child_argv[k] = NULL;

    char cmdline[1024];
    size_t off = 0;
    for (int i = 0; i < k && off < sizeof cmdline; i++)
        off += (size_t)snprintf(cmdline + off, sizeof cmdline - off, "%s%s", i ? " " : "", child_argv[i]);
    say("[init] launching %s", cmdline);

    pid_t app_pid = fork();
    if (app_pid == 0) {
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
        setsid();
        execv(app, (char *const *)child_argv);
        say("[init] cannot run %s: %s", app, strerror(errno));
        _exit(127);
    }
    if (app_pid < 0)
        say("[init] cannot start %s: fork: %s", app, strerror(errno));

    int app_running = app_pid > 0;
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&waitset, &si);
        if (sig < 0)
            continue;
        if (sig == SIGCHLD) {
            for (;;) {
                int status;
                pid_t p = waitpid(-1, &status, WNOHANG);
                if (p <= 0)
                    break;
                char how[96];
                describe_status(status, how, sizeof how);
                if (p == app_pid && app_running) {
                    app_running = 0;
                    say("[init] %s exited %s", app, how);
                    say("[init] staying alive so the console stays readable");
                } else {
                    say("[init] reaped pid %d (%s)", (int)p, how);
                }
            }
        } else if (app_running) {
            say("[init] forwarding SIG%s to %s (pid %d)", sigabbrev_np(sig), app, (int)app_pid);
            kill(app_pid, sig);
        } else {
            say("[init] SIG%s received; %s is not running; staying alive", sigabbrev_np(sig), app);
        }
    }
}
