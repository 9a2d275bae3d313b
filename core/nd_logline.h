/*
 * nd_logline.h — the one definition of the KMS proxy's log line: one flat JSON object per line, written by
 * nitrodiag-kms-proxy (proxy/) and read by the kms-logs scanner (core/kmslog.c). The names below are the format;
 * docs/kms-proxy.md ("Logs") describes it for people. A string literal each, so readers can compare with sizeof.
 *
 *   {"ts":"2026-01-27T10:00:00.123Z","event":"kms_proxy_request","request_id":"…","trace_id":"…","op":"Decrypt",…}
 *   {"ts":…,"event":"kms_proxy_response","request_id":"…","ok":false,"error_code":"upstream_throttled",
 *    "kms_request_id":"…","attempts":2,"duration_ms":41,"metrics":{"kms_requests_total":…,…}}
 */
#ifndef ND_LOGLINE_H
#define ND_LOGLINE_H

/* event names: every proxy event starts with ND_LOG_EVENT_PREFIX */
#define ND_LOG_EVENT_PREFIX "kms_proxy_"
#define ND_LOG_EVENT_REQUEST "kms_proxy_request"
#define ND_LOG_EVENT_RESPONSE "kms_proxy_response"
#define ND_LOG_EVENT_RELOAD "kms_proxy_reload"

/* keys */
#define ND_LOG_TS "ts"                      /* RFC 3339 UTC with milliseconds */
#define ND_LOG_EVENT "event"
#define ND_LOG_MESSAGE "message"
#define ND_LOG_REQUEST_ID "request_id"
#define ND_LOG_TRACE_ID "trace_id"
#define ND_LOG_OP "op"
#define ND_LOG_OK "ok"
#define ND_LOG_ERROR_CODE "error_code"      /* snake_case, the same as in the response */
#define ND_LOG_KMS_REQUEST_ID "kms_request_id"
#define ND_LOG_ATTEMPTS "attempts"
#define ND_LOG_DURATION_MS "duration_ms"
#define ND_LOG_METRICS "metrics"            /* counter snapshot: name -> integer */
#define ND_LOG_ATTESTATION_PCR0 "attestation_pcr0"           /* a denied Recipient request: its image's PCR0 (hex) */
#define ND_LOG_ATTESTATION_MODULE_ID "attestation_module_id" /* … and the NSM module id */

#endif
