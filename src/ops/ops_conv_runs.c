/* ops_conv_runs.c: the drivers of the fast 3x3 conv kernels (ops_conv.c decides which one a shape
 * takes and sizes its scratch; ops_conv_impl.h). Each spreads one conv over the threads:
 * - direct: image by image, one per thread at a time, the fusions made in the thread's scratch;
 * - lanes: 16 images side by side in the vector lanes, packed first, then strips of outputs;
 * - Winograd: groups of images, and dW in fixed slices of the groups summed in slice order.
 * Nothing here depends on the thread count: every output is written by one thread, and every sum
 * runs in a fixed order. */
#include "conv3x3.h"
#include "cpu.h"
#include "winograd.h"
#include "ops.h"
#include "ops_conv_impl.h"
#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* y (N, yc, h, w) = (or +=, accumulate) the 3x3 same conv of x (N, xc, h, w) with wpack (packed for
 * yc outputs from xc inputs) on the lanes kernel, with the fusions of f (may be NULL): every
 * group packed first (threads over (group, step) pairs, a step's 16 lanes by one thread), then
 * threads over (group, strip of 8 outputs) pairs, each output written by one of them: nothing
 * depends on the thread count. */
void conv_lanes_run(float *y, const float *x, const void *wpack, const float *b, const df_conv_fusion *f,
                           const df_conv_shape *s, int xc, int yc, int accumulate, float *scratch) {
    const int bf = conv_bf16(s), groups = conv_groups(s), strips = (yc + 7) / 8, nt = s->threads;
    const int h = s->h, w = s->w, hw = h * w;
    const int steps = bf == DF_C3_BF16 ? (xc + 1) / 2 : xc;
    const size_t gw = df_conv3x3_lanes_words(xc, h, w, bf), ps = df_conv3x3_lanes_plane_words(h, w);
    const size_t x_img = (size_t)xc * hw, y_img = (size_t)yc * hw;
    const size_t norm_floats = conv_lanes_norm_floats(s);
    float *packed = scratch, *normbuf = scratch + conv_lanes_packed_floats(s);
    const int norm = f && f->norm_mean;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        float *normed = normbuf + (size_t)omp_get_thread_num() * norm_floats;
#else
        float *normed = normbuf;
#endif
#pragma omp for schedule(static)
        for (int j = 0; j < groups * steps; j++) {
            /* one step (channel, or bf16 channel pair) of one group, its 16 lanes together */
            const int g = j / steps, c0 = bf == DF_C3_BF16 ? 2 * (j % steps) : j % steps, pair = bf == DF_C3_BF16 && c0 + 1 < xc;
            const float *src[16];
            for (int l = 0; l < 16; l++) {
                const int img = g * 16 + l;
                src[l] = img < s->n ? x + (size_t)img * x_img + (size_t)c0 * hw : NULL;
                if (!src[l] || !norm) continue;
                const int ng = f->norm_groups, cpg = xc / ng;
                float *d = normed + (size_t)l * 2 * hw;
                for (int c = c0; c < c0 + 1 + pair; c++) /* channel by channel: GN's bits (see ops.h) */
                    df_groupnorm_silu_image(d + (size_t)(c - c0) * hw, f->norm_mean + (size_t)img * ng + c / cpg,
                                            f->norm_rstd + (size_t)img * ng + c / cpg, src[l] + (size_t)(c - c0) * hw,
                                            f->norm_gamma + c, f->norm_beta + c, 1, hw, 1);
                src[l] = d;
            }
            df_conv3x3_lanes_pack_plane(packed + (size_t)g * gw + (size_t)(j % steps) * ps, src, pair, h, w, bf);
        }
#pragma omp for schedule(dynamic)
        for (int j = 0; j < groups * strips; j++) {
            const int g = j / strips, n0 = g * 16, nimg = s->n - n0 < 16 ? s->n - n0 : 16;
            df_conv3x3_lanes_strip(y + (size_t)n0 * y_img, y_img, nimg, packed + (size_t)g * gw, wpack, j % strips, b,
                                   f && f->chan_bias ? f->chan_bias + (size_t)n0 * yc : NULL,
                                   f && f->residual ? f->residual + (size_t)n0 * y_img : NULL, yc, xc, h, w,
                                   accumulate, bf);
        }
    }
}

/* dw += the weight gradient on the lanes kernel: dout and input packed (threads over channel planes
 * of a group), then threads over input channels, each weight summed by one of them in a fixed
 * order. */
