/*
 * attest.c — Nitro attestation documents (see nd_attest.h) with libcbor. Parsing: COSE_Sign1 = [protected bstr,
 * unprotected map, payload bstr, signature bstr] (optionally tag 18); the protected bstr holds {1: alg}; the payload
 * bstr holds the attestation map. Every field is type- and size-checked and copied out, so the result does not
 * depend on libcbor's items. Building: the same structure for a development stand-in carrying a public key.
 */
#include "nd_attest.h"
#include "nd_cbor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cbor.h>

void nd_attest_free(nd_attest_doc *d)
{
    if (!d)
        return;
    free(d->certificate.p);
    for (size_t i = 0; i < d->ncabundle; i++)
        free(d->cabundle[i].p);
    free(d->cabundle);
    free(d->public_key.p);
    free(d->user_data.p);
    free(d->nonce.p);
    free(d->signature.p);
    free(d->protected_raw.p);
    free(d->payload_raw.p);
    free(d);
}

/* Loads untrusted CBOR through the shared safe loader (nd_cbor.h); messages read "attestation: <what> …". */
static cbor_item_t *load(const unsigned char *p, size_t n, const char *what, nd_err *err)
{
    char label[64];
    snprintf(label, sizeof label, "attestation: %s", what);
    return nd_cbor_load(p, n, label, err);
}

static bool is_bstr(const cbor_item_t *it) { return cbor_isa_bytestring(it) && cbor_bytestring_is_definite(it); }
static bool is_tstr(const cbor_item_t *it) { return cbor_isa_string(it) && cbor_string_is_definite(it); }

/* CBOR null. libcbor's cbor_is_null asserts (aborts the process) on a half, single or double float, which is a
 * float_ctrl item too: the width is checked first, so a float where null may stand is an error, not a crash
 * (fuzz/regressions/attest/attest-crash-b33889…). */
static bool is_null(const cbor_item_t *it)
{
    return cbor_isa_float_ctrl(it) && cbor_float_get_width(it) == CBOR_FLOAT_0 && cbor_is_null(it);
}

static int copy_bytes(const cbor_item_t *it, const char *name, size_t maxlen, bool allow_null, nd_attest_bytes *out,
                      nd_err *err)
{
    if (allow_null && is_null(it))
        return 0;
    if (!is_bstr(it))
        return nd_err_set(err, -EBADMSG, "attestation: %s is not a byte string", name);
    size_t n = cbor_bytestring_length(it);
    if (n > maxlen)
        return nd_err_set(err, -EBADMSG, "attestation: %s is %zu bytes, at most %zu allowed", name, n, maxlen);
    out->p = malloc(n ? n : 1);
    if (!out->p)
        return nd_err_set(err, -ENOMEM, "attestation: out of memory");
    if (n)
        memcpy(out->p, cbor_bytestring_handle(it), n);
    out->len = n;
    return 0;
}

static int copy_text(const cbor_item_t *it, const char *name, char *out, size_t outsz, nd_err *err)
{
    if (!is_tstr(it))
        return nd_err_set(err, -EBADMSG, "attestation: %s is not a text string", name);
    size_t n = cbor_string_length(it);
    if (n >= outsz)
        return nd_err_set(err, -EBADMSG, "attestation: %s is %zu bytes, at most %zu allowed", name, n, outsz - 1);
    memcpy(out, cbor_string_handle(it), n);
    out[n] = '\0';
    return 0;
}

