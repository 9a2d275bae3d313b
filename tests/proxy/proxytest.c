/*
 * proxytest.c — integration tests and load driver for nitrodiag-kms-proxy.
 *
 * Each scenario starts the real programs on loopback/unix sockets in a private temp directory (removed at the end):
 * nitrodiag-fake-kms (tests/fakekms: HTTPS KMS with SigV4 checks, CMS recipients, fault injection), the proxy
 * (listening on a unix socket, metrics on another), and enclave-side clients — vsock-pingpong --mode kms for the
 * end-to-end flow, and this program's own poll()-driven multi-connection client for faults and load. Expected
 * values come from the scenario (what the fake was told to do), never from the proxy's own code.
 *
 *   proxytest e2e        pingpong kms -> proxy -> fake KMS -> SUCCESS; logs; no secret in the proxy's output
 *   proxytest faults     each fault class: error_code, attempts, counters, exactly one response per request
 *   proxytest load       >= 250 simultaneous enclave connections, nothing lost
 *   proxytest malformed  bad frames and JSON get invalid_request; the daemon stays up
 *   proxytest signals    SIGHUP reloads the config file; SIGTERM drains an in-flight request, then exits
 *   proxytest failclosed a misbehaving KMS (a tiny TLS responder here) returns Plaintext for a recipient request, or
 *                        no CiphertextForRecipient: the enclave gets `internal`, the plaintext goes nowhere
 *   proxytest flood      a hostile client floods 13-byte bad-JSON frames and never reads: the proxy stops reading it
 *                        (max_unsent_per_conn), closes it (unsent_timeout_ms), its RSS and log stay bounded (per-
 *                        connection log budget with a suppressed count), and it keeps serving others
 *   proxytest region     no region configured: the proxy takes the instance's from IMDSv2 (a second fake, --imds) and
 *                        signs for it; without an answer it refuses to start with one line and leaves no socket
 *   proxytest bench      (bench/kms-proxy/run.sh) throughput/latency through the proxy vs a direct SigV4 client
 *
 * Usage: proxytest SCENARIO BUILD_DIR
 */
#include "nd_attest.h"
#include "nd_codec.h"
#include "nd_creds.h"
#include "nd_frame.h"
#include "nd_kms.h"
#include "nd_vsock.h"

#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

extern char **environ;

#define TEST_AK "AKIDEXAMPLE"
#define TEST_SK "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

static int failures;
static char tmpdir[512];
static const char *builddir;
static pid_t fake_pid = -1, proxy_pid = -1, imds_pid = -1;
static int fake_port;
static char ca_path[600], proxy_sock[600], metrics_sock[600], proxy_out[600], proxy_err[600];
static unsigned char *att_doc;
static size_t att_len;

#define EXPECT(cond, ...)                                                                                          \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            failures++;                                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                                                          \
            fputc('\n', stderr);                                                                                   \
        }                                                                                                          \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Waits for another process (start-up, a log line, a reply) end as soon as it is there; on a loaded 2-CPU runner
 * (the suite in parallel, or ASan) that can take far longer than on an idle machine: none gives up before this. */
#define WAIT_FLOOR_MS 30000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            char *nb = realloc(b, cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
            }
            b = nb;
        }
    }
    fclose(f);
    if (b)
        b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

