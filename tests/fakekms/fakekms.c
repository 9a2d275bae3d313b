/*
 * fakekms.c — nitrodiag-fake-kms: a fake AWS KMS (HTTPS, JSON 1.1 protocol) and a fake IMDSv2 (--imds, plain HTTP)
 * on loopback, for the KMS client's and the proxy's tests and for the benchmark. Not for production use.
 *
 * KMS mode: a self-signed certificate (EC P-256, SAN 127.0.0.1/localhost) is generated at start; its PEM is the CA
 * file clients pass (written to --ca-out, or to a temp dir removed at exit). GenerateDataKey, Decrypt, Encrypt and
 * GenerateRandom with KMS's field names, base64 blobs and KMS-like validation errors; SigV4 verification with the
 * core signer (core/sigv4.c) against the known test secret; x-amzn-RequestId (uuid v4) on every response; `__type`
 * errors; Recipient (attestation document public_key, DER SPKI RSA-2048) → CiphertextForRecipient as CMS
 * EnvelopedData (RSAES-OAEP-SHA256, AES-256-CBC, subjectKeyIdentifier) and no Plaintext. Ciphertext blobs are
 * AES-256-GCM under a per-key secret derived from the key ARN, with the encryption context as AAD.
 *
 * Fault injection (flags, FAKEKMS_* environment, or POST /__faults at run time): throttling ratio, latency,
 * 5xx ratio (+ which status), connection-reset ratio, access denied, expired tokens (the next N requests).
 * GET /__stats returns counters (connections accepted, requests, per operation, signature failures...).
 *
 * IMDS mode: PUT /latest/api/token (TTL header required) → token; GETs need a valid token (401 otherwise, also for
 * IMDSv1-style GETs); role list and role credentials with a configurable Expiration; 401 injection.
 *
 * The first stdout line is the port; in KMS mode the second line is the CA file. It listens on 127.0.0.1 (port 0 by
 * default), stops on SIGTERM/SIGINT, when its parent dies, or after --max-seconds (default 600).
 *
 * One thread per connection (blocking sockets): simple, and enough for hundreds of concurrent connections.
 */
#include "nd_attest.h"
#include "nd_sigv4.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_HEADER 16384
#define MAX_BODY (1u << 20)
#define MAX_CONNS 2048
#define ACCOUNT "111122223333"
#define DEFAULT_KEY_ID "1234abcd-12ab-34cd-56ef-1234567890ab"
#define ROLE_NAME "nitrodiag-fake-role"

static volatile sig_atomic_t g_stop;

typedef struct faults {
    double throttle_ratio;
    double error_5xx_ratio;
    int status_5xx;         /* 500 (KMSInternalException body) or 502/503/504 (no __type) */
    double reset_ratio;
    int latency_ms;
    bool access_denied;
    int expired_tokens;     /* the next N signed requests get ExpiredTokenException */
    bool namespaced_errors; /* __type "com.amazonaws.kms#X" plus X-Amzn-ErrorType "X:http://..." */
    int imds_401;           /* IMDS: the next N GETs answer 401 (and forget the token) */
    int creds_ttl;          /* IMDS: Expiration = now + creds_ttl seconds */
} faults;

typedef struct server {
    bool imds;
    char region[64];
    char access_key[128];
    char secret[256];
    char aliases[8][128];
    int naliases;
    SSL_CTX *ssl;
    EVP_PKEY *cert_key;     /* the server key; also signs the throwaway recipient certificates */
    pthread_mutex_t mu;     /* guards faults, tokens and the op counters */
    faults f;
    char tokens[64][65];    /* IMDS tokens handed out (ring) */
    int ntokens;
    atomic_ulong connections, requests, in_flight, max_in_flight, sig_failures, resets, conns_open;
    unsigned long ops[6];   /* GenerateDataKey, Decrypt, Encrypt, GenerateRandom, other, errors */
    unsigned long token_puts, imds_gets, creds_served, unauthorized;
} server;

static server S;

/* ---- small helpers ---------------------------------------------------------------------------------------------- */

static double rnd01(void)
{
    uint32_t r;
    RAND_bytes((unsigned char *)&r, sizeof r);
    return (double)r / 4294967296.0;
}

static void uuid4(char out[37])
{
    unsigned char b[16];
    RAND_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3],
             b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static char *b64enc(const unsigned char *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    if (o)
        EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* Strict base64 decode. Returns a malloc'd buffer or NULL. */
static unsigned char *b64dec(const char *s, size_t *outlen)
{
    size_t n = strlen(s);
    if (n == 0 || n % 4)
        return NULL;
    unsigned char *o = malloc(n / 4 * 3 + 1);
    if (!o)
        return NULL;
    int l = EVP_DecodeBlock(o, (const unsigned char *)s, (int)n);
    if (l < 0) {
        free(o);
        return NULL;
    }
    size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
    *outlen = (size_t)l - pad;
    return o;
}

/* ---- connection I/O (TLS or plain) ------------------------------------------------------------------------------ */

typedef struct conn {
    int fd;
    SSL *ssl;
    char buf[MAX_HEADER + MAX_BODY + 1];
    size_t len;
} conn;

/* Waits for input; returns 1 when readable, 0 on stop/idle timeout. */
static int wait_readable(conn *c, int idle_s)
{
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return 1;
    for (int waited = 0; waited < idle_s * 1000 && !g_stop; waited += 200) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int r = poll(&p, 1, 200);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 0;
    }
    return 0;
}

static ssize_t c_read(conn *c, void *p, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    ssize_t r;
    do
        r = read(c->fd, p, n);
    while (r < 0 && errno == EINTR);
    return r > 0 ? r : -1;
}

