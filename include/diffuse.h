/* diffuse.h: the public API of diffuse, a DDPM (Ho et al. 2020) engine in C.
 *
 * Conventions, stated once for the whole library:
 *  - Timesteps. The note counts t = 1..T. Arrays and every `t_index`/`i` argument here are
 *    0-based: i = t - 1, so i = 0 is the note's t = 1 and i = T-1 is t = T. The network is fed
 *    i (as DDPM and diffusers do).
 *  - Tensors are float32, row-major, dimension order N,C,H,W (2-D points: N,2). Files use
 *    PyTorch order (conv weight OC,IC,KH,KW; linear out,in).
 *  - Errors a user can cause come back as a df_status; df_last_error() holds the message.
 *    Broken invariants abort with file:line. The library never prints: see df_set_log().
 *  - Randomness is counter-based (Philox4x32-10): a value depends on (seed, stream, counters),
 *    never on thread scheduling or batch size.
 */
#ifndef DIFFUSE_H
#define DIFFUSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status and logging */
typedef enum {
    DF_OK = 0,
    DF_ERR_ARG,          /* a bad flag or argument value */
    DF_ERR_IO,           /* a file could not be opened, read or written */
    DF_ERR_FORMAT,       /* a file is malformed, truncated or corrupt */
    DF_ERR_SHAPE,        /* a tensor has the wrong shape */
    DF_ERR_NOMEM,        /* an allocation failed or would be too large */
    DF_ERR_NAN,          /* a non-finite loss, gradient or value */
    DF_ERR_UNSUPPORTED,  /* a valid request this build or model cannot serve */
    DF_ERR_INTERRUPTED,  /* stopped by a signal or a callback */
} df_status;

const char *df_status_name(df_status s);
/* The message of the last failure in this thread (never NULL). */
const char *df_last_error(void);
void df_clear_error(void);

typedef void (*df_log_fn)(const char *line, void *user);
/* Library log lines go to `fn` (none by default). */
void df_set_log(df_log_fn fn, void *user);

/* ---------------------------------------------------------------- randomness */
/* Philox4x32-10 (Salmon et al. 2011): one block of 4 uint32 from a 128-bit counter and a 64-bit key.
 * Known answer: counter {0,0,0,0}, key 0 -> {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}. */
void df_philox4x32(const uint32_t ctr[4], uint64_t key, uint32_t out[4]);

/* Streams keep independent uses of one seed apart. */
enum {
    DF_STREAM_SAMPLE_INIT = 1, /* x_T of the samplers */
    DF_STREAM_SAMPLE_STEP,     /* per-step noise of the samplers */
    DF_STREAM_TRAIN_T,         /* timesteps drawn in training */
    DF_STREAM_TRAIN_EPS,       /* noise drawn in training */
    DF_STREAM_TRAIN_DATA,      /* data order and toy-data draws in training */
    DF_STREAM_INIT,            /* weight initialisation */
    DF_STREAM_DROPOUT,         /* dropout masks */
    DF_STREAM_DATA,            /* fresh toy data, flips */
    DF_STREAM_SAMPLE_KNOWN,    /* inpainting: noise of the known region */
    DF_STREAM_USER = 64,       /* first stream free for callers */
};

/* n standard normals: element e comes from Philox counter {e/4, a, b, stream} under key `seed`
 * (Box-Muller on pairs, in double, rounded to float). */
void df_randn(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n);
/* n uniforms in [0, 1): element e from counter {e/4, a, b, stream}. */
void df_randu(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n);
/* One uniform integer in [0, bound) from counter {c, a, b, stream} (bound > 0). */
uint32_t df_rand_below(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, uint32_t c, uint32_t bound);

/* ---------------------------------------------------------------- names of enums */
typedef enum {
    DF_SCHEDULE_LINEAR, DF_SCHEDULE_COSINE, DF_SCHEDULE_EXPONENTIAL, DF_SCHEDULE_QUADRATIC,
    DF_SCHEDULE_SIGMOID, DF_SCHEDULE_COUNT
} df_schedule_kind;

/* What the network predicts (the note's three, plus v of Salimans & Ho 2022). */
typedef enum { DF_PRED_EPS, DF_PRED_X0, DF_PRED_MEAN, DF_PRED_V, DF_PRED_COUNT } df_pred;

