/*
 * nd_imagelint.h — checks an enclave image's command against the Nitro rules, from its Dockerfile or from
 * `docker inspect` JSON (Config.Entrypoint / Config.Cmd).
 *
 * The Nitro bootstrap init runs ONLY the image's CMD when it has one (ENTRYPOINT is used only when there is no CMD),
 * and reboots the enclave as soon as that command ends: a `/bin/sh -c` command in an image without a working shell,
 * or a CMD that silently replaced the ENTRYPOINT, gives an immediate `reboot: Restarting system` with no
 * application output (docs/nitro.md). The lint fails on:
 *   IMG_SHELL_C                  any CMD/ENTRYPOINT run through `/bin/sh -c` (the shell form counts);
 *   IMG_CMD_REPLACES_ENTRYPOINT  an image with both CMD and ENTRYPOINT (Nitro runs the CMD alone);
 *   IMG_NO_ENTRYPOINT            no command at all;
 * and warns on IMG_INHERITED (the final stage takes its command from a base image it cannot see) and
 * IMG_BAD_EXEC_FORM (a `[...]` that is not valid JSON, which Docker silently runs as a shell command); it
 * recommends (info) IMG_NO_INIT_WRAPPER when an exec-form command is not a PID-1 wrapper (nitrodiag-init, tini, …).
 * For a Dockerfile only the final stage counts (a stage built FROM an earlier stage inherits its settings); ARG and
 * ENV are followed, including ${VAR} substitution from ARG defaults.
 */
#ifndef ND_IMAGELINT_H
#define ND_IMAGELINT_H

#include "nd.h"

typedef enum nd_lint_severity { ND_LINT_INFO = 0, ND_LINT_WARN = 1, ND_LINT_FAIL = 2 } nd_lint_severity;

typedef struct nd_lint_finding {
    nd_lint_severity severity;
    const char *code;     /* "IMG_SHELL_C", … (static) */
    char message[640];    /* one line: what is wrong, where */
    const char *rule;     /* NULL: the Nitro rule behind a code and what to do are in lua/nd/findings.lua */
    int line;             /* Dockerfile line of the instruction, 0 for inspect JSON */
    char evidence[512];   /* the instruction as written, or the JSON value */
} nd_lint_finding;

/* An argv as the image records it; set = 0 means "not set". */
typedef struct nd_lint_argv {
    int set;
    int shell_form;       /* written in shell form: argv is the SHELL (default /bin/sh -c) plus the text */
    int known;            /* 0: inherited from a base image the lint cannot see */
    int line;
    char **argv;          /* NULL-terminated */
    size_t argc;
} nd_lint_argv;

typedef struct nd_imagelint {
    const char *source;   /* "dockerfile" or "inspect" */
    char base[256];       /* the final stage's FROM (Dockerfile) */
    int stages;
    nd_lint_argv entrypoint, cmd;
    const nd_lint_argv *command; /* what Nitro runs: cmd when set, else entrypoint; NULL when none */
    char **env;           /* "K=V", NULL-terminated (final stage's ENV, or Config.Env) */
    size_t n_env;
    nd_lint_finding *findings;
    size_t n_findings, cap_findings;
    int fails, warns;
} nd_imagelint;

/* Lints Dockerfile text. Returns 0 and *out (free with nd_imagelint_free) — lint failures are findings, not errors —
 * or -EBADMSG when there is no FROM at all, -ENOMEM. */
int nd_imagelint_dockerfile(const char *text, size_t len, nd_imagelint **out, nd_err *err);

/* Lints `docker inspect IMAGE` output (an array of objects, or one object) from Config.Entrypoint/Cmd/Env.
 * Returns 0 and *out, or -EBADMSG for JSON that is not an inspect output (the message says where). */
int nd_imagelint_inspect(const char *json, size_t len, nd_imagelint **out, nd_err *err);

/* Reads path (at most 4 MiB) and lints it as inspect JSON when it starts with '[' or '{', else as a Dockerfile.
 * Returns 0 and *out, or a negative code (-ENOENT…) with the path in the message. */
int nd_imagelint_file(const char *path, nd_imagelint **out, nd_err *err);

void nd_imagelint_free(nd_imagelint *r);

/* "info", "warn", "fail". */
const char *nd_lint_severity_name(nd_lint_severity s);

#endif
