/*
 * ndtest.h — the tiny assertion harness for the C unit tests in tests/unit/. Each test_<module>.c is one ctest
 * executable: main() calls ND_RUN(fn) for each case and returns nd_test_summary(). Output ends with the plain line
 * "N passed, N failed".
 */
#ifndef NDTEST_H
#define NDTEST_H

#include <stdio.h>
#include <string.h>

static int nd_test_failed_checks, nd_test_passed, nd_test_failed;

#define CHECK(cond)                                                                                      \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                   \
            nd_test_failed_checks++;                                                                     \
        }                                                                                                \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                               \
    do {                                                                                                 \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                            \
        if (va_ != vb_) {                                                                                \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, va_, \
                    vb_);                                                                                \
            nd_test_failed_checks++;                                                                     \
        }                                                                                                \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                               \
    do {                                                                                                 \
        const char *sa_ = (a), *sb_ = (b);                                                               \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                                     \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a, #b,  \
                    sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");                                         \
            nd_test_failed_checks++;                                                                     \
        }                                                                                                \
    } while (0)

#define ND_RUN(fn)                                                                                       \
    do {                                                                                                 \
        int before_ = nd_test_failed_checks;                                                             \
        fn();                                                                                            \
        if (nd_test_failed_checks == before_) {                                                          \
            nd_test_passed++;                                                                            \
            printf("ok   %s\n", #fn);                                                                    \
        } else {                                                                                         \
            nd_test_failed++;                                                                            \
            printf("FAIL %s\n", #fn);                                                                    \
        }                                                                                                \
        fflush(stdout);                                                                                  \
    } while (0)

static inline int nd_test_summary(void)
{
    printf("%d passed, %d failed\n", nd_test_passed, nd_test_failed);
    return nd_test_failed ? 1 : 0;
}

#endif
