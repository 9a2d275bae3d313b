/*
 * pingpong_kms.c — vsock-pingpong --mode kms: the enclave side of the KMS flow through nitrodiag-kms-proxy
 * (see pingpong_kms.h and docs/enclave.md).
 *
 *   1. make an RSA-2048 key pair;
 *   2. get an attestation document carrying its public key (DER SubjectPublicKeyInfo — KMS refuses PKCS#1): from
 *      /dev/nsm when the device exists, otherwise a development stand-in in the format of core/nd_attest.h
 *      (module_id "nitrodiag-dev-not-attested", zero PCRs, no chain, zero signature) that is announced loudly as
 *      NOT ATTESTED — real KMS rejects it, the fake KMS of the tests accepts it;
 *   3. connect to the proxy (default vsock:3:8082, --connect overrides: unix:PATH, tcp:HOST:PORT) and send
 *      GenerateDataKey {key_id "alias/ephemeral-ml-test", key_spec "AES_256"} with the recipient, then Decrypt of
 *      the returned CiphertextBlob with the recipient;
 *   4. refuse any response carrying Plaintext; decrypt each CiphertextForRecipient with OpenSSL CMS
 *      (d2i_CMS_ContentInfo + CMS_decrypt) and check that Decrypt gave back the same data key;
 *   5. print `[enclave] SUCCESS: received wrapped key from KMS`, or `[enclave] ERROR: <error_code>: <message>`.
 *
 * The program is linked statically. Debian ships no static libcbor, so the two small CBOR shapes needed here (the
 * NSM Attestation request/response and the development document) are written/read by the minimal encoder below
 * instead of core/attest.c; tests/proxy checks that core/attest.c's parser and the fake KMS accept the result.
 * Key material is never printed and is wiped after use.
 */
#include "pingpong_kms.h"

#include "nd_buf.h"
#include "nd_frame.h"
#include "nd_vsock.h"

#include <fcntl.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define DEV_MODULE_ID "nitrodiag-dev-not-attested" /* = ND_ATTEST_DEV_MODULE_ID in core/nd_attest.h */

static void say(const char *fmt, ...) ND_PRINTF(1, 2);
static void say(const char *fmt, ...)
{
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    printf("[enclave] %s\n", b);
    fflush(stdout);
}

/* ---- minimal CBOR ---------------------------------------------------------------------------------------------- */

/* CBOR is written into an nd_buf (core/nd_buf.h: overflow-checked growth, sticky oom). */
typedef nd_buf cbuf;

static void cb_put(cbuf *b, const void *d, size_t n) { (void)nd_buf_add(b, d, n); }

/* A CBOR head: major type (0..7) and argument, in the shortest form. */
static void cb_head(cbuf *b, unsigned major, uint64_t v)
{
    unsigned char h[9];
    size_t n;
    if (v < 24) {
        h[0] = (unsigned char)(major << 5 | v);
        n = 1;
    } else if (v <= 0xff) {
        h[0] = (unsigned char)(major << 5 | 24);
        h[1] = (unsigned char)v;
        n = 2;
    } else if (v <= 0xffff) {
        h[0] = (unsigned char)(major << 5 | 25);
        h[1] = (unsigned char)(v >> 8);
        h[2] = (unsigned char)v;
        n = 3;
    } else if (v <= 0xffffffffu) {
        h[0] = (unsigned char)(major << 5 | 26);
        for (int i = 0; i < 4; i++)
            h[1 + i] = (unsigned char)(v >> (24 - 8 * i));
        n = 5;
    } else {
        h[0] = (unsigned char)(major << 5 | 27);
        for (int i = 0; i < 8; i++)
            h[1 + i] = (unsigned char)(v >> (56 - 8 * i));
        n = 9;
    }
    cb_put(b, h, n);
}

static void cb_bytes(cbuf *b, const void *d, size_t n)
{
    cb_head(b, 2, n);
    cb_put(b, d, n);
}

static void cb_text(cbuf *b, const char *s)
{
    cb_head(b, 3, strlen(s));
    cb_put(b, s, strlen(s));
}

static void cb_null(cbuf *b)
{
    unsigned char z = 0xf6;
    cb_put(b, &z, 1);
}

