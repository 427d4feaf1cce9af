/* conv3x3_vec_tmpl.h: internal to conv3x3_vec.c, included once per level: the direct 3x3 stride-1
 * convolution's padding and per-image kernel (conv3x3.h) on GCC's vector extensions. The includer
 * defines:
 *   VT_NAME(x)  a unique name for x at this level        VT_TARGET  the function attribute (or nothing)
 *   VT_VW       floats per vector (4 or 8)                VT_RT, VT_CT  rows x vectors of the tile
 *   VT_MADD(acc, a, b)  acc + a b with one rounding       VT_BCAST(x)   x in every lane
 *   VT_DWR      vectors of outputs in a dW tile (VT_DWR x 9 accumulators)
 * and the template #undefs them at its end.
 *
 * The layouts are the AVX-512 kernel's: padded planes of width wp = w + 2 (df_conv3x3_plane_words,
 * whose 48-position rounding covers every tile of VT_VW * VT_CT positions here, 24 or 12) and
 * weights packed [OC/8][IC][9][8]. The register tile is VT_RT output rows (of the strip's 8) x
 * VT_CT vectors of consecutive positions; each output is one chain of multiply-adds from zero,
 * channels outer and taps inner, as in the AVX-512 kernel: where both use FMA, the same bits. The
 * tile goes through a small buffer on its way out, where the junk columns are dropped and the
 * bias, the per-channel bias and the residual are added, each a separate float addition in that
 * order (conv3x3.h). */

typedef float VT_NAME(vf) __attribute__((vector_size(VT_VW * 4)));
#define VF VT_NAME(vf)
#define VT_NP (VT_VW * VT_CT) /* positions of a tile */

VT_TARGET static inline __attribute__((always_inline)) VF VT_NAME(load)(const float *p) {
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* tile[r][j] = sum over steps s and taps t of a[s][t][r] * plane_s[off_t + j], j < VT_NP: p points
 * at plane 0's first position of the tile, the planes ps floats apart; a at the tile's first row of
 * a packed strip (8 rows a tap). */
VT_TARGET static void VT_NAME(tile)(float tile[VT_RT][VT_NP], const float *p, size_t ps, const int off[9],
                                    const float *a, int steps) {
    VF acc[VT_RT][VT_CT];
    for (int r = 0; r < VT_RT; r++)
        for (int j = 0; j < VT_CT; j++) acc[r][j] = (VF){0};
    for (int s = 0; s < steps; s++, p += ps) {
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++, a += 8) {
            VF bv[VT_CT];
#pragma GCC unroll 4
            for (int j = 0; j < VT_CT; j++) bv[j] = VT_NAME(load)(p + off[t] + VT_VW * j);
#pragma GCC unroll 8
            for (int r = 0; r < VT_RT; r++) {
                const VF av = VT_BCAST(a[r]);
#pragma GCC unroll 4
                for (int j = 0; j < VT_CT; j++) acc[r][j] = VT_MADD(acc[r][j], av, bv[j]);
            }
        }
    }
    for (int r = 0; r < VT_RT; r++)
        for (int j = 0; j < VT_CT; j++) memcpy(&tile[r][VT_VW * j], &acc[r][j], sizeof(VF));
}

/* The tile's row r (output o) to y: its segments are the runs of positions inside the image. */
VT_TARGET static void VT_NAME(store_row)(float *yo, const float *ro, const float *src, const tile_segs *sg,
                                         float bias, int has_cb, float cbias, int accumulate) {
    for (int k = 0; k < sg->n; k++) {
        float *dst = yo + sg->delta[k];
        const float *rs = ro ? ro + sg->delta[k] : NULL;
        if (accumulate) {
            for (int i = sg->lo[k]; i < sg->hi[k]; i++) dst[i] = dst[i] + src[i];
            continue;
        }
        for (int i = sg->lo[k]; i < sg->hi[k]; i++) {
            float t = src[i] + bias;
            if (has_cb) t = t + cbias;
            if (rs) t = t + rs[i];
            dst[i] = t;
        }
    }
}

VT_TARGET static void VT_NAME(image)(float *y, const float *padded, const float *wpack, const float *b,
                                     const float *cb, const float *res, int oc, int ic, int h, int w,
                                     int accumulate) {
    const int wp = w + 2, nq = h * wp, strips = (oc + 7) / 8;
    const size_t ps = df_conv3x3_plane_words(h, w), astrip = (size_t)ic * 9 * 8, hw = (size_t)h * w;
    const int off[9] = {0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2};
    float tile[VT_RT][VT_NP] __attribute__((aligned(64)));
    for (int q0 = 0; q0 < nq; q0 += VT_NP) {
        tile_segs sg;
        tile_segs_init(&sg, q0, VT_NP, h, w);
        /* positions outside, strips inside: the tile's planes stay in L1 while the weights pass */
        for (int sidx = 0; sidx < strips; sidx++)
            for (int r0 = 0; r0 < 8 && sidx * 8 + r0 < oc; r0 += VT_RT) {
                VT_NAME(tile)(tile, padded + q0, ps, off, wpack + sidx * astrip + r0, ic);
                for (int r = 0; r < VT_RT && sidx * 8 + r0 + r < oc; r++) {
                    const int o = sidx * 8 + r0 + r;
                    VT_NAME(store_row)(y + o * hw, res ? res + o * hw : NULL, tile[r], &sg, b ? b[o] : 0.0f,
                                       cb != NULL, cb ? cb[o] : 0.0f, accumulate);
                }
            }
    }
}

