/*
 * sigv4.c — AWS Signature Version 4 (see nd_sigv4.h): canonical request, string to sign, signing key
 * (HMAC chain over date/region/service/"aws4_request") and the Authorization header, with OpenSSL's HMAC and SHA-256.
 * The KMS client signs with it; the fake KMS verifies with it; tests check it against the AWS test suite and botocore.
 */
#include "nd_sigv4.h"
#include "nd_buf.h"
#include "nd_codec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

/* ---- encoding helpers (strings are built in an nd_buf, core/nd_buf.h) ------------------------------------------ */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.' || c == '~';
}

static void sb_uri_encode(nd_buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) {
            nd_buf_addc(b, (char)c);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            nd_buf_add(b, e, 3);
        }
    }
}

char *nd_sigv4_uri_encode(const char *s, size_t n, bool keep_slash)
{
    nd_buf b = ND_BUF_INIT;
    sb_uri_encode(&b, s, n, keep_slash);
    return nd_buf_take(&b);
}

/* Percent-decodes s[0..n) into a malloc'd buffer (invalid escapes are kept literally). */
static char *pct_decode(const char *s, size_t n, size_t *outlen)
{
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char byte;
        if (s[i] == '%' && i + 2 < n && nd_hex_decode(s + i + 1, 2, &byte, 1, NULL) == 1) {
            o[j++] = (char)byte;
            i += 2;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    *outlen = j;
    return o;
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 and HMAC-SHA256 (RFC 2104) with one fetched digest per signature. OpenSSL 3's one-shot SHA256() and
 * HMAC() look the algorithm up by name on every call (seven calls per signature), which was half of the signing
 * time in the KMS proxy's profile; the AWS test-suite fixtures and the botocore comparisons (sigv4.*) check the
 * result. */
typedef struct sha_ctx {
    EVP_MD *md;
    EVP_MD_CTX *c;
} sha_ctx;

static void sha_open(sha_ctx *s)
{
    s->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    s->c = s->md ? EVP_MD_CTX_new() : NULL;
}

static void sha_close(sha_ctx *s)
{
    EVP_MD_CTX_free(s->c);
    EVP_MD_free(s->md);
    s->c = NULL;
    s->md = NULL;
}

/* SHA-256 of a then b. */
static bool sha_parts(sha_ctx *s, const void *a, size_t an, const void *b, size_t bn, unsigned char out[32])
{
    unsigned int ol = 0;
    return s->c && EVP_DigestInit_ex2(s->c, s->md, NULL) && EVP_DigestUpdate(s->c, a, an) &&
           (bn == 0 || EVP_DigestUpdate(s->c, b, bn)) && EVP_DigestFinal_ex(s->c, out, &ol) && ol == 32;
}

static bool sha256_hex(sha_ctx *s, const void *d, size_t n, char out[65])
{
    unsigned char md[32];
    if (!sha_parts(s, d ? d : (const void *)"", n, NULL, 0, md))
        return false;
    hex_of(md, sizeof md, out);
    return true;
}

static bool hmac256(sha_ctx *s, const void *key, size_t klen, const void *d, size_t n, unsigned char out[32])
{
    unsigned char k[64], pad[64], inner[32];
    memset(k, 0, sizeof k);
    bool ok = true;
    if (klen > sizeof k)
        ok = sha_parts(s, key, klen, NULL, 0, k); /* longer keys are hashed first */
    else
        memcpy(k, key, klen);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && sha_parts(s, pad, sizeof pad, d, n, inner);
    for (size_t i = 0; i < sizeof pad; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && sha_parts(s, pad, sizeof pad, inner, sizeof inner, out);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
    return ok;
}

/* ---- canonical path -------------------------------------------------------------------------------------------- */

/* Removes dot segments and empty segments (RFC 3986 5.2.4 plus collapsed slashes, exactly as botocore's
 * remove_dot_segments does), keeping a trailing slash when the input ends with '/' and something remains. */
static char *normalize_path(const char *path)
{
    if (!path || !*path)
        return strdup("/");
    size_t n = strlen(path);
    /* segments stack */
    const char **seg = calloc(n + 1, sizeof *seg);
    size_t *seglen = calloc(n + 1, sizeof *seglen);
    char *out = malloc(n + 2);
    if (!seg || !seglen || !out) {
        free(seg);
        free(seglen);
        free(out);
        return NULL;
    }
    size_t ns = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 1 && p[0] == '.') {
            /* skip */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (ns)
                ns--;
        } else {
            seg[ns] = p;
            seglen[ns] = l;
            ns++;
        }
        p += l;
    }
    size_t j = 0;
    out[j++] = '/';
    for (size_t i = 0; i < ns; i++) {
        memcpy(out + j, seg[i], seglen[i]);
        j += seglen[i];
        if (i + 1 < ns)
            out[j++] = '/';
    }
    bool trailing = n > 0 && path[n - 1] == '/';
    if (trailing && ns > 0)
        out[j++] = '/';
    out[j] = '\0';
    free(seg);
    free(seglen);
    return out;
}

/* ---- canonical query ------------------------------------------------------------------------------------------- */

typedef struct qpair {
    char *k, *v;
} qpair;

static int qpair_cmp(const void *a, const void *b)
{
    const qpair *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static int canonical_query(const char *q, nd_buf *out)
{
    if (!q || !*q)
        return 0;
    size_t n = 1;
    for (const char *p = q; *p; p++)
        n += *p == '&';
    qpair *pairs = calloc(n, sizeof *pairs);
    if (!pairs)
        return -ENOMEM;
    size_t np = 0;
    int rc = 0;
    const char *p = q;
    while (1) {
        const char *e = strchr(p, '&');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0) {
            const char *eq = memchr(p, '=', l);
            size_t kl = eq ? (size_t)(eq - p) : l;
            size_t dl;
            char *dk = pct_decode(p, kl, &dl);
            char *ek = dk ? nd_sigv4_uri_encode(dk, dl, false) : NULL;
            free(dk);
            char *dv = eq ? pct_decode(eq + 1, l - kl - 1, &dl) : strdup("");
            if (!eq && dv)
                dl = 0;
            char *ev = dv ? nd_sigv4_uri_encode(dv, dl, false) : NULL;
            free(dv);
            if (!ek || !ev) {
                free(ek);
                free(ev);
                rc = -ENOMEM;
                break;
            }
            pairs[np].k = ek;
            pairs[np].v = ev;
            np++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    if (rc == 0) {
        qsort(pairs, np, sizeof *pairs, qpair_cmp);
        for (size_t i = 0; i < np; i++) {
            if (i)
                nd_buf_addc(out, '&');
            nd_buf_addstr(out, pairs[i].k);
            nd_buf_addc(out, '=');
            nd_buf_addstr(out, pairs[i].v);
        }
    }
    for (size_t i = 0; i < np; i++) {
        free(pairs[i].k);
        free(pairs[i].v);
    }
    free(pairs);
    return rc;
}

/* ---- canonical headers ----------------------------------------------------------------------------------------- */

typedef struct hent {
    char *name;   /* lower case */
    char *value;  /* trimmed, spaces collapsed */
    size_t order; /* original position, for a stable sort */
} hent;

static int hent_cmp(const void *a, const void *b)
{
    const hent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static char *trim_value(const char *v)
{
    size_t n = strlen(v);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t j = 0;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            space = j > 0;
            continue;
        }
        if (space) {
            o[j++] = ' ';
            space = false;
        }
        o[j++] = c;
    }
    o[j] = '\0';
    return o;
}

static bool valid_header_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p <= 32 || *p >= 127 || *p == ':')
            return false;
    }
    return true;
}

