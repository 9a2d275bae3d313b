/*
 * frame.c — the KMS proxy wire protocol (see nd_frame.h): length-prefixed frames with an incremental decoder, and
 * the request/response JSON both ends exchange inside KmsProxy frames.
 *
 * The decoder never trusts the length field: a frame larger than the configured maximum is refused before any of
 * its payload is buffered, and a length below the 5 bytes of type + seq is a framing error. Both errors are sticky,
 * because the stream cannot be resynchronised after a bad length. The JSON codec bounds every field (sizes from the
 * KMS API model) and accepts byte fields as base64 strings or arrays of numbers, since the reference's Rust clients
 * sent arrays (serde's Vec<u8>) while AWS's own JSON uses base64. Buffers that may hold key material are wiped with
 * OPENSSL_cleanse before they are freed.
 */
#include "nd_frame.h"
#include "nd_codec.h"
#include "nd_buf.h"
#include "nd_jsonw.h"
#include "nd_jsonlift.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

const char *nd_frame_type_name(unsigned type)
{
    switch (type) {
    case ND_FRAME_HELLO: return "Hello";
    case ND_FRAME_DATA: return "Data";
    case ND_FRAME_ERROR: return "Error";
    case ND_FRAME_HEARTBEAT: return "Heartbeat";
    case ND_FRAME_SHUTDOWN: return "Shutdown";
    case ND_FRAME_KMS_PROXY: return "KmsProxy";
    case ND_FRAME_STORAGE: return "Storage";
    case ND_FRAME_AUDIT: return "Audit";
    default: return "Unknown";
    }
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

int nd_frame_header(unsigned char hdr[ND_FRAME_HEADER_LEN], unsigned type, uint32_t seq, size_t payload_len)
{
    if (payload_len > UINT32_MAX - 5u)
        return -EMSGSIZE;
    put_be32(hdr, (uint32_t)(payload_len + 5u));
    hdr[4] = (unsigned char)type;
    put_be32(hdr + 5, seq);
    return 0;
}

int nd_frame_build(unsigned type, uint32_t seq, const void *payload, size_t payload_len, unsigned char **out,
                   size_t *outlen, nd_err *err)
{
    *out = NULL;
    *outlen = 0;
    unsigned char hdr[ND_FRAME_HEADER_LEN];
    if (nd_frame_header(hdr, type, seq, payload_len) < 0)
        return nd_err_set(err, -EMSGSIZE, "frame: payload of %zu bytes does not fit a frame", payload_len);
    unsigned char *b = malloc(ND_FRAME_HEADER_LEN + payload_len);
    if (!b)
        return nd_err_set(err, -ENOMEM, "frame: out of memory");
    memcpy(b, hdr, ND_FRAME_HEADER_LEN);
    if (payload_len)
        memcpy(b + ND_FRAME_HEADER_LEN, payload, payload_len);
    *out = b;
    *outlen = ND_FRAME_HEADER_LEN + payload_len;
    return 0;
}

int nd_frame_decoder_init(nd_frame_decoder *d, size_t max_payload)
{
    memset(d, 0, sizeof *d);
    d->max_payload = max_payload ? max_payload : ND_FRAME_DEFAULT_MAX;
    return 0;
}

void nd_frame_decoder_free(nd_frame_decoder *d)
{
    if (d->buf) {
        OPENSSL_cleanse(d->buf, d->cap);
        free(d->buf);
    }
    d->buf = NULL;
    d->len = d->cap = d->off = 0;
}

size_t nd_frame_pending(const nd_frame_decoder *d)
{
    return d->len - d->off;
}

/* Checks the header at the front of the buffer, when there is one; sets the sticky error on a bad length. */
static int check_header(nd_frame_decoder *d, nd_err *err)
{
    if (d->len - d->off < 4)
        return 0;
    uint32_t len = get_be32(d->buf + d->off);
    if (len < 5) {
        d->error = -EBADMSG;
        return nd_err_set(err, -EBADMSG, "frame: length field %u is below the 5 bytes of type and sequence", len);
    }
    if ((size_t)len - 5u > d->max_payload) {
        d->error = -EMSGSIZE;
        return nd_err_set(err, -EMSGSIZE, "frame: payload of %u bytes exceeds the maximum of %zu", len - 5u,
                          d->max_payload);
    }
    return 0;
}

int nd_frame_feed(nd_frame_decoder *d, const void *data, size_t n, nd_err *err)
{
    if (d->error)
        return nd_err_set(err, d->error, "frame: stream already failed");
    if (n == 0)
        return 0;
    /* Compact first, so the buffer never grows beyond one maximum frame plus one read. */
    if (d->off > 0) {
        memmove(d->buf, d->buf + d->off, d->len - d->off);
        d->len -= d->off;
        d->off = 0;
    }
    if (d->len + n > d->cap) {
        size_t ncap = d->cap ? d->cap : 4096;
        while (ncap < d->len + n)
            ncap *= 2;
        unsigned char *nb = malloc(ncap);
        if (!nb)
            return nd_err_set(err, -ENOMEM, "frame: out of memory");
        if (d->buf) {
            memcpy(nb, d->buf, d->len);
            OPENSSL_cleanse(d->buf, d->cap);
            free(d->buf);
        }
        d->buf = nb;
        d->cap = ncap;
    }
    memcpy(d->buf + d->len, data, n);
    d->len += n;
    return check_header(d, err);
}

int nd_frame_next(nd_frame_decoder *d, nd_frame *f, nd_err *err)
{
    if (d->error)
        return nd_err_set(err, d->error, "frame: stream already failed");
    int rc = check_header(d, err);
    if (rc < 0)
        return rc;
    size_t avail = d->len - d->off;
    if (avail < ND_FRAME_HEADER_LEN)
        return 0;
    const unsigned char *p = d->buf + d->off;
    uint32_t len = get_be32(p);
    if (avail < 4u + (size_t)len)
        return 0;
    f->type = p[4];
    f->seq = get_be32(p + 5);
    f->payload = p + ND_FRAME_HEADER_LEN;
    f->len = (size_t)len - 5u;
    d->off += 4u + (size_t)len;
    return 1;
}

/* ---- JSON codec ---- */

static const char *const op_names[] = {"Unknown", "GenerateDataKey", "Decrypt", "GenerateRandom", "Encrypt"};

const char *nd_kms_op_name(nd_kms_op op)
{
    if ((unsigned)op < sizeof op_names / sizeof op_names[0])
        return op_names[op];
    return "Unknown";
}

nd_kms_op nd_kms_op_from_name(const char *name)
{
    for (unsigned i = 1; name && i < sizeof op_names / sizeof op_names[0]; i++)
        if (strcmp(name, op_names[i]) == 0)
            return (nd_kms_op)i;
    return ND_KMS_OP_UNKNOWN;
}

int nd_frame_strfield(char *dst, size_t dstsz, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstsz)
        return -E2BIG;
    memcpy(dst, src, n + 1);
    return 0;
}

