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
 *  - Arguments: inputs first, outputs last (a function that builds or reads an object takes it
 *    last: df_model_load(path, ..., &m)); a function that acts on an object it is given takes that
 *    object first (df_train(m, ...), df_model_save(m, path, ...)). Optional outputs may be NULL.
 *  - Memory the library returns is freed with df_free; objects with a _free function with that.
 */
#ifndef DIFFUSE_H
#define DIFFUSE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the functions libdiffuse.so exports; the library is built with hidden visibility, so
 * everything else in it stays internal. */
#if defined(__GNUC__)
#define DF_API __attribute__((visibility("default")))
#else
#define DF_API
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

DF_API const char *df_status_name(df_status s);
/* The message of the last failure in this thread (never NULL). */
DF_API const char *df_last_error(void);
DF_API void df_clear_error(void);

typedef void (*df_log_fn)(const char *line, void *user);
/* Library log lines go to `fn` (none by default). */
DF_API void df_set_log(df_log_fn fn, void *user);

/* ---------------------------------------------------------------- CPU levels */
/* The instruction-set level the fast kernels run at, chosen once per process (cpu.c): the best
 * level this CPU has, or exactly the level named by the environment variable DIFFUSE_ISA
 * (generic|avx2|avx512|avx512bf16 on x86-64, generic|neon on aarch64), as oneDNN's
 * ONEDNN_MAX_CPU_ISA caps it. A level the CPU lacks, or an unknown name, is an error, never a
 * silent fallback. generic is portable C (any CPU of the architecture); avx2 needs AVX2 + FMA;
 * avx512 AVX-512 F/BW/VL; avx512bf16 also AVX512_BF16; neon is aarch64's Advanced SIMD. */
typedef enum { DF_ISA_GENERIC, DF_ISA_AVX2, DF_ISA_AVX512, DF_ISA_AVX512BF16, DF_ISA_NEON, DF_ISA_COUNT } df_isa;
DF_API const char *df_isa_name(df_isa isa);
/* DF_OK and *out, or DF_ERR_ARG naming the levels of this architecture. */
DF_API df_status df_isa_from_name(const char *s, df_isa *out);
/* 1 when this CPU (and its OS) can run level isa; levels of another architecture: 0. */
DF_API int df_cpu_supports(df_isa isa);
/* Chooses the level from DIFFUSE_ISA (unset or empty: the automatic choice). DF_ERR_ARG for an
 * unknown name, DF_ERR_UNSUPPORTED for a level this CPU lacks (the message names the missing
 * flags); the level is then left as it was. Call it before any model is opened; the CLI calls it
 * first thing. Without it, the first kernel that asks takes the same decision (and aborts with
 * that message on a bad DIFFUSE_ISA). */
DF_API df_status df_cpu_init(void);
/* The level in use. */
DF_API df_isa df_cpu_isa(void);
/* Sets the level (tests and benchmarks compare levels in one process): DF_ERR_UNSUPPORTED when the
 * CPU lacks it. Models planned at another level must be reopened: the memory plan reads it. */
DF_API df_status df_cpu_set_isa(df_isa isa);
/* One line for `diffuse info`: the level in use, how it was chosen, the CPU's model name and the
 * flags that decide the levels. */
DF_API void df_cpu_describe(char *buf, size_t cap);

/* ---------------------------------------------------------------- devices */
/* Where the ops run: the CPU (every build), or a CUDA GPU (builds with -DDIFFUSE_CUDA=ON). Files are
 * the same whichever device wrote them. */
typedef enum { DF_DEVICE_CPU, DF_DEVICE_CUDA } df_device_kind;
typedef struct {
    df_device_kind kind;
    int index; /* cuda:N */
} df_device;

/* "cpu", "cuda" (= cuda:0) or "cuda:N" into *out; anything else DF_ERR_ARG. */
DF_API df_status df_device_from_name(const char *s, df_device *out);

/* DF_OK when the ops can run on d. The CPU always; a CUDA device needs a CUDA build and the GPU,
 * and the CUDA backend has no kernels yet: DF_ERR_UNSUPPORTED with the reason (no CUDA in this
 * build; no such device; no kernels), which commands print before doing anything. */
DF_API df_status df_device_check(df_device d);

/* 1 in a build with the CUDA backend; the number of CUDA devices it sees (0 without it). */
DF_API int df_device_cuda_built(void);
DF_API int df_device_cuda_count(void);

/* ---------------------------------------------------------------- randomness */
/* Philox4x32-10 (Salmon et al. 2011): one block of 4 uint32 from a 128-bit counter and a 64-bit key.
 * Known answer: counter {0,0,0,0}, key 0 -> {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}. */
DF_API void df_philox4x32(const uint32_t ctr[4], uint64_t key, uint32_t out[4]);

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
    DF_STREAM_COND_DROP,       /* training: which labels become the null class */
    DF_STREAM_USER = 64,       /* first stream free for callers */
};

/* n standard normals: element e comes from Philox counter {e/4, a, b, stream} under key `seed`
 * (Box-Muller on pairs, in double, rounded to float). */
DF_API void df_randn(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n);
/* n uniforms in [0, 1): element e from counter {e/4, a, b, stream}. */
DF_API void df_randu(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n);
/* One uniform integer in [0, bound) from counter {c, a, b, stream} (bound > 0). */
DF_API uint32_t df_rand_below(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, uint32_t c, uint32_t bound);

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

typedef enum { DF_SAMPLER_ANCESTRAL, DF_SAMPLER_DDIM, DF_SAMPLER_DPMPP_2M, DF_SAMPLER_UNIPC, DF_SAMPLER_COUNT } df_sampler_kind;

/* Precision of the U-Net's matrix products (convolutions, linears, attention): fp32, or bf16 (both
 * inputs of each product rounded to bfloat16, sums in fp32; weights, optimiser state, norms, softmax
 * and all elementwise work stay fp32). A run-time choice (df_model_set_precision), not saved. */
typedef enum { DF_PRECISION_FP32, DF_PRECISION_BF16, DF_PRECISION_COUNT } df_precision;

DF_API const char *df_schedule_name(df_schedule_kind k);
DF_API const char *df_pred_name(df_pred p);
DF_API const char *df_loss_name(df_loss_kind k);
DF_API const char *df_var_name(df_var_kind k);
DF_API const char *df_sampler_name(df_sampler_kind k);
DF_API const char *df_precision_name(df_precision p);  /* "fp32", "bf16" */
/* Each returns DF_OK and sets *out, or DF_ERR_ARG with a message listing the valid names. */
DF_API df_status df_schedule_from_name(const char *s, df_schedule_kind *out);
DF_API df_status df_pred_from_name(const char *s, df_pred *out);
DF_API df_status df_loss_from_name(const char *s, df_loss_kind *out);
DF_API df_status df_var_from_name(const char *s, df_var_kind *out);
DF_API df_status df_sampler_from_name(const char *s, df_sampler_kind *out);
DF_API df_status df_precision_from_name(const char *s, df_precision *out);

/* ---------------------------------------------------------------- noise schedules */
typedef struct {
    df_schedule_kind kind;
    int T;              /* number of diffusion steps (default 1000) */
    double beta_start;  /* linear, exponential, quadratic, sigmoid: beta_1 (default 1e-4) */
    double beta_end;    /* ... and beta_T (default 0.02) */
    double cosine_s;    /* cosine offset s (default 0.008) */
    double max_beta;    /* cosine clip (default 0.999) */
} df_schedule_params;

DF_API void df_schedule_params_init(df_schedule_params *p);

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
DF_API df_status df_schedule_new(const df_schedule_params *p, df_schedule *s);
DF_API void df_schedule_free(df_schedule *s);

