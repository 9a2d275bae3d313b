/*
 * bundlesig.c — the optional signature of a bundle (contract in nd_bundle.h, "signing").
 *
 * The manifest lists the size and SHA-256 of every member, so a signature over the exact bytes of manifest.json
 * authenticates the whole bundle. It is stored as the member manifest.sig, a small JSON document:
 *   {"format": "nitrodiag-bundle-signature", "algorithm": "hmac-sha256" | "pkey-sha256", "key_type": …,
 *    "key_id": first 16 hex digits of SHA-256 of the key (HMAC) or of its DER public key, "signature": base64}
 * Two kinds of key, told apart by the key file's contents:
 *   - a PEM private key (RSA, EC, Ed25519; OpenSSL reads it): an OpenSSL signature (SHA-256 digest; Ed25519 signs
 *     the message itself). Verifying takes the public key (PEM) or the private key or a certificate.
 *   - anything else is a shared secret for HMAC-SHA256: the file's bytes without trailing whitespace, at least
 *     16 bytes. Verifying takes the same file.
 * Everything cryptographic is OpenSSL's (EVP_DigestSign/Verify, EVP_MAC / HMAC, PEM readers).
 */
#include "nd_bundle.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_FILE_MAX (64u * 1024u)
#define HMAC_MIN 16

struct nd_bundle_key {
    EVP_PKEY *pkey;        /* public-key kind */
    bool has_private;
    unsigned char *secret; /* HMAC kind */
    size_t secret_len;
    char key_id[17];
    char type[32];
};

void nd_bundle_key_free(nd_bundle_key *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    if (k->secret) {
        OPENSSL_cleanse(k->secret, k->secret_len);
        free(k->secret);
    }
    free(k);
}

static void hex16(const unsigned char *d, char out[17])
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void set_pkey_id(nd_bundle_key *k)
{
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->pkey, &der);
    unsigned char d[32];
    unsigned int dl = 0;
    if (n > 0 && EVP_Digest(der, (size_t)n, d, &dl, EVP_sha256(), NULL))
        hex16(d, k->key_id);
    OPENSSL_free(der);
    snprintf(k->type, sizeof k->type, "%s", EVP_PKEY_get0_type_name(k->pkey) ? EVP_PKEY_get0_type_name(k->pkey) : "?");
}

int nd_bundle_key_load(const char *path, nd_bundle_key **out, nd_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_err_set(err, -errno, "signing key %s: %s", path, strerror(errno));
    unsigned char *buf = malloc(KEY_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "out of memory");
    if (n > KEY_FILE_MAX) {
        free(buf);
        return nd_err_set(err, -EFBIG, "signing key %s: larger than %u bytes: not a key file", path, KEY_FILE_MAX);
    }
    buf[n] = 0;
    nd_bundle_key *k = calloc(1, sizeof *k);
    if (!k) {
        free(buf);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    if (strstr((char *)buf, "-----BEGIN ")) {
        BIO *bio = BIO_new_mem_buf(buf, (int)n);
        k->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        if (k->pkey) {
            k->has_private = true;
        } else {
            BIO_reset(bio);
            k->pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
            if (!k->pkey) {
                BIO_reset(bio);
                X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                if (x) {
                    k->pkey = X509_get_pubkey(x);
                    X509_free(x);
                }
            }
        }
        BIO_free(bio);
        OPENSSL_cleanse(buf, n);
        free(buf);
        if (!k->pkey) {
            nd_bundle_key_free(k);
            return nd_err_set(err, -EINVAL, "signing key %s: a PEM file OpenSSL cannot read as a key (encrypted?)", path);
        }
        set_pkey_id(k);
        *out = k;
        return 0;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n < HMAC_MIN) {
        OPENSSL_cleanse(buf, n);
        free(buf);
        nd_bundle_key_free(k);
        return nd_err_set(err, -EINVAL, "signing key %s: an HMAC key needs at least %d bytes", path, HMAC_MIN);
    }
    k->secret = buf;
    k->secret_len = n;
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_Digest(buf, n, d, &dl, EVP_sha256(), NULL);
    hex16(d, k->key_id);
    snprintf(k->type, sizeof k->type, "hmac");
    *out = k;
    return 0;
}

const char *nd_bundle_key_id(const nd_bundle_key *k)
{
    return k->key_id;
}

static int raw_sign(const nd_bundle_key *k, const void *data, size_t len, unsigned char **sig, size_t *siglen,
                    nd_err *err)
{
    *sig = NULL;
    if (k->secret) {
        *sig = malloc(EVP_MAX_MD_SIZE);
        unsigned int l = 0;
        if (!*sig || !HMAC(EVP_sha256(), k->secret, (int)k->secret_len, data, len, *sig, &l))
            return nd_err_set(err, -EIO, "HMAC failed");
        *siglen = l;
        return 0;
    }
    if (!k->has_private)
        return nd_err_set(err, -EINVAL, "signing needs a private key (this is a public key)");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int id = EVP_PKEY_get_base_id(k->pkey);
    const EVP_MD *dg = (id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448) ? NULL : EVP_sha256();
    size_t l = 0;
    int ok = md && EVP_DigestSignInit(md, NULL, dg, NULL, k->pkey) == 1 &&
             EVP_DigestSign(md, NULL, &l, data, len) == 1 && (*sig = malloc(l)) &&
             EVP_DigestSign(md, *sig, &l, data, len) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) {
        free(*sig);
        *sig = NULL;
        return nd_err_set(err, -EIO, "OpenSSL cannot sign with this key");
    }
    *siglen = l;
    return 0;
}

