/* ops_norm.c: GroupNorm (Wu & He 2018) forward and backward (ops.h).
 *
 * What it is: PyTorch's nn.GroupNorm semantics: biased variance over the C/groups channels x HW
 * pixels of a group, eps inside the sqrt, per-channel affine gamma/beta. Statistics are computed
 * in double, in one pass over values shifted by the group's first (so a large mean does not cancel the
 * variance).
 * What it is not: no LayerNorm/BatchNorm variants.
 *
 * Gradients ACCUMULATE (+=) into dinp, dgamma, dbeta; NULL means "not needed".
 * Threads: OpenMP over the N*groups groups (dinp) and over channels (dgamma, dbeta) so no two
 * threads write the same element.
 * Vectorisation: the double sums carry `omp simd reduction`, which lets the compiler keep several
 * partial sums in vector lanes (a fixed order for a given build, so results are reproducible); the
 * per-element outputs are computed in float from per-channel constants.
 */
#include "ops.h"
#include "common.h"
#include "vexp.h"
#include "clones.h"
#include <math.h>

#define NORM_OMP_MIN_FLOATS 16384

/* Channel ch's norm as one scale a and shift s (y = x a + s) from its group's float statistics, in
 * double before the final rounding: every op that rebuilds the norm's output uses these, so a
 * rebuilt value is bit for bit the forward's. */
static inline void gn_affine(float mu, float rs, const float *gamma, const float *beta, int ch, float *a, float *s) {
    *a = (float)((double)rs * gamma[ch]);
    *s = (float)(beta[ch] - (double)mu * rs * gamma[ch]);
}

/* One channel of GN's output: yc = xc a + s (yc may be NULL), sc = SiLU of it (sc may be NULL). */
DF_BODY void gn_row_apply_body(float *yc, float *sc, const float *xc, float a, float s, int hw) {
    if (!sc) {
#pragma omp simd
        for (int p = 0; p < hw; p++) yc[p] = xc[p] * a + s;
    } else if (!yc) {
#pragma omp simd
        for (int p = 0; p < hw; p++) sc[p] = df_vsiluf(xc[p] * a + s);
    } else {
#pragma omp simd
        for (int p = 0; p < hw; p++) {
            const float v = xc[p] * a + s;
            yc[p] = v;
            sc[p] = df_vsiluf(v);
        }
    }
}
DF_CLONES(gn_row_apply, (float *yc, float *sc, const float *xc, float a, float s, int hw), (yc, sc, xc, a, s, hw))

/* tc = gc * SiLU'(xc a + sh): the SiLU backward of a norm's output, rebuilt from its input. */
DF_BODY void gn_row_silu_grad_body(float *tc, const float *gc, const float *xc, float a, float sh, int hw) {
#pragma omp simd
    for (int p = 0; p < hw; p++) tc[p] = df_vsilu_gradf(gc[p], xc[p] * a + sh);
}
DF_CLONES(gn_row_silu_grad, (float *tc, const float *gc, const float *xc, float a, float sh, int hw),
          (tc, gc, xc, a, sh, hw))

/* *sa = sum gc, *sb = sum gc (xc - mu) rs, in double. */
DF_BODY void gn_row_sums_body(double *sa_out, double *sb_out, const float *gc, const float *xc, double mu, double rs,
                              int hw) {
    double sa = 0.0, sb = 0.0;
#pragma omp simd reduction(+ : sa, sb)
    for (int p = 0; p < hw; p++) {
        sa += gc[p];
        sb += (double)gc[p] * ((xc[p] - mu) * rs);
    }
    *sa_out = sa;
    *sb_out = sb;
}
DF_CLONES(gn_row_sums, (double *sa, double *sb, const float *gc, const float *xc, double mu, double rs, int hw),
          (sa, sb, gc, xc, mu, rs, hw))

/* dxc (+)= kg gc - kx ((xc - muf) rsf) - k0 (set: =). */
DF_BODY void gn_row_dx_body(float *dxc, const float *gc, const float *xc, float kg, float kx, float muf, float rsf,
                            float k0, int hw, int set) {
    if (set) {
#pragma omp simd
        for (int p = 0; p < hw; p++) dxc[p] = kg * gc[p] - kx * ((xc[p] - muf) * rsf) - k0;
    } else {
#pragma omp simd
        for (int p = 0; p < hw; p++) dxc[p] += kg * gc[p] - kx * ((xc[p] - muf) * rsf) - k0;
    }
}
DF_CLONES(gn_row_dx, (float *dxc, const float *gc, const float *xc, float kg, float kx, float muf, float rsf, float k0,
                      int hw, int set),
          (dxc, gc, xc, kg, kx, muf, rsf, k0, hw, set))