/* ---------------------------------------------------------------- forward process */
/* One step q(x_t | x_{t-1}): x_t = sqrt(1 - beta_t) x_prev + sqrt(beta_t) eps. */
DF_API void df_q_step(const df_schedule *s, int i, const float *x_prev, const float *eps, float *x_t, size_t n);
/* Closed form q(x_t | x_0): x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) eps. */
DF_API void df_q_sample(const df_schedule *s, int i, const float *x0, const float *eps, float *x_t, size_t n);
/* Posterior q(x_{t-1} | x_t, x_0): mean into `mean`; returns the variance sigma_q^2(t). */
DF_API double df_q_posterior(const df_schedule *s, int i, const float *x0, const float *x_t, float *mean, size_t n);

/* ---------------------------------------------------------------- parameterisations */
/* Converts a network output `in`, in parameterisation `from`, at step i and point x_t, to the
 * parameterisation `to` (all exact; computed in double). in and out may alias. */
DF_API void df_pred_convert(const df_schedule *s, int i, df_pred from, df_pred to, const float *x_t,
                     const float *in, float *out, size_t n);
/* The training target of `pred` for a pair (x0, eps) that made x_t. */
DF_API void df_pred_target(const df_schedule *s, int i, df_pred pred, const float *x0, const float *eps,
                    const float *x_t, float *target, size_t n);
/* Model variance sigma^2(t) of p(x_{t-1}|x_t) and its log; at i = 0 the posterior choice uses
 * the clipped value posterior_var[1] (DDPM code) so that the bound stays finite. */
DF_API double df_model_var(const df_schedule *s, df_var_kind var, int i);
DF_API double df_model_log_var(const df_schedule *s, df_var_kind var, int i);
/* d mu_theta / d output for parameterisation `pred` at step i (mu is affine in the output). */
DF_API double df_pred_mean_slope(const df_schedule *s, df_pred pred, int i);
/* The note's KL weight: L_{t-1} = weight * ||target - output||^2 (+ a constant when the model
 * variance is not sigma_q^2). weight = (d mu / d output)^2 / (2 sigma^2(t)):
 *  mean: 1/(2 s2);  x0: coef_x0^2/(2 s2) (the note's coefficient, squared);
 *  eps: beta^2 / ((1 - alphabar) alpha) / (2 s2);  v: coef_x0^2 (1 - alphabar) / (2 s2). */
DF_API double df_vlb_weight(const df_schedule *s, df_pred pred, df_var_kind var, int i);

/* Loss of one batch: out and target are n x dim, t_index has n entries.
 *  simple: mean over batch and elements of (out - target)^2;
 *  vlb:    mean over batch of weight(i) * mean over elements of (out - target)^2 (nats/dim).
 * Writes dL/dout into dout (if not NULL). Returns the loss. */
DF_API double df_loss(const df_schedule *s, df_pred pred, df_loss_kind loss, df_var_kind var, int n, size_t dim,
               const int *t_index, const float *out, const float *target, float *dout);

/* KL( N(m1, v1) || N(m2, v2) ) summed over n elements with scalar variances, in nats. */
DF_API double df_kl_gaussian(const float *m1, double v1, const float *m2, double v2, size_t n);

/* ---------------------------------------------------------------- samplers */
/* The network as the diffusion code sees it: write into out (n x dim) the prediction for the n
 * inputs x_t (n x dim) at steps t_index[0..n-1]. Returns DF_OK or an error status. */
typedef df_status (*df_predict_fn)(void *ctx, int n, const int *t_index, const float *x_t, float *out);

/* Called after every sampler step with the current x (n x dim); `t_index` is the step just
 * reached (-1 for x_0). Return non-zero to stop (df_sample returns DF_ERR_INTERRUPTED). */
typedef int (*df_step_fn)(void *ctx, int step, int nsteps, int t_index, const float *x, int n, size_t dim);

