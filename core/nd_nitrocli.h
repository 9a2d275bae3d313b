/*
 * nd_nitrocli.h — the nitro-cli adapter: argv builders for its subcommands, a synchronous runner on the process
 * runner, and parsers for everything it prints: the JSON of describe-enclaves / run-enclave / terminate-enclave /
 * build-enclave / describe-eif, the error blocks on stderr, the err<timestamp>.log files and nitro_enclaves.log lines.
 *
 * Parsers never fail on bad input: text that is not what nitro-cli prints yields a result marked unrecognised that
 * carries the raw text (and a reason), so callers can show it instead of guessing.
 */
#ifndef ND_NITROCLI_H
#define ND_NITROCLI_H

#include "nd.h"
#include "nd_proc.h"

struct json_t;

/* ---- error blocks on stderr ----------------------------------------------------------------------------------- */

typedef struct nd_nitro_fact {
    char *key;    /* "memory_mib", "min_memory_mib", "cpu_count", "cpu_id", "file", "operation", "boot_error", … */
    char *value;  /* as printed (numbers stay decimal text) */
} nd_nitro_fact;

typedef struct nd_nitro_block {
    char code[16];         /* "E26" */
    int number;            /* 26 */
    char *title;           /* "Insufficient memory requested" (the first sentence of the headline) */
    char *message;         /* the rest of the headline and the following message lines, joined with '\n' */
    char *headline;        /* the whole first line, "[ E26 ] Insufficient memory requested. User provided …" */
    char **details;        /* message lines after the headline (before the documentation link) */
    size_t n_details;
    char **extra;          /* lines inside the block nitro-cli does not print (annotations, noise) */
    size_t n_extra;
    char *doc_url;         /* NULL when the "For more details" line is missing */
    char *err_log_path;    /* NULL when the support-ticket line is missing (the log could not be written) */
    char *backtrace;       /* lines after "Backtrace:", joined with '\n', or NULL */
    nd_nitro_fact *facts;  /* numbers and names pulled from the message */
    size_t n_facts, cap_facts;
    bool root_cause;       /* the first block: what really failed */
    bool secondary;        /* an E39 after another block: a consequence, not a cause */
    int failed_connections;/* N from a "Failed connections: N" line just before this block, else -1 */
    size_t line;           /* 1-based line of the headline in the input */
} nd_nitro_block;

typedef struct nd_nitro_errors {
    nd_nitro_block *blocks;
    size_t n_blocks, cap_blocks;
    char **preamble;       /* lines before the first block ("Start allocating memory...") */
    size_t n_preamble;
    int failed_connections;/* last "Failed connections: N", -1 when absent */
    bool recognised;       /* at least one error block was found */
    char *raw;             /* the input, NUL-terminated */
    size_t raw_len;
} nd_nitro_errors;

/* Parses nitro-cli stderr (or any pasted text containing it). Never fails on content: returns 0 and fills *out (free
 * with nd_nitro_errors_free); out->recognised tells whether any block was found. Returns -ENOMEM only. */
int nd_nitro_parse_errors(const char *text, size_t len, nd_nitro_errors *out, nd_err *err);
void nd_nitro_errors_free(nd_nitro_errors *e);

/* The value of a fact of a block, or NULL. */
const char *nd_nitro_fact_get(const nd_nitro_block *b, const char *key);

/* The driver's error codes as nitro-cli 1.4/1.5 words them in err logs (EnclaveHandle::do_ioctl,
 * src/enclave_proc/resource_manager.rs): { "NE_ERR_NO_CPUS_AVAIL_IN_POOL", "The enclave cannot be created because no
 * CPUs are available in the pool" }, …, ending with { NULL, NULL }. */
typedef struct nd_nitro_ioctl_text {
    const char *name;
    const char *text;
} nd_nitro_ioctl_text;
extern const nd_nitro_ioctl_text nd_nitro_ioctl_texts[];

/* ---- err<timestamp>.log files --------------------------------------------------------------------------------- */

typedef struct nd_nitro_errlog {
    char *action;          /* "Run Enclave" */
    char **subactions;     /* in file order */
    size_t n_subactions;
    char *root_file;       /* "src/enclave_proc/resource_manager.rs" */
    long root_line;        /* -1 when absent */
    char *version;         /* "1.2.2" */
    char *build_commit;
    char *timestamp;       /* from the file name when given to nd_nitro_errlog_name_time, else NULL */
    bool recognised;       /* an Action line was found */
    char *raw;
} nd_nitro_errlog;

int nd_nitro_parse_errlog(const char *text, size_t len, nd_nitro_errlog *out, nd_err *err);
void nd_nitro_errlog_free(nd_nitro_errlog *l);

