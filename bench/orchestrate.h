/* orchestrate.h: bench_unet's runs of other processes (--matrix, --sweep, the PyTorch peer) and
 * the machine peaks (--peaks).
 *
 * What it is: a part of bench/bench_unet.c, included by it once and by nothing else; a header only
 * because CMake builds every .c file in bench/ as a program of its own. It holds
 *   - --matrix and --sweep: every configuration runs as a child process (this program again, with
 *     --child and the single-configuration flags; the PyTorch peer likewise); they read its JSON
 *     lines from a pipe, echo them, keep the best of --rounds and print the comparison tables;
 *   - --peaks: the machine's peaks (peak.h) as JSON lines, itself run in a child by --matrix;
 *   - run_torch: the PyTorch peer (bench/torch_ddpm.py) of a single configuration's --torch.
 * Each configuration runs in a child so that its peak RSS is its own. A forked child inherits its
 * parent's resident pages into its peak RSS (the copied address space counts until exec), so the
 * parent stays small: even the machine peaks run in a child (--peaks).
 * What it is not: it builds and times none of our U-Nets (bench_unet.c's run_ours does, in the
 * child), and it is no header for anything else: it uses bench_unet.c's bench_opts,
 * resize_config and PEAK_GFLOPS, defined before the #include, and every function is static.
 */
#ifndef BENCH_ORCHESTRATE_H
#define BENCH_ORCHESTRATE_H
#ifndef BENCH_UNET_C
#error "orchestrate.h is a part of bench_unet.c and is included there only"
#endif

#include "common.h"
#include "gemm.h"
#include "unet.h"
#include "peak.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOMINAL_PEAK_PER_CORE (PEAK_GFLOPS / 2) /* the nominal fp32 peak is for 2 cores */
#define RSS_TARGET 0.5                       /* ours / torch peak RSS, at most */
#define PYTHON "/usr/bin/python3"

static char g_self[4096]; /* this program, for the children */

/* g_self = this program's path (/proc/self/exe, else argv0): what the children run. */
static void orch_find_self(const char *argv0) {
    ssize_t len = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    if (len > 0) g_self[len] = 0;
    else snprintf(g_self, sizeof g_self, "%s", argv0);
}

/* "null" for NaN (not JSON), else the number. */
static const char *jfmt(char *buf, size_t cap, double v, int decimals) {
    if (!isfinite(v)) snprintf(buf, cap, "null");
    else snprintf(buf, cap, "%.*f", decimals, v);
    return buf;
}

/* The number after "key": in a JSON line, or NaN. */
static double jget(const char *line, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) return NAN;
    p += strlen(pat);
    char *end;
    double v = strtod(p, &end);
    return end == p ? NAN : v;
}

/* 1 when the JSON line has "key": "value". */
static int jis(const char *line, const char *key, const char *value) {
    char pat[160];
    snprintf(pat, sizeof pat, "\"%s\": \"%s\"", key, value);
    return strstr(line, pat) != NULL;
}

typedef struct {
    char *v[64];
    char s[64][512];
    int n;
} argvec;

static void av(argvec *a, const char *fmt, ...) {
    if (a->n >= 63) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->s[a->n], sizeof a->s[0], fmt, ap);
    va_end(ap);
    a->v[a->n] = a->s[a->n];
    a->v[++a->n] = NULL;
}

#define CHILD_LINES 16
#define CHILD_LINE 8192
typedef struct {
    int n_json;
    char json[CHILD_LINES][CHILD_LINE]; /* its JSON lines (the first CHILD_LINES) */
    char *text;                         /* its other stdout lines */
    size_t text_len;
    double rss_mib;                     /* its peak RSS (wait4) */
    int status;                         /* exit status; -1 if it did not run or died on a signal */
} child_out;

/* Runs argv (argv[0] a path) with OMP_NUM_THREADS = threads (when > 0), stdout into *out, stderr
 * through; echo != 0 copies its JSON lines to our stdout. Returns out->status. */
static int run_child(const argvec *a, int threads, int echo, child_out *out) {
    memset(out, 0, sizeof *out);
    out->status = -1;
    out->rss_mib = NAN;
    int fd[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]), close(fd[1]);
        if (threads > 0) {
            char t[16];
            snprintf(t, sizeof t, "%d", threads);
            setenv("OMP_NUM_THREADS", t, 1);
        }
        execv(a->v[0], a->v);
        fprintf(stderr, "bench_unet: cannot run %s: %s\n", a->v[0], strerror(errno));
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char *line = malloc(CHILD_LINE);
    size_t cap = 0;
    while (f && line && fgets(line, CHILD_LINE, f)) {
        if (line[0] == '{') {
            if (echo) fputs(line, stdout), fflush(stdout);
            if (out->n_json < CHILD_LINES) memcpy(out->json[out->n_json++], line, CHILD_LINE);
        } else {
            size_t l = strlen(line);
            if (out->text_len + l + 1 > cap) {
                cap = 2 * cap + l + 4096;
                char *t = realloc(out->text, cap);
                if (!t) continue;
                out->text = t;
            }
            memcpy(out->text + out->text_len, line, l + 1);
            out->text_len += l;
        }
    }
    free(line);
    if (f) fclose(f);
    else close(fd[0]);
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
        if (errno != EINTR) return -1;
    out->rss_mib = ru.ru_maxrss / 1024.0;
    out->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out->status;
}

