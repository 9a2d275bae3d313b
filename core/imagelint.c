/*
 * imagelint.c — the enclave image lint behind nd_imagelint.h.
 *
 * A small Dockerfile reader, enough to know what command an image will carry: parser directives (# escape=),
 * comments, line continuations, heredocs (skipped), FROM … AS (stages, a stage built FROM an earlier one inherits
 * its command, env and shell), ARG/ENV with ${VAR} substitution, SHELL, and ENTRYPOINT/CMD in exec form (a JSON
 * array, parsed with jansson) or shell form (SHELL + text). It mirrors BuildKit's rule that setting ENTRYPOINT
 * clears a CMD that was not set in the same stage. Then the Nitro rules (see the header) are applied to the final
 * stage — or, for `docker inspect` JSON, to Config.Entrypoint/Cmd as built.
 */
#include "nd_imagelint.h"
#include "nd_buf.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What Nitro does and what to do about each finding is knowledge, kept with every other cause in the registry of
 * findings (lua/nd/findings.lua, by code); this file returns the codes and the facts of the image only. */
#define RULE_SHELL_C NULL
#define RULE_CMD_REPLACES NULL
#define RULE_NO_COMMAND NULL
#define RULE_INHERITED NULL
#define RULE_BAD_EXEC NULL
#define RULE_INFO NULL
#define RULE_NO_INIT NULL

const char *nd_lint_severity_name(nd_lint_severity s)
{
    return s == ND_LINT_FAIL ? "fail" : s == ND_LINT_WARN ? "warn" : "info";
}

/* ---- string vectors -------------------------------------------------------------------------------------------- */

static int strv_push(char ***v, size_t *n, const char *s, size_t len)
{
    size_t cap = nd_array_cap(*n + 1); /* n strings and the NULL */
    char **nv = nd_grow_array(*v, &cap, *n + 2, sizeof *nv);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    nv[*n] = strndup(s, len);
    if (!nv[*n])
        return -ENOMEM;
    nv[++*n] = NULL;
    return 0;
}

static void strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static char **strv_dup(char **v, size_t *n)
{
    char **out = NULL;
    *n = 0;
    for (size_t i = 0; v && v[i]; i++)
        if (strv_push(&out, n, v[i], strlen(v[i])) < 0) {
            strv_free(out);
            *n = 0;
            return NULL;
        }
    return out;
}

static void argv_clear(nd_lint_argv *a)
{
    strv_free(a->argv);
    memset(a, 0, sizeof *a);
    a->known = 1;
}

static void argv_copy(nd_lint_argv *dst, const nd_lint_argv *src)
{
    argv_clear(dst);
    *dst = *src;
    dst->argv = strv_dup(src->argv, &dst->argc);
}

static void join_argv(char **argv, char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; argv && argv[i] && o + 1 < n; i++) {
        int needq = strchr(argv[i], ' ') != NULL || !*argv[i];
        int w = snprintf(out + o, n - o, "%s%s%s%s", i ? " " : "", needq ? "\"" : "", argv[i], needq ? "\"" : "");
        if (w < 0)
            break;
        o += (size_t)w;
        if (o >= n)
            o = n - 1;
    }
}

/* ---- results --------------------------------------------------------------------------------------------------- */

static void add_finding(nd_imagelint *r, nd_lint_severity sev, const char *code, const char *rule, int line,
                        const char *evidence, const char *fmt, ...) ND_PRINTF(7, 8);
static void add_finding(nd_imagelint *r, nd_lint_severity sev, const char *code, const char *rule, int line,
                        const char *evidence, const char *fmt, ...)
{
    nd_lint_finding *nf = nd_grow_array(r->findings, &r->cap_findings, r->n_findings + 1, sizeof *nf);
    if (!nf)
        return;
    r->findings = nf;
    nd_lint_finding *f = &nf[r->n_findings++];
    memset(f, 0, sizeof *f);
    f->severity = sev;
    f->code = code;
    f->rule = rule;
    f->line = line;
    snprintf(f->evidence, sizeof f->evidence, "%s", evidence ? evidence : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof f->message, fmt, ap);
    va_end(ap);
    if (sev == ND_LINT_FAIL)
        r->fails++;
    else if (sev == ND_LINT_WARN)
        r->warns++;
}