static int parse_payload(const cbor_item_t *m, nd_attest_doc *d, nd_err *err)
{
    if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
        return nd_err_set(err, -EBADMSG, "attestation: payload is not a map");
    size_t n = cbor_map_size(m);
    struct cbor_pair *pairs = cbor_map_handle(m);
    bool have_module = false, have_digest = false, have_ts = false, have_pcrs = false, have_cert = false,
         have_ca = false;
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = pairs[i].key, *v = pairs[i].value;
        if (!is_tstr(k))
            return nd_err_set(err, -EBADMSG, "attestation: payload has a key that is not a text string");
        char key[32];
        size_t kl = cbor_string_length(k);
        if (kl >= sizeof key)
            continue; /* unknown long key: ignore */
        memcpy(key, cbor_string_handle(k), kl);
        key[kl] = '\0';
        int rc = 0;
        if (strcmp(key, "module_id") == 0) {
            rc = copy_text(v, "module_id", d->module_id, sizeof d->module_id, err);
            have_module = true;
        } else if (strcmp(key, "digest") == 0) {
            rc = copy_text(v, "digest", d->digest, sizeof d->digest, err);
            have_digest = true;
        } else if (strcmp(key, "timestamp") == 0) {
            if (!cbor_isa_uint(v))
                return nd_err_set(err, -EBADMSG, "attestation: timestamp is not an unsigned integer");
            d->timestamp_ms = cbor_get_int(v);
            have_ts = true;
        } else if (strcmp(key, "pcrs") == 0) {
            if (!cbor_isa_map(v) || !cbor_map_is_definite(v))
                return nd_err_set(err, -EBADMSG, "attestation: pcrs is not a map");
            size_t np = cbor_map_size(v);
            if (np < 1 || np > 32)
                return nd_err_set(err, -EBADMSG, "attestation: pcrs has %zu entries, want 1..32", np);
            struct cbor_pair *pp = cbor_map_handle(v);
            for (size_t j = 0; j < np; j++) {
                if (!cbor_isa_uint(pp[j].key) || cbor_get_int(pp[j].key) > 31)
                    return nd_err_set(err, -EBADMSG, "attestation: pcrs key %zu is not an index 0..31", j);
                unsigned idx = (unsigned)cbor_get_int(pp[j].key);
                if (!is_bstr(pp[j].value))
                    return nd_err_set(err, -EBADMSG, "attestation: pcrs[%u] is not a byte string", idx);
                size_t l = cbor_bytestring_length(pp[j].value);
                if (l != 32 && l != 48 && l != 64)
                    return nd_err_set(err, -EBADMSG, "attestation: pcrs[%u] is %zu bytes, want 32, 48 or 64", idx, l);
                for (size_t q = 0; q < d->npcrs; q++) {
                    if (d->pcrs[q].index == idx)
                        return nd_err_set(err, -EBADMSG, "attestation: pcrs[%u] appears twice", idx);
                }
                /* insert sorted */
                size_t at = d->npcrs;
                while (at > 0 && d->pcrs[at - 1].index > idx) {
                    d->pcrs[at] = d->pcrs[at - 1];
                    at--;
                }
                d->pcrs[at].index = idx;
                d->pcrs[at].len = l;
                memcpy(d->pcrs[at].value, cbor_bytestring_handle(pp[j].value), l);
                d->npcrs++;
            }
            have_pcrs = true;
        } else if (strcmp(key, "certificate") == 0) {
            rc = copy_bytes(v, "certificate", 1024 * 8, false, &d->certificate, err);
            have_cert = true;
        } else if (strcmp(key, "cabundle") == 0) {
            if (!cbor_isa_array(v) || !cbor_array_is_definite(v))
                return nd_err_set(err, -EBADMSG, "attestation: cabundle is not an array");
            size_t nc = cbor_array_size(v);
            if (nc > 16)
                return nd_err_set(err, -EBADMSG, "attestation: cabundle has %zu certificates, at most 16", nc);
            d->cabundle = calloc(nc ? nc : 1, sizeof *d->cabundle);
            if (!d->cabundle)
                return nd_err_set(err, -ENOMEM, "attestation: out of memory");
            cbor_item_t **items = cbor_array_handle(v);
            for (size_t j = 0; j < nc && rc == 0; j++) {
                char nm[32];
                snprintf(nm, sizeof nm, "cabundle[%zu]", j);
                rc = copy_bytes(items[j], nm, 1024 * 8, false, &d->cabundle[j], err);
                if (rc == 0)
                    d->ncabundle++;
            }
            have_ca = true;
        } else if (strcmp(key, "public_key") == 0) {
            rc = copy_bytes(v, "public_key", 1024, true, &d->public_key, err);
        } else if (strcmp(key, "user_data") == 0) {
            rc = copy_bytes(v, "user_data", 1024, true, &d->user_data, err);
        } else if (strcmp(key, "nonce") == 0) {
            rc = copy_bytes(v, "nonce", 1024, true, &d->nonce, err);
        }
        if (rc < 0)
            return rc;
    }
    const char *missing = !have_module ? "module_id" : !have_digest ? "digest" : !have_ts ? "timestamp"
                        : !have_pcrs ? "pcrs" : !have_cert ? "certificate" : !have_ca ? "cabundle" : NULL;
    if (missing)
        return nd_err_set(err, -EBADMSG, "attestation: payload has no %s", missing);
    d->dev = strcmp(d->module_id, ND_ATTEST_DEV_MODULE_ID) == 0;
    return 0;
}