static pid_t spawn(char *const argv[], const char *out, const char *err, char *const envp[])
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, envp ? envp : environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static int reap(pid_t pid, int timeout_ms)
{
    double end = now_ms() + timeout_ms;
    int st;
    while (now_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static void cleanup(void)
{
    if (proxy_pid > 0) {
        kill(proxy_pid, SIGKILL);
        waitpid(proxy_pid, NULL, 0);
        proxy_pid = -1;
    }
    if (fake_pid > 0) {
        kill(fake_pid, SIGTERM);
        reap(fake_pid, 3000);
        fake_pid = -1;
    }
    if (imds_pid > 0) {
        kill(imds_pid, SIGTERM);
        reap(imds_pid, 3000);
        imds_pid = -1;
    }
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

/* Starts the fake KMS with extra arguments; fills fake_port and ca_path. */
static int fake_start(const char *const *extra)
{
    char bin[600], out[600], err[600];
    snprintf(bin, sizeof bin, "%s/nitrodiag-fake-kms", builddir);
    snprintf(out, sizeof out, "%s/fake.out", tmpdir);
    snprintf(err, sizeof err, "%s/fake.err", tmpdir);
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", tmpdir);
    char *argv[32] = {bin, "--ca-out", ca_path, "--max-seconds", "300"};
    int n = 5;
    for (int i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    fake_pid = spawn(argv, out, err, NULL);
    if (fake_pid < 0)
        return -1;
    for (double end = now_ms() + 2 * WAIT_FLOOR_MS; now_ms() < end;) {
        char *t = slurp(out, NULL);
        if (t && strchr(t, '\n') && strchr(strchr(t, '\n') + 1, '\n')) {
            fake_port = atoi(t);
            free(t);
            return fake_port > 0 ? 0 : -1;
        }
        free(t);
        sleep_ms(10);
    }
    return -1;
}

/* Starts the proxy against the fake with extra --key=value flags (NULL-terminated). */
static int proxy_start(const char *const *flags)
{
    char bin[600], ep[100], l[700], m[700];
    snprintf(bin, sizeof bin, "%s/proxy/nitrodiag-kms-proxy", builddir);
    snprintf(proxy_sock, sizeof proxy_sock, "%s/proxy.sock", tmpdir);
    snprintf(metrics_sock, sizeof metrics_sock, "%s/metrics.sock", tmpdir);
    snprintf(proxy_out, sizeof proxy_out, "%s/proxy.out", tmpdir);
    snprintf(proxy_err, sizeof proxy_err, "%s/proxy.err", tmpdir);
    snprintf(ep, sizeof ep, "--endpoint=https://127.0.0.1:%d", fake_port);
    snprintf(l, sizeof l, "--listen=unix:%s", proxy_sock);
    snprintf(m, sizeof m, "--metrics_listen=unix:%s", metrics_sock);
    char ca[700];
    snprintf(ca, sizeof ca, "--ca_file=%s", ca_path);
    /* Generous deadlines unless a scenario sets its own (later flags win): tests that are not about timing must
     * not fail on a loaded machine or under ASan. */
    char *argv[48] = {bin, "--region=us-east-1", ep, l, m, ca, "--https_proxy=none", "--credentials=env",
                      "--deadline_ms=20000", "--attempt_timeout_ms=10000"};
    int n = 10;
    for (int i = 0; flags && flags[i] && n < 46; i++)
        argv[n++] = (char *)flags[i];
    argv[n] = NULL;
    char *envp[] = {"AWS_ACCESS_KEY_ID=" TEST_AK, "AWS_SECRET_ACCESS_KEY=" TEST_SK, "PATH=/usr/bin:/bin", NULL};
    unlink(proxy_sock);
    proxy_pid = spawn(argv, proxy_out, proxy_err, envp);
    if (proxy_pid < 0)
        return -1;
    for (double end = now_ms() + 2 * WAIT_FLOOR_MS; now_ms() < end;) {
        /* ready once it logged kms_proxy_start: listeners listen and signal handlers are installed */
        char *o = slurp(proxy_out, NULL);
        bool up = o && strstr(o, "\"event\":\"kms_proxy_start\"");
        free(o);
        if (up)
            return 0;
        if (waitpid(proxy_pid, NULL, WNOHANG) == proxy_pid) {
            proxy_pid = -1;
            char *e = slurp(proxy_err, NULL);
            fprintf(stderr, "proxy exited at start: %s\n", e ? e : "");
            free(e);
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

static int proxy_stop(void)
{
    if (proxy_pid <= 0)
        return -1;
    kill(proxy_pid, SIGTERM);
    int rc = reap(proxy_pid, 10000);
    proxy_pid = -1;
    return rc;
}

/* HTTP GET on a unix socket (metrics) or tcp loopback port (fake's /__stats and /__faults). */
static char *http(const char *unix_path, int port, const char *method, const char *path, const char *body)
{
    nd_sockaddr a;
    char addr[700];
    if (unix_path)
        snprintf(addr, sizeof addr, "unix:%s", unix_path);
    else
        snprintf(addr, sizeof addr, "tcp:127.0.0.1:%d", port);
    if (nd_vsock_parse(addr, &a, NULL) < 0)
        return NULL;
    int fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
    if (fd < 0)
        return NULL;
    char req[2048];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                     method, path, body ? strlen(body) : 0, body ? body : "");
    nd_vsock_write_all(fd, req, (size_t)n, WAIT_FLOOR_MS, &a, NULL);
    size_t cap = 65536, len = 0;
    char *b = malloc(cap);
    ssize_t r;
    while (b && len < cap - 1 && (r = nd_vsock_read(fd, b + len, cap - 1 - len, WAIT_FLOOR_MS, &a, NULL)) > 0)
        len += (size_t)r;
    close(fd);
    if (b)
        b[len] = '\0';
    return b;
}

static long metric(const char *name)
{
    char *t = http(metrics_sock, 0, "GET", "/metrics", NULL);
    long v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = t ? strstr(t, key) : NULL;
    if (p)
        v = atol(p + strlen(key));
    free(t);
    return v;
}

/* ---- enclave-side client ---------------------------------------------------------------------------------------- */

typedef struct rq {
    char id[64];
    double sent_ms, done_ms;
    int responses;
    char code[40];
    bool ok;
    json_t *resp; /* the whole response (kept only when asked) */
} rq;

typedef struct cconn {
    int fd;
    nd_frame_decoder dec;
    unsigned char *out;
    size_t out_len, out_off;
    int next, outstanding, done;
    int first, count; /* request index range */
} cconn;

/* Builds the JSON of request i. */
typedef char *(*mkreq_fn)(int i, const char *id, size_t *len, void *ud);

/* Runs nreq requests over nconns connections (each with up to pipeline outstanding), all connected before the
 * first request is sent. Returns the number of requests answered exactly once; fills rqs. */
static int run_client(int nconns, int per_conn, int pipeline, mkreq_fn mk, void *ud, rq *rqs, int timeout_ms,
                      bool keep)
{
    nd_sockaddr a;
    char addr[700];
    snprintf(addr, sizeof addr, "unix:%s", proxy_sock);
    nd_vsock_parse(addr, &a, NULL);
    cconn *cs = calloc((size_t)nconns, sizeof *cs);
    struct pollfd *pf = calloc((size_t)nconns, sizeof *pf);
    int total = nconns * per_conn;
    for (int i = 0; i < nconns; i++) {
        cs[i].fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
        cs[i].first = i * per_conn;
        cs[i].count = per_conn;
        nd_frame_decoder_init(&cs[i].dec, 0);
        for (int k = 0; k < per_conn; k++)
            snprintf(rqs[cs[i].first + k].id, sizeof rqs[0].id, "req-%d-%d-%08x", i, k, (unsigned)rand());
    }
    double end = now_ms() + timeout_ms;
    int answered = 0;
    while (now_ms() < end) {
        int active = 0;
        for (int i = 0; i < nconns; i++) {
            cconn *c = &cs[i];
            pf[i].fd = c->fd;
            pf[i].events = 0;
            if (c->fd < 0 || c->done >= c->count)
                continue;
            active++;
            while (c->out_off == c->out_len && c->next < c->count && c->outstanding < pipeline) {
                int idx = c->first + c->next;
                size_t jl = 0;
                char *j = mk(idx, rqs[idx].id, &jl, ud);
                free(c->out);
                c->out = NULL;
                nd_frame_build(ND_FRAME_KMS_PROXY, (uint32_t)idx, j, jl, &c->out, &c->out_len, NULL);
                free(j);
                c->out_off = 0;
                rqs[idx].sent_ms = now_ms();
                c->next++;
                c->outstanding++;
            }
            pf[i].events = POLLIN | (c->out_off < c->out_len ? POLLOUT : 0);
        }
        if (!active)
            break;
        if (poll(pf, (nfds_t)nconns, 100) <= 0)
            continue;
        for (int i = 0; i < nconns; i++) {
            cconn *c = &cs[i];
            if (c->fd < 0 || !pf[i].revents)
                continue;
            if ((pf[i].revents & POLLOUT) && c->out_off < c->out_len) {
                ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
                if (w > 0)
                    c->out_off += (size_t)w;
            }
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                unsigned char buf[65536];
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r <= 0) {
                    close(c->fd);
                    c->fd = -1;
                    continue;
                }
                nd_frame_feed(&c->dec, buf, (size_t)r, NULL);
                nd_frame f;
                while (nd_frame_next(&c->dec, &f, NULL) == 1) {
                    int idx = (int)f.seq;
                    if (idx < c->first || idx >= c->first + c->count)
                        continue;
                    rq *q = &rqs[idx];
                    json_t *j = json_loadb((const char *)f.payload, f.len, 0, NULL);
                    const char *rid = json_string_value(json_object_get(j, "request_id"));
                    if (!rid || strcmp(rid, q->id) != 0) {
                        json_decref(j);
                        continue;
                    }
                    q->responses++;
                    if (q->responses == 1) {
                        q->done_ms = now_ms();
                        json_t *err = json_object_get(json_object_get(j, "response"), "Error");
                        q->ok = err == NULL;
                        snprintf(q->code, sizeof q->code, "%s",
                                 err ? json_string_value(json_object_get(err, "code")) : "");
                        c->done++;
                        c->outstanding--;
                        answered++;
                        if (keep)
                            q->resp = json_incref(j);
                    } else {
                        answered--; /* a second response: not "exactly once" */
                    }
                    json_decref(j);
                }
            }
        }
    }
    /* Give duplicates a moment to show up. */
    for (int i = 0; i < nconns; i++) {
        if (cs[i].fd >= 0)
            close(cs[i].fd);
        nd_frame_decoder_free(&cs[i].dec);
        free(cs[i].out);
    }
    free(cs);
    free(pf);
    (void)total;
    return answered;
}

/* Request templates. */
typedef struct tmpl {
    const char *op;
    const char *key_id;
    bool recipient;
    const char *ciphertext_b64;
    const char *plaintext;
    int number_of_bytes;
} tmpl;

static char *mk_tmpl(int i, const char *id, size_t *len, void *ud)
{
    const tmpl *t = ud;
    nd_kms_request r;
    memset(&r, 0, sizeof r);
    snprintf(r.request_id, sizeof r.request_id, "%s", id);
    snprintf(r.trace_id, sizeof r.trace_id, "trace-%d", i);
    r.op = nd_kms_op_from_name(t->op);
    if (t->key_id)
        snprintf(r.key_id, sizeof r.key_id, "%s", t->key_id);
    if (r.op == ND_KMS_OP_GENERATE_DATA_KEY)
        snprintf(r.key_spec, sizeof r.key_spec, "AES_256");
    r.number_of_bytes = t->number_of_bytes;
    if (t->recipient) {
        r.recipient.data = att_doc;
        r.recipient.len = att_len;
    }
    if (t->ciphertext_b64)
        nd_b64_decode(t->ciphertext_b64, strlen(t->ciphertext_b64), &r.ciphertext_blob.data, &r.ciphertext_blob.len,
                      NULL);
    if (t->plaintext) {
        r.plaintext.data = (unsigned char *)strdup(t->plaintext);
        r.plaintext.len = strlen(t->plaintext);
    }
    /* byte fields as base64 (what vsock-pingpong sends), or as arrays of numbers (what the reference's Rust clients
     * send) when BENCH_ARRAYS is set (bench/kms-proxy/run.sh) */
    const char *arrays = getenv("BENCH_ARRAYS");
    char *s = nd_kms_request_encode(&r, !(arrays && arrays[0] && strcmp(arrays, "0") != 0), len);
    r.recipient.data = NULL;
    nd_kms_request_free(&r);
    return s;
}

static const tmpl gdk = {"GenerateDataKey", "alias/ephemeral-ml-test", true, NULL, NULL, 0};

/* Counts proxy log lines with event ev (and request_id rid when non-NULL); checks every line is one JSON object. */
static int log_count(const char *ev, const char *rid, json_t **last)
{
    char *t = slurp(proxy_out, NULL);
    int n = 0;
    char *save = NULL;
    for (char *line = t ? strtok_r(t, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        json_t *j = json_loads(line, 0, NULL);
        EXPECT(json_is_object(j), "proxy stdout line is not one JSON object: %.200s", line);
        const char *e = json_string_value(json_object_get(j, "event"));
        const char *r = json_string_value(json_object_get(j, "request_id"));
        if (e && !strcmp(e, ev) && (!rid || (r && !strcmp(r, rid)))) {
            n++;
            if (last) {
                json_decref(*last);
                *last = json_incref(j);
            }
        }
        json_decref(j);
    }
    free(t);
    return n;
}

static int setup(void)
{
    const char *base = getenv("ND_TEST_TMP");
    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0700);
    snprintf(tmpdir, sizeof tmpdir, "%s/proxytest-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        tmpdir[0] = '\0';
        return -1;
    }
    EVP_PKEY *k = EVP_RSA_gen(2048);
    unsigned char *spki = NULL;
    int sl = i2d_PUBKEY(k, &spki);
    int rc = nd_attest_build_dev(spki, (size_t)sl, NULL, 0, NULL, 0, 1700000000000ull, &att_doc, &att_len, NULL);
    OPENSSL_free(spki);
    EVP_PKEY_free(k);
    return rc;
}

/* ---- scenarios -------------------------------------------------------------------------------------------------- */

static void scenario_e2e(void)
{
    EXPECT(fake_start(NULL) == 0, "fake KMS did not start");
    EXPECT(proxy_start(NULL) == 0, "proxy did not start");
    char bin[600], out[600], err[600], conn[700];
    snprintf(bin, sizeof bin, "%s/enclave/vsock-pingpong", builddir);
    snprintf(out, sizeof out, "%s/enclave.out", tmpdir);
    snprintf(err, sizeof err, "%s/enclave.err", tmpdir);
    snprintf(conn, sizeof conn, "unix:%s", proxy_sock);
    char *argv[] = {bin, "--mode", "kms", "--connect", conn, NULL};
    pid_t p = spawn(argv, out, err, NULL);
    int rc = reap(p, 20000);
    char *eo = slurp(out, NULL);
    EXPECT(rc == 0, "vsock-pingpong kms exited %d: %s", rc, eo ? eo : "");
    EXPECT(eo && strstr(eo, "[enclave] SUCCESS: received wrapped key from KMS\n"), "no SUCCESS line: %s", eo ? eo : "");
    EXPECT(eo && strstr(eo, "NOT ATTESTED"), "development document not announced: %s", eo ? eo : "");
    free(eo);
    EXPECT(log_count("kms_proxy_request", NULL, NULL) == 2, "want 2 request lines");
    json_t *last = NULL;
    EXPECT(log_count("kms_proxy_response", NULL, &last) == 2, "want 2 response lines");
    EXPECT(json_is_true(json_object_get(last, "ok")), "last response not ok");
    const char *kid = json_string_value(json_object_get(last, "kms_request_id"));
    EXPECT(kid && strlen(kid) == 36, "kms_request_id should be the fake's x-amzn-RequestId uuid: %s", kid ? kid : "null");
    EXPECT(json_integer_value(json_object_get(json_object_get(last, "metrics"), "kms_success_total")) == 2,
           "metrics in the log line");
    json_decref(last);
    EXPECT(metric("kms_requests_total") == 2 && metric("kms_success_total") == 2 && metric("kms_errors_total") == 0,
           "metrics after e2e");
    EXPECT(metric("retries_total") == 0 && metric("throttled_total") == 0 && metric("circuit_open_total") == 0,
           "no retry/throttle/circuit counted on a clean run");
    EXPECT(proxy_stop() == 0, "proxy exit status after SIGTERM");

    /* No secret in the proxy's output: plaintext from Encrypt/Decrypt/GenerateRandom without recipient (allowed for
     * this run), CiphertextForRecipient of recipient requests, the attestation document, the secret key. */
    const char *flags[] = {"--require_recipient=false", "--allow_ops=GenerateDataKey,Decrypt,GenerateRandom,Encrypt",
                           NULL};
    EXPECT(proxy_start(flags) == 0, "proxy (no recipient) did not start");
    const char *planted = "PLANTED-PLAINTEXT-7f3a9c2e51d04b88";
    tmpl enc = {"Encrypt", "alias/ephemeral-ml-test", false, NULL, planted, 0};
    rq r1[1];
    memset(r1, 0, sizeof r1);
    EXPECT(run_client(1, 1, 1, mk_tmpl, &enc, r1, 10000, true) == 1 && r1[0].ok, "Encrypt failed: %s", r1[0].code);
    json_t *eb = json_object_get(json_object_get(r1[0].resp, "response"), "Encrypt");
    /* ciphertext_blob comes back as an array of numbers: turn it into base64 for the Decrypt template */
    json_t *arr = json_object_get(eb, "ciphertext_blob");
    size_t cl = json_array_size(arr);
    unsigned char *cb = malloc(cl + 1);
    for (size_t i = 0; i < cl; i++)
        cb[i] = (unsigned char)json_integer_value(json_array_get(arr, i));
    char *cb64 = NULL;
    size_t cb64l = 0;
    nd_b64_encode(cb, cl, &cb64, &cb64l, NULL);
    free(cb);
    tmpl dec = {"Decrypt", NULL, false, cb64, NULL, 0};
    rq r2[1];
    memset(r2, 0, sizeof r2);
    EXPECT(run_client(1, 1, 1, mk_tmpl, &dec, r2, 10000, true) == 1 && r2[0].ok, "Decrypt failed: %s", r2[0].code);
    json_t *pt = json_object_get(json_object_get(json_object_get(r2[0].resp, "response"), "Decrypt"), "plaintext");
    EXPECT(json_array_size(pt) == strlen(planted), "Decrypt gave back the planted plaintext to the client");
    tmpl rnd = {"GenerateRandom", NULL, false, NULL, NULL, 32};
    rq r3[1];
    memset(r3, 0, sizeof r3);
    EXPECT(run_client(1, 1, 1, mk_tmpl, &rnd, r3, 10000, true) == 1 && r3[0].ok, "GenerateRandom: %s", r3[0].code);
    rq r4[1];
    memset(r4, 0, sizeof r4);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r4, 10000, true) == 1 && r4[0].ok, "GDK+recipient: %s",
           r4[0].code);
    proxy_stop();

    /* What must not appear, in raw, base64 and hex forms. */
    char *needles[16];
    int nn = 0;
    needles[nn++] = strdup(planted);
    char *b = NULL;
    size_t bl;
    nd_b64_encode(planted, strlen(planted), &b, &bl, NULL);
    needles[nn++] = b;
    char hx[200];
    nd_hex_encode(planted, 16, hx);
    needles[nn++] = strdup(hx);
    needles[nn++] = strdup(TEST_SK);
    needles[nn++] = strdup("AKIDEXAMPLE");
    /* the attestation document (base64 of a 48-byte slice from its middle, and its start) */
    nd_b64_encode(att_doc + att_len / 2, 48, &b, &bl, NULL);
    needles[nn++] = b;
    nd_b64_encode(att_doc, 48, &b, &bl, NULL);
    needles[nn++] = b;
    /* CiphertextForRecipient bytes and the random bytes, as the client received them */
    json_t *rsp[] = {json_object_get(json_object_get(r4[0].resp, "response"), "GenerateDataKey"),
                     json_object_get(json_object_get(r3[0].resp, "response"), "GenerateRandom")};
    const char *fields[] = {"ciphertext_for_recipient", "plaintext"};
    for (int k = 0; k < 2; k++) {
        json_t *a = json_object_get(rsp[k], fields[k]);
        size_t n = json_array_size(a);
        EXPECT(n >= 24, "response %d has %s", k, fields[k]);
        unsigned char *bytes = malloc(n + 1);
        for (size_t i = 0; i < n; i++)
            bytes[i] = (unsigned char)json_integer_value(json_array_get(a, i));
        if (n >= 24) {
            nd_b64_encode(bytes + n - 24, 24, &b, &bl, NULL);
            needles[nn++] = b;
            nd_hex_encode(bytes + n - 16, 16, hx);
            needles[nn++] = strdup(hx);
            char arrtxt[200] = "";
            size_t o = 0;
            for (size_t i = n - 12; i < n; i++)
                o += (size_t)snprintf(arrtxt + o, sizeof arrtxt - o, "%u,", bytes[i]);
            needles[nn++] = strdup(arrtxt);
        }
        free(bytes);
    }
    char *outs[2] = {slurp(proxy_out, NULL), slurp(proxy_err, NULL)};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < nn; i++)
            EXPECT(!outs[k] || !strstr(outs[k], needles[i]), "secret #%d (%.20s...) found in proxy %s", i, needles[i],
                   k ? "stderr" : "stdout");
    EXPECT(outs[0] && strstr(outs[0], "\"op\":\"Encrypt\""), "the runs were logged");
    for (int i = 0; i < nn; i++)
        free(needles[i]);
    free(outs[0]);
    free(outs[1]);
    free(cb64);
    json_decref(r1[0].resp);
    json_decref(r2[0].resp);
    json_decref(r3[0].resp);
    json_decref(r4[0].resp);
}

/* One fault case: restart fake with fake_args and proxy with flags, send n requests on one connection each
 * (concurrently), expect code for all (NULL = ok), attempts per request, and metric deltas. */
typedef struct fcase {
    const char *name;
    const char *fake[6];
    const char *flags[8];
    const tmpl *t;
    int n;
    const char *code;
    int attempts;            /* -1: don't check */
    long retries, throttled, timeouts, rate_limited, circuit_open; /* -1: don't check */
    int count_code;          /* how many of n get code (others ok); 0 means all */
    bool serial;             /* one connection, one request after the other (else n connections at once) */
} fcase;

static void run_fcase(const fcase *fc)
{
    fprintf(stderr, "-- %s\n", fc->name);
    EXPECT(fake_start(fc->fake) == 0, "%s: fake", fc->name);
    EXPECT(proxy_start(fc->flags) == 0, "%s: proxy", fc->name);
    rq *rs = calloc((size_t)fc->n, sizeof *rs);
    int got = fc->serial ? run_client(1, fc->n, 1, mk_tmpl, (void *)fc->t, rs, 20000, false)
                         : run_client(fc->n, 1, 1, mk_tmpl, (void *)fc->t, rs, 20000, false);
    EXPECT(got == fc->n, "%s: %d of %d requests answered exactly once", fc->name, got, fc->n);
    int with_code = 0;
    for (int i = 0; i < fc->n; i++) {
        EXPECT(rs[i].responses == 1, "%s: request %d got %d responses", fc->name, i, rs[i].responses);
        if (fc->code ? !strcmp(rs[i].code, fc->code) : rs[i].ok)
            with_code++;
        else if (!fc->count_code)
            fprintf(stderr, "   request %d: code %s\n", i, rs[i].code[0] ? rs[i].code : "ok");
        json_t *last = NULL;
        EXPECT(log_count("kms_proxy_response", rs[i].id, &last) == 1, "%s: one response line for %s", fc->name,
               rs[i].id);
        if (fc->attempts >= 0 && (!fc->count_code || strcmp(rs[i].code, fc->code ? fc->code : "") == 0))
            EXPECT(json_integer_value(json_object_get(last, "attempts")) == fc->attempts, "%s: attempts %lld != %d",
                   fc->name, (long long)json_integer_value(json_object_get(last, "attempts")), fc->attempts);
        if (fc->code && !strcmp(rs[i].code, fc->code))
            EXPECT(!strcmp(json_string_value(json_object_get(last, "error_code")), fc->code), "%s: logged code",
                   fc->name);
        /* a denied Recipient request names the image: the attestation's PCR0 and module_id (public values) */
        const char *p0 = json_string_value(json_object_get(last, "attestation_pcr0"));
        const char *mid = json_string_value(json_object_get(last, "attestation_module_id"));
        if (fc->code && !strcmp(fc->code, "upstream_access_denied") && fc->t->recipient)
            EXPECT(p0 && strlen(p0) == 96 && mid && mid[0], "%s: attestation_pcr0/module_id on the denied line",
                   fc->name);
        else
            EXPECT(!p0 && !mid, "%s: attestation fields only on access-denied lines", fc->name);
        json_decref(last);
    }
    int want = fc->count_code ? fc->count_code : fc->n;
    EXPECT(with_code == want, "%s: %d requests had %s, want %d", fc->name, with_code, fc->code ? fc->code : "ok", want);
    EXPECT(metric("kms_requests_total") == fc->n, "%s: requests_total", fc->name);
    EXPECT(metric("kms_success_total") + metric("kms_errors_total") == fc->n, "%s: success+errors", fc->name);
    EXPECT(metric("in_flight") == 0, "%s: in_flight back to 0", fc->name);
    struct { const char *m; long want; } ms[] = {{"retries_total", fc->retries},       {"throttled_total", fc->throttled},
                                                 {"timeouts_total", fc->timeouts},     {"rate_limited_total", fc->rate_limited},
                                                 {"circuit_open_total", fc->circuit_open}};
    for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++)
        if (ms[k].want >= 0)
            EXPECT(metric(ms[k].m) == ms[k].want, "%s: %s = %ld, want %ld", fc->name, ms[k].m, metric(ms[k].m),
                   ms[k].want);
    free(rs);
    int prc = proxy_stop();
    EXPECT(prc == 0, "%s: proxy exit %d", fc->name, prc);
    if (prc != 0) {
        char *e = slurp(proxy_err, NULL);
        fprintf(stderr, "proxy stderr: %s\n", e ? e : "");
        free(e);
    }
    kill(fake_pid, SIGTERM);
    reap(fake_pid, 3000);
    fake_pid = -1;
}

