/* bench_ops.c: conv2d fast (im2col + OpenBLAS sgemm) against the reference loops, on the conv
 * shapes of the fmnist-small U-Net (32/64 channels at 28x28, 14x14, 7x7, batch 64).
 *
 * A program, not a test: for each shape it first checks fast == ref on one image, then times
 * forward and backward (warm-up, then the best of a few repeats) and prints GFLOP/s. The peer
 * figure is bare sgemm on the same matrix product (OC x OH*OW x IC*KH*KW per image): the ceiling
 * that im2col, col2im and the bias add eat into. The reference is timed on 2 images and scaled.
 * Usage: bench_ops [batch] (default 64). DIFFUSE_NO_DIRECT=1 in the environment times 3x3 stride-1
 * convs on im2col + GEMM instead of the direct kernel (conv3x3.h); DIFFUSE_PER_IMAGE=1 runs small
 * outputs image by image instead of batched; DIFFUSE_BF16=1 runs them in bf16.
 */
#include "common.h"
#include "conv3x3.h"
#include "ops.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

typedef struct {
    const char *name;
    int ic, oc, hw, k, stride, pad_t, pad_l, pad_b, pad_r;
} bench_shape;

static const bench_shape SHAPES[] = {
    {"conv_in 1->32 28", 1, 32, 28, 3, 1, 1, 1, 1, 1},
    {"conv_out 32->1 28", 32, 1, 28, 3, 1, 1, 1, 1, 1},
    {"3x3 32->32 28", 32, 32, 28, 3, 1, 1, 1, 1, 1},
    {"down 32 28->14", 32, 32, 28, 3, 2, 0, 0, 1, 1},
    {"3x3 32->64 14", 32, 64, 14, 3, 1, 1, 1, 1, 1},
    {"3x3 64->64 14", 64, 64, 14, 3, 1, 1, 1, 1, 1},
    {"down 64 14->7", 64, 64, 14, 3, 2, 0, 0, 1, 1},
    {"3x3 64->64 7", 64, 64, 7, 3, 1, 1, 1, 1, 1},
    {"3x3 128->64 7", 128, 64, 7, 3, 1, 1, 1, 1, 1},
    {"3x3 128->64 14", 128, 64, 14, 3, 1, 1, 1, 1, 1},
    {"3x3 128->128 32", 128, 128, 32, 3, 1, 1, 1, 1, 1},
    {"3x3 256->256 16", 256, 256, 16, 3, 1, 1, 1, 1, 1},
    {"3x3 256->256 8", 256, 256, 8, 3, 1, 1, 1, 1, 1},
    {"3x3 256->256 4", 256, 256, 4, 3, 1, 1, 1, 1, 1},
    {"1x1 64->64 7", 64, 64, 7, 1, 1, 0, 0, 0, 0},
    {"3x3 96->32 28", 96, 32, 28, 3, 1, 1, 1, 1, 1},
    {"1x1 128->64 14", 128, 64, 14, 1, 1, 0, 0, 0, 0},
    {"1x1 96->32 28", 96, 32, 28, 1, 1, 0, 0, 0, 0},
};

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

static double max_rel_err(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs(b[i]));
    }
    return scale > 0 ? worst / scale : worst;
}

#define REPEATS 3

