/*
 * fuzz_vhost.c — nd-vhost-vsock (vhost/) as QEMU and a guest drive it: the input is
 *   [u16 LE n] n bytes of vhost-user messages (12-byte header + payload each; fds are supplied by the harness: a
 *   64 KiB memfd for memory tables, eventfds for SET_VRING_KICK/CALL/ERR, as many as header byte 5 says, up to 8)
 *   then the rest: the contents of the guest memory (the memfd),
 * so the message parser, the memory table, the rings laid out in fuzzed memory and the guest's tx packets (and the
 * rx path answering them) are all reached. Seeds: a complete set-up written here (memory table, tx and rx rings,
 * kicks) with a REQUEST, an RW and a heartbeat in the tx ring. ND_FUZZ_VHOST_LOG=1 prints the backend's log lines.
 */
#include "fuzz.h"
#include "vhost.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEMSZ 65536u
#define GPA 0x10000ull
#define UVA 0x7f0000000000ull

static int mem_fd = -1;
static uint8_t reply[VU_HDR_SIZE + VU_MAX_PAYLOAD];
static uint8_t scratch[VS_HDR_SIZE + VS_MAX_PKT];

/* ---- seed construction ---- */
typedef struct {
    uint8_t b[65536];
    size_t n;
} sbuf;

static void put(sbuf *s, const void *p, size_t n)
{
    if (s->n + n <= sizeof s->b) {
        memcpy(s->b + s->n, p, n);
        s->n += n;
    }
}

static void put_msg(sbuf *s, uint32_t req, uint32_t nfds, const void *p, uint32_t n)
{
    uint32_t h[3] = {req, 1u | (nfds << 8), n};
    put(s, h, 12);
    put(s, p, n);
}

static void put_ring(sbuf *s, uint32_t q, uint64_t off)
{
    uint32_t st[2] = {q, 8};
    put_msg(s, VU_SET_VRING_NUM, 0, st, 8);
    uint32_t a[10] = {q, 0};
    uint64_t addr[4] = {UVA + off, UVA + off + 0x200, UVA + off + 0x100, 0};
    memcpy(a + 2, addr, 32);
    put_msg(s, VU_SET_VRING_ADDR, 0, a, 40);
    uint64_t k = q;
    put_msg(s, VU_SET_VRING_KICK, 1, &k, 8);
    put_msg(s, VU_SET_VRING_CALL, 1, &k, 8);
}

