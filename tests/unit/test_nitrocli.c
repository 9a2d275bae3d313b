/* test_nitrocli.c — nitro-cli output parsers: the seed's real E26/E27 run-enclave failures byte for byte, err logs,
 * nitro_enclaves.log lines, JSON outputs, argv builders, and random/truncated input that must never crash. */
#include "ndtest.h"
#include "nd_nitrocli.h"

#include <jansson.h>
#include <stdlib.h>

static char *load(const char *name, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/nitro/fixtures/%s", ND_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void seed_e26(void)
{
    size_t n;
    char *t = load("seed_e26_run_enclave.txt", &n);
    CHECK(t != NULL);
    if (!t)
        return;
    nd_nitro_errors e;
    CHECK_EQ_INT(nd_nitro_parse_errors(t, n, &e, NULL), 0);
    CHECK(e.recognised);
    CHECK_EQ_INT(e.n_blocks, 2);
    CHECK_EQ_INT(e.n_preamble, 0);
    CHECK_EQ_INT(e.failed_connections, 1);
    nd_nitro_block *b = &e.blocks[0];
    CHECK_EQ_STR(b->code, "E26");
    CHECK_EQ_INT(b->number, 26);
    CHECK(b->root_cause && !b->secondary);
    CHECK_EQ_STR(b->title, "Insufficient memory requested");
    CHECK_EQ_STR(b->message, "User provided `memory` is 512 MB, but based on the EIF file size, the minimum memory "
                             "should be 2148 MB");
    CHECK_EQ_STR(nd_nitro_fact_get(b, "memory_mib"), "512");
    CHECK_EQ_STR(nd_nitro_fact_get(b, "min_memory_mib"), "2148");
    CHECK_EQ_STR(nd_nitro_fact_get(b, "option"), "memory");
    CHECK_EQ_STR(b->doc_url, "https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E26");
    CHECK_EQ_STR(b->err_log_path, "/var/log/nitro_enclaves/err2021-06-18T21:46:43.249503129+00:00.log");
    CHECK_EQ_INT(b->n_details, 0);
    CHECK_EQ_INT(b->n_extra, 0);
    CHECK(b->backtrace == NULL);
    CHECK_EQ_INT(b->failed_connections, -1);
    b = &e.blocks[1];
    CHECK_EQ_STR(b->code, "E39");
    CHECK(!b->root_cause && b->secondary);
    CHECK_EQ_INT(b->failed_connections, 1);
    CHECK_EQ_STR(b->title, "Enclave process connection failure");
    CHECK_EQ_STR(b->err_log_path, "/var/log/nitro_enclaves/err2021-06-18T21:46:43.249656960+00:00.log");
    CHECK_EQ_INT(e.raw_len, n);
    CHECK(memcmp(e.raw, t, n) == 0);
    char ts[64];
    CHECK_EQ_INT(nd_nitro_errlog_time(e.blocks[0].err_log_path, ts, sizeof ts), 0);
    CHECK_EQ_STR(ts, "2021-06-18T21:46:43.249503129+00:00");
    nd_nitro_errors_free(&e);
    free(t);
}

static void seed_e27(void)
{
    size_t n;
    char *t = load("seed_e27_run_enclave.txt", &n);
    CHECK(t != NULL);
    if (!t)
        return;
    nd_nitro_errors e;
    CHECK_EQ_INT(nd_nitro_parse_errors(t, n, &e, NULL), 0);
    CHECK_EQ_INT(e.n_blocks, 2);
    CHECK_EQ_INT(e.n_preamble, 1);
    CHECK_EQ_STR(e.preamble[0], "Start allocating memory...");
    nd_nitro_block *b = &e.blocks[0];
    CHECK_EQ_STR(b->code, "E27");
    CHECK(b->root_cause);
    CHECK_EQ_STR(b->title, "Insufficient memory available");
    CHECK_EQ_STR(nd_nitro_fact_get(b, "memory_mib"), "3072");
    CHECK_EQ_INT(b->n_details, 1);
    CHECK(b->n_details == 1 && strstr(b->details[0], "`memory_mib` value from '/etc/nitro_enclaves/allocator.yaml'"));
    CHECK(strstr(b->message, "which is more than the available hugepage memory.\nYou can increase") != NULL);
    CHECK_EQ_STR(b->err_log_path, "/var/log/nitro_enclaves/err2021-06-18T20:56:47.554786281+00:00.log");
    b = &e.blocks[1];
    CHECK_EQ_STR(b->code, "E39");
    CHECK(b->secondary);
    CHECK_EQ_INT(b->n_extra, 2); /* the page's two Japanese annotation lines */
    CHECK_EQ_STR(b->err_log_path, "/var/log/nitro_enclaves/err2021-06-18T20:56:47.554962083+00:00.log");
    nd_nitro_errors_free(&e);
    free(t);
}

static void variants(void)
{
    const char *t = "[ E19 ] File operation failure. Such error appears when the system fails to perform the requested "
                    "file operations.\nFile: '/dev/nitro_enclaves', failing operation: 'Open'.\n\nFor more details, "
                    "please visit https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#E19\n\nBacktrace:\n"
                    "  Action: Run Enclave\n  Subactions:\n    Failed to open device file\n\n";
    nd_nitro_errors e;
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK_EQ_INT(e.n_blocks, 1);
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "file"), "/dev/nitro_enclaves");
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "operation"), "Open");
    CHECK(e.blocks[0].err_log_path == NULL); /* the log could not be written */
    CHECK(e.blocks[0].backtrace && strstr(e.blocks[0].backtrace, "Failed to open device file"));
    CHECK_EQ_INT(e.failed_connections, -1);
    nd_nitro_errors_free(&e);

    t = "[ E22 ] Insufficient CPUs available in the pool. User provided `cpu-count` is 4, which is more than the "
        "configured CPU pool size.\n";
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "cpu_count"), "4");
    nd_nitro_errors_free(&e);

    t = "[ E36 ] Enclave boot failure. Such error appears when attempting to receive the `ready` signal.\n\nBacktrace:\n"
        "Waiting on enclave to boot failed with error VsockTimeoutError\n";
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "boot_error"), "VsockTimeoutError");
    nd_nitro_errors_free(&e);

    /* nitro-cli's English driver reason (resource_manager.rs do_ioctl), never an NE_ERR_* name */
    t = "[ E29 ] Ioctl failure. Such error is used as a general ioctl error.\n\nBacktrace:\n"
        "Create VM ioctl failed\nThe enclave cannot be created because no CPUs are available in the pool\n";
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "driver_message"),
                 "The enclave cannot be created because no CPUs are available in the pool");
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "driver_error"), "NE_ERR_NO_CPUS_AVAIL_IN_POOL");
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "cpus"), "none available");
    nd_nitro_errors_free(&e);

    t = "[ E26 ] Insufficient memory requested. User provided `memory` is 0 MB, and memory should be greater than 0 MB.";
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK_EQ_STR(nd_nitro_fact_get(&e.blocks[0], "memory_mib"), "0");
    CHECK(nd_nitro_fact_get(&e.blocks[0], "min_memory_mib") == NULL);
    nd_nitro_errors_free(&e);

    t = "    [E44] Enclave console connection failure. x\n"; /* indented, no inner spaces */
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK(e.n_blocks == 1 && strcmp(e.blocks[0].code, "E44") == 0);
    CHECK_EQ_STR(e.blocks[0].title, "Enclave console connection failure");
    nd_nitro_errors_free(&e);

    t = "total garbage\nno blocks [ E ] here [E1234]\n";
    CHECK_EQ_INT(nd_nitro_parse_errors(t, strlen(t), &e, NULL), 0);
    CHECK(!e.recognised);
    CHECK_EQ_INT(e.n_blocks, 0);
    CHECK_EQ_STR(e.raw, t);
    nd_nitro_errors_free(&e);

    CHECK_EQ_INT(nd_nitro_parse_errors(NULL, 0, &e, NULL), 0);
    CHECK(!e.recognised);
    nd_nitro_errors_free(&e);
}

