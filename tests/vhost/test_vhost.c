/*
 * test_vhost.c — nd-vhost-vsock's parts without a VM: the vhost-user messages (vhost/vu.c), the split virtqueues in
 * shared memory (vhost/vq.c) and the virtio-vsock connection / credit state machine (vhost/vsock.c), each with
 * malformed input. Expected bytes are written out by hand from the formats (QEMU docs/interop/vhost-user.rst, Linux
 * include/uapi/linux/virtio_vsock.h, virtio 1.x 2.7), not produced by the code under test.
 */
#include "ndtest.h"
#include "vhost.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static uint8_t reply[VU_HDR_SIZE + VU_MAX_PAYLOAD];

/* Fills m as if read from the socket: header fields and payload. */
static void msg(vu_msg *m, uint32_t req, uint32_t flags, const void *p, uint32_t n)
{
    memset(m, 0, sizeof *m);
    m->request = req;
    m->flags = flags;
    m->size = n;
    if (n)
        memcpy(m->payload, p, n);
}

static int handle(vu_dev *d, vu_msg *m, size_t *elen, nd_err *err)
{
    return vu_dev_handle(d, m, reply, elen, err);
}

static int fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_header(void)
{
    uint32_t r, f, s;
    nd_err err;
    /* GET_FEATURES, version 1, no payload: 01 00 00 00 | 01 00 00 00 | 00 00 00 00 */
    static const uint8_t ok[12] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(vu_hdr_check(ok, &r, &f, &s, &err), 0);
    CHECK_EQ_INT(r, VU_GET_FEATURES);
    static const uint8_t v2[12] = {1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(vu_hdr_check(v2, &r, &f, &s, &err), -EBADMSG);
    CHECK(strstr(err.msg, "version 2") != NULL);
    static const uint8_t isreply[12] = {1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(vu_hdr_check(isreply, &r, &f, &s, &err), -EBADMSG);
    static const uint8_t zero[12] = {0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(vu_hdr_check(zero, &r, &f, &s, &err), -EBADMSG);
    static const uint8_t huge_req[12] = {0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(vu_hdr_check(huge_req, &r, &f, &s, &err), -EBADMSG);
    static const uint8_t big[12] = {5, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x10, 0, 0}; /* 4097 bytes */
    CHECK_EQ_INT(vu_hdr_check(big, &r, &f, &s, &err), -EMSGSIZE);
    CHECK(strchr(err.msg, '\n') == NULL);
}

static void test_features_and_config(void)
{
    vu_dev d;
    vu_dev_init(&d, 16);
    vu_msg m;
    size_t elen;
    nd_err err;
    msg(&m, VU_GET_FEATURES, 1, NULL, 0);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 20);
    /* reply: request 1, flags 0x5 (version 1 | reply), size 8, u64 = bit 32 (VERSION_1) | bit 30 (PROTOCOL_FEATURES) */
    static const uint8_t want[20] = {1, 0, 0, 0, 5, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x40, 1, 0, 0, 0};
    CHECK(memcmp(reply, want, 20) == 0);

    msg(&m, VU_GET_PROTOCOL_FEATURES, 1, NULL, 0);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 20);
    static const uint8_t wantp[8] = {0x08, 0x02, 0, 0, 0, 0, 0, 0}; /* REPLY_ACK (3) | CONFIG (9) */
    CHECK(memcmp(reply + 12, wantp, 8) == 0);

    uint64_t pf = (1ull << 3) | (1ull << 9);
    msg(&m, VU_SET_PROTOCOL_FEATURES, 1, &pf, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 0);
    uint64_t bad = 1ull << 5; /* BACKEND_REQ: not offered */
    msg(&m, VU_SET_PROTOCOL_FEATURES, 1, &bad, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);

    /* SET_FEATURES with a bit not offered (INDIRECT_DESC, 28), need_reply: an error ack (u64 1) */
    uint64_t f = (1ull << 32) | (1ull << 28);
    msg(&m, VU_SET_FEATURES, 1 | VU_FLAG_NEED_REPLY, &f, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    CHECK_EQ_INT(elen, 20);
    CHECK_EQ_INT(reply[12], 1);
    f = (1ull << 32) | (1ull << 30);
    msg(&m, VU_SET_FEATURES, 1 | VU_FLAG_NEED_REPLY, &f, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 20); /* success ack: u64 0 */
    CHECK_EQ_INT(reply[12], 0);
    msg(&m, VU_SET_FEATURES, 1, &f, 4); /* short payload */
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);

    /* GET_CONFIG {offset 0, size 8, flags 0, 8 bytes}: the reply carries le64 guest_cid = 16 */
    uint8_t cfg[20] = {0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0};
    msg(&m, VU_GET_CONFIG, 1, cfg, 20);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 32);
    static const uint8_t wantc[8] = {16, 0, 0, 0, 0, 0, 0, 0};
    CHECK(memcmp(reply + 24, wantc, 8) == 0);
    cfg[0] = 4; /* offset 4, size 8: past the 8-byte config */
    msg(&m, VU_GET_CONFIG, 1, cfg, 20);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    cfg[0] = 0;
    cfg[4] = 0xff; /* size 255 in a 20-byte payload */
    msg(&m, VU_GET_CONFIG, 1, cfg, 20);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    msg(&m, VU_GET_CONFIG, 1, cfg, 3);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);

    /* not supported: SET_LOG_BASE with an fd (closed), an unknown request number */
    msg(&m, VU_SET_LOG_BASE, 1, &f, 8);
    m.fds[0] = open("/dev/null", O_RDONLY);
    m.nfds = 1;
    int lfd = m.fds[0];
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EOPNOTSUPP);
    CHECK(!fd_open(lfd));
    msg(&m, 45, 1, NULL, 0);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EOPNOTSUPP);
    vu_dev_reset(&d);
}

