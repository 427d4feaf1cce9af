/* fuzz_common.h: helpers shared by the libFuzzer harnesses in fuzz/ (not part of the library).
 * The parsers under test read files by path, so each harness writes its input to a private
 * scratch directory (under $FUZZ_TMPDIR, else /dev/shm, else $TMPDIR; made once per process) and calls the real loader on it.
 * What it is not: a test framework. A harness either returns 0 or aborts (a sanitizer report,
 * or FUZZ_CHECK for a broken contract, e.g. a loader that says DF_OK but returns NaN points). */
#ifndef DF_FUZZ_COMMON_H
#define DF_FUZZ_COMMON_H
#define _GNU_SOURCE /* memmem, mkdtemp */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diffuse.h"

/* Where the harness reports: stderr as it was before libFuzzer's -close_fd_mask closed it (.ci/fuzz
 * closes it because args_parse prints, as a CLI should), so contract failures still reach the log. */
static int fuzz_report_fd = 2;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    int fd = dup(2); /* libFuzzer applies -close_fd_mask after this hook */
    if (fd >= 0) fuzz_report_fd = fd;
    return 0;
}

/* A contract violation found by a harness: print what and where, then abort so libFuzzer saves
 * the input as a crash. */
#define FUZZ_CHECK(cond)                                                                                 \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            dprintf(fuzz_report_fd, "fuzz: contract broken at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                                     \
        }                                                                                                \
    } while (0)

/* With FUZZ_DEBUG=1 in the environment, prints each call's status and message (to see what a
 * seed or a crash input does); returns st unchanged. */
static df_status fuzz_note(const char *call, df_status st) {
    static int debug = -1;
    if (debug < 0) debug = getenv("FUZZ_DEBUG") != NULL;
    if (debug)
        dprintf(fuzz_report_fd, "fuzz: %s -> %s%s%s\n", call, df_status_name(st), st ? ": " : "", st ? df_last_error() : "");
    return st;
}

static char fuzz_dir_path[512];

static int fuzz_remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void fuzz_dir_remove(void) { nftw(fuzz_dir_path, fuzz_remove_one, 16, FTW_DEPTH | FTW_PHYS); }

/* The per-process scratch directory (created on first use, e.g. /dev/shm/diffuse-fuzz-XXXXXX, and
 * removed at a normal exit; a crashed run leaves it for inspection). */
static const char *fuzz_dir(void) {
    char *dir = fuzz_dir_path;
    if (!dir[0]) {
        /* /dev/shm first: creating a file there costs ~25 us against ~1.6 ms on this machine's /tmp,
         * and the harnesses write one to three files per input. */
        const char *tmp = getenv("FUZZ_TMPDIR");
        if (!tmp || !tmp[0]) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(dir, sizeof fuzz_dir_path, "%s/diffuse-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            dprintf(fuzz_report_fd, "fuzz: cannot create %s: %s\n", dir, strerror(errno));
            abort();
        }
        atexit(fuzz_dir_remove);
    }
    return dir;
}

/* dir/name into out (cap bytes). */
static void fuzz_path(char *out, size_t cap, const char *name) {
    int n = snprintf(out, cap, "%s/%s", fuzz_dir(), name);
    if (n < 0 || (size_t)n >= cap) abort();
}

/* Creates (if needed) the subdirectory `name` of the scratch directory; its path into out. */
static void fuzz_subdir(char *out, size_t cap, const char *name) {
    fuzz_path(out, cap, name);
    if (mkdir(out, 0700) != 0) {
        struct stat sb;
        if (stat(out, &sb) != 0 || !S_ISDIR(sb.st_mode)) abort();
    }
}

/* Writes data[0..size) to path, replacing what was there. */
static void fuzz_write(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        dprintf(fuzz_report_fd, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    if (size && fwrite(data, 1, size, f) != size) abort();
    if (fclose(f) != 0) abort();
}

/* Multi-file inputs: the files are separated by this marker (seeds in fuzz/corpus use it too;
 * libFuzzer learns it from the memmem comparisons). */
#define FUZZ_SEP "\n--FUZZ-NEXT-FILE--\n"

/* Splits data into at most n parts at FUZZ_SEP; parts beyond the markers found are empty. */
static void fuzz_split(const uint8_t *data, size_t size, int n, const uint8_t **part, size_t *len) {
    const size_t sep_len = sizeof FUZZ_SEP - 1;
    for (int k = 0; k < n; k++) {
        part[k] = data;
        len[k] = 0;
    }
    for (int k = 0; k < n; k++) {
        const uint8_t *next = k + 1 < n ? memmem(data, size, FUZZ_SEP, sep_len) : NULL;
        part[k] = data;
        len[k] = next ? (size_t)(next - data) : size;
        if (!next) break;
        size -= (size_t)(next - data) + sep_len;
        data = next + sep_len;
    }
}

#endif
