/* cmd_eval.c: `diffuse eval`: a model's variational bound on held-out data (src/bound.h), in bits/dim
 * for image models and nats per point for 2-D models, with the per-timestep terms as CSV and a plot.
 * What it is not: a sample-quality metric (no FID); the bound measures likelihood only. */
#include "cli.h"
#include <math.h>
#include <string.h>

/* Toy points for evaluation come from this counter a (training draws use a = step, so these are
 * points the model never saw; `diffuse sample --plot` uses 0xfffffff0). */
#define EVAL_TOY_STREAM 0xfffffff1u

typedef struct {
    double t0, last;
} eval_progress;

static int on_progress(void *ctx, long done, long total) {
    eval_progress *p = ctx;
    double now = df_time(), el = now - p->t0;
    if (done < total && now - p->last < 1.0) return 0;
    p->last = now;
    char extra[64];
    snprintf(extra, sizeof extra, "evaluations (%.0f/s)", el > 0 ? done / el : 0.0);
    cli_progress_bar("eval", done, total, el, done > 0 ? el / done * (total - done) : -1, extra, done == total);
    return 0;
}

/* Fills *x0 (n x dim, new) with the first n images of `spec` scaled to [-1, 1]; n = 0 takes
 * min(100, all). */
static df_status load_images(const char *spec, const df_model *m, int *n, float **x0) {
    df_dataset ds;
    df_status st = df_dataset_load(spec, m->channels, m->height, &ds);
    if (st) return st;
    if (*n > ds.n) {
        st = df_fail(DF_ERR_ARG, "--n %d is more than the %d images in %s", *n, ds.n, ds.name);
        goto done;
    }
    if (*n == 0) *n = ds.n < 100 ? ds.n : 100;
    int *idx = malloc(sizeof(int) * (size_t)*n);
    *x0 = df_alloc(sizeof(float) * (size_t)*n * m->dim, "evaluation images");
    if (!idx || !*x0) {
        free(idx);
        st = df_fail(DF_ERR_NOMEM, "out of memory for %d images", *n);
        goto done;
    }
    for (int j = 0; j < *n; j++) idx[j] = j;
    df_dataset_batch(&ds, idx, NULL, *n, *x0);
    free(idx);
done:
    df_dataset_free(&ds);
    return st;
}

/* 2-D points: fresh draws of a toy distribution (n = 0: 1000) or the first n rows of a CSV (n = 0: all). */
static df_status load_points(const char *spec, uint64_t seed, int *n, float **x0) {
    df_points pts;
    df_status st = df_points_open(spec, &pts);
    if (st) return st;
    if (pts.is_file && *n > pts.n) {
        st = df_fail(DF_ERR_ARG, "--n %d is more than the %d points in %s", *n, pts.n, spec);
        goto done;
    }
    if (*n == 0) *n = pts.is_file ? pts.n : 1000;
    if (!(*x0 = df_alloc(sizeof(float) * 2 * (size_t)*n, "evaluation points"))) {
        st = DF_ERR_NOMEM;
        goto done;
    }
    for (int j = 0; j < *n; j++) {
        if (pts.is_file) memcpy(*x0 + 2 * (size_t)j, pts.points + 2 * (size_t)j, 2 * sizeof(float));
        else df_toy_point(pts.kind, seed, EVAL_TOY_STREAM, (uint32_t)j, *x0 + 2 * (size_t)j);
    }
done:
    df_points_free(&pts);
    return st;
}

/* Per-t CSV: t, the mean term in `unit`, its standard error, and its weight in the total. Row t = 1
 * is the decoder L_0, rows t = 2..T the KL terms L_{t-1} that were evaluated; the prior L_T (no
 * network) is printed, not written. sum(value * weight) + prior = the bound. */
static df_status write_csv(const char *path, const df_bound_result *r, double unit_scale, const char *unit) {
    char tmp[4200];
    FILE *f = df_atomic_open(path, tmp, sizeof tmp);
    if (!f) return DF_ERR_IO;
    fprintf(f, "t,%s,se,weight\n", unit);
    double dec_se = r->decoder_se;
    fprintf(f, "1,%.9g,%.9g,1\n", r->decoder_mean * unit_scale, isnan(dec_se) ? 0.0 : dec_se * unit_scale);
    for (int k = 0; k < r->n_t; k++)
        fprintf(f, "%d,%.9g,%.9g,%.9g\n", r->t_eval[k], r->t_mean[k] * unit_scale,
                isnan(r->t_se[k]) ? 0.0 : r->t_se[k] * unit_scale, r->t_weight[k]);
    return df_atomic_commit(f, tmp, path);
}

