/* cmd_train.c: `diffuse train`, for 2-D points (the MLP) and for images (the U-Net). The loop is
 * the library's (df_train); this file picks the defaults by data, feeds the batches, draws the
 * sample pictures and the loss curve, and turns SIGINT/SIGTERM into a clean stop with a checkpoint. */
#include "cli.h"
#include <math.h>
#include "dist.h"
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;
static int exit_together; /* a multi-process run stopped by a signal: see df_dist_exit_together */

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Under mpirun, Ctrl-C reaches mpirun, which sends SIGTERM to every rank and SIGKILL a grace period
 * later (odls_base_sigkill_timeout, 1 s by default). The checkpoint is written first; the final
 * sample picture would outlast the grace, so a stopped multi-process run skips it. */
static int skip_final_picture(void) { return stop_requested && df_dist_size() > 1; }

/* ---------------------------------------------------------------- 2-D points */
typedef struct {
    df_points *points;
    int n_plot;
    const char *out_dir;
} toy_ctx;

static void toy_batch(void *ctx, uint64_t seed, long step, int n, float *x0, int *labels) {
    toy_ctx *c = ctx;
    df_points_draw(c->points, seed, (uint32_t)step, n, x0, labels);
}

/* samples.png: n_plot samples of the EMA weights (the note's ancestral sampler), blue, over fresh data, grey. */
static df_status toy_snapshot(void *ctx, df_model *m, long step) {
    toy_ctx *c = ctx;
    if (skip_final_picture()) return DF_OK;
    int n = c->n_plot;
    float *data = malloc(sizeof(float) * 2 * (size_t)n), *x = malloc(sizeof(float) * 2 * (size_t)n);
    df_status st = DF_OK;
    if (!data || !x) st = df_fail(DF_ERR_NOMEM, "out of memory for the sample plot");
    if (st == DF_OK) {
        df_sample_params sp;
        df_sample_params_init(&sp);
        sp.seed = 1234;
        sp.batch = df_model_max_batch(m);
        df_model_set_use_ema(m, 1);
        df_points_draw(c->points, df_model_seed(m) ^ 0x5eedull, 0xfffffff0u, n, data, NULL);
        st = df_sample(df_model_schedule(m), df_model_diffusion(m)->pred, &sp, df_model_predict, m, n, cli_model_shape(m).dim, 0, x, NULL, NULL);
    }
    if (st == DF_OK) {
        char path[4096], title[400];
        snprintf(path, sizeof path, "%s/samples.png", c->out_dir);
        snprintf(title, sizeof title, "%.300s step %ld: data grey, samples blue", c->points->name, step);
        st = df_plot_scatter(path, data, n, x, n, title);
    }
    free(data);
    free(x);
    return st;
}

/* ---------------------------------------------------------------- images */
typedef struct {
    df_dataset *ds;
    int batch, hflip, n_grid;
    int *perm, *idx;
    uint8_t *flip;
    long perm_epoch;
    const char *out_dir;
} image_ctx;

/* The data order: epoch e is a Fisher-Yates shuffle keyed by (seed, e), so example k of the run
 * (k = (step-1)*batch + j) is a pure function of the seed: resuming continues the same order. */
static void make_perm(image_ctx *c, uint64_t seed, long epoch) {
    int n = c->ds->n;
    for (int i = 0; i < n; i++) c->perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int r = (int)df_rand_below(seed, DF_STREAM_TRAIN_DATA, (uint32_t)epoch, 1, (uint32_t)i, (uint32_t)(i + 1));
        int tmp = c->perm[i];
        c->perm[i] = c->perm[r];
        c->perm[r] = tmp;
    }
    c->perm_epoch = epoch;
}