static void bytes_free(nd_bytes *b)
{
    if (b->data) {
        OPENSSL_cleanse(b->data, b->len);
        free(b->data);
    }
    b->data = NULL;
    b->len = 0;
}

/* ---- the request's byte fields, read from the text (the fast path of nd_kms_request_parse) ----
 *
 * An attestation document is about 4,500 bytes; as an array of numbers (what serde's Vec<u8> sends) jansson makes one
 * object per byte, and as base64 it copies and checks the string twice before it is decoded: together the largest
 * own cost of the proxy per request. The fast path lifts the byte fields out of the text (core/nd_jsonlift.h: plain
 * arrays of numbers 0..255 or base64 strings without escapes), lets jansson parse the rest and runs the same checks
 * (parse_tree) with the lifted bytes. Any other text, and any error at all, goes the whole way through jansson
 * (nd_kms_request_parse_slow), so errors and their messages are exactly the ones that path gives;
 * tests/unit/test_frame.c and fuzz_kms_request compare both paths. */

static const nd_jl_path req_paths[] = {
    {"request", "payload", "recipient", NULL},
    {"request", "payload", "ciphertext_blob", NULL},
    {"request", "payload", "plaintext", NULL},
    {"request", "payload", "recipient", "attestation_document"},
};

/* Takes decoded bytes d (dl of them, owned) into out when there are 1..max of them; otherwise wipes and frees them
 * and returns -EINVAL naming the field. */
