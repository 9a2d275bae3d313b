/*
 * nd_kmspolicy.h — the traffic policy pieces of the KMS proxy, as small pure state machines driven by an explicit
 * clock (milliseconds), so they are testable without a loop: a token bucket (rate limit), the AWS SDK-style retry
 * quota (retry budget), full-jitter exponential backoff, and a circuit breaker over a sliding window.
 */
#ifndef ND_KMSPOLICY_H
#define ND_KMSPOLICY_H

#include "nd.h"

/* Token bucket: rate tokens per second, at most burst tokens. */
typedef struct nd_tbucket {
    double rate, burst, tokens;
    uint64_t last_ms;
} nd_tbucket;

/* Starts full. rate <= 0 disables limiting (every take succeeds). */
void nd_tbucket_init(nd_tbucket *b, double rate, double burst, uint64_t now_ms);
/* Changes rate and burst, keeping the current fill (capped at the new burst). */
void nd_tbucket_configure(nd_tbucket *b, double rate, double burst, uint64_t now_ms);
/* Takes one token: true when there was one, false when the caller must be refused. */
bool nd_tbucket_take(nd_tbucket *b, uint64_t now_ms);

/* Retry quota as in the AWS SDK "standard" mode: a retry costs retry_cost tokens (timeout_cost after a timeout);
 * a request that succeeds gives back refund (first attempt) or what its retries cost. */
typedef struct nd_retry_budget {
    int capacity, tokens, retry_cost, timeout_cost, refund;
} nd_retry_budget;

void nd_retry_budget_init(nd_retry_budget *q, int capacity, int retry_cost, int timeout_cost, int refund);
/* Changes the parameters; tokens are capped at the new capacity. */
void nd_retry_budget_configure(nd_retry_budget *q, int capacity, int retry_cost, int timeout_cost, int refund);
/* Tries to pay for one retry (after_timeout selects the cost). Returns the cost paid (> 0), or 0 when the budget is
 * exhausted and the retry must not happen. */
int nd_retry_budget_take(nd_retry_budget *q, bool after_timeout);
/* Records a successful request: spent is what its retries cost (0 when it succeeded at once). */
void nd_retry_budget_success(nd_retry_budget *q, int spent);

/* Full-jitter backoff before retry number n (n >= 1 is the first retry): r * min(base_ms * 2^(n-1), cap_ms), where
 * r in [0,1) is supplied by the caller. Returns milliseconds. */
uint64_t nd_backoff_ms(int n, uint64_t base_ms, uint64_t cap_ms, double r);

/* Circuit breaker. Closed: outcomes are counted in per-second buckets over window_ms; when at least min_requests
 * outcomes are in the window and the error share reaches error_ratio, it opens for open_ms. Then it is half-open:
 * one probe is let through; its success closes the breaker (window cleared), its failure opens it again. */
#define ND_BREAKER_BUCKETS 120
typedef enum { ND_BREAKER_CLOSED = 0, ND_BREAKER_OPEN = 1, ND_BREAKER_HALF_OPEN = 2 } nd_breaker_state;

typedef struct nd_breaker {
    uint64_t window_ms, open_ms;
    int min_requests;
    double error_ratio;
    nd_breaker_state state;
    uint64_t opened_at;
    bool probe_out;
    uint64_t opens;                       /* how many times it opened */
    struct { uint64_t sec; uint32_t total, errors; } buckets[ND_BREAKER_BUCKETS];
} nd_breaker;

void nd_breaker_init(nd_breaker *b, uint64_t window_ms, int min_requests, double error_ratio, uint64_t open_ms);
/* Changes parameters (window capped at ND_BREAKER_BUCKETS seconds); the state is kept. */
void nd_breaker_configure(nd_breaker *b, uint64_t window_ms, int min_requests, double error_ratio,
                          uint64_t open_ms);
/* May a request go upstream now? false while open (or while the half-open probe is out). When it returns true in
 * the half-open state, the caller's request is the probe and must be reported with nd_breaker_record. */
bool nd_breaker_allow(nd_breaker *b, uint64_t now_ms);
/* Records the outcome of a request that was allowed (error: timeout, throttled or unavailable). */
void nd_breaker_record(nd_breaker *b, uint64_t now_ms, bool error);
/* The state at now_ms (open turns into half-open once open_ms has passed). */
nd_breaker_state nd_breaker_state_at(nd_breaker *b, uint64_t now_ms);
/* "closed", "open", "half_open". */
const char *nd_breaker_state_name(nd_breaker_state s);

#endif
