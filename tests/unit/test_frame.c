/*
 * test_frame.c — the KMS proxy framing and JSON codec (core/frame.c). Expected bytes are written out by hand from
 * the reference's definition ([u32 BE len][u8 type][u32 BE seq][payload], len = 5 + payload), not computed with
 * the code under test.
 */
#include "nd_frame.h"
#include "ndtest.h"

#include <jansson.h>
#include <stdlib.h>

static void test_header_bytes(void)
{
    unsigned char *f = NULL;
    size_t n = 0;
    CHECK_EQ_INT(nd_frame_build(ND_FRAME_KMS_PROXY, 0x01020304u, "hi", 2, &f, &n, NULL), 0);
    static const unsigned char want[] = {0, 0, 0, 7, 6, 1, 2, 3, 4, 'h', 'i'};
    CHECK_EQ_INT(n, sizeof want);
    CHECK(f && memcmp(f, want, sizeof want) == 0);
    free(f);
    CHECK_EQ_STR(nd_frame_type_name(8), "Audit");
    CHECK_EQ_STR(nd_frame_type_name(9), "Unknown");
}

static void test_decoder_bytewise(void)
{
    /* Two frames, fed one byte at a time: the decoder must produce both exactly once. */
    static const unsigned char s[] = {0, 0, 0, 5, 4, 0, 0, 0, 9,                 /* Heartbeat seq 9, empty */
                                      0, 0, 0, 8, 6, 0, 0, 1, 0, 'a', 'b', 'c'}; /* KmsProxy seq 256 "abc" */
    nd_frame_decoder d;
    nd_frame_decoder_init(&d, 64);
    int got = 0;
    for (size_t i = 0; i < sizeof s; i++) {
        CHECK_EQ_INT(nd_frame_feed(&d, s + i, 1, NULL), 0);
        nd_frame f;
        int rc;
        while ((rc = nd_frame_next(&d, &f, NULL)) == 1) {
            if (got == 0) {
                CHECK_EQ_INT(f.type, 4);
                CHECK_EQ_INT(f.seq, 9);
                CHECK_EQ_INT(f.len, 0);
            } else {
                CHECK_EQ_INT(f.type, 6);
                CHECK_EQ_INT(f.seq, 256);
                CHECK(f.len == 3 && memcmp(f.payload, "abc", 3) == 0);
            }
            got++;
        }
        CHECK_EQ_INT(rc, 0);
    }
    CHECK_EQ_INT(got, 2);
    CHECK_EQ_INT(nd_frame_pending(&d), 0);
    nd_frame_decoder_free(&d);
}

static void test_decoder_errors(void)
{
    nd_frame_decoder d;
    nd_err e;
    nd_frame f;
    nd_frame_decoder_init(&d, 16);
    static const unsigned char big[] = {0, 0, 0, 22, 6, 0, 0, 0, 1}; /* payload 17 > 16 */
    CHECK_EQ_INT(nd_frame_feed(&d, big, sizeof big, &e), -EMSGSIZE);
    CHECK(strstr(e.msg, "exceeds") != NULL);
    CHECK_EQ_INT(nd_frame_next(&d, &f, NULL), -EMSGSIZE); /* sticky */
    nd_frame_decoder_free(&d);

    nd_frame_decoder_init(&d, 16);
    static const unsigned char tiny[] = {0, 0, 0, 4, 6, 0, 0, 0};
    CHECK_EQ_INT(nd_frame_feed(&d, tiny, sizeof tiny, &e), -EBADMSG);
    nd_frame_decoder_free(&d);

    nd_frame_decoder_init(&d, 16);
    static const unsigned char exact[] = {0, 0, 0, 21, 6, 0, 0, 0, 1};
    CHECK_EQ_INT(nd_frame_feed(&d, exact, sizeof exact, NULL), 0); /* payload exactly 16 is fine */
    CHECK_EQ_INT(nd_frame_next(&d, &f, NULL), 0);
    nd_frame_decoder_free(&d);
}

static const char gdk_arrays[] =
    "{\"request_id\":\"1b4e28ba-2fa1-11d2-883f-0016d3cca427\",\"trace_id\":\"t-1\",\"request\":{\"op\":"
    "\"GenerateDataKey\",\"payload\":{\"key_id\":\"alias/ephemeral-ml-test\",\"key_spec\":\"AES_256\","
    "\"recipient\":[1,2,3,255]}}}";