static int keep_bytes(unsigned char *d, size_t dl, const char *name, size_t max, nd_bytes *out, nd_err *err)
{
    if (dl == 0 || dl > max) {
        if (d) {
            OPENSSL_cleanse(d, dl);
            free(d);
        }
        return nd_err_set(err, -EINVAL, "field %s must hold 1..%zu bytes", name, max);
    }
    out->data = d;
    out->len = dl;
    return 0;
}

/* A lifted field, with the checks get_bytes makes of the same value in the tree. */
static int lifted_bytes(const nd_jl_value *f, const char *name, size_t max, nd_bytes *out, nd_err *err)
{
    if (!f->array && f->n == 0)
        return nd_err_set(err, -EINVAL, "field %s is empty", name);
    if (!f->array && f->n > (max + 2) / 3 * 4 + 4)
        return nd_err_set(err, -EINVAL, "field %s exceeds %zu bytes", name, max);
    if (f->array && (f->count == 0 || f->count > max))
        return nd_err_set(err, -EINVAL, "field %s must hold 1..%zu bytes", name, max);
    unsigned char *d = NULL;
    size_t dl = 0;
    int rc = nd_jl_bytes(f, &d, &dl);
    if (rc < 0)
        return nd_err_set(err, -EINVAL, "field %s: cannot decode", name);
    return keep_bytes(d, dl, name, max, out, err);
}

/* Reads a byte field: a base64 string or an array of integers 0..255. Empty input is an error (KMS blobs have at
 * least one byte). jl: the fields the fast path lifted from the text (NULL on the slow path). */
static int get_bytes(json_t *v, const char *name, size_t max, nd_bytes *out, const nd_jl *jl, nd_err *err)
{
    const nd_jl_value *f = nd_jl_find(jl, v);
    if (f)
        return lifted_bytes(f, name, max, out, err);
    if (json_is_string(v)) {
        size_t sl = json_string_length(v);
        if (sl == 0)
            return nd_err_set(err, -EINVAL, "field %s is empty", name);
        if (sl > (max + 2) / 3 * 4 + 4)
            return nd_err_set(err, -EINVAL, "field %s exceeds %zu bytes", name, max);
        nd_err e2;
        nd_err_clear(&e2);
        unsigned char *d = NULL;
        size_t dl = 0;
        if (nd_b64_decode(json_string_value(v), sl, &d, &dl, &e2) < 0)
            return nd_err_set(err, -EINVAL, "field %s: %s", name, e2.msg);
        return keep_bytes(d, dl, name, max, out, err);
    }
    if (json_is_array(v)) {
        size_t n = json_array_size(v);
        if (n == 0 || n > max)
            return nd_err_set(err, -EINVAL, "field %s must hold 1..%zu bytes", name, max);
        unsigned char *d = malloc(n);
        if (!d)
            return nd_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            json_int_t x = json_is_integer(e) ? json_integer_value(e) : -1;
            if (x < 0 || x > 255) {
                OPENSSL_cleanse(d, n);
                free(d);
                return nd_err_set(err, -EINVAL, "field %s: element %zu is not a byte", name, i);
            }
            d[i] = (unsigned char)x;
        }
        out->data = d;
        out->len = n;
        return 0;
    }
    return nd_err_set(err, -EINVAL, "field %s must be a base64 string or an array of bytes", name);
}

/* Reads an optional string field into a fixed buffer; absent or null leaves dst as "". */
static int get_str(json_t *obj, const char *name, char *dst, size_t dstsz, bool required, nd_err *err)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (required)
            return nd_err_set(err, -EINVAL, "missing field %s", name);
        return 0;
    }
    if (!json_is_string(v))
        return nd_err_set(err, -EINVAL, "field %s must be a string", name);
    size_t sl = json_string_length(v);
    if (sl >= dstsz)
        return nd_err_set(err, -EINVAL, "field %s exceeds %zu characters", name, dstsz - 1);
    if (sl != strlen(json_string_value(v)))
        return nd_err_set(err, -EINVAL, "field %s contains a NUL character", name);
    if (required && sl == 0)
        return nd_err_set(err, -EINVAL, "field %s is empty", name);
    memcpy(dst, json_string_value(v), sl + 1);
    return 0;
}

