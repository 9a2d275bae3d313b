/*
 * nd_preflight.h — predicts what `nitro-cli run-enclave` will say about memory and CPUs before anything runs.
 *
 * Inputs: the EIF size, the requested --memory and --cpu-count (or --cpu-ids), the allocator configuration, the
 * host state under --root when present (hugepages in /sys/kernel/mm/hugepages/hugepages-<N>kB/{nr,free}_hugepages,
 * the CPU pool in /sys/module/nitro_enclaves/parameters/ne_cpus), and what running enclaves hold. Output: every
 * error nitro-cli would raise (E20, E21, E22, E26, E27, E29), each with its numbers and the exact text nitro-cli
 * prints, in the order nitro-cli 1.4/1.5 meets them (src/enclave_proc/commands.rs, cpu_info.rs, resource_manager.rs):
 * the CPU configuration against the pool file (E20/E21/E22), the 4x EIF rule (E26, also for --memory 0), NE_CREATE_VM
 * (E29 when running — often stale — enclaves hold every pool CPU, before "Start allocating memory..."), the hugepage
 * memory (E27), then adding the vCPUs (E29 when too few pool CPUs are free, or a --cpu-ids CPU is held). The E29
 * note gives nitro-cli's sub-action text with the driver's NE_ERR_* name.
 */
#ifndef ND_PREFLIGHT_H
#define ND_PREFLIGHT_H

#include "nd.h"
#include "nd_allocator.h"

#define ND_PREFLIGHT_MAX 8

typedef struct nd_preflight_input {
    uint64_t eif_size;            /* bytes; 0 with has_eif false: no EIF check */
    bool has_eif;
    uint64_t memory_mib;          /* --memory */
    uint64_t cpu_count;           /* --cpu-count (0: not given) */
    const unsigned *cpu_ids;      /* --cpu-ids (NULL: not given) */
    size_t n_cpu_ids;
    const nd_alloc_config *alloc; /* NULL: not known */
    const nd_ctx *ctx;            /* non-NULL: read hugepages and ne_cpus under ctx->root */
    uint64_t used_memory_mib;     /* held by running enclaves */
    const unsigned *used_cpus;    /* CPUs held by running enclaves */
    size_t n_used_cpus;
} nd_preflight_input;

typedef struct nd_preflight_issue {
    char code[8];                 /* "E26" */
    char message[640];            /* what nitro-cli prints after "[ Exx ] " */
    uint64_t requested;           /* memory MiB, CPU count or CPU id */
    uint64_t limit;               /* minimum memory (E26), available memory (E27), pool size (E22), free CPUs (E29) */
    char note[256];               /* what is behind it when nitro-cli's text does not say (E29: the NE_ERR_* reason) */
} nd_preflight_issue;

typedef struct nd_preflight_result {
    nd_preflight_issue issues[ND_PREFLIGHT_MAX];
    int n_issues;
    uint64_t min_memory_mib;      /* the 4x rule for the EIF (0 without an EIF) */
    bool memory_known;            /* the available hugepage memory is known */
    uint64_t memory_total_mib;    /* reserved for enclaves (hugepages, or allocator memory_mib) */
    uint64_t memory_free_mib;     /* minus what running enclaves hold */
    const char *memory_source;    /* "sysfs hugepages" | "allocator.yaml" | "unknown" */
    uint64_t hugepage_kib;        /* largest hugepage size seen, 0 when unknown */
    bool pool_known;
    unsigned pool[512];           /* the CPU pool */
    size_t n_pool;
    size_t n_pool_free;           /* minus CPUs running enclaves hold */
    const char *pool_source;      /* "ne_cpus" | "allocator.yaml" | "unknown" */
} nd_preflight_result;

/* Runs the prediction. Returns 0 (issues may be empty), or a negative code for bad input (err says which). */
int nd_preflight_check(const nd_preflight_input *in, nd_preflight_result *out, nd_err *err);

#endif
