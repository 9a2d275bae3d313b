/*
 * test_kms_client.c — the KMS client (core/kms.c, http.c, creds.c, imds.c) against nitrodiag-fake-kms: every
 * operation, every fault class (normalised error codes, classes, captured x-amzn-RequestId), keep-alive reuse (the
 * fake's connection counter), cancel without callback, concurrency, ExpiredTokenException refresh + retry once,
 * IMDSv2 credentials (refresh window, 401 → new token), and the Recipient path: the fake's CiphertextForRecipient is
 * opened with OpenSSL's CMS_decrypt and must give back the data key that Decrypt returns.
 */
#include "ndtest.h"
#include "fakekms_test.h"
#include "nd_attest.h"
#include "nd_creds.h"
#include "nd_http.h"
#include "nd_kms.h"

#include <jansson.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <uv.h>

static uv_loop_t loop;
static nd_ctx ctx;
static fakekms fk;

/* ---- helpers ----------------------------------------------------------------------------------------------------- */

typedef struct kres {
    int done;
    long status;
    char code[128];
    char msg[512];
    char rid[64];
    int terr;
    nd_kms_class cls;
    int attempts;
    bool newconn;
    json_t *body;
} kres;

static void on_kms(void *ud, const nd_kms_result *r)
{
    kres *k = ud;
    k->done++;
    k->status = r->http_status;
    snprintf(k->code, sizeof k->code, "%s", r->error_code);
    snprintf(k->msg, sizeof k->msg, "%s", r->message);
    snprintf(k->rid, sizeof k->rid, "%s", r->request_id);
    k->terr = r->transport_error;
    k->cls = r->cls;
    k->attempts = r->attempts;
    k->newconn = r->new_connection;
    k->body = json_loadb(r->body, r->body_len, 0, NULL);
}

static void on_timeout(uv_timer_t *t)
{
    *(int *)t->data = 1;
    uv_stop(t->loop);
}

/* Stops the loop as soon as the flag is set (before it would block in poll: a request may complete inside a timer
 * callback, and uv_run(UV_RUN_ONCE) would then still wait for the next event). */
static void on_prepare(uv_prepare_t *p)
{
    if (*(int *)p->data)
        uv_stop(p->loop);
}

/* Runs the loop until *flag becomes non-zero or secs pass. */
static void run_until(int *flag, double secs)
{
    uv_timer_t t;
    uv_prepare_t p;
    int expired = 0;
    uv_timer_init(&loop, &t);
    uv_prepare_init(&loop, &p);
    t.data = &expired;
    p.data = flag;
    uv_timer_start(&t, on_timeout, (uint64_t)(secs * 1000), 0);
    uv_prepare_start(&p, on_prepare);
    while (!*flag && !expired)
        uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&p, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* The time a call that should be answered is given: the fake answers at once, but TLS handshakes and a loaded 2-CPU
 * runner (or ASan) can make that take seconds; a call ends as soon as it is answered. Calls whose timeout is what
 * they test keep their own short one. */
#define CALL_S 30

static kres call(nd_kms_client *c, const char *op, const char *json, double timeout)
{
    kres k;
    memset(&k, 0, sizeof k);
    nd_err err;
    int rc = nd_kms_call(c, op, json, strlen(json), timeout, on_kms, &k, NULL, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0)
        run_until(&k.done, CALL_S + 30);
    CHECK_EQ_INT(k.done, 1);
    return k;
}

typedef struct hres {
    int done;
    long status;
    json_t *body;
} hres;

static void on_http(void *ud, const nd_http_response *r, nd_http_req *req)
{
    (void)req;
    hres *h = ud;
    h->done = 1;
    h->status = r->status;
    h->body = json_loadb(r->body, r->body_len, 0, NULL);
}

/* A control request to a fake (faults/stats), on its own nd_http (so its own connection). */
static json_t *control(const fakekms *f, const char *method, const char *path, const char *body)
{
    nd_http *h = NULL;
    nd_http_opts o = { .ca_file = f->ca[0] ? f->ca : NULL, .proxy = "" };
    nd_err err;
    if (nd_http_new(&loop, &o, &h, &err) < 0)
        return NULL;
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->url, path);
    nd_http_request q = { .method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0,
                          .timeout_s = CALL_S };
    hres r = { 0 };
    if (nd_http_start(h, &q, on_http, &r, NULL, &err) == 0)
        run_until(&r.done, CALL_S + 1);
    nd_http_free(h);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_EQ_INT(r.status, 200);
    return r.body;
}

