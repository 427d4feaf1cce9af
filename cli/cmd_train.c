/* cmd_train.c: `diffuse train`, for 2-D points (the MLP) and for images (the U-Net). */
#include "cli.h"
#include <signal.h>
#include <stdio.h>
#include <string.h>

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int cli_is_image_data(const char *spec) {
    return strncmp(spec, "fashion-mnist", 13) == 0 || strncmp(spec, "mnist:", 6) == 0 ||
           strncmp(spec, "cifar10:", 8) == 0 || strncmp(spec, "folder:", 7) == 0;
}

/* ---------------------------------------------------------------- 2-D points */
typedef struct {
    df_points *points;
    int n_plot;
    const char *out_dir;
} toy_ctx;

static void toy_batch(void *ctx, uint64_t seed, long step, int n, float *x0) {
    toy_ctx *c = ctx;
    df_points_draw(c->points, seed, (uint32_t)step, n, x0);
}

/* samples.png: n_plot samples of the EMA weights (the note's ancestral sampler), blue, over fresh data, grey. */
static df_status toy_snapshot(void *ctx, df_model *m, long step) {
    toy_ctx *c = ctx;
    int n = c->n_plot;
    float *data = malloc(sizeof(float) * 2 * (size_t)n), *x = malloc(sizeof(float) * 2 * (size_t)n);
    df_status st = DF_OK;
    if (!data || !x) st = df_fail(DF_ERR_NOMEM, "out of memory for the sample plot");
    if (st == DF_OK) {
        df_sample_params sp;
        df_sample_params_init(&sp);
        sp.seed = 1234;
        sp.batch = m->max_batch;
        m->use_ema = 1;
        df_points_draw(c->points, m->seed ^ 0x5eedull, 0xfffffff0u, n, data);
        st = df_sample(&m->schedule, m->diff.pred, &sp, df_model_predict, m, n, m->dim, 0, x, NULL, NULL);
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

static void image_batch(void *ctx, uint64_t seed, long step, int n, float *x0) {
    image_ctx *c = ctx;
    for (int j = 0; j < n; j++) {
        long k = (step - 1) * (long)c->batch + j;
        long epoch = k / c->ds->n;
        if (epoch != c->perm_epoch) make_perm(c, seed, epoch);
        c->idx[j] = c->perm[k % c->ds->n];
        c->flip[j] = c->hflip ? (uint8_t)df_rand_below(seed, DF_STREAM_DATA, (uint32_t)step, 2, (uint32_t)j, 2) : 0;
    }
    df_dataset_batch(c->ds, c->idx, c->flip, n, x0);
}

/* samples.png: a grid of EMA samples, DDIM 50 steps with x0 clipping, the same seed every time so
 * that grids of one run can be compared. */
static df_status image_snapshot(void *ctx, df_model *m, long step) {
    image_ctx *c = ctx;
    size_t n = (size_t)c->n_grid;
    float *x = df_alloc(sizeof(float) * n * m->dim, "sample grid");
    if (!x) return DF_ERR_NOMEM;
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_DDIM;
    sp.steps = 50;
    sp.clip_x0 = 1;
    sp.seed = 1234;
    sp.batch = m->max_batch;
    m->use_ema = 1;
    df_status st = df_sample(&m->schedule, m->diff.pred, &sp, df_model_predict, m, (int)n, m->dim, 0, x, NULL, NULL);
    uint8_t *pix = NULL;
    int gw, gh;
    int cols = 1;
    while (cols * cols < (int)n) cols++;
    if (st == DF_OK) st = df_image_grid(x, (int)n, m->channels, m->height, m->width, cols, 2, &pix, &gw, &gh);
    if (st == DF_OK) {
        char path[4096];
        snprintf(path, sizeof path, "%s/samples.png", c->out_dir);
        st = df_png_write(path, pix, gw, gh, m->channels);
    }
    free(pix);
    df_free(x);
    return st;
}

/* ---------------------------------------------------------------- progress and loss curve */
typedef struct {
    int images;
} progress_ctx;

static void on_progress(void *ctx, const df_train_progress *p) {
    progress_ctx *c = ctx;
    char extra[160];
    snprintf(extra, sizeof extra, "loss %.4f %.2f it/s %.1f %s/s", p->loss_avg, p->steps_per_s, p->examples_per_s,
             c->images ? "img" : "pts");
    cli_progress_bar("train", p->step, p->total_steps, p->elapsed, p->final ? 0 : p->eta, extra, p->final);
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

/* ---------------------------------------------------------------- the command */

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

/* Applies the U-Net flags on top of a preset (0 / NULL / negative = keep the preset's value). */
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
    if (base < 0) return df_fail(DF_ERR_ARG, "--base-channels must be positive");
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
int cmd_train(int argc, char **argv) {
    const char *data = "toy:8gaussians", *out = NULL, *schedule = "linear", *pred = "eps", *loss = "simple",
               *var = "posterior", *preset = NULL;
    long steps = 0, ckpt_every = 1000, snapshot_every = 0;
    double minutes = 0, lr = 0, ema = 0, warmup = -1, grad_clip = 1.0, weight_decay = 0, beta_start = 1e-4, beta_end = 0.02;
    int batch = 0, timesteps = 1000, seed = 0, threads = 0, resume = 0, hidden = 128, layers = 3, n_plot = 1000,
        nan_skip = 0, flip = 0, n_grid = 64, base_channels = 0, res_blocks = 0, groups = 0, image_size = 0;
    const char *mult = NULL, *attn_res = NULL, *precision = "fp32";
    double dropout = -1;
    arg_spec specs[] = {
        {"data", ARG_STRING, &data, "toy:swissroll|moons|8gaussians|checkerboard, csv:FILE, fashion-mnist[:test], "
                                    "mnist:DIR, cifar10:DIR, folder:DIR (default toy:8gaussians)"},
        {"out", ARG_STRING, &out, "output directory (default runs/toy or runs/images)"},
        {"preset", ARG_STRING, &preset, "U-Net preset for images: fmnist-small|ddpm-cifar10 (default by data)"},
        {"steps", ARG_LONG, &steps, "train until this many optimiser steps in total (2-D default 4000)"},
        {"minutes", ARG_DOUBLE, &minutes, "wall-time budget in minutes (0 = none)"},
        {"batch", ARG_INT, &batch, "batch size (2-D 256, images 64)"},
        {"lr", ARG_DOUBLE, &lr, "AdamW learning rate (2-D and fmnist-small 1e-3, ddpm-cifar10 2e-4)"},
        {"warmup", ARG_DOUBLE, &warmup, "learning-rate warm-up steps (2-D 100, images 200, ddpm-cifar10 1000)"},
        {"grad-clip", ARG_DOUBLE, &grad_clip, "clip the gradient norm to this (0 = off, default 1)"},
        {"weight-decay", ARG_DOUBLE, &weight_decay, "AdamW decoupled weight decay (default 0)"},
        {"ema", ARG_DOUBLE, &ema, "EMA decay of the weights, with warm-up (2-D 0.995, images 0.999)"},
        {"schedule", ARG_STRING, &schedule, "noise schedule: linear|cosine|exponential|quadratic|sigmoid"},
        {"timesteps", ARG_INT, &timesteps, "diffusion steps T (default 1000)"},
        {"beta-start", ARG_DOUBLE, &beta_start, "first beta (default 1e-4)"},
        {"beta-end", ARG_DOUBLE, &beta_end, "last beta (default 0.02)"},
        {"pred", ARG_STRING, &pred, "what the network predicts: eps|x0|mean|v (default eps)"},
        {"loss", ARG_STRING, &loss, "simple (unweighted MSE) or vlb (the note's KL weights)"},
        {"var", ARG_STRING, &var, "reverse variance: posterior (the note's sigma_q^2) or beta"},
        {"flip", ARG_FLAG, &flip, "images: random horizontal flips"},
        {"base-channels", ARG_INT, &base_channels, "U-Net: channels of the first level (overrides the preset)"},
        {"mult", ARG_STRING, &mult, "U-Net: channel multipliers per level, e.g. 1,2,2"},
        {"res-blocks", ARG_INT, &res_blocks, "U-Net: residual blocks per level"},
        {"attn-res", ARG_STRING, &attn_res, "U-Net: resolutions (px) with attention, e.g. 16 or 7; '' for none"},
        {"dropout", ARG_DOUBLE, &dropout, "U-Net: dropout probability"},
        {"groups", ARG_INT, &groups, "U-Net: GroupNorm groups"},
        {"image-size", ARG_INT, &image_size, "U-Net: image size (folder data is resized and cropped to it)"},
        {"hidden", ARG_INT, &hidden, "2-D MLP width (default 128)"},
        {"layers", ARG_INT, &layers, "2-D MLP hidden layers (default 3)"},
        {"seed", ARG_INT, &seed, "random seed (default 0)"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {"precision", ARG_STRING, &precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {"ckpt-every", ARG_LONG, &ckpt_every, "checkpoint every N steps (default 1000)"},
        {"snapshot-every", ARG_LONG, &snapshot_every, "sample picture every N steps (default: at the end)"},
        {"plot-n", ARG_INT, &n_plot, "2-D: points in the sample plot (default 1000)"},
        {"grid-n", ARG_INT, &n_grid, "images: samples in the grid (default 64)"},
        {"nan-skip", ARG_INT, &nan_skip, "skip up to N non-finite steps instead of stopping (default 0)"},
        {"resume", ARG_FLAG, &resume, "continue the run in --out from its last checkpoint"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("train", "usage: diffuse train --data toy:8gaussians|fashion-mnist|... --out DIR [options]", specs,
                        argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);
    int images = cli_is_image_data(data);
    if (!out) out = images ? "runs/images" : "runs/toy";
    if (!batch) batch = images ? 64 : 256;
    /* The small networks learn fastest at 1e-3 with a short warm-up and clipping; the 35.7 M
     * parameter DDPM network keeps its paper's 2e-4 (Ho et al. 2020, appendix B). */
    int big = images && (preset ? strcmp(preset, "ddpm-cifar10") == 0 : strncmp(data, "cifar10:", 8) == 0);
    if (lr == 0) lr = big ? 2e-4 : 1e-3;
    if (ema == 0) ema = images ? 0.999 : 0.995;
    if (warmup < 0) warmup = big ? 1000 : images ? 200 : 100;
    if (steps == 0 && minutes == 0 && !images) steps = 4000;

    df_status st;
    df_diffusion_config dc;
    df_precision prec;
    df_diffusion_config_init(&dc);
    if ((st = df_schedule_from_name(schedule, &dc.schedule.kind)) || (st = df_pred_from_name(pred, &dc.pred)) ||
        (st = df_loss_from_name(loss, &dc.loss)) || (st = df_var_from_name(var, &dc.var)) ||
        (st = df_precision_from_name(precision, &prec)))
        return cli_error("train", st);
    dc.schedule.T = timesteps;
    dc.schedule.beta_start = beta_start;
    dc.schedule.beta_end = beta_end;
    if (batch < 1 || batch > 1 << 20) return cli_error("train", df_fail(DF_ERR_ARG, "--batch must be in 1..1048576"));
    if (n_plot < 1 || n_grid < 1 || n_grid > 1024)
        return cli_error("train", df_fail(DF_ERR_ARG, "--plot-n must be positive and --grid-n in 1..1024"));
    if (steps <= 0 && minutes <= 0) return cli_error("train", df_fail(DF_ERR_ARG, "give --steps N or --minutes M"));
    if (!images && preset) return cli_error("train", df_fail(DF_ERR_ARG, "--preset is for image data (got --data %s)", data));

    /* the network and the data */
    df_model m;
    df_unet_config uc;
    df_points points;
    df_dataset ds;
    memset(&points, 0, sizeof points);
    memset(&ds, 0, sizeof ds);
    memset(&m, 0, sizeof m);
    if (images) {
        if (!preset) preset = strncmp(data, "cifar10:", 8) == 0 ? "ddpm-cifar10" : "fmnist-small";
        if ((st = df_unet_preset(preset, &uc)) || (st = override_unet(&uc, base_channels, mult, res_blocks, attn_res, dropout,
                                                                     groups, image_size)))
            return cli_error("train", st);
    }
    if (resume) {
        st = df_train_load_checkpoint(&m, out, batch);
        if (st == DF_OK && images != (m.kind == DF_NET_UNET))
            st = df_fail(DF_ERR_ARG, "the checkpoint in %s is a %s model but --data %s is %s", out,
                         m.kind == DF_NET_UNET ? "image" : "2-D", data, images ? "images" : "2-D points");
        if (st == DF_OK) uc = m.unet;
    } else if (images) {
        st = df_model_new_unet(&m, &uc, &dc, batch, 1, (uint64_t)seed);
    } else {
        df_mlp_config mc;
        df_mlp_config_init(&mc);
        mc.hidden = hidden;
        mc.layers = layers;
        st = df_model_new_mlp(&m, &mc, &dc, batch, 1, (uint64_t)seed);
    }
    if (st == DF_OK) st = images ? df_dataset_load(data, uc.in_channels, uc.sample_size, &ds) : df_points_open(data, &points);
    if (st != DF_OK) {
        df_model_free(&m);
        return cli_error("train", st);
    }
    if (resume) fprintf(stderr, "resuming %s at step %ld\n", out, m.step);
    df_model_set_precision(&m, prec);  /* a run-time choice: --resume takes this command line's */
    snprintf(m.data, sizeof m.data, "%s", data);

    toy_ctx tc = {&points, n_plot, out};
    image_ctx ic = {&ds, batch, flip, n_grid, NULL, NULL, NULL, -1, out};
    if (images) {
        ic.perm = malloc(sizeof(int) * (size_t)ds.n);
        ic.idx = malloc(sizeof(int) * (size_t)batch);
        ic.flip = malloc((size_t)batch);
        if (!ic.perm || !ic.idx || !ic.flip) st = df_fail(DF_ERR_NOMEM, "out of memory for the data order");
    }
    progress_ctx pc = {images};
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
    o.report_every = images ? 5 : (steps > 0 && steps < 200 ? 1 : 50);
    o.stop = &stop_requested;
    o.nan_skip = nan_skip;
    o.batch_fn = images ? image_batch : toy_batch;
    o.batch_ctx = images ? (void *)&ic : (void *)&tc;
    o.progress = on_progress;
    o.progress_ctx = &pc;
    o.snapshot = images ? image_snapshot : toy_snapshot;
    o.snapshot_ctx = images ? (void *)&ic : (void *)&tc;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    char desc[512];
    df_model_describe(&m, desc, sizeof desc);
    if (st == DF_OK) {
        fprintf(stderr, "model: %s\ndata: %s", desc, data);
        if (images) fprintf(stderr, " (%d images %dx%dx%d)", ds.n, ds.c, ds.h, ds.w);
        fprintf(stderr, "\n");
        st = df_train(&m, &o, resume);
    }
    if (st == DF_OK || st == DF_ERR_INTERRUPTED) {
        df_status st2 = plot_loss_curve(out);
        if (st == DF_OK) st = st2;
    }
    if (st == DF_OK)
        fprintf(stderr, "wrote %s/model.safetensors, %s/samples.png, %s/loss.csv, %s/loss.png\n", out, out, out, out);
    free(ic.perm);
    free(ic.idx);
    free(ic.flip);
    df_model_free(&m);
    df_points_free(&points);
    df_dataset_free(&ds);
    return st == DF_OK ? 0 : cli_error("train", st);
}
