/* bench_unet.c: training and sampling throughput of the U-Net (unet.h), against PyTorch.
 *
 * A program, not a test. For a preset and batch it times
 *   train:  one full training step: q_sample of a random batch, forward, simple MSE loss, backward,
 *           gradient norm, AdamW and EMA (what the training loop does per step);
 *   sample: one network evaluation (forward, training=0), what a sampler step costs;
 * after a warm-up, repeated --steps times, and prints the min and median seconds, images/s,
 * GFLOP/s (df_unet_forward_flops; training counts 3x forward, the convention of torch_ddpm.py) and
 * the share of the 234 GFLOP/s FMA peak of this 2-core Zen 4, plus the peak RSS (getrusage).
 * Before timing it checks the output is finite and that a training forward equals an inference
 * forward (same weights, no dropout in the comparison), so a broken fast path is not timed.
 *
 * --profile times one training step (after warm-up) op by op (df_ops_profile, ops.h) and prints
 * where the time goes, grouped by op and shape.
 * --torch runs the peer bench/torch_ddpm.py (the same U-Net in PyTorch, in this repository) bench (same config, batch, threads) in a
 * subprocess, alternating with ours --rounds times, and prints the ratios of the best times.
 * --precision fp32|bf16|both: the U-Net's GEMM precision (df_precision); `both` runs fp32 then bf16
 * in each round, so the two are measured under the same load, and reports each.
 *
 * --image-size N: the preset at N x N pixels, attention at the same levels (fmnist-small: N/4).
 * --data SPEC: each training step first gathers its batch from an in-memory dataset (df_dataset_batch
 * of random indices, as `diffuse train` does): SPEC is a dataset spec (fashion-mnist, cifar10:DIR)
 * or "synthetic" (1024 random images of the model's shape); without it the batch is fixed.
 * --seconds S: keep timing each phase until it has run S seconds (and at least --steps times).
 *
 * Output: one JSON line per measurement (prefix "{"), then a table.
 * Usage: bench_unet [--preset fmnist-small] [--batch 64] [--threads 2] [--steps 10] [--warmup 2]
 *                   [--precision fp32|bf16|both] [--profile] [--torch] [--rounds 1] [--torch-script PATH]
 *                   [--no-train] [--no-sample] [--image-size N] [--data SPEC] [--seconds S]
 *
 * --quick (one configuration): 1 timed step, no warm-up.
 *
 * The whole comparison table in one run (each configuration in a child process of its own, so
 * that its peak RSS is its own; see run_matrix below):
 *   bench_unet --matrix [--quick] [--no-torch] [--rounds R] [--profile] [--data SPEC]
 *     machine peaks (bench_unet --peaks: FMA and bf16-dot loops, sgemm, df_gemm at 1 and 2 threads),
 *     then fmnist-small batch 64 and ddpm-cifar10 batch 16 x threads 1, 2 x fp32, bf16: training
 *     images/s (with data loading, AdamW, EMA), sampling evaluations/s, GFLOP/s, % of peak, peak
 *     RSS, and the PyTorch peer on the same configurations when /usr/bin/python3 has torch, with
 *     the ratios against the targets (fp32 1.25x PyTorch, bf16 2x); all medians. --preset, --threads, --precision,
 *     --batch restrict it; --rounds R alternates ours and torch R times and keeps the best of each;
 *     --profile adds the op-by-op profile of one 2-thread training step per preset and precision.
 *     About 6 minutes on 2 quiet cores (--quick: about 2; --rounds 2: about 12).
 *   bench_unet --sweep [--quick] [--torch]
 *     how cost grows with batch (8..128 at 28 px) and image size (28, 32, 64 px at batch 32) for
 *     the fmnist-small U-Net at 2 threads, fp32 and bf16. About 3 minutes.
 *   bench_unet --peaks [--quick] [--threads T]: the machine peaks alone, at 1..T threads.
 */