static long stat_of(const fakekms *f, const char *name)
{
    json_t *j = control(f, "GET", "/__stats", NULL);
    long v = j ? (long)json_integer_value(json_object_get(j, name)) : -1;
    json_decref(j);
    return v;
}

static void faults(const char *json) { json_decref(control(&fk, "POST", "/__faults", json)); }

static nd_creds_provider *env_creds(const char *secret)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
    unsetenv("AWS_SESSION_TOKEN");
    nd_creds_opts co = { .source = ND_CREDS_ENV };
    nd_creds_provider *p = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_creds_provider_new(&ctx, &co, &p, &err), 0);
    return p;
}

static nd_kms_client *client(nd_creds_provider *p, const char *endpoint)
{
    /* a generous connect timeout: 40 parallel TLS handshakes on a loaded 2-core machine (or under ASan) are slow */
    nd_kms_opts o = { .region = "us-east-1", .endpoint = endpoint ? endpoint : fk.url, .ca_file = fk.ca,
                      .proxy = "", .creds = p, .connect_timeout_s = 10 };
    nd_kms_client *c = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_kms_client_new(&ctx, &o, &c, &err), 0);
    return c;
}

static void done_client(nd_kms_client *c, nd_creds_provider *p)
{
    nd_kms_client_free(c);
    nd_creds_provider_free(p);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static const char *jstr(json_t *j, const char *k) { return json_string_value(json_object_get(j, k)); }

/* ---- tests ------------------------------------------------------------------------------------------------------ */

static const char *SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

static void operations_and_keepalive(void)
{
    nd_creds_provider *p = env_creds(SECRET);
    nd_kms_client *c = client(p, NULL);
    long conns0 = stat_of(&fk, "connections");

    kres g = call(c, "GenerateDataKey", "{\"KeyId\":\"alias/ephemeral-ml-test\",\"KeySpec\":\"AES_256\"}", CALL_S);
    CHECK_EQ_INT(g.status, 200);
    CHECK_EQ_INT(g.cls, ND_KMS_OK);
    CHECK_EQ_STR(g.code, "");
    CHECK_EQ_INT(strlen(g.rid), 36);
    CHECK(g.newconn);
    CHECK_EQ_STR(jstr(g.body, "KeyId"), "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab");
    CHECK(jstr(g.body, "Plaintext") && strlen(jstr(g.body, "Plaintext")) == 44);
    CHECK(jstr(g.body, "CiphertextBlob") != NULL);

    char req[4096];
    snprintf(req, sizeof req, "{\"CiphertextBlob\":\"%s\"}", jstr(g.body, "CiphertextBlob"));
    kres d = call(c, "Decrypt", req, CALL_S);
    CHECK_EQ_INT(d.status, 200);
    CHECK_EQ_STR(jstr(d.body, "Plaintext"), jstr(g.body, "Plaintext"));
    CHECK(!d.newconn);                 /* kept alive */
    CHECK(strcmp(d.rid, g.rid) != 0);  /* a fresh request id per response */

    kres e = call(c, "Encrypt", "{\"KeyId\":\"1234abcd-12ab-34cd-56ef-1234567890ab\",\"Plaintext\":\"aGVsbG8=\","
                                "\"EncryptionContext\":{\"purpose\":\"test\"}}", CALL_S);
    CHECK_EQ_INT(e.status, 200);
    snprintf(req, sizeof req, "{\"CiphertextBlob\":\"%s\",\"EncryptionContext\":{\"purpose\":\"test\"}}",
             jstr(e.body, "CiphertextBlob"));
    kres d2 = call(c, "Decrypt", req, CALL_S);
    CHECK_EQ_STR(jstr(d2.body, "Plaintext"), "aGVsbG8=");
    /* wrong encryption context: InvalidCiphertextException, a client error */
    snprintf(req, sizeof req, "{\"CiphertextBlob\":\"%s\"}", jstr(e.body, "CiphertextBlob"));
    kres d3 = call(c, "Decrypt", req, CALL_S);
    CHECK_EQ_INT(d3.status, 400);
    CHECK_EQ_STR(d3.code, "InvalidCiphertextException");
    CHECK_EQ_INT(d3.cls, ND_KMS_CLIENT_ERROR);

    kres r = call(c, "GenerateRandom", "{\"NumberOfBytes\":16}", CALL_S);
    CHECK_EQ_INT(r.status, 200);
    CHECK(jstr(r.body, "Plaintext") && strlen(jstr(r.body, "Plaintext")) == 24);

    kres v = call(c, "GenerateDataKey", "{\"KeyId\":\"alias/ephemeral-ml-test\"}", CALL_S);
    CHECK_EQ_STR(v.code, "ValidationException");
    CHECK(strstr(v.msg, "specify either number of bytes or key spec") != NULL);
    kres nf = call(c, "GenerateDataKey", "{\"KeyId\":\"alias/nope\",\"NumberOfBytes\":32}", CALL_S);
    CHECK_EQ_STR(nf.code, "NotFoundException");
    CHECK_EQ_INT(nf.cls, ND_KMS_CLIENT_ERROR);

    uint64_t conns = 0, reqs = 0;
    nd_kms_stats(c, &conns, &reqs);
    CHECK_EQ_INT(conns, 1);
    CHECK_EQ_INT(reqs, 8);
    /* the fake saw exactly one new connection for those 8 requests (+1 for the stats call itself) */
    CHECK_EQ_INT(stat_of(&fk, "connections") - conns0, 2);
    json_t *all[] = { g.body, d.body, e.body, d2.body, d3.body, r.body, v.body, nf.body };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]);
    done_client(c, p);
}