void nd_imagelint_free(nd_imagelint *r)
{
    if (!r)
        return;
    strv_free(r->entrypoint.argv);
    strv_free(r->cmd.argv);
    strv_free(r->env);
    free(r->findings);
    free(r);
}

/* Is argv a shell running a command string (sh -c, bash -lc, busybox sh -c …)? */
static int is_shell_c(char **argv)
{
    if (!argv || !argv[0])
        return 0;
    const char *b = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    size_t i = 1;
    if (strcmp(b, "busybox") == 0 && argv[1]) {
        b = argv[1];
        i = 2;
    }
    static const char *shells[] = {"sh", "bash", "ash", "dash", "zsh", "ksh", "mksh"};
    int shell = 0;
    for (size_t k = 0; k < sizeof shells / sizeof shells[0]; k++)
        if (strcmp(b, shells[k]) == 0)
            shell = 1;
    if (!shell)
        return 0;
    for (; argv[i] && argv[i][0] == '-' && argv[i][1] != '-'; i++)
        if (strchr(argv[i] + 1, 'c'))
            return 1;
    return 0;
}

/* Is argv[0] a PID-1 wrapper that reaps, forwards signals and reports (nitrodiag-init, tini, dumb-init, …)? A bare
 * /init counts: the test image's /init is nitrodiag-init, and initramfs-style images name their wrapper so. */
static int is_init_wrapper(char **argv)
{
    if (!argv || !argv[0])
        return 1;
    const char *b = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    static const char *wrappers[] = {"nitrodiag-init", "init", "tini", "tini-static", "dumb-init", "catatonit",
                                     "s6-svscan", "supervisord", "runsvdir", "my_init", "docker-init"};
    for (size_t k = 0; k < sizeof wrappers / sizeof wrappers[0]; k++)
        if (strcmp(b, wrappers[k]) == 0)
            return 1;
    return 0;
}

/* The rules, once the image's entrypoint/cmd are known. `from` names where they came from, for messages. */
static void apply_rules(nd_imagelint *r, const char *ep_ev, const char *cmd_ev)
{
    nd_lint_argv *ep = &r->entrypoint, *cmd = &r->cmd;
    char j[512];
    const char *what[2] = {"ENTRYPOINT", "CMD"};
    nd_lint_argv *v[2] = {ep, cmd};
    const char *ev[2] = {ep_ev, cmd_ev};
    for (int k = 0; k < 2; k++) {
        if (!v[k]->set)
            continue;
        join_argv(v[k]->argv, j, sizeof j);
        if (v[k]->shell_form)
            add_finding(r, ND_LINT_FAIL, "IMG_SHELL_C", RULE_SHELL_C, v[k]->line, ev[k],
                        "shell-form %s%s%.0d runs through the shell: %s", what[k], v[k]->line ? " on line " : "",
                        v[k]->line, j);
        else if (is_shell_c(v[k]->argv))
            add_finding(r, ND_LINT_FAIL, "IMG_SHELL_C", RULE_SHELL_C, v[k]->line, ev[k], "%s%s%.0d runs a shell: %s",
                        what[k], v[k]->line ? " on line " : "", v[k]->line, j);
    }
    if (ep->set && cmd->set) {
        char je[256], jc[256];
        join_argv(ep->argv, je, sizeof je);
        join_argv(cmd->argv, jc, sizeof jc);
        add_finding(r, ND_LINT_FAIL, "IMG_CMD_REPLACES_ENTRYPOINT", RULE_CMD_REPLACES, cmd->line, cmd_ev,
                    "CMD [%s] silently replaces ENTRYPOINT [%s]: a Nitro enclave runs only the CMD", jc, je);
    }
    if (!ep->set && !cmd->set) {
        if (!ep->known || !cmd->known)
            add_finding(r, ND_LINT_WARN, "IMG_INHERITED", RULE_INHERITED, 0, r->base,
                        "the final stage (FROM %s) sets neither ENTRYPOINT nor CMD: it inherits them from %s, which "
                        "this lint cannot see", r->base, r->base);
        else
            add_finding(r, ND_LINT_FAIL, "IMG_NO_ENTRYPOINT", RULE_NO_COMMAND, 0, r->base,
                        "the image has no ENTRYPOINT and no CMD: the enclave has nothing to run");
    } else if (cmd->set && !ep->known) {
        add_finding(r, ND_LINT_WARN, "IMG_INHERITED", RULE_INHERITED, cmd->line, r->base,
                    "ENTRYPOINT is inherited from %s, which this lint cannot see: if it has one, this CMD replaces it "
                    "in a Nitro enclave", r->base);
    }
    r->command = cmd->set ? cmd : ep->set ? ep : NULL;
    if (r->command) {
        join_argv(r->command->argv, j, sizeof j);
        add_finding(r, ND_LINT_INFO, "IMG_COMMAND", RULE_INFO, r->command->line, j, "Nitro runs: %s", j);
        if (r->command->known && !r->command->shell_form && !is_shell_c(r->command->argv) &&
            !is_init_wrapper(r->command->argv))
            add_finding(r, ND_LINT_INFO, "IMG_NO_INIT_WRAPPER", RULE_NO_INIT, r->command->line, j,
                        "%s runs as the enclave's command with no PID-1 wrapper: when it dies the enclave reboots "
                        "without a word; consider nitrodiag-init", r->command->argv[0]);
    }
}

