/* winograd_tmpl.h: internal to winograd.c, included once per level: the F(2x2, 3x3) kernels
 * (winograd.h) on GCC's vector extensions. The includer defines:
 *   VT_NAME(x)  a unique name for x at this level        VT_TARGET  the function attribute (or nothing)
 *   VT_VW       floats per vector (4 or 8)                VT_RT, VT_CT  the product's register tile:
 *               VT_RT output channels x VT_CT vectors of tile slots (forward, dX)
 *   VT_DRC, VT_DCT  dW's register tile: VT_DRC input channels x VT_DCT vectors of output channels
 *   VT_MADD(acc, a, b)  acc + a b with one rounding       VT_BCAST(x)   x in every lane
 *   VT_ZIPLO, VT_ZIPHI  WINO_SHUFFLE index lists interleaving the low and high halves of two vectors
 *   VT_EVENS, VT_ODDS   index lists taking the even and the odd floats of two vectors
 * and the template #undefs them at its end. */

typedef float VT_NAME(vf) __attribute__((vector_size(VT_VW * 4)));
typedef int VT_NAME(vi) __attribute__((vector_size(VT_VW * 4)));
#define VF VT_NAME(vf)
#define VT_NP (VT_VW * VT_CT)

VT_TARGET static inline __attribute__((always_inline)) VF VT_NAME(load)(const float *p) {
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}
VT_TARGET static inline __attribute__((always_inline)) void VT_NAME(store)(float *p, VF v) { memcpy(p, &v, sizeof v); }

/* n floats at p rounded to bf16 in place (kept as fp32): DF_C3_BF16R. df_bf16r_bits (bf16r.h) on
 * vectors of bits: nearest even, denormals to signed zero, NaN made quiet. */
typedef unsigned VT_NAME(vu) __attribute__((vector_size(VT_VW * 4)));
VT_TARGET static void VT_NAME(round)(float *p, size_t n) {
    size_t i = 0;
    for (; i + VT_VW <= n; i += VT_VW) {
        VT_NAME(vu) u, r;
        memcpy(&u, p + i, sizeof u);
        r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
        const VT_NAME(vu) denormal = (VT_NAME(vu))((u & 0x7F800000u) == 0);
        r = (r & ~denormal) | (u & 0x80000000u & denormal);
        const VT_NAME(vu) nan = (VT_NAME(vu))((u & 0x7FFFFFFFu) > 0x7F800000u);
        r = (r & ~nan) | ((u | 0x00400000u) & 0xFFFF0000u & nan);
        memcpy(p + i, &r, sizeof r);
    }
    for (; i < n; i++) p[i] = df_bf16r_float(p[i]);
}

/* The row buffer of phases: zeros past the image row. */
VT_TARGET static void VT_NAME(row_tmp_init)(float *tmp, const df_wino_plan *p) {
    memset(tmp, 0, sizeof(float) * 2 * (size_t)df_wino_pwv(p, VT_VW));
}

/* The four phase planes of one channel plane x (h, w) of the zero-padded image: plane (a, b) holds
 * padded[2i + a][2j + b] = x[2i + a - 1][2j + b - 1] at i pw + j, zero outside the image and in
 * the rest of its pps floats. Row by row: an image row splits into its even and odd columns by
 * vector shuffles, VT_VW of each a step, read in place (what lies past the row's end is the next
 * row's, or for the plane's last rows, which would read past it, a copy after zeros in tmp: 2 pwv
 * floats, pwv = pw rounded up to the vector). A phase row's last vector runs into the next row,
 * written after it; the one or two slots past the image in a row are zeroed last. */