typedef struct {
    df_sampler_kind sampler;  /* ancestral (the note's algorithm, default), DDIM, DPM-Solver++(2M), UniPC */
    int steps;                /* DDIM, DPM++, UniPC: number of steps S (default 50); ancestral always uses T */
    double eta;               /* DDIM: 0 = deterministic, 1 = DDPM-like noise */
    /* DDIM, DPM++, UniPC: the S step indices, ascending, each in 0..T-1 (NULL: the sampler's own
     * spacing: DDIM k T / S, as DDIM's code; DPM++ and UniPC round(linspace(0, T-1, S+1))[1..S],
     * rounded half to even, each index once (S = T runs 1..T-1), as diffusers' schedulers with
     * timestep_spacing "linspace"). */
    const int *timesteps;
    /* DPM++ (Lu et al. 2022, the data-prediction solver): order 2 (default: second-order
     * multistep, first order on the first and the last step, the final sigma zero, as diffusers'
     * defaults), or 1 (every step first order: DDIM with eta 0 on the same timesteps).
     * UniPC (Zhao et al. 2023, bh2, data prediction): the same predictor, and after every step but
     * the last the UniC corrector of the step's order, as diffusers' UniPCMultistepScheduler. */
    int order;
    /* x holds x_T on entry (diffuse sample --noise), instead of x_T drawn from the seed. */
    int x_T_given;
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

DF_API void df_sample_params_init(df_sample_params *p);

/* Draws n samples of `dim` floats into x (n x dim). Sample j uses noise counters of global
 * index first_index + j, so the result does not depend on batch size or thread count.
 * `pred` is what the network outputs. */
DF_API df_status df_sample(const df_schedule *s, df_pred pred, const df_sample_params *p, df_predict_fn fn,
                    void *ctx, int n, size_t dim, uint64_t first_index, float *x, df_step_fn step_fn,
                    void *step_ctx);

/* The DDIM timestep sequence: seq[k] = floor(k * T / S), k = 0..S-1 (ascending). */
DF_API void df_ddim_timesteps(int T, int S, int *seq);

/* A parameter table (names, shapes, offsets into one block): see src/core/params.h. */
typedef struct df_param_table df_param_table;

/* ---------------------------------------------------------------- utilities */
/* Frees what the library returns (arrays, images, decoded pixels: each function that returns
 * memory says so); NULL is a no-op. The one rule: memory from diffuse goes back to df_free (it is
 * free(), so code that called free() on these before keeps working). */
DF_API void df_free(void *p);

/* Monotonic wall clock in seconds. */
DF_API double df_time(void);

/* ---------------------------------------------------------------- optimiser */
/* AdamW and the EMA of the weights, over one contiguous float block.
 *
 * What it is: element-wise updates of a parameter block laid out by a df_param_table (params.h);
 * the gradients, the two AdamW moments and the EMA weights are blocks of the same length and
 * layout, so each update is one loop. Padding between tensors is updated like any element: its
 * gradient is zero, so it stays zero.
 *
 * What it is not: a scheduler of the whole training step. The caller zeroes the gradients,
 * computes df_grad_norm, checks it is finite, and passes the clipping factor to df_adamw_step.
 */

typedef struct {
    double lr;            /* peak learning rate */
    double beta1, beta2;  /* moment decays */
    double eps;           /* added to sqrt(v_hat) */
    double weight_decay;  /* decoupled (AdamW): params *= 1 - lr_t * weight_decay each step */
    long warmup_steps;    /* linear warm-up of the learning rate over this many steps (0 = none) */
    double grad_clip;     /* clip the global L2 norm of the gradient to this (0 = off); used by the caller */
} df_adamw_params;

/* Defaults: lr 2e-4, betas 0.9 / 0.999, eps 1e-8, weight decay 0, no warm-up, clip 1.0. */
DF_API void df_adamw_params_init(df_adamw_params *p);

/* L2 norm sqrt(sum g^2), accumulated in double. The block is cut into parts that depend only on
 * n, each part summed in a fixed order, the parts added in order: the result is the same for
 * any thread count. Returns NaN or inf if g holds a non-finite value (the caller's check). */
DF_API double df_grad_norm(const float *g, size_t n);

/* Learning rate of the 1-based step `step`: lr * min(1, step / warmup_steps), or lr without warm-up. */
DF_API double df_adamw_lr_at(const df_adamw_params *p, long step);

/* One AdamW step (Loshchilov & Hutter 2019; the update of torch.optim.AdamW, amsgrad off) on n
 * elements. step is 1-based (the count of steps including this one; it drives the bias
 * corrections). With g = grad_scale * grads (grad_scale = min(1, clip / norm) for clipping, 1
 * otherwise) and lr_t = df_adamw_lr_at(p, step):
 *   params *= 1 - lr_t * weight_decay
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   params -= lr_t / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * m and v start as zeros and are owned by the caller. Each element is computed in double and
 * rounded once to float. */
DF_API void df_adamw_step(const df_adamw_params *p, long step, float *params, const float *grads, float *m, float *v,
                   size_t n, double grad_scale);

/* EMA decay for the 1-based optimiser step `step`: min(decay, (1 + step) / (10 + step)), the
 * warm-up of TensorFlow's ExponentialMovingAverage(num_updates) used by the DDPM code, so that a
 * short run's EMA is not dominated by the initial weights. */
DF_API double df_ema_decay_at(double decay, long step);

/* ema = decay * ema + (1 - decay) * params on n elements (in double, rounded once). Initialise
 * ema as a copy of the initial params. */
DF_API void df_ema_update(float *ema, const float *params, size_t n, double decay);

/* ---------------------------------------------------------------- networks */
/* The 2-D denoiser: an MLP conditioned on t through a sinusoidal embedding (src/nets/mlp.h). */
/* Upper limits checked by df_mlp_new (the toy problems use far less). */
#define DF_MLP_MAX_LAYERS 32
#define DF_MLP_MAX_WIDTH 65536
#define DF_MLP_MAX_BATCH (1 << 24)

typedef struct {
    int dim;       /* point dimension (inputs = outputs), default 2 */
    int hidden;    /* width of every hidden layer, default 128 */
    int layers;    /* number of hidden layers (>= 1), default 3 */
    int temb_dim;  /* width of the sinusoidal time embedding (even, >= 4), default 64 */
    int classes;   /* class embeddings added to the time embedding (the null class included); 0:
                    * unconditional, the default */
} df_mlp_config;

/* Defaults: {dim 2, hidden 128, layers 3, temb_dim 64}. */
DF_API void df_mlp_config_init(df_mlp_config *c);

/* The DDPM U-Net exactly as diffusers' UNet2DModel builds it (src/nets/unet.h, docs/unet.md). */
#define DF_UNET_MAX_LEVELS 8

typedef struct {
    int in_channels, out_channels, sample_size;
    int n_levels; int block_out_channels[DF_UNET_MAX_LEVELS];  /* e.g. 128,256,256,256 */
    int layers_per_block;                                      /* resnets per down level; up levels have +1 */
    int n_attn; int attn_resolutions[DF_UNET_MAX_LEVELS];      /* pixel sizes at which levels have attention */
    int norm_num_groups; float norm_eps;
    float dropout;
    int attention_head_dim;                                    /* 0 = one head over all channels (diffusers null) */
    int freq_shift, flip_sin_to_cos;                           /* time embedding: 1, 0 for DDPM */
    int num_class_embeds;                                      /* 0: unconditional; K+1 for K classes and the
                                                                * null class (diffusers' num_class_embeds,
                                                                * class_embed_type null) */
} df_unet_config;

/* Fills *c with a named preset: "fmnist-small" (1x28x28, 32,64,64, attention at 7; the same network
 * as torch_ddpm.py --config small) or "ddpm-cifar10" (google/ddpm-cifar10-32: 3x32x32,
 * 128,256,256,256, attention at 16, dropout 0.1; 35,746,307 parameters in 328 tensors).
 * DF_ERR_ARG naming the valid presets for any other name. */
DF_API df_status df_unet_preset(const char *name, df_unet_config *c);

/* DF_OK, or DF_ERR_ARG with a message naming the first problem: counts out of range, groups not
 * dividing a channel count, a sample size that does not halve evenly at every downsampler, an
 * attention resolution that no level has, a head size not dividing an attention layer's channels. */
DF_API df_status df_unet_config_validate(const df_unet_config *c);

/* Reads a diffusers UNet2DModel config.json (text[0..len)) into *c: attention at level i when
 * down_block_types[i] is AttnDownBlock2D (up_block_types must mirror them), attention_head_dim null =
 * one head, dropout absent = 0 (as diffusers loads google/ddpm-cifar10-32). DF_ERR_FORMAT for bad
 * JSON or a missing key, DF_ERR_UNSUPPORTED naming an option this network does not implement
 * (another act_fn, block type, time embedding, downsample_padding != 0, class embedding, ...),
 * DF_ERR_ARG if the result fails df_unet_config_validate. */
DF_API df_status df_unet_config_from_json(const char *text, size_t len, df_unet_config *c);

/* Writes c as diffusers config.json text (the keys of google/ddpm-cifar10-32's config plus
 * "dropout") into buf (cap bytes, NUL-terminated when cap > 0). Returns the length of the full
 * text, like snprintf: a result >= cap means it was cut. */
DF_API size_t df_unet_config_to_json(const df_unet_config *c, char *buf, size_t cap);

/* Analytic forward FLOPs per image of a U-Net: 2 * MACs of every conv, linear and attention matmul. */
DF_API double df_unet_forward_flops(const df_unet_config *c);

/* ---------------------------------------------------------------- models */
/* A denoising network together with its diffusion settings, as training, sampling and
 * checkpoints see it. The network is either the 2-D MLP or the U-Net; the diffusion code never
 * sees which (it calls df_model_predict through df_predict_fn).
 *
 * Checkpoint format (model.safetensors): the raw weights under their PyTorch/diffusers names, the
 * EMA weights under "ema/<name>", and the whole configuration in __metadata__ (string values):
 * "diffuse.format" = "1", "diffuse.net" = "mlp" | "unet", "mlp.*" or "unet.config" (a diffusers
 * UNet2DModel config.json), "diffusion.*", "train.*". checkpoint.safetensors holds the same plus
 * the AdamW moments ("train/adam_m", "train/adam_v"), to resume training exactly. */

typedef enum { DF_NET_MLP, DF_NET_UNET } df_net_kind;

typedef struct {
    df_schedule_params schedule;
    df_pred pred;
    df_loss_kind loss;
    df_var_kind var;
} df_diffusion_config;

DF_API void df_diffusion_config_init(df_diffusion_config *d);

typedef struct df_model df_model;  /* opaque: src/model/model_impl.h; the accessors below */

/* Every function that makes a model (df_model_new_*, df_model_load, df_model_open,
 * df_diffusers_load, df_train_load_checkpoint) sets *m to a new model on DF_OK and to NULL on
 * failure; the caller frees it with df_model_free. max_batch bounds the n of every later forward,
 * backward and predict (the activations are planned for it once, here); training = 1 also
 * allocates the gradient block and the AdamW moments. */

/* Builds a new MLP model with freshly initialised weights (EMA = weights). */
DF_API df_status df_model_new_mlp(const df_mlp_config *c, const df_diffusion_config *d, int max_batch,
                                  int training, uint64_t seed, df_model **m);
/* Builds a new U-Net model with freshly initialised weights (EMA = weights). */
DF_API df_status df_model_new_unet(const df_unet_config *c, const df_diffusion_config *d, int max_batch,
                                   int training, uint64_t seed, df_model **m);
/* Frees a model and everything it holds; NULL is a no-op. */
DF_API void df_model_free(df_model *m);

/* What a model is. The pointers returned are views into m, valid until df_model_free. */
DF_API df_net_kind df_model_kind(const df_model *m);
DF_API const df_diffusion_config *df_model_diffusion(const df_model *m);
DF_API const df_schedule *df_model_schedule(const df_model *m);
/* The network's configuration: the U-Net's (NULL for an MLP model) or the MLP's (NULL for a U-Net). */
DF_API const df_unet_config *df_model_unet_config(const df_model *m);
DF_API const df_mlp_config *df_model_mlp_config(const df_model *m);
/* Floats per sample, and its shape through any non-NULL pointer: images C, H, W; 2-D points 2, 1, 1. */
DF_API size_t df_model_sample_shape(const df_model *m, int *channels, int *height, int *width);
DF_API int df_model_max_batch(const df_model *m);
/* Where the weights came from: optimiser steps taken, the training seed, the EMA decay, and the
 * training data spec ("" when not known, as for a diffusers folder). */
DF_API long df_model_step(const df_model *m);
DF_API uint64_t df_model_seed(const df_model *m);
DF_API double df_model_ema_decay(const df_model *m);
DF_API const char *df_model_data(const df_model *m);
/* Records the training data spec (written to checkpoints as "train.data"; cut at 299 bytes). */
DF_API void df_model_set_data(df_model *m, const char *spec);
/* Which weights df_model_predict uses: the EMA weights (on = 1: the default of every new or loaded
 * model) or the raw ones (on = 0). */
DF_API void df_model_set_use_ema(df_model *m, int on);
DF_API int df_model_use_ema(const df_model *m);
/* The parameter blocks, each laid out by df_model_param_table: the raw weights (ema = 0) or the EMA
 * weights (ema = 1), and the gradients (NULL unless the model was made for training). */
DF_API const df_param_table *df_model_param_table(const df_model *m);
DF_API float *df_model_weights(const df_model *m, int ema);
DF_API float *df_model_grads(const df_model *m);

/* Network forward/backward on the weights given (df_model_weights), for n <= max_batch samples. */
/* labels: n class indices for a conditional model (NULL: the null class), NULL otherwise. */
DF_API void df_model_forward(df_model *m, const float *params, int n, const float *x, const int *t, const int *labels,
                             float *out, int training);
DF_API void df_model_backward(df_model *m, const float *params, float *grads, int n, const float *dout);
/* df_predict_fn for the samplers: ctx is a df_model *; the EMA weights unless df_model_set_use_ema(m, 0). */
DF_API df_status df_model_predict(void *ctx, int n, const int *t, const float *x, float *out);
/* Class conditioning (a U-Net with num_class_embeds > 0, Ho & Salimans 2022). df_model_num_classes
 * is num_class_embeds (0: unconditional): a model trained here on K classes has K + 1, the null
 * class ("no class", the label that training dropped with probability --cond-drop) at index K. A
 * conditional diffusers folder made elsewhere has no known null class (df_model_null_class -1) until
 * one is named; df_model_predict on a conditional model predicts for the null class (DF_ERR_ARG
 * while it is not known). */
DF_API int df_model_num_classes(const df_model *m);
DF_API int df_model_null_class(const df_model *m);
/* DF_ERR_ARG for an unconditional model or j outside 0..num_classes-1. */
DF_API df_status df_model_set_null_class(df_model *m, int j);
/* The classes' names, one per line in class order (the null class has none), or NULL: what the
 * training data named them (an image folder's subfolders, Fashion-MNIST's and CIFAR-10's own).
 * Kept in checkpoints ("cond.class_names"; the null class as "cond.null_class"). The setter wants one line per class. */
DF_API const char *df_model_class_names(const df_model *m);
DF_API df_status df_model_set_class_names(df_model *m, const char *names);
/* The index of the class called `name`, or -1. */
DF_API int df_model_class_index(const df_model *m, const char *name);

/* Classifier-free guidance: a df_predict_fn (ctx = the df_guide) that predicts for one class,
 *   out = pred(x, null) + scale * (pred(x, label) - pred(x, null)),
 * both halves in one network batch (so at most max_batch / 2 samples a pass; scale = 1 is the
 * conditional prediction alone, one pass). Guiding the raw output of any parameterisation is
 * guiding eps: eps, x0, v and the posterior mean are each a * x_t + b * eps with the same a, b for
 * both halves, so the combination of the outputs is the output of the combined eps. The buffers
 * are allocated here, once. */
typedef struct {
    df_model *model;
    int label;
    double scale;
    float *x2, *out2;   /* 2 halves of max_batch / 2 samples */
    int *t2, *y2;
} df_guide;
/* DF_ERR_ARG for an unconditional model, a label outside 0..num_classes-1 or equal to the null
 * class, an unknown null class (when scale != 1), a non-finite or negative scale, or max_batch < 2. */
DF_API df_status df_guide_init(df_guide *g, df_model *m, int label, double scale);
DF_API void df_guide_free(df_guide *g);
DF_API df_status df_guided_predict(void *ctx, int n, const int *t, const float *x, float *out);

/* Precision of the network's matrix products from now on (forward, backward, predict); a new or
 * loaded model starts in fp32. Not stored in checkpoints. The U-Net honours it; the 2-D MLP
 * ignores it (always fp32: its products are tiny). */
DF_API void df_model_set_precision(df_model *m, df_precision p);

/* Writes a checkpoint atomically (weights, EMA, config; with_state adds the AdamW moments as
 * "train/adam_m" and "train/adam_v" so that training can resume exactly). */
DF_API df_status df_model_save(const df_model *m, const char *path, int with_state);
/* Loads a checkpoint written by df_model_save, validating every tensor's presence and shape.
 * training = 1 also allocates gradients and AdamW moments, and loads the moments when present. */
DF_API df_status df_model_load(const char *path, int max_batch, int training, df_model **m);
/* Number of parameters (padding excluded) and of named tensors of a model. */
DF_API size_t df_model_param_count(const df_model *m);
DF_API int df_model_tensor_count(const df_model *m);
/* The same for a U-Net configuration, without weights. */
DF_API df_status df_unet_config_counts(const df_unet_config *c, size_t *params, int *tensors);
/* One line describing the model (net, parameter count, diffusion settings). */
DF_API void df_model_describe(const df_model *m, char *buf, size_t cap);

/* ---------------------------------------------------------------- training */
/* The training loop of a df_model (Ho et al. 2020, Algorithm 1, with the loss and
 * parameterisation of the model's diffusion config), AdamW with warm-up and clipping, EMA with
 * warm-up, checkpoints, and exact resume. Everything random is keyed by (seed, step, sample), so
 * an interrupted and resumed run reproduces the uninterrupted one bit for bit.
 * It prints nothing: progress and pictures go through callbacks the caller supplies.
 * Under mpirun (a -DDIFFUSE_MPI=ON build, src/dist/) each of the P processes takes an equal share of
 * every global batch (batch must be a multiple of P; the model is built for batch / P), the
 * gradients are summed over the processes, and all apply the same update; only rank 0 writes files
 * and calls progress and snapshot. The run is the one-process run up to float summation order. */

/* Fills x0 (n x dim) with the training examples of step `step` (1-based), and labels (n class
 * indices) when it is not NULL: a class-conditional model is training. */
typedef void (*df_batch_fn)(void *ctx, uint64_t seed, long step, int n, float *x0, int *labels);

typedef struct {
    long step, total_steps;     /* total_steps 0 when only a time budget is set */
    double loss, loss_avg;      /* this step's loss, and its running mean over the last log interval */
    double grad_norm, lr;
    double elapsed, eta;        /* seconds; eta < 0 when unknown */
    double steps_per_s, examples_per_s;
    int final;                  /* 1 on the last report */
    double allreduce_ms, wait_ms; /* data-parallel: mean wall time per step so far of the gradient
                                 * all-reduce, and of the wait for the slowest rank before it (a
                                 * barrier); 0 in one process */
} df_train_progress;

typedef struct {
    long steps;                 /* train until this many steps in total (0: until the time budget) */
    double minutes;             /* wall-time budget of this invocation (0: none) */
    int batch;                  /* the global batch (all processes of a data-parallel run together) */
    df_adamw_params opt;
    double ema_decay;
    uint64_t seed;
    const char *out_dir;        /* model.safetensors, checkpoint.safetensors, loss.csv land here */
    long ckpt_every;            /* checkpoint every N steps (0: only at the end or on stop) */
    long snapshot_every;        /* call snapshot every N steps (0: only at the end) */
    long report_every;          /* progress every N steps (and at the end) */
    volatile sig_atomic_t *stop;/* set (by a signal handler) to stop cleanly with a checkpoint */
    int nan_skip;               /* skip up to this many isolated non-finite steps instead of stopping */
    double cond_drop;           /* a conditional model: each label becomes the null class with this
                                 * probability (classifier-free guidance's joint training) */
    df_batch_fn batch_fn;
    void *batch_ctx;
    void (*progress)(void *ctx, const df_train_progress *p);
    void *progress_ctx;
    df_status (*snapshot)(void *ctx, df_model *m, long step);  /* pictures of samples */
    void *snapshot_ctx;
} df_train_opts;

DF_API void df_train_opts_init(df_train_opts *o);

/* Trains m (built with training = 1) from m->step on. With resume = 1, m came from
 * df_train_load_checkpoint and the loss log is cut back to m->step. Writes checkpoints to
 * out_dir; returns DF_OK at the end of the budget, DF_ERR_INTERRUPTED after a stop request
 * (checkpoint written), DF_ERR_NAN on a non-finite loss or gradient (the last good checkpoint is
 * kept and not overwritten). */
DF_API df_status df_train(df_model *m, const df_train_opts *o, int resume);

/* Loads out_dir/checkpoint.safetensors into m (training = 1) and its AdamW state for resuming. */
DF_API df_status df_train_load_checkpoint(const char *out_dir, int max_batch, df_model **m);

/* ---------------------------------------------------------------- image datasets */
/* Image datasets held in memory as 8-bit pixels (IDX / MNIST-style, CIFAR-10 binary, a folder
 * of PNG/JPEG files), and the batch gather that turns them into network inputs in [-1, 1].
 *
 * What it is not: no augmentation beyond the left-right flip, no streaming from disk (a dataset is
 * decoded once, whole, into one pixel block), no class folders (folder images have no labels).
 *
 * Dataset specs (the string a user passes to --data):
 *   fashion-mnist            the Fashion-MNIST train split from Debian's dataset-fashion-mnist
 *   fashion-mnist:train      (same)       files under /usr/share/datasets/fashion-mnist
 *   fashion-mnist:test       its test split (t10k-* files)
 *   mnist:DIR                an IDX pair in DIR: train-images-idx3-ubyte + train-labels-idx1-ubyte,
 *   mnist:DIR:train          each raw or gzipped (".gz" is tried when the raw name is absent)
 *   mnist:DIR:test           the t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte pair in DIR
 *   cifar10:DIR              CIFAR-10 "binary version": DIR/data_batch_1.bin .. data_batch_5.bin (all five)
 *   cifar10:DIR:train        (same)
 *   cifar10:DIR:test         DIR/test_batch.bin
 *   folder:DIR               every *.png, *.jpg, *.jpeg in DIR (not recursive, case-insensitive
 *                            extension), sorted by file name (bytewise), labels -1
 * Only a final ":train" or ":test" is read as a split, so DIR itself may contain ':'.
 *
 * Shapes. want_c / want_size are what the model expects (0 = accept the file's):
 *  - IDX and CIFAR images have a fixed shape (1x28x28, 3x32x32); a nonzero want that differs is
 *    DF_ERR_SHAPE ("fashion-mnist images are 1x28x28 but the model expects 3x32x32"). No resizing.
 *  - folder images are converted to want_c channels (1..4, stb_image's conversion: luma for
 *    RGB->gray, alpha dropped or set to 255), resized with area averaging (a box filter: each output
 *    pixel is the overlap-weighted mean of the input pixels its footprint covers) so that the SHORT
 *    side equals want_size, then centre-cropped to want_size x want_size (crop offset rounds down).
 *    want_c = 0 takes the first file's channel count without alpha (1 or 3); want_size = 0 takes the
 *    first file's short side.
 */

typedef struct {
    int n, c, h, w;          /* images (N,C,H,W) */
    uint8_t *pixels;         /* N*C*H*W, CHW order per image, 0..255 */
    int *labels;             /* N entries, -1 if unknown */
    int n_classes;           /* 0 if unknown */
    char *class_names;       /* the classes' names, one per line (an image folder's subfolders, or the
                              * data set's own), or NULL */
    char name[256];          /* e.g. "fashion-mnist:train" */
} df_dataset;

/* Where "fashion-mnist" is looked for (Debian's dataset-fashion-mnist package). */
#define DF_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Loads the dataset named by `spec` (grammar above) into *ds, which the caller frees with
 * df_dataset_free. On failure *ds is left empty (safe to free) and the status says why:
 * DF_ERR_ARG (bad spec or want), DF_ERR_IO (missing file or directory), DF_ERR_FORMAT (bad magic,
 * truncated or oversized file, count mismatch, undecodable image, empty folder), DF_ERR_SHAPE
 * (fixed-shape data that is not want_c x want_size x want_size), DF_ERR_NOMEM. Every message
 * names the file. n_classes is max label + 1 for IDX, 10 for CIFAR-10, 0 for folders. */
DF_API df_status df_dataset_load(const char *spec, int want_c, int want_size, df_dataset *ds);

/* The forms of the grammar above, as df_dataset_spec_check reads them. */
typedef enum {
    DF_DATASET_NONE,          /* none of them: "toy:moons", and "fashion-mnistX" */
    DF_DATASET_FASHION_MNIST, /* fashion-mnist, fashion-mnist:SPLIT */
    DF_DATASET_MNIST,         /* mnist:DIR[:SPLIT] */
    DF_DATASET_CIFAR10,       /* cifar10:DIR[:SPLIT] */
    DF_DATASET_FOLDER,        /* folder:DIR */
} df_dataset_form;

/* Reads `spec` by the grammar above without opening anything (a directory may still be
 * missing): DF_OK if it names an image dataset, else DF_ERR_ARG with df_dataset_load's message.
 * *form (may be NULL) is the form spec begins as, even a malformed one ("fashion-mnist:val" is
 * DF_DATASET_FASHION_MNIST), so that a caller that also reads other data (the CLI's 2-D points)
 * can tell a bad dataset spec from a spec of another kind (DF_DATASET_NONE). */
DF_API df_status df_dataset_spec_check(const char *spec, df_dataset_form *form);

/* Frees what df_dataset_load allocated and zeroes *ds (safe on an empty or zeroed struct). */
DF_API void df_dataset_free(df_dataset *ds);

/* Fills x (n,C,H,W) with images idx[0..n-1] scaled to [-1,1] (x = p/127.5 - 1), mirrored
 * left-right where flip[k] is nonzero (flip may be NULL). Every idx[k] must lie in [0, ds->n)
 * (ASSERT: choosing indices is the caller's job). */
DF_API void df_dataset_batch(const df_dataset *ds, const int *idx, const uint8_t *flip, int n, float *x);

/* ---------------------------------------------------------------- 2-D data */
/* 2-D toy distributions and point files (CSV), for the 2-D denoiser.
 * Every point is a pure function of (seed, index): toy data never needs to be stored. */

typedef enum { DF_TOY_SWISSROLL, DF_TOY_MOONS, DF_TOY_8GAUSSIANS, DF_TOY_CHECKERBOARD, DF_TOY_COUNT } df_toy_kind;

typedef struct {
    int is_file;        /* 0: a toy distribution; 1: a fixed set of points from a CSV file */
    df_toy_kind kind;
    float *points;      /* is_file: n x 2 */
    int n;
    char name[300];     /* "toy:8gaussians" or "csv:PATH" */
    int *labels;        /* is_file with a label column: n class indices in 0..classes-1; else NULL */
    int classes;        /* the file's classes (the largest label + 1), 0 without labels */
} df_points;

/* Parses "toy:NAME" or "csv:PATH" (a path ending in .csv also works). DF_ERR_ARG for an unknown toy,
 * DF_ERR_IO / DF_ERR_FORMAT for a missing or malformed file. Free with df_points_free. */
DF_API df_status df_points_open(const char *spec, df_points *p);
DF_API void df_points_free(df_points *p);

/* Point `index` of the toy distribution under `seed` (uses streams DF_STREAM_DATA/a). */
DF_API void df_toy_point(df_toy_kind kind, uint64_t seed, uint32_t a, uint32_t index, float xy[2]);
/* The component that point drew from: the mode of 8gaussians (0..7), the moon of moons (0, 1);
 * -1 for the sets without components (df_toy_classes 0). */
DF_API int df_toy_label(df_toy_kind kind, uint64_t seed, uint32_t a, uint32_t index);
DF_API int df_toy_classes(df_toy_kind kind);
/* The classes of 2-D data: a toy set's df_toy_classes, a file's label column's; 0 without. */
DF_API int df_points_classes(const df_points *p);

/* Draws n training points for (step, j) pairs: toys draw fresh points, files pick rows uniformly;
 * labels (when not NULL) gets each point's class: df_toy_label, or the file's label column (-1
 * for a file without one). */
DF_API void df_points_draw(const df_points *p, uint64_t seed, uint32_t step, int n, float *xy, int *labels);

/* Reads a CSV of x,y rows (an optional header line, '#' comments and blank lines allowed).
 * Errors name the file and line. *pts is malloc'ed (n x 2). Further columns are ignored. */
DF_API df_status df_csv_read_points(const char *path, float **pts, int *n);
/* The same, with the third column as a class label when the first row has one: then every row
 * must have an integer label in 0..65535, and every class 0..K-1 (K = the largest + 1, at least 2)
 * must occur; *labels is malloc'ed (n), or NULL when the file has no label column. */
DF_API df_status df_csv_read_labelled_points(const char *path, float **pts, int **labels, int *n);
/* Writes "x,y" rows with a header, atomically. */
DF_API df_status df_csv_write_points(const char *path, const float *pts, int n);

/* Energy distance between point sets a (na x 2) and b (nb x 2): 2E|a-b| - E|a-a'| - E|b-b'|. */
DF_API double df_energy_distance(const float *a, int na, const float *b, int nb);

/* ---------------------------------------------------------------- pictures */
/* PNG files, sample grids and two small plots (scatter, line chart).
 * What it is: 8-bit PNG read/write through libpng, a [-1,1] float batch to picture-grid
 * converter, and a deliberately simple rasteriser (Bresenham lines, square dots, our own
 * 5x7 bitmap font) for loss curves and 2-D sample plots.
 * What it is not: an image-processing or general plotting library (no antialiasing,
 * no resizing, no colour management: pixel values are passed through as they are). */

/* Writes pixels (height rows top to bottom, each width*channels interleaved bytes) as an 8-bit
 * PNG: channels 1 = gray, 3 = RGB, 4 = RGBA. Atomic: a failed write leaves an old file at path.
 * DF_ERR_ARG for bad sizes, DF_ERR_IO if the file cannot be written. */
DF_API df_status df_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels);

