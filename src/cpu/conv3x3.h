/* conv3x3.h: internal to ops_conv.c: the direct 3x3 stride-1 convolution with padding 1 (the
 * U-Net's most common conv), in fp32 (AVX-512F) and bf16 (AVX512_BF16), without im2col.
 *
 * The trick: pad each input channel into a plane of width Wp = W + 2 (one zero column each side,
 * one zero row above and below) and compute the output in that width too, i.e. at the flattened
 * positions q = oy * Wp + ox, ox < Wp (the columns ox >= W are computed and dropped). The input of
 * tap (ki, kj) for output q is then plane[q + ki * Wp + kj]: a constant shift, so 16 consecutive
 * outputs read 16 consecutive inputs for every tap and channel. The GEMM's B operand is the padded
 * plane itself, read in place; no (IC*9, OH*OW) column matrix is ever written.
 * The register tile is 8 output channels x 48 positions (24 accumulators; a plane's last tile only
 * the vectors of 16 that reach into the image); A is the weights,
 * packed once per call as [OC/8][IC][9][8] (fp32) or [OC/8][IC/2][9][8] bf16 channel pairs.
 * bf16 rounds inputs and weights to bf16 exactly as df_gemm_bf16 does (round to nearest even) and
 * sums the exact products in fp32 (vdpbf16ps), over channel pairs.
 * The same kernel computes dX of such a conv: a conv of dout with the flipped, transposed weights
 * (pack with flip = 1), also with padding 1.
 * dW of such a conv sums, for each weight, the products of dout laid out in the padded width (zeros
 * in the dropped columns) with the shifted plane, over the positions of a few images: a tile of 3
 * outputs x the 9 taps of one input channel, 16 positions per vector (fp32) or 32 as 16 pairs of
 * consecutive positions (bf16: both operands are plain bf16 copies of the fp32 layouts, so a
 * pair (q + off, q + off + 1) is one 32-bit word at any shift), reduced across lanes once per call.
 * In fp32 from 16 output channels, dout goes channels last instead and the tile is 48 outputs (16
 * per vector) x the 9 taps of one input channel, each tap's input value broadcast: no shifted
 * vector loads, no lane reductions.
 * Stride 2 runs the same kernel over phase planes (below), forward only.
 * What it is not: no stride-2 dX or dW, no other kernel sizes or strides (those take im2col + GEMM
 * in ops_conv.c), no fallback of its own: callers check df_conv3x3_available() first. */
#ifndef DF_CONV3X3_H
#define DF_CONV3X3_H

#include <stddef.h>

/* The number format of every `bf16` argument below:
 *   DF_C3_FP32   fp32 values, vfmadd231ps
 *   DF_C3_BF16   bf16 pairs of channels (or rows), vdpbf16ps: level avx512bf16 only
 *   DF_C3_BF16R  the fp32 layouts and kernels, every input and weight rounded to bf16 as it is
 *                packed: the bf16 numerics (exact products, fp32 sums) at level avx512, where
 *                there is no vdpbf16ps; sizes are the fp32 ones. */
enum { DF_C3_FP32 = 0, DF_C3_BF16 = 1, DF_C3_BF16R = 2 };

/* 1 when the direct kernels run at the CPU level in use (cpu.h: avx512 and avx512bf16), in every
 * format, and they have not been switched off with df_conv3x3_force_off. One answer for every
 * precision, so a memory plan made in one precision holds in the other. */
int df_conv3x3_available(void);

/* 1 when the per-image stride-1 kernel (df_conv3x3_pad_image, df_conv3x3_image: the forward and
 * dX) runs at the level in use: the AVX-512 levels, avx2 and neon (conv3x3_vec.c), unless switched
 * off with df_conv3x3_force_off. The other kernels below need df_conv3x3_available(). */
int df_conv3x3_plane_available(void);

/* 1 when dW of such a conv with oc outputs runs directly (df_conv3x3_pad_grad, df_conv3x3_pad_dw_input,
 * df_conv3x3_dw): at the AVX-512 levels, and at avx2 and neon from 16 outputs (their dW reads dout
 * in blocks of 8 channels, from 16). */
int df_conv3x3_dw_available(int oc);

/* Test and bench hook: force != 0 makes df_conv3x3_available return 0 (every conv then takes
 * im2col + GEMM). Process-wide; not for use while convs run. */
void df_conv3x3_force_off(int force);

/* Words (4 bytes) of one padded plane of an H x W image: the padded rows, plus the slack that the
 * last 48-wide tile's shifted reads run into (zeroed). */
size_t df_conv3x3_plane_words(int h, int w);

/* Words of a padded image of c channels (bf16: channel pairs). */
size_t df_conv3x3_image_words(int c, int h, int w, int bf16);

