/* check.h: tiny assertion helpers for the test programs. A failed check prints what it compared
 * (file, line, the condition and an optional printf-style message) and marks the test failed;
 * main() returns check_exit_code(). Also the status-and-message check used by the I/O tests and a
 * private temporary directory. Not a test framework: no registration, no fixtures, no forking. */
#ifndef DF_CHECK_H
#define DF_CHECK_H
#include "diffuse.h"
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int check_failures = 0;
static int check_count = 0;

/* CHECK(cond) or CHECK(cond, "format", args...): the message, when given, must start with a string
 * literal (it is pasted after ": "). */
#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        check_count++;                                                      \
        if (!(cond)) {                                                      \
            check_failures++;                                               \
            printf("FAIL %s:%d: %s", __FILE__, __LINE__, #cond);            \
            printf(": " __VA_ARGS__);                                       \
            printf("\n");                                                   \
            fflush(stdout); /* in order with the tests' own stderr notes */ \
        }                                                                   \
    } while (0)

/* |a - b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                                          \
    do {                                                                                      \
        double ca_ = (a), cb_ = (b);                                                          \
        CHECK(fabs(ca_ - cb_) <= (tol) * fmax(1.0, fabs(cb_)), "%s: got %.12g want %.12g (tol %g)", \
              what, ca_, cb_, (double)(tol));                                                  \
    } while (0)

/* A status and its message: `got` must equal `want` and df_last_error() must contain each non-NULL
 * fragment (typically the file name and the problem). */
static inline void check_status_(df_status got, df_status want, const char *frag1, const char *frag2,
                                 const char *file, int line) {
    const char *msg = df_last_error();
    check_count++;
    if (got != want || (frag1 && !strstr(msg, frag1)) || (frag2 && !strstr(msg, frag2))) {
        check_failures++;
        printf("FAIL %s:%d: want status %d (%s) with \"%s\" and \"%s\", got %d (%s): %s\n", file, line, (int)want,
               df_status_name(want), frag1 ? frag1 : "", frag2 ? frag2 : "", (int)got, df_status_name(got), msg);
        fflush(stdout);
    }
}
#define EXPECT_STATUS(got, want, frag1, frag2) check_status_((got), (want), (frag1), (frag2), __FILE__, __LINE__)

/* Writes n bytes to path; 1 on success, 0 on any error. */
static inline int check_write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(b, 1, n, f);
    return fclose(f) == 0 && w == n;
}

/* Reads up to cap bytes of path into b; the count read (0 when the file cannot be opened). */
static inline size_t check_read_bytes(const char *path, void *b, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, cap, f);
    fclose(f);
    return n;
}

/* Removes a file or a directory tree (no symlinks followed). */
static inline void check_remove_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char child[4096];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) < (int)sizeof child) check_remove_tree(child);
        }
        closedir(d);
    }
    rmdir(path);
}

/* A fresh private directory $TMPDIR/df_<name>_XXXXXX (TMPDIR defaults to /tmp) for the test's files;
 * the path stays valid until the program ends. Exits the test with status 1 when it cannot be made. */
static inline const char *check_tmpdir(const char *name) {
    static char dir[512];
    const char *base = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (snprintf(dir, sizeof dir, "%s/df_%s_XXXXXX", base, name) >= (int)sizeof dir || !mkdtemp(dir)) {
        printf("FAIL: cannot create a temporary directory under %s\n", base);
        exit(1);
    }
    return dir;
}

/* Removes a check_tmpdir() directory and everything in it. With expect_empty the test must have removed
 * its own files: anything left over is a failed check (the directory is removed all the same). */
static inline void check_tmpdir_remove(const char *dir, int expect_empty) {
    if (expect_empty) CHECK(rmdir(dir) == 0, "leftover files in %s", dir);
    check_remove_tree(dir);
}

/* The OpenMP thread count for what follows (no-op without OpenMP). */
static inline void check_set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

static inline int check_exit_code(const char *name) {
    printf("%s: %d checks, %d failed\n", name, check_count, check_failures);
    if (check_count == 0) printf("FAIL %s: no check ran\n", name);
    return check_failures || check_count == 0 ? 1 : 0;
}

/* DIFFUSE_TEST_QUICK=1: the programs that support it run a bounded subset of their cases (the
 * emulated runs of .ci/run, where qemu runs vector code 50-100x slower than the CPU). */
static inline int check_quick(void) {
    const char *q = getenv("DIFFUSE_TEST_QUICK");
    return q && q[0] == '1';
}

/* DIFFUSE_TEST_ONLY=TEXT: the programs that support it run only the cases whose label contains
 * TEXT (the emulated aarch64 run of the direct convolutions, where a whole program takes too long). */
static inline int check_selected(const char *label) {
    const char *only = getenv("DIFFUSE_TEST_ONLY");
    return !only || !*only || strstr(label, only) != NULL;
}

/* Every test program runs at the CPU level that DIFFUSE_ISA names (ctest registers the per-level
 * runs that way, test_ops[avx2] and so on): a level this CPU lacks skips the program (exit 77,
 * ctest's SKIP_RETURN_CODE, shown as skipped), an unknown name fails it. Before main. */
__attribute__((constructor)) static void check_cpu_level(void) {
    const df_status st = df_cpu_init();
    if (st == DF_ERR_UNSUPPORTED) {
        printf("skipped: %s\n", df_last_error());
        exit(77);
    }
    if (st != DF_OK) {
        printf("FAIL: %s\n", df_last_error());
        exit(1);
    }
    printf("cpu level: %s\n", df_isa_name(df_cpu_isa()));
    fflush(stdout);
}
#endif