static bool c_write(conn *c, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, b, (int)n);
            w = r > 0 ? r : -1;
        } else {
            w = send(c->fd, b, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
        }
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* ---- HTTP request parsing --------------------------------------------------------------------------------------- */

typedef struct hdr {
    char *name, *value;
} hdr;

typedef struct request {
    char method[16];
    char target[2048];
    hdr h[64];
    int nh;
    char *body;
    size_t body_len;
    bool close;
} request;

static const char *get_header(const request *r, const char *name)
{
    for (int i = 0; i < r->nh; i++) {
        if (strcasecmp(r->h[i].name, name) == 0)
            return r->h[i].value;
    }
    return NULL;
}

/* Reads one request. Returns 1 ok, 0 connection closed/idle, -1 malformed (caller answers 400 and closes). */
static int read_request(conn *c, request *r)
{
    memset(r, 0, sizeof *r);
    char *end = NULL;
    while (!(end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL)) {
        if (c->len >= MAX_HEADER)
            return -1;
        if (!wait_readable(c, 120))
            return 0;
        ssize_t n = c_read(c, c->buf + c->len, MAX_HEADER - c->len);
        if (n <= 0)
            return 0;
        c->len += (size_t)n;
    }
    size_t hlen = (size_t)(end - c->buf) + 4;
    *end = '\0';
    char *save = NULL;
    char *line = strtok_r(c->buf, "\r\n", &save);
    if (!line || sscanf(line, "%15s %2047s", r->method, r->target) != 2 || !strstr(line, "HTTP/1."))
        return -1;
    while ((line = strtok_r(NULL, "\r\n", &save)) != NULL && r->nh < 64) {
        char *colon = strchr(line, ':');
        if (!colon)
            return -1;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        r->h[r->nh].name = line;
        r->h[r->nh].value = v;
        r->nh++;
    }
    const char *cl = get_header(r, "Content-Length");
    size_t blen = cl ? strtoul(cl, NULL, 10) : 0;
    if (blen > MAX_BODY)
        return -1;
    const char *conh = get_header(r, "Connection");
    r->close = conh && strcasecmp(conh, "close") == 0;
    const char *expect = get_header(r, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0 && c->len - hlen < blen)
        c_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    /* the body follows the headers in buf; headers were parsed in place (their strings stay valid) */
    while (c->len - hlen < blen) {
        if (!wait_readable(c, 30))
            return 0;
        ssize_t n = c_read(c, c->buf + c->len, sizeof c->buf - 1 - c->len);
        if (n <= 0)
            return 0;
        c->len += (size_t)n;
    }
    r->body = c->buf + hlen;
    r->body_len = blen;
    /* keep the body NUL-terminated for jansson; remember where the next request starts */
    return 1;
}

/* Drops the request just handled from the buffer (pipelined bytes stay). */
static void consume(conn *c, const request *r)
{
    size_t used = (size_t)(r->body - c->buf) + r->body_len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
}

/* ---- responses ----------------------------------------------------------------------------------------------- */

static bool respond(conn *c, const request *r, int status, const char *ctype, const char *extra, const char *body)
{
    char rid[37];
    uuid4(rid);
    const char *reason = status == 200 ? "OK" : status == 400 ? "Bad Request" : status == 401 ? "Unauthorized"
                       : status == 404 ? "Not Found" : status == 500 ? "Internal Server Error"
                       : status == 502 ? "Bad Gateway" : status == 503 ? "Service Unavailable"
                       : status == 504 ? "Gateway Timeout" : "Error";
    size_t bl = strlen(body);
    /* Like the real services, every response carries an HTTP Date (doctor measures clock skew with it). */
    char date[64];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tmv);
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nx-amzn-RequestId: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n",
                     status, reason, date, rid, ctype, bl, extra ? extra : "", r && r->close ? "Connection: close\r\n" : "");
    return c_write(c, head, (size_t)n) && c_write(c, body, bl);
}

static bool kms_error(conn *c, const request *r, int status, const char *type, const char *msg)
{
    faults f;
    pthread_mutex_lock(&S.mu);
    f = S.f;
    S.ops[5]++;
    pthread_mutex_unlock(&S.mu);
    json_t *j = json_object();
    char t[160], extra[256] = "";
    snprintf(t, sizeof t, "%s%s", f.namespaced_errors ? "com.amazonaws.kms#" : "", type);
    json_object_set_new(j, "__type", json_string(t));
    if (msg)
        json_object_set_new(j, "message", json_string(msg));
    if (f.namespaced_errors)
        snprintf(extra, sizeof extra, "X-Amzn-ErrorType: %s:http://internal.amazon.com/coral/com.amazonaws.kms/\r\n",
                 type);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    bool ok = respond(c, r, status, "application/x-amz-json-1.1", extra, body ? body : "{}");
    free(body);
    return ok;
}

static bool kms_ok(conn *c, const request *r, json_t *j)
{
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    bool ok = respond(c, r, 200, "application/x-amz-json-1.1", NULL, body ? body : "{}");
    free(body);
    return ok;
}

/* ---- keys and blobs -------------------------------------------------------------------------------------------- */

static void key_arn(char *out, size_t n)
{
    snprintf(out, n, "arn:aws:kms:%s:" ACCOUNT ":key/" DEFAULT_KEY_ID, S.region);
}

/* Resolves a KeyId (id, key ARN, alias name, alias ARN). Returns true when it names the fake's key. */
static bool resolve_key(const char *kid)
{
    char arn[256];
    key_arn(arn, sizeof arn);
    if (strcmp(kid, DEFAULT_KEY_ID) == 0 || strcmp(kid, arn) == 0)
        return true;
    for (int i = 0; i < S.naliases; i++) {
        char aarn[300];
        snprintf(aarn, sizeof aarn, "arn:aws:kms:%s:" ACCOUNT ":%s", S.region, S.aliases[i]);
        if (strcmp(kid, S.aliases[i]) == 0 || strcmp(kid, aarn) == 0)
            return true;
    }
    return false;
}

static bool not_found(conn *c, const request *r, const char *kid)
{
    char msg[512];
    if (strncmp(kid, "alias/", 6) == 0 || strstr(kid, ":alias/"))
        snprintf(msg, sizeof msg, "Alias arn:aws:kms:%s:" ACCOUNT ":%s is not found.", S.region,
                 strstr(kid, "alias/"));
    else
        snprintf(msg, sizeof msg, "Key '%s' does not exist", kid);
    return kms_error(c, r, 400, "NotFoundException", msg);
}

static void key_secret(unsigned char out[32])
{
    char arn[256];
    key_arn(arn, sizeof arn);
    char buf[300];
    int n = snprintf(buf, sizeof buf, "nitrodiag-fake-kms:%s", arn);
    EVP_Digest(buf, (size_t)n, out, NULL, EVP_sha256(), NULL);
}

static char *context_aad(json_t *ctx)
{
    return json_dumps(ctx && json_is_object(ctx) ? ctx : json_object(), JSON_COMPACT | JSON_SORT_KEYS);
}

