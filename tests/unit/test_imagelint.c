/*
 * test_imagelint.c — core/imagelint.c against the Nitro rules of shared/reference/nitro.md (CMD replaces ENTRYPOINT;
 * a /bin/sh -c command or no command reboots the enclave at once) and Docker's Dockerfile semantics (shell form =
 * SHELL + text, invalid JSON arrays are shell form, ENTRYPOINT clears an inherited CMD, only the final stage counts):
 * the seed's failing image (Dockerfile and docker inspect), the project's own Dockerfiles, and one case per rule.
 */
#include "ndtest.h"
#include "nd_imagelint.h"

#include <stdlib.h>

static nd_imagelint *lint(const char *text)
{
    nd_imagelint *r = NULL;
    nd_err err;
    int rc = nd_imagelint_dockerfile(text, strlen(text), &r, &err);
    if (rc < 0)
        fprintf(stderr, "  lint failed: %s\n", err.msg);
    return r;
}

/* The first finding with code, or NULL. */
static const nd_lint_finding *find(const nd_imagelint *r, const char *code)
{
    for (size_t i = 0; r && i < r->n_findings; i++)
        if (strcmp(r->findings[i].code, code) == 0)
            return &r->findings[i];
    return NULL;
}

static int count(const nd_imagelint *r, const char *code)
{
    int n = 0;
    for (size_t i = 0; r && i < r->n_findings; i++)
        n += strcmp(r->findings[i].code, code) == 0;
    return n;
}

static const char *cmd0(const nd_imagelint *r)
{
    return r && r->command && r->command->argv ? r->command->argv[0] : NULL;
}

/* An exec-form command that is not a PID-1 wrapper gets the nitrodiag-init recommendation (info, not a failure);
 * wrappers, shell forms (already failed) and inherited commands do not. */
static void recommends_an_init_wrapper(void)
{
    nd_imagelint *r = lint("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\", \"--port\", \"5000\"]\n");
    const nd_lint_finding *f = find(r, "IMG_NO_INIT_WRAPPER");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(f->severity, ND_LINT_INFO);
        CHECK_EQ_INT(f->line, 3);
        CHECK(strstr(f->message, "/app runs as the enclave's command with no PID-1 wrapper") != NULL);
        CHECK(f->rule == NULL); /* its text is the registry's (lua/nd/findings.lua IMG_NO_INIT_WRAPPER) */
    }
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_INT(r->warns, 0);
    nd_imagelint_free(r);
    static const char *const clean[] = {
        "FROM scratch\nENTRYPOINT [\"/nitrodiag-init\", \"--\", \"/app\"]\n",
        "FROM scratch\nENTRYPOINT [\"/init\"]\n",
        "FROM alpine\nENTRYPOINT [\"/sbin/tini\", \"--\", \"/app\"]\n",
        "FROM scratch\nENTRYPOINT /app --port 5000\n",
        "FROM busybox\n",
    };
    for (size_t i = 0; i < sizeof clean / sizeof clean[0]; i++) {
        r = lint(clean[i]);
        CHECK(r != NULL && count(r, "IMG_NO_INIT_WRAPPER") == 0);
        nd_imagelint_free(r);
    }
}

static void seed_dockerfile_fails(void)
{
    nd_imagelint *r = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/tests/fixtures/imagelint/seed.Dockerfile", &r, &err), 0);
    CHECK_EQ_STR(r->source, "dockerfile");
    CHECK_EQ_INT(r->stages, 2);
    CHECK_EQ_STR(r->base, "alpine:3.19");
    const nd_lint_finding *f = find(r, "IMG_SHELL_C");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_INT(f->severity, ND_LINT_FAIL);
        CHECK_EQ_INT(f->line, 13);
        CHECK_EQ_STR(f->message, "CMD on line 13 runs a shell: /bin/sh -c \"/vsock-pingpong --mode ${MODE}\"");
        CHECK(f->rule == NULL); /* the knowledge is in the registry (lua/nd/findings.lua) */
        CHECK_EQ_STR(f->evidence, "CMD [\"/bin/sh\",\"-c\", \"/vsock-pingpong --mode ${MODE}\"]");
    }
    f = find(r, "IMG_CMD_REPLACES_ENTRYPOINT");
    CHECK(f != NULL);
    if (f) {
        CHECK(strstr(f->message, "silently replaces ENTRYPOINT [/init]") != NULL);
    }
    /* Nitro runs the CMD, not /init. */
    CHECK_EQ_STR(cmd0(r), "/bin/sh");
    CHECK_EQ_INT(r->fails, 2);
    nd_imagelint_free(r);
}

