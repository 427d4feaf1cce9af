/* gemm_f32_avx512.c: the AVX-512F path of df_gemm_f32 (gemm.h): its packing and vfmadd231ps
 * kernel, run by the shared blocked driver (gemm_blocked.h, which describes the loop nest and
 * layouts).
 *
 * What it is: the fp32 format: one packed word is one fp32 value of k, copied unchanged. The
 * kernel is the 8 x 48 tile of the bf16 path with vfmadd231ps (24 per step, 32 flops each): on
 * Zen 5 every tile we measured (8x48, 6x64, 12x32, 14x32, in rows and steps A layouts, kc 128 to
 * 256) ran the kernel at the same ~230 GFLOP/s, two 512-bit FMAs per cycle, so the fp32 path
 * keeps the bf16 tile and shares its driver, B strip size and thread split. A not transposed is
 * packed in rows (8 streams, straight copies), A transposed in steps (8 contiguous floats per k),
 * B not transposed by copying rows (or not at all: full strips are read in place when the M block
 * is small, see gemm_blocked.c), B transposed by 16 x 16 in-register transposes.
 * Every function that uses AVX-512 carries target("avx512f") and nothing more, so the file
 * compiles for any x86-64 and runs on any AVX-512F CPU; gemm.c runs it only after checking.
 * Other architectures get no format.
 * What it is not: no dispatch, no argument checks, no fallback (all in gemm.c); products are
 * rounded once per FMA, with no extra precision (summation order differs from OpenBLAS sgemm).
 */
#include "gemm_blocked.h"

#if defined(__x86_64__) && defined(__GNUC__)

#define TARGET_F32 GEMM_TARGET_AVX512F

/* 16 values x[0..left-1] (the rest zero) as 16 words. */
TARGET_F32 GEMM_INLINE __m512i load16_f32(const float *x, int left) {
    return _mm512_castps_si512(_mm512_maskz_loadu_ps(gemm_lanes_mask(left), x));
}

/* 16 values x[0..left-1] (the rest zero) rounded to bf16 and kept as fp32 words, bit for bit as
 * df_bf16_round: the bf16 format of AVX-512 CPUs without AVX512_BF16 (cpu.h). Nearest even on the
 * integer bits; a zero exponent (zero, denormal) keeps the sign only; NaN is made quiet. */
TARGET_F32 GEMM_INLINE __m512i load16_bf16r(const float *x, int left) {
    const __m512i u = _mm512_castps_si512(_mm512_maskz_loadu_ps(gemm_lanes_mask(left), x));
    const __m512i one = _mm512_set1_epi32(1), hi = _mm512_set1_epi32((int)0xFFFF0000u);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    __m512i r = _mm512_and_si512(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), hi);
    const __m512i mag = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
    const __mmask16 zexp = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7F800000));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7F800000));
    r = _mm512_mask_mov_epi32(r, zexp, _mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)));
    r = _mm512_mask_mov_epi32(r, nan, _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi));
    return r;
}

/* acc + a (one A value, broadcast) * b (16 B values), one rounding. */
TARGET_F32 GEMM_INLINE __m512 madd_f32(__m512 acc, __m512i a, __m512i b) {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
}

/* ---------------------------------------------------------------- packing */
/* The four packers of a format whose words are fp32 values, as load16 makes them: copied
 * (load16_f32) or rounded to bf16 (load16_bf16r). */
/* steps layout, A transposed: op(A)[m][k] = A[k][m], so row k of A gives the 8 words of step k. */
TARGET_F32 GEMM_INLINE void pack_a_steps_tmpl(uint32_t *dst, const float *A, int lda, int mr, int kc,
                                              gemm_load16_fn load16) {
    for (int k = 0; k < kc; k++)
        _mm256_store_si256((__m256i *)(dst + (size_t)k * GEMM_MR), _mm512_castsi512_si256(load16(A + (size_t)k * lda, mr)));
}

/* B not transposed: row k of B is step k, copied. */
TARGET_F32 GEMM_INLINE void pack_b_rows_tmpl(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch,
                                             gemm_load16_fn load16) {
    for (int k = 0; k < kc; k++) {
        const float *b = B + (size_t)k * ldb;
        uint32_t *d = dst + (size_t)k * GEMM_NR;
        /* The next strip of this row: its lines arrive while the kernel works on this one.
         * Without it, each of the kc row segments of a strip starts with a miss. */
        if (prefetch)
            for (int l = 0; l < GEMM_NR; l += 16) _mm_prefetch((const char *)(b + GEMM_NR + l), _MM_HINT_T1);
        _mm512_store_si512(d, load16(b, nr));
        _mm512_store_si512(d + 16, load16(b + 16, nr - 16));
        _mm512_store_si512(d + 32, load16(b + 32, nr - 32));
    }
}

#define PACKERS(sfx, load16)                                                                                      \
    TARGET_F32 static void pack_a_rows##sfx(uint32_t *dst, const float *A, int lda, int mr, int kc) {           \
        gemm_pack_a_rows_tmpl(dst, A, lda, mr, kc, 1, load16);                                                   \
    }                                                                                                            \
    TARGET_F32 static void pack_a_steps##sfx(uint32_t *dst, const float *A, int lda, int mr, int kc) {          \
        pack_a_steps_tmpl(dst, A, lda, mr, kc, load16);                                                          \
    }                                                                                                            \
    TARGET_F32 static void pack_b_rows##sfx(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) { \
        pack_b_rows_tmpl(dst, B, ldb, nr, kc, prefetch, load16);                                                 \
    }                                                                                                            \
    TARGET_F32 static void pack_b_cols##sfx(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) { \
        gemm_pack_b_cols_tmpl(dst, B, ldb, nr, kc, prefetch, 1, load16);                                         \
    }
PACKERS(, load16_f32)
PACKERS(_r, load16_bf16r)
#undef PACKERS

/* ---------------------------------------------------------------- kernels and format */
GEMM_KERNELS_DEFINE(kernel_f32, TARGET_F32, madd_f32)

static const gemm_format FORMAT_F32 = {
    .kw = 1,
    .b_in_place = 1,
    /* ~20 us of FMA work on one core (~230 GFLOP/s on Zen 5) */
    .thread_min_macs = 2.0e6,
    .pack_a_rows = pack_a_rows,
    .pack_a_steps = pack_a_steps,
    .pack_b_rows = pack_b_rows,
    .pack_b_cols = pack_b_cols,
    .kernel = GEMM_KERNELS_TABLE(kernel_f32),
};

/* bf16 numerics on the fp32 kernel: inputs rounded while packed, so B is never read in place. */
static const gemm_format FORMAT_BF16R = {
    .kw = 1,
    .b_in_place = 0,
    .thread_min_macs = 2.0e6,
    .pack_a_rows = pack_a_rows_r,
    .pack_a_steps = pack_a_steps_r,
    .pack_b_rows = pack_b_rows_r,
    .pack_b_cols = pack_b_cols_r,
    .kernel = GEMM_KERNELS_TABLE(kernel_f32),
};

const gemm_format *df_gemm_format_f32(void) { return &FORMAT_F32; }
const gemm_format *df_gemm_format_bf16r(void) { return &FORMAT_BF16R; }

#else /* not x86-64 with GCC/Clang */
const gemm_format *df_gemm_format_f32(void) { return NULL; }
const gemm_format *df_gemm_format_bf16r(void) { return NULL; }
#endif
