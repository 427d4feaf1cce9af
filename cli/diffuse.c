/* diffuse.c: the command-line entry point: `diffuse train|sample|info ...`. A thin layer over the
 * library: it parses flags, prints progress and turns statuses into one message and an exit code. */
#include "cli.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

int cli_error(const char *cmd, df_status st) {
    fprintf(stderr, "diffuse %s: %s\n", cmd, df_last_error());
    return st == DF_ERR_ARG ? 2 : st == DF_ERR_INTERRUPTED ? 130 : 1;
}

void cli_set_threads(int threads) {
    if (threads <= 0) return;
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    openblas_set_num_threads(threads);
}

void cli_format_seconds(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

void cli_progress_bar(const char *what, long done, long total, double elapsed, double eta, const char *extra, int final) {
    static int tty = -1;
    if (tty < 0) tty = isatty(2);
    char el[32], et[32];
    cli_format_seconds(elapsed, el, sizeof el);
    cli_format_seconds(eta, et, sizeof et);
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

#define SHIPPED_MODEL "fmnist-small.safetensors"

const char *cli_default_model(void) {
    static char path[4200];
    const char *env = getenv("DIFFUSE_MODEL");
    if (env && *env) return env;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(path, sizeof path, "%s/../models/" SHIPPED_MODEL, exe);
        if (access(path, R_OK) == 0) return path;
    }
#ifdef DIFFUSE_SOURCE_MODELS
    snprintf(path, sizeof path, "%s/" SHIPPED_MODEL, DIFFUSE_SOURCE_MODELS);
    if (access(path, R_OK) == 0) return path;
    df_fail(DF_ERR_ARG, "no --model given, and the shipped model " SHIPPED_MODEL " is neither in ../models next to "
            "the executable nor in " DIFFUSE_SOURCE_MODELS ": give --model or set DIFFUSE_MODEL");
#else
    df_fail(DF_ERR_ARG, "no --model given, and the shipped model " SHIPPED_MODEL " is not in ../models next to the "
            "executable: give --model or set DIFFUSE_MODEL");
#endif
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: diffuse COMMAND [options]   (diffuse COMMAND --help for its options)\n\n"
            "commands:\n"
            "  train    train a diffusion model (2-D toy data or images)\n"
            "  sample   draw samples from a trained model\n"
            "  info     print the CPU level in use, and a model's or a preset's configuration\n"
            "  eval     measure a model: the variational bound on held-out data (bits/dim)\n"
            "  predict  run the network alone on a .npy input (for checking against other implementations)\n"
            "  export   write a model as a diffusers folder (DDPMPipeline: unet/ + scheduler/)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "diffuse: no command given (commands: train, sample, eval, info, predict, export; see diffuse --help)\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    /* the CPU level first: a bad DIFFUSE_ISA stops every command before it reads or writes anything */
    if (df_cpu_init() != DF_OK) {
        fprintf(stderr, "diffuse %s: %s\n", cmd, df_last_error());
        return 2;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "sample") == 0) return cmd_sample(argc, argv);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc, argv);
    if (strcmp(cmd, "predict") == 0) return cmd_predict(argc, argv);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc, argv);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc, argv);
    fprintf(stderr, "diffuse: unknown command '%s' (commands: train, sample, eval, info, predict, export)\n", cmd);
    return 2;
}
