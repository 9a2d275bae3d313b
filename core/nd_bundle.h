/*
 * nd_bundle.h — the diagnostic bundle: one streaming .tar.gz per run (libarchive), a single top directory
 * `nitrodiag-<runbook>-<host>-<UTC timestamp>/`, every text artifact scrubbed of secrets before it is written, and a
 * manifest.json (jansson) that records every item — collected or not — with its outcome.
 *
 * Life cycle: nd_bundle_open creates `.<final name>.p<pid>-XXXXXX` (mode 0600; the pid of the writing process, so
 * the next run can tell a temporary file whose owner died: nd_tmp_sweep) in the output directory and streams the
 * archive into it; the nd_bundle_add_* calls append members, and every finished member is flushed to the file (a gzip
 * sync point), so a run killed half-way leaves an archive readable up to its last finished member; nd_bundle_finish
 * appends manifest.json, closes the archive, fsyncs and renames the temporary file to its final name (never replacing
 * an existing file). A failure at any point (full disk, I/O error) makes the bundle "broken": later adds return the
 * same error, finish removes the temporary file and reports where the data was supposed to go. nd_bundle_discard
 * drops everything (temp removed). No final-named file ever exists unless it is complete.
 *
 * Member names: the name a caller gives (or a host file's base name) is scrubbed by the bundle's scrubber, then
 * control characters, C1 controls, invalid UTF-8 and '%' are percent-escaped ("%0A", "%FF", "%25"). The result is
 * both the archive member's name and the manifest entry's name/path, so they always agree. A host file name never
 * makes a call fail; a caller's name that is absolute or has a "." / ".." / empty component is -EINVAL.
 *
 * Collection failures (missing file, permission denied, command not found, timeout) are NOT errors of these calls:
 * they are recorded in the manifest (status, error text) and the call returns 0. Calls return a negative code only
 * when the archive itself cannot be written, or for bad arguments (-EINVAL, e.g. a member name with "..").
 *
 * Text items up to 4 MiB are scrubbed once into memory; larger files are read twice over their fixed span (once
 * to measure the scrubbed size that the tar header needs, once to write it), so memory stays bounded whatever the
 * size and there is no second copy on disk.
 */
#ifndef ND_BUNDLE_H
#define ND_BUNDLE_H

#include "nd.h"
#include "nd_collect.h"
#include "nd_proc.h"
#include "nd_scrub.h"

struct json_t;

/* Temporary bundles are named `.<name>.tar.gz` ND_BUNDLE_TEMP_MARK `<pid>-XXXXXX`. */
#define ND_BUNDLE_TEMP_MARK ".p"

/* Percent-escapes control characters (< 0x20, 0x7f), C1 controls, invalid UTF-8, '%' and (unless keep_slash) '/'
 * of `in` into out (always NUL-terminated, cut at a character boundary when it does not fit). Returns the length. */
size_t nd_bundle_escape(const char *in, bool keep_slash, char *out, size_t outsz);

typedef struct nd_bundle nd_bundle;

/* ---- signing (optional; see docs/bundle.md "Integrity and authenticity") ----------------------------------------
 * A signature over manifest.json (which holds every member's SHA-256) stored as the member manifest.sig. The key file
 * is either a PEM private key (OpenSSL signature; verified with the public key, the private key or a certificate) or
 * an HMAC-SHA256 secret (the file's bytes without trailing whitespace, >= 16 bytes; verified with the same file). */
typedef struct nd_bundle_key nd_bundle_key;

/* Loads a key file. Returns 0 and *out, or a negative code with a message (-ENOENT, -EINVAL unreadable PEM or too
 * short a secret, -EFBIG). */
int nd_bundle_key_load(const char *path, nd_bundle_key **out, nd_err *err);
void nd_bundle_key_free(nd_bundle_key *k);
/* 16 hex digits identifying the key (SHA-256 of the secret or of the DER public key). */
const char *nd_bundle_key_id(const nd_bundle_key *k);
/* Signs data: *sig_json receives the manifest.sig document (malloc'd). -EINVAL for a public key. */
int nd_bundle_key_sign(const nd_bundle_key *k, const void *data, size_t len, char **sig_json, nd_err *err);
/* Checks a manifest.sig document against data. Returns 0 when it verifies (desc: "<algorithm>, key <id>"), or
 * -EBADMSG with why (wrong kind of key, another key, changed manifest, malformed document). */
