/*
 * nd_eif.h — Enclave Image Format (EIF) files: read, validate, measure and write them.
 *
 * Format (docs/nitro.md, all integers big-endian): a 548-byte header (magic ".eif", version, flags, default
 * memory and CPUs, up to 32 section offsets/sizes, CRC32), then sections, each a 12-byte header (type, flags, size)
 * followed by its data. Measurements are SHA-384 PCRs "extended" from zero: PCR = SHA384(48 zero bytes ‖
 * SHA384(data)), where data is kernel ‖ cmdline ‖ ramdisks (PCR0), kernel ‖ cmdline ‖ first ramdisk (PCR1), the
 * other ramdisks (PCR2) and the DER signing certificate (PCR8, signed EIFs only).
 */
#ifndef ND_EIF_H
#define ND_EIF_H

#include "nd.h"

#define ND_EIF_HEADER_SIZE 548
#define ND_EIF_SECTION_HEADER_SIZE 12
#define ND_EIF_MAX_SECTIONS 32
#define ND_EIF_PCR_HEX 97 /* 96 hex digits + NUL */

enum nd_eif_section_type {
    ND_EIF_SEC_INVALID = 0,
    ND_EIF_SEC_KERNEL = 1,
    ND_EIF_SEC_CMDLINE = 2,
    ND_EIF_SEC_RAMDISK = 3,
    ND_EIF_SEC_SIGNATURE = 4,
    ND_EIF_SEC_METADATA = 5,
};

typedef struct nd_eif_section {
    uint16_t type;    /* enum nd_eif_section_type */
    uint16_t flags;
    uint64_t offset;  /* file offset of the section's 12-byte header */
    uint64_t size;    /* bytes of data after the section header */
} nd_eif_section;

typedef struct nd_eif_info {
    uint64_t file_size;
    uint16_t version;
    uint16_t flags;            /* 0x1 = aarch64 */
    uint64_t default_mem;      /* header default_mem (bytes as written by the builder) */
    uint64_t default_cpus;
    uint16_t num_sections;
    nd_eif_section sections[ND_EIF_MAX_SECTIONS];
    uint32_t crc_stored;
    uint32_t crc_computed;
    bool crc_ok;
    char pcr0[ND_EIF_PCR_HEX], pcr1[ND_EIF_PCR_HEX], pcr2[ND_EIF_PCR_HEX], pcr8[ND_EIF_PCR_HEX];
    bool is_signed;            /* a signature section is present */
    bool has_pcr8;             /* ... and it holds a certificate that parsed */
    unsigned char *signing_cert; /* that certificate as DER (owned), NULL when unsigned */
    size_t signing_cert_len;
    int signature_check;       /* SignatureCheck: 1 the COSE_Sign1 verifies with the certificate's key and signs
                                * {register_index: 0, register_value: PCR0}; 0 it does not; -1 unsigned */
    char signature_error[512]; /* why signature_check is 0 */
    char cert_subject[256];    /* the signing certificate's subject and issuer (RFC 2253) and validity (unix s) */
    char cert_issuer[256];
    int64_t cert_not_before, cert_not_after;
    char *metadata;            /* metadata section as text (JSON), NUL-terminated, or NULL (owned) */
    size_t metadata_len;
    char *cmdline;             /* kernel command line, NUL-terminated, or NULL (owned) */
    uint64_t trailing_bytes;   /* bytes after the last section (0 in a well-formed EIF) */
    uint64_t min_memory_mib;   /* ceil(file_size / MiB) * 4: below this run-enclave fails with E26 */
} nd_eif_info;

/* Name of a section type: "kernel", "cmdline", "ramdisk", "signature", "metadata", "invalid"; "unknown" otherwise. */
const char *nd_eif_section_name(unsigned type);

/* The minimum --memory (MiB) run-enclave accepts for an EIF of `size` bytes: ceil(size / 1 MiB) * 4. */
uint64_t nd_eif_min_memory_mib(uint64_t size);

/* Reads and validates the EIF at path: header, section table, each section header, CRC32, PCRs. Returns 0 and fills
 * *info (free with nd_eif_info_free), or a negative code with err naming what is wrong and the offset:
 * -ENOENT/-EACCES (cannot open), -EBADMSG (not an EIF / corrupt: bad magic, section past the end, size mismatch,
 * unknown section type), -EIO. A CRC mismatch is NOT an error: info->crc_ok is false (describe-eif's CheckCRC). */
