/* cmd_sample.c: `diffuse sample` and `diffuse info`. */
#include "cli.h"
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
    /* column c (1..cols-1) holds x after step round(c * nsteps / (cols - 1)); column 0 is x_T */
    if (p->traj && p->traj_col < p->traj_cols &&
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
static df_status write_images(const char *out, const float *x, int n, int c, int h, int w) {
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
    int cols = 1;
    while (cols * cols < n) cols++;
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
    if (w != m->width || h != m->height) {
        free(pix);
        return df_fail(DF_ERR_SHAPE, "%s is %dx%d but the model makes %dx%d images", path, w, h, m->width, m->height);
    }
    float *x = df_alloc(sizeof(float) * m->dim, "input image");
    if (!x) {
        free(pix);
        return DF_ERR_NOMEM;
    }
    for (int ch = 0; ch < m->channels; ch++)
        for (int p = 0; p < w * h; p++) {
            const uint8_t *q = pix + (size_t)p * c;
            double v = c >= 3 ? (m->channels == 1 ? (0.299 * q[0] + 0.587 * q[1] + 0.114 * q[2]) : q[ch < 3 ? ch : 0]) : q[0];
            x[(size_t)ch * w * h + p] = (float)(v / 127.5 - 1.0);
        }
    free(pix);
    *out = x;
    return DF_OK;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *sampler = "ancestral", *var = NULL, *plot = NULL, *trajectory = NULL,
               *init = NULL, *inpaint = NULL, *mask = NULL, *precision = "fp32";
    int n = 0, steps = 50, seed = 0, threads = 0, batch = 0, no_ema = 0, clip = 0, no_clip = 0;
    double eta = 0, strength = 0.5;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model: a model.safetensors or a diffusers model folder (default: the shipped fmnist-small)"},
        {"n", ARG_INT, &n, "number of samples (2-D 1000, images 64)"},
        {"out", ARG_STRING, &out, "points.csv (2-D); grid.png, DIR/ (one PNG each) or samples.npy (images)"},
        {"sampler", ARG_STRING, &sampler, "ancestral (the note's algorithm, default) or ddim"},
        {"steps", ARG_INT, &steps, "DDIM steps (default 50)"},
        {"eta", ARG_DOUBLE, &eta, "DDIM eta (0 = deterministic, default 0)"},
        {"var", ARG_STRING, &var, "ancestral variance: posterior or beta (default: the model's)"},
        {"clip", ARG_FLAG, &clip, "clip the predicted x0 to [-1, 1] (default for images)"},
        {"no-clip", ARG_FLAG, &no_clip, "do not clip the predicted x0"},
        {"seed", ARG_INT, &seed, "random seed (default 0)"},
        {"batch", ARG_INT, &batch, "network batch size (2-D 256, images 64)"},
        {"no-ema", ARG_FLAG, &no_ema, "use the raw weights instead of the EMA weights"},
        {"plot", ARG_STRING, &plot, "2-D: also write a scatter plot PNG"},
        {"trajectory", ARG_STRING, &trajectory, "images: PNG of x_t at evenly spaced steps for the first 8 samples"},
        {"init", ARG_STRING, &init, "images: edit this PNG (SDEdit): noise it, then denoise"},
        {"strength", ARG_DOUBLE, &strength, "editing: how far to noise --init, 0..1 (fraction of T, default 0.5)"},
        {"inpaint", ARG_STRING, &inpaint, "images: fill in this PNG where --mask is black"},
        {"mask", ARG_STRING, &mask, "inpainting: PNG, white = keep the --inpaint pixels, black = generate"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {"precision", ARG_STRING, &precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("sample", "usage: diffuse sample [--model M] [--n N] [--out points.csv|grid.png|DIR/|samples.npy] [options]",
                        specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);
    int shipped = !model;
    if (shipped && !(model = cli_default_model())) return cli_error("sample", DF_ERR_ARG);
    if (n < 0 || n > 10000000) return cli_error("sample", df_fail(DF_ERR_ARG, "--n must be in 1..10000000"));
    if (batch < 0 || batch > 65536) return cli_error("sample", df_fail(DF_ERR_ARG, "--batch must be in 1..65536"));
    if (clip && no_clip) return cli_error("sample", df_fail(DF_ERR_ARG, "--clip and --no-clip contradict each other"));

    df_status st;
    df_sample_params sp;
    df_precision prec;
    df_sample_params_init(&sp);
    if ((st = df_sampler_from_name(sampler, &sp.sampler)) || (st = df_precision_from_name(precision, &prec)))
        return cli_error("sample", st);
    sp.steps = steps;
    sp.eta = eta;
    sp.seed = (uint64_t)seed;

    df_model m;
    df_diffusers_info dinfo;
    if ((st = df_model_open_ex(model, batch ? batch : 64, 0, &m, &dinfo))) return cli_error("sample", st);
    if (shipped) fprintf(stderr, "sample: no --model given, using %s\n", model);
    df_model_set_precision(&m, prec);
    int images = m.kind == DF_NET_UNET;
    float *init_x = NULL, *known_x = NULL, *mask_x = NULL;
    if (!n) n = images ? 64 : 1000;
    if (!out) out = images ? "samples.png" : "samples.csv";
    sp.batch = batch ? batch : m.max_batch;
    sp.clip_x0 = clip || (images && !no_clip);
    if (dinfo.has_scheduler && !clip && !no_clip) {  /* a diffusers folder: its scheduler's clipping */
        sp.clip_x0 = dinfo.clip_sample;
        sp.clip_min = (float)-dinfo.clip_sample_range;
        sp.clip_max = (float)dinfo.clip_sample_range;
    }
    sp.var = m.diff.var;
    float *x = NULL;
    sample_progress pr = {df_time(), sp.sampler == DF_SAMPLER_DDIM ? 1 : 50, NULL, 0, 0, 0, m.dim};
    if (var && (st = df_var_from_name(var, &sp.var))) goto done;
    m.use_ema = !no_ema;
    if (!images && !ends_with(out, ".csv")) {
        st = df_fail(DF_ERR_ARG, "a 2-D model writes points: --out must end in .csv (got %s)", out);
        goto done;
    }
    if (images && !(ends_with(out, ".png") || ends_with(out, ".npy") || ends_with(out, "/"))) {
        st = df_fail(DF_ERR_ARG, "--out must be a .png grid, a .npy file or a folder ending in '/' (got %s)", out);
        goto done;
    }
    if (trajectory && !images) {
        st = df_fail(DF_ERR_ARG, "--trajectory is for image models");
        goto done;
    }
    if ((init || inpaint || mask) && !images) {
        st = df_fail(DF_ERR_ARG, "--init, --inpaint and --mask are for image models");
        goto done;
    }
    if (init) {
        if (!(strength > 0 && strength <= 1)) {
            st = df_fail(DF_ERR_ARG, "--strength must be in (0, 1] (got %g)", strength);
            goto done;
        }
        if ((st = read_model_image(init, &m, &init_x))) goto done;
        sp.init = init_x;
        sp.t_start = (int)(strength * m.schedule.T + 0.5) - 1;
        if (sp.t_start < 0) sp.t_start = 0;
    }
    if (!inpaint != !mask) {
        st = df_fail(DF_ERR_ARG, "inpainting needs both --inpaint IMAGE and --mask MASK");
        goto done;
    }
    if (inpaint) {
        if ((st = read_model_image(inpaint, &m, &known_x)) || (st = read_model_image(mask, &m, &mask_x))) goto done;
        for (size_t k = 0; k < m.dim; k++) mask_x[k] = mask_x[k] > 0 ? 1.0f : 0.0f;  /* white (>127) keeps */
        sp.known = known_x;
        sp.mask = mask_x;
    }
    if (!(x = df_alloc(sizeof(float) * (size_t)n * m.dim, "samples"))) {
        st = DF_ERR_NOMEM;
        goto done;
    }
    if (trajectory) {
        pr.traj_n = n < 8 ? n : 8;
        pr.traj_cols = 10;
        if (!(pr.traj = df_alloc(sizeof(float) * pr.traj_n * pr.traj_cols * m.dim, "trajectory"))) {
            st = DF_ERR_NOMEM;
            goto done;
        }
        for (int j = 0; j < pr.traj_n; j++)  /* x_T, exactly as the sampler draws it */
            df_randn(sp.seed, DF_STREAM_SAMPLE_INIT, (uint32_t)j, 0, pr.traj + (size_t)j * pr.traj_cols * m.dim, m.dim);
        pr.traj_col = 1;
    }
    st = df_sample(&m.schedule, m.diff.pred, &sp, df_model_predict, &m, n, m.dim, 0, x, on_step, &pr);
    if (st == DF_OK) st = images ? write_images(out, x, n, m.channels, m.height, m.width) : df_csv_write_points(out, x, n);
    if (st == DF_OK && trajectory) {
        uint8_t *pix = NULL;
        int gw, gh;
        st = df_image_grid(pr.traj, pr.traj_n * pr.traj_cols, m.channels, m.height, m.width, pr.traj_cols, 2, &pix, &gw, &gh);
        if (st == DF_OK) st = df_png_write(trajectory, pix, gw, gh, m.channels);
        free(pix);
    }
    if (st == DF_OK && plot && !images) {
        df_points data;
        if (df_points_open(m.data, &data) == DF_OK) {
            float *d = malloc(sizeof(float) * 2 * (size_t)n);
            if (d) {
                df_points_draw(&data, 0x5eed, 0xfffffff0u, n, d);
                st = df_plot_scatter(plot, d, n, x, n, m.data);
            }
            free(d);
            df_points_free(&data);
        } else {
            st = df_plot_scatter(plot, x, 0, x, n, "samples");
        }
    }
    if (st == DF_OK) fprintf(stderr, "wrote %d samples to %s\n", n, out);
done:
    df_free(x);
    df_free(pr.traj);
    df_free(init_x);
    df_free(known_x);
    df_free(mask_x);
    df_model_free(&m);
    return st == DF_OK ? 0 : cli_error("sample", st);
}