static void seed_inspect_fails(void)
{
    nd_imagelint *r = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/tests/fixtures/imagelint/docker_inspect_seed.json", &r, &err), 0);
    CHECK_EQ_STR(r->source, "inspect");
    CHECK_EQ_STR(r->base, "vsock-pingpong:basic");
    CHECK(find(r, "IMG_SHELL_C") != NULL);
    CHECK(find(r, "IMG_CMD_REPLACES_ENTRYPOINT") != NULL);
    const nd_lint_finding *f = find(r, "IMG_SHELL_C");
    if (f)
        CHECK_EQ_STR(f->evidence, "\"Cmd\": [\"/bin/sh\",\"-c\",\"/vsock-pingpong --mode basic\"]");
    nd_imagelint_free(r);

    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/tests/fixtures/imagelint/docker_inspect_good.json", &r, &err), 0);
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_INT(r->warns, 0);
    CHECK_EQ_STR(cmd0(r), "/init");
    CHECK_EQ_INT((int)r->n_env, 2);
    CHECK_EQ_STR(r->env[1], "VSOCK_PINGPONG_MODE=vsock");
    nd_imagelint_free(r);
}

static void project_dockerfiles_pass(void)
{
    nd_imagelint *r = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/enclave/Dockerfile", &r, &err), 0);
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_INT(r->warns, 0);
    CHECK_EQ_STR(r->base, "scratch");
    CHECK_EQ_INT(r->stages, 2);
    CHECK(r->entrypoint.set && !r->entrypoint.shell_form);
    CHECK_EQ_INT((int)r->entrypoint.argc, 1);
    CHECK_EQ_STR(cmd0(r), "/init");
    CHECK(!r->cmd.set);
    CHECK_EQ_INT((int)r->n_env, 1);
    CHECK_EQ_STR(r->env[0], "VSOCK_PINGPONG_MODE=vsock"); /* ${MODE} from ARG MODE=vsock */
    const nd_lint_finding *f = find(r, "IMG_COMMAND");
    CHECK(f && strcmp(f->message, "Nitro runs: /init") == 0);
    nd_imagelint_free(r);

    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/enclave/Dockerfile.smoke", &r, &err), 0);
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_INT(r->warns, 0);
    CHECK_EQ_STR(cmd0(r), "/bin/echo");
    CHECK(!r->cmd.set); /* busybox's CMD ["sh"] is cleared by ENTRYPOINT */
    nd_imagelint_free(r);
}

static void shell_forms(void)
{
    nd_imagelint *r = lint("FROM scratch\nENTRYPOINT /init --mode vsock\n");
    const nd_lint_finding *f = find(r, "IMG_SHELL_C");
    CHECK(f != NULL);
    if (f) {
        CHECK_EQ_STR(f->message, "shell-form ENTRYPOINT on line 2 runs through the shell: /bin/sh -c \"/init --mode vsock\"");
        CHECK_EQ_INT(f->line, 2);
    }
    nd_imagelint_free(r);

    /* SHELL changes the shell of the shell form; still a shell. */
    r = lint("FROM scratch\nSHELL [\"/bin/bash\", \"-lc\"]\nCMD exec /app\n");
    f = find(r, "IMG_SHELL_C");
    CHECK(f && strstr(f->message, "/bin/bash -lc \"exec /app\""));
    nd_imagelint_free(r);

    /* Single quotes are not JSON: Docker runs it through the shell. */
    r = lint("FROM scratch\nENTRYPOINT ['/init']\n");
    CHECK(find(r, "IMG_BAD_EXEC_FORM") != NULL);
    CHECK(find(r, "IMG_SHELL_C") != NULL);
    nd_imagelint_free(r);

    /* Exec form that starts a shell, through busybox. */
    r = lint("FROM busybox\nENTRYPOINT [\"busybox\", \"sh\", \"-ec\", \"echo hi\"]\n");
    CHECK(find(r, "IMG_SHELL_C") != NULL);
    nd_imagelint_free(r);

    /* A shell without -c is not flagged (it runs a script file). */
    r = lint("FROM scratch\nENTRYPOINT [\"/bin/sh\", \"/start.sh\"]\n");
    CHECK(find(r, "IMG_SHELL_C") == NULL);
    nd_imagelint_free(r);
}

