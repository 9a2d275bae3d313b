/* test_codec.c — base64 against the RFC 4648 §10 test vectors, strict decoding errors with offsets, hex, and
 * SHA-256/SHA-384 against the FIPS 180-2 "abc" and two-block vectors. */
#include "ndtest.h"
#include "nd_codec.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

static const char *rfc4648[][2] = {
    {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

static void b64_rfc4648_vectors(void)
{
    for (size_t i = 0; i < sizeof rfc4648 / sizeof rfc4648[0]; i++) {
        char *enc = NULL;
        size_t elen = 99;
        CHECK_EQ_INT(nd_b64_encode(rfc4648[i][0], strlen(rfc4648[i][0]), &enc, &elen, NULL), 0);
        CHECK_EQ_STR(enc, rfc4648[i][1]);
        CHECK_EQ_INT(elen, strlen(rfc4648[i][1]));
        free(enc);
        unsigned char *dec = NULL;
        size_t dlen = 99;
        CHECK_EQ_INT(nd_b64_decode(rfc4648[i][1], strlen(rfc4648[i][1]), &dec, &dlen, NULL), 0);
        CHECK_EQ_INT(dlen, strlen(rfc4648[i][0]));
        CHECK(dec && memcmp(dec, rfc4648[i][0], dlen) == 0);
        free(dec);
    }
}

static void b64_binary_roundtrip(void)
{
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    for (size_t n = 0; n <= 256; n += 1) {
        char *enc;
        size_t elen;
        CHECK_EQ_INT(nd_b64_encode(all, n, &enc, &elen, NULL), 0);
        unsigned char *dec;
        size_t dlen;
        CHECK_EQ_INT(nd_b64_decode(enc, elen, &dec, &dlen, NULL), 0);
        CHECK_EQ_INT(dlen, n);
        CHECK(memcmp(dec, all, n) == 0);
        free(enc);
        free(dec);
    }
    /* 0xfb 0xff encodes with both '+' and '/' */
    char *enc;
    CHECK_EQ_INT(nd_b64_encode("\xfb\xff\xbf", 3, &enc, NULL, NULL), 0);
    CHECK_EQ_STR(enc, "+/+/");
    free(enc);
}

static void expect_bad(const char *in, const char *msg)
{
    unsigned char *dec = (unsigned char *)"sentinel";
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_b64_decode(in, strlen(in), &dec, NULL, &err), -EBADMSG);
    CHECK(dec == NULL);
    CHECK_EQ_STR(err.msg, msg);
}

static void b64_strict_errors(void)
{
    expect_bad("Zm9v#mFy", "base64: invalid character '#' at offset 4");
    expect_bad("Zm9vYmF", "base64: truncated input: length 7 is not a multiple of 4 (offset 4)");
    expect_bad("Zm9v\nYmFy", "base64: invalid character byte 0x0a at offset 4");
    expect_bad("Zm=vYmFy", "base64: padding '=' at offset 2 is not at the end");
    expect_bad("Zm9=Zm9v", "base64: padding '=' at offset 3 is not at the end");
    expect_bad("Zg=a", "base64: data after padding at offset 3");
    expect_bad("Zh==", "base64: non-zero pad bits in the character at offset 1");
    expect_bad("Zm9=", "base64: non-zero pad bits in the character at offset 2");
    expect_bad("Zm9v-_==", "base64: invalid character '-' at offset 4"); /* base64url is not accepted */
    expect_bad("Zg", "base64: truncated input: length 2 is not a multiple of 4 (offset 0)");
}

static void hex_both_ways(void)
{
    char out[9];
    nd_hex_encode("\x00\x01\xab\xff", 4, out);
    CHECK_EQ_STR(out, "0001abff");
    unsigned char buf[4];
    CHECK_EQ_INT(nd_hex_decode("0001ABff", 8, buf, sizeof buf, NULL), 4);
    CHECK(memcmp(buf, "\x00\x01\xab\xff", 4) == 0);
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_hex_decode("00g1", 4, buf, sizeof buf, &err), -EBADMSG);
    CHECK_EQ_STR(err.msg, "hex: invalid character 'g' at offset 2");
    CHECK_EQ_INT(nd_hex_decode("001", 3, buf, sizeof buf, &err), -EBADMSG);
    CHECK_EQ_STR(err.msg, "hex: odd number of digits (3)");
    CHECK_EQ_INT(nd_hex_decode("0011223344", 10, buf, sizeof buf, &err), -ENOBUFS);
    CHECK_EQ_INT(nd_hex_decode("", 0, buf, sizeof buf, &err), 0);
}

