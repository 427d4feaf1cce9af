/* ops_linear.c: fully connected layer (ops.h), out = inp w^T + b.
 *
 * What it is: the time-embedding MLP and any (N,IN) x (OUT,IN)^T product; PyTorch weight order.
 * Large products go to OpenBLAS sgemm (which threads itself). Small ones, such as each ResNet
 * block's time-embedding projection (batch x 4*C0 -> C, well under a million multiply-adds), run
 * as plain vectorised loops on the calling thread: there sgemm's thread start-up and packing cost
 * more than the arithmetic. In bf16 every product, small or large, runs on df_gemm_bf16 (inputs
 * rounded to bf16, fp32 sums) with the caller's workspace; the bias sums stay fp32 (double).
 * What it is not: the attention q/k/v projections over pixels (those are 1x1 convs in (N,C,HW)).
 * Gradients ACCUMULATE (+=) into dinp, dw, db; NULL means "not needed".
 */
#include "gemm.h"
#include "ops.h"
#include "common.h"
#include <cblas.h>

/* Products with at most this many multiply-adds use the loops. */
#define LINEAR_SMALL_MACS (1u << 22)

static int linear_is_small(int n, int in, int out_dim) {
    return (double)n * in * out_dim <= (double)LINEAR_SMALL_MACS;
}

size_t df_linear_scratch_floats(int n, int in, int out_dim) {
    size_t b = df_gemm_bf16_workspace(n, out_dim, in), x;  /* forward */
    if ((x = df_gemm_bf16_workspace(n, in, out_dim)) > b) b = x;  /* dinp */
    if ((x = df_gemm_bf16_workspace(out_dim, in, n)) > b) b = x;  /* dw */
    return (b + sizeof(float) - 1) / sizeof(float);
}

void df_linear_forward(float *out, const float *inp, const float *w, const float *b, int n, int in, int out_dim,
                       df_precision precision, float *scratch) {
    const double t0_ = df_ops_prof_begin();
    const int bf16 = precision == DF_PRECISION_BF16;
    if (!bf16 && linear_is_small(n, in, out_dim)) {
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out_dim; o++) {
                const float *x = inp + (size_t)i * in, *wr = w + (size_t)o * in;
                float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                for (int k = 0; k < in; k++) acc += x[k] * wr[k];
                out[(size_t)i * out_dim + o] = (b ? b[o] : 0.0f) + acc;
            }
    } else {
        float beta = 0.0f;
        if (b) {
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out_dim; o++) out[(size_t)i * out_dim + o] = b[o];
            beta = 1.0f;
        }
        /* out (N, OUT) = inp (N, IN) w^T (IN, OUT) [+ out] */
        if (bf16)
            df_gemm_bf16(0, 1, n, out_dim, in, 1.0f, inp, in, w, in, beta, out, out_dim, scratch);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in, 1.0f, inp, in, w, in, beta, out,
                        out_dim);
    }
    df_ops_prof_end(t0_, "linear fwd %d->%d", in, out_dim);
}

void df_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        int n, int in, int out_dim, df_precision precision, float *scratch) {
    const double t0_ = df_ops_prof_begin();
    if (precision == DF_PRECISION_BF16) {
        if (dinp) df_gemm_bf16(0, 0, n, in, out_dim, 1.0f, dout, out_dim, w, in, 1.0f, dinp, in, scratch);
        if (dw) df_gemm_bf16(1, 0, out_dim, in, n, 1.0f, dout, out_dim, inp, in, 1.0f, dw, in, scratch);
    } else if (linear_is_small(n, in, out_dim)) {
        if (dinp)  /* dinp row i += sum_o dout[i][o] w row o */
            for (int i = 0; i < n; i++) {
                float *dx = dinp + (size_t)i * in;
                for (int o = 0; o < out_dim; o++) {
                    const float g = dout[(size_t)i * out_dim + o];
                    const float *wr = w + (size_t)o * in;
#pragma omp simd
                    for (int k = 0; k < in; k++) dx[k] += g * wr[k];
                }
            }
        if (dw)  /* dw row o += sum_i dout[i][o] inp row i */
            for (int o = 0; o < out_dim; o++) {
                float *dwr = dw + (size_t)o * in;
                for (int i = 0; i < n; i++) {
                    const float g = dout[(size_t)i * out_dim + o];
                    const float *x = inp + (size_t)i * in;
#pragma omp simd
                    for (int k = 0; k < in; k++) dwr[k] += g * x[k];
                }
            }
    } else {
        if (dinp)  /* dinp (N, IN) += dout (N, OUT) w (OUT, IN) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out_dim, 1.0f, dout, out_dim, w, in, 1.0f,
                        dinp, in);
        if (dw)  /* dw (OUT, IN) += dout^T (OUT, N) inp (N, IN) */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in, n, 1.0f, dout, out_dim, inp, in, 1.0f,
                        dw, in);
    }
    if (db)
        for (int o = 0; o < out_dim; o++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += dout[(size_t)i * out_dim + o];
            db[o] += (float)acc;
        }
    df_ops_prof_end(t0_, "linear bwd %d->%d", in, out_dim);
}
