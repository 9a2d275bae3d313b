/*
 * test_scrub.c — the secret scrubber: every built-in rule on the forms the real tools print (AWS CLI config, env,
 * IMDS JSON, HTTP headers, presigned URLs, PEM files), chunk boundaries anywhere, counts, run-time rules, binary
 * detection, and text that must pass untouched. The secrets are the AWS documentation's example values.
 */
#include "ndtest.h"
#include "nd_scrub.h"

#include <jansson.h>
#include <stdlib.h>

#define KEYID "AKIAIOSFODNN7EXAMPLE"
#define TKEYID "ASIAY34FZKBOKMUTVV7A"
#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDtqQ+aEXAMPLEtokenVALUE0123456789abcdef=="
#define SIG "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"

static char *scrub(nd_scrub *s, const char *in, int *count)
{
    char *out = NULL;
    int n = nd_scrub_buffer(s, in, strlen(in), &out, NULL);
    if (count)
        *count = n;
    return out;
}

static int count_of(nd_scrub *s, const char *rule)
{
    json_t *c = nd_scrub_counts(s);
    int v = (int)json_integer_value(json_object_get(c, rule));
    json_decref(c);
    return v;
}

static void expect(const char *in, const char *want, const char *rule, int n)
{
    nd_scrub *s = nd_scrub_new(NULL);
    int total = -1;
    char *out = scrub(s, in, &total);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(total, n);
    if (rule)
        CHECK_EQ_INT(count_of(s, rule), n);
    free(out);
    nd_scrub_free(s);
}

static void test_access_key_ids(void)
{
    expect("aws_access_key_id = " KEYID "\n", "aws_access_key_id = AKIA[REDACTED]\n", "aws_access_key_id", 1);
    expect("Credential=" TKEYID "/20260101/us-east-1/kms\n", "Credential=ASIA[REDACTED]/20260101/us-east-1/kms\n",
           "aws_access_key_id", 1);
    expect(KEYID, "AKIA[REDACTED]", "aws_access_key_id", 1);
    /* a longer upper-case word that merely contains AKIA is not a key id */
    expect("XAKIAIOSFODNN7EXAMPLE\n", "XAKIAIOSFODNN7EXAMPLE\n", NULL, 0);
}

static void test_secret_keys(void)
{
    expect("aws_secret_access_key = " SECRET "\n", "aws_secret_access_key = [REDACTED]\n", "aws_secret_access_key", 1);
    expect("export AWS_SECRET_ACCESS_KEY=" SECRET "\n", "export AWS_SECRET_ACCESS_KEY=[REDACTED]\n",
           "aws_secret_access_key", 1);
    expect("{\"secretAccessKey\": \"" SECRET "\"}", "{\"secretAccessKey\": \"[REDACTED]\"}", "aws_secret_access_key", 1);
}

static void test_session_tokens(void)
{
    expect("aws_session_token=" TOKEN "\n", "aws_session_token=[REDACTED]\n", "aws_session_token", 1);
    expect("AWS_SESSION_TOKEN='" TOKEN "'\n", "AWS_SESSION_TOKEN='[REDACTED]'\n", "aws_session_token", 1);
    expect("X-Amz-Security-Token: " TOKEN "\r\n", "X-Amz-Security-Token: [REDACTED]\r\n", "x_amz_security_token", 1);
    expect("GET /?X-Amz-Security-Token=IQoJb3%2F%2Fabc&X-Amz-Date=1\n", "GET /?X-Amz-Security-Token=[REDACTED]&X-Amz-Date=1\n",
           "x_amz_security_token", 1);
}

