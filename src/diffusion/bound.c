/* bound.c: the variational bound of a model on data (see bound.h for the terms and units).
 * What it is: term-by-term evaluation with batched network calls, in double from the float x_t and
 * network outputs. Work items are (t, sample) pairs in t-major order, cut into network batches of
 * any size (a batch may mix two t's), so results do not depend on the batch size.
 * What it is not: a sampler or a trainer; it never changes the model. */
#include "common.h"
#include <math.h>
#include <string.h>

/* M_PI and friends are POSIX, not C11 */
static const double LN2 = 0.69314718055994530942, SQRT1_2 = 0.70710678118654752440, LOG_2PI = 1.83787706640934548356;

void df_bound_params_init(df_bound_params *p) {
    memset(p, 0, sizeof *p);
    p->pred = DF_PRED_EPS;
    p->var = DF_VAR_POSTERIOR;
    p->discrete = 1;
    p->clip_x0 = 1;
    p->batch = 64;
}

/* Stratum k of the subset covers t in [lo(k), lo(k+1)): lo rises geometrically from 2 to T + 1, each
 * stratum at least one t wide, so the steep small-t terms are evaluated one by one and the flat
 * large-t ones are sampled sparsely. */
static int stratum_start(int T, int K, int k, int prev) {
    if (k == 0) return 2;
    if (k == K) return T + 1;
    int lo = (int)floor(2.0 * pow((T + 1) / 2.0, (double)k / K) + 0.5);
    if (lo < prev + 1) lo = prev + 1;
    if (lo > T + 1 - (K - k)) lo = T + 1 - (K - k);
    return lo;
}

void df_bound_timesteps(int T, int K, int *t, double *weight) {
    ASSERT(T >= 2 && K >= 1 && K <= T - 1);
    int lo = stratum_start(T, K, 0, 0);
    for (int k = 0; k < K; k++) {
        int hi = stratum_start(T, K, k + 1, lo);
        t[k] = (lo + hi - 1) / 2;
        if (weight) weight[k] = hi - lo;
        lo = hi;
    }
}

double df_bound_bits_per_dim(const df_bound_result *r, double nats) { return nats / ((double)r->dim * LN2); }