static void scenario_faults(void)
{
    static const tmpl norec = {"GenerateDataKey", "alias/ephemeral-ml-test", false, NULL, NULL, 0};
    static const tmpl badct = {"Decrypt", NULL, true, "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8w",
                               NULL, 0};
    static const tmpl otherkey = {"GenerateDataKey", "alias/not-allowed", true, NULL, NULL, 0};
    const fcase cases[] = {
        {"throttled", {"--throttle-ratio", "1"}, {"--breaker_min_requests=1000"}, &gdk, 3, "upstream_throttled", 3,
         6, 9, 0, 0, 0, 0},
        {"5xx", {"--error-5xx-ratio", "1", "--status-5xx", "503"}, {"--breaker_min_requests=1000"}, &gdk, 3,
         "upstream_unavailable", 3, 6, 0, 0, 0, 0, 0},
        {"reset", {"--reset-ratio", "1"}, {"--breaker_min_requests=1000"}, &gdk, 2, "upstream_unavailable", 3, 4, 0,
         0, 0, 0, 0},
        {"timeout", {"--latency-ms", "300"}, {"--attempt_timeout_ms=100", "--deadline_ms=800",
                                              "--breaker_min_requests=1000"}, &gdk, 2, "timeout", -1, -1, 0, -1, 0, 0, 0},
        {"access_denied", {"--access-denied"}, {NULL}, &gdk, 2, "upstream_access_denied", 1, 0, 0, 0, 0, 0, 0},
        {"invalid_ciphertext", {NULL}, {NULL}, &badct, 2, "invalid_request", 1, 0, 0, 0, 0, 0, 0},
        {"no_recipient", {NULL}, {NULL}, &norec, 2, "invalid_request", 0, 0, 0, 0, 0, 0, 0},
        {"key_not_allowed", {NULL}, {"--allow_keys=alias/ephemeral-ml-test"}, &otherkey, 2, "invalid_request", 0, 0,
         0, 0, 0, 0, 0},
        {"op_not_allowed", {NULL}, {"--allow_ops=Decrypt"}, &gdk, 1, "invalid_request", 0, 0, 0, 0, 0, 0, 0},
        /* The timing cases leave seconds, not milliseconds, between what must happen and what must not, so a loaded
         * machine (slow arrivals, a slow fake) cannot tip them: a token comes back only after 100 s; the two
         * requests in flight take 3 s while the other four arrive; the queued one has 2 s left when it starts a 4 s
         * call, while the first has 2 s to spare. */
        {"rate_limited", {NULL}, {"--rate_limit_rps=0.01", "--rate_limit_burst=2"}, &gdk, 6, "rate_limited", 0, 0, 0,
         0, 4, 0, 4},
        {"in_flight_cap", {"--latency-ms", "3000"}, {"--max_in_flight=2", "--max_queue=0", "--deadline_ms=20000",
                                                     "--attempt_timeout_ms=10000"}, &gdk, 6, "rate_limited", 0, 0, 0, 0,
         4, 0, 4},
        {"in_flight_queue", {"--latency-ms", "100"}, {"--max_in_flight=2", "--deadline_ms=30000",
                                                      "--attempt_timeout_ms=10000"}, &gdk, 6, NULL, 1, 0, 0, 0, 0, 0, 0},
        {"queue_deadline", {"--latency-ms", "4000"}, {"--max_in_flight=1", "--deadline_ms=6000",
                                                      "--attempt_timeout_ms=5600"}, &gdk, 4, "timeout", -1, 0, 0, -1, 0,
         0, 3},
        {"circuit_open", {"--error-5xx-ratio", "1", "--status-5xx", "500"},
         {"--breaker_min_requests=3", "--breaker_error_ratio=0.5", "--breaker_open_s=60", "--max_attempts=1"}, &gdk,
         8, "circuit_open", 0, 0, 0, 0, 0, 5, 5, true},
        {"retry_budget", {"--throttle-ratio", "1"}, {"--retry_budget=10", "--retry_cost=5", "--retry_refund=0",
                                                     "--breaker_min_requests=1000"}, &gdk, 3, "upstream_throttled",
         -1, 2, 5, 0, 0, 0, 0, true},
        {"expired_token_once", {"--expired-tokens", "1"}, {NULL}, &gdk, 1, NULL, 1, 0, 0, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_fcase(&cases[i]);
}

static void scenario_load(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2048 && rl.rlim_max >= 2048) {
        rl.rlim_cur = 2048;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    EXPECT(fake_start(NULL) == 0, "fake");
    /* In-flight cap with its FIFO queue; no rate limit, no breaker and generous deadlines, since the point is that
     * a burst from 250 connections on a shared 2-core machine (or under ASan) loses nothing. */
    const char *flags[] = {"--rate_limit_rps=0", "--deadline_ms=60000", "--attempt_timeout_ms=50000",
                           "--connect_timeout_ms=50000", "--max_in_flight=32", "--breaker_min_requests=100000", NULL};
    EXPECT(proxy_start(flags) == 0, "proxy");
    int nconns = 250, per = 2, n = nconns * per;
    rq *rs = calloc((size_t)n, sizeof *rs);
    double t0 = now_ms();
    int got = run_client(nconns, per, 2, mk_tmpl, (void *)&gdk, rs, 60000, false);
    double el = now_ms() - t0;
    int ok = 0;
    for (int i = 0; i < n; i++) {
        ok += rs[i].ok;
        EXPECT(rs[i].responses == 1, "request %d: %d responses (%s)", i, rs[i].responses, rs[i].code);
    }
    fprintf(stderr, "load: %d connections x %d requests: %d answered once, %d ok in %.0f ms\n", nconns, per, got, ok,
            el);
    for (int i = 0, shown = 0; i < n && shown < 3; i++) {
        if (rs[i].ok)
            continue;
        shown++;
        json_t *last = NULL;
        log_count("kms_proxy_response", rs[i].id, &last);
        char *t = last ? json_dumps(last, JSON_COMPACT) : NULL;
        fprintf(stderr, "failed: %s %s\n", rs[i].code, t ? t : "");
        free(t);
        json_decref(last);
    }
    EXPECT(got == n && ok == n, "lost or failed requests: answered %d ok %d of %d", got, ok, n);
    EXPECT(metric("kms_requests_total") == n && metric("kms_success_total") == n, "counters after load");
    EXPECT(log_count("kms_proxy_response", NULL, NULL) == n, "one response line per request");
    free(rs);
    EXPECT(proxy_stop() == 0, "proxy exit");
}

/* Sends raw bytes on a new connection and returns what comes back until close or timeout: wait_ms after the first
 * frame (what else comes, and whether the proxy closes), and, when want_frame, up to WAIT_FLOOR_MS for that first
 * frame (a loaded machine can take longer than wait_ms to answer at all). */
static char *raw_exchange(const void *data, size_t n, int wait_ms, bool want_frame, nd_frame *first,
                          unsigned char *payload, size_t psz, bool *closed)
{
    nd_sockaddr a;
    char addr[700];
    snprintf(addr, sizeof addr, "unix:%s", proxy_sock);
    nd_vsock_parse(addr, &a, NULL);
    int fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
    if (fd < 0)
        return NULL;
    nd_vsock_write_all(fd, data, n, WAIT_FLOOR_MS, &a, NULL);
    nd_frame_decoder d;
    nd_frame_decoder_init(&d, 0);
    unsigned char buf[65536];
    *closed = false;
    first->type = 0;
    payload[0] = '\0';
    double end = now_ms() + (want_frame ? WAIT_FLOOR_MS : wait_ms);
    while (now_ms() < end) {
        ssize_t r = nd_vsock_read(fd, buf, sizeof buf, (int)(end - now_ms()) + 1, &a, NULL);
        if (r == 0 || (r < 0 && r != -ETIMEDOUT)) {
            *closed = true;
            break;
        }
        if (r < 0)
            break;
        nd_frame_feed(&d, buf, (size_t)r, NULL);
        nd_frame f;
        if (!first->type && nd_frame_next(&d, &f, NULL) == 1) {
            *first = f;
            size_t c = f.len < psz - 1 ? f.len : psz - 1;
            memcpy(payload, f.payload, c);
            payload[c] = '\0';
            first->payload = payload;
            if (now_ms() + wait_ms < end)
                end = now_ms() + wait_ms;
        }
    }
    close(fd);
    nd_frame_decoder_free(&d);
    return (char *)payload;
}

/* An answer the proxy made itself (proxy/request.c refuse): exactly one more kms_proxy_request and kms_proxy_response
 * line than before, the response not ok, with error_code code, no upstream attempt and a message holding `says`. */
static void expect_refusal_logged(const char *what, int *requests, int *responses, const char *code, const char *says)
{
    json_t *ev = NULL;
    int nq = log_count("kms_proxy_request", NULL, NULL), nr = log_count("kms_proxy_response", NULL, &ev);
    EXPECT(nq == *requests + 1, "%s: one kms_proxy_request line (%d after %d)", what, nq, *requests);
    EXPECT(nr == *responses + 1, "%s: one kms_proxy_response line (%d after %d)", what, nr, *responses);
    const char *ec = json_string_value(json_object_get(ev, "error_code"));
    const char *m = json_string_value(json_object_get(ev, "message"));
    EXPECT(json_is_false(json_object_get(ev, "ok")) && ec && !strcmp(ec, code), "%s: error_code %s, want %s", what,
           ec ? ec : "(none)", code);
    EXPECT(json_integer_value(json_object_get(ev, "attempts")) == 0, "%s: answered without an upstream attempt", what);
    EXPECT(m && strstr(m, says), "%s: message %s, want it to say %s", what, m ? m : "(none)", says);
    EXPECT(json_is_object(json_object_get(ev, "metrics")), "%s: the line carries the counters", what);
    json_decref(ev);
    *requests = nq;
    *responses = nr;
}

static void scenario_malformed(void)
{
    EXPECT(fake_start(NULL) == 0, "fake");
    const char *flags[] = {"--max_frame=4096", NULL};
    EXPECT(proxy_start(flags) == 0, "proxy");
    unsigned char payload[8192];
    nd_frame f;
    bool closed;
    int nreq = log_count("kms_proxy_request", NULL, NULL), nresp = log_count("kms_proxy_response", NULL, NULL);
    /* length below 5 */
    static const unsigned char tiny[] = {0, 0, 0, 3, 6, 0, 0};
    raw_exchange(tiny, sizeof tiny, 1500, true, &f, payload, sizeof payload, &closed);
    EXPECT(f.type == ND_FRAME_ERROR && strstr((char *)payload, "\"code\":\"invalid_request\""), "tiny: %s", payload);
    EXPECT(closed, "tiny frame: connection closed after the error");
    expect_refusal_logged("tiny frame", &nreq, &nresp, "invalid_request", "below the 5 bytes");
    /* oversized */
    static const unsigned char big[] = {0, 1, 0, 0, 6, 0, 0, 0, 1}; /* 65536 > max_frame 4096 */
    raw_exchange(big, sizeof big, 1500, true, &f, payload, sizeof payload, &closed);
    EXPECT(f.type == ND_FRAME_ERROR && strstr((char *)payload, "invalid_request") && strstr((char *)payload, "exceeds"),
           "big: %s", payload);
    EXPECT(closed, "oversized frame: connection closed");
    expect_refusal_logged("oversized frame", &nreq, &nresp, "invalid_request", "exceeds the maximum of 4096");
    /* bad JSON, then a valid request on the same connection still works */
    unsigned char *fr1 = NULL, *fr2 = NULL;
    size_t l1, l2;
    nd_frame_build(ND_FRAME_KMS_PROXY, 7, "{\"request_id\":\"x\",", 18, &fr1, &l1, NULL);
    size_t jl;
    char *j = mk_tmpl(0, "after-bad-json", &jl, (void *)&gdk);
    nd_frame_build(ND_FRAME_KMS_PROXY, 8, j, jl, &fr2, &l2, NULL);
    free(j);
    unsigned char both[65536];
    memcpy(both, fr1, l1);
    memcpy(both + l1, fr2, l2);
    raw_exchange(both, l1 + l2, 1500, true, &f, payload, sizeof payload, &closed);
    EXPECT(f.type == ND_FRAME_ERROR && f.seq == 7 && strstr((char *)payload, "invalid_request"), "bad json: %s",
           payload);
    for (double end = now_ms() + WAIT_FLOOR_MS; log_count("kms_proxy_response", "after-bad-json", NULL) < 1 && now_ms() < end;)
        sleep_ms(10);
    EXPECT(log_count("kms_proxy_response", "after-bad-json", NULL) == 1, "the valid request after bad JSON answered");
    {
        json_t *ev = NULL;
        int bad = 0, nr = 0;
        char *t = slurp(proxy_out, NULL); /* the bad-JSON line: the refusal between the counts above and now */
        char *save = NULL;
        for (char *line = t ? strtok_r(t, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
            json_t *lj = json_loads(line, 0, NULL);
            const char *e = json_string_value(json_object_get(lj, "event"));
            const char *m = json_string_value(json_object_get(lj, "message"));
            if (e && !strcmp(e, "kms_proxy_response") && ++nr > nresp && m && strstr(m, "bad JSON")) {
                bad++;
                json_decref(ev);
                ev = json_incref(lj);
            }
            json_decref(lj);
        }
        free(t);
        EXPECT(bad == 1, "bad JSON: one kms_proxy_response line saying bad JSON (%d)", bad);
        const char *ec = json_string_value(json_object_get(ev, "error_code"));
        EXPECT(ec && !strcmp(ec, "invalid_request") && json_integer_value(json_object_get(ev, "attempts")) == 0,
               "bad JSON: error_code %s", ec ? ec : "(none)");
        json_decref(ev);
        nreq = log_count("kms_proxy_request", NULL, NULL);
        nresp = log_count("kms_proxy_response", NULL, NULL);
    }
    free(fr1);
    free(fr2);
    /* unknown frame type and heartbeat */
    unsigned char *fr = NULL;
    size_t fl;
    nd_frame_build(0x42, 9, "zz", 2, &fr, &fl, NULL);
    raw_exchange(fr, fl, 800, true, &f, payload, sizeof payload, &closed);
    EXPECT(f.type == ND_FRAME_ERROR && f.seq == 9 && strstr((char *)payload, "invalid_request"), "type 0x42: %s",
           payload);
    expect_refusal_logged("unknown frame type", &nreq, &nresp, "invalid_request", "(0x42) is not served");
    free(fr);
    nd_frame_build(ND_FRAME_HEARTBEAT, 11, NULL, 0, &fr, &fl, NULL);
    raw_exchange(fr, fl, 500, true, &f, payload, sizeof payload, &closed);
    EXPECT(f.type == ND_FRAME_HEARTBEAT && f.seq == 11, "heartbeat echoed");
    free(fr);
    /* random garbage */
    unsigned char junk[3000];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand();
    junk[0] = 0;
    junk[1] = 0;
    raw_exchange(junk, sizeof junk, 800, false, &f, payload, sizeof payload, &closed);
    /* still alive and serving */
    rq r[1];
    memset(r, 0, sizeof r);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r, 10000, false) == 1 && r[0].ok, "served after bad input");
    EXPECT(waitpid(proxy_pid, NULL, WNOHANG) == 0, "proxy still running");
    EXPECT(metric("kms_requests_total") == metric("kms_success_total") + metric("kms_errors_total"),
           "every counted request answered");
    EXPECT(proxy_stop() == 0, "proxy exit");
}

static void scenario_signals(void)
{
    EXPECT(fake_start((const char *[]){"--latency-ms", "300", NULL}) == 0, "fake");
    char conf[700], cflag[720];
    snprintf(conf, sizeof conf, "%s/proxy.conf", tmpdir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "# test config\ndeadline_ms = 20000\nattempt_timeout_ms = 10000\nallow_ops = GenerateDataKey,Decrypt\n");
    fclose(f);
    snprintf(cflag, sizeof cflag, "--config=%s", conf);
    const char *flags[] = {cflag, NULL};
    EXPECT(proxy_start(flags) == 0, "proxy");
    rq r[2];
    memset(r, 0, sizeof r);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r, 10000, false) == 1 && r[0].ok, "before reload: ok");
    /* reload: GenerateDataKey no longer allowed */
    f = fopen(conf, "w");
    fprintf(f, "deadline_ms = 20000\nattempt_timeout_ms = 10000\nallow_ops = Decrypt\n");
    fclose(f);
    kill(proxy_pid, SIGHUP);
    for (double end = now_ms() + WAIT_FLOOR_MS; log_count("kms_proxy_reload", NULL, NULL) < 1 && now_ms() < end;)
        sleep_ms(10);
    json_t *ev = NULL;
    EXPECT(log_count("kms_proxy_reload", NULL, &ev) == 1 && json_is_true(json_object_get(ev, "ok")), "reload logged");
    json_decref(ev);
    memset(r, 0, sizeof r);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r, 10000, false) == 1 && !strcmp(r[0].code, "invalid_request"),
           "after reload GenerateDataKey refused: %s", r[0].code);
    /* a bad config keeps the old one */
    f = fopen(conf, "w");
    fprintf(f, "deadline_ms = banana\n");
    fclose(f);
    kill(proxy_pid, SIGHUP);
    for (double end = now_ms() + WAIT_FLOOR_MS; log_count("kms_proxy_reload", NULL, NULL) < 2 && now_ms() < end;)
        sleep_ms(10);
    ev = NULL;
    EXPECT(log_count("kms_proxy_reload", NULL, &ev) == 2 && json_is_false(json_object_get(ev, "ok")),
           "bad reload refused");
    json_decref(ev);
    EXPECT(waitpid(proxy_pid, NULL, WNOHANG) == 0, "alive after a bad reload");
    /* SIGTERM while a request is in flight (the fake answers after 300 ms): it is answered, then the proxy exits */
    f = fopen(conf, "w");
    fprintf(f, "deadline_ms = 20000\nattempt_timeout_ms = 10000\n");
    fclose(f);
    kill(proxy_pid, SIGHUP);
    for (double end = now_ms() + WAIT_FLOOR_MS; log_count("kms_proxy_reload", NULL, NULL) < 3 && now_ms() < end;)
        sleep_ms(10);
    nd_sockaddr a;
    char addr[700];
    snprintf(addr, sizeof addr, "unix:%s", proxy_sock);
    nd_vsock_parse(addr, &a, NULL);
    int fd = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
    size_t jl;
    char *j = mk_tmpl(0, "inflight-at-sigterm", &jl, (void *)&gdk);
    unsigned char *fr = NULL;
    size_t fl;
    nd_frame_build(ND_FRAME_KMS_PROXY, 1, j, jl, &fr, &fl, NULL);
    free(j);
    nd_vsock_write_all(fd, fr, fl, WAIT_FLOOR_MS, &a, NULL);
    free(fr);
    for (double end = now_ms() + WAIT_FLOOR_MS;
         log_count("kms_proxy_request", "inflight-at-sigterm", NULL) < 1 && now_ms() < end;)
        sleep_ms(5);
    /* an idle /metrics client and an idle enclave connection must not keep the proxy from exiting */
    char maddr[700];
    snprintf(maddr, sizeof maddr, "unix:%s", metrics_sock);
    nd_sockaddr ma;
    nd_vsock_parse(maddr, &ma, NULL);
    int idle_m = nd_vsock_connect(&ma, WAIT_FLOOR_MS, NULL);
    int idle_c = nd_vsock_connect(&a, WAIT_FLOOR_MS, NULL);
    EXPECT(idle_m >= 0 && idle_c >= 0, "idle connections");
    sleep_ms(50);
    kill(proxy_pid, SIGTERM);
    nd_frame_decoder d;
    nd_frame_decoder_init(&d, 0);
    unsigned char buf[65536];
    bool answered = false;
    for (double end = now_ms() + WAIT_FLOOR_MS; !answered && now_ms() < end;) {
        ssize_t n = nd_vsock_read(fd, buf, sizeof buf, 200, &a, NULL);
        if (n == 0 || (n < 0 && n != -ETIMEDOUT))
            break;
        if (n > 0) {
            nd_frame_feed(&d, buf, (size_t)n, NULL);
            nd_frame fx;
            if (nd_frame_next(&d, &fx, NULL) == 1)
                answered = fx.type == ND_FRAME_KMS_PROXY && memmem(fx.payload, fx.len, "\"GenerateDataKey\"", 17);
        }
    }
    nd_frame_decoder_free(&d);
    close(fd);
    EXPECT(answered, "the in-flight request was answered during the drain");
    int rc = reap(proxy_pid, 10000);
    proxy_pid = -1;
    EXPECT(rc == 0, "proxy exit code after drain: %d", rc);
    if (idle_m >= 0)
        close(idle_m);
    if (idle_c >= 0)
        close(idle_c);
    EXPECT(log_count("kms_proxy_stop", NULL, NULL) == 1, "stop logged");
    struct stat st;
    EXPECT(stat(proxy_sock, &st) != 0, "unix socket removed at exit");
}