/* Reads any PNG (palette, gray, gray+alpha, RGB, RGBA; 1..16 bits; interlaced or not) into a
 * new 8-bit buffer (free with df_free): gray -> 1 channel, RGB or palette -> 3, anything with
 * alpha (including tRNS) -> 4 (gray+alpha becomes RGBA). 16-bit samples are scaled to 8 bits.
 * DF_ERR_IO if the file cannot be opened, DF_ERR_FORMAT (naming the file) if it is not a PNG
 * or is corrupt or truncated. On failure *pixels is NULL. */
DF_API df_status df_png_read(const char *path, uint8_t **pixels, int *width, int *height, int *channels);

/* Tiles n images x (N,C,H,W), values in [-1,1], into one picture of c channels (c = 1 or 3),
 * interleaved, in a grid of min(cols, n) columns and ceil(n/cols) rows with `pad` pixels of
 * value 0 around and between the images (torchvision make_grid layout):
 * out_w = pad + cols*(w + pad), out_h = pad + rows*(h + pad), image k at column k % cols,
 * row k / cols. Pixel = clamp(floor((x + 1) * 127.5 + 0.5), 0, 255) (NaN -> 0).
 * *out is new (free with df_free). DF_ERR_ARG for bad sizes. */
DF_API df_status df_image_grid(const float *x, int n, int c, int h, int w, int cols, int pad, uint8_t **out, int *out_w,
                        int *out_h);

