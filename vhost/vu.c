/*
 * vu.c — the vhost-user control protocol of nd-vhost-vsock (see vhost.h): header checks and the device state each
 * front-end message sets. Formats from QEMU's docs/interop/vhost-user.rst: a message is a 12-byte header
 * {u32 request, u32 flags (bits 0-1 version = 1, bit 2 reply, bit 3 need_reply), u32 size} and size bytes of payload;
 * fds travel as SCM_RIGHTS with the header. Payloads used here (all little-endian on x86 and aarch64, the host order):
 *   u64                       features, protocol features, SET_VRING_KICK/CALL/ERR (bits 0-7 index, bit 8 no fd)
 *   vring state {u32, u32}    SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE
 *   vring address {u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log}
 *   memory {u32 nregions, u32 padding, {u64 gpa, u64 size, u64 uva, u64 mmap_offset}[nregions]}
 *   config {u32 offset, u32 size, u32 flags, u8 bytes[size]}   (GET_CONFIG: struct virtio_vsock_config {le64 cid})
 */
#include "vhost.h"

#include <string.h>
#include <unistd.h>

static const char *const names[] = {
    [VU_GET_FEATURES] = "GET_FEATURES", [VU_SET_FEATURES] = "SET_FEATURES", [VU_SET_OWNER] = "SET_OWNER",
    [VU_RESET_OWNER] = "RESET_OWNER", [VU_SET_MEM_TABLE] = "SET_MEM_TABLE", [VU_SET_LOG_BASE] = "SET_LOG_BASE",
    [VU_SET_LOG_FD] = "SET_LOG_FD", [VU_SET_VRING_NUM] = "SET_VRING_NUM", [VU_SET_VRING_ADDR] = "SET_VRING_ADDR",
    [VU_SET_VRING_BASE] = "SET_VRING_BASE", [VU_GET_VRING_BASE] = "GET_VRING_BASE",
    [VU_SET_VRING_KICK] = "SET_VRING_KICK", [VU_SET_VRING_CALL] = "SET_VRING_CALL",
    [VU_SET_VRING_ERR] = "SET_VRING_ERR", [VU_GET_PROTOCOL_FEATURES] = "GET_PROTOCOL_FEATURES",
    [VU_SET_PROTOCOL_FEATURES] = "SET_PROTOCOL_FEATURES", [VU_GET_QUEUE_NUM] = "GET_QUEUE_NUM",
    [VU_SET_VRING_ENABLE] = "SET_VRING_ENABLE", [VU_SEND_RARP] = "SEND_RARP", [VU_NET_SET_MTU] = "NET_SET_MTU",
    [VU_SET_BACKEND_REQ_FD] = "SET_BACKEND_REQ_FD", [VU_IOTLB_MSG] = "IOTLB_MSG",
    [VU_SET_VRING_ENDIAN] = "SET_VRING_ENDIAN", [VU_GET_CONFIG] = "GET_CONFIG", [VU_SET_CONFIG] = "SET_CONFIG",
    [VU_RESET_DEVICE] = "RESET_DEVICE", [VU_GET_MAX_MEM_SLOTS] = "GET_MAX_MEM_SLOTS",
    [VU_ADD_MEM_REG] = "ADD_MEM_REG", [VU_REM_MEM_REG] = "REM_MEM_REG", [VU_SET_STATUS] = "SET_STATUS",
    [VU_GET_STATUS] = "GET_STATUS",
};

