/*
 * config.c — the option table of nitrodiag-kms-proxy and its file/flag parsers (see config.h). Defaults follow the
 * reference policy: deadline 800 ms, per-attempt 250 ms, 3 attempts, full-jitter backoff 20..200 ms, 200 req/s
 * burst 400, 100 in flight, breaker over 10 s with >= 50 requests and >= 20 % errors, open 5 s.
 */
#include "config.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_type { T_STR, T_LONG, T_DBL, T_BOOL };

typedef struct opt {
    const char *name;
    enum opt_type type;
    size_t off, size;
    const char *def;
    double min, max;
    const char *help;
} opt;

#define S(f) offsetof(px_config, f), sizeof(((px_config *)0)->f)

static const opt opts[] = {
    {"listen", T_STR, S(listen), "vsock:any:8082", 0, 0,
     "comma-separated listen addresses: vsock:CID|any:PORT, unix:PATH, tcp:127.0.0.1:PORT"},
    {"metrics_listen", T_STR, S(metrics_listen), "tcp:127.0.0.1:9108", 0, 0,
     "where GET /metrics is served (loopback tcp or unix); \"off\" disables"},
    {"max_frame", T_LONG, S(max_frame), "262144", 1024, 16777216, "largest frame payload accepted, bytes"},
    {"max_connections", T_LONG, S(max_connections), "1024", 1, 65536, "enclave connections open at once"},
    {"max_pending_per_conn", T_LONG, S(max_pending_per_conn), "64", 1, 4096,
     "requests one connection may have outstanding before the proxy stops reading it"},
    {"max_unsent_per_conn", T_LONG, S(max_unsent_per_conn), "1048576", 4096, 1073741824,
     "bytes of answers queued to one connection (the client is not reading) before the proxy stops reading it"},
    {"unsent_timeout_ms", T_LONG, S(unsent_timeout_ms), "10000", 10, 3600000,
     "a connection that stays above max_unsent_per_conn this long is closed"},
    {"conn_log_rate", T_DBL, S(conn_log_rate), "5", 0, 1e6,
     "log lines per second for requests one connection gets refused (bad frames, policy, rate limit); the rest "
     "are counted in a kms_proxy_log_suppressed line"},
    {"conn_log_burst", T_DBL, S(conn_log_burst), "20", 1, 1e6, "burst of those log lines per connection"},
    {"region", T_STR, S(region), "", 0, 0, "AWS region (default: $AWS_REGION or $AWS_DEFAULT_REGION, else the instance's region from IMDSv2 at start)"},
    {"endpoint", T_STR, S(endpoint), "", 0, 0,
     "KMS endpoint override (FIPS, VPC endpoint, test server); default https://kms.REGION.amazonaws.com"},
    {"ca_file", T_STR, S(ca_file), "", 0, 0, "CA bundle (PEM) for the KMS endpoint; default the system store"},
    {"https_proxy", T_STR, S(https_proxy), "", 0, 0,
     "HTTPS proxy URL; default $HTTPS_PROXY/$NO_PROXY; \"none\" disables"},
    {"credentials", T_STR, S(credentials), "auto", 0, 0,
     "auto (environment, else IMDSv2), env or imds"},
    {"imds_endpoint", T_STR, S(imds_endpoint), "", 0, 0,
     "instance metadata address; default $AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254"},
    {"max_upstream_connections", T_LONG, S(max_upstream_connections), "64", 1, 1024,
     "HTTPS connections to KMS at once, kept alive (requests beyond wait for a free one)"},
    {"connect_timeout_ms", T_LONG, S(connect_timeout_ms), "2000", 10, 600000,
     "TCP+TLS connect timeout to KMS (an attempt's own timeout still applies)"},
    {"deadline_ms", T_LONG, S(deadline_ms), "800", 10, 600000, "end-to-end deadline of one request"},
    {"attempt_timeout_ms", T_LONG, S(attempt_timeout_ms), "250", 5, 600000, "timeout of one upstream attempt"},
    {"max_attempts", T_LONG, S(max_attempts), "3", 1, 10, "upstream attempts per request (1 = no retries)"},
    {"backoff_base_ms", T_LONG, S(backoff_base_ms), "20", 0, 60000, "full-jitter backoff base"},
    {"backoff_cap_ms", T_LONG, S(backoff_cap_ms), "200", 0, 600000, "full-jitter backoff cap"},
    {"retry_budget", T_LONG, S(retry_budget), "500", 0, 1000000, "retry quota tokens (AWS SDK standard mode)"},
    {"retry_cost", T_LONG, S(retry_cost), "5", 0, 1000, "tokens a retry costs"},
    {"retry_timeout_cost", T_LONG, S(retry_timeout_cost), "10", 0, 1000, "tokens a retry after a timeout costs"},
    {"retry_refund", T_LONG, S(retry_refund), "1", 0, 1000, "tokens a first-attempt success gives back"},
    {"rate_limit_rps", T_DBL, S(rate_limit_rps), "200", 0, 1e6, "token-bucket rate, requests/s (0 = off)"},
    {"rate_limit_burst", T_DBL, S(rate_limit_burst), "400", 1, 1e7, "token-bucket size"},
    {"max_in_flight", T_LONG, S(max_in_flight), "100", 1, 100000, "upstream requests in flight at once"},
    {"max_queue", T_LONG, S(max_queue), "1000", 0, 1000000,
     "requests that may wait (FIFO, within their deadline) for an in-flight slot; beyond: rate_limited"},
    {"breaker_window_s", T_DBL, S(breaker_window_s), "10", 1, 120, "circuit breaker window"},
    {"breaker_min_requests", T_LONG, S(breaker_min_requests), "50", 1, 1000000,
     "requests in the window before the breaker may open"},
    {"breaker_error_ratio", T_DBL, S(breaker_error_ratio), "0.2", 0.0001, 1, "error share that opens the breaker"},
    {"breaker_open_s", T_DBL, S(breaker_open_s), "5", 0.01, 3600, "how long the breaker stays open"},
    {"allow_ops", T_STR, S(allow_ops), "GenerateDataKey,Decrypt,GenerateRandom", 0, 0,
     "operations forwarded (GenerateDataKey, Decrypt, GenerateRandom, Encrypt)"},
    {"allow_keys", T_STR, S(allow_keys), "*", 0, 0,
     "comma-separated key ids, alias/NAME or ARNs allowed; * allows any"},
    {"require_recipient", T_BOOL, S(require_recipient), "true", 0, 0,
     "refuse requests without a recipient (attestation document)"},
    {"drain_timeout_ms", T_LONG, S(drain_timeout_ms), "5000", 0, 600000,
     "on SIGTERM, how long to wait for requests in flight"},
};

