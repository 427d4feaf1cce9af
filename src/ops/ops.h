/* ops.h: the neural-network ops of diffuse, each a forward/backward pair with explicit shapes.
 *
 * This header is the seam where another backend (CUDA, later) slots in: models call only these.
 * Layout: NCHW float32 at this interface ("hw" = H*W). Weights in PyTorch order: conv (OC,IC,KH,KW),
 * linear (OUT,IN).
 *
 * Gradient convention (one rule for every op): every backward ACCUMULATES (+=) into all of its
 * gradient outputs, input gradients and parameter gradients alike. The caller zeroes the gradient
 * blocks once per step. A NULL gradient pointer means "not needed" and is skipped. The one
 * exception is opt-in: where a model's first write to an input gradient is a backward, it may ask
 * that backward to overwrite (=) the input gradient instead of zeroing it first
 * (df_conv_shape.dinp_set, df_groupnorm_backward_set, df_silu_backward_set; parameter gradients
 * still accumulate); the tests check each against zero + accumulate.
 *
 * Each op with a fast path also has a plain `_ref` version: the fallback and the oracle that the
 * tests compare the fast one against. No op allocates: workspace comes from the caller, sized by
 * the *_scratch_floats() functions.
 *
 * Precision (diffuse.h df_precision): the matrix products of conv2d, linear and attention take a
 * precision. fp32 (the default) is unchanged; bf16 runs them on df_gemm_bf16 (gemm.h): the two
 * inputs of every product are rounded to bfloat16, the sums are fp32, and everything else (weights,
 * outputs, gradients, biases, softmax, the ops below without products) stays fp32. The scratch sizes
 * cover either precision, so one buffer serves both. The `_ref` versions are always fp32 (the
 * oracles).
 */
#ifndef DF_OPS_H
#define DF_OPS_H

#include "diffuse.h"
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- conv2d */
/* 2-D convolution with independent top/left/bottom/right zero padding, so that the DDPM
 * downsampler (pad 0 top/left, 1 bottom/right, 3x3 stride 2) is one call.
 * oh = (h + pad_t + pad_b - kh) / stride + 1, likewise ow. */
typedef struct {
    int n, ic, h, w;      /* input (N,IC,H,W) */
    int oc, kh, kw;       /* weight (OC,IC,KH,KW) */
    int stride;
    int pad_t, pad_l, pad_b, pad_r;
    int oh, ow;           /* derived */
    int threads;          /* derived: OpenMP threads of the fast path (omp_get_max_threads() at init) */
    df_precision precision; /* GEMM inputs: fp32 (set by init) or bf16 (set by the caller after init) */
    int dinp_set;         /* backward: 0 (init) dinp += the input gradient; 1 dinp = it (overwritten,
                           * so the caller need not zero it first). dw, db always accumulate. */
} df_conv_shape;

/* Fills s (precision fp32) and derives oh, ow and threads. The fast path runs one image per thread with a
 * single-threaded sgemm each (OpenBLAS runs single-threaded inside an OpenMP parallel region),
 * which on small images is several times faster than one multi-threaded sgemm per image; its
 * workspace therefore grows with the thread count captured here. */
void df_conv_shape_init(df_conv_shape *s, int n, int ic, int h, int w, int oc, int k, int stride,
                        int pad_t, int pad_l, int pad_b, int pad_r);
/* Floats of workspace that df_conv2d_forward/backward need for this shape (and its thread count),
 * in either precision. */
size_t df_conv2d_scratch_floats(const df_conv_shape *s);

/* out (N,OC,OH,OW) = conv(inp (N,IC,H,W), w (OC,IC,KH,KW)) + b (OC) [b may be NULL]. Overwrites out. */
void df_conv2d_forward(float *out, const float *inp, const float *w, const float *b, const df_conv_shape *s,
                       float *scratch);
/* dinp (N,IC,H,W) += ..., dw (OC,IC,KH,KW) += ..., db (OC) += ... from dout (N,OC,OH,OW). */
void df_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const df_conv_shape *s, float *scratch);
/* Test and bench hook: force != 0 makes convs with small outputs (<= 64 positions) run image by
 * image instead of batched (one GEMM over the columns of all images); 0 restores the automatic
 * choice. Process-wide; size scratch after setting it; not for use while convs run. */
void df_conv2d_force_per_image(int force);
/* What the U-Net does around most of its 3x3 convs, done inside the conv's own passes (the direct
 * path): the input is read as SiLU(GroupNorm(inp)) from the norm's cached statistics (the
 * normalised tensor is never written to memory), and the output gets a per-(image, channel) bias
 * (the time embedding) and/or a residual. The result is the same bits as the separate ops:
 * df_groupnorm_silu_apply, df_conv2d_forward, df_add_channel_bias_forward, then
 * df_add_forward(out, out, residual). Every member may be NULL (norm_mean NULL: no norm). */