static bool has_header(const nd_sigv4_request *req, const char *lname)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (req->headers[i].name && strcasecmp(req->headers[i].name, lname) == 0)
            return true;
    }
    return false;
}

static bool valid_amz_date(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++) {
        if (i != 8 && !isdigit((unsigned char)d[i]))
            return false;
    }
    return true;
}

void nd_sigv4_result_free(nd_sigv4_result *res)
{
    if (!res)
        return;
    free(res->canonical_request);
    free(res->string_to_sign);
    free(res->signed_headers);
    free(res->authorization);
    free(res->scope);
    for (size_t i = 0; i < res->nadd; i++)
        free((char *)res->add[i].value);
    memset(res, 0, sizeof *res);
}

int nd_sigv4_sign(const nd_sigv4_request *req, const nd_sigv4_key *key, const char *region, const char *service,
                  const char *amz_date, bool sign_token, nd_sigv4_result *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!req || !req->method || !*req->method)
        return nd_err_set(err, -EINVAL, "sigv4: the request has no method");
    if (!key || !key->access_key_id || !*key->access_key_id || !key->secret_access_key)
        return nd_err_set(err, -EINVAL, "sigv4: no access key id or secret access key");
    if (!region || !*region || !service || !*service)
        return nd_err_set(err, -EINVAL, "sigv4: region and service are required");
    if (!valid_amz_date(amz_date))
        return nd_err_set(err, -EINVAL, "sigv4: bad x-amz-date '%s' (want YYYYMMDDTHHMMSSZ)", amz_date ? amz_date : "");
    if (req->body_len && !req->body)
        return nd_err_set(err, -EINVAL, "sigv4: body_len without body");
    bool have_host = has_header(req, "host");
    if (!have_host && (!req->host || !*req->host))
        return nd_err_set(err, -EINVAL, "sigv4: the request has no host");
    const char *token = key->session_token && *key->session_token ? key->session_token : NULL;

    size_t nh = req->nheaders + 3;
    hent *h = calloc(nh, sizeof *h);
    if (!h)
        return nd_err_set(err, -ENOMEM, "sigv4: out of memory");
    size_t n = 0;
    int rc = 0;
    sha_ctx sx;
    sha_open(&sx);
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!valid_header_name(req->headers[i].name)) {
            rc = nd_err_set(err, -EINVAL, "sigv4: bad header name '%s'",
                            req->headers[i].name ? req->headers[i].name : "(null)");
            goto done;
        }
        h[n].name = strdup(req->headers[i].name);
        h[n].value = trim_value(req->headers[i].value ? req->headers[i].value : "");
        h[n].order = n;
        if (!h[n].name || !h[n].value) {
            n++;
            rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
            goto done;
        }
        for (char *c = h[n].name; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        n++;
    }
    if (!have_host) {
        h[n].name = strdup("host");
        h[n].value = trim_value(req->host);
        h[n].order = n;
        n++;
    }
    if (!has_header(req, "x-amz-date")) {
        h[n].name = strdup("x-amz-date");
        h[n].value = strdup(amz_date);
        h[n].order = n;
        n++;
        out->add[out->nadd].name = "X-Amz-Date";
        out->add[out->nadd].value = strdup(amz_date);
        out->nadd++;
    }
    if (token && !has_header(req, "x-amz-security-token")) {
        if (sign_token) {
            h[n].name = strdup("x-amz-security-token");
            h[n].value = trim_value(token);
            h[n].order = n;
            n++;
        }
        out->add[out->nadd].name = "X-Amz-Security-Token";
        out->add[out->nadd].value = strdup(token);
        out->nadd++;
    }
    for (size_t i = 0; i < n; i++) {
        if (!h[i].name || !h[i].value) {
            rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < out->nadd; i++) {
        if (!out->add[i].value) {
            rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
            goto done;
        }
    }
    qsort(h, n, sizeof *h, hent_cmp);

    if (!sha256_hex(&sx, req->body, req->body_len, out->payload_hash)) {
        rc = nd_err_set(err, -EIO, "sigv4: SHA-256 failed");
        goto done;
    }

    /* canonical request */
    nd_buf cr = ND_BUF_INIT, sh = { 0 };
    nd_buf_addstr(&cr, req->method);
    nd_buf_addc(&cr, '\n');
    char *np = normalize_path(req->path);
    if (!np) {
        rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
        free(cr.p);
        goto done;
    }
    sb_uri_encode(&cr, np, strlen(np), true);
    free(np);
    nd_buf_addc(&cr, '\n');
    if (canonical_query(req->query, &cr) < 0)
        cr.oom = true;
    nd_buf_addc(&cr, '\n');
    for (size_t i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(h[i].name, h[i - 1].name) != 0;
        bool last = i + 1 == n || strcmp(h[i].name, h[i + 1].name) != 0;
        if (first) {
            nd_buf_addstr(&cr, h[i].name);
            nd_buf_addc(&cr, ':');
            if (sh.len)
                nd_buf_addc(&sh, ';');
            nd_buf_addstr(&sh, h[i].name);
        } else {
            nd_buf_addc(&cr, ',');
        }
        nd_buf_addstr(&cr, h[i].value);
        if (last)
            nd_buf_addc(&cr, '\n');
    }
    nd_buf_addc(&cr, '\n');
    if (sh.p)
        nd_buf_addstr(&cr, sh.p);
    nd_buf_addc(&cr, '\n');
    nd_buf_addstr(&cr, out->payload_hash);
    out->canonical_request = nd_buf_take(&cr);
    out->signed_headers = nd_buf_take(&sh);
    if (!out->canonical_request || !out->signed_headers) {
        rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
        goto done;
    }

    /* scope and string to sign */
    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    nd_buf sc = ND_BUF_INIT;
    nd_buf_addstr(&sc, date);
    nd_buf_addc(&sc, '/');
    nd_buf_addstr(&sc, region);
    nd_buf_addc(&sc, '/');
    nd_buf_addstr(&sc, service);
    nd_buf_addstr(&sc, "/aws4_request");
    out->scope = nd_buf_take(&sc);
    char crhash[65];
    if (!sha256_hex(&sx, out->canonical_request, strlen(out->canonical_request), crhash)) {
        rc = nd_err_set(err, -EIO, "sigv4: SHA-256 failed");
        goto done;
    }
    nd_buf sts = ND_BUF_INIT;
    nd_buf_addstr(&sts, "AWS4-HMAC-SHA256\n");
    nd_buf_addstr(&sts, amz_date);
    nd_buf_addc(&sts, '\n');
    nd_buf_addstr(&sts, out->scope ? out->scope : "");
    nd_buf_addc(&sts, '\n');
    nd_buf_addstr(&sts, crhash);
    out->string_to_sign = nd_buf_take(&sts);
    if (!out->scope || !out->string_to_sign) {
        rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
        goto done;
    }

    /* signing key */
    size_t sl = strlen(key->secret_access_key);
    char *k0 = malloc(sl + 5);
    if (!k0) {
        rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");
        goto done;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, key->secret_access_key, sl + 1);
    unsigned char kd[32], kr[32], ks[32], kc[32], sig[32];
    bool ok = hmac256(&sx, k0, sl + 4, date, 8, kd) && hmac256(&sx, kd, 32, region, strlen(region), kr) &&
              hmac256(&sx, kr, 32, service, strlen(service), ks) && hmac256(&sx, ks, 32, "aws4_request", 12, kc) &&
              hmac256(&sx, kc, 32, out->string_to_sign, strlen(out->string_to_sign), sig);
    OPENSSL_cleanse(k0, sl + 4);
    free(k0);
    OPENSSL_cleanse(kd, sizeof kd);
    OPENSSL_cleanse(kr, sizeof kr);
    OPENSSL_cleanse(ks, sizeof ks);
    OPENSSL_cleanse(kc, sizeof kc);
    if (!ok) {
        rc = nd_err_set(err, -EIO, "sigv4: HMAC-SHA256 failed");
        goto done;
    }
    hex_of(sig, 32, out->signature);

    nd_buf au = ND_BUF_INIT;
    nd_buf_addstr(&au, "AWS4-HMAC-SHA256 Credential=");
    nd_buf_addstr(&au, key->access_key_id);
    nd_buf_addc(&au, '/');
    nd_buf_addstr(&au, out->scope);
    nd_buf_addstr(&au, ", SignedHeaders=");
    nd_buf_addstr(&au, out->signed_headers);
    nd_buf_addstr(&au, ", Signature=");
    nd_buf_addstr(&au, out->signature);
    out->authorization = nd_buf_take(&au);
    if (!out->authorization)
        rc = nd_err_set(err, -ENOMEM, "sigv4: out of memory");

done:
    sha_close(&sx);
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
    if (rc < 0)
        nd_sigv4_result_free(out);
    return rc;
}

