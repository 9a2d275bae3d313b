/*
 * eif.c — reading, validating, measuring and writing Enclave Image Format files (see nd_eif.h for the format).
 *
 * The reader streams the file (EIFs are hundreds of MiB): it validates the header and the section table, then walks
 * the sections in file order, checking each section header against the table, feeding the CRC32 (zlib) and the
 * SHA-384 contexts (OpenSSL EVP) as it goes. Every structural problem is reported with its file offset. The writer
 * builds the same layout nitro-cli's builder does and is used by the tests and by the simulator's build-enclave.
 */
#include "nd_eif.h"
#include "nd_buf.h"
#include "nd_cbor.h"
#include "nd_attest.h"
#include "nd_codec.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <zlib.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024ULL * 1024ULL)
#define META_CAP (16u * 1024u * 1024u)  /* metadata/cmdline/signature sections kept in memory up to this size */

static const char *const section_names[] = {"invalid", "kernel", "cmdline", "ramdisk", "signature", "metadata"};

const char *nd_eif_section_name(unsigned type)
{
    return type < sizeof section_names / sizeof section_names[0] ? section_names[type] : "unknown";
}

uint64_t nd_eif_min_memory_mib(uint64_t size)
{
    return (size / MIB + (size % MIB ? 1 : 0)) * 4;
}

static uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static uint64_t be64(const unsigned char *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }
static void put16(unsigned char *p, uint16_t v) { p[0] = (unsigned char)(v >> 8); p[1] = (unsigned char)v; }
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (24 - 8 * i));
}
static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

void nd_eif_info_free(nd_eif_info *info)
{
    if (!info)
        return;
    free(info->metadata);
    free(info->cmdline);
    free(info->signing_cert);
    info->metadata = info->cmdline = NULL;
    info->signing_cert = NULL;
}

/* ---- measurements --------------------------------------------------------------------------------------------- */

typedef struct measure {
    EVP_MD_CTX *pcr[3];
} measure;

static int measure_init(measure *m)
{
    memset(m, 0, sizeof *m);
    for (int i = 0; i < 3; i++) {
        m->pcr[i] = EVP_MD_CTX_new();
        if (!m->pcr[i] || EVP_DigestInit_ex(m->pcr[i], EVP_sha384(), NULL) != 1)
            return -ENOMEM;
    }
    return 0;
}

static void measure_free(measure *m)
{
    for (int i = 0; i < 3; i++)
        EVP_MD_CTX_free(m->pcr[i]);
}

/* PCR = SHA384(zero[48] ‖ digest) as 96 lowercase hex digits. */
static int pcr_extend_hex(const unsigned char *digest, char *hex)
{
    unsigned char buf[96], out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    memset(buf, 0, 48);
    memcpy(buf + 48, digest, 48);
    if (EVP_Digest(buf, sizeof buf, out, &n, EVP_sha384(), NULL) != 1 || n != 48)
        return -EIO;
    for (unsigned i = 0; i < 48; i++)
        snprintf(hex + 2 * i, 3, "%02x", out[i]);
    return 0;
}

static int measure_final(measure *m, nd_eif_info *info)
{
    char *dst[3] = {info->pcr0, info->pcr1, info->pcr2};
    for (int i = 0; i < 3; i++) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_DigestFinal_ex(m->pcr[i], d, &n) != 1 || n != 48 || pcr_extend_hex(d, dst[i]) < 0)
            return -EIO;
    }
    return 0;
}

/* Finds the first signing_certificate and its signature (a COSE_Sign1) in the signature section (a CBOR array of
 * maps, byte fields as serde's Vec<u8>). Returns 0 with malloc'd copies (*sig may stay NULL), or -1. */
static int find_certificate(const unsigned char *data, size_t len, unsigned char **cert, size_t *certlen,
                            unsigned char **sig, size_t *siglen)
{
    cbor_item_t *root = nd_cbor_load(data, len, "EIF signature section", NULL);
    if (!root)
        return -1;
    int rc = -1;
    if (cbor_isa_array(root) && cbor_array_is_definite(root) && cbor_array_size(root) > 0) {
        cbor_item_t *v = nd_cbor_map_get(cbor_array_handle(root)[0], "signing_certificate");
        if (v && nd_cbor_u8_bytes(v, cert, certlen) == 0)
            rc = 0;
        v = nd_cbor_map_get(cbor_array_handle(root)[0], "signature");
        if (rc == 0 && v && nd_cbor_u8_bytes(v, sig, siglen) < 0)
            *sig = NULL;
    }
    cbor_decref(&root);
    return rc;
}