/* simple: unweighted MSE on the network's target; vlb: the note's exact KL weights. */
typedef enum { DF_LOSS_SIMPLE, DF_LOSS_VLB, DF_LOSS_COUNT } df_loss_kind;

/* Variance of p(x_{t-1}|x_t): posterior = the note's sigma_q^2(t) (diffusers "fixed_small"),
 * beta = beta_t (diffusers "fixed_large"). */
typedef enum { DF_VAR_POSTERIOR, DF_VAR_BETA, DF_VAR_COUNT } df_var_kind;

typedef enum { DF_SAMPLER_ANCESTRAL, DF_SAMPLER_DDIM, DF_SAMPLER_COUNT } df_sampler_kind;

const char *df_schedule_name(df_schedule_kind k);
const char *df_pred_name(df_pred p);
const char *df_loss_name(df_loss_kind k);
const char *df_var_name(df_var_kind k);
const char *df_sampler_name(df_sampler_kind k);
/* Each returns DF_OK and sets *out, or DF_ERR_ARG with a message listing the valid names. */
df_status df_schedule_from_name(const char *s, df_schedule_kind *out);
df_status df_pred_from_name(const char *s, df_pred *out);
df_status df_loss_from_name(const char *s, df_loss_kind *out);
df_status df_var_from_name(const char *s, df_var_kind *out);
df_status df_sampler_from_name(const char *s, df_sampler_kind *out);

/* ---------------------------------------------------------------- noise schedules */
typedef struct {
    df_schedule_kind kind;
    int T;              /* number of diffusion steps (default 1000) */
    double beta_start;  /* linear, exponential, quadratic, sigmoid: beta_1 (default 1e-4) */
    double beta_end;    /* ... and beta_T (default 0.02) */
    double cosine_s;    /* cosine offset s (default 0.008) */
    double max_beta;    /* cosine clip (default 0.999) */
} df_schedule_params;

void df_schedule_params_init(df_schedule_params *p);

/* Every derived quantity, computed once in double. Each array has T entries, index i = t-1. */
typedef struct {
    int T;
    df_schedule_params params;
    double *beta, *alpha, *alphabar;
    double *alphabar_prev;              /* alphabar_{t-1}; alphabar_prev[0] = 1 */
    double *sqrt_alphabar, *sqrt_one_minus_alphabar;
    double *posterior_var;              /* sigma_q^2(t) = beta_t (1 - alphabar_{t-1}) / (1 - alphabar_t); [0] = 0 */
    double *posterior_log_var_clipped;  /* log sigma_q^2 with [0] replaced by [1] (DDPM code) */
    double *posterior_coef_x0;          /* mu_q = coef_x0 * x0 + coef_xt * x_t (the note's mu_q) */
    double *posterior_coef_xt;
    double *block;                      /* the one allocation behind all arrays */
} df_schedule;

/* Fills *s (free with df_schedule_free). DF_ERR_ARG if T < 2, betas outside (0,1), ... */
df_status df_schedule_new(const df_schedule_params *p, df_schedule *s);
void df_schedule_free(df_schedule *s);

/* ---------------------------------------------------------------- forward process */
/* One step q(x_t | x_{t-1}): x_t = sqrt(1 - beta_t) x_prev + sqrt(beta_t) eps. */
void df_q_step(const df_schedule *s, int i, const float *x_prev, const float *eps, float *x_t, size_t n);
/* Closed form q(x_t | x_0): x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) eps. */
void df_q_sample(const df_schedule *s, int i, const float *x0, const float *eps, float *x_t, size_t n);
/* Posterior q(x_{t-1} | x_t, x_0): mean into `mean`; returns the variance sigma_q^2(t). */
double df_q_posterior(const df_schedule *s, int i, const float *x0, const float *x_t, float *mean, size_t n);

/* ---------------------------------------------------------------- parameterisations */
/* Converts a network output `in`, in parameterisation `from`, at step i and point x_t, to the
 * parameterisation `to` (all exact; computed in double). in and out may alias. */
void df_pred_convert(const df_schedule *s, int i, df_pred from, df_pred to, const float *x_t,
                     const float *in, float *out, size_t n);
/* The training target of `pred` for a pair (x0, eps) that made x_t. */
void df_pred_target(const df_schedule *s, int i, df_pred pred, const float *x0, const float *eps,
                    const float *x_t, float *target, size_t n);