static void seed_setup(int argc, char **argv)
{
    static sbuf s;
    static uint8_t mem[MEMSZ];
    s.n = 2;
    uint64_t f = VU_FEATURES;
    put_msg(&s, VU_SET_FEATURES, 0, &f, 8);
    uint32_t mt[10] = {1, 0};
    uint64_t r[4] = {GPA, MEMSZ, UVA, 0};
    memcpy(mt + 2, r, 32);
    put_msg(&s, VU_SET_MEM_TABLE, 1, mt, 40);
    put_ring(&s, VQ_RX, 0x0000);
    put_ring(&s, VQ_TX, 0x1000);
    for (uint32_t q = 0; q < 2; q++) {
        uint32_t en[2] = {q, 1};
        put_msg(&s, VU_SET_VRING_ENABLE, 0, en, 8);
    }
    uint32_t cfg[5] = {0, 8, 0, 0, 0};
    put_msg(&s, VU_GET_CONFIG, 0, cfg, 20);
    uint16_t n = (uint16_t)(s.n - 2);
    memcpy(s.b, &n, 2);
    /* guest memory: rx ring at 0 with 4 writable buffers; tx ring at 0x1000 with REQUEST, RW, heartbeat REQUEST+RW */
    memset(mem, 0, sizeof mem);
    for (uint16_t i = 0; i < 4; i++) {
        uint64_t a = GPA + 0x4000 + 0x1000u * i;
        uint32_t len = 0x1000;
        uint16_t fl = 2, nx = 0;
        memcpy(mem + 16 * i, &a, 8);
        memcpy(mem + 16 * i + 8, &len, 4);
        memcpy(mem + 16 * i + 12, &fl, 2);
        memcpy(mem + 16 * i + 14, &nx, 2);
        memcpy(mem + 0x100 + 4 + 2 * i, &i, 2);
    }
    uint16_t four = 4;
    memcpy(mem + 0x100 + 2, &four, 2);
    static const struct {
        uint64_t dst_cid;
        uint32_t dst_port;
        uint16_t op;
        uint32_t len;
        uint8_t byte;
    } pk[] = {{2, 5000, VS_OP_REQUEST, 0, 0}, {2, 5000, VS_OP_RW, 1, 'x'}, {3, 9000, VS_OP_REQUEST, 0, 0},
              {3, 9000, VS_OP_RW, 1, 0xB7}};
    for (uint16_t i = 0; i < 4; i++) {
        vs_hdr h = {.src_cid = 16, .dst_cid = pk[i].dst_cid, .src_port = 1234, .dst_port = pk[i].dst_port,
                    .len = pk[i].len, .type = 1, .op = pk[i].op, .buf_alloc = 65536};
        uint8_t *p = mem + 0x8000 + 0x100u * i;
        vs_hdr_encode(&h, p);
        p[44] = pk[i].byte;
        uint64_t a = GPA + 0x8000 + 0x100u * i;
        uint32_t len = 44 + pk[i].len;
        uint16_t fl = 0, nx = 0;
        uint8_t *d = mem + 0x1000 + 16 * i;
        memcpy(d, &a, 8);
        memcpy(d + 8, &len, 4);
        memcpy(d + 12, &fl, 2);
        memcpy(d + 14, &nx, 2);
        memcpy(mem + 0x1100 + 4 + 2 * i, &i, 2);
    }
    memcpy(mem + 0x1100 + 2, &four, 2);
    put(&s, mem, 0x9000);
    nd_fuzz_seed(argc, argv, "vhost-setup", s.b, s.n);
    /* the same without guest memory: the control messages alone */
    nd_fuzz_seed(argc, argv, "vhost-messages", s.b, 2u + n);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mem_fd = memfd_create("fuzz-vhost", MFD_CLOEXEC);
    if (mem_fd < 0 || ftruncate(mem_fd, MEMSZ) < 0)
        abort();
    seed_setup(*argc, *argv);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = (size_t)data[0] | ((size_t)data[1] << 8);
    if (n > size - 2)
        n = size - 2;
    const uint8_t *msgs = data + 2, *memdata = data + 2 + n;
    size_t memlen = size - 2 - n;
    /* the guest memory: the input's tail, zero-filled to 64 KiB */
    static uint8_t zero[MEMSZ];
    if (pwrite(mem_fd, zero, MEMSZ, 0) != MEMSZ ||
        (memlen && pwrite(mem_fd, memdata, memlen > MEMSZ ? MEMSZ : memlen, 0) < 0))
        return 0;
    vu_dev d;
    vu_dev_init(&d, 16);
    vs_dev v;
    vs_init(&v, 16, "/nonexistent/nd-fuzz-vhost", 1, getenv("ND_FUZZ_VHOST_LOG") ? stderr : NULL);
    static vu_msg m;
    nd_err err;
    size_t off = 0;
    while (off + VU_HDR_SIZE <= n) {
        uint32_t req, flags, sz;
        if (vu_hdr_check(msgs + off, &req, &flags, &sz, &err) < 0)
            break; /* the program closes the connection here */
        if (sz > n - off - VU_HDR_SIZE)
            break;
        m.request = req;
        m.flags = flags;
        m.size = sz;
        memcpy(m.payload, msgs + off + VU_HDR_SIZE, sz);
        m.nfds = 0;
        unsigned want = (flags >> 8) & 0xf;
        for (unsigned i = 0; i < want && i < VU_MAX_FDS; i++) {
            int fd = (req == VU_SET_VRING_KICK || req == VU_SET_VRING_CALL || req == VU_SET_VRING_ERR)
                         ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
                         : dup(mem_fd);
            if (fd >= 0)
                m.fds[m.nfds++] = fd;
        }
        size_t elen;
        (void)vu_dev_handle(&d, &m, reply, &elen, &err);
        off += VU_HDR_SIZE + sz;
        if (d.stops) {
            vs_reset(&v);
            d.stops = 0;
        }
        (void)vs_service_tx(&v, &d.vq[VQ_TX], &d.mem, scratch);
        vs_service_rx(&v, &d.vq[VQ_RX], &d.mem, scratch);
    }
    vs_reset(&v);
    vu_dev_reset(&d);
    return 0;
}
