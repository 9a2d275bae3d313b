/*
 * vhost.h — nd-vhost-vsock, the vhost-user-vsock backend QEMU's nitro-enclave machine (and vhost-user-vsock-pci)
 * needs on its vsock chardev: the declarations shared by its four parts.
 *
 *   vu.c     the vhost-user control protocol (QEMU docs/interop/vhost-user.rst): message framing and validation,
 *            and the device state it sets (features, guest memory table, vring numbers/addresses/fds, config)
 *   vq.c     guest memory (the regions QEMU passes as fds, mmapped) and split virtqueues in it (virtio 1.x 2.7)
 *   vsock.c  the virtio-vsock packet protocol (virtio 1.x 5.10, Linux include/uapi/linux/virtio_vsock.h):
 *            connections between guest ports and host unix sockets (Firecracker's PREFIX_PORT / CONNECT
 *            convention), credit accounting, the enclave boot heartbeat
 *   main.c   the program: options, the poll loop, signals, clean-up
 *
 * Everything that comes from QEMU or from the guest is validated before use: a bad message or packet gets a one-line
 * error (negative errno code and an nd_err) and never a crash. No global mutable state: the vu_dev and vs_dev objects
 * hold it all.
 */
#ifndef ND_VHOST_H
#define ND_VHOST_H

#include "nd.h"

#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <poll.h>
#include <sys/uio.h>

/* ---- vhost-user messages (docs/interop/vhost-user.rst, "Front-end message types") ---- */
enum {
    VU_GET_FEATURES = 1,
    VU_SET_FEATURES = 2,
    VU_SET_OWNER = 3,
    VU_RESET_OWNER = 4,
    VU_SET_MEM_TABLE = 5,
    VU_SET_LOG_BASE = 6,
    VU_SET_LOG_FD = 7,
    VU_SET_VRING_NUM = 8,
    VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10,
    VU_GET_VRING_BASE = 11,
    VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13,
    VU_SET_VRING_ERR = 14,
    VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16,
    VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18,
    VU_SEND_RARP = 19,
    VU_NET_SET_MTU = 20,
    VU_SET_BACKEND_REQ_FD = 21,
    VU_IOTLB_MSG = 22,
    VU_SET_VRING_ENDIAN = 23,
    VU_GET_CONFIG = 24,
    VU_SET_CONFIG = 25,
    VU_RESET_DEVICE = 34,
    VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37,
    VU_REM_MEM_REG = 38,
    VU_SET_STATUS = 39,
    VU_GET_STATUS = 40,
    VU_MAX_REQUEST = 48, /* requests above this are rejected without reading further */
};

#define VU_HDR_SIZE 12u
#define VU_VERSION 0x1u
#define VU_FLAG_VERSION_MASK 0x3u
#define VU_FLAG_REPLY (1u << 2)
#define VU_FLAG_NEED_REPLY (1u << 3)
#define VU_MAX_PAYLOAD 4096u   /* the largest message QEMU sends (SET_MEM_TABLE, 8 regions) is 264 bytes */
#define VU_MAX_FDS 8u          /* VHOST_MEMORY_BASELINE_NREGIONS */
#define VU_MAX_REGIONS 8u
#define VU_CONFIG_HDR 12u      /* offset, size, flags */
#define VU_MAX_CONFIG 256u     /* VHOST_USER_MAX_CONFIG_SIZE */
#define VU_VRING_IDX_MASK 0xffu
#define VU_VRING_NOFD (1u << 8)

/* virtio / vhost-user feature bits this backend offers (and nothing else: no indirect descriptors, no event index). */
#define VU_F_VERSION_1 (1ull << 32)            /* VIRTIO_F_VERSION_1 */
#define VU_F_PROTOCOL_FEATURES (1ull << 30)    /* VHOST_USER_F_PROTOCOL_FEATURES */
#define VU_PF_REPLY_ACK (1ull << 3)            /* VHOST_USER_PROTOCOL_F_REPLY_ACK */
#define VU_PF_CONFIG (1ull << 9)               /* VHOST_USER_PROTOCOL_F_CONFIG (QEMU's vhost-user-vsock needs it) */
#define VU_FEATURES (VU_F_VERSION_1 | VU_F_PROTOCOL_FEATURES)
#define VU_PROTOCOL_FEATURES (VU_PF_REPLY_ACK | VU_PF_CONFIG)

