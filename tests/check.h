/* check.h: tiny assertion helpers for the test programs. A failed check prints what it compared
 * and marks the test failed; main() returns check_exit_code(). */
#ifndef DF_CHECK_H
#define DF_CHECK_H
#include <math.h>
#include <stdio.h>

static int check_failures = 0;
static int check_count = 0;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        check_count++;                                                      \
        if (!(cond)) {                                                      \
            check_failures++;                                               \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            printf(__VA_ARGS__);                                            \
            printf("\n");                                                   \
        }                                                                   \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                                          \
    do {                                                                                      \
        double ca_ = (a), cb_ = (b);                                                          \
        CHECK(fabs(ca_ - cb_) <= (tol) * fmax(1.0, fabs(cb_)), "%s: got %.12g want %.12g (tol %g)", \
              what, ca_, cb_, (double)(tol));                                                  \
    } while (0)

static inline int check_exit_code(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}
#endif
