/*
 * test_kmspolicy.c — the proxy's policy state machines (core/kmspolicy.c) on a fake clock: token bucket, retry
 * quota with the AWS SDK standard-mode numbers (500 tokens, 5 per retry, 10 per timeout retry, 1 refunded), full
 * jitter bounds, and the circuit breaker's open / half-open / close cycle with the reference's numbers
 * (10 s window, >= 50 requests, >= 20 % errors, open 5 s).
 */
#include "nd_kmspolicy.h"
#include "ndtest.h"

static void test_tbucket(void)
{
    nd_tbucket b;
    nd_tbucket_init(&b, 200, 400, 1000);
    int ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += nd_tbucket_take(&b, 1000);
    CHECK_EQ_INT(ok, 400); /* the burst, no more, at one instant */
    ok = 0;
    for (int i = 0; i < 1000; i++)
        ok += nd_tbucket_take(&b, 1500); /* 0.5 s later: 100 new tokens */
    CHECK_EQ_INT(ok, 100);
    nd_tbucket_init(&b, 0, 1, 0); /* rate 0: unlimited */
    for (int i = 0; i < 10; i++)
        CHECK(nd_tbucket_take(&b, 0));
}

static void test_retry_budget(void)
{
    nd_retry_budget q;
    nd_retry_budget_init(&q, 500, 5, 10, 1);
    int retries = 0;
    while (nd_retry_budget_take(&q, false))
        retries++;
    CHECK_EQ_INT(retries, 100); /* 500 / 5 */
    nd_retry_budget_success(&q, 0);
    CHECK_EQ_INT(q.tokens, 1);
    nd_retry_budget_success(&q, 9);
    CHECK_EQ_INT(q.tokens, 10);
    CHECK_EQ_INT(nd_retry_budget_take(&q, true), 10);
    CHECK_EQ_INT(nd_retry_budget_take(&q, true), 0);
    for (int i = 0; i < 1000; i++)
        nd_retry_budget_success(&q, 0);
    CHECK_EQ_INT(q.tokens, 500); /* capped */
}

static void test_backoff(void)
{
    CHECK_EQ_INT(nd_backoff_ms(1, 20, 200, 0.0), 0);
    CHECK_EQ_INT(nd_backoff_ms(1, 20, 200, 0.5), 10);
    CHECK_EQ_INT(nd_backoff_ms(2, 20, 200, 0.5), 20);
    CHECK_EQ_INT(nd_backoff_ms(3, 20, 200, 0.5), 40);
    CHECK_EQ_INT(nd_backoff_ms(10, 20, 200, 0.5), 100); /* capped at 200 */
    CHECK(nd_backoff_ms(10, 20, 200, 0.9999) < 200);
}

static void test_breaker(void)
{
    nd_breaker b;
    nd_breaker_init(&b, 10000, 50, 0.2, 5000);
    uint64_t t = 100000;
    /* 49 outcomes with many errors: below the minimum, stays closed. */
    for (int i = 0; i < 49; i++) {
        CHECK(nd_breaker_allow(&b, t));
        nd_breaker_record(&b, t, i % 2 == 0);
    }
    CHECK_EQ_INT(nd_breaker_state_at(&b, t), ND_BREAKER_CLOSED);
    /* The 50th (an error) reaches the minimum with 26/50 errors: opens. */
    nd_breaker_record(&b, t, true);
    CHECK_EQ_INT(nd_breaker_state_at(&b, t), ND_BREAKER_OPEN);
    CHECK(!nd_breaker_allow(&b, t + 4999));
    /* After 5 s: half-open, exactly one probe. */
    CHECK(nd_breaker_allow(&b, t + 5000));
    CHECK_EQ_INT(b.state, ND_BREAKER_HALF_OPEN);
    CHECK(!nd_breaker_allow(&b, t + 5001));
    nd_breaker_record(&b, t + 5002, true); /* probe failed: open again */
    CHECK_EQ_INT(nd_breaker_state_at(&b, t + 5002), ND_BREAKER_OPEN);
    CHECK(nd_breaker_allow(&b, t + 10002));
    nd_breaker_record(&b, t + 10003, false); /* probe succeeded: closed, window cleared */
    CHECK_EQ_INT(nd_breaker_state_at(&b, t + 10003), ND_BREAKER_CLOSED);
    CHECK_EQ_INT(b.opens, 2);

    /* Errors below 20 %: 60 outcomes with 11 errors stays closed; old outcomes leave the window. */
    nd_breaker_init(&b, 10000, 50, 0.2, 5000);
    for (int i = 0; i < 60; i++)
        nd_breaker_record(&b, t, i < 11);
    CHECK_EQ_INT(nd_breaker_state_at(&b, t), ND_BREAKER_CLOSED);
    for (int i = 0; i < 10; i++)
        nd_breaker_record(&b, t + 11000, true); /* 11 s later the first 60 are gone: 10 < 50 */
    CHECK_EQ_INT(nd_breaker_state_at(&b, t + 11000), ND_BREAKER_CLOSED);
}

int main(void)
{
    ND_RUN(test_tbucket);
    ND_RUN(test_retry_budget);
    ND_RUN(test_backoff);
    ND_RUN(test_breaker);
    return nd_test_summary();
}
