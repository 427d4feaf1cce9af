/* winograd.h: internal to ops_conv.c: the 3x3 stride-1 pad-1 convolution by Winograd's minimal
 * filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
 * at the levels below AVX-512 with a vector FMA (avx2, neon; cpu.h).
 *
 * Why: at avx2 the direct 3x3 kernel (conv3x3_vec.c) already runs at 60-72% of the FMA peak, and the
 * 3x3 convs were 81% of a training step: only less arithmetic goes faster. F(2x2, 3x3) computes a
 * 2x2 block of outputs from a 4x4 block of input with 16 multiplies instead of 36 (2.25x fewer).
 *
 * The algorithm, per output channel o and 2x2 tile of outputs (A, B, G below are constants):
 *   U[o][c] = G g[o][c] G^T          4x4, once per call          (g: the 3x3 weights)
 *   V[c]    = B^T d[c] B             4x4, per tile               (d: the 4x4 input block)
 *   M[o]    = sum over c of U[o][c] * V[c], elementwise: 16 independent products (position xi of
 *             the 4x4), each a matrix product over the channels: M_xi = U_xi (oc x ic) V_xi (ic x tiles)
 *   Y[o]    = A^T M[o] A             2x2 outputs
 * with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. The same kernel computes dX (the conv of dout with the flipped,
 * transposed weights). dW sums the products the other way: dU_xi[o][c] = sum over tiles of
 * (A dY[o] A^T)_xi V_xi[c], then dW[o][c] = G^T dU[o][c] G (the adjoints of the steps above).
 *
 * Layouts. Tiles: th x tw of them (ceil(h/2) x ceil(w/2)), numbered q = ty * pw + tx in rows of
 * pw = tw + 1 slots (one junk slot a row, as the direct kernel's padded width has junk columns):
 * an input channel is split into four phase planes (even/odd rows x even/odd columns of the
 * zero-padded image, pw wide), so that element (r, s) of tile q's 4x4 block is phase (r&1, s&1) at
 * q + (r>>1) pw + (s>>1): a constant shift, and VW consecutive tiles are VW consecutive floats. An
 * image has qp = th pw slots; a group of g images, side by side, has npad slots (g qp, plus the
 * last image's rounding to the vector, rounded up to the register tile), the N of the 16 products. V is [16][ic][npad],
 * M [16][ocp][npad], the packed weights U [16][ocp / rt][ic][rt] (ocp: oc rounded up to rt rows).
 * Small planes (at most 16 tiles, from a batch of VW images) take the lanes layout instead: a group
 * is VW images and slot t VW + l is tile t of image l, so that no slot is a junk column: the
 * images' channel planes are packed side by side in the vector lanes ((2 th + 2) x (2 tw + 2)
 * positions of VW floats, zero-padded) and a tile's 16 inputs are 16 vectors of VW images.
 * Each output is one fixed chain of operations, whichever group or thread it falls in: the result
 * does not depend on the batch, the group size or the thread count.
 * Numerics: fp32 throughout; against the direct conv the error is a few fp32 ulps of the sums'
 * magnitudes (tested in test_ops). --precision bf16 (format DF_C3_BF16R) rounds the inputs and the
 * weights to bf16 before the transforms: bf16 inputs, fp32 arithmetic.
 * What it is not: no other tile size (F(4x4, 3x3) saves more, with errors ~10x larger), no stride 2,
 * not at the AVX-512 levels (their direct and lanes kernels stay). */
#ifndef DF_WINOGRAD_H
#define DF_WINOGRAD_H

#include <stddef.h>

/* 1 when the Winograd kernels run at the level in use (avx2, neon) and were not switched off. */
int df_wino_available(void);
/* Test and bench hook: force != 0 makes df_wino_available return 0. Process-wide. */
void df_wino_force_off(int force);

typedef struct {
    int oc, ic, h, w; /* the conv computed: oc outputs from ic inputs, both planes h x w */
    int th, tw, pw;   /* tiles: th rows of tw, pw = tw + 1 slots a row */
    int qp, qv;       /* slots of one image (th pw), and those its transforms write (qp rounded
                       * up to the vector) */
    int g;            /* images of a group (one task of a thread) */
    int npad;         /* slots of a group */
    int rt, ocp;      /* rows of the register tile; oc rounded up to them */
    size_t pps;       /* floats of one phase plane (lanes: a quarter of the packed plane) */
    int lanes;        /* the lanes layout (below) */
} df_wino_plan;

/* The plan of a conv over n images run by `threads` threads (the group size depends on both; the
 * results do not), or with threads = 0 by n alone. A group has at most 4 images. */
void df_wino_plan_init(df_wino_plan *p, int oc, int ic, int h, int w, int n, int threads);
/* Floats of the packed weights U, and of one thread's work buffer (V, M, the phase planes and the
 * output rows of one group). */
size_t df_wino_weight_floats(const df_wino_plan *p);
size_t df_wino_thread_floats(const df_wino_plan *p);
/* Floats of one thread's buffers for dW (below). */
size_t df_wino_dw_thread_floats(const df_wino_plan *p);
/* Floats of the transformed weight gradient dU (16 oc ic). */
size_t df_wino_dw_floats(const df_wino_plan *p);

/* u (df_wino_weight_floats) = the weights transformed and packed. w is PyTorch's (oc, ic, 3, 3),
 * or with flip != 0 the (ic, oc, 3, 3) of the forward conv whose dX this computes (output o, input
 * c, tap t reads w[c][o][8 - t]). round != 0: w rounded to bf16 first. One thread. */
void df_wino_pack_weights(float *u, const float *w, const df_wino_plan *p, int flip, int round);

/* Images x[0..nimg-1] (each (ic, h, w); nimg <= p->g) to y + l * y_img (each (oc, h, w)): = the conv
 * + b[o], then + cb[l * oc + o], then + res[l * y_img + ...] (b, cb, res may be NULL; each a float
 * addition in that order), or += the conv when accumulate != 0. round != 0 rounds the inputs to
 * bf16. work: df_wino_thread_floats floats, 64-byte aligned. One thread. */
void df_wino_forward_group(float *y, size_t y_img, const float *const x[], int nimg, const float *u, const float *b,
                           const float *cb, const float *res, int accumulate, int round, const df_wino_plan *p,
                           float *work);

/* dW of the conv, part 1: du (df_wino_dw_floats, [16][oc][ic]) = (set) or += the sum over images
 * x[0..nimg-1] (inputs, (ic, h, w)) and g[0..nimg-1] (their douts, (oc, h, w)) of the products in
 * the transformed domain; nimg <= p->g. round != 0 rounds both to bf16. work:
 * df_wino_dw_thread_floats floats. One thread. */
void df_wino_dw_group(float *du, const float *const x[], const float *const g[], int nimg, int set, int round,
                      const df_wino_plan *p, float *work);
/* Part 2: dw (oc, ic, 3, 3) += G^T du G, for the input channels c0..c1-1. */
void df_wino_dw_finish(float *dw, const float *du, const df_wino_plan *p, int c0, int c1);

#endif