static void child_free(child_out *c) {
    free(c->text);
    c->text = NULL;
}

static double g_t0; /* start of --matrix / --sweep */

static void progress(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[bench_unet %6.1f s] ", df_time() - g_t0);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static double loadavg1(void) {
    double l = NAN;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = NAN;
        fclose(f);
    }
    return l;
}

/* --peaks: the machine's peaks at 1..max_threads threads, one JSON line each. */
static int run_peaks(int quick, int max_threads) {
    const peak_kernel f = peak_fp32_kernel(), h = peak_bf16_kernel();
    const double secs = quick ? 0.02 : 0.25;
    const int n = quick ? 512 : 2048;
    char b1[32], b2[32];
    for (int t = 1; t <= max_threads; t++) {
        printf("{\"impl\": \"peak\", \"kind\": \"fma_fp32\", \"path\": \"%s\", \"threads\": %d, \"gflops\": %s, "
               "\"issue_gflops\": %.1f}\n",
               f.path, t, jfmt(b1, sizeof b1, peak_loop_gflops(&f, t, secs), 1), NOMINAL_PEAK_PER_CORE * t);
        fflush(stdout);
        printf("{\"impl\": \"peak\", \"kind\": \"dot_bf16\", \"path\": \"%s\", \"threads\": %d, \"gflops\": %s, "
               "\"issue_gflops\": %.1f}\n",
               h.path, t, jfmt(b1, sizeof b1, peak_loop_gflops(&h, t, secs), 1), 2 * NOMINAL_PEAK_PER_CORE * t);
        fflush(stdout);
        static const char *const kinds[] = {"sgemm_openblas", "gemm_f32_diffuse", "gemm_bf16_diffuse"};
        for (int r = PEAK_SGEMM; r <= PEAK_DF_BF16; r++) {
            const char *path = r == PEAK_SGEMM ? "cblas_sgemm"
                                                  : df_gemm_path(r == PEAK_DF_BF16);
            printf("{\"impl\": \"peak\", \"kind\": \"%s\", \"path\": \"%s\", \"n\": %d, \"threads\": %d, \"gflops\": %s}\n",
                   kinds[r], path, n, t, jfmt(b2, sizeof b2, peak_gemm_gflops(r, n, t), 1));
            fflush(stdout);
        }
    }
    return 0;
}

/* ---- --torch of one configuration: the peer through popen, in step with our rounds */

/* Runs the PyTorch peer; fills its images/s (train) and evals/s (sample) and RSS. 1 on failure. */
static int run_torch(const bench_opts *o, const df_unet_config *c, double *train_ips, double *sample_eps,
                     double *rss) {
    const char *cfg = strcmp(o->preset, "ddpm-cifar10") == 0 ? "cifar" : "small";
    char cmd[1024], size[64] = "";
    if (o->image_size) snprintf(size, sizeof size, " --image-size %d --attn-res %d", c->sample_size, c->attn_resolutions[0]);
    snprintf(cmd, sizeof cmd,
             PYTHON " %s bench --config %s --threads %d --train-batch %d --sample-batch %d --steps %d "
             "--sample-evals %d --warmup %d%s 2>/dev/null",
             o->torch_script, cfg, o->threads, o->batch, o->batch, o->steps, o->steps, o->warmup, size);
    FILE *p = popen(cmd, "r");
    if (!p) return 1;
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, p))
        if (strstr(line, "sample_img_steps_per_s")) memcpy(last, line, sizeof line);
    if (pclose(p) != 0 || !last[0]) return 1;
    /* torch reports medians; recompute from min where present: it prints train_step_s_min */
    const char *k;
    *train_ips = *sample_eps = *rss = NAN;
    if ((k = strstr(last, "\"train_step_s_min\": "))) *train_ips = o->batch / atof(k + 20);
    if ((k = strstr(last, "\"sample_img_steps_per_s\": "))) *sample_eps = atof(k + 26);
    if ((k = strstr(last, "\"peak_rss_mib\": "))) *rss = atof(k + 16);
    printf("{\"impl\": \"torch\", \"preset\": \"%s\", \"batch\": %d, \"threads\": %d, \"train_img_per_s_best\": %.2f, "
           "\"sample_evals_per_s_median\": %.2f, \"peak_rss_mib\": %.1f}\n",
           o->preset, o->batch, o->threads, *train_ips, *sample_eps, *rss);
    return 0;
}

/* ---- what the orchestrators measure */

typedef struct {
    int ok;
    double train, sample;         /* images/s and evaluations/s, from the median step */
    double train_best;            /* images/s of the fastest step */
    double gflop_img;             /* forward, per image */
    double rss, rss_wait4;        /* MiB: as the child reports it (getrusage), and wait4's */
} our_meas;