VT_TARGET static void VT_NAME(phases)(float *ph, const float *x, float *tmp, const df_wino_plan *p, int round) {
    const int h = p->h, w = p->w, pw = p->pw, th = p->th, ne = w / 2, no = (w + 1) / 2;
    const int in_place = h * w - 2 * df_wino_pwv(p, VT_VW); /* rows starting at or before it read in place */
    for (int a = 0; a < 2; a++)
        for (int i = 0; i <= th; i++) {
            const int r = 2 * i + a - 1; /* the image row of plane row i */
            float *odd = ph + (size_t)(2 * a + 1) * p->pps + (size_t)i * pw, *even = odd - p->pps;
            if (r < 0 || r >= h) {
                memset(odd, 0, sizeof(float) * (size_t)pw);
                memset(even, 0, sizeof(float) * (size_t)pw);
                continue;
            }
            const float *src = x + (size_t)r * w;
            if (r * w > in_place) {
                memcpy(tmp, src, sizeof(float) * (size_t)w);
                src = tmp;
            }
            /* b = 1: padded columns 1, 3, ... = x columns 0, 2, ...; b = 0: padded 0, 2, ... = 0, x 1, 3, ... */
            even[0] = 0.0f;
            for (int k0 = 0; k0 < pw; k0 += VT_VW) {
                const VF v0 = VT_NAME(load)(src + 2 * k0), v1 = VT_NAME(load)(src + 2 * k0 + VT_VW);
                VT_NAME(store)(odd + k0, WINO_SHUFFLE(VT_NAME(vi), v0, v1, VT_EVENS));
                VT_NAME(store)(even + 1 + k0, WINO_SHUFFLE(VT_NAME(vi), v0, v1, VT_ODDS));
            }
            for (int k = no; k < pw; k++) odd[k] = 0.0f;
            for (int k = ne + 1; k < pw; k++) even[k] = 0.0f;
        }
    const size_t rows = (size_t)(th + 1) * pw;
    for (int k = 0; k < 4; k++) memset(ph + (size_t)k * p->pps + rows, 0, sizeof(float) * (p->pps - rows));
    if (round) VT_NAME(round)(ph, 4 * p->pps);
}

/* V[xi][c][n0 + q] for the qv slots of one image's channel c (its qp and the rounding to the vector),
 * from its phase planes: B^T d B. */
VT_TARGET static void VT_NAME(input_transform)(float *v, size_t xi_stride, const float *ph, const df_wino_plan *p) {
    const int pw = p->pw;
    for (int q0 = 0; q0 < p->qv; q0 += VT_VW) {
        VF d[4][4], s[4][4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                d[r][c] = VT_NAME(load)(ph + (size_t)(2 * (r & 1) + (c & 1)) * p->pps + q0 + (r >> 1) * pw + (c >> 1));
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) { /* B^T d: the rows */
            s[0][c] = d[0][c] - d[2][c];
            s[1][c] = d[1][c] + d[2][c];
            s[2][c] = d[2][c] - d[1][c];
            s[3][c] = d[1][c] - d[3][c];
        }
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) { /* (B^T d) B: the columns */
            float *o = v + (size_t)(4 * r) * xi_stride + q0;
            VT_NAME(store)(o, s[r][0] - s[r][2]);
            VT_NAME(store)(o + xi_stride, s[r][1] + s[r][2]);
            VT_NAME(store)(o + 2 * xi_stride, s[r][2] - s[r][1]);
            VT_NAME(store)(o + 3 * xi_stride, s[r][1] - s[r][3]);
        }
    }
}

/* The lanes layout (winograd.h): channel c of images x[0..nimg-1] packed into pl, position
 * (r, s) of the zero-padded plane at (r (2 tw + 2) + s) VT_VW, lane l image l (zeros past nimg). */
VT_TARGET static void VT_NAME(lanes_pack)(float *pl, const float *const x[], int nimg, int c, int round,
                                          const df_wino_plan *p) {
    const int h = p->h, w = p->w, wp = 2 * p->tw + 2;
    const size_t hw = (size_t)h * w;
    memset(pl, 0, sizeof(float) * (size_t)(2 * p->th + 2) * wp * VT_VW);
    for (int l = 0; l < nimg; l++) {
        const float *xc = x[l] + (size_t)c * hw;
        for (int r = 0; r < h; r++)
            for (int s = 0; s < w; s++) pl[((size_t)(r + 1) * wp + s + 1) * VT_VW + l] = xc[(size_t)r * w + s];
    }
    if (round) VT_NAME(round)(pl, (size_t)(2 * p->th + 2) * wp * VT_VW);
}