/* Reads a head at *off: returns the major type and sets *v, or -1 when malformed/truncated/indefinite. */
static int cb_read_head(const unsigned char *p, size_t len, size_t *off, uint64_t *v)
{
    if (*off >= len)
        return -1;
    unsigned ib = p[*off], major = ib >> 5, ai = ib & 31;
    (*off)++;
    if (ai < 24) {
        *v = ai;
        return (int)major;
    }
    size_t n = ai == 24 ? 1 : ai == 25 ? 2 : ai == 26 ? 4 : ai == 27 ? 8 : 0;
    if (!n || len - *off < n)
        return -1;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = *v << 8 | p[(*off)++];
    return (int)major;
}

/* ---- attestation ------------------------------------------------------------------------------------------------ */

/* The development stand-in, in core/attest.c's format (nd_attest_build_dev). */
static int dev_document(const unsigned char *spki, size_t spki_len, cbuf *out)
{
    cbuf pl = ND_BUF_INIT, hd = {0};
    static const unsigned char zero48[48], zsig[96];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    cb_head(&pl, 5, 9);
    cb_text(&pl, "module_id");
    cb_text(&pl, DEV_MODULE_ID);
    cb_text(&pl, "digest");
    cb_text(&pl, "SHA384");
    cb_text(&pl, "timestamp");
    cb_head(&pl, 0, (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u);
    cb_text(&pl, "pcrs");
    cb_head(&pl, 5, 16);
    for (unsigned i = 0; i < 16; i++) {
        cb_head(&pl, 0, i);
        cb_bytes(&pl, zero48, sizeof zero48);
    }
    cb_text(&pl, "certificate");
    cb_bytes(&pl, DEV_MODULE_ID, strlen(DEV_MODULE_ID));
    cb_text(&pl, "cabundle");
    cb_head(&pl, 4, 0);
    cb_text(&pl, "public_key");
    cb_bytes(&pl, spki, spki_len);
    cb_text(&pl, "user_data");
    cb_null(&pl);
    cb_text(&pl, "nonce");
    cb_null(&pl);
    cb_head(&hd, 5, 1);
    cb_head(&hd, 0, 1);
    cb_head(&hd, 1, 34); /* -35: ES384 */
    cb_head(out, 4, 4);
    cb_bytes(out, hd.p, hd.len);
    cb_head(out, 5, 0);
    cb_bytes(out, pl.p, pl.len);
    cb_bytes(out, zsig, sizeof zsig);
    bool oom = pl.oom || hd.oom || out->oom;
    free(pl.p);
    free(hd.p);
    return oom ? -ENOMEM : 0;
}

/* The NSM driver's ioctl (aws-nitro-enclaves-nsm-api nsm_driver): magic 0x0A, nr 0, struct of two iovecs. */
struct nsm_message {
    struct iovec request;
    struct iovec response;
};
#define NSM_IOCTL_REQUEST _IOWR(0x0A, 0, struct nsm_message)
#define NSM_RESPONSE_MAX 0x3000

/* Asks /dev/nsm for a document carrying spki: request {"Attestation":{"user_data":null,"nonce":null,
 * "public_key":bytes}}, response {"Attestation":{"document":bytes}} (or {"Error":"..."}). */
static int nsm_document(int fd, const unsigned char *spki, size_t spki_len, cbuf *out, char *why, size_t whysz)
{
    cbuf rq = ND_BUF_INIT;
    cb_head(&rq, 5, 1);
    cb_text(&rq, "Attestation");
    cb_head(&rq, 5, 3);
    cb_text(&rq, "user_data");
    cb_null(&rq);
    cb_text(&rq, "nonce");
    cb_null(&rq);
    cb_text(&rq, "public_key");
    cb_bytes(&rq, spki, spki_len);
    unsigned char *resp = calloc(1, NSM_RESPONSE_MAX);
    if (rq.oom || !resp) {
        free(rq.p);
        free(resp);
        snprintf(why, whysz, "out of memory");
        return -ENOMEM;
    }
    struct nsm_message m = {{(unsigned char *)rq.p, rq.len}, {resp, NSM_RESPONSE_MAX}};
    int rc = ioctl(fd, NSM_IOCTL_REQUEST, &m);
    free(rq.p);
    if (rc < 0) {
        snprintf(why, whysz, "NSM ioctl failed: %s", strerror(errno));
        free(resp);
        return -errno;
    }
    size_t len = m.response.iov_len < NSM_RESPONSE_MAX ? m.response.iov_len : NSM_RESPONSE_MAX, off = 0;
    uint64_t v;
    int rcode = -EBADMSG;
    snprintf(why, whysz, "NSM answered something other than an attestation document");
    if (cb_read_head(resp, len, &off, &v) == 5 && v == 1 && cb_read_head(resp, len, &off, &v) == 3 &&
        len - off >= v) {
        bool att = v == 11 && memcmp(resp + off, "Attestation", 11) == 0;
        off += v;
        uint64_t nent;
        if (att && cb_read_head(resp, len, &off, &nent) == 5) {
            for (uint64_t i = 0; i < nent; i++) {
                if (cb_read_head(resp, len, &off, &v) != 3 || len - off < v)
                    break;
                bool isdoc = v == 8 && memcmp(resp + off, "document", 8) == 0;
                off += v;
                int mt = cb_read_head(resp, len, &off, &v);
                if (mt != 2 || len - off < v)
                    break;
                if (isdoc) {
                    cb_put(out, resp + off, v);
                    rcode = out->oom ? -ENOMEM : 0;
                    break;
                }
                off += v;
            }
        }
    }
    free(resp);
    return rcode;
}

/* ---- the exchange ---------------------------------------------------------------------------------------------- */

static void uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        memset(b, 0x5a, sizeof b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Sends req in a KmsProxy frame with seq and waits for the response with that seq and request_id. Returns 0 with
 * *resp filled (which may be an Error response), or a negative code with a message in why. */
static int exchange(int fd, const nd_sockaddr *a, uint32_t seq, const nd_kms_request *req, int timeout_ms,
                    nd_frame_decoder *dec, nd_kms_response *resp, char *why, size_t whysz)
{
    size_t plen = 0;
    char *payload = nd_kms_request_encode(req, true, &plen);
    unsigned char *frame = NULL;
    size_t flen = 0;
    nd_err e;
    nd_err_clear(&e);
    if (!payload || nd_frame_build(ND_FRAME_KMS_PROXY, seq, payload, plen, &frame, &flen, &e) < 0) {
        free(payload);
        snprintf(why, whysz, "could not build the request frame");
        return -ENOMEM;
    }
    free(payload);
    int rc = nd_vsock_write_all(fd, frame, flen, timeout_ms, a, &e);
    free(frame);
    if (rc < 0) {
        snprintf(why, whysz, "send to the proxy failed: %.400s", e.msg);
        return rc;
    }
    unsigned char buf[16384];
    for (;;) {
        nd_frame f;
        int fr;
        while ((fr = nd_frame_next(dec, &f, &e)) == 1) {
            if (f.type != ND_FRAME_KMS_PROXY && f.type != ND_FRAME_ERROR)
                continue;
            if (nd_kms_response_parse(f.payload, f.len, resp, &e) < 0) {
                snprintf(why, whysz, "bad response from the proxy: %.400s", e.msg);
                return -EBADMSG;
            }
            /* An Error frame for a frame the proxy could not read carries no request_id: it is ours. */
            if (f.seq == seq && (!resp->request_id[0] || strcmp(resp->request_id, req->request_id) == 0))
                return 0;
            nd_kms_response_free(resp); /* somebody else's (reference behaviour: drop it) */
        }
        if (fr < 0) {
            snprintf(why, whysz, "bad frame from the proxy: %.400s", e.msg);
            return fr;
        }
        ssize_t n = nd_vsock_read(fd, buf, sizeof buf, timeout_ms, a, &e);
        if (n == 0) {
            snprintf(why, whysz, "the proxy closed the connection before answering");
            return -ECONNRESET;
        }
        if (n < 0) {
            snprintf(why, whysz, "%s", n == -ETIMEDOUT ? "no answer from the proxy in time" : e.msg);
            return (int)n;
        }
        if ((rc = nd_frame_feed(dec, buf, (size_t)n, &e)) < 0) {
            snprintf(why, whysz, "bad frame from the proxy: %.400s", e.msg);
            return rc;
        }
    }
}

/* Decrypts a CMS EnvelopedData for our key. Returns a malloc'd plaintext (wipe it) or NULL. */
static unsigned char *cms_open(EVP_PKEY *pkey, const nd_bytes *in, size_t *outlen)
{
    const unsigned char *p = in->data;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)in->len);
    if (!cms)
        return NULL;
    BIO *out = BIO_new(BIO_s_mem());
    unsigned char *res = NULL;
    if (out && CMS_decrypt(cms, pkey, NULL, NULL, out, CMS_BINARY) == 1) {
        char *d = NULL;
        long n = BIO_get_mem_data(out, &d);
        if (n > 0 && (res = malloc((size_t)n)) != NULL) {
            memcpy(res, d, (size_t)n);
            *outlen = (size_t)n;
        }
        OPENSSL_cleanse(d, (size_t)(n > 0 ? n : 0));
    }
    BIO_free(out);
    CMS_ContentInfo_free(cms);
    return res;
}