/* Words of packed weights for oc outputs from ic inputs. */
size_t df_conv3x3_weight_words(int oc, int ic, int bf16);

/* dst (df_conv3x3_weight_words(oc, ic, bf16) words, 64-byte aligned) = the weights packed for the
 * kernel. w is in PyTorch order (OC, IC, 3, 3) with oc outputs and ic inputs, or, with flip != 0,
 * w is (IC, OC, 3, 3) of the forward conv whose dX this computes: output o, input c, tap t reads
 * w[c][o][8 - t]. Threads: OpenMP over strips of 8 outputs (one thread inside a parallel region). */
void df_conv3x3_pack_weights(void *dst, const float *w, int oc, int ic, int flip, int bf16);

/* dst (df_conv3x3_image_words(c, h, w, bf16) words, 64-byte aligned) = x (c, h, w) zero-padded,
 * in fp32, or rounded to bf16 with channels 2i and 2i+1 interleaved in one word. */
void df_conv3x3_pad_image(void *dst, const float *x, int c, int h, int w, int bf16);

/* y (oc, h, w) = the conv of the padded image (ic channels) with the packed weights, + b[o], then
 * + cb[o], then + res (oc, h, w), each a float addition in that order (b, cb, res may be NULL),
 * when accumulate == 0; y += the conv when accumulate != 0 (cb and res must be NULL). One thread. */
void df_conv3x3_image(float *y, const void *padded, const void *wpack, const float *b, const float *cb,
                      const float *res, int oc, int ic, int h, int w, int accumulate, int bf16);

/* Stride 2 (diffusers' Downsample2D: pad (0, 1, 0, 1), or any pad_t, pad_l), on the same kernel:
 * each channel's padded input split into four phase planes, the even/odd rows x even/odd columns,
 * (oh + 1) x (ow + 1) words each, so that tap (ky, kx) of every output reads phase (ky & 1, kx & 1)
 * at a constant shift of (ky >> 1, kx >> 1): the outputs computed in rows of ow + 1 (one junk
 * column). Words of one channel's (bf16: channel pair's) planes: */
size_t df_conv3x3_s2_plane_words(int oh, int ow);
/* dst (c channels, as df_conv3x3_pad_image: fp32 or bf16 pairs) = x (c, h, w) as phase planes for
 * outputs (oh, ow) with padding pad_t above and pad_l left (zeros wherever the input is not). */
void df_conv3x3_s2_pad_image(void *dst, const float *x, int c, int h, int w, int oh, int ow, int pad_t, int pad_l,
                             int bf16);
/* y (oc, oh, ow) = the stride-2 conv of the phase planes with the packed weights + b (may be NULL). */
void df_conv3x3_s2_image(float *y, const void *padded, const void *wpack, const float *b, int oc, int ic, int oh,
                         int ow, int bf16);

/* The lanes layout, for small planes (the U-Net's 8x8, 7x7 and 4x4 levels, where a 48-position
 * tile of one image is mostly padding): a vector holds ONE position of 16 images, so a tile of 3
 * positions x 16 images wastes nothing. A group of 16 images is packed as [step][(h+2) x (w+2)
 * padded positions][16 lanes] words (a step is a channel, or a bf16 channel pair); the register
 * tile is 8 outputs x 3 positions x 16 images, and each output is the same chain of multiply-adds
 * (steps outer, taps inner) as in df_conv3x3_image: the same bits, whichever of the two runs. */
size_t df_conv3x3_lanes_plane_words(int h, int w);
/* Words of a packed group of 16 images of c channels. */
size_t df_conv3x3_lanes_words(int c, int h, int w, int bf16);
/* One step (plane) of a packed group: dst ((h+2) x (w+2) x 16 words) = lane l holds x[l] (an
 * (h, w) channel plane of image l; NULL: zeros), zero-padded; bf16: rounded as df_conv3x3_pad_image
 * rounds, with the channel plane after x[l] (x[l] + h w) in the high half when pair != 0. One
 * thread; a step's 16 lanes are packed together, so that no two threads share a cache line. */
void df_conv3x3_lanes_pack_plane(void *dst, const float *const x[16], int pair, int h, int w, int bf16);
/* Outputs strip*8 .. strip*8+7 (clipped to oc) of the group's first nimg images: y + l * y_img is
 * image l's output (oc, h, w): = the conv + b[o], then + cb[l * oc + o], then + res (at the output's
 * place, res + l * y_img), as df_conv3x3_image; += the conv when accumulate != 0. wpack as
 * df_conv3x3_pack_weights. One thread. */
void df_conv3x3_lanes_strip(float *y, size_t y_img, int nimg, const void *packed, const void *wpack, int strip,
                            const float *b, const float *cb, const float *res, int oc, int ic, int h, int w,
                            int accumulate, int bf16);