/* A 600x600 RGB scatter plot of 2-D points: a (na x,y pairs, the data) as light grey dots and
 * b (nb pairs, the samples) as strong blue dots on top, in common axes with equal scale on x
 * and y, bounded by the 0.5..99.5 percentiles of the union of both sets (points outside are
 * not drawn), with a frame, tick labels, a legend and `title` (may be NULL) on top.
 * Non-finite points are skipped. Written atomically as PNG. */
DF_API df_status df_plot_scatter(const char *path, const float *a, int na, const float *b, int nb, const char *title);

/* An 800x500 RGB line chart of y against x (n points), with a second series y2 (may be NULL,
 * e.g. a smoothed curve) drawn in a stronger colour on top; log_y draws y on a log10 axis
 * (values <= 0 are skipped there). Non-finite points break the line. Frame, grid, tick labels,
 * title and axis labels (each may be NULL). Written atomically as PNG. DF_ERR_ARG if n < 1. */
DF_API df_status df_plot_lines(const char *path, const double *x, const double *y, int n, const double *y2, int log_y,
                        const char *title, const char *xlabel, const char *ylabel);

/* ---------------------------------------------------------------- NumPy arrays */
/* NumPy .npy files (format versions 1.0 and 2.0; see numpy.lib.format).
 * What it is: writing plain little-endian C-order arrays, and reading them back as float32.
 * What it is not: .npz archives, structured or object dtypes, Fortran order, big-endian data. */