static const opt *find(const char *name)
{
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (strcmp(opts[i].name, name) == 0)
            return &opts[i];
    return NULL;
}

bool px_config_known(const char *name)
{
    return find(name) != NULL;
}

int px_config_set(px_config *c, const char *key, const char *value, nd_err *err)
{
    const opt *o = find(key);
    if (!o)
        return nd_err_set(err, -EINVAL, "unknown option %s", key);
    char *end = NULL;
    void *dst = (char *)c + o->off;
    switch (o->type) {
    case T_STR:
        if (strlen(value) >= o->size)
            return nd_err_set(err, -EINVAL, "%s: value longer than %zu characters", key, o->size - 1);
        memcpy(dst, value, strlen(value) + 1);
        return 0;
    case T_LONG: {
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < (long)o->min || v > (long)o->max)
            return nd_err_set(err, -EINVAL, "%s: \"%s\" is not an integer in %.0f..%.0f", key, value, o->min,
                              o->max);
        *(long *)dst = v;
        return 0;
    }
    case T_DBL: {
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= o->min && v <= o->max))
            return nd_err_set(err, -EINVAL, "%s: \"%s\" is not a number in %g..%g", key, value, o->min, o->max);
        *(double *)dst = v;
        return 0;
    }
    case T_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1") || !strcmp(value, "on"))
            *(bool *)dst = true;
        else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0") || !strcmp(value, "off"))
            *(bool *)dst = false;
        else
            return nd_err_set(err, -EINVAL, "%s: \"%s\" is not true or false", key, value);
        return 0;
    }
    return -EINVAL;
}

