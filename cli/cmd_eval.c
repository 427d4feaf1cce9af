/* cmd_eval.c: `diffuse eval`: a model's variational bound on held-out data (src/bound.h), in bits/dim
 * for image models and nats per point for 2-D models, with the per-timestep terms as CSV and a plot.
 * What it is not: a sample-quality metric (no FID); the bound measures likelihood only. */
#include "cli.h"
#include "dist.h"
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
    df_status st = df_dataset_load(spec, cli_model_shape(m).c, cli_model_shape(m).h, &ds);
    if (st) return st;
    if (*n > ds.n) {
        st = df_fail(DF_ERR_ARG, "--n %d is more than the %d images in %s", *n, ds.n, ds.name);
        goto done;
    }
    if (*n == 0) *n = ds.n < 100 ? ds.n : 100;
    int *idx = malloc(sizeof(int) * (size_t)*n);
    *x0 = df_alloc(sizeof(float) * (size_t)*n * cli_model_shape(m).dim, "evaluation images");
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
        printf("data: %s, %d images of %dx%dx%d (D = %zu), 8-bit, discretised decoder\n", data, r->n, cli_model_shape(m).c,
               cli_model_shape(m).h, cli_model_shape(m).w, r->dim);
    else
        printf("data: %s, %d points, continuous Gaussian decoder\n", data, r->n);
    printf("diffusion: %s schedule, T = %d, predicts %s, variance %s, x0 clipping %s, seed %llu\n",
           df_schedule_name(df_model_diffusion(m)->schedule.kind), r->T, df_pred_name(df_model_diffusion(m)->pred), df_var_name(df_model_diffusion(m)->var),
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

/* ---------------------------------------------------------------- the command */

/* Every flag of `diffuse eval`. 0 or NULL where the command picks by model and data. */
typedef struct {
    const char *model, *data, *csv, *plot, *precision, *device;
    int n, batch, K, seed, no_clip, clip, raw, threads;
} eval_args;

static const cli_range eval_ranges[] = {
    {"n", 1, 100000000},
    {"batch", 1, 65536},
    {"threads", 0, CLI_MAX_THREADS},
    {NULL, 0, 0},
};

static int parse_eval_args(int argc, char **argv, eval_args *a) {
    memset(a, 0, sizeof *a);
    a->precision = "fp32";
    arg_spec specs[] = {
        {"model", ARG_STRING, &a->model, "model: a model.safetensors or a diffusers model folder (default: the shipped fmnist-small)"},
        {"data", ARG_STRING, &a->data, "held-out data: an image dataset (e.g. fashion-mnist:test) or toy:NAME / csv:FILE (2-D)"},
        {"n", ARG_INT, &a->n, "samples: the first N images (default 100), N fresh toy points (default 1000), N CSV rows (default all)"},
        {"batch", ARG_INT, &a->batch, "network batch size (images 64, 2-D 256)"},
        {"timesteps-subset", ARG_INT, &a->K, "evaluate K evenly spaced KL terms and scale (an estimate); 0 = all (default)"},
        {"seed", ARG_INT, &a->seed, "noise seed (and toy-point seed), default 0"},
        {"clip", ARG_FLAG, &a->clip, "clip the predicted x0 to [-1, 1] (default for images)"},
        {"no-clip", ARG_FLAG, &a->no_clip, "do not clip the predicted x0 (default for 2-D)"},
        {"raw", ARG_FLAG, &a->raw, "use the raw weights instead of the EMA weights"},
        {"csv", ARG_STRING, &a->csv, "write the per-timestep terms as CSV (t, value, se, weight)"},
        {"plot", ARG_STRING, &a->plot, "write a PNG plot of the per-timestep terms (log scale)"},
        {"threads", ARG_INT, &a->threads, "threads (default 0: all cores)"},
        {"device", ARG_STRING, &a->device, CLI_DEVICE_HELP},
        {"precision", ARG_STRING, &a->precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {NULL, 0, NULL, NULL, 0},
    };
    return cli_parse_flags("eval", "usage: diffuse eval [--model M] --data SPEC [options]\n"
                                   "Prints the variational bound (Ho et al. 2020): bits/dim for images, nats/point for 2-D.",
                           specs, eval_ranges, argc, argv);
}

/* The checks that need no model. */
static df_status check_eval_args(const eval_args *a) {
    if (!a->data) return df_fail(DF_ERR_ARG, "--data is required (e.g. fashion-mnist:test, toy:moons, csv:points.csv)");
    if (a->K < 0) return df_fail(DF_ERR_ARG, "--timesteps-subset must be 0 (all) or positive (got %d)", a->K);
    if (a->seed < 0) return df_fail(DF_ERR_ARG, "--seed must be non-negative (got %d)", a->seed);
    if (a->clip && a->no_clip) return df_fail(DF_ERR_ARG, "--clip and --no-clip contradict each other");
    return DF_OK;
}

/* The checks that need the model: the kind of data, the subset, and the output files (now, not
 * after a long evaluation). */
static df_status check_for_model(const eval_args *a, const df_model *m) {
    int images = df_model_kind(m) == DF_NET_UNET;
    df_dataset_form form;
    df_status st = cli_data_form(a->data, &form);
    if (images != (form != DF_DATASET_NONE))
        return df_fail(DF_ERR_ARG, images ? "an image model needs image data (e.g. fashion-mnist:test), got '%s'"
                                          : "a 2-D model needs toy:NAME or csv:FILE data, got '%s'", a->data);
    if (st != DF_OK) return st;
    if (a->K > df_model_schedule(m)->T - 1)
        return df_fail(DF_ERR_ARG, "--timesteps-subset must be in 0..%d (T - 1 for this model), got %d",
                       df_model_schedule(m)->T - 1, a->K);
    if (df_dist_rank() != 0) return DF_OK;  /* under mpirun rank 0 alone writes */
    if ((a->csv && (st = check_writable(a->csv))) || (a->plot && (st = check_writable(a->plot)))) return st;
    return DF_OK;
}

static void fill_bound_params(const eval_args *a, const df_model *m, eval_progress *pr, df_bound_params *p) {
    int images = df_model_kind(m) == DF_NET_UNET;
    df_bound_params_init(p);
    p->pred = df_model_diffusion(m)->pred;
    p->var = df_model_diffusion(m)->var;
    p->discrete = images;
    p->clip_x0 = a->clip || (images && !a->no_clip);
    p->K = a->K;
    p->seed = (uint64_t)a->seed;
    p->batch = a->batch ? a->batch : images ? 64 : 256;
    p->progress = on_progress;
    p->progress_ctx = pr;
}

/* Under mpirun: rank r evaluates its share of the samples, keyed by their global index (the same
 * noise as one process draws for them), and the shares are put together on every rank. The
 * per-sample terms come back exactly (each rank adds zeros elsewhere); the per-t sums are summed in
 * another order than one process sums them, so the per-t means can differ in the last bits. */
static df_status bound_eval_shared(const df_schedule *s, df_bound_params *p, df_model *m, int n, size_t dim,
                                   const float *x0, df_bound_result *r) {
    const int ranks = df_dist_size();
    if (ranks == 1) return df_bound_eval(s, p, df_model_predict, m, n, dim, x0, r);
    if (n < ranks) return df_fail(DF_ERR_ARG, "%d samples cannot be shared by %d processes", n, ranks);
    const size_t lo = df_dist_share_lo((size_t)n, df_dist_rank()), hi = df_dist_share_lo((size_t)n, df_dist_rank() + 1);
    df_bound_result part;
    p->first_index = lo;
    if (df_dist_rank() != 0) p->progress = NULL;
    df_status st = df_bound_eval(s, p, df_model_predict, m, (int)(hi - lo), dim, x0 + lo * dim, &part);
    st = cli_agree("eval", st);
    if (st == DF_OK) st = df_bound_result_new(s, p, n, dim, r);
    st = cli_agree("eval", st);
    if (st != DF_OK) {
        df_bound_result_free(&part);
        df_bound_result_free(r);
        return st;
    }
    const size_t k = hi - lo;
    memcpy(r->total + lo, part.total, k * sizeof(double));
    memcpy(r->prior + lo, part.prior, k * sizeof(double));
    memcpy(r->decoder + lo, part.decoder, k * sizeof(double));
    memcpy(r->kl + lo, part.kl, k * sizeof(double));
    memcpy(r->t_sum, part.t_sum, (size_t)r->n_t * sizeof(double));
    memcpy(r->t_sq, part.t_sq, (size_t)r->n_t * sizeof(double));
    df_bound_result_free(&part);
    df_dist_allreduce_sum_f64(r->total, (size_t)n);
    df_dist_allreduce_sum_f64(r->prior, (size_t)n);
    df_dist_allreduce_sum_f64(r->decoder, (size_t)n);
    df_dist_allreduce_sum_f64(r->kl, (size_t)n);
    df_dist_allreduce_sum_f64(r->t_sum, (size_t)r->n_t);
    df_dist_allreduce_sum_f64(r->t_sq, (size_t)r->n_t);
    df_bound_summarize(r);
    return DF_OK;
}

/* Evaluates the bound of m on n samples x0 and prints it, with the CSV and the plot if asked. */
static df_status evaluate(const eval_args *a, df_model *m, int n, const float *x0) {
    int images = df_model_kind(m) == DF_NET_UNET;
    eval_progress pr = {df_time(), 0};
    df_bound_params p;
    fill_bound_params(a, m, &pr, &p);
    int evals = (a->K ? a->K : df_model_schedule(m)->T - 1) + 1;
    if (df_dist_rank() == 0) {
        fprintf(stderr, "eval: %d %s x %d timesteps = %ld network evaluations", n, images ? "images" : "points", evals,
                (long)n * evals);
        if (df_dist_size() > 1) fprintf(stderr, " over %d processes (the progress is rank 0's share)", df_dist_size());
        fprintf(stderr, "\n");
    }
    df_bound_result r = {0};
    df_status st = bound_eval_shared(df_model_schedule(m), &p, m, n, cli_model_shape(m).dim, x0, &r);
    if (st == DF_OK && df_dist_rank() == 0) {
        print_result(a->model, a->raw, a->data, m, &r, images, p.clip_x0, p.seed);
        double sc = images ? 1.0 / ((double)r.dim * log(2.0)) : 1.0;
        if (a->csv) st = write_csv(a->csv, &r, sc, images ? "bits_per_dim" : "nats_per_point");
        if (st == DF_OK && a->plot) st = write_plot(a->plot, &r, sc, images ? "bits/dim" : "nats/point", r.mean * sc);
        if (st == DF_OK && a->csv) fprintf(stderr, "wrote %s\n", a->csv);
        if (st == DF_OK && a->plot) fprintf(stderr, "wrote %s\n", a->plot);
    }
    df_bound_result_free(&r);
    return st;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = parse_eval_args(argc, argv, &a);
    if (rc >= 0) return rc;
    cli_set_threads(a.threads);
    df_status dst = cli_check_device(a.device);
    if (dst != DF_OK) return cli_error("eval", dst);
    df_precision prec;
    df_status st = check_eval_args(&a);
    if (st == DF_OK) st = df_precision_from_name(a.precision, &prec);
    if (st != DF_OK) return cli_error("eval", st);

    df_model *m = NULL;
    float *x0 = NULL;
    int n = a.n;
    st = cli_open_model("eval", &a.model, a.batch ? a.batch : 64, &m, NULL);
    if (st == DF_OK) {
        df_model_set_precision(m, prec);
        df_model_set_use_ema(m, !a.raw);
        st = check_for_model(&a, m);
    }
    if (st == DF_OK)
        st = df_model_kind(m) == DF_NET_UNET ? load_images(a.data, m, &n, &x0) : load_points(a.data, (uint64_t)a.seed, &n, &x0);
    if (st == DF_OK && n < 1) st = df_fail(DF_ERR_ARG, "%s holds no samples", a.data);
    /* under mpirun: a rank that could not open the model or read the data must not leave the others
     * waiting in the evaluation's collectives */
    st = cli_agree("eval", st);
    if (st == DF_OK) st = evaluate(&a, m, n, x0);
    df_free(x0);
    df_model_free(m);
    return st == DF_OK ? 0 : cli_error("eval", st);
}