/* Writes data (C order, ndim <= 8 dims in shape) atomically as a version 1.0 file (2.0 if the
 * header would not fit in 64 KiB). descr is the NumPy dtype string: "<f4", "<f8", "|u1",
 * "<i4" or "<i8"; data holds its raw little-endian elements. DF_ERR_ARG for a descr or shape
 * outside that, DF_ERR_IO if the file cannot be written (an old file at path stays). */
DF_API df_status df_npy_write(const char *path, const char *descr, int ndim, const int64_t *shape, const void *data);

/* Reads a .npy file of dtype <f4, <f8 or |u1 (v1.0, v2.0 or v3.0) into a new float32 array
 * (*data, free with df_free), its shape into shape[0..*ndim). fortran_order True and other
 * dtypes give DF_ERR_UNSUPPORTED; a malformed or truncated file DF_ERR_FORMAT naming the file;
 * an unreadable one DF_ERR_IO. On failure *data is NULL. */
DF_API df_status df_npy_read_f32(const char *path, int *ndim, int64_t shape[8], float **data);

/* ---------------------------------------------------------------- diffusers interchange */
/* Model interchange with Hugging Face diffusers (a UNet2DModel folder or a DDPMPipeline
 * folder), in both directions.
 *
 * What it is: a loader that turns a diffusers folder into a df_model (U-Net weights, diffusion
 * settings from the scheduler) and a writer that turns a df_model back into a DDPMPipeline folder
 * that diffusers' DDPMPipeline.from_pretrained() loads. Every config field is either understood,
 * explicitly informational (_class_name, _diffusers_version, _name_or_path, ...) or refused by name;
 * every tensor of the weights file is either used by the network or refused by name. Nothing is
 * silently ignored, because a field or tensor we skip would be a network we compute differently.
 *
 * What it is not: a reader of PyTorch pickles (diffusion_pytorch_model.bin), sharded or variant
 * (.fp16) weight files, Flax weights, or of any pipeline other than DDPM/DDIM with a UNet2DModel.
 *
 * Folder layouts (docs/unet.md, section 6):
 *   model folder:    DIR/config.json, DIR/diffusion_pytorch_model.safetensors
 *                    (and, as an extension, DIR/scheduler_config.json if present)
 *   pipeline folder: DIR/model_index.json (optional when reading), DIR/unet/config.json,
 *                    DIR/unet/diffusion_pytorch_model.safetensors, DIR/scheduler/scheduler_config.json
 *                    (optional when reading: without it the DDPM paper's settings are used).
 */

