/* diffusion.c: the note's mathematics that does not involve sampling: the forward process, the
 * posterior, the four parameterisations and the losses. It knows nothing about the network.
 * Per-element arithmetic is done in double and rounded once to float. */
#include "common.h"
#include <math.h>

void df_q_step(const df_schedule *s, int i, const float *x_prev, const float *eps, float *x_t, size_t n) {
    ASSERT(i >= 0 && i < s->T);
    double a = sqrt(1.0 - s->beta[i]), b = sqrt(s->beta[i]);  /* note: reparameterisation trick */
    for (size_t k = 0; k < n; k++) x_t[k] = (float)(a * x_prev[k] + b * eps[k]);
}

void df_q_sample(const df_schedule *s, int i, const float *x0, const float *eps, float *x_t, size_t n) {
    ASSERT(i >= 0 && i < s->T);
    double a = s->sqrt_alphabar[i], b = s->sqrt_one_minus_alphabar[i];  /* note: closed form */
    for (size_t k = 0; k < n; k++) x_t[k] = (float)(a * x0[k] + b * eps[k]);
}

double df_q_posterior(const df_schedule *s, int i, const float *x0, const float *x_t, float *mean, size_t n) {
    ASSERT(i >= 0 && i < s->T);
    double c0 = s->posterior_coef_x0[i], ct = s->posterior_coef_xt[i];  /* note: mu_q(x_t, x_0) */
    for (size_t k = 0; k < n; k++) mean[k] = (float)(c0 * x0[k] + ct * x_t[k]);
    return s->posterior_var[i];
}

/* Recovers (x0, eps) at one element from the network output in parameterisation `from`.
 * eps <-> x0 by the closed form; v = sqrt(ab) eps - sqrt(1-ab) x0 (Salimans & Ho 2022);
 * mean -> x0 by inverting mu_q = c0 x0 + ct x_t (c0 > 0 for every t). */
static inline void to_x0_eps(const df_schedule *s, int i, df_pred from, double xt, double o, double *x0, double *eps) {
    double sa = s->sqrt_alphabar[i], s1 = s->sqrt_one_minus_alphabar[i];
    switch (from) {
    case DF_PRED_EPS: *eps = o; *x0 = (xt - s1 * o) / sa; return;
    case DF_PRED_X0: *x0 = o; *eps = (xt - sa * o) / s1; return;
    case DF_PRED_V: *x0 = sa * xt - s1 * o; *eps = s1 * xt + sa * o; return;
    case DF_PRED_MEAN:
        *x0 = (o - s->posterior_coef_xt[i] * xt) / s->posterior_coef_x0[i];
        *eps = (xt - sa * *x0) / s1;
        return;
    default: ASSERT(0);
    }
}

static inline double from_x0_eps(const df_schedule *s, int i, df_pred to, double xt, double x0, double eps) {
    switch (to) {
    case DF_PRED_EPS: return eps;
    case DF_PRED_X0: return x0;
    case DF_PRED_V: return s->sqrt_alphabar[i] * eps - s->sqrt_one_minus_alphabar[i] * x0;
    case DF_PRED_MEAN: return s->posterior_coef_x0[i] * x0 + s->posterior_coef_xt[i] * xt;
    default: ASSERT(0);
    }
    return 0;
}

void df_pred_convert(const df_schedule *s, int i, df_pred from, df_pred to, const float *x_t, const float *in,
                     float *out, size_t n) {
    ASSERT(i >= 0 && i < s->T);
    for (size_t k = 0; k < n; k++) {
        if (from == to) {
            out[k] = in[k];
            continue;
        }
        double x0, eps;
        to_x0_eps(s, i, from, x_t[k], in[k], &x0, &eps);
        out[k] = (float)from_x0_eps(s, i, to, x_t[k], x0, eps);
    }
}

void df_pred_target(const df_schedule *s, int i, df_pred pred, const float *x0, const float *eps, const float *x_t,
                    float *target, size_t n) {
    ASSERT(i >= 0 && i < s->T);
    for (size_t k = 0; k < n; k++) target[k] = (float)from_x0_eps(s, i, pred, x_t[k], x0[k], eps[k]);
}

double df_model_var(const df_schedule *s, df_var_kind var, int i) {
    ASSERT(i >= 0 && i < s->T);
    /* Both choices use posterior_var[1] at t = 1, as the DDPM code does for the decoder term. */
    if (i == 0) return s->posterior_var[1];
    return var == DF_VAR_BETA ? s->beta[i] : s->posterior_var[i];
}

double df_model_log_var(const df_schedule *s, df_var_kind var, int i) { return log(df_model_var(s, var, i)); }

double df_pred_mean_slope(const df_schedule *s, df_pred pred, int i) {
    ASSERT(i >= 0 && i < s->T);
    switch (pred) {
    case DF_PRED_MEAN: return 1.0;
    case DF_PRED_X0: return s->posterior_coef_x0[i];
    case DF_PRED_EPS: return -s->beta[i] / (s->sqrt_one_minus_alphabar[i] * sqrt(s->alpha[i]));
    case DF_PRED_V: return -s->posterior_coef_x0[i] * s->sqrt_one_minus_alphabar[i];
    default: ASSERT(0);
    }
    return 0;
}

double df_vlb_weight(const df_schedule *s, df_pred pred, df_var_kind var, int i) {
    double slope = df_pred_mean_slope(s, pred, i);
    return slope * slope / (2.0 * df_model_var(s, var, i));
}

double df_loss(const df_schedule *s, df_pred pred, df_loss_kind loss, df_var_kind var, int n, size_t dim,
               const int *t_index, const float *out, const float *target, float *dout) {
    double total = 0;
    for (int b = 0; b < n; b++) {
        double w = loss == DF_LOSS_VLB ? df_vlb_weight(s, pred, var, t_index[b]) : 1.0;
        /* loss = (1/n) sum_b w_b (1/dim) sum_k d^2, so dL/dout = 2 w_b d / (n dim) */
        double scale = 2.0 * w / ((double)n * (double)dim), sum = 0;
        const float *o = out + (size_t)b * dim, *tg = target + (size_t)b * dim;
        for (size_t k = 0; k < dim; k++) {
            double d = (double)o[k] - (double)tg[k];
            sum += d * d;
            if (dout) dout[(size_t)b * dim + k] = (float)(scale * d);
        }
        total += w * sum / (double)dim;
    }
    return total / n;
}

double df_kl_gaussian(const float *m1, double v1, const float *m2, double v2, size_t n) {
    /* KL(N(m1,v1)||N(m2,v2)) = 0.5 (log(v2/v1) + v1/v2 - 1 + (m1-m2)^2/v2), per element */
    double c = 0.5 * (log(v2 / v1) + v1 / v2 - 1.0), sq = 0;
    for (size_t k = 0; k < n; k++) {
        double d = (double)m1[k] - (double)m2[k];
        sq += d * d;
    }
    return c * (double)n + 0.5 * sq / v2;
}