typedef struct {
    int ok;
    double train, sample, train_best, gflop_img, rss, rss_self;
} torch_meas;

typedef struct {
    const char *preset;
    int batch, threads, image_size; /* image_size 0: the preset's */
    df_precision prec;
    const char *data;
    int warmup, steps;
    double seconds;
    int profile, openblas;
} our_job;

static int our_run(const our_job *j, our_meas *m, char **profile_text) {
    argvec a = {0};
    av(&a, "%s", g_self);
    av(&a, "--child");
    av(&a, "--preset"), av(&a, "%s", j->preset);
    av(&a, "--batch"), av(&a, "%d", j->batch);
    av(&a, "--threads"), av(&a, "%d", j->threads);
    av(&a, "--precision"), av(&a, "%s", df_precision_name(j->prec));
    av(&a, "--warmup"), av(&a, "%d", j->warmup);
    av(&a, "--steps"), av(&a, "%d", j->steps);
    av(&a, "--seconds"), av(&a, "%g", j->seconds);
    if (j->data) av(&a, "--data"), av(&a, "%s", j->data);
    if (j->image_size) av(&a, "--image-size"), av(&a, "%d", j->image_size);
    if (j->profile) av(&a, "--profile");
    if (j->openblas) av(&a, "--openblas");
    child_out *c = malloc(sizeof *c);
    memset(m, 0, sizeof *m);
    m->train = m->sample = m->train_best = m->gflop_img = m->rss = m->rss_wait4 = NAN;
    if (!c) return 1;
    int st = run_child(&a, j->threads, 1, c);
    for (int i = 0; i < c->n_json; i++) {
        const char *l = c->json[i];
        if (!jis(l, "impl", "diffuse")) continue;
        if (jis(l, "phase", "train")) {
            m->train = j->batch / jget(l, "step_s_median");
            m->train_best = j->batch / jget(l, "step_s_min");
        } else if (jis(l, "phase", "sample")) {
            m->sample = j->batch / jget(l, "eval_s_median");
        }
        m->gflop_img = jget(l, "gflop_per_img_fwd");
        m->rss = fmax(isfinite(m->rss) ? m->rss : 0, jget(l, "peak_rss_mib"));
    }
    m->rss_wait4 = c->rss_mib;
    m->ok = st == 0 && isfinite(m->train) && isfinite(m->sample);
    if (st != 0) fprintf(stderr, "bench_unet: child %s %s failed (status %d)\n", j->preset, df_precision_name(j->prec), st);
    if (profile_text && c->text) {
        *profile_text = c->text;
        c->text = NULL;
    }
    child_free(c);
    free(c);
    return !m->ok;
}

/* 1 when /usr/bin/python3 imports torch and the peer script is readable. */
static int torch_available(const char *script) {
    if (access(PYTHON, X_OK) || access(script, R_OK)) return 0;
    argvec a = {0};
    av(&a, PYTHON), av(&a, "-c"), av(&a, "import torch");
    child_out *c = malloc(sizeof *c);
    if (!c) return 0;
    int st = run_child(&a, 1, 0, c);
    child_free(c);
    free(c);
    return st == 0;
}

typedef struct {
    const char *script, *preset;
    int batch, threads, image_size, attn; /* image_size 0: the preset's; attn: attention resolution when resized */
    int warmup, steps, evals;
} torch_job;