int main(int argc, char **argv) {
    int batch = argc > 1 ? atoi(argv[1]) : 64;
    const char *nd = getenv("DIFFUSE_NO_DIRECT"), *bf = getenv("DIFFUSE_BF16");
    if (nd && *nd == '1') df_conv3x3_force_off(1);
    const char *pi = getenv("DIFFUSE_PER_IMAGE");
    if (pi && *pi == '1') df_conv2d_force_per_image(1);
    const int bf16 = bf && *bf == '1';
    if (batch < 2) batch = 2;
    printf("%-18s %9s %9s %9s %9s %9s %9s %9s %9s  (GFLOP/s, batch %d; ref timed on 2 images)\n", "shape", "fwd",
           "bwd", "sgemm", "ref fwd", "fwd ms", "bwd ms", "dX ms", "dW ms", batch);
    int failed = 0;
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const bench_shape *b = &SHAPES[si];
        df_conv_shape s, s1, s2;
        df_conv_shape_init(&s, batch, b->ic, b->hw, b->hw, b->oc, b->k, b->stride, b->pad_t, b->pad_l, b->pad_b, b->pad_r);
        df_conv_shape_init(&s1, 1, b->ic, b->hw, b->hw, b->oc, b->k, b->stride, b->pad_t, b->pad_l, b->pad_b, b->pad_r);
        df_conv_shape_init(&s2, 2, b->ic, b->hw, b->hw, b->oc, b->k, b->stride, b->pad_t, b->pad_l, b->pad_b, b->pad_r);
        if (bf16) s.precision = s1.precision = s2.precision = DF_PRECISION_BF16;
        const size_t nin = (size_t)batch * b->ic * b->hw * b->hw, nout = (size_t)batch * b->oc * s.oh * s.ow;
        const size_t nw = (size_t)b->oc * b->ic * b->k * b->k, nscr = df_conv2d_scratch_floats(&s);
        const int kdim = b->ic * b->k * b->k, ohw = s.oh * s.ow;
        float *x = df_alloc(nin * 4, "x"), *dx = df_calloc(nin * 4, "dx"), *w = df_alloc(nw * 4, "w");
        float *dw = df_calloc(nw * 4, "dw"), *bias = df_alloc(b->oc * 4, "b"), *db = df_calloc(b->oc * 4, "db");
        float *y = df_alloc(nout * 4, "y"), *yr = df_alloc(nout * 4, "yr"), *g = df_alloc(nout * 4, "g");
        float *scr = df_alloc((nscr ? nscr : 1) * 4, "scratch");
        float *cols = df_alloc((size_t)kdim * ohw * 4, "cols");
        if (!x || !dx || !w || !dw || !bias || !db || !y || !yr || !g || !scr || !cols) {
            fprintf(stderr, "bench_ops: %s\n", df_last_error());
            return 1;
        }
        fill(x, nin, 1);
        fill(w, nw, 2);
        fill(bias, b->oc, 3);
        fill(g, nout, 4);
        fill(cols, (size_t)kdim * ohw, 5);

        /* validate on one image first */
        df_conv2d_forward(y, x, w, bias, &s1, scr);
        df_conv2d_forward_ref(yr, x, w, bias, &s1);
        double err = max_rel_err(y, yr, (size_t)b->oc * ohw);
        if (err > (bf16 ? 2e-2 : 1e-5)) {
            printf("%-18s fast != ref: rel err %.2e\n", b->name, err);
            failed = 1;
        }

        const double flops = 2.0 * batch * b->oc * (double)ohw * kdim;
        double best_f = 1e30, best_b = 1e30, best_g = 1e30, best_dx = 1e30, best_dw = 1e30;
        for (int r = 0; r <= REPEATS; r++) {  /* r = 0 warms up */
            double t0 = df_time();
            df_conv2d_forward(y, x, w, bias, &s, scr);
            double t1 = df_time();
            df_conv2d_backward(dx, dw, db, g, x, w, &s, scr);
            double t2 = df_time();
            for (int n = 0; n < batch; n++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b->oc, ohw, kdim, 1.0f, w, kdim, cols, ohw,
                            0.0f, y, ohw);
            double t3 = df_time();
            df_conv2d_backward(dx, NULL, NULL, g, x, w, &s, scr); /* the backward's two halves alone */
            double t4 = df_time();
            df_conv2d_backward(NULL, dw, NULL, g, x, w, &s, scr);
            double t5 = df_time();
            if (r) {
                best_dx = fmin(best_dx, t4 - t3);
                best_dw = fmin(best_dw, t5 - t4);
                best_f = fmin(best_f, t1 - t0);
                best_b = fmin(best_b, t2 - t1);
                best_g = fmin(best_g, t3 - t2);
            }
        }
        double t0 = df_time();
        df_conv2d_forward_ref(yr, x, w, bias, &s2);
        double ref_s = (df_time() - t0) * batch / 2.0;
        printf("%-18s %9.1f %9.1f %9.1f %9.2f %9.2f %9.2f %9.2f %9.2f\n", b->name, flops / best_f * 1e-9,
               2 * flops / best_b * 1e-9, flops / best_g * 1e-9, flops / ref_s * 1e-9, best_f * 1e3, best_b * 1e3,
               best_dx * 1e3, best_dw * 1e3);
        df_free(x); df_free(dx); df_free(w); df_free(dw); df_free(bias); df_free(db);
        df_free(y); df_free(yr); df_free(g); df_free(scr); df_free(cols);
    }
    return failed;
}
