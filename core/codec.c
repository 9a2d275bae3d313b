/*
 * codec.c — base64, hex and digests (declared in nd_codec.h). The base64 and digest work is OpenSSL's
 * (EVP_EncodeBlock/EVP_DecodeBlock, EVP_Digest); this file adds what OpenSSL lacks: a strict validation pass that
 * rejects anything RFC 4648 does not allow and names the offset of the first bad byte, so a truncated or mangled
 * chunk (an SSM bundle, a KMS byte field) is reported precisely instead of decoding to garbage. Well-formed input is
 * decoded in one table-driven pass (b64_decode_fast: the KMS proxy decodes an attestation document and a CMS
 * EnvelopedData per request); anything else goes through the validation, then EVP_DecodeBlock.
 */
#include "nd_codec.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
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

/* 1 + the value of each base64 character, 0 for every other byte */
static const unsigned char b64_dec[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] =
    10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] =
    19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] =
    28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] =
    37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] =
    46, ['u'] = 47, ['v'] = 48, ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] =
    55, ['3'] = 56, ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] =
    64,
};

/* Decodes whole quanta of the alphabet with at most two '=' at the end and zero pad bits in one pass: what every
 * well-formed input is (a KMS blob, an attestation document). Returns the decoded bytes (malloc'd, NUL after them),
 * or NULL, with *bad set, for anything else (the caller's validation then names the first bad byte), or NULL with
 * *bad clear when memory ran out. */
static unsigned char *b64_decode_fast(const unsigned char *s, size_t n, size_t *outlen, bool *bad)
{
    *bad = true;
    if (n % 4 != 0 || n > (size_t)INT_MAX)
        return NULL;
    size_t pad = n >= 4 && s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    unsigned char *buf = malloc(n / 4 * 3 + 1);
    if (!buf) {
        *bad = false;
        return NULL;
    }
    unsigned char *o = buf;
    unsigned invalid = 0;
    size_t full = pad ? n - 4 : n;
    for (size_t i = 0; i < full; i += 4) {
        unsigned a = b64_dec[s[i]], b = b64_dec[s[i + 1]], c = b64_dec[s[i + 2]], d = b64_dec[s[i + 3]];
        invalid |= !a | !b | !c | !d;
        uint32_t v = ((a - 1u) << 18) | ((b - 1u) << 12) | ((c - 1u) << 6) | (d - 1u);
        o[0] = (unsigned char)(v >> 16);
        o[1] = (unsigned char)(v >> 8);
        o[2] = (unsigned char)v;
        o += 3;
    }
    if (pad) {
        const unsigned char *q = s + n - 4;
        unsigned a = b64_dec[q[0]], b = b64_dec[q[1]], c = pad == 1 ? b64_dec[q[2]] : 1;
        invalid |= !a | !b | !c;
        if (!invalid) {
            uint32_t v = ((a - 1u) << 18) | ((b - 1u) << 12) | ((c - 1u) << 6);
            invalid |= pad == 1 ? (c - 1u) & 0x03 : (b - 1u) & 0x0f; /* pad bits must be zero */
            *o++ = (unsigned char)(v >> 16);
            if (pad == 1)
                *o++ = (unsigned char)(v >> 8);
        }
    }
    if (invalid) {
        OPENSSL_cleanse(buf, n / 4 * 3 + 1);
        free(buf);
        return NULL;
    }
    *o = '\0';
    *bad = false;
    *outlen = (size_t)(o - buf);
    return buf;
}

int nd_b64_decode(const char *in, size_t n, unsigned char **out, size_t *outlen, nd_err *err)
{
    *out = NULL;
    const unsigned char *s = (const unsigned char *)in;
    size_t fl = 0;
    bool bad = false;
    unsigned char *fast = b64_decode_fast(s, n, &fl, &bad);
    if (fast) {
        *out = fast;
        if (outlen)
            *outlen = fl;
        return 0;
    }
    if (!bad)
        return nd_err_set(err, -ENOMEM, "base64: out of memory");
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
