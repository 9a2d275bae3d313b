/*
 * fuzz_eif.c — EIF files (core/eif.c): header, section table, CRC, metadata JSON, the CBOR signature section, and
 * describe-eif's JSON built from what was read. Seed: an EIF the core writes (kernel, cmdline, metadata, ramdisk).
 */
#include "fuzz.h"
#include "nd_eif.h"

#include <jansson.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = nd_fuzz_corpus(*argc, *argv);
    if (!dir)
        return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-eif", dir);
    if (access(path, F_OK) == 0)
        return 0;
    static const char meta[] = "{\"ImageName\":\"app\",\"ImageVersion\":\"1.0\",\"BuildMetadata\":{\"BuildTime\":\"x\"}}";
    nd_eif_blob rd = {.data = "ramdisk-bytes", .len = 13};
    nd_eif_input in;
    memset(&in, 0, sizeof in);
    in.kernel = (nd_eif_blob){.data = "kernel-bytes", .len = 12};
    in.cmdline = (nd_eif_blob){.data = "console=ttyS0", .len = 13};
    in.ramdisks = &rd;
    in.n_ramdisks = 1;
    in.metadata = (nd_eif_blob){.data = meta, .len = sizeof meta - 1};
    nd_eif_write(path, &in, NULL, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_eif_info info;
    memset(&info, 0, sizeof info);
    nd_err err;
    if (nd_eif_read_mem(data, size, &info, &err) == 0) {
        json_t *j = nd_eif_describe_json(&info);
        json_decref(j);
    }
    nd_eif_info_free(&info);
    return 0;
}
