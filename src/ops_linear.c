/* ops_linear.c: fully connected layer (ops.h), out = inp w^T + b, via OpenBLAS sgemm.
 *
 * What it is: the time-embedding MLP and any (N,IN) x (OUT,IN)^T product; PyTorch weight order.
 * What it is not: the attention q/k/v projections over pixels (those are 1x1 convs in (N,C,HW)).
 * Gradients ACCUMULATE (+=) into dinp, dw, db; NULL means "not needed". sgemm threads itself.
 */
#include "ops.h"
#include "common.h"
#include <cblas.h>

void df_linear_forward(float *out, const float *inp, const float *w, const float *b, int n, int in, int out_dim) {
    const double t0_ = df_ops_prof_begin();
    float beta = 0.0f;
    if (b) {
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out_dim; o++) out[(size_t)i * out_dim + o] = b[o];
        beta = 1.0f;
    }
    /* out (N, OUT) = inp (N, IN) w^T (IN, OUT) [+ out] */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out_dim, in, 1.0f, inp, in, w, in, beta, out, out_dim);
    df_ops_prof_end(t0_, "linear fwd %d->%d", in, out_dim);
}

void df_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        int n, int in, int out_dim) {
    const double t0_ = df_ops_prof_begin();
    if (dinp)  /* dinp (N, IN) += dout (N, OUT) w (OUT, IN) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out_dim, 1.0f, dout, out_dim, w, in, 1.0f,
                    dinp, in);
    if (dw)  /* dw (OUT, IN) += dout^T (OUT, N) inp (N, IN) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in, n, 1.0f, dout, out_dim, inp, in, 1.0f,
                    dw, in);
    if (db)
        for (int o = 0; o < out_dim; o++) {
            double acc = 0.0;
            for (int i = 0; i < n; i++) acc += dout[(size_t)i * out_dim + o];
            db[o] += (float)acc;
        }
    df_ops_prof_end(t0_, "linear bwd %d->%d", in, out_dim);
}