/* ---- Dockerfile ------------------------------------------------------------------------------------------------ */

typedef struct var {
    char *name, *value;
} var;

typedef struct stage {
    char name[128];
    char base[256];
    nd_lint_argv ep, cmd;
    int cmd_set_here;
    char ep_text[512], cmd_text[512];
    char **shell;
    size_t n_shell;
    char **env; /* K=V */
    size_t n_env;
    var *vars;  /* ARG and ENV values, for substitution (later entries win) */
    size_t n_vars, cap_vars;
} stage;

static void stage_free(stage *s)
{
    argv_clear(&s->ep);
    argv_clear(&s->cmd);
    strv_free(s->shell);
    strv_free(s->env);
    for (size_t i = 0; i < s->n_vars; i++) {
        free(s->vars[i].name);
        free(s->vars[i].value);
    }
    free(s->vars);
    memset(s, 0, sizeof *s);
}

static void set_var(stage *s, const char *name, size_t nlen, const char *value)
{
    var *nv = nd_grow_array(s->vars, &s->cap_vars, s->n_vars + 1, sizeof *nv);
    if (!nv)
        return;
    s->vars = nv;
    nv[s->n_vars].name = strndup(name, nlen);
    nv[s->n_vars].value = strdup(value ? value : "");
    s->n_vars++;
}

static const char *get_var(const stage *s, const char *name, size_t nlen)
{
    for (size_t i = s->n_vars; i-- > 0;)
        if (strlen(s->vars[i].name) == nlen && strncmp(s->vars[i].name, name, nlen) == 0)
            return s->vars[i].value;
    return NULL;
}