/* blob = "NDFK" | 1 | iv[12] | tag[16] | ct */
static unsigned char *seal(const unsigned char *pt, size_t n, json_t *ctx, size_t *outlen)
{
    unsigned char key[32], *out = malloc(33 + n);
    char *aad = context_aad(ctx);
    if (!out || !aad) {
        free(out);
        free(aad);
        return NULL;
    }
    key_secret(key);
    memcpy(out, "NDFK\1", 5);
    RAND_bytes(out + 5, 12);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l = 0;
    bool ok = x && EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, out + 5) &&
              EVP_EncryptUpdate(x, NULL, &l, (unsigned char *)aad, (int)strlen(aad)) &&
              EVP_EncryptUpdate(x, out + 33, &l, pt, (int)n) && EVP_EncryptFinal_ex(x, out + 33 + l, &l) &&
              EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, 16, out + 17);
    EVP_CIPHER_CTX_free(x);
    free(aad);
    if (!ok) {
        free(out);
        return NULL;
    }
    *outlen = 33 + n;
    return out;
}

static unsigned char *unseal(const unsigned char *b, size_t n, json_t *ctx, size_t *outlen)
{
    if (n < 33 || memcmp(b, "NDFK\1", 5) != 0)
        return NULL;
    unsigned char key[32], *out = malloc(n - 33 + 1);
    char *aad = context_aad(ctx);
    if (!out || !aad) {
        free(out);
        free(aad);
        return NULL;
    }
    key_secret(key);
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int l = 0, l2 = 0;
    bool ok = x && EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, b + 5) &&
              EVP_DecryptUpdate(x, NULL, &l, (unsigned char *)aad, (int)strlen(aad)) &&
              EVP_DecryptUpdate(x, out, &l, b + 33, (int)(n - 33)) &&
              EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, 16, (void *)(b + 17)) &&
              EVP_DecryptFinal_ex(x, out + l, &l2) > 0;
    EVP_CIPHER_CTX_free(x);
    free(aad);
    if (!ok) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)(l + l2);
    return out;
}

/* ---- Recipient: CMS EnvelopedData for the attestation document's public key ------------------------------------ */

/* Returns 0 and a DER CMS ContentInfo in *out, or -1 with msg set (a KMS-style validation message). */
static int recipient_encrypt(json_t *recipient, const unsigned char *pt, size_t n, unsigned char **out,
                             size_t *outlen, const char **msg)
{
    *out = NULL;
    const char *alg = json_string_value(json_object_get(recipient, "KeyEncryptionAlgorithm"));
    const char *doc_b64 = json_string_value(json_object_get(recipient, "AttestationDocument"));
    if (!json_is_object(recipient) || !alg || strcmp(alg, "RSAES_OAEP_SHA_256") != 0) {
        *msg = "1 validation error detected: Value at 'recipient.keyEncryptionAlgorithm' failed to satisfy "
               "constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]";
        return -1;
    }
    size_t dl = 0;
    unsigned char *doc = doc_b64 ? b64dec(doc_b64, &dl) : NULL;
    nd_attest_doc *ad = NULL;
    if (!doc || nd_attest_parse(doc, dl, &ad, NULL) < 0) {
        free(doc);
        *msg = "The attestation document is not valid.";
        return -1;
    }
    free(doc);
    int rc = -1;
    EVP_PKEY *pk = NULL;
    X509 *cert = NULL;
    CMS_ContentInfo *cms = NULL;
    BIO *in = NULL;
    const unsigned char *p = ad->public_key.p;
    if (!p || !(pk = d2i_PUBKEY(NULL, &p, (long)ad->public_key.len)) || p != ad->public_key.p + ad->public_key.len ||
        EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pk) != 2048) {
        *msg = "Invalid public key";
        goto done;
    }
    /* A throwaway certificate only to carry the key and its subjectKeyIdentifier (SHA-256 of the key bits). */
    unsigned char ski[32];
    {
        X509_PUBKEY *xpk = NULL;
        const unsigned char *bits = NULL;
        int bl = 0;
        unsigned char *der = NULL;
        int derl = i2d_PUBKEY(pk, &der);
        const unsigned char *dp = der;
        xpk = derl > 0 ? d2i_X509_PUBKEY(NULL, &dp, derl) : NULL;
        if (!xpk || !X509_PUBKEY_get0_param(NULL, &bits, &bl, NULL, xpk)) {
            X509_PUBKEY_free(xpk);
            OPENSSL_free(der);
            *msg = "Invalid public key";
            goto done;
        }
        EVP_Digest(bits, (size_t)bl, ski, NULL, EVP_sha256(), NULL);
        X509_PUBKEY_free(xpk);
        OPENSSL_free(der);
    }
    cert = X509_new();
    ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
    if (!cert || !os || !ASN1_OCTET_STRING_set(os, ski, sizeof ski) || !X509_set_pubkey(cert, pk) ||
        !X509_add1_ext_i2d(cert, NID_subject_key_identifier, os, 0, 0) || !X509_sign(cert, S.cert_key, EVP_sha256())) {
        ASN1_OCTET_STRING_free(os);
        *msg = "internal error building the recipient";
        goto done;
    }
    ASN1_OCTET_STRING_free(os);
    /* CMS_STREAM: like KMS, BER with indefinite lengths */
    cms = CMS_encrypt(NULL, NULL, EVP_aes_256_cbc(), CMS_BINARY | CMS_PARTIAL | CMS_STREAM);
    CMS_RecipientInfo *ri = cms ? CMS_add1_recipient_cert(cms, cert, CMS_USE_KEYID | CMS_KEY_PARAM) : NULL;
    EVP_PKEY_CTX *pctx = ri ? CMS_RecipientInfo_get0_pkey_ctx(ri) : NULL;
    in = BIO_new_mem_buf(pt, (int)n);
    BIO *outb = BIO_new(BIO_s_mem());
    if (!pctx || !in || !outb || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
        !i2d_CMS_bio_stream(outb, cms, in, CMS_BINARY | CMS_STREAM)) {
        BIO_free(outb);
        *msg = "internal error encrypting for the recipient";
        ERR_print_errors_fp(stderr);
        goto done;
    }
    char *mem = NULL;
    long l = BIO_get_mem_data(outb, &mem);
    if (l <= 0 || !(*out = OPENSSL_malloc((size_t)l))) {
        BIO_free(outb);
        *msg = "internal error encoding CMS";
        goto done;
    }
    memcpy(*out, mem, (size_t)l);
    BIO_free(outb);
    *outlen = (size_t)l;
    rc = 0;
done:
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    X509_free(cert);
    EVP_PKEY_free(pk);
    nd_attest_free(ad);
    return rc;
}

/* Puts Plaintext, or CiphertextForRecipient when a Recipient was given, into resp. Returns false (and answered) on
 * a recipient error. */
