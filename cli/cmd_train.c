/* cmd_train.c: `diffuse train`. */
#include "cli.h"
#include "image.h"
#include "toydata.h"
#include "train.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct {
    df_points *points;
    int n_plot;
    const char *out_dir;
} toy_ctx;

static void toy_batch(void *ctx, uint64_t seed, long step, int n, float *x0) {
    toy_ctx *c = ctx;
    df_points_draw(c->points, seed, (uint32_t)step, n, x0);
}

/* Draws n samples from the model's EMA weights with the note's ancestral sampler. */
static df_status sample_points(df_model *m, int n, uint64_t seed, float *x) {
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.seed = seed;
    sp.batch = m->max_batch;
    m->use_ema = 1;
    return df_sample(&m->schedule, m->diff.pred, &sp, df_model_predict, m, n, m->dim, 0, x, NULL, NULL);
}

/* samples.png: model samples (blue) over fresh data (grey). */
static df_status toy_snapshot(void *ctx, df_model *m, long step) {
    toy_ctx *c = ctx;
    int n = c->n_plot;
    float *data = malloc(sizeof(float) * 2 * (size_t)n), *x = malloc(sizeof(float) * 2 * (size_t)n);
    df_status st = DF_OK;
    if (!data || !x) st = df_fail(DF_ERR_NOMEM, "out of memory for the sample plot");
    if (st == DF_OK) {
        df_points_draw(c->points, m->seed ^ 0x5eedull, 0xfffffff0u, n, data);
        st = sample_points(m, n, 1234, x);
    }
    if (st == DF_OK) {
        char path[4096], title[128];
        snprintf(path, sizeof path, "%s/samples.png", c->out_dir);
        snprintf(title, sizeof title, "%s step %ld: data grey, samples blue", c->points->name, step);
        st = df_plot_scatter(path, data, n, x, n, title);
    }
    free(data);
    free(x);
    return st;
}

typedef struct {
    int batch;
} progress_ctx;

static void on_progress(void *ctx, const df_train_progress *p) {
    progress_ctx *c = ctx;
    char extra[160];
    snprintf(extra, sizeof extra, "loss %.4f %.1f it/s %.0f ex/s", p->loss_avg, p->steps_per_s, p->examples_per_s);
    (void)c;
    cli_progress_bar("train", p->step, p->total_steps, p->elapsed, p->final ? 0 : p->eta, extra, p->final);
}

/* loss.png from loss.csv: raw loss and a running mean. */
static df_status plot_loss_curve(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return df_fail(DF_ERR_IO, "cannot read %s", path);
    size_t cap = 1024, n = 0;
    double *x = malloc(cap * sizeof(double)), *y = malloc(cap * sizeof(double));
    char line[512];
    while (x && y && fgets(line, sizeof line, f)) {
        long step;
        double loss;
        if (sscanf(line, "%ld,%lf", &step, &loss) != 2) continue;
        if (n == cap) {
            cap *= 2;
            x = realloc(x, cap * sizeof(double));
            y = realloc(y, cap * sizeof(double));
            if (!x || !y) break;
        }
        x[n] = (double)step;
        y[n++] = loss;
    }
    fclose(f);
    df_status st = DF_OK;
    double *smooth = x && y ? malloc((n ? n : 1) * sizeof(double)) : NULL;
    if (!smooth) st = df_fail(DF_ERR_NOMEM, "out of memory plotting the loss");
    else if (n > 0) {
        /* exponential moving average with a window of ~2% of the run */
        double a = 1.0 / (1.0 + n / 50.0), s = y[0];
        for (size_t i = 0; i < n; i++) smooth[i] = s = (1 - a) * s + a * y[i];
        snprintf(path, sizeof path, "%s/loss.png", dir);
        st = df_plot_lines(path, x, y, (int)n, smooth, 1, "training loss (smoothed in blue)", "step", "loss");
    }
    free(x);
    free(y);
    free(smooth);
    return st;
}

