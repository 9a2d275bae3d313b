/*
 * nd_frame.h — the enclave <-> host KMS proxy wire protocol, shared by nitrodiag-kms-proxy and the enclave client
 * (vsock-pingpong kms mode).
 *
 * Framing on a stream (vsock, unix, tcp): [u32 BE len][u8 type][u32 BE seq][payload], where len counts
 * type + seq + payload (so len >= 5). Types: Hello 0x01, Data 0x02, Error 0x03, Heartbeat 0x04, Shutdown 0x05,
 * KmsProxy 0x06, Storage 0x07, Audit 0x08. A KMS request travels in a KmsProxy frame; its answer comes back in a
 * KmsProxy frame with the same seq. A frame the proxy cannot understand is answered with an Error frame whose
 * payload is an ordinary response carrying the error code `invalid_request`.
 *
 * Request JSON (docs/kms-proxy.md "Wire protocol"):
 *   {"request_id":"<uuid>","trace_id":"…"?,"request":{"op":"GenerateDataKey"|"Decrypt"|"GenerateRandom"|"Encrypt",
 *    "payload":{…}}}
 *   Decrypt payload: ciphertext_blob, key_id?, encryption_context?, grant_tokens?, encryption_algorithm?, recipient?
 *   GenerateDataKey: key_id, key_spec | number_of_bytes, encryption_context?, grant_tokens?, recipient?
 *   GenerateRandom: number_of_bytes, recipient?      Encrypt: key_id, plaintext, encryption_context?, grant_tokens?
 *   Byte fields (ciphertext_blob, plaintext, recipient) are accepted as base64 strings or as arrays of numbers
 *   0..255. `recipient` is the attestation document (bytes), or an object
 *   {"attestation_document": bytes, "key_encryption_algorithm": "RSAES_OAEP_SHA_256"}.
 * Response JSON:
 *   {"request_id","trace_id"?,"kms_request_id"?,"response":{"GenerateDataKey":{…}|"Decrypt":{…}|
 *    "GenerateRandom":{…}|"Encrypt":{…}|"Error":{"code","message"}}}
 *   with key_id, ciphertext_blob, plaintext, ciphertext_for_recipient, encryption_algorithm as present. Byte fields
 *   are written as arrays of numbers (what the reference's clients expect); the parser accepts both forms.
 */
#ifndef ND_FRAME_H
#define ND_FRAME_H

#include "nd.h"

#include <jansson.h>

enum nd_frame_type {
    ND_FRAME_HELLO = 0x01,
    ND_FRAME_DATA = 0x02,
    ND_FRAME_ERROR = 0x03,
    ND_FRAME_HEARTBEAT = 0x04,
    ND_FRAME_SHUTDOWN = 0x05,
    ND_FRAME_KMS_PROXY = 0x06,
    ND_FRAME_STORAGE = 0x07,
    ND_FRAME_AUDIT = 0x08,
};

#define ND_FRAME_HEADER_LEN 9u                 /* len(4) + type(1) + seq(4) */
#define ND_FRAME_DEFAULT_MAX (256u * 1024u)    /* default maximum payload size */

/* The name of a frame type ("KmsProxy"), or "Unknown". Never NULL. */
const char *nd_frame_type_name(unsigned type);

/* Writes the 9-byte header for a frame with payload_len bytes of payload into hdr. Returns 0, or -EMSGSIZE when
 * payload_len does not fit the 32-bit length field. */
int nd_frame_header(unsigned char hdr[ND_FRAME_HEADER_LEN], unsigned type, uint32_t seq, size_t payload_len);

/* Builds a whole frame (header + payload) in a malloc'd buffer *out of *outlen bytes. Returns 0, -EMSGSIZE or
 * -ENOMEM (with err filled). */
int nd_frame_build(unsigned type, uint32_t seq, const void *payload, size_t payload_len, unsigned char **out,
                   size_t *outlen, nd_err *err);

/* One decoded frame. payload points into the decoder's buffer and stays valid until the next nd_frame_next or
 * nd_frame_decoder_free call. */
