/* ops_attention.c: multi-head self-attention over pixels (ops.h), fast and reference.
 *
 * What it is: the core P = softmax(q^T k / sqrt(d)), out = v P^T on already projected q, k, v in
 * the (N,C,HW) layout; for one image and head each of q, k, v is a (d, HW) row-major matrix
 * (channel-major), so the fast path feeds those blocks to sgemm with transposes instead of copying.
 * The scores go straight into the caller's probs (N,heads,HW,HW), which backward reuses.
 * What it is not: no GroupNorm, no q/k/v/out projections (those are linear layers in the model),
 * no flash-style tiling: the full (HW,HW) matrix is stored, which is fine at U-Net attention sizes.
 *
 * Backward (Vaswani et al. 2017; softmax Jacobian): dV = dO P, dP = dO^T V,
 * dS = P * (dP - rowsum(dP * P)), dQ = scale * K dS^T, dK = scale * Q dS (in the (d,HW) layout).
 * Gradients ACCUMULATE (+=) into dq, dk, dv; NULL means "not needed".
 * Precision: every product runs on df_gemm (gemm.h) in the op's precision: fp32, or bf16 (both
 * inputs rounded to bf16, P included, fp32 sums). The scores, softmax, P and its backward stay fp32.
 * Threads: OpenMP over (image, head) pairs, each run whole by one thread with single-threaded GEMMs
 * (U-Net attention matrices are small: 49..1024 positions), each thread with its own dP and GEMM
 * workspace in the scratch; a single pair runs its GEMMs threaded instead. Either way every
 * element is summed in one fixed order, so results do not depend on the thread count.
 */
#include "gemm.h"
#include "ops.h"
#include "common.h"
#include "vexp.h"
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define ATTN_OMP_MIN_FLOATS 16384

/* dP (HW, HW), rounded up to 16 floats. */
static size_t attn_dp_floats(int hw) { return ((size_t)hw * hw + 15) & ~(size_t)15; }

/* Threads over (image, head) pairs. */
static int attn_threads(int n, int heads) {
#ifdef _OPENMP
    const int t = omp_get_max_threads();
    return t < n * heads ? t : n * heads;
#else
    (void)n, (void)heads;
    return 1;
#endif
}

/* One thread's scratch: dP (backward), then the GEMM workspace of the larger product shape,
 * (HW, HW, d) or (d, HW, HW), in either precision. */
static size_t attn_thread_floats(int c, int hw, int heads) {
    const int d = c / heads;
    size_t ws = df_gemm_workspace(hw, hw, d), x = df_gemm_workspace(d, hw, hw);
    if (x > ws) ws = x;
    return (attn_dp_floats(hw) + (ws + sizeof(float) - 1) / sizeof(float) + 15) & ~(size_t)15;
}

size_t df_attention_scratch_floats(int n, int c, int hw, int heads) {
    ASSERT(heads > 0 && c % heads == 0);
    return (size_t)attn_threads(n, heads) * attn_thread_floats(c, hw, heads);
}

/* The calling thread's block of the scratch. */
static float *attn_thread_scratch(float *scratch, int c, int hw, int heads) {
#ifdef _OPENMP
    return scratch + (size_t)omp_get_thread_num() * attn_thread_floats(c, hw, heads);
#else
    (void)c, (void)hw, (void)heads;
    return scratch;
#endif
}

/* C = alpha op(A) op(B) + beta C in the chosen precision; ws is the GEMM workspace. */
static void attn_gemm(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc, float *ws) {
    df_gemm(bf16, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws);
}

/* 1/sqrt(d) in double, rounded once. */
static float attn_scale(int c, int heads) {
    ASSERT(heads > 0 && c % heads == 0);
    return (float)(1.0 / sqrt((double)(c / heads)));
}

/* Row-wise softmax of p (rows, cols) in place, subtracting each row's max so exp never overflows. */
static void attn_softmax_rows(float *p, int rows, int cols) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > ATTN_OMP_MIN_FLOATS)
    for (int i = 0; i < rows; i++) {
        float *r = p + (size_t)i * cols;
        float mx = r[0];
        for (int j = 1; j < cols; j++) mx = r[j] > mx ? r[j] : mx;
        double sum = 0.0;
#pragma omp simd
        for (int j = 0; j < cols; j++) r[j] = df_vexpf(r[j] - mx);
        for (int j = 0; j < cols; j++) sum += r[j];
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < cols; j++) r[j] *= inv;
    }
}