static bool put_secret(conn *c, const request *r, json_t *resp, json_t *recipient, const unsigned char *pt, size_t n,
                       bool *answered)
{
    *answered = false;
    if (recipient && !json_is_null(recipient)) {
        unsigned char *der = NULL;
        size_t dl = 0;
        const char *msg = NULL;
        if (recipient_encrypt(recipient, pt, n, &der, &dl, &msg) < 0) {
            *answered = kms_error(c, r, 400, "ValidationException", msg);
            return false;
        }
        char *b = b64enc(der, dl);
        OPENSSL_free(der);
        json_object_set_new(resp, "CiphertextForRecipient", json_string(b ? b : ""));
        free(b);
        return true;
    }
    char *b = b64enc(pt, n);
    json_object_set_new(resp, "Plaintext", json_string(b ? b : ""));
    free(b);
    return true;
}

/* ---- operations ------------------------------------------------------------------------------------------------- */

static bool validation(conn *c, const request *r, const char *msg)
{
    return kms_error(c, r, 400, "ValidationException", msg);
}

static bool op_generate_data_key(conn *c, const request *r, json_t *in)
{
    json_t *kid = json_object_get(in, "KeyId");
    json_t *spec = json_object_get(in, "KeySpec");
    json_t *nb = json_object_get(in, "NumberOfBytes");
    if (!json_is_string(kid))
        return validation(c, r, "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: "
                                "Member must not be null");
    if ((spec && nb) || (!spec && !nb))
        return validation(c, r, "Please specify either number of bytes or key spec.");
    size_t n = 0;
    if (spec) {
        const char *s = json_string_value(spec);
        if (s && strcmp(s, "AES_256") == 0)
            n = 32;
        else if (s && strcmp(s, "AES_128") == 0)
            n = 16;
        else
            return validation(c, r, "1 validation error detected: Value at 'keySpec' failed to satisfy constraint: "
                                    "Member must satisfy enum value set: [AES_256, AES_128]");
    } else {
        json_int_t v = json_is_integer(nb) ? json_integer_value(nb) : -1;
        if (v < 1 || v > 1024) {
            char m[256];
            snprintf(m, sizeof m, "1 validation error detected: Value '%lld' at 'numberOfBytes' failed to satisfy "
                                  "constraint: Member must have value %s", (long long)v,
                     v < 1 ? "greater than or equal to 1" : "less than or equal to 1024");
            return validation(c, r, m);
        }
        n = (size_t)v;
    }
    if (!resolve_key(json_string_value(kid)))
        return not_found(c, r, json_string_value(kid));
    unsigned char pt[1024];
    RAND_bytes(pt, (int)n);
    size_t bl = 0;
    unsigned char *blob = seal(pt, n, json_object_get(in, "EncryptionContext"), &bl);
    char *b = blob ? b64enc(blob, bl) : NULL;
    free(blob);
    json_t *out = json_object();
    char arn[256];
    key_arn(arn, sizeof arn);
    json_object_set_new(out, "KeyId", json_string(arn));
    json_object_set_new(out, "CiphertextBlob", json_string(b ? b : ""));
    free(b);
    bool answered;
    if (!put_secret(c, r, out, json_object_get(in, "Recipient"), pt, n, &answered)) {
        json_decref(out);
        return answered;
    }
    return kms_ok(c, r, out);
}