/* ---- fail closed: a KMS that misbehaves --------------------------------------------------------------------------- */

#define LEAKED "UExBTlRFRC1MRUFLRUQtS0VZLTAxMjM0NTY3"  /* base64 of "PLANTED-LEAKED-KEY-01234567" */

typedef struct badkms {
    SSL_CTX *ctx;
    int lfd;
    volatile int mode; /* 0: Plaintext + CiphertextForRecipient, 1: no CiphertextForRecipient */
    volatile int stop;
} badkms;

static void *badkms_thread(void *arg)
{
    badkms *b = arg;
    while (!b->stop) {
        struct pollfd p = {b->lfd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int fd = accept(b->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        SSL *ssl = SSL_new(b->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            char buf[65536];
            size_t len = 0;
            for (;;) {
                /* read one request: headers, then Content-Length bytes */
                char *eoh = NULL;
                while (!(eoh = memmem(buf, len, "\r\n\r\n", 4))) {
                    int r = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
                    if (r <= 0)
                        goto done;
                    len += (size_t)r;
                }
                buf[len] = '\0';
                const char *cl = strcasestr(buf, "content-length:");
                size_t want = (size_t)(eoh - buf) + 4 + (cl ? (size_t)atol(cl + 15) : 0);
                while (len < want) {
                    int r = SSL_read(ssl, buf + len, (int)(sizeof buf - 1 - len));
                    if (r <= 0)
                        goto done;
                    len += (size_t)r;
                }
                const char *body = b->mode == 0
                    ? "{\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/bad\",\"CiphertextBlob\":\"AQIDBA==\","
                      "\"Plaintext\":\"" LEAKED "\",\"CiphertextForRecipient\":\"AQIDBA==\"}"
                    : "{\"KeyId\":\"arn:aws:kms:us-east-1:111122223333:key/bad\",\"CiphertextBlob\":\"AQIDBA==\"}";
                char resp[1024];
                int n = snprintf(resp, sizeof resp,
                                 "HTTP/1.1 200 OK\r\nx-amzn-RequestId: 00000000-0000-4000-8000-00000000bad%d\r\n"
                                 "Content-Type: application/x-amz-json-1.1\r\nContent-Length: %zu\r\n\r\n%s",
                                 b->mode, strlen(body), body);
                SSL_write(ssl, resp, n);
                memmove(buf, buf + want, len - want);
                len -= want;
            }
        }
    done:
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

/* A self-signed EC certificate for 127.0.0.1, written to pem_path for the proxy's ca_file. */
static SSL_CTX *badkms_ctx(const char *pem_path)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"127.0.0.1", -1, -1, 0);
    X509_set_issuer_name(x, nm);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, k, EVP_sha256());
    FILE *f = fopen(pem_path, "w");
    if (f) {
        PEM_write_X509(f, x);
        fclose(f);
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(ctx, x);
    SSL_CTX_use_PrivateKey(ctx, k);
    X509_free(x);
    EVP_PKEY_free(k);
    return ctx;
}

static void scenario_failclosed(void)
{
    badkms b;
    memset(&b, 0, sizeof b);
    snprintf(ca_path, sizeof ca_path, "%s/bad-ca.pem", tmpdir);
    b.ctx = badkms_ctx(ca_path);
    b.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    bind(b.lfd, (struct sockaddr *)&sa, sizeof sa);
    listen(b.lfd, 16);
    getsockname(b.lfd, (struct sockaddr *)&sa, &sl);
    fake_port = ntohs(sa.sin_port);
    pthread_t th;
    pthread_create(&th, NULL, badkms_thread, &b);
    EXPECT(proxy_start(NULL) == 0, "proxy");
    for (int mode = 0; mode < 2; mode++) {
        b.mode = mode;
        rq r[1];
        memset(r, 0, sizeof r);
        EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r, 10000, true) == 1, "mode %d answered once", mode);
        EXPECT(!strcmp(r[0].code, "internal"), "mode %d: recipient request failed closed, got %s", mode,
               r[0].code[0] ? r[0].code : "ok");
        char *t = json_dumps(r[0].resp, JSON_COMPACT);
        EXPECT(t && !strstr(t, "plaintext") && !strstr(t, "ciphertext_for_recipient"), "mode %d: nothing passed: %s",
               mode, t ? t : "");
        EXPECT(t && strstr(t, "fail closed"), "mode %d: message says why: %s", mode, t ? t : "");
        free(t);
        json_t *last = NULL;
        log_count("kms_proxy_response", r[0].id, &last);
        const char *kid = json_string_value(json_object_get(last, "kms_request_id"));
        EXPECT(kid && strstr(kid, "00000000bad"), "mode %d: the upstream request id is logged", mode);
        json_decref(last);
        json_decref(r[0].resp);
    }
    EXPECT(proxy_stop() == 0, "proxy exit");
    char *outs[2] = {slurp(proxy_out, NULL), slurp(proxy_err, NULL)};
    for (int k = 0; k < 2; k++)
        EXPECT(!outs[k] || (!strstr(outs[k], LEAKED) && !strstr(outs[k], "PLANTED-LEAKED")),
               "leaked plaintext in proxy %s", k ? "stderr" : "stdout");
    free(outs[0]);
    free(outs[1]);
    b.stop = 1;
    pthread_join(th, NULL);
    close(b.lfd);
    SSL_CTX_free(b.ctx);
}