static void image_batch(void *ctx, uint64_t seed, long step, int n, float *x0, int *labels) {
    image_ctx *c = ctx;
    for (int j = 0; j < n; j++) {
        long k = (step - 1) * (long)c->batch + j;
        long epoch = k / c->ds->n;
        if (epoch != c->perm_epoch) make_perm(c, seed, epoch);
        c->idx[j] = c->perm[k % c->ds->n];
        c->flip[j] = c->hflip ? (uint8_t)df_rand_below(seed, DF_STREAM_DATA, (uint32_t)step, 2, (uint32_t)j, 2) : 0;
    }
    df_dataset_batch(c->ds, c->idx, c->flip, n, x0);
    for (int j = 0; labels && j < n; j++) labels[j] = c->ds->labels[c->idx[j]];
}

/* samples.png: a grid of EMA samples, DDIM 50 steps with x0 clipping, the same seed every time so
 * that grids of one run can be compared. */
static df_status image_snapshot(void *ctx, df_model *m, long step) {
    image_ctx *c = ctx;
    if (skip_final_picture()) return DF_OK;
    size_t n = (size_t)c->n_grid;
    float *x = df_alloc(sizeof(float) * n * cli_model_shape(m).dim, "sample grid");
    if (!x) return DF_ERR_NOMEM;
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_DDIM;
    sp.steps = 50;
    sp.clip_x0 = 1;
    sp.seed = 1234;
    sp.batch = df_model_max_batch(m);
    df_model_set_use_ema(m, 1);
    df_status st = df_sample(df_model_schedule(m), df_model_diffusion(m)->pred, &sp, df_model_predict, m, (int)n, cli_model_shape(m).dim, 0, x, NULL, NULL);
    uint8_t *pix = NULL;
    int gw, gh;
    int cols = 1;
    while (cols * cols < (int)n) cols++;
    if (st == DF_OK) st = df_image_grid(x, (int)n, cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w, cols, 2, &pix, &gw, &gh);
    if (st == DF_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/samples.png", c->out_dir);
        st = df_png_write(path, pix, gw, gh, cli_model_shape(m).c);
    }
    free(pix);
    df_free(x);
    return st;
}

/* ---------------------------------------------------------------- progress and loss curve */
typedef struct {
    int images;
    size_t n_floats; /* the parameters: the gradient's size */
} progress_ctx;

static void on_progress(void *ctx, const df_train_progress *p) {
    progress_ctx *c = ctx;
    char extra[160];
    snprintf(extra, sizeof extra, "loss %.4f %.2f it/s %.1f %s/s", p->loss_avg, p->steps_per_s, p->examples_per_s,
             c->images ? "img" : "pts");
    cli_progress_bar("train", p->step, p->total_steps, p->elapsed, p->final ? 0 : p->eta, extra, p->final);
    /* the communication cost of a data-parallel run, once at the end */
    if (!p->final || p->allreduce_ms <= 0) return;
    char share[48] = "";
    if (p->steps_per_s > 0) snprintf(share, sizeof share, " (%.1f%% of a step)", 0.1 * p->allreduce_ms * p->steps_per_s);
    fprintf(stderr, "gradient all-reduce: %.3f ms a step%s, %zu floats (%.2f MB) over %d processes; before it "
            "%.3f ms waiting for the slowest rank\n", p->allreduce_ms, share, c->n_floats, 4e-6 * (double)c->n_floats,
            df_dist_size(), p->wait_ms);
}