/* Guest memory for the ring tests: one 1 MiB memfd at guest address 0x100000, QEMU address 0x7f0000000000. */
#define GPA 0x100000ull
#define UVA 0x7f0000000000ull
#define MEMSZ (1u << 20)

static int memfd(void)
{
    int fd = memfd_create("vhost-test", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, MEMSZ) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A device with memory and a ring of 8 at desc 0x100000, avail 0x100100, used 0x100200 (guest addresses); guest
 * points at the same memory through its own mapping. */
static uint8_t *setup_dev(vu_dev *d, unsigned qi)
{
    vu_msg m;
    size_t elen;
    nd_err err;
    vu_dev_init(d, 16);
    int fd = memfd();
    CHECK(fd >= 0);
    uint8_t *guest = mmap(NULL, MEMSZ, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(guest != MAP_FAILED);
    uint8_t mt[8 + 32] = {1};
    uint64_t r[4] = {GPA, MEMSZ, UVA, 0};
    memcpy(mt + 8, r, 32);
    msg(&m, VU_SET_MEM_TABLE, 1, mt, sizeof mt);
    m.fds[0] = fd;
    m.nfds = 1;
    CHECK_EQ_INT(handle(d, &m, &elen, &err), 0);
    CHECK(!fd_open(fd)); /* mapped, then closed */
    uint32_t st[2] = {qi, 8};
    msg(&m, VU_SET_VRING_NUM, 1, st, 8);
    CHECK_EQ_INT(handle(d, &m, &elen, &err), 0);
    uint8_t addr[40] = {0};
    uint32_t idx = qi;
    uint64_t a[4] = {UVA, UVA + 0x200, UVA + 0x100, 0}; /* desc, used, avail, log */
    memcpy(addr, &idx, 4);
    memcpy(addr + 8, a, 32);
    msg(&m, VU_SET_VRING_ADDR, 1, addr, 40);
    CHECK_EQ_INT(handle(d, &m, &elen, &err), 0);
    uint64_t kick = qi;
    msg(&m, VU_SET_VRING_KICK, 1, &kick, 8);
    m.fds[0] = open("/dev/null", O_RDONLY);
    m.nfds = 1;
    CHECK_EQ_INT(handle(d, &m, &elen, &err), 0);
    CHECK(d->vq[qi].started);
    CHECK(d->vq[qi].enabled); /* SET_FEATURES was never sent: no protocol features, the ring starts enabled */
    return guest;
}

static void put_desc(uint8_t *guest, unsigned i, uint64_t gpa, uint32_t len, uint16_t flags, uint16_t next)
{
    uint8_t *d = guest + 16 * i;
    memcpy(d, &gpa, 8);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, &flags, 2);
    memcpy(d + 14, &next, 2);
}

static void publish(uint8_t *guest, uint16_t slot, uint16_t head, uint16_t idx)
{
    memcpy(guest + 0x100 + 4 + 2 * slot, &head, 2);
    memcpy(guest + 0x100 + 2, &idx, 2);
}

static void test_mem_table_errors(void)
{
    vu_dev d;
    vu_dev_init(&d, 16);
    vu_msg m;
    size_t elen;
    nd_err err;
    uint8_t mt[8 + 32 * 9] = {0};
    msg(&m, VU_SET_MEM_TABLE, 1, mt, 8); /* 0 regions */
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    mt[0] = 9;
    msg(&m, VU_SET_MEM_TABLE, 1, mt, sizeof mt);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    /* one region announced, no fd: refused */
    mt[0] = 1;
    msg(&m, VU_SET_MEM_TABLE, 1, mt, 40);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    /* two fds for one region: both closed */
    msg(&m, VU_SET_MEM_TABLE, 1, mt, 40);
    m.fds[0] = memfd();
    m.fds[1] = memfd();
    m.nfds = 2;
    int f0 = m.fds[0], f1 = m.fds[1];
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    CHECK(!fd_open(f0) && !fd_open(f1));
    /* size that wraps the address space */
    uint64_t r[4] = {0xfffffffffffff000ull, 0x2000, UVA, 0};
    memcpy(mt + 8, r, 32);
    msg(&m, VU_SET_MEM_TABLE, 1, mt, 40);
    m.fds[0] = memfd();
    m.nfds = 1;
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    CHECK_EQ_INT(d.mem.n, 0);
    /* a region larger than its file (1 MiB memfd, 2 MiB claimed): refused rather than SIGBUS later */
    uint64_t rl[4] = {GPA, 2 * MEMSZ, UVA, 0};
    memcpy(mt + 8, rl, 32);
    msg(&m, VU_SET_MEM_TABLE, 1, mt, 40);
    m.fds[0] = memfd();
    m.nfds = 1;
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    CHECK(strstr(err.msg, "its file has only 0x100000 bytes") != NULL);
    CHECK_EQ_INT(d.mem.n, 0);
    /* two overlapping regions */
    uint8_t mt2[8 + 64] = {2};
    uint64_t r2[8] = {GPA, 0x10000, UVA, 0, GPA + 0x8000, 0x10000, UVA + 0x100000, 0};
    memcpy(mt2 + 8, r2, 64);
    msg(&m, VU_SET_MEM_TABLE, 1, mt2, sizeof mt2);
    m.fds[0] = memfd();
    m.fds[1] = memfd();
    m.nfds = 2;
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    CHECK(strstr(err.msg, "overlaps") != NULL);
    CHECK_EQ_INT(d.mem.n, 0);
    /* vring messages with bad indexes and values */
    uint32_t st[2] = {3, 8};
    msg(&m, VU_SET_VRING_NUM, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -ERANGE);
    st[0] = 0;
    st[1] = 6;
    msg(&m, VU_SET_VRING_NUM, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    st[1] = 65536;
    msg(&m, VU_SET_VRING_NUM, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    st[1] = 0x10000;
    msg(&m, VU_SET_VRING_BASE, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    st[1] = 2;
    msg(&m, VU_SET_VRING_ENABLE, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    /* SET_VRING_ADDR without memory: refused */
    st[1] = 8;
    msg(&m, VU_SET_VRING_NUM, 1, st, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 0);
    uint8_t addr[40] = {0};
    uint64_t a[4] = {UVA, UVA + 0x200, UVA + 0x100, 0};
    memcpy(addr + 8, a, 32);
    msg(&m, VU_SET_VRING_ADDR, 1, addr, 40);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EINVAL);
    /* kick: unknown bits, no fd (polling), index out of range */
    uint64_t k = 1ull << 9;
    msg(&m, VU_SET_VRING_KICK, 1, &k, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EBADMSG);
    k = VU_VRING_NOFD;
    msg(&m, VU_SET_VRING_KICK, 1, &k, 8);
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -EOPNOTSUPP);
    k = 7;
    msg(&m, VU_SET_VRING_CALL, 1, &k, 8);
    m.fds[0] = open("/dev/null", O_RDONLY);
    m.nfds = 1;
    int cfd = m.fds[0];
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), -ERANGE);
    CHECK(!fd_open(cfd));
    vu_dev_reset(&d);
}

static void test_ring(void)
{
    vu_dev d;
    uint8_t *g = setup_dev(&d, VQ_TX);
    vu_vq *q = &d.vq[VQ_TX];
    vq_elem e;
    nd_err err;
    CHECK_EQ_INT(vq_pop(q, &d.mem, &e, &err), 0); /* empty */
    /* a chain of two readable descriptors: 44-byte header at 0x101000, 5 bytes at 0x102000 */
    put_desc(g, 0, GPA + 0x1000, 44, 1, 3);
    put_desc(g, 3, GPA + 0x2000, 5, 0, 0);
    memcpy(g + 0x2000, "hello", 5);
    publish(g, 0, 0, 1);
    CHECK_EQ_INT(vq_pop(q, &d.mem, &e, &err), 1);
    CHECK_EQ_INT(e.head, 0);
    CHECK_EQ_INT(e.nin, 2);
    CHECK_EQ_INT(e.in_len, 49);
    CHECK_EQ_INT(e.nout, 0);
    char buf[8] = {0};
    CHECK_EQ_INT(iov_read(e.in, e.nin, 44, buf, 8), 5);
    CHECK_EQ_STR(buf, "hello");
    vq_push(q, e.head, 0);
    uint16_t uidx;
    uint32_t uent[2];
    memcpy(&uidx, g + 0x200 + 2, 2);
    memcpy(uent, g + 0x200 + 4, 8);
    CHECK_EQ_INT(uidx, 1);
    CHECK_EQ_INT(uent[0], 0);
    CHECK_EQ_INT(uent[1], 0);
    /* unpop gives the same chain again */
    put_desc(g, 1, GPA + 0x3000, 100, 2, 0); /* writable */
    publish(g, 1, 1, 2);
    CHECK_EQ_INT(vq_pop(q, &d.mem, &e, &err), 1);
    CHECK_EQ_INT(e.out_len, 100);
    vq_unpop(q);
    CHECK_EQ_INT(vq_pop(q, &d.mem, &e, &err), 1);
    CHECK_EQ_INT(e.head, 1);
    CHECK_EQ_INT(iov_write(e.out, e.nout, 98, "xyz", 3), 2); /* only 2 bytes of room */
    /* GET_VRING_BASE: the next avail index (2), and the ring stops */
    vu_msg m;
    size_t elen;
    uint32_t st[2] = {VQ_TX, 0};
    msg(&m, VU_GET_VRING_BASE, 1, st, 8);
    unsigned stops = d.stops;
    CHECK_EQ_INT(handle(&d, &m, &elen, &err), 20);
    uint32_t got[2];
    memcpy(got, reply + 12, 8);
    CHECK_EQ_INT(got[0], VQ_TX);
    CHECK_EQ_INT(got[1], 2);
    CHECK(!vq_ready(q));
    CHECK(d.stops == stops + 1);
    munmap(g, MEMSZ);
    vu_dev_reset(&d);
}

/* Each malformed chain marks the ring broken; a new kick (the device restarted) clears it. */
static void bad_chain(void (*make)(uint8_t *), int want, const char *what)
{
    vu_dev d;
    uint8_t *g = setup_dev(&d, VQ_TX);
    vq_elem e;
    nd_err err;
    make(g);
    publish(g, 0, 0, 1);
    int rc = vq_pop(&d.vq[VQ_TX], &d.mem, &e, &err);
    if (rc != want)
        fprintf(stderr, "  %s: got %d\n", what, rc);
    CHECK_EQ_INT(rc, want);
    CHECK(d.vq[VQ_TX].broken);
    CHECK(strchr(err.msg, '\n') == NULL);
    CHECK_EQ_INT(vq_pop(&d.vq[VQ_TX], &d.mem, &e, &err), 0); /* not processed any more */
    munmap(g, MEMSZ);
    vu_dev_reset(&d);
}

static void mk_loop(uint8_t *g) { put_desc(g, 0, GPA + 0x1000, 44, 1, 0); }
static void mk_outside(uint8_t *g) { put_desc(g, 0, GPA + MEMSZ - 10, 44, 0, 0); }
static void mk_wrap(uint8_t *g) { put_desc(g, 0, 0xfffffffffffffff0ull, 0x20, 0, 0); }
static void mk_indirect(uint8_t *g) { put_desc(g, 0, GPA + 0x1000, 32, 4, 0); }
static void mk_next_range(uint8_t *g) { put_desc(g, 0, GPA + 0x1000, 44, 1, 8); }
static void mk_order(uint8_t *g)
{
    put_desc(g, 0, GPA + 0x1000, 44, 1 | 2, 1);
    put_desc(g, 1, GPA + 0x2000, 44, 0, 0);
}
static void mk_head(uint8_t *g) { (void)g; }

static void test_bad_chains(void)
{
    bad_chain(mk_loop, -ELOOP, "loop");
    bad_chain(mk_outside, -EFAULT, "outside");
    bad_chain(mk_wrap, -EFAULT, "wrap");
    bad_chain(mk_indirect, -EINVAL, "indirect");
    bad_chain(mk_next_range, -EINVAL, "next out of range");
    bad_chain(mk_order, -EINVAL, "readable after writable");
    /* head index out of range: slot 0 says descriptor 9 of 8 */
    vu_dev d;
    uint8_t *g = setup_dev(&d, VQ_TX);
    vq_elem e;
    nd_err err;
    mk_head(g);
    publish(g, 0, 9, 1);
    CHECK_EQ_INT(vq_pop(&d.vq[VQ_TX], &d.mem, &e, &err), -EINVAL);
    munmap(g, MEMSZ);
    vu_dev_reset(&d);
    /* avail index 100 ahead of a ring of 8 */
    g = setup_dev(&d, VQ_TX);
    publish(g, 0, 0, 100);
    CHECK_EQ_INT(vq_pop(&d.vq[VQ_TX], &d.mem, &e, &err), -EINVAL);
    munmap(g, MEMSZ);
    vu_dev_reset(&d);
}

/* ---- virtio-vsock ---- */
static char dir[64];

static int listen_at(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 8) < 0)
        return -1;
    return fd;
}