/* Group ng's output from its (float) statistics: y = (x - mu) * rs * gamma + beta, folded into one
 * scale and shift per channel. Forward and df_groupnorm_apply both call it, so a recomputed output
 * is bit for bit the forward's. */
/* y = GN(x) for one group (y may be NULL), and ys = SiLU(y) when ys is not NULL: one pass. */
static void groupnorm_apply_group(float *y, float *ys, const float *x, float mu, float rs, const float *gamma,
                                  const float *beta, int g, int cpg, int hw) {
    for (int cc = 0; cc < cpg; cc++) {
        const int ch = g * cpg + cc;
        float a, s;
        gn_affine(mu, rs, gamma, beta, ch, &a, &s);
        const float *xc = x + (size_t)cc * hw;
        float *yc = y ? y + (size_t)cc * hw : NULL, *sc = ys ? ys + (size_t)cc * hw : NULL;
        /* the next channel's lines on their way: the input is cold (written a layer ago), and the
         * hardware prefetcher alone left these loads waiting on memory */
        for (int p = 0; p < hw && p < 4096; p += 16) __builtin_prefetch(xc + hw + p);
        gn_row_apply(yc, sc, xc, a, s, hw);
    }
}

void df_groupnorm_apply(float *out, const float *mean, const float *rstd, const float *inp, const float *gamma,
                        const float *beta, int n, int c, int hw, int groups) {
    const double t0_ = df_ops_prof_begin();
    ASSERT(groups > 0 && c % groups == 0);
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > NORM_OMP_MIN_FLOATS)
    for (int ng = 0; ng < n * groups; ng++)
        groupnorm_apply_group(out + (size_t)ng * gsize, NULL, inp + (size_t)ng * gsize, mean[ng], rstd[ng], gamma,
                              beta, ng % groups, cpg, hw);
    df_ops_prof_end(t0_, "groupnorm apply %d %dpx", c, hw);
}

void df_groupnorm_silu_apply(float *out, float *out_silu, const float *mean, const float *rstd, const float *inp,
                             const float *gamma, const float *beta, int n, int c, int hw, int groups) {
    const double t0_ = df_ops_prof_begin();
    ASSERT(groups > 0 && c % groups == 0 && out_silu);
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > NORM_OMP_MIN_FLOATS)
    for (int ng = 0; ng < n * groups; ng++)
        groupnorm_apply_group(out ? out + (size_t)ng * gsize : NULL, out_silu + (size_t)ng * gsize,
                              inp + (size_t)ng * gsize, mean[ng], rstd[ng], gamma, beta, ng % groups, cpg, hw);
    df_ops_prof_end(t0_, "groupnorm+silu apply %d %dpx", c, hw);
}

void df_groupnorm_silu_image(float *out_silu, const float *mean, const float *rstd, const float *inp,
                             const float *gamma, const float *beta, int c, int hw, int groups) {
    ASSERT(groups > 0 && c % groups == 0);
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
    for (int g = 0; g < groups; g++)
        groupnorm_apply_group(NULL, out_silu + (size_t)g * gsize, inp + (size_t)g * gsize, mean[g], rstd[g], gamma,
                              beta, g, cpg, hw);
}

void df_groupnorm_silu_grad_set(float *dinp, const float *dout, const float *inp, const float *mean,
                                const float *rstd, const float *gamma, const float *beta, int n, int c, int hw,
                                int groups) {
    const double t0_ = df_ops_prof_begin();
    ASSERT(groups > 0 && c % groups == 0);
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > NORM_OMP_MIN_FLOATS)
    for (int ng = 0; ng < n * groups; ng++) {
        const float mu = mean[ng], rs = rstd[ng];
        for (int cc = 0; cc < cpg; cc++) {
            const int ch = (ng % groups) * cpg + cc;
            /* groupnorm_apply_group's constants and value, then the SiLU backward's formula */
            float a, s;
            gn_affine(mu, rs, gamma, beta, ch, &a, &s);
            const size_t at = (size_t)ng * gsize + (size_t)cc * hw;
            const float *xc = inp + at, *gc = dout + at;
            float *dc = dinp + at;
            gn_row_silu_grad(dc, gc, xc, a, s, hw);
        }
    }
    df_ops_prof_end(t0_, "groupnorm+silu grad %d %dpx", c, hw);
}