static void fault_classes(void)
{
    nd_creds_provider *p = env_creds(SECRET);
    nd_kms_client *c = client(p, NULL);
    const char *gdk = "{\"KeyId\":\"alias/ephemeral-ml-test\",\"NumberOfBytes\":32}";

    faults("{\"throttle_ratio\":1}");
    kres t = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(t.status, 400);
    CHECK_EQ_STR(t.code, "ThrottlingException");
    CHECK(strstr(t.msg, "Reduce the frequency") != NULL);
    CHECK_EQ_INT(t.cls, ND_KMS_THROTTLED);
    CHECK_EQ_INT(strlen(t.rid), 36);
    faults("{\"throttle_ratio\":0,\"access_denied\":true,\"namespaced_errors\":true}");
    kres a = call(c, "Decrypt", "{\"CiphertextBlob\":\"AAAA\"}", CALL_S);
    CHECK_EQ_STR(a.code, "AccessDeniedException"); /* header "X:http://..." and "com.amazonaws.kms#X" normalised */
    CHECK_EQ_INT(a.cls, ND_KMS_ACCESS_DENIED);
    CHECK(!nd_kms_class_retryable(a.cls));
    faults("{\"access_denied\":false,\"namespaced_errors\":false,\"error_5xx_ratio\":1,\"status_5xx\":500}");
    kres i = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(i.status, 500);
    CHECK_EQ_STR(i.code, "KMSInternalException");
    CHECK_EQ_INT(i.cls, ND_KMS_UNAVAILABLE);
    faults("{\"status_5xx\":503}");
    kres u = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(u.status, 503);
    CHECK_EQ_STR(u.code, "HTTP503");
    CHECK_EQ_INT(u.cls, ND_KMS_UNAVAILABLE);
    CHECK_EQ_INT(strlen(u.rid), 36);
    faults("{\"error_5xx_ratio\":0,\"reset_ratio\":1}");
    kres rs = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(rs.terr, -ECONNRESET);
    CHECK_EQ_STR(rs.code, "ECONNRESET");
    CHECK_EQ_INT(rs.cls, ND_KMS_UNAVAILABLE);
    CHECK_EQ_INT(rs.status, 0);
    faults("{\"reset_ratio\":0,\"latency_ms\":600}");
    kres to = call(c, "GenerateDataKey", gdk, 0.2);
    CHECK_EQ_INT(to.terr, -ETIMEDOUT);
    CHECK_EQ_INT(to.cls, ND_KMS_TIMEOUT);
    faults("{\"latency_ms\":0,\"expired_tokens\":1}");
    kres ex = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(ex.status, 200); /* refreshed and retried once */
    CHECK_EQ_INT(ex.attempts, 2);
    faults("{\"expired_tokens\":2}");
    kres ex2 = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_STR(ex2.code, "ExpiredTokenException");
    CHECK_EQ_INT(ex2.cls, ND_KMS_EXPIRED_TOKEN);
    CHECK_EQ_INT(ex2.attempts, 2); /* only once */
    kres ok = call(c, "GenerateDataKey", gdk, CALL_S);
    CHECK_EQ_INT(ok.status, 200);
    CHECK_EQ_INT(ok.attempts, 1);
    json_t *all[] = { t.body, a.body, i.body, u.body, rs.body, to.body, ex.body, ex2.body, ok.body };
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
        json_decref(all[k]);
    done_client(c, p);

    /* a wrong secret: InvalidSignatureException; an unknown access key: UnrecognizedClientException */
    p = env_creds("not-the-secret");
    c = client(p, NULL);
    kres bad = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_STR(bad.code, "InvalidSignatureException");
    CHECK(strstr(bad.msg, "does not match the signature you provided") != NULL);
    CHECK_EQ_INT(bad.cls, ND_KMS_ACCESS_DENIED);
    json_decref(bad.body);
    done_client(c, p);
    setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN", 1);
    nd_creds_opts co = { .source = ND_CREDS_ENV };
    nd_err err;
    CHECK_EQ_INT(nd_creds_provider_new(&ctx, &co, &p, &err), 0);
    c = client(p, NULL);
    kres unk = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_STR(unk.code, "UnrecognizedClientException");
    json_decref(unk.body);
    done_client(c, p);

    /* nothing listens: connection refused */
    p = env_creds(SECRET);
    c = client(p, "https://127.0.0.1:1");
    kres cr = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_INT(cr.terr, -ECONNREFUSED);
    CHECK_EQ_INT(cr.cls, ND_KMS_UNAVAILABLE);
    json_decref(cr.body);
    done_client(c, p);
}

