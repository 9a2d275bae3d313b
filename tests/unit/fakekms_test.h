/*
 * fakekms_test.h — starting and stopping nitrodiag-fake-kms from a C test (header-only; any test may include it).
 *
 *   fakekms fk;
 *   if (fakekms_start(&fk, (const char *[]){ "--throttle-ratio", "0.5", NULL }) == 0) { ... fk.port, fk.ca ... }
 *   fakekms_stop(&fk);
 *
 * The fake prints its port (and, in KMS mode, its CA file) on stdout; it exits by itself if the test dies.
 */
#ifndef FAKEKMS_TEST_H
#define FAKEKMS_TEST_H

#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct fakekms {
    pid_t pid;
    int port;
    char ca[640];
    char url[64];     /* https://127.0.0.1:PORT (KMS) or http://127.0.0.1:PORT (IMDS) */
} fakekms;

static inline int fakekms_start(fakekms *fk, const char *const *extra)
{
    memset(fk, 0, sizeof *fk);
    int p[2];
    if (pipe(p) < 0)
        return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = ND_BINARY_DIR "/nitrodiag-fake-kms";
    argv[n++] = "--max-seconds";
    argv[n++] = "120";
    bool imds = false;
    for (int i = 0; extra && extra[i] && n < 62; i++) {
        imds |= strcmp(extra[i], "--imds") == 0;
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    int rc = posix_spawn(&fk->pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -1;
    }
    FILE *f = fdopen(p[0], "r");
    char line[600];
    if (!f || !fgets(line, sizeof line, f)) {
        if (f)
            fclose(f);
        kill(fk->pid, SIGKILL);
        waitpid(fk->pid, NULL, 0);
        return -1;
    }
    fk->port = atoi(line);
    if (!imds && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(fk->ca, sizeof fk->ca, "%s", line);
    }
    fclose(f);
    snprintf(fk->url, sizeof fk->url, "%s://127.0.0.1:%d", imds ? "http" : "https", fk->port);
    return fk->port > 0 ? 0 : -1;
}

static inline void fakekms_stop(fakekms *fk)
{
    if (fk->pid > 0) {
        kill(fk->pid, SIGTERM);
        waitpid(fk->pid, NULL, 0);
        fk->pid = 0;
    }
}

#endif