/* V[xi][c][t VW + l] from the packed plane: B^T d B, VT_VW images a vector. */
VT_TARGET static void VT_NAME(lanes_input_transform)(float *v, size_t xi_stride, const float *pl,
                                                     const df_wino_plan *p) {
    const size_t wp = 2 * (size_t)p->tw + 2;
    for (int ty = 0; ty < p->th; ty++)
        for (int tx = 0; tx < p->tw; tx++) {
            const float *base = pl + ((size_t)2 * ty * wp + 2 * tx) * VT_VW;
            VF d[4][4], s[4][4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) d[r][c] = VT_NAME(load)(base + (r * wp + c) * VT_VW);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                s[0][c] = d[0][c] - d[2][c];
                s[1][c] = d[1][c] + d[2][c];
                s[2][c] = d[2][c] - d[1][c];
                s[3][c] = d[1][c] - d[3][c];
            }
            const size_t q = (size_t)(ty * p->tw + tx) * VT_VW;
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                float *o = v + (size_t)(4 * r) * xi_stride + q;
                VT_NAME(store)(o, s[r][0] - s[r][2]);
                VT_NAME(store)(o + xi_stride, s[r][1] + s[r][2]);
                VT_NAME(store)(o + 2 * xi_stride, s[r][2] - s[r][1]);
                VT_NAME(store)(o + 3 * xi_stride, s[r][1] - s[r][3]);
            }
        }
}

/* Output channel o of the group's images from M (slots t VW + l, the 16 positions xi_stride apart):
 * A^T M A, each output to its image with the epilogue of df_wino_forward_group (in that order). */
VT_TARGET static void VT_NAME(lanes_output_transform)(float *y, size_t y_img, const float *m, size_t xi_stride,
                                                      int nimg, int o, const float *b, const float *cb,
                                                      const float *res, int accumulate, const df_wino_plan *p) {
    const int h = p->h, w = p->w, oc = p->oc;
    const size_t hw = (size_t)h * w;
    const float bias = b ? b[o] : 0.0f;
    for (int ty = 0; ty < p->th; ty++)
        for (int tx = 0; tx < p->tw; tx++) {
            const float *mt = m + (size_t)(ty * p->tw + tx) * VT_VW;
            VF t0[4], t1[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const float *mr = mt + (size_t)(4 * r) * xi_stride;
                const VF m0 = VT_NAME(load)(mr), m1 = VT_NAME(load)(mr + xi_stride),
                         m2 = VT_NAME(load)(mr + 2 * xi_stride), m3 = VT_NAME(load)(mr + 3 * xi_stride);
                t0[r] = m0 + m1 + m2;
                t1[r] = m1 - m2 - m3;
            }
            const VF yv[2][2] = {{t0[0] + t0[1] + t0[2], t1[0] + t1[1] + t1[2]},
                                 {t0[1] - t0[2] - t0[3], t1[1] - t1[2] - t1[3]}};
            for (int a = 0; a < 2 && 2 * ty + a < h; a++)
                for (int bb = 0; bb < 2 && 2 * tx + bb < w; bb++) {
                    const size_t at = (size_t)o * hw + (size_t)(2 * ty + a) * w + 2 * tx + bb;
                    for (int l = 0; l < nimg; l++) {
                        float *dst = y + l * y_img + at;
                        if (accumulate) {
                            *dst = *dst + yv[a][bb][l];
                            continue;
                        }
                        float t = yv[a][bb][l] + bias;
                        if (cb) t = t + cb[(size_t)l * oc + o];
                        if (res) t = t + res[l * y_img + at];
                        *dst = t;
                    }
                }
        }
}

/* m rows r0..r0+VT_RT-1, slots n0..n0+VT_NP-1 = sum over c of u[c][r] v[c][n]: u is one strip of
 * the packed weights ([ic][VT_RT]), v and m rows npad floats apart. */