static vs_hdr H(uint64_t dst_cid, uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t len)
{
    vs_hdr h = {.src_cid = 16, .dst_cid = dst_cid, .src_port = src_port, .dst_port = dst_port, .len = len,
                .type = 1, .op = op, .buf_alloc = 262144, .fwd_cnt = 0};
    return h;
}

static uint8_t rxbuf[VS_HDR_SIZE + 65536];

/* The next packet for the guest (header in *h, payload in rxbuf + 44); 0 when none. */
static size_t rx(vs_dev *v, vs_hdr *h, size_t room)
{
    size_t n = vs_rx(v, rxbuf, room);
    if (n)
        vs_hdr_decode(rxbuf, h);
    return n;
}

/* Runs vs_on_fd for every connection socket that is ready. */
static void pump(vs_dev *v)
{
    struct pollfd p[64];
    vs_conn *who[64];
    unsigned n = vs_pollfds(v, p, who, 64);
    if (poll(p, n, 100) <= 0)
        return;
    for (unsigned i = 0; i < n; i++)
        if (p[i].revents)
            vs_on_fd(v, who[i], p[i].revents);
}

static void test_hdr_codec(void)
{
    /* a RESPONSE from CID 2 port 5000 to CID 16 port 1024, buf_alloc 262144, fwd_cnt 7, written out by hand */
    static const uint8_t want[44] = {2, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0x88, 0x13, 0, 0,
                                     0, 4, 0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 7, 0, 0, 0};
    vs_hdr h = {.src_cid = 2, .dst_cid = 16, .src_port = 5000, .dst_port = 1024, .type = 1, .op = 2,
                .buf_alloc = 262144, .fwd_cnt = 7};
    uint8_t b[44];
    vs_hdr_encode(&h, b);
    CHECK(memcmp(b, want, 44) == 0);
    vs_hdr back;
    vs_hdr_decode(want, &back);
    CHECK(back.src_port == 5000 && back.dst_port == 1024 && back.op == 2 && back.buf_alloc == 262144);
}