/* dS = P * (dP - rowsum(dP * P)), in place over dp (rows, cols). */
static void attn_softmax_backward_rows(float *dp, const float *p, int rows, int cols) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > ATTN_OMP_MIN_FLOATS)
    for (int i = 0; i < rows; i++) {
        float *g = dp + (size_t)i * cols;
        const float *pr = p + (size_t)i * cols;
        double dot = 0.0;
        for (int j = 0; j < cols; j++) dot += (double)g[j] * pr[j];
        const float d = (float)dot;
        for (int j = 0; j < cols; j++) g[j] = pr[j] * (g[j] - d);
    }
}

void df_attention_forward(float *out, float *probs, const float *q, const float *k, const float *v,
                          int n, int c, int hw, int heads, df_precision precision, float *scratch) {
    const double t0_ = df_ops_prof_begin();
    const int d = c / heads, bf16 = precision == DF_PRECISION_BF16, pairs = n * heads;
    const float scale = attn_scale(c, heads);
#pragma omp parallel for schedule(dynamic) num_threads(attn_threads(n, heads)) if (pairs > 1)
    for (int bh = 0; bh < pairs; bh++) {
        const int b = bh / heads, h = bh % heads;
        float *ws = attn_thread_scratch(scratch, c, hw, heads) + attn_dp_floats(hw);
        const size_t off = ((size_t)b * c + (size_t)h * d) * hw;  /* (d, HW) block of this head */
        float *p = probs + (size_t)bh * hw * hw;                 /* (HW, HW) */
        /* S (HW, HW) = scale * Q^T K */
        attn_gemm(bf16, 1, 0, hw, hw, d, scale, q + off, hw, k + off, hw, 0.0f, p, hw, ws);
        attn_softmax_rows(p, hw, hw);
        /* O (d, HW) = V (d, HW) P^T */
        attn_gemm(bf16, 0, 1, d, hw, hw, 1.0f, v + off, hw, p, hw, 0.0f, out + off, hw, ws);
    }
    df_ops_prof_end(t0_, "attention fwd %d %dpx", c, hw);
}

void df_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                           const float *q, const float *k, const float *v, int n, int c, int hw, int heads,
                           df_precision precision, float *scratch) {
    const double t0_ = df_ops_prof_begin();
    const int d = c / heads, bf16 = precision == DF_PRECISION_BF16, pairs = n * heads;
    const float scale = attn_scale(c, heads);
#pragma omp parallel for schedule(dynamic) num_threads(attn_threads(n, heads)) if (pairs > 1)
    for (int bh = 0; bh < pairs; bh++) {
        const int b = bh / heads, h = bh % heads;
        float *dp = attn_thread_scratch(scratch, c, hw, heads), *ws = dp + attn_dp_floats(hw);
        const size_t off = ((size_t)b * c + (size_t)h * d) * hw;
        const float *p = probs + (size_t)bh * hw * hw;
        const float *g = dout + off;  /* dO (d, HW) */
        if (dv)  /* dV (d, HW) += dO (d, HW) P (HW, HW) */
            attn_gemm(bf16, 0, 0, d, hw, hw, 1.0f, g, hw, p, hw, 1.0f, dv + off, hw, ws);
        if (!dq && !dk) continue;
        /* dP (HW, HW) = dO^T V, then dS in place */
        attn_gemm(bf16, 1, 0, hw, hw, d, 1.0f, g, hw, v + off, hw, 0.0f, dp, hw, ws);
        attn_softmax_backward_rows(dp, p, hw, hw);
        if (dq)  /* dQ (d, HW) += scale * K (d, HW) dS^T */
            attn_gemm(bf16, 0, 1, d, hw, hw, scale, k + off, hw, dp, hw, 1.0f, dq + off, hw, ws);
        if (dk)  /* dK (d, HW) += scale * Q (d, HW) dS */
            attn_gemm(bf16, 0, 0, d, hw, hw, scale, q + off, hw, dp, hw, 1.0f, dk + off, hw, ws);
    }
    df_ops_prof_end(t0_, "attention bwd %d %dpx", c, hw);
}