/* The first evaluated t that stands for more than itself (T + 1 when every stratum is one t wide). */
static int first_strided(const df_bound_result *r) {
    for (int k = 0; k < r->n_t; k++)
        if (r->t_weight[k] > 1) return r->t_eval[k];
    return r->T + 1;
}

static df_status write_plot(const char *path, const df_bound_result *r, double unit_scale, const char *unit,
                            double total) {
    int n = r->n_t + 1;
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    df_status st = DF_OK;
    if (!x || !y) {
        st = df_fail(DF_ERR_NOMEM, "out of memory for the plot");
        goto done;
    }
    x[0] = 1;
    y[0] = r->decoder_mean * unit_scale;
    for (int k = 0; k < r->n_t; k++) {
        x[k + 1] = r->t_eval[k];
        y[k + 1] = r->t_mean[k] * unit_scale;
    }
    char title[160];
    snprintf(title, sizeof title, "variational bound per timestep (total %.4f %s%s)", total, unit,
             r->estimate ? ", subset estimate" : "");
    st = df_plot_lines(path, x, y, n, NULL, 1, title, "t", unit);
done:
    free(x);
    free(y);
    return st;
}

/* Fails now, not after a long evaluation, if `path` cannot be written (opens and drops a temporary). */
static df_status check_writable(const char *path) {
    char tmp[4200];
    FILE *f = df_atomic_open(path, tmp, sizeof tmp);
    if (!f) return DF_ERR_IO;
    df_atomic_abort(f, tmp);
    return DF_OK;
}

