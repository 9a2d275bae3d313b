/*
 * nd_scrub.h — the secret scrubber every text artifact passes through before it reaches a bundle.
 *
 * A scrubber holds a list of rules (POSIX extended regular expressions with a replacement that may use \1..\9) and
 * one stream at a time: nd_scrub_begin() starts a stream with a sink, nd_scrub_feed() takes the text in chunks of
 * any size, nd_scrub_end() flushes it. The text is processed line by line, so a secret split across two chunks is
 * still found; a PEM private key spanning many lines is handled by a small state machine. Lines longer than
 * ND_SCRUB_LINE_MAX are cut near that length, before the secrets' names and shapes of the last 4 KiB so that none
 * straddles the cut (limits in docs/bundle.md: a value of more than 4 KiB whose name is further back; one token of
 * more than 8 KiB).
 *
 * The built-in rules (nd_scrub_new) cover AWS access key ids (AKIA…/ASIA…), secret access keys, session tokens,
 * X-Amz-Security-Token, Authorization headers, SigV4 signatures, PEM private keys and the credential fields of the
 * IMDS JSON document. Each rule has a name; nd_scrub_counts() reports how many replacements each made in the current
 * stream. Every byte is scrubbed, NUL bytes and binary regions included (see nd_scrub_looks_binary).
 *
 * Beyond names and values, the scrubber keeps state across lines: a key body whose BEGIN line was cut off (a tail
 * collection) is held back and removed when its END line follows (decided on the line as the rules leave it); an
 * access key id cut by a line wrap, or between two JSON records by a log driver, loses both halves; a base64-encoded
 * PEM private key loses its continuation lines. Properties (tested, fuzzed): idempotent (scrubbing the output again
 * changes nothing), output at most input + 16 bytes per redaction (a redaction is one marker written), the same
 * bytes whatever the chunking, no planted credential out.
 */
#ifndef ND_SCRUB_H
#define ND_SCRUB_H

#include "nd.h"

#define ND_SCRUB_LINE_MAX (1u << 20)

struct json_t;

typedef struct nd_scrub nd_scrub;

/* Receives scrubbed output. Returns 0, or a negative code that stops the stream (returned by feed/end). */
typedef int (*nd_scrub_sink)(void *ud, const void *data, size_t n);

/* Creates a scrubber with the built-in rules. Returns NULL (and fills err) when out of memory. */
nd_scrub *nd_scrub_new(nd_err *err);

/* Creates a scrubber with no rules at all (for tests and for callers that build their own list). */
nd_scrub *nd_scrub_new_empty(nd_err *err);

void nd_scrub_free(nd_scrub *s);

/* Adds a rule: every match of the POSIX extended regular expression `ere` in a line is replaced by `replacement`
 * (\0..\9 insert sub-matches, \\ a backslash). icase makes the match case-insensitive. The rule counts under `name`
 * (several rules may share a name). Returns the rule's index, or -EINVAL with the regcomp message for a bad
 * expression. Rules apply in the order they were added, after the built-in ones. */
int nd_scrub_add_rule(nd_scrub *s, const char *name, const char *ere, const char *replacement, bool icase, nd_err *err);

/* A caller's rule on one line (in, len; not NUL-terminated): returns the number of replacements and sets *out and *outlen
 * to the rewritten line (memory the caller keeps valid until its next call), 0 when nothing matched, or a negative
 * errno-style code that stops the stream. */
typedef int (*nd_scrub_line_fn)(void *ud, const char *in, size_t len, const char **out, size_t *outlen);

/* Adds a rule done by fn(ud, …) (e.g. a Lua pattern matched by Lua itself), counted under `name`, applied like
 * nd_scrub_add_rule's. ud must outlive the scrubber's use. Returns the rule's index, or -EINVAL / -ENOMEM. */
int nd_scrub_add_rule_fn(nd_scrub *s, const char *name, nd_scrub_line_fn fn, void *ud, nd_err *err);

/* Starts a stream that writes to sink(ud, …) and resets the counts. */
void nd_scrub_begin(nd_scrub *s, nd_scrub_sink sink, void *ud);

/* Scrubs n more bytes of the stream. Returns 0, or the sink's negative code. */
int nd_scrub_feed(nd_scrub *s, const void *data, size_t n);

/* Flushes the last partial line. Returns 0, or the sink's negative code. */
int nd_scrub_end(nd_scrub *s);

/* Total replacements made in the current (or last) stream. */
size_t nd_scrub_total(const nd_scrub *s);

/* The replacements of the current (or last) stream by rule name, as a new JSON object {name: count} holding only
 * the rules that matched. Returns NULL when out of memory. */
struct json_t *nd_scrub_counts(const nd_scrub *s);

/* Convenience: scrubs a whole buffer into a new malloc'd NUL-terminated string (*out, *outlen). Returns the number
 * of replacements (>= 0) or a negative code. */
int nd_scrub_buffer(nd_scrub *s, const void *in, size_t n, char **out, size_t *outlen);

/* Scrubs one member name or manifest field (a single line) with s's rules (NULL: the built-in rules) into out, so a
 * bundle's member names and its manifest entries are scrubbed the same way: "err-AKIA….log" becomes
 * "err-AKIA[REDACTED].log". Control bytes the scrubber would insert (a PEM marker opens a block) become '_'. Uses
 * s's stream: call it between streams, not inside one. Returns the number of redactions (>= 0), -ENAMETOOLONG when
 * out (outsz bytes with the NUL) is too small, or -ENOMEM. */
int nd_scrub_name(nd_scrub *s, const char *name, char *out, size_t outsz);

/* True when the data is a compressed or archive container (gzip, xz, zstd, bzip2, zip, 7z) — bytes in which no
 * secret can be recognised and which scrubbing would only corrupt. Anything else, including text with NUL bytes or
 * binary regions (a journal file, a core dump), is not binary as a whole: binary is a property of regions, and every
 * region goes through the rules, which match only text shapes (binary bytes pass unchanged unless they hold text
 * that looks like a secret). */
bool nd_scrub_looks_binary(const void *data, size_t n);

/* The names of the built-in rules, NULL-terminated (for the docs and the manifest). */
const char *const *nd_scrub_builtin_names(void);

#endif