/* loss.png from loss.csv: the raw loss and an exponential moving average. */
static df_status plot_loss_curve(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.csv", dir);
    FILE *f = fopen(path, "r");
    if (!f) return df_fail(DF_ERR_IO, "cannot read %s", path);
    size_t cap = 1024, n = 0;
    double *x = malloc(cap * sizeof(double)), *y = malloc(cap * sizeof(double));
    char line[512];
    df_status st = DF_OK;
    while (st == DF_OK && fgets(line, sizeof line, f)) {
        long step;
        double loss;
        if (sscanf(line, "%ld,%lf", &step, &loss) != 2) continue;
        if (n == cap) {
            cap *= 2;
            double *nx = realloc(x, cap * sizeof(double)), *ny = nx ? realloc(y, cap * sizeof(double)) : NULL;
            if (nx) x = nx;
            if (ny) y = ny;
            if (!nx || !ny) break;
        }
        if (!x || !y) break;
        x[n] = (double)step;
        y[n++] = loss;
    }
    fclose(f);
    double *smooth = x && y ? malloc((n ? n : 1) * sizeof(double)) : NULL;
    if (!smooth) st = df_fail(DF_ERR_NOMEM, "out of memory plotting the loss");
    else if (n > 0) {
        double a = 1.0 / (1.0 + n / 50.0), s = y[0];  /* a window of ~2% of the run */
        for (size_t i = 0; i < n; i++) smooth[i] = s = (1 - a) * s + a * y[i];
        snprintf(path, sizeof path, "%s/loss.png", dir);
        st = df_plot_lines(path, x, y, (int)n, smooth, 1, "training loss (moving average in blue)", "step", "loss");
    }
    free(x);
    free(y);
    free(smooth);
    return st;
}

/* ---------------------------------------------------------------- flags */

/* Every flag of `diffuse train`. 0, NULL or a negative value where the command picks by data. */
typedef struct {
    const char *data, *out, *preset, *schedule, *pred, *loss, *var, *mult, *attn_res, *precision, *device;
    long steps, ckpt_every, snapshot_every;
    double minutes, lr, ema, warmup, grad_clip, weight_decay, beta_start, beta_end, dropout, cond_drop;
    int batch, timesteps, seed, threads, resume, hidden, layers, n_plot, n_grid, nan_skip, flip;
    int base_channels, res_blocks, groups, image_size, classes;
    int mlp_classes; /* --classes on 2-D data: the class embeddings of the MLP */
    int images; /* --data names an image dataset (else 2-D points) */
} train_args;

static void train_args_init(train_args *a) {
    memset(a, 0, sizeof *a);
    a->data = "toy:8gaussians";
    a->schedule = "linear";
    a->pred = "eps";
    a->loss = "simple";
    a->var = "posterior";
    a->precision = "fp32";
    a->ckpt_every = 1000;
    a->lr = a->ema = NAN; /* not given: the defaults of the data (choose_defaults) */
    a->warmup = -1;
    a->grad_clip = 1.0;
    a->beta_start = 1e-4;
    a->beta_end = 0.02;
    a->dropout = -1;
    a->cond_drop = 0.1;
    a->timesteps = 1000;
    a->hidden = 128;
    a->layers = 3;
    a->n_plot = 1000;
    a->n_grid = 64;
}

/* The count flags. 0 is refused where it would mean nothing; where it means something (no
 * periodic checkpoint, all cores) the help says what. */
static const cli_range train_ranges[] = {
    {"steps", 1, LONG_MAX},
    {"batch", 1, 1 << 20},
    {"timesteps", 2, LONG_MAX},
    {"base-channels", 1, LONG_MAX},
    {"res-blocks", 1, LONG_MAX},
    {"groups", 1, LONG_MAX},
    {"image-size", 1, LONG_MAX},
    {"hidden", 1, DF_MLP_MAX_WIDTH},
    {"layers", 1, DF_MLP_MAX_LAYERS},
    {"threads", 0, CLI_MAX_THREADS},
    {"ckpt-every", 0, LONG_MAX},
    {"snapshot-every", 0, LONG_MAX},
    {"plot-n", 1, LONG_MAX},
    {"grid-n", 1, 1024},
    {"nan-skip", 0, LONG_MAX},
    {NULL, 0, 0},
};