void conv_dw_lanes(float *dw, const float *dout, const float *inp, const df_conv_shape *s, float *scratch) {
    const int groups = conv_groups(s), bf = conv_bf16(s);
    const size_t gsz = conv_lanes_dw_gsz(s), xsz = conv_lanes_dw_xsz(s);
    const size_t in_img = (size_t)s->ic * s->h * s->w, out_img = (size_t)s->oc * s->oh * s->ow;
    float *gpk = scratch, *xpk = scratch + (size_t)groups * gsz;
#pragma omp parallel num_threads(s->threads) if (s->threads > 1)
    {
        /* one channel plane of one group (of dout, then of the input) a task, its 16 lanes together */
        const int ohw = s->oh * s->ow, hw = s->h * s->w;
#pragma omp for schedule(static)
        for (int j = 0; j < groups * (s->oc + s->ic); j++) {
            const int g = j / (s->oc + s->ic), ch = j % (s->oc + s->ic), is_g = ch < s->oc;
            const float *src[16];
            for (int l = 0; l < 16; l++) {
                const int img = g * 16 + l;
                src[l] = img >= s->n ? NULL
                         : is_g      ? dout + (size_t)img * out_img + (size_t)ch * ohw
                                     : inp + (size_t)img * in_img + (size_t)(ch - s->oc) * hw;
            }
            if (is_g)
                df_conv3x3_lanes_pack_dw_plane(gpk + (size_t)g * gsz + (size_t)ch * (gsz / s->oc), src, s->oh, s->ow, bf, 0);
            else
                df_conv3x3_lanes_pack_dw_plane(xpk + (size_t)g * xsz + (size_t)(ch - s->oc) * (xsz / s->ic), src, s->h,
                                               s->w, bf, 1);
        }
#pragma omp for schedule(dynamic)
        for (int c = 0; c < s->ic; c++) df_conv3x3_lanes_dw(dw, gpk, xpk, groups, c, s->oc, s->ic, s->h, s->w, bf);
    }
}

/* The forward on the lanes kernel: the packed weights after the rest of the lanes scratch. */
void conv_forward_lanes(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                               const df_conv_shape *s, float *scratch) {
    const int bf = conv_bf16(s);
    float *wpack = conv_lanes_wpack(s, scratch);
    df_conv3x3_pack_weights(wpack, w, s->oc, s->ic, 0, bf);
    conv_lanes_run(out, inp, wpack, b, f, s, s->ic, s->oc, 0, scratch);
}

/* The direct forward, image by image (one per thread at a time), with the fusions of f (may be
 * NULL): the normalised image is made in the thread's scratch right before it is padded, the
 * epilogue adds run in the kernel's scatter. Stride 2 (no fusions) pads into phase planes. */
void conv_forward_direct(float *out, const float *inp, const float *w, const float *b,
                                const df_conv_fusion *f, const df_conv_shape *s, float *scratch) {
    const int nt = conv_threads(s), bf = conv_bf16(s);
    const size_t per_thread = conv_thread_floats(s), in_img = (size_t)s->ic * s->h * s->w,
                 out_img = (size_t)s->oc * s->oh * s->ow;
    const int norm = f && f->norm_mean;
    float *wpack = scratch + per_thread * (size_t)nt;
    df_conv3x3_pack_weights(wpack, w, s->oc, s->ic, 0, bf);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *padded = thread_cols(scratch, per_thread);
        float *normed = padded + df_conv3x3_image_words(s->ic, s->h, s->w, bf);
#pragma omp for schedule(dynamic)
        for (int n = 0; n < s->n; n++) {
            const float *x = inp + (size_t)n * in_img;
            if (s->stride == 2) {
                df_conv3x3_s2_pad_image(padded, x, s->ic, s->h, s->w, s->oh, s->ow, s->pad_t, s->pad_l, bf);
                df_conv3x3_s2_image(out + (size_t)n * out_img, padded, wpack, b, s->oc, s->ic, s->oh, s->ow, bf);
                continue;
            }
            if (norm) {
                const int g = f->norm_groups;
                df_groupnorm_silu_image(normed, f->norm_mean + (size_t)n * g, f->norm_rstd + (size_t)n * g, x,
                                        f->norm_gamma, f->norm_beta, s->ic, s->h * s->w, g);
                x = normed;
            }
            df_conv3x3_pad_image(padded, x, s->ic, s->h, s->w, bf);
            df_conv3x3_image(out + (size_t)n * out_img, padded, wpack, b,
                             f && f->chan_bias ? f->chan_bias + (size_t)n * s->oc : NULL,
                             f && f->residual ? f->residual + (size_t)n * out_img : NULL, s->oc, s->ic, s->h, s->w, 0,
                             bf);
        }
    }
}

/* y (N, p->oc, h, w) = (or +=, accumulate) the Winograd conv of x (N, p->ic, h, w) with w (flip:
 * the flipped, transposed weights of a forward conv, for its dX), with the fusions of f (may be
 * NULL): threads over groups of images, each image's normalised copy made in the thread's buffer
 * right before its group is transformed. */