/* GN's statistics and output (out and/or out_silu = SiLU(out); both NULL: the statistics only). */
static void groupnorm_forward(float *out, float *out_silu, float *mean, float *rstd, const float *inp,
                              const float *gamma, const float *beta, int n, int c, int hw, int groups, float eps) {
    ASSERT(groups > 0 && c % groups == 0);
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;  /* a group's channels are contiguous in (N,C,HW) */
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > NORM_OMP_MIN_FLOATS)
    for (int ng = 0; ng < n * groups; ng++) {
        const float *x = inp + (size_t)ng * gsize;
        float *y = out ? out + (size_t)ng * gsize : NULL;
        /* One pass, shifted by the group's first value k: the mean and variance of x - k (exact
         * in double: float inputs), which no large mean can cancel as long as k is within a few
         * deviations of it, and a group's first value is. (Two passes, mean then centred squares,
         * read each group twice: a third of a GroupNorm forward.) */
        const double k = x[0];
        double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
        for (size_t i = 0; i < gsize; i++) {
            const double d = (double)x[i] - k;
            s1 += d;
            s2 += d * d;
        }
        const double m1 = s1 / (double)gsize, var = s2 / (double)gsize - m1 * m1;
        const double mu = k + m1, rs = 1.0 / sqrt((var > 0.0 ? var : 0.0) + (double)eps);
        mean[ng] = (float)mu;
        rstd[ng] = (float)rs;
        if (y || out_silu)
            groupnorm_apply_group(y, out_silu ? out_silu + (size_t)ng * gsize : NULL, x, mean[ng], rstd[ng], gamma,
                                  beta, ng % groups, cpg, hw);
    }
}

void df_groupnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int n, int c, int hw, int groups, float eps) {
    const double t0_ = df_ops_prof_begin();
    groupnorm_forward(out, NULL, mean, rstd, inp, gamma, beta, n, c, hw, groups, eps);
    df_ops_prof_end(t0_, "groupnorm fwd %d %dpx", c, hw);
}

void df_groupnorm_stats(float *mean, float *rstd, const float *inp, int n, int c, int hw, int groups, float eps) {
    const double t0_ = df_ops_prof_begin();
    groupnorm_forward(NULL, NULL, mean, rstd, inp, NULL, NULL, n, c, hw, groups, eps);
    df_ops_prof_end(t0_, "groupnorm stats %d %dpx", c, hw);
}

void df_groupnorm_silu_forward(float *out_silu, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, int n, int c, int hw, int groups, float eps) {
    const double t0_ = df_ops_prof_begin();
    groupnorm_forward(NULL, out_silu, mean, rstd, inp, gamma, beta, n, c, hw, groups, eps);
    df_ops_prof_end(t0_, "groupnorm+silu fwd %d %dpx", c, hw);
}

/* An image's group up to this size has its SiLU gradient in a buffer on the stack, which stays in L1
 * between the passes (written to tmp and read back, at 28 x 28 and batch 64, the tensor went through
 * memory: the op ran at memory speed). */
#define GN_STAGE_FLOATS 4096

/* The normalisation backward: dx = rstd * (gx - mean(gx) - xhat * mean(gx * xhat)) with gx = dout *
 * gamma, xhat = (x - mean) rstd, the means taken over the group; dgamma += sum dout xhat, dbeta +=
 * sum dout over images and pixels.
 * Threads take whole groups (a group's channels, every image), so each group's sums and each
 * channel's dgamma and dbeta are summed by one thread in one order (image by image), whatever the
 * thread count. With silu != 0 dout is first replaced, block by block (an image's group, just
 * before it is used, while it is in cache), by tmp = dout * SiLU'(GN(x)) (df_groupnorm_silu_grad_set's
 * formula and bits): the SiLU's backward and the norm's in one pass over the tensors instead of
 * four. */