static void test_authorization_and_signatures(void)
{
    expect("Authorization: AWS4-HMAC-SHA256 Credential=" KEYID "/20260101/us-east-1/kms/aws4_request, "
           "SignedHeaders=host;x-amz-date, Signature=" SIG "\r\n",
           "Authorization: [REDACTED]\r\n", "authorization", 1);
    expect("{\"authorization\": \"Bearer abc.def\", \"x\": 1}", "{\"authorization\": \"[REDACTED]\", \"x\": 1}",
           "authorization", 1);
    expect("https://b.s3.amazonaws.com/k?X-Amz-Credential=x&X-Amz-Signature=" SIG "&y=1\n",
           "https://b.s3.amazonaws.com/k?X-Amz-Credential=x&X-Amz-Signature=[REDACTED]&y=1\n", "sigv4_signature", 1);
}

static void test_imds(void)
{
    const char *doc = "{\n  \"Code\" : \"Success\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"" TKEYID "\",\n"
                      "  \"SecretAccessKey\" : \"" SECRET "\",\n  \"Token\" : \"" TOKEN "\",\n"
                      "  \"Expiration\" : \"2026-11-22T21:00:00Z\"\n}\n";
    const char *want = "{\n  \"Code\" : \"Success\",\n  \"Type\" : \"AWS-HMAC\",\n  \"AccessKeyId\" : \"[REDACTED]\",\n"
                       "  \"SecretAccessKey\" : \"[REDACTED]\",\n  \"Token\" : \"[REDACTED]\",\n"
                       "  \"Expiration\" : \"2026-11-22T21:00:00Z\"\n}\n";
    expect(doc, want, "imds_credentials", 3);
}

static void test_pem(void)
{
    const char *pem = "before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretbody1\nsecretbody2==\n"
                      "-----END RSA PRIVATE KEY-----\nafter\n";
    const char *want = "before\n-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n-----END RSA PRIVATE KEY-----\nafter\n";
    expect(pem, want, "private_key", 1);
    expect("{\"key\":\"-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\nabc\\n-----END PRIVATE KEY-----\\n\"}",
           "{\"key\":\"-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----\\n\"}", "private_key", 1);
    /* a public key or certificate is not a secret */
    expect("-----BEGIN PUBLIC KEY-----\nMFkwEw\n-----END PUBLIC KEY-----\n",
           "-----BEGIN PUBLIC KEY-----\nMFkwEw\n-----END PUBLIC KEY-----\n", NULL, 0);
    /* a stream that ends inside the key drops the rest */
    expect("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", "-----BEGIN EC PRIVATE KEY-----\n[REDACTED]\n", "private_key", 1);
}

static void test_untouched(void)
{
    const char *txt = "Nov 22 10:00:01 host nitro-enclaves-allocator[812]: Allocating 2048 MiB\n"
                      "commit 0123456789abcdef0123456789abcdef01234567\ntoken bucket refilled\nsecret santa\n";
    expect(txt, txt, NULL, 0);
}

typedef struct acc {
    char buf[8192];
    size_t len;
} acc;

static int acc_sink(void *ud, const void *d, size_t n)
{
    acc *a = ud;
    if (a->len + n >= sizeof a->buf)
        return -ENOSPC;
    memcpy(a->buf + a->len, d, n);
    a->len += n;
    a->buf[a->len] = 0;
    return 0;
}

/* Feeding the same text in chunks of every size from 1 byte gives the same output as one buffer. */
static void test_chunk_boundaries(void)
{
    const char *in = "a " KEYID " b\naws_secret_access_key=" SECRET "\n-----BEGIN PRIVATE KEY-----\nxyz\n"
                     "-----END PRIVATE KEY-----\nAuthorization: Bearer x\nX-Amz-Security-Token: " TOKEN "\ntail";
    nd_scrub *s = nd_scrub_new(NULL);
    char *whole = scrub(s, in, NULL);
    size_t total = nd_scrub_total(s);
    size_t n = strlen(in);
    for (size_t chunk = 1; chunk <= n; chunk += (chunk < 40 ? 1 : 37)) {
        acc a = {.len = 0};
        nd_scrub_begin(s, acc_sink, &a);
        for (size_t off = 0; off < n; off += chunk)
            CHECK_EQ_INT(nd_scrub_feed(s, in + off, off + chunk <= n ? chunk : n - off), 0);
        CHECK_EQ_INT(nd_scrub_end(s), 0);
        CHECK_EQ_STR(a.buf, whole);
        CHECK_EQ_INT(nd_scrub_total(s), total);
    }
    CHECK(strstr(whole, KEYID) == NULL && strstr(whole, SECRET) == NULL && strstr(whole, TOKEN) == NULL);
    CHECK(strstr(whole, "xyz") == NULL);
    free(whole);
    nd_scrub_free(s);
}

