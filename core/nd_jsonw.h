/*
 * nd_jsonw.h — writing one JSON object straight into an nd_buf, byte for byte the text jansson's compact dump
 * (json_dumps with JSON_COMPACT, keys in insertion order) gives for the same object built with json_object_set_new.
 * For the KMS proxy's per-request texts (the answer to the enclave, the KMS body, the two log lines), where building
 * a jansson tree only to print it was a measurable share of the proxy's CPU. Strings that are printable ASCII
 * without quotes or backslashes are copied as they are; any other string is escaped by jansson itself, so the
 * escaping is always jansson's.
 *
 *   nd_buf b = ND_BUF_INIT; bool first = true;
 *   nd_buf_addc(&b, '{');
 *   nd_jw_str(&b, &first, "event", "kms_proxy_request");
 *   nd_jw_int(&b, &first, "attempts", 1);
 *   nd_buf_addc(&b, '}');
 *
 * Every function appends `,"key":value` (no comma for the first member: *first is then cleared). Out of memory is
 * recorded in the buffer (b->oom, see nd_buf.h) and found when the text is taken.
 */
#ifndef ND_JSONW_H
#define ND_JSONW_H

#include "nd_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Appends `,"key":` (key is written as is: callers pass literal names). */
void nd_jw_key(nd_buf *b, bool *first, const char *key);

/* Appends v as a JSON string. Returns false, appending nothing, when v is not UTF-8 (json_string refuses it). */
bool nd_jw_string(nd_buf *b, const char *v);

/* The member key: v. Returns false and appends nothing when v is not UTF-8: the member is left out, as
 * json_object_set_new(o, key, json_string(v)) leaves it out. */
bool nd_jw_str(nd_buf *b, bool *first, const char *key, const char *v);

/* The member key: v, or key: null when v is NULL or "" (jansson: jstr_or_null). Left out when v is not UTF-8. */
void nd_jw_str_or_null(nd_buf *b, bool *first, const char *key, const char *v);

void nd_jw_int(nd_buf *b, bool *first, const char *key, int64_t v);
void nd_jw_bool(nd_buf *b, bool *first, const char *key, bool v);
void nd_jw_null(nd_buf *b, bool *first, const char *key);

/* The member key: v dumped by jansson (compact). Nothing when v is NULL. */
void nd_jw_json(nd_buf *b, bool *first, const char *key, const json_t *v);

#endif
