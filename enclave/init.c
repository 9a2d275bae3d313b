/*
 * init.c — nitrodiag-init: the diagnostic PID-1 wrapper operators put in their own enclave images, and the /init of
 * nitrodiag's test image (static, libc only, no shell ever).
 *
 *   ENTRYPOINT ["/nitrodiag-init", "--", "/app", "arg"...]       or  ENV ND_INIT_CMD="/app arg"
 *   (no command at all: the test image's /vsock-pingpong --mode $VSOCK_PINGPONG_MODE, as before)
 *
 * It runs under the AWS bootstrap init (which has mounted proc/sys and runs it as a child) or as PID 1 itself (an
 * initramfs, the real-kernel test). In order:
 *   - stdout/stderr go to the console (/dev/console; devtmpfs is mounted on /dev first when the node is missing);
 *   - `[init] starting`; proc and sys are mounted when missing;
 *   - one line per check, `[init] check NAME STATUS: detail` with STATUS ok|warn|fail|info: kernel, memory, command
 *     (exists, executable, ELF architecture and dynamic loader, or a script's interpreter), nsm (/dev/nsm), vsock
 *     (the enclave's CID), loopback (down or up; --lo-up brings it up), ca-bundle (the paths common TLS stacks
 *     read), clock, env (the variable NAMES, never values), log (the log channel);
 *   - `[init] launching CMD`; the app runs as a child in its own session; signals are forwarded, every child reaped;
 *   - `[init] APP exited rc=N after T s` (or `signal=N (SIGNAME)[ core dumped]`), `[init] cannot run APP: reason`;
 *   - then it stays alive (--linger, default forever: under Nitro the enclave reboots when the command ends, and the
 *     console goes with it), and after --linger SECONDS exits with the app's status (PID 1: reboots).
 * With --log ADDR (vsock:3:PORT, the parent) the app's stdout/stderr go through pipes: init copies them to the
 * console and queues them with its own lines on the log channel (nd_logchan.h): framed, bounded, lossy under
 * back-pressure, never blocking the app. Nothing secret is logged by init itself (environment values never are).
 * Every path is overridable (flags or ND_INIT_* variables) so the tests run it as an ordinary process.
 */
#include "nd_logchan.h"
#include "nd_vsock.h"

#include <ctype.h>
#include <elf.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PROC_MAGIC 0x9fa0
#define SYSFS_MAGIC_ 0x62656572
#define MAX_APP_ARGS 64
#define LINE_MAX_ 1024

typedef struct linebuf {
    int fd;          /* read end of the app's pipe, -1 when closed */
    char source;     /* 'O' or 'E' */
    char buf[LINE_MAX_];
    size_t len;
} linebuf;

typedef struct init_ctx {
    int logging;                /* --log given */
    nd_logq q;
    nd_sockaddr log_addr;
    int log_fd;                 /* -1, connecting (log_connecting) or connected */
    int log_connecting;
    double log_next_try;
    int log_backoff_ms;
    int log_warned;             /* a connect failure was said once */
    uint64_t dropped_said;
    double dropped_said_at;     /* drops are reported at most once a second */
    uint64_t console_dropped;   /* bytes the slow console did not take (log channel on only) */
    linebuf out, err;
} init_ctx;

static init_ctx G_; /* the one context; main owns it (signal-free code reaches it only through this pointer) */
static init_ctx *C = &G_;

static uint64_t now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Writes to the console. With the log channel on, the console is non-blocking (a slow serial console must not
 * stall init, or through it the app): init's own lines wait for it up to 200 ms, the app's copied output not at all;
 * what does not fit is counted in console_dropped. Without the log channel the console blocks as usual. */
static void write_all(int fd, const char *p, size_t n, int wait_ms)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_ms > 0 && poll(&(struct pollfd){fd, POLLOUT, 0}, 1, wait_ms) > 0)
                continue;
            C->console_dropped += n;
            return;
        }
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