void df_bound_result_free(df_bound_result *r) {
    df_free(r->block);
    memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------- the terms */

/* L_T = KL(N(sqrt(ab_T) x0, 1 - ab_T) || N(0, 1)) summed over the sample's values. */
static double prior_term(const df_schedule *s, const float *x0, size_t dim) {
    double ab = s->alphabar[s->T - 1], sum = 0;
    for (size_t k = 0; k < dim; k++) sum += ab * (double)x0[k] * x0[k];
    /* per value 0.5 (ab x0^2 + (1 - ab) - 1 - log(1 - ab)), the constant written without cancellation */
    return 0.5 * ((double)dim * (-ab - log1p(-ab)) + sum);
}

/* mu_theta(x_t, i) into mu (dim doubles): through x0_hat (clipped when asked) as the sampler does,
 * mu = c0 x0_hat + ct x_t; an unclipped mean prediction is taken as it is. x0h: dim floats of scratch. */
static void model_mean(const df_schedule *s, df_pred pred, int clip, int i, const float *xt, const float *out,
                       float *x0h, double *mu, size_t dim) {
    if (pred == DF_PRED_MEAN && !clip) {
        for (size_t k = 0; k < dim; k++) mu[k] = out[k];
        return;
    }
    df_pred_convert(s, i, pred, DF_PRED_X0, xt, out, x0h, dim);
    double c0 = s->posterior_coef_x0[i], ct = s->posterior_coef_xt[i];
    for (size_t k = 0; k < dim; k++) {
        double x = x0h[k];
        if (clip) x = x < -1.0 ? -1.0 : x > 1.0 ? 1.0 : x;
        mu[k] = c0 * x + ct * xt[k];
    }
}

/* L_{t-1} (i = t-1 >= 1): KL(N(mu_q, sigma_q^2) || N(mu_theta, sigma^2)) summed over dim, the full
 * Gaussian KL 0.5 (log(v2/v1) + v1/v2 - 1 + (m1 - m2)^2 / v2) per value. */
static double kl_term(const df_schedule *s, df_var_kind var, int i, const float *x0, const float *xt,
                      const double *mu, size_t dim) {
    double v1 = s->posterior_var[i], v2 = df_model_var(s, var, i);
    double c0 = s->posterior_coef_x0[i], ct = s->posterior_coef_xt[i], sq = 0;
    for (size_t k = 0; k < dim; k++) {
        double d = c0 * x0[k] + ct * xt[k] - mu[k];  /* mu_q(x_t, x_0) - mu_theta */
        sq += d * d;
    }
    return 0.5 * ((double)dim * (log(v2 / v1) + v1 / v2 - 1.0) + sq / v2);
}

/* P(Z > z) for a standard normal, accurate in the upper tail. */
static double normal_sf(double z) { return 0.5 * erfc(z * SQRT1_2); }

/* log P(bin of x) under N(mean, e^log_var): the DDPM code's discretized_gaussian_log_likelihood
 * (Ho et al. 2020, eq. 13): bins [x - 1/255, x + 1/255], the first open to -inf, the last to +inf.
 * Differences of CDFs are taken on the side of the tail they lie in, so they do not cancel. */
static double log_bin_probability(double x, double mean, double inv_sd) {
    double hi = inv_sd * (x - mean + 1.0 / 255.0), lo = inv_sd * (x - mean - 1.0 / 255.0), p;
    if (x < -0.999) p = normal_sf(-hi);
    else if (x > 0.999) p = normal_sf(lo);
    else if (lo > 0) p = normal_sf(lo) - normal_sf(hi);
    else p = normal_sf(-hi) - normal_sf(-lo);
    return log(p > 1e-12 ? p : 1e-12);  /* the DDPM code's floor */
}

/* L_0 = -log p(x0 | x_1) with p = N(mu_theta(x_1, 1), sigma^2(1)): discretised over the pixel bins
 * for images, a density for continuous data. */
static double decoder_term(const df_schedule *s, df_var_kind var, int discrete, const float *x0, const double *mu,
                           size_t dim) {
    double log_var = df_model_log_var(s, var, 0), sum = 0;
    if (discrete) {
        double inv_sd = exp(-0.5 * log_var);
        for (size_t k = 0; k < dim; k++) sum -= log_bin_probability(x0[k], mu[k], inv_sd);
        return sum;
    }
    double var0 = exp(log_var);
    for (size_t k = 0; k < dim; k++) {
        double d = x0[k] - mu[k];
        sum += d * d;
    }
    return 0.5 * ((double)dim * (LOG_2PI + log_var) + sum / var0);
}

/* ---------------------------------------------------------------- the evaluation */

static df_status check_inputs(const df_schedule *s, const df_bound_params *p, int n, size_t dim, const float *x0) {
    if (n < 1) return df_fail(DF_ERR_ARG, "bound: need at least one sample (got %d)", n);
    if (dim < 1) return df_fail(DF_ERR_ARG, "bound: samples have no values");
    if (p->batch < 1) return df_fail(DF_ERR_ARG, "bound: batch must be positive (got %d)", p->batch);
    if (p->K < 0 || p->K > s->T - 1)
        return df_fail(DF_ERR_ARG, "bound: timestep subset must be in 0..%d (T - 1; 0 = all), got %d", s->T - 1, p->K);
    if ((int)p->pred < 0 || p->pred >= DF_PRED_COUNT || (int)p->var < 0 || p->var >= DF_VAR_COUNT)
        return df_fail(DF_ERR_ARG, "bound: unknown parameterisation or variance");
    for (size_t e = 0; e < (size_t)n * dim; e++) {
        float v = x0[e];
        if (!isfinite(v))
            return df_fail(DF_ERR_ARG, "bound: sample %zu has a non-finite value", e / dim);
        if (p->discrete && (v < -1.0f - 1e-6f || v > 1.0f + 1e-6f))
            return df_fail(DF_ERR_ARG, "bound: image %zu has value %g outside [-1, 1] (pixels must be scaled to [-1, 1])",
                           e / dim, (double)v);
    }
    return DF_OK;
}

/* Carves the result's arrays out of one allocation. */
df_status df_bound_result_new(const df_schedule *s, const df_bound_params *p, int n, size_t dim, df_bound_result *r) {
    memset(r, 0, sizeof *r);
    r->n = n;
    r->dim = dim;
    r->T = s->T;
    r->estimate = p->K > 0 && p->K < s->T - 1;
    r->n_t = r->estimate ? p->K : s->T - 1;
    size_t nd = 4 * (size_t)n + 5 * (size_t)r->n_t;
    r->block = df_calloc(sizeof(double) * nd + sizeof(int) * (size_t)r->n_t, "bound result");
    if (!r->block) return DF_ERR_NOMEM;
    double *d = r->block;
    r->total = d;
    r->prior = d + n;
    r->decoder = d + 2 * (size_t)n;
    r->kl = d + 3 * (size_t)n;
    r->t_mean = d + 4 * (size_t)n;
    r->t_se = r->t_mean + r->n_t;
    r->t_weight = r->t_se + r->n_t;
    r->t_sum = r->t_weight + r->n_t;
    r->t_sq = r->t_sum + r->n_t;
    r->t_eval = (int *)(d + nd);
    df_bound_timesteps(s->T, r->n_t, r->t_eval, r->t_weight);
    return DF_OK;
}

/* Mean and standard error of x[0..n-1] (se NaN when n < 2). */
static void mean_se(const double *x, int n, double *mean, double *se) {
    double m = 0, v = 0;
    for (int j = 0; j < n; j++) m += x[j];
    m /= n;
    for (int j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
    *mean = m;
    if (se) *se = n > 1 ? sqrt(v / (n - 1) / n) : NAN;
}

/* Per-batch buffers, one block: x_t, network output, x0_hat scratch (batch x dim floats each),
 * mu_theta (batch x dim doubles), t index, and each item's term. */
typedef struct {
    float *xt, *out, *x0h;
    double *mu, *term;
    int *t_index;
    void *block;
} work_buffers;

static df_status work_new(int batch, size_t dim, work_buffers *w) {
    size_t bd = (size_t)batch * dim;
    if (dim > ((size_t)1 << 40) / (size_t)batch) return df_fail(DF_ERR_NOMEM, "bound: batch x dim too large");
    size_t bytes = 3 * bd * sizeof(float) + bd * sizeof(double) + (size_t)batch * (sizeof(double) + sizeof(int)) + 64;
    char *b = df_alloc(bytes, "bound work buffers");
    if (!b) return DF_ERR_NOMEM;
    w->block = b;
    w->mu = (double *)b;
    w->term = w->mu + bd;
    w->xt = (float *)(w->term + batch);
    w->out = w->xt + bd;
    w->x0h = w->out + bd;
    w->t_index = (int *)(w->x0h + bd);
    return DF_OK;
}

/* x_t = q_sample(x0_j, eps(j, i)) for items [first, first + nb). Item w is sample w % n at the step
 * of slot w / n (slot 0 = the decoder at i = 0, slot k + 1 = t_eval[k]). */
static void make_inputs(const df_schedule *s, const df_bound_params *p, const df_bound_result *r, const float *x0,
                        long first, int nb, work_buffers *w) {
    int n = r->n;
    size_t dim = r->dim;
    for (int b = 0; b < nb; b++) {
        long item = first + b;
        int slot = (int)(item / n);
        w->t_index[b] = slot == 0 ? 0 : r->t_eval[slot - 1] - 1;
    }
    #pragma omp parallel for schedule(static) if (p->noise_fn == NULL && nb > 1)
    for (int b = 0; b < nb; b++) {
        int j = (int)((first + b) % n), i = w->t_index[b];
        float *xt = w->xt + (size_t)b * dim;
        if (p->noise_fn) p->noise_fn(p->noise_ctx, p->first_index + (uint64_t)j, i, xt, dim);
        else df_randn(p->seed, DF_STREAM_BOUND, (uint32_t)(p->first_index + (uint64_t)j), (uint32_t)i, xt, dim);
        df_q_sample(s, i, x0 + (size_t)j * dim, xt, xt, dim);  /* eps is overwritten in place by x_t */
    }
}

/* Each item's term from the network output (in parallel), then accumulated in item order. */
static void score_batch(const df_schedule *s, const df_bound_params *p, df_bound_result *r, const float *x0,
                        long first, int nb, work_buffers *w) {
    int n = r->n;
    size_t dim = r->dim;
    #pragma omp parallel for schedule(static) if (nb > 1)
    for (int b = 0; b < nb; b++) {
        int j = (int)((first + b) % n), i = w->t_index[b];
        size_t o = (size_t)b * dim;
        const float *x = x0 + (size_t)j * dim;
        model_mean(s, p->pred, p->clip_x0, i, w->xt + o, w->out + o, w->x0h + o, w->mu + o, dim);
        w->term[b] = i == 0 ? decoder_term(s, p->var, p->discrete, x, w->mu + o, dim)
                            : kl_term(s, p->var, i, x, w->xt + o, w->mu + o, dim);
    }
    for (int b = 0; b < nb; b++) {
        long item = first + b;
        int j = (int)(item % n), slot = (int)(item / n);
        double v = w->term[b];
        if (slot == 0) {
            r->decoder[j] = v;
        } else {
            r->kl[j] += r->t_weight[slot - 1] * v;
            r->t_sum[slot - 1] += v;
            r->t_sq[slot - 1] += v * v;
        }
    }
}

static df_status check_output(const float *out, size_t count, const int *t_index, size_t dim) {
    for (size_t e = 0; e < count; e++)
        if (!isfinite(out[e]))
            return df_fail(DF_ERR_NAN, "bound: the network returned a non-finite value at t = %d", t_index[e / dim] + 1);
    return DF_OK;
}

/* Per-sample totals, once every item is in. */
static void finish(const df_schedule *s, df_bound_result *r, const float *x0) {
    for (int j = 0; j < r->n; j++) {
        r->prior[j] = prior_term(s, x0 + (size_t)j * r->dim, r->dim);
        r->total[j] = r->prior[j] + r->decoder[j] + r->kl[j];
    }
    df_bound_summarize(r);
}

void df_bound_summarize(df_bound_result *r) {
    const int n = r->n;
    for (int k = 0; k < r->n_t; k++) {
        double m = r->t_sum[k] / n, var = n > 1 ? (r->t_sq[k] - n * m * m) / (n - 1) : NAN;
        r->t_mean[k] = m;
        r->t_se[k] = n > 1 ? sqrt(fmax(var, 0.0) / n) : NAN;
    }
    mean_se(r->total, n, &r->mean, &r->se);
    mean_se(r->prior, n, &r->prior_mean, NULL);
    mean_se(r->decoder, n, &r->decoder_mean, &r->decoder_se);
    mean_se(r->kl, n, &r->kl_mean, NULL);
}

df_status df_bound_eval(const df_schedule *s, const df_bound_params *p, df_predict_fn fn, void *ctx, int n,
                        size_t dim, const float *x0, df_bound_result *r) {
    memset(r, 0, sizeof *r);
    df_status st = check_inputs(s, p, n, dim, x0);
    if (st) return st;
    if ((st = df_bound_result_new(s, p, n, dim, r))) return st;
    work_buffers w = {0};
    if ((st = work_new(p->batch, dim, &w))) {
        st = DF_ERR_NOMEM;
        goto fail;
    }
    long total = (long)n * (r->n_t + 1);
    for (long first = 0; first < total; first += p->batch) {
        int nb = (int)(total - first < p->batch ? total - first : p->batch);
        make_inputs(s, p, r, x0, first, nb, &w);
        if ((st = fn(ctx, nb, w.t_index, w.xt, w.out))) goto fail;
        if ((st = check_output(w.out, (size_t)nb * dim, w.t_index, dim))) goto fail;
        score_batch(s, p, r, x0, first, nb, &w);
        if (p->progress && p->progress(p->progress_ctx, first + nb, total)) {
            st = df_fail(DF_ERR_INTERRUPTED, "bound: stopped after %ld of %ld network evaluations", first + nb, total);
            goto fail;
        }
    }
    finish(s, r, x0);
    df_free(w.block);
    return DF_OK;
fail:
    df_free(w.block);
    df_bound_result_free(r);
    return st;
}