typedef struct nd_frame {
    unsigned type;
    uint32_t seq;
    const unsigned char *payload;
    size_t len;
} nd_frame;

/* Incremental decoder: feed it bytes as they arrive, take frames out as they complete. Once it reports an error
 * the stream cannot be resynchronised (the length field is untrusted), and every later call fails the same way. */
typedef struct nd_frame_decoder {
    size_t max_payload;     /* frames whose payload is larger are refused (-EMSGSIZE) */
    unsigned char *buf;
    size_t len, cap, off;   /* buffered bytes are buf[off, len) */
    int error;              /* sticky negative code after a framing error */
} nd_frame_decoder;

/* Initialises d; max_payload 0 means ND_FRAME_DEFAULT_MAX. Returns 0. */
int nd_frame_decoder_init(nd_frame_decoder *d, size_t max_payload);

/* Releases d's buffer (wiping it: frames may carry key material). */
void nd_frame_decoder_free(nd_frame_decoder *d);

/* Appends n bytes. Returns 0, the sticky error, or -ENOMEM. */
int nd_frame_feed(nd_frame_decoder *d, const void *data, size_t n, nd_err *err);

/* Takes the next complete frame. Returns 1 and fills f when one is ready, 0 when more bytes are needed, or a
 * negative code: -EBADMSG (length field below 5), -EMSGSIZE (payload above max_payload); err says which and
 * where. */
int nd_frame_next(nd_frame_decoder *d, nd_frame *f, nd_err *err);

/* Bytes buffered but not yet returned as frames (a partial frame). */
size_t nd_frame_pending(const nd_frame_decoder *d);

/* ---- request / response JSON ---- */

typedef enum nd_kms_op {
    ND_KMS_OP_UNKNOWN = 0,
    ND_KMS_OP_GENERATE_DATA_KEY,
    ND_KMS_OP_DECRYPT,
    ND_KMS_OP_GENERATE_RANDOM,
    ND_KMS_OP_ENCRYPT,
} nd_kms_op;

/* "GenerateDataKey", …; "Unknown" for ND_KMS_OP_UNKNOWN. */
const char *nd_kms_op_name(nd_kms_op op);
/* The op for an exact name, or ND_KMS_OP_UNKNOWN. */
nd_kms_op nd_kms_op_from_name(const char *name);

typedef struct nd_bytes {
    unsigned char *data;  /* malloc'd, NULL when absent */
    size_t len;
} nd_bytes;

/* Size bounds applied by the parser (values from the KMS API model where it has one). */
#define ND_KMS_ID_MAX 128              /* request_id, trace_id */
#define ND_KMS_KEY_ID_MAX 2048         /* KeyId */
#define ND_KMS_CIPHERTEXT_MAX 6144     /* CiphertextBlob */
#define ND_KMS_PLAINTEXT_MAX 4096      /* Encrypt Plaintext */
#define ND_KMS_RECIPIENT_MAX 32768     /* attestation document */
#define ND_KMS_CONTEXT_MAX 64          /* encryption context pairs */
#define ND_KMS_CONTEXT_VALUE_MAX 1024  /* each key or value */
#define ND_KMS_GRANT_TOKENS_MAX 10
#define ND_KMS_GRANT_TOKEN_LEN_MAX 8192

typedef struct nd_kms_request {
    char request_id[ND_KMS_ID_MAX + 1];
    char trace_id[ND_KMS_ID_MAX + 1];       /* "" when absent */
    nd_kms_op op;
    char key_id[ND_KMS_KEY_ID_MAX + 1];     /* "" when absent */
    char key_spec[16];                      /* "" or AES_128 / AES_256 */
    int number_of_bytes;                    /* 0 when absent, else 1..1024 */
    char encryption_algorithm[32];          /* "" when absent */
    char key_encryption_algorithm[32];      /* recipient algorithm; "RSAES_OAEP_SHA_256" by default */
    nd_bytes ciphertext_blob;
    nd_bytes plaintext;                     /* Encrypt only */
    nd_bytes recipient;                     /* attestation document; len 0 = no recipient */
    json_t *encryption_context;             /* object of strings, or NULL */
    json_t *grant_tokens;                   /* array of strings, or NULL */
} nd_kms_request;