/* Converts a PEM or DER certificate to DER. Returns 0 with a malloc'd DER buffer, or -1. */
static int cert_to_der(const unsigned char *cert, size_t len, unsigned char **der, size_t *derlen)
{
    X509 *x = NULL;
    if (len > 10 && memcmp(cert, "-----BEGIN", 10) == 0) {
        BIO *bio = BIO_new_mem_buf(cert, (int)len);
        if (bio)
            x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
    } else {
        const unsigned char *p = cert;
        x = d2i_X509(NULL, &p, (long)len);
    }
    if (!x)
        return -1;
    unsigned char *out = NULL;
    int n = i2d_X509(x, &out);
    X509_free(x);
    if (n <= 0)
        return -1;
    *der = malloc((size_t)n);
    if (!*der) {
        OPENSSL_free(out);
        return -1;
    }
    memcpy(*der, out, (size_t)n);
    OPENSSL_free(out);
    *derlen = (size_t)n;
    return 0;
}

int nd_eif_pcr8_cert(const void *cert, size_t len, char hex[ND_EIF_PCR_HEX], nd_err *err)
{
    unsigned char *der = NULL, d[EVP_MAX_MD_SIZE];
    size_t derlen = 0;
    unsigned int n = 0;
    if (cert_to_der(cert, len, &der, &derlen) < 0)
        return nd_err_set(err, -EBADMSG, "PCR8: not a PEM or DER X.509 certificate");
    int rc = EVP_Digest(der, derlen, d, &n, EVP_sha384(), NULL) == 1 && n == 48 && pcr_extend_hex(d, hex) == 0
                 ? 0 : nd_err_set(err, -EIO, "PCR8: SHA-384 failed");
    free(der);
    return rc;
}

/* SignatureCheck as aws-nitro-enclaves-image-format's EifReader::get_certificate_info computes it: the COSE_Sign1
 * verifies with the certificate's key and its payload is PcrInfo {register_index: 0, register_value: PCR0}. */
static void check_eif_signature(const unsigned char *cose, size_t coselen, nd_eif_info *info)
{
    info->signature_check = 0;
    const unsigned char *p = info->signing_cert;
    X509 *x = d2i_X509(NULL, &p, (long)info->signing_cert_len);
    if (x) {
        struct tm tm;
        nd_x509_name_text(X509_get_subject_name(x), info->cert_subject, sizeof info->cert_subject);
        nd_x509_name_text(X509_get_issuer_name(x), info->cert_issuer, sizeof info->cert_issuer);
        memset(&tm, 0, sizeof tm);
        if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
            info->cert_not_before = (int64_t)timegm(&tm);
        memset(&tm, 0, sizeof tm);
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
            info->cert_not_after = (int64_t)timegm(&tm);
    }
    unsigned char *payload = NULL;
    size_t plen = 0;
    nd_err e;
    nd_err_clear(&e);
    int ok = x && cose ? nd_cose_sign1_verify(cose, coselen, X509_get0_pubkey(x), &payload, &plen, &e) : 0;
    X509_free(x);
    if (ok != 1) {
        snprintf(info->signature_error, sizeof info->signature_error, "%s",
                 !cose ? "the signature section has no signature" : e.msg[0] ? e.msg : "the signature does not verify");
        return;
    }
    cbor_item_t *m = nd_cbor_load(payload, plen, "EIF signature payload", NULL);
    unsigned char *val = NULL, pcr0[48];
    size_t vlen = 0;
    cbor_item_t *idx = m ? nd_cbor_map_get(m, "register_index") : NULL;
    cbor_item_t *reg = m ? nd_cbor_map_get(m, "register_value") : NULL;
    if (!idx || !cbor_isa_uint(idx) || cbor_get_int(idx) != 0 || !reg || nd_cbor_u8_bytes(reg, &val, &vlen) < 0) {
        snprintf(info->signature_error, sizeof info->signature_error,
                 "the signed payload is not {register_index: 0, register_value: PCR0}");
    } else if (vlen != 48 || nd_hex_decode(info->pcr0, 96, pcr0, sizeof pcr0, NULL) != 48 ||
               memcmp(val, pcr0, 48) != 0) {
        snprintf(info->signature_error, sizeof info->signature_error,
                 "the signature is for another PCR0: the image changed after it was signed");
    } else {
        info->signature_check = 1;
    }
    free(val);
    if (m)
        cbor_decref(&m);
    free(payload);
}