/* One message as read from the socket: header fields, payload (size bytes) and the fds that came with it. */
typedef struct vu_msg {
    uint32_t request, flags, size;
    uint8_t payload[VU_MAX_PAYLOAD];
    int fds[VU_MAX_FDS];
    int nfds;
} vu_msg;

/* ---- guest memory and split virtqueues (vq.c) ---- */
typedef struct vu_region {
    uint64_t gpa, size, uva;   /* guest physical address, length, QEMU's virtual address */
    uint8_t *host;             /* where gpa is mapped here */
    void *map;                 /* the mmap (size + mmap_offset bytes from offset 0 of the fd) */
    size_t map_len;
} vu_region;

typedef struct vu_mem {
    vu_region r[VU_MAX_REGIONS];
    unsigned n;
} vu_mem;

#define VQ_MAX_SIZE 32768u
#define VQ_MAX_IOV 64u      /* segments of one descriptor chain we accept (after region splitting) */

typedef struct vu_vq {
    uint32_t num;                          /* ring size (power of two, <= 32768), 0 = not set */
    uint64_t desc_uva, avail_uva, used_uva;
    uint8_t *desc, *avail, *used;          /* translated; NULL until SET_VRING_ADDR succeeds with a memory table */
    uint16_t last_avail;                   /* next avail index to take */
    uint16_t used_idx;                     /* next used index to write */
    int kick_fd, call_fd, err_fd;          /* -1 when absent */
    int started;                           /* kick received, not stopped by GET_VRING_BASE */
    int enabled;                           /* SET_VRING_ENABLE (or on by default without PROTOCOL_FEATURES) */
    int broken;                            /* the guest put something invalid in it: not processed until reset */
} vu_vq;

/* One descriptor chain taken from a ring: its device-readable then device-writable segments (host pointers). */
typedef struct vq_elem {
    uint16_t head;
    struct iovec in[VQ_MAX_IOV];    /* device-readable (driver -> device) */
    unsigned nin;
    size_t in_len;
    struct iovec out[VQ_MAX_IOV];   /* device-writable (device -> driver) */
    unsigned nout;
    size_t out_len;
} vq_elem;

/* Maps a region of guest memory (QEMU passes fd, size, mmap_offset). Returns 0 or a negative code (-EINVAL for
 * sizes that overflow or overlap, -ENOSPC when 8 regions are mapped, the mmap error), explained. fd is not closed. */
int vu_mem_add(vu_mem *m, uint64_t gpa, uint64_t size, uint64_t uva, uint64_t mmap_offset, int fd, nd_err *err);
/* Unmaps everything. */
void vu_mem_clear(vu_mem *m);
/* Host pointer of guest-physical [gpa, gpa+len) when it lies within one region, else NULL. */
uint8_t *vu_mem_gpa(const vu_mem *m, uint64_t gpa, uint64_t len);
/* Host pointer of QEMU-virtual [uva, uva+len) when it lies within one region, else NULL. */
uint8_t *vu_mem_uva(const vu_mem *m, uint64_t uva, uint64_t len);

/* Resolves the ring's three areas after SET_VRING_ADDR/NUM or a new memory table. Returns 0, or -EINVAL explained
 * (the addresses are outside guest memory, misaligned, or the size is not set). */
int vq_map(vu_vq *q, const vu_mem *m, nd_err *err);
/* Whether the ring may be processed now (started, enabled, mapped, not broken). */
int vq_ready(const vu_vq *q);
/* Takes the next available chain. Returns 1 with e filled, 0 when the ring is empty, or -EINVAL when the chain is
 * malformed (bad index, loop, address outside memory, readable after writable, too many segments), explained; the
 * ring is then marked broken. */
int vq_pop(vu_vq *q, const vu_mem *m, vq_elem *e, nd_err *err);
/* Gives back the chain vq_pop returned last (it is taken again by the next vq_pop). */
void vq_unpop(vu_vq *q);
/* Returns chain head to the driver with len bytes written. */
void vq_push(vu_vq *q, uint16_t head, uint32_t len);
/* Signals the call eventfd unless the driver suppressed interrupts (VRING_AVAIL_F_NO_INTERRUPT). */
void vq_notify(vu_vq *q);
/* Copies up to n bytes starting at byte off of the iovec list into dst. Returns the bytes copied. */
size_t iov_read(const struct iovec *iov, unsigned niov, size_t off, void *dst, size_t n);
/* Copies n bytes from src to byte off of the iovec list. Returns the bytes copied (less when it is too short). */
size_t iov_write(const struct iovec *iov, unsigned niov, size_t off, const void *src, size_t n);