/* One line on the console (one write, so lines never interleave mid-line) and, with --log, on the log channel. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[LINE_MAX_];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    if (C->logging)
        nd_logq_push(&C->q, 'I', now_unix_ms(), line, (size_t)n);
    line[n++] = '\n';
    write_all(STDOUT_FILENO, line, (size_t)n, 200);
}

static void usage(FILE *f)
{
    fputs("usage: nitrodiag-init [options] [-- COMMAND ARGS...]\n"
          "  COMMAND defaults to $ND_INIT_CMD (split on spaces), else the test image's /vsock-pingpong --mode MODE\n"
          "  --log ADDR        stream init's lines and the app's stdout/stderr to the parent: vsock:3:PORT, or PORT\n"
          "                    alone for CID 3 ($ND_INIT_LOG)\n"
          "  --log-buffer N    bytes queued while the parent does not read (default 262144; oldest lines dropped)\n"
          "  --linger SECONDS  stay alive this long after the app ends, then exit with its status (PID 1: reboot);\n"
          "                    default: forever ($ND_INIT_LINGER)\n"
          "  --lo-up           bring the loopback interface up before starting the app ($ND_INIT_LO_UP=1)\n"
          "  --no-checks       skip the check lines ($ND_INIT_NO_CHECKS=1)\n"
          "  --version         show the version\n"
          "  test image / tests: --mode MODE, --app PATH ($ND_INIT_APP), --console PATH|- ($ND_INIT_CONSOLE),\n"
          "                    --proc DIR, --sys DIR, --no-mount ($ND_INIT_NO_MOUNT)\n",
          f);
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
    (void)sig; /* never runs: the signals are blocked and read from a signalfd */
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

/* ---- checks ------------------------------------------------------------------------------------------------- */

static const char *elf_machine(unsigned m)
{
    switch (m) {
    case EM_X86_64: return "x86_64";
    case EM_AARCH64: return "aarch64";
    case EM_386: return "i386";
    case EM_ARM: return "arm";
    default: return "unknown";
    }
}

/* Finds a bare command name on PATH (like execvp). Returns 0 and the path in out, or -ENOENT. */
static int resolve_on_path(const char *name, char *out, size_t n)
{
    if (strchr(name, '/')) {
        snprintf(out, n, "%s", name);
        return 0;
    }
    const char *path = env_or("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(out, n, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(out, X_OK) == 0)
            return 0;
        path += len + (colon ? 1 : 0);
    }
    snprintf(out, n, "%s", name);
    return -ENOENT;
}

/* Checks one program: exists, is a regular executable file, and what it needs to start (an ELF for this machine
 * with its dynamic loader, or a script with its interpreter). depth limits #! chains. Returns 0 ok, -1 fail; the
 * verdict goes into msg. */
