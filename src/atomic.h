/* atomic.h: crash-safe file writes (write a temporary, fsync, rename over the target).
 * What it is: the one way the library writes files, so that a full disk, a crash or a failed
 * write never leaves a half-written checkpoint or replaces a good file with a broken one.
 * What it is not: a lock. Two processes writing the same path both succeed; the last rename wins. */
#ifndef DF_ATOMIC_H
#define DF_ATOMIC_H

#include "diffuse.h"
#include <stddef.h>
#include <stdio.h>

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
