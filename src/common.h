/* common.h: internal helpers shared by every module of the library.
 * ASSERT is for broken invariants (programmer mistakes) and stays on in release builds.
 * User-caused failures go through df_fail(), which records one message and returns a status;
 * the CLI prints df_last_error(). Library code never calls exit() and never prints. */
#ifndef DF_COMMON_H
#define DF_COMMON_H

#include "diffuse.h"
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ASSERT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "diffuse: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

/* Records a printf-style message for df_last_error() and returns `status`. */
df_status df_fail(df_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 64-byte aligned allocation (for AVX-512 loads); free with df_free. Returns NULL on failure
 * after recording a DF_ERR_NOMEM message naming `what` and the size. */
void *df_alloc(size_t bytes, const char *what);
void *df_calloc(size_t bytes, const char *what);
void df_free(void *p);

/* Library log output goes through the callback set with df_set_log(). */
void df_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic wall clock in seconds. */
double df_time(void);

/* mkdir -p: creates path and its missing parents. */
df_status df_mkdirs(const char *path);

#endif