static int check_program(const char *path, char *msg, size_t n, int depth)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(msg, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(msg, n, "%s: not a regular file", path);
        return -1;
    }
    if (access(path, X_OK) < 0) {
        snprintf(msg, n, "%s: not executable (mode %04o)", path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(msg, n, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    unsigned char head[256];
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got >= 2 && head[0] == '#' && head[1] == '!') {
        close(fd);
        char line[200];
        size_t k = 0;
        for (ssize_t i = 2; i < got && head[i] != '\n' && k + 1 < sizeof line; i++)
            line[k++] = (char)head[i];
        line[k] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        char *interp = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\r')
            p++;
        char *rest = *p ? p + 1 : p;
        *p = '\0';
        if (!*interp) {
            snprintf(msg, n, "%s: script with an empty #! line", path);
            return -1;
        }
        char sub[300];
        if (depth > 3 || check_program(interp, sub, sizeof sub, depth + 1) < 0) {
            snprintf(msg, n, "%s: script; its interpreter %s (from #!) cannot run: %s", path, interp,
                     depth > 3 ? "#! chain too deep" : sub);
            return -1;
        }
        /* #!/usr/bin/env NAME: NAME must be on PATH. */
        const char *base = strrchr(interp, '/') ? strrchr(interp, '/') + 1 : interp;
        if (strcmp(base, "env") == 0) {
            while (*rest == ' ' || *rest == '\t')
                rest++;
            char name[128], found[300];
            size_t m = 0;
            while (rest[m] && rest[m] != ' ' && rest[m] != '\t' && rest[m] != '\r' && m + 1 < sizeof name)
                name[m] = rest[m], m++;
            name[m] = '\0';
            if (m && name[0] != '-' && resolve_on_path(name, found, sizeof found) < 0) {
                snprintf(msg, n, "%s: script for `%s %s`, and %s is not on PATH (%s)", path, interp, name, name,
                         env_or("PATH", "unset"));
                return -1;
            }
            if (m && name[0] != '-' && check_program(found, sub, sizeof sub, depth + 1) < 0) {
                snprintf(msg, n, "%s: script for `%s %s`, which cannot run: %s", path, interp, name, sub);
                return -1;
            }
            snprintf(msg, n, "%s (script for %s %s → %s)", path, interp, name, m ? found : "?");
            return 0;
        }
        snprintf(msg, n, "%s (script for %s; %s)", path, interp, sub);
        return 0;
    }
    if (got < (ssize_t)sizeof(Elf64_Ehdr) || memcmp(head, ELFMAG, SELFMAG) != 0) {
        close(fd);
        snprintf(msg, n, "%s: neither an ELF binary nor a #! script (execve fails with Exec format error)", path);
        return -1;
    }
    struct utsname u;
    uname(&u);
    if (head[EI_CLASS] != ELFCLASS64) {
        close(fd);
        snprintf(msg, n, "%s: a 32-bit ELF; this enclave runs %s", path, u.machine);
        return -1;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, head, sizeof eh);
    const char *arch = elf_machine(eh.e_machine);
    if (strcmp(arch, u.machine) != 0) {
        close(fd);
        snprintf(msg, n, "%s: an ELF for %s; this enclave runs %s (Exec format error)", path, arch, u.machine);
        return -1;
    }
    char interp[256] = "";
    for (unsigned i = 0; i < eh.e_phnum && i < 128; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph)
            break;
        if (ph.p_type == PT_INTERP) {
            size_t len = ph.p_filesz < sizeof interp - 1 ? (size_t)ph.p_filesz : sizeof interp - 1;
            ssize_t r = pread(fd, interp, len, (off_t)ph.p_offset);
            interp[r > 0 ? (size_t)r : 0] = '\0';
            break;
        }
    }
    close(fd);
    if (!interp[0]) {
        snprintf(msg, n, "%s (ELF %s, static)", path, arch);
        return 0;
    }
    if (access(interp, F_OK) < 0) {
        snprintf(msg, n, "%s: dynamically linked, and its loader %s is missing from the image (execve says No such "
                 "file or directory): copy the libraries in or link statically", path, interp);
        return -1;
    }
    snprintf(msg, n, "%s (ELF %s, dynamic, loader %s)", path, arch, interp);
    return 0;
}

static void check_kernel_memory(void)
{
    struct utsname u;
    if (uname(&u) == 0)
        say("[init] check kernel ok: %s %s %s", u.sysname, u.release, u.machine);
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
        unsigned long long total = si.totalram * unit >> 20, avail = si.freeram * unit >> 20;
        say("[init] check memory %s: %llu MiB total, %llu MiB free, %u processes", avail < 32 ? "warn" : "ok",
            total, avail, (unsigned)si.procs);
    }
}

static void check_command(const char *const *argv)
{
    char path[512], msg[900];
    if (resolve_on_path(argv[0], path, sizeof path) < 0) {
        say("[init] check command fail: %s is not on PATH (%s)", argv[0], env_or("PATH", "unset"));
        return;
    }
    int rc = check_program(path, msg, sizeof msg, 0);
    say("[init] check command %s: %s", rc == 0 ? "ok" : "fail", msg);
}

static void check_nsm(void)
{
    struct stat st;
    if (stat("/dev/nsm", &st) == 0 && S_ISCHR(st.st_mode))
        say("[init] check nsm ok: /dev/nsm (char %u:%u)", major(st.st_rdev), minor(st.st_rdev));
    else
        say("[init] check nsm warn: no /dev/nsm (%s): attestation documents, and KMS calls with a Recipient, will "
            "fail", errno ? strerror(errno) : "not a character device");
}

static void check_vsock(void)
{
    int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s >= 0) {
            close(s);
            say("[init] check vsock warn: AF_VSOCK works but /dev/vsock cannot be opened (%s), so the local CID is "
                "unknown", strerror(e));
        } else {
            say("[init] check vsock fail: no AF_VSOCK in this kernel (%s)", strerror(errno));
        }
        return;
    }
    unsigned int cid = 0;
    int rc = ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
    close(fd);
    if (rc < 0)
        say("[init] check vsock warn: local CID unknown: %s", strerror(errno));
    else if (cid == 1)
        say("[init] check vsock warn: local CID 1: only the loopback transport, the parent cannot be reached");
    else if (cid == VMADDR_CID_ANY)
        say("[init] check vsock warn: no guest-to-host vsock transport (local CID unset): the parent cannot be "
            "reached");
    else
        say("[init] check vsock ok: local CID %u (the parent is CID 3)", cid);
}