const char *vu_request_name(uint32_t request)
{
    if (request < sizeof names / sizeof names[0] && names[request])
        return names[request];
    return "UNKNOWN";
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static void wr32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void wr64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static void vq_clear(vu_vq *q)
{
    if (q->kick_fd >= 0)
        close(q->kick_fd);
    if (q->call_fd >= 0)
        close(q->call_fd);
    if (q->err_fd >= 0)
        close(q->err_fd);
    memset(q, 0, sizeof *q);
    q->kick_fd = q->call_fd = q->err_fd = -1;
}

void vu_dev_init(vu_dev *d, uint64_t guest_cid)
{
    memset(d, 0, sizeof *d);
    d->guest_cid = guest_cid;
    for (unsigned i = 0; i < VU_NQUEUES; i++)
        d->vq[i].kick_fd = d->vq[i].call_fd = d->vq[i].err_fd = -1;
}

void vu_dev_reset(vu_dev *d)
{
    unsigned stops = d->stops + 1;
    uint64_t cid = d->guest_cid;
    for (unsigned i = 0; i < VU_NQUEUES; i++)
        vq_clear(&d->vq[i]);
    vu_mem_clear(&d->mem);
    vu_dev_init(d, cid);
    d->stops = stops;
}

int vu_hdr_check(const uint8_t *hdr, uint32_t *request, uint32_t *flags, uint32_t *size, nd_err *err)
{
    *request = rd32(hdr);
    *flags = rd32(hdr + 4);
    *size = rd32(hdr + 8);
    if ((*flags & VU_FLAG_VERSION_MASK) != VU_VERSION)
        return nd_err_set(err, -EBADMSG, "vhost-user: message %u has version %u (expected 1)", *request,
                          *flags & VU_FLAG_VERSION_MASK);
    if (*flags & VU_FLAG_REPLY)
        return nd_err_set(err, -EBADMSG, "vhost-user: message %u is a reply; the front-end sends requests", *request);
    if (*request == 0 || *request > VU_MAX_REQUEST)
        return nd_err_set(err, -EBADMSG, "vhost-user: unknown request %u", *request);
    if (*size > VU_MAX_PAYLOAD)
        return nd_err_set(err, -EMSGSIZE, "vhost-user: %s payload of %u bytes (at most %u)",
                          vu_request_name(*request), *size, VU_MAX_PAYLOAD);
    return 0;
}

static void close_fds(vu_msg *m)
{
    for (int i = 0; i < m->nfds; i++)
        if (m->fds[i] >= 0)
            close(m->fds[i]);
    m->nfds = 0;
}

/* Writes a reply header for m with n payload bytes (payload already at reply + 12). Returns the total length. */
static int reply_hdr(const vu_msg *m, uint8_t *reply, uint32_t n)
{
    wr32(reply, m->request);
    wr32(reply + 4, VU_VERSION | VU_FLAG_REPLY);
    wr32(reply + 8, n);
    return (int)(VU_HDR_SIZE + n);
}

static int reply_u64(const vu_msg *m, uint8_t *reply, uint64_t v)
{
    wr64(reply + VU_HDR_SIZE, v);
    return reply_hdr(m, reply, 8);
}

int vu_request_has_reply(uint32_t req)
{
    /* the GET_* requests of vhost-user.rst, and the others answered with a payload (crypto session, inflight fd,
     * status, shared object, device state) */
    return req == VU_GET_FEATURES || req == VU_GET_PROTOCOL_FEATURES || req == VU_GET_VRING_BASE ||
           req == VU_GET_QUEUE_NUM || req == VU_GET_CONFIG || req == VU_GET_MAX_MEM_SLOTS || req == 26 ||
           req == 31 || req == VU_GET_STATUS || req == 41 || req == 42 || req == 43;
}

/* Size check: exactly want bytes of payload. */
static int need_size(const vu_msg *m, uint32_t want, nd_err *err)
{
    if (m->size != want)
        return nd_err_set(err, -EBADMSG, "vhost-user: %s with a %u-byte payload (expected %u)",
                          vu_request_name(m->request), m->size, want);
    return 0;
}

static int need_fds(const vu_msg *m, int want, nd_err *err)
{
    if (m->nfds != want)
        return nd_err_set(err, -EBADMSG, "vhost-user: %s came with %d fd(s) (expected %d)",
                          vu_request_name(m->request), m->nfds, want);
    return 0;
}

static int vring_index(const vu_msg *m, uint32_t idx, nd_err *err)
{
    if (idx >= VU_NQUEUES)
        return nd_err_set(err, -ERANGE, "vhost-user: %s for vring %u (vsock has 3)", vu_request_name(m->request), idx);
    return 0;
}

static void stop_ring(vu_dev *d, vu_vq *q)
{
    if (q->kick_fd >= 0)
        close(q->kick_fd);
    q->kick_fd = -1;
    q->started = 0;
    d->stops++;
}

static void remap_rings(vu_dev *d)
{
    for (unsigned i = 0; i < VU_NQUEUES; i++) {
        vu_vq *q = &d->vq[i];
        if (q->num && q->desc_uva && vq_map(q, &d->mem, NULL) < 0)
            q->desc = q->avail = q->used = NULL;
    }
}

static int set_mem_table(vu_dev *d, vu_msg *m, nd_err *err)
{
    int rc;
    if (m->size < 8)
        return nd_err_set(err, -EBADMSG, "vhost-user: SET_MEM_TABLE with a %u-byte payload", m->size);
    uint32_t n = rd32(m->payload);
    if (n == 0 || n > VU_MAX_REGIONS)
        return nd_err_set(err, -EBADMSG, "vhost-user: SET_MEM_TABLE with %u regions (1..%u)", n, VU_MAX_REGIONS);
    if ((rc = need_size(m, 8 + 32 * n, err)) < 0 || (rc = need_fds(m, (int)n, err)) < 0)
        return rc;
    vu_mem_clear(&d->mem);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *r = m->payload + 8 + 32 * i;
        rc = vu_mem_add(&d->mem, rd64(r), rd64(r + 8), rd64(r + 16), rd64(r + 24), m->fds[i], err);
        if (rc < 0) {
            vu_mem_clear(&d->mem);
            break;
        }
    }
    remap_rings(d);
    return rc;
}