static void cancel_and_concurrency(void)
{
    nd_creds_provider *p = env_creds(SECRET);
    nd_kms_client *c = client(p, NULL);
    /* the answer comes 5 s after the request: the cancel after 0.1 s of loop comes first even if this process is
     * descheduled for a while (with 300 ms, a loop turn that started late could take the answer before the cancel) */
    faults("{\"latency_ms\":5000}");
    kres k = { 0 };
    nd_kms_req *h = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_kms_call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", 19, CALL_S, on_kms, &k, &h, &err), 0);
    int never = 0;
    run_until(&never, 0.1);
    nd_kms_cancel(h);
    run_until(&never, 0.5);
    CHECK_EQ_INT(k.done, 0);
    faults("{\"latency_ms\":50}");
    enum { N = 40 };
    static kres many[N];
    memset(many, 0, sizeof many);
    for (int i = 0; i < N; i++)
        CHECK_EQ_INT(nd_kms_call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", 19, CALL_S, on_kms, &many[i], NULL, &err), 0);
    int ok = 0;
    for (double t0 = uv_hrtime() / 1e9; uv_hrtime() / 1e9 - t0 < CALL_S + 30;) {
        ok = 0;
        for (int i = 0; i < N; i++)
            ok += many[i].done;
        if (ok == N)
            break;
        run_until(&never, 0.05);
    }
    CHECK_EQ_INT(ok, N);
    int good = 0;
    for (int i = 0; i < N; i++) {
        good += many[i].status == 200 && many[i].done == 1;
        if (many[i].status != 200)
            fprintf(stderr, "  call %d: status %ld %s %s\n", i, many[i].status, many[i].code, many[i].msg);
        json_decref(many[i].body);
    }
    CHECK_EQ_INT(good, N);
    CHECK(stat_of(&fk, "max_in_flight") > 1); /* they really ran in parallel */
    faults("{\"latency_ms\":0}");
    /* freeing the client with calls in flight: no callback afterwards */
    kres late = { 0 };
    CHECK_EQ_INT(nd_kms_call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", 19, 5, on_kms, &late, NULL, &err), 0);
    done_client(c, p);
    run_until(&never, 0.2);
    CHECK_EQ_INT(late.done, 0);
}

static void imds_credentials(void)
{
    fakekms im;
    const char *args[] = { "--imds", "--creds-ttl", "200", NULL }; /* 200 s < the 300 s refresh window */
    CHECK_EQ_INT(fakekms_start(&im, args), 0);
    nd_creds_opts co = { .source = ND_CREDS_IMDS, .imds_endpoint = im.url, .imds_timeout_s = CALL_S };
    nd_creds_provider *p = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_creds_provider_new(&ctx, &co, &p, &err), 0);
    CHECK(nd_creds_current(p) == NULL);
    nd_kms_client *c = client(p, NULL);
    kres a = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_INT(a.status, 200); /* session token signed and accepted */
    uint64_t fetches = 0, tokens = 0;
    nd_creds_stats(p, &fetches, &tokens);
    CHECK_EQ_INT(fetches, 1);
    CHECK_EQ_INT(tokens, 1);
    /* Expiration is inside the refresh window, so the next call fetches again (with the cached token) */
    CHECK(nd_creds_current(p) == NULL);
    kres b = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_INT(b.status, 200);
    nd_creds_stats(p, &fetches, &tokens);
    CHECK_EQ_INT(fetches, 2);
    CHECK_EQ_INT(tokens, 1);
    /* a 401: a new token, then success */
    json_decref(control(&im, "POST", "/__faults", "{\"imds_401\":1,\"creds_ttl\":3600}"));
    kres d = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_INT(d.status, 200);
    nd_creds_stats(p, &fetches, &tokens);
    CHECK_EQ_INT(fetches, 3);
    CHECK_EQ_INT(tokens, 2);
    CHECK_EQ_INT(stat_of(&im, "unauthorized"), 1);
    const nd_creds *cur = nd_creds_current(p);
    CHECK(cur != NULL);
    if (cur) {
        CHECK_EQ_STR(cur->source, "imds");
        CHECK_EQ_STR(cur->role, "nitrodiag-fake-role");
        CHECK(strncmp(cur->session_token, "FAKE-SESSION-TOKEN-", 19) == 0);
    }
    /* fresh now: no more fetches */
    kres e = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_INT(e.status, 200);
    nd_creds_stats(p, &fetches, &tokens);
    CHECK_EQ_INT(fetches, 3);
    json_decref(a.body);
    json_decref(b.body);
    json_decref(d.body);
    json_decref(e.body);
    done_client(c, p);
    fakekms_stop(&im);

    /* IMDS unreachable: the call reports a credentials error through the callback */
    CHECK_EQ_INT(nd_creds_provider_new(&ctx, &(nd_creds_opts){ .source = ND_CREDS_IMDS,
                                                               .imds_endpoint = "http://127.0.0.1:1" }, &p, &err), 0);
    c = client(p, NULL);
    kres f = call(c, "GenerateRandom", "{\"NumberOfBytes\":8}", CALL_S);
    CHECK_EQ_STR(f.code, "CredentialsError");
    CHECK_EQ_INT(f.cls, ND_KMS_INTERNAL);
    CHECK(strstr(f.msg, "imds") != NULL);
    json_decref(f.body);
    done_client(c, p);
}

static unsigned char *b64d(const char *s, size_t *n)
{
    size_t l = strlen(s);
    unsigned char *o = malloc(l + 1);
    int r = EVP_DecodeBlock(o, (const unsigned char *)s, (int)l);
    *n = (size_t)r - (l >= 1 && s[l - 1] == '=') - (l >= 2 && s[l - 2] == '=');
    return o;
}

static char *b64e(const unsigned char *p, size_t n)
{
    char *o = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)o, p, (int)n);
    return o;
}

