/*
 * test_frame.c — the KMS proxy framing and JSON codec (core/frame.c). Expected bytes are written out by hand from
 * the reference's definition ([u32 BE len][u8 type][u32 BE seq][payload], len = 5 + payload), not computed with
 * the code under test.
 */
#include "nd_frame.h"
#include "nd_codec.h"
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

/* ---- the request parser's fast path against the slow one (jansson's tree) ---- */

static void rnd_ws(char **p)
{
    static const char *const ws[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
    *p += sprintf(*p, "%s", ws[rand() % 7]);
}

/* A byte field's value in one of the forms an enclave may send, or a near miss. */
static void rnd_bytes(char **p)
{
    /* mostly well formed; near misses now and then */
    int n = rand() % 20 == 0 ? rand() % 3 : 1 + rand() % 300;
    int form = rand() % 12;
    if (form < 5) { /* array of numbers */
        **p = '[';
        (*p)++;
        rnd_ws(p);
        for (int i = 0; i < n; i++) {
            static const char *const odd[] = {"256", "-1", "01", "1.0", "1e2", "\"1\"", "null", "-0", "999", "00"};
            if (rand() % 200 == 0)
                *p += sprintf(*p, "%s", odd[rand() % 10]);
            else
                *p += sprintf(*p, "%d", rand() % 256);
            rnd_ws(p);
            if (i + 1 < n) {
                **p = ',';
                (*p)++;
                rnd_ws(p);
            }
        }
        **p = ']';
        (*p)++;
    } else if (form < 11) { /* base64 */
        unsigned char b[300];
        for (int i = 0; i < n; i++)
            b[i] = (unsigned char)rand();
        char *t = NULL;
        size_t tl = 0;
        nd_b64_encode(b, (size_t)n, &t, &tl, NULL);
        if (t && tl && rand() % 30 == 0)
            t[rand() % (int)tl] = "=/+-_!"[rand() % 6]; /* a near miss */
        *p += sprintf(*p, "\"%s\"", t ? t : "");
        free(t);
    } else { /* base64 with an escaped slash, or something else entirely */
        static const char *const other[] = {"\"AQ\\/w==\"", "{}", "null", "true", "\"\"", "[]", "[[1]]", "{\"a\":1}"};
        *p += sprintf(*p, "%s", other[rand() % 8]);
    }
}

/* A request text: valid most of the time, with the fields in any order, whitespace, escaped keys, unknown keys that
 * hold arrays, and near misses. buf must hold 64 KiB. */
static size_t rnd_request(char *buf)
{
    static const char *const ops[] = {"GenerateDataKey", "Decrypt", "GenerateRandom", "Encrypt"};
    char members[8][8192];
    int nm = 0;
    /* the payload: what the op needs, then optional fields, in a random order */
    int op = rand() % 4;
    char fields[10][4096];
    int nf = 0;
    char *p;
#define FIELD(...) (p = fields[nf++], p += sprintf(p, __VA_ARGS__))
    if (op == 0 || op == 3)
        FIELD("\"key_id\":\"alias/k%d\"", rand() % 3);
    if (op == 0 && rand() % 4)
        FIELD("\"key_spec\":\"%s\"", rand() % 3 ? "AES_256" : "AES_128");
    else if (op == 0 || op == 2)
        FIELD("\"number_of_bytes\":%d", rand() % 10 ? 1 + rand() % 1024 : rand() % 1100);
    if (op == 1) {
        FIELD("\"ciphertext_blob\":");
        rnd_ws(&p);
        rnd_bytes(&p);
    }
    if (op == 3) {
        FIELD("\"plaintext\":");
        rnd_bytes(&p);
    }
    if (op != 3 && rand() % 5) {
        FIELD("\"recipient\":");
        rnd_ws(&p);
        if (rand() % 2) {
            p += sprintf(p, "{");
            if (rand() % 2)
                p += sprintf(p, "\"key_encryption_algorithm\":\"%s\",",
                             rand() % 8 ? "RSAES_OAEP_SHA_256" : "RSAES_OAEP_SHA_1");
            p += sprintf(p, "\"attestation_document\":");
            rnd_ws(&p);
            rnd_bytes(&p);
            rnd_ws(&p);
            p += sprintf(p, "}");
        } else {
            rnd_bytes(&p);
        }
    }
    while (nf < 10 && rand() % 3 == 0) {
        switch (rand() % 8) {
        case 0: FIELD("\"encryption_context\":{\"a\":\"b\",\"c\":\"d\"}"); break;
        case 1: FIELD("\"grant_tokens\":[\"g1\",\"g2\"]"); break;
        case 2: FIELD("\"other\":{\"recipient\":[1,2],\"ciphertext_blob\":\"AQ==\",\"x\":[[3]]}"); break;
        case 3: FIELD("\"recipi\\u0065nt\":"); rnd_bytes(&p); break;
        case 4: FIELD("\"plaintext\":"); rnd_bytes(&p); break;
        case 5: FIELD("\"encryption_algorithm\":\"SYMMETRIC_DEFAULT\""); break;
        case 6: FIELD("\"ciphertext_blob\":"); rnd_bytes(&p); break;
        default: FIELD("\"key_id\":\"again\""); break;
        }
    }
#undef FIELD
    for (int i = nf - 1; i > 0; i--) { /* shuffle */
        int j = rand() % (i + 1);
        char t[4096];
        memcpy(t, fields[i], sizeof t);
        memcpy(fields[i], fields[j], sizeof t);
        memcpy(fields[j], t, sizeof t);
    }
    p = members[nm++];
    p += sprintf(p, "\"%s\":", rand() % 20 ? "request" : "re\\u0071uest");
    rnd_ws(&p);
    bool op_first = rand() % 2;
    p += sprintf(p, "{");
    if (op_first)
        p += sprintf(p, "\"op\":\"%s\",", rand() % 30 ? ops[op] : "Sign");
    p += sprintf(p, "\"%s\":{", rand() % 20 ? "payload" : "p\\u0061yload");
    for (int i = 0; i < nf; i++) {
        rnd_ws(&p);
        p += sprintf(p, "%s%s", i ? "," : "", fields[i]);
    }
    p += sprintf(p, "}");
    if (!op_first)
        p += sprintf(p, ",\"op\":\"%s\"", ops[op]);
    p += sprintf(p, "}");
    if (rand() % 20)
        sprintf(members[nm++], "\"request_id\":\"%08x-req\"", (unsigned)rand());
    if (rand() % 2)
        sprintf(members[nm++], "\"trace_id\":\"t\\\"%d\"", rand() % 10);
    if (rand() % 5 == 0)
        sprintf(members[nm++], "\"extra\":[[1,2,3],{\"request\":{\"payload\":{\"recipient\":[1]}}}]");
    if (rand() % 10 == 0)
        sprintf(members[nm++], "\"payload\":{\"recipient\":\"AQID\"}");
    for (int i = nm - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        char t[8192];
        memcpy(t, members[i], sizeof t);
        memcpy(members[i], members[j], sizeof t);
        memcpy(members[j], t, sizeof t);
    }
    p = buf;
    *p++ = '{';
    for (int i = 0; i < nm; i++) {
        rnd_ws(&p);
        p += sprintf(p, "%s%s", i ? "," : "", members[i]);
        rnd_ws(&p);
    }
    *p++ = '}';
    *p = '\0';
    return (size_t)(p - buf);
}

/* Mutates t in place (n bytes, room for 64 KiB): a few byte changes, insertions, deletions or a cut. */
static size_t mutate(char *t, size_t n)
{
    static const char pick[] = "\"[]{}:,\\ 0123456789-.eE\t\nAZaz+/=u";
    int m = 1 + rand() % 3;
    for (int i = 0; i < m && n > 0; i++) {
        size_t at = (size_t)rand() % n;
        char c = rand() % 8 ? pick[rand() % (int)(sizeof pick - 1)] : (char)rand();
        switch (rand() % 4) {
        case 0: t[at] = c; break;
        case 1: memmove(t + at + 1, t + at, n - at); t[at] = c; n++; break;
        case 2: memmove(t + at, t + at + 1, n - at - 1); n--; break;
        default: if (rand() % 4 == 0) n = at; break;
        }
    }
    return n;
}

static bool same_bytes(const nd_bytes *a, const nd_bytes *b)
{
    return a->len == b->len && (a->data == NULL) == (b->data == NULL) &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static bool same_json(json_t *a, json_t *b)
{
    return (!a && !b) || (a && b && json_equal(a, b));
}

/* Parses t both ways; returns 1 when the fast path took it (and then checks it got what the slow path gets). */
static int compare_paths(const char *t, size_t n)
{
    nd_kms_request f, s;
    nd_err e;
    nd_err_clear(&e);
    int rf = nd_kms_request_parse_fast(t, n, &f);
    int rs = nd_kms_request_parse_slow(t, n, &s, &e);
    CHECK(rf == 0 || rf == -EAGAIN);
    if (rf == 0) {
        bool same = rs == 0 && strcmp(f.request_id, s.request_id) == 0 && strcmp(f.trace_id, s.trace_id) == 0 &&
                    f.op == s.op && strcmp(f.key_id, s.key_id) == 0 && strcmp(f.key_spec, s.key_spec) == 0 &&
                    f.number_of_bytes == s.number_of_bytes &&
                    strcmp(f.encryption_algorithm, s.encryption_algorithm) == 0 &&
                    strcmp(f.key_encryption_algorithm, s.key_encryption_algorithm) == 0 &&
                    same_bytes(&f.ciphertext_blob, &s.ciphertext_blob) && same_bytes(&f.plaintext, &s.plaintext) &&
                    same_bytes(&f.recipient, &s.recipient) && same_json(f.encryption_context, s.encryption_context) &&
                    same_json(f.grant_tokens, s.grant_tokens);
        if (!same)
            fprintf(stderr, "  fast and slow paths differ (slow: %d %s) on: %.*s\n", rs, e.msg, (int)n, t);
        CHECK(same);
    } else {
        CHECK(f.recipient.data == NULL && f.request_id[0] == '\0'); /* declined: r zeroed */
    }
    /* the parser itself is the fast path, then the slow one: same outcome as the slow path alone */
    nd_kms_request a;
    nd_err ea;
    nd_err_clear(&ea);
    int ra = nd_kms_request_parse(t, n, &a, &ea);
    CHECK_EQ_INT(ra, rs);
    if (ra < 0 && strcmp(ea.msg, e.msg) != 0) {
        fprintf(stderr, "  messages differ: \"%s\" vs \"%s\"\n", ea.msg, e.msg);
        CHECK(0);
    }
    CHECK(same_bytes(&a.recipient, &s.recipient));
    nd_kms_request_free(&a);
    nd_kms_request_free(&f);
    nd_kms_request_free(&s);
    return rf == 0;
}

static void test_request_fast_path(void)
{
    /* the forms an enclave sends go the fast way */
    nd_kms_request r;
    CHECK_EQ_INT(nd_kms_request_parse_fast(gdk_arrays, strlen(gdk_arrays), &r), 0);
    CHECK(r.recipient.len == 4 && r.recipient.data[3] == 255);
    nd_kms_request_free(&r);
    static const char *const takes[] = {
        "{\"request_id\":\"x\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":\"AQID/w==\","
        "\"recipient\":{\"key_encryption_algorithm\":\"RSAES_OAEP_SHA_256\",\"attestation_document\":[0, 1 ,255]}}}}",
        "{\"request\":{\"payload\":{\"plaintext\":[ 9 ],\"key_id\":\"k\"},\"op\":\"Encrypt\"},\"request_id\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof takes / sizeof takes[0]; i++)
        CHECK_EQ_INT(compare_paths(takes[i], strlen(takes[i])), 1);
    /* and what it must leave to the slow path, whose messages stay the same */
    static const char *const declines[] = {
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1,256]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[01]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1.0]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":\"AQ\\/w==\"}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":\"@@\"}}}",
        /* a repeated key (one literal: clang's -Wstring-concatenation) */
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1],\"ciphertext_blob\":[2]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1]}}} x",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1]",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Sign\",\"payload\":{\"ciphertext_blob\":[1]}}}",
        "{\"request_id\":\"a\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1]}}]",
        "{\"request_id\":\"\xff\",\"request\":{\"op\":\"Decrypt\",\"payload\":{\"ciphertext_blob\":[1]}}}",
    };
    for (size_t i = 0; i < sizeof declines / sizeof declines[0]; i++)
        CHECK_EQ_INT(compare_paths(declines[i], strlen(declines[i])), 0);

    /* random requests and mutations of them: whatever the fast path takes, the slow path parses the same */
    char *buf = malloc(65536);
    srand(1616);
    int taken = 0, valid = 0, rounds = 6000;
    for (int i = 0; i < rounds; i++) {
        size_t n = rnd_request(buf);
        if (i % 2)
            n = mutate(buf, n);
        taken += compare_paths(buf, n);
        nd_kms_request s;
        valid += nd_kms_request_parse_slow(buf, n, &s, NULL) == 0;
        nd_kms_request_free(&s);
    }
    fprintf(stderr, "  fast path: %d of %d texts (%d valid)\n", taken, rounds, valid);
    CHECK(taken > rounds / 20);  /* the generator reaches the fast path often, */
    CHECK(valid > taken);        /* and some valid texts are left to the slow path */
    free(buf);
}