static void test_refused_and_malformed(void)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/a", dir);
    vs_dev v;
    vs_init(&v, 16, prefix, 1, NULL);
    nd_err err;
    vs_hdr h = H(2, 1024, 5999, VS_OP_REQUEST, 0), o;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST && o.src_cid == 2 && o.dst_cid == 16 && o.src_port == 5999 && o.dst_port == 1024);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 0);
    /* to CID 5: RST from CID 5 */
    h = H(5, 1025, 80, VS_OP_REQUEST, 0);
    CHECK(vs_tx(&v, &h, NULL, &err) < 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST && o.src_cid == 5);
    /* spoofed source CID: dropped, no answer */
    h = H(2, 1026, 80, VS_OP_REQUEST, 0);
    h.src_cid = 17;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), -EINVAL);
    CHECK(!vs_rx_pending(&v));
    /* payload too long, type seqpacket */
    h = H(2, 1026, 80, VS_OP_RW, 65537);
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), -EMSGSIZE);
    h = H(2, 1026, 80, VS_OP_REQUEST, 0);
    h.type = 2;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), -EPROTONOSUPPORT);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST);
    /* data or shutdown for no connection: RST; an RST for no connection: nothing */
    h = H(2, 1027, 80, VS_OP_RW, 3);
    CHECK_EQ_INT(vs_tx(&v, &h, (const uint8_t *)"abc", &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST);
    h = H(2, 1027, 80, VS_OP_RST, 0);
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK(!vs_rx_pending(&v));
    /* a buffer smaller than a header gets nothing */
    h = H(2, 1028, 81, VS_OP_RW, 0);
    vs_tx(&v, &h, NULL, &err);
    CHECK_EQ_INT(vs_rx(&v, rxbuf, 43), 0);
    vs_reset(&v);
}

