/* test_allocator.c — allocator.yaml parsed like the allocator service, edits that keep comments, atomic write with a
 * backup under a --root, and random input. */
#include "ndtest.h"
#include "nd_allocator.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *DEFAULT_YAML =
    "---\n"
    "# Enclave configuration file.\n"
    "#\n"
    "# How much memory to allocate for enclaves (in MiB).\n"
    "memory_mib: 512\n"
    "#\n"
    "# How many CPUs to reserve for enclaves.\n"
    "cpu_count: 2\n"
    "#\n"
    "# Example of reserving CPUs 2, 3, and 6 through 9:\n"
    "# cpu_pool: 2,3,6-9\n";

static int parse(const char *t, nd_alloc_config *c, nd_err *e)
{
    return nd_alloc_parse(t, strlen(t), NULL, c, e);
}

static void parse_cases(void)
{
    nd_alloc_config c;
    nd_err e;
    CHECK_EQ_INT(parse(DEFAULT_YAML, &c, &e), 0);
    CHECK(c.has_memory && c.memory_mib == 512 && c.memory_line == 5);
    CHECK(c.has_cpu_count && c.cpu_count == 2 && c.cpu_count_line == 8);
    CHECK(!c.has_cpu_pool);
    CHECK_EQ_INT(c.doc_start_line, 1);
    CHECK_EQ_INT(c.n_warnings, 0);
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("memory_mib: 64\nignored: 1\n---\nmemory_mib: \"1024\"\ncpu_pool: 2,3,6-9\n", &c, &e), 0);
    CHECK_EQ_INT(c.memory_mib, 1024);
    CHECK_EQ_STR(c.cpu_pool, "2,3,6-9");
    CHECK_EQ_INT(c.n_pool_cpus, 6);
    CHECK(c.n_pool_cpus == 6 && c.pool_cpus[0] == 2 && c.pool_cpus[2] == 6 && c.pool_cpus[5] == 9);
    CHECK(c.n_warnings == 2); /* two lines before --- */
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\nmemory_mib: 512\nmemory: 2\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "Error in /etc/nitro_enclaves/allocator.yaml:3 - unexpected: memory");
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(nd_alloc_parse("---\ncpu_count:\n", 15, "/x/allocator.yaml", &c, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "Error in /x/allocator.yaml:2 - missing value for cpu_count");
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\nmemory_mib: 512\ncpu_count: 2\ncpu_pool: 1-2\n", &c, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "Config error: `cpu_count` conflicts with `cpu_pool`.");
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "Config error: missing memory reservation (`memory_mib`).");
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\nmemory_mib: 512\n", &c, &e), -EINVAL);
    CHECK_EQ_STR(e.msg, "Config error: missing CPU reservation (either `cpu_count` or `cpu_pool`).");
    nd_alloc_config_free(&c);

    /* the last line without a newline is never read by `while read line` */
    CHECK_EQ_INT(parse("---\nmemory_mib: 512\ncpu_count: 2", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "missing CPU reservation") != NULL);
    CHECK(c.n_warnings == 1 && strstr(c.warnings[0], "line 3 has no newline"));
    nd_alloc_config_free(&c);

    /* no --- at all: nothing is read */
    CHECK_EQ_INT(parse("memory_mib: 512\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "missing memory reservation") != NULL);
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\nmemory_mib: 5x\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "The needed memory amount (5x) is invalid.") != NULL);
    nd_alloc_config_free(&c);

    CHECK_EQ_INT(parse("---\nmemory_mib: 512\ncpu_pool: 3-1\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "allocator.yaml:3 - cpu_pool: invalid CPU range '3-1' at column 1") != NULL);
    nd_alloc_config_free(&c);

    /* inline comments as the script reads them (bash parse_config run on these lines, 2026-12-06): the value is what
     * follows the LAST ':' — the reference's own example line gives cpu_count "2,3,6-9" */
    CHECK_EQ_INT(parse("---\n  memory_mib: 512\ncpu_count: 2        # or: cpu_pool: 2,3,6-9\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "The CPU count value (2,3,6-9) is invalid.") != NULL);
    nd_alloc_config_free(&c);
    CHECK_EQ_INT(parse("---\nmemory_mib: 512 # note: 4GiB later\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "The needed memory amount (4GiB later) is invalid.") != NULL);
    nd_alloc_config_free(&c);
    CHECK_EQ_INT(parse("---\nmemory_mib: 512\ncpu_count: 2 # two\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "The CPU count value (2 # two) is invalid.") != NULL);
    nd_alloc_config_free(&c);
    /* CRLF: "---\r" is never "---": nothing is read */
    CHECK_EQ_INT(parse("---\r\nmemory_mib: 512\r\ncpu_count: 2\r\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "missing memory reservation") != NULL);
    nd_alloc_config_free(&c);
    /* a blank line after ---: an empty key, "unexpected: " */
    CHECK_EQ_INT(parse("---\n\nmemory_mib: 512\ncpu_count: 2\n", &c, &e), -EINVAL);
    CHECK(strstr(e.msg, "allocator.yaml:2 - unexpected: ") != NULL);
    nd_alloc_config_free(&c);

    unsigned *cpus;
    size_t n;
    CHECK_EQ_INT(nd_alloc_parse_cpu_list("9,1-3,2", &cpus, &n, &e), 0);
    CHECK(n == 4 && cpus[0] == 1 && cpus[3] == 9);
    free(cpus);
    CHECK_EQ_INT(nd_alloc_parse_cpu_list("1,,2", &cpus, &n, &e), -EINVAL);
    CHECK(strstr(e.msg, "column 3") != NULL);
    CHECK_EQ_INT(nd_alloc_parse_cpu_list("1,", &cpus, &n, &e), -EINVAL);
    CHECK_EQ_INT(nd_alloc_parse_cpu_list("0-3-7", &cpus, &n, &e), -EINVAL);
}

static void edit_cases(void)
{
    char *out;
    nd_err e;
    nd_alloc_edit ed = {.set_memory = true, .memory_mib = 2148};
    CHECK_EQ_INT(nd_alloc_edit_text(DEFAULT_YAML, strlen(DEFAULT_YAML), &ed, &out, &e), 0);
    /* only the value changed: every other byte is the same */
    const char *p = strstr(DEFAULT_YAML, "512");
    size_t pre = (size_t)(p - DEFAULT_YAML);
    CHECK(out && strncmp(out, DEFAULT_YAML, pre) == 0 && strncmp(out + pre, "2148\n", 5) == 0 &&
          strcmp(out + pre + 4, DEFAULT_YAML + pre + 3) == 0);
    free(out);

    nd_alloc_edit ed2 = {.cpu_pool = "2,3"};
    CHECK_EQ_INT(nd_alloc_edit_text(DEFAULT_YAML, strlen(DEFAULT_YAML), &ed2, &out, &e), 0);
    CHECK(out && strstr(out, "# cpu_count: 2\n") && strstr(out, "# cpu_count: 2\ncpu_pool: 2,3\n#\n"));
    nd_alloc_config c;
    CHECK_EQ_INT(nd_alloc_parse(out, strlen(out), NULL, &c, &e), 0);
    CHECK(c.has_cpu_pool && !c.has_cpu_count && c.n_pool_cpus == 2);
    nd_alloc_config_free(&c);
    char *out2;
    nd_alloc_edit ed3 = {.set_cpu_count = true, .cpu_count = 4};
    CHECK_EQ_INT(nd_alloc_edit_text(out, strlen(out), &ed3, &out2, &e), 0);
    CHECK(out2 && strstr(out2, "# cpu_pool: 2,3\ncpu_count: 4\n"));
    free(out2);
    free(out);

    const char *t = "# header\nmemory_mib: 1\n"; /* no --- : one is added at the top */
    nd_alloc_edit ed4 = {.set_memory = true, .memory_mib = 512, .set_cpu_count = true, .cpu_count = 2};
    CHECK_EQ_INT(nd_alloc_edit_text(t, strlen(t), &ed4, &out, &e), 0);
    CHECK_EQ_STR(out, "---\n# header\nmemory_mib: 512\ncpu_count: 2\n");
    free(out);

    /* an inline comment would be read as part of the value by the script: the edit drops it */
    const char *t2 = "---\nmemory_mib:   512   # reserved\ncpu_count: 2\n";
    CHECK_EQ_INT(nd_alloc_edit_text(t2, strlen(t2), &ed, &out, &e), 0);
    CHECK_EQ_STR(out, "---\nmemory_mib:   2148\ncpu_count: 2\n");
    free(out);

    nd_alloc_edit bad = {.cpu_pool = "x"};
    CHECK_EQ_INT(nd_alloc_edit_text(t2, strlen(t2), &bad, &out, &e), -EINVAL);
    const char *t3 = "---\nmemory_mib: 512\nbogus: 1\ncpu_count: 2\n";
    CHECK_EQ_INT(nd_alloc_edit_text(t3, strlen(t3), &ed, &out, &e), -EINVAL);
    CHECK(strstr(e.msg, "unexpected: bogus") != NULL);
}

static void write_under_root(void)
{
    char root[4096];
    const char *base = getenv("ND_TEST_TMP") ? getenv("ND_TEST_TMP") : "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/alloc_XXXXXX", base);
    CHECK(mkdtemp(root) != NULL);
    char dir[4200], file[4300];
    snprintf(dir, sizeof dir, "%s/etc", root);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/etc/nitro_enclaves", root);
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/allocator.yaml", dir);
    FILE *f = fopen(file, "w");
    fputs(DEFAULT_YAML, f);
    fclose(f);
    chmod(file, 0640);
    nd_ctx ctx;
    nd_ctx_init(&ctx, NULL);
    snprintf(ctx.root, sizeof ctx.root, "%s", root);
    nd_alloc_config c;
    nd_err e;
    CHECK_EQ_INT(nd_alloc_load(&ctx, NULL, &c, NULL, &e), 0);
    CHECK_EQ_INT(c.memory_mib, 512);
    nd_alloc_config_free(&c);
    nd_alloc_edit ed = {.set_memory = true, .memory_mib = 4096};
    char bak[8400];
    CHECK_EQ_INT(nd_alloc_write(&ctx, NULL, &ed, bak, sizeof bak, &e), 0);
    CHECK(strstr(bak, "/etc/nitro_enclaves/allocator.yaml.bak") != NULL);
    CHECK_EQ_INT(nd_alloc_load(&ctx, NULL, &c, NULL, &e), 0);
    CHECK_EQ_INT(c.memory_mib, 4096);
    nd_alloc_config_free(&c);
    struct stat st;
    CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == 0640);
    FILE *bf = fopen(bak, "r");
    char buf[1024] = "";
    CHECK(bf != NULL);
    if (bf) {
        size_t n = fread(buf, 1, sizeof buf - 1, bf);
        buf[n] = '\0';
        fclose(bf);
    }
    CHECK_EQ_STR(buf, DEFAULT_YAML);
    nd_alloc_edit bad = {.cpu_pool = "a-b"};
    CHECK(nd_alloc_write(&ctx, NULL, &bad, NULL, 0, &e) < 0);
    CHECK_EQ_INT(nd_alloc_load(&ctx, NULL, &c, NULL, &e), 0); /* untouched */
    CHECK_EQ_INT(c.memory_mib, 4096);
    nd_alloc_config_free(&c);
    /* no stray temporary files */
    unlink(bak);
    unlink(file);
    CHECK_EQ_INT(rmdir(dir), 0);
    snprintf(dir, sizeof dir, "%s/etc", root);
    rmdir(dir);
    rmdir(root);
    CHECK_EQ_INT(nd_alloc_load(&ctx, NULL, &c, NULL, &e), -ENOENT);
}

static void fuzz(void)
{
    const char *alpha = "-:#\" \n\t0123456789,memory_mib cpu_count cpu_pool ---\nx";
    size_t al = strlen(alpha);
    char buf[512];
    unsigned s = 7;
    for (int it = 0; it < 5000; it++) {
        size_t n = 0;
        if (it % 3 == 0) {
            size_t dl = strlen(DEFAULT_YAML);
            s = s * 1103515245u + 12345u;
            n = (s >> 16) % (dl + 1);
            memcpy(buf, DEFAULT_YAML, n);
        } else {
            s = s * 1103515245u + 12345u;
            n = (s >> 16) % 300;
            for (size_t i = 0; i < n; i++) {
                s = s * 1103515245u + 12345u;
                buf[i] = it % 3 == 1 ? alpha[(s >> 16) % al] : (char)(s >> 16);
            }
        }
        buf[n] = '\0';
        nd_alloc_config c;
        nd_err e;
        nd_alloc_parse(buf, n, NULL, &c, &e);
        nd_alloc_config_free(&c);
        char *out = NULL;
        nd_alloc_edit ed = {.set_memory = true, .memory_mib = 1024, .set_cpu_count = it % 2 == 0, .cpu_count = 2,
                            .cpu_pool = it % 2 ? "1-3" : NULL};
        if (nd_alloc_edit_text(buf, n, &ed, &out, &e) == 0) {
            CHECK_EQ_INT(nd_alloc_parse(out, strlen(out), NULL, &c, &e), 0);
            nd_alloc_config_free(&c);
        }
        free(out);
    }
}

int main(void)
{
    ND_RUN(parse_cases);
    ND_RUN(edit_cases);
    ND_RUN(write_under_root);
    ND_RUN(fuzz);
    return nd_test_summary();
}