/* ---------------------------------------------------------------- reference */

void df_attention_forward_ref(float *out, float *probs, const float *q, const float *k, const float *v,
                              int n, int c, int hw, int heads) {
    const int d = c / heads;
    const double scale = 1.0 / sqrt((double)d);
    ASSERT(heads > 0 && c % heads == 0);
    for (int b = 0; b < n; b++)
        for (int h = 0; h < heads; h++) {
            const size_t off = ((size_t)b * c + (size_t)h * d) * hw;
            const float *Q = q + off, *K = k + off, *V = v + off;
            float *P = probs + ((size_t)b * heads + h) * hw * hw;
            for (int i = 0; i < hw; i++) {
                float *row = P + (size_t)i * hw;
                double mx = -INFINITY;
                for (int j = 0; j < hw; j++) {
                    double s = 0.0;
                    for (int e = 0; e < d; e++) s += (double)Q[(size_t)e * hw + i] * K[(size_t)e * hw + j];
                    row[j] = (float)(s * scale);
                    if (row[j] > mx) mx = row[j];
                }
                double sum = 0.0;
                for (int j = 0; j < hw; j++) sum += exp(row[j] - mx);
                for (int j = 0; j < hw; j++) row[j] = (float)(exp(row[j] - mx) / sum);
                for (int e = 0; e < d; e++) {
                    double o = 0.0;
                    for (int j = 0; j < hw; j++) o += (double)row[j] * V[(size_t)e * hw + j];
                    out[off + (size_t)e * hw + i] = (float)o;
                }
            }
        }
}

/* No scratch: each row's sum_j P_ij dP_ij is found in a first pass, then dP_ij is recomputed. */
void df_attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *probs,
                               const float *q, const float *k, const float *v, int n, int c, int hw, int heads) {
    const int d = c / heads;
    const double scale = 1.0 / sqrt((double)d);
    ASSERT(heads > 0 && c % heads == 0);
    for (int b = 0; b < n; b++)
        for (int h = 0; h < heads; h++) {
            const size_t off = ((size_t)b * c + (size_t)h * d) * hw;
            const float *Q = q + off, *K = k + off, *V = v + off, *G = dout + off;
            const float *P = probs + ((size_t)b * heads + h) * hw * hw;
            if (dv)
                for (int e = 0; e < d; e++)
                    for (int j = 0; j < hw; j++) {
                        double acc = 0.0;  /* dV[e][j] = sum_i dO[e][i] P[i][j] */
                        for (int i = 0; i < hw; i++) acc += (double)G[(size_t)e * hw + i] * P[(size_t)i * hw + j];
                        dv[off + (size_t)e * hw + j] += (float)acc;
                    }
            if (!dq && !dk) continue;
            for (int i = 0; i < hw; i++) {
                double rowdot = 0.0;  /* sum_j P_ij dP_ij, dP_ij = sum_e dO[e][i] V[e][j] */
                for (int j = 0; j < hw; j++) {
                    double dp = 0.0;
                    for (int e = 0; e < d; e++) dp += (double)G[(size_t)e * hw + i] * V[(size_t)e * hw + j];
                    rowdot += dp * P[(size_t)i * hw + j];
                }
                for (int j = 0; j < hw; j++) {
                    double dp = 0.0;
                    for (int e = 0; e < d; e++) dp += (double)G[(size_t)e * hw + i] * V[(size_t)e * hw + j];
                    const double ds = P[(size_t)i * hw + j] * (dp - rowdot) * scale;
                    for (int e = 0; e < d; e++) {
                        if (dq) dq[off + (size_t)e * hw + i] += (float)(ds * K[(size_t)e * hw + j]);
                        if (dk) dk[off + (size_t)e * hw + j] += (float)(ds * Q[(size_t)e * hw + i]);
                    }
                }
            }
        }
}