static void test_guest_stream_and_credit(void)
{
    char prefix[128], path[160];
    snprintf(prefix, sizeof prefix, "%s/b", dir);
    snprintf(path, sizeof path, "%s_5000", prefix);
    int l = listen_at(path);
    CHECK(l >= 0);
    vs_dev v;
    vs_init(&v, 16, prefix, 1, NULL);
    nd_err err;
    vs_hdr h = H(2, 2000, 5000, VS_OP_REQUEST, 0), o;
    h.buf_alloc = 100; /* the guest can take 100 bytes */
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RESPONSE && o.src_port == 5000 && o.dst_port == 2000 && o.buf_alloc == VS_BUF_ALLOC);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0);
    /* guest -> host */
    h = H(2, 2000, 5000, VS_OP_RW, 5);
    h.buf_alloc = 100;
    CHECK_EQ_INT(vs_tx(&v, &h, (const uint8_t *)"hello", &err), 0);
    char buf[600];
    CHECK_EQ_INT(recv(s, buf, sizeof buf, 0), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    /* host -> guest, 300 bytes against a credit of 100 */
    memset(buf, 'x', 300);
    CHECK_EQ_INT(send(s, buf, 300, 0), 300);
    size_t total = 0;
    for (int i = 0; i < 20; i++) {
        pump(&v);
        while (rx(&v, &o, sizeof rxbuf)) {
            CHECK(o.op == VS_OP_RW);
            total += o.len;
            CHECK_EQ_INT(o.fwd_cnt, 5); /* we forwarded the guest's 5 bytes */
        }
    }
    CHECK_EQ_INT(total, 100);
    /* no credit left: the host socket is not polled (poll would report a closed peer at once, forever) */
    struct pollfd pf[4];
    vs_conn *w[4];
    CHECK_EQ_INT(vs_pollfds(&v, pf, w, 4), 0);
    /* the guest consumed 100 bytes: 200 more may come; rx buffers of 44 + 64 bytes */
    h = H(2, 2000, 5000, VS_OP_CREDIT_UPDATE, 0);
    h.buf_alloc = 100;
    h.fwd_cnt = 100;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    for (int i = 0; i < 20 && total < 300; i++) {
        pump(&v);
        while (rx(&v, &o, VS_HDR_SIZE + 64)) {
            CHECK(o.len <= 64);
            total += o.len;
        }
        h.fwd_cnt = (uint32_t)total;
        vs_tx(&v, &h, NULL, &err);
    }
    CHECK_EQ_INT(total, 300);
    /* CREDIT_REQUEST is answered with a CREDIT_UPDATE */
    h = H(2, 2000, 5000, VS_OP_CREDIT_REQUEST, 0);
    h.buf_alloc = 1000;
    h.fwd_cnt = 300;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_CREDIT_UPDATE && o.fwd_cnt == 5 && o.buf_alloc == VS_BUF_ALLOC);
    /* a second REQUEST for the open connection: RST */
    /* the guest half-closes (SHUTDOWN SEND): the host socket's write side is shut, the host may still send, and
     * no deadline runs (a long answer to a half-closed request is fine) */
    h = H(2, 2000, 5000, VS_OP_SHUTDOWN, 0);
    h.flags = VS_SHUTDOWN_SEND;
    h.buf_alloc = 1000;
    h.fwd_cnt = 300;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(recv(s, buf, sizeof buf, MSG_DONTWAIT), 0); /* end of stream on the host side */
    CHECK_EQ_INT(vs_timers(&v, vs_now_ms()), -1);
    CHECK_EQ_INT(send(s, "late", 4, MSG_NOSIGNAL), 4);
    for (int i = 0; i < 5 && !vs_rx_pending(&v); i++)
        pump(&v);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 48);
    CHECK(o.op == VS_OP_RW && memcmp(rxbuf + 44, "late", 4) == 0);
    /* host closes: SHUTDOWN(SEND) to the guest; both directions are closed: RST, connection gone */
    close(s);
    for (int i = 0; i < 5 && !vs_rx_pending(&v); i++)
        pump(&v);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_SHUTDOWN && o.flags == VS_SHUTDOWN_SEND);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST && o.src_port == 5000 && o.dst_port == 2000);
    CHECK_EQ_INT(v.nconns, 0);
    close(l);
    unlink(path);
    vs_reset(&v);
}

