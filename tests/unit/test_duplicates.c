/*
 * test_duplicates.c — no map the core reads may repeat a key (issue 13): CBOR through nd_cbor_load (at any depth,
 * integer keys compared by value whatever their encoded width), JSON through jansson's JSON_REJECT_DUPLICATES in
 * the readers of nitro-cli output, the proxy's responses and EIF metadata. Duplicates are rejected with a one-line
 * error, never half-read.
 */
#include "ndtest.h"
#include "nd_cbor.h"
#include "nd_frame.h"
#include "nd_nitrocli.h"

#include <jansson.h>

static void cbor_maps(void)
{
    nd_err err = {0};
    /* {"a": 1, "b": 2} loads; {"a": 1, "a": 2} does not */
    static const unsigned char ok[] = {0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x02};
    static const unsigned char dup[] = {0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02};
    cbor_item_t *it = nd_cbor_load(ok, sizeof ok, "test", &err);
    CHECK(it != NULL);
    if (it)
        cbor_decref(&it);
    CHECK(nd_cbor_load(dup, sizeof dup, "test", &err) == NULL);
    CHECK(strstr(err.msg, "test repeats a map key") != NULL);
    /* nested: [{1: 0, 1 (as 0x18 0x01): 0}] */
    static const unsigned char nested[] = {0x81, 0xa2, 0x01, 0x00, 0x18, 0x01, 0x00};
    CHECK(nd_cbor_load(nested, sizeof nested, "test", &err) == NULL);
    /* byte-string keys and text keys with the same bytes are different keys */
    static const unsigned char kinds[] = {0xa2, 0x41, 0x61, 0x01, 0x61, 0x61, 0x02};
    it = nd_cbor_load(kinds, sizeof kinds, "test", &err);
    CHECK(it != NULL);
    if (it)
        cbor_decref(&it);
    /* 65 levels of nesting are refused, not recursed into */
    unsigned char deep[70];
    memset(deep, 0x81, 65);
    deep[65] = 0x00;
    CHECK(nd_cbor_load(deep, 66, "test", &err) == NULL);
}

static void json_maps(void)
{
    nd_err err = {0};
    nd_kms_response r;
    memset(&r, 0, sizeof r);
    const char *twice = "{\"request_id\":\"1\",\"response\":{\"Error\":{\"code\":\"a\",\"message\":\"m\"}},"
                        "\"response\":{\"GenerateRandom\":{\"plaintext\":[1]}}}";
    CHECK(nd_kms_response_parse(twice, strlen(twice), &r, &err) < 0);
    nd_kms_response_free(&r);
    json_t *j = NULL;
    size_t end = 0;
    const char *desc = "[{\"EnclaveID\":\"i-1-enc1\",\"EnclaveID\":\"i-2-enc2\",\"ProcessID\":1,\"EnclaveCID\":16,"
                       "\"NumberOfCPUs\":2,\"CPUIDs\":[1,3],\"MemoryMiB\":512,\"State\":\"RUNNING\",\"Flags\":\"NONE\"}]";
    CHECK(nd_nitro_parse_json(ND_NITRO_DESCRIBE_ENCLAVES, desc, strlen(desc), &j, &end, &err) < 0);
    json_decref(j);
    j = NULL;
    /* the same document without the repeated key is read */
    const char *once = "[{\"EnclaveID\":\"i-1-enc1\",\"ProcessID\":1,\"EnclaveCID\":16,"
                       "\"NumberOfCPUs\":2,\"CPUIDs\":[1,3],\"MemoryMiB\":512,\"State\":\"RUNNING\",\"Flags\":\"NONE\"}]";
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_DESCRIBE_ENCLAVES, once, strlen(once), &j, &end, &err), 0);
    json_decref(j);
    const char *resp = "{\"request_id\":\"1\",\"response\":{\"Error\":{\"code\":\"a\",\"message\":\"m\"}}}";
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(nd_kms_response_parse(resp, strlen(resp), &r, &err), 0);
    nd_kms_response_free(&r);
}

int main(void)
{
    ND_RUN(cbor_maps);
    ND_RUN(json_maps);
    return nd_test_summary();
}
