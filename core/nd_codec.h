/*
 * nd_codec.h — byte encodings and digests shared by every part of nitrodiag: base64 (RFC 4648, standard alphabet,
 * padded), hex, and SHA-256/SHA-384 over OpenSSL EVP. Used by the KMS proxy (byte fields), attestation parsing,
 * ssm-pack (base64 chunks), and exposed to Lua as `nd.codec`.
 */
#ifndef ND_CODEC_H
#define ND_CODEC_H

#include "nd.h"

/* The largest digest nd_digest produces (bytes); an out buffer of this size fits every supported algorithm. */
#define ND_DIGEST_MAX 64

/* Encodes n bytes as padded base64 without line breaks. On success returns 0, sets *out to a malloc'd NUL-terminated
 * string (the caller frees it) and *outlen (may be NULL) to its length. Fails with -ENOMEM or -EOVERFLOW. */
int nd_b64_encode(const void *in, size_t n, char **out, size_t *outlen, nd_err *err);

/* Strictly decodes padded base64 (RFC 4648 §4): only A–Z a–z 0–9 + / and trailing '=' (at most two), length a
 * multiple of 4, no whitespace, zero pad bits. On success returns 0, sets *out to a malloc'd buffer (NUL-terminated
 * for convenience, not counted) and *outlen (may be NULL) to the decoded length. Fails with -EBADMSG and a message
 * naming the offending offset ("base64: invalid character '#' at offset 7"), or -ENOMEM. */
int nd_b64_decode(const char *in, size_t n, unsigned char **out, size_t *outlen, nd_err *err);

/* Writes the lowercase hex of n bytes into out, which must have room for 2n+1 bytes (NUL-terminated). */
void nd_hex_encode(const void *in, size_t n, char *out);

/* Decodes n hex digits (either case) into out (outsz bytes). Returns the number of bytes written (n/2), or -EBADMSG
 * for an odd length or a non-hex character (the message names its offset), or -ENOBUFS when outsz < n/2. */
int nd_hex_decode(const char *in, size_t n, unsigned char *out, size_t outsz, nd_err *err);

/* Digests n bytes with alg ("sha256" or "sha384") into out, which must have room for ND_DIGEST_MAX bytes (32 for
 * sha256 or 48 for sha384 suffice); sets *outlen (may be NULL) to the digest length. Returns 0, -ENOTSUP for an
 * unknown algorithm, or -EIO when OpenSSL fails. */
int nd_digest(const char *alg, const void *in, size_t n, unsigned char *out, size_t *outlen, nd_err *err);

#endif
