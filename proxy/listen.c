/*
 * listen.c — nitrodiag-kms-proxy: listeners (tcp:, unix:, vsock:) for enclave connections and for /metrics.
 */
#include "px_internal.h"

/* ---- listeners -------------------------------------------------------------------------------------------------- */

/* Opens l on addr ("vsock:CID|any:PORT", "unix:PATH", "tcp:HOST:PORT"). loopback_only refuses non-loopback tcp. */
int listener_open(px_server *s, listener *l, const char *addr, bool loopback_only, uv_connection_cb cb,
                         nd_err *err)
{
    memset(l, 0, sizeof *l);
    l->srv = s;
    snprintf(l->addr, sizeof l->addr, "%s", addr);
    int rc;
    if (strncmp(addr, "unix:", 5) == 0) {
        const char *path = addr + 5;
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path); /* a stale socket from an earlier run */
        l->kind = K_PIPE;
        uv_pipe_init(s->loop, &l->u.pipe, 0);
        rc = uv_pipe_bind(&l->u.pipe, path);
        if (rc == 0)
            snprintf(l->unlink_path, sizeof l->unlink_path, "%s", path);
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        char host[256];
        const char *hp = addr + 4, *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof host)
            return nd_err_set(err, -EINVAL, "listen address %s: expected tcp:HOST:PORT", addr);
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = '\0';
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strcspn(host, "]")] = '\0';
        }
        int port = atoi(colon + 1);
        struct sockaddr_storage ss;
        if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
            uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
            return nd_err_set(err, -EINVAL, "listen address %s: %s is not an IP address", addr, host);
        if (loopback_only && strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0)
            return nd_err_set(err, -EINVAL, "listen address %s: tcp listeners must be on loopback", addr);
        l->kind = K_TCP;
        uv_tcp_init(s->loop, &l->u.tcp);
        rc = uv_tcp_bind(&l->u.tcp, (const struct sockaddr *)&ss, 0);
    } else if (strncmp(addr, "vsock:", 6) == 0) {
        const char *p = addr + 6, *colon = strchr(p, ':');
        if (!colon)
            return nd_err_set(err, -EINVAL, "listen address %s: expected vsock:CID:PORT", addr);
        unsigned cid = strncmp(p, "any:", 4) == 0 ? VMADDR_CID_ANY : (unsigned)strtoul(p, NULL, 10);
        unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return nd_err_set(err, -errno, "listen %s: no vsock transport on this host (%s)", addr, strerror(errno));
        struct sockaddr_vm vm;
        memset(&vm, 0, sizeof vm);
        vm.svm_family = AF_VSOCK;
        vm.svm_cid = cid;
        vm.svm_port = port;
        if (bind(fd, (struct sockaddr *)&vm, sizeof vm) < 0) {
            int e = errno;
            close(fd);
            return nd_err_set(err, -e, "listen %s: bind: %s", addr, strerror(e));
        }
        l->kind = K_PIPE;
        uv_pipe_init(s->loop, &l->u.pipe, 0);
        rc = uv_pipe_open(&l->u.pipe, fd);
    } else {
        return nd_err_set(err, -EINVAL, "listen address %s: expected vsock:, unix: or tcp:", addr);
    }
    l->u.h.data = l;
    l->open = true;
    if (rc == 0)
        rc = uv_listen(&l->u.s, 511, cb);
    if (rc < 0)
        return nd_err_set(err, rc, "listen %s: %s", addr, uv_strerror(rc));
    return 0;
}

void listener_close(listener *l)
{
    if (!l->open)
        return;
    l->open = false;
    uv_close(&l->u.h, NULL);
    if (l->unlink_path[0])
        unlink(l->unlink_path);
}