static int set_vring_fd(vu_dev *d, vu_msg *m, nd_err *err)
{
    int rc;
    if ((rc = need_size(m, 8, err)) < 0)
        return rc;
    uint64_t v = rd64(m->payload);
    uint32_t idx = (uint32_t)(v & VU_VRING_IDX_MASK);
    if (v & ~(uint64_t)(VU_VRING_IDX_MASK | VU_VRING_NOFD))
        return nd_err_set(err, -EBADMSG, "vhost-user: %s with unknown bits 0x%llx", vu_request_name(m->request),
                          (unsigned long long)v);
    if ((rc = vring_index(m, idx, err)) < 0)
        return rc;
    int nofd = (v & VU_VRING_NOFD) != 0;
    if ((rc = need_fds(m, nofd ? 0 : 1, err)) < 0)
        return rc;
    vu_vq *q = &d->vq[idx];
    int fd = nofd ? -1 : m->fds[0];
    m->nfds = 0; /* taken */
    if (m->request == VU_SET_VRING_KICK) {
        if (nofd)
            return nd_err_set(err, -EOPNOTSUPP, "vhost-user: SET_VRING_KICK without an fd (polling) is not supported");
        if (q->kick_fd >= 0)
            close(q->kick_fd);
        q->kick_fd = fd;
        q->started = 1;
        q->broken = 0;
        if (!(d->features & VU_F_PROTOCOL_FEATURES))
            q->enabled = 1; /* without protocol features a ring starts enabled */
    } else if (m->request == VU_SET_VRING_CALL) {
        if (q->call_fd >= 0)
            close(q->call_fd);
        q->call_fd = fd;
    } else {
        if (q->err_fd >= 0)
            close(q->err_fd);
        q->err_fd = fd;
    }
    return 0;
}