#include "common.h"
#include "conv3x3.h"
#include "gemm.h"
#include "ops.h"
#include "unet.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "peak.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* A nominal fp32 peak for 2 cores, the reference of the single-run '% peak' column and of %ref: 2 cores
 * x 2 FMA pipes x 16 lanes x 2 flops x ~3.65 GHz (the AMD Zen 5 this benchmark was first run on). The
 * matrix's %peak column uses the peaks it measures instead. */
#define PEAK_GFLOPS 234.0

typedef struct {
    const char *preset, *torch_script;
    int batch, threads, steps, warmup, profile, torch, rounds, train, sample;
    int n_prec;                /* precisions to run, in order */
    df_precision prec[2];
    int image_size;            /* 0: the preset's */
    const char *data;          /* NULL: a fixed batch; else a dataset spec or "synthetic" */
    double seconds;            /* time each phase for at least this long */
    int child;                 /* run by --matrix/--sweep: JSON lines (and a profile) only, no table */
} bench_opts;

#define MAX_TIMED 2000 /* timed steps per phase at most */

typedef struct {
    df_unet *net;
    df_schedule sched;
    int n, dim;
    float *params, *grads, *m, *v, *ema;
    size_t nparam;
    float *x0, *eps, *xt, *out, *dout;
    int *t;
    df_adamw_params opt;
    long step;
    const df_dataset *ds;      /* NULL: x0 stays the same batch */
    int *idx;
} bench_state;

static double peak_rss_mib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;  /* Linux: KiB */
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The preset at size x size pixels, attention kept at the same levels (a level's resolution is
 * sample_size >> level). DF_OK or the validation error. */
static df_status resize_config(df_unet_config *c, int size) {
    for (int a = 0; a < c->n_attn; a++) {
        int level = 0;
        while (level < c->n_levels && (c->sample_size >> level) != c->attn_resolutions[a]) level++;
        if (level == c->n_levels) return df_fail(DF_ERR_ARG, "attention at %d px is at no level", c->attn_resolutions[a]);
        c->attn_resolutions[a] = size >> level;
    }
    c->sample_size = size;
    return df_unet_config_validate(c);
}

/* n random images of c x hw x hw pixels in a df_dataset (df_dataset_free frees it). */
static df_status synthetic_dataset(df_dataset *ds, int n, int c, int hw) {
    memset(ds, 0, sizeof *ds);
    const size_t bytes = (size_t)n * c * hw * hw;
    ds->pixels = df_alloc(bytes, "synthetic pixels");
    ds->labels = df_alloc(sizeof(int) * (size_t)n, "synthetic labels");
    if (!ds->pixels || !ds->labels) return DF_ERR_NOMEM;
    uint32_t r = 2463534242u;
    for (size_t i = 0; i < bytes; i++) {
        r ^= r << 13, r ^= r >> 17, r ^= r << 5;
        ds->pixels[i] = (uint8_t)(r >> 24);
    }
    for (int i = 0; i < n; i++) ds->labels[i] = -1;
    ds->n = n, ds->c = c, ds->h = ds->w = hw;
    snprintf(ds->name, sizeof ds->name, "synthetic:%d", n);
    return DF_OK;
}