/* ---- bench ------------------------------------------------------------------------------------------------------ */

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void pct(double *v, int n, double *p50, double *p99)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    *p50 = n ? v[n / 2] : 0;
    *p99 = n ? v[(int)((double)n * 0.99) < n ? (int)((double)n * 0.99) : n - 1] : 0;
}

typedef struct direct {
    nd_kms_client *kms;
    char *body;
    size_t blen;
    int remaining, inflight, done, errors;
    double *lat;
    double *start;
    int nlat;
} direct;

typedef struct dslot {
    direct *d;
    double t0;
} dslot;

static void direct_next(dslot *s);

static void direct_cb(void *ud, const nd_kms_result *res)
{
    dslot *s = ud;
    direct *d = s->d;
    d->lat[d->nlat++] = now_ms() - s->t0;
    if (res->cls != ND_KMS_OK)
        d->errors++;
    d->done++;
    d->inflight--;
    direct_next(s);
}

static void direct_next(dslot *s)
{
    direct *d = s->d;
    if (d->remaining <= 0)
        return;
    d->remaining--;
    d->inflight++;
    s->t0 = now_ms();
    if (nd_kms_call(d->kms, "GenerateDataKey", d->body, d->blen, 10, direct_cb, s, NULL, NULL) < 0) {
        d->errors++;
        d->inflight--;
    }
}