static void pcr8_from_signature(const unsigned char *sig, size_t len, nd_eif_info *info)
{
    unsigned char *cert = NULL, *der = NULL, *cose = NULL;
    size_t certlen = 0, derlen = 0, coselen = 0;
    info->signature_check = 0;
    snprintf(info->signature_error, sizeof info->signature_error, "no signing certificate could be read");
    if (find_certificate(sig, len, &cert, &certlen, &cose, &coselen) == 0 &&
        cert_to_der(cert, certlen, &der, &derlen) == 0) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned int n = 0;
        if (EVP_Digest(der, derlen, d, &n, EVP_sha384(), NULL) == 1 && n == 48 && pcr_extend_hex(d, info->pcr8) == 0)
            info->has_pcr8 = true;
        info->signing_cert = der;
        info->signing_cert_len = derlen;
        der = NULL;
        info->signature_error[0] = '\0';
        check_eif_signature(cose, coselen, info);
    }
    free(cert);
    free(der);
    free(cose);
}

/* CRC-32 of n zero bytes following `crc`, without reading them: the CRC of n zeros is built by doubling with zlib's
 * crc32_combine (O(log n) steps), then combined with crc. */
static uLong crc_zeros(uLong crc, uint64_t n)
{
    static const unsigned char zero = 0;
    uLong z = crc32(0L, Z_NULL, 0), one = crc32(0L, &zero, 1);
    uint64_t len = 0;
    for (int bit = 63; bit >= 0; bit--) {
        if (len) {
            z = crc32_combine(z, z, (z_off_t)len);
            len *= 2;
        }
        if ((n >> bit) & 1) {
            z = crc32_combine(z, one, 1);
            len++;
        }
    }
    return n ? crc32_combine(crc, z, (z_off_t)n) : crc;
}

/* ---- reader --------------------------------------------------------------------------------------------------- */

/* Bytes from off that are a hole in the file (0 when off holds data or the stream is not a file): they read as zeros,
 * so the reader feeds zeros to the hashes without reading them. */
static uint64_t hole_at(int fd, uint64_t off, uint64_t limit)
{
    if (fd < 0)
        return 0;
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    if (d < 0)
        return errno == ENXIO ? limit : 0; /* ENXIO: no data after off (a hole up to the end) */
    return (uint64_t)d > off ? ((uint64_t)d - off < limit ? (uint64_t)d - off : limit) : 0;
}

/* Bytes of data from off before the next hole (limit when unknown). */
static uint64_t data_at(int fd, uint64_t off, uint64_t limit)
{
    if (fd < 0)
        return limit;
    off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
    if (h < 0 || (uint64_t)h <= off)
        return limit;
    return (uint64_t)h - off < limit ? (uint64_t)h - off : limit;
}

static int read_at(FILE *f, uint64_t off, void *buf, size_t n)
{
    if (fseeko(f, (off_t)off, SEEK_SET) != 0)
        return -EIO;
    return fread(buf, 1, n, f) == n ? 0 : -EIO;
}

