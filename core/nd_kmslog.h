/*
 * nd_kmslog.h — a fast scanner for KMS proxy logs (the kms_proxy_host of EphemeralML and nitrodiag-kms-proxy).
 *
 * Input is a byte stream of lines (a file, stdin, `journalctl -o cat`). Each line may be:
 *  - a plain JSON event: {"event":"kms_proxy_request"|"kms_proxy_response", "request_id", …};
 *  - the old tracing-wrapped form: a tracing-subscriber JSON line whose `fields.json` (or top-level `json`) is the
 *    event serialised as an escaped JSON string, with the time in the wrapper's `timestamp`;
 *  - either of those after a prefix without '{' (syslog/journal short format, `docker logs -t`);
 *  - anything else: blank lines, journald's `-- Boot … --` markers, plain text (counted, ignored).
 * Input is read in 1 MiB blocks; lines are split with memchr; a line is parsed with jansson only after cheap substring prefilters derived from the
 * filter (the request id, the error-code tail, `"ok":false`) pass, and the most selective one is searched across
 * the whole buffer first, grep-style, so lines that cannot match are never looked at twice.
 *
 * Over the matching events the scanner keeps a summary in bounded memory: errors by normalised code, durations for
 * percentiles (exact, then a histogram), per-counter first/last/delta over the `metrics` snapshots, the unique
 * kms_request_id values (up to max_ids), and request/response pairing within a time window. Candidate lines are read
 * by a strict one-pass reader for the proxies' flat objects, and by jansson whenever that reader is not sure.
 */
#ifndef ND_KMSLOG_H
#define ND_KMSLOG_H

#include "nd.h"

struct json_t;

typedef struct nd_kmslog_filter {
    const char *request_id;  /* exact match, NULL = any */
    const char *trace_id;    /* exact match, NULL = any */
    const char *op;          /* "Decrypt" / "GenerateDataKey" (case-insensitive); responses match through their
                                request line's request_id, or their own `op` field when they carry one */
    const char *code;        /* error code, PascalCase or snake_case (normalised before comparing) */
    bool errors_only;        /* responses with ok=false or a non-null error_code */
    bool throttled;          /* responses whose code is upstream_throttled */
    bool has_since, has_until;
    double since, until;     /* epoch seconds, inclusive; lines without a timestamp never match a time range */
    size_t max_ids;          /* cap on kept kms_request_id values; 0 means 100000 */
    bool seek;               /* with since: a regular, uncompressed file is entered by binary search on the lines'
                                timestamps instead of read from the start (line numbers then count from there) */
    bool no_fast;            /* read every candidate with jansson (tests compare the two readers) */
    bool no_shapes;          /* read every candidate with the strict reader, never a kept line shape (tests) */
} nd_kmslog_filter;

typedef struct nd_kmslog_record {
    uint64_t line_no;              /* 1-based over everything fed */
    const char *line;              /* the raw line, without its newline (not NUL-terminated) */
    size_t line_len;
    const struct json_t *event;    /* the (unwrapped) event object when jansson read the line, else NULL: use
                                      nd_kmslog_event(rec), which parses it on demand */
    const char *json;              /* the event's JSON text as logged: the unescaped fields.json string of a
                                      wrapped line, the line from its '{' otherwise (not NUL-terminated); NULL
                                      when a wrapped line's text is unescaped only on demand: use
                                      nd_kmslog_record_json(rec) */
    size_t json_len;
    bool wrapped;                  /* came from the tracing-wrapped form */
    bool prefixed;                 /* the JSON started after a non-JSON prefix */
    bool is_response;              /* event == kms_proxy_response */
    const char *event_name;        /* "kms_proxy_request" / "kms_proxy_response" */
    const char *request_id, *trace_id, *op, *kms_request_id; /* NULL when absent or null */
    const char *raw_code;          /* error_code as logged, NULL when none */
    const char *attestation_pcr0;  /* a denied Recipient request's attestation PCR0 and module_id, NULL when absent */
    const char *attestation_module_id;
    char code[64];                 /* normalised snake_case error code, "" when none */
    int ok;                        /* 1, 0, or -1 when absent */
    double duration_ms;            /* NAN when absent */
    double ts;                     /* epoch seconds, NAN when the line has no timestamp */
    const void *owner;             /* the scanner (internal) */
} nd_kmslog_record;

/* The record's event as a jansson object, parsed on first use; valid during the callback only. Returns NULL only
 * when out of memory. */
const struct json_t *nd_kmslog_event(const nd_kmslog_record *rec);

/* The record's event JSON text (rec->json, or a wrapped line's json string unescaped now); valid during the callback
 * only, not NUL-terminated, its length in *len. Returns NULL only when out of memory. */
const char *nd_kmslog_record_json(const nd_kmslog_record *rec, size_t *len);

/* Called for each matching event. Return 0 to continue; a negative value stops the scan and is returned by the
 * feeding function; ND_KMSLOG_ENOUGH (a summary of a big log needs no more records) continues the scan without
 * calling back again: matching events are still counted (stats.matched) and summarised, and their strings are
 * then copied only when the summary itself needs them. */
typedef int (*nd_kmslog_cb)(void *ud, const nd_kmslog_record *rec);
#define ND_KMSLOG_ENOUGH 1

