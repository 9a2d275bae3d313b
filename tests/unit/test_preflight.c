/* test_preflight.c — run-enclave predictions: the seed's E26 (512 vs 2148) and E27 (3072 vs 512 reserved), CPU pool
 * errors with a stale enclave, and host state read under a root (hugepages, ne_cpus). */
#include "ndtest.h"
#include "nd_preflight.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024ULL * 1024ULL)

static void seed_numbers(void)
{
    nd_alloc_config cfg = {.has_memory = true, .memory_mib = 512, .has_cpu_count = true, .cpu_count = 2};
    nd_preflight_input in = {.eif_size = 536 * MiB + 12345, .has_eif = true, .memory_mib = 512, .cpu_count = 2,
                             .alloc = &cfg};
    nd_preflight_result r;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.min_memory_mib, 2148);
    CHECK_EQ_INT(r.n_issues, 1);
    CHECK_EQ_STR(r.issues[0].code, "E26");
    CHECK_EQ_STR(r.issues[0].message, "Insufficient memory requested. User provided `memory` is 512 MB, but based on "
                                      "the EIF file size, the minimum memory should be 2148 MB");
    in.memory_mib = 3072;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 1);
    CHECK_EQ_STR(r.issues[0].code, "E27");
    CHECK(strncmp(r.issues[0].message, "Insufficient memory available. User provided `memory` is 3072 MB, which is "
                                       "more than the available hugepage memory.\nYou can increase", 130) == 0);
    CHECK_EQ_INT(r.issues[0].limit, 512);
    CHECK_EQ_STR(r.memory_source, "allocator.yaml");
    in.memory_mib = 2148;
    cfg.memory_mib = 4096;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 0);
    /* --memory 0 meets the 4x rule first (EnclaveHandle::new, resource_manager.rs:488): the EIF's minimum is named */
    in.memory_mib = 0;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK(r.n_issues == 1 && strstr(r.issues[0].message, "is 0 MB, but based on the EIF file size, the minimum memory "
                                                         "should be 2148 MB"));
    in.has_eif = false; /* without an EIF: ResourceAllocator::new's text (resource_manager.rs:332) */
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK(r.n_issues == 1 && strstr(r.issues[0].message, "is 0 MB, and memory should be greater than 0 MB."));
}

