/* gemm_vec.c: the GEMM formats of the levels below AVX-512 (cpu.h): generic, avx2 and neon, each
 * an fp32 format and a bf16-rounding one, run by the shared blocked driver (gemm_blocked.h).
 *
 * What it is: one portable template (gemm_vec_tmpl.h, GCC vector extensions) instantiated per
 * level with its vector width, sub-tile and multiply-add:
 *   generic  4 floats, 4 x 2 vectors (16 registers of SSE2; any other CPU GCC lowers as it can),
 *            a * b + c (two roundings where the CPU has no FMA)
 *   avx2     8 floats, 4 x 3 vectors (12 accumulators of 16 ymm: the shape of OpenBLAS's Haswell
 *            sgemm kernel), vfmadd231ps
 *   neon     4 floats, 8 x 3 vectors (24 accumulators of 32 q registers), fmla
 * The avx2 functions carry target("avx2,fma"), so this file compiles for any x86-64 and gemm.c
 * runs them only at level avx2 (cpu.h).
 * Why not OpenBLAS at these levels: its sgemm is chosen by its own CPU detection, which the level
 * cannot cap, and Debian's 0.3.21 mis-detects new CPUs (its generic kernel ran at 30 GFLOP/s on a
 * Xeon of 2023 whose FMA peak is 167 per core); it also threads by itself.
 * What it is not: no dispatch (gemm.c), no argument checks.
 */
#include "gemm_blocked.h"
#include "bf16r.h"
#include <math.h>
#include <string.h>

/* The tile packers' words: fp32 bits, or rounded to bf16 (bf16r.h). */
static inline uint32_t gemm_word(float f) { return df_f32_bits(f); }
static inline uint32_t gemm_bf16r_bits(float f) { return df_bf16r_bits(df_f32_bits(f)); }

/* ---------------------------------------------------------------- generic */
#define VT_NAME(x) generic_##x
#define VT_TARGET
#define VT_VW 4
#define VT_RT 4
#define VT_CT 2
#define VT_MADD(acc, a, b) ((acc) + (a) * (b))
#include "gemm_vec_tmpl.h" /* which #undefs the VT_ macros */

const gemm_format *df_gemm_format_generic(int bf16) { return bf16 ? &generic_format_bf16r : &generic_format_f32; }

/* ---------------------------------------------------------------- avx2 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VT_NAME(x) avx2_##x
#define VT_TARGET __attribute__((target("avx2,fma")))
#define VT_VW 8
#define VT_RT 4
#define VT_CT 3
#define VT_MADD(acc, a, b) ((VF)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(acc)))
#include "gemm_vec_tmpl.h" /* which #undefs the VT_ macros */
const gemm_format *df_gemm_format_avx2(int bf16) { return bf16 ? &avx2_format_bf16r : &avx2_format_f32; }
#else
const gemm_format *df_gemm_format_avx2(int bf16) { (void)bf16; return NULL; }
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
#include "gemm_vec_tmpl.h" /* which #undefs the VT_ macros */
const gemm_format *df_gemm_format_neon(int bf16) { return bf16 ? &neon_format_bf16r : &neon_format_f32; }
#else
const gemm_format *df_gemm_format_neon(int bf16) { (void)bf16; return NULL; }
#endif