void px_config_defaults(px_config *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        px_config_set(c, opts[i].name, opts[i].def, NULL);
    const char *r = getenv("AWS_REGION");
    if (!r || !*r)
        r = getenv("AWS_DEFAULT_REGION");
    if (r && strlen(r) < sizeof c->region)
        snprintf(c->region, sizeof c->region, "%s", r);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int px_config_load_file(px_config *c, const char *path, nd_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return nd_err_set(err, -errno, "%s: %s", path, strerror(errno));
    char line[8192];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = nd_err_set(err, -EINVAL, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = nd_err_set(err, -EINVAL, "%s:%d: expected key = value", path, lineno);
            break;
        }
        *eq = '\0';
        char *k = trim(s), *v = trim(eq + 1);
        size_t vl = strlen(v);
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v[vl - 1] = '\0';
            v++;
        }
        nd_err e;
        nd_err_clear(&e);
        if (px_config_set(c, k, v, &e) < 0) {
            rc = nd_err_set(err, -EINVAL, "%s:%d: %s", path, lineno, e.msg);
            break;
        }
    }
    fclose(f);
    return rc;
}

int px_config_validate(const px_config *c, nd_err *err)
{
    /* no region: the server asks IMDS for the instance's at start (px_server_start), as the AWS SDKs do */
    if (!c->listen[0])
        return nd_err_set(err, -EINVAL, "no listen address");
    if (c->attempt_timeout_ms > c->deadline_ms)
        return nd_err_set(err, -EINVAL, "attempt_timeout_ms (%ld) exceeds deadline_ms (%ld)", c->attempt_timeout_ms,
                          c->deadline_ms);
    if (c->backoff_base_ms > c->backoff_cap_ms)
        return nd_err_set(err, -EINVAL, "backoff_base_ms exceeds backoff_cap_ms");
    if (strcmp(c->credentials, "auto") && strcmp(c->credentials, "env") && strcmp(c->credentials, "imds"))
        return nd_err_set(err, -EINVAL, "credentials must be auto, env or imds");
    /* allow_ops entries must be operations the proxy knows. */
    char buf[PX_STR];
    snprintf(buf, sizeof buf, "%s", c->allow_ops);
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = trim(t);
        if (*t && strcmp(t, "GenerateDataKey") && strcmp(t, "Decrypt") && strcmp(t, "GenerateRandom") &&
            strcmp(t, "Encrypt"))
            return nd_err_set(err, -EINVAL, "allow_ops: unknown operation %s", t);
    }
    return 0;
}

void px_config_help(void *file)
{
    FILE *f = file;
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        const opt *o = &opts[i];
        fprintf(f, "  --%s=%s\n      %s (default: %s)\n", o->name,
                o->type == T_BOOL ? "true|false" : o->type == T_STR ? "STR" : "N", o->help,
                o->def[0] ? o->def : "none");
    }
}

/* Calls match(token) for each comma-separated, trimmed token of list; true when one matches. */
static bool list_has(const char *list, const char *item, bool (*match)(const char *tok, const char *item))
{
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        size_t n = (size_t)(e - p);
        while (n > 0 && isspace((unsigned char)p[n - 1]))
            n--;
        if (n > 0 && n < 4096) {
            char tok[4096];
            memcpy(tok, p, n);
            tok[n] = '\0';
            if (match(tok, item))
                return true;
        }
        p = e;
    }
    return false;
}

static bool eq_match(const char *tok, const char *item)
{
    return strcmp(tok, item) == 0;
}

static bool key_match(const char *tok, const char *key)
{
    if (strcmp(tok, "*") == 0 || strcmp(tok, key) == 0)
        return true;
    /* An ARN entry (arn:aws:kms:REGION:ACCOUNT:key/ID or …:alias/NAME) also matches "ID" and "alias/NAME". */
    if (strncmp(tok, "arn:", 4) == 0 && key[0] && strncmp(key, "arn:", 4) != 0) {
        const char *res = strrchr(tok, ':');
        if (!res)
            return false;
        res++;
        if (strncmp(res, "key/", 4) == 0)
            return strcmp(res + 4, key) == 0;
        return strcmp(res, key) == 0;
    }
    return false;
}

bool px_config_op_allowed(const px_config *c, const char *op)
{
    return list_has(c->allow_ops, op, eq_match);
}

bool px_config_key_allowed(const px_config *c, const char *key_id)
{
    if (!key_id[0])
        return list_has(c->allow_keys, "*", eq_match);
    return list_has(c->allow_keys, key_id, key_match);
}