int nd_bundle_key_verify(const nd_bundle_key *k, const void *data, size_t len, const char *sig_json, char *desc,
                         size_t descsz, nd_err *err);

typedef struct nd_bundle_opts {
    const char *out_dir; /* where the .tar.gz goes; created (one level) when missing; NULL = "." */
    const char *runbook; /* used in the name; NULL = "run" */
    const char *host;    /* used in the name; NULL = gethostname() */
    double created_at;   /* epoch seconds for the name's timestamp; 0 = now */
    const char *sign_key; /* a key file (see signing above): manifest.sig is added; NULL = unsigned */
} nd_bundle_opts;

/* Extra facts about an item added from memory (command output, strings). */
typedef struct nd_bundle_meta {
    const char *kind;          /* "command", "string", "json", "journal", "dmesg", "report"; NULL = "string" */
    const char *source;        /* what it came from (the command line, "lua"); NULL = none */
    nd_collect_status status;  /* outcome; ND_COLLECT_OK by default */
    const char *error;         /* error text for a non-ok status, or NULL */
    bool has_exit_code;
    int exit_code;
    double started_at, ended_at; /* epoch seconds; 0 = now */
    bool truncated;
    const char *truncated_reason;
    uint64_t source_bytes;     /* bytes the source produced (0 = same as data) */
    bool raw;                  /* store unscrubbed (binary, or generated by nitrodiag itself) */
} nd_bundle_meta;

/* Creates the bundle. Returns 0 and *out, or a negative code with a message naming the directory:
 * -EACCES/-EROFS "cannot write the bundle in DIR: …", -ENOTDIR, -ENOSPC. */
int nd_bundle_open(nd_ctx *ctx, const nd_bundle_opts *opts, nd_bundle **out, nd_err *err);

/* The final path (valid from open; the file exists only after a successful finish), the top directory name, the
 * temporary path, and the scrubber (to add rules). */
const char *nd_bundle_path(const nd_bundle *b);
const char *nd_bundle_topdir(const nd_bundle *b);
const char *nd_bundle_temp_path(const nd_bundle *b);
nd_scrub *nd_bundle_scrubber(nd_bundle *b);

/* The error that broke the bundle (code 0 when it is healthy). */
const nd_err *nd_bundle_error(const nd_bundle *b);

/* Adds a host file (resolved under ctx's root) as member `name` (NULL: the file's base name). */
int nd_bundle_add_file(nd_bundle *b, const char *name, const char *host_path, const nd_collect_opts *opts, nd_err *err);

/* Adds every match of a host glob pattern as `prefix` + base name; a pattern with no match is recorded as missing.
 * Returns the number of matches, or a negative code. */
int nd_bundle_add_glob(nd_bundle *b, const char *pattern, const char *prefix, const nd_collect_opts *opts, nd_err *err);

/* Adds data from memory as member `name` (scrubbed unless meta->raw or it looks binary). */
int nd_bundle_add_data(nd_bundle *b, const char *name, const void *data, size_t len, const nd_bundle_meta *meta,
                       nd_err *err);

/* Adds a JSON value (pretty-printed, scrubbed) as member `name`. */
int nd_bundle_add_json(nd_bundle *b, const char *name, const struct json_t *value, const nd_bundle_meta *meta,
                       nd_err *err);

/* Records an item in the manifest with no member (e.g. "journalctl not installed"). */
int nd_bundle_record(nd_bundle *b, const char *name, const nd_bundle_meta *meta, nd_err *err);

/* Adds the outcome of a finished command: stdout as `name` (kept tail when over the cap), a non-empty stderr as
 * `name.stderr`; status ok (whatever the exit code, which is recorded), missing (not found), denied, timeout
 * (partial output kept), error (killed by a signal). `lines` > 0 keeps only the last lines of stdout. The command is run by its caller (runbooks: nd.bundle's
 * add_command over nd.proc); there is no second runner here. */
