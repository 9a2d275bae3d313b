/*
 * fuzz_allocator.c — /etc/nitro_enclaves/allocator.yaml (core/allocator.c): parse, the cpu_pool list, and the edit
 * that rewrites memory_mib / cpu_count / cpu_pool keeping every other byte (the first bytes pick the edit). An edit
 * that succeeds must parse again.
 */
#include "fuzz.h"
#include "nd_allocator.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char y[] = "---\n# Enclave configuration file.\n#\n# How much memory to allocate for enclaves (in MiB).\n"
                            "memory_mib: 512\n#\n# How many CPUs to reserve for enclaves.\ncpu_count: 2\n#\n"
                            "# Alternatively, the exact CPUs to be reserved for the enclave can be explicitly\n"
                            "# configured by using `cpu_pool` (like below), instead of `cpu_count`.\n"
                            "# cpu_pool: 2,3\n";
    char s[sizeof y + 2];
    s[0] = 1;
    s[1] = 0;
    memcpy(s + 2, y, sizeof y - 1);
    nd_fuzz_seed(*argc, *argv, "allocator.yaml", s, sizeof y + 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *t = (const char *)data + 2;
    size_t n = size - 2;
    nd_err err;
    nd_alloc_config cfg;
    memset(&cfg, 0, sizeof cfg);
    nd_alloc_parse(t, n, "allocator.yaml", &cfg, &err);
    nd_alloc_config_free(&cfg); /* on error too: cfg holds what was read so far (nd_allocator.h) */
    char list[64];
    size_t ll = n < sizeof list - 1 ? n : sizeof list - 1;
    memcpy(list, t, ll);
    list[ll] = '\0';
    unsigned *cpus = NULL;
    size_t nc = 0;
    if (nd_alloc_parse_cpu_list(list, &cpus, &nc, &err) == 0)
        free(cpus);
    nd_alloc_edit e;
    memset(&e, 0, sizeof e);
    e.set_memory = data[0] & 1;
    e.memory_mib = 256u * (data[1] + 1u);
    e.set_cpu_count = (data[0] & 6) == 2;
    e.cpu_count = (data[1] & 15) + 1;
    e.cpu_pool = (data[0] & 6) == 4 ? "2,3" : (data[0] & 6) == 6 ? "1-3,5" : NULL;
    char *out = NULL;
    if (nd_alloc_edit_text(t, n, &e, &out, &err) == 0) {
        nd_alloc_config c2;
        memset(&c2, 0, sizeof c2);
        if (nd_alloc_parse(out, strlen(out), "edited", &c2, &err) != 0) {
            fprintf(stderr, "an edit that succeeded does not parse: %s\n", err.msg);
            abort();
        }
        nd_alloc_config_free(&c2);
        free(out);
    }
    return 0;
}