char *nd_sigv4_amz_date(int64_t unix_time, char out[17])
{
    time_t t = (time_t)unix_time;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
    return out;
}

/* Copies the value of "Name=" (up to ',' or end, trimmed) from an Authorization header. */
static bool auth_field(const char *v, const char *name, char *out, size_t outsz)
{
    size_t nl = strlen(name);
    const char *p = v;
    while ((p = strstr(p, name)) != NULL) {
        if ((p == v || p[-1] == ' ' || p[-1] == ',') && p[nl] == '=') {
            p += nl + 1;
            size_t l = strcspn(p, ", ");
            if (l == 0 || l >= outsz)
                return false;
            memcpy(out, p, l);
            out[l] = '\0';
            return true;
        }
        p += nl;
    }
    return false;
}

int nd_sigv4_parse_authorization(const char *value, nd_sigv4_auth *out, nd_err *err)
{
    memset(out, 0, sizeof *out);
    if (!value || strncmp(value, "AWS4-HMAC-SHA256 ", 17) != 0)
        return nd_err_set(err, -EBADMSG, "Authorization header requires 'AWS4-HMAC-SHA256' algorithm");
    const char *rest = value + 17;
    char cred[512];
    if (!auth_field(rest, "Credential", cred, sizeof cred))
        return nd_err_set(err, -EBADMSG, "Authorization header requires 'Credential' parameter");
    if (!auth_field(rest, "SignedHeaders", out->signed_headers, sizeof out->signed_headers))
        return nd_err_set(err, -EBADMSG, "Authorization header requires 'SignedHeaders' parameter");
    if (!auth_field(rest, "Signature", out->signature, sizeof out->signature))
        return nd_err_set(err, -EBADMSG, "Authorization header requires 'Signature' parameter");
    /* AK/DATE/REGION/SERVICE/aws4_request */
    char *parts[5];
    int np = 0;
    char *save = NULL;
    for (char *t = strtok_r(cred, "/", &save); t && np < 5; t = strtok_r(NULL, "/", &save))
        parts[np++] = t;
    if (np != 5 || strcmp(parts[4], "aws4_request") != 0 || strlen(parts[1]) != 8 ||
        strlen(parts[0]) >= sizeof out->access_key_id || strlen(parts[2]) >= sizeof out->region ||
        strlen(parts[3]) >= sizeof out->service)
        return nd_err_set(err, -EBADMSG, "Authorization header has a malformed Credential scope");
    snprintf(out->access_key_id, sizeof out->access_key_id, "%s", parts[0]);
    snprintf(out->date, sizeof out->date, "%s", parts[1]);
    snprintf(out->region, sizeof out->region, "%s", parts[2]);
    snprintf(out->service, sizeof out->service, "%s", parts[3]);
    return 0;
}

bool nd_sigv4_signature_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}