/* Extracts the RFC 3339 timestamp from an err-log path ".../err2021-06-18T21:46:43.249503129+00:00.log" into buf.
 * Returns 0, or -EINVAL when the name is not an err-log name. */
int nd_nitro_errlog_time(const char *path, char *buf, size_t bufsz);

/* ---- nitro_enclaves.log lines --------------------------------------------------------------------------------- */

typedef struct nd_nitro_logline {
    char id[128];          /* "nitro-cli:1234" or "enc-1a2b:567" */
    char source[64];       /* "nitro-cli" or "enc-1a2b" */
    long pid;              /* -1 when absent */
    char level[16];        /* "INFO", "WARN", "ERROR", "DEBUG", "TRACE" */
    char timestamp[64];    /* "2021-06-18T21:46:43.249Z" */
    char file[256];        /* "src/main.rs" */
    long line;             /* -1 when absent */
    const char *message;   /* points into the input line */
    size_t message_len;
} nd_nitro_logline;

/* Parses one line `[<id>][LEVEL][<ts>][<file>:<line>] message`. Returns 0, or -EBADMSG (with err naming the column)
 * for anything else. */
int nd_nitro_parse_logline(const char *line, size_t len, nd_nitro_logline *out, nd_err *err);

/* ---- JSON outputs --------------------------------------------------------------------------------------------- */

typedef enum nd_nitro_cmd {
    ND_NITRO_RUN_ENCLAVE,
    ND_NITRO_DESCRIBE_ENCLAVES,
    ND_NITRO_TERMINATE_ENCLAVE,
    ND_NITRO_BUILD_ENCLAVE,
    ND_NITRO_DESCRIBE_EIF,
} nd_nitro_cmd;

/* Finds and validates the JSON document nitro-cli printed for cmd in text (stdout; leading non-JSON lines are
 * skipped). Returns 0 with *out (a new reference) and *end_off set to the offset just after the document (what
 * follows is console output for run-enclave --attach-console), or -EBADMSG with err saying what is missing
 * ("unrecognised output: …"). */
int nd_nitro_parse_json(nd_nitro_cmd cmd, const char *text, size_t len, struct json_t **out, size_t *end_off,
                        nd_err *err);

/* ---- argv builders and the runner ----------------------------------------------------------------------------- */

typedef struct nd_nitro_run_opts {
    const char *eif_path;
    long memory_mib;       /* <= 0: not given */
    long cpu_count;        /* <= 0: not given */
    const char *cpu_ids;   /* "1,3" → --cpu-ids 1 3; NULL: not given */
    long long cid;         /* < 0: not given */
    const char *name;      /* --enclave-name */
    bool debug_mode;
    bool attach_console;
} nd_nitro_run_opts;

/* A growable argv; argv[0] is ctx->nitro_cli. nd_nitro_argv_free releases it. */
typedef struct nd_nitro_argv {
    char **v;
    size_t n;
} nd_nitro_argv;

void nd_nitro_argv_free(nd_nitro_argv *a);

/* Each builder returns 0, -ENOMEM, or -EINVAL with err for missing mandatory options. */
int nd_nitro_argv_run_enclave(const nd_ctx *ctx, const nd_nitro_run_opts *o, nd_nitro_argv *a, nd_err *err);
int nd_nitro_argv_describe_enclaves(const nd_ctx *ctx, nd_nitro_argv *a, nd_err *err);
/* enclave_id NULL → --all */
int nd_nitro_argv_terminate(const nd_ctx *ctx, const char *enclave_id, nd_nitro_argv *a, nd_err *err);
int nd_nitro_argv_build_enclave(const nd_ctx *ctx, const char *docker_uri, const char *docker_dir, const char *output,
                                nd_nitro_argv *a, nd_err *err);
int nd_nitro_argv_describe_eif(const nd_ctx *ctx, const char *eif_path, nd_nitro_argv *a, nd_err *err);
int nd_nitro_argv_console(const nd_ctx *ctx, const char *enclave_id, double disconnect_timeout, nd_nitro_argv *a,
                          nd_err *err);
int nd_nitro_argv_explain(const nd_ctx *ctx, const char *code, nd_nitro_argv *a, nd_err *err);

/* Runs argv synchronously (nd_proc_run: private loop, own process group, timeout). Returns 0 and fills *res, or a
 * negative code for bad options. A missing nitro-cli is res->spawn_error = -ENOENT, not an error here. */
int nd_nitro_run_sync(const nd_nitro_argv *a, double timeout_s, nd_proc_result *res, nd_err *err);

#endif
