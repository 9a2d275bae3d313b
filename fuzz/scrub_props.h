/*
 * scrub_props.h — the scrubber's properties on one input, in one place for the fuzz target (fuzz/fuzz_scrub.c) and
 * the replay of every kept input in unit.scrub (tests/unit/test_scrub.c):
 *  - bounded growth: the output is at most the input plus 16 bytes per redaction (nd_scrub_total);
 *  - idempotent: scrubbing the output again gives the same bytes;
 *  - chunking: feeding the input in two chunks (split at data[0] % (size + 1)) gives the same bytes;
 *  - no planted secret out: after the input, an `aws_secret_access_key = …` line and a bare access key id; and, with
 *    the input's first 2 KiB around them, the credential documents and HTTP messages that carry credentials on a
 *    real host — the IMDS role-credentials document as IMDS serves it (the example output of "Retrieve security
 *    credentials from instance metadata", AWS EC2 user guide), inside an HTTP/1.1 response, compact and JSON-escaped
 *    in a log line, a SigV4-signed KMS request with its session token, an IMDSv2-authenticated request, and a KMS
 *    Decrypt response with its Plaintext — neither the values nor any 12-byte piece of them may come out. (Not
 *    planted: the bare body of `PUT /latest/api/token`, an IMDSv2 token with no name beside it — docs/bundle.md.)
 * Header-only (static functions): the fuzz build and the unit tests link the core differently.
 */
#ifndef ND_SCRUB_PROPS_H
#define ND_SCRUB_PROPS_H

#include "nd_scrub.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nd_props_buf {
    char *p;
    size_t n, cap;
    int oom;
} nd_props_buf;

static int nd_props_sink(void *ud, const void *d, size_t n)
{
    nd_props_buf *b = ud;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 64;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return -ENOMEM;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    return 0;
}

/* Scrubs in[0..n) (in up to two chunks, the first split bytes long) into *out. Returns the redaction count. */
static size_t nd_props_scrub(nd_scrub *S, const void *in, size_t n, size_t split, nd_props_buf *out)
{
    nd_scrub_begin(S, nd_props_sink, out);
    if (split > n)
        split = n;
    if (n) { /* libFuzzer passes NULL for the empty input */
        nd_scrub_feed(S, in, split);
        nd_scrub_feed(S, (const char *)in + split, n - split);
    }
    nd_scrub_end(S);
    return nd_scrub_total(S);
}

/* The planted values: fixed, so an input that already holds one (the fuzzer copies bytes it saw compared) is
 * recognised and that value's check skipped. */
static const char *const nd_props_secrets[] = {
    "ASIAFUZZIMDSPLANT042",                                                          /* access key id */
    "HLxDsCxqjBLd3qbJskH53rGTD+2U3OpSH5r44wLz",                                      /* secret access key */
    "IQoJb3JpZ2luX2VjEwTGV6HJYq+EEyUqj37Xa2fCs/4Gu0GSzVrE/BfeTRxLyvoCvi2e4RlaqNp0MIj8UeaOQt/8CALeWusH2=", /* token */
    "68d7b79d6bd1ace221096efca19d4413b5699c91b43bfed1b941a540742fb2b8",              /* SigV4 signature */
    "Z0ndTpQ07pHY6WCmKzNd1J5dhNi8IWZxIztj9Itqfxd7bkUagHTr==",                        /* IMDSv2 token */
    "lQ2uLfomNZX8XItt5MadHJQCFV1u90Ht77yW8yde9wq=",                                  /* KMS Plaintext */
};
#define ND_PROPS_NSECRETS (sizeof nd_props_secrets / sizeof nd_props_secrets[0])
#define ND_PROPS_PIECE 12

/* Any 12-byte piece of secret k in p[0..n)? (pieces at every 4th offset, and the last one) */
static int nd_props_has_piece(const char *p, size_t n, size_t k)
{
    const char *v = nd_props_secrets[k];
    size_t l = strlen(v);
    for (size_t o = 0;; o += 4) {
        if (o + ND_PROPS_PIECE > l)
            o = l - ND_PROPS_PIECE;
        if (memmem(p, n, v + o, ND_PROPS_PIECE))
            return 1;
        if (o + ND_PROPS_PIECE >= l)
            return 0;
    }
}