static bool op_decrypt(conn *c, const request *r, json_t *in)
{
    const char *cb = json_string_value(json_object_get(in, "CiphertextBlob"));
    if (!cb)
        return validation(c, r, "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
                                "constraint: Member must not be null");
    size_t bl = 0;
    unsigned char *blob = b64dec(cb, &bl);
    if (!blob)
        return kms_error(c, r, 400, "SerializationException", "Could not parse the CiphertextBlob as base64.");
    if (bl < 1 || bl > 6144) {
        free(blob);
        return validation(c, r, "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy "
                                "constraint: Member must have length between 1 and 6144");
    }
    const char *kid = json_string_value(json_object_get(in, "KeyId"));
    if (kid && !resolve_key(kid)) {
        free(blob);
        return kms_error(c, r, 400, "IncorrectKeyException",
                         "The key ID in the request does not identify a CMK that can perform this operation.");
    }
    size_t pl = 0;
    unsigned char *pt = unseal(blob, bl, json_object_get(in, "EncryptionContext"), &pl);
    free(blob);
    if (!pt)
        return kms_error(c, r, 400, "InvalidCiphertextException", NULL);
    json_t *out = json_object();
    char arn[256];
    key_arn(arn, sizeof arn);
    json_object_set_new(out, "KeyId", json_string(arn));
    json_object_set_new(out, "EncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
    bool answered;
    bool ok = put_secret(c, r, out, json_object_get(in, "Recipient"), pt, pl, &answered);
    OPENSSL_cleanse(pt, pl);
    free(pt);
    if (!ok) {
        json_decref(out);
        return answered;
    }
    return kms_ok(c, r, out);
}

static bool op_encrypt(conn *c, const request *r, json_t *in)
{
    const char *kid = json_string_value(json_object_get(in, "KeyId"));
    const char *p64 = json_string_value(json_object_get(in, "Plaintext"));
    if (!kid)
        return validation(c, r, "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: "
                                "Member must not be null");
    if (!p64)
        return validation(c, r, "1 validation error detected: Value null at 'plaintext' failed to satisfy "
                                "constraint: Member must not be null");
    size_t pl = 0;
    unsigned char *pt = b64dec(p64, &pl);
    if (!pt)
        return kms_error(c, r, 400, "SerializationException", "Could not parse the Plaintext as base64.");
    if (pl < 1 || pl > 4096) {
        free(pt);
        return validation(c, r, "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
                                "Member must have length between 1 and 4096");
    }
    if (!resolve_key(kid)) {
        free(pt);
        return not_found(c, r, kid);
    }
    size_t bl = 0;
    unsigned char *blob = seal(pt, pl, json_object_get(in, "EncryptionContext"), &bl);
    free(pt);
    char *b = blob ? b64enc(blob, bl) : NULL;
    free(blob);
    json_t *out = json_object();
    char arn[256];
    key_arn(arn, sizeof arn);
    json_object_set_new(out, "KeyId", json_string(arn));
    json_object_set_new(out, "CiphertextBlob", json_string(b ? b : ""));
    json_object_set_new(out, "EncryptionAlgorithm", json_string("SYMMETRIC_DEFAULT"));
    free(b);
    return kms_ok(c, r, out);
}

static bool op_generate_random(conn *c, const request *r, json_t *in)
{
    json_t *nb = json_object_get(in, "NumberOfBytes");
    json_int_t v = json_is_integer(nb) ? json_integer_value(nb) : -1;
    if (!nb)
        return validation(c, r, "Please specify number of bytes.");
    if (v < 1 || v > 1024) {
        char m[256];
        snprintf(m, sizeof m, "1 validation error detected: Value '%lld' at 'numberOfBytes' failed to satisfy "
                              "constraint: Member must have value %s", (long long)v,
                 v < 1 ? "greater than or equal to 1" : "less than or equal to 1024");
        return validation(c, r, m);
    }
    unsigned char pt[1024];
    RAND_bytes(pt, (int)v);
    json_t *out = json_object();
    bool answered;
    if (!put_secret(c, r, out, json_object_get(in, "Recipient"), pt, (size_t)v, &answered)) {
        json_decref(out);
        return answered;
    }
    return kms_ok(c, r, out);
}

/* ---- SigV4 verification ------------------------------------------------------------------------------------ */

static const char *SIG_MISMATCH =
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access "
    "Key and signing method. Consult the service documentation for details.";

/* Returns true when the request is correctly signed; otherwise answers (400) and returns false. *answered tells
 * whether the answer could be written. */
static bool verify(conn *c, const request *r, bool *answered)
{
    *answered = false;
    const char *auth = get_header(r, "Authorization");
    if (!auth) {
        *answered = kms_error(c, r, 400, "MissingAuthenticationTokenException", "Missing Authentication Token");
        return false;
    }
    nd_sigv4_auth a;
    nd_err err;
    if (nd_sigv4_parse_authorization(auth, &a, &err) < 0) {
        *answered = kms_error(c, r, 400, "IncompleteSignatureException", err.msg);
        return false;
    }
    if (strcmp(a.access_key_id, S.access_key) != 0) {
        atomic_fetch_add(&S.sig_failures, 1);
        *answered = kms_error(c, r, 400, "UnrecognizedClientException",
                              "The security token included in the request is invalid.");
        return false;
    }
    const char *date = get_header(r, "X-Amz-Date");
    if (!date || strncmp(date, a.date, 8) != 0 || strcmp(a.service, "kms") != 0 || strcmp(a.region, S.region) != 0) {
        atomic_fetch_add(&S.sig_failures, 1);
        *answered = kms_error(c, r, 400, "InvalidSignatureException",
                              !date ? "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' "
                                      "header." : "Credential should be scoped to a valid region and service.");
        return false;
    }
    /* collect the signed headers, in request order, for each name in SignedHeaders */
    nd_sigv4_header sh[64];
    size_t n = 0;
    char names[1024];
    snprintf(names, sizeof names, "%s", a.signed_headers);
    char *save = NULL;
    bool has_host = false;
    for (char *nm = strtok_r(names, ";", &save); nm; nm = strtok_r(NULL, ";", &save)) {
        has_host |= strcmp(nm, "host") == 0;
        for (int i = 0; i < r->nh && n < 64; i++) {
            if (strcasecmp(r->h[i].name, nm) == 0)
                sh[n++] = (nd_sigv4_header){ nm, r->h[i].value };
        }
    }
    char path[2048];
    snprintf(path, sizeof path, "%s", r->target);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    nd_sigv4_request sreq = { .method = r->method, .host = "-", .path = path, .query = q, .headers = sh,
                              .nheaders = n, .body = r->body, .body_len = r->body_len };
    /* the signer adds x-amz-date when absent from the signed set; make it add the request's value */
    nd_sigv4_key k = { S.access_key, S.secret, NULL };
    nd_sigv4_result res;
    bool ok = has_host && nd_sigv4_sign(&sreq, &k, a.region, a.service, date, false, &res, &err) == 0;
    if (ok) {
        ok = strcmp(res.signed_headers, a.signed_headers) == 0 && nd_sigv4_signature_equal(res.signature, a.signature);
        nd_sigv4_result_free(&res);
    }
    if (!ok) {
        atomic_fetch_add(&S.sig_failures, 1);
        *answered = kms_error(c, r, 400, "InvalidSignatureException", SIG_MISMATCH);
        return false;
    }
    return true;
}

/* ---- control endpoints ----------------------------------------------------------------------------------------- */

static void apply_faults_json(json_t *j)
{
    json_t *v;
    pthread_mutex_lock(&S.mu);
    if ((v = json_object_get(j, "throttle_ratio")))
        S.f.throttle_ratio = json_number_value(v);
    if ((v = json_object_get(j, "error_5xx_ratio")))
        S.f.error_5xx_ratio = json_number_value(v);
    if ((v = json_object_get(j, "status_5xx")))
        S.f.status_5xx = (int)json_integer_value(v);
    if ((v = json_object_get(j, "reset_ratio")))
        S.f.reset_ratio = json_number_value(v);
    if ((v = json_object_get(j, "latency_ms")))
        S.f.latency_ms = (int)json_integer_value(v);
    if ((v = json_object_get(j, "access_denied")))
        S.f.access_denied = json_is_true(v);
    if ((v = json_object_get(j, "expired_tokens")))
        S.f.expired_tokens = (int)json_integer_value(v);
    if ((v = json_object_get(j, "namespaced_errors")))
        S.f.namespaced_errors = json_is_true(v);
    if ((v = json_object_get(j, "imds_401")))
        S.f.imds_401 = (int)json_integer_value(v);
    if ((v = json_object_get(j, "creds_ttl")))
        S.f.creds_ttl = (int)json_integer_value(v);
    pthread_mutex_unlock(&S.mu);
}

static bool control(conn *c, const request *r)
{
    if (strcmp(r->target, "/__stats") == 0) {
        json_t *j = json_object();
        pthread_mutex_lock(&S.mu);
        json_object_set_new(j, "connections", json_integer((json_int_t)atomic_load(&S.connections)));
        json_object_set_new(j, "connections_open", json_integer((json_int_t)atomic_load(&S.conns_open)));
        json_object_set_new(j, "requests", json_integer((json_int_t)atomic_load(&S.requests)));
        json_object_set_new(j, "max_in_flight", json_integer((json_int_t)atomic_load(&S.max_in_flight)));
        json_object_set_new(j, "signature_failures", json_integer((json_int_t)atomic_load(&S.sig_failures)));
        json_object_set_new(j, "resets", json_integer((json_int_t)atomic_load(&S.resets)));
        json_object_set_new(j, "GenerateDataKey", json_integer((json_int_t)S.ops[0]));
        json_object_set_new(j, "Decrypt", json_integer((json_int_t)S.ops[1]));
        json_object_set_new(j, "Encrypt", json_integer((json_int_t)S.ops[2]));
        json_object_set_new(j, "GenerateRandom", json_integer((json_int_t)S.ops[3]));
        json_object_set_new(j, "errors", json_integer((json_int_t)S.ops[5]));
        json_object_set_new(j, "token_puts", json_integer((json_int_t)S.token_puts));
        json_object_set_new(j, "imds_gets", json_integer((json_int_t)S.imds_gets));
        json_object_set_new(j, "creds_served", json_integer((json_int_t)S.creds_served));
        json_object_set_new(j, "unauthorized", json_integer((json_int_t)S.unauthorized));
        pthread_mutex_unlock(&S.mu);
        char *b = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        bool ok = respond(c, r, 200, "application/json", NULL, b ? b : "{}");
        free(b);
        return ok;
    }
    if (strcmp(r->target, "/__faults") == 0 && strcmp(r->method, "POST") == 0) {
        json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            return respond(c, r, 400, "text/plain", NULL, "faults: want a JSON object\n");
        }
        apply_faults_json(j);
        json_decref(j);
        return respond(c, r, 200, "application/json", NULL, "{}");
    }
    return respond(c, r, 404, "text/plain", NULL, "not found\n");
}