static int cmp_sections(const void *a, const void *b)
{
    const nd_eif_section *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int read_stream(FILE *f, uint64_t fsize, bool do_measure, nd_eif_info *info, nd_err *err)
{
    unsigned char h[ND_EIF_HEADER_SIZE];
    memset(info, 0, sizeof *info);
    info->file_size = fsize;
    info->min_memory_mib = nd_eif_min_memory_mib(fsize);
    if (fsize < 4)
        return nd_err_set(err, -EBADMSG, "EIF: file is only %llu bytes, too short for the magic at offset 0",
                          (unsigned long long)fsize);
    if (read_at(f, 0, h, 4) < 0)
        return nd_err_set(err, -EIO, "EIF: cannot read the header at offset 0");
    if (memcmp(h, ".eif", 4) != 0)
        return nd_err_set(err, -EBADMSG, "EIF: bad magic at offset 0: %02x %02x %02x %02x, expected 2e 65 69 66 (\".eif\")",
                          h[0], h[1], h[2], h[3]);
    if (fsize < ND_EIF_HEADER_SIZE)
        return nd_err_set(err, -EBADMSG, "EIF: truncated header: the file ends at offset %llu, the header needs %d bytes",
                          (unsigned long long)fsize, ND_EIF_HEADER_SIZE);
    if (read_at(f, 0, h, sizeof h) < 0)
        return nd_err_set(err, -EIO, "EIF: cannot read the header at offset 0");
    info->version = be16(h + 4);
    info->flags = be16(h + 6);
    info->default_mem = be64(h + 8);
    info->default_cpus = be64(h + 16);
    info->num_sections = be16(h + 26);
    info->crc_stored = be32(h + 544);
    if (info->num_sections == 0)
        return nd_err_set(err, -EBADMSG, "EIF: num_sections at offset 26 is 0: the image has no sections");
    if (info->num_sections > ND_EIF_MAX_SECTIONS)
        return nd_err_set(err, -EBADMSG, "EIF: num_sections at offset 26 is %u, more than the %d the header can hold",
                          info->num_sections, ND_EIF_MAX_SECTIONS);
    for (unsigned i = 0; i < info->num_sections; i++) {
        nd_eif_section *s = &info->sections[i];
        s->offset = be64(h + 28 + 8 * i);
        s->size = be64(h + 284 + 8 * i);
        if (s->offset < ND_EIF_HEADER_SIZE)
            return nd_err_set(err, -EBADMSG, "EIF: section %u offset %llu (header offset %u) points inside the header",
                              i, (unsigned long long)s->offset, 28 + 8 * i);
        if (s->offset > fsize || fsize - s->offset < ND_EIF_SECTION_HEADER_SIZE ||
            s->size > fsize - s->offset - ND_EIF_SECTION_HEADER_SIZE)
            return nd_err_set(err, -EBADMSG,
                              "EIF: truncated: section %u at offset %llu with %llu bytes of data runs past the end of "
                              "the file (%llu bytes)",
                              i, (unsigned long long)s->offset, (unsigned long long)s->size, (unsigned long long)fsize);
    }
    /* The table is in file order in every EIF nitro-cli writes; walk it in offset order anyway. */
    nd_eif_section sorted[ND_EIF_MAX_SECTIONS];
    memcpy(sorted, info->sections, sizeof sorted);
    qsort(sorted, info->num_sections, sizeof sorted[0], cmp_sections);

    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, h, ND_EIF_HEADER_SIZE - 4);
    measure m;
    int rc = measure_init(&m);
    if (rc < 0) {
        measure_free(&m);
        return nd_err_set(err, rc, "EIF: cannot initialise SHA-384");
    }
    unsigned char *buf = malloc(1 << 20);
    int fd = fileno(f); /* -1 for a buffer: no holes */
    char *sigdata = NULL;
    size_t siglen = 0;
    unsigned ramdisks = 0;
    uint64_t pos = ND_EIF_HEADER_SIZE;
    if (!buf) {
        rc = nd_err_set(err, -ENOMEM, "EIF: out of memory");
        goto out;
    }
    for (unsigned i = 0; i < info->num_sections; i++) {
        nd_eif_section *s = &sorted[i];
        if (s->offset < pos) {
            rc = nd_err_set(err, -EBADMSG, "EIF: section at offset %llu overlaps the previous one (which ends at %llu)",
                            (unsigned long long)s->offset, (unsigned long long)pos);
            goto out;
        }
        unsigned char sh[ND_EIF_SECTION_HEADER_SIZE];
        if (read_at(f, s->offset, sh, sizeof sh) < 0) {
            rc = nd_err_set(err, -EIO, "EIF: cannot read the section header at offset %llu", (unsigned long long)s->offset);
            goto out;
        }
        uint16_t type = be16(sh), flags = be16(sh + 2);
        uint64_t size = be64(sh + 4);
        if (type == ND_EIF_SEC_INVALID || type > ND_EIF_SEC_METADATA) {
            rc = nd_err_set(err, -EBADMSG, "EIF: unknown section type %u in the section header at offset %llu", type,
                            (unsigned long long)s->offset);
            goto out;
        }
        if (size != s->size) {
            rc = nd_err_set(err, -EBADMSG,
                            "EIF: section header at offset %llu says %llu bytes of %s, the header table says %llu",
                            (unsigned long long)s->offset, (unsigned long long)size, nd_eif_section_name(type),
                            (unsigned long long)s->size);
            goto out;
        }
        s->type = type;
        s->flags = flags;
        crc = crc32(crc, sh, sizeof sh);
        int which = -1; /* 0: kernel/cmdline, 1: first ramdisk, 2: other ramdisks */
        if (type == ND_EIF_SEC_KERNEL || type == ND_EIF_SEC_CMDLINE)
            which = 0;
        else if (type == ND_EIF_SEC_RAMDISK)
            which = ramdisks++ == 0 ? 1 : 2;
        char **keep = NULL;
        size_t *keep_len = NULL;
        if (type == ND_EIF_SEC_METADATA && !info->metadata)
            keep = &info->metadata, keep_len = &info->metadata_len;
        else if (type == ND_EIF_SEC_CMDLINE && !info->cmdline)
            keep = &info->cmdline;
        else if (type == ND_EIF_SEC_SIGNATURE && !sigdata)
            keep = &sigdata, keep_len = &siglen;
        if (keep && s->size <= META_CAP) {
            *keep = malloc(s->size + 1);
            if (!*keep) {
                rc = nd_err_set(err, -ENOMEM, "EIF: out of memory");
                goto out;
            }
        } else {
            keep = NULL;
        }
        uint64_t left = s->size, done = 0;
        uint64_t base = s->offset + ND_EIF_SECTION_HEADER_SIZE;
        while (left) {
            uint64_t hole = keep ? 0 : hole_at(fd, base + done, left);
            if (hole) {
                /* zeros: CRC combined, SHA-384 fed from a zero buffer, nothing read */
                crc = crc_zeros(crc, hole);
                if (which >= 0 && do_measure) {
                    memset(buf, 0, 1 << 20);
                    for (uint64_t z = hole; z;) {
                        size_t k = z > (1 << 20) ? (1 << 20) : (size_t)z;
                        EVP_DigestUpdate(m.pcr[0], buf, k);
                        EVP_DigestUpdate(m.pcr[which == 2 ? 2 : 1], buf, k);
                        z -= k;
                    }
                }
                left -= hole;
                done += hole;
                continue;
            }
            size_t n = left > (1 << 20) ? (1 << 20) : (size_t)left;
            if (!keep)
                n = (size_t)data_at(fd, base + done, n);
            if (fseeko(f, (off_t)(base + done), SEEK_SET) != 0 || fread(buf, 1, n, f) != n) {
                rc = nd_err_set(err, -EIO, "EIF: read error in the %s section at offset %llu",
                                nd_eif_section_name(type), (unsigned long long)(s->offset + 12 + done));
                goto out;
            }
            crc = crc32(crc, buf, (uInt)n);
            if (which >= 0 && do_measure) {
                EVP_DigestUpdate(m.pcr[0], buf, n);
                EVP_DigestUpdate(m.pcr[which == 2 ? 2 : 1], buf, n);
            }
            if (keep)
                memcpy(*keep + done, buf, n);
            left -= n;
            done += n;
        }
        if (keep) {
            (*keep)[s->size] = '\0';
            if (keep_len)
                *keep_len = (size_t)s->size;
        }
        if (type == ND_EIF_SEC_SIGNATURE)
            info->is_signed = true;
        pos = s->offset + ND_EIF_SECTION_HEADER_SIZE + s->size;
    }
    /* copy back the types/flags found in the section headers, in table order */
    for (unsigned i = 0; i < info->num_sections; i++)
        for (unsigned j = 0; j < info->num_sections; j++)
            if (sorted[j].offset == info->sections[i].offset) {
                info->sections[i].type = sorted[j].type;
                info->sections[i].flags = sorted[j].flags;
            }
    info->trailing_bytes = fsize - pos;
    info->crc_computed = (uint32_t)crc;
    info->crc_ok = info->crc_computed == info->crc_stored;
    if (do_measure && measure_final(&m, info) < 0) {
        rc = nd_err_set(err, -EIO, "EIF: SHA-384 failed");
        goto out;
    }
    info->signature_check = -1;
    if (sigdata)
        pcr8_from_signature((const unsigned char *)sigdata, siglen, info);
    rc = 0;
out:
    free(buf);
    free(sigdata);
    measure_free(&m);
    if (rc < 0)
        nd_eif_info_free(info);
    return rc;
}

