/*
 * guest.h — what every PID-1 test program inside a test VM needs (tests/vm/vmtest.c, tests/vhost/vhostguest.c):
 * console lines, a FAIL that ends the VM, and the VM's exit code through QEMU's isa-debug-exit. Header-only so each
 * static guest binary stays one file; define GUEST_TAG (e.g. "[vmtest]") before including it.
 */
#ifndef ND_TEST_GUEST_H
#define ND_TEST_GUEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#ifndef GUEST_TAG
#error "define GUEST_TAG before including guest.h"
#endif

#define GUEST_EXIT_PASS 0x10 /* qemu exits with (value << 1) | 1: 33 */
#define GUEST_EXIT_FAIL 0x11 /* 35 */

/* One console line (a newline is added; longer lines are cut at 510 bytes). One write, so lines never interleave. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(STDOUT_FILENO, line, (size_t)n) < 0)
        return;
}

/* Ends the VM: isa-debug-exit when the machine has one, else power-off (QEMU's nitro-enclave machine has no such
 * device; the console's PASS/FAIL line is then the result). Never returns. */
static void vm_exit(int value) __attribute__((noreturn));
static void vm_exit(int value)
{
    /* the console lines written so far (ours and other processes') may still sit in the tty's buffer, sent to the
     * UART a few bytes per interrupt: wait until they are out, or QEMU exits without them */
    tcdrain(STDOUT_FILENO);
    if (ioperm(0xf4, 4, 1) == 0)
        outl((unsigned)value, 0xf4);
    sync();
    reboot(RB_POWER_OFF);
    say(GUEST_TAG " cannot end the VM (isa-debug-exit, power-off): %s", strerror(errno));
    _exit(1);
}

/* Loads a kernel module from its file (finit_module); one already loaded counts as loaded. Returns 0 or -errno. */
static int load_module(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    long rc = syscall(SYS_finit_module, fd, "", 0);
    int e = errno;
    close(fd);
    return rc == 0 || e == EEXIST ? 0 : -e;
}

/* Prints `TAG FAIL: …` and ends the VM with GUEST_EXIT_FAIL. */
static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    say(GUEST_TAG " FAIL: %s", msg);
    vm_exit(GUEST_EXIT_FAIL);
}

#endif