static void usage(void)
{
    printf("usage: vsock-pingpong --mode kms [--connect ADDR]\n"
           "  --connect ADDR  the host KMS proxy (default $VSOCK_PINGPONG_CONNECT, then vsock:3:8082;\n"
           "                  unix:PATH and tcp:HOST:PORT for tests)\n"
           "environment: VSOCK_PINGPONG_KEY_ID (default alias/ephemeral-ml-test), VSOCK_PINGPONG_TIMEOUT_MS\n"
           "  (connect and per-response timeout, default 5000), VSOCK_PINGPONG_NSM (default /dev/nsm; when absent a\n"
           "  NOT ATTESTED development document is used, which only a fake KMS accepts)\n");
}

static int fail(const char *code, const char *msg)
{
    say("ERROR: %s: %s", code, msg);
    return 1;
}

int pingpong_kms_main(int argc, char **argv)
{
    const char *connect_to = getenv("VSOCK_PINGPONG_CONNECT"), *key_id = getenv("VSOCK_PINGPONG_KEY_ID");
    const char *nsm = getenv("VSOCK_PINGPONG_NSM"), *tmo = getenv("VSOCK_PINGPONG_TIMEOUT_MS");
    if (!connect_to || !*connect_to)
        connect_to = "vsock:3:8082";
    if (!key_id || !*key_id)
        key_id = "alias/ephemeral-ml-test";
    if (!nsm || !*nsm)
        nsm = "/dev/nsm";
    int timeout_ms = tmo ? atoi(tmo) : 5000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--mode") && v) {
            i++;
        } else if (!strcmp(a, "--connect") && v) {
            connect_to = v;
            i++;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (!strncmp(a, "--mode=", 7)) {
            continue;
        } else if (!strcmp(a, "--listen") && v) {
            i++; /* vsock mode's option: not used here */
        } else {
            say("error: unknown kms-mode argument %s", a);
            usage();
            return 2;
        }
    }
    if (timeout_ms <= 0)
        timeout_ms = 5000;
    nd_sockaddr addr;
    nd_err e;
    nd_err_clear(&e);
    if (nd_vsock_parse(connect_to, &addr, &e) < 0)
        return fail("invalid_request", e.msg);

    /* 1. key pair */
    EVP_PKEY *pkey = EVP_RSA_gen(2048);
    if (!pkey)
        return fail("internal", "RSA-2048 key generation failed");
    unsigned char *spki = NULL;
    int spki_len = i2d_PUBKEY(pkey, &spki);
    if (spki_len <= 0) {
        EVP_PKEY_free(pkey);
        return fail("internal", "could not encode the public key");
    }

    /* 2. attestation document */
    cbuf doc = ND_BUF_INIT;
    char why[512] = "";
    int nfd = open(nsm, O_RDWR | O_CLOEXEC);
    int rc;
    if (nfd >= 0) {
        rc = nsm_document(nfd, spki, (size_t)spki_len, &doc, why, sizeof why);
        close(nfd);
        if (rc < 0) {
            OPENSSL_free(spki);
            EVP_PKEY_free(pkey);
            free(doc.p);
            return fail("internal", why);
        }
        say("attestation document from %s (%zu bytes)", nsm, doc.len);
    } else {
        rc = dev_document(spki, (size_t)spki_len, &doc);
        if (rc < 0) {
            OPENSSL_free(spki);
            EVP_PKEY_free(pkey);
            free(doc.p);
            return fail("internal", "out of memory");
        }
        say("WARNING: %s not present: using a DEVELOPMENT attestation document (module_id %s) - NOT ATTESTED; "
            "real KMS rejects it",
            nsm, DEV_MODULE_ID);
    }
    OPENSSL_free(spki);

    /* 3. connect */
    int fd = nd_vsock_connect(&addr, timeout_ms, &e);
    if (fd < 0) {
        free(doc.p);
        EVP_PKEY_free(pkey);
        return fail("upstream_unavailable", e.msg);
    }
    say("connected to the KMS proxy at %s", addr.text);
    nd_frame_decoder dec;
    nd_frame_decoder_init(&dec, 0);

    int result = 1;
    unsigned char *dk = NULL, *dk2 = NULL;
    size_t dk_len = 0, dk2_len = 0;
    nd_kms_request req;
    nd_kms_response resp, resp2;
    memset(&req, 0, sizeof req);
    memset(&resp, 0, sizeof resp);
    memset(&resp2, 0, sizeof resp2);
    uuid4(req.request_id);
    uuid4(req.trace_id);
    req.op = ND_KMS_OP_GENERATE_DATA_KEY;
    snprintf(req.key_id, sizeof req.key_id, "%s", key_id);
    snprintf(req.key_spec, sizeof req.key_spec, "AES_256");
    req.recipient.data = (unsigned char *)doc.p;
    req.recipient.len = doc.len;

    /* 4. GenerateDataKey with recipient */
    if (exchange(fd, &addr, 1, &req, timeout_ms, &dec, &resp, why, sizeof why) < 0) {
        fail("upstream_unavailable", why);
        goto out;
    }
    if (resp.is_error) {
        snprintf(why, sizeof why, "GenerateDataKey: %s", resp.error_message);
        fail(resp.error_code, why);
        goto out;
    }
    if (resp.plaintext.data) {
        fail("internal", "GenerateDataKey response carries Plaintext; refused");
        goto out;
    }
    if (!resp.ciphertext_for_recipient.data || !resp.ciphertext_blob.data) {
        fail("internal", "GenerateDataKey response lacks CiphertextForRecipient or CiphertextBlob");
        goto out;
    }
    dk = cms_open(pkey, &resp.ciphertext_for_recipient, &dk_len);
    if (!dk || dk_len != 32) {
        fail("internal", "could not decrypt CiphertextForRecipient into a 32-byte key (CMS)");
        goto out;
    }
    say("GenerateDataKey ok (kms_request_id %s): data key unwrapped inside the enclave",
        resp.kms_request_id[0] ? resp.kms_request_id : "-");

    /* 5. Decrypt the CiphertextBlob with recipient: must give the same key */
    uuid4(req.request_id);
    req.op = ND_KMS_OP_DECRYPT;
    req.key_spec[0] = '\0';
    req.ciphertext_blob = resp.ciphertext_blob;
    rc = exchange(fd, &addr, 2, &req, timeout_ms, &dec, &resp2, why, sizeof why);
    req.ciphertext_blob.data = NULL;
    req.ciphertext_blob.len = 0;
    if (rc < 0) {
        fail("upstream_unavailable", why);
        goto out;
    }
    if (resp2.is_error) {
        snprintf(why, sizeof why, "Decrypt: %s", resp2.error_message);
        fail(resp2.error_code, why);
        goto out;
    }
    if (resp2.plaintext.data) {
        fail("internal", "Decrypt response carries Plaintext; refused");
        goto out;
    }
    dk2 = resp2.ciphertext_for_recipient.data ? cms_open(pkey, &resp2.ciphertext_for_recipient, &dk2_len) : NULL;
    if (!dk2 || dk2_len != dk_len || CRYPTO_memcmp(dk, dk2, dk_len) != 0) {
        fail("internal", "Decrypt did not give back the data key");
        goto out;
    }
    say("Decrypt ok (kms_request_id %s): same data key", resp2.kms_request_id[0] ? resp2.kms_request_id : "-");
    say("SUCCESS: received wrapped key from KMS");
    result = 0;
out:
    if (dk) {
        OPENSSL_cleanse(dk, dk_len);
        free(dk);
    }
    if (dk2) {
        OPENSSL_cleanse(dk2, dk2_len);
        free(dk2);
    }
    req.recipient.data = NULL; /* doc.p, freed below */
    nd_kms_request_free(&req);
    nd_kms_response_free(&resp);
    nd_kms_response_free(&resp2);
    nd_frame_decoder_free(&dec);
    close(fd);
    free(doc.p);
    EVP_PKEY_free(pkey);
    return result;
}