VT_TARGET static void VT_NAME(product_tile)(float *m, const float *u, const float *v, int ic, int npad) {
    VF acc[VT_RT][VT_CT];
    for (int r = 0; r < VT_RT; r++)
        for (int j = 0; j < VT_CT; j++) acc[r][j] = (VF){0};
    for (int c = 0; c < ic; c++, u += VT_RT, v += npad) {
        VF bv[VT_CT];
#pragma GCC unroll 4
        for (int j = 0; j < VT_CT; j++) bv[j] = VT_NAME(load)(v + VT_VW * j);
#pragma GCC unroll 8
        for (int r = 0; r < VT_RT; r++) {
            const VF av = VT_BCAST(u[r]);
#pragma GCC unroll 4
            for (int j = 0; j < VT_CT; j++) acc[r][j] = VT_MADD(acc[r][j], av, bv[j]);
        }
    }
    for (int r = 0; r < VT_RT; r++)
        for (int j = 0; j < VT_CT; j++) VT_NAME(store)(m + (size_t)r * npad + VT_VW * j, acc[r][j]);
}

/* Output channel o of one image: its tiles' M (slots from m, the 16 positions xi_stride apart)
 * through A^T M A into the rows of y (h, w), with the epilogue of df_wino_forward_group. rows:
 * 4 qv + VT_VW floats: the even output rows (2 pw wide) then the odd ones. */
VT_TARGET static void VT_NAME(output_transform)(float *y, const float *m, size_t xi_stride, float *rows, float bias,
                                                int has_cb, float cbias, const float *res, int accumulate,
                                                const df_wino_plan *p) {
    float *even = rows, *odd = rows + 2 * p->qv;
    for (int q0 = 0; q0 < p->qv; q0 += VT_VW) {
        VF t0[4], t1[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) { /* M A: the columns */
            const float *mr = m + (size_t)(4 * r) * xi_stride + q0;
            const VF m0 = VT_NAME(load)(mr), m1 = VT_NAME(load)(mr + xi_stride), m2 = VT_NAME(load)(mr + 2 * xi_stride),
                     m3 = VT_NAME(load)(mr + 3 * xi_stride);
            t0[r] = m0 + m1 + m2;
            t1[r] = m1 - m2 - m3;
        }
        /* A^T (M A): the rows; y_ab the output (2 ty + a, 2 tx + b) of each tile */
        const VF y00 = t0[0] + t0[1] + t0[2], y01 = t1[0] + t1[1] + t1[2];
        const VF y10 = t0[1] - t0[2] - t0[3], y11 = t1[1] - t1[2] - t1[3];
        VT_NAME(store)(even + 2 * q0, WINO_SHUFFLE(VT_NAME(vi), y00, y01, VT_ZIPLO));
        VT_NAME(store)(even + 2 * q0 + VT_VW, WINO_SHUFFLE(VT_NAME(vi), y00, y01, VT_ZIPHI));
        VT_NAME(store)(odd + 2 * q0, WINO_SHUFFLE(VT_NAME(vi), y10, y11, VT_ZIPLO));
        VT_NAME(store)(odd + 2 * q0 + VT_VW, WINO_SHUFFLE(VT_NAME(vi), y10, y11, VT_ZIPHI));
    }
    const int h = p->h, w = p->w, rw = 2 * p->pw;
    for (int oy = 0; oy < h; oy++) {
        const float *src = ((oy & 1) ? odd : even) + (size_t)(oy >> 1) * rw;
        float *dst = y + (size_t)oy * w;
        if (accumulate) {
            for (int x = 0; x < w; x++) dst[x] = dst[x] + src[x];
            continue;
        }
        /* one loop per case, so that each vectorises */
        const float *rr = res ? res + (size_t)oy * w : NULL;
        if (!rr && !has_cb)
            for (int x = 0; x < w; x++) dst[x] = src[x] + bias;
        else if (!rr)
            for (int x = 0; x < w; x++) dst[x] = (src[x] + bias) + cbias;
        else if (!has_cb)
            for (int x = 0; x < w; x++) dst[x] = (src[x] + bias) + rr[x];
        else
            for (int x = 0; x < w; x++) dst[x] = ((src[x] + bias) + cbias) + rr[x];
    }
}

