/*
 * vq.c — guest memory and split virtqueues for nd-vhost-vsock (see vhost.h).
 *
 * Memory: QEMU passes each RAM region as an fd with (guest physical address, size, QEMU virtual address, mmap offset);
 * we map size + offset bytes from offset 0 (the offset need not be page-aligned) and translate both kinds of address
 * by looking the range up in the regions — a range must lie inside one region or it is refused.
 * Rings (virtio 1.x, 2.7 "Split Virtqueues"): descriptor table of 16-byte entries {le64 addr, le32 len, le16 flags,
 * le16 next}, available ring {le16 flags, le16 idx, le16 ring[num]}, used ring {le16 flags, le16 idx,
 * {le32 id, le32 len} ring[num]}. No VIRTIO_F_EVENT_IDX and no VIRTIO_F_RING_INDIRECT_DESC are offered, so a chain
 * with the INDIRECT flag is malformed here.
 */
#include "vhost.h"

#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define VRING_DESC_F_NEXT 1u
#define VRING_DESC_F_WRITE 2u
#define VRING_DESC_F_INDIRECT 4u
#define VRING_AVAIL_F_NO_INTERRUPT 1u

int vu_mem_add(vu_mem *m, uint64_t gpa, uint64_t size, uint64_t uva, uint64_t mmap_offset, int fd, nd_err *err)
{
    if (m->n >= VU_MAX_REGIONS)
        return nd_err_set(err, -ENOSPC, "memory table: more than %u regions", VU_MAX_REGIONS);
    if (size == 0 || gpa + size < gpa || uva + size < uva || mmap_offset + size < mmap_offset ||
        mmap_offset + size > (uint64_t)SIZE_MAX / 2)
        return nd_err_set(err, -EINVAL, "memory region gpa 0x%llx size 0x%llx offset 0x%llx: bad size",
                          (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)mmap_offset);
    for (unsigned i = 0; i < m->n; i++) {
        const vu_region *r = &m->r[i];
        if (gpa < r->gpa + r->size && r->gpa < gpa + size)
            return nd_err_set(err, -EINVAL, "memory region gpa 0x%llx size 0x%llx overlaps another",
                              (unsigned long long)gpa, (unsigned long long)size);
    }
    size_t len = (size_t)(mmap_offset + size);
    /* a file shorter than the region would turn the guest's accesses into SIGBUS here: refuse it */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return nd_err_set(err, -errno, "memory region fd: %s", strerror(errno));
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size < mmap_offset + size)
        return nd_err_set(err, -EINVAL, "memory region gpa 0x%llx size 0x%llx offset 0x%llx: its file has only "
                          "0x%llx bytes", (unsigned long long)gpa, (unsigned long long)size,
                          (unsigned long long)mmap_offset, (unsigned long long)st.st_size);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (p == MAP_FAILED)
        return nd_err_set(err, -errno, "memory region gpa 0x%llx size 0x%llx: mmap: %s", (unsigned long long)gpa,
                          (unsigned long long)size, strerror(errno));
    vu_region *r = &m->r[m->n++];
    r->gpa = gpa;
    r->size = size;
    r->uva = uva;
    r->map = p;
    r->map_len = len;
    r->host = (uint8_t *)p + mmap_offset;
    return 0;
}

void vu_mem_clear(vu_mem *m)
{
    for (unsigned i = 0; i < m->n; i++)
        if (m->r[i].map)
            munmap(m->r[i].map, m->r[i].map_len);
    memset(m, 0, sizeof *m);
}

uint8_t *vu_mem_gpa(const vu_mem *m, uint64_t gpa, uint64_t len)
{
    for (unsigned i = 0; i < m->n; i++) {
        const vu_region *r = &m->r[i];
        if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
            return r->host + (gpa - r->gpa);
    }
    return NULL;
}

uint8_t *vu_mem_uva(const vu_mem *m, uint64_t uva, uint64_t len)
{
    for (unsigned i = 0; i < m->n; i++) {
        const vu_region *r = &m->r[i];
        if (uva >= r->uva && uva - r->uva <= r->size && len <= r->size - (uva - r->uva))
            return r->host + (uva - r->uva);
    }
    return NULL;
}

int vq_map(vu_vq *q, const vu_mem *m, nd_err *err)
{
    q->desc = q->avail = q->used = NULL;
    if (!q->num || !q->desc_uva)
        return nd_err_set(err, -EINVAL, "vring: size or addresses not set");
    /* alignment required by virtio 1.x 2.7: descriptor table 16, available ring 2, used ring 4 */
    if ((q->desc_uva & 15) || (q->avail_uva & 1) || (q->used_uva & 3))
        return nd_err_set(err, -EINVAL, "vring: misaligned ring addresses");
    uint8_t *d = vu_mem_uva(m, q->desc_uva, 16ull * q->num);
    uint8_t *a = vu_mem_uva(m, q->avail_uva, 4ull + 2ull * q->num + 2);
    uint8_t *u = vu_mem_uva(m, q->used_uva, 4ull + 8ull * q->num + 2);
    if (!d || !a || !u)
        return nd_err_set(err, -EINVAL, "vring: ring addresses (desc 0x%llx avail 0x%llx used 0x%llx, size %u) are "
                          "outside guest memory", (unsigned long long)q->desc_uva,
                          (unsigned long long)q->avail_uva, (unsigned long long)q->used_uva, q->num);
    q->desc = d;
    q->avail = a;
    q->used = u;
    return 0;
}

int vq_ready(const vu_vq *q)
{
    return q->started && q->enabled && q->desc && !q->broken;
}

static uint16_t ld16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return le16toh(v);
}