int nd_attest_parse(const void *data, size_t len, nd_attest_doc **out, nd_err *err)
{
    *out = NULL;
    if (!data || len == 0)
        return nd_err_set(err, -EBADMSG, "attestation: empty document");
    if (len > ND_ATTEST_MAX_DOC)
        return nd_err_set(err, -EMSGSIZE, "attestation: document is %zu bytes, at most %d", len, ND_ATTEST_MAX_DOC);
    const unsigned char *p = data;
    /* COSE_Sign1 may carry its CBOR tag 18 (0xd2); other tags are not COSE_Sign1 */
    if (p[0] == 0xd2) {
        p++;
        len--;
    } else if ((p[0] >> 5) == 6) {
        return nd_err_set(err, -EBADMSG, "attestation: CBOR tag %d is not COSE_Sign1 (18)",
                          (p[0] & 0x1f) < 24 ? p[0] & 0x1f : -1);
    }
    if (len == 0)
        return nd_err_set(err, -EBADMSG, "attestation: empty document");
    cbor_item_t *root = load(p, len, "document", err);
    if (!root)
        return -EBADMSG;
    nd_attest_doc *d = calloc(1, sizeof *d);
    cbor_item_t *prot = NULL, *payload = NULL;
    int rc = 0;
    if (!d) {
        rc = nd_err_set(err, -ENOMEM, "attestation: out of memory");
        goto done;
    }
    const cbor_item_t *arr = root;
    if (!cbor_isa_array(arr) || !cbor_array_is_definite(arr) || cbor_array_size(arr) != 4) {
        rc = nd_err_set(err, -EBADMSG, "attestation: not a COSE_Sign1 array of 4 items");
        goto done;
    }
    cbor_item_t **it = cbor_array_handle(arr);
    static const char *const item_names[4] = {"protected header", "unprotected header", "payload", "signature"};
    for (int i = 0; i < 4; i++) {
        bool okt = i == 1 ? cbor_isa_map(it[i]) : is_bstr(it[i]);
        if (!okt) {
            rc = nd_err_set(err, -EBADMSG, "attestation: COSE_Sign1 %s (item %d) is %s, not a %s", item_names[i], i + 1,
                            is_null(it[i]) ? "null" : cbor_isa_map(it[i]) ? "a map" : cbor_isa_array(it[i]) ? "an array"
                            : cbor_isa_string(it[i]) ? "a text string" : cbor_isa_bytestring(it[i]) ? "a byte string"
                            : "another type", i == 1 ? "map" : "byte string");
            goto done;
        }
    }
    if (cbor_bytestring_length(it[0]) > 0) {
        prot = load(cbor_bytestring_handle(it[0]), cbor_bytestring_length(it[0]), "protected header", err);
        if (!prot) {
            rc = -EBADMSG;
            goto done;
        }
        if (!cbor_isa_map(prot) || !cbor_map_is_definite(prot)) {
            rc = nd_err_set(err, -EBADMSG, "attestation: protected header is not a map");
            goto done;
        }
        struct cbor_pair *pp = cbor_map_handle(prot);
        for (size_t i = 0; i < cbor_map_size(prot); i++) {
            if (cbor_isa_uint(pp[i].key) && cbor_get_int(pp[i].key) == 1) {
                if (cbor_isa_negint(pp[i].value))
                    d->alg = -1 - (int64_t)(cbor_get_int(pp[i].value) & 0x7fffffffffffffffull);
                else if (cbor_isa_uint(pp[i].value))
                    d->alg = (int64_t)(cbor_get_int(pp[i].value) & 0x7fffffffffffffffull);
            }
        }
    }
    rc = copy_bytes(it[3], "signature", 1024, false, &d->signature, err);
    if (rc == 0)
        rc = copy_bytes(it[0], "protected header", ND_ATTEST_MAX_DOC, false, &d->protected_raw, err);
    if (rc == 0)
        rc = copy_bytes(it[2], "payload", ND_ATTEST_MAX_DOC, false, &d->payload_raw, err);
    if (rc < 0)
        goto done;
    payload = load(cbor_bytestring_handle(it[2]), cbor_bytestring_length(it[2]), "payload", err);
    if (!payload) {
        rc = -EBADMSG;
        goto done;
    }
    rc = parse_payload(payload, d, err);
done:
    if (prot)
        cbor_decref(&prot);
    if (payload)
        cbor_decref(&payload);
    cbor_decref(&root);
    if (rc < 0) {
        nd_attest_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

/* ---- building a development document --------------------------------------------------------------------------- */

static bool map_put(cbor_item_t *map, cbor_item_t *k, cbor_item_t *v)
{
    if (!k || !v) {
        if (k)
            cbor_decref(&k);
        if (v)
            cbor_decref(&v);
        return false;
    }
    bool ok = cbor_map_add(map, (struct cbor_pair){ .key = cbor_move(k), .value = cbor_move(v) });
    return ok;
}

static cbor_item_t *bytes_or_null(const void *p, size_t n)
{
    return p ? cbor_build_bytestring(p, n) : cbor_new_null();
}

int nd_attest_build_dev(const void *public_key, size_t pk_len, const void *user_data, size_t ud_len,
                        const void *nonce, size_t nonce_len, uint64_t timestamp_ms, unsigned char **out,
                        size_t *outlen, nd_err *err)
{
    *out = NULL;
    *outlen = 0;
    if ((public_key && pk_len > 1024) || (user_data && ud_len > 512) || (nonce && nonce_len > 512))
        return nd_err_set(err, -EINVAL, "attestation: public_key <= 1024, user_data <= 512, nonce <= 512 bytes");
    int rc = -ENOMEM;
    unsigned char *pbuf = NULL, *hbuf = NULL;
    size_t pcap = 0, hcap = 0;
    cbor_item_t *payload = cbor_new_definite_map(9), *pcrs = cbor_new_definite_map(16), *ca = cbor_new_definite_array(0);
    cbor_item_t *hdr = cbor_new_definite_map(1), *cose = NULL;
    bool ok = payload && pcrs && ca && hdr;
    static const unsigned char zero48[48];
    for (unsigned i = 0; ok && i < 16; i++)
        ok = map_put(pcrs, cbor_build_uint8((uint8_t)i), cbor_build_bytestring(zero48, 48));
    if (ok) {
        ok = map_put(payload, cbor_build_string("module_id"), cbor_build_string(ND_ATTEST_DEV_MODULE_ID)) &&
             map_put(payload, cbor_build_string("digest"), cbor_build_string("SHA384")) &&
             map_put(payload, cbor_build_string("timestamp"), cbor_build_uint64(timestamp_ms)) &&
             map_put(payload, cbor_build_string("pcrs"), pcrs);
        pcrs = NULL; /* moved (or released) */
        ok = ok && map_put(payload, cbor_build_string("certificate"),
                           cbor_build_bytestring((const unsigned char *)ND_ATTEST_DEV_MODULE_ID,
                                                 strlen(ND_ATTEST_DEV_MODULE_ID)));
        ok = ok && map_put(payload, cbor_build_string("cabundle"), ca);
        ca = NULL;
        ok = ok && map_put(payload, cbor_build_string("public_key"), bytes_or_null(public_key, pk_len)) &&
             map_put(payload, cbor_build_string("user_data"), bytes_or_null(user_data, ud_len)) &&
             map_put(payload, cbor_build_string("nonce"), bytes_or_null(nonce, nonce_len));
    }
    ok = ok && map_put(hdr, cbor_build_uint8(1), cbor_build_negint8(34)); /* -35: ES384 */
    size_t plen = ok ? cbor_serialize_alloc(payload, &pbuf, &pcap) : 0;
    size_t hlen = ok ? cbor_serialize_alloc(hdr, &hbuf, &hcap) : 0;
    if (ok && plen && hlen) {
        static const unsigned char zsig[96];
        cose = cbor_new_definite_array(4);
        ok = cose && cbor_array_push(cose, cbor_move(cbor_build_bytestring(hbuf, hlen))) &&
             cbor_array_push(cose, cbor_move(cbor_new_definite_map(0))) &&
             cbor_array_push(cose, cbor_move(cbor_build_bytestring(pbuf, plen))) &&
             cbor_array_push(cose, cbor_move(cbor_build_bytestring(zsig, sizeof zsig)));
        unsigned char *obuf = NULL;
        size_t ocap = 0;
        size_t olen = ok ? cbor_serialize_alloc(cose, &obuf, &ocap) : 0;
        if (olen) {
            *out = obuf;
            *outlen = olen;
            rc = 0;
        } else {
            free(obuf);
        }
    }
    free(pbuf);
    free(hbuf);
    if (payload)
        cbor_decref(&payload);
    if (pcrs)
        cbor_decref(&pcrs);
    if (ca)
        cbor_decref(&ca);
    if (hdr)
        cbor_decref(&hdr);
    if (cose)
        cbor_decref(&cose);
    if (rc < 0)
        return nd_err_set(err, rc, "attestation: out of memory building the development document");
    return 0;
}