/* ---- the vhost-user device (vu.c) ---- */
#define VU_NQUEUES 3   /* virtio-vsock: 0 rx, 1 tx, 2 event */
#define VQ_RX 0
#define VQ_TX 1
#define VQ_EVENT 2

typedef struct vu_dev {
    uint64_t features;             /* acknowledged by SET_FEATURES */
    uint64_t protocol_features;    /* acknowledged by SET_PROTOCOL_FEATURES */
    int owned;
    vu_mem mem;
    vu_vq vq[VU_NQUEUES];
    uint64_t guest_cid;            /* the config space (struct virtio_vsock_config) */
    unsigned stops;                /* bumped whenever a ring stops or the device is reset (vsock.c drops connections) */
} vu_dev;

/* Initialises d for guest_cid. */
void vu_dev_init(vu_dev *d, uint64_t guest_cid);
/* Unmaps memory and closes every fd d holds; d is as after vu_dev_init. */
void vu_dev_reset(vu_dev *d);

/* Checks a header (12 bytes): version 1, not a reply, a request this program knows the number of, size within
 * VU_MAX_PAYLOAD. Returns 0 or -EBADMSG/-EMSGSIZE explained. */
int vu_hdr_check(const uint8_t *hdr, uint32_t *request, uint32_t *flags, uint32_t *size, nd_err *err);

/* Applies one message to d. On success returns the number of reply bytes written into reply (header included; 0
 * when there is no reply); the fds of the message are taken (kept by d or closed). On a malformed message returns
 * a negative code explained in err, with the fds closed; if the front-end asked for an ack, *reply_len_on_error
 * holds the size of the error ack written into reply (else 0). reply must hold VU_HDR_SIZE + VU_MAX_PAYLOAD bytes. */
int vu_dev_handle(vu_dev *d, vu_msg *m, uint8_t *reply, size_t *reply_len_on_error, nd_err *err);

/* Whether the front-end waits for a reply payload to this request (so an error cannot be answered with an ack, and
 * the connection has to end instead of leaving QEMU waiting). */
int vu_request_has_reply(uint32_t request);

/* The name of a request ("SET_MEM_TABLE"), or "UNKNOWN". */
const char *vu_request_name(uint32_t request);

/* ---- virtio-vsock (vsock.c) ---- */
#define VS_HDR_SIZE 44u
#define VS_TYPE_STREAM 1u
#define VS_OP_REQUEST 1u
#define VS_OP_RESPONSE 2u
#define VS_OP_RST 3u
#define VS_OP_SHUTDOWN 4u
#define VS_OP_RW 5u
#define VS_OP_CREDIT_UPDATE 6u
#define VS_OP_CREDIT_REQUEST 7u
#define VS_SHUTDOWN_RCV 1u
#define VS_SHUTDOWN_SEND 2u
#define VS_CID_HOST 2u
#define VS_CID_PARENT 3u          /* nitro-cli src/common/mod.rs: VMADDR_CID_PARENT = 3 */
#define VS_HEARTBEAT_PORT 9000u   /* nitro-cli src/common/mod.rs: ENCLAVE_READY_VSOCK_PORT = 9000 */
#define VS_HEARTBEAT_BYTE 0xB7u   /* nitro-cli eif_loader/src/lib.rs: HEART_BEAT = 0xB7 */
#define VS_MAX_PKT 65536u         /* VIRTIO_VSOCK_MAX_PKT_BUF_SIZE: the largest payload we accept from the guest */
#define VS_BUF_ALLOC (256u * 1024u) /* our receive buffer per connection (what we advertise as buf_alloc) */
#define VS_STAGE 65536u           /* host -> guest bytes read ahead per connection */
#define VS_MAX_CONNS 1024u
#define VS_MAX_RST 1024u
#define VS_CONNECT_LINE_MAX 64u
#define VS_TIMEOUT_MS 10000       /* a CONNECT line, a host-initiated REQUEST, a closing connection */

