/*
 * vhostguest.c — the rdinit of the nd-vhost-vsock end-to-end test (tests/vhost/run-qemu-test.sh): a static program
 * running as PID 1 in Debian's cloud kernel under QEMU, whose only vsock transport is a virtio-vsock PCI device served
 * by nd-vhost-vsock. It loads the virtio and vsock modules, then checks through real AF_VSOCK sockets:
 *   - the local CID is the one the backend put in the config space (16);
 *   - the enclave heartbeat: connect CID 3 port 9000, send 0xB7, read 0xB7 back, then end of stream (as the AWS
 *     bootstrap init does before nitro-cli reports the enclave running);
 *   - guest -> host: CID 2 port 5001 is the host's echo server (unix socket PREFIX_5001): 1 MiB each way, at the
 *     same time (credit is exercised: the backend's buffer is 256 KiB);
 *   - a port where nothing listens on the host (5999): connect fails (the backend answers RST);
 *   - host -> guest: it listens on port 6000 and echoes 1 MiB back to a host program that came in through
 *     "CONNECT 6000"; /vsock-pingpong runs on port 5000 for the host's "ping".
 * It prints `[guest] ...` lines on the console and ends the VM with isa-debug-exit: 33 = PASS, 35 = FAIL.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define GUEST_TAG "[guest]"
#include "../vm/guest.h"

#define EXIT_PASS GUEST_EXIT_PASS
#define EXIT_FAIL GUEST_EXIT_FAIL

static void on_alarm(int sig)
{
    (void)sig;
    say("[guest] FAIL: watchdog: the guest test took more than 90 s");
    vm_exit(EXIT_FAIL);
}

static int vconnect(unsigned cid, unsigned port)
{
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail("socket(AF_VSOCK): %s", strerror(errno));
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static unsigned char pattern(size_t i)
{
    return (unsigned char)((i * 7 + (i >> 11)) & 0xff);
}

/* Sends `total` pattern bytes and reads `total` bytes back at the same time (an echo peer), checking them. */
static void echo_exchange(int fd, size_t total, const char *what)
{
    static unsigned char buf[65536];
    size_t sent = 0, got = 0;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    while (got < total) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
        if (poll(&p, 1, 20000) <= 0)
            fail("%s: stalled after %zu bytes sent, %zu received", what, sent, got);
        if ((p.revents & POLLOUT) && sent < total) {
            unsigned char out[16384];
            size_t n = total - sent < sizeof out ? total - sent : sizeof out;
            for (size_t i = 0; i < n; i++)
                out[i] = pattern(sent + i);
            ssize_t w = send(fd, out, n, MSG_NOSIGNAL);
            if (w < 0 && errno != EAGAIN)
                fail("%s: send: %s", what, strerror(errno));
            if (w > 0)
                sent += (size_t)w;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r < 0 && errno != EAGAIN)
                fail("%s: recv: %s", what, strerror(errno));
            if (r == 0)
                fail("%s: end of stream after %zu of %zu bytes", what, got, total);
            for (ssize_t i = 0; i < r; i++)
                if (buf[i] != pattern(got + (size_t)i))
                    fail("%s: byte %zu differs", what, got + (size_t)i);
            if (r > 0)
                got += (size_t)r;
        }
    }
    fcntl(fd, F_SETFL, flags);
}