int cmd_train(int argc, char **argv) {
    const char *data = "toy:8gaussians", *out = "runs/toy", *schedule = "linear", *pred = "eps", *loss = "simple",
               *var = "posterior";
    long steps = 4000, ckpt_every = 1000, snapshot_every = 0;
    double minutes = 0, lr = 1e-3, ema = 0.995, warmup = 100, grad_clip = 1.0, weight_decay = 0, beta_start = 1e-4,
           beta_end = 0.02;
    int batch = 256, timesteps = 1000, seed = 0, threads = 0, resume = 0, hidden = 128, layers = 3, n_plot = 1000,
        nan_skip = 0;
    arg_spec specs[] = {
        {"data", ARG_STRING, &data, "training data: toy:swissroll|moons|8gaussians|checkerboard or csv:FILE (default toy:8gaussians)"},
        {"out", ARG_STRING, &out, "output directory (default runs/toy)"},
        {"steps", ARG_LONG, &steps, "train until this many optimiser steps in total (default 4000)"},
        {"minutes", ARG_DOUBLE, &minutes, "wall-time budget in minutes (0 = none)"},
        {"batch", ARG_INT, &batch, "batch size (default 256)"},
        {"lr", ARG_DOUBLE, &lr, "AdamW learning rate (default 1e-3)"},
        {"warmup", ARG_DOUBLE, &warmup, "learning-rate warm-up steps (default 100)"},
        {"grad-clip", ARG_DOUBLE, &grad_clip, "clip the gradient norm to this (0 = off, default 1)"},
        {"weight-decay", ARG_DOUBLE, &weight_decay, "AdamW decoupled weight decay (default 0)"},
        {"ema", ARG_DOUBLE, &ema, "EMA decay of the weights (default 0.995, with warm-up)"},
        {"schedule", ARG_STRING, &schedule, "noise schedule: linear|cosine|exponential|quadratic|sigmoid"},
        {"timesteps", ARG_INT, &timesteps, "diffusion steps T (default 1000)"},
        {"beta-start", ARG_DOUBLE, &beta_start, "first beta (default 1e-4)"},
        {"beta-end", ARG_DOUBLE, &beta_end, "last beta (default 0.02)"},
        {"pred", ARG_STRING, &pred, "what the network predicts: eps|x0|mean|v (default eps)"},
        {"loss", ARG_STRING, &loss, "simple (unweighted MSE) or vlb (the note's KL weights)"},
        {"var", ARG_STRING, &var, "reverse variance: posterior (the note's sigma_q^2) or beta"},
        {"hidden", ARG_INT, &hidden, "MLP width (default 128)"},
        {"layers", ARG_INT, &layers, "MLP hidden layers (default 3)"},
        {"seed", ARG_INT, &seed, "random seed (default 0)"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {"ckpt-every", ARG_LONG, &ckpt_every, "checkpoint every N steps (default 1000)"},
        {"snapshot-every", ARG_LONG, &snapshot_every, "sample plot every N steps (default: at the end)"},
        {"plot-n", ARG_INT, &n_plot, "points in the sample plot (default 1000)"},
        {"nan-skip", ARG_INT, &nan_skip, "skip up to N non-finite steps instead of stopping (default 0)"},
        {"resume", ARG_FLAG, &resume, "continue the run in --out from its last checkpoint"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("train", "usage: diffuse train --data toy:8gaussians --out runs/toy [options]", specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);

    df_status st;
    df_diffusion_config dc;
    df_diffusion_config_init(&dc);
    if ((st = df_schedule_from_name(schedule, &dc.schedule.kind)) || (st = df_pred_from_name(pred, &dc.pred)) ||
        (st = df_loss_from_name(loss, &dc.loss)) || (st = df_var_from_name(var, &dc.var)))
        return cli_error("train", st);
    dc.schedule.T = timesteps;
    dc.schedule.beta_start = beta_start;
    dc.schedule.beta_end = beta_end;
    if (batch < 1 || batch > 1 << 20) return cli_error("train", df_fail(DF_ERR_ARG, "--batch must be in 1..1048576"));
    if (n_plot < 1) return cli_error("train", df_fail(DF_ERR_ARG, "--plot-n must be positive"));
    if (steps <= 0 && minutes <= 0) return cli_error("train", df_fail(DF_ERR_ARG, "give --steps N or --minutes M"));

    df_points points;
    if ((st = df_points_open(data, &points))) return cli_error("train", st);
    df_model m;
    if (resume) {
        st = df_train_load_checkpoint(&m, out, batch);
        if (st == DF_OK) fprintf(stderr, "resuming %s at step %ld\n", out, m.step);
    } else {
        df_mlp_config mc;
        df_mlp_config_init(&mc);
        mc.hidden = hidden;
        mc.layers = layers;
        st = df_model_new_mlp(&m, &mc, &dc, batch, 1, (uint64_t)seed);
    }
    if (st != DF_OK) {
        df_points_free(&points);
        return cli_error("train", st);
    }
    snprintf(m.data, sizeof m.data, "%s", data);

    toy_ctx tc = {&points, n_plot, out};
    progress_ctx pc = {batch};
    df_train_opts o;
    df_train_opts_init(&o);
    o.steps = steps;
    o.minutes = minutes;
    o.batch = batch;
    o.opt.lr = lr;
    o.opt.warmup_steps = (long)warmup;
    o.opt.grad_clip = grad_clip;
    o.opt.weight_decay = weight_decay;
    o.ema_decay = ema;
    o.seed = resume ? m.seed : (uint64_t)seed;
    o.out_dir = out;
    o.ckpt_every = ckpt_every;
    o.snapshot_every = snapshot_every;
    o.report_every = steps > 0 && steps < 200 ? 1 : 50;
    o.stop = &stop_requested;
    o.nan_skip = nan_skip;
    o.batch_fn = toy_batch;
    o.batch_ctx = &tc;
    o.progress = on_progress;
    o.progress_ctx = &pc;
    o.snapshot = toy_snapshot;
    o.snapshot_ctx = &tc;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    char desc[512];
    df_model_describe(&m, desc, sizeof desc);
    fprintf(stderr, "model: %s\ndata: %s\n", desc, data);
    st = df_train(&m, &o, resume);
    if (st == DF_OK || st == DF_ERR_INTERRUPTED) {
        df_status st2 = plot_loss_curve(out);
        if (st == DF_OK) st = st2;
    }
    if (st == DF_OK)
        fprintf(stderr, "wrote %s/model.safetensors, %s/samples.png, %s/loss.csv, %s/loss.png\n", out, out, out, out);
    df_model_free(&m);
    df_points_free(&points);
    return st == DF_OK ? 0 : cli_error("train", st);
}