static int read_path(const char *path, bool do_measure, nd_eif_info *info, nd_err *err)
{
    memset(info, 0, sizeof *info);
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_err_set(err, -errno, "EIF: cannot open %s: %s", path, strerror(errno));
    if (fseeko(f, 0, SEEK_END) != 0) {
        fclose(f);
        return nd_err_set(err, -EIO, "EIF: cannot seek in %s", path);
    }
    off_t size = ftello(f);
    if (size < 0) {
        int e = errno;
        fclose(f);
        return nd_err_set(err, -e, "EIF: %s: %s", path, strerror(e));
    }
    int rc = read_stream(f, (uint64_t)size, do_measure, info, err);
    fclose(f);
    return rc;
}

int nd_eif_read(const char *path, nd_eif_info *info, nd_err *err) { return read_path(path, true, info, err); }

int nd_eif_read_unmeasured(const char *path, nd_eif_info *info, nd_err *err)
{
    return read_path(path, false, info, err);
}

int nd_eif_read_mem(const void *data, size_t len, nd_eif_info *info, nd_err *err)
{
    memset(info, 0, sizeof *info);
    if (len == 0)
        return nd_err_set(err, -EBADMSG, "EIF: empty input: no magic at offset 0");
    FILE *f = fmemopen((void *)data, len, "rb");
    if (!f)
        return nd_err_set(err, -ENOMEM, "EIF: cannot open the buffer");
    int rc = read_stream(f, len, true, info, err);
    fclose(f);
    return rc;
}