/* Echoes everything until end of stream; returns the byte count, checking the pattern. */
static size_t echo_serve(int fd)
{
    static unsigned char buf[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r < 0)
            fail("echo server: recv: %s", strerror(errno));
        if (r == 0)
            return total;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pattern(total + (size_t)i))
                fail("echo server: byte %zu differs", total + (size_t)i);
        for (ssize_t o = 0; o < r;) {
            ssize_t w = send(fd, buf + o, (size_t)(r - o), MSG_NOSIGNAL);
            if (w < 0)
                fail("echo server: send: %s", strerror(errno));
            o += w;
        }
        total += (size_t)r;
    }
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(90);
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
        fail("mount devtmpfs: %s", strerror(errno));
    /* in dependency order; a module the image does not carry is built into that kernel (or not needed: virtio_pci
     * under vhost-user-vsock-pci, virtio_mmio under the nitro-enclave machine) */
    static const char *const mods[] = {"virtio_ring", "virtio", "virtio_mmio", "virtio_pci_legacy_dev",
                                       "virtio_pci_modern_dev", "virtio_pci", "vsock",
                                       "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"};
    for (size_t i = 0; i < sizeof mods / sizeof mods[0]; i++) {
        char path[128];
        snprintf(path, sizeof path, "/lib/modules/%s.ko", mods[i]);
        int rc = load_module(path);
        if (rc < 0 && rc != -ENOENT)
            fail("finit_module %s: %s", mods[i], strerror(-rc));
    }
    say("[guest] modules loaded");

    /* the CID the device reports (its config space, from the backend's GET_CONFIG) */
    unsigned cid = 0;
    for (int tries = 0; tries < 1200; tries++) { /* up to 60 s: TCG on a loaded host is slow */
        int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) < 0)
                cid = 0;
            close(fd);
        }
        if (cid && cid != VMADDR_CID_ANY)
            break;
        usleep(50000);
    }
    say("[guest] local CID %u", cid);

    /* the heartbeat, as the AWS bootstrap init sends it */
    int fd = vconnect(3, 9000);
    if (fd < 0)
        fail("heartbeat: connect CID 3 port 9000: %s", strerror(-fd));
    unsigned char hb = 0xB7;
    if (write(fd, &hb, 1) != 1)
        fail("heartbeat: write: %s", strerror(errno));
    hb = 0;
    if (read(fd, &hb, 1) != 1 || hb != 0xB7)
        fail("heartbeat: expected 0xb7 back, got 0x%02x (%s)", hb, strerror(errno));
    ssize_t eof = read(fd, &hb, 1);
    close(fd);
    say("[guest] heartbeat answered (then %s)", eof == 0 ? "end of stream" : "no end of stream");

    /* a port with no host listener */
    fd = vconnect(2, 5999);
    if (fd >= 0)
        fail("connect CID 2 port 5999 succeeded; nothing listens there");
    say("[guest] connect CID 2 port 5999: %s", strerror(-fd));

    /* guest -> host: the host's echo server */
    fd = vconnect(2, 5001);
    if (fd < 0)
        fail("connect CID 2 port 5001: %s", strerror(-fd));
    echo_exchange(fd, MIB, "guest->host echo");
    shutdown(fd, SHUT_WR);
    char c;
    if (read(fd, &c, 1) != 0)
        fail("guest->host echo: no end of stream after shutdown");
    close(fd);
    say("[guest] guest->host: 1048576 bytes echoed by the host");

    /* host -> guest: pingpong on 5000, our echo server on 6000 */
    pid_t pp = fork();
    if (pp == 0) {
        execl("/vsock-pingpong", "vsock-pingpong", "--mode", "vsock", (char *)NULL);
        _exit(127);
    }
    /* 6001 listens before 6000 does: the host's last CONNECT 6001 can never come before the listener */
    struct sockaddr_vm sa = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = 6001};
    int l1 = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l1 < 0 || bind(l1, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l1, 4) < 0)
        fail("listen on vsock port 6001: %s", strerror(errno));
    sa.svm_port = 6000;
    int l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l, 4) < 0)
        fail("listen on vsock port 6000: %s", strerror(errno));
    say("[guest] listening on port 6000");
    struct sockaddr_vm peer;
    socklen_t pl = sizeof peer;
    int a = accept(l, (struct sockaddr *)&peer, &pl);
    if (a < 0)
        fail("accept: %s", strerror(errno));
    say("[guest] host connection from CID %u port %u", peer.svm_cid, peer.svm_port);
    size_t n = echo_serve(a);
    close(a);
    close(l);
    if (n < MIB)
        fail("host->guest: only %zu bytes before end of stream", n);
    say("[guest] host->guest: echoed %zu bytes", n);

    /* wait for the host to say it is done (it pings pingpong meanwhile): it connects once more to 6001, and
       closes once it has its OK; powering off before that end of stream could lose the RESPONSE (the guest
       kernel queues it for the device asynchronously), so the host would see its socket closed without OK */
    say("[guest] waiting on port 6001");
    a = accept(l1, NULL, NULL);
    if (a < 0)
        fail("accept 6001: %s", strerror(errno));
    char b6001[16];
    ssize_t r6001;
    while ((r6001 = read(a, b6001, sizeof b6001)) > 0)
        ;
    if (r6001 < 0)
        fail("6001: read until the host closes: %s", strerror(errno));
    close(a);
    close(l1);
    kill(pp, SIGTERM);
    waitpid(pp, NULL, 0);
    say("[guest] PASS");
    vm_exit(EXIT_PASS);
    return 0;
}
