/*
 * nd_attest.h — Nitro Enclaves attestation documents: parse one (COSE_Sign1, CBOR, with bounds on every field) and
 * build a DEVELOPMENT stand-in that carries a given public key when the NSM device is absent (the enclave's kms mode on a
 * host, tests). A development document is marked as not attested (module_id ND_ATTEST_DEV_MODULE_ID, all-zero PCRs,
 * no certificate chain, a zero signature): real KMS rejects it; the fake KMS accepts it.
 *
 * Parsing checks structure and sizes only. It does NOT verify the signature or the certificate chain to the AWS
 * Nitro root.
 */
#ifndef ND_ATTEST_H
#define ND_ATTEST_H

#include "nd.h"

#define ND_ATTEST_DEV_MODULE_ID "nitrodiag-dev-not-attested"
#define ND_ATTEST_MAX_DOC (64 * 1024)   /* larger input is refused */

typedef struct nd_attest_bytes {
    unsigned char *p;   /* malloc'd copy, NULL when absent */
    size_t len;
} nd_attest_bytes;

typedef struct nd_attest_pcr {
    unsigned index;           /* 0..31 */
    unsigned char value[64];  /* 32, 48 or 64 bytes */
    size_t len;
} nd_attest_pcr;

typedef struct nd_attest_doc {
    int64_t alg;                 /* protected header label 1: -35 is ES384 */
    char module_id[256];
    char digest[16];             /* "SHA384" */
    uint64_t timestamp_ms;
    nd_attest_pcr pcrs[32];
    size_t npcrs;                /* sorted by index */
    nd_attest_bytes certificate; /* DER */
    nd_attest_bytes *cabundle;   /* DER certificates, root first */
    size_t ncabundle;
    nd_attest_bytes public_key;  /* optional (<= 1024 bytes) */
    nd_attest_bytes user_data;   /* optional (<= 512 bytes) */
    nd_attest_bytes nonce;       /* optional (<= 512 bytes) */
    nd_attest_bytes signature;
    bool dev;                    /* module_id is ND_ATTEST_DEV_MODULE_ID: a development stand-in */
} nd_attest_doc;

/* Parses a document (untagged or tag-18 COSE_Sign1). Returns 0 and *out (free with nd_attest_free), or -EBADMSG
 * with a message naming the bad part ("attestation: pcrs[3] is 20 bytes, want 32, 48 or 64"), -EMSGSIZE when the
 * input is over ND_ATTEST_MAX_DOC, -ENOMEM. Never reads beyond len. */
int nd_attest_parse(const void *data, size_t len, nd_attest_doc **out, nd_err *err);

void nd_attest_free(nd_attest_doc *doc);

/* Builds a development document carrying public_key (DER SPKI), optional user_data and nonce, at timestamp_ms.
 * Returns 0 and a malloc'd CBOR document in *out and *outlen, or -EINVAL (a field over its bound) / -ENOMEM. */
int nd_attest_build_dev(const void *public_key, size_t pk_len, const void *user_data, size_t ud_len,
                        const void *nonce, size_t nonce_len, uint64_t timestamp_ms, unsigned char **out,
                        size_t *outlen, nd_err *err);

#endif
