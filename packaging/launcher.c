/*
 * launcher.c — the portable build's bin/nitrodiag and bin/nitrodiag-kms-proxy. A static program (no loader, no libc
 * needed on the host) that starts the real, dynamically linked program with the loader and libraries the tree
 * carries: <root>/libexec/nitrodiag/lib/<loader> --inhibit-cache --library-path <root>/libexec/nitrodiag/lib
 * --argv0 <argv[0]> <root>/libexec/nitrodiag/bin/<own name> args... where <root> is two levels above this file's
 * real path. The host's /etc/ld.so.cache and libraries are never used, so the tree runs the same on any Linux of its
 * architecture (Amazon Linux 2 and 2023, or an empty root). It exports NITRODIAG_EXE (its own path: the simulator
 * links its stand-ins to it, and nitrodiag finds ../share/nitrodiag from it) and, when the host's CA bundle is not
 * where the carried libcurl/OpenSSL look (Debian's path), SSL_CERT_FILE for the host's bundle.
 * Exit status 127 with a one-line message when the tree is incomplete.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ND_LOADER
#error "ND_LOADER (the loader's file name, e.g. ld-linux-x86-64.so.2) must be defined"
#endif

/* Where distributions keep the PEM bundle of trusted CAs, Debian's first (the carried libraries' default). */
static const char *const ca_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",                /* Debian, Ubuntu */
    "/etc/pki/tls/certs/ca-bundle.crt",                  /* Amazon Linux, Fedora, RHEL */
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* the same, newer layout */
    "/etc/ssl/ca-bundle.pem",                            /* SUSE */
    NULL,
};

static int join(char *out, size_t n, const char *a, const char *b)
{
    int r = snprintf(out, n, "%s%s", a, b);
    return r < 0 || (size_t)r >= n ? -1 : 0;
}

int main(int argc, char **argv)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "nitrodiag: cannot find the portable tree: /proc/self/exe: %s (is /proc mounted?)\n",
                strerror(errno));
        return 127;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return 127;
    const char *name = slash + 1;
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%.*s", (int)(slash - self), self);
    char *up = strrchr(root, '/'); /* <root>/bin -> <root> */
    if (!up)
        return 127;
    *up = '\0';

    char loader[PATH_MAX], libdir[PATH_MAX], prog[PATH_MAX], base[PATH_MAX];
    if (join(base, sizeof base, root, "/libexec/nitrodiag") < 0 || join(libdir, sizeof libdir, base, "/lib") < 0 ||
        join(loader, sizeof loader, libdir, "/" ND_LOADER) < 0 || join(prog, sizeof prog, base, "/bin/") < 0 ||
        strlen(prog) + strlen(name) >= sizeof prog) {
        fprintf(stderr, "nitrodiag: path of the portable tree too long: %s\n", root);
        return 127;
    }
    strcat(prog, name);
    if (access(prog, X_OK) != 0 || access(loader, X_OK) != 0) {
        fprintf(stderr, "%s: incomplete portable tree: %s: %s\n", name, access(prog, X_OK) ? prog : loader,
                strerror(errno));
        return 127;
    }

    setenv("NITRODIAG_EXE", self, 1);
    if (!getenv("SSL_CERT_FILE") && access(ca_bundles[0], R_OK) != 0) {
        for (int i = 1; ca_bundles[i]; i++) {
            if (access(ca_bundles[i], R_OK) == 0) {
                setenv("SSL_CERT_FILE", ca_bundles[i], 1);
                break;
            }
        }
    }

    char **args = calloc((size_t)argc + 9, sizeof *args);
    if (!args) {
        fprintf(stderr, "%s: out of memory\n", name);
        return 127;
    }
    int k = 0;
    args[k++] = loader;
    args[k++] = "--inhibit-cache";
    args[k++] = "--library-path";
    args[k++] = libdir;
    args[k++] = "--argv0";
    args[k++] = argv[0] ? argv[0] : (char *)name;
    args[k++] = prog;
    for (int i = 1; i < argc; i++)
        args[k++] = argv[i];
    args[k] = NULL;
    execv(loader, args);
    fprintf(stderr, "%s: cannot start %s: %s\n", name, loader, strerror(errno));
    return 127;
}