VT_TARGET static void VT_NAME(forward_group)(float *y, size_t y_img, const float *const x[], int nimg, const float *u,
                                             const float *b, const float *cb, const float *res, int accumulate,
                                             int round, const df_wino_plan *p, float *work) {
    const int ic = p->ic, oc = p->oc, npad = p->npad, qp = p->qp;
    const size_t vxi = (size_t)ic * npad, mxi = (size_t)p->ocp * npad, hw = (size_t)p->h * p->w;
    float *v = work, *m = v + 16 * vxi, *ph = m + 16 * mxi, *rows = ph + 4 * p->pps, *tmp = rows + 4 * p->qv + VT_VW;
    VT_NAME(row_tmp_init)(tmp, p);
    /* V: the images side by side, qp slots apart (each image's transform writes qv, into the next
     * image's first slots, which it then overwrites), zero past the last image (finite inputs for
     * the product's last tile) */
    const int used = p->lanes ? qp : (nimg - 1) * qp + p->qv, ncols = (used + VT_NP - 1) / VT_NP * VT_NP;
    if (p->lanes)
        for (int c = 0; c < ic; c++) {
            VT_NAME(lanes_pack)(ph, x, nimg, c, round, p);
            VT_NAME(lanes_input_transform)(v + (size_t)c * npad, vxi, ph, p);
        }
    else
        for (int l = 0; l < nimg; l++)
            for (int c = 0; c < ic; c++) {
                VT_NAME(phases)(ph, x[l] + (size_t)c * hw, tmp, p, round);
                VT_NAME(input_transform)(v + (size_t)c * npad + (size_t)l * qp, vxi, ph, p);
            }
    if (ncols > used)
        for (int r = 0; r < 16 * ic; r++) memset(v + (size_t)r * npad + used, 0, sizeof(float) * (size_t)(ncols - used));
    /* M_xi = U_xi V_xi: slots outside, strips inside, so a tile of V stays in L1 while U passes */
    for (int xi = 0; xi < 16; xi++) {
        const float *uxi = u + (size_t)xi * p->ocp * ic, *vx = v + xi * vxi;
        float *mx = m + xi * mxi;
        for (int n0 = 0; n0 < ncols; n0 += VT_NP)
            for (int s = 0; s < p->ocp / VT_RT; s++)
                VT_NAME(product_tile)(mx + (size_t)s * VT_RT * npad + n0, uxi + (size_t)s * VT_RT * ic, vx + n0, ic, npad);
    }
    if (p->lanes) {
        for (int o = 0; o < oc; o++)
            VT_NAME(lanes_output_transform)(y, y_img, m + (size_t)o * npad, mxi, nimg, o, b, cb, res, accumulate, p);
        return;
    }
    for (int l = 0; l < nimg; l++)
        for (int o = 0; o < oc; o++)
            VT_NAME(output_transform)(y + l * y_img + o * hw, m + (size_t)o * npad + (size_t)l * qp, mxi, rows,
                                      b ? b[o] : 0.0f, cb != NULL, cb ? cb[(size_t)l * oc + o] : 0.0f,
                                      res ? res + l * y_img + o * hw : NULL, accumulate, p);
}

/* ---------------------------------------------------------------- dW */
#define VT_DO (VT_VW * VT_DCT) /* output channels of a dW tile */

/* One image's dout g (oc, h, w) as D[xi][ob][n0 + q][VT_VW] (A dY A^T of every tile, blocks of VT_VW
 * output channels, the slots xi_stride apart per xi, each slot VT_VW floats): first into blk, blocks
 * of VT_VW channels of the plane zero-padded to 2 th rows of 2 pw. */
