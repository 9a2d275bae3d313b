/*
 * nd_jsonlift.h — parsing JSON with jansson, except for a few large byte values that are read straight from the
 * text. For the KMS proxy's per-request texts: the enclave's request carries an attestation document of ~4,500
 * bytes (an array of numbers, or base64) and KMS's answer a CMS EnvelopedData in base64; jansson makes one object
 * per number and copies and checks each string twice, which was the largest share of the proxy's own CPU.
 *
 * nd_jl_loadb follows the structure of the text (strings, brackets, colons, commas), "lifts" the values found at
 * the given paths of object keys when they are a base64 string without escapes or (if allowed) an array of plain
 * numbers 0..255, and lets jansson parse the text with each lifted value replaced by "[]": jansson still checks
 * everything (syntax, UTF-8, duplicate keys, depth). The substitution cannot change what is valid: a lifted value is
 * valid JSON and "[]" is a value of the same place. A lifted value's "[]" in the tree is found with nd_jl_find and
 * its bytes read with nd_jl_bytes. The caller decides what to do with texts the lift declines (usually: parse them
 * with jansson alone), so behaviour on every input stays jansson's; see frame.c and proxy/request.c.
 */
#ifndef ND_JSONLIFT_H
#define ND_JSONLIFT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ND_JL_MAX 4       /* lifted values per text */
#define ND_JL_DEPTH 4     /* keys per path */

/* A path of object keys from the root, NULL-terminated: {"request", "payload", "recipient", NULL}. */
typedef const char *const nd_jl_path[ND_JL_DEPTH + 1];

typedef struct nd_jl_value {
    const char *p;    /* in the text: the array with its brackets, or the string without its quotes */
    size_t n;
    size_t count;     /* array: elements */
    bool array;
    int path;         /* index into the paths given */
    json_t *ph;       /* its "[]" in the tree */
} nd_jl_value;

typedef struct nd_jl {
    nd_jl_value v[ND_JL_MAX];
    int n;
} nd_jl;

/* Parses text (n bytes) as json_loadb(text, n, flags, NULL) would, lifting the values at the npaths paths (arrays
 * only when arrays is true) into jl. Returns the tree (the caller decrefs it) with jl->n > 0, or NULL with *declined
 * set when there was nothing to lift or a value at a path is in neither form (an array of anything else, a string
 * with escapes or other characters), more than ND_JL_MAX of them, or the text is not followed through (unbalanced,
 * unterminated string); NULL with *declined false when jansson rejected the substituted text (so it rejects the
 * original too) or memory ran out. */
json_t *nd_jl_loadb(const char *text, size_t n, size_t flags, const nd_jl_path *paths, int npaths, bool arrays,
                    nd_jl *jl, bool *declined);

/* The lifted value whose "[]" v is, or NULL (v is jansson's own: read it from the tree). jl may be NULL. */
const nd_jl_value *nd_jl_find(const nd_jl *jl, const json_t *v);

/* Decodes a lifted value into *out (malloc'd, one byte more than *len, which may be 0 for an empty string): the
 * array's numbers, or the base64 string through nd_b64_decode (strict RFC 4648). Returns 0, -EBADMSG (not base64)
 * or -ENOMEM. */
int nd_jl_bytes(const nd_jl_value *v, unsigned char **out, size_t *len);

#endif
