/*
 * bootstrap.c — nitrodiag-bootstrap: the /init of the bootstrap ramdisk in the EIFs nitrodiag builds to boot for real
 * under QEMU's nitro-enclave machine (sim/backend_qemu.lua, docs/realboot.md). Static, libc only.
 *
 * It does what the AWS bootstrap init (aws-nitro-enclaves-sdk-bootstrap, init/init.c) does, with the same
 * observable behaviour and messages, so a locally booted image fails the way it fails on Nitro:
 *   devtmpfs on /dev, stdio on /dev/console; kernel modules; the heartbeat (connect CID 3 port 9000, send 0xB7,
 *   expect 0xB7 back: nitro-cli's enclave process, here nd-vhost-vsock, waits for it); /env and /cmd (one
 *   "VAR=value" / one argument per line: `Could not open /env file: <strerror>` when missing); chroot into /rootfs,
 *   mounts there; the command in its own session with execvpe (`execvpe: CMD: <strerror>`); reaps until it ends
 *   (`child exited with error`, `child exited by signal`); reboots.
 * Differences, because the kernel is Debian's and not AWS's: the modules AWS builds in are loaded from
 * /lib/modules/<name>.ko (virtio_mmio, vsock, the virtio vsock transport) before nsm.ko (which, as in AWS's init, is
 * /nsm.ko and optional); with `nitrodiag.pcrs` on the kernel command line (QEMU appends -append text, which is not
 * measured) it prints `[bootstrap] PCRn <hex>` for PCR 0, 1, 2 and 8 read from /dev/nsm (DescribePCR).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h> /* before linux/vm_sockets.h, which uses sa_family_t (aarch64 headers do not pull it in) */
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_ENV "PATH=/sbin:/usr/sbin:/bin:/usr/bin"
#define HEARTBEAT 0xB7

static void warn_errno(const char *what)
{
    int e = errno;
    fprintf(stderr, "%s: %s\n", what, strerror(e));
    errno = e;
}

static void warn2(const char *a, const char *b)
{
    int e = errno;
    fprintf(stderr, "%s: %s: %s\n", a, b, strerror(e));
    errno = e;
}

static _Noreturn void die(const char *what)
{
    warn_errno(what);
    exit(errno ? errno : 1);
}

static void mount_dev(void)
{
    if (mount("dev", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, NULL) < 0) {
        warn2("mount", "/dev");
        if (errno != EBUSY)
            exit(errno);
    }
}

static void console(void)
{
    if (!freopen("/dev/console", "r", stdin) || !freopen("/dev/console", "w", stdout) ||
        !freopen("/dev/console", "w", stderr))
        exit(1);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* finit_module(path); a missing file is skipped, an already loaded module is fine. Returns 0 or -errno. */
static int load_module(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = (int)syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    close(fd);
    if (rc < 0 && e != EEXIST)
        return -e;
    return 0;
}

static void load_modules(void)
{
    static const char *const mods[] = {"virtio_mmio", "vsock", "vmw_vsock_virtio_transport_common",
                                       "vmw_vsock_virtio_transport"};
    char path[128];
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        snprintf(path, sizeof path, "/lib/modules/%s.ko", mods[i]);
        int rc = load_module(path);
        if (rc < 0) {
            errno = -rc;
            warn2("failed to insert module", path);
        }
    }
    /* the NSM driver, as AWS's init does it: nsm.ko in the root, optional, removed once loaded */
    int rc = load_module("nsm.ko");
    if (rc < 0) {
        errno = -rc;
        die("failed to insert nsm driver");
    }
    unlink("nsm.ko");
}

static void heartbeat(void)
{
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = 3, .svm_port = 9000};
    unsigned char b = HEARTBEAT;
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        die("connect");
    if (write(fd, &b, 1) != 1)
        die("write heartbeat");
    if (read(fd, &b, 1) != 1)
        die("read heartbeat");
    if (b != HEARTBEAT) {
        errno = EINVAL;
        die("received wrong heartbeat");
    }
    close(fd);
}

/* Reads one item per line into a NULL-terminated array (NULL when the file could not be opened). */
static char **read_config(const char *path, const char *what)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        warn_errno(what);
        return NULL;
    }
    char **v = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        char *line = NULL;
        size_t len = 0;
        ssize_t r = getline(&line, &len, f);
        if (r < 0) {
            free(line);
            break;
        }
        if (r > 0 && line[r - 1] == '\n')
            line[r - 1] = 0;
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                die("not enough mem for env variables");
            v = nv;
        }
        v[n++] = line;
        v[n] = NULL;
    }
    fclose(f);
    unlink(path);
    return v;
}

/* ---- PCRs from /dev/nsm (only with `nitrodiag.pcrs` on the command line) ------------------------------------- */

struct nsm_message {
    struct iovec request;
    struct iovec response;
};
#define NSM_IOCTL_REQUEST _IOWR(0x0A, 0, struct nsm_message)

