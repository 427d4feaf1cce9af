/* conv3x3_vec.c: the direct 3x3 stride-1 convolution's per-image kernel (df_conv3x3_pad_image,
 * df_conv3x3_image; conv3x3.h) at the levels below AVX-512 that have a vector FMA:
 *   avx2   8 floats, 4 rows x 3 vectors (12 accumulators of 16 ymm), vfmadd231ps
 *   neon   4 floats, 8 rows x 3 vectors (24 accumulators of 32 q registers), fmla
 * from one portable template (conv3x3_vec_tmpl.h) on GCC's vector extensions. Since Winograd
 * (winograd.h) took the 3x3 convs with 8 channels or more in and out at these levels (1.7-2.2x
 * faster), it serves the U-Net's image convs (1 or 3 channels on one side) and runs wherever
 * Winograd is switched off (df_wino_force_off): forward 3x3 convs, their dX (the same conv with
 * the flipped weights) and, from 16 output channels, their dW (dout in blocks of 8 channels, the
 * AVX-512 fp32 dW's order), in fp32 and DF_C3_BF16R
 * (inputs and weights rounded to bf16, fp32 multiply-adds). The lanes and stride-2 kernels stay
 * AVX-512 only; at these levels those convs take im2col + GEMM (ops_conv.c).
 * dW tiles: avx2 1 vector of outputs x 9 taps (9 accumulators), neon 2 x 9.
 * Why a direct kernel here too: im2col + GEMM at avx2 spent 85% of a training step in the 3x3
 * convs, at 31% of the FMA peak (Xeon family 6 model 207 at level avx2, fmnist-small batch 64).
 * The avx2 functions carry target("avx2,fma"), so the file compiles for any x86-64; conv3x3.c
 * calls them only at level avx2 (cpu.h). */
#include "conv3x3.h"
#include "bf16r.h"
#include "cpu.h"
#include <stdint.h>
#include <string.h>

/* Where a tile's outputs go: the tile is np consecutive positions of the padded width from q0;
 * segment k is the lanes lo..hi-1 of one image row (the junk columns ox >= w left out), and lane i
 * belongs at y index delta + i = q0 + i - 2 oy. */
typedef struct {
    int n;
    int lo[48], hi[48];
    ptrdiff_t delta[48];
} tile_segs;

static void tile_segs_init(tile_segs *sg, int q0, int np, int h, int w) {
    const int wp = w + 2;
    sg->n = 0;
    for (int oy = q0 / wp; oy < h && oy * wp < q0 + np; oy++) {
        const int lo = oy * wp > q0 ? oy * wp : q0, hi = oy * wp + w < q0 + np ? oy * wp + w : q0 + np;
        if (lo >= hi) continue;
        sg->lo[sg->n] = lo - q0;
        sg->hi[sg->n] = hi - q0;
        sg->delta[sg->n++] = q0 - (ptrdiff_t)2 * oy;
    }
}

/* ---------------------------------------------------------------- avx2 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VT_NAME(x) avx2_##x
#define VT_TARGET __attribute__((target("avx2,fma")))
#define VT_VW 8
#define VT_RT 4
#define VT_CT 3
#define VT_MADD(acc, a, b) ((VF)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(acc)))
#define VT_BCAST(x) ((VF)_mm256_set1_ps(x))
#define VT_DWR 1
#include "conv3x3_vec_tmpl.h" /* which #undefs the VT_ macros */
#define AVX2_KERNELS (&avx2_kernels)
#else
#define AVX2_KERNELS NULL
#endif

/* ---------------------------------------------------------------- neon */
#if defined(__aarch64__)
#include <arm_neon.h>
#define VT_NAME(x) neon_##x
#define VT_TARGET
#define VT_VW 4
#define VT_RT 8
#define VT_CT 3
#define VT_MADD(acc, a, b) ((VF)vfmaq_f32((float32x4_t)(acc), (float32x4_t)(a), (float32x4_t)(b)))
#define VT_BCAST(x) ((VF)vdupq_n_f32(x))
#define VT_DWR 2
#include "conv3x3_vec_tmpl.h" /* which #undefs the VT_ macros */
#define NEON_KERNELS (&neon_kernels)
#else
#define NEON_KERNELS NULL
#endif

const conv3x3_vec *df_conv3x3_vec_kernels(void) {
    switch (df_cpu_isa()) {
    case DF_ISA_AVX2: return AVX2_KERNELS;
    case DF_ISA_NEON: return NEON_KERNELS;
    default: return NULL;
    }
}
