/* cmd_sample.c: `diffuse sample`: draws samples from a model (points to CSV, images to a PNG grid,
 * a folder of PNGs or a .npy), and edits images (SDEdit from --init, inpainting with --mask). */
#include "cli.h"
#include "dist.h"
#include <string.h>

typedef struct {
    double t0;
    int every;
    /* --trajectory: x at evenly spaced steps for the first traj_n samples */
    float *traj;
    int traj_n, traj_cols, traj_col;
    size_t dim;
} sample_progress;

static int on_step(void *ctx, int step, int nsteps, int t_index, const float *x, int n, size_t dim) {
    sample_progress *p = ctx;
    if (step % p->every == 0 || step == nsteps) {
        double el = df_time() - p->t0;
        char extra[64];
        snprintf(extra, sizeof extra, "steps (%.1f steps/s)", step / el);
        cli_progress_bar("sample", step, nsteps, el, el / step * (nsteps - step), extra, step == nsteps);
    }
    /* column c (1..cols-1) holds x after the first step >= c * nsteps / (cols - 1); column 0 is
     * x_T. A loop, not an if: with fewer steps than columns one step fills several, and none is
     * left as uninitialised memory in the picture. */
    while (p->traj && p->traj_col < p->traj_cols &&
           (long)step * (p->traj_cols - 1) >= (long)p->traj_col * nsteps) {
        for (int j = 0; j < p->traj_n; j++)
            memcpy(p->traj + ((size_t)j * p->traj_cols + p->traj_col) * dim, x + (size_t)j * dim, dim * sizeof(float));
        p->traj_col++;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Writes n images (N,C,H,W in [-1,1]) as a grid PNG, a folder of PNGs (out ends in '/') or a
 * uint8 N x H x W x C .npy. */
static df_status write_images(const char *out, const float *x, int n, int c, int h, int w, int grid_cols) {
    df_status st = DF_OK;
    size_t dim = (size_t)c * h * w;
    if (ends_with(out, ".npy")) {
        uint8_t *u = malloc((size_t)n * dim);
        if (!u) return df_fail(DF_ERR_NOMEM, "out of memory writing %s", out);
        for (int j = 0; j < n; j++)
            for (int ch = 0; ch < c; ch++)
                for (int p = 0; p < h * w; p++) {
                    float v = (x[(size_t)j * dim + (size_t)ch * h * w + p] + 1.0f) * 127.5f;
                    v = v < 0 ? 0 : v > 255 ? 255 : v;
                    u[(size_t)j * dim + (size_t)p * c + ch] = (uint8_t)(v + 0.5f);
                }
        int64_t shape[4] = {n, h, w, c};
        st = df_npy_write(out, "|u1", 4, shape, u);
        free(u);
        return st;
    }
    if (ends_with(out, "/")) {
        if ((st = df_mkdirs(out))) return st;
        for (int j = 0; j < n && st == DF_OK; j++) {
            uint8_t *pix;
            int gw, gh;
            st = df_image_grid(x + (size_t)j * dim, 1, c, h, w, 1, 0, &pix, &gw, &gh);
            if (st != DF_OK) break;
            char path[4200];
            snprintf(path, sizeof path, "%s%06d.png", out, j);
            st = df_png_write(path, pix, gw, gh, c);
            free(pix);
        }
        return st;
    }
    if (!ends_with(out, ".png"))
        return df_fail(DF_ERR_ARG, "--out must be a .png grid, a .npy file or a folder ending in '/' (got %s)", out);
    int cols = grid_cols;
    while (!grid_cols && cols * cols < n) cols++;
    uint8_t *pix;
    int gw, gh;
    if ((st = df_image_grid(x, n, c, h, w, cols, 2, &pix, &gw, &gh))) return st;
    st = df_png_write(out, pix, gw, gh, c);
    free(pix);
    return st;
}

/* Reads one PNG as a model input (C,H,W in [-1,1]); it must have the model's size. Gray and RGB
 * convert to the model's channel count. */
static df_status read_model_image(const char *path, const df_model *m, float **out) {
    uint8_t *pix;
    int w, h, c;
    df_status st = df_png_read(path, &pix, &w, &h, &c);
    if (st != DF_OK) return st;
    if (w != cli_model_shape(m).w || h != cli_model_shape(m).h) {
        free(pix);
        return df_fail(DF_ERR_SHAPE, "%s is %dx%d but the model makes %dx%d images", path, w, h, cli_model_shape(m).w, cli_model_shape(m).h);
    }
    float *x = df_alloc(sizeof(float) * cli_model_shape(m).dim, "input image");
    if (!x) {
        free(pix);
        return DF_ERR_NOMEM;
    }
    for (int ch = 0; ch < cli_model_shape(m).c; ch++)
        for (int p = 0; p < w * h; p++) {
            const uint8_t *q = pix + (size_t)p * c;
            double v = c >= 3 ? (cli_model_shape(m).c == 1 ? (0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2]) : q[ch < 3 ? ch : 0]) : q[0];
            x[(size_t)ch * w * h + p] = (float)(v / 127.5 - 1.0);
        }
    free(pix);
    *out = x;
    return DF_OK;
}

/* ---------------------------------------------------------------- flags */

/* Every flag of `diffuse sample`. 0 or NULL where the command picks by model. */
typedef struct {
    const char *model, *out, *sampler, *var, *plot, *trajectory, *init, *inpaint, *mask, *precision, *device, *noise;
    const char *klass;     /* --class K or all */
    int n, steps, seed, threads, batch, no_ema, clip, no_clip, null_class, cols;
    double eta, strength, guidance;
} sample_args;

/* What --class asks of a conditional model: one class, or every class in rows of per_class. */
typedef struct {
    int label;          /* -1: unconditional (df_model_predict); else the class of every sample */
    int all, per_class; /* --class all: sample j is of class j / per_class */
    int n_classes;      /* the classes that --class all walks (the null class left out) */
} class_plan;

static const cli_range sample_ranges[] = {
    {"n", 1, 10000000},
    {"steps", 1, LONG_MAX},
    {"batch", 1, 65536},
    {"threads", 0, CLI_MAX_THREADS},
    {"null-class", 0, 1000000},
    {"cols", 1, 4096},
    {NULL, 0, 0},
};

static int parse_sample_args(int argc, char **argv, sample_args *a) {
    memset(a, 0, sizeof *a);
    a->sampler = "ancestral";
    a->precision = "fp32";
    a->steps = 50;
    a->strength = 0.5;
    a->guidance = 1.0;
    a->null_class = -1;
    arg_spec specs[] = {
        {"model", ARG_STRING, &a->model, "model: a model.safetensors or a diffusers model folder (default: the shipped fmnist-small)"},
        {"n", ARG_INT, &a->n, "number of samples (2-D 1000, images 64)"},
        {"out", ARG_STRING, &a->out, "points.csv (2-D); grid.png, DIR/ (one PNG each) or samples.npy (images)"},
        {"sampler", ARG_STRING, &a->sampler, "ancestral (the note's algorithm, default), ddim, dpm++2m (DPM-Solver++(2M)) or unipc"},
        {"steps", ARG_INT, &a->steps, "ddim, dpm++2m and unipc steps (default 50; dpm++2m and unipc do well with 10-20)"},
        {"eta", ARG_DOUBLE, &a->eta, "DDIM eta (0 = deterministic, default 0)"},
        {"var", ARG_STRING, &a->var, "ancestral variance: posterior or beta (default: the model's)"},
        {"clip", ARG_FLAG, &a->clip, "clip the predicted x0 to [-1, 1] (default for images)"},
        {"no-clip", ARG_FLAG, &a->no_clip, "do not clip the predicted x0"},
        {"seed", ARG_INT, &a->seed, "random seed (default 0)"},
        {"batch", ARG_INT, &a->batch, "network batch size (2-D 256, images 64)"},
        {"no-ema", ARG_FLAG, &a->no_ema, "use the raw weights instead of the EMA weights"},
        {"plot", ARG_STRING, &a->plot, "2-D: also write a scatter plot PNG"},
        {"trajectory", ARG_STRING, &a->trajectory, "images: PNG of x_t at evenly spaced steps for the first 8 samples"},
        {"init", ARG_STRING, &a->init, "images: edit this PNG (SDEdit): noise it, then denoise"},
        {"strength", ARG_DOUBLE, &a->strength, "editing: how far to noise --init, 0..1 (fraction of T, default 0.5)"},
        {"inpaint", ARG_STRING, &a->inpaint, "images: fill in this PNG where --mask is black"},
        {"mask", ARG_STRING, &a->mask, "inpainting: PNG, white = keep the --inpaint pixels, black = generate"},
        {"threads", ARG_INT, &a->threads, "threads (default 0: all cores)"},
        {"device", ARG_STRING, &a->device, CLI_DEVICE_HELP},
        {"noise", ARG_STRING, &a->noise, "start from this x_T: float32 .npy, N x C x H x W (N x 2 for 2-D); N sets --n"},
        {"precision", ARG_STRING, &a->precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {"class", ARG_STRING, &a->klass, "class-conditional model: the class K to draw, or 'all' (one grid row per class, "
                                         "--n samples each, default 8)"},
        {"guidance", ARG_DOUBLE, &a->guidance, "with --class: classifier-free guidance scale W, eps(null) + W (eps(K) - "
                                               "eps(null)) (default 1: none; 2-5 is typical)"},
        {"cols", ARG_INT, &a->cols, "images: columns of a .png grid (default: a square; --class all: --n)"},
        {"null-class", ARG_INT, &a->null_class, "the index of a conditional model's null class, for a diffusers model "
                                                "made elsewhere (a model trained here knows its own)"},
        {NULL, 0, NULL, NULL, 0},
    };
    return cli_parse_flags("sample", "usage: diffuse sample [--model M] [--n N] [--out points.csv|grid.png|DIR/|samples.npy] [options]",
                           specs, sample_ranges, argc, argv);
}

/* The sampler settings that need no model. */
static df_status sampler_params(const sample_args *a, df_sample_params *sp, df_precision *prec) {
    df_status st;
    if (a->clip && a->no_clip) return df_fail(DF_ERR_ARG, "--clip and --no-clip contradict each other");
    df_sample_params_init(sp);
    if ((st = df_sampler_from_name(a->sampler, &sp->sampler)) || (st = df_precision_from_name(a->precision, prec)))
        return st;
    sp->steps = a->steps;
    sp->eta = a->eta;
    sp->seed = (uint64_t)a->seed;
    return DF_OK;
}

/* The defaults that depend on the model: counts, output, clipping (a diffusers folder brings its
 * scheduler's), the variance and which weights. */
static df_status model_defaults(sample_args *a, df_model *m, const df_diffusers_info *dinfo, df_sample_params *sp) {
    int images = df_model_kind(m) == DF_NET_UNET;
    if (!a->n) a->n = images ? 64 : 1000;
    if (!a->out) a->out = images ? "samples.png" : "samples.csv";
    sp->batch = a->batch ? a->batch : df_model_max_batch(m);
    sp->clip_x0 = a->clip || (images && !a->no_clip);
    if (dinfo->has_scheduler && !a->clip && !a->no_clip) {
        sp->clip_x0 = dinfo->clip_sample;
        sp->clip_min = (float)-dinfo->clip_sample_range;
        sp->clip_max = (float)dinfo->clip_sample_range;
    }
    sp->var = df_model_diffusion(m)->var;
    df_model_set_use_ema(m, !a->no_ema);
    return a->var ? df_var_from_name(a->var, &sp->var) : DF_OK;
}

/* --class, --guidance and --null-class against the model. */
static df_status plan_classes(sample_args *a, df_model *m, class_plan *cp) {
    df_status st;
    memset(cp, 0, sizeof *cp);
    cp->label = -1;
    const int k = df_model_num_classes(m);
    if (a->null_class >= 0 && (st = df_model_set_null_class(m, a->null_class))) return st;
    if (!a->klass) {
        if (a->guidance != 1) return df_fail(DF_ERR_ARG, "--guidance needs --class (the class to guide towards)");
        return DF_OK;
    }
    if (k == 0) return df_fail(DF_ERR_ARG, "--class: %s is not a class-conditional model", a->model);
    const int null = df_model_null_class(m);
    cp->n_classes = null >= 0 ? k - 1 : k;
    if (strcmp(a->klass, "all") == 0) {
        if (a->noise) return df_fail(DF_ERR_ARG, "--noise draws one class: give --class K, not all");
        cp->all = 1;
        cp->per_class = a->n ? a->n : 8;
        if ((long)cp->per_class * cp->n_classes > 10000000)
            return df_fail(DF_ERR_ARG, "--class all --n %d: too many samples for %d classes", a->n, cp->n_classes);
        a->n = cp->per_class * cp->n_classes;
        return DF_OK;
    }
    char *end;
    long v = strtol(a->klass, &end, 10);
    if (end == a->klass || *end) v = df_model_class_index(m, a->klass);  /* a class name */
    if (v < 0 || v > 1000000)
        return df_fail(DF_ERR_ARG, "--class must be a class index, a class name of the model or 'all' (got '%s')",
                       a->klass);
    cp->label = (int)v;
    df_guide g;  /* checks the class and the scale against the model */
    st = df_guide_init(&g, m, cp->label, a->guidance);
    df_guide_free(&g);
    return st;
}

/* The label of the i-th class that --class all draws: the model's indices without the null class. */
static int class_at(const df_model *m, int i) {
    const int null = df_model_null_class(m);
    return null >= 0 && i >= null ? i + 1 : i;
}

/* Samples [lo, hi) (global indices) into x + lo * dim: unconditionally, or guided towards each
 * sample's class (a df_guide per run of samples of one class). */
static df_status sample_share(df_model *m, const df_sample_params *sp, const class_plan *cp, double w, size_t lo,
                              size_t hi, float *x, df_step_fn on, void *on_ctx) {
    const size_t dim = cli_model_shape(m).dim;
    const df_schedule *s = df_model_schedule(m);
    const df_pred pred = df_model_diffusion(m)->pred;
    if (cp->label < 0 && !cp->all) return df_sample(s, pred, sp, df_model_predict, m, (int)(hi - lo), dim, lo, x + lo * dim, on, on_ctx);
    df_status st = DF_OK;
    for (size_t a0 = lo; a0 < hi && st == DF_OK;) {
        size_t a1 = hi;
        int label = cp->label;
        if (cp->all) {
            const size_t ci = a0 / (size_t)cp->per_class;
            a1 = (ci + 1) * (size_t)cp->per_class < hi ? (ci + 1) * (size_t)cp->per_class : hi;
            label = class_at(m, (int)ci);
        }
        df_guide g;
        st = df_guide_init(&g, m, label, w);
        if (st == DF_OK) st = df_sample(s, pred, sp, df_guided_predict, &g, (int)(a1 - a0), dim, a0, x + a0 * dim, on, on_ctx);
        df_guide_free(&g);
        a0 = a1;
    }
    return st;
}

/* Refuses the outputs and options that do not fit the kind of model, before any work. */
static df_status check_for_model(const sample_args *a, int images) {
    if (!images && !ends_with(a->out, ".csv"))
        return df_fail(DF_ERR_ARG, "a 2-D model writes points: --out must end in .csv (got %s)", a->out);
    if (images && !(ends_with(a->out, ".png") || ends_with(a->out, ".npy") || ends_with(a->out, "/")))
        return df_fail(DF_ERR_ARG, "--out must be a .png grid, a .npy file or a folder ending in '/' (got %s)", a->out);
    if (a->trajectory && !images) return df_fail(DF_ERR_ARG, "--trajectory is for image models");
    if ((a->init || a->inpaint || a->mask) && !images)
        return df_fail(DF_ERR_ARG, "--init, --inpaint and --mask are for image models");
    return DF_OK;
}

/* ---------------------------------------------------------------- editing */

/* The images an edit starts from; NULL where not used. */
typedef struct {
    float *init, *known, *mask;
} edit_inputs;

/* --init (SDEdit: start from the image noised to t_start) and --inpaint/--mask into sp. */
static df_status load_edit_inputs(const sample_args *a, const df_model *m, df_sample_params *sp, edit_inputs *e) {
    df_status st;
    if (a->init) {
        if (!(a->strength > 0 && a->strength <= 1))
            return df_fail(DF_ERR_ARG, "--strength must be in (0, 1] (got %g)", a->strength);
        if ((st = read_model_image(a->init, m, &e->init))) return st;
        sp->init = e->init;
        sp->t_start = (int)(a->strength * df_model_schedule(m)->T + 0.5) - 1;
        if (sp->t_start < 0) sp->t_start = 0;
    }
    if (!a->inpaint != !a->mask) return df_fail(DF_ERR_ARG, "inpainting needs both --inpaint IMAGE and --mask MASK");
    if (a->inpaint) {
        if ((st = read_model_image(a->inpaint, m, &e->known)) || (st = read_model_image(a->mask, m, &e->mask)))
            return st;
        for (size_t k = 0; k < cli_model_shape(m).dim; k++) e->mask[k] = e->mask[k] > 0 ? 1.0f : 0.0f;  /* white (>127) keeps */
        sp->known = e->known;
        sp->mask = e->mask;
    }
    return DF_OK;
}

static void edit_inputs_free(edit_inputs *e) {
    df_free(e->init);
    df_free(e->known);
    df_free(e->mask);
}

/* ---------------------------------------------------------------- extra pictures */

/* --trajectory: room for 10 columns of the first 8 samples, and column 0, x_T, drawn exactly as
 * the sampler will draw it (the sampler only reports x after each step). */
static df_status start_trajectory(sample_progress *pr, const df_sample_params *sp, int n, size_t dim) {
    pr->traj_n = n < 8 ? n : 8;
    pr->traj_cols = 10;
    if (!(pr->traj = df_alloc(sizeof(float) * pr->traj_n * pr->traj_cols * dim, "trajectory"))) return DF_ERR_NOMEM;
    for (int j = 0; j < pr->traj_n; j++)
        df_randn(sp->seed, DF_STREAM_SAMPLE_INIT, (uint32_t)j, 0, pr->traj + (size_t)j * pr->traj_cols * dim, dim);
    pr->traj_col = 1;
    return DF_OK;
}

static df_status write_trajectory(const char *path, const sample_progress *pr, const df_model *m) {
    uint8_t *pix = NULL;
    int gw, gh;
    df_status st = df_image_grid(pr->traj, pr->traj_n * pr->traj_cols, cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w, pr->traj_cols,
                                 2, &pix, &gw, &gh);
    if (st == DF_OK) st = df_png_write(path, pix, gw, gh, cli_model_shape(m).c);
    free(pix);
    return st;
}

/* --plot for 2-D: the samples over fresh points of the training data when it is a toy or a file
 * that can still be read, else the samples alone. */
static df_status write_points_plot(const char *path, const df_model *m, const float *x, int n) {
    df_points data;
    if (df_points_open(df_model_data(m), &data) != DF_OK) return df_plot_scatter(path, x, 0, x, n, "samples");
    df_status st = DF_OK;
    float *d = malloc(sizeof(float) * 2 * (size_t)n);
    if (d) {
        df_points_draw(&data, 0x5eed, 0xfffffff0u, n, d, NULL);
        st = df_plot_scatter(path, d, n, x, n, df_model_data(m));
    }
    free(d);
    df_points_free(&data);
    return st;
}

/* ---------------------------------------------------------------- the command */

/* --noise: x_T from a float32 .npy of the model's sample shape, N x C x H x W (N x 2 for 2-D);
 * its N is the number of samples (--n, when given, must agree). */
static df_status read_noise(const char *path, const df_model *m, int n_flag, float **x, int *n) {
    int nd;
    int64_t sh[8];
    df_status st = df_npy_read_f32(path, &nd, sh, x);
    if (st != DF_OK) return st;
    const int images = df_model_kind(m) == DF_NET_UNET;
    const int ok = images ? nd == 4 && sh[1] == cli_model_shape(m).c && sh[2] == cli_model_shape(m).h && sh[3] == cli_model_shape(m).w
                          : nd == 2 && sh[1] == 2;
    if (!ok || sh[0] < 1 || sh[0] > 10000000) {
        df_free(*x);
        *x = NULL;
        return images ? df_fail(DF_ERR_ARG, "--noise %s: want float32 N x %d x %d x %d for this model", path,
                                cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w)
                      : df_fail(DF_ERR_ARG, "--noise %s: want float32 N x 2 for a 2-D model", path);
    }
    if (n_flag && n_flag != sh[0]) {
        df_free(*x);
        *x = NULL;
        return df_fail(DF_ERR_ARG, "--noise %s holds %lld samples but --n is %d", path, (long long)sh[0], n_flag);
    }
    *n = (int)sh[0];
    return DF_OK;
}

/* Samples a->n points or images from m with sp and writes them and the extra pictures. */
static df_status draw_and_write(const sample_args *a, df_model *m, df_sample_params *sp, const class_plan *cp,
                                int n_flag) {
    int images = df_model_kind(m) == DF_NET_UNET, n = a->n;
    sample_progress pr = {df_time(), sp->sampler == DF_SAMPLER_ANCESTRAL ? 50 : 1, NULL, 0, 0, 0, cli_model_shape(m).dim};
    df_status st = DF_OK;
    float *x = NULL;
    if (a->noise) {
        st = read_noise(a->noise, m, n_flag, &x, &n);
        sp->x_T_given = 1;
    } else if (!(x = df_alloc(sizeof(float) * (size_t)n * cli_model_shape(m).dim, "samples"))) {
        st = DF_ERR_NOMEM;
    }
    if (st == DF_OK && a->trajectory) st = start_trajectory(&pr, sp, n, cli_model_shape(m).dim);
    if (st == DF_OK && a->trajectory && a->noise) /* column 0 is the given x_T */
        for (int j = 0; j < pr.traj_n; j++)
            memcpy(pr.traj + (size_t)j * pr.traj_cols * cli_model_shape(m).dim, x + (size_t)j * cli_model_shape(m).dim, sizeof(float) * cli_model_shape(m).dim);
    /* under mpirun each rank draws its share of the samples, by global index (the same samples
     * as one process draws), and rank 0 gathers and writes them */
    const int ranks = df_dist_size(), root = df_dist_rank() == 0;
    const size_t lo = df_dist_share_lo((size_t)n, df_dist_rank()), hi = df_dist_share_lo((size_t)n, df_dist_rank() + 1);
    if (st == DF_OK && ranks > 1 && n < ranks)
        st = df_fail(DF_ERR_ARG, "%d samples cannot be shared by %d processes", n, ranks);
    if (st == DF_OK && ranks > 1 && a->trajectory)
        st = df_fail(DF_ERR_ARG, "--trajectory runs in one process only (not under mpirun)");
    if (st == DF_OK)
        st = sample_share(m, sp, cp, a->guidance, lo, hi, x, root ? on_step : NULL, &pr);
    st = cli_agree("sample", st);
    if (st == DF_OK && ranks > 1) df_dist_gather_f32(x + lo * cli_model_shape(m).dim, root ? x : NULL, (size_t)n, cli_model_shape(m).dim);
    if (st == DF_OK && root)
        st = images ? write_images(a->out, x, n, cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w, a->cols ? a->cols : cp->all ? cp->per_class : 0) : df_csv_write_points(a->out, x, n);
    if (st == DF_OK && root && a->trajectory) st = write_trajectory(a->trajectory, &pr, m);
    if (st == DF_OK && root && a->plot && !images) st = write_points_plot(a->plot, m, x, n);
    if (st == DF_OK && root) fprintf(stderr, "wrote %d samples to %s%s\n", n, a->out, ranks > 1 ? " (gathered from every rank)" : "");
    if (ranks > 1) st = cli_agree("sample", st);
    df_free(x);
    df_free(pr.traj);
    return st;
}

int cmd_sample(int argc, char **argv) {
    sample_args a;
    int rc = parse_sample_args(argc, argv, &a);
    if (rc >= 0) return rc;
    cli_set_threads(a.threads);
    df_status dst = cli_check_device(a.device);
    if (dst != DF_OK) return cli_error("sample", dst);
    df_sample_params sp;
    df_precision prec;
    df_status st = sampler_params(&a, &sp, &prec);
    if (st != DF_OK) return cli_error("sample", st);

    df_model *m = NULL;
    df_diffusers_info dinfo;
    /* a guided pass runs the conditional and the null half of a batch together */
    const int guided = a.guidance != 1, batch = a.batch ? a.batch : 64;
    if ((st = cli_open_model("sample", &a.model, guided ? 2 * batch : batch, &m, &dinfo))) return cli_error("sample", st);
    df_model_set_precision(m, prec);
    edit_inputs e = {NULL, NULL, NULL};
    const int n_flag = a.n;
    class_plan cp;
    st = plan_classes(&a, m, &cp);
    if (st == DF_OK) st = model_defaults(&a, m, &dinfo, &sp);
    if (st == DF_OK && guided) sp.batch = batch;
    if (st == DF_OK) st = check_for_model(&a, df_model_kind(m) == DF_NET_UNET);
    if (st == DF_OK) st = load_edit_inputs(&a, m, &sp, &e);
    if (st == DF_OK && a.noise && sp.init) st = df_fail(DF_ERR_ARG, "--noise and --init exclude each other");
    if (st == DF_OK) st = draw_and_write(&a, m, &sp, &cp, n_flag);
    edit_inputs_free(&e);
    df_model_free(m);
    return st == DF_OK ? 0 : cli_error("sample", st);
}
