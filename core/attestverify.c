/*
 * attestverify.c — offline verification of Nitro attestation documents (see nd_attest.h): the COSE_Sign1 ES384
 * signature, the certificate chain to the pinned AWS Nitro Enclaves root, validity at the document's own time and now,
 * CA constraints and field sizes. OpenSSL does all X.509 and ECDSA work and libcbor builds the Sig_structure; this
 * file only decides what to check, in which order, and how to name the first failure.
 */
#include "nd_attest.h"
#include "nd_codec.h"
#include "nd_cbor.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cbor.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* AWS_NitroEnclaves_Root-G1 (root.pem inside AWS_NitroEnclaves_Root-G1.zip, published by AWS; the zip's SHA-256 is
 * 8cf60e2b2efca96c6a9e71e851d00c1b6991cc09eadbe64a6a1d1b1eb9faff7c). Pinned by ND_ATTEST_AWS_ROOT_SHA256. */
const char nd_attest_aws_root_pem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL\n"
    "MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD\n"
    "VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4\n"
    "MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL\n"
    "DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG\n"
    "BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb\n"
    "48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE\n"
    "h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF\n"
    "R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC\n"
    "MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW\n"
    "rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N\n"
    "IwLz3/Y=\n"
    "-----END CERTIFICATE-----\n";

const char *nd_attest_pcr_meaning(unsigned i)
{
    switch (i) {
    case 0: return "enclave image file";
    case 1: return "Linux kernel and bootstrap";
    case 2: return "application";
    case 3: return "IAM role of the parent instance";
    case 4: return "instance ID of the parent instance";
    case 8: return "EIF signing certificate";
    default: return NULL;
    }
}

int nd_attest_pcr_extend(const void *data, size_t len, char hex[97], nd_err *err)
{
    static const unsigned char zero[48];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = c && EVP_DigestInit_ex(c, EVP_sha384(), NULL) == 1 && EVP_DigestUpdate(c, zero, sizeof zero) == 1 &&
              EVP_DigestUpdate(c, data, len) == 1 && EVP_DigestFinal_ex(c, md, &n) == 1 && n == 48;
    EVP_MD_CTX_free(c);
    if (!ok)
        return nd_err_set(err, -EIO, "PCR: SHA-384 failed");
    nd_hex_encode(md, 48, hex);
    return 0;
}

/* ---- input encodings ------------------------------------------------------------------------------------------ */

int nd_attest_decode_input(const void *in, size_t n, unsigned char **out, size_t *outlen, nd_err *err)
{
    const unsigned char *p = in;
    *out = NULL;
    *outlen = 0;
    if (n == 0)
        return nd_err_set(err, -EBADMSG, "attestation: empty input");
    if (p[0] == 0x84 || p[0] == 0xd2) { /* raw CBOR: a 4-array, or tag 18 */
        if (n > ND_ATTEST_MAX_DOC)
            return nd_err_set(err, -EMSGSIZE, "attestation: document is %zu bytes, at most %d", n, ND_ATTEST_MAX_DOC);
        *out = malloc(n);
        if (!*out)
            return nd_err_set(err, -ENOMEM, "attestation: out of memory");
        memcpy(*out, p, n);
        *outlen = n;
        return 0;
    }
    if (n > 4 * ND_ATTEST_MAX_DOC)
        return nd_err_set(err, -EMSGSIZE, "attestation: input is %zu bytes, too large for a document", n);
    char *t = malloc(n + 4);
    if (!t)
        return nd_err_set(err, -ENOMEM, "attestation: out of memory");
    size_t m = 0;
    bool hex = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            hex = false;
        t[m++] = (char)c;
    }
    int rc;
    if (m == 0) {
        rc = nd_err_set(err, -EBADMSG, "attestation: empty input");
    } else if (hex && m % 2 == 0) {
        *out = malloc(m / 2 + 1);
        if (!*out) {
            rc = nd_err_set(err, -ENOMEM, "attestation: out of memory");
        } else {
            rc = nd_hex_decode(t, m, *out, m / 2 + 1, err);
            if (rc >= 0) {
                *outlen = (size_t)rc;
                rc = 0;
            }
        }
    } else {
        while (m % 4)
            t[m++] = '=';
        rc = nd_b64_decode(t, m, out, outlen, err);
        if (rc < 0) {
            /* the decoder's message goes inside ours: copy it out of err->msg, which is the buffer being written
             * (passing it as the argument overlapped vsnprintf's source and destination: garbage under ASan) */
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err ? err->msg : "base64");
            rc = nd_err_set(err, -EBADMSG, "attestation: input is neither CBOR, hex nor base64 (%s)", why);
        }
    }
    free(t);
    if (rc < 0) {
        free(*out);
        *out = NULL;
        *outlen = 0;
        return rc;
    }
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------------------------------- */