/* struct virtio_vsock_hdr, decoded (the wire format is 44 packed little-endian bytes). */
typedef struct vs_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port, len;
    uint16_t type, op;
    uint32_t flags, buf_alloc, fwd_cnt;
} vs_hdr;

/* Decodes / encodes the 44-byte wire header. */
void vs_hdr_decode(const uint8_t *b, vs_hdr *h);
void vs_hdr_encode(const vs_hdr *h, uint8_t *b);

typedef struct vs_conn vs_conn;

typedef struct vs_rst {
    uint64_t host_cid;
    uint32_t host_port, guest_port;
} vs_rst;

typedef struct vs_dev {
    uint64_t guest_cid;
    char prefix[108];              /* --uds-path */
    int heartbeat;                 /* answer CID 3 port 9000 here */
    FILE *log;                     /* one line per event; NULL = quiet */
    vs_conn *conns[VS_MAX_CONNS];
    unsigned nconns;
    unsigned rr;                   /* round-robin cursor for rx */
    vs_rst rst[VS_MAX_RST];        /* RSTs for packets of no connection, waiting for rx buffers */
    unsigned nrst;
    uint32_t next_port;            /* host-side port of the next host-initiated connection */
    unsigned heartbeats;           /* heartbeats answered */
    unsigned long long pkts_in, pkts_out;
} vs_dev;

/* Initialises v. prefix is the --uds-path (host-initiated listener PREFIX, guest-initiated PREFIX_PORT). */
/* Writes one "nd-vhost-vsock: ..." line to f and flushes it (every log line of the backend goes through here);
 * does nothing when f is NULL. */
void vs_logv(FILE *f, const char *fmt, va_list ap) ND_PRINTF(2, 0);

void vs_init(vs_dev *v, uint64_t guest_cid, const char *prefix, int heartbeat, FILE *log);
/* Closes every connection (host sockets too) and forgets pending RSTs: the guest's device went away. */
void vs_reset(vs_dev *v);

/* Handles one packet the guest put on the tx queue: header h and its payload (h->len bytes; the caller checked that
 * the chain holds them). Returns 0, or a negative code for a packet that was dropped (explained in err; the guest
 * gets an RST where the protocol calls for one). */
int vs_tx(vs_dev *v, const vs_hdr *h, const uint8_t *payload, nd_err *err);

/* Fills the next packet for the guest into an rx buffer of room bytes (header + payload) at buf. Returns the bytes
 * written (>= VS_HDR_SIZE), or 0 when nothing is waiting (or room < VS_HDR_SIZE). */
size_t vs_rx(vs_dev *v, uint8_t *buf, size_t room);
/* Whether vs_rx has something to give. */
int vs_rx_pending(const vs_dev *v);

/* Accepted host connection on the PREFIX listener: starts reading its CONNECT line. Takes fd. Returns 0 or a
 * negative code (the fd is closed). */
int vs_host_accept(vs_dev *v, int fd, nd_err *err);

/* Poll integration: fills up to max pollfds for the connections' host sockets (slot i of conns[] gets the same
 * index in who[]). Returns the count. */
unsigned vs_pollfds(vs_dev *v, struct pollfd *pfd, vs_conn **who, unsigned max);
/* Handles revents on a connection's host socket. */
void vs_on_fd(vs_dev *v, vs_conn *c, short revents);
/* Writes what each connection holds for its host socket, as far as the sockets take it without waiting. */
void vs_flush(vs_dev *v);
/* Drops connections whose CONNECT line, REQUEST answer or close did not come in time; returns the ms until the next
 * deadline (-1 when there is none). now_ms: a monotonic clock. */
int vs_timers(vs_dev *v, int64_t now_ms);
/* Takes up to 256 packets from the tx ring q (in guest memory m) and handles them; scratch holds VS_HDR_SIZE +
 * VS_MAX_PKT bytes. Malformed packets are logged and returned to the guest. Returns 1 when more may be waiting. */
int vs_service_tx(vs_dev *v, vu_vq *q, const vu_mem *m, uint8_t *scratch);
/* Fills the rx ring q with what the connections have for the guest (scratch as above), and signals the guest. */
void vs_service_rx(vs_dev *v, vu_vq *q, const vu_mem *m, uint8_t *scratch);
/* Monotonic milliseconds. */
int64_t vs_now_ms(void);

#endif