static void test_guest_overruns_credit(void)
{
    char prefix[128], path[160];
    snprintf(prefix, sizeof prefix, "%s/c", dir);
    snprintf(path, sizeof path, "%s_7", prefix);
    int l = listen_at(path);
    vs_dev v;
    vs_init(&v, 16, prefix, 1, NULL);
    nd_err err;
    vs_hdr h = H(3, 3000, 7, VS_OP_REQUEST, 0), o;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RESPONSE && o.src_cid == 3);
    int s = accept(l, NULL, NULL); /* never reads */
    static uint8_t big[65536];
    int rc = 0, i;
    for (i = 0; i < 40 && rc == 0; i++) {
        h = H(3, 3000, 7, VS_OP_RW, sizeof big);
        rc = vs_tx(&v, &h, big, &err);
    }
    CHECK_EQ_INT(rc, -ENOBUFS);
    CHECK(strstr(err.msg, "beyond its credit") != NULL);
    int rst = 0;
    while (rx(&v, &o, sizeof rxbuf))
        rst += o.op == VS_OP_RST;
    CHECK_EQ_INT(rst, 1);
    CHECK_EQ_INT(v.nconns, 0);
    close(s);
    close(l);
    unlink(path);
    vs_reset(&v);
}

static void test_heartbeat(void)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s/d", dir);
    vs_dev v;
    vs_init(&v, 16, prefix, 1, NULL);
    nd_err err;
    vs_hdr h = H(3, 4000, 9000, VS_OP_REQUEST, 0), o;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RESPONSE && o.src_cid == 3 && o.src_port == 9000);
    uint8_t b = 0xB7;
    h = H(3, 4000, 9000, VS_OP_RW, 1);
    CHECK_EQ_INT(vs_tx(&v, &h, &b, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 45);
    CHECK(o.op == VS_OP_RW && o.len == 1 && rxbuf[44] == 0xB7 && o.fwd_cnt == 1);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_SHUTDOWN && o.flags == 3);
    CHECK_EQ_INT(v.heartbeats, 1);
    h = H(3, 4000, 9000, VS_OP_SHUTDOWN, 0);
    h.flags = 3;
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST);
    CHECK_EQ_INT(v.nconns, 0);
    /* a wrong byte: no echo, the stream is closed */
    h = H(3, 4001, 9000, VS_OP_REQUEST, 0);
    vs_tx(&v, &h, NULL, &err);
    rx(&v, &o, sizeof rxbuf);
    b = 0x42;
    h = H(3, 4001, 9000, VS_OP_RW, 1);
    vs_tx(&v, &h, &b, &err);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_SHUTDOWN);
    CHECK_EQ_INT(v.heartbeats, 1);
    /* CID 2 port 9000 is an ordinary port (nothing listens: RST) */
    h = H(2, 4002, 9000, VS_OP_REQUEST, 0);
    vs_tx(&v, &h, NULL, &err);
    int got_rst = 0;
    while (rx(&v, &o, sizeof rxbuf))
        got_rst |= o.op == VS_OP_RST && o.dst_port == 4002;
    CHECK(got_rst);
    vs_reset(&v);
    /* --no-heartbeat: CID 3 port 9000 goes to PREFIX_9000 like any port */
    vs_init(&v, 16, prefix, 0, NULL);
    h = H(3, 4003, 9000, VS_OP_REQUEST, 0);
    vs_tx(&v, &h, NULL, &err);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_RST);
    vs_reset(&v);
}