static int fail(nd_attest_verdict *v, const char *code, const char *fmt, ...) ND_PRINTF(3, 4);
static int fail(nd_attest_verdict *v, const char *code, const char *fmt, ...)
{
    if (v->code[0])
        return 0; /* keep the first reason */
    v->verified = false;
    snprintf(v->code, sizeof v->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof v->reason, fmt, ap);
    va_end(ap);
    return 0;
}

void nd_x509_name_text(const X509_NAME *n, char *out, size_t outsz)
{
    out[0] = '\0';
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return;
    if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        char *p = NULL;
        long len = BIO_get_mem_data(b, &p);
        if (len > 0) {
            size_t k = (size_t)len < outsz - 1 ? (size_t)len : outsz - 1;
            memcpy(out, p, k);
            out[k] = '\0';
        }
    }
    BIO_free(b);
}

static int64_t asn1_time_unix(const ASN1_TIME *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

static void sha256_hex(const unsigned char *p, size_t n, char out[65])
{
    unsigned char md[ND_DIGEST_MAX];
    size_t mdlen = 0;
    if (nd_digest("sha256", p, n, md, &mdlen, NULL) == 0 && mdlen == 32)
        nd_hex_encode(md, 32, out);
    else
        out[0] = '\0';
}

static void fmt_utc(int64_t t, char *out, size_t outsz)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, outsz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outsz, "%lld", (long long)t);
}

static X509 *der_cert(const nd_attest_bytes *b)
{
    const unsigned char *p = b->p;
    if (!p || b->len == 0 || b->len > 0x7fffffff)
        return NULL;
    X509 *x = d2i_X509(NULL, &p, (long)b->len);
    if (x && p != b->p + b->len) { /* trailing bytes after the certificate */
        X509_free(x);
        return NULL;
    }
    return x;
}

static void cert_info(X509 *x, const nd_attest_bytes *der, const char *role, nd_attest_cert *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->role, sizeof c->role, "%s", role);
    nd_x509_name_text(X509_get_subject_name(x), c->subject, sizeof c->subject);
    nd_x509_name_text(X509_get_issuer_name(x), c->issuer, sizeof c->issuer);
    c->not_before = asn1_time_unix(X509_get0_notBefore(x));
    c->not_after = asn1_time_unix(X509_get0_notAfter(x));
    c->is_ca = X509_check_ca(x) != 0;
    sha256_hex(der->p, der->len, c->sha256);
}

/* Name of the certificate at chain depth d (0 = certificate, n = cabundle[0]) for an n-entry cabundle. */
static void depth_role(int d, size_t ncab, char *out, size_t outsz)
{
    if (d <= 0)
        snprintf(out, outsz, "certificate");
    else if ((size_t)d <= ncab)
        snprintf(out, outsz, "cabundle[%zu]", ncab - (size_t)d);
    else
        snprintf(out, outsz, "certificate at depth %d", d);
}

/* Sig_structure ["Signature1", protected, h'', payload] as CBOR (libcbor); malloc'd, 0 length on failure. */
static size_t sig_structure(const unsigned char *prot, size_t plen, const unsigned char *payload, size_t len,
                            unsigned char **out)
{
    cbor_item_t *a = cbor_new_definite_array(4);
    cbor_item_t *s1 = cbor_build_string("Signature1");
    cbor_item_t *pr = cbor_build_bytestring(prot ? prot : (const unsigned char *)"", plen);
    cbor_item_t *aad = cbor_build_bytestring((const unsigned char *)"", 0);
    cbor_item_t *pl = cbor_build_bytestring(payload ? payload : (const unsigned char *)"", len);
    size_t cap = 0, n = 0;
    *out = NULL;
    if (a && s1 && pr && aad && pl && cbor_array_push(a, s1) && cbor_array_push(a, pr) && cbor_array_push(a, aad) &&
        cbor_array_push(a, pl))
        n = cbor_serialize_alloc(a, out, &cap);
    cbor_item_t *items[] = {a, s1, pr, aad, pl};
    for (size_t i = 0; i < 5; i++)
        if (items[i])
            cbor_decref(&items[i]);
    return n;
}