/* Expands $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt} from s's variables; unknown variables stay as written. */
static void substitute(const stage *s, const char *in, char *out, size_t n)
{
    size_t o = 0;
    for (const char *p = in; *p && o + 1 < n;) {
        if (*p != '$' || !(p[1] == '{' || isalpha((unsigned char)p[1]) || p[1] == '_')) {
            out[o++] = *p++;
            continue;
        }
        const char *start = p;
        int braces = p[1] == '{';
        const char *name = p + 1 + braces;
        size_t nl = 0;
        while (isalnum((unsigned char)name[nl]) || name[nl] == '_')
            nl++;
        const char *end = name + nl;
        char op = 0;
        char word[256] = "";
        if (braces) {
            if (end[0] == ':' && (end[1] == '-' || end[1] == '+')) {
                op = end[1];
                const char *w = end + 2;
                const char *close = strchr(w, '}');
                if (!close)
                    close = w + strlen(w);
                snprintf(word, sizeof word, "%.*s", (int)(close - w), w);
                end = close;
            }
            if (*end != '}') { /* malformed: copy as is */
                out[o++] = *p++;
                continue;
            }
            end++;
        }
        const char *val = get_var(s, name, nl);
        const char *rep;
        if (op == '-')
            rep = val && *val ? val : word;
        else if (op == '+')
            rep = val && *val ? word : "";
        else
            rep = val;
        if (!rep) { /* unknown: keep the original text */
            size_t l = (size_t)(end - start);
            if (l > n - 1 - o)
                l = n - 1 - o;
            memcpy(out + o, start, l);
            o += l;
        } else {
            size_t l = strlen(rep);
            if (l > n - 1 - o)
                l = n - 1 - o;
            memcpy(out + o, rep, l);
            o += l;
        }
        p = end;
    }
    out[o] = '\0';
}

/* Splits ENV/ARG arguments into words, honouring "double" and 'single' quotes and backslash escapes. Each word is
 * pushed into *words. Returns 0 or -ENOMEM. */
static int split_words(const char *in, char esc, char ***words, size_t *n)
{
    char buf[4096];
    const char *p = in;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            return 0;
        size_t o = 0;
        char q = 0;
        while (*p && (q || !isspace((unsigned char)*p)) && o + 1 < sizeof buf) {
            if (q) {
                if (*p == q) {
                    q = 0;
                    p++;
                } else if (*p == esc && q == '"' && p[1]) {
                    buf[o++] = p[1];
                    p += 2;
                } else {
                    buf[o++] = *p++;
                }
            } else if (*p == '"' || *p == '\'') {
                q = *p++;
            } else if (*p == esc && p[1]) {
                buf[o++] = p[1];
                p += 2;
            } else {
                buf[o++] = *p++;
            }
        }
        if (strv_push(words, n, buf, o) < 0)
            return -ENOMEM;
    }
}

/* Parses an ENTRYPOINT/CMD/SHELL argument: exec form (a JSON array of strings) into *argv, returning 1; or shell
 * form, returning 0 (argv untouched). *bad_json is set when it looks like an array but is not valid JSON. */