static int state_init(bench_state *b, const df_unet_config *c, int n) {
    memset(b, 0, sizeof *b);
    b->n = n;
    b->dim = c->in_channels * c->sample_size * c->sample_size;
    df_schedule_params sp;
    df_schedule_params_init(&sp);
    if (df_schedule_new(&sp, &b->sched) != DF_OK) return 1;
    if (df_unet_new(c, n, 1, &b->net) != DF_OK) return 1;
    b->nparam = df_unet_param_floats(b->net);
    size_t pb = b->nparam * sizeof(float), xb = (size_t)n * b->dim * sizeof(float);
    b->params = df_alloc(pb, "params");
    b->grads = df_calloc(pb, "grads");
    b->m = df_calloc(pb, "adam m");
    b->v = df_calloc(pb, "adam v");
    b->ema = df_alloc(pb, "ema");
    b->x0 = df_alloc(xb, "x0");
    b->eps = df_alloc(xb, "eps");
    b->xt = df_alloc(xb, "xt");
    b->out = df_alloc(xb, "out");
    b->dout = df_alloc(xb, "dout");
    b->t = df_alloc((size_t)n * sizeof(int), "t");
    b->idx = df_alloc((size_t)n * sizeof(int), "idx");
    if (!b->params || !b->grads || !b->m || !b->v || !b->ema || !b->x0 || !b->eps || !b->xt || !b->out ||
        !b->dout || !b->t || !b->idx)
        return 1;
    df_unet_init(b->net, b->params, 1);
    /* Non-zero zero-initialised layers, so the timed arithmetic is not on a trivial network. */
    float *noise = df_alloc(pb, "noise");
    if (!noise) return 1;
    df_randn(7, 0, 0, 0, noise, b->nparam);
    for (size_t i = 0; i < b->nparam; i++) b->params[i] += 0.01f * noise[i];
    df_free(noise);
    memcpy(b->ema, b->params, pb);
    df_randu(2, 0, 0, 0, b->x0, (size_t)n * b->dim);
    for (size_t i = 0; i < (size_t)n * b->dim; i++) b->x0[i] = 2.0f * b->x0[i] - 1.0f;
    df_adamw_params_init(&b->opt);
    return 0;
}

static void state_free(bench_state *b) {
    df_unet_free(b->net);
    df_schedule_free(&b->sched);
    df_free(b->params); df_free(b->grads); df_free(b->m); df_free(b->v); df_free(b->ema);
    df_free(b->x0); df_free(b->eps); df_free(b->xt); df_free(b->out); df_free(b->dout); df_free(b->t);
    df_free(b->idx);
}

/* One training step as the training loop does it; returns the loss. */
static double train_step(bench_state *b) {
    const size_t d = (size_t)b->dim;
    b->step++;
    if (b->ds) { /* data loading: a random batch of the dataset, gathered and scaled to [-1, 1] */
        for (int j = 0; j < b->n; j++)
            b->idx[j] = (int)df_rand_below(11, DF_STREAM_TRAIN_DATA, (uint32_t)b->step, 0, (uint32_t)j, (uint32_t)b->ds->n);
        df_dataset_batch(b->ds, b->idx, NULL, b->n, b->x0);
    }
    float u[64];
    for (int i = 0; i < b->n; i += 64) {
        int k = b->n - i < 64 ? b->n - i : 64;
        df_randu(3, 1, (uint32_t)b->step, (uint32_t)i, u, (size_t)k);
        for (int j = 0; j < k; j++) b->t[i + j] = (int)(u[j] * b->sched.T) % b->sched.T;
    }
    df_randn(3, 2, (uint32_t)b->step, 0, b->eps, (size_t)b->n * d);
    for (int i = 0; i < b->n; i++) df_q_sample(&b->sched, b->t[i], b->x0 + i * d, b->eps + i * d, b->xt + i * d, d);
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, b->out, 1, 5, (uint32_t)b->step);
    double loss = df_loss(&b->sched, DF_PRED_EPS, DF_LOSS_SIMPLE, DF_VAR_BETA, b->n, d, b->t, b->out, b->eps,
                          b->dout);
    memset(b->grads, 0, b->nparam * sizeof(float));
    df_unet_backward(b->net, b->params, b->grads, b->n, b->dout);
    double norm = df_grad_norm(b->grads, b->nparam);
    double scale = norm > b->opt.grad_clip ? b->opt.grad_clip / norm : 1.0;
    df_adamw_step(&b->opt, b->step, b->params, b->grads, b->m, b->v, b->nparam, scale);
    df_ema_update(b->ema, b->params, b->nparam, df_ema_decay_at(0.999, b->step));
    return loss;
}

static void sample_eval(bench_state *b, int i) {
    for (int j = 0; j < b->n; j++) b->t[j] = 999 - (i % 1000);
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, b->out, 0, 0, 0);
}