/* ECDSA r ‖ s (each half of sig) over tbs with md and pk: 1 valid, 0 invalid, -1 error. */
static int ecdsa_raw_verify(EVP_PKEY *pk, const EVP_MD *md, const unsigned char *sig, size_t siglen,
                            const unsigned char *tbs, size_t tbslen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(siglen / 2), NULL), *s = BN_bin2bn(sig + siglen / 2, (int)(siglen / 2), NULL);
    unsigned char *der = NULL;
    int derlen = -1, ok = -1;
    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es */
        derlen = i2d_ECDSA_SIG(es, &der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    if (derlen > 0) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (c && EVP_DigestVerifyInit(c, NULL, md, NULL, pk) == 1)
            ok = EVP_DigestVerify(c, der, (size_t)derlen, tbs, tbslen) == 1 ? 1 : 0;
        EVP_MD_CTX_free(c);
    }
    OPENSSL_free(der);
    return ok;
}

int nd_cose_sign1_verify(const void *cose, size_t len, void *pkv, unsigned char **payload, size_t *plen, nd_err *err)
{
    EVP_PKEY *pk = pkv;
    const unsigned char *p = cose;
    if (payload) {
        *payload = NULL;
        *plen = 0;
    }
    if (len > 0 && p[0] == 0xd2) {
        p++;
        len--;
    }
    if (len == 0)
        return nd_err_set(err, -EBADMSG, "COSE_Sign1: empty");
    cbor_item_t *root = nd_cbor_load(p, len, "COSE_Sign1", err), *prot = NULL;
    if (!root)
        return -EBADMSG;
    int rc = -EBADMSG;
    cbor_item_t **it = NULL;
    if (!cbor_isa_array(root) || !cbor_array_is_definite(root) || cbor_array_size(root) != 4 ||
        !cbor_isa_bytestring((it = cbor_array_handle(root))[0]) || !cbor_bytestring_is_definite(it[0]) ||
        !cbor_isa_bytestring(it[2]) || !cbor_bytestring_is_definite(it[2]) || !cbor_isa_bytestring(it[3]) ||
        !cbor_bytestring_is_definite(it[3])) {
        nd_err_set(err, -EBADMSG, "COSE_Sign1: not an array of 4 items of the right types");
        goto out;
    }
    int64_t alg = 0;
    if (cbor_bytestring_length(it[0]) > 0) {
        prot = nd_cbor_load(cbor_bytestring_handle(it[0]), cbor_bytestring_length(it[0]), "COSE protected header", err);
        if (!prot || !cbor_isa_map(prot)) {
            nd_err_set(err, -EBADMSG, "COSE_Sign1: the protected header is not a map");
            goto out;
        }
        struct cbor_pair *pp = cbor_map_handle(prot);
        for (size_t i = 0; i < cbor_map_size(prot); i++)
            if (cbor_isa_uint(pp[i].key) && cbor_get_int(pp[i].key) == 1 && cbor_isa_negint(pp[i].value))
                alg = -1 - (int64_t)(cbor_get_int(pp[i].value) & 0x7fffffff);
    }
    const EVP_MD *md = alg == -7 ? EVP_sha256() : alg == -35 ? EVP_sha384() : alg == -36 ? EVP_sha512() : NULL;
    if (!md) {
        rc = 0;
        nd_err_set(err, -EBADMSG, "COSE_Sign1: alg %lld is not ES256, ES384 or ES512", (long long)alg);
        goto out;
    }
    if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC) {
        rc = 0;
        nd_err_set(err, -EBADMSG, "COSE_Sign1: the key is not an EC key");
        goto out;
    }
    size_t siglen = cbor_bytestring_length(it[3]), half = ((size_t)EVP_PKEY_get_bits(pk) + 7) / 8;
    if (siglen != 2 * half) {
        rc = 0;
        nd_err_set(err, -EBADMSG, "COSE_Sign1: the signature is %zu bytes, the key needs %zu", siglen, 2 * half);
        goto out;
    }
    unsigned char *tbs = NULL;
    size_t tbslen = sig_structure(cbor_bytestring_handle(it[0]), cbor_bytestring_length(it[0]),
                                  cbor_bytestring_handle(it[2]), cbor_bytestring_length(it[2]), &tbs);
    int ok = tbslen ? ecdsa_raw_verify(pk, md, cbor_bytestring_handle(it[3]), siglen, tbs, tbslen) : -1;
    free(tbs);
    if (ok < 0) {
        rc = nd_err_set(err, -ENOMEM, "COSE_Sign1: out of memory");
        goto out;
    }
    if (ok == 0) {
        rc = 0;
        nd_err_set(err, -EBADMSG, "COSE_Sign1: the signature does not verify with the certificate's key");
        goto out;
    }
    rc = 1;
    if (payload) {
        size_t n = cbor_bytestring_length(it[2]);
        *payload = malloc(n ? n : 1);
        if (!*payload) {
            rc = nd_err_set(err, -ENOMEM, "COSE_Sign1: out of memory");
            goto out;
        }
        memcpy(*payload, cbor_bytestring_handle(it[2]), n);
        *plen = n;
    }
