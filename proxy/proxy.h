/*
 * proxy.h — the nitrodiag-kms-proxy server: listeners, enclave connections, the per-request state machine
 * (policy checks, upstream attempts with retries, fail-closed response checks), logs, metrics and signals, all on
 * one libuv loop.
 */
#ifndef PX_PROXY_H
#define PX_PROXY_H

#include "config.h"

#include <uv.h>

typedef struct px_server px_server;

/* Creates the server on loop with cfg (copied): opens the listeners and the metrics responder, creates the
 * credentials provider and the KMS client, installs SIGHUP/SIGTERM/SIGINT handlers. config_path (may be NULL) and
 * the flags (argv-style "--key=value" list, kept by pointer) are what SIGHUP re-reads. Returns 0 or a negative code
 * with err. */
int px_server_start(uv_loop_t *loop, const px_config *cfg, const char *config_path, int nflags, char **flags,
                    px_server **out, nd_err *err);

/* Frees what the server still holds after the loop has ended. Safe with NULL. */
void px_server_free(px_server *s);

/* Builds a configuration: defaults, then the file (when path is non-NULL), then the flags. Returns 0 or a negative
 * code with err. */
int px_build_config(px_config *cfg, const char *path, int nflags, char **flags, nd_err *err);

#endif