static void errlog(void)
{
    const char *t = "  Action: Run Enclave\n  Subactions:\n    Failed to execute command `Run`\n    Failed to handle all "
                    "enclave process replies\n  Root error file: src/enclave_proc/resource_manager.rs\n  Root error "
                    "line: 572\n  Version: 1.2.2\n";
    nd_nitro_errlog l;
    CHECK_EQ_INT(nd_nitro_parse_errlog(t, strlen(t), &l, NULL), 0);
    CHECK(l.recognised);
    CHECK_EQ_STR(l.action, "Run Enclave");
    CHECK_EQ_INT(l.n_subactions, 2);
    CHECK(l.n_subactions == 2 && strcmp(l.subactions[0], "Failed to execute command `Run`") == 0);
    CHECK_EQ_STR(l.root_file, "src/enclave_proc/resource_manager.rs");
    CHECK_EQ_INT(l.root_line, 572);
    CHECK_EQ_STR(l.version, "1.2.2");
    nd_nitro_errlog_free(&l);
    CHECK_EQ_INT(nd_nitro_parse_errlog("nothing", 7, &l, NULL), 0);
    CHECK(!l.recognised);
    nd_nitro_errlog_free(&l);
    char ts[64];
    CHECK_EQ_INT(nd_nitro_errlog_time("/var/log/nitro_enclaves/nitro_enclaves.log", ts, sizeof ts), -EINVAL);
}