out:
    if (prot)
        cbor_decref(&prot);
    cbor_decref(&root);
    return rc;
}

/* ---- the checks ------------------------------------------------------------------------------------------------- */

static void check_fields(const nd_attest_doc *d, nd_attest_verdict *v)
{
    if (strcmp(d->digest, "SHA384") != 0) {
        fail(v, "fields", "digest is \"%s\", want \"SHA384\"", d->digest);
        return;
    }
    if (d->module_id[0] == '\0')
        fail(v, "fields", "module_id is empty");
    if (d->timestamp_ms == 0)
        fail(v, "fields", "timestamp is 0");
    for (size_t i = 0; i < d->npcrs; i++)
        if (d->pcrs[i].len != 48)
            fail(v, "fields", "pcrs[%u] is %zu bytes, a SHA384 document has 48", d->pcrs[i].index, d->pcrs[i].len);
    if (d->ncabundle == 0)
        fail(v, "fields", "cabundle is empty: it must hold at least the root certificate");
    if (d->certificate.len == 0)
        fail(v, "fields", "certificate is empty");
}

/* ES384 over Sig_structure = ["Signature1", protected, h'', payload]. */
static void check_signature(const nd_attest_doc *d, X509 *leaf, nd_attest_verdict *v)
{
    if (d->alg != -35) {
        fail(v, "alg", "protected header alg is %lld%s, want -35 (ES384)", (long long)d->alg,
             d->alg == -7 ? " (ES256)" : d->alg == -36 ? " (ES512)" : d->alg == 0 ? " (absent)" : "");
        return;
    }
    EVP_PKEY *pk = X509_get0_pubkey(leaf);
    char group[64] = "";
    size_t glen = 0;
    if (!pk || EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(pk, group, sizeof group, &glen) != 1 || strcmp(group, "secp384r1") != 0) {
        fail(v, "alg", "certificate key is not an EC P-384 key (%s), ES384 needs one",
             pk ? (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC ? group : OBJ_nid2sn(EVP_PKEY_get_base_id(pk))) : "none");
        return;
    }
    if (d->signature.len != 96) {
        fail(v, "signature", "signature is %zu bytes, ES384 has 96 (r ‖ s)", d->signature.len);
        return;
    }
    unsigned char *tbs = NULL;
    size_t tbslen = sig_structure(d->protected_raw.p, d->protected_raw.len, d->payload_raw.p, d->payload_raw.len, &tbs);
    int ok = tbslen ? ecdsa_raw_verify(pk, EVP_sha384(), d->signature.p, d->signature.len, tbs, tbslen) : -1;
    free(tbs);
    if (ok < 0)
        fail(v, "signature", "cannot build the COSE Sig_structure or the ECDSA signature (out of memory)");
    else if (ok != 1)
        fail(v, "signature", "the ES384 signature does not verify with the key of the document's certificate "
                             "(%s): the document was altered or signed by another key", v->nchain ? v->chain[0].subject : "");
}