/* Opens a CiphertextForRecipient with the private key. Returns the plaintext length or -1. */
static int cms_open(const char *b64, EVP_PKEY *key, unsigned char *out, size_t outsz)
{
    size_t n;
    unsigned char *der = b64d(b64, &n);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)n);
    free(der);
    if (!cms)
        return -1;
    BIO *o = BIO_new(BIO_s_mem());
    int rc = -1;
    if (CMS_decrypt(cms, key, NULL, NULL, o, CMS_BINARY) == 1) {
        char *d;
        long l = BIO_get_mem_data(o, &d);
        if (l >= 0 && (size_t)l <= outsz) {
            memcpy(out, d, (size_t)l);
            rc = (int)l;
        }
    }
    BIO_free(o);
    CMS_ContentInfo_free(cms);
    return rc;
}

static void recipient_cms_round_trip(void)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    CHECK(key != NULL);
    unsigned char *spki = NULL;
    int sl = i2d_PUBKEY(key, &spki);
    unsigned char *doc = NULL;
    size_t dl = 0;
    nd_err err;
    CHECK_EQ_INT(nd_attest_build_dev(spki, (size_t)sl, NULL, 0, NULL, 0, 1700000000000ull, &doc, &dl, &err), 0);
    char *doc64 = b64e(doc, dl);
    nd_creds_provider *p = env_creds(SECRET);
    nd_kms_client *c = client(p, NULL);
    size_t rl = strlen(doc64) + 512;
    char *req = malloc(rl + 8192);
    snprintf(req, rl, "{\"KeyId\":\"alias/ephemeral-ml-test\",\"KeySpec\":\"AES_256\",\"Recipient\":"
                      "{\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\",\"AttestationDocument\":\"%s\"}}", doc64);
    kres g = call(c, "GenerateDataKey", req, CALL_S);
    CHECK_EQ_INT(g.status, 200);
    if (g.status != 200)
        fprintf(stderr, "  GenerateDataKey with recipient: %s: %s\n", g.code, g.msg);
    CHECK(json_object_get(g.body, "Plaintext") == NULL);
    const char *cfr = jstr(g.body, "CiphertextForRecipient");
    CHECK(cfr != NULL);
    if (cfr) { /* like KMS: a ContentInfo in BER with indefinite lengths */
        size_t cl = 0;
        unsigned char *c0 = b64d(cfr, &cl);
        CHECK(cl > 2 && c0[0] == 0x30 && c0[1] == 0x80);
        free(c0);
    }
    unsigned char dk[64];
    int dkl = cfr ? cms_open(cfr, key, dk, sizeof dk) : -1;
    CHECK_EQ_INT(dkl, 32);
    /* Decrypt without recipient returns the same key in Plaintext: the CMS really carried the data key */
    snprintf(req, rl + 8192, "{\"CiphertextBlob\":\"%s\"}", jstr(g.body, "CiphertextBlob"));
    kres d = call(c, "Decrypt", req, CALL_S);
    size_t pl = 0;
    unsigned char *pt = jstr(d.body, "Plaintext") ? b64d(jstr(d.body, "Plaintext"), &pl) : NULL;
    CHECK_EQ_INT(pl, 32);
    CHECK(pt && dkl == 32 && memcmp(pt, dk, 32) == 0);
    free(pt);
    /* Decrypt with recipient: CiphertextForRecipient only, same key again */
    snprintf(req, rl + 8192, "{\"CiphertextBlob\":\"%s\",\"Recipient\":{\"KeyEncryptionAlgorithm\":"
                             "\"RSAES_OAEP_SHA_256\",\"AttestationDocument\":\"%s\"}}",
             jstr(g.body, "CiphertextBlob"), doc64);
    kres d2 = call(c, "Decrypt", req, CALL_S);
    CHECK(json_object_get(d2.body, "Plaintext") == NULL);
    unsigned char dk2[64];
    CHECK_EQ_INT(jstr(d2.body, "CiphertextForRecipient") ? cms_open(jstr(d2.body, "CiphertextForRecipient"), key,
                                                                     dk2, sizeof dk2) : -1, 32);
    CHECK(memcmp(dk, dk2, 32) == 0);
    /* GenerateRandom with recipient */
    snprintf(req, rl + 8192, "{\"NumberOfBytes\":24,\"Recipient\":{\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\","
                             "\"AttestationDocument\":\"%s\"}}", doc64);
    kres r = call(c, "GenerateRandom", req, CALL_S);
    CHECK_EQ_INT(jstr(r.body, "CiphertextForRecipient") ? cms_open(jstr(r.body, "CiphertextForRecipient"), key, dk2,
                                                                    sizeof dk2) : -1, 24);
    /* a PKCS#1 RSAPublicKey instead of SPKI: "Invalid public key" */
    unsigned char *pkcs1 = NULL;
    int p1 = i2d_PublicKey(key, &pkcs1);
    unsigned char *doc2 = NULL;
    size_t dl2 = 0;
    CHECK_EQ_INT(nd_attest_build_dev(pkcs1, (size_t)p1, NULL, 0, NULL, 0, 1, &doc2, &dl2, &err), 0);
    char *doc2_64 = b64e(doc2, dl2);
    snprintf(req, rl + 8192, "{\"NumberOfBytes\":24,\"Recipient\":{\"KeyEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\","
                             "\"AttestationDocument\":\"%s\"}}", doc2_64);
    kres bad = call(c, "GenerateRandom", req, CALL_S);
    CHECK_EQ_STR(bad.code, "ValidationException");
    CHECK_EQ_STR(bad.msg, "Invalid public key");
    json_t *all[] = { g.body, d.body, d2.body, r.body, bad.body };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        json_decref(all[i]);
    free(doc2_64);
    free(doc2);
    OPENSSL_free(pkcs1);
    free(req);
    free(doc64);
    free(doc);
    OPENSSL_free(spki);
    EVP_PKEY_free(key);
    done_client(c, p);
}