static int parse_exec_form(const char *args, char ***argv, size_t *argc, int *bad_json)
{
    *bad_json = 0;
    if (args[0] != '[')
        return 0;
    json_error_t je;
    json_t *j = json_loads(args, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (!j || !json_is_array(j)) {
        json_decref(j);
        *bad_json = 1;
        return 0;
    }
    size_t i;
    json_t *v;
    json_array_foreach(j, i, v)
    {
        if (!json_is_string(v)) {
            json_decref(j);
            *bad_json = 1;
            return 0;
        }
    }
    *argv = NULL;
    *argc = 0;
    json_array_foreach(j, i, v)
    {
        strv_push(argv, argc, json_string_value(v), json_string_length(v));
    }
    json_decref(j);
    return 1;
}

typedef struct dparse {
    nd_imagelint *r;
    stage *stages;
    size_t n_stages, cap_stages;
    stage global; /* ARGs before the first FROM */
    char esc;
    char heredoc[64];
    int heredoc_strip;
} dparse;

static stage *cur(dparse *d)
{
    return d->n_stages ? &d->stages[d->n_stages - 1] : NULL;
}

static void do_from(dparse *d, const char *args, int line)
{
    char **w = NULL;
    size_t n = 0;
    split_words(args, d->esc, &w, &n);
    size_t i = 0;
    while (i < n && strncmp(w[i], "--", 2) == 0)
        i++;
    stage *ns = nd_grow_array(d->stages, &d->cap_stages, d->n_stages + 1, sizeof *ns);
    if (!ns) {
        strv_free(w);
        return;
    }
    d->stages = ns;
    stage *s = &ns[d->n_stages++];
    memset(s, 0, sizeof *s);
    s->ep.known = s->cmd.known = 1;
    char base[256] = "";
    if (i < n)
        substitute(&d->global, w[i], base, sizeof base);
    snprintf(s->base, sizeof s->base, "%s", base);
    if (i + 2 < n && strcasecmp(w[i + 1], "AS") == 0)
        snprintf(s->name, sizeof s->name, "%s", w[i + 2]);
    strv_free(w);
    /* Global ARGs are visible to FROM only; a stage sees them again only after `ARG NAME` (handled in do_arg). */
    const stage *parent = NULL;
    for (size_t k = 0; k + 1 < d->n_stages; k++)
        if (d->stages[k].name[0] && strcasecmp(d->stages[k].name, base) == 0)
            parent = &d->stages[k];
    if (parent) {
        argv_copy(&s->ep, &parent->ep);
        argv_copy(&s->cmd, &parent->cmd);
        snprintf(s->ep_text, sizeof s->ep_text, "%s", parent->ep_text);
        snprintf(s->cmd_text, sizeof s->cmd_text, "%s", parent->cmd_text);
        s->shell = strv_dup(parent->shell, &s->n_shell);
        s->env = strv_dup(parent->env, &s->n_env);
        for (size_t k = 0; k < parent->n_vars; k++)
            set_var(s, parent->vars[k].name, strlen(parent->vars[k].name), parent->vars[k].value);
    } else if (strcasecmp(base, "scratch") != 0) {
        s->ep.known = s->cmd.known = 0; /* whatever the external base image carries */
    }
    (void)line;
}

static void do_arg(dparse *d, const char *args)
{
    stage *s = cur(d);
    stage *target = s ? s : &d->global;
    char **w = NULL;
    size_t n = 0;
    split_words(args, d->esc, &w, &n);
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(w[i], '=');
        size_t nl = eq ? (size_t)(eq - w[i]) : strlen(w[i]);
        if (eq) {
            char val[1024];
            substitute(target, eq + 1, val, sizeof val);
            set_var(target, w[i], nl, val);
        } else if (s) {
            const char *g = get_var(&d->global, w[i], nl); /* re-declared global ARG: its default comes back */
            if (g)
                set_var(s, w[i], nl, g);
        }
    }
    strv_free(w);
}

static void env_set(stage *s, const char *k, size_t kl, const char *v)
{
    char kv[2048];
    snprintf(kv, sizeof kv, "%.*s=%s", (int)kl, k, v);
    for (size_t i = 0; i < s->n_env; i++)
        if (strncmp(s->env[i], kv, kl + 1) == 0) {
            free(s->env[i]);
            s->env[i] = strdup(kv);
            set_var(s, k, kl, v);
            return;
        }
    strv_push(&s->env, &s->n_env, kv, strlen(kv));
    set_var(s, k, kl, v);
}

static void do_env(dparse *d, const char *args)
{
    stage *s = cur(d);
    if (!s)
        return;
    char **w = NULL;
    size_t n = 0;
    split_words(args, d->esc, &w, &n);
    char val[1024];
    if (n >= 1 && !strchr(w[0], '=')) { /* legacy form: ENV KEY value with spaces */
        const char *p = args;
        while (isspace((unsigned char)*p))
            p++;
        p += strlen(w[0]);
        while (isspace((unsigned char)*p))
            p++;
        substitute(s, p, val, sizeof val);
        env_set(s, w[0], strlen(w[0]), val);
    } else {
        for (size_t i = 0; i < n; i++) {
            const char *eq = strchr(w[i], '=');
            if (!eq)
                continue;
            substitute(s, eq + 1, val, sizeof val);
            env_set(s, w[i], (size_t)(eq - w[i]), val);
        }
    }
    strv_free(w);
}