int nd_bundle_key_sign(const nd_bundle_key *k, const void *data, size_t len, char **sig_json, nd_err *err)
{
    *sig_json = NULL;
    unsigned char *sig;
    size_t sl = 0;
    int rc = raw_sign(k, data, len, &sig, &sl, err);
    if (rc < 0)
        return rc;
    char *b64 = malloc(4 * ((sl + 2) / 3) + 1);
    if (!b64) {
        free(sig);
        return nd_err_set(err, -ENOMEM, "out of memory");
    }
    EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
    free(sig);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "format", "nitrodiag-bundle-signature", "algorithm",
                          k->secret ? "hmac-sha256" : "pkey-sha256", "key_type", k->type, "key_id", k->key_id,
                          "signed", "manifest.json", "signature", b64);
    free(b64);
    char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!text)
        return nd_err_set(err, -ENOMEM, "out of memory");
    *sig_json = text;
    return 0;
}

int nd_bundle_key_verify(const nd_bundle_key *k, const void *data, size_t len, const char *sig_json, char *desc,
                         size_t descsz, nd_err *err)
{
    json_t *j = sig_json ? json_loads(sig_json, 0, NULL) : NULL;
    const char *alg = json_string_value(json_object_get(j, "algorithm"));
    const char *id = json_string_value(json_object_get(j, "key_id"));
    const char *b64 = json_string_value(json_object_get(j, "signature"));
    if (!alg || !b64) {
        json_decref(j);
        return nd_err_set(err, -EBADMSG, "manifest.sig is not a nitrodiag signature");
    }
    snprintf(desc, descsz, "%s, key %s", alg, id ? id : "?");
    bool hmac = !strcmp(alg, "hmac-sha256");
    if (hmac != (k->secret != NULL)) {
        json_decref(j);
        return nd_err_set(err, -EBADMSG, "signed with %s, but the key given is %s", alg,
                          k->secret ? "an HMAC secret" : "a public/private key");
    }
    size_t bl = strlen(b64);
    unsigned char *sig = malloc(bl + 3);
    int sl = sig ? EVP_DecodeBlock(sig, (const unsigned char *)b64, (int)bl) : -1;
    while (sl > 0 && bl > 0 && b64[bl - 1] == '=') { /* DecodeBlock counts the padding as zero bytes */
        sl--;
        bl--;
    }
    int rc = 0;
    if (sl <= 0) {
        rc = nd_err_set(err, -EBADMSG, "manifest.sig: the signature is not base64");
    } else if (hmac) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        HMAC(EVP_sha256(), k->secret, (int)k->secret_len, data, len, mac, &ml);
        if ((unsigned)sl != ml || CRYPTO_memcmp(mac, sig, ml) != 0)
            rc = nd_err_set(err, -EBADMSG, "the signature does not match: manifest.json was changed, or another key "
                                            "signed it (key %s given, key %s signed)", k->key_id, id ? id : "?");
    } else {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int bid = EVP_PKEY_get_base_id(k->pkey);
        const EVP_MD *dg = (bid == EVP_PKEY_ED25519 || bid == EVP_PKEY_ED448) ? NULL : EVP_sha256();
        int ok = md && EVP_DigestVerifyInit(md, NULL, dg, NULL, k->pkey) == 1 &&
                 EVP_DigestVerify(md, sig, (size_t)sl, data, len) == 1;
        EVP_MD_CTX_free(md);
        if (!ok)
            rc = nd_err_set(err, -EBADMSG, "the signature does not match: manifest.json was changed, or another key "
                                            "signed it (key %s given, key %s signed)", k->key_id, id ? id : "?");
    }
    free(sig);
    json_decref(j);
    return rc;
}

int nd_bundle_check_signature(const nd_bundle_contents *c, const char *key_path, char *desc, size_t descsz,
                              nd_err *err)
{
    if (descsz)
        desc[0] = '\0';
    nd_bundle_key *k = NULL;
    int rc = nd_bundle_key_load(key_path, &k, err);
    if (rc < 0)
        return rc;
    if (!c->signature)
        rc = nd_err_set(err, -ENOENT, "the bundle is not signed (no manifest.sig)");
    else if (!c->manifest_raw)
        rc = nd_err_set(err, -EBADMSG, "the bundle has no manifest.json to check the signature against");
    else
        rc = nd_bundle_key_verify(k, c->manifest_raw, c->manifest_len, c->signature, desc, descsz, err);
    nd_bundle_key_free(k);
    return rc;
}