static void check_loopback(int bring_up)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        say("[init] check loopback fail: no IPv4 sockets: %s", strerror(errno));
        return;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
        say("[init] check loopback fail: no lo interface: %s", strerror(errno));
    } else if (ifr.ifr_flags & IFF_UP) {
        say("[init] check loopback ok: lo is up");
    } else if (bring_up) {
        ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
        if (ioctl(s, SIOCSIFFLAGS, &ifr) == 0)
            say("[init] check loopback ok: lo was down; brought it up (127.0.0.1)");
        else
            say("[init] check loopback fail: lo is down and cannot be brought up: %s", strerror(errno));
    } else {
        say("[init] check loopback warn: lo is down: connecting to 127.0.0.1 fails with Network is unreachable (a "
            "bind to 127.0.0.1 still succeeds, so a local server seems to start); --lo-up brings it up");
    }
    close(s);
}

static void check_ca_bundle(void)
{
    /* Where the common TLS stacks look: OpenSSL on Debian/Ubuntu/Alpine, RHEL/Amazon Linux, SUSE, BSD/Alpine
     * cert.pem, and SSL_CERT_FILE when set. */
    const char *env = getenv("SSL_CERT_FILE");
    static const char *paths[] = {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
                                  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/ca-bundle.pem",
                                  "/etc/ssl/cert.pem"};
    struct stat st;
    if (env && *env) {
        if (stat(env, &st) == 0 && st.st_size > 0)
            say("[init] check ca-bundle ok: SSL_CERT_FILE %s (%lld bytes)", env, (long long)st.st_size);
        else
            say("[init] check ca-bundle fail: SSL_CERT_FILE is %s, which is missing or empty", env);
        return;
    }
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (stat(paths[i], &st) == 0 && st.st_size > 0) {
            say("[init] check ca-bundle ok: %s (%lld bytes)", paths[i], (long long)st.st_size);
            return;
        }
    say("[init] check ca-bundle warn: no CA bundle at /etc/ssl/certs/ca-certificates.crt, /etc/pki/tls/certs/"
        "ca-bundle.crt, /etc/ssl/cert.pem or the other usual paths: TLS to KMS or any HTTPS endpoint fails with "
        "certificate verify errors (unless the app embeds its roots)");
}

static void check_clock(void)
{
    struct timespec rt, bt;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_BOOTTIME, &bt);
    struct tm tm;
    gmtime_r(&rt.tv_sec, &tm);
    char when[40];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    say("[init] check clock %s: %s, %.1f s since boot%s", tm.tm_year + 1900 < 2020 ? "warn" : "ok", when,
        (double)bt.tv_sec + (double)bt.tv_nsec / 1e9,
        tm.tm_year + 1900 < 2020 ? " (the clock was never set: certificate checks fail as not yet valid)" : "");
}

static void check_env(void)
{
    char line[900];
    size_t off = 0;
    int count = 0, more = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t klen = eq ? (size_t)(eq - *e) : strlen(*e);
        count++;
        if (off + klen + 2 >= sizeof line - 24) {
            more++;
            continue;
        }
        off += (size_t)snprintf(line + off, sizeof line - off, "%s%.*s", off ? " " : "", (int)klen, *e);
    }
    line[off] = '\0';
    if (more)
        say("[init] check env info: %d variables (names only): %s … and %d more", count, line, more);
    else
        say("[init] check env info: %d variables (names only): %s", count, count ? line : "(none)");
}

/* ---- log channel -------------------------------------------------------------------------------------------- */

static double mono_ms(void)
{
    return nd_vsock_now_ms();
}

static void log_close(void)
{
    if (C->log_fd >= 0)
        close(C->log_fd);
    C->log_fd = -1;
    C->log_connecting = 0;
    C->log_next_try = mono_ms() + C->log_backoff_ms;
    if (C->log_backoff_ms < 2000)
        C->log_backoff_ms *= 2;
}

