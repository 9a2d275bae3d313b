/*
 * preflight.c — predicts run-enclave's memory and CPU errors with their numbers (see nd_preflight.h). The texts are
 * nitro-cli's own, so a prediction reads exactly like the failure it prevents; the simulator uses the same function
 * to decide what its run-enclave stand-in fails with.
 */
#include "nd_preflight.h"
#include "nd_eif.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void issue(nd_preflight_result *r, const char *code, uint64_t req, uint64_t lim, const char *fmt, ...)
    ND_PRINTF(5, 6);
static void issue(nd_preflight_result *r, const char *code, uint64_t req, uint64_t lim, const char *fmt, ...)
{
    if (r->n_issues >= ND_PREFLIGHT_MAX)
        return;
    nd_preflight_issue *i = &r->issues[r->n_issues++];
    snprintf(i->code, sizeof i->code, "%s", code);
    i->requested = req;
    i->limit = lim;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(i->message, sizeof i->message, fmt, ap);
    va_end(ap);
}

/* Reads a small file under the root into buf (trimmed). Returns 0 or -1. */
static int read_small(const nd_ctx *ctx, const char *host_path, char *buf, size_t bufsz)
{
    char path[8192];
    if (nd_ctx_path(ctx, host_path, path, sizeof path) < 0)
        return -1;
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, bufsz - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return 0;
}

static int read_u64(const nd_ctx *ctx, const char *host_path, uint64_t *v)
{
    char buf[64], *end;
    if (read_small(ctx, host_path, buf, sizeof buf) < 0 || !buf[0])
        return -1;
    unsigned long long x = strtoull(buf, &end, 10);
    if (*end)
        return -1;
    *v = x;
    return 0;
}

/* Sums hugepages over every size under /sys/kernel/mm/hugepages. Returns 0 when at least one size was read. */
static int read_hugepages(const nd_ctx *ctx, uint64_t *total_kib, uint64_t *free_kib, uint64_t *largest_kib)
{
    char dir[8192];
    if (nd_ctx_path(ctx, "/sys/kernel/mm/hugepages", dir, sizeof dir) < 0)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int found = 0;
    *total_kib = *free_kib = *largest_kib = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned long long kib;
        char unit[8];
        if (sscanf(de->d_name, "hugepages-%llu%7s", &kib, unit) != 2 || strcmp(unit, "kB") != 0)
            continue;
        char p[512];
        uint64_t nr, fr;
        snprintf(p, sizeof p, "/sys/kernel/mm/hugepages/%s/nr_hugepages", de->d_name);
        if (read_u64(ctx, p, &nr) < 0)
            continue;
        snprintf(p, sizeof p, "/sys/kernel/mm/hugepages/%s/free_hugepages", de->d_name);
        if (read_u64(ctx, p, &fr) < 0)
            fr = nr;
        *total_kib += nr * kib;
        *free_kib += fr * kib;
        if (nr && kib > *largest_kib)
            *largest_kib = kib;
        found = 1;
    }
    closedir(d);
    return found ? 0 : -1;
}

static bool has_cpu(const unsigned *v, size_t n, unsigned c)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == c)
            return true;
    return false;
}

/* nitro-cli >= 1.2.3 (src/common/document_errors.rs:231 at v1.5.0) */
static const char TAIL_MEM[] = "\nYou can increase the available memory by editing the `memory_mib` value from "
                               "'/etc/nitro_enclaves/allocator.yaml' and then restart the "
                               "nitro-enclaves-allocator.service.";
static const char E29_TEXT[] = "Ioctl failure. Such error is used as a general ioctl error and appears whenever an ioctl "
                               "fails. In this case, the error backtrace provides detailed information on what "
                               "specifically failed during the ioctl.";

