/*
 * main.c — nitrodiag-kms-proxy: command line, then the server (proxy.c) on one libuv loop until SIGTERM/SIGINT
 * has drained the requests in flight.
 */
#include "proxy.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nitrodiag-kms-proxy [--config FILE] [--OPTION=VALUE ...]\n"
            "\n"
            "The host-side KMS proxy for Nitro Enclaves: enclaves send framed KMS requests over vsock, the proxy\n"
            "signs them with the instance's credentials (SigV4) and forwards them to AWS KMS under a deadline,\n"
            "retry, rate-limit and circuit-breaker policy. Logs are JSON lines on stdout; metrics are served on\n"
            "metrics_listen at /metrics. SIGHUP reloads the config file; SIGTERM/SIGINT drain requests in flight\n"
            "and exit.\n"
            "\n"
            "  -c, --config FILE   read `key = value` settings from FILE (flags given after override it)\n"
            "  -h, --help          show this help\n"
            "      --version       show the version\n"
            "      --check         validate the configuration and exit (0 valid, 2 invalid)\n"
            "\n"
            "Options (config-file keys; on the command line as --key=value or --key value):\n");
    px_config_help(f);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    bool check = false;
    char **flags = calloc((size_t)argc + 1, sizeof *flags);
    char **owned = calloc((size_t)argc + 1, sizeof *owned);
    int nflags = 0, nowned = 0, rc = 2;
    if (!flags || !owned) {
        fprintf(stderr, "nitrodiag-kms-proxy: out of memory\n");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--version")) {
            printf("nitrodiag-kms-proxy %s\n", ND_VERSION);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--check")) {
            check = true;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "nitrodiag-kms-proxy: %s needs a file\n", a);
                goto out;
            }
            config_path = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            config_path = a + 9;
        } else if (!strncmp(a, "--", 2) && a[2]) {
            const char *eq = strchr(a, '=');
            char key[128];
            size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            if (kl >= sizeof key) {
                fprintf(stderr, "nitrodiag-kms-proxy: unknown option %s (see --help)\n", a);
                goto out;
            }
            memcpy(key, a + 2, kl);
            key[kl] = '\0';
            if (!px_config_known(key)) {
                fprintf(stderr, "nitrodiag-kms-proxy: unknown option --%s (see --help)\n", key);
                goto out;
            }
            if (eq) {
                flags[nflags++] = argv[i];
            } else {
                if (i + 1 >= argc) {
                    fprintf(stderr, "nitrodiag-kms-proxy: --%s needs a value\n", key);
                    goto out;
                }
                size_t n = strlen(a) + strlen(argv[i + 1]) + 2;
                char *f = malloc(n);
                if (!f)
                    goto out;
                snprintf(f, n, "%s=%s", a, argv[++i]);
                owned[nowned++] = f;
                flags[nflags++] = f;
            }
        } else {
            fprintf(stderr, "nitrodiag-kms-proxy: unexpected argument %s (see --help)\n", a);
            goto out;
        }
    }

    px_config cfg;
    nd_err err;
    nd_err_clear(&err);
    if (px_build_config(&cfg, config_path, nflags, flags, &err) < 0) {
        fprintf(stderr, "nitrodiag-kms-proxy: %s\n", err.msg);
        goto out;
    }
    if (check) {
        printf("nitrodiag-kms-proxy: configuration is valid%s\n",
               cfg.region[0] ? "" : " (no region set: the instance's region is read from IMDSv2 at start)");
        rc = 0;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16); /* log_line flushes after each whole line */

    uv_loop_t loop;
    uv_loop_init(&loop);
    px_server *srv = NULL;
    if (px_server_start(&loop, &cfg, config_path, nflags, flags, &srv, &err) < 0) {
        fprintf(stderr, "nitrodiag-kms-proxy: %s\n", err.msg);
        uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
        rc = 1;
        goto out;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    px_server_free(srv);
    rc = 0;
out:
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    free(owned);
    free(flags);
    return rc;
}
