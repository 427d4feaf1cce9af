/* cpu.h: internal: the one run-time dispatch decision (cpu.c), read by every "does this fast path
 * apply" predicate, in the planner and in the kernels alike, so the two can never disagree.
 *
 * What runs at each level (docs/performance.md has the figures):
 *   generic     portable C: the GEMM on 4-wide vectors of GCC's vector extensions (gemm_vec.c), the
 *               3x3 stride-1 convs from 8 channels by Winograd F(2x2, 3x3) (winograd.c), the other
 *               convs as im2col + GEMM
 *   avx2        the same GEMM and Winograd on 8-wide AVX2 + FMA vectors; the direct 3x3 stride-1
 *               convolution (conv3x3_vec.c) where a side has fewer than 8 channels; the other
 *               convs as im2col + GEMM
 *   neon        the same on 4-wide NEON vectors with NEON's 32 registers (larger tiles)
 *   avx512      the AVX-512 GEMM (gemm_f32_avx512.c) and the direct 3x3 convolution (conv3x3.c);
 *               --precision bf16 rounds the inputs to bf16 when it packs them and multiplies in fp32
 *   avx512bf16  bf16 on vdpbf16ps (gemm_avx512.c, conv3x3.c), the rest as avx512
 * The public half (df_isa, DIFFUSE_ISA) is in diffuse.h. */
#ifndef DF_CPU_H
#define DF_CPU_H

#include "diffuse.h"

/* The AVX-512 kernels (fp32 GEMM, direct 3x3 convolution, 16-lane dropout) run. */
static inline int df_cpu_avx512(void) {
    const df_isa i = df_cpu_isa();
    return i == DF_ISA_AVX512 || i == DF_ISA_AVX512BF16;
}

/* bf16 products run as dot products of bf16 pairs (vdpbf16ps); otherwise --precision bf16 rounds the
 * inputs to bf16 and multiplies them in fp32 (exact products, fp32 sums: the same numerics, summed
 * in another order). */
static inline int df_cpu_bf16_dot(void) { return df_cpu_isa() == DF_ISA_AVX512BF16; }

#endif
