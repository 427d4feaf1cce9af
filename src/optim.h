/* optim.h: AdamW and the EMA of the weights, over one contiguous float block.
 *
 * What it is: element-wise updates of a parameter block laid out by a df_param_table (params.h);
 * the gradients, the two AdamW moments and the EMA weights are blocks of the same length and
 * layout, so each update is one loop. Padding between tensors is updated like any element: its
 * gradient is zero, so it stays zero.
 *
 * What it is not: a scheduler of the whole training step. The caller zeroes the gradients,
 * computes df_grad_norm, checks it is finite, and passes the clipping factor to df_adamw_step.
 */
#ifndef DF_OPTIM_H
#define DF_OPTIM_H

#include <stddef.h>

typedef struct {
    double lr;            /* peak learning rate */
    double beta1, beta2;  /* moment decays */
    double eps;           /* added to sqrt(v_hat) */
    double weight_decay;  /* decoupled (AdamW): params *= 1 - lr_t * weight_decay each step */
    long warmup_steps;    /* linear warm-up of the learning rate over this many steps (0 = none) */
    double grad_clip;     /* clip the global L2 norm of the gradient to this (0 = off); used by the caller */
} df_adamw_params;

/* Defaults: lr 2e-4, betas 0.9 / 0.999, eps 1e-8, weight decay 0, no warm-up, clip 1.0. */
void df_adamw_params_init(df_adamw_params *p);

/* L2 norm sqrt(sum g^2), accumulated in double. The block is cut into parts that depend only on
 * n, each part summed in a fixed order, the parts added in order: the result is the same for
 * any thread count. Returns NaN or inf if g holds a non-finite value (the caller's check). */
double df_grad_norm(const float *g, size_t n);

/* Learning rate of the 1-based step `step`: lr * min(1, step / warmup_steps), or lr without warm-up. */
double df_adamw_lr_at(const df_adamw_params *p, long step);

/* One AdamW step (Loshchilov & Hutter 2019; the update of torch.optim.AdamW, amsgrad off) on n
 * elements. step is 1-based (the count of steps including this one; it drives the bias
 * corrections). With g = grad_scale * grads (grad_scale = min(1, clip / norm) for clipping, 1
 * otherwise) and lr_t = df_adamw_lr_at(p, step):
 *   params *= 1 - lr_t * weight_decay
 *   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
 *   params -= lr_t / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * m and v start as zeros and are owned by the caller. Each element is computed in double and
 * rounded once to float. */
void df_adamw_step(const df_adamw_params *p, long step, float *params, const float *grads, float *m, float *v,
                   size_t n, double grad_scale);

/* EMA decay for the 1-based optimiser step `step`: min(decay, (1 + step) / (10 + step)), the
 * warm-up of TensorFlow's ExponentialMovingAverage(num_updates) used by the DDPM code, so that a
 * short run's EMA is not dominated by the initial weights. */
double df_ema_decay_at(double decay, long step);

/* ema = decay * ema + (1 - decay) * params on n elements (in double, rounded once). Initialise
 * ema as a copy of the initial params. */
void df_ema_update(float *ema, const float *params, size_t n, double decay);

#endif