static int torch_run(const torch_job *j, torch_meas *m) {
    argvec a = {0};
    av(&a, PYTHON), av(&a, "%s", j->script), av(&a, "bench");
    av(&a, "--config"), av(&a, "%s", strcmp(j->preset, "ddpm-cifar10") == 0 ? "cifar" : "small");
    av(&a, "--threads"), av(&a, "%d", j->threads);
    av(&a, "--train-batch"), av(&a, "%d", j->batch);
    av(&a, "--sample-batch"), av(&a, "%d", j->batch);
    av(&a, "--warmup"), av(&a, "%d", j->warmup);
    av(&a, "--steps"), av(&a, "%d", j->steps);
    av(&a, "--sample-evals"), av(&a, "%d", j->evals);
    if (j->image_size) av(&a, "--image-size"), av(&a, "%d", j->image_size), av(&a, "--attn-res"), av(&a, "%d", j->attn);
    child_out *c = malloc(sizeof *c);
    memset(m, 0, sizeof *m);
    m->train = m->sample = m->train_best = m->gflop_img = m->rss = m->rss_self = NAN;
    if (!c) return 1;
    int st = run_child(&a, j->threads, 0, c);
    const char *last = NULL;
    for (int i = 0; i < c->n_json; i++)
        if (strstr(c->json[i], "\"sample_img_steps_per_s\"")) last = c->json[i];
    if (st == 0 && last) {
        m->train = j->batch / jget(last, "train_step_s_median");
        m->train_best = j->batch / jget(last, "train_step_s_min");
        m->sample = j->batch / jget(last, "sample_eval_s_median");
        m->gflop_img = jget(last, "fwd_gflop_per_img");
        m->rss_self = jget(last, "peak_rss_mib");
        m->rss = c->rss_mib;
        m->ok = isfinite(m->train) && isfinite(m->sample);
    }
    char b[8][32];
    df_unet_config pc;
    const int size = j->image_size ? j->image_size : df_unet_preset(j->preset, &pc) == DF_OK ? pc.sample_size : 0;
    printf("{\"impl\": \"torch\", \"preset\": \"%s\", \"batch\": %d, \"threads\": %d, \"image_size\": %d, "
           "\"precision\": \"fp32\", \"train_steps\": %d, \"sample_evals\": %d, \"train_img_per_s_median\": %s, "
           "\"train_img_per_s_best\": %s, \"sample_evals_per_s_median\": %s, \"gflop_per_img_fwd\": %s, "
           "\"peak_rss_mib\": %s, \"peak_rss_mib_self\": %s, \"ok\": %s}\n",
           j->preset, j->batch, j->threads, size, j->steps, j->evals, jfmt(b[0], 32, m->train, 2),
           jfmt(b[1], 32, m->train_best, 2), jfmt(b[2], 32, m->sample, 2), jfmt(b[3], 32, m->gflop_img, 5),
           jfmt(b[4], 32, m->rss, 1), jfmt(b[5], 32, m->rss_self, 1), m->ok ? "true" : "false");
    fflush(stdout);
    if (!m->ok) fprintf(stderr, "bench_unet: the torch peer failed for %s at %d threads (status %d)\n", j->preset, j->threads, st);
    child_free(c);
    free(c);
    return !m->ok;
}

static void keep_best_ours(our_meas *best, const our_meas *m) {
    if (!m->ok) return;
    if (!best->ok) {
        *best = *m;
        return;
    }
    best->train = fmax(best->train, m->train);
    best->sample = fmax(best->sample, m->sample);
    best->train_best = fmax(best->train_best, m->train_best);
    best->rss = fmax(best->rss, m->rss);
    best->rss_wait4 = fmax(best->rss_wait4, m->rss_wait4);
}

static void keep_best_torch(torch_meas *best, const torch_meas *m) {
    if (!m->ok) return;
    if (!best->ok) {
        *best = *m;
        return;
    }
    best->train = fmax(best->train, m->train);
    best->sample = fmax(best->sample, m->sample);
    best->train_best = fmax(best->train_best, m->train_best);
    best->rss = fmax(best->rss, m->rss);
    best->rss_self = fmax(best->rss_self, m->rss_self);
}

/* ---- --matrix */

typedef struct {
    const char *preset;
    int batch;
    double target[2]; /* ours / torch fp32, for fp32 and bf16 */
    /* step counts: ours (warm-up, at least steps, at least seconds), torch (warm-up, steps, evals) */
    int warmup, steps;
    double seconds;
    int t_warmup, t_steps, t_evals;
} mx_preset;

static const mx_preset MX[] = {
    {"fmnist-small", 64, {1.25, 2.0}, 1, 5, 10.0, 1, 8, 16},
    {"ddpm-cifar10", 16, {1.1, 1.75}, 1, 3, 6.0, 1, 3, 4},
};
#define MX_N 2
#define MX_MAX_T 2

enum { PK_FMA, PK_BF16, PK_SGEMM, PK_DF_F32, PK_DF_BF16, PK_N };

typedef struct {
    int quick, torch, rounds, profile, openblas;
    const char *torch_script, *data;
    int only_preset;              /* -1: both presets */
    int only_threads;             /* 0: 1 and 2 */
    int batch;                    /* 0: the preset's */
    int n_prec;
    df_precision prec[2];
    int sweep_torch;
} orch_opts;

static const char *const PK_NAME[PK_N] = {"fma_fp32", "dot_bf16", "sgemm_openblas", "gemm_f32_diffuse",
                                          "gemm_bf16_diffuse"};

/* Runs --peaks in a child; peaks[kind][threads] (threads 1..MX_MAX_T). */
static void measure_peaks(int quick, double peaks[PK_N][MX_MAX_T + 1], char paths[PK_N][48], int *gemm_n) {
    for (int k = 0; k < PK_N; k++)
        for (int t = 0; t <= MX_MAX_T; t++) peaks[k][t] = NAN;
    argvec a = {0};
    av(&a, "%s", g_self), av(&a, "--peaks"), av(&a, "--threads"), av(&a, "%d", MX_MAX_T);
    if (quick) av(&a, "--quick");
    child_out *c = malloc(sizeof *c);
    if (!c) return;
    if (run_child(&a, MX_MAX_T, 1, c) != 0) fprintf(stderr, "bench_unet: --peaks failed\n");
    for (int i = 0; i < c->n_json; i++) {
        const char *l = c->json[i];
        int t = (int)jget(l, "threads");
        for (int k = 0; k < PK_N; k++)
            if (jis(l, "kind", PK_NAME[k]) && t >= 1 && t <= MX_MAX_T) {
                peaks[k][t] = jget(l, "gflops");
                const char *p = strstr(l, "\"path\": \"");
                if (p) {
                    p += 9;
                    int n = 0;
                    while (p[n] && p[n] != '"' && n < 47) paths[k][n] = p[n], n++;
                    paths[k][n] = 0;
                }
                if (isfinite(jget(l, "n"))) *gemm_n = (int)jget(l, "n");
            }
    }
    child_free(c);
    free(c);
}