static void cmd_and_entrypoint(void)
{
    /* CMD then ENTRYPOINT in the same stage: both stay (BuildKit), so the CMD replaces the ENTRYPOINT in Nitro. */
    nd_imagelint *r = lint("FROM scratch\nCMD [\"--mode\", \"vsock\"]\nENTRYPOINT [\"/init\"]\n");
    const nd_lint_finding *f = find(r, "IMG_CMD_REPLACES_ENTRYPOINT");
    CHECK(f != NULL);
    if (f)
        CHECK_EQ_STR(f->message, "CMD [--mode vsock] silently replaces ENTRYPOINT [/init]: a Nitro enclave runs only the CMD");
    CHECK_EQ_STR(cmd0(r), "--mode");
    nd_imagelint_free(r);

    /* A CMD from an earlier stage is cleared by an ENTRYPOINT in the final stage built FROM it. */
    r = lint("FROM scratch AS base\nCMD [\"/bin/sh\", \"-c\", \"x\"]\n\nFROM base\nENTRYPOINT [\"/init\"]\n");
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_STR(cmd0(r), "/init");
    nd_imagelint_free(r);

    /* ...but inherited as is when the final stage sets nothing. */
    r = lint("FROM scratch AS base\nENTRYPOINT [\"/init\"]\nCMD [\"x\"]\nFROM base\nENV A=1\n");
    CHECK(find(r, "IMG_CMD_REPLACES_ENTRYPOINT") != NULL);
    nd_imagelint_free(r);
}

static void missing_or_inherited(void)
{
    nd_imagelint *r = lint("FROM scratch\nCOPY init /init\n");
    const nd_lint_finding *f = find(r, "IMG_NO_ENTRYPOINT");
    CHECK(f && f->severity == ND_LINT_FAIL);
    CHECK(r && r->command == NULL);
    nd_imagelint_free(r);

    /* Only the final stage counts: a builder's ENTRYPOINT does not help. */
    r = lint("FROM debian AS build\nENTRYPOINT [\"/init\"]\nFROM scratch\nCOPY --from=build /init /init\n");
    CHECK(find(r, "IMG_NO_ENTRYPOINT") != NULL);
    nd_imagelint_free(r);

    /* An external base: its command is unknown here. */
    r = lint("FROM alpine:3.19\nRUN echo hi\n");
    f = find(r, "IMG_INHERITED");
    CHECK(f && f->severity == ND_LINT_WARN);
    CHECK_EQ_INT(r->fails, 0);
    nd_imagelint_free(r);
    r = lint("FROM alpine:3.19\nCMD [\"/app\"]\n");
    CHECK(find(r, "IMG_INHERITED") != NULL);
    nd_imagelint_free(r);
}