/* ---- request handlers ------------------------------------------------------------------------------------------ */

enum { KEEP = 1, CLOSE = 0, RESET = -1 };

static int handle_kms(conn *c, request *r)
{
    if (strncmp(r->target, "/__", 3) == 0)
        return control(c, r) && !r->close ? KEEP : CLOSE;
    faults f;
    pthread_mutex_lock(&S.mu);
    f = S.f;
    pthread_mutex_unlock(&S.mu);
    if (f.latency_ms > 0) {
        struct timespec ts = { f.latency_ms / 1000, (long)(f.latency_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    if (f.reset_ratio > 0 && rnd01() < f.reset_ratio) {
        atomic_fetch_add(&S.resets, 1);
        return RESET;
    }
    if (strcmp(r->method, "POST") != 0 || strcmp(r->target, "/") != 0)
        return kms_error(c, r, 400, "UnknownOperationException", NULL) && !r->close ? KEEP : CLOSE;
    bool answered;
    if (!verify(c, r, &answered))
        return answered && !r->close ? KEEP : CLOSE;
    bool ok;
    const char *target = get_header(r, "X-Amz-Target");
    const char *op = target && strncmp(target, "TrentService.", 13) == 0 ? target + 13 : "";
    bool expired = false;
    pthread_mutex_lock(&S.mu);
    if (S.f.expired_tokens > 0) {
        S.f.expired_tokens--;
        expired = true;
    }
    pthread_mutex_unlock(&S.mu);
    if (expired) {
        ok = kms_error(c, r, 400, "ExpiredTokenException", "The security token included in the request is expired");
    } else if (f.access_denied) {
        char m[512];
        char arn[256];
        key_arn(arn, sizeof arn);
        snprintf(m, sizeof m, "User: arn:aws:sts::" ACCOUNT ":assumed-role/" ROLE_NAME "/i-0fake is not authorized "
                              "to perform: kms:%s on resource: %s because no identity-based policy allows the "
                              "kms:%s action", op, arn, op);
        ok = kms_error(c, r, 400, "AccessDeniedException", m);
    } else if (f.throttle_ratio > 0 && rnd01() < f.throttle_ratio) {
        ok = kms_error(c, r, 400, "ThrottlingException",
                       "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.");
    } else if (f.error_5xx_ratio > 0 && rnd01() < f.error_5xx_ratio) {
        int st = f.status_5xx ? f.status_5xx : 500;
        if (st == 500)
            ok = kms_error(c, r, 500, "KMSInternalException", "The request was rejected because an internal "
                                                               "exception occurred. The request can be retried.");
        else
            ok = respond(c, r, st, "text/html", NULL, "<html><body>upstream unavailable</body></html>\n");
    } else {
        json_error_t je;
        json_t *in = json_loadb(r->body, r->body_len, 0, &je);
        if (!json_is_object(in)) {
            ok = kms_error(c, r, 400, "SerializationException", "Start of structure or map found where not expected.");
        } else {
            int idx = strcmp(op, "GenerateDataKey") == 0 ? 0 : strcmp(op, "Decrypt") == 0 ? 1
                    : strcmp(op, "Encrypt") == 0 ? 2 : strcmp(op, "GenerateRandom") == 0 ? 3 : 4;
            pthread_mutex_lock(&S.mu);
            S.ops[idx]++;
            pthread_mutex_unlock(&S.mu);
            switch (idx) {
            case 0: ok = op_generate_data_key(c, r, in); break;
            case 1: ok = op_decrypt(c, r, in); break;
            case 2: ok = op_encrypt(c, r, in); break;
            case 3: ok = op_generate_random(c, r, in); break;
            default: ok = kms_error(c, r, 400, "UnknownOperationException", NULL); break;
            }
        }
        json_decref(in);
    }
    return ok && !r->close ? KEEP : CLOSE;
}

static bool token_valid(const char *t)
{
    if (!t)
        return false;
    for (int i = 0; i < S.ntokens && i < 64; i++) {
        if (strcmp(S.tokens[i], t) == 0)
            return true;
    }
    return false;
}

static void token_forget(const char *t)
{
    for (int i = 0; i < S.ntokens && i < 64; i++) {
        if (strcmp(S.tokens[i], t) == 0)
            S.tokens[i][0] = '\0';
    }
}

static int handle_imds(conn *c, request *r)
{
    if (strncmp(r->target, "/__", 3) == 0)
        return control(c, r) && !r->close ? KEEP : CLOSE;
    bool ok;
    if (strcmp(r->target, "/latest/api/token") == 0) {
        if (strcmp(r->method, "PUT") != 0)
            return respond(c, r, 405, "text/plain", NULL, "") && !r->close ? KEEP : CLOSE;
        const char *ttl = get_header(r, "X-aws-ec2-metadata-token-ttl-seconds");
        long t = ttl ? strtol(ttl, NULL, 10) : 0;
        if (t < 1 || t > 21600)
            return respond(c, r, 400, "text/plain", NULL, "") && !r->close ? KEEP : CLOSE;
        unsigned char b[32];
        RAND_bytes(b, sizeof b);
        char tok[65];
        for (int i = 0; i < 32; i++)
            snprintf(tok + 2 * i, 3, "%02x", b[i]);
        pthread_mutex_lock(&S.mu);
        snprintf(S.tokens[S.ntokens % 64], 65, "%s", tok);
        S.ntokens++;
        S.token_puts++;
        pthread_mutex_unlock(&S.mu);
        ok = respond(c, r, 200, "text/plain", NULL, tok);
        return ok && !r->close ? KEEP : CLOSE;
    }
    if (strcmp(r->method, "GET") != 0)
        return respond(c, r, 405, "text/plain", NULL, "") && !r->close ? KEEP : CLOSE;
    const char *tok = get_header(r, "X-aws-ec2-metadata-token");
    pthread_mutex_lock(&S.mu);
    S.imds_gets++;
    bool valid = token_valid(tok);
    if (valid && S.f.imds_401 > 0) {
        S.f.imds_401--;
        token_forget(tok);
        valid = false;
    }
    if (!valid)
        S.unauthorized++;
    int ttl = S.f.creds_ttl;
    pthread_mutex_unlock(&S.mu);
    if (!valid)
        return respond(c, r, 401, "text/plain", NULL, "") && !r->close ? KEEP : CLOSE;
    const char *base = "/latest/meta-data/iam/security-credentials/";
    if (strcmp(r->target, base) == 0) {
        ok = respond(c, r, 200, "text/plain", NULL, ROLE_NAME);
    } else if (strncmp(r->target, base, strlen(base)) == 0 && strcmp(r->target + strlen(base), ROLE_NAME) == 0) {
        time_t now = time(NULL), exp = now + ttl;
        char nowb[32], expb[32];
        struct tm tm;
        strftime(nowb, sizeof nowb, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        strftime(expb, sizeof expb, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&exp, &tm));
        json_t *j = json_object();
        pthread_mutex_lock(&S.mu);
        unsigned long nserved = ++S.creds_served;
        pthread_mutex_unlock(&S.mu);
        char token[64];
        snprintf(token, sizeof token, "FAKE-SESSION-TOKEN-%lu", nserved);
        json_object_set_new(j, "Code", json_string("Success"));
        json_object_set_new(j, "LastUpdated", json_string(nowb));
        json_object_set_new(j, "Type", json_string("AWS-HMAC"));
        json_object_set_new(j, "AccessKeyId", json_string(S.access_key));
        json_object_set_new(j, "SecretAccessKey", json_string(S.secret));
        json_object_set_new(j, "Token", json_string(token));
        json_object_set_new(j, "Expiration", json_string(expb));
        char *b = json_dumps(j, JSON_INDENT(2));
        json_decref(j);
        ok = respond(c, r, 200, "text/plain", NULL, b ? b : "{}");
        free(b);
    } else if (strcmp(r->target, "/latest/meta-data/placement/region") == 0) {
        ok = respond(c, r, 200, "text/plain", NULL, S.region); /* --region, as the instance's region */
    } else {
        ok = respond(c, r, 404, "text/plain", NULL, "");
    }
    return ok && !r->close ? KEEP : CLOSE;
}

/* ---- connections ------------------------------------------------------------------------------------------------ */

static void hard_reset(int fd)
{
    struct linger l = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    conn *c = calloc(1, sizeof *c);
    bool reset = false;
    if (!c) {
        close(fd);
        atomic_fetch_sub(&S.conns_open, 1);
        return NULL;
    }
    c->fd = fd;
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!S.imds) {
        c->ssl = SSL_new(S.ssl);
        if (!c->ssl || !SSL_set_fd(c->ssl, fd) || SSL_accept(c->ssl) <= 0)
            goto out;
    }
    while (!g_stop) {
        request r;
        int rc = read_request(c, &r);
        if (rc == 0)
            break;
        if (rc < 0) {
            respond(c, NULL, 400, "text/plain", "Connection: close\r\n", "bad request\n");
            break;
        }
        atomic_fetch_add(&S.requests, 1);
        unsigned long inf = atomic_fetch_add(&S.in_flight, 1) + 1;
        unsigned long mx = atomic_load(&S.max_in_flight);
        while (inf > mx && !atomic_compare_exchange_weak(&S.max_in_flight, &mx, inf))
            ;
        char saved = r.body[r.body_len]; /* buf has a spare byte; a pipelined request may start here */
        r.body[r.body_len] = '\0';
        int k = S.imds ? handle_imds(c, &r) : handle_kms(c, &r);
        r.body[r.body_len] = saved;
        atomic_fetch_sub(&S.in_flight, 1);
        if (k == RESET) {
            reset = true;
            break;
        }
        if (k == CLOSE)
            break;
        consume(c, &r);
    }
out:
    if (reset) {
        SSL_free(c->ssl);
        hard_reset(fd);
    } else {
        if (c->ssl) {
            SSL_shutdown(c->ssl);
            SSL_free(c->ssl);
        }
        close(fd);
    }
    free(c);
    atomic_fetch_sub(&S.conns_open, 1);
    return NULL;
}

/* ---- certificate ------------------------------------------------------------------------------------------------ */

static int make_cert(const char *ca_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        return -1;
    X509_set_version(x, 2);
    unsigned char serial[8];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 24 * 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"nitrodiag fake KMS", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    const char *exts[][2] = { { "basicConstraints", "critical,CA:TRUE" },
                              { "keyUsage", "critical,digitalSignature,keyCertSign" },
                              { "subjectAltName", "IP:127.0.0.1,DNS:localhost" },
                              { "subjectKeyIdentifier", "hash" } };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, &v3, exts[i][0], exts[i][1]);
        if (!e)
            return -1;
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    if (!X509_sign(x, pk, EVP_sha256()))
        return -1;
    FILE *f = fopen(ca_path, "w");
    if (!f || !PEM_write_X509(f, x)) {
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    S.ssl = SSL_CTX_new(TLS_server_method());
    if (!S.ssl || SSL_CTX_use_certificate(S.ssl, x) != 1 || SSL_CTX_use_PrivateKey(S.ssl, pk) != 1)
        return -1;
    SSL_CTX_set_min_proto_version(S.ssl, TLS1_2_VERSION);
    SSL_CTX_set_session_cache_mode(S.ssl, SSL_SESS_CACHE_SERVER);
    X509_free(x);
    S.cert_key = pk;
    return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static double env_num(const char *name, double def)
{
    const char *v = getenv(name);
    return v && *v ? strtod(v, NULL) : def;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nitrodiag-fake-kms [--imds] [--port N] [--port-file PATH] [--ca-out PATH] [--max-seconds S]\n"
               "         [--region R] [--access-key AK] [--secret SK] [--alias alias/NAME]...\n"
               "         [--throttle-ratio R] [--error-5xx-ratio R] [--status-5xx N] [--reset-ratio R]\n"
               "         [--latency-ms N] [--access-denied] [--expired-tokens N] [--namespaced-errors]\n"
               "         [--imds-401 N] [--creds-ttl S]\n"
               "Fault defaults come from FAKEKMS_THROTTLE_RATIO, FAKEKMS_ERROR_5XX_RATIO, FAKEKMS_STATUS_5XX,\n"
               "FAKEKMS_RESET_RATIO, FAKEKMS_LATENCY_MS, FAKEKMS_ACCESS_DENIED, FAKEKMS_EXPIRED_TOKENS.\n"
               "Prints the port on the first stdout line (KMS mode: the CA file on the second).\n");
}

int main(int argc, char **argv)
{
    int port = 0;
    double max_seconds = 600;
    const char *port_file = NULL, *ca_out = NULL;
    pthread_mutex_init(&S.mu, NULL);
    snprintf(S.region, sizeof S.region, "us-east-1");
    snprintf(S.access_key, sizeof S.access_key, "AKIDEXAMPLE");
    snprintf(S.secret, sizeof S.secret, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    snprintf(S.aliases[S.naliases++], sizeof S.aliases[0], "alias/ephemeral-ml-test");
    S.f.throttle_ratio = env_num("FAKEKMS_THROTTLE_RATIO", 0);
    S.f.error_5xx_ratio = env_num("FAKEKMS_ERROR_5XX_RATIO", 0);
    S.f.status_5xx = (int)env_num("FAKEKMS_STATUS_5XX", 500);
    S.f.reset_ratio = env_num("FAKEKMS_RESET_RATIO", 0);
    S.f.latency_ms = (int)env_num("FAKEKMS_LATENCY_MS", 0);
    S.f.access_denied = env_num("FAKEKMS_ACCESS_DENIED", 0) != 0;
    S.f.expired_tokens = (int)env_num("FAKEKMS_EXPIRED_TOKENS", 0);
    S.f.creds_ttl = 3600;
    static const struct option lo[] = {
        { "imds", no_argument, 0, 'I' }, { "port", required_argument, 0, 'p' },
        { "port-file", required_argument, 0, 'P' }, { "ca-out", required_argument, 0, 'c' },
        { "max-seconds", required_argument, 0, 'm' }, { "region", required_argument, 0, 'r' },
        { "access-key", required_argument, 0, 'a' }, { "secret", required_argument, 0, 's' },
        { "alias", required_argument, 0, 'A' }, { "throttle-ratio", required_argument, 0, 't' },
        { "error-5xx-ratio", required_argument, 0, 'e' }, { "status-5xx", required_argument, 0, 'E' },
        { "reset-ratio", required_argument, 0, 'R' }, { "latency-ms", required_argument, 0, 'l' },
        { "access-denied", no_argument, 0, 'D' }, { "expired-tokens", required_argument, 0, 'x' },
        { "namespaced-errors", no_argument, 0, 'n' }, { "imds-401", required_argument, 0, 'u' },
        { "creds-ttl", required_argument, 0, 'T' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (o) {
        case 'I': S.imds = true; break;
        case 'p': port = atoi(optarg); break;
        case 'P': port_file = optarg; break;
        case 'c': ca_out = optarg; break;
        case 'm': max_seconds = strtod(optarg, NULL); break;
        case 'r': snprintf(S.region, sizeof S.region, "%s", optarg); break;
        case 'a': snprintf(S.access_key, sizeof S.access_key, "%s", optarg); break;
        case 's': snprintf(S.secret, sizeof S.secret, "%s", optarg); break;
        case 'A':
            if (S.naliases < 8)
                snprintf(S.aliases[S.naliases++], sizeof S.aliases[0], "%s", optarg);
            break;
        case 't': S.f.throttle_ratio = strtod(optarg, NULL); break;
        case 'e': S.f.error_5xx_ratio = strtod(optarg, NULL); break;
        case 'E': S.f.status_5xx = atoi(optarg); break;
        case 'R': S.f.reset_ratio = strtod(optarg, NULL); break;
        case 'l': S.f.latency_ms = atoi(optarg); break;
        case 'D': S.f.access_denied = true; break;
        case 'x': S.f.expired_tokens = atoi(optarg); break;
        case 'n': S.f.namespaced_errors = true; break;
        case 'u': S.f.imds_401 = atoi(optarg); break;
        case 'T': S.f.creds_ttl = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || port < 0 || port > 65535) {
        usage(stderr);
        return 2;
    }
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char tmpdir[256] = "", ca_path[512] = "";
    if (!S.imds) {
        if (ca_out) {
            snprintf(ca_path, sizeof ca_path, "%s", ca_out);
        } else {
            const char *t = getenv("TMPDIR");
            snprintf(tmpdir, sizeof tmpdir, "%s/nitrodiag-fakekms-XXXXXX", t && *t ? t : "/tmp");
            if (!mkdtemp(tmpdir)) {
                fprintf(stderr, "nitrodiag-fake-kms: mkdtemp %s: %s\n", tmpdir, strerror(errno));
                return 1;
            }
            snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
        }
        if (make_cert(ca_path) < 0) {
            fprintf(stderr, "nitrodiag-fake-kms: cannot create the certificate in %s\n", ca_path);
            if (tmpdir[0])
                nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
            return 1;
        }
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof sin;
    if (ls < 0 || bind(ls, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(ls, 1024) < 0 ||
        getsockname(ls, (struct sockaddr *)&sin, &sl) < 0) {
        fprintf(stderr, "nitrodiag-fake-kms: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        if (tmpdir[0])
            nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        return 1;
    }
    int bound = ntohs(sin.sin_port);
    printf("%d\n", bound);
    if (!S.imds)
        printf("%s\n", ca_path);
    fflush(stdout);
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%d\n", bound);
            fclose(f);
            rename(tmp, port_file);
        }
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    while (!g_stop) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (max_seconds > 0 && (double)(now.tv_sec - t0.tv_sec) > max_seconds)
            break;
        if (getppid() != parent)
            break;
        struct pollfd p = { .fd = ls, .events = POLLIN };
        if (poll(&p, 1, 200) <= 0)
            continue;
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (atomic_load(&S.conns_open) >= MAX_CONNS) {
            close(fd);
            continue;
        }
        atomic_fetch_add(&S.connections, 1);
        atomic_fetch_add(&S.conns_open, 1);
        pthread_t th;
        if (pthread_create(&th, &attr, conn_main, (void *)(intptr_t)fd) != 0) {
            close(fd);
            atomic_fetch_sub(&S.conns_open, 1);
        }
    }
    g_stop = 1;
    close(ls);
    /* give connection threads a moment to notice the stop flag */
    for (int i = 0; i < 10 && atomic_load(&S.conns_open) > 0; i++)
        usleep(50000);
    if (port_file)
        unlink(port_file);
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    fflush(stdout);
    _exit(0);
}