static void test_request_parse(void)
{
    nd_kms_request r;
    nd_err e;
    CHECK_EQ_INT(nd_kms_request_parse(gdk_arrays, strlen(gdk_arrays), &r, &e), 0);
    CHECK_EQ_STR(r.request_id, "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
    CHECK_EQ_STR(r.trace_id, "t-1");
    CHECK_EQ_INT(r.op, ND_KMS_OP_GENERATE_DATA_KEY);
    CHECK_EQ_STR(r.key_id, "alias/ephemeral-ml-test");
    CHECK_EQ_STR(r.key_spec, "AES_256");
    CHECK_EQ_INT(r.recipient.len, 4);
    CHECK(r.recipient.data && r.recipient.data[3] == 255);
    CHECK_EQ_STR(r.key_encryption_algorithm, "RSAES_OAEP_SHA_256");
    nd_kms_request_free(&r);

    /* The same bytes as base64 ("AQID/w==") and in the object form of recipient. */
    const char *b64 = "{\"request_id\":\"x\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":"
                      "\"AQID/w==\",\"recipient\":{\"attestation_document\":\"AQID/w==\"},"
                      "\"encryption_context\":{\"a\":\"b\"},\"grant_tokens\":[\"g\"]}}}";
    CHECK_EQ_INT(nd_kms_request_parse(b64, strlen(b64), &r, &e), 0);
    CHECK_EQ_INT(r.op, ND_KMS_OP_DECRYPT);
    CHECK(r.ciphertext_blob.len == 4 && memcmp(r.ciphertext_blob.data, "\x01\x02\x03\xff", 4) == 0);
    CHECK(r.recipient.len == 4 && memcmp(r.recipient.data, "\x01\x02\x03\xff", 4) == 0);
    CHECK(r.encryption_context != NULL && r.grant_tokens != NULL);

    /* Round trip through the encoder in both byte forms. */
    for (int b = 0; b < 2; b++) {
        size_t n = 0;
        char *s = nd_kms_request_encode(&r, b, &n);
        CHECK(s != NULL && strchr(s, '\n') == NULL);
        nd_kms_request r2;
        CHECK_EQ_INT(nd_kms_request_parse(s, n, &r2, &e), 0);
        CHECK(r2.ciphertext_blob.len == 4 && memcmp(r2.ciphertext_blob.data, "\x01\x02\x03\xff", 4) == 0);
        CHECK_EQ_STR(r2.request_id, "x");
        CHECK(json_equal(r2.encryption_context, r.encryption_context));
        nd_kms_request_free(&r2);
        free(s);
    }
    nd_kms_request_free(&r);
}

static void expect_bad(const char *json, const char *needle)
{
    nd_kms_request r;
    nd_err e;
    nd_err_clear(&e);
    int rc = nd_kms_request_parse(json, strlen(json), &r, &e);
    CHECK_EQ_INT(rc, -EINVAL);
    if (!strstr(e.msg, needle)) {
        fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", e.msg, needle);
        CHECK(0);
    }
    nd_kms_request_free(&r);
}

static void test_request_rejects(void)
{
    expect_bad("{not json", "bad JSON");
    expect_bad("[]", "object");
    expect_bad("{\"request\":{}}", "request_id");
    expect_bad("{\"request_id\":\"a\",\"request\":{\"op\":\"Sign\",\"payload\":{}}}", "unknown op");
    expect_bad("{\"request_id\":\"a\",\"request\":{\"op\":\"GenerateDataKey\",\"payload\":{\"key_id\":\"k\"}}}",
               "key_spec or number_of_bytes");
    expect_bad("{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1,256]}}}",
               "not a byte");
    expect_bad("{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":\"@@\"}}}",
               "ciphertext_blob");
    expect_bad("{\"request_id\":\"a\",\"request\":{\"op\":\"GenerateRandom\",\"payload\":{\"number_of_bytes\":2000}}}",
               "1..1024");
    /* Oversized ciphertext: 6145 numbers. */
    char *big = malloc(6145 * 2 + 200);
    char *p = big + sprintf(big, "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[");
    for (int i = 0; i < 6145; i++)
        p += sprintf(p, "%s1", i ? "," : "");
    strcpy(p, "]}}}");
    expect_bad(big, "1..6144");
    free(big);
    /* request_id longer than the bound. */
    char idb[400];
    snprintf(idb, sizeof idb, "{\"request_id\":\"%0200d\",\"request\":{}}", 0);
    expect_bad(idb, "exceeds");
}

static void test_response_roundtrip(void)
{
    nd_kms_response r;
    memset(&r, 0, sizeof r);
    strcpy(r.request_id, "rid");
    strcpy(r.kms_request_id, "kms-1");
    r.op = ND_KMS_OP_GENERATE_DATA_KEY;
    strcpy(r.key_id, "arn:aws:kms:us-east-1:111122223333:key/abc");
    unsigned char cfr[3] = {9, 8, 7};
    r.ciphertext_for_recipient.data = cfr;
    r.ciphertext_for_recipient.len = 3;
    size_t n;
    char *s = nd_kms_response_encode(&r, &n);
    CHECK(s != NULL);
    CHECK(strstr(s, "\"response\":{\"GenerateDataKey\":{") != NULL);
    CHECK(strstr(s, "\"ciphertext_for_recipient\":[9,8,7]") != NULL);
    nd_kms_response p;
    CHECK_EQ_INT(nd_kms_response_parse(s, n, &p, NULL), 0);
    CHECK_EQ_STR(p.kms_request_id, "kms-1");
    CHECK_EQ_INT(p.op, ND_KMS_OP_GENERATE_DATA_KEY);
    CHECK(p.ciphertext_for_recipient.len == 3 && p.ciphertext_for_recipient.data[2] == 7);
    CHECK(p.plaintext.data == NULL);
    nd_kms_response_free(&p);
    free(s);

    memset(&r, 0, sizeof r);
    strcpy(r.request_id, "rid");
    r.is_error = true;
    strcpy(r.error_code, "upstream_throttled");
    strcpy(r.error_message, "rate exceeded");
    s = nd_kms_response_encode(&r, &n);
    CHECK(s && strstr(s, "{\"Error\":{\"code\":\"upstream_throttled\",\"message\":\"rate exceeded\"}}"));
    CHECK_EQ_INT(nd_kms_response_parse(s, n, &p, NULL), 0);
    CHECK(p.is_error);
    CHECK_EQ_STR(p.error_code, "upstream_throttled");
    nd_kms_response_free(&p);
    free(s);
}

/* The reference: the response as a jansson tree dumped with JSON_COMPACT (what nd_kms_response_encode did before it
 * wrote the text itself). */
static void ref_str(json_t *o, const char *k, const char *v)
{
    if (v && v[0])
        json_object_set_new(o, k, json_string(v));
}

static void ref_bytes(json_t *o, const char *k, const nd_bytes *b)
{
    if (!b->data)
        return;
    json_t *a = json_array();
    for (size_t i = 0; i < b->len; i++)
        json_array_append_new(a, json_integer(b->data[i]));
    json_object_set_new(o, k, a);
}

static char *ref_encode(const nd_kms_response *r)
{
    json_t *root = json_object(), *resp = json_object(), *body = json_object();
    ref_str(root, "request_id", r->request_id);
    ref_str(root, "trace_id", r->trace_id);
    ref_str(root, "kms_request_id", r->kms_request_id);
    if (r->is_error) {
        json_object_set_new(body, "code", json_string(r->error_code[0] ? r->error_code : "internal"));
        json_object_set_new(body, "message", json_string(r->error_message));
        json_object_set_new(resp, "Error", body);
    } else {
        ref_str(body, "key_id", r->key_id);
        ref_str(body, "encryption_algorithm", r->encryption_algorithm);
        ref_bytes(body, "ciphertext_blob", &r->ciphertext_blob);
        ref_bytes(body, "plaintext", &r->plaintext);
        ref_bytes(body, "ciphertext_for_recipient", &r->ciphertext_for_recipient);
        json_object_set_new(resp, nd_kms_op_name(r->op), body);
    }
    json_object_set_new(root, "response", resp);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

/* Random responses (strings with quotes, escapes, control bytes, UTF-8 and bytes that are not UTF-8; byte fields
 * absent, empty or up to 3000 bytes; errors and every op) encode to exactly jansson's text. */
static void test_response_encode_like_jansson(void)
{
    static const char *const pieces[] = {"a", "\"", "\\", "/", "\n", "\x01", "\xc3\xa9", "\xff", "key/1", " ", "\t"};
    srand(4242);
    unsigned char *buf[3];
    for (int i = 0; i < 3; i++)
        buf[i] = malloc(3000);
    for (int round = 0; round < 300; round++) {
        nd_kms_response r;
        memset(&r, 0, sizeof r);
        char *strs[] = {r.request_id, r.trace_id, r.kms_request_id, r.key_id, r.encryption_algorithm, r.error_message};
        size_t caps[] = {sizeof r.request_id, sizeof r.trace_id, sizeof r.kms_request_id, sizeof r.key_id,
                         sizeof r.encryption_algorithm, sizeof r.error_message};
        for (int i = 0; i < 6; i++) {
            int parts = rand() % 5;
            for (int j = 0; j < parts; j++) {
                const char *p = pieces[rand() % (int)(sizeof pieces / sizeof pieces[0])];
                if (strlen(strs[i]) + strlen(p) < caps[i])
                    strcat(strs[i], p);
            }
        }
        r.is_error = rand() % 4 == 0;
        if (r.is_error && rand() % 2)
            strcpy(r.error_code, "upstream_throttled");
        r.op = (nd_kms_op)(1 + rand() % 4);
        nd_bytes *bs[] = {&r.ciphertext_blob, &r.plaintext, &r.ciphertext_for_recipient};
        for (int i = 0; i < 3; i++) {
            int kind = rand() % 3;
            if (kind == 0)
                continue;
            bs[i]->data = buf[i];
            bs[i]->len = kind == 1 ? 0 : (size_t)(rand() % 3000);
            for (size_t j = 0; j < bs[i]->len; j++)
                buf[i][j] = (unsigned char)rand();
        }
        size_t n = 0;
        char *got = nd_kms_response_encode(&r, &n);
        char *want = ref_encode(&r);
        CHECK(got && want && n == strlen(got) && strcmp(got, want) == 0);
        free(got);
        free(want);
    }
    for (int i = 0; i < 3; i++)
        free(buf[i]);
}

int main(void)
{
    ND_RUN(test_header_bytes);
    ND_RUN(test_decoder_bytewise);
    ND_RUN(test_decoder_errors);
    ND_RUN(test_request_parse);
    ND_RUN(test_request_rejects);
    ND_RUN(test_response_roundtrip);
    ND_RUN(test_response_encode_like_jansson);
    return nd_test_summary();
}