/* dW on the lanes layout. fp32: one channel per plane, a word per position and lane. bf16: each
 * word a pair of bf16 values of two rows hh = df_conv3x3_lanes_dw_rows(h, 1) = ceil(h / 2) apart
 * (low half row y, high half row y + hh; zero past the image), in dout and input alike, so that one
 * dot product (vdpbf16ps) adds the products of both: dout's row pairs (y, y + hh) meet the input's
 * (y + ky, y + ky + hh) at every tap, and a pair's two products are exact in fp32 as a bf16 GEMM's.
 * dst = one plane of a group, lane l = x[l] (an (h, w) channel plane; NULL: zeros), padded
 * ((hh + 2) x (w + 2) packed positions, the conv's input) or not (hh x w, dout); hh = h in fp32.
 * A group is c such planes. */
size_t df_conv3x3_lanes_dw_rows(int h, int bf16);
void df_conv3x3_lanes_pack_dw_plane(float *dst, const float *const x[16], int h, int w, int bf16, int padded);
/* dw[o][c][0..8] += for input channel c and every output o: the sum over `groups` packed groups
 * (gpk: dout, unpadded, oc planes a group; xpk: input, padded, ic planes a group), positions and
 * lanes, reduced across lanes once at the end (a fixed order). One thread. */
void df_conv3x3_lanes_dw(float *dw, const float *gpk, const float *xpk, int groups, int c, int oc, int ic,
                         int h, int w, int bf16);

/* Words (4 bytes) of one plane of dout in the padded width for dW: h * (w + 2) positions rounded
 * up to 16 (fp32) or 32 (bf16, 2 bytes each). */
size_t df_conv3x3_grad_plane_words(int h, int w, int bf16);

/* Words of one input plane for dW: fp32 as df_conv3x3_pad_image writes it; bf16: the same padded
 * plane as consecutive bf16 values, long enough for the shifted reads of the last pair vector. */
size_t df_conv3x3_dw_plane_words(int h, int w, int bf16);

/* Words of one image of dout as df_conv3x3_pad_grad writes it. */
size_t df_conv3x3_grad_image_words(int c, int h, int w, int bf16);

/* dst = g (c, h, w) laid out for dW. bf16: c planes of df_conv3x3_grad_plane_words words, g at the
 * positions oy * (w + 2) + ox, with zeros in the columns ox >= w and the rounding tail, rounded to
 * bf16 (consecutive 2-byte values); so in fp32 below 16 channels. fp32 from 16 channels: channels
 * last, (h * w positions, c rounded up to 16 with zeros), so the kernel takes 16 outputs per vector
 * and no load is shifted (the plane layout's shifted loads split cache lines: 20% slower). */
void df_conv3x3_pad_grad(void *dst, const float *g, int c, int h, int w, int bf16);

/* dst (c planes of df_conv3x3_dw_plane_words words) = x (c, h, w) zero-padded for dW. */
void df_conv3x3_pad_dw_input(void *dst, const float *x, int c, int h, int w, int bf16);

/* dw (oc, ic, 3, 3) += (set: =) the sum over the n images of the conv's weight gradient: gpad holds
 * each image's dout as df_conv3x3_pad_grad wrote it (oc planes per image, images one after another)
 * and xpad each image's input as df_conv3x3_pad_dw_input wrote it (ic planes per image). One
 * thread. */
void df_conv3x3_dw(float *dw, const void *gpad, const void *xpad, int n, int oc, int ic, int h, int w, int bf16,
                   int set);

/* Between conv3x3.c and conv3x3_vec.c: the per-image kernel of the levels below AVX-512 with a
 * vector FMA (avx2, neon), in the fp32 layouts (formats DF_C3_FP32 and DF_C3_BF16R: round != 0
 * rounds the padded image to bf16). NULL at the other levels. */
typedef struct {
    void (*pad)(float *dst, const float *x, int c, int h, int w, int round);
    void (*image)(float *y, const float *padded, const float *wpack, const float *b, const float *cb,
                  const float *res, int oc, int ic, int h, int w, int accumulate);
    void (*pad_grad)(float *dst, const float *g, int c, int h, int w, int round); /* blocks of 8 channels */
    void (*dw)(float *dw, const float *gcl, const float *xpad, int n, int oc, int ic, int h, int w, int set);
} conv3x3_vec;
const conv3x3_vec *df_conv3x3_vec_kernels(void);
/* x (c, h, w) into c padded fp32 planes (df_conv3x3_pad_image's fp32 layout), every level's. */
void df_conv3x3_pad_f32(float *dst, const float *x, int c, int h, int w);

#endif