static void check_digest(const char *alg, const char *msg, const char *want)
{
    unsigned char md[ND_DIGEST_MAX];
    char hex[2 * ND_DIGEST_MAX + 1];
    size_t len = 0;
    CHECK_EQ_INT(nd_digest(alg, msg, strlen(msg), md, &len, NULL), 0);
    CHECK_EQ_INT(len, strlen(want) / 2);
    nd_hex_encode(md, len, hex);
    CHECK_EQ_STR(hex, want);
}

static void digests_fips_vectors(void)
{
    /* FIPS 180-2 Appendix B.1 / D.1 ("abc") and B.2 (two blocks), plus the empty string. */
    check_digest("sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    check_digest("sha256", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    check_digest("sha256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_digest("sha384", "abc",
                 "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
    check_digest("sha384",
                 "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
                 "09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039");
    unsigned char md[ND_DIGEST_MAX];
    nd_err err;
    nd_err_clear(&err);
    CHECK_EQ_INT(nd_digest("md5", "x", 1, md, NULL, &err), -ENOTSUP);
    CHECK_EQ_STR(err.msg, "digest: unsupported algorithm 'md5' (sha256 or sha384)");
}

/* RFC 4648 strictness written out independently: alphabet, '=' only as the last one or two characters of whole
 * quanta, zero pad bits. */
static int ref_b64_val(unsigned char c)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(a, c) : NULL;
    return p ? (int)(p - a) : -1;
}

static bool ref_b64_valid(const char *s, size_t n)
{
    if (n % 4)
        return false;
    size_t pad = 0;
    while (pad < n && pad < 3 && s[n - 1 - pad] == '=')
        pad++;
    if (pad > 2)
        return false;
    for (size_t i = 0; i < n - pad; i++)
        if (ref_b64_val((unsigned char)s[i]) < 0)
            return false;
    if (pad && (ref_b64_val((unsigned char)s[n - pad - 1]) & (pad == 1 ? 0x03 : 0x0f)))
        return false;
    return true;
}

/* Random encodings and mutations of them: accepted exactly when strict RFC 4648 allows, and decoded as OpenSSL's
 * EVP_DecodeBlock decodes (the one-pass decoder against the reference). */
static void b64_decode_matches_reference(void)
{
    static const char pick[] = "AZaz09+/=-_ \n.\x80";
    srand(4848);
    char s[400];
    int accepted = 0;
    for (int round = 0; round < 20000; round++) {
        unsigned char b[280];
        size_t bn = (size_t)(rand() % 280);
        for (size_t i = 0; i < bn; i++)
            b[i] = (unsigned char)rand();
        char *t = NULL;
        size_t n = 0;
        CHECK_EQ_INT(nd_b64_encode(b, bn, &t, &n, NULL), 0);
        memcpy(s, t, n);
        free(t);
        if (round % 2 && n > 0)
            for (int m = rand() % 3; m >= 0 && n > 0; m--) {
                size_t at = (size_t)rand() % n;
                if (rand() % 3)
                    s[at] = pick[rand() % (int)(sizeof pick - 1)];
                else
                    n = at + (rand() % 2 ? 0 : 1);
            }
        unsigned char *d = NULL;
        size_t dl = 0;
        nd_err e;
        int rc = nd_b64_decode(s, n, &d, &dl, &e);
        bool valid = ref_b64_valid(s, n);
        CHECK_EQ_INT(rc == 0, valid);
        if (rc == 0 && valid) {
            accepted++;
            unsigned char want[300];
            int got = n ? EVP_DecodeBlock(want, (const unsigned char *)s, (int)n) : 0;
            size_t pad = n && s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
            CHECK(got >= 0 && dl == (size_t)got - pad && memcmp(d, want, dl) == 0 && d[dl] == '\0');
        }
        free(d);
    }
    CHECK(accepted > 10000);
}

int main(void)
{
    ND_RUN(b64_rfc4648_vectors);
    ND_RUN(b64_binary_roundtrip);
    ND_RUN(b64_strict_errors);
    ND_RUN(b64_decode_matches_reference);
    ND_RUN(hex_both_ways);
    ND_RUN(digests_fips_vectors);
    return nd_test_summary();
}