int vu_dev_handle(vu_dev *d, vu_msg *m, uint8_t *reply, size_t *reply_len_on_error, nd_err *err)
{
    int rc = 0, out = 0;
    *reply_len_on_error = 0;
    const uint8_t *p = m->payload;
    switch (m->request) {
    case VU_GET_FEATURES:
        out = reply_u64(m, reply, VU_FEATURES);
        break;
    case VU_SET_FEATURES:
        if ((rc = need_size(m, 8, err)) < 0)
            break;
        if (rd64(p) & ~VU_FEATURES) {
            rc = nd_err_set(err, -EINVAL, "vhost-user: SET_FEATURES 0x%llx has bits not offered (0x%llx)",
                            (unsigned long long)rd64(p), (unsigned long long)VU_FEATURES);
            break;
        }
        d->features = rd64(p);
        break;
    case VU_GET_PROTOCOL_FEATURES:
        out = reply_u64(m, reply, VU_PROTOCOL_FEATURES);
        break;
    case VU_SET_PROTOCOL_FEATURES:
        if ((rc = need_size(m, 8, err)) < 0)
            break;
        if (rd64(p) & ~VU_PROTOCOL_FEATURES) {
            rc = nd_err_set(err, -EINVAL, "vhost-user: SET_PROTOCOL_FEATURES 0x%llx has bits not offered (0x%llx)",
                            (unsigned long long)rd64(p), (unsigned long long)VU_PROTOCOL_FEATURES);
            break;
        }
        d->protocol_features = rd64(p);
        break;
    case VU_SET_OWNER:
        d->owned = 1;
        break;
    case VU_RESET_OWNER:
    case VU_RESET_DEVICE: {
        uint64_t pf = d->protocol_features, f = d->features;
        int owned = m->request == VU_RESET_DEVICE && d->owned;
        vu_dev_reset(d);
        d->owned = owned;
        if (m->request == VU_RESET_DEVICE) { /* the negotiated features survive a device reset */
            d->protocol_features = pf;
            d->features = f;
        }
        break;
    }
    case VU_SET_MEM_TABLE:
        rc = set_mem_table(d, m, err);
        break;
    case VU_SET_VRING_NUM:
    case VU_SET_VRING_BASE:
    case VU_SET_VRING_ENABLE:
    case VU_GET_VRING_BASE: {
        if ((rc = need_size(m, 8, err)) < 0 || (rc = vring_index(m, rd32(p), err)) < 0)
            break;
        vu_vq *q = &d->vq[rd32(p)];
        uint32_t v = rd32(p + 4);
        if (m->request == VU_SET_VRING_NUM) {
            if (v == 0 || v > VQ_MAX_SIZE || (v & (v - 1))) {
                rc = nd_err_set(err, -EINVAL, "vhost-user: SET_VRING_NUM %u (a power of two up to %u)", v,
                                VQ_MAX_SIZE);
                break;
            }
            q->num = v;
            q->desc = q->avail = q->used = NULL;
            if (q->desc_uva)
                (void)vq_map(q, &d->mem, NULL);
        } else if (m->request == VU_SET_VRING_BASE) {
            if (v > 0xffff) {
                rc = nd_err_set(err, -EINVAL, "vhost-user: SET_VRING_BASE %u (a 16-bit index)", v);
                break;
            }
            q->last_avail = (uint16_t)v;
            q->used_idx = (uint16_t)v;
        } else if (m->request == VU_SET_VRING_ENABLE) {
            if (v > 1) {
                rc = nd_err_set(err, -EINVAL, "vhost-user: SET_VRING_ENABLE %u (0 or 1)", v);
                break;
            }
            q->enabled = (int)v;
        } else {
            stop_ring(d, q);
            wr32(reply + VU_HDR_SIZE, rd32(p));
            wr32(reply + VU_HDR_SIZE + 4, q->last_avail);
            out = reply_hdr(m, reply, 8);
        }
        break;
    }
    case VU_SET_VRING_ADDR: {
        if ((rc = need_size(m, 40, err)) < 0 || (rc = vring_index(m, rd32(p), err)) < 0)
            break;
        vu_vq *q = &d->vq[rd32(p)];
        if (rd32(p + 4) != 0) { /* VHOST_VRING_F_LOG: logging was not offered */
            rc = nd_err_set(err, -EINVAL, "vhost-user: SET_VRING_ADDR with flags 0x%x (logging is not supported)",
                            rd32(p + 4));
            break;
        }
        q->desc_uva = rd64(p + 8);
        q->used_uva = rd64(p + 16);
        q->avail_uva = rd64(p + 24);
        if ((rc = vq_map(q, &d->mem, err)) < 0)
            break;
        /* where the device left off: the used index in guest memory (a restarted ring keeps it) */
        uint16_t u;
        memcpy(&u, q->used + 2, 2);
        q->used_idx = u;
        break;
    }
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
    case VU_SET_VRING_ERR:
        rc = set_vring_fd(d, m, err);
        break;
    case VU_GET_QUEUE_NUM:
        out = reply_u64(m, reply, VU_NQUEUES);
        break;
    case VU_GET_MAX_MEM_SLOTS:
        out = reply_u64(m, reply, VU_MAX_REGIONS);
        break;
    case VU_GET_CONFIG: {
        if (m->size < VU_CONFIG_HDR) {
            rc = nd_err_set(err, -EBADMSG, "vhost-user: GET_CONFIG with a %u-byte payload", m->size);
            break;
        }
        uint32_t off = rd32(p), n = rd32(p + 4);
        if (n > VU_MAX_CONFIG || m->size != VU_CONFIG_HDR + n) {
            rc = nd_err_set(err, -EBADMSG, "vhost-user: GET_CONFIG of %u bytes in a %u-byte payload", n, m->size);
            break;
        }
        if (off > 8 || n > 8 - off) {
            rc = nd_err_set(err, -EINVAL, "vhost-user: GET_CONFIG offset %u size %u is outside the 8-byte vsock "
                            "config", off, n);
            break;
        }
        uint8_t cfg[8];
        wr64(cfg, d->guest_cid); /* le64 guest_cid */
        memcpy(reply + VU_HDR_SIZE, p, VU_CONFIG_HDR);
        memcpy(reply + VU_HDR_SIZE + VU_CONFIG_HDR, cfg + off, n);
        out = reply_hdr(m, reply, VU_CONFIG_HDR + n);
        break;
    }
    default:
        rc = nd_err_set(err, -EOPNOTSUPP, "vhost-user: %s (request %u) is not supported by nd-vhost-vsock",
                        vu_request_name(m->request), m->request);
        break;
    }
    close_fds(m);
    if (rc < 0) {
        if ((m->flags & VU_FLAG_NEED_REPLY) && !vu_request_has_reply(m->request) && (d->protocol_features & VU_PF_REPLY_ACK))
            *reply_len_on_error = (size_t)reply_u64(m, reply, 1);
        return rc;
    }
    if (!out && (m->flags & VU_FLAG_NEED_REPLY) && (d->protocol_features & VU_PF_REPLY_ACK))
        out = reply_u64(m, reply, 0);
    return out;
}