/* A host program's socket given to vs_host_accept; writes line, pumps; returns the other end. */
static int host_connect(vs_dev *v, const char *line)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    CHECK_EQ_INT(vs_host_accept(v, sv[1], NULL), 0);
    CHECK_EQ_INT(send(sv[0], line, strlen(line), 0), (ssize_t)strlen(line));
    pump(v);
    return sv[0];
}

static void test_host_initiated(void)
{
    vs_dev v;
    vs_init(&v, 16, "/nonexistent/x", 1, NULL);
    nd_err err;
    vs_hdr o, h;
    int s = host_connect(&v, "CONNECT 5000\nping");
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_REQUEST && o.src_cid == 3 && o.dst_cid == 16 && o.dst_port == 5000);
    CHECK_EQ_INT(o.src_port, 1u << 30);
    CHECK(!vs_rx_pending(&v)); /* the data waits for the RESPONSE */
    h = H(3, 5000, o.src_port, VS_OP_RESPONSE, 0);
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    char line[32] = {0};
    CHECK_EQ_INT(recv(s, line, sizeof line - 1, 0), 14);
    CHECK_EQ_STR(line, "OK 1073741824\n");
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 48);
    CHECK(o.op == VS_OP_RW && memcmp(rxbuf + 44, "ping", 4) == 0);
    uint32_t hp = o.src_port;
    /* the host program closes: SHUTDOWN(SEND); the guest answers with an RST: gone */
    close(s);
    for (int i = 0; i < 5 && !vs_rx_pending(&v); i++)
        pump(&v);
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_SHUTDOWN && o.flags == VS_SHUTDOWN_SEND);
    h = H(3, 5000, hp, VS_OP_RST, 0);
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(v.nconns, 0);
    /* refused by the guest: closed without OK */
    s = host_connect(&v, "CONNECT 7777\n");
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_REQUEST && o.src_port == (1u << 30) + 1);
    h = H(3, 7777, o.src_port, VS_OP_RST, 0);
    CHECK_EQ_INT(vs_tx(&v, &h, NULL, &err), 0);
    CHECK_EQ_INT(recv(s, line, sizeof line, 0), 0);
    close(s);
    /* malformed lines: closed, nothing sent to the guest */
    static const char *const bad[] = {"CONNECT x\n", "CONNECT 99999999999\n", "CONNECT \n", "connect 5\n",
                                      "CONNECT 5 6\n", "CONNECT -1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = host_connect(&v, bad[i]);
        CHECK_EQ_INT(recv(s, line, sizeof line, 0), 0);
        CHECK(!vs_rx_pending(&v));
        close(s);
    }
    /* 64 bytes without a newline */
    char longl[80];
    memset(longl, 'C', 70);
    longl[70] = 0;
    s = host_connect(&v, longl);
    CHECK(recv(s, line, sizeof line, 0) <= 0); /* closed (with unread bytes: a reset) */
    CHECK_EQ_INT(v.nconns, 0);
    close(s);
    /* "\r\n" is accepted */
    s = host_connect(&v, "CONNECT 42\r\n");
    CHECK_EQ_INT(rx(&v, &o, sizeof rxbuf), 44);
    CHECK(o.op == VS_OP_REQUEST && o.dst_port == 42);
    close(s);
    vs_reset(&v);
    CHECK_EQ_INT(v.nconns, 0);
}