static int get_context(json_t *v, nd_kms_request *r, nd_err *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v) || json_object_size(v) > ND_KMS_CONTEXT_MAX)
        return nd_err_set(err, -EINVAL, "field encryption_context must be an object of at most %d strings",
                          ND_KMS_CONTEXT_MAX);
    const char *k;
    json_t *val;
    json_object_foreach(v, k, val) {
        if (!json_is_string(val) || strlen(k) > ND_KMS_CONTEXT_VALUE_MAX ||
            json_string_length(val) > ND_KMS_CONTEXT_VALUE_MAX)
            return nd_err_set(err, -EINVAL, "field encryption_context: values must be strings of at most %d bytes",
                              ND_KMS_CONTEXT_VALUE_MAX);
    }
    r->encryption_context = json_incref(v);
    return 0;
}

static int get_grants(json_t *v, nd_kms_request *r, nd_err *err)
{
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_array(v) || json_array_size(v) > ND_KMS_GRANT_TOKENS_MAX)
        return nd_err_set(err, -EINVAL, "field grant_tokens must be an array of at most %d strings",
                          ND_KMS_GRANT_TOKENS_MAX);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > ND_KMS_GRANT_TOKEN_LEN_MAX)
            return nd_err_set(err, -EINVAL, "field grant_tokens: element %zu is not a valid token", i);
    }
    r->grant_tokens = json_incref(v);
    return 0;
}

static int get_recipient(json_t *v, nd_kms_request *r, const nd_jl *jl, nd_err *err)
{
    snprintf(r->key_encryption_algorithm, sizeof r->key_encryption_algorithm, "%s", "RSAES_OAEP_SHA_256");
    if (!v || json_is_null(v))
        return 0;
    if (json_is_object(v)) {
        int rc = get_str(v, "key_encryption_algorithm", r->key_encryption_algorithm,
                         sizeof r->key_encryption_algorithm, false, err);
        if (rc < 0)
            return rc;
        if (strcmp(r->key_encryption_algorithm, "RSAES_OAEP_SHA_256") != 0)
            return nd_err_set(err, -EINVAL, "recipient key_encryption_algorithm must be RSAES_OAEP_SHA_256");
        json_t *doc = json_object_get(v, "attestation_document");
        if (!doc)
            return nd_err_set(err, -EINVAL, "recipient: missing field attestation_document");
        return get_bytes(doc, "recipient.attestation_document", ND_KMS_RECIPIENT_MAX, &r->recipient, jl, err);
    }
    return get_bytes(v, "recipient", ND_KMS_RECIPIENT_MAX, &r->recipient, jl, err);
}