static void print_peaks(double peaks[PK_N][MX_MAX_T + 1], char paths[PK_N][48], int gemm_n) {
    printf("\nmachine peaks, GFLOP/s (measured in this run; best of %d)          1 thread  2 threads\n", PEAK_REPS);
    const char *label[PK_N] = {"fp32 FMA loop", "bf16 dot loop", "OpenBLAS cblas_sgemm", "df_gemm_f32", "df_gemm_bf16"};
    for (int k = 0; k < PK_N; k++) {
        char name[160];
        if (k <= PK_BF16) snprintf(name, sizeof name, "%s (%.47s)", label[k], paths[k]);
        else snprintf(name, sizeof name, "%s %d^3 (%.47s)", label[k], gemm_n, paths[k]);
        printf("  %-62s %9.1f %9.1f\n", name, peaks[k][1], peaks[k][2]);
    }
    printf("  %-62s %9.1f %9.1f\n", "the nominal fp32 peak (234 for 2 cores; bf16: twice that)", NOMINAL_PEAK_PER_CORE,
           2 * NOMINAL_PEAK_PER_CORE);
}

/* --data goes to the preset it fits (cifar10:... to ddpm-cifar10, anything else to fmnist-small);
 * the other gets the synthetic pool. */
static const char *matrix_data(const char *data, const char *preset) {
    if (!data) return "synthetic";
    const int cifar_data = strncmp(data, "cifar10", 7) == 0, cifar_preset = strcmp(preset, "ddpm-cifar10") == 0;
    return cifar_data == cifar_preset ? data : "synthetic";
}