static double cpu_s(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    char *t = slurp(p, NULL);
    if (!t)
        return 0;
    char *q = strrchr(t, ')');
    unsigned long ut = 0, st = 0;
    if (q)
        sscanf(q + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    free(t);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kib(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    char *t = slurp(p, NULL);
    long v = -1;
    const char *q = t ? strstr(t, "VmHWM:") : NULL;
    if (q)
        v = atol(q + 6);
    free(t);
    return v;
}

static long vm_kib(pid_t pid, const char *field)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    char *t = slurp(p, NULL);
    long v = -1;
    const char *q = t ? strstr(t, field) : NULL;
    if (q)
        v = atol(q + strlen(field));
    free(t);
    return v;
}

static void scenario_flood(void)
{
    EXPECT(fake_start(NULL) == 0, "fake");
    const char *flags[] = {"--max_unsent_per_conn=65536", "--unsent_timeout_ms=300", "--conn_log_rate=5",
                           "--conn_log_burst=20", NULL};
    EXPECT(proxy_start(flags) == 0, "proxy");
    if (proxy_pid <= 0)
        return;
    long rss0 = vm_kib(proxy_pid, "VmRSS:");
    /* 13-byte frames whose payload is not JSON: each one costs the proxy an Error frame and (unbounded) log lines */
    unsigned char *fr = NULL;
    size_t fl = 0;
    nd_frame_build(ND_FRAME_KMS_PROXY, 1, "{bad", 4, &fr, &fl, NULL);
    EXPECT(fl == 13, "frame is %zu bytes", fl);
    enum { PER = 4096 };
    unsigned char *batch = malloc(fl * PER);
    for (size_t i = 0; i < PER; i++)
        memcpy(batch + i * fl, fr, fl);
    free(fr);
    nd_sockaddr a;
    char addr[700];
    snprintf(addr, sizeof addr, "unix:%s", proxy_sock);
    nd_vsock_parse(addr, &a, NULL);
    int fd = nd_vsock_connect(&a, 2000, NULL);
    EXPECT(fd >= 0, "connect");
    if (fd < 0) {
        free(batch);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    /* Send up to 2,000,000 frames (26 MB) and never read. The proxy must stop reading us and then hang up; the
     * condition we wait for is the hang-up (POLLHUP/EPIPE), with a generous safety deadline for a loaded machine. */
    const uint64_t max_bytes = 2000000ull * 13;
    uint64_t sent = 0;
    size_t off = 0;
    bool hung_up = false;
    double deadline = now_ms() + 120000;
    while (sent < max_bytes && now_ms() < deadline) {
        ssize_t w = send(fd, batch + off, fl * PER - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            sent += (uint64_t)w;
            off = (off + (size_t)w) % (fl * PER);
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            hung_up = true; /* EPIPE / ECONNRESET: the proxy closed us */
            break;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 200) > 0 && (p.revents & (POLLHUP | POLLERR))) {
            hung_up = true;
            break;
        }
    }
    close(fd);
    free(batch);
    uint64_t frames = sent / 13;
    fprintf(stderr, "  flood: %llu frames sent before the proxy stopped reading and hung up\n",
            (unsigned long long)frames);
    EXPECT(hung_up, "the proxy closed the connection that does not read (after %llu frames)",
           (unsigned long long)frames);
    EXPECT(frames < 400000, "the proxy kept reading a client that does not read: %llu frames taken",
           (unsigned long long)frames);
    /* wait for the connection's final lines (suppressed count), then measure */
    json_t *last = NULL;
    for (int i = 0; i < 1000 && log_count("kms_proxy_log_suppressed", NULL, NULL) < 1; i++)
        sleep_ms(20);
    long hwm = vm_kib(proxy_pid, "VmHWM:");
    size_t loglen = 0;
    char *log = slurp(proxy_out, &loglen);
    free(log);
    fprintf(stderr, "  flood: proxy RSS %ld KiB at start, peak %ld KiB; log %zu bytes\n", rss0, hwm, loglen);
#if defined(__SANITIZE_ADDRESS__)
    /* ASan keeps freed memory in its quarantine (256 MB by default) plus its own metadata: measured ~500 MB here.
     * Still far below what an unbounded proxy reaches under ASan for 2,000,000 frames. */
    long rss_bound = 1024 * 1024;
#else
    long rss_bound = 32 * 1024;
#endif
    EXPECT(hwm - rss0 < rss_bound, "proxy peak RSS grew by %ld KiB", hwm - rss0);
    EXPECT(loglen < 64 * 1024, "log is %zu bytes after %llu refused frames", loglen, (unsigned long long)frames);
    EXPECT(log_count("kms_proxy_connection_closed", NULL, NULL) == 1, "one kms_proxy_connection_closed line");
    long suppressed = 0;
    char *t = slurp(proxy_out, NULL);
    for (char *q = t ? strstr(t, "\"suppressed\":") : NULL; q; q = strstr(q + 1, "\"suppressed\":"))
        suppressed += atol(q + 13);
    free(t);
    long req = metric("kms_requests_total");
    EXPECT(suppressed > 0 && req > 0, "suppressed %ld of %ld requests' lines", suppressed, req);
    /* every refused frame is either logged (2 lines) or counted as suppressed */
    int logged = log_count("kms_proxy_response", NULL, NULL);
    EXPECT(logged + suppressed >= req, "responses logged %d + suppressed %ld >= requests %ld", logged, suppressed, req);
    json_decref(last);
    /* the proxy still serves a well-behaved client */
    rq r[1];
    memset(r, 0, sizeof r);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r, 20000, false) == 1 && r[0].ok, "served after the flood");
    EXPECT(proxy_stop() == 0, "proxy exit");
}