static void log_connected(void)
{
    char hello[256];
    unsigned int cid = VMADDR_CID_ANY;
    int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
            cid = VMADDR_CID_ANY;
        close(fd);
    }
    struct utsname u;
    uname(&u);
    snprintf(hello, sizeof hello, "nitrodiag-log 1 cid=%d records=%llu dropped=%llu kernel=%s",
             cid == VMADDR_CID_ANY ? -1 : (int)cid, (unsigned long long)(C->q.next_seq - 1),
             (unsigned long long)C->q.dropped, u.release);
    nd_logq_restart(&C->q, hello);
    C->log_connecting = 0;
    C->log_backoff_ms = 250;
    C->log_warned = 0;
    say("[init] log channel connected to %s", C->log_addr.text);
}

/* The parent is not there (yet): said once, from the enclave's side of the connection. */
static void say_log_unreachable(int code)
{
    const char *name = strerrorname_np(-code);
    if (code == -ENODEV || code == -EAFNOSUPPORT)
        say("[init] log channel: no vsock transport in this enclave (%s); lines stay on the console only",
            name ? name : "?");
    else
        say("[init] log channel: cannot reach %s (%s): nitrodiag-logd is not running on the parent or listens on "
            "another port; retrying in the background (lines are queued, the oldest dropped)", C->log_addr.text,
            name ? name : "?");
}

static void log_try_connect(void)
{
    nd_err err = {0};
    int fd = nd_vsock_socket(&C->log_addr, &err);
    int rc = fd < 0 ? fd : nd_vsock_connect_start(fd, &C->log_addr, &err);
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        if (!C->log_warned)
            say_log_unreachable(rc);
        C->log_warned = 1;
        C->log_fd = -1;
        log_close();
        return;
    }
    C->log_fd = fd;
    if (rc == 0)
        log_connected();
    else
        C->log_connecting = 1;
}

static void log_on_event(short revents)
{
    nd_err err = {0};
    if (C->log_connecting) {
        if (nd_vsock_connect_finish(C->log_fd, &C->log_addr, &err) < 0) {
            if (!C->log_warned)
                say_log_unreachable(err.code ? err.code : -ECONNRESET);
            C->log_warned = 1;
            log_close();
            return;
        }
        log_connected();
    }
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        char sink[256];
        ssize_t r = recv(C->log_fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            say("[init] log channel to %s closed by the parent; reconnecting", C->log_addr.text);
            log_close();
            return;
        }
    }
    if (nd_logq_pending(&C->q)) {
        ssize_t w = nd_logq_flush(&C->q, C->log_fd);
        if (w < 0) {
            say("[init] log channel to %s failed: %s; reconnecting", C->log_addr.text, strerror((int)-w));
            log_close();
        }
    }
}

/* Says, at most once per second of drops, how many lines the channel lost (on the console, and queued). */
static void log_report_drops(void)
{
    double now = mono_ms();
    if (C->logging && C->q.dropped > C->dropped_said && now - C->dropped_said_at >= 1000) {
        C->dropped_said = C->q.dropped;
        C->dropped_said_at = now;
        say("[init] log channel: %llu line(s) dropped so far (the parent does not read fast enough)",
            (unsigned long long)C->q.dropped);
    }
}

/* Takes what the app wrote on one pipe: copied to the console at once, queued line by line. */
static void pump(linebuf *lb)
{
    char buf[4096];
    ssize_t r = read(lb->fd, buf, sizeof buf);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (lb->len)
            nd_logq_push(&C->q, lb->source, now_unix_ms(), lb->buf, lb->len);
        lb->len = 0;
        close(lb->fd);
        lb->fd = -1;
        return;
    }
    write_all(STDOUT_FILENO, buf, (size_t)r, 0);
    for (ssize_t i = 0; i < r; i++) {
        if (buf[i] == '\n' || lb->len == sizeof lb->buf) {
            nd_logq_push(&C->q, lb->source, now_unix_ms(), lb->buf, lb->len);
            lb->len = 0;
            if (buf[i] == '\n')
                continue;
        }
        lb->buf[lb->len++] = buf[i];
    }
}

/* ---- main --------------------------------------------------------------------------------------------------- */