static void do_command(dparse *d, int is_cmd, const char *args, const char *text, int line)
{
    stage *s = cur(d);
    if (!s)
        return;
    nd_lint_argv *a = is_cmd ? &s->cmd : &s->ep;
    char **argv = NULL;
    size_t argc = 0;
    int bad = 0;
    int exec = parse_exec_form(args, &argv, &argc, &bad);
    if (bad)
        add_finding(d->r, ND_LINT_WARN, "IMG_BAD_EXEC_FORM", RULE_BAD_EXEC, line, text,
                    "%s on line %d looks like the exec form but is not a JSON array of strings: Docker runs it "
                    "through the shell", is_cmd ? "CMD" : "ENTRYPOINT", line);
    if (!exec) {
        if (s->shell) {
            argv = strv_dup(s->shell, &argc);
        } else {
            strv_push(&argv, &argc, "/bin/sh", 7);
            strv_push(&argv, &argc, "-c", 2);
        }
        strv_push(&argv, &argc, args, strlen(args));
    }
    argv_clear(a);
    a->line = line;
    a->shell_form = !exec;
    a->argv = argv;
    a->argc = argc;
    a->set = argc > 0;
    snprintf(is_cmd ? s->cmd_text : s->ep_text, sizeof s->ep_text, "%s", text);
    if (is_cmd) {
        s->cmd_set_here = 1;
    } else if (!s->cmd_set_here) {
        argv_clear(&s->cmd); /* BuildKit: ENTRYPOINT resets a CMD inherited from the base image */
        s->cmd_text[0] = '\0';
    }
}

static void do_shell(dparse *d, const char *args)
{
    stage *s = cur(d);
    if (!s)
        return;
    char **argv = NULL;
    size_t argc = 0;
    int bad = 0;
    if (parse_exec_form(args, &argv, &argc, &bad)) {
        strv_free(s->shell);
        s->shell = argv;
        s->n_shell = argc;
    }
}

/* Notes a heredoc (RUN <<EOF, COPY <<-"EOF" …) so its body lines are skipped. */
static void note_heredoc(dparse *d, const char *args)
{
    const char *h = strstr(args, "<<");
    if (!h)
        return;
    h += 2;
    d->heredoc_strip = *h == '-';
    if (*h == '-')
        h++;
    if (*h == '"' || *h == '\'')
        h++;
    if (!isalpha((unsigned char)*h) && *h != '_')
        return; /* `$((1<<2))` is arithmetic, not a heredoc: names start with a letter or _ */
    size_t n = 0;
    while ((isalnum((unsigned char)h[n]) || h[n] == '_') && n + 1 < sizeof d->heredoc)
        n++;
    if (n) {
        memcpy(d->heredoc, h, n);
        d->heredoc[n] = '\0';
    }
}

static void instruction(dparse *d, const char *text, int line)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    char kw[16];
    size_t k = 0;
    while (p[k] && !isspace((unsigned char)p[k]) && k + 1 < sizeof kw) {
        kw[k] = (char)toupper((unsigned char)p[k]);
        k++;
    }
    kw[k] = '\0';
    const char *args = p + k;
    while (isspace((unsigned char)*args))
        args++;
    char trimmed[8192];
    snprintf(trimmed, sizeof trimmed, "%s", args);
    for (size_t l = strlen(trimmed); l > 0 && isspace((unsigned char)trimmed[l - 1]); l--)
        trimmed[l - 1] = '\0';

    if (strcmp(kw, "FROM") == 0)
        do_from(d, trimmed, line);
    else if (strcmp(kw, "ARG") == 0)
        do_arg(d, trimmed);
    else if (strcmp(kw, "ENV") == 0)
        do_env(d, trimmed);
    else if (strcmp(kw, "ENTRYPOINT") == 0)
        do_command(d, 0, trimmed, p, line);
    else if (strcmp(kw, "CMD") == 0)
        do_command(d, 1, trimmed, p, line);
    else if (strcmp(kw, "SHELL") == 0)
        do_shell(d, trimmed);
    if (strcmp(kw, "RUN") == 0 || strcmp(kw, "COPY") == 0 || strcmp(kw, "ADD") == 0)
        note_heredoc(d, trimmed);
}