static void scenario_bench(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4096 && rl.rlim_max >= 4096) {
        rl.rlim_cur = 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int per_total = getenv("BENCH_REQUESTS") ? atoi(getenv("BENCH_REQUESTS")) : 2000;
    EXPECT(fake_start(NULL) == 0, "fake");
    /* Defaults except the rate limit (the bench measures capacity) and deadlines long enough for a loaded machine;
     * max_in_flight stays 100, so at 256 connections the proxy queues instead of opening 256 TLS connections. */
    const char *flags[] = {"--rate_limit_rps=0", "--deadline_ms=30000", "--attempt_timeout_ms=20000",
                           "--connect_timeout_ms=20000", "--max_connections=4096", NULL};
    EXPECT(proxy_start(flags) == 0, "proxy");
    int concs[] = {1, 16, 256};
    int nconc = 3;
    const char *only = getenv("BENCH_CONCURRENCY"); /* one level only (bench/kms-proxy/profile.sh) */
    if (only && atoi(only) > 0) {
        concs[0] = atoi(only);
        nconc = 1;
    }
    printf("{\"results\":[");
    for (int ci = 0; ci < nconc; ci++) {
        int c = concs[ci];
        int per = per_total / c < 4 ? 4 : per_total / c;
        int n = per * c;
        /* direct baseline: c concurrent request loops through the KMS client (TLS keep-alive, SigV4) */
        uv_loop_t loop;
        uv_loop_init(&loop);
        nd_ctx ctx;
        nd_ctx_init(&ctx, &loop);
        setenv("AWS_ACCESS_KEY_ID", TEST_AK, 1);
        setenv("AWS_SECRET_ACCESS_KEY", TEST_SK, 1);
        nd_creds_opts co = {.source = ND_CREDS_ENV};
        nd_creds_provider *cp = NULL;
        nd_creds_provider_new(&ctx, &co, &cp, NULL);
        char ep[100];
        snprintf(ep, sizeof ep, "https://127.0.0.1:%d", fake_port);
        nd_kms_opts ko = {.region = "us-east-1", .endpoint = ep, .ca_file = ca_path, .proxy = "",
                          .max_connections = 64, .creds = cp, .connect_timeout_s = 20};
        direct d;
        memset(&d, 0, sizeof d);
        nd_kms_client_new(&ctx, &ko, &d.kms, NULL);
        char *b64 = NULL;
        size_t bl;
        nd_b64_encode(att_doc, att_len, &b64, &bl, NULL);
        json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s}}", "KeyId", "alias/ephemeral-ml-test", "KeySpec", "AES_256",
                                 "Recipient", "KeyEncryptionAlgorithm", "RSAES_OAEP_SHA_256", "AttestationDocument", b64);
        free(b64);
        d.body = json_dumps(body, JSON_COMPACT);
        d.blen = strlen(d.body);
        json_decref(body);
        d.remaining = n;
        d.lat = calloc((size_t)n, sizeof *d.lat);
        dslot *slots = calloc((size_t)c, sizeof *slots);
        double t0 = now_ms();
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        double dk0 = cpu_s(fake_pid);
        for (int i = 0; i < c; i++) {
            slots[i].d = &d;
            direct_next(&slots[i]);
        }
        while (d.done < n && uv_run(&loop, UV_RUN_ONCE))
            ;
        double del = now_ms() - t0;
        getrusage(RUSAGE_SELF, &ru1);
        double dkcpu = cpu_s(fake_pid) - dk0;
        double dcpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
        double dp50, dp99;
        pct(d.lat, d.nlat, &dp50, &dp99);
        nd_kms_client_free(d.kms);
        nd_creds_provider_free(cp);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
        free(d.body);
        free(d.lat);
        free(slots);

        /* through the proxy: c enclave connections, one request at a time each */
        rq *rs = calloc((size_t)n, sizeof *rs);
        double pc0 = cpu_s(proxy_pid), pk0 = cpu_s(fake_pid);
        getrusage(RUSAGE_SELF, &ru0);
        t0 = now_ms();
        int got = run_client(c, per, 1, mk_tmpl, (void *)&gdk, rs, 600000, false);
        double pel = now_ms() - t0;
        double pcpu = cpu_s(proxy_pid) - pc0, pkcpu = cpu_s(fake_pid) - pk0;
        getrusage(RUSAGE_SELF, &ru1);
        /* the enclave side's CPU (building requests, reading answers): on a real host it runs on the enclave's own
         * CPUs, here it shares the host's with the proxy and the fake KMS */
        double ccpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                               ru0.ru_stime.tv_usec) / 1e6;
        double *lat = calloc((size_t)n, sizeof *lat);
        int ok = 0;
        for (int i = 0; i < n; i++) {
            lat[i] = rs[i].done_ms - rs[i].sent_ms;
            ok += rs[i].ok;
        }
        double pp50, pp99;
        pct(lat, n, &pp50, &pp99);
        free(lat);
        free(rs);
        printf("%s{\"concurrency\":%d,\"requests\":%d,\"direct\":{\"rps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"errors\":%d,\"client_cpu_s_per_1000\":%.3f,\"kms_cpu_s_per_1000\":%.3f},\"proxy\":{\"rps\":%.1f,"
               "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"ok\":%d,\"answered\":%d,\"proxy_cpu_s_per_1000\":%.3f,"
               "\"client_cpu_s_per_1000\":%.3f,\"kms_cpu_s_per_1000\":%.3f}}",
               ci ? "," : "", c, n, n / (del / 1000), dp50, dp99, d.errors, dcpu * 1000 / n, dkcpu * 1000 / n,
               n / (pel / 1000), pp50, pp99, ok, got, pcpu * 1000 / n, ccpu * 1000 / n, pkcpu * 1000 / n);
        fflush(stdout);
    }
    printf("],\"proxy_rss_kib\":%ld}\n", rss_kib(proxy_pid));
    proxy_stop();
}