VT_TARGET static void VT_NAME(dout_transform)(float *d, size_t xi_stride, size_t ob_stride, int obn, const float *g,
                                              float *blk, int round, const df_wino_plan *p) {
    /* tile (ty, tx) at slot ty sy + tx sx: the plane layout's rows of pw (the junk slot too, zeros),
     * or the lanes layout's tiles of VT_VW images */
    const int sy = p->lanes ? p->tw * VT_VW : p->pw, sx = p->lanes ? VT_VW : 1, ntx = p->lanes ? p->tw : p->pw;
    const int h = p->h, w = p->w, pw = p->pw, oc = p->oc;
    const int brows = 2 * p->th, bw = 2 * pw;
    const size_t bsz = (size_t)brows * bw * VT_VW, hw = (size_t)h * w;
    for (int ob = 0; ob < obn; ob++) {
        float *bk = blk;
        memset(bk, 0, sizeof(float) * bsz);
        for (int k = 0; k < VT_VW && ob * VT_VW + k < oc; k++) {
            const float *src = g + (size_t)(ob * VT_VW + k) * hw;
            for (int yy = 0; yy < h; yy++)
                for (int xx = 0; xx < w; xx++) bk[((size_t)yy * bw + xx) * VT_VW + k] = src[(size_t)yy * w + xx];
        }
        if (round) VT_NAME(round)(bk, bsz);
        for (int q = 0; q < p->th * ntx; q++) {
            const int ty = q / ntx, tx = q % ntx;
            const float *t = bk + ((size_t)(2 * ty) * bw + 2 * tx) * VT_VW;
            /* the junk slot (tx = tw) holds zeros: its outputs are past the image */
            const VF y00 = VT_NAME(load)(t), y01 = VT_NAME(load)(t + VT_VW), y10 = VT_NAME(load)(t + bw * VT_VW),
                     y11 = VT_NAME(load)(t + bw * VT_VW + VT_VW);
            /* A dY: rows (a0 = y0, a1 = y0 + y1, a2 = y0 - y1, a3 = -y1), then (A dY) A^T: columns */
            const VF a[4][2] = {{y00, y01}, {y00 + y10, y01 + y11}, {y00 - y10, y01 - y11}, {-y10, -y11}};
            float *o = d + (size_t)ob * ob_stride + (size_t)(ty * sy + tx * sx) * VT_VW;
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                VT_NAME(store)(o + (size_t)(4 * r) * xi_stride, a[r][0]);
                VT_NAME(store)(o + (size_t)(4 * r + 1) * xi_stride, a[r][0] + a[r][1]);
                VT_NAME(store)(o + (size_t)(4 * r + 2) * xi_stride, a[r][0] - a[r][1]);
                VT_NAME(store)(o + (size_t)(4 * r + 3) * xi_stride, -a[r][1]);
            }
        }
    }
}

/* du rows c0..c0+VT_DRC-1, output channels o0..o0+VT_DO-1 (+)= sum over slots n < k of
 * v[c][n] d[n][o]: v rows npad apart, d one block row of VT_VW-wide slots per VT_VW outputs. */
VT_TARGET static void VT_NAME(dw_tile)(float *du, int ocv, const float *v, int npad, const float *d, size_t ob_stride,
                                       int k, int set) {
    VF acc[VT_DRC][VT_DCT];
    for (int r = 0; r < VT_DRC; r++)
        for (int j = 0; j < VT_DCT; j++) acc[r][j] = (VF){0};
    for (int n = 0; n < k; n++) {
        VF dv[VT_DCT];
#pragma GCC unroll 4
        for (int j = 0; j < VT_DCT; j++) dv[j] = VT_NAME(load)(d + j * ob_stride + (size_t)n * VT_VW);
#pragma GCC unroll 8
        for (int r = 0; r < VT_DRC; r++) {
            const VF bv = VT_BCAST(v[(size_t)r * npad + n]);
#pragma GCC unroll 4
            for (int j = 0; j < VT_DCT; j++) acc[r][j] = VT_MADD(acc[r][j], bv, dv[j]);
        }
    }
    for (int r = 0; r < VT_DRC; r++)
        for (int j = 0; j < VT_DCT; j++) {
            float *o = du + (size_t)r * ocv + VT_VW * j;
            VT_NAME(store)(o, set ? acc[r][j] : VT_NAME(load)(o) + acc[r][j]);
        }
}

