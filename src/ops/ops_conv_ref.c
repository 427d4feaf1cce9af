/* ops_conv_ref.c: the reference 2-D convolution (ops.h), forward and backward.
 *
 * What it is: df_conv2d_forward_ref and df_conv2d_backward_ref, the plain direct loops that the
 * tests (tests/test_ops.c) compare every fast path of ops_conv.c with: one double sum per output or
 * gradient element, in a fixed order, straight from the definition of the convolution (any kernel,
 * stride and top/left/bottom/right padding of df_conv_shape). Always fp32 in and out, whatever the
 * shape's precision.
 * What it is not: not fast (no threads, no im2col, no GEMM, no kernels; ops_conv.c has those), not a
 * fallback the library runs, and it ignores the fast paths' options: no fusion, and dinp_set is not
 * read (the backward always ACCUMULATES (+=) into dinp, dw, db; NULL means "not needed"), so the
 * tests check the _set form against zero + accumulate.
 */
#include "ops.h"
#include <stddef.h>

void df_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *b, const df_conv_shape *s) {
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->oc; o++)
            for (int oy = 0; oy < s->oh; oy++)
                for (int ox = 0; ox < s->ow; ox++) {
                    double acc = b ? b[o] : 0.0;
                    for (int c = 0; c < s->ic; c++)
                        for (int ki = 0; ki < s->kh; ki++)
                            for (int kj = 0; kj < s->kw; kj++) {
                                int iy = oy * s->stride - s->pad_t + ki, ix = ox * s->stride - s->pad_l + kj;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                acc += (double)w[(((size_t)o * s->ic + c) * s->kh + ki) * s->kw + kj] *
                                       inp[(((size_t)n * s->ic + c) * s->h + iy) * s->w + ix];
                            }
                    out[(((size_t)n * s->oc + o) * s->oh + oy) * s->ow + ox] = (float)acc;
                }
}

/* Gather form: each gradient element is one double sum over the outputs it touched. */
void df_conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, const df_conv_shape *s) {
#define DOUT(n, o, oy, ox) dout[(((size_t)(n) * s->oc + (o)) * s->oh + (oy)) * s->ow + (ox)]
#define INP(n, c, iy, ix) inp[(((size_t)(n) * s->ic + (c)) * s->h + (iy)) * s->w + (ix)]
    if (db)
        for (int o = 0; o < s->oc; o++) {
            double acc = 0.0;
            for (int n = 0; n < s->n; n++)
                for (int oy = 0; oy < s->oh; oy++)
                    for (int ox = 0; ox < s->ow; ox++) acc += DOUT(n, o, oy, ox);
            db[o] += (float)acc;
        }
    if (dw)
        for (int o = 0; o < s->oc; o++)
            for (int c = 0; c < s->ic; c++)
                for (int ki = 0; ki < s->kh; ki++)
                    for (int kj = 0; kj < s->kw; kj++) {
                        double acc = 0.0;
                        for (int n = 0; n < s->n; n++)
                            for (int oy = 0; oy < s->oh; oy++)
                                for (int ox = 0; ox < s->ow; ox++) {
                                    int iy = oy * s->stride - s->pad_t + ki, ix = ox * s->stride - s->pad_l + kj;
                                    if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w) continue;
                                    acc += (double)DOUT(n, o, oy, ox) * INP(n, c, iy, ix);
                                }
                        dw[(((size_t)o * s->ic + c) * s->kh + ki) * s->kw + kj] += (float)acc;
                    }
    if (dinp)
        for (int n = 0; n < s->n; n++)
            for (int c = 0; c < s->ic; c++)
                for (int iy = 0; iy < s->h; iy++)
                    for (int ix = 0; ix < s->w; ix++) {
                        double acc = 0.0;
                        for (int o = 0; o < s->oc; o++)
                            for (int ki = 0; ki < s->kh; ki++)
                                for (int kj = 0; kj < s->kw; kj++) {
                                    /* this pixel feeds output (oy, ox) when oy*stride - pad_t + ki == iy */
                                    int ty = iy + s->pad_t - ki, tx = ix + s->pad_l - kj;
                                    if (ty < 0 || tx < 0 || ty % s->stride || tx % s->stride) continue;
                                    int oy = ty / s->stride, ox = tx / s->stride;
                                    if (oy >= s->oh || ox >= s->ow) continue;
                                    acc += (double)DOUT(n, o, oy, ox) *
                                           w[(((size_t)o * s->ic + c) * s->kh + ki) * s->kw + kj];
                                }
                        dinp[(((size_t)n * s->ic + c) * s->h + iy) * s->w + ix] += (float)acc;
                    }
#undef DOUT
#undef INP
}