static void groupnorm_backward_groups(float *dinp, float *dgamma, float *dbeta, float *tmp, const float *dout,
                                      const float *inp, const float *mean, const float *rstd, const float *gamma,
                                      const float *beta, int n, int c, int hw, int groups, int set, int silu) {
    const int cpg = c / groups;
    const size_t gsize = (size_t)cpg * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > NORM_OMP_MIN_FLOATS)
    for (int grp = 0; grp < groups; grp++) {
        double ch_g[cpg], ch_gx[cpg]; /* this group's channels: their sums over the images so far */
        float stage[GN_STAGE_FLOATS] __attribute__((aligned(64)));
        for (int cc = 0; cc < cpg; cc++) ch_g[cc] = ch_gx[cc] = 0.0;
        for (int img = 0; img < n; img++) {
            const int ng = img * groups + grp;
            const size_t at = (size_t)ng * gsize;
            const float *x = inp + at, *g = dout + at;
            const double mu = mean[ng], rs = rstd[ng];
            if (img + 1 < n) /* this group's block of the next image, a whole image on: no stream to follow */
                for (size_t i = 0; i < gsize; i += 16) {
                    __builtin_prefetch(x + (size_t)groups * gsize + i, 0, 3);
                    __builtin_prefetch(dout + at + (size_t)groups * gsize + i, 0, 3);
                    if (dinp) __builtin_prefetch(dinp + at + (size_t)groups * gsize + i, 1, 3); /* written */
                }
            if (silu) { /* tmp = dout * SiLU'(GN(x)), then it is the gradient below */
                for (int cc = 0; cc < cpg; cc++) {
                    float a, sh;
                    gn_affine(mean[ng], rstd[ng], gamma, beta, grp * cpg + cc, &a, &sh);
                    const float *xc = x + (size_t)cc * hw, *gc = g + (size_t)cc * hw;
                    float *tc = (gsize <= GN_STAGE_FLOATS ? stage : tmp + at) + (size_t)cc * hw;
                    gn_row_silu_grad(tc, gc, xc, a, sh, hw);
                }
                g = gsize <= GN_STAGE_FLOATS ? stage : tmp + at;
            }
            double sum_g = 0.0, sum_gx = 0.0;
            for (int cc = 0; cc < cpg; cc++) {
                const double gm = gamma[grp * cpg + cc];
                const float *xc = x + (size_t)cc * hw, *gc = g + (size_t)cc * hw;
                double sa, sb;
                gn_row_sums(&sa, &sb, gc, xc, mu, rs, hw);
                sum_g += gm * sa;
                sum_gx += gm * sb;
                ch_g[cc] += sa;
                ch_gx[cc] += sb;
            }
            if (!dinp) continue;
            const double mean_g = sum_g / (double)gsize, mean_gx = sum_gx / (double)gsize;
            /* dx = (rs gm) g - (rs mean_gx) xhat - rs mean_g, xhat = (x - mu) rs, in float */
            const float muf = (float)mu, rsf = (float)rs, kx = (float)(rs * mean_gx), k0 = (float)(rs * mean_g);
            for (int cc = 0; cc < cpg; cc++) {
                const float kg = (float)(rs * gamma[grp * cpg + cc]);
                const float *xc = x + (size_t)cc * hw, *gc = g + (size_t)cc * hw;
                float *dxc = dinp + at + (size_t)cc * hw;
                gn_row_dx(dxc, gc, xc, kg, kx, muf, rsf, k0, hw, set);
            }
        }
        for (int cc = 0; cc < cpg; cc++) {
            if (dgamma) dgamma[grp * cpg + cc] += (float)ch_gx[cc];
            if (dbeta) dbeta[grp * cpg + cc] += (float)ch_g[cc];
        }
    }
}

static void groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                               const float *mean, const float *rstd, const float *gamma, int n, int c, int hw,
                               int groups, int set) {
    const double t0_ = df_ops_prof_begin();
    ASSERT(groups > 0 && c % groups == 0);
    groupnorm_backward_groups(dinp, dgamma, dbeta, NULL, dout, inp, mean, rstd, gamma, NULL, n, c, hw, groups, set, 0);
    df_ops_prof_end(t0_, "groupnorm bwd %d %dpx", c, hw);
}

size_t df_groupnorm_silu_backward_tmp_floats(int n, int c, int hw, int groups) {
    return (size_t)(c / groups) * hw <= GN_STAGE_FLOATS ? 0 : (size_t)n * c * hw;
}

void df_groupnorm_silu_backward(float *dinp, float *dgamma, float *dbeta, float *tmp, const float *dout,
                                const float *inp, const float *mean, const float *rstd, const float *gamma,
                                const float *beta, int n, int c, int hw, int groups, int set) {
    const double t0_ = df_ops_prof_begin();
    ASSERT(groups > 0 && c % groups == 0 && (tmp || (size_t)(c / groups) * hw <= GN_STAGE_FLOATS));
    groupnorm_backward_groups(dinp, dgamma, dbeta, tmp, dout, inp, mean, rstd, gamma, beta, n, c, hw, groups, set, 1);
    df_ops_prof_end(t0_, "groupnorm+silu bwd %d %dpx", c, hw);
}

void df_groupnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int n, int c, int hw, int groups) {
    groupnorm_backward(dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, c, hw, groups, 0);
}

void df_groupnorm_backward_set(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                               const float *mean, const float *rstd, const float *gamma, int n, int c, int hw,
                               int groups) {
    groupnorm_backward(dinp, dgamma, dbeta, dout, inp, mean, rstd, gamma, n, c, hw, groups, 1);
}