/* n floats at p rounded to bf16 in place (kept as fp32): DF_C3_BF16R. */
VT_TARGET static void VT_NAME(round)(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, p + i, sizeof u);
        u = df_bf16r_bits(u);
        memcpy(p + i, &u, sizeof u);
    }
}

/* The padded planes (df_conv3x3_pad_f32, conv3x3.c), rounded to bf16 for DF_C3_BF16R. */
VT_TARGET static void VT_NAME(pad)(float *dst, const float *x, int c, int h, int w, int round) {
    df_conv3x3_pad_f32(dst, x, c, h, w);
    if (round) VT_NAME(round)(dst, (size_t)c * df_conv3x3_plane_words(h, w));
}

/* dW from dout in blocks of 8 channels (df_conv3x3_pad_grad here: (c16 / 8, h w, 8) with c16 = oc
 * rounded up to 16, the size of the AVX-512 channels-last layout): dw rows o0..o0 + 7 (clipped to
 * oc), input channel c, its 9 taps = (set) or += the sums over the images and positions of
 * g[q][o] * x_c[q + tap], VT_VW outputs a vector and the tap's input value broadcast: VT_DWR x 9
 * accumulators (VT_VW VT_DWR = 8), no lane reductions; the order of the sums (images, rows,
 * columns) is the AVX-512 kernel's. A tile reads its block of dout in order, 32 bytes a position.
 * (Plain channels last, 512 bytes a position at 128 channels, put every position of a tile in the
 * same few cache sets: at 128 -> 128 channels of 32 x 32 the tile's dout fell out of L2, 2.2x
 * slower than im2col + GEMM.) */
#define VT_DWB 8
VT_TARGET static void VT_NAME(dw_tile)(float *dw, const float *gbl, const float *xpad, int n, int o0, int c, int oc,
                                       int ic, int h, int w, size_t gimg, size_t ximg, size_t ps, int set) {
    const int wp = w + 2;
    VF acc[VT_DWR][9];
    for (int r = 0; r < VT_DWR; r++)
        for (int t = 0; t < 9; t++) acc[r][t] = (VF){0};
    for (int i = 0; i < n; i++) {
        const float *g = gbl + i * gimg + (size_t)o0 * h * w, *x = xpad + i * ximg + (size_t)c * ps;
        for (int oy = 0; oy < h; oy++) {
            const float *x0r = x + (size_t)oy * wp, *x1r = x0r + wp, *x2r = x1r + wp;
            const float *gr = g + (size_t)oy * w * VT_DWB;
            for (int ox = 0; ox < w; ox++, x0r++, x1r++, x2r++) {
                const float *rows[3] = {x0r, x1r, x2r};
                VF gv[VT_DWR];
#pragma GCC unroll 3
                for (int r = 0; r < VT_DWR; r++) gv[r] = VT_NAME(load)(gr + (size_t)ox * VT_DWB + VT_VW * r);
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++) {
                    const VF xb = VT_BCAST(rows[t / 3][t % 3]);
#pragma GCC unroll 3
                    for (int r = 0; r < VT_DWR; r++) acc[r][t] = VT_MADD(acc[r][t], gv[r], xb);
                }
            }
        }
    }
    for (int r = 0; r < VT_DWR; r++)
        for (int t = 0; t < 9; t++)
            for (int l = 0; l < VT_VW && o0 + VT_VW * r + l < oc; l++) {
                float *d = dw + ((size_t)(o0 + VT_VW * r + l) * ic + c) * 9 + t;
                *d = (set ? 0.0f : *d) + acc[r][t][l];
            }
}

VT_TARGET static void VT_NAME(dw)(float *dw, const float *gbl, const float *xpad, int n, int oc, int ic, int h,
                                  int w, int set) {
    const size_t gimg = (size_t)h * w * ((oc + 15) / 16 * 16), ps = df_conv3x3_plane_words(h, w),
                 ximg = (size_t)ic * ps;
    /* outputs outside: a tile's block of dout stays in L2 while the input channels pass */
    for (int o0 = 0; o0 < oc; o0 += VT_DWB)
        for (int c = 0; c < ic; c++) VT_NAME(dw_tile)(dw, gbl, xpad, n, o0, c, oc, ic, h, w, gimg, ximg, ps, set);
}

/* dst (c16 / 8, h w, 8) = g (c, h, w) in blocks of 8 channels, zeros in the channels c..c16-1;
 * rounded to bf16 when round != 0. */
VT_TARGET static void VT_NAME(pad_grad)(float *dst, const float *g, int c, int h, int w, int round) {
    const int hw = h * w, c16 = (c + 15) / 16 * 16;
    for (int ob = 0; ob < c16 / VT_DWB; ob++) {
        float *d = dst + (size_t)ob * hw * VT_DWB;
        for (int k = 0; k < VT_DWB; k++) {
            const int ch = ob * VT_DWB + k;
            const float *src = g + (size_t)ch * hw;
            for (int q = 0; q < hw; q++) d[(size_t)q * VT_DWB + k] = ch < c ? src[q] : 0.0f;
        }
    }
    if (round) VT_NAME(round)(dst, (size_t)hw * c16);
}

static const conv3x3_vec VT_NAME(kernels) = {VT_NAME(pad), VT_NAME(image), VT_NAME(pad_grad), VT_NAME(dw)};

#undef VT_NP
#undef VF
#undef VT_NAME
#undef VT_TARGET
#undef VT_VW
#undef VT_RT
#undef VT_CT
#undef VT_MADD
#undef VT_BCAST
#undef VT_DWR
#undef VT_DWB