int nd_bundle_add_proc_result(nd_bundle *b, const char *name, const char *const *argv, const nd_proc_result *res,
                              double started_at, uint64_t lines, nd_err *err);

/* Adds what a command printed before it was interrupted (res from nd_proc_peek), the same way, with status error and
 * error `why` ("interrupted before the command finished: …") and no exit code. */
int nd_bundle_add_proc_partial(nd_bundle *b, const char *name, const char *const *argv, const nd_proc_result *res,
                               double started_at, uint64_t lines, const char *why, nd_err *err);

/* Completes the bundle: `extra` (may be NULL) is merged into the top level of manifest.json (e.g. interrupted,
 * interrupt_reason, verdict); then the archive is closed, synced and renamed. Returns 0 (nd_bundle_path is the
 * file), or a negative code with a message; on failure the temporary file is removed. The object must still be
 * freed with nd_bundle_free. Calling it twice returns -EALREADY. */
int nd_bundle_finish(nd_bundle *b, const struct json_t *extra, nd_err *err);

/* Abandons the bundle: closes the archive and removes the temporary file. Safe after finish (does nothing). */
void nd_bundle_discard(nd_bundle *b);

/* Frees the object; a bundle neither finished nor discarded is discarded first. NULL is fine. */
void nd_bundle_free(nd_bundle *b);

/* The manifest entries recorded so far (a JSON array owned by the bundle; valid until nd_bundle_free). */
const struct json_t *nd_bundle_artifacts(const nd_bundle *b);

/* True once finish or discard ran. */
bool nd_bundle_closed(const nd_bundle *b);

/* ---- reading a bundle ------------------------------------------------------------------------------------------ */

/* One member of an existing bundle. */
typedef struct nd_bundle_member {
    char *name;       /* path inside the archive */
    uint64_t size;
    char sha256[65];  /* lower-case hex */
} nd_bundle_member;

typedef struct nd_bundle_contents {
    nd_bundle_member *members;
    size_t nmembers;
    char *topdir;             /* the single top directory ("" when the archive has none) */
    struct json_t *manifest;  /* parsed manifest.json, or NULL when absent/invalid */
    char *report;             /* report.md, or NULL */
    struct json_t *summary;   /* summary.json, or NULL */
    char *manifest_raw;       /* manifest.json's exact bytes (what a signature covers), or NULL */
    size_t manifest_len;
    char *signature;          /* manifest.sig, or NULL when the bundle is not signed */
    bool partial;             /* the archive ends early (a killed run's salvaged bundle): members is what was readable */
    char *partial_reason;     /* why, when partial */
} nd_bundle_contents;

/* Reads a bundle (any tar.gz libarchive can read), hashing every member as it streams by. An archive that ends early
 * after at least one complete member (a killed run) is read up to there: 0 with partial set. Returns 0, or a
 * negative code: -ENOENT, -EBADMSG "not a tar.gz: …" for a corrupt archive. Free with nd_bundle_contents_free. */
int nd_bundle_read(const char *path, nd_bundle_contents *out, nd_err *err);

void nd_bundle_contents_free(nd_bundle_contents *c);

/* Checks the signature of a bundle read by nd_bundle_read with the key file at key_path (see signing). Returns 0
 * when it verifies (desc: "<algorithm>, key <id>"), -ENOENT when the bundle is not signed, -EBADMSG when it does not
 * verify, or the key file's error. */
int nd_bundle_check_signature(const nd_bundle_contents *c, const char *key_path, char *desc, size_t descsz,
                              nd_err *err);

/* Checks every artifact of the manifest against the members: for each one that has a sha256, the member must exist
 * with that size and hash. Calls cb(ud, name, problem) for each problem. Returns the number of problems (0 = all
 * verified), or -EBADMSG when there is no valid manifest. *checked receives the number of members verified. */
int nd_bundle_verify(const nd_bundle_contents *c, void (*cb)(void *ud, const char *name, const char *problem),
                     void *ud, size_t *checked, nd_err *err);

#endif