static void print_result(const char *model, int raw, const char *data, const df_model *m, const df_bound_result *r,
                         int images, int clip, uint64_t seed) {
    double sc = images ? 1.0 / ((double)r->dim * log(2.0)) : 1.0;
    const char *unit = images ? "bits/dim" : "nats/point";
    printf("model: %s (%s weights)\n", model, raw ? "raw" : "EMA");
    if (images)
        printf("data: %s, %d images of %dx%dx%d (D = %zu), 8-bit, discretised decoder\n", data, r->n, m->channels,
               m->height, m->width, r->dim);
    else
        printf("data: %s, %d points, continuous Gaussian decoder\n", data, r->n);
    printf("diffusion: %s schedule, T = %d, predicts %s, variance %s, x0 clipping %s, seed %llu\n",
           df_schedule_name(m->diff.schedule.kind), r->T, df_pred_name(m->diff.pred), df_var_name(m->diff.var),
           clip ? "on" : "off", (unsigned long long)seed);
    if (r->estimate)
        printf("timesteps: %d of the %d KL terms (t = %d..%d one by one, then geometrically wider strata up to %g terms\n"
               "  each, weighted by their width): the KL sum and the total are estimates; compare with the full bound\n",
               r->n_t, r->T - 1, r->t_eval[0], first_strided(r) - 1, r->t_weight[r->n_t - 1]);
    else
        printf("timesteps: all %d KL terms\n", r->n_t);
    if (r->n > 1)
        printf("%s = %.4f +- %.4f (standard error) over %d %s\n", unit, r->mean * sc, r->se * sc, r->n,
               images ? "images" : "points");
    else
        printf("%s = %.4f (one sample: no standard error)\n", unit, r->mean * sc);
    if (!images) printf("nats/dim = %.4f\n", r->mean / (double)r->dim);
    printf("  prior L_T            %10.6f %s\n", r->prior_mean * sc, unit);
    printf("  decoder L_0          %10.6f %s\n", r->decoder_mean * sc, unit);
    printf("  sum of KL L_1..L_%-4d %10.6f %s%s\n", r->T - 1, r->kl_mean * sc, unit, r->estimate ? " (estimate)" : "");
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *csv = NULL, *plot = NULL, *precision = "fp32";
    int n = 0, batch = 0, K = 0, seed = 0, no_clip = 0, clip = 0, raw = 0, threads = 0;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model: a model.safetensors or a diffusers model folder"},
        {"data", ARG_STRING, &data, "held-out data: an image dataset (e.g. fashion-mnist:test) or toy:NAME / csv:FILE (2-D)"},
        {"n", ARG_INT, &n, "samples: the first N images (default 100), N fresh toy points (default 1000), N CSV rows (default all)"},
        {"batch", ARG_INT, &batch, "network batch size (images 64, 2-D 256)"},
        {"timesteps-subset", ARG_INT, &K, "evaluate K evenly spaced KL terms and scale (an estimate); 0 = all (default)"},
        {"seed", ARG_INT, &seed, "noise seed (and toy-point seed), default 0"},
        {"clip", ARG_FLAG, &clip, "clip the predicted x0 to [-1, 1] (default for images)"},
        {"no-clip", ARG_FLAG, &no_clip, "do not clip the predicted x0 (default for 2-D)"},
        {"raw", ARG_FLAG, &raw, "use the raw weights instead of the EMA weights"},
        {"csv", ARG_STRING, &csv, "write the per-timestep terms as CSV (t, value, se, weight)"},
        {"plot", ARG_STRING, &plot, "write a PNG plot of the per-timestep terms (log scale)"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {"precision", ARG_STRING, &precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("eval", "usage: diffuse eval --model M --data SPEC [options]\n"
                                "Prints the variational bound (Ho et al. 2020): bits/dim for images, nats/point for 2-D.",
                        specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);
    if (!model) return cli_error("eval", df_fail(DF_ERR_ARG, "--model is required"));
    if (!data) return cli_error("eval", df_fail(DF_ERR_ARG, "--data is required (e.g. fashion-mnist:test, toy:moons, csv:points.csv)"));
    if (n < 0 || n > 100000000) return cli_error("eval", df_fail(DF_ERR_ARG, "--n must be in 1..100000000 (got %d)", n));
    if (batch < 0 || batch > 65536) return cli_error("eval", df_fail(DF_ERR_ARG, "--batch must be in 1..65536 (got %d)", batch));
    if (K < 0) return cli_error("eval", df_fail(DF_ERR_ARG, "--timesteps-subset must be 0 (all) or positive (got %d)", K));
    if (seed < 0) return cli_error("eval", df_fail(DF_ERR_ARG, "--seed must be non-negative (got %d)", seed));
    if (clip && no_clip) return cli_error("eval", df_fail(DF_ERR_ARG, "--clip and --no-clip contradict each other"));
    df_precision prec;
    if (df_precision_from_name(precision, &prec)) return cli_error("eval", DF_ERR_ARG);

    df_model m;
    df_status st = cli_model_open(model, batch ? batch : 64, &m);
    if (st) return cli_error("eval", st);
    df_model_set_precision(&m, prec);
    int images = m.kind == DF_NET_UNET;
    float *x0 = NULL;
    df_bound_result r = {0};
    if (images != cli_is_image_data(data)) {
        st = df_fail(DF_ERR_ARG, images ? "an image model needs image data (e.g. fashion-mnist:test), got '%s'"
                                        : "a 2-D model needs toy:NAME or csv:FILE data, got '%s'", data);
        goto done;
    }
    if (K > m.schedule.T - 1) {
        st = df_fail(DF_ERR_ARG, "--timesteps-subset must be in 0..%d (T - 1 for this model), got %d", m.schedule.T - 1, K);
        goto done;
    }
    if ((csv && (st = check_writable(csv))) || (plot && (st = check_writable(plot)))) goto done;
    st = images ? load_images(data, &m, &n, &x0) : load_points(data, (uint64_t)seed, &n, &x0);
    if (st) goto done;
    if (n < 1) {
        st = df_fail(DF_ERR_ARG, "%s holds no samples", data);
        goto done;
    }
    m.use_ema = !raw;
    df_bound_params p;
    df_bound_params_init(&p);
    p.pred = m.diff.pred;
    p.var = m.diff.var;
    p.discrete = images;
    p.clip_x0 = clip || (images && !no_clip);
    p.K = K;
    p.seed = (uint64_t)seed;
    p.batch = batch ? batch : images ? 64 : 256;
    eval_progress pr = {df_time(), 0};
    p.progress = on_progress;
    p.progress_ctx = &pr;
    fprintf(stderr, "eval: %d %s x %d timesteps = %ld network evaluations\n", n, images ? "images" : "points",
            (K ? K : m.schedule.T - 1) + 1, (long)n * ((K ? K : m.schedule.T - 1) + 1));
    if ((st = df_bound_eval(&m.schedule, &p, df_model_predict, &m, n, m.dim, x0, &r))) goto done;

    print_result(model, raw, data, &m, &r, images, p.clip_x0, p.seed);
    double sc = images ? 1.0 / ((double)r.dim * log(2.0)) : 1.0;
    const char *unit = images ? "bits_per_dim" : "nats_per_point";
    if (csv && (st = write_csv(csv, &r, sc, unit))) goto done;
    if (plot && (st = write_plot(plot, &r, sc, images ? "bits/dim" : "nats/point", r.mean * sc))) goto done;
    if (csv) fprintf(stderr, "wrote %s\n", csv);
    if (plot) fprintf(stderr, "wrote %s\n", plot);
done:
    df_bound_result_free(&r);
    df_free(x0);
    df_model_free(&m);
    return st == DF_OK ? 0 : cli_error("eval", st);
}
