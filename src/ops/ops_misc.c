/* ops_misc.c: shape ops and the timestep embedding (ops.h): nearest 2x upsampling, channel
 * concatenation, sinusoidal timestep embedding.
 *
 * What it is: data movement with OpenMP over the (image, channel) planes, and the DDPM / diffusers
 * get_timestep_embedding computed in float the way diffusers does it.
 * What it is not: no learned upsampling (the model follows upsample2x with a conv).
 * Gradients ACCUMULATE (+=) into every gradient output; NULL means "not needed".
 */
#include "ops.h"
#include "common.h"
#include <math.h>
#include <string.h>

#define MISC_OMP_MIN 32768

/* ---------------------------------------------------------------- upsample */
/* out[2y+dy][2x+dx] = inp[y][x] (PyTorch F.interpolate(scale_factor=2, mode="nearest")). */
void df_upsample2x_forward(float *out, const float *inp, int n, int c, int h, int w) {
    const double t0_ = df_ops_prof_begin();
    const int ow = 2 * w;
#pragma omp parallel for schedule(static) if ((size_t)n * c * h * w * 4 > MISC_OMP_MIN)
    for (int nc = 0; nc < n * c; nc++) {
        const float *src = inp + (size_t)nc * h * w;
        float *dst = out + (size_t)nc * 4 * h * w;
        for (int y = 0; y < h; y++) {
            float *r0 = dst + (size_t)(2 * y) * ow, *r1 = r0 + ow;
            for (int x = 0; x < w; x++) {
                const float v = src[(size_t)y * w + x];
                r0[2 * x] = v;
                r0[2 * x + 1] = v;
            }
            memcpy(r1, r0, sizeof(float) * ow);
        }
    }
    df_ops_prof_end(t0_, "upsample fwd");
}

void df_upsample2x_backward(float *dinp, const float *dout, int n, int c, int h, int w) {
    const double t0_ = df_ops_prof_begin();
    const int ow = 2 * w;
#pragma omp parallel for schedule(static) if ((size_t)n * c * h * w * 4 > MISC_OMP_MIN)
    for (int nc = 0; nc < n * c; nc++) {
        const float *src = dout + (size_t)nc * 4 * h * w;
        float *dst = dinp + (size_t)nc * h * w;
        for (int y = 0; y < h; y++) {
            const float *r0 = src + (size_t)(2 * y) * ow, *r1 = r0 + ow;
            for (int x = 0; x < w; x++)
                dst[(size_t)y * w + x] += (r0[2 * x] + r0[2 * x + 1]) + (r1[2 * x] + r1[2 * x + 1]);
        }
    }
    df_ops_prof_end(t0_, "upsample bwd");
}

/* ---------------------------------------------------------------- concat */
void df_concat_forward(float *out, const float *a, const float *b, int n, int ca, int cb, int hw) {
    const double t0_ = df_ops_prof_begin();
    const size_t la = (size_t)ca * hw, lb = (size_t)cb * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * (la + lb) > MISC_OMP_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(out + (size_t)i * (la + lb), a + (size_t)i * la, la * sizeof(float));
        memcpy(out + (size_t)i * (la + lb) + la, b + (size_t)i * lb, lb * sizeof(float));
    }
    df_ops_prof_end(t0_, "concat fwd");
}

void df_concat_backward(float *da, float *db, const float *dout, int n, int ca, int cb, int hw) {
    const double t0_ = df_ops_prof_begin();
    const size_t la = (size_t)ca * hw, lb = (size_t)cb * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * (la + lb) > MISC_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const float *g = dout + (size_t)i * (la + lb);
        if (da)
            for (size_t e = 0; e < la; e++) da[(size_t)i * la + e] += g[e];
        if (db)
            for (size_t e = 0; e < lb; e++) db[(size_t)i * lb + e] += g[la + e];
    }
    df_ops_prof_end(t0_, "concat bwd");
}

/* ---------------------------------------------------------------- timestep embedding */
/* diffusers embeddings.py get_timestep_embedding, step by step in float32 as torch does it:
 * exponent = float(-ln(10000)) * j, then / (half - freq_shift); freq = exp(exponent);
 * arg = float(t) * freq; [sin(arg), cos(arg)]. */
void df_timestep_embedding(float *out, const int *t, int n, int dim, int freq_shift, int flip_sin_to_cos) {
    const int half = dim / 2;
    ASSERT(dim > 0 && (half == 0 || half - freq_shift > 0));
    const float neg_log_period = (float)(-log(10000.0));
    const float denom = (float)(half - freq_shift);
    for (int i = 0; i < n; i++) {
        float *row = out + (size_t)i * dim;
        float *first = row + (flip_sin_to_cos ? half : 0);   /* where the sines go */
        float *second = row + (flip_sin_to_cos ? 0 : half);  /* where the cosines go */
        for (int j = 0; j < half; j++) {
            const float exponent = (neg_log_period * (float)j) / denom;
            const float arg = (float)t[i] * expf(exponent);
            first[j] = sinf(arg);
            second[j] = cosf(arg);
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
}
