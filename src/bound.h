/* bound.h: measuring a model: the variational bound of Ho et al. 2020 (section 3.3) on held-out data,
 * per sample, in nats (bits/dim for images = nats / (D ln 2)).
 *
 *   L_vlb = L_T + sum_{t=2}^{T} L_{t-1} + L_0
 *   L_T     = KL( q(x_T | x_0) || N(0, I) )
 *   L_{t-1} = KL( q(x_{t-1} | x_t, x_0) || N(mu_theta(x_t, t), sigma^2(t) I) ),  x_t = q_sample(x_0, eps)
 *   L_0     = -log p_theta(x_0 | x_1)
 * mu_theta comes from the network output in the model's parameterisation (through x0_hat, clipped
 * to [-1, 1] when asked, as the DDPM / Improved-DDPM evaluation code does with clip_denoised=True;
 * an unclipped mean prediction is used as it is), sigma^2(t) = df_model_var (both choices use
 * posterior_var[1] at t = 1). The KL is the full Gaussian KL, variance terms included.
 * L_0 is the discretised Gaussian decoder of the DDPM code (discretized_gaussian_log_likelihood:
 * 256 bins of width 2/255, edge bins open towards -inf and +inf, bin probabilities floored at 1e-12)
 * for 8-bit images, or a continuous Gaussian negative log-density for 2-D points.
 * Differences from the DDPM code: the normal CDF is exact (erfc) where the DDPM code uses a tanh
 * approximation, and the noise comes from our Philox streams.
 *
 * Cost: n * (n_t + 1) network evaluations, n_t = T - 1 (every KL term) or K (a subset).
 * What it is not: an importance-sampled estimate over t (Improved DDPM's L_vlb sampling), nor a
 * bound for learned variances (the models here have fixed variances).
 */
#ifndef DF_BOUND_H
#define DF_BOUND_H

#include "common.h"

/* Noise of the bound: eps for sample index j at step i is df_randn(seed, DF_STREAM_BOUND, j, i). */
#define DF_STREAM_BOUND (DF_STREAM_USER + 1)

/* Writes eps (dim floats) for global sample index `index` at step `t_index` (a test hook: it
 * replaces the Philox noise). */
typedef void (*df_bound_noise_fn)(void *ctx, uint64_t index, int t_index, float *eps, size_t dim);
/* Called after every network call: `done` of `total` evaluations finished. Non-zero stops the
 * evaluation (df_bound_eval then returns DF_ERR_INTERRUPTED). */
typedef int (*df_bound_progress_fn)(void *ctx, long done, long total);

typedef struct {
    df_pred pred;             /* what the network outputs (default eps) */
    df_var_kind var;          /* model variance (default posterior) */
    int discrete;             /* 1: data are 8-bit pixels scaled to [-1, 1]: discretised decoder (default 1) */
    int clip_x0;              /* clip x0_hat to [-1, 1] before forming mu_theta (default 1) */
    int K;                    /* KL terms evaluated: 0 = all T-1; else K evenly spaced t (an estimate) */
    uint64_t seed;            /* noise seed (default 0) */
    uint64_t first_index;     /* sample j uses noise index first_index + j (to split one evaluation) */
    int batch;                /* samples per network call (default 64) */
    df_bound_noise_fn noise_fn;   /* NULL: Philox noise (see DF_STREAM_BOUND) */
    void *noise_ctx;
    df_bound_progress_fn progress;  /* may be NULL */
    void *progress_ctx;
} df_bound_params;

void df_bound_params_init(df_bound_params *p);

/* The bound of n samples. Per-sample arrays are in nats per sample (summed over its dim values). */
typedef struct {
    int n;                    /* samples */
    size_t dim;               /* values per sample (D) */
    int T;
    int n_t;                  /* KL terms evaluated: T-1, or K */
    int estimate;             /* 1 when a subset was evaluated (the KL sum is then an estimate) */
    double kl_scale;          /* weight of each evaluated KL term in the sum: (T-1)/n_t (1 when all) */
    int *t_eval;              /* n_t: the evaluated t (1-based, 2..T), ascending */
    double *total;            /* n: prior + decoder + kl */
    double *prior;            /* n: L_T */
    double *decoder;          /* n: L_0 */
    double *kl;               /* n: kl_scale * sum of the evaluated L_{t-1} */
    double *t_mean, *t_se;    /* n_t: mean over samples of L_{t-1} at t_eval[k] (unscaled) and its
                                 standard error */
    double mean, se;          /* mean of total over samples and its standard error (NaN if n < 2) */
    double prior_mean, decoder_mean, kl_mean, decoder_se;
    void *block;              /* the one allocation behind the arrays */
} df_bound_result;

/* Evaluates the bound of the n samples x0 (n x dim; images scaled to [-1, 1]) under the model
 * `fn` (in parameterisation p->pred) on schedule s. The result does not depend on p->batch or the
 * thread count (sample j's noise depends only on (seed, first_index + j, t)). Fills *r (free with
 * df_bound_result_free; zeroed on failure). DF_ERR_ARG for bad parameters or data (n < 1,
 * K outside 0..T-1, non-finite x0, discrete data outside [-1, 1]), DF_ERR_NAN if the network
 * returns a non-finite value, DF_ERR_INTERRUPTED if the progress callback stops it, or the
 * network's own status. */
df_status df_bound_eval(const df_schedule *s, const df_bound_params *p, df_predict_fn fn, void *ctx, int n,
                        size_t dim, const float *x0, df_bound_result *r);
void df_bound_result_free(df_bound_result *r);

/* The subset of K evenly spaced t in 2..T (1 <= K <= T-1): the midpoints of K equal strata of the
 * T-1 KL terms, t[k] = 2 + floor((2k+1)(T-1) / (2K)), ascending and distinct; K = T-1 gives all. */
void df_bound_timesteps(int T, int K, int *t);

/* nats per sample -> bits per dimension: nats / (dim ln 2). */
double df_bound_bits_per_dim(const df_bound_result *r, double nats);

#endif
