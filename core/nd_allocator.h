/*
 * nd_allocator.h — /etc/nitro_enclaves/allocator.yaml, read the way the allocator service
 * (nitro-enclaves-allocator, a bash script run by nitro-enclaves-allocator.service) reads it, and edited in place.
 *
 * The service's rules (reference/nitro.md and the script): lines are numbered from 1; comment lines (`^\s*#`) are
 * skipped; everything before a `---` line is ignored; each data line is `key: value`, the key being the leading run
 * of [-_a-zA-Z0-9] before the first ':', the value what follows the LAST ':' with spaces and one pair of quotes
 * trimmed; keys other than memory_mib, cpu_count, cpu_pool fail with `Error in <file>:<n> - unexpected: <key>`; an
 * empty value fails with `Error in <file>:<n> - missing value for <key>`; memory_mib is required; exactly one of
 * cpu_count and cpu_pool. A last line without a newline is never read by the script's `while read` loop.
 */
#ifndef ND_ALLOCATOR_H
#define ND_ALLOCATOR_H

#include "nd.h"

#define ND_ALLOCATOR_YAML "/etc/nitro_enclaves/allocator.yaml"
#define ND_ALLOC_MAX_WARNINGS 16

typedef struct nd_alloc_config {
    bool has_memory;
    uint64_t memory_mib;
    int memory_line;          /* 1-based line of memory_mib, 0 when absent */
    bool has_cpu_count;
    uint64_t cpu_count;
    int cpu_count_line;
    bool has_cpu_pool;
    char cpu_pool[256];       /* as written, e.g. "2,3,6-9" */
    int cpu_pool_line;
    unsigned *pool_cpus;      /* the CPU IDs of cpu_pool, ascending, no duplicates (owned) */
    size_t n_pool_cpus;
    int doc_start_line;       /* line of `---`, 0 when missing (then nothing is read) */
    int n_lines;
    char warnings[ND_ALLOC_MAX_WARNINGS][256]; /* things the service accepts or ignores silently */
    int n_warnings;
} nd_alloc_config;

/* Parses allocator.yaml text. display_path is the file name used in messages (NULL: ND_ALLOCATOR_YAML). Returns 0
 * and fills *cfg (free with nd_alloc_config_free), or -EINVAL with err holding the service's own message, e.g.
 * "Error in /etc/nitro_enclaves/allocator.yaml:7 - unexpected: memory", "Config error: `cpu_count` conflicts with
 * `cpu_pool`.", or a cpu_pool / number error naming the line. On error *cfg still holds what was read so far. */
int nd_alloc_parse(const char *text, size_t len, const char *display_path, nd_alloc_config *cfg, nd_err *err);

void nd_alloc_config_free(nd_alloc_config *cfg);

/* Parses a CPU list "2,3,6-9" into ascending unique IDs (malloc'd). Returns 0, or -EINVAL with err naming the
 * column of the bad part. */
int nd_alloc_parse_cpu_list(const char *s, unsigned **cpus, size_t *n, nd_err *err);

/* Reads host_path (NULL: ND_ALLOCATOR_YAML) under ctx's root and parses it; *text_out (optional) gets the raw text.
 * Returns 0, -ENOENT etc. when it cannot be read, or nd_alloc_parse's error. */
int nd_alloc_load(const nd_ctx *ctx, const char *host_path, nd_alloc_config *cfg, char **text_out, nd_err *err);

typedef struct nd_alloc_edit {
    bool set_memory;
    uint64_t memory_mib;
    bool set_cpu_count;      /* sets cpu_count and comments out cpu_pool */
    uint64_t cpu_count;
    const char *cpu_pool;    /* non-NULL: sets cpu_pool and comments out cpu_count */
} nd_alloc_edit;

/* Applies an edit to the text: the value on the existing key line is replaced (indentation and key spelling
 * kept), a missing key is added after the last data line, a missing `---` is added at the top, the
 * other CPU key is turned into a comment; every other line is kept byte for byte (an inline comment on an edited
 * line is dropped: the allocator script would take it for part of the value). The result is parsed again and
 * must be valid. Returns 0 with *out (malloc'd), or -EINVAL with err. */
int nd_alloc_edit_text(const char *text, size_t len, const nd_alloc_edit *e, char **out, nd_err *err);

/* Edits the file host_path (NULL: ND_ALLOCATOR_YAML) under ctx's root: copies the current file to "<file>.bak",
 * writes the new text to a temporary file in the same directory (same mode), fsyncs and renames it over the file.
 * backup (optional, size backupsz) receives the backup's path. Returns 0 or a negative code with err. */
int nd_alloc_write(const nd_ctx *ctx, const char *host_path, const nd_alloc_edit *e, char *backup, size_t backupsz,
                   nd_err *err);

#endif
