/*
 * codec.c — base64, hex and digests (declared in nd_codec.h). The base64 and digest work is OpenSSL's
 * (EVP_EncodeBlock/EVP_DecodeBlock, EVP_Digest); this file adds what OpenSSL lacks: a strict validation pass that
 * rejects anything RFC 4648 does not allow and names the offset of the first bad byte, so a truncated or mangled
 * chunk (an SSM bundle, a KMS byte field) is reported precisely instead of decoding to garbage.
 */
#include "nd_codec.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static void describe_char(unsigned char c, char *buf, size_t n)
{
    if (c >= 0x21 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
}

int nd_b64_encode(const void *in, size_t n, char **out, size_t *outlen, nd_err *err)
{
    *out = NULL;
    if (n > (size_t)INT_MAX / 4 * 3 - 3)
        return nd_err_set(err, -EOVERFLOW, "base64: input of %zu bytes is too large", n);
    size_t len = (n + 2) / 3 * 4;
    char *buf = malloc(len + 1);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "base64: out of memory");
    /* EVP_EncodeBlock encodes whole input without line breaks and NUL-terminates. */
    int got = n ? EVP_EncodeBlock((unsigned char *)buf, in, (int)n) : 0;
    buf[got] = '\0';
    *out = buf;
    if (outlen)
        *outlen = (size_t)got;
    return 0;
}

int nd_b64_decode(const char *in, size_t n, unsigned char **out, size_t *outlen, nd_err *err)
{
    *out = NULL;
    const unsigned char *s = (const unsigned char *)in;
    char what[32];
    size_t pad = 0;
    /* Validation first: alphabet, padding only at the end, whole quanta, zero pad bits. */
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            if (pad == 0 && i + 2 < n)
                return nd_err_set(err, -EBADMSG, "base64: padding '=' at offset %zu is not at the end", i);
            pad++;
            if (pad > 2)
                return nd_err_set(err, -EBADMSG, "base64: too much padding at offset %zu", i);
            continue;
        }
        if (pad) /* a data character after '=' */
            return nd_err_set(err, -EBADMSG, "base64: data after padding at offset %zu", i);
        if (b64_value(s[i]) < 0) {
            describe_char(s[i], what, sizeof what);
            return nd_err_set(err, -EBADMSG, "base64: invalid character %s at offset %zu", what, i);
        }
    }
    if (n % 4 != 0)
        return nd_err_set(err, -EBADMSG, "base64: truncated input: length %zu is not a multiple of 4 (offset %zu)",
                          n, n - n % 4);
    if (n > (size_t)INT_MAX)
        return nd_err_set(err, -EOVERFLOW, "base64: input of %zu bytes is too large", n);
    if (pad) {
        /* The bits below the last data character that fall into the padding must be zero (RFC 4648 §3.5). */
        size_t last = n - pad - 1;
        int v = b64_value(s[last]);
        int mask = pad == 1 ? 0x03 : 0x0f;
        if (v & mask)
            return nd_err_set(err, -EBADMSG, "base64: non-zero pad bits in the character at offset %zu", last);
    }
    size_t len = n / 4 * 3;
    unsigned char *buf = malloc(len + 1);
    if (!buf)
        return nd_err_set(err, -ENOMEM, "base64: out of memory");
    int got = n ? EVP_DecodeBlock(buf, s, (int)n) : 0;
    if (got < 0 || (size_t)got != len) {
        free(buf);
        return nd_err_set(err, -EBADMSG, "base64: OpenSSL rejected the input");
    }
    len -= pad; /* EVP_DecodeBlock counts the padding as zero bytes */
    buf[len] = '\0';
    *out = buf;
    if (outlen)
        *outlen = len;
    return 0;
}

void nd_hex_encode(const void *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int nd_hex_decode(const char *in, size_t n, unsigned char *out, size_t outsz, nd_err *err)
{
    const unsigned char *s = (const unsigned char *)in;
    char what[32];
    for (size_t i = 0; i < n; i++) {
        if (hex_value(s[i]) < 0) {
            describe_char(s[i], what, sizeof what);
            return nd_err_set(err, -EBADMSG, "hex: invalid character %s at offset %zu", what, i);
        }
    }
    if (n % 2)
        return nd_err_set(err, -EBADMSG, "hex: odd number of digits (%zu)", n);
    if (n / 2 > outsz)
        return nd_err_set(err, -ENOBUFS, "hex: %zu bytes do not fit in a buffer of %zu", n / 2, outsz);
    if (n / 2 > (size_t)INT_MAX)
        return nd_err_set(err, -EOVERFLOW, "hex: input too large");
    for (size_t i = 0; i < n / 2; i++)
        out[i] = (unsigned char)(hex_value(s[2 * i]) << 4 | hex_value(s[2 * i + 1]));
    return (int)(n / 2);
}

int nd_digest(const char *alg, const void *in, size_t n, unsigned char *out, size_t *outlen, nd_err *err)
{
    const EVP_MD *md = NULL;
    if (alg && strcmp(alg, "sha256") == 0)
        md = EVP_sha256();
    else if (alg && strcmp(alg, "sha384") == 0)
        md = EVP_sha384();
    else
        return nd_err_set(err, -ENOTSUP, "digest: unsupported algorithm '%s' (sha256 or sha384)", alg ? alg : "(null)");
    unsigned int len = 0;
    if (EVP_Digest(in, n, out, &len, md, NULL) != 1)
        return nd_err_set(err, -EIO, "digest: OpenSSL %s failed", alg);
    if (outlen)
        *outlen = len;
    return 0;
}