/* Writes the planted text of variant `which` into t (room for 4096 bytes); returns its length. */
static size_t nd_props_doc(int which, char *t)
{
    const char *const *v = nd_props_secrets;
    char doc[1024];
    /* the IMDS document exactly as IMDS serves it (two-space indent, " : ") */
    snprintf(doc, sizeof doc,
             "{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : \"2026-11-22T14:39:16Z\",\n  \"Type\" : \"AWS-HMAC\",\n"
             "  \"AccessKeyId\" : \"%s\",\n  \"SecretAccessKey\" : \"%s\",\n  \"Token\" : \"%s\",\n"
             "  \"Expiration\" : \"2026-11-22T20:39:16Z\"\n}",
             v[0], v[1], v[2]);
    char compact[1024];
    snprintf(compact, sizeof compact,
             "{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-22T14:39:16Z\",\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"%s\","
             "\"SecretAccessKey\":\"%s\",\"Token\":\"%s\",\"Expiration\":\"2026-11-22T20:39:16Z\"}",
             v[0], v[1], v[2]);
    switch (which) {
    case 0:
        return (size_t)snprintf(t, 4096, "$ curl -s http://169.254.169.254/latest/meta-data/iam/security-credentials/"
                                         "role\n%s\n", doc);
    case 1:
        return (size_t)snprintf(t, 4096,
                                "< HTTP/1.1 200 OK\r\n< Content-Type: text/plain\r\n< Accept-Ranges: none\r\n"
                                "< Content-Length: %zu\r\n< Server: EC2ws\r\n<\r\n%s\n", strlen(doc), doc);
    case 2: {
        /* compact, then quoted inside a JSON log line (every " becomes \") */
        size_t o = (size_t)snprintf(t, 4096, "{\"level\":\"debug\",\"msg\":\"imds response: ");
        for (const char *c = compact; *c && o < 4000; c++) {
            if (*c == '"')
                t[o++] = '\\';
            t[o++] = *c;
        }
        return o + (size_t)snprintf(t + o, 4096 - o, "\"}\ncredentials %s\n", compact);
    }
    case 3:
        return (size_t)snprintf(t, 4096,
                                "POST / HTTP/1.1\r\nHost: kms.us-east-1.amazonaws.com\r\nX-Amz-Target: TrentService.Decrypt\r\n"
                                "X-Amz-Date: 20261122T143916Z\r\nX-Amz-Security-Token: %s\r\n"
                                "Authorization: AWS4-HMAC-SHA256 Credential=%s/20261122/us-east-1/kms/aws4_request, "
                                "SignedHeaders=host;x-amz-date;x-amz-security-token;x-amz-target, Signature=%s\r\n\r\n"
                                "GET /latest/meta-data/iam/security-credentials/role HTTP/1.1\r\n"
                                "X-aws-ec2-metadata-token: %s\r\n\r\n",
                                v[2], v[0], v[3], v[4]);
    default:
        return (size_t)snprintf(t, 4096,
                                "HTTP/1.1 200 OK\r\nx-amzn-RequestId: 0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7\r\n"
                                "Content-Type: application/x-amz-json-1.1\r\n\r\n"
                                "{\"EncryptionAlgorithm\":\"SYMMETRIC_DEFAULT\",\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:"
                                "key/1234abcd-12ab-34cd-56ef-1234567890ab\",\"Plaintext\":\"%s\"}\n",
                                v[5]);
    }
}
#define ND_PROPS_NDOCS 5

/* Checks every property on data[0..size). Returns NULL, or what failed (a static message). */
static const char *nd_scrub_check_props(nd_scrub *S, const uint8_t *data, size_t size)
{
    static char why[256];
    const char *fail = NULL;
    if (!data) /* libFuzzer's empty input */
        data = (const uint8_t *)"";
    nd_props_buf a = {0}, b = {0}, c = {0};
    size_t total = nd_props_scrub(S, data, size, size, &a);
    if (a.oom)
        goto out;
    if (a.n > size + 16 * total) {
        snprintf(why, sizeof why, "grew from %zu to %zu bytes with %zu redactions", size, a.n, total);
        fail = why;
        goto out;
    }
    nd_props_scrub(S, a.p, a.n, a.n, &b);
    if (!b.oom && (a.n != b.n || (a.n && memcmp(a.p, b.p, a.n) != 0))) {
        snprintf(why, sizeof why, "not idempotent: %zu then %zu bytes", a.n, b.n);
        fail = why;
        goto out;
    }
    size_t split = size ? data[0] % (size + 1) : 0;
    nd_props_scrub(S, data, size, split, &c);
    if (!c.oom && (a.n != c.n || (a.n && memcmp(a.p, c.p, a.n) != 0))) {
        snprintf(why, sizeof why, "chunking at %zu changed the output", split);
        fail = why;
        goto out;
    }

    /* planted after the whole input: a secret key after its name, a bare access key id */
    {
        static const char sk[] = "Zq9Xw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCbA9z8y7";
        static const char id[] = "AKIAFUZZPLANTED00042";
        if (!memmem(data, size, sk, 40) && !memmem(data, size, id, 20)) {
            char *in = malloc(size + 200);
            if (in) {
                if (size)
                    memcpy(in, data, size);
                size_t o = size + (size_t)sprintf(in + size, "\naws_secret_access_key = %s\nid %s\n", sk, id);
                nd_props_buf d = {0};
                nd_props_scrub(S, in, o, o, &d);
                /* the planted lines follow arbitrary bytes: an open PEM block may swallow them (fine: they are gone) */
                if (d.n && (memmem(d.p, d.n, sk, 40) || memmem(d.p, d.n, id, 20)))
                    fail = "planted secret survived";
                free(d.p);
                free(in);
            }
        }
        if (fail)
            goto out;
    }

    /* credential documents and HTTP messages, between the input's first 2 KiB (split at a chosen point) */
    {
        size_t ctx = size < 2048 ? size : 2048;
        int skip[ND_PROPS_NSECRETS];
        for (size_t k = 0; k < ND_PROPS_NSECRETS; k++)
            skip[k] = nd_props_has_piece((const char *)data, ctx, k);
        size_t at = ctx ? data[ctx - 1] % (ctx + 1) : 0;
        char *in = malloc(ctx + 4096 + 2);
        if (!in)
            goto out;
        for (int w = 0; w < ND_PROPS_NDOCS && !fail; w++) {
            if (at)
                memcpy(in, data, at);
            size_t o = at;
            in[o++] = '\n';
            o += nd_props_doc(w, in + o);
            if (ctx > at)
                memcpy(in + o, data + at, ctx - at);
            o += ctx - at;
            nd_props_buf d = {0};
            nd_props_scrub(S, in, o, o, &d);
            for (size_t k = 0; k < ND_PROPS_NSECRETS && !fail; k++) {
                if (!skip[k] && d.n && nd_props_has_piece(d.p, d.n, k)) {
                    snprintf(why, sizeof why, "planted document %d: a piece of secret %zu survived", w, k);
                    fail = why;
                }
            }
            free(d.p);
        }
        free(in);
    }
out:
    free(a.p);
    free(b.p);
    free(c.p);
    return fail;
}

#endif