static void st32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

/* The avail index the driver published (read once, then an acquire fence so the ring entries are read after it). */
static uint16_t avail_idx(const vu_vq *q)
{
    uint16_t v = __atomic_load_n((const uint16_t *)(const void *)(q->avail + 2), __ATOMIC_ACQUIRE);
    return le16toh(v);
}

static int broken(vu_vq *q, nd_err *err, int code, const char *what, unsigned a)
{
    q->broken = 1;
    return nd_err_set(err, code, "vring: %s (%u); the ring is not processed until the device is reset", what, a);
}

/* Appends guest range [gpa, gpa+len) to the iovec list, split where it crosses regions. */
static int add_seg(const vu_mem *m, struct iovec *iov, unsigned *n, uint64_t gpa, uint32_t len)
{
    while (len) {
        const vu_region *r = NULL;
        for (unsigned i = 0; i < m->n; i++)
            if (gpa >= m->r[i].gpa && gpa - m->r[i].gpa < m->r[i].size) {
                r = &m->r[i];
                break;
            }
        if (!r || *n >= VQ_MAX_IOV)
            return -1;
        uint64_t room = r->size - (gpa - r->gpa);
        uint32_t take = room < len ? (uint32_t)room : len;
        iov[*n].iov_base = r->host + (gpa - r->gpa);
        iov[*n].iov_len = take;
        (*n)++;
        gpa += take;
        len -= take;
    }
    return 0;
}

int vq_pop(vu_vq *q, const vu_mem *m, vq_elem *e, nd_err *err)
{
    if (!vq_ready(q))
        return 0;
    uint16_t avail = avail_idx(q);
    if (avail == q->last_avail)
        return 0;
    if ((uint16_t)(avail - q->last_avail) > q->num)
        return broken(q, err, -EINVAL, "avail index moved by more than the ring size", (uint16_t)(avail - q->last_avail));
    uint16_t head = ld16(q->avail + 4 + 2u * (q->last_avail % q->num));
    if (head >= q->num)
        return broken(q, err, -EINVAL, "descriptor head out of range", head);
    e->nin = e->nout = 0;
    e->in_len = e->out_len = 0;
    e->head = head;
    uint16_t i = head;
    for (uint32_t steps = 0;; steps++) {
        if (steps >= q->num)
            return broken(q, err, -ELOOP, "descriptor chain longer than the ring (loop?) at head", head);
        const uint8_t *d = q->desc + 16u * i;
        uint64_t addr;
        uint32_t len;
        memcpy(&addr, d, 8);
        memcpy(&len, d + 8, 4);
        addr = le64toh(addr);
        len = le32toh(len);
        uint16_t flags = ld16(d + 12), next = ld16(d + 14);
        if (flags & VRING_DESC_F_INDIRECT)
            return broken(q, err, -EINVAL, "indirect descriptor (not offered) at", i);
        if (flags & VRING_DESC_F_WRITE) {
            if (add_seg(m, e->out, &e->nout, addr, len) < 0)
                return broken(q, err, -EFAULT, "writable descriptor outside guest memory or too many segments", i);
            e->out_len += len;
        } else {
            if (e->nout)
                return broken(q, err, -EINVAL, "readable descriptor after a writable one at", i);
            if (add_seg(m, e->in, &e->nin, addr, len) < 0)
                return broken(q, err, -EFAULT, "readable descriptor outside guest memory or too many segments", i);
            e->in_len += len;
        }
        if (!(flags & VRING_DESC_F_NEXT))
            break;
        if (next >= q->num)
            return broken(q, err, -EINVAL, "next descriptor out of range", next);
        i = next;
    }
    q->last_avail++;
    return 1;
}

void vq_unpop(vu_vq *q)
{
    q->last_avail--;
}

void vq_push(vu_vq *q, uint16_t head, uint32_t len)
{
    uint8_t *ent = q->used + 4 + 8u * (q->used_idx % q->num);
    st32(ent, head);
    st32(ent + 4, len);
    q->used_idx++;
    /* the entry is visible before the index that publishes it */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    uint16_t v = htole16(q->used_idx);
    __atomic_store_n((uint16_t *)(void *)(q->used + 2), v, __ATOMIC_RELEASE);
}

void vq_notify(vu_vq *q)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (q->call_fd < 0 || (ld16(q->avail) & VRING_AVAIL_F_NO_INTERRUPT))
        return;
    uint64_t one = 1;
    ssize_t w = write(q->call_fd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the guest will be interrupted anyway */
}

/* The one walk behind iov_read and iov_write: copies up to n bytes between buf and the chain from byte off of the
 * chain, towards buf when to_buf. Returns the bytes copied (fewer when the chain ends first). */
static size_t iov_copy(const struct iovec *iov, unsigned niov, size_t off, uint8_t *buf, size_t n, bool to_buf)
{
    size_t done = 0;
    for (unsigned i = 0; i < niov && done < n; i++) {
        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        size_t take = iov[i].iov_len - off;
        if (take > n - done)
            take = n - done;
        uint8_t *chain = (uint8_t *)iov[i].iov_base + off;
        if (to_buf)
            memcpy(buf + done, chain, take);
        else
            memcpy(chain, buf + done, take);
        done += take;
        off = 0;
    }
    return done;
}

size_t iov_read(const struct iovec *iov, unsigned niov, size_t off, void *dst, size_t n)
{
    return iov_copy(iov, niov, off, dst, n, true);
}

size_t iov_write(const struct iovec *iov, unsigned niov, size_t off, const void *src, size_t n)
{
    return iov_copy(iov, niov, off, (uint8_t *)(uintptr_t)src, n, false);
}