int nd_eif_read(const char *path, nd_eif_info *info, nd_err *err);

/* nd_eif_read without the SHA-384 passes (pcr0..pcr2 are empty strings): the same validation, CRC and metadata, for a
 * caller that already knows the measurements (a padded image whose PCRs cost hundreds of MiB of hashing). */
int nd_eif_read_unmeasured(const char *path, nd_eif_info *info, nd_err *err);

/* Same for an EIF held in memory. */
int nd_eif_read_mem(const void *data, size_t len, nd_eif_info *info, nd_err *err);

void nd_eif_info_free(nd_eif_info *info);

typedef struct nd_eif_blob {
    const void *data;
    size_t len;
} nd_eif_blob;

typedef struct nd_eif_input {
    nd_eif_blob kernel;
    nd_eif_blob cmdline;
    const nd_eif_blob *ramdisks;  /* in order: bootstrap ramdisk first, then the customer ramdisks */
    size_t n_ramdisks;
    nd_eif_blob metadata;         /* JSON text; len 0: no metadata section */
    nd_eif_blob certificate;      /* PEM or DER signing certificate; len 0: unsigned */
    nd_eif_blob signature;        /* opaque signature bytes stored next to the certificate */
    uint64_t default_mem;         /* header fields (0 by default, as nitro-cli writes) */
    uint64_t default_cpus;
    uint16_t flags;
    uint64_t pad_zeros;           /* zero bytes appended to the last ramdisk (its size covers them), written as a
                                   * sparse hole: a large image (E26's 4x rule) without the disk cost */
} nd_eif_input;

/* Writes an EIF (version 4) with sections in the usual order: kernel, cmdline, metadata, ramdisks, signature. The
 * last ramdisk ends with in->pad_zeros zero bytes (a hole in the file; the CRC is combined without reading them). The
 * signature section is what nitro-cli writes: a CBOR array of one {signing_certificate, signature} map with the bytes
 * as integer arrays. Written to a temporary file next to path, then renamed. When info is non-NULL the written file
 * is read back into it. Returns 0, or a negative code with err (-EINVAL: no kernel, too many sections; -errno from
 * the file system). */
int nd_eif_write(const char *path, const nd_eif_input *in, nd_eif_info *info, nd_err *err);

/* PCR8 of a signing certificate (PEM or DER), as `nitro-cli pcr --signing-certificate` computes it:
 * SHA384(48 zero bytes ‖ SHA384(DER)). Returns 0 with 96 hex digits in hex, or -EBADMSG when it is not a certificate. */
int nd_eif_pcr8_cert(const void *cert, size_t len, char hex[ND_EIF_PCR_HEX], nd_err *err);

/* What `nitro-cli describe-eif` prints for this EIF: a jansson object with its key order (EifVersion, Measurements
 * {HashAlgorithm, PCR0, PCR1, PCR2[, PCR8]}, IsSigned, [SigningCertificate {IssuerName, Algorithm, NotBefore, NotAfter,
 * Signature},] CheckCRC, [SignatureCheck,] then ImageName, ImageVersion and Metadata when the
 * metadata section is JSON in nitro-cli's layout). Returns a new reference (json_decref it), or NULL without memory. */
struct json_t;
struct json_t *nd_eif_describe_json(const nd_eif_info *info);

/* describe-eif's SigningCertificate for a signed EIF, as aws-nitro-enclaves-image-format's SignCertificateInfo
 * serialises it: IssuerName (a map of the issuer's attribute long names, sorted), Algorithm (the signature algorithm's
 * long name), NotBefore/NotAfter (OpenSSL's ASN1_TIME_print text, "Mar  1 12:00:00 2025 GMT"), Signature (upper-case
 * hex bytes joined by ':'). New reference, or NULL when the EIF carries no readable certificate. */
struct json_t *nd_eif_signing_certificate_json(const nd_eif_info *info);

/* The same, pretty-printed like nitro-cli (2-space indent, no trailing newline). malloc'd; NULL without memory. */
char *nd_eif_describe_text(const nd_eif_info *info);

#endif
