/*
 * kmspolicy.c — rate limit, retry budget, backoff and circuit breaker for the KMS proxy (see nd_kmspolicy.h).
 * Everything takes the time as an argument, so the proxy drives these with uv_now() and the tests with a fake clock.
 */
#include "nd_kmspolicy.h"

#include <string.h>

void nd_tbucket_init(nd_tbucket *b, double rate, double burst, uint64_t now_ms)
{
    b->rate = rate;
    b->burst = burst < 1 ? 1 : burst;
    b->tokens = b->burst;
    b->last_ms = now_ms;
}

void nd_tbucket_configure(nd_tbucket *b, double rate, double burst, uint64_t now_ms)
{
    if (now_ms > b->last_ms && b->rate > 0) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        b->last_ms = now_ms;
    }
    b->rate = rate;
    b->burst = burst < 1 ? 1 : burst;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
}

bool nd_tbucket_take(nd_tbucket *b, uint64_t now_ms)
{
    if (b->rate <= 0)
        return true;
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * b->rate / 1000.0;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ms = now_ms;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return true;
    }
    return false;
}

void nd_retry_budget_init(nd_retry_budget *q, int capacity, int retry_cost, int timeout_cost, int refund)
{
    q->tokens = capacity;
    nd_retry_budget_configure(q, capacity, retry_cost, timeout_cost, refund);
}

void nd_retry_budget_configure(nd_retry_budget *q, int capacity, int retry_cost, int timeout_cost, int refund)
{
    q->capacity = capacity;
    q->retry_cost = retry_cost;
    q->timeout_cost = timeout_cost;
    q->refund = refund;
    if (q->tokens > capacity)
        q->tokens = capacity;
}

int nd_retry_budget_take(nd_retry_budget *q, bool after_timeout)
{
    int cost = after_timeout ? q->timeout_cost : q->retry_cost;
    if (cost <= 0)
        return 1; /* a free retry still reports "paid" */
    if (q->tokens < cost)
        return 0;
    q->tokens -= cost;
    return cost;
}

void nd_retry_budget_success(nd_retry_budget *q, int spent)
{
    q->tokens += spent > 0 ? spent : q->refund;
    if (q->tokens > q->capacity)
        q->tokens = q->capacity;
}

uint64_t nd_backoff_ms(int n, uint64_t base_ms, uint64_t cap_ms, double r)
{
    if (n < 1)
        n = 1;
    uint64_t ceil = base_ms;
    for (int i = 1; i < n && ceil < cap_ms; i++)
        ceil *= 2;
    if (ceil > cap_ms)
        ceil = cap_ms;
    if (r < 0)
        r = 0;
    if (r >= 1)
        r = 0.999999;
    return (uint64_t)(r * (double)ceil);
}

void nd_breaker_init(nd_breaker *b, uint64_t window_ms, int min_requests, double error_ratio, uint64_t open_ms)
{
    memset(b, 0, sizeof *b);
    nd_breaker_configure(b, window_ms, min_requests, error_ratio, open_ms);
}

void nd_breaker_configure(nd_breaker *b, uint64_t window_ms, int min_requests, double error_ratio,
                          uint64_t open_ms)
{
    if (window_ms < 1000)
        window_ms = 1000;
    if (window_ms > ND_BREAKER_BUCKETS * 1000ull)
        window_ms = ND_BREAKER_BUCKETS * 1000ull;
    b->window_ms = window_ms;
    b->min_requests = min_requests < 1 ? 1 : min_requests;
    b->error_ratio = error_ratio;
    b->open_ms = open_ms;
}

nd_breaker_state nd_breaker_state_at(nd_breaker *b, uint64_t now_ms)
{
    if (b->state == ND_BREAKER_OPEN && now_ms >= b->opened_at + b->open_ms) {
        b->state = ND_BREAKER_HALF_OPEN;
        b->probe_out = false;
    }
    return b->state;
}

const char *nd_breaker_state_name(nd_breaker_state s)
{
    switch (s) {
    case ND_BREAKER_OPEN: return "open";
    case ND_BREAKER_HALF_OPEN: return "half_open";
    default: return "closed";
    }
}

bool nd_breaker_allow(nd_breaker *b, uint64_t now_ms)
{
    switch (nd_breaker_state_at(b, now_ms)) {
    case ND_BREAKER_CLOSED:
        return true;
    case ND_BREAKER_OPEN:
        return false;
    case ND_BREAKER_HALF_OPEN:
        if (b->probe_out)
            return false;
        b->probe_out = true;
        return true;
    }
    return true;
}

static void open_now(nd_breaker *b, uint64_t now_ms)
{
    b->state = ND_BREAKER_OPEN;
    b->opened_at = now_ms;
    b->probe_out = false;
    b->opens++;
}

void nd_breaker_record(nd_breaker *b, uint64_t now_ms, bool error)
{
    nd_breaker_state st = nd_breaker_state_at(b, now_ms);
    if (st == ND_BREAKER_HALF_OPEN) {
        if (!b->probe_out)
            return; /* a straggler from before the breaker opened: the probe decides */
        if (error) {
            open_now(b, now_ms);
        } else {
            b->state = ND_BREAKER_CLOSED;
            b->probe_out = false;
            memset(b->buckets, 0, sizeof b->buckets);
        }
        return;
    }
    if (st == ND_BREAKER_OPEN)
        return;
    uint64_t sec = now_ms / 1000;
    unsigned i = (unsigned)(sec % ND_BREAKER_BUCKETS);
    if (b->buckets[i].sec != sec) {
        b->buckets[i].sec = sec;
        b->buckets[i].total = b->buckets[i].errors = 0;
    }
    b->buckets[i].total++;
    if (error)
        b->buckets[i].errors++;
    if (!error)
        return;
    uint64_t nsec = b->window_ms / 1000;
    uint64_t total = 0, errors = 0;
    for (unsigned k = 0; k < ND_BREAKER_BUCKETS; k++) {
        if (b->buckets[k].sec + nsec > sec && b->buckets[k].sec <= sec && (b->buckets[k].total)) {
            total += b->buckets[k].total;
            errors += b->buckets[k].errors;
        }
    }
    if (total >= (uint64_t)b->min_requests && (double)errors >= b->error_ratio * (double)total)
        open_now(b, now_ms);
}