static int parse_train_args(int argc, char **argv, train_args *a) {
    train_args_init(a);
    arg_spec specs[] = {
        {"data", ARG_STRING, &a->data, "toy:swissroll|moons|8gaussians|checkerboard, csv:FILE, fashion-mnist[:test], "
                                       "mnist:DIR, cifar10:DIR, folder:DIR (default toy:8gaussians)"},
        {"out", ARG_STRING, &a->out, "output directory (default runs/toy or runs/images)"},
        {"preset", ARG_STRING, &a->preset, "U-Net preset for images: fmnist-small|ddpm-cifar10 (default by data)"},
        {"steps", ARG_LONG, &a->steps, "train until this many optimiser steps in total (2-D default 4000)"},
        {"minutes", ARG_DOUBLE, &a->minutes, "wall-time budget in minutes (0 = none)"},
        {"batch", ARG_INT, &a->batch, "batch size (2-D 256, images 64)"},
        {"lr", ARG_DOUBLE, &a->lr, "AdamW learning rate (2-D and fmnist-small 1e-3, ddpm-cifar10 2e-4)"},
        {"warmup", ARG_DOUBLE, &a->warmup, "learning-rate warm-up steps (2-D 100, images 200, ddpm-cifar10 1000)"},
        {"grad-clip", ARG_DOUBLE, &a->grad_clip, "clip the gradient norm to this (0 = off, default 1)"},
        {"weight-decay", ARG_DOUBLE, &a->weight_decay, "AdamW decoupled weight decay (default 0)"},
        {"ema", ARG_DOUBLE, &a->ema, "EMA decay of the weights, with warm-up (2-D 0.995, images 0.999; 0: no averaging)"},
        {"schedule", ARG_STRING, &a->schedule, "noise schedule: linear|cosine|exponential|quadratic|sigmoid"},
        {"timesteps", ARG_INT, &a->timesteps, "diffusion steps T (default 1000)"},
        {"beta-start", ARG_DOUBLE, &a->beta_start, "first beta (default 1e-4)"},
        {"beta-end", ARG_DOUBLE, &a->beta_end, "last beta (default 0.02)"},
        {"pred", ARG_STRING, &a->pred, "what the network predicts: eps|x0|mean|v (default eps)"},
        {"loss", ARG_STRING, &a->loss, "simple (unweighted MSE) or vlb (the note's KL weights)"},
        {"var", ARG_STRING, &a->var, "reverse variance: posterior (the note's sigma_q^2) or beta"},
        {"flip", ARG_FLAG, &a->flip, "images: random horizontal flips"},
        {"classes", ARG_FLAG, &a->classes, "images: class-conditional on the data's labels (K classes: K + 1 class "
                                           "embeddings, the null class last), for classifier-free guidance"},
        {"cond-drop", ARG_DOUBLE, &a->cond_drop, "with --classes: probability that a label is replaced by the null "
                                                 "class in training (default 0.1)"},
        {"base-channels", ARG_INT, &a->base_channels, "U-Net: channels of the first level (overrides the preset)"},
        {"mult", ARG_STRING, &a->mult, "U-Net: channel multipliers per level, e.g. 1,2,2"},
        {"res-blocks", ARG_INT, &a->res_blocks, "U-Net: residual blocks per level"},
        {"attn-res", ARG_STRING, &a->attn_res, "U-Net: resolutions (px) with attention, e.g. 16 or 7; '' for none"},
        {"dropout", ARG_DOUBLE, &a->dropout, "U-Net: dropout probability"},
        {"groups", ARG_INT, &a->groups, "U-Net: GroupNorm groups"},
        {"image-size", ARG_INT, &a->image_size, "U-Net: image size (folder data is resized and cropped to it)"},
        {"hidden", ARG_INT, &a->hidden, "2-D MLP width (default 128)"},
        {"layers", ARG_INT, &a->layers, "2-D MLP hidden layers (default 3)"},
        {"seed", ARG_INT, &a->seed, "random seed (default 0)"},
        {"threads", ARG_INT, &a->threads, "threads (default 0: all cores)"},
        {"device", ARG_STRING, &a->device, CLI_DEVICE_HELP},
        {"precision", ARG_STRING, &a->precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {"ckpt-every", ARG_LONG, &a->ckpt_every, "checkpoint every N steps (default 1000; 0 = only at the end)"},
        {"snapshot-every", ARG_LONG, &a->snapshot_every, "sample picture every N steps (default 0: only at the end)"},
        {"plot-n", ARG_INT, &a->n_plot, "2-D: points in the sample plot (default 1000)"},
        {"grid-n", ARG_INT, &a->n_grid, "images: samples in the grid (default 64)"},
        {"nan-skip", ARG_INT, &a->nan_skip, "skip up to N non-finite steps instead of stopping (default 0: none)"},
        {"resume", ARG_FLAG, &a->resume, "continue the run in --out from its last checkpoint"},
        {NULL, 0, NULL, NULL, 0},
    };
    return cli_parse_flags("train", "usage: diffuse train --data toy:8gaussians|fashion-mnist|... --out DIR [options]",
                           specs, train_ranges, argc, argv);
}

/* The defaults that depend on the data. The small networks learn fastest at 1e-3 with a short
 * warm-up and clipping; the 35.7 M parameter DDPM network keeps its paper's 2e-4 (Ho et al.
 * 2020, appendix B). */
static df_status choose_defaults(train_args *a) {
    df_dataset_form form;
    df_status st = cli_data_form(a->data, &form);
    if (st != DF_OK) return st;
    int images = a->images = form != DF_DATASET_NONE;
    int cifar = form == DF_DATASET_CIFAR10;
    if (images && !a->preset) a->preset = cifar ? "ddpm-cifar10" : "fmnist-small";
    int big = images && strcmp(a->preset, "ddpm-cifar10") == 0;
    if (!a->out) a->out = images ? "runs/images" : "runs/toy";
    if (!a->batch) a->batch = images ? 64 : 256;
    if (isnan(a->lr)) a->lr = big ? 2e-4 : 1e-3;
    if (isnan(a->ema)) a->ema = images ? 0.999 : 0.995;
    if (a->warmup < 0) a->warmup = big ? 1000 : images ? 200 : 100;
    if (a->steps == 0 && a->minutes == 0 && !images) a->steps = 4000;
    return DF_OK;
}

/* The diffusion settings and the precision, from their names. */
static df_status diffusion_config(const train_args *a, df_diffusion_config *dc, df_precision *prec) {
    df_status st;
    df_diffusion_config_init(dc);
    if ((st = df_schedule_from_name(a->schedule, &dc->schedule.kind)) || (st = df_pred_from_name(a->pred, &dc->pred)) ||
        (st = df_loss_from_name(a->loss, &dc->loss)) || (st = df_var_from_name(a->var, &dc->var)) ||
        (st = df_precision_from_name(a->precision, prec)))
        return st;
    dc->schedule.T = a->timesteps;
    dc->schedule.beta_start = a->beta_start;
    dc->schedule.beta_end = a->beta_end;
    return DF_OK;
}

static df_status check_train_args(const train_args *a) {
    if (a->steps <= 0 && a->minutes <= 0) return df_fail(DF_ERR_ARG, "give --steps N or --minutes M");
    if (!a->images && a->preset) return df_fail(DF_ERR_ARG, "--preset is for image data (got --data %s)", a->data);
    if (!(a->cond_drop >= 0 && a->cond_drop <= 1))
        return df_fail(DF_ERR_ARG, "--cond-drop must be in [0, 1] (got %g)", a->cond_drop);
    if (!(a->lr > 0 && a->lr <= 1)) return df_fail(DF_ERR_ARG, "--lr must be in (0, 1] (got %g)", a->lr);
    if (!(a->ema >= 0 && a->ema < 1))
        return df_fail(DF_ERR_ARG, "--ema must be in [0, 1) (got %g; 0 keeps no average: EMA = the weights)", a->ema);
    const int ranks = df_dist_size();
    if (a->batch % ranks)
        return df_fail(DF_ERR_ARG, "--batch %d is not divisible by the %d processes (mpirun -np %d): each takes "
                       "an equal share of the batch", a->batch, ranks, ranks);
    return DF_OK;
}

/* ---------------------------------------------------------------- the network and the data */

/* Parses "1,2,2" into at most cap positive integers; returns the count, or -1. An empty string gives 0. */
static int parse_int_list(const char *s, int *v, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x <= 0 || x > 100000 || n == cap) return -1;
        v[n++] = (int)x;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* Applies the U-Net flags on top of a preset (0, NULL or a negative dropout: not given, keep the
 * preset's value). */
static df_status override_unet(df_unet_config *c, int base, const char *mult, int res_blocks, const char *attn,
                               double dropout, int groups, int size) {
    int m[DF_UNET_MAX_LEVELS], old_base = c->block_out_channels[0];
    if (mult) {
        int n = parse_int_list(mult, m, DF_UNET_MAX_LEVELS);
        if (n < 1) return df_fail(DF_ERR_ARG, "--mult must be 1 to %d positive integers, e.g. 1,2,2", DF_UNET_MAX_LEVELS);
        c->n_levels = n;
    } else {
        for (int i = 0; i < c->n_levels; i++) m[i] = c->block_out_channels[i] / old_base;
    }
    int b = base ? base : old_base;
    for (int i = 0; i < c->n_levels; i++) c->block_out_channels[i] = b * m[i];
    if (res_blocks) c->layers_per_block = res_blocks;
    if (attn) {
        int n = parse_int_list(attn, c->attn_resolutions, DF_UNET_MAX_LEVELS);
        if (n < 0) return df_fail(DF_ERR_ARG, "--attn-res must be a comma-separated list of pixel sizes, e.g. 16");
        c->n_attn = n;
    }
    if (dropout >= 0) c->dropout = (float)dropout;
    if (groups) c->norm_num_groups = groups;
    if (size) c->sample_size = size;
    return df_unet_config_validate(c);
}

/* The U-Net: the preset with the U-Net flags on top. */
static df_status unet_config(const train_args *a, df_unet_config *uc) {
    df_status st = df_unet_preset(a->preset, uc);
    if (st == DF_OK)
        st = override_unet(uc, a->base_channels, a->mult, a->res_blocks, a->attn_res, a->dropout, a->groups,
                           a->image_size);
    return st;
}

/* The network: the checkpoint's when resuming (its U-Net configuration into *uc), else a new
 * U-Net from *uc or a new MLP. */
static df_status open_model(const train_args *a, const df_diffusion_config *dc, df_unet_config *uc, df_model **out) {
    const int batch = a->batch / df_dist_size();  /* this process's share (check_train_args: it divides) */
    if (a->resume) {
        df_model *m;
        df_status st = df_train_load_checkpoint(a->out, batch, &m);
        if (st != DF_OK) return st;
        if (a->images != (df_model_kind(m) == DF_NET_UNET)) {
            st = df_fail(DF_ERR_ARG, "the checkpoint in %s is a %s model but --data %s is %s", a->out,
                         df_model_kind(m) == DF_NET_UNET ? "image" : "2-D", a->data, a->images ? "images" : "2-D points");
            df_model_free(m);
            return st;
        }
        if (a->images) *uc = *df_model_unet_config(m);
        *out = m;
        return DF_OK;
    }
    if (a->images) return df_model_new_unet(uc, dc, batch, 1, (uint64_t)a->seed, out);
    df_mlp_config mc;
    df_mlp_config_init(&mc);
    mc.hidden = a->hidden;
    mc.layers = a->layers;
    mc.classes = a->mlp_classes;
    return df_model_new_mlp(&mc, dc, batch, 1, (uint64_t)a->seed, out);
}

/* The training data, at the network's image size for images. */
static df_status open_data(const train_args *a, const df_unet_config *uc, df_dataset *ds, df_points *points) {
    return a->images ? df_dataset_load(a->data, uc->in_channels, uc->sample_size, ds) : df_points_open(a->data, points);
}

/* --classes: K classes of the data and the null class, K + 1 embeddings. */
static df_status set_classes(const df_dataset *ds, df_unet_config *uc) {
    if (ds->n_classes < 2)
        return df_fail(DF_ERR_ARG, "--classes needs labelled data with at least 2 classes; %s has %s", ds->name,
                       ds->n_classes ? "one class" : "no labels");
    for (int i = 0; i < ds->n; i++)
        if (ds->labels[i] < 0 || ds->labels[i] >= ds->n_classes)
            return df_fail(DF_ERR_FORMAT, "%s: image %d has no label in 0..%d", ds->name, i, ds->n_classes - 1);
    uc->num_class_embeds = ds->n_classes + 1;
    return df_unet_config_validate(uc);
}

/* --classes on 2-D data: the components of a toy set (8gaussians' modes, the two moons), or a
 * CSV file's label column (x,y,label). */
static df_status set_point_classes(const df_points *p, train_args *a) {
    const int k = df_points_classes(p);
    if (k < 2)
        return df_fail(DF_ERR_ARG, "--classes needs labelled data; %s has no classes (toy:8gaussians and toy:moons "
                       "have, and a CSV file with a label column x,y,label)", p->name);
    a->mlp_classes = k + 1;
    return DF_OK;
}

/* A resumed conditional model goes on with data of its classes. */
static df_status check_classes(const df_model *m, const df_dataset *ds, const df_points *p) {
    const int k = df_model_num_classes(m);
    if (k == 0) return DF_OK;
    if (df_model_kind(m) == DF_NET_MLP) {
        const int want = df_points_classes(p);
        if (want + 1 != k) return df_fail(DF_ERR_ARG, "the checkpoint is conditional on %d classes but %s has %d", k - 1, p->name, want);
        return DF_OK;
    }
    if (ds->n_classes + 1 != k)
        return df_fail(DF_ERR_ARG, "the checkpoint is conditional on %d classes but %s has %d", k - 1, ds->name,
                       ds->n_classes);
    return DF_OK;
}

/* ---------------------------------------------------------------- the run */

/* What df_train needs besides the model: the budget, the optimiser, and this file's callbacks. */
static void fill_train_opts(const train_args *a, const df_model *m, toy_ctx *tc, image_ctx *ic, progress_ctx *pc,
                            df_train_opts *o) {
    df_train_opts_init(o);
    o->steps = a->steps;
    o->minutes = a->minutes;
    o->batch = a->batch;
    o->opt.lr = a->lr;
    o->opt.warmup_steps = (long)a->warmup;
    o->opt.grad_clip = a->grad_clip;
    o->opt.weight_decay = a->weight_decay;
    o->ema_decay = a->ema;
    o->seed = a->resume ? df_model_seed(m) : (uint64_t)a->seed;  /* a resumed run keeps its data order */
    o->out_dir = a->out;
    o->ckpt_every = a->ckpt_every;
    o->snapshot_every = a->snapshot_every;
    o->report_every = a->images ? 5 : (a->steps > 0 && a->steps < 200 ? 1 : 50);
    o->stop = &stop_requested;
    o->nan_skip = a->nan_skip;
    o->cond_drop = a->cond_drop;
    o->batch_fn = a->images ? image_batch : toy_batch;
    o->batch_ctx = a->images ? (void *)ic : (void *)tc;
    o->progress = on_progress;
    o->progress_ctx = pc;
    o->snapshot = a->images ? image_snapshot : toy_snapshot;
    o->snapshot_ctx = a->images ? (void *)ic : (void *)tc;
}

/* Trains m on the opened data and plots the loss curve, also after an interrupt (the run so
 * far is worth a look, and its checkpoint is already written). */
static df_status run_training(const train_args *a, df_model *m, df_dataset *ds, df_points *points) {
    toy_ctx tc = {points, a->n_plot, a->out};
    image_ctx ic = {ds, a->batch, a->flip, a->n_grid, NULL, NULL, NULL, -1, a->out};
    progress_ctx pc = {a->images, df_model_param_count(m)};
    df_status st = DF_OK;
    if (a->images) {
        ic.perm = malloc(sizeof(int) * (size_t)ds->n);
        ic.idx = malloc(sizeof(int) * (size_t)a->batch);
        ic.flip = malloc((size_t)a->batch);
        if (!ic.perm || !ic.idx || !ic.flip) st = df_fail(DF_ERR_NOMEM, "out of memory for the data order");
    }
    df_train_opts o;
    fill_train_opts(a, m, &tc, &ic, &pc, &o);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    char desc[512];
    df_model_describe(m, desc, sizeof desc);
    const int root = df_dist_rank() == 0;  /* under mpirun rank 0 alone prints and writes */
    st = cli_agree("train", st);
    if (st == DF_OK) {
        if (root) {
            fprintf(stderr, "model: %s\ndata: %s", desc, a->data);
            if (a->images) fprintf(stderr, " (%d images %dx%dx%d)", ds->n, ds->c, ds->h, ds->w);
            if (df_dist_size() > 1)
                fprintf(stderr, " over %d processes, %d samples each", df_dist_size(), a->batch / df_dist_size());
            fprintf(stderr, "\n");
        }
        st = df_train(m, &o, a->resume);
        /* stopped by a signal: the ranks leave together, before mpirun's SIGKILL (dist.h). Every rank
         * is here (cli_agree), so the choice is one; a run that ended well (a signal after its last
         * step) ends MPI as usual */
        exit_together = df_dist_size() > 1 && df_dist_max_int(stop_requested && st != DF_OK);
    }
    if (root && (st == DF_OK || st == DF_ERR_INTERRUPTED)) {
        df_status st2 = plot_loss_curve(a->out);
        if (st == DF_OK) st = st2;
    }
    free(ic.perm);
    free(ic.idx);
    free(ic.flip);
    return st;
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_train_args(argc, argv, &a);
    if (rc >= 0) return rc;
    cli_set_threads(a.threads);
    df_status dst = cli_check_device(a.device);
    if (dst != DF_OK) return cli_error("train", dst);
    df_diffusion_config dc;
    df_precision prec;
    df_unet_config uc;
    memset(&uc, 0, sizeof uc);
    df_status st = choose_defaults(&a);
    if (st == DF_OK) st = diffusion_config(&a, &dc, &prec);
    if (st == DF_OK) st = check_train_args(&a);
    if (st == DF_OK && a.images) st = unet_config(&a, &uc);
    if (st != DF_OK) return cli_error("train", st);

    df_model *m = NULL;
    df_dataset ds;
    df_points points;
    memset(&ds, 0, sizeof ds);
    memset(&points, 0, sizeof points);
    if (a.resume) {  /* the checkpoint's network decides the image size, then the data */
        st = open_model(&a, &dc, &uc, &m);
        if (st == DF_OK) st = open_data(&a, &uc, &ds, &points);
        if (st == DF_OK) st = check_classes(m, &ds, &points);
    } else {         /* the data decides the class count, then the network */
        st = open_data(&a, &uc, &ds, &points);
        if (st == DF_OK && a.classes) st = a.images ? set_classes(&ds, &uc) : set_point_classes(&points, &a);
        if (st == DF_OK) st = open_model(&a, &dc, &uc, &m);
    }
    st = cli_agree("train", st);
    if (st == DF_OK) {
        if (a.resume && df_dist_rank() == 0) fprintf(stderr, "resuming %s at step %ld\n", a.out, df_model_step(m));
        df_model_set_precision(m, prec);  /* a run-time choice: --resume takes this command line's */
        df_model_set_data(m, a.data);
        if (!a.resume && df_model_num_classes(m) > 0 && ds.class_names) st = df_model_set_class_names(m, ds.class_names);
    }
    if (st == DF_OK) {
        st = run_training(&a, m, &ds, &points);
    }
    if (st == DF_OK && df_dist_rank() == 0)
        fprintf(stderr, "wrote %s/model.safetensors, %s/samples.png, %s/loss.csv, %s/loss.png\n", a.out, a.out, a.out,
                a.out);
    df_model_free(m);
    df_points_free(&points);
    df_dataset_free(&ds);
    rc = st == DF_OK ? 0 : cli_error("train", st);
    if (exit_together) df_dist_exit_together(rc);
    return rc;
}