/* Runs OpenSSL's chain verification at time t. Returns 1 when valid, 0 with *code/reason set otherwise. */
static int verify_chain_at(X509 *leaf, STACK_OF(X509) *untrusted, X509 *anchor, size_t ncab, int64_t t,
                           const char **code, char *reason, size_t reasonsz)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = 0;
    *code = "chain";
    if (!store || !ctx || X509_STORE_add_cert(store, anchor) != 1 ||
        X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
        snprintf(reason, reasonsz, "cannot set up certificate verification (out of memory)");
        goto out;
    }
    X509_STORE_CTX_set_time(ctx, 0, (time_t)t);
    if (X509_verify_cert(ctx) == 1) {
        ok = 1;
        goto out;
    }
    int e = X509_STORE_CTX_get_error(ctx), depth = X509_STORE_CTX_get_error_depth(ctx);
    X509 *cur = X509_STORE_CTX_get_current_cert(ctx);
    char role[32], subj[256] = "", when[32], lim[32];
    depth_role(depth, ncab, role, sizeof role);
    if (cur && cur == anchor)
        snprintf(role, sizeof role, "root");
    if (cur)
        nd_x509_name_text(X509_get_subject_name(cur), subj, sizeof subj);
    fmt_utc(t, when, sizeof when);
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        *code = "expired";
        fmt_utc(cur ? asn1_time_unix(X509_get0_notAfter(cur)) : 0, lim, sizeof lim);
        snprintf(reason, reasonsz, "%s (%s) had expired at %s (notAfter %s)", role, subj, when, lim);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        *code = "not_yet_valid";
        fmt_utc(cur ? asn1_time_unix(X509_get0_notBefore(cur)) : 0, lim, sizeof lim);
        snprintf(reason, reasonsz, "%s (%s) was not yet valid at %s (notBefore %s)", role, subj, when, lim);
        break;
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
        *code = "ca";
        snprintf(reason, reasonsz, "%s (%s) may not issue certificates here: %s", role, subj,
                 X509_verify_cert_error_string(e));
        break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        snprintf(reason, reasonsz, "the signature on %s (%s) does not verify with its issuer's key", role, subj);
        break;
    default:
        snprintf(reason, reasonsz, "%s (%s): %s", role, subj, X509_verify_cert_error_string(e));
        break;
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok;
}

static X509 *load_anchor(const nd_attest_verify_opts *o, char sha[65], nd_err *err)
{
    const char *pem = o && o->root_pem ? o->root_pem : nd_attest_aws_root_pem;
    size_t len = o && o->root_pem ? o->root_pem_len : strlen(nd_attest_aws_root_pem);
    BIO *b = BIO_new_mem_buf(pem, len > 0x7fffffff ? -1 : (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!x) {
        nd_err_set(err, -EINVAL, "attestation: the root is not a PEM certificate");
        return NULL;
    }
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0) {
        X509_free(x);
        nd_err_set(err, -ENOMEM, "attestation: out of memory");
        return NULL;
    }
    sha256_hex(der, (size_t)n, sha);
    OPENSSL_free(der);
    if (!(o && o->root_pem) && strcmp(sha, ND_ATTEST_AWS_ROOT_SHA256) != 0) {
        X509_free(x);
        nd_err_set(err, -EINVAL, "attestation: the embedded AWS root does not match its pinned SHA-256");
        return NULL;
    }
    return x;
}