/* The KMS body as the proxy built it before (a jansson tree, dumped compactly): the reference for
 * nd_kms_upstream_body. */
static int ref_b64_field(json_t *o, const char *key, const nd_bytes *b)
{
    if (!b->data)
        return 0;
    char *t = NULL;
    size_t tl = 0;
    if (nd_b64_encode(b->data, b->len, &t, &tl, NULL) < 0)
        return -1;
    int rc = json_object_set_new(o, key, json_stringn(t, tl));
    free(t);
    return rc;
}

static char *ref_upstream_body(const nd_kms_request *r)
{
    json_t *o = json_object();
    if (r->key_id[0])
        json_object_set_new(o, "KeyId", json_string(r->key_id));
    if (r->key_spec[0])
        json_object_set_new(o, "KeySpec", json_string(r->key_spec));
    if (r->number_of_bytes)
        json_object_set_new(o, "NumberOfBytes", json_integer(r->number_of_bytes));
    if (r->encryption_algorithm[0])
        json_object_set_new(o, "EncryptionAlgorithm", json_string(r->encryption_algorithm));
    if (r->encryption_context)
        json_object_set(o, "EncryptionContext", r->encryption_context);
    if (r->grant_tokens)
        json_object_set(o, "GrantTokens", r->grant_tokens);
    ref_b64_field(o, "CiphertextBlob", &r->ciphertext_blob);
    ref_b64_field(o, "Plaintext", &r->plaintext);
    if (r->recipient.data) {
        json_t *rec = json_object();
        json_object_set_new(rec, "KeyEncryptionAlgorithm", json_string(r->key_encryption_algorithm));
        ref_b64_field(rec, "AttestationDocument", &r->recipient);
        json_object_set_new(o, "Recipient", rec);
    }
    char *out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return out;
}