static int parse_request_payload(json_t *p, nd_kms_request *r, const nd_jl *jl, nd_err *err)
{
    int rc;
    if (!json_is_object(p))
        return nd_err_set(err, -EINVAL, "request.payload must be an object");
    bool key_required = r->op == ND_KMS_OP_GENERATE_DATA_KEY || r->op == ND_KMS_OP_ENCRYPT;
    if ((rc = get_str(p, "key_id", r->key_id, sizeof r->key_id, key_required, err)) < 0)
        return rc;
    if ((rc = get_str(p, "encryption_algorithm", r->encryption_algorithm, sizeof r->encryption_algorithm, false,
                      err)) < 0)
        return rc;
    if ((rc = get_context(json_object_get(p, "encryption_context"), r, err)) < 0)
        return rc;
    if ((rc = get_grants(json_object_get(p, "grant_tokens"), r, err)) < 0)
        return rc;
    if ((rc = get_recipient(json_object_get(p, "recipient"), r, jl, err)) < 0)
        return rc;

    json_t *nb = json_object_get(p, "number_of_bytes");
    if (nb && !json_is_null(nb)) {
        if (!json_is_integer(nb) || json_integer_value(nb) < 1 || json_integer_value(nb) > 1024)
            return nd_err_set(err, -EINVAL, "field number_of_bytes must be an integer in 1..1024");
        r->number_of_bytes = (int)json_integer_value(nb);
    }
    if ((rc = get_str(p, "key_spec", r->key_spec, sizeof r->key_spec, false, err)) < 0)
        return rc;

    switch (r->op) {
    case ND_KMS_OP_GENERATE_DATA_KEY:
        if (r->key_spec[0] && strcmp(r->key_spec, "AES_128") != 0 && strcmp(r->key_spec, "AES_256") != 0)
            return nd_err_set(err, -EINVAL, "field key_spec must be AES_128 or AES_256");
        if (!r->key_spec[0] && !r->number_of_bytes)
            return nd_err_set(err, -EINVAL, "GenerateDataKey needs key_spec or number_of_bytes");
        if (r->key_spec[0] && r->number_of_bytes)
            return nd_err_set(err, -EINVAL, "GenerateDataKey takes key_spec or number_of_bytes, not both");
        break;
    case ND_KMS_OP_DECRYPT: {
        json_t *cb = json_object_get(p, "ciphertext_blob");
        if (!cb)
            return nd_err_set(err, -EINVAL, "missing field ciphertext_blob");
        if ((rc = get_bytes(cb, "ciphertext_blob", ND_KMS_CIPHERTEXT_MAX, &r->ciphertext_blob, jl, err)) < 0)
            return rc;
        break;
    }
    case ND_KMS_OP_GENERATE_RANDOM:
        if (!r->number_of_bytes)
            return nd_err_set(err, -EINVAL, "GenerateRandom needs number_of_bytes");
        break;
    case ND_KMS_OP_ENCRYPT: {
        json_t *pt = json_object_get(p, "plaintext");
        if (!pt)
            return nd_err_set(err, -EINVAL, "missing field plaintext");
        if ((rc = get_bytes(pt, "plaintext", ND_KMS_PLAINTEXT_MAX, &r->plaintext, jl, err)) < 0)
            return rc;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* The checks of a parsed request tree (the same on both paths). Returns 0 or a negative code with err set. */
static int parse_tree(json_t *root, nd_kms_request *r, const nd_jl *jl, nd_err *err)
{
    int rc;
    if (!json_is_object(root))
        return nd_err_set(err, -EINVAL, "request must be a JSON object");
    if ((rc = get_str(root, "request_id", r->request_id, sizeof r->request_id, true, err)) < 0)
        return rc;
    if ((rc = get_str(root, "trace_id", r->trace_id, sizeof r->trace_id, false, err)) < 0)
        return rc;
    json_t *req = json_object_get(root, "request");
    if (!json_is_object(req))
        return nd_err_set(err, -EINVAL, "missing object request");
    json_t *op = json_object_get(req, "op");
    if (!json_is_string(op))
        return nd_err_set(err, -EINVAL, "missing string request.op");
    r->op = nd_kms_op_from_name(json_string_value(op));
    if (r->op == ND_KMS_OP_UNKNOWN)
        return nd_err_set(err, -EINVAL, "unknown op (expected GenerateDataKey, Decrypt, GenerateRandom or Encrypt)");
    json_t *payload = json_object_get(req, "payload");
    if (!payload)
        return nd_err_set(err, -EINVAL, "missing object request.payload");
    return parse_request_payload(payload, r, jl, err);
}

int nd_kms_request_parse_slow(const void *text, size_t n, nd_kms_request *r, nd_err *err)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return nd_err_set(err, -EINVAL, "bad JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = parse_tree(root, r, NULL, err);
    json_decref(root);
    return rc < 0 ? -EINVAL : 0;
}

int nd_kms_request_parse_fast(const void *text, size_t n, nd_kms_request *r)
{
    memset(r, 0, sizeof *r);
    nd_jl jl;
    bool declined;
    json_t *root = nd_jl_loadb(text, n, JSON_REJECT_DUPLICATES, req_paths, 4, true, &jl, &declined);
    if (!root)
        return -EAGAIN;
    int rc = parse_tree(root, r, &jl, NULL);
    json_decref(root);
    if (rc < 0) {
        nd_kms_request_free(r);
        return -EAGAIN;
    }
    return 0;
}

int nd_kms_request_parse(const void *text, size_t n, nd_kms_request *r, nd_err *err)
{
    if (nd_kms_request_parse_fast(text, n, r) == 0)
        return 0;
    return nd_kms_request_parse_slow(text, n, r, err); /* any doubt or error: with its own messages */
}

/* Stores bytes as base64 or as an array of numbers under key in obj. */
static int set_bytes(json_t *obj, const char *key, const nd_bytes *b, bool b64)
{
    if (!b->data)
        return 0;
    if (b64) {
        char *s = NULL;
        size_t sl = 0;
        if (nd_b64_encode(b->data, b->len, &s, &sl, NULL) < 0)
            return -ENOMEM;
        json_t *v = json_stringn(s, sl);
        OPENSSL_cleanse(s, sl);
        free(s);
        return v ? json_object_set_new(obj, key, v) : -ENOMEM;
    }
    json_t *a = json_array();
    if (!a)
        return -ENOMEM;
    for (size_t i = 0; i < b->len; i++)
        if (json_array_append_new(a, json_integer(b->data[i])) < 0) {
            json_decref(a);
            return -ENOMEM;
        }
    return json_object_set_new(obj, key, a);
}

static void set_str(json_t *obj, const char *key, const char *v)
{
    if (v && v[0])
        json_object_set_new(obj, key, json_string(v));
}

/* Dumps root compactly on one line and frees it. jansson's output has no raw newlines (strings are escaped). */
static char *dump_free(json_t *root, size_t *len)
{
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (s && len)
        *len = strlen(s);
    return s;
}

char *nd_kms_request_encode(const nd_kms_request *r, bool b64, size_t *len)
{
    json_t *root = json_object(), *req = json_object(), *p = json_object();
    if (!root || !req || !p) {
        json_decref(root);
        json_decref(req);
        json_decref(p);
        return NULL;
    }
    set_str(root, "request_id", r->request_id);
    set_str(root, "trace_id", r->trace_id);
    json_object_set_new(req, "op", json_string(nd_kms_op_name(r->op)));
    set_str(p, "key_id", r->key_id);
    set_str(p, "key_spec", r->key_spec);
    if (r->number_of_bytes)
        json_object_set_new(p, "number_of_bytes", json_integer(r->number_of_bytes));
    set_str(p, "encryption_algorithm", r->encryption_algorithm);
    if (set_bytes(p, "ciphertext_blob", &r->ciphertext_blob, b64) < 0 ||
        set_bytes(p, "plaintext", &r->plaintext, b64) < 0 || set_bytes(p, "recipient", &r->recipient, b64) < 0) {
        json_decref(root);
        json_decref(req);
        json_decref(p);
        return NULL;
    }
    if (r->encryption_context)
        json_object_set(p, "encryption_context", r->encryption_context);
    if (r->grant_tokens)
        json_object_set(p, "grant_tokens", r->grant_tokens);
    json_object_set_new(req, "payload", p);
    json_object_set_new(root, "request", req);
    return dump_free(root, len);
}

static void put_b64_member(nd_buf *b, bool *first, const char *key, const nd_bytes *x)
{
    if (!x->data)
        return;
    nd_jw_key(b, first, key);
    size_t n = (x->len + 2) / 3 * 4;
    if (nd_buf_reserve(b, n + 2) < 0)
        return;
    b->p[b->len++] = '"';
    int got = x->len ? EVP_EncodeBlock((unsigned char *)b->p + b->len, x->data, (int)x->len) : 0;
    b->len += (size_t)got;
    b->p[b->len++] = '"';
    b->p[b->len] = '\0';
}

/* Written directly rather than as a jansson tree dumped: the attestation document's base64 went through three
 * copies and a per-character escape check there (perf: 8 % of the proxy's CPU per request with SigV4). The text is
 * the one jansson's compact dump of the same object gives (tests/unit/test_frame.c compares them). */
char *nd_kms_upstream_body(const nd_kms_request *r, size_t *len)
{
    nd_buf b = ND_BUF_INIT;
    /* one allocation up front: the body may hold a plaintext, which growth would leave copies of */
    size_t b64 = (r->ciphertext_blob.len + r->plaintext.len + r->recipient.len) / 3 * 4 + 12;
    nd_buf_reserve(&b, 512 + b64 + 6 * strlen(r->key_id));
    bool first = true;
    nd_buf_addc(&b, '{');
    if (r->key_id[0])
        nd_jw_str(&b, &first, "KeyId", r->key_id);
    if (r->key_spec[0])
        nd_jw_str(&b, &first, "KeySpec", r->key_spec);
    if (r->number_of_bytes)
        nd_jw_int(&b, &first, "NumberOfBytes", r->number_of_bytes);
    if (r->encryption_algorithm[0])
        nd_jw_str(&b, &first, "EncryptionAlgorithm", r->encryption_algorithm);
    nd_jw_json(&b, &first, "EncryptionContext", r->encryption_context);
    nd_jw_json(&b, &first, "GrantTokens", r->grant_tokens);
    put_b64_member(&b, &first, "CiphertextBlob", &r->ciphertext_blob);
    put_b64_member(&b, &first, "Plaintext", &r->plaintext);
    if (r->recipient.data) {
        bool inner = true;
        nd_jw_key(&b, &first, "Recipient");
        nd_buf_addc(&b, '{');
        nd_jw_str(&b, &inner, "KeyEncryptionAlgorithm", r->key_encryption_algorithm);
        put_b64_member(&b, &inner, "AttestationDocument", &r->recipient);
        nd_buf_addc(&b, '}');
    }
    nd_buf_addc(&b, '}');
    size_t n = b.len;
    char *s = nd_buf_take(&b);
    if (s && len)
        *len = n;
    return s;
}

void nd_kms_request_free(nd_kms_request *r)
{
    bytes_free(&r->ciphertext_blob);
    bytes_free(&r->plaintext);
    bytes_free(&r->recipient);
    json_decref(r->encryption_context);
    json_decref(r->grant_tokens);
    memset(r, 0, sizeof *r);
}

/* The response is written directly rather than built as a jansson tree: its byte fields are JSON arrays of numbers
 * (the enclave's wire format), and jansson made one object per byte and printed each with snprintf, which was the
 * proxy's largest own cost per request (perf at one connection: 16 % of its CPU for a CMS EnvelopedData). The text is
 * the same as jansson's JSON_COMPACT dump of the same object (keys in this order; strings escaped by jansson; a string
 * jansson refuses, i.e. not UTF-8, leaves its key out as before); test_frame compares the two. */
static void put_bytes(nd_buf *b, bool *first, const char *key, const nd_bytes *x)
{
    if (!x->data)
        return;
    nd_jw_key(b, first, key);
    if (nd_buf_reserve(b, 4 * x->len + 2) < 0)
        return;
    char *o = b->p + b->len;
    *o++ = '[';
    for (size_t i = 0; i < x->len; i++) {
        unsigned v = x->data[i];
        if (i)
            *o++ = ',';
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
    }
    *o++ = ']';
    *o = '\0';
    b->len = (size_t)(o - b->p);
}

char *nd_kms_response_encode(const nd_kms_response *r, size_t *len)
{
    nd_buf b = ND_BUF_INIT;
    /* one allocation up front (the byte fields may hold a plaintext data key: no copies left behind by growth) */
    nd_buf_reserve(&b, 1024 + 4 * (r->ciphertext_blob.len + r->plaintext.len + r->ciphertext_for_recipient.len) +
                           6 * (strlen(r->key_id) + strlen(r->error_message)));
    bool first = true, inner = true;
    nd_buf_addc(&b, '{');
    if (r->request_id[0])
        nd_jw_str(&b, &first, "request_id", r->request_id);
    if (r->trace_id[0])
        nd_jw_str(&b, &first, "trace_id", r->trace_id);
    if (r->kms_request_id[0])
        nd_jw_str(&b, &first, "kms_request_id", r->kms_request_id);
    nd_jw_key(&b, &first, "response");
    nd_buf_addc(&b, '{');
    bool kind_first = true;
    nd_jw_key(&b, &kind_first, r->is_error ? "Error" : nd_kms_op_name(r->op));
    nd_buf_addc(&b, '{');
    if (r->is_error) {
        nd_jw_str(&b, &inner, "code", r->error_code[0] ? r->error_code : "internal");
        nd_jw_str(&b, &inner, "message", r->error_message);
    } else {
        if (r->key_id[0])
            nd_jw_str(&b, &inner, "key_id", r->key_id);
        if (r->encryption_algorithm[0])
            nd_jw_str(&b, &inner, "encryption_algorithm", r->encryption_algorithm);
        put_bytes(&b, &inner, "ciphertext_blob", &r->ciphertext_blob);
        put_bytes(&b, &inner, "plaintext", &r->plaintext);
        put_bytes(&b, &inner, "ciphertext_for_recipient", &r->ciphertext_for_recipient);
    }
    nd_buf_add(&b, "}}}", 3);
    size_t n = b.len;
    char *s = nd_buf_take(&b);
    if (s && len)
        *len = n;
    return s;
}

int nd_kms_response_parse(const void *text, size_t n, nd_kms_response *r, nd_err *err)
{
    memset(r, 0, sizeof *r);
    json_error_t je;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return nd_err_set(err, -EINVAL, "bad JSON at line %d column %d: %s", je.line, je.column, je.text);
    int rc = 0;
    json_t *resp = json_object_get(root, "response");
    if (!json_is_object(root) || !json_is_object(resp) || json_object_size(resp) != 1) {
        rc = nd_err_set(err, -EINVAL, "response must be an object with one response.<Kind> member");
        goto out;
    }
    if ((rc = get_str(root, "request_id", r->request_id, sizeof r->request_id, false, err)) < 0 ||
        (rc = get_str(root, "trace_id", r->trace_id, sizeof r->trace_id, false, err)) < 0 ||
        (rc = get_str(root, "kms_request_id", r->kms_request_id, sizeof r->kms_request_id, false, err)) < 0)
        goto out;
    const char *kind = json_object_iter_key(json_object_iter(resp));
    json_t *body = json_object_iter_value(json_object_iter(resp));
    if (!json_is_object(body)) {
        rc = nd_err_set(err, -EINVAL, "response.%s must be an object", kind);
        goto out;
    }
    if (strcmp(kind, "Error") == 0) {
        r->is_error = true;
        if ((rc = get_str(body, "code", r->error_code, sizeof r->error_code, true, err)) < 0)
            goto out;
        json_t *m = json_object_get(body, "message");
        if (json_is_string(m))
            snprintf(r->error_message, sizeof r->error_message, "%s", json_string_value(m));
        goto out;
    }
    r->op = nd_kms_op_from_name(kind);
    if (r->op == ND_KMS_OP_UNKNOWN) {
        rc = nd_err_set(err, -EINVAL, "unknown response kind %s", kind);
        goto out;
    }
    if ((rc = get_str(body, "key_id", r->key_id, sizeof r->key_id, false, err)) < 0 ||
        (rc = get_str(body, "encryption_algorithm", r->encryption_algorithm, sizeof r->encryption_algorithm, false,
                      err)) < 0)
        goto out;
    static const struct { const char *name; size_t off; size_t max; } blobs[] = {
        {"ciphertext_blob", offsetof(nd_kms_response, ciphertext_blob), ND_KMS_CIPHERTEXT_MAX},
        {"plaintext", offsetof(nd_kms_response, plaintext), ND_KMS_PLAINTEXT_MAX},
        {"ciphertext_for_recipient", offsetof(nd_kms_response, ciphertext_for_recipient), 65536},
    };
    for (size_t i = 0; i < sizeof blobs / sizeof blobs[0]; i++) {
        json_t *v = json_object_get(body, blobs[i].name);
        if (v && !json_is_null(v) &&
            (rc = get_bytes(v, blobs[i].name, blobs[i].max, (nd_bytes *)((char *)r + blobs[i].off), NULL, err)) < 0)
            goto out;
    }
out:
    json_decref(root);
    return rc < 0 ? -EINVAL : 0;
}

void nd_kms_response_free(nd_kms_response *r)
{
    bytes_free(&r->ciphertext_blob);
    bytes_free(&r->plaintext);
    bytes_free(&r->ciphertext_for_recipient);
    memset(r, 0, sizeof *r);
}