/* No region configured (and none in the environment: proxy_start gives the proxy a fixed environment): the proxy asks
 * IMDSv2 for placement/region, as the AWS SDKs do. The fake KMS checks the SigV4 credential scope's region, so a
 * request that succeeds proves the region IMDS gave was used, and one for another region must fail. */
static int imds_start(const char *region)
{
    char bin[600], out[600], err[600];
    snprintf(bin, sizeof bin, "%s/nitrodiag-fake-kms", builddir);
    snprintf(out, sizeof out, "%s/imds.out", tmpdir);
    snprintf(err, sizeof err, "%s/imds.err", tmpdir);
    char *argv[] = {bin, "--imds", "--region", (char *)region, "--max-seconds", "300", NULL};
    imds_pid = spawn(argv, out, err, NULL);
    if (imds_pid < 0)
        return -1;
    for (double end = now_ms() + WAIT_FLOOR_MS; now_ms() < end;) {
        char *t = slurp(out, NULL);
        int port = t && strchr(t, '\n') ? atoi(t) : 0;
        free(t);
        if (port > 0)
            return port;
        sleep_ms(10);
    }
    return -1;
}

static void imds_stop(void)
{
    if (imds_pid > 0) {
        kill(imds_pid, SIGTERM);
        reap(imds_pid, 3000);
        imds_pid = -1;
    }
}

static void scenario_region(void)
{
    EXPECT(fake_start(NULL) == 0, "fake KMS did not start");
    char ep[100];
    const char *flags[] = {"--region=", ep, NULL};

    /* 1. IMDS says us-east-1, the fake KMS's region: the request is signed for it and succeeds */
    int port = imds_start("us-east-1");
    EXPECT(port > 0, "fake IMDS did not start");
    snprintf(ep, sizeof ep, "--imds_endpoint=http://127.0.0.1:%d", port);
    EXPECT(proxy_start(flags) == 0, "proxy without a region did not start");
    json_t *st = NULL;
    EXPECT(log_count("kms_proxy_start", NULL, &st) == 1, "one start line");
    const char *r = json_string_value(json_object_get(st, "region"));
    const char *src = json_string_value(json_object_get(st, "region_source"));
    EXPECT(r && !strcmp(r, "us-east-1") && src && !strcmp(src, "imds"), "start line: region %s from %s", r ? r : "null",
           src ? src : "null");
    json_decref(st);
    rq r1[1];
    memset(r1, 0, sizeof r1);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r1, 20000, true) == 1 && r1[0].ok, "request signed for the IMDS "
           "region failed: %s", r1[0].code);
    EXPECT(proxy_stop() == 0, "proxy exit status after SIGTERM");
    imds_stop();

    /* 2. IMDS says eu-west-1: the proxy signs for eu-west-1 and the (us-east-1) KMS refuses the credential scope */
    port = imds_start("eu-west-1");
    EXPECT(port > 0, "fake IMDS did not start");
    snprintf(ep, sizeof ep, "--imds_endpoint=http://127.0.0.1:%d", port);
    EXPECT(proxy_start(flags) == 0, "proxy without a region did not start");
    rq r2[1];
    memset(r2, 0, sizeof r2);
    EXPECT(run_client(1, 1, 1, mk_tmpl, (void *)&gdk, r2, 20000, true) == 1 && !r2[0].ok, "a request signed for "
           "eu-west-1 must not succeed against a us-east-1 KMS");
    EXPECT(proxy_stop() == 0, "proxy exit status after SIGTERM");
    imds_stop();

    /* 3. no IMDS (a port nothing listens on): one line that says how to set a region, exit 1, no socket left */
    snprintf(ep, sizeof ep, "--imds_endpoint=http://127.0.0.1:%d", port);
    EXPECT(proxy_start(flags) < 0, "the proxy started without any region");
    char *e = slurp(proxy_err, NULL);
    EXPECT(e && strstr(e, "nitrodiag-kms-proxy: no region: set region (or AWS_REGION); the instance metadata at "
                          "http://127.0.0.1:") && strchr(e, '\n') == e + strlen(e) - 1,
           "one line naming the fix: %s", e ? e : "");
    free(e);
    struct stat sb;
    EXPECT(stat(proxy_sock, &sb) < 0, "no listening socket left behind");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: proxytest e2e|faults|load|malformed|signals|failclosed|flood|region|bench BUILD_DIR\n");
        return 2;
    }
    builddir = argv[2];
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)getpid());
    if (setup() < 0) {
        fprintf(stderr, "proxytest: setup failed\n");
        cleanup();
        return 1;
    }
    const char *s = argv[1];
    if (!strcmp(s, "e2e"))
        scenario_e2e();
    else if (!strcmp(s, "faults"))
        scenario_faults();
    else if (!strcmp(s, "load"))
        scenario_load();
    else if (!strcmp(s, "malformed"))
        scenario_malformed();
    else if (!strcmp(s, "signals"))
        scenario_signals();
    else if (!strcmp(s, "failclosed"))
        scenario_failclosed();
    else if (!strcmp(s, "bench"))
        scenario_bench();
    else if (!strcmp(s, "flood"))
        scenario_flood();
    else if (!strcmp(s, "region"))
        scenario_region();
    else {
        fprintf(stderr, "proxytest: unknown scenario %s\n", s);
        failures++;
    }
    if (failures) {
        char *e = slurp(proxy_err, NULL);
        if (e && *e)
            fprintf(stderr, "proxy stderr: %s\n", e);
        free(e);
    }
    cleanup();
    free(att_doc);
    fprintf(stderr, "%s: %s (%d failures)\n", s, failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