/* Parses a request payload (not NUL-terminated) into r (which the caller frees with nd_kms_request_free, also on
 * failure). Returns 0, or -EINVAL with err naming the problem (bad JSON, missing or oversized field, wrong type,
 * unknown op). r->request_id is filled as soon as it is readable, so an error reply can carry it. */
int nd_kms_request_parse(const void *json, size_t n, nd_kms_request *r, nd_err *err);

/* nd_kms_request_parse is these two: the fast path, which reads the byte fields (attestation document, ciphertext,
 * plaintext) straight from the text and lets jansson parse only the rest, and when it declines, the slow path, which
 * parses everything into a jansson tree. The fast path returns 0 (r filled, exactly as the slow path would fill it)
 * or -EAGAIN (r zeroed) for any text it does not take: no byte field, a byte field in another form (escapes,
 * numbers written otherwise than 0..255), or any error at all, so that errors and their messages are always the
 * slow path's. The slow path returns what nd_kms_request_parse documents. Tests and fuzz_kms_request check that
 * whatever the fast path takes, the slow path parses the same way. */
int nd_kms_request_parse_fast(const void *json, size_t n, nd_kms_request *r);
int nd_kms_request_parse_slow(const void *json, size_t n, nd_kms_request *r, nd_err *err);

/* Builds the request JSON text (malloc'd, NUL-terminated) for r; byte fields as base64 strings when b64 is true,
 * arrays of numbers otherwise. Returns NULL on allocation failure. */
char *nd_kms_request_encode(const nd_kms_request *r, bool b64, size_t *len);

/* The KMS JSON 1.1 request body for r (what the proxy sends upstream): KeyId, KeySpec, NumberOfBytes,
 * EncryptionAlgorithm, EncryptionContext, GrantTokens, CiphertextBlob, Plaintext (base64) and Recipient
 * {KeyEncryptionAlgorithm, AttestationDocument} as present, compact, in that order. Returns the malloc'd,
 * NUL-terminated text (the caller wipes and frees it: it may hold a plaintext) with its length in *len, or NULL
 * when memory ran out. */
char *nd_kms_upstream_body(const nd_kms_request *r, size_t *len);

/* Frees what r holds, wiping byte fields, and zeroes r. */
void nd_kms_request_free(nd_kms_request *r);

typedef struct nd_kms_response {
    char request_id[ND_KMS_ID_MAX + 1];
    char trace_id[ND_KMS_ID_MAX + 1];
    char kms_request_id[ND_KMS_ID_MAX + 1];
    nd_kms_op op;                           /* which success body; ignored when is_error */
    bool is_error;
    char error_code[40];                    /* snake_case code when is_error */
    char error_message[256];
    char key_id[ND_KMS_KEY_ID_MAX + 1];
    char encryption_algorithm[32];
    nd_bytes ciphertext_blob;
    nd_bytes plaintext;
    nd_bytes ciphertext_for_recipient;
} nd_kms_response;

/* Encodes a response (malloc'd JSON text, NUL-terminated, one line). Returns NULL on allocation failure. */
char *nd_kms_response_encode(const nd_kms_response *r, size_t *len);

/* Parses a response payload. Returns 0 or -EINVAL (err says why). Free with nd_kms_response_free. */
int nd_kms_response_parse(const void *json, size_t n, nd_kms_response *r, nd_err *err);

/* Frees what r holds, wiping byte fields, and zeroes r. */
void nd_kms_response_free(nd_kms_response *r);

/* Copies src (n bytes) into a fixed-size field dst of dstsz bytes. Returns 0, or -E2BIG when it does not fit. */
int nd_frame_strfield(char *dst, size_t dstsz, const char *src);

#endif