typedef struct {
    const float *norm_mean, *norm_rstd;  /* (N, norm_groups), as df_groupnorm_stats caches them */
    const float *norm_gamma, *norm_beta; /* (IC) */
    int norm_groups;
    const float *chan_bias;              /* (N, OC) */
    const float *residual;               /* (N, OC, OH, OW); must not alias out */
} df_conv_fusion;
/* 1 when df_conv2d_forward_fused takes this shape (the direct 3x3 path on this CPU); otherwise the
 * caller runs the ops one by one. Depends on the shape, precision and CPU only. */
int df_conv2d_fuses(const df_conv_shape *s);
/* out = the fused forward above; s must satisfy df_conv2d_fuses. Scratch: df_conv2d_scratch_floats. */
void df_conv2d_forward_fused(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                             const df_conv_shape *s, float *scratch);
void df_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b, const df_conv_shape *s);
void df_conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const df_conv_shape *s);

/* ---------------------------------------------------------------- linear */
/* Floats of workspace df_linear_forward/backward need in bf16 (fp32 needs none: scratch may be NULL). */
size_t df_linear_scratch_floats(int n, int in, int out_dim);
/* out (N,OUT) = inp (N,IN) w^T (w: OUT,IN) + b (OUT) [b may be NULL]. Overwrites out. */
void df_linear_forward(float *out, const float *inp, const float *w, const float *b, int n, int in, int out_dim,
                       df_precision precision, float *scratch);
/* dinp (N,IN) += dout w; dw (OUT,IN) += dout^T inp; db (OUT) += sum_n dout. */
void df_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        int n, int in, int out_dim, df_precision precision, float *scratch);

/* ---------------------------------------------------------------- group norm */
/* out (N,C,HW) = GroupNorm(inp) * gamma (C) + beta (C), `groups` groups of C/groups channels,
 * biased variance, eps inside the sqrt (PyTorch). Caches mean and rstd (N,groups) for backward. */
void df_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int n, int c, int hw, int groups, float eps);
void df_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int n, int c, int hw, int groups);
/* Fused GroupNorm + SiLU (the U-Net's norm -> nonlinearity pairs), one pass for the output, the
 * same bits as df_groupnorm_forward then df_silu_forward: out_silu = SiLU(GroupNorm(inp)), the
 * statistics cached as df_groupnorm_forward does (the normalised values are not stored). */
void df_groupnorm_silu_forward(float *out_silu, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, int n, int c, int hw, int groups, float eps);
/* df_groupnorm_apply and SiLU of its result in one pass: out (may be NULL: not wanted) = the norm's
 * output from the cached statistics, out_silu = SiLU(out). */
void df_groupnorm_silu_apply(float *out, float *out_silu, const float *mean, const float *rstd, const float *inp,
                             const float *gamma, const float *beta, int n, int c, int hw, int groups);
/* The same with dinp = the input gradient (overwritten, not accumulated); dgamma, dbeta accumulate. */
void df_groupnorm_backward_set(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                               const float *mean, const float *rstd, const float *gamma, int n, int c, int hw,
                               int groups);
/* Only the statistics of df_groupnorm_forward (mean, rstd (N, groups)), for a consumer that applies
 * the norm itself (df_conv2d_forward_fused). */
void df_groupnorm_stats(float *mean, float *rstd, const float *inp, int n, int c, int hw, int groups, float eps);
/* out_silu (C, HW) = SiLU(GroupNorm(inp)) of ONE image from its cached statistics (mean, rstd: its
 * `groups` values): df_groupnorm_silu_apply's bits, on the calling thread, not profiled (for use
 * inside another op's parallel loop). */
void df_groupnorm_silu_image(float *out_silu, const float *mean, const float *rstd, const float *inp,
                             const float *gamma, const float *beta, int c, int hw, int groups);
/* dinp (overwritten) = dout * SiLU'(GroupNorm(inp)), the norm's output rebuilt from its cached
 * statistics on the fly: df_groupnorm_apply then df_silu_backward_set in one pass, the same bits,
 * without writing the norm's output to memory. */
void df_groupnorm_silu_grad_set(float *dinp, const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, const float *beta, int n, int c, int hw,
                                int groups);
/* The backward of SiLU(GroupNorm(inp)) in one op: t = dout * SiLU'(GN(inp)) as
 * df_groupnorm_silu_grad_set computes it, then dinp (set != 0: overwritten, else +=), dgamma and
 * dbeta (+=) from t as df_groupnorm_backward(_set) computes them: the same bits as those two calls,
 * in one pass over the tensors (threads over groups). t lives on the stack an image's group at a
 * time when a group (C / groups x HW) has at most 4096 values; larger ones need tmp (N, C, HW
 * floats; contents afterwards unspecified), which may be NULL otherwise. */
size_t df_groupnorm_silu_backward_tmp_floats(int n, int c, int hw, int groups); /* tmp's size, 0: none */
void df_groupnorm_silu_backward(float *dinp, float *dgamma, float *dbeta, float *tmp, const float *dout,
                                const float *inp, const float *mean, const float *rstd, const float *gamma,
                                const float *beta, int n, int c, int hw, int groups, int set);
/* The forward's output again from its cached mean and rstd, bit for bit: lets a model drop the
 * normalised activations after forward and rebuild them in backward (one pass, no reductions). */
