/*
 * config.h — nitrodiag-kms-proxy settings. One table of options (config.c) serves the config file
 * (`key = value` lines), the command-line flags (`--key=value` / `--key value`) and `--help`, so the three can never
 * disagree. Precedence: built-in defaults < config file < flags. SIGHUP re-reads the file and re-applies the flags.
 */
#ifndef PX_CONFIG_H
#define PX_CONFIG_H

#include "nd.h"

#define PX_STR 512
#define PX_MAX_LISTEN 8

typedef struct px_config {
    /* listeners */
    char listen[PX_STR];           /* comma-separated addresses: vsock:CID:PORT, unix:PATH, tcp:HOST:PORT */
    char metrics_listen[PX_STR];   /* tcp:127.0.0.1:PORT or unix:PATH; "" or "off" disables */
    long max_frame;
    long max_connections;
    long max_pending_per_conn;
    long max_unsent_per_conn;      /* bytes of answers queued to one connection before reading it pauses */
    long unsent_timeout_ms;        /* a connection above max_unsent_per_conn for this long is closed */
    double conn_log_rate;          /* rejection log lines per second per connection (token bucket) */
    double conn_log_burst;         /* ... and its bucket size */
    /* upstream */
    char region[64];
    char endpoint[PX_STR];
    char ca_file[PX_STR];
    char https_proxy[PX_STR];
    char credentials[16];          /* auto | env | imds */
    char imds_endpoint[PX_STR];
    long max_upstream_connections;
    long connect_timeout_ms;
    /* policy */
    long deadline_ms;
    long attempt_timeout_ms;
    long max_attempts;
    long backoff_base_ms;
    long backoff_cap_ms;
    long retry_budget;
    long retry_cost;
    long retry_timeout_cost;
    long retry_refund;
    double rate_limit_rps;
    double rate_limit_burst;
    long max_in_flight;
    long max_queue;
    double breaker_window_s;
    long breaker_min_requests;
    double breaker_error_ratio;
    double breaker_open_s;
    /* security */
    char allow_ops[PX_STR];
    char allow_keys[4096];
    bool require_recipient;
    /* lifecycle */
    long drain_timeout_ms;
} px_config;

/* Fills c with the built-in defaults (reference/ephemeralml.md). */
void px_config_defaults(px_config *c);

/* Applies one `key = value` setting. Returns 0, or -EINVAL with err (unknown key, bad value). */
int px_config_set(px_config *c, const char *key, const char *value, nd_err *err);

/* Reads a config file of `key = value` lines (# comments, blank lines). Returns 0, or a negative code with err
 * naming the file and line. */
int px_config_load_file(px_config *c, const char *path, nd_err *err);

/* Checks cross-field rules (ranges, a region, listen addresses). Returns 0 or -EINVAL with err. */
int px_config_validate(const px_config *c, nd_err *err);

/* Writes the option list for --help (name, default, meaning) to f. */
void px_config_help(void *file);

/* True when name is a known option. */
bool px_config_known(const char *name);

/* True when op (an operation name) is in allow_ops. */
bool px_config_op_allowed(const px_config *c, const char *op);

/* True when key_id is allowed by allow_keys ("*" allows everything; entries match exactly, or an ARN entry
 * matches its key id or alias name). An empty key_id is allowed only under "*". */
bool px_config_key_allowed(const px_config *c, const char *key_id);

#endif