int nd_preflight_check(const nd_preflight_input *in, nd_preflight_result *r, nd_err *err)
{
    memset(r, 0, sizeof *r);
    r->memory_source = "unknown";
    r->pool_source = "unknown";
    if (in->cpu_count && in->cpu_ids)
        return nd_err_set(err, -EINVAL, "give either cpu_count or cpu_ids, not both");

    /* what the host holds */
    if (in->ctx) {
        char buf[4096];
        if (read_small(in->ctx, "/sys/module/nitro_enclaves/parameters/ne_cpus", buf, sizeof buf) == 0) {
            unsigned *cpus;
            size_t n;
            if (buf[0] == '\0') {
                r->pool_known = true;
                r->pool_source = "ne_cpus";
            } else if (nd_alloc_parse_cpu_list(buf, &cpus, &n, NULL) == 0) {
                r->pool_known = true;
                r->pool_source = "ne_cpus";
                for (size_t i = 0; i < n && r->n_pool < sizeof r->pool / sizeof r->pool[0]; i++)
                    r->pool[r->n_pool++] = cpus[i];
                free(cpus);
            }
        }
        uint64_t tk, fk, lk;
        /* hugepages only mean enclave memory on a host with the driver (the CPU pool file exists) */
        if (r->pool_known && read_hugepages(in->ctx, &tk, &fk, &lk) == 0) {
            r->memory_known = true;
            r->memory_source = "sysfs hugepages";
            r->memory_total_mib = tk / 1024;
            r->memory_free_mib = fk / 1024;
            r->hugepage_kib = lk;
        }
    }
    if (!r->pool_known && in->alloc && in->alloc->has_cpu_pool) {
        r->pool_known = true;
        r->pool_source = "allocator.yaml";
        for (size_t i = 0; i < in->alloc->n_pool_cpus && r->n_pool < sizeof r->pool / sizeof r->pool[0]; i++)
            r->pool[r->n_pool++] = in->alloc->pool_cpus[i];
    }
    size_t pool_size_from_count = 0;
    if (!r->pool_known && in->alloc && in->alloc->has_cpu_count) {
        r->pool_known = true;
        r->pool_source = "allocator.yaml";
        pool_size_from_count = (size_t)in->alloc->cpu_count; /* IDs unknown: only the size */
    }
    if (!r->memory_known && in->alloc && in->alloc->has_memory) {
        r->memory_known = true;
        r->memory_source = "allocator.yaml";
        r->memory_total_mib = in->alloc->memory_mib;
        r->memory_free_mib = in->alloc->memory_mib > in->used_memory_mib ? in->alloc->memory_mib - in->used_memory_mib
                                                                          : 0;
    }
    size_t pool_size = r->n_pool ? r->n_pool : pool_size_from_count;
    size_t used_in_pool = 0;
    for (size_t i = 0; i < in->n_used_cpus; i++)
        if (!r->n_pool || has_cpu(r->pool, r->n_pool, in->used_cpus[i]))
            used_in_pool++;
    r->n_pool_free = pool_size > used_in_pool ? pool_size - used_in_pool : 0;

    /* 1. CPU configuration against the configured pool */
    bool cpus_held = false;
    unsigned held_id = 0;
    if (in->cpu_ids) {
        /* get_duplicate_cpus (cpu_info.rs): each ID given more than once, ascending, concatenated ("13") */
        char dups[256] = "";
        unsigned last = 0;
        bool have_last = false;
        for (;;) {
            bool found = false;
            unsigned next = 0;
            for (size_t i = 0; i < in->n_cpu_ids; i++) {
                unsigned c = in->cpu_ids[i];
                if ((!have_last || c > last) && (!found || c < next)) {
                    next = c;
                    found = true;
                }
            }
            if (!found)
                break;
            size_t n = 0;
            for (size_t i = 0; i < in->n_cpu_ids; i++)
                n += in->cpu_ids[i] == next;
            if (n > 1 && strlen(dups) < 200)
                snprintf(dups + strlen(dups), sizeof dups - strlen(dups), "%u", next);
            last = next;
            have_last = true;
        }
        if (dups[0])
            issue(r, "E20", in->n_cpu_ids, 0,
                  "Invalid CPU configuration. User provided `cpu-ids` contains same CPU(s) (CPU(s) %s) multiple times.",
                  dups);
        if (r->pool_known && r->n_pool) {
            unsigned lowest_missing = 0;
            bool missing = false;
            for (size_t i = 0; i < in->n_cpu_ids; i++) /* nitro-cli checks the unique IDs in ascending order */
                if (!has_cpu(r->pool, r->n_pool, in->cpu_ids[i]) && (!missing || in->cpu_ids[i] < lowest_missing)) {
                    lowest_missing = in->cpu_ids[i];
                    missing = true;
                }
            for (size_t i = 0; i < in->n_cpu_ids; i++) {
                unsigned c = missing ? lowest_missing : in->cpu_ids[i];
                if (!has_cpu(r->pool, r->n_pool, c)) {
                    issue(r, "E21", c, 0,
                          "No such CPU available in the pool. User provided `cpu-ids` contains CPU %u, which is not "
                          "available in the pool.\nYou can add a specific CPU to the CPU pool by editing the "
                          "`cpu_pool` value from '/etc/nitro_enclaves/allocator.yaml' and then enable the "
                          "nitro-enclaves-allocator.service.",
                          c);
                    break;
                }
                if (!cpus_held && has_cpu(in->used_cpus, in->n_used_cpus, c)) {
                    cpus_held = true;
                    held_id = c;
                }
            }
        }
    } else if (in->cpu_count && r->pool_known && in->cpu_count > pool_size) {
        issue(r, "E22", in->cpu_count, pool_size,
              "Insufficient CPUs available in the pool. User provided `cpu-count` is %llu, which is more than the "
              "configured CPU pool size.\nYou can increase the CPU pool size by editing the `cpu_count` value from "
              "'/etc/nitro_enclaves/allocator.yaml' and then enable the nitro-enclaves-allocator.service.",
              (unsigned long long)in->cpu_count);
    } else if (in->cpu_count && r->pool_known && in->cpu_count > r->n_pool_free) {
        cpus_held = true;
    }

    /* 2. the 4x rule, checked before any memory is allocated (also for --memory 0: the EIF's minimum is named) */
    if (in->memory_mib == 0 && !in->has_eif) {
        issue(r, "E26", 0, 0,
              "Insufficient memory requested. User provided `memory` is 0 MB, and memory should be greater than 0 MB.");
    } else if (in->has_eif) {
        r->min_memory_mib = nd_eif_min_memory_mib(in->eif_size);
        /* fails when 4 x size > memory x MiB */
        if (in->eif_size > (UINT64_MAX / 4) || 4 * in->eif_size > in->memory_mib * 1024ULL * 1024ULL)
            issue(r, "E26", in->memory_mib, r->min_memory_mib,
                  "Insufficient memory requested. User provided `memory` is %llu MB, but based on the EIF file size, "
                  "the minimum memory should be %llu MB",
                  (unsigned long long)in->memory_mib, (unsigned long long)r->min_memory_mib);
    }
    if (in->has_eif && !r->min_memory_mib)
        r->min_memory_mib = nd_eif_min_memory_mib(in->eif_size);

    /* 3. NE_CREATE_VM: the driver refuses an enclave when no CPU of the pool is free (stale enclaves hold them all),
     * before "Start allocating memory..." */
    bool create_vm_fails = r->pool_known && pool_size > 0 && r->n_pool_free == 0;
    if (create_vm_fails) {
        issue(r, "E29", in->cpu_ids ? in->n_cpu_ids : in->cpu_count, 0, "%s", E29_TEXT);
        snprintf(r->issues[r->n_issues - 1].note, sizeof r->issues[0].note,
                 "Create VM ioctl failed: The enclave cannot be created because no CPUs are available in the pool "
                 "(NE_ERR_NO_CPUS_AVAIL_IN_POOL): running enclaves hold all %zu pool CPUs",
                 pool_size);
        cpus_held = false;
    }

    /* 4. hugepage memory, after "Start allocating memory..." */
    if (in->memory_mib && r->memory_known) {
        uint64_t need = in->memory_mib;
        if (r->hugepage_kib >= 1024) { /* whole hugepages of the smallest useful size */
            uint64_t page_mib = 2; /* nitro-cli fills with the largest pages first, the remainder with 2 MiB */
            need = (need + page_mib - 1) / page_mib * page_mib;
        }
        if (need > r->memory_free_mib)
            issue(r, "E27", in->memory_mib, r->memory_free_mib,
                  "Insufficient memory available. User provided `memory` is %llu MB, which is more than the available "
                  "hugepage memory.%s",
                  (unsigned long long)in->memory_mib, TAIL_MEM);
    }

    /* 5. adding the vCPUs: CPUs of the pool held by running enclaves (nitro-cli's words for the driver's code) */
    if (cpus_held) {
        issue(r, "E29", in->cpu_ids ? held_id : in->cpu_count, r->n_pool_free, "%s", E29_TEXT);
        nd_preflight_issue *i = &r->issues[r->n_issues - 1];
        if (in->cpu_ids)
            snprintf(i->note, sizeof i->note,
                     "Add vCPU ioctl failed: The provided vCPU is not available in the CPU pool "
                     "(NE_ERR_VCPU_NOT_IN_CPU_POOL): CPU %u is held by a running enclave", held_id);
        else
            snprintf(i->note, sizeof i->note,
                     "Add vCPU ioctl failed: The enclave cannot be created because no CPUs are available in the pool "
                     "(NE_ERR_NO_CPUS_AVAIL_IN_POOL): running enclaves hold %zu of the %zu pool CPUs, %zu free for %llu",
                     pool_size - r->n_pool_free, pool_size, r->n_pool_free, (unsigned long long)in->cpu_count);
    }
    return 0;
}