/* ---- writer --------------------------------------------------------------------------------------------------- */

/* The signature section: [{"signing_certificate": [u8…], "signature": [u8…]}], as the EIF tooling writes it. */
static int build_signature(const nd_eif_input *in, nd_buf *b)
{
    cbor_item_t *map = cbor_new_definite_map(2);
    cbor_item_t *arr = cbor_new_definite_array(1);
    cbor_item_t *k1 = cbor_build_string("signing_certificate"), *k2 = cbor_build_string("signature");
    cbor_item_t *v1 = nd_cbor_u8_array(in->certificate.data, in->certificate.len);
    cbor_item_t *v2 = nd_cbor_u8_array(in->signature.data, in->signature.len);
    int rc = -1;
    if (map && arr && k1 && k2 && v1 && v2 &&
        cbor_map_add(map, (struct cbor_pair){.key = k1, .value = v1}) &&
        cbor_map_add(map, (struct cbor_pair){.key = k2, .value = v2}) && cbor_array_push(arr, map)) {
        unsigned char *buf = NULL;
        size_t cap = 0;
        size_t n = cbor_serialize_alloc(arr, &buf, &cap);
        if (n > 0 && nd_buf_add(b, buf, n) == 0)
            rc = 0;
        free(buf);
    }
    cbor_item_t *items[] = {map, arr, k1, k2, v1, v2};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++)
        if (items[i])
            cbor_decref(&items[i]);
    return rc;
}

typedef struct wsec {
    uint16_t type;
    const void *data;
    uint64_t len;
} wsec;

int nd_eif_write(const char *path, const nd_eif_input *in, nd_eif_info *info, nd_err *err)
{
    if (info)
        memset(info, 0, sizeof *info);
    if (!in->kernel.data || in->kernel.len == 0)
        return nd_err_set(err, -EINVAL, "EIF writer: a kernel is required");
    wsec secs[ND_EIF_MAX_SECTIONS];
    unsigned n = 0;
    nd_buf sig = ND_BUF_INIT;
    secs[n++] = (wsec){ND_EIF_SEC_KERNEL, in->kernel.data, in->kernel.len};
    secs[n++] = (wsec){ND_EIF_SEC_CMDLINE, in->cmdline.data ? in->cmdline.data : "", in->cmdline.len};
    if (in->metadata.len)
        secs[n++] = (wsec){ND_EIF_SEC_METADATA, in->metadata.data, in->metadata.len};
    if (in->n_ramdisks + n + (in->certificate.len ? 1 : 0) > ND_EIF_MAX_SECTIONS)
        return nd_err_set(err, -EINVAL, "EIF writer: %zu ramdisks do not fit in %d sections", in->n_ramdisks,
                          ND_EIF_MAX_SECTIONS);
    int padded = -1; /* the section that ends with in->pad_zeros zeros */
    for (size_t i = 0; i < in->n_ramdisks; i++)
        secs[n++] = (wsec){ND_EIF_SEC_RAMDISK, in->ramdisks[i].data ? in->ramdisks[i].data : "",
                                      in->ramdisks[i].len};
    if (in->pad_zeros) {
        if (!in->n_ramdisks)
            return nd_err_set(err, -EINVAL, "EIF writer: padding needs a ramdisk to hold it");
        padded = (int)n - 1;
    }
    if (in->certificate.len) {
        if (build_signature(in, &sig) < 0) {
            free(sig.p);
            return nd_err_set(err, -ENOMEM, "EIF writer: out of memory");
        }
        secs[n++] = (wsec){ND_EIF_SEC_SIGNATURE, sig.p, sig.len};
    }

    unsigned char h[ND_EIF_HEADER_SIZE];
    memset(h, 0, sizeof h);
    memcpy(h, ".eif", 4);
    put16(h + 4, 4);
    put16(h + 6, in->flags);
    put64(h + 8, in->default_mem);
    put64(h + 16, in->default_cpus);
    put16(h + 26, (uint16_t)n);
    uint64_t off = ND_EIF_HEADER_SIZE;
    for (unsigned i = 0; i < n; i++) {
        put64(h + 28 + 8 * i, off);
        uint64_t len = secs[i].len + ((int)i == padded ? in->pad_zeros : 0);
        put64(h + 284 + 8 * i, len);
        off += ND_EIF_SECTION_HEADER_SIZE + len;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, h, ND_EIF_HEADER_SIZE - 4);
    unsigned char shs[ND_EIF_MAX_SECTIONS][ND_EIF_SECTION_HEADER_SIZE];
    for (unsigned i = 0; i < n; i++) {
        put16(shs[i], secs[i].type);
        put16(shs[i] + 2, 0);
        put64(shs[i] + 4, secs[i].len + ((int)i == padded ? in->pad_zeros : 0));
        crc = crc32(crc, shs[i], ND_EIF_SECTION_HEADER_SIZE);
        /* crc32 takes uInt lengths: feed big sections in pieces */
        const unsigned char *d = secs[i].data;
        for (uint64_t left = secs[i].len; left;) {
            uInt k = left > (1u << 30) ? (1u << 30) : (uInt)left;
            crc = crc32(crc, d, k);
            d += k;
            left -= k;
        }
        if ((int)i == padded)
            crc = crc_zeros(crc, in->pad_zeros);
    }
    put32(h + 544, (uint32_t)crc);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) {
        free(sig.p);
        return nd_err_set(err, -ENOMEM, "EIF writer: out of memory");
    }
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = nd_err_set(err, -errno, "EIF writer: cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    bool ok = fwrite(h, 1, sizeof h, f) == sizeof h;
    for (unsigned i = 0; ok && i < n; i++) {
        ok = fwrite(shs[i], 1, ND_EIF_SECTION_HEADER_SIZE, f) == ND_EIF_SECTION_HEADER_SIZE;
        if (ok && secs[i].len)
            ok = fwrite(secs[i].data, 1, secs[i].len, f) == secs[i].len;
        if (ok && (int)i == padded) /* the zeros are a hole: seek over them (ftruncate below sets the size) */
            ok = fseeko(f, (off_t)in->pad_zeros, SEEK_CUR) == 0;
    }
    if (ok && padded >= 0)
        ok = fflush(f) == 0 && ftruncate(fileno(f), (off_t)off) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        rc = nd_err_set(err, -(e ? e : EIO), "EIF writer: cannot write %s: %s", tmp, strerror(e ? e : EIO));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        rc = nd_err_set(err, -e, "EIF writer: cannot rename %s to %s: %s", tmp, path, strerror(e));
        goto out;
    }
    if (info)
        rc = nd_eif_read(path, info, err);