static void bad_options(void)
{
    nd_creds_provider *p = env_creds(SECRET);
    nd_kms_client *c = NULL;
    nd_err err;
    nd_kms_opts o = { .region = "us-east-1", .endpoint = "http://127.0.0.1:1", .creds = p };
    CHECK_EQ_INT(nd_kms_client_new(&ctx, &o, &c, &err), -EINVAL);
    CHECK(strstr(err.msg, "https") != NULL);
    o.endpoint = NULL;
    o.region = "us east";
    CHECK_EQ_INT(nd_kms_client_new(&ctx, &o, &c, &err), -EINVAL);
    o.region = "us-east-1";
    o.endpoint = "kms-fips.us-east-1.amazonaws.com";
    CHECK_EQ_INT(nd_kms_client_new(&ctx, &o, &c, &err), 0);
    kres k = { 0 };
    CHECK_EQ_INT(nd_kms_call(c, "Bad.Op", "{}", 2, 1, on_kms, &k, NULL, &err), -EINVAL);
    nd_kms_client_free(c);
    nd_creds_provider_free(p);
    unsetenv("AWS_ACCESS_KEY_ID");
    nd_creds_opts co = { .source = ND_CREDS_ENV };
    CHECK_EQ_INT(nd_creds_provider_new(&ctx, &co, &p, &err), -ENOENT);
    int64_t t;
    CHECK_EQ_INT(nd_creds_parse_time("2026-11-22T20:00:00Z", &t), 0);
    CHECK_EQ_INT(t, 1795377600);
    CHECK_EQ_INT(nd_creds_parse_time("2026-11-22 20:00", &t), -EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

int main(void)
{
    uv_loop_init(&loop);
    nd_ctx_init(&ctx, &loop);
    if (fakekms_start(&fk, NULL) != 0) {
        fprintf(stderr, "cannot start nitrodiag-fake-kms\n");
        return 1;
    }
    ND_RUN(operations_and_keepalive);
    ND_RUN(fault_classes);
    ND_RUN(cancel_and_concurrency);
    ND_RUN(imds_credentials);
    ND_RUN(recipient_cms_round_trip);
    ND_RUN(bad_options);
    fakekms_stop(&fk);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    return nd_test_summary();
}
