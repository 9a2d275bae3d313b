/*
 * sign_cli.c — nitrodiag-sigv4-sign, a test-only tool: reads one JSON request description per stdin line and writes
 * one JSON line with what core/sigv4.c produced, so tests/sigv4/botocore_compare.py can compare it with botocore.
 *   in:  {"method","host","path","query","headers":[[name,value],...],"body_b64","access_key","secret","token",
 *         "region","service","date"}
 *   out: {"canonical_request","string_to_sign","signed_headers","signature","authorization"} or {"error": msg}
 */
#include "nd_sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/evp.h>

static const char *s(json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && *v ? v : NULL;
}

int main(void)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        json_error_t je;
        json_t *in = json_loadb(line, (size_t)n, 0, &je);
        json_t *out = json_object();
        if (!in) {
            json_object_set_new(out, "error", json_string(je.text));
        } else {
            json_t *hs = json_object_get(in, "headers");
            size_t nh = json_array_size(hs);
            nd_sigv4_header *h = calloc(nh + 1, sizeof *h);
            for (size_t i = 0; i < nh; i++) {
                h[i].name = json_string_value(json_array_get(json_array_get(hs, i), 0));
                h[i].value = json_string_value(json_array_get(json_array_get(hs, i), 1));
            }
            const char *b64 = s(in, "body_b64");
            unsigned char *body = NULL;
            size_t blen = 0;
            if (b64) {
                size_t l = strlen(b64);
                body = malloc(l);
                int r = EVP_DecodeBlock(body, (const unsigned char *)b64, (int)l);
                blen = (size_t)r - (l > 0 && b64[l - 1] == '=') - (l > 1 && b64[l - 2] == '=');
            }
            nd_sigv4_request r = { .method = s(in, "method"), .host = s(in, "host"), .path = s(in, "path"),
                                   .query = s(in, "query"), .headers = h, .nheaders = nh, .body = body,
                                   .body_len = blen };
            nd_sigv4_key k = { s(in, "access_key"), s(in, "secret"), s(in, "token") };
            nd_sigv4_result res;
            nd_err err;
            if (nd_sigv4_sign(&r, &k, s(in, "region"), s(in, "service"), s(in, "date"), true, &res, &err) == 0) {
                json_object_set_new(out, "canonical_request", json_string(res.canonical_request));
                json_object_set_new(out, "string_to_sign", json_string(res.string_to_sign));
                json_object_set_new(out, "signed_headers", json_string(res.signed_headers));
                json_object_set_new(out, "signature", json_string(res.signature));
                json_object_set_new(out, "authorization", json_string(res.authorization));
                nd_sigv4_result_free(&res);
            } else {
                json_object_set_new(out, "error", json_string(err.msg));
            }
            free(body);
            free(h);
        }
        char *o = json_dumps(out, JSON_COMPACT);
        puts(o ? o : "{}");
        free(o);
        json_decref(out);
        json_decref(in);
    }
    free(line);
    return 0;
}
