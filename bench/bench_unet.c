/* bench_unet.c: training and sampling throughput of the U-Net (unet.h), against PyTorch.
 *
 * What it is: the program bench_unet: main, its flags, and the measurement of one configuration
 * in this process (build the U-Net, check it, time training steps and network evaluations, the
 * op-by-op profile). What it is not: it starts no other process and prints no comparison table:
 * the PyTorch peer runs (--torch), --matrix and --sweep with their child processes and tables, and
 * the machine peaks (--peaks) are in orchestrate.h, a part of this program included once below.
 *
 * A program, not a test. For a preset and batch it times
 *   train:  one full training step: q_sample of a random batch, forward, simple MSE loss, backward,
 *           gradient norm, AdamW and EMA (what the training loop does per step);
 *   sample: one network evaluation (forward, training=0), what a sampler step costs;
 *   guided (--guided, instead): classifier-free guidance's step (df_guided_predict, scale 3) against
 *           the conditional step alone (scale 1), on a 10-class copy of the preset;
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
 * that its peak RSS is its own; see orchestrate.h):
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
#define BENCH_UNET_C 1 /* orchestrate.h checks that it is included here */
#include "common.h"
#include "conv3x3.h"
#include "gemm.h"
#include "ops.h"
#include "unet.h"
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- one configuration, in this process */

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
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, NULL, b->out, 1, 5, (uint32_t)b->step);
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
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, NULL, b->out, 0, 0, 0);
}

/* Output finite, and a training forward equal to an inference forward when dropout is off. */
static int validate(bench_state *b, const df_unet_config *c) {
    const size_t total = (size_t)b->n * b->dim;
    memcpy(b->xt, b->x0, total * sizeof(float));
    for (int j = 0; j < b->n; j++) b->t[j] = (j * 37) % 1000;
    df_unet_forward(b->net, b->params, b->n, b->xt, b->t, NULL, b->out, 0, 0, 0);
    float *ref = df_alloc(total * sizeof(float), "ref");
    if (!ref) return 1;
    memcpy(ref, b->out, total * sizeof(float));
    double worst = 0, scale = 0;
    int finite = 1;
    for (size_t i = 0; i < total; i++) finite &= isfinite(ref[i]) != 0;
    if (c->dropout == 0.0f) {
        df_unet_forward(b->net, b->params, b->n, b->xt, b->t, NULL, b->out, 1, 0, 0);
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

/* --guided: what classifier-free guidance costs a sampler step. A conditional copy of the preset
 * (10 classes and the null class) as a df_model; df_guided_predict at scale 1 (the conditional
 * prediction alone: one pass of `batch`) against scale 3 (both halves in one pass of 2 x batch,
 * then the combination), alternated `rounds` times, each side's best median kept. */
static int run_guided(const bench_opts *o, df_unet_config c, df_precision prec) {
    c.num_class_embeds = 11;
    df_diffusion_config d;
    df_diffusion_config_init(&d);
    df_model *m = NULL;
    df_guide g1, g3;
    const int n = o->batch;
    if (df_model_new_unet(&c, &d, 2 * n, 0, 1, &m) != DF_OK || df_model_set_null_class(m, 10) != DF_OK ||
        df_guide_init(&g1, m, 3, 1.0) != DF_OK || df_guide_init(&g3, m, 3, 3.0) != DF_OK) {
        fprintf(stderr, "bench_unet: --guided setup: %s\n", df_last_error());
        df_model_free(m);
        return 1;
    }
    df_model_set_precision(m, prec);
    const size_t dim = (size_t)c.in_channels * c.sample_size * c.sample_size;
    float *x = df_alloc(sizeof(float) * n * dim, "x"), *out = df_alloc(sizeof(float) * n * dim, "out");
    int *t = malloc(sizeof(int) * (size_t)n);
    double *times = malloc(sizeof(double) * (size_t)o->steps), best[2] = {INFINITY, INFINITY};
    if (!x || !out || !t || !times) return 1;
    df_randn(4, 0, 0, 0, x, (size_t)n * dim);
    for (int j = 0; j < n; j++) t[j] = 500;
    for (int r = 0; r < o->rounds; r++)
        for (int side = 0; side < 2; side++) {
            df_guide *g = side ? &g3 : &g1;
            for (int i = 0; i < o->warmup; i++) df_guided_predict(g, n, t, x, out);
            for (int i = 0; i < o->steps; i++) {
                const double t0 = df_time();
                df_guided_predict(g, n, t, x, out);
                times[i] = df_time() - t0;
            }
            best[side] = fmin(best[side], median(times, o->steps));
        }
    printf("{\"impl\": \"diffuse\", \"phase\": \"guided\", \"precision\": \"%s\", \"preset\": \"%s\", "
           "\"batch\": %d, \"threads\": %d, \"conditional_s_median\": %.5f, \"guided_s_median\": %.5f, "
           "\"ratio\": %.3f}\n", df_precision_name(prec), o->preset, n, o->threads, best[0], best[1], best[1] / best[0]);
    printf("%s %s, batch %d, %d threads: a conditional step %.2f ms, a guided step (scale 3, both halves in one "
           "batch) %.2f ms: %.3fx\n", o->preset, df_precision_name(prec), n, o->threads, 1e3 * best[0], 1e3 * best[1],
           best[1] / best[0]);
    free(times);
    free(t);
    df_free(x);
    df_free(out);
    df_guide_free(&g1);
    df_guide_free(&g3);
    df_model_free(m);
    return 0;
}

/* ---------------------------------------------------------------- the orchestration
 * The PyTorch peer, --peaks, --matrix and --sweep: built on the measurement above (bench_opts,
 * resize_config, PEAK_GFLOPS), used by main below. */
#include "orchestrate.h"

static void usage(void) {
    fprintf(stderr, "usage: bench_unet [--preset fmnist-small|ddpm-cifar10] [--batch B] [--threads T] [--steps S]\n"
                    "                  [--warmup W] [--precision fp32|bf16|both] [--profile] [--torch] [--rounds R]\n"
                    "                  [--torch-script PATH] [--no-train] [--no-sample] [--image-size N]\n"
                    "                  [--data SPEC|synthetic] [--seconds S] [--quick] [--openblas]\n"
                    "       bench_unet --matrix [--quick] [--no-torch] [--rounds R] [--profile] [--data SPEC]\n"
                    "                  [--preset P] [--threads T] [--precision fp32|bf16|both] [--batch B]\n"
                    "       bench_unet --sweep [--quick] [--torch] [--threads T] [--precision fp32|bf16|both]\n"
                    "       bench_unet --peaks [--quick] [--threads T]\n"
                    "       bench_unet --guided [--preset P] [--batch B] [--threads T] [--steps S] [--rounds R]\n"
                    "                  [--precision fp32|bf16|both]\n");
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
        else if (!strcmp(a, "--guided")) mode = 4;
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
        orch_find_self(argv[0]);
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
    if (mode == 4) {
        int rc = 0;
        for (int p = 0; p < o.n_prec && !rc; p++) rc = run_guided(&o, c, o.prec[p]);
        return rc;
    }
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