out:
    free(tmp);
    free(sig.p);
    return rc;
}

/* ---- describe-eif --------------------------------------------------------------------------------------------- */

#include <jansson.h>

/* Appends a Rust `{:?}` rendering of a string with its quotes then removed, as image-format's IssuerName does. */
static void rust_debug_unquoted(const unsigned char *s, int n, char *out, size_t outsz)
{
    size_t k = 0;
    for (int i = 0; i < n && k + 3 < outsz; i++) {
        unsigned char c = s[i];
        if (c == '"') {
            out[k++] = '\\'; /* Debug writes \" and the quote is removed */
        } else if (c == '\\') {
            out[k++] = '\\';
            out[k++] = '\\';
        } else if (c == '\n' || c == '\t' || c == '\r') {
            out[k++] = '\\';
            out[k++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else {
            out[k++] = (char)c;
        }
    }
    out[k] = '\0';
}

static void asn1_time_text(const ASN1_TIME *t, char *out, size_t outsz)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, t) == 1) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) {
            size_t k = (size_t)n < outsz - 1 ? (size_t)n : outsz - 1;
            memcpy(out, p, k);
            out[k] = '\0';
        }
    }
    BIO_free(b);
}

json_t *nd_eif_signing_certificate_json(const nd_eif_info *info)
{
    const unsigned char *p = info->signing_cert;
    X509 *x = p ? d2i_X509(NULL, &p, (long)info->signing_cert_len) : NULL;
    if (!x)
        return NULL;
    json_t *o = json_object(), *iss = json_object();
    /* IssuerName: a BTreeMap of the entries' long names (sorted, the last of a repeated name wins) */
    const X509_NAME *name = X509_get_issuer_name(x);
    int n = X509_NAME_entry_count(name);
    for (int i = 0; i < n; i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        char k[80];
        OBJ_obj2txt(k, sizeof k, X509_NAME_ENTRY_get_object(e), 0);
        unsigned char *u = NULL;
        int ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
        char v[256];
        if (ul >= 0)
            rust_debug_unquoted(u, ul, v, sizeof v);
        else
            snprintf(v, sizeof v, "error");
        OPENSSL_free(u);
        json_object_set_new(iss, k, json_string(v));
    }
    /* sorted key order, as serde_json writes a BTreeMap */
    const char *names[64];
    size_t cnt = 0;
    const char *k;
    json_t *v;
    json_object_foreach(iss, k, v) {
        if (cnt < 64)
            names[cnt++] = k;
    }
    for (size_t i = 1; i < cnt; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    json_t *sorted = json_object();
    for (size_t i = 0; i < cnt; i++)
        json_object_set(sorted, names[i], json_object_get(iss, names[i]));
    json_decref(iss);
    json_object_set_new(o, "IssuerName", sorted);
    char buf[128];
    const X509_ALGOR *alg = NULL;
    const ASN1_BIT_STRING *sig = NULL;
    X509_get0_signature(&sig, &alg, x);
    const ASN1_OBJECT *aobj = NULL;
    X509_ALGOR_get0(&aobj, NULL, NULL, alg);
    OBJ_obj2txt(buf, sizeof buf, aobj, 0);
    json_object_set_new(o, "Algorithm", json_string(buf));
    asn1_time_text(X509_get0_notBefore(x), buf, sizeof buf);
    json_object_set_new(o, "NotBefore", json_string(buf));
    asn1_time_text(X509_get0_notAfter(x), buf, sizeof buf);
    json_object_set_new(o, "NotAfter", json_string(buf));
    /* Signature: the bytes as upper-case hex joined by ':' */
    int sl = sig ? ASN1_STRING_length(sig) : 0;
    const unsigned char *sd = sig ? ASN1_STRING_get0_data(sig) : NULL;
    char *hex = malloc((size_t)sl * 3 + 1);
    if (hex) {
        hex[0] = '\0';
        for (int i = 0; i < sl; i++)
            snprintf(hex + 3 * i, 4, i + 1 < sl ? "%02X:" : "%02X", sd[i]);
        json_object_set_new(o, "Signature", json_string(hex));
        free(hex);
    }
    X509_free(x);
    return o;
}

json_t *nd_eif_describe_json(const nd_eif_info *info)
{
    json_t *o = json_object(), *m = json_object();
    if (!o || !m) {
        json_decref(o);
        json_decref(m);
        return NULL;
    }
    json_object_set_new(o, "EifVersion", json_integer(info->version));
    json_object_set_new(m, "HashAlgorithm", json_string("Sha384 { ... }"));
    json_object_set_new(m, "PCR0", json_string(info->pcr0));
    json_object_set_new(m, "PCR1", json_string(info->pcr1));
    json_object_set_new(m, "PCR2", json_string(info->pcr2));
    if (info->has_pcr8)
        json_object_set_new(m, "PCR8", json_string(info->pcr8));
    json_object_set_new(o, "Measurements", m);
    json_object_set_new(o, "IsSigned", json_boolean(info->is_signed));
    json_t *sc = info->has_pcr8 ? nd_eif_signing_certificate_json(info) : NULL;
    if (sc)
        json_object_set_new(o, "SigningCertificate", sc);
    json_object_set_new(o, "CheckCRC", json_boolean(info->crc_ok));
    if (info->has_pcr8 && info->signature_check >= 0)
        json_object_set_new(o, "SignatureCheck", json_boolean(info->signature_check == 1));
    json_t *meta = info->metadata ? json_loadb(info->metadata, info->metadata_len,
                                                 JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (json_is_object(meta)) {
        json_t *v;
        if ((v = json_object_get(meta, "ImageName")))
            json_object_set(o, "ImageName", v);
        if ((v = json_object_get(meta, "ImageVersion")))
            json_object_set(o, "ImageVersion", v);
        /* MetadataDescribeInfo (nitro-cli src/common/json_output.rs): the build metadata's five fields, DockerInfo,
         * then the custom metadata's keys flattened in (nothing when it is null) */
        json_t *out = json_object();
        json_t *bm = json_object_get(meta, "BuildMetadata");
        static const char *const bkeys[] = {"BuildTime", "BuildTool", "BuildToolVersion", "OperatingSystem",
                                            "KernelVersion"};
        for (size_t k = 0; json_is_object(bm) && k < sizeof bkeys / sizeof bkeys[0]; k++)
            if ((v = json_object_get(bm, bkeys[k])))
                json_object_set(out, bkeys[k], v);
        if ((v = json_object_get(meta, "DockerInfo")))
            json_object_set(out, "DockerInfo", v);
        if ((v = json_object_get(meta, "CustomMetadata")) && json_is_object(v))
            json_object_update(out, v);
        if (json_object_size(out))
            json_object_set_new(o, "Metadata", out);
        else
            json_decref(out);
    }
    json_decref(meta);
    return o;
}

char *nd_eif_describe_text(const nd_eif_info *info)
{
    json_t *o = nd_eif_describe_json(info);
    if (!o)
        return NULL;
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}