/* Output finite, and a training forward equal to an inference forward when dropout is off. */
static int validate(bench_state *b, const df_unet_config *c) {
    const size_t total = (size_t)b->n * b->dim;
    memcpy(b->xt, b->x0, total * sizeof(float));
    for (int j = 0; j < b->n; j++) b->t[j] = (j * 37) % 1000;
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, b->out, 0, 0, 0);
    float *ref = df_alloc(total * sizeof(float), "ref");
    if (!ref) return 1;
    memcpy(ref, b->out, total * sizeof(float));
    double worst = 0, scale = 0;
    int finite = 1;
    for (size_t i = 0; i < total; i++) finite &= isfinite(ref[i]) != 0;
    if (c->dropout == 0.0f) {
        df_unet_forward(b->net, b->params, b->n, b->xt, b->t, b->out, 1, 0, 0);
        for (size_t i = 0; i < total; i++) {
            worst = fmax(worst, fabs((double)b->out[i] - ref[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
    }
    df_free(ref);
    if (!finite) {
        fprintf(stderr, "bench_unet: non-finite network output\n");
        return 1;
    }
    /* same code path up to the memory plan: anything but tiny float noise is a bug */
    if (worst > 1e-5 * fmax(scale, 1.0)) {
        fprintf(stderr, "bench_unet: training forward != inference forward (max abs diff %.3g)\n", worst);
        return 1;
    }
    return 0;
}

typedef struct {
    double train_min, train_med, sample_min, sample_med, rss;
} our_result;

/* Runs `step` (i = 0, 1, ...) until it has run at least o->steps times and o->seconds seconds
 * (and no more than MAX_TIMED times unless o->steps is larger); times[] gets each run's seconds. Returns the count. */
static int timed_runs(const bench_opts *o, bench_state *b, int train, double *times, double *loss) {
    int n = 0;
    const int cap = o->steps > MAX_TIMED ? o->steps : MAX_TIMED;
    const double start = df_time();
    while (n < cap && (n < o->steps || df_time() - start < o->seconds)) {
        double t0 = df_time();
        if (train) *loss = train_step(b);
        else sample_eval(b, n);
        times[n++] = df_time() - t0;
    }
    return n;
}

/* One profiled training step (train=1) or network evaluation (0), after the timed ones (warm caches):
 * op by op, then by family. */
static void print_profile(bench_state *b, int train, const char *pn, int batch) {
    df_ops_profile_reset();
    df_ops_profile_enable(1);
    double t0 = df_time();
    if (train) train_step(b); else sample_eval(b, 0);
    double total = df_time() - t0;
    df_ops_profile_enable(0);
    int cnt = df_ops_profile_count();
    int *order = malloc(sizeof(int) * (size_t)cnt);
    double sum = 0;
    for (int i = 0; i < cnt; i++) order[i] = i;
    for (int i = 0; i < cnt; i++)  /* selection sort by time, descending; a few dozen keys */
        for (int j = i + 1; j < cnt; j++) {
            long ci, cj;
            double si, sj;
            df_ops_profile_get(order[i], &ci, &si);
            df_ops_profile_get(order[j], &cj, &sj);
            if (sj > si) { int tmp = order[i]; order[i] = order[j]; order[j] = tmp; }
        }
    printf("\nprofile of one %s %s (batch %d): %.2f ms\n%-36s %6s %9s %6s\n", pn, train ? "training step" : "network evaluation", batch,
           total * 1e3, "op", "calls", "ms", "%");
    for (int i = 0; i < cnt; i++) {
        long calls;
        double s;
        const char *key = df_ops_profile_get(order[i], &calls, &s);
        sum += s;
        printf("%-36s %6ld %9.3f %6.1f\n", key, calls, s * 1e3, 100 * s / total);
    }
    printf("%-36s %6s %9.3f %6.1f\n", "(outside ops: loss, optimiser, glue)", "", (total - sum) * 1e3,
           100 * (total - sum) / total);
    /* totals per op family (the key's first word) */
    printf("\nby family:\n");
    char fam[32][24];
    double famt[32];
    int nf = 0;
    for (int i = 0; i < cnt; i++) {
        long calls;
        double s;
        const char *key = df_ops_profile_get(i, &calls, &s);
        char f[24];
        int k = 0;
        while (key[k] && key[k] != ' ' && k < 23) { f[k] = key[k]; k++; }
        f[k] = 0;
        if (strncmp(key, "conv", 4) == 0) snprintf(f, sizeof f, "%.7s %s", key, strstr(key, "fwd") ? "fwd" : "bwd");
        int j = 0;
        while (j < nf && strcmp(fam[j], f)) j++;
        if (j == nf && nf < 32) { strcpy(fam[nf], f); famt[nf++] = 0; }
        if (j < nf) famt[j] += s;
    }
    for (int j = 0; j < nf; j++) printf("  %-22s %9.3f ms %6.1f%%\n", fam[j], famt[j] * 1e3, 100 * famt[j] / total);
    free(order);
}

static int run_ours(const bench_opts *o, const df_unet_config *c, const df_dataset *ds, df_precision prec,
                    our_result *r) {
    bench_state b;
    double flops = df_unet_forward_flops(c);
    const char *pn = df_precision_name(prec);
    if (state_init(&b, c, o->batch)) {
        fprintf(stderr, "bench_unet: setup failed: %s\n", df_last_error());
        return 1;
    }
    b.net->precision = prec;
    if (validate(&b, c)) return 1;
    b.ds = ds;
    const char *data = ds ? ds->name : "fixed";
    double *times = malloc(sizeof(double) * (size_t)(MAX_TIMED > o->steps ? MAX_TIMED : o->steps));
    r->train_min = r->train_med = r->sample_min = r->sample_med = NAN;
    if (o->train) {
        for (int i = 0; i < o->warmup; i++) train_step(&b);
        double loss = 0;
        int n = timed_runs(o, &b, 1, times, &loss);
        r->train_med = median(times, n);
        r->train_min = times[0];
        printf("{\"impl\": \"diffuse\", \"phase\": \"train\", \"precision\": \"%s\", \"preset\": \"%s\", \"batch\": %d, "
               "\"threads\": %d, \"steps\": %d, \"step_s_min\": %.5f, \"step_s_median\": %.5f, \"img_per_s\": %.2f, "
               "\"gflops\": %.2f, \"loss\": %.5f, \"img_per_s_median\": %.2f, \"gflops_median\": %.2f, "
               "\"image_size\": %d, \"gflop_per_img_fwd\": %.5f, \"data\": \"%s\", \"peak_rss_mib\": %.1f}\n",
               pn, o->preset, o->batch, o->threads, n, r->train_min, r->train_med, o->batch / r->train_min,
               3 * flops * o->batch / r->train_min * 1e-9, loss, o->batch / r->train_med,
               3 * flops * o->batch / r->train_med * 1e-9, c->sample_size, flops * 1e-9, data, peak_rss_mib());
        fflush(stdout);
    }
    if (o->sample) {
        for (int i = 0; i < o->warmup; i++) sample_eval(&b, i);
        int n = timed_runs(o, &b, 0, times, NULL);
        r->sample_med = median(times, n);
        r->sample_min = times[0];
        printf("{\"impl\": \"diffuse\", \"phase\": \"sample\", \"precision\": \"%s\", \"preset\": \"%s\", \"batch\": %d, "
               "\"threads\": %d, \"evals\": %d, \"eval_s_min\": %.5f, \"eval_s_median\": %.5f, \"evals_per_s\": %.2f, "
               "\"gflops\": %.2f, \"evals_per_s_median\": %.2f, \"gflops_median\": %.2f, \"image_size\": %d, "
               "\"gflop_per_img_fwd\": %.5f, \"peak_rss_mib\": %.1f}\n",
               pn, o->preset, o->batch, o->threads, n, r->sample_min, r->sample_med, o->batch / r->sample_min,
               flops * o->batch / r->sample_min * 1e-9, o->batch / r->sample_med, flops * o->batch / r->sample_med * 1e-9,
               c->sample_size, flops * 1e-9, peak_rss_mib());
        fflush(stdout);
    }
    r->rss = peak_rss_mib();
    if (o->profile && o->train) print_profile(&b, 1, pn, o->batch);
    if (o->profile && o->sample) print_profile(&b, 0, pn, o->batch);
    free(times);
    state_free(&b);
    return 0;
}

/* Runs the PyTorch peer; fills its images/s (train) and evals/s (sample) and RSS. 1 on failure. */
static int run_torch(const bench_opts *o, const df_unet_config *c, double *train_ips, double *sample_eps,
                     double *rss) {
    const char *cfg = strcmp(o->preset, "ddpm-cifar10") == 0 ? "cifar" : "small";
    char cmd[1024], size[64] = "";
    if (o->image_size) snprintf(size, sizeof size, " --image-size %d --attn-res %d", c->sample_size, c->attn_resolutions[0]);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s bench --config %s --threads %d --train-batch %d --sample-batch %d --steps %d "
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

/* ---------------------------------------------------------------- --peaks, --matrix, --sweep
 *
 * --matrix and --sweep run every configuration as a child process (this program again, with
 * --child and the single-configuration flags; the PyTorch peer likewise), read its JSON lines from
 * a pipe and echo them, so that each configuration's peak RSS is its own. A forked child inherits
 * its parent's resident pages into its peak RSS (the copied address space counts until exec), so
 * the parent stays small: even the machine peaks run in a child (--peaks). */

#define NOMINAL_PEAK_PER_CORE (PEAK_GFLOPS / 2) /* the nominal fp32 peak is for 2 cores */
#define RSS_TARGET 0.5                       /* ours / torch peak RSS, at most */
#define PYTHON "/usr/bin/python3"

static char g_self[4096]; /* this program, for the children */

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

static void usage(void) {
    fprintf(stderr, "usage: bench_unet [--preset fmnist-small|ddpm-cifar10] [--batch B] [--threads T] [--steps S]\n"
                    "                  [--warmup W] [--precision fp32|bf16|both] [--profile] [--torch] [--rounds R]\n"
                    "                  [--torch-script PATH] [--no-train] [--no-sample] [--image-size N]\n"
                    "                  [--data SPEC|synthetic] [--seconds S] [--quick] [--openblas]\n"
                    "       bench_unet --matrix [--quick] [--no-torch] [--rounds R] [--profile] [--data SPEC]\n"
                    "                  [--preset P] [--threads T] [--precision fp32|bf16|both] [--batch B]\n"
                    "       bench_unet --sweep [--quick] [--torch] [--threads T] [--precision fp32|bf16|both]\n"
                    "       bench_unet --peaks [--quick] [--threads T]\n");
}

int main(int argc, char **argv) {
    bench_opts o = {"fmnist-small", DIFFUSE_BENCH_DIR "/torch_ddpm.py", 64, 2, 10, 2, 0, 0, 1, 1, 1,
                    1, {DF_PRECISION_FP32, DF_PRECISION_BF16}, 0, NULL, 0, 0};
    int mode = 0; /* 0 one configuration, 1 --matrix, 2 --sweep, 3 --peaks */
    /* DIFFUSE_NO_DIRECT=1: 3x3 convs on im2col + GEMM (conv3x3.h), to time the two paths */
    const char *no_direct = getenv("DIFFUSE_NO_DIRECT");
    if (no_direct && *no_direct == '1') df_conv3x3_force_off(1);
    int quick = 0, no_torch = 0, set_preset = 0, set_threads = 0, set_batch = 0, set_prec = 0, set_rounds = 0;
    int set_steps = 0, set_warmup = 0, openblas = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--preset") && v) o.preset = argv[++i], set_preset = 1;
        else if (!strcmp(a, "--batch") && v) o.batch = atoi(argv[++i]), set_batch = 1;
        else if (!strcmp(a, "--threads") && v) o.threads = atoi(argv[++i]), set_threads = 1;
        else if (!strcmp(a, "--openblas")) df_gemm_f32_force_fallback(1), openblas = 1;  /* convs on cblas_sgemm, for A/B runs */
        else if (!strcmp(a, "--steps") && v) o.steps = atoi(argv[++i]), set_steps = 1;
        else if (!strcmp(a, "--warmup") && v) o.warmup = atoi(argv[++i]), set_warmup = 1;
        else if (!strcmp(a, "--rounds") && v) o.rounds = atoi(argv[++i]), set_rounds = 1;
        else if (!strcmp(a, "--torch-script") && v) o.torch_script = argv[++i];
        else if (!strcmp(a, "--profile")) o.profile = 1;
        else if (!strcmp(a, "--torch")) o.torch = 1;
        else if (!strcmp(a, "--no-torch")) no_torch = 1;
        else if (!strcmp(a, "--no-train")) o.train = 0;
        else if (!strcmp(a, "--no-sample")) o.sample = 0;
        else if (!strcmp(a, "--image-size") && v) o.image_size = atoi(argv[++i]);
        else if (!strcmp(a, "--data") && v) o.data = argv[++i];
        else if (!strcmp(a, "--seconds") && v) o.seconds = atof(argv[++i]);
        else if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--child")) o.child = 1;
        else if (!strcmp(a, "--matrix")) mode = 1;
        else if (!strcmp(a, "--sweep")) mode = 2;
        else if (!strcmp(a, "--peaks")) mode = 3;
        else if (!strcmp(a, "--precision") && v) {
            i++;
            set_prec = 1;
            o.prec[0] = DF_PRECISION_FP32, o.prec[1] = DF_PRECISION_BF16, o.n_prec = 2;
            if (strcmp(v, "both") && df_precision_from_name(v, &o.prec[0]) == DF_OK) o.n_prec = 1;
            else if (strcmp(v, "both")) { usage(); return 2; }
        }
        else { usage(); return 2; }
    }
    if (quick && mode == 0) {
        if (!set_steps) o.steps = 1;
        if (!set_warmup) o.warmup = 0;
    }
    if (mode == 3) return run_peaks(quick, o.threads < 1 ? 1 : o.threads);
    if (mode == 1 || mode == 2) {
        ssize_t len = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
        if (len > 0) g_self[len] = 0;
        else snprintf(g_self, sizeof g_self, "%s", argv[0]);
        orch_opts oo = {quick, !no_torch, set_rounds ? o.rounds : 1, o.profile, openblas, o.torch_script, o.data,
                        -1, set_threads ? o.threads : 0, set_batch ? o.batch : 0, 2,
                        {DF_PRECISION_FP32, DF_PRECISION_BF16}, o.torch};
        if (set_prec) {
            oo.n_prec = o.n_prec;
            oo.prec[0] = o.prec[0], oo.prec[1] = o.prec[1];
        }
        if (oo.rounds < 1 || (set_batch && o.batch < 1)) { usage(); return 2; }
        if (mode == 2) return run_sweep(&oo, set_threads ? o.threads : 2);
        if (set_threads && (o.threads < 1 || o.threads > MX_MAX_T)) {
            fprintf(stderr, "bench_unet: --matrix measures 1..%d threads\n", MX_MAX_T);
            return 2;
        }
        if (set_preset) {
            for (int p = 0; p < MX_N; p++)
                if (!strcmp(o.preset, MX[p].preset)) oo.only_preset = p;
            if (oo.only_preset < 0) {
                fprintf(stderr, "bench_unet: --matrix knows the presets fmnist-small and ddpm-cifar10\n");
                return 2;
            }
        }
        return run_matrix(&oo);
    }
    if (o.batch < 1 || o.threads < 1 || o.steps < 1 || o.warmup < 0 || o.rounds < 1) { usage(); return 2; }
    df_unet_config c;
    if (df_unet_preset(o.preset, &c) != DF_OK || (o.image_size && resize_config(&c, o.image_size) != DF_OK)) {
        fprintf(stderr, "bench_unet: %s\n", df_last_error());
        return 2;
    }
#ifdef _OPENMP
    omp_set_num_threads(o.threads);
#endif
    openblas_set_num_threads(o.threads);
    df_dataset ds = {0}, *dsp = NULL;
    if (o.data) {
        df_status st = !strcmp(o.data, "synthetic") ? synthetic_dataset(&ds, 1024, c.in_channels, c.sample_size)
                                                    : df_dataset_load(o.data, c.in_channels, c.sample_size, &ds);
        if (st != DF_OK) {
            fprintf(stderr, "bench_unet: --data %s: %s\n", o.data, df_last_error());
            return 2;
        }
        dsp = &ds;
    }
    const double flops = df_unet_forward_flops(&c);
    our_result best[2];
    double t_train = 0, t_sample = 0, t_rss = NAN;
    int have_torch = 0;
    for (int p = 0; p < o.n_prec; p++) best[p] = (our_result){INFINITY, INFINITY, INFINITY, INFINITY, 0};
    for (int r = 0; r < o.rounds; r++) {
        for (int p = 0; p < o.n_prec; p++) {
            our_result cur;
            if (run_ours(&o, &c, dsp, o.prec[p], &cur)) return 1;
            best[p].train_min = fmin(best[p].train_min, cur.train_min);
            best[p].sample_min = fmin(best[p].sample_min, cur.sample_min);
            best[p].sample_med = fmin(best[p].sample_med, cur.sample_med);
            best[p].rss = fmax(best[p].rss, cur.rss);
        }
        o.profile = 0;  /* profile once (each precision) */
        if (o.torch) {
            double ti, se, rss;
            if (run_torch(&o, &c, &ti, &se, &rss)) {
                fprintf(stderr, "bench_unet: the torch peer failed (%s)\n", o.torch_script);
            } else {
                t_train = fmax(t_train, ti);
                t_sample = fmax(t_sample, se);
                t_rss = rss;
                have_torch = 1;
            }
        }
    }
    df_dataset_free(&ds);
    if (o.child) return 0; /* --matrix/--sweep print their own table */
    printf("\n%s, batch %d, %d threads, %.4f GFLOP/image forward (best of %d x %d)\n", o.preset, o.batch, o.threads,
           flops * 1e-9, o.rounds, o.steps);
    printf("%-8s %-5s %12s %10s %8s %12s %10s\n", "phase", "prec", "ours img/s", "GFLOP/s", "% peak", "torch img/s",
           "ratio");
    for (int p = 0; p < o.n_prec; p++) {
        const char *pn = df_precision_name(o.prec[p]);
        if (o.train) {
            double ips = o.batch / best[p].train_min, gf = 3 * flops * ips * 1e-9;
            printf("%-8s %-5s %12.2f %10.1f %8.1f", "train", pn, ips, gf, 100 * gf / PEAK_GFLOPS);
            if (have_torch) printf(" %12.2f %10.3f", t_train, ips / t_train);
            printf("\n");
        }
        if (o.sample) {
            double eps = o.batch / best[p].sample_min, gf = flops * eps * 1e-9;
            printf("%-8s %-5s %12.2f %10.1f %8.1f", "sample", pn, eps, gf, 100 * gf / PEAK_GFLOPS);
            /* torch prints only the median evaluation time: compare medians */
            if (have_torch) printf(" %12.2f %10.3f (medians)", t_sample, (o.batch / best[p].sample_med) / t_sample);
            printf("\n");
        }
    }
    /* one process runs every precision: the peak RSS is the largest of all runs */
    printf("peak RSS %.1f MiB", best[o.n_prec - 1].rss);
    if (have_torch) printf(" (torch %.1f MiB, ratio %.3f)", t_rss, best[o.n_prec - 1].rss / t_rss);
    printf("\n");
    return 0;
}