void df_groupnorm_apply(float *out, const float *mean, const float *rstd, const float *inp, const float *gamma,
                        const float *beta, int n, int c, int hw, int groups);

/* ---------------------------------------------------------------- elementwise */
/* SiLU (swish): x * sigmoid(x). out may alias inp in forward. */
void df_silu_forward(float *out, const float *inp, size_t n);
void df_silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* dinp = the gradient (overwritten, not accumulated): saves zeroing a fresh buffer first. */
void df_silu_backward_set(float *dinp, const float *dout, const float *inp, size_t n);
/* out = a + b (out may alias a or b). Backward: da += dout, db += dout. */
void df_add_forward(float *out, const float *a, const float *b, size_t n);
void df_add_backward(float *da, float *db, const float *dout, size_t n);
/* x (N,C,HW) += bias (N,C) broadcast over HW (the time-embedding add of a ResNet block).
 * Backward: dbias (N,C) += sum over HW of dx. */
void df_add_channel_bias_forward(float *x, const float *bias, int n, int c, int hw);
void df_add_channel_bias_backward(float *dbias, const float *dx, int n, int c, int hw);

/* Dropout with probability p (inverted: kept values scaled by 1/(1-p)). The mask is not stored:
 * element e of the call keyed (seed, a, b) is kept iff df_randu(seed, DF_STREAM_DROPOUT, a, b)[e] >= p,
 * so backward regenerates it. p = 0 copies. out may alias inp. */
void df_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint32_t a, uint32_t b);
void df_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint32_t a, uint32_t b);
/* The same on elements [first, first + n) of a larger call keyed (seed, a, b): element e of this one
 * gets the mask of element first + e there (a rank's share of a data-parallel batch gets the masks
 * its samples have in the whole batch). first 0 is the plain op. */
void df_dropout_forward_at(float *out, const float *inp, size_t n, uint64_t first, float p, uint64_t seed, uint32_t a,
                           uint32_t b);
void df_dropout_backward_at(float *dinp, const float *dout, size_t n, uint64_t first, float p, uint64_t seed,
                            uint32_t a, uint32_t b);

/* ---------------------------------------------------------------- shape ops */
/* Nearest-neighbour 2x upsampling: out (N,C,2H,2W) from inp (N,C,H,W). Backward sums the 4 copies. */
void df_upsample2x_forward(float *out, const float *inp, int n, int c, int h, int w);
void df_upsample2x_backward(float *dinp, const float *dout, int n, int c, int h, int w);
/* Channel concatenation out (N,CA+CB,HW) = [a (N,CA,HW), b (N,CB,HW)] (diffusers: cat([h, skip], 1)). */
void df_concat_forward(float *out, const float *a, const float *b, int n, int ca, int cb, int hw);
void df_concat_backward(float *da, float *db, const float *dout, int n, int ca, int cb, int hw);

/* ---------------------------------------------------------------- timestep embedding */
/* Sinusoidal embedding (DDPM / diffusers get_timestep_embedding): half = dim/2,
 * freq_j = exp(-ln(10000) * j / (half - freq_shift)), emb = [sin(t freq), cos(t freq)]
 * (cos first if flip_sin_to_cos); a zero column is appended when dim is odd. Computed in float
 * like diffusers. out (N,dim). No parameters, so no backward. */
void df_timestep_embedding(float *out, const int *t, int n, int dim, int freq_shift, int flip_sin_to_cos);

/* ---------------------------------------------------------------- attention */
/* Multi-head self-attention over the HW pixels, on already projected q, k, v (N,C,HW), channel
 * c = head * (C/heads) + d. For each image and head: P = softmax_j(q_i . k_j / sqrt(C/heads))
 * (N,heads,HW,HW), out_i = sum_j P_ij v_j. out (N,C,HW). probs is cached for backward (fp32; in bf16
 * the products q.k, P v and those of backward round their inputs, P included).
 * scratch: df_attention_scratch_floats() floats (either precision). */
size_t df_attention_scratch_floats(int n, int c, int hw, int heads);
void df_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                          int n, int c, int hw, int heads, df_precision precision, float *scratch);
void df_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                           const float *q, const float *k, const float *v, int n, int c, int hw, int heads,
                           df_precision precision, float *scratch);
void df_attention_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v,
                              int n, int c, int hw, int heads);
void df_attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                               const float *q, const float *k, const float *v, int n, int c, int hw, int heads);

/* ---------------------------------------------------------------- profiling */
/* Optional per-op wall-clock profile for benchmarks (ops_profile.c). Off by default; then each op
 * pays one branch. Entries are keyed by op and shape, e.g. "conv3x3 s1 bwd 64->64 7x7". Not
 * thread-safe: enable it only around single-threaded callers of the ops. */
void df_ops_profile_enable(int on);
void df_ops_profile_reset(void);
int df_ops_profile_count(void);
/* Entry i (0 <= i < count): returns its key and fills its call count and total seconds. */
const char *df_ops_profile_get(int i, long *calls, double *seconds);
/* Used by the ops (and by models for their own glue): t0 = begin(); ...; end(t0, "key fmt", ...). */
double df_ops_prof_begin(void);
void df_ops_prof_end(double t0, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