typedef struct nd_kmslog_stats {
    uint64_t bytes, lines;
    uint64_t blank;       /* empty lines */
    uint64_t noise;       /* lines with no '{' at all: journald markers, plain text */
    uint64_t skipped;     /* JSON-looking lines rejected by the prefilters without parsing */
    uint64_t parsed;      /* lines handed to the JSON parser */
    uint64_t malformed;   /* parsed lines that were not valid JSON (or whose wrapped json was not) */
    uint64_t other;       /* valid JSON that is not a KMS proxy event (startup, listen, accept, …) */
    uint64_t events;      /* KMS proxy events seen after parsing (before the exact filters) */
    uint64_t wrapped, plain, prefixed; /* forms among events */
    uint64_t matched, matched_requests, matched_responses;
    uint64_t untimed;     /* events excluded by a time range because they carry no timestamp */
    /* Pairing over every event read (all events without a filter): a response pairs with the latest waiting request
     * of its request_id. A request waits at most 60 s of log time (and among at most 65536 waiting ones); what
     * leaves or ends the log without its response counts as unpaired. */
    uint64_t paired, unpaired_requests, unpaired_responses;
    uint64_t seek_skipped; /* bytes before since= not read (seek) */
} nd_kmslog_stats;

typedef struct nd_kmslog_counter {
    char name[64];
    double first, last, min, max;
    double delta;         /* *_total counters: sum of increases, a decrease counts as a restart from 0;
                             others (gauges such as in_flight): last - first */
    uint64_t samples, resets;
    bool monotonic;       /* name ends in _total */
} nd_kmslog_counter;

typedef struct nd_kmslog_id {
    char *kms_request_id;
    char *request_id;     /* may be NULL */
    char code[64];        /* normalised error code, "" when the call succeeded */
    double ts;            /* NAN when unknown */
    char attestation_pcr0[97];       /* from an access-denied Recipient response line, "" otherwise */
    char attestation_module_id[64];
} nd_kmslog_id;

typedef struct nd_kmslog nd_kmslog;

/* Creates a scanner. Strings in f are copied. Returns 0 and sets *out, or -EINVAL (bad filter, e.g. an empty
 * request_id) / -ENOMEM with err filled. */
int nd_kmslog_new(const nd_kmslog_filter *f, nd_kmslog_cb cb, void *ud, nd_kmslog **out, nd_err *err);

/* Feeds bytes; complete lines are scanned now, a trailing partial line is kept for the next call. Returns 0, the
 * callback's negative value when it stopped the scan, or -ENOMEM. */
int nd_kmslog_feed(nd_kmslog *k, const void *buf, size_t n, nd_err *err);

/* Scans a kept partial last line (a file without a final newline). Returns like nd_kmslog_feed. */
int nd_kmslog_finish(nd_kmslog *k, nd_err *err);

/* Scans a whole file ("-" is stdin): 1 MiB read(2) blocks; gzip files (.gz magic) are inflated with zlib. Includes the finish step for that file. Returns 0, a negative code with err naming the path
 * (-ENOENT, -EACCES, -EISDIR, -EIO), or the callback's value. */
int nd_kmslog_scan_file(nd_kmslog *k, const char *path, nd_err *err);

const nd_kmslog_stats *nd_kmslog_stats_of(const nd_kmslog *k);

/* Errors by normalised code among matching responses, in first-seen order. Returns how many codes there are; i-th
 * via nd_kmslog_error_at (returns 0, or -ERANGE). */
size_t nd_kmslog_error_codes(const nd_kmslog *k);
int nd_kmslog_error_at(const nd_kmslog *k, size_t i, const char **code, uint64_t *count);

/* Number of duration_ms samples among matching responses. */
size_t nd_kmslog_durations(const nd_kmslog *k);

/* true while percentiles are exact: up to 65536 samples are kept; past that they go into a log-bucketed histogram
 * (64 KiB) and percentiles are within 0.5 % of the exact value (min and max stay exact). */
bool nd_kmslog_latency_exact(const nd_kmslog *k);

/* Nearest-rank percentile p (0 < p <= 100) of duration_ms: the smallest sample such that at least p% of samples are
 * <= it (sorted[ceil(p/100*n) - 1]); see nd_kmslog_latency_exact. Returns 0 and sets *out, -ENODATA when there are no
 * samples, -EINVAL for p out of range. */
int nd_kmslog_percentile(nd_kmslog *k, double p, double *out);

/* The counters seen in matching responses' metrics snapshots, in first-seen order. */
const nd_kmslog_counter *nd_kmslog_counters(const nd_kmslog *k, size_t *n);

/* Unique kms_request_id values of matching events in first-seen order; *dropped (may be NULL) counts values seen
 * after max_ids were kept that are not among the kept (bounded memory: a value repeated after the cap counts again). */
const nd_kmslog_id *nd_kmslog_ids(const nd_kmslog *k, size_t *n, uint64_t *dropped);

void nd_kmslog_free(nd_kmslog *k);

/* Normalises an error code to snake_case: "UpstreamThrottled" → "upstream_throttled", "upstream_throttled" stays,
 * "KMSTimeout" → "kms_timeout", '-' and ' ' become '_'. Writes a NUL-terminated result (truncated to outsz-1) and
 * returns its length. */
size_t nd_kmslog_normalize_code(const char *in, size_t n, char *out, size_t outsz);

/* Parses a time for a range filter: RFC 3339 ("2026-01-27T10:00:00Z", "2026-01-27 10:00:00.5+02:00", a date
 * "2026-01-27" = its midnight UTC; no zone means UTC), epoch seconds ("1769500000", "@1769500000.5"), "now", or a
 * time relative to now ("-15m", "-2h", "-1d", "-30s", "-90"). Returns 0 and sets *out (epoch seconds), or -EINVAL
 * with a one-line message. */
int nd_kmslog_parse_time(const char *s, double now, double *out, nd_err *err);

#endif