static int run_matrix(const orch_opts *oo) {
    g_t0 = df_time();
    const double load0 = loadavg1();
    progress("--matrix%s: load average %.2f; peaks first", oo->quick ? " --quick" : "", load0);
    {
        char cpu[1024];
        df_cpu_describe(cpu, sizeof cpu);
        const char *aten = getenv("ATEN_CPU_CAPABILITY"), *onednn = getenv("ONEDNN_MAX_CPU_ISA");
        progress("%s", cpu);
        progress("PyTorch caps: ATEN_CPU_CAPABILITY=%s ONEDNN_MAX_CPU_ISA=%s", aten ? aten : "(unset)",
                 onednn ? onednn : "(unset)");
    }
    double peaks[PK_N][MX_MAX_T + 1];
    char paths[PK_N][48] = {{0}};
    int gemm_n = 0;
    measure_peaks(oo->quick, peaks, paths, &gemm_n);
    const int have_torch = oo->torch && torch_available(oo->torch_script);
    if (oo->torch && !have_torch)
        progress("no PyTorch peer (%s cannot import torch, or %s is missing): ours only", PYTHON, oo->torch_script);

    our_meas ours[MX_N][MX_MAX_T + 1][2];
    torch_meas tm[MX_N][MX_MAX_T + 1];
    char *profiles[MX_N][2] = {{0}};
    memset(ours, 0, sizeof ours);
    memset(tm, 0, sizeof tm);
    int failed = 0;
    for (int r = 0; r < oo->rounds; r++)
        for (int p = 0; p < MX_N; p++) {
            if (oo->only_preset >= 0 && p != oo->only_preset) continue;
            const mx_preset *mp = &MX[p];
            const int batch = oo->batch ? oo->batch : mp->batch;
            for (int t = 1; t <= MX_MAX_T; t++) {
                if (oo->only_threads && t != oo->only_threads) continue;
                for (int q = 0; q < oo->n_prec; q++) {
                    const int qi = oo->prec[q] == DF_PRECISION_BF16;
                    our_job j = {mp->preset, batch, t, 0, oo->prec[q],
                                 matrix_data(oo->data, mp->preset),
                                 oo->quick ? 0 : mp->warmup, oo->quick ? 1 : mp->steps, oo->quick ? 0 : mp->seconds,
                                 oo->profile && t == MX_MAX_T && r == 0, oo->openblas};
                    progress("round %d/%d: diffuse %s batch %d, %d thread%s, %s", r + 1, oo->rounds, mp->preset, batch, t,
                             t > 1 ? "s" : "", df_precision_name(oo->prec[q]));
                    our_meas m;
                    failed += our_run(&j, &m, j.profile ? &profiles[p][qi] : NULL);
                    keep_best_ours(&ours[p][t][qi], &m);
                }
                if (have_torch) {
                    torch_job j = {oo->torch_script, mp->preset, batch, t, 0, 0, oo->quick ? 0 : mp->t_warmup,
                                   oo->quick ? 1 : mp->t_steps, oo->quick ? 1 : mp->t_evals};
                    progress("round %d/%d: torch %s batch %d, %d thread%s, fp32", r + 1, oo->rounds, mp->preset, batch, t,
                             t > 1 ? "s" : "");
                    torch_meas m;
                    failed += torch_run(&j, &m);
                    keep_best_torch(&tm[p][t], &m);
                }
            }
        }
    const double load1 = loadavg1();
    const double elapsed = df_time() - g_t0;
    struct rusage self;
    getrusage(RUSAGE_SELF, &self);

    /* one comparison JSON line per row, then the table */
    typedef struct {
        int p, t, qi, phase;
        double ours, torch, ratio, target, gflops, pct_peak, pct_nominal, rss, trss, rss_ratio;
    } row;
    row rows[MX_N * MX_MAX_T * 2 * 2];
    int nr = 0, met = 0, judged = 0, rss_met = 0, rss_judged = 0;
    for (int p = 0; p < MX_N; p++)
        for (int t = 1; t <= MX_MAX_T; t++)
            for (int qi = 0; qi < 2; qi++) {
                const our_meas *m = &ours[p][t][qi];
                if (!m->ok) continue;
                const torch_meas *tt = &tm[p][t];
                for (int ph = 0; ph < 2; ph++) {
                    row *w = &rows[nr++];
                    w->p = p, w->t = t, w->qi = qi, w->phase = ph;
                    w->ours = ph ? m->sample : m->train;
                    w->torch = tt->ok ? (ph ? tt->sample : tt->train) : NAN;
                    w->ratio = w->ours / w->torch;
                    w->target = MX[p].target[qi];
                    w->gflops = (ph ? 1 : 3) * m->gflop_img * w->ours;
                    w->pct_peak = 100 * w->gflops / peaks[qi ? PK_BF16 : PK_FMA][t];
                    w->pct_nominal = 100 * w->gflops / ((qi ? 2 : 1) * NOMINAL_PEAK_PER_CORE * t);
                    w->rss = m->rss_wait4;
                    w->trss = tt->ok ? tt->rss : NAN;
                    w->rss_ratio = w->rss / w->trss;
                    if (isfinite(w->ratio)) judged++, met += w->ratio >= w->target;
                    if (ph == 0 && isfinite(w->rss_ratio)) rss_judged++, rss_met += w->rss_ratio <= RSS_TARGET;
                    char b[12][32];
                    printf("{\"impl\": \"compare\", \"preset\": \"%s\", \"batch\": %d, \"phase\": \"%s\", \"threads\": %d, "
                           "\"precision\": \"%s\", \"ours\": %s, \"torch_fp32\": %s, \"ratio\": %s, \"target\": %.2f, "
                           "\"met\": %s, \"ours_best_step\": %s, \"gflops\": %s, \"pct_measured_peak\": %s, "
                           "\"pct_nominal_peak\": %s, \"peak_rss_mib\": %s, \"torch_peak_rss_mib\": %s, \"rss_ratio\": %s, "
                           "\"rss_target\": %.2f, \"gflop_per_img_fwd\": %s, \"unit\": \"%s\", \"statistic\": \"median\"}\n",
                           MX[p].preset, oo->batch ? oo->batch : MX[p].batch, ph ? "sample" : "train", t, qi ? "bf16" : "fp32",
                           jfmt(b[0], 32, w->ours, 2), jfmt(b[1], 32, w->torch, 2), jfmt(b[2], 32, w->ratio, 3), w->target,
                           isfinite(w->ratio) ? (w->ratio >= w->target ? "true" : "false") : "null",
                           jfmt(b[3], 32, ph ? NAN : m->train_best, 2), jfmt(b[4], 32, w->gflops, 1),
                           jfmt(b[5], 32, w->pct_peak, 1), jfmt(b[6], 32, w->pct_nominal, 1), jfmt(b[7], 32, w->rss, 1),
                           jfmt(b[8], 32, w->trss, 1), jfmt(b[9], 32, w->rss_ratio, 3), RSS_TARGET,
                           jfmt(b[10], 32, m->gflop_img, 5), ph ? "evals_per_s" : "img_per_s");
                }
            }
    printf("{\"impl\": \"matrix\", \"elapsed_s\": %.1f, \"load_avg_start\": %.2f, \"load_avg_end\": %.2f, "
           "\"torch\": %s, \"rounds\": %d, \"quick\": %s, \"targets_met\": %d, \"targets_judged\": %d, "
           "\"rss_targets_met\": %d, \"rss_targets_judged\": %d, \"failures\": %d}\n",
           elapsed, load0, load1, have_torch ? "true" : "false", oo->rounds, oo->quick ? "true" : "false", met, judged,
           rss_met, rss_judged, failed);

    print_peaks(peaks, paths, gemm_n);
    printf("\nthe U-Nets (GFLOP per image: analytic forward, df_unet_forward_flops; a training step counts 3x):");
    for (int p = 0; p < MX_N; p++)
        for (int t = 1; t <= MX_MAX_T; t++)
            for (int qi = 0; qi < 2; qi++)
                if (ours[p][t][qi].ok) {
                    printf(" %s %.4f", MX[p].preset, ours[p][t][qi].gflop_img);
                    t = MX_MAX_T, qi = 2;
                }
    printf("\n");
    printf("ours, torch: train = images/s of whole steps (data loading, forward, backward, AdamW, EMA; torch_ddpm.py: no\n"
           "data loading, Adam, no EMA); sample = network evaluations/s (images x steps / s). Medians of the timed steps.\n"
           "Our data: fmnist-small %s, ddpm-cifar10 %s (synthetic: a pool of 1024 random uint8 images, gathered\n"
           "and scaled per step as `diffuse train` does with a dataset, without holding a whole dataset in RSS).\n",
           matrix_data(oo->data, "fmnist-small"), matrix_data(oo->data, "ddpm-cifar10"));
    printf("torch is fp32 (the bf16 rows compare with it too). %%peak: of the measured fp32 FMA (fp32) or bf16 dot (bf16)\n"
           "peak at the same thread count; %%ref: of a nominal 117 GFLOP/s per core (234 per core for bf16). RSS: peak\n"
           "of each configuration's own process (train + sample), MiB; target <= %.2fx.\n\n", RSS_TARGET);
    printf("%-13s %-6s %3s %-4s %9s %9s %7s %-12s %8s %6s %6s %8s %8s %6s %-4s\n", "preset", "phase", "thr", "prec",
           "ours", "torch", "ratio", "target", "GFLOP/s", "%peak", "%ref", "RSS", "torchRSS", "ratio", "<=.5");
    for (int i = 0; i < nr; i++) {
        const row *w = &rows[i];
        char tgt[24], rs[64];
        if (isfinite(w->ratio)) snprintf(tgt, sizeof tgt, ">=%.2f %s", w->target, w->ratio >= w->target ? "met" : "NOT");
        else snprintf(tgt, sizeof tgt, ">=%.2f", w->target);
        if (w->phase == 0 && isfinite(w->rss_ratio))
            snprintf(rs, sizeof rs, "%8.0f %8.0f %6.3f %-4s", w->rss, w->trss, w->rss_ratio,
                     w->rss_ratio <= RSS_TARGET ? "met" : "NOT");
        else if (w->phase == 0) snprintf(rs, sizeof rs, "%8.0f %8s %6s", w->rss, "-", "-");
        else rs[0] = 0;
        char torch_s[16] = "-", ratio_s[16] = "-";
        if (isfinite(w->torch)) snprintf(torch_s, sizeof torch_s, "%.2f", w->torch);
        if (isfinite(w->ratio)) snprintf(ratio_s, sizeof ratio_s, "%.3f", w->ratio);
        char pk[16] = "-";
        if (isfinite(w->pct_peak)) snprintf(pk, sizeof pk, "%.1f", w->pct_peak);
        printf("%-13s %-6s %3d %-4s %9.2f %9s %7s %-12s %8.1f %6s %6.1f %s\n", MX[w->p].preset,
               w->phase ? "sample" : "train", w->t, w->qi ? "bf16" : "fp32", w->ours, torch_s, ratio_s, tgt, w->gflops,
               pk, w->pct_nominal, rs);
    }
    if (judged) printf("\nspeed targets met: %d of %d", met, judged);
    else printf("\nspeed targets: not judged (no PyTorch peer)");
    if (rss_judged) printf("; RSS targets met: %d of %d", rss_met, rss_judged);
    printf("\n%.0f s in all%s; load average %.2f at the start, %.2f at the end (2 cores: above ~0.3 the figures are "
           "suspect); this process's own RSS %.0f MiB (inherited by each child)\n",
           elapsed, oo->quick ? " (--quick: 1 step each, figures are smoke, not measurements)" : "", load0, load1,
           self.ru_maxrss / 1024.0);
    if (failed) printf("%d configuration(s) FAILED (see stderr)\n", failed);
    for (int p = 0; p < MX_N; p++)
        for (int qi = 0; qi < 2; qi++)
            if (profiles[p][qi]) {
                printf("\n== %s batch %d, %d threads, %s: where a training step's time goes ==%s", MX[p].preset,
                       oo->batch ? oo->batch : MX[p].batch, MX_MAX_T, qi ? "bf16" : "fp32", profiles[p][qi]);
                free(profiles[p][qi]);
            }
    return failed ? 1 : 0;
}

