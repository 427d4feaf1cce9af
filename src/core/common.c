/* common.c: error recording, aligned allocation, logging and timing. */
#include "common.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/stat.h>

static _Thread_local char df_error_buf[1024];

df_status df_fail(df_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(df_error_buf, sizeof df_error_buf, fmt, ap);
    va_end(ap);
    return status;
}

/* vexp.h's clamp (see there for why they live here) */
const float df_vexp_lo = -87.0f, df_vexp_hi = 88.0f;

const char *df_last_error(void) { return df_error_buf[0] ? df_error_buf : "no error recorded"; }

void df_clear_error(void) { df_error_buf[0] = 0; }

const char *df_status_name(df_status s) {
    switch (s) {
    case DF_OK: return "ok";
    case DF_ERR_ARG: return "bad argument";
    case DF_ERR_IO: return "i/o error";
    case DF_ERR_FORMAT: return "bad file format";
    case DF_ERR_SHAPE: return "shape mismatch";
    case DF_ERR_NOMEM: return "out of memory";
    case DF_ERR_NAN: return "non-finite value";
    case DF_ERR_UNSUPPORTED: return "unsupported";
    case DF_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

void *df_alloc(size_t bytes, const char *what) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        df_fail(DF_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what);
        return NULL;
    }
    return p;
}

void *df_calloc(size_t bytes, const char *what) {
    void *p = df_alloc(bytes, what);
    if (p) memset(p, 0, bytes);
    return p;
}

void df_free(void *p) { free(p); }

/* A "key: N kB" line of /proc/meminfo in bytes, or -1. */
static double meminfo_bytes(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    double v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = 1024.0 * strtod(line + n + 1, NULL);
            break;
        }
    fclose(f);
    return v;
}

/* One number from a cgroup file, or -1 ("max", missing or unreadable). */
static double cgroup_number(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char buf[64] = {0};
    double v = -1;
    if (fgets(buf, sizeof buf, f) && buf[0] >= '0' && buf[0] <= '9') v = strtod(buf, NULL);
    fclose(f);
    return v;
}

double df_memory_available(void) {
    const char *env = getenv("DIFFUSE_MEMORY_MB");
    if (env && *env) return strtod(env, NULL) * 1048576.0;
    double avail = meminfo_bytes("MemAvailable");
    double limit = cgroup_number("/sys/fs/cgroup/memory.max"), used = cgroup_number("/sys/fs/cgroup/memory.current");
    if (limit > 0 && used >= 0 && (avail < 0 || limit - used < avail)) avail = limit - used;
    return avail > 0 ? avail : 0;
}

df_status df_check_memory(double bytes, const char *what) {
    double avail = df_memory_available();
    if (avail <= 0 || bytes <= avail) return DF_OK;
    return df_fail(DF_ERR_NOMEM, "%s needs %.2f GiB of memory but only %.2f GiB is available", what,
                   bytes / 1073741824.0, avail / 1073741824.0);
}

static df_log_fn df_log_callback;
static void *df_log_user;

void df_set_log(df_log_fn fn, void *user) {
    df_log_callback = fn;
    df_log_user = user;
}

void df_log(const char *fmt, ...) {
    if (!df_log_callback) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    df_log_callback(buf, df_log_user);
}

double df_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

df_status df_mkdirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return df_fail(DF_ERR_ARG, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return df_fail(DF_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return df_fail(DF_ERR_IO, "%s exists and is not a directory", path);
    return DF_OK;
}