int nd_attest_verify(const nd_attest_doc *d, const nd_attest_verify_opts *o, nd_attest_verdict *v, nd_err *err)
{
    memset(v, 0, sizeof *v);
    v->verified = true;
    X509 *anchor = load_anchor(o, v->root_sha256, err);
    if (!anchor)
        return err ? err->code : -EINVAL;

    /* what the document says, whether or not it verifies */
    bool all_zero = true;
    int seen = 0;
    for (size_t i = 0; i < d->npcrs; i++) {
        if (d->pcrs[i].index > 2)
            continue;
        seen++;
        for (size_t j = 0; j < d->pcrs[i].len; j++)
            if (d->pcrs[i].value[j])
                all_zero = false;
    }
    v->debug = seen == 3 && all_zero;
    if (d->public_key.p) {
        const unsigned char *p = d->public_key.p;
        EVP_PKEY *pk = d->public_key.len ? d2i_PUBKEY(NULL, &p, (long)d->public_key.len) : NULL;
        if (pk && p == d->public_key.p + d->public_key.len) {
            int id = EVP_PKEY_get_base_id(pk);
            snprintf(v->pk_type, sizeof v->pk_type, "%s", id == EVP_PKEY_RSA ? "RSA" : id == EVP_PKEY_EC ? "EC"
                                                           : OBJ_nid2sn(id) ? OBJ_nid2sn(id) : "unknown");
            v->pk_bits = EVP_PKEY_get_bits(pk);
        } else {
            snprintf(v->pk_type, sizeof v->pk_type, "unparsed");
        }
        EVP_PKEY_free(pk);
        sha256_hex(d->public_key.p, d->public_key.len, v->pk_sha256);
    }

    /* certificates: parse all, describe them leaf first then cabundle last to first */
    X509 *leaf = der_cert(&d->certificate);
    X509 *cab[16] = {0};
    size_t ncab = d->ncabundle > 16 ? 16 : d->ncabundle;
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    int rc = 0;
    if (!untrusted) {
        rc = nd_err_set(err, -ENOMEM, "attestation: out of memory");
        goto out;
    }
    check_fields(d, v);
    if (!leaf)
        fail(v, "fields", "certificate is not a DER X.509 certificate");
    else
        cert_info(leaf, &d->certificate, "certificate", &v->chain[v->nchain++]);
    for (size_t k = ncab; k-- > 0;) {
        char role[32];
        snprintf(role, sizeof role, "cabundle[%zu]", k);
        cab[k] = der_cert(&d->cabundle[k]);
        if (!cab[k])
            fail(v, "fields", "%s is not a DER X.509 certificate", role);
        else if (v->nchain < ND_ATTEST_MAX_CHAIN)
            cert_info(cab[k], &d->cabundle[k], role, &v->chain[v->nchain++]);
    }
    if (v->code[0] || !leaf)
        goto nonce;

    check_signature(d, leaf, v);
    if (v->code[0])
        goto nonce;

    /* cabundle[0] is the root: it must be the trust anchor itself */
    char anchor_subject[256];
    nd_x509_name_text(X509_get_subject_name(anchor), anchor_subject, sizeof anchor_subject);
    if (X509_cmp(cab[0], anchor) != 0) {
        fail(v, "root", "cabundle[0] (%s, SHA-256 %.16s…) is not the trusted root (%s, SHA-256 %.16s…)%s",
             v->chain[v->nchain - 1].subject, v->chain[v->nchain - 1].sha256, anchor_subject, v->root_sha256,
             o && o->root_pem ? "" : ": the document does not chain to AWS_NitroEnclaves_Root-G1");
        goto nonce;
    }
    /* order: root first, each next one issued by the previous, the certificate by the last */
    for (size_t k = 1; k <= ncab; k++) {
        X509 *issuer = cab[k - 1], *subject = k < ncab ? cab[k] : leaf;
        /* names only: whether the issuer may issue (CA, key usage, path length) is OpenSSL's check below */
        if (X509_NAME_cmp(X509_get_issuer_name(subject), X509_get_subject_name(issuer)) != 0) {
            char sn[256], in[256], role[32];
            nd_x509_name_text(X509_get_subject_name(subject), sn, sizeof sn);
            nd_x509_name_text(X509_get_subject_name(issuer), in, sizeof in);
            if (k < ncab)
                snprintf(role, sizeof role, "cabundle[%zu]", k);
            else
                snprintf(role, sizeof role, "certificate");
            fail(v, "chain_order", "%s (%s) was not issued by cabundle[%zu] (%s): cabundle must run from the root "
                 "to the certificate's issuer", role, sn, k - 1, in);
            goto nonce;
        }
        if (k < ncab && sk_X509_push(untrusted, cab[k]) <= 0) {
            rc = nd_err_set(err, -ENOMEM, "attestation: out of memory");
            goto out;
        }
    }
    if (X509_check_ca(leaf) != 0) {
        fail(v, "ca", "certificate (%s) is a CA certificate; the document's signing certificate must not be one",
             v->chain[0].subject);
        goto nonce;
    }
    const char *code;
    char reason[512];
    int64_t doc_t = (int64_t)(d->timestamp_ms / 1000);
    if (!verify_chain_at(leaf, untrusted, anchor, ncab, doc_t, &code, reason, sizeof reason)) {
        fail(v, code, "at the document's time: %s", reason);
    } else {
        int64_t now = o && o->now ? o->now : (int64_t)time(NULL);
        v->valid_now = verify_chain_at(leaf, untrusted, anchor, ncab, now, &code, v->now_reason,
                                       sizeof v->now_reason) == 1;
    }
nonce:
    if (o && o->nonce) {
        if (!d->nonce.p)
            fail(v, "nonce", "the document carries no nonce; %zu bytes were expected", o->nonce_len);
        else if (d->nonce.len != o->nonce_len || memcmp(d->nonce.p, o->nonce, o->nonce_len) != 0)
            fail(v, "nonce", "the document's nonce (%zu bytes) differs from the expected one (%zu bytes)",
                 d->nonce.len, o->nonce_len);
    }
    if (v->code[0])
        v->verified = false;
out:
    sk_X509_free(untrusted);
    X509_free(leaf);
    for (size_t k = 0; k < ncab; k++)
        X509_free(cab[k]);
    X509_free(anchor);
    return rc;
}