static void cpu_pool(void)
{
    unsigned pool[] = {1, 3};
    nd_alloc_config cfg = {.has_memory = true, .memory_mib = 4096, .has_cpu_pool = true, .pool_cpus = pool,
                           .n_pool_cpus = 2};
    unsigned stale[] = {1, 3};
    nd_preflight_input in = {.memory_mib = 1024, .cpu_count = 2, .alloc = &cfg, .used_cpus = stale,
                             .n_used_cpus = 2, .used_memory_mib = 1024};
    nd_preflight_result r;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 1); /* a stale enclave holds the whole pool: NE_CREATE_VM fails */
    CHECK_EQ_STR(r.issues[0].code, "E29");
    CHECK(strstr(r.issues[0].note, "Create VM ioctl failed: The enclave cannot be created because no CPUs are available "
                                   "in the pool (NE_ERR_NO_CPUS_AVAIL_IN_POOL)") != NULL);
    CHECK_EQ_INT(r.issues[0].limit, 0);
    CHECK_EQ_INT(r.memory_free_mib, 3072);
    /* ... before "Start allocating memory...": with memory short too, E29 comes first, then E27 */
    in.memory_mib = 3584;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 2);
    CHECK_EQ_STR(r.issues[0].code, "E29");
    CHECK_EQ_STR(r.issues[1].code, "E27");
    CHECK(strstr(r.issues[1].message, "and then restart the nitro-enclaves-allocator.service.") != NULL);
    /* one pool CPU free, two wanted: NE_CREATE_VM passes, adding vCPUs fails after memory (E27 first) */
    in.n_used_cpus = 1;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 2);
    CHECK_EQ_STR(r.issues[0].code, "E27");
    CHECK_EQ_STR(r.issues[1].code, "E29");
    CHECK(strstr(r.issues[1].note, "Add vCPU ioctl failed") != NULL);
    in.n_used_cpus = 2;
    in.memory_mib = 1024;
    in.cpu_count = 4; /* more than the pool has at all */
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_STR(r.issues[0].code, "E22");
    CHECK(strstr(r.issues[0].message, "User provided `cpu-count` is 4, which is more than the configured CPU pool size.") != NULL);
    CHECK_EQ_INT(r.issues[0].limit, 2);
    unsigned ids[] = {3, 5, 3};
    nd_preflight_input in2 = {.memory_mib = 1024, .cpu_ids = ids, .n_cpu_ids = 3, .alloc = &cfg};
    CHECK_EQ_INT(nd_preflight_check(&in2, &r, NULL), 0);
    CHECK_EQ_INT(r.n_issues, 2);
    CHECK_EQ_STR(r.issues[0].code, "E20");
    CHECK(strstr(r.issues[0].message, "(CPU(s) 3)") != NULL);
    CHECK_EQ_STR(r.issues[1].code, "E21");
    CHECK(strstr(r.issues[1].message, "contains CPU 5, which is not available in the pool.") != NULL);
    /* get_duplicate_cpus (cpu_info.rs:195) concatenates the duplicated IDs without a separator */
    unsigned ids2[] = {3, 1, 3, 1};
    nd_preflight_input in3 = {.memory_mib = 1024, .cpu_ids = ids2, .n_cpu_ids = 4, .alloc = &cfg};
    CHECK_EQ_INT(nd_preflight_check(&in3, &r, NULL), 0);
    CHECK_EQ_STR(r.issues[0].code, "E20");
    CHECK(strstr(r.issues[0].message, "(CPU(s) 13)") != NULL);
    nd_preflight_input bad = {.memory_mib = 1, .cpu_count = 2, .cpu_ids = ids, .n_cpu_ids = 1};
    CHECK_EQ_INT(nd_preflight_check(&bad, &r, NULL), -EINVAL);
}

static void put(const char *root, const char *rel, const char *content)
{
    char path[4096], cmd[8192];
    snprintf(path, sizeof path, "%s%s", root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    CHECK_EQ_INT(system(cmd), 0);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(content, f);
        fclose(f);
    }
}

static void host_state(void)
{
    char root[4096];
    const char *base = getenv("ND_TEST_TMP") ? getenv("ND_TEST_TMP") : "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof root, "%s/preflight_XXXXXX", base);
    CHECK(mkdtemp(root) != NULL);
    put(root, "/sys/module/nitro_enclaves/parameters/ne_cpus", "1,3\n");
    put(root, "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "256\n");
    put(root, "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "256\n");
    put(root, "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n");
    nd_ctx ctx;
    nd_ctx_init(&ctx, NULL);
    snprintf(ctx.root, sizeof ctx.root, "%s", root);
    nd_preflight_input in = {.memory_mib = 3072, .cpu_count = 4, .ctx = &ctx};
    nd_preflight_result r;
    CHECK_EQ_INT(nd_preflight_check(&in, &r, NULL), 0);
    CHECK_EQ_STR(r.pool_source, "ne_cpus");
    CHECK_EQ_INT(r.n_pool, 2);
    CHECK_EQ_STR(r.memory_source, "sysfs hugepages");
    CHECK_EQ_INT(r.memory_total_mib, 512);
    CHECK_EQ_INT(r.n_issues, 2);
    CHECK_EQ_STR(r.issues[0].code, "E22");
    CHECK_EQ_STR(r.issues[1].code, "E27");
    unsigned held[] = {1};
    nd_preflight_input in3 = {.memory_mib = 128, .cpu_count = 2, .ctx = &ctx, .used_cpus = held, .n_used_cpus = 1};
    CHECK_EQ_INT(nd_preflight_check(&in3, &r, NULL), 0);
    CHECK(r.n_issues == 1 && strcmp(r.issues[0].code, "E29") == 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_EQ_INT(system(cmd), 0);
}

int main(void)
{
    ND_RUN(seed_numbers);
    ND_RUN(cpu_pool);
    ND_RUN(host_state);
    return nd_test_summary();
}