static void logline(void)
{
    const char *t = "[nitro-cli:4321][INFO][2021-06-18T21:46:43.249Z][src/main.rs:123] Start allocating memory...";
    nd_nitro_logline l;
    nd_err err;
    CHECK_EQ_INT(nd_nitro_parse_logline(t, strlen(t), &l, &err), 0);
    CHECK_EQ_STR(l.id, "nitro-cli:4321");
    CHECK_EQ_STR(l.source, "nitro-cli");
    CHECK_EQ_INT(l.pid, 4321);
    CHECK_EQ_STR(l.level, "INFO");
    CHECK_EQ_STR(l.timestamp, "2021-06-18T21:46:43.249Z");
    CHECK_EQ_STR(l.file, "src/main.rs");
    CHECK_EQ_INT(l.line, 123);
    CHECK(l.message_len == strlen("Start allocating memory...") && memcmp(l.message, "Start", 5) == 0);
    t = "[enc-1a2b:567][WARN][2021-06-18T21:46:43.249Z][src/enclave_proc/mod.rs:88] Received hang-up event from the "
        "enclave. Enclave process will shut down.";
    CHECK_EQ_INT(nd_nitro_parse_logline(t, strlen(t), &l, &err), 0);
    CHECK_EQ_STR(l.source, "enc-1a2b");
    CHECK_EQ_INT(l.pid, 567);
    CHECK_EQ_INT(nd_nitro_parse_logline("hello", 5, &l, &err), -EBADMSG);
    CHECK(strstr(err.msg, "column 1") != NULL);
    t = "[nitro-cli:1][info][2021][x:1] m";
    CHECK_EQ_INT(nd_nitro_parse_logline(t, strlen(t), &l, &err), -EBADMSG);
    CHECK(strstr(err.msg, "level") != NULL);
}

static void json_outputs(void)
{
    const char *run = "{\n  \"EnclaveName\": \"app\",\n  \"EnclaveID\": \"i-0123456789abcdef0-enc0123456789abcdef\",\n"
                      "  \"ProcessID\": 4321,\n  \"EnclaveCID\": 16,\n  \"NumberOfCPUs\": 2,\n  \"CPUIDs\": [\n    1,\n"
                      "    3\n  ],\n  \"MemoryMiB\": 1024\n}\nconsole line 1\n";
    json_t *j;
    size_t end;
    nd_err err;
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_RUN_ENCLAVE, run, strlen(run), &j, &end, &err), 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "EnclaveCID")), 16);
    CHECK(strncmp(run + end, "\nconsole line 1", 15) == 0);
    json_decref(j);
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_DESCRIBE_ENCLAVES, "[]\n", 3, &j, NULL, &err), 0);
    CHECK(json_is_array(j) && json_array_size(j) == 0);
    json_decref(j);
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_DESCRIBE_ENCLAVES, "{}", 2, &j, NULL, &err), -EBADMSG);
    CHECK(strstr(err.msg, "unrecognised output") != NULL);
    const char *term = "[{\"EnclaveName\":\"a\",\"EnclaveID\":\"i-1\",\"Terminated\":true}]";
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_TERMINATE_ENCLAVE, term, strlen(term), &j, NULL, &err), 0);
    json_decref(j);
    const char *build = "Start building the Enclave Image...\n{\"Measurements\":{\"HashAlgorithm\":\"Sha384 { ... }\","
                        "\"PCR0\":\"a\",\"PCR1\":\"b\",\"PCR2\":\"c\"}}";
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_BUILD_ENCLAVE, build, strlen(build), &j, NULL, &err), 0);
    json_decref(j);
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_RUN_ENCLAVE, "{\"EnclaveID\":", 13, &j, NULL, &err), -EBADMSG);
    CHECK_EQ_INT(nd_nitro_parse_json(ND_NITRO_RUN_ENCLAVE, "", 0, &j, NULL, &err), -EBADMSG);
}