static void syntax(void)
{
    /* Continuations, comments inside them, lower-case keywords, an escape directive, CRLF, heredocs, ARG in FROM. */
    nd_imagelint *r = lint("# escape=`\r\n"
                           "ARG BASE=scratch\r\n"
                           "FROM debian AS b\r\n"
                           "RUN <<EOF\r\n"
                           "CMD /bin/sh -c nope\r\n"
                           "EOF\r\n"
                           "from ${BASE}\r\n"
                           "arg MODE=basic\r\n"
                           "env VSOCK_PINGPONG_MODE=${MODE} OTHER=\"a b\" `\r\n"
                           "  # a comment in the middle\r\n"
                           "  THIRD=${MISSING:-dflt}\r\n"
                           "entrypoint [\"/init\", `\r\n"
                           "  \"--mode\", \"basic\"]\r\n");
    CHECK(r != NULL);
    if (!r)
        return;
    CHECK_EQ_STR(r->base, "scratch");
    CHECK_EQ_INT(r->fails, 0);
    CHECK_EQ_INT((int)r->entrypoint.argc, 3);
    CHECK_EQ_INT(r->entrypoint.line, 12);
    CHECK_EQ_INT((int)r->n_env, 3);
    if (r->n_env == 3) {
        CHECK_EQ_STR(r->env[0], "VSOCK_PINGPONG_MODE=basic");
        CHECK_EQ_STR(r->env[1], "OTHER=a b");
        CHECK_EQ_STR(r->env[2], "THIRD=dflt");
    }
    nd_imagelint_free(r);

    /* Shell arithmetic is not a heredoc: the ENTRYPOINT after it still counts. */
    r = lint("FROM scratch\nRUN echo $((1<<2)) > /x\nENTRYPOINT [\"/init\"]\n");
    CHECK_EQ_STR(cmd0(r), "/init");
    nd_imagelint_free(r);

    /* Legacy ENV form, unknown variables kept as written. */
    r = lint("FROM scratch\nENV GREETING hello world\nENV X=$UNKNOWN\nENTRYPOINT [\"/init\"]\n");
    CHECK_EQ_STR(r->env[0], "GREETING=hello world");
    CHECK_EQ_STR(r->env[1], "X=$UNKNOWN");
    nd_imagelint_free(r);
}

static void errors(void)
{
    nd_imagelint *r = NULL;
    nd_err err;
    CHECK_EQ_INT(nd_imagelint_dockerfile("# nothing\nRUN x\n", 16, &r, &err), -EBADMSG);
    CHECK_EQ_STR(err.msg, "not a Dockerfile: no FROM instruction found");
    CHECK(r == NULL);
    CHECK_EQ_INT(nd_imagelint_inspect("[]", 2, &r, &err), -EBADMSG);
    CHECK_EQ_STR(err.msg, "not a docker inspect output: no Config object (the array is empty)");
    CHECK_EQ_INT(nd_imagelint_inspect("[{\"Config\": {\"Cmd\": 5}}]", 24, &r, &err), -EBADMSG);
    CHECK_EQ_STR(err.msg, "docker inspect JSON: Config.Cmd is neither an array nor null");
    CHECK_EQ_INT(nd_imagelint_inspect("[{\"Config\": ", 12, &r, &err), -EBADMSG);
    CHECK(strncmp(err.msg, "docker inspect JSON: line 1 column", 34) == 0);
    CHECK_EQ_INT(nd_imagelint_file("/nonexistent/Dockerfile", &r, &err), -ENOENT);
    CHECK_EQ_STR(err.msg, "/nonexistent/Dockerfile: No such file or directory");
    CHECK_EQ_INT(nd_imagelint_file(ND_SOURCE_DIR "/enclave", &r, &err), -EISDIR);
    /* Inspect with neither: no command. */
    CHECK_EQ_INT(nd_imagelint_inspect("{\"Config\": {\"Cmd\": null, \"Entrypoint\": []}}", 43, &r, &err), 0);
    CHECK(find(r, "IMG_NO_ENTRYPOINT") != NULL);
    nd_imagelint_free(r);
    /* Garbage never crashes. */
    const char junk[] = "FROM \x01\xff\nCMD [\nENTRYPOINT [\"a\", 1]\nENV =x ==\nARG\nSHELL nope\n\\\n";
    r = lint(junk);
    CHECK(r != NULL);
    CHECK_EQ_INT(count(r, "IMG_BAD_EXEC_FORM"), 2);
    nd_imagelint_free(r);
}

int main(void)
{
    ND_RUN(recommends_an_init_wrapper);
    ND_RUN(seed_dockerfile_fails);
    ND_RUN(seed_inspect_fails);
    ND_RUN(project_dockerfiles_pass);
    ND_RUN(shell_forms);
    ND_RUN(cmd_and_entrypoint);
    ND_RUN(missing_or_inherited);
    ND_RUN(syntax);
    ND_RUN(errors);
    return nd_test_summary();
}