/* Model variance sigma^2(t) of p(x_{t-1}|x_t) and its log; at i = 0 the posterior choice uses
 * the clipped value posterior_var[1] (DDPM code) so that the bound stays finite. */
double df_model_var(const df_schedule *s, df_var_kind var, int i);
double df_model_log_var(const df_schedule *s, df_var_kind var, int i);
/* d mu_theta / d output for parameterisation `pred` at step i (mu is affine in the output). */
double df_pred_mean_slope(const df_schedule *s, df_pred pred, int i);
/* The note's KL weight: L_{t-1} = weight * ||target - output||^2 (+ a constant when the model
 * variance is not sigma_q^2). weight = (d mu / d output)^2 / (2 sigma^2(t)):
 *  mean: 1/(2 s2);  x0: coef_x0^2/(2 s2) (the note's coefficient, squared);
 *  eps: beta^2 / ((1 - alphabar) alpha) / (2 s2);  v: coef_x0^2 (1 - alphabar) / (2 s2). */
double df_vlb_weight(const df_schedule *s, df_pred pred, df_var_kind var, int i);

/* Loss of one batch: out and target are n x dim, t_index has n entries.
 *  simple: mean over batch and elements of (out - target)^2;
 *  vlb:    mean over batch of weight(i) * mean over elements of (out - target)^2 (nats/dim).
 * Writes dL/dout into dout (if not NULL). Returns the loss. */
double df_loss(const df_schedule *s, df_pred pred, df_loss_kind loss, df_var_kind var, int n, size_t dim,
               const int *t_index, const float *out, const float *target, float *dout);

/* KL( N(m1, v1) || N(m2, v2) ) summed over n elements with scalar variances, in nats. */
double df_kl_gaussian(const float *m1, double v1, const float *m2, double v2, size_t n);

/* ---------------------------------------------------------------- samplers */
/* The network as the diffusion code sees it: write into out (n x dim) the prediction for the n
 * inputs x_t (n x dim) at steps t_index[0..n-1]. Returns DF_OK or an error status. */
typedef df_status (*df_predict_fn)(void *ctx, int n, const int *t_index, const float *x_t, float *out);

/* Called after every sampler step with the current x (n x dim); `t_index` is the step just
 * reached (-1 for x_0). Return non-zero to stop (df_sample returns DF_ERR_INTERRUPTED). */
typedef int (*df_step_fn)(void *ctx, int step, int nsteps, int t_index, const float *x, int n, size_t dim);

typedef struct {
    df_sampler_kind sampler;  /* ancestral (the note's algorithm, default) or DDIM */
    int steps;                /* DDIM: number of steps S (default 50); ancestral always uses T */
    double eta;               /* DDIM: 0 = deterministic, 1 = DDPM-like noise */
    df_var_kind var;          /* ancestral: sigma^2 = posterior (note, default) or beta */
    int clip_x0;              /* clip the predicted x0 to [clip_min, clip_max] */
    float clip_min, clip_max;
    uint64_t seed;
    int batch;                /* network calls take at most this many samples (default 64) */
    /* Applications (the note's "Application" link). Each pointer, when set, holds `dim` floats
     * applied to every sample, and must stay valid during df_sample.
     * Editing (SDEdit, Meng et al. 2022): start from `init` noised to step t_start (an index,
     * 0..T-1) instead of from pure noise, and denoise from there. */
    const float *init;
    int t_start;
    /* Inpainting: where mask = 1 the sample is held to `known` (noised to the current step,
     * exactly known at the end); where mask = 0 the model fills in (Lugmayr et al. 2022, without
     * resampling). */
    const float *known, *mask;
} df_sample_params;

void df_sample_params_init(df_sample_params *p);

/* Draws n samples of `dim` floats into x (n x dim). Sample j uses noise counters of global
 * index first_index + j, so the result does not depend on batch size or thread count.
 * `pred` is what the network outputs. */
df_status df_sample(const df_schedule *s, df_pred pred, const df_sample_params *p, df_predict_fn fn,
                    void *ctx, int n, size_t dim, uint64_t first_index, float *x, df_step_fn step_fn,
                    void *step_ctx);

/* The DDIM timestep sequence: seq[k] = floor(k * T / S), k = 0..S-1 (ascending). */
void df_ddim_timesteps(int T, int S, int *seq);

#ifdef __cplusplus
}
#endif
#endif