/* What a diffusers scheduler says that df_model does not hold: the sampler's x0 clipping. */
typedef struct {
    int has_scheduler;          /* 1 if a scheduler_config.json was read, 0 if the defaults were used */
    char scheduler[32];         /* its _class_name ("DDPMScheduler", "DDIMScheduler"); "" without one */
    int clip_sample;            /* clamp the predicted x0 while sampling (diffusers default: true) */
    double clip_sample_range;   /* ... to [-range, range] (diffusers default 1.0) */
} df_diffusers_info;

/* The DDPM paper's settings, used when a folder has no scheduler and by df_diffusers_save:
 * no scheduler read, clip_sample 1, range 1.0. */
DF_API void df_diffusers_info_init(df_diffusers_info *info);

/* Loads the diffusers model or pipeline folder `dir` into *m (a U-Net model for batches up to
 * max_batch; training = 1 also allocates gradients and AdamW moments, zeroed). The EMA weights are
 * the loaded weights and use_ema is 1; step, seed and ema_decay are 0 (diffusers does not record
 * them); the loss is "simple".
 *  config.json -> the network; every key must be understood: DF_ERR_UNSUPPORTED "DIR/config.json:
 *    unsupported field 'X' = V (...)" for an unknown key or a value the network does not implement.
 *    Absent keys take diffusers' defaults (as diffusers itself does for configs written by older
 *    versions), and a default the network does not implement is refused by name too.
 *  scheduler_config.json (DDPMScheduler or DDIMScheduler) -> m->diff: num_train_timesteps -> T;
 *    beta_schedule linear -> linear, scaled_linear -> quadratic, squaredcos_cap_v2 -> cosine
 *    (s 0.008, max_beta 0.999), sigmoid -> sigmoid; variance_type fixed_small -> posterior,
 *    fixed_large -> beta; prediction_type epsilon / sample / v_prediction -> eps / x0 / v.
 *    Without the file: linear 1e-4..0.02, T 1000, eps, beta variance (the DDPM paper's CIFAR-10 run).
 *  diffusion_pytorch_model.safetensors -> weights, looked up by name (F32, F16, BF16 or F64); the
 *    legacy attention names query/key/value/proj_attn stand for to_q/to_k/to_v/to_out.0.
 *    DF_ERR_FORMAT names a missing tensor or a tensor the network does not use; DF_ERR_SHAPE a
 *    wrong shape; DF_ERR_NAN non-finite weights.
 * DF_ERR_IO names a missing or unreadable file. On failure *m is NULL. */
/* *info (may be NULL) gets the scheduler's clipping settings. */
DF_API df_status df_diffusers_load(const char *dir, int max_batch, int training, df_model **m, df_diffusers_info *info);

/* The two config readers of df_diffusers_load, on their own (same checks, same messages):
 * a UNet2DModel config.json file -> *c, and a scheduler_config.json file -> *d (loss "simple") and
 * *info (may be NULL). */
DF_API df_status df_diffusers_read_unet_config(const char *path, df_unet_config *c);
DF_API df_status df_diffusers_read_scheduler(const char *path, df_diffusion_config *d, df_diffusers_info *info);

/* Writes m as a DDPMPipeline folder `dir` (created if needed; files already there are replaced):
 * model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors (F32, PyTorch layout,
 * metadata {"format": "pt"}; the EMA weights if use_ema, else the raw ones) and
 * scheduler/scheduler_config.json (DDPMScheduler, the inverse of the mapping above, clip_sample
 * true in [-1, 1]). Each file is written atomically; model_index.json is written last, so a folder
 * that has it is complete. DF_ERR_ARG for a model that is not a U-Net; DF_ERR_UNSUPPORTED, before
 * anything is written, for settings diffusers cannot express (the "mean" parameterisation, the
 * exponential schedule, a cosine schedule with s != 0.008 or max_beta != 0.999); DF_ERR_IO on a
 * failed write. */
/* The scheduler's clip_sample and clip_sample_range come from *info (NULL = the defaults of
 * df_diffusers_info_init). */
DF_API df_status df_diffusers_save(const df_model *m, const char *dir, int use_ema, const df_diffusers_info *info);

/* Opens a model whatever its form: a directory is read with df_diffusers_load, anything else with
 * df_model_load (a diffuse checkpoint). Same contract as those two. */
/* *info (may be NULL) is filled as df_diffusers_load fills it; a checkpoint has no scheduler, so
 * it gets df_diffusers_info_init's values (has_scheduler 0), as a diffusers folder without one does. */
DF_API df_status df_model_open(const char *path, int max_batch, int training, df_model **m, df_diffusers_info *info);