static void test_upstream_body_like_jansson(void)
{
    static const char *const pieces[] = {"a", "\"", "\\", "/", "\n", "\x01", "\xc3\xa9", "\xff", "key/1", " ", "\x7f"};
    srand(1717);
    unsigned char bytes[3][600];
    int compared = 0;
    for (int round = 0; round < 400; round++) {
        nd_kms_request r;
        memset(&r, 0, sizeof r);
        char *strs[] = {r.key_id, r.key_spec, r.encryption_algorithm, r.key_encryption_algorithm};
        size_t caps[] = {sizeof r.key_id, sizeof r.key_spec, sizeof r.encryption_algorithm,
                         sizeof r.key_encryption_algorithm};
        for (int i = 0; i < 4; i++)
            for (int j = rand() % 4; j > 0; j--) {
                const char *p = pieces[rand() % (int)(sizeof pieces / sizeof pieces[0])];
                if (strlen(strs[i]) + strlen(p) < caps[i])
                    strcat(strs[i], p);
            }
        r.number_of_bytes = rand() % 3 ? 0 : 1 + rand() % 1024;
        if (rand() % 2)
            r.encryption_context = json_pack("{s:s,s:s}", "b\"/", "\xc3\xa9", "a", "x\ny");
        if (rand() % 3 == 0)
            r.grant_tokens = json_pack("[s,s]", "g1", "g/\\2");
        nd_bytes *bs[] = {&r.ciphertext_blob, &r.plaintext, &r.recipient};
        for (int i = 0; i < 3; i++) {
            if (rand() % 3 == 0)
                continue;
            bs[i]->len = (size_t)(rand() % 600);
            for (size_t k = 0; k < bs[i]->len; k++)
                bytes[i][k] = (unsigned char)rand();
            bs[i]->data = malloc(bs[i]->len + 1);
            memcpy(bs[i]->data, bytes[i], bs[i]->len);
        }
        size_t n = 0;
        char *got = nd_kms_upstream_body(&r, &n);
        char *want = ref_upstream_body(&r);
        CHECK(got && want && n == strlen(got));
        if (got && want && strcmp(got, want) != 0) {
            fprintf(stderr, "  body differs:\n  got  %s\n  want %s\n", got, want);
            CHECK(0);
        }
        compared++;
        free(got);
        free(want);
        nd_kms_request_free(&r);
    }
    CHECK_EQ_INT(compared, 400);
    /* and a parsed request, as the proxy has it */
    nd_kms_request r;
    CHECK_EQ_INT(nd_kms_request_parse(gdk_arrays, strlen(gdk_arrays), &r, NULL), 0);
    char *got = nd_kms_upstream_body(&r, NULL);
    CHECK_EQ_STR(got, "{\"KeyId\":\"alias/ephemeral-ml-test\",\"KeySpec\":\"AES_256\",\"Recipient\":"
                      "{\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\",\"AttestationDocument\":\"AQID/w==\"}}");
    free(got);
    nd_kms_request_free(&r);
}

int main(void)
{
    ND_RUN(test_header_bytes);
    ND_RUN(test_decoder_bytewise);
    ND_RUN(test_decoder_errors);
    ND_RUN(test_request_parse);
    ND_RUN(test_request_rejects);
    ND_RUN(test_request_fast_path);
    ND_RUN(test_upstream_body_like_jansson);
    ND_RUN(test_response_roundtrip);
    ND_RUN(test_response_encode_like_jansson);
    return nd_test_summary();
}
