/*
 * fuzz_errlog.c — nitro-cli's error log files /var/log/nitro_enclaves/err*.log (core/nitrocli.c).
 */
#include "fuzz.h"
#include "nd_nitrocli.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char s[] = "  Action: Run Enclave\n  Subactions:\n    Failed to execute command `Run`\n"
                            "    Insufficient memory requested\n  Root error file: src/enclave_proc/resource_manager.rs\n"
                            "  Root error line: 605\n  Build commit: v1.2.2-1-g41ba8a3\n";
    nd_fuzz_seed(*argc, *argv, "errlog", s, sizeof s - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nd_err err;
    nd_nitro_errlog l;
    memset(&l, 0, sizeof l);
    if (nd_nitro_parse_errlog((const char *)data, size, &l, &err) == 0)
        nd_nitro_errlog_free(&l);
    return 0;
}
