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
    nd_attest_bytes user_data;   /* optional (<= 1024 bytes: real NSM documents carry 1024, not the 512 of the spec) */
    nd_attest_bytes nonce;       /* optional (<= 1024 bytes) */
    nd_attest_bytes signature;
    nd_attest_bytes protected_raw; /* the protected header and payload byte strings as signed (Sig_structure) */
    nd_attest_bytes payload_raw;
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

/* ---- verification (attestverify.c) ------------------------------------------------------------------------------
 * Offline verification as AWS describes it (aws-nitro-enclaves-nsm-api docs/attestation_process.md): COSE_Sign1 with
 * ES384 (protected alg -35) signed by the P-384 key of `certificate`, over Sig_structure ["Signature1", protected,
 * h'', payload]; the chain certificate -> cabundle[n-1] -> ... -> cabundle[1] -> cabundle[0] = the trusted root;
 * every certificate valid at the document's timestamp; intermediates are CAs within their path length. OpenSSL does
 * the X.509 and ECDSA work. */

/* The AWS Nitro Enclaves root (AWS_NitroEnclaves_Root-G1), embedded, and the SHA-256 of its DER it is pinned by. */
#define ND_ATTEST_AWS_ROOT_SHA256 "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
extern const char nd_attest_aws_root_pem[];

#define ND_ATTEST_MAX_CHAIN 18

typedef struct nd_attest_cert {
    char role[32];             /* "certificate", "cabundle[2]", … */
    char subject[256];         /* RFC 2253 */
    char issuer[256];
    int64_t not_before;        /* unix seconds */
    int64_t not_after;
    bool is_ca;
    char sha256[65];           /* of the DER, lowercase hex */
} nd_attest_cert;

typedef struct nd_attest_verdict {
    bool verified;             /* fields, ES384 signature, chain to the root, validity at the document's time, nonce */
    char code[24];             /* first failure: "fields" "alg" "signature" "root" "chain_order" "chain" "expired"
                                * "not_yet_valid" "ca" "nonce"; "" when verified */
    char reason[512];          /* one line naming the certificate or field */
    bool valid_now;            /* the same chain checked at opts->now (leaf certificates live for hours) */
    char now_reason[512];
    nd_attest_cert chain[ND_ATTEST_MAX_CHAIN]; /* certificate first, then cabundle from last to first (root last) */
    size_t nchain;
    bool debug;                /* PCR0, PCR1 and PCR2 are all zero: a debug-mode enclave */
    char pk_type[16];          /* public_key: "RSA", "EC", …, "unparsed"; "" when absent */
    int pk_bits;
    char pk_sha256[65];        /* SHA-256 of the public_key bytes (a DER SubjectPublicKeyInfo) */
    char root_sha256[65];      /* the trust anchor used */
} nd_attest_verdict;

typedef struct nd_attest_verify_opts {
    const char *root_pem;      /* another trust anchor (PEM), or NULL for the embedded AWS root */
    size_t root_pem_len;
    int64_t now;               /* unix seconds for valid_now; 0: the current time */
    const unsigned char *nonce;/* the expected nonce, or NULL */
    size_t nonce_len;
} nd_attest_verify_opts;

/* Verifies a parsed document. Returns 0 when verification ran (the outcome is in *v: verified, or code and reason),
 * -EINVAL when opts->root_pem is not a PEM certificate or the embedded root does not match its pin, -ENOMEM. */
int nd_attest_verify(const nd_attest_doc *doc, const nd_attest_verify_opts *opts, nd_attest_verdict *v, nd_err *err);

/* Decodes a document given as raw CBOR (starts with 0x84 or tag 0xd2), hex or base64 (standard or URL-safe, padding
 * optional, whitespace ignored). Returns 0 and a malloc'd buffer, or -EBADMSG naming the encoding, -EMSGSIZE, -ENOMEM. */
int nd_attest_decode_input(const void *in, size_t n, unsigned char **out, size_t *outlen, nd_err *err);

/* The value a PCR holds after the NSM extends it once from zero with data: SHA384(48 zero bytes ‖ data), as 96
 * lowercase hex digits. PCR3 is this over the parent's IAM role ARN, PCR4 over its instance id (AWS Nitro Enclaves
 * User Guide, "Where to get an enclave's measurements"). Returns 0 or -EIO. */
int nd_attest_pcr_extend(const void *data, size_t len, char hex[97], nd_err *err);

/* Verifies a COSE_Sign1 (tag 18 or untagged) whose protected header names ES256, ES384 or ES512 with the EC public
 * key pk (an EVP_PKEY *). Returns 1 when the signature verifies (and *payload, *plen hold a malloc'd copy of the
 * payload when payload is non-NULL), 0 when it does not (err says why), -EBADMSG for a malformed structure, -ENOMEM. */
int nd_cose_sign1_verify(const void *cose, size_t len, void *pk, unsigned char **payload, size_t *plen, nd_err *err);

/* Short description of what PCR i measures ("enclave image file", …), or NULL for the PCRs Nitro does not assign. */
const char *nd_attest_pcr_meaning(unsigned i);

/* Writes an X.509 name in RFC 2253 form ("CN=aws.nitro-enclaves,O=Amazon,…"), the form nitrodiag shows names in
 * (attest's chain, describe-eif's SigningCertificate), cut to outsz - 1 bytes; an empty string when it cannot. */
typedef struct X509_name_st X509_NAME;
void nd_x509_name_text(const X509_NAME *n, char *out, size_t outsz);

#endif