static void print_pcr(int fd, unsigned idx)
{
    /* {"DescribePCR": {"index": idx}} in CBOR */
    unsigned char rq[32], resp[512];
    size_t n = 0;
    rq[n++] = 0xA1;
    rq[n++] = 0x6B;
    memcpy(rq + n, "DescribePCR", 11);
    n += 11;
    rq[n++] = 0xA1;
    rq[n++] = 0x65;
    memcpy(rq + n, "index", 5);
    n += 5;
    rq[n++] = (unsigned char)idx; /* idx < 24: a one-byte unsigned integer */
    struct nsm_message m = {{rq, n}, {resp, sizeof resp}};
    if (ioctl(fd, NSM_IOCTL_REQUEST, &m) < 0) {
        printf("[bootstrap] PCR%u unreadable: %s\n", idx, strerror(errno));
        return;
    }
    size_t len = m.response.iov_len < sizeof resp ? m.response.iov_len : sizeof resp;
    /* the value follows the text key "data" as a byte string of 48 bytes (0x58 0x30) */
    for (size_t i = 0; i + 7 + 48 <= len; i++) {
        if (memcmp(resp + i, "\x64" "data\x58\x30", 7) == 0) {
            char hex[97];
            for (size_t k = 0; k < 48; k++)
                snprintf(hex + 2 * k, 3, "%02x", resp[i + 7 + k]);
            printf("[bootstrap] PCR%u %s\n", idx, hex);
            return;
        }
    }
    printf("[bootstrap] PCR%u: unexpected NSM answer (%zu bytes)\n", idx, len);
}

static void maybe_print_pcrs(void)
{
    char cmdline[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (!f)
        return;
    size_t r = fread(cmdline, 1, sizeof cmdline - 1, f);
    cmdline[r] = 0;
    fclose(f);
    if (!strstr(cmdline, "nitrodiag.pcrs"))
        return;
    int fd = open("/dev/nsm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        printf("[bootstrap] no /dev/nsm: %s\n", strerror(errno));
        return;
    }
    static const unsigned idx[] = {0, 1, 2, 8};
    for (size_t i = 0; i < sizeof idx / sizeof idx[0]; i++)
        print_pcr(fd, idx[i]);
    close(fd);
}

/* ---- the command --------------------------------------------------------------------------------------------- */

static void rootfs_mounts(void)
{
    struct {
        const char *src, *dst, *type;
        unsigned long flags;
        const char *data;
    } mounts[] = {
        {"proc", "/proc", "proc", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL},
        {"tmpfs", "/run", "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, "mode=0755"},
        {"tmpfs", "/tmp", "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL},
        {"shm", "/dev/shm", "tmpfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL},
        {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, NULL},
        {"sysfs", "/sys", "sysfs", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL},
    };
    static const char *const links[][2] = {
        {"/proc/self/fd", "/dev/fd"},
        {"/proc/self/fd/0", "/dev/stdin"},
        {"/proc/self/fd/1", "/dev/stdout"},
        {"/proc/self/fd/2", "/dev/stderr"},
    };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        if (symlink(links[i][0], links[i][1]) < 0 && errno != EEXIST)
            warn2("symlink", links[i][1]);
    if (mkdir("/dev/shm", 0755) < 0 && errno != EEXIST)
        warn2("mkdir", "/dev/shm");
    if (mkdir("/dev/pts", 0755) < 0 && errno != EEXIST)
        warn2("mkdir", "/dev/pts");
    for (size_t i = 0; i < sizeof mounts / sizeof mounts[0]; i++)
        if (mount(mounts[i].src, mounts[i].dst, mounts[i].type, mounts[i].flags, mounts[i].data) < 0)
            die(mounts[i].dst);
}

static pid_t launch(char **argv, char **envp)
{
    static char *default_argv[] = {"sh", NULL};
    static char *default_envp[] = {PATH_ENV, NULL};
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0)
        return pid;
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    setsid();
    if (!argv)
        argv = default_argv;
    if (!envp)
        envp = default_envp;
    putenv(PATH_ENV);
    execvpe(argv[0], argv, envp);
    warn2("execvpe", argv[0]);
    exit(errno);
}

int main(void)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    mount_dev();
    console();
    mount("proc", "/proc", "proc", MS_NODEV | MS_NOSUID | MS_NOEXEC, NULL); /* for /proc/cmdline; not in AWS's */
    load_modules();
    heartbeat();
    maybe_print_pcrs();
    umount("/proc");
    char **env = read_config("/env", "Could not open /env file");
    char **cmd = read_config("/cmd", "Could not open /cmd file");
    if (!env || !cmd)
        exit(EXIT_FAILURE); /* AWS's init then crashes in fclose(NULL): the kernel panics either way */
    if (chdir("/rootfs") != 0)
        die("chdir /rootfs");
    if (chroot("/rootfs") != 0)
        die("chroot /rootfs");
    mount_dev();
    rootfs_mounts();
    pid_t child = launch(cmd, env);
    for (;;) {
        int status;
        pid_t p = wait(&status);
        if (p < 0)
            die("wait");
        if (p != child)
            continue;
        if (WIFEXITED(status)) {
            if (WEXITSTATUS(status) != 0)
                fputs("child exited with error\n", stderr);
        } else {
            fputs("child exited by signal\n", stderr);
        }
        break;
    }
    fflush(NULL);
    reboot(RB_AUTOBOOT);
    return 0;
}
