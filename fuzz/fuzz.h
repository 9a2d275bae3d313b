/*
 * fuzz.h — shared by the libFuzzer targets in fuzz/: seeds the corpus directory from what the core itself builds
 * (an attestation document, frames, an EIF), so no binary seed is kept in the repository.
 */
#ifndef ND_FUZZ_H
#define ND_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The corpus directory libFuzzer was given (its first non-flag argument), or NULL. */
static inline const char *nd_fuzz_corpus(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (argv[i][0] != '-' && stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            return argv[i];
    }
    return NULL;
}

/* Writes a seed file into the corpus (once). */
static inline void nd_fuzz_seed(int argc, char **argv, const char *name, const void *data, size_t len)
{
    const char *dir = nd_fuzz_corpus(argc, argv);
    if (!dir || !data)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%s", dir, name);
    FILE *f = fopen(path, "wbx");
    if (!f)
        return;
    fwrite(data, 1, len, f);
    fclose(f);
}

#endif