static void argv_builders(void)
{
    nd_ctx ctx;
    nd_ctx_init(&ctx, NULL);
    nd_nitro_argv a;
    nd_err err;
    nd_nitro_run_opts o = {.eif_path = "/x.eif", .memory_mib = 2148, .cpu_count = 2, .cid = 16, .debug_mode = true};
    CHECK_EQ_INT(nd_nitro_argv_run_enclave(&ctx, &o, &a, &err), 0);
    const char *want[] = {"nitro-cli", "run-enclave", "--cpu-count", "2", "--memory", "2148", "--eif-path", "/x.eif",
                          "--enclave-cid", "16", "--debug-mode"};
    CHECK_EQ_INT(a.n, 11);
    for (size_t i = 0; i < a.n && i < 11; i++)
        CHECK_EQ_STR(a.v[i], want[i]);
    CHECK(a.v[a.n] == NULL);
    nd_nitro_argv_free(&a);
    nd_nitro_run_opts o2 = {.eif_path = "/x.eif", .memory_mib = 512, .cpu_ids = "1,3", .cid = -1};
    CHECK_EQ_INT(nd_nitro_argv_run_enclave(&ctx, &o2, &a, &err), 0);
    CHECK(a.n == 9 && strcmp(a.v[3], "1") == 0 && strcmp(a.v[4], "3") == 0);
    nd_nitro_argv_free(&a);
    nd_nitro_run_opts o3 = {.eif_path = "/x.eif", .cid = -1};
    CHECK_EQ_INT(nd_nitro_argv_run_enclave(&ctx, &o3, &a, &err), -EINVAL);
    CHECK_EQ_INT(nd_nitro_argv_terminate(&ctx, NULL, &a, &err), 0);
    CHECK(a.n == 3 && strcmp(a.v[2], "--all") == 0);
    nd_nitro_argv_free(&a);
    snprintf(ctx.nitro_cli, sizeof ctx.nitro_cli, "/bin/echo");
    CHECK_EQ_INT(nd_nitro_argv_explain(&ctx, "E26", &a, &err), 0);
    nd_proc_result r;
    CHECK_EQ_INT(nd_nitro_run_sync(&a, 5, &r, &err), 0);
    CHECK_EQ_STR(r.out.data, "explain --error-code E26\n");
    nd_proc_result_free(&r);
    nd_nitro_argv_free(&a);
}

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* Random, mutated and truncated input for every parser. */
static void fuzz(void)
{
    size_t n1, n2;
    char *a = load("seed_e26_run_enclave.txt", &n1), *b = load("seed_e27_run_enclave.txt", &n2);
    CHECK(a && b);
    if (!a || !b)
        return;
    const char *alphabet = "[]E0123456789 .:`'\"\n\nFailed connections: For more details, please visit Backtrace:"
                           "If you open a support ticket, please provide the error log found at \"Action:Subactions:";
    size_t al = strlen(alphabet);
    char buf[4096];
    unsigned seed = 42;
    nd_nitro_errors e;
    nd_nitro_errlog l;
    nd_nitro_logline ll;
    json_t *j;
    for (int it = 0; it < 4000; it++) {
        size_t n;
        int mode = it % 4;
        if (mode == 0) { /* truncation of a real output */
            const char *src = it % 8 ? a : b;
            size_t sl = it % 8 ? n1 : n2;
            n = rnd(&seed) % (sl + 1);
            memcpy(buf, src, n);
        } else if (mode == 1) { /* mutation */
            memcpy(buf, b, n2);
            n = n2;
            for (int k = 0; k < 10; k++)
                buf[rnd(&seed) % n] = (char)rnd(&seed);
        } else if (mode == 2) { /* tokens from the grammar */
            n = rnd(&seed) % 600;
            for (size_t i = 0; i < n; i++)
                buf[i] = alphabet[rnd(&seed) % al];
        } else { /* bytes */
            n = rnd(&seed) % 600;
            for (size_t i = 0; i < n; i++)
                buf[i] = (char)rnd(&seed);
        }
        CHECK_EQ_INT(nd_nitro_parse_errors(buf, n, &e, NULL), 0);
        for (size_t i = 0; i < e.n_blocks; i++)
            CHECK(e.blocks[i].title && e.blocks[i].message);
        nd_nitro_errors_free(&e);
        CHECK_EQ_INT(nd_nitro_parse_errlog(buf, n, &l, NULL), 0);
        nd_nitro_errlog_free(&l);
        nd_nitro_parse_logline(buf, n, &ll, NULL);
        if (nd_nitro_parse_json((nd_nitro_cmd)(it % 5), buf, n, &j, NULL, NULL) == 0)
            json_decref(j);
    }
    free(a);
    free(b);
}

int main(void)
{
    ND_RUN(seed_e26);
    ND_RUN(seed_e27);
    ND_RUN(variants);
    ND_RUN(errlog);
    ND_RUN(logline);
    ND_RUN(json_outputs);
    ND_RUN(argv_builders);
    ND_RUN(fuzz);
    return nd_test_summary();
}
