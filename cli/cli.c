/* cli.c: the helpers every command shares (see cli.h). */
#include "cli.h"
#include "dist.h"
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

/* ---------------------------------------------------------------- flags and errors */

int cli_error(const char *cmd, df_status st) {
    /* under mpirun every rank meets the same error (cli_agree makes sure): rank 0 says it once */
    if (df_dist_rank() == 0) fprintf(stderr, "diffuse %s: %s\n", cmd, df_last_error());
    return st == DF_ERR_ARG ? 2 : st == DF_ERR_INTERRUPTED ? 130 : 1;
}

df_status cli_agree(const char *cmd, df_status st) {
    if (df_dist_size() == 1) return st;
    int st0 = (int)st;
    df_dist_bcast(&st0, sizeof st0, 0);
    const int worst = df_dist_max_int(st != DF_OK ? df_dist_rank() + 1 : 0);
    if (!worst) return DF_OK;
    if (st0 != DF_OK)  /* rank 0 failed, and cli_error prints its message */
        return st != DF_OK ? st : df_fail((df_status)st0, "rank 0 failed (its message above)");
    if (st != DF_OK) {            /* rank 0 went well: this rank's own message */
        fprintf(stderr, "diffuse %s: rank %d: %s\n", cmd, df_dist_rank(), df_last_error());
        return st;
    }
    return df_fail(DF_ERR_IO, "rank %d failed (its message above)", worst - 1);
}

static const arg_spec *find_spec(const arg_spec *specs, const char *name) {
    for (const arg_spec *s = specs; s->name; s++)
        if (strcmp(s->name, name) == 0) return s;
    return NULL;
}

/* Only a flag given on the command line is checked: one left out keeps the command's default,
 * which may be a 0 that stands for "choose for me" (the batch size by model, say). A 0 typed by
 * the user is refused wherever it would mean nothing, instead of being read as that default. */
static df_status check_ranges(const arg_spec *specs, const cli_range *ranges) {
    for (const cli_range *r = ranges; r && r->name; r++) {
        const arg_spec *s = find_spec(specs, r->name);
        ASSERT(s && (s->type == ARG_INT || s->type == ARG_LONG) && "a range for a count flag the command has");
        if (!s->seen) continue;
        long v = s->type == ARG_INT ? *(const int *)s->ptr : *(const long *)s->ptr;
        if (v >= r->min && v <= r->max) continue;
        if (r->max == LONG_MAX) return df_fail(DF_ERR_ARG, "--%s must be at least %ld (got %ld)", r->name, r->min, v);
        return df_fail(DF_ERR_ARG, "--%s must be in %ld..%ld (got %ld)", r->name, r->min, r->max, v);
    }
    return DF_OK;
}

int cli_parse_flags(const char *cmd, const char *usage, arg_spec *specs, const cli_range *ranges, int argc,
                    char **argv) {
    int rc = args_parse(cmd, usage, specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    df_status st = check_ranges(specs, ranges);
    return st == DF_OK ? -1 : cli_error(cmd, st);
}

void cli_set_threads(int threads) {
    /* P processes of mpirun on one machine share its cores (all cores each would oversubscribe it) */
    if (threads <= 0 && df_dist_size() > 1) {
#ifdef _OPENMP
        threads = omp_get_num_procs() / df_dist_local_size();
#else
        threads = 1;
#endif
        if (threads < 1) threads = 1;
    }
    if (threads <= 0) return;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    openblas_set_num_threads(threads);
}

/* ---------------------------------------------------------------- progress */

/* m:ss or h:mm:ss; "?" for a time not known (negative, NaN or absurd). */
static void format_seconds(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_bar(const char *what, long done, long total, double elapsed, double eta, const char *extra,
                      int final) {
    static int tty = -1;
    if (tty < 0) tty = isatty(2);
    char el[32], et[32];
    format_seconds(elapsed, el, sizeof el);
    format_seconds(eta, et, sizeof et);
    if (tty) {
        char bar[31];
        int fill = total > 0 ? (int)(30.0 * done / total) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        if (total > 0)
            fprintf(stderr, "\r%s [%s] %ld/%ld %s elapsed %s ETA %s\033[K", what, bar, done, total, extra, el, et);
        else
            fprintf(stderr, "\r%s %ld %s elapsed %s ETA %s\033[K", what, done, extra, el, et);
        if (final) fprintf(stderr, "\n");
    } else {
        if (total > 0) fprintf(stderr, "%s %ld/%ld %s elapsed %s eta %s\n", what, done, total, extra, el, et);
        else fprintf(stderr, "%s %ld %s elapsed %s eta %s\n", what, done, extra, el, et);
    }
    fflush(stderr);
}

/* ---------------------------------------------------------------- models */

#define SHIPPED_MODEL "fmnist-small.safetensors"

const char *cli_default_model(void) {
    const char *env = getenv("DIFFUSE_MODEL");
    if (env && *env) return env;
    const char *path = cli_shipped_file(SHIPPED_MODEL);
    if (path) return path;
    /* the same search, with the way out named */
    char msg[600];
    snprintf(msg, sizeof msg, "%s", df_last_error());
    df_fail(DF_ERR_ARG, "no --model given, and the shipped model %s: give --model or set DIFFUSE_MODEL", msg);
    return NULL;
}

/* A file shipped in models/: next to the executable first (an installed tree, bin/ and models/,
 * works wherever it is moved), then in the source tree the build came from. */
const char *cli_shipped_file(const char *name) {
    static char path[4200];
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/../models/%s", exe, name);
        if (access(path, R_OK) == 0) return path;
    }
#ifdef DIFFUSE_SOURCE_MODELS
    snprintf(path, sizeof path, "%s/%s", DIFFUSE_SOURCE_MODELS, name);
    if (access(path, R_OK) == 0) return path;
    df_fail(DF_ERR_ARG, "%s is neither in ../models next to the executable nor in " DIFFUSE_SOURCE_MODELS, name);
#else
    df_fail(DF_ERR_ARG, "%s is not in ../models next to the executable", name);
#endif
    return NULL;
}

cli_shape cli_model_shape(const df_model *m) {
    cli_shape s;
    s.dim = df_model_sample_shape(m, &s.c, &s.h, &s.w);
    return s;
}

df_status cli_open_model(const char *cmd, const char **path, int max_batch, df_model **m, df_diffusers_info *info) {
    int fallback = !*path;
    if (fallback && !(*path = cli_default_model())) return DF_ERR_ARG;
    df_status st = df_model_open(*path, max_batch, 0, m, info);
    if (st == DF_OK && fallback && df_dist_rank() == 0) fprintf(stderr, "%s: no --model given, using %s\n", cmd, *path);
    return st;
}

/* ---------------------------------------------------------------- data */

df_status cli_data_form(const char *spec, df_dataset_form *form) {
    df_status st = df_dataset_spec_check(spec, form);
    if (st != DF_OK && *form == DF_DATASET_NONE) {
        df_clear_error();  /* not a dataset: the 2-D reader has its say */
        return DF_OK;
    }
    return st;
}

df_status cli_check_device(const char *name) {
    df_device d;
    df_status st = df_device_from_name(name ? name : "cpu", &d);
    return st != DF_OK ? st : df_device_check(d);
}
