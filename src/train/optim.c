/* optim.c: AdamW, the gradient norm and the weight EMA (see optim.h). Element-wise loops over one
 * block, threaded with OpenMP when the block is large; no step depends on the thread count. */
#include "common.h"
#include <math.h>

/* Blocks shorter than this are updated on one thread: a fork/join costs a few microseconds. */
#define OPTIM_PARALLEL_MIN 32768
/* df_grad_norm: at most this many parts, each of at least OPTIM_NORM_PART_MIN elements. */
#define OPTIM_NORM_PARTS 256
#define OPTIM_NORM_PART_MIN 4096

void df_adamw_params_init(df_adamw_params *p) {
    p->lr = 2e-4;
    p->beta1 = 0.9;
    p->beta2 = 0.999;
    p->eps = 1e-8;
    p->weight_decay = 0.0;
    p->warmup_steps = 0;
    p->grad_clip = 1.0;
}

/* Sum of squares of g[0..n) in a fixed order: 8 interleaved double accumulators (so the adds
 * pipeline), combined pairwise at the end. */
static double optim_sum_squares(const float *g, size_t n) {
    double acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)g[i + k] * (double)g[i + k];
    for (int k = 0; i < n; i++, k++) acc[k] += (double)g[i] * (double)g[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double df_grad_norm(const float *g, size_t n) {
    /* The partition depends on n only, never on the thread count. */
    size_t parts = (n + OPTIM_NORM_PART_MIN - 1) / OPTIM_NORM_PART_MIN;
    if (parts > OPTIM_NORM_PARTS) parts = OPTIM_NORM_PARTS;
    if (parts == 0) return 0.0;
    const size_t len = (n + parts - 1) / parts;
    double partial[OPTIM_NORM_PARTS];
#pragma omp parallel for schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (size_t p = 0; p < parts; p++) {
        const size_t a = p * len;
        const size_t b = a + len < n ? a + len : n;
        partial[p] = a < b ? optim_sum_squares(g + a, b - a) : 0.0;
    }
    double total = 0.0;
    for (size_t p = 0; p < parts; p++) total += partial[p];
    return sqrt(total);
}

double df_adamw_lr_at(const df_adamw_params *p, long step) {
    if (p->warmup_steps > 0 && step < p->warmup_steps) return p->lr * (double)step / (double)p->warmup_steps;
    return p->lr;
}

void df_adamw_step(const df_adamw_params *p, long step, float *params, const float *grads, float *m, float *v,
                   size_t n, double grad_scale) {
    ASSERT(step >= 1);
    const double lr = df_adamw_lr_at(p, step);
    const double b1 = p->beta1, b2 = p->beta2, eps = p->eps;
    const double decay = 1.0 - lr * p->weight_decay;
    /* torch.optim.AdamW (single-tensor path): step_size = lr / bc1, denom = sqrt(v) / sqrt(bc2) + eps. */
    const double bc1 = 1.0 - pow(b1, (double)step);
    const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)step));
    const double step_size = lr / bc1;
#pragma omp parallel for simd schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        const double g = (double)grads[i] * grad_scale;
        const double mi = b1 * (double)m[i] + (1.0 - b1) * g;
        const double vi = b2 * (double)v[i] + (1.0 - b2) * g * g;
        m[i] = (float)mi;
        v[i] = (float)vi;
        /* The update uses the moments as stored (rounded to float), as torch does. */
        const double denom = sqrt((double)v[i]) / bc2_sqrt + eps;
        params[i] = (float)((double)params[i] * decay - step_size * (double)m[i] / denom);
    }
}

double df_ema_decay_at(double decay, long step) {
    const double warm = (1.0 + (double)step) / (10.0 + (double)step);
    return warm < decay ? warm : decay;
}

void df_ema_update(float *ema, const float *params, size_t n, double decay) {
    const double keep = decay, take = 1.0 - decay;
#pragma omp parallel for simd schedule(static) if (n >= OPTIM_PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) ema[i] = (float)(keep * (double)ema[i] + take * (double)params[i]);
}
