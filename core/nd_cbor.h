/*
 * nd_cbor.h — CBOR through libcbor, safely: the one place that loads untrusted CBOR (attestation documents, the EIF
 * signature section) and converts serde's byte arrays. libcbor's cbor_load allocates arrays and maps at their
 * declared size, so nd_cbor_load first checks with libcbor's allocation-free stream decoder that every declared size
 * fits in the input and that no indefinite-length item appears, and afterwards that no map repeats a key.
 */
#ifndef ND_CBOR_H
#define ND_CBOR_H

#include "nd.h"

#include <cbor.h>

/* Loads exactly n bytes as one CBOR item. Returns the item (free with cbor_decref) or NULL with -EBADMSG in err:
 * "<what> is not well-formed definite-length CBOR", "<what> is not valid CBOR (error E at byte B)", or
 * "<what> has N trailing bytes", "<what> repeats a map key or nests deeper than 64 levels" (any map, at any depth,
 * holding the same key twice — integers compared by value, strings by bytes). */
cbor_item_t *nd_cbor_load(const void *p, size_t n, const char *what, nd_err *err);

/* The map value under a definite text key, or NULL (borrowed: not incref'd). */
cbor_item_t *nd_cbor_map_get(const cbor_item_t *map, const char *key);

/* Copies a byte string, or an array of unsigned integers 0..255 (serde's Vec<u8>), into a malloc'd buffer.
 * Returns 0, or -EBADMSG when the item is neither, -ENOMEM. */
int nd_cbor_u8_bytes(const cbor_item_t *it, unsigned char **out, size_t *outlen);

/* Builds an array of unsigned integers from n bytes (serde's Vec<u8>), or NULL when out of memory. */
cbor_item_t *nd_cbor_u8_array(const void *data, size_t n);

#endif