VT_TARGET static void VT_NAME(dw_group)(float *du, const float *const x[], const float *const g[], int nimg, int set,
                                        int round, const df_wino_plan *p, float *work) {
    const int ic = p->ic, npad = p->npad, qp = p->qp, icp = (ic + VT_DRC - 1) / VT_DRC * VT_DRC;
    const int ocv = (p->oc + VT_DO - 1) / VT_DO * VT_DO, obn = ocv / VT_VW;
    const size_t vxi = (size_t)icp * npad, ob_stride = (size_t)npad * VT_VW, dxi = (size_t)obn * ob_stride;
    const size_t hw = (size_t)p->h * p->w;
    float *v = work, *d = v + 16 * vxi, *ph = d + 16 * dxi, *blk = ph + 4 * p->pps;
    float *tmp = blk + (size_t)2 * p->th * 2 * p->pw * VT_VW;
    VT_NAME(row_tmp_init)(tmp, p);
    const int k = p->lanes ? qp : nimg * qp;
    if (p->lanes) {
        for (int c = 0; c < ic; c++) {
            VT_NAME(lanes_pack)(ph, x, nimg, c, round, p);
            VT_NAME(lanes_input_transform)(v + (size_t)c * npad, vxi, ph, p);
        }
        /* the lanes past nimg: zeros in D too (V's are zero, and D must be finite) */
        if (nimg < VT_VW)
            for (size_t r = 0; r < 16 * (size_t)obn; r++) memset(d + r * ob_stride, 0, sizeof(float) * (size_t)k * VT_VW);
        for (int l = 0; l < nimg; l++) VT_NAME(dout_transform)(d + (size_t)l * VT_VW, dxi, ob_stride, obn, g[l], blk, round, p);
    } else
        for (int l = 0; l < nimg; l++) {
            for (int c = 0; c < ic; c++) {
                VT_NAME(phases)(ph, x[l] + (size_t)c * hw, tmp, p, round);
                VT_NAME(input_transform)(v + (size_t)c * npad + (size_t)l * qp, vxi, ph, p);
            }
            VT_NAME(dout_transform)(d + (size_t)l * qp * VT_VW, dxi, ob_stride, obn, g[l], blk, round, p);
        }
    /* the padding input channels: zero rows (finite, no contribution) */
    for (int xi = 0; xi < 16; xi++)
        for (int c = ic; c < icp; c++) memset(v + xi * vxi + (size_t)c * npad, 0, sizeof(float) * (size_t)k);
    /* D's channels past oc are zero (dout_transform's blocks) */
    for (int xi = 0; xi < 16; xi++)
        for (int c0 = 0; c0 < icp; c0 += VT_DRC)
            for (int o0 = 0; o0 < ocv; o0 += VT_DO)
                VT_NAME(dw_tile)(du + ((size_t)xi * icp + c0) * ocv + o0, ocv, v + xi * vxi + (size_t)c0 * npad, npad,
                                 d + xi * dxi + (size_t)(o0 / VT_VW) * ob_stride, ob_stride, k, set);
}

static const wino_kernels VT_NAME(kernels) = {VT_VW, VT_RT, VT_NP, VT_DRC, VT_DO, VT_NAME(forward_group),
                                              VT_NAME(dw_group)};

#undef VT_DO
#undef VT_NP
#undef VF
#undef VT_NAME
#undef VT_TARGET
#undef VT_VW
#undef VT_RT
#undef VT_CT
#undef VT_DRC
#undef VT_DCT
#undef VT_MADD
#undef VT_BCAST
#undef VT_ZIPLO
#undef VT_ZIPHI
#undef VT_EVENS
#undef VT_ODDS