static void test_timers(void)
{
    vs_dev v;
    vs_init(&v, 16, "/nonexistent/x", 1, NULL);
    int s = host_connect(&v, "CONN"); /* never finishes its line */
    CHECK_EQ_INT(v.nconns, 1);
    int next = vs_timers(&v, vs_now_ms());
    CHECK(next > 0 && next <= VS_TIMEOUT_MS);
    vs_timers(&v, vs_now_ms() + VS_TIMEOUT_MS + 1);
    CHECK_EQ_INT(v.nconns, 0);
    char c;
    CHECK_EQ_INT(recv(s, &c, 1, 0), 0);
    close(s);
    CHECK_EQ_INT(vs_timers(&v, vs_now_ms()), -1);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/nd-vhost-unit.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    ND_RUN(test_header);
    ND_RUN(test_features_and_config);
    ND_RUN(test_mem_table_errors);
    ND_RUN(test_ring);
    ND_RUN(test_bad_chains);
    ND_RUN(test_hdr_codec);
    ND_RUN(test_refused_and_malformed);
    ND_RUN(test_guest_stream_and_credit);
    ND_RUN(test_guest_overruns_credit);
    ND_RUN(test_heartbeat);
    ND_RUN(test_host_initiated);
    ND_RUN(test_timers);
    rmdir(dir);
    return nd_test_summary();
}