static int parse_log_addr(const char *text, nd_sockaddr *a)
{
    char buf[200];
    const char *t = text;
    int all_digits = *text != '\0';
    for (const char *p = text; *p; p++)
        all_digits &= isdigit((unsigned char)*p) != 0;
    if (all_digits) {
        snprintf(buf, sizeof buf, "vsock:3:%s", text);
        t = buf;
    }
    nd_err err = {0};
    if (nd_vsock_parse(t, a, &err) < 0) {
        fprintf(stderr, "[init] error: --log %s: %s\n", text, err.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = NULL;
    const char *app = env_or("ND_INIT_APP", "/vsock-pingpong");
    const char *console = env_or("ND_INIT_CONSOLE", "/dev/console");
    const char *proc_dir = env_or("ND_INIT_PROC", "/proc");
    const char *sys_dir = env_or("ND_INIT_SYS", "/sys");
    const char *log_text = env_or("ND_INIT_LOG", NULL);
    long log_buffer = strtol(env_or("ND_INIT_LOG_BUFFER", "0"), NULL, 10);
    double linger = strtod(env_or("ND_INIT_LINGER", "-1"), NULL);
    int do_mount = getenv("ND_INIT_NO_MOUNT") == NULL;
    int lo_up = strcmp(env_or("ND_INIT_LO_UP", "0"), "0") != 0;
    int checks = strcmp(env_or("ND_INIT_NO_CHECKS", "0"), "0") == 0;
    const char *cmd[MAX_APP_ARGS + 1];
    int n_cmd = 0, have_cmd = 0;
    static char cmd_env[4096];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            have_cmd = 1;
            for (i++; i < argc; i++) {
                if (n_cmd == MAX_APP_ARGS) {
                    fprintf(stderr, "[init] error: more than %d command words\n", MAX_APP_ARGS);
                    return 2;
                }
                cmd[n_cmd++] = argv[i];
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
        } else if (v && strcmp(a, "--log") == 0) {
            log_text = v, i++;
        } else if (v && strcmp(a, "--log-buffer") == 0) {
            log_buffer = strtol(v, NULL, 10), i++;
        } else if (v && strcmp(a, "--linger") == 0) {
            char *end;
            linger = strtod(v, &end), i++;
            if (end == v || *end) {
                fprintf(stderr, "[init] error: --linger wants seconds, got \"%s\"\n", v);
                return 2;
            }
        } else if (strcmp(a, "--lo-up") == 0) {
            lo_up = 1;
        } else if (strcmp(a, "--no-checks") == 0) {
            checks = 0;
        } else if (strcmp(a, "--no-mount") == 0) {
            do_mount = 0;
        } else if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("nitrodiag-init %s\n", ND_VERSION);
            return 0;
        } else {
            fprintf(stderr, "[init] error: unknown argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (have_cmd && n_cmd == 0) {
        fprintf(stderr, "[init] error: nothing after --\n");
        return 2;
    }
    if (!have_cmd && getenv("ND_INIT_CMD") && *getenv("ND_INIT_CMD")) {
        snprintf(cmd_env, sizeof cmd_env, "%s", getenv("ND_INIT_CMD"));
        for (char *save = NULL, *w = strtok_r(cmd_env, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
            if (n_cmd == MAX_APP_ARGS) {
                fprintf(stderr, "[init] error: ND_INIT_CMD has more than %d words\n", MAX_APP_ARGS);
                return 2;
            }
            cmd[n_cmd++] = w;
        }
        have_cmd = n_cmd > 0;
    }
    if (!have_cmd) { /* the test image: /vsock-pingpong --mode MODE */
        cmd[n_cmd++] = app;
        cmd[n_cmd++] = "--mode";
        cmd[n_cmd++] = mode ? mode : env_or("VSOCK_PINGPONG_MODE", "vsock");
    }
    cmd[n_cmd] = NULL;
    app = cmd[0];

    C->log_fd = -1;
    C->log_backoff_ms = 250;
    C->out.fd = C->err.fd = -1;
    if (log_text) {
        if (parse_log_addr(log_text, &C->log_addr) < 0)
            return 2;
        if (nd_logq_init(&C->q, log_buffer > 0 ? (size_t)log_buffer : ND_LOG_DEFAULT_QUEUE) < 0) {
            fprintf(stderr, "[init] error: no memory for the log queue\n");
            return 2;
        }
        C->logging = 1;
    }

    int pid1 = getpid() == 1;
    open_console(console, pid1);
    if (C->logging && strcmp(console, "-") != 0) /* see write_all: a slow console must not stall init and the app */
        fcntl(STDOUT_FILENO, F_SETFL, fcntl(STDOUT_FILENO, F_GETFL) | O_NONBLOCK);
    say("[init] starting");
    if (do_mount) {
        ensure_mounted("proc", proc_dir, PROC_MAGIC);
        ensure_mounted("sysfs", sys_dir, SYSFS_MAGIC_);
    }
    if (!pid1 && prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        say("[init] cannot become a child subreaper: %s (orphans go to the real init)", strerror(errno));
    if (!getenv("PATH"))
        setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);

    if (checks) {
        check_kernel_memory();
        check_command(cmd);
        check_nsm();
        check_vsock();
        check_loopback(lo_up);
        check_ca_bundle();
        check_clock();
        check_env();
        if (C->logging)
            say("[init] check log info: streaming to %s (queue %zu bytes; lines are dropped, never waited for, when "
                "the parent does not read)", C->log_addr.text, C->q.cap);
        else
            say("[init] check log info: console only (--log vsock:3:PORT streams to the parent)");
    } else if (lo_up) {
        check_loopback(1);
    }
    if (C->logging)
        log_try_connect();

    /* Signals are read from a signalfd: block them (and give them handlers, since the kernel drops default-action
     * signals sent to PID 1). The child gets the original mask and default actions back. */
    static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    sigset_t waitset, oldmask;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGCHLD);
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        sigaddset(&waitset, fwd[i]);
    sigprocmask(SIG_BLOCK, &waitset, &oldmask);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    for (size_t i = 0; i < sizeof fwd / sizeof fwd[0]; i++)
        sigaction(fwd[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &waitset, SFD_CLOEXEC | SFD_NONBLOCK);

    char cmdline[1024];
    size_t off = 0;
    for (int i = 0; i < n_cmd && off < sizeof cmdline; i++)
        off += (size_t)snprintf(cmdline + off, sizeof cmdline - off, "%s%s", i ? " " : "", cmd[i]);
    say("[init] launching %s", cmdline);

    int pout[2] = {-1, -1}, perr[2] = {-1, -1}, pexec[2] = {-1, -1};
    if (C->logging && (pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0))
        say("[init] cannot make pipes for the app's output (%s): it goes to the console only", strerror(errno));
    if (pipe2(pexec, O_CLOEXEC) < 0)
        pexec[0] = pexec[1] = -1;
    double started = mono_ms();
    pid_t app_pid = fork();
    if (app_pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
        setsid();
        if (pout[1] >= 0 && perr[1] >= 0) {
            dup2(pout[1], STDOUT_FILENO);
            dup2(perr[1], STDERR_FILENO);
        }
        /* execv on the PATH-resolved file, not execvp: execvp would run a file it cannot exec through /bin/sh,
         * hiding the real error (and enclave images rarely have a shell). */
        char path[512];
        resolve_on_path(cmd[0], path, sizeof path);
        execv(path, (char *const *)cmd);
        int e = errno;
        if (pexec[1] >= 0 && write(pexec[1], &e, sizeof e) < 0)
            _exit(127);
        _exit(e == ENOENT ? 127 : 126);
    }
    if (pout[1] >= 0) {
        close(pout[1]);
        close(perr[1]);
        C->out.fd = pout[0], C->out.source = 'O';
        C->err.fd = perr[0], C->err.source = 'E';
        fcntl(pout[0], F_SETFL, O_NONBLOCK);
        fcntl(perr[0], F_SETFL, O_NONBLOCK);
    }
    if (pexec[1] >= 0)
        close(pexec[1]);
    int app_running = app_pid > 0;
    if (app_pid < 0) {
        say("[init] cannot start %s: fork: %s", app, strerror(errno));
    } else if (pexec[0] >= 0) {
        int e = 0;
        ssize_t r;
        do
            r = read(pexec[0], &e, sizeof e);
        while (r < 0 && errno == EINTR);
        if (r == (ssize_t)sizeof e)
            say("[init] cannot run %s: %s", app, strerror(e));
        else
            say("[init] started %s (pid %d)", app, (int)app_pid);
    }
    if (pexec[0] >= 0)
        close(pexec[0]);

    double linger_until = -1;
    int app_status = 0;
    for (;;) {
        struct pollfd pf[5];
        int n = 0, i_sig = -1, i_out = -1, i_err = -1, i_log = -1;
        if (sfd >= 0)
            pf[i_sig = n++] = (struct pollfd){sfd, POLLIN, 0};
        if (C->out.fd >= 0)
            pf[i_out = n++] = (struct pollfd){C->out.fd, POLLIN, 0};
        if (C->err.fd >= 0)
            pf[i_err = n++] = (struct pollfd){C->err.fd, POLLIN, 0};
        if (C->logging && C->log_fd >= 0)
            pf[i_log = n++] = (struct pollfd){C->log_fd, (short)(POLLIN | (C->log_connecting ||
                                                                          nd_logq_pending(&C->q) ? POLLOUT : 0)), 0};
        double now = mono_ms(), wake = -1;
        if (C->logging && C->log_fd < 0)
            wake = C->log_next_try;
        if (linger_until >= 0 && (wake < 0 || linger_until < wake))
            wake = linger_until;
        /* While lingering with lines still to send, and the output pipes closed, also end on time. */
        int timeout = wake < 0 ? -1 : wake <= now ? 0 : (int)(wake - now) + 1;
        int pr = poll(pf, (nfds_t)n, timeout);
        if (pr < 0 && errno != EINTR)
            break;
        now = mono_ms();
        if (i_out >= 0 && pf[i_out].revents)
            pump(&C->out);
        if (i_err >= 0 && pf[i_err].revents)
            pump(&C->err);
        if (i_sig >= 0 && (pf[i_sig].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGCHLD)
                    continue;
                if (app_running) {
                    say("[init] forwarding SIG%s to %s (pid %d)", sigabbrev_np(sig), app, (int)app_pid);
                    kill(app_pid, sig);
                } else {
                    say("[init] SIG%s received; %s is not running; staying alive", sigabbrev_np(sig), app);
                }
            }
            for (;;) {
                int status;
                pid_t p = waitpid(-1, &status, WNOHANG);
                if (p <= 0)
                    break;
                char how[96];
                describe_status(status, how, sizeof how);
                if (p == app_pid && app_running) {
                    app_running = 0;
                    app_status = status;
                    /* Take what the app wrote last before saying how it ended. */
                    while (C->out.fd >= 0 && poll(&(struct pollfd){C->out.fd, POLLIN, 0}, 1, 0) > 0)
                        pump(&C->out);
                    while (C->err.fd >= 0 && poll(&(struct pollfd){C->err.fd, POLLIN, 0}, 1, 0) > 0)
                        pump(&C->err);
                    say("[init] %s exited %s after %.2f s", app, how, (mono_ms() - started) / 1000.0);
                    if (C->logging)
                        say("[init] log channel: %llu line(s) queued, %llu sent, %llu dropped%s",
                            (unsigned long long)C->q.queued, (unsigned long long)C->q.sent,
                            (unsigned long long)C->q.dropped,
                            C->console_dropped ? "; the console was too slow for part of the output" : "");
                    C->dropped_said = C->q.dropped;
                    if (linger < 0) {
                        say("[init] staying alive so the console stays readable");
                    } else {
                        say("[init] staying alive for %g s so the evidence can be read, then %s", linger,
                            pid1 ? "rebooting" : "exiting");
                        linger_until = now + linger * 1000.0;
                    }
                } else {
                    say("[init] reaped pid %d (%s)", (int)p, how);
                }
            }
        }
        log_report_drops();
        if (C->logging) {
            if (C->log_fd < 0 && now >= C->log_next_try)
                log_try_connect();
            else if (i_log >= 0 && pf[i_log].revents)
                log_on_event(pf[i_log].revents);
            else if (C->log_fd >= 0 && !C->log_connecting && nd_logq_pending(&C->q))
                log_on_event(0);
        }
        if (linger_until >= 0 && now >= linger_until)
            break;
    }

    /* The end: give the log channel a last chance (at most 2 s), then exit with the app's status, or reboot. */
    if (C->logging && C->log_fd >= 0 && !C->log_connecting) {
        double until = mono_ms() + 2000;
        while (nd_logq_pending(&C->q) && mono_ms() < until) {
            if (nd_logq_flush(&C->q, C->log_fd) < 0)
                break;
            poll(&(struct pollfd){C->log_fd, POLLOUT, 0}, 1, 50);
        }
    }
    if (C->logging) {
        if (C->log_fd >= 0)
            close(C->log_fd);
        nd_logq_free(&C->q);
    }
    if (pid1) {
        sync();
        reboot(RB_AUTOBOOT);
    }
    if (WIFEXITED(app_status))
        return WEXITSTATUS(app_status);
    return WIFSIGNALED(app_status) ? 128 + WTERMSIG(app_status) : 1;
}