/* ---- --sweep: cost against batch and image size, fmnist-small-shaped */

static int run_sweep(const orch_opts *oo, int threads) {
    g_t0 = df_time();
    const double load0 = loadavg1();
    static const int BATCHES[] = {8, 16, 32, 64, 128}, SIZES[] = {28, 32, 64};
    const int n_b = 5, n_s = 3, size_batch = 32;
    typedef struct {
        int batch, size, attn, qi;
        our_meas m;
        torch_meas t;
    } pt;
    pt pts[(5 + 3) * 2];
    int np = 0, failed = 0;
    const int have_torch = oo->sweep_torch && torch_available(oo->torch_script);
    progress("--sweep%s: load average %.2f; fmnist-small U-Net, %d threads%s", oo->quick ? " --quick" : "", load0, threads,
             have_torch ? ", with the PyTorch peer" : "");
    for (int i = 0; i < n_b + n_s; i++) {
        const int batch = i < n_b ? BATCHES[i] : size_batch, size = i < n_b ? 28 : SIZES[i - n_b];
        if (i >= n_b && size == 28) {
            int dup = 0; /* 28 px at batch 32 is already a batch point */
            for (int k = 0; k < n_b; k++) dup |= BATCHES[k] == size_batch;
            if (dup) continue;
        }
        df_unet_config c;
        df_unet_preset("fmnist-small", &c);
        if (resize_config(&c, size) != DF_OK) {
            fprintf(stderr, "bench_unet: %d px: %s\n", size, df_last_error());
            failed++;
            continue;
        }
        for (int q = 0; q < oo->n_prec; q++) {
            pt *w = &pts[np++];
            memset(w, 0, sizeof *w);
            w->batch = batch, w->size = size, w->attn = c.attn_resolutions[0], w->qi = oo->prec[q] == DF_PRECISION_BF16;
            our_job j = {"fmnist-small", batch, threads, size, oo->prec[q], "synthetic", oo->quick ? 0 : 1,
                         oo->quick ? 1 : 3, oo->quick ? 0 : 5.0, 0, oo->openblas};
            progress("diffuse batch %d, %d px (attention at %d), %s", batch, size, w->attn, df_precision_name(oo->prec[q]));
            failed += our_run(&j, &w->m, NULL);
            if (have_torch && q == 0) {
                torch_job tj = {oo->torch_script, "fmnist-small", batch, threads, size, w->attn, oo->quick ? 0 : 1,
                                oo->quick ? 1 : 3, oo->quick ? 1 : 6};
                progress("torch batch %d, %d px, fp32", batch, size);
                failed += torch_run(&tj, &w->t);
            } else if (have_torch) {
                w->t = w[-1].t;
            }
        }
    }
    const double elapsed = df_time() - g_t0, load1 = loadavg1();
    printf("{\"impl\": \"sweep\", \"elapsed_s\": %.1f, \"load_avg_start\": %.2f, \"load_avg_end\": %.2f, \"threads\": %d, "
           "\"quick\": %s, \"failures\": %d}\n",
           elapsed, load0, load1, threads, oo->quick ? "true" : "false", failed);
    printf("\nfmnist-small-shaped U-Net (32,64,64 channels, attention at 1/4 of the image size), %d threads, data: a\n"
           "synthetic in-memory pool. train = images/s of whole steps (data, forward, backward, AdamW, EMA); sample =\n"
           "network evaluations/s; medians. ms/img = 1000 / rate: how the cost per image grows.\n",
           threads);
    for (int sec = 0; sec < 2; sec++) {
        printf("\n%s\n", sec == 0 ? "by batch (28 px)" : "by image size (batch 32)");
        printf("%5s %4s %4s %-4s %9s %10s %8s %8s %10s %8s %8s %7s", "batch", "px", "attn", "prec", "GFLOP/img",
               "train im/s", "ms/img", "GFLOP/s", "sample e/s", "ms/img", "GFLOP/s", "RSS MiB");
        if (have_torch) printf(" %9s %9s %7s %7s", "torch tr", "torch sa", "tr x", "sa x");
        printf("\n");
        for (int i = 0; i < np; i++) {
            const pt *w = &pts[i];
            if (sec == 0 ? w->size != 28 : w->batch != size_batch) continue;
            const our_meas *m = &w->m;
            printf("%5d %4d %4d %-4s %9.3f %10.2f %8.2f %8.1f %10.2f %8.2f %8.1f %7.0f", w->batch, w->size, w->attn,
                   w->qi ? "bf16" : "fp32", m->gflop_img, m->train, 1e3 / m->train, 3 * m->gflop_img * m->train,
                   m->sample, 1e3 / m->sample, m->gflop_img * m->sample, m->rss_wait4);
            if (have_torch)
                printf(" %9.2f %9.2f %7.3f %7.3f", w->t.train, w->t.sample, m->train / w->t.train, m->sample / w->t.sample);
            printf("\n");
        }
    }
    printf("\n%.0f s in all%s; load average %.2f at the start, %.2f at the end\n", elapsed,
           oo->quick ? " (--quick: 1 step each, figures are smoke, not measurements)" : "", load0, load1);
    if (failed) printf("%d configuration(s) FAILED (see stderr)\n", failed);
    return failed ? 1 : 0;
}

#endif /* BENCH_ORCHESTRATE_H */
