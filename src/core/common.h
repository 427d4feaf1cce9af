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



/* Library log output goes through the callback set with df_set_log(). */
void df_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- errors, memory, directories
 * Internal to the library and its own programs (CLI, tests, benchmarks): not in diffuse.h. */
/* Records a printf-style message for df_last_error() and returns `status`. */
df_status df_fail(df_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* 64-byte aligned allocation (for AVX-512 loads); free with df_free. Returns NULL on failure
 * after recording a DF_ERR_NOMEM message naming `what` and the size. */
void *df_alloc(size_t bytes, const char *what);
void *df_calloc(size_t bytes, const char *what);

/* Bytes of memory this process can still take without the kernel killing it: MemAvailable of
 * /proc/meminfo, lowered to the headroom under a cgroup v2 memory.max when one is set; the
 * environment variable DIFFUSE_MEMORY_MB, when set, replaces it (for tests and shared machines).
 * 0 when unknown. */
double df_memory_available(void);

/* DF_OK when `bytes` fit in df_memory_available() (or when that is unknown); otherwise
 * DF_ERR_NOMEM with "<what> needs X GiB of memory but only Y GiB is available". Models call it
 * with everything they will hold before allocating any of it, so a batch or model that does not
 * fit is refused up front instead of being killed halfway. */
df_status df_check_memory(double bytes, const char *what);

/* mkdir -p: creates path and its missing parents. */
df_status df_mkdirs(const char *path);

/* ---------------------------------------------------------------- crash-safe files */
/* Crash-safe file writes (write a temporary, fsync, rename over the target).
 * What it is: the one way the library writes files, so that a full disk, a crash or a failed
 * write never leaves a half-written checkpoint or replaces a good file with a broken one.
 * What it is not: a lock. Two processes writing the same path both succeed; the last rename wins. */

/* Opens `<path>.tmp.<pid>` for binary writing and stores its name in tmp_path (tmp_cap bytes).
 * Returns NULL after df_fail(DF_ERR_IO, "cannot write <path>: <reason>") on failure.
 * The caller writes into the FILE and then calls exactly one of df_atomic_commit or
 * df_atomic_abort. Nothing at `path` changes until the commit renames the temporary. */
FILE *df_atomic_open(const char *path, char *tmp_path, size_t tmp_cap);

/* Finishes a write: checks the stream's error flag, flushes, fsyncs and closes the temporary,
 * renames it over `path` and fsyncs the directory. Always consumes `f`. On any failure the
 * temporary is removed, `path` is left as it was, and DF_ERR_IO names the path and the reason
 * (e.g. "No space left on device"). */
df_status df_atomic_commit(FILE *f, const char *tmp_path, const char *path);

/* Gives up a write: closes `f` (may be NULL) and removes the temporary. Records no error, so
 * the caller's own df_fail message stays the one the user sees. */
void df_atomic_abort(FILE *f, const char *tmp_path);




#endif