void conv_wino_run(float *y, const float *x, const float *w, int flip, const float *b,
                          const df_conv_fusion *f, const df_conv_shape *s, const df_wino_plan *p, int accumulate,
                          float *scratch) {
    const int nt = conv_threads(s), round = conv_bf16(s) != DF_C3_FP32, groups = (s->n + p->g - 1) / p->g;
    const int hw = s->h * s->w, norm = f && f->norm_mean;
    const size_t x_img = (size_t)p->ic * hw, y_img = (size_t)p->oc * hw, work_floats = df_wino_thread_floats(p),
                 per_thread = work_floats + conv_wino_norm_floats(s, p);
    float *u = scratch, *base = scratch + df_wino_weight_floats(p);
    ASSERT(p->g <= WINO_MAX_GROUP);
    df_wino_pack_weights(u, w, p, flip, round);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *work = thread_cols(base, per_thread);
        float *normed = work + work_floats;
        const float *src[WINO_MAX_GROUP];
#pragma omp for schedule(dynamic)
        for (int gi = 0; gi < groups; gi++) {
            const int n0 = gi * p->g, nimg = s->n - n0 < p->g ? s->n - n0 : p->g;
            for (int l = 0; l < nimg; l++) {
                src[l] = x + (size_t)(n0 + l) * x_img;
                if (!norm) continue;
                const int ng = f->norm_groups;
                df_groupnorm_silu_image(normed + l * x_img, f->norm_mean + (size_t)(n0 + l) * ng,
                                        f->norm_rstd + (size_t)(n0 + l) * ng, src[l], f->norm_gamma, f->norm_beta,
                                        p->ic, hw, ng);
                src[l] = normed + l * x_img;
            }
            df_wino_forward_group(y + (size_t)n0 * y_img, y_img, src, nimg, u, b,
                                  f && f->chan_bias ? f->chan_bias + (size_t)n0 * p->oc : NULL,
                                  f && f->residual ? f->residual + (size_t)n0 * y_img : NULL, accumulate, round, p,
                                  work);
        }
    }
}

void conv_forward_wino(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                              const df_conv_shape *s, float *scratch) {
    df_wino_plan pf, px, pd;
    conv_wino_plans(s, &pf, &px, &pd);
    conv_wino_run(out, inp, w, 0, b, f, s, &pf, 0, scratch);
}

/* dw += the weight gradient by Winograd: threads over fixed slices of the groups, each slice's sum
 * in its own partial (groups in order), the partials added in slice order, then transformed back. */
void conv_dw_wino(float *dw, const float *dout, const float *inp, const df_conv_shape *s, float *scratch) {
    df_wino_plan pf, px, d;
    conv_wino_plans(s, &pf, &px, &d);
    const int nt = conv_threads(s), round = conv_bf16(s) != DF_C3_FP32, groups = (s->n + d.g - 1) / d.g;
    const int slices = conv_wino_dw_slices(s, &d);
    const size_t duf = df_wino_dw_floats(&d), per_thread = df_wino_dw_thread_floats(&d);
    const size_t in_img = (size_t)s->ic * s->h * s->w, out_img = (size_t)s->oc * s->h * s->w;
    float *parts = scratch, *base = scratch + (size_t)slices * duf;
    ASSERT(d.g <= WINO_MAX_GROUP);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *work = thread_cols(base, per_thread);
        const float *xs[WINO_MAX_GROUP], *gs[WINO_MAX_GROUP];
#pragma omp for schedule(dynamic)
        for (int c = 0; c < slices; c++) {
            const int g0 = c * groups / slices, g1 = (c + 1) * groups / slices;
            for (int gi = g0; gi < g1; gi++) {
                const int n0 = gi * d.g, nimg = s->n - n0 < d.g ? s->n - n0 : d.g;
                for (int l = 0; l < nimg; l++) {
                    xs[l] = inp + (size_t)(n0 + l) * in_img;
                    gs[l] = dout + (size_t)(n0 + l) * out_img;
                }
                df_wino_dw_group(parts + (size_t)c * duf, xs, gs, nimg, gi == g0, round, &d, work);
            }
        }
#pragma omp for schedule(static)
        for (size_t i = 0; i < duf; i++) {
            float acc = parts[i];
            for (int c = 1; c < slices; c++) acc += parts[(size_t)c * duf + i];
            parts[i] = acc;
        }
#pragma omp for schedule(static)
        for (int c = 0; c < s->ic; c++) df_wino_dw_finish(dw, parts, &d, c, c + 1);
    }
}