/* ---------------------------------------------------------------- the variational bound */
/* Measuring a model: the variational bound of Ho et al. 2020 (section 3.3) on held-out data,
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

DF_API void df_bound_params_init(df_bound_params *p);

/* The bound of n samples. Per-sample arrays are in nats per sample (summed over its dim values). */
typedef struct {
    int n;                    /* samples */
    size_t dim;               /* values per sample (D) */
    int T;
    int n_t;                  /* KL terms evaluated: T-1, or K */
    int estimate;             /* 1 when a subset was evaluated (the KL sum is then an estimate) */
    int *t_eval;              /* n_t: the evaluated t (1-based, 2..T), ascending */
    double *t_weight;         /* n_t: how many KL terms t_eval[k] stands for (its stratum's width; 1 when all) */
    double *total;            /* n: prior + decoder + kl */
    double *prior;            /* n: L_T */
    double *decoder;          /* n: L_0 */
    double *kl;               /* n: sum over k of t_weight[k] * L_{t_eval[k]-1} */
    double *t_mean, *t_se;    /* n_t: mean over samples of L_{t-1} at t_eval[k] (unscaled) and its
                                 standard error */
    double *t_sum, *t_sq;     /* n_t: the sums over samples behind them, of L_{t-1} and of its square */
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
DF_API df_status df_bound_eval(const df_schedule *s, const df_bound_params *p, df_predict_fn fn, void *ctx, int n,
                        size_t dim, const float *x0, df_bound_result *r);
DF_API void df_bound_result_free(df_bound_result *r);
/* For an evaluation split over processes (each evaluates a share with first_index set, and the
 * shares are put together): df_bound_result_new gives a zeroed result for n samples, whose
 * per-sample arrays (total, prior, decoder, kl) and t_sum, t_sq the caller fills; df_bound_summarize
 * then computes every mean and standard error from them, as df_bound_eval does. */
DF_API df_status df_bound_result_new(const df_schedule *s, const df_bound_params *p, int n, size_t dim,
                                     df_bound_result *r);
DF_API void df_bound_summarize(df_bound_result *r);

/* The subset of K timesteps in 2..T (1 <= K <= T-1) that stands for all T-1 KL terms: K strata whose
 * starts rise geometrically, lo(k) = round(2 ((T+1)/2)^(k/K)) (then made at least one t wide and
 * leaving room for the rest), lo(0) = 2, lo(K) = T+1; t[k] = floor((lo(k) + lo(k+1) - 1) / 2), the
 * stratum's middle, weight[k] = lo(k+1) - lo(k) its width (weight may be NULL). Ascending and
 * distinct; K = T-1 gives every t with weight 1. Why geometric: the terms fall by orders of magnitude
 * over the first few dozen t and are nearly flat after, so equal strata misjudge the sum badly. */
DF_API void df_bound_timesteps(int T, int K, int *t, double *weight);

/* nats per sample -> bits per dimension: nats / (dim ln 2). */
DF_API double df_bound_bits_per_dim(const df_bound_result *r, double nats);

/* ---------------------------------------------------------------- FID (src/metrics/) */
/* The Frechet distance of Heusel et al. 2017 (FID) between two sets of images: each set's features
 * (a fixed network's activations) are summarised by their mean mu and covariance S, and
 *   d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}),
 * the squared 2-Wasserstein distance of the two Gaussians. All of it in double. The trace of the
 * square root comes from symmetric eigendecompositions (LAPACK dsyevd): with S1 = V L V^T,
 * M = L^{1/2} V^T S2 V L^{1/2} is S1^{1/2} S2 S1^{1/2} in S1's eigenbasis, symmetric PSD with the
 * eigenvalues of S1 S2, and tr((S1 S2)^{1/2}) = sum sqrt(eig(M)) (tiny negative eigenvalues of
 * rounding clamped to 0). This holds for singular covariances too, where pytorch-fid's scipy sqrtm
 * adds eps I and retries.
 *
 * What it is not: the KID, precision/recall, or a guarantee that two feature networks' distances
 * compare (an FID is only comparable under the same network and the same N). */
typedef struct {
    int dim;       /* features per image */
    long n;        /* images summarised */
    double *mu;    /* dim */
    double *sigma; /* dim x dim, row-major: the unbiased covariance (divided by n - 1, as numpy.cov) */
} df_fid_stats;

/* Mean and covariance of n feature vectors (features: n x dim floats), in double: the exact mean
 * first, then the centred products (two passes, so no cancellation whatever the features' offset).
 * Fills *s (free with df_fid_stats_free). DF_ERR_ARG for n < 2 (no covariance) or dim < 1,
 * DF_ERR_NAN for a non-finite feature. */
DF_API df_status df_fid_stats_compute(const float *features, long n, int dim, df_fid_stats *s);
DF_API void df_fid_stats_free(df_fid_stats *s);

/* The statistics as a safetensors file (mu (dim) and sigma (dim, dim) in F64, metadata fid.n and
 * fid.key = key), for caching; load checks that the file's key equals key (DF_ERR_FORMAT when it
 * does not: the file was made for another input or network). */
DF_API df_status df_fid_stats_save(const df_fid_stats *s, const char *key, const char *path);
DF_API df_status df_fid_stats_load(const char *path, const char *key, df_fid_stats *s);

/* d^2 above for two Gaussians of dimension dim (sigma row-major, symmetric positive semi-definite),
 * clamped at 0 (rounding can leave -1e-13 for equal inputs). DF_ERR_ARG for dim < 1, DF_ERR_NAN for
 * non-finite inputs, DF_ERR_UNSUPPORTED if the eigensolver fails. */
DF_API df_status df_frechet_distance(int dim, const double *mu1, const double *sigma1, const double *mu2,
                                     const double *sigma2, double *d2);

/* Feature networks: "fmnist", a small CNN trained on Fashion-MNIST (models/fid-fmnist.safetensors,
 * made by tools/train_fid_features.py: 1x28x28 inputs, 128 features, 10 class logits), and
 * "inception", Inception-v3's 2048-d pool3 features as pytorch-fid computes them (a safetensors
 * file of pytorch-fid's weights, tools/convert_pytorch_fid.py). Inputs are images in [-1, 1]. */
typedef enum { DF_FEATNET_FMNIST, DF_FEATNET_INCEPTION, DF_FEATNET_COUNT } df_featnet_kind;
DF_API const char *df_featnet_name(df_featnet_kind k);
/* DF_OK and *out, or DF_ERR_ARG listing the names. */
DF_API df_status df_featnet_from_name(const char *s, df_featnet_kind *out);

typedef struct df_featnet df_featnet;
typedef struct {
    df_featnet_kind kind;
    int channels, height, width; /* the input it takes; height = width = 0: any size (resized inside) */
    int dim;                     /* features per image */
    int n_classes;               /* logits per image (0: none) */
    char desc[256];              /* one line for people: what the network is (its test accuracy, ...) */
} df_featnet_info;

/* Loads feature network `kind` from the safetensors file at path, for batches of up to max_batch
 * images (larger calls run in chunks). *net is new (free with df_featnet_free), NULL on failure:
 * DF_ERR_IO for a missing file, DF_ERR_FORMAT for a file of another network (missing or extra
 * tensors, metadata featnet naming another), DF_ERR_SHAPE for a tensor of the wrong shape. */
DF_API df_status df_featnet_load(df_featnet_kind kind, const char *path, int max_batch, df_featnet **net);
DF_API void df_featnet_free(df_featnet *net);
DF_API const df_featnet_info *df_featnet_get_info(const df_featnet *net);
/* DF_OK when images of c x h x w are what net takes, else DF_ERR_SHAPE saying what it takes. */
DF_API df_status df_featnet_check_input(const df_featnet *net, int c, int h, int w);
/* features (n x dim) and, unless NULL, logits (n x n_classes; net must have them) of the n images
 * x (n x c x h x w, values in [-1, 1]). DF_ERR_SHAPE as df_featnet_check_input, DF_ERR_NOMEM. */
DF_API df_status df_featnet_forward(df_featnet *net, int n, int c, int h, int w, const float *x, float *features,
                                    float *logits);

#ifdef __cplusplus
}
#endif
#endif
