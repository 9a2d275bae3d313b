/*
 * test_kms_basics.c — pure parts of the KMS client: error-code normalisation (the rules in docs/kms-client.md),
 * classification for retries, and the one SigV4 vector quoted in docs/kms-client.md (get-vanilla). The full SigV4
 * suite is in test_sigv4.c; the client against the fake KMS in test_kms_client.c.
 */
#include "ndtest.h"
#include "nd_kms.h"
#include "nd_sigv4.h"

#include <stdlib.h>

static void normalize(void)
{
    char b[128];
    CHECK_EQ_STR(nd_kms_normalize_error(NULL, "com.amazonaws.kms#NotFoundException", b, sizeof b), "NotFoundException");
    CHECK_EQ_STR(nd_kms_normalize_error("ThrottlingException:http://internal.amazon.com/", "X", b, sizeof b),
                 "ThrottlingException");
    CHECK_EQ_STR(nd_kms_normalize_error("", "AccessDeniedException", b, sizeof b), "AccessDeniedException");
    CHECK_EQ_STR(nd_kms_normalize_error(NULL, NULL, b, sizeof b), "");
    CHECK_EQ_STR(nd_kms_normalize_error("aws#A:b#c", NULL, b, sizeof b), "A");
}

static void classify(void)
{
    CHECK_EQ_INT(nd_kms_classify(200, "", 0), ND_KMS_OK);
    CHECK_EQ_INT(nd_kms_classify(400, "ThrottlingException", 0), ND_KMS_THROTTLED);
    CHECK_EQ_INT(nd_kms_classify(400, "AccessDeniedException", 0), ND_KMS_ACCESS_DENIED);
    CHECK_EQ_INT(nd_kms_classify(400, "ExpiredTokenException", 0), ND_KMS_EXPIRED_TOKEN);
    CHECK_EQ_INT(nd_kms_classify(500, "KMSInternalException", 0), ND_KMS_UNAVAILABLE);
    CHECK_EQ_INT(nd_kms_classify(503, "HTTP503", 0), ND_KMS_UNAVAILABLE);
    CHECK_EQ_INT(nd_kms_classify(400, "NotFoundException", 0), ND_KMS_CLIENT_ERROR);
    CHECK_EQ_INT(nd_kms_classify(0, "ETIMEDOUT", -ETIMEDOUT), ND_KMS_TIMEOUT);
    CHECK_EQ_INT(nd_kms_classify(0, "ECONNRESET", -ECONNRESET), ND_KMS_UNAVAILABLE);
    CHECK_EQ_INT(nd_kms_classify(0, "ECONNREFUSED", -ECONNREFUSED), ND_KMS_UNAVAILABLE);
    CHECK(nd_kms_class_retryable(ND_KMS_THROTTLED));
    CHECK(!nd_kms_class_retryable(ND_KMS_ACCESS_DENIED));
    CHECK_EQ_STR(nd_kms_class_name(ND_KMS_ACCESS_DENIED), "access_denied");
}

static void get_vanilla(void)
{
    nd_sigv4_header h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", "20150830T123600Z" } };
    nd_sigv4_request r = { .method = "GET", .path = "/", .headers = h, .nheaders = 2 };
    nd_sigv4_key k = { "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL };
    nd_sigv4_result s;
    nd_err err;
    CHECK_EQ_INT(nd_sigv4_sign(&r, &k, "us-east-1", "service", "20150830T123600Z", true, &s, &err), 0);
    CHECK_EQ_STR(s.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_EQ_STR(s.authorization, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                                  "SignedHeaders=host;x-amz-date, "
                                  "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    CHECK_EQ_INT(s.nadd, 0);
    nd_sigv4_auth a;
    CHECK_EQ_INT(nd_sigv4_parse_authorization(s.authorization, &a, &err), 0);
    CHECK_EQ_STR(a.access_key_id, "AKIDEXAMPLE");
    CHECK_EQ_STR(a.region, "us-east-1");
    CHECK_EQ_STR(a.signed_headers, "host;x-amz-date");
    CHECK(nd_sigv4_signature_equal(a.signature, s.signature));
    nd_sigv4_result_free(&s);
    /* bad input: a clear error, no crash */
    CHECK_EQ_INT(nd_sigv4_sign(&r, &k, "us-east-1", "service", "2015-08-30", true, &s, &err), -EINVAL);
    CHECK_EQ_INT(nd_sigv4_parse_authorization("Basic x", &a, &err), -EBADMSG);
}

int main(void)
{
    ND_RUN(normalize);
    ND_RUN(classify);
    ND_RUN(get_vanilla);
    return nd_test_summary();
}
