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



/* Library log output goes through the callback set with df_set_log(). The error, allocation and
 * time helpers are public: see diffuse.h. */
void df_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));



#endif