int nd_imagelint_dockerfile(const char *text, size_t len, nd_imagelint **out, nd_err *err)
{
    *out = NULL;
    nd_imagelint *r = calloc(1, sizeof *r);
    if (!r)
        return nd_err_set(err, -ENOMEM, "imagelint: out of memory");
    r->source = "dockerfile";
    dparse d;
    memset(&d, 0, sizeof d);
    d.r = r;
    d.esc = '\\';

    size_t cap = 8192, blen = 0;
    char *buf = malloc(cap);
    int start_line = 0, in_directives = 1, accumulating = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end && buf) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t ll = (size_t)(le - p);
        if (ll && p[ll - 1] == '\r')
            ll--;
        lineno++;
        char line[8192];
        snprintf(line, sizeof line, "%.*s", (int)(ll < sizeof line ? ll : sizeof line - 1), p);
        p = nl ? nl + 1 : end;

        const char *t = line;
        while (isspace((unsigned char)*t))
            t++;
        if (d.heredoc[0]) {
            if (strcmp(d.heredoc_strip ? t : line, d.heredoc) == 0)
                d.heredoc[0] = '\0';
            continue;
        }
        if (in_directives) {
            if (t[0] == '#') {
                const char *q = t + 1;
                while (isspace((unsigned char)*q))
                    q++;
                if (strncasecmp(q, "escape", 6) == 0) {
                    q += 6;
                    while (isspace((unsigned char)*q))
                        q++;
                    if (*q == '=') {
                        q++;
                        while (isspace((unsigned char)*q))
                            q++;
                        if (*q)
                            d.esc = *q;
                    }
                }
                continue;
            }
            in_directives = 0;
        }
        if (!*t || t[0] == '#')
            continue; /* blank lines and comments, also inside a continued instruction */
        if (!accumulating) {
            start_line = lineno;
            blen = 0;
            accumulating = 1;
        }
        size_t tl = strlen(line);
        while (tl > 0 && isspace((unsigned char)line[tl - 1]))
            tl--;
        int cont = tl > 0 && line[tl - 1] == d.esc;
        if (cont)
            tl--;
        if (nd_grow(&buf, &cap, blen + tl + 2) < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        memcpy(buf + blen, line, tl);
        blen += tl;
        buf[blen] = '\0';
        if (!cont) {
            instruction(&d, buf, start_line);
            accumulating = 0;
        }
    }
    if (buf && accumulating)
        instruction(&d, buf, start_line);
    int rc = 0;
    if (!buf) {
        rc = nd_err_set(err, -ENOMEM, "imagelint: out of memory");
    } else if (d.n_stages == 0) {
        rc = nd_err_set(err, -EBADMSG, "not a Dockerfile: no FROM instruction found");
    } else {
        stage *fin = &d.stages[d.n_stages - 1];
        r->stages = (int)d.n_stages;
        snprintf(r->base, sizeof r->base, "%s", fin->base);
        argv_copy(&r->entrypoint, &fin->ep);
        argv_copy(&r->cmd, &fin->cmd);
        r->env = strv_dup(fin->env, &r->n_env);
        apply_rules(r, fin->ep_text, fin->cmd_text);
    }
    free(buf);
    for (size_t i = 0; i < d.n_stages; i++)
        stage_free(&d.stages[i]);
    free(d.stages);
    stage_free(&d.global);
    if (rc < 0) {
        nd_imagelint_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* ---- docker inspect -------------------------------------------------------------------------------------------- */

static int inspect_argv(json_t *v, nd_lint_argv *a, char *ev, size_t evn, const char *what, nd_err *err)
{
    argv_clear(a);
    ev[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(ev, evn, "\"%s\": %s", what, dump ? dump : "?");
    free(dump);
    if (json_is_string(v)) { /* not what Docker writes, but some tools do: a command string */
        strv_push(&a->argv, &a->argc, "/bin/sh", 7);
        strv_push(&a->argv, &a->argc, "-c", 2);
        strv_push(&a->argv, &a->argc, json_string_value(v), json_string_length(v));
        a->shell_form = 1;
        a->set = 1;
        return 0;
    }
    if (!json_is_array(v))
        return nd_err_set(err, -EBADMSG, "docker inspect JSON: Config.%s is neither an array nor null", what);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s))
            return nd_err_set(err, -EBADMSG, "docker inspect JSON: Config.%s[%zu] is not a string", what, i);
        strv_push(&a->argv, &a->argc, json_string_value(s), json_string_length(s));
    }
    a->set = a->argc > 0;
    return 0;
}