static void test_sink_error(void)
{
    nd_scrub *s = nd_scrub_new(NULL);
    acc a = {.len = sizeof a.buf - 4};
    nd_scrub_begin(s, acc_sink, &a);
    CHECK_EQ_INT(nd_scrub_feed(s, "0123456789\n", 11), -ENOSPC);
    CHECK_EQ_INT(nd_scrub_end(s), -ENOSPC);
    nd_scrub_free(s);
}

static void test_runtime_rules(void)
{
    nd_err err;
    nd_scrub *s = nd_scrub_new(NULL);
    CHECK(nd_scrub_add_rule(s, "customer_id", "cust-([0-9]+)", "cust-<\\1 hidden>", false, &err) >= 0);
    CHECK_EQ_INT(nd_scrub_add_rule(s, "bad", "a(b", "x", false, &err), -EINVAL);
    CHECK(strstr(err.msg, "bad regular expression") != NULL);
    char *out = scrub(s, "id cust-42 and cust-7\n", NULL);
    CHECK_EQ_STR(out, "id cust-<42 hidden> and cust-<7 hidden>\n");
    CHECK_EQ_INT(count_of(s, "customer_id"), 2);
    free(out);
    nd_scrub_free(s);
}

/* A single line longer than the line limit is still processed, and secrets away from the cut are found. */
static void test_long_line(void)
{
    size_t n = ND_SCRUB_LINE_MAX * 2 + 100;
    char *in = malloc(n + 1);
    memset(in, 'x', n);
    for (size_t i = 1000; i < n; i += 1000)
        in[i] = ' ';
    memcpy(in + 10, " " KEYID " ", 22);
    memcpy(in + n - 40, " " KEYID " ", 22);
    in[n] = 0;
    nd_scrub *s = nd_scrub_new(NULL);
    char *out = NULL;
    size_t olen = 0;
    CHECK_EQ_INT(nd_scrub_buffer(s, in, n, &out, &olen), 2);
    CHECK(memmem(out, olen, KEYID, 20) == NULL);
    free(out);
    free(in);
    nd_scrub_free(s);
}

static void test_binary_detection(void)
{
    static const unsigned char gz[] = {0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};
    CHECK(nd_scrub_looks_binary(gz, sizeof gz));
    CHECK(nd_scrub_looks_binary("ab\0cd", 5));
    CHECK(!nd_scrub_looks_binary("plain text\n\twith tabs\r\n\x1b[0m colour\n", 34));
    CHECK(!nd_scrub_looks_binary("", 0));
    CHECK(!nd_scrub_looks_binary("UTF-8: ログ収集 ok\n", strlen("UTF-8: ログ収集 ok\n")));
}

int main(void)
{
    ND_RUN(test_access_key_ids);
    ND_RUN(test_secret_keys);
    ND_RUN(test_session_tokens);
    ND_RUN(test_authorization_and_signatures);
    ND_RUN(test_imds);
    ND_RUN(test_pem);
    ND_RUN(test_untouched);
    ND_RUN(test_chunk_boundaries);
    ND_RUN(test_sink_error);
    ND_RUN(test_runtime_rules);
    ND_RUN(test_long_line);
    ND_RUN(test_binary_detection);
    return nd_test_summary();
}