int nd_imagelint_inspect(const char *json, size_t len, nd_imagelint **out, nd_err *err)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return nd_err_set(err, -EBADMSG, "docker inspect JSON: line %d column %d: %s", je.line, je.column, je.text);
    json_t *img = json_is_array(root) ? json_array_get(root, 0) : root;
    json_t *cfg = json_is_object(img) ? json_object_get(img, "Config") : NULL;
    if (!cfg && json_is_object(img))
        cfg = json_object_get(img, "config"); /* OCI image config */
    if (!json_is_object(cfg)) {
        int empty = json_is_array(root) && json_array_size(root) == 0;
        json_decref(root);
        return nd_err_set(err, -EBADMSG, "not a docker inspect output: no Config object%s",
                          empty ? " (the array is empty)" : "");
    }
    nd_imagelint *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(root);
        return nd_err_set(err, -ENOMEM, "imagelint: out of memory");
    }
    r->source = "inspect";
    r->entrypoint.known = r->cmd.known = 1;
    json_t *tags = json_object_get(img, "RepoTags");
    if (json_is_array(tags) && json_is_string(json_array_get(tags, 0)))
        snprintf(r->base, sizeof r->base, "%s", json_string_value(json_array_get(tags, 0)));
    char ep_ev[512], cmd_ev[512];
    int rc = inspect_argv(json_object_get(cfg, "Entrypoint"), &r->entrypoint, ep_ev, sizeof ep_ev, "Entrypoint", err);
    if (rc == 0)
        rc = inspect_argv(json_object_get(cfg, "Cmd"), &r->cmd, cmd_ev, sizeof cmd_ev, "Cmd", err);
    json_t *env = json_object_get(cfg, "Env");
    size_t i;
    json_t *e;
    if (json_is_array(env))
        json_array_foreach(env, i, e)
        {
            if (json_is_string(e))
                strv_push(&r->env, &r->n_env, json_string_value(e), json_string_length(e));
        }
    json_decref(root);
    if (rc < 0) {
        nd_imagelint_free(r);
        return rc;
    }
    apply_rules(r, ep_ev, cmd_ev);
    *out = r;
    return 0;
}

int nd_imagelint_file(const char *path, nd_imagelint **out, nd_err *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return nd_err_set(err, -EISDIR, "%s: is a directory (give the Dockerfile or a docker inspect JSON file)", path);
    }
    size_t cap = 4u << 20;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return nd_err_set(err, -ENOMEM, "imagelint: out of memory");
    }
    size_t n = fread(buf, 1, cap + 1, f);
    int rerr = ferror(f);
    fclose(f);
    if (rerr || n > cap) {
        free(buf);
        return rerr ? nd_err_set(err, -EIO, "%s: read error", path)
                    : nd_err_set(err, -EFBIG, "%s: larger than 4 MiB: not a Dockerfile", path);
    }
    buf[n] = '\0';
    const char *p = buf;
    while (p < buf + n && isspace((unsigned char)*p))
        p++;
    int rc;
    if (*p == '[' || *p == '{')
        rc = nd_imagelint_inspect(buf, n, out, err);
    else
        rc = nd_imagelint_dockerfile(buf, n, out, err);
    free(buf);
    if (rc < 0 && err && err->msg[0]) {
        char tmp[sizeof err->msg];
        snprintf(tmp, sizeof tmp, "%s", err->msg);
        nd_err_set(err, rc, "%s: %s", path, tmp);
    }
    return rc;
}
