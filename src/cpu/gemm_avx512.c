/* gemm_avx512.c: the AVX512_BF16 path of df_gemm_bf16 (gemm.h): its packing and vdpbf16ps kernel,
 * run by the shared blocked driver (gemm_blocked.h, which describes the loop nest and layouts).
 *
 * What it is: the bf16 format. Packing rounds to bf16 (VCVTNE2PS2BF16) and stores pairs of
 * consecutive k in one 32-bit word, the layout vdpbf16ps takes: lane i of a packed B step holds
 * (B[k][n+i], B[k+1][n+i]); a packed A word (A[m][k], A[m][k+1]) is broadcast. Odd K gets a zero
 * partner. The kernel does 24 vdpbf16ps of 64 flops per step. Each operand is packed in the order
 * its memory gives without a transpose where possible: A not transposed in rows (8 streams), A
 * transposed in steps; B not transposed by interleaving two rows; only transposed B needs an
 * in-register 16 x 16 transpose.
 * Every function that uses AVX-512 carries a target attribute, so the file compiles for any
 * x86-64 and gemm.c runs it only after checking the CPU. Other architectures get no format.
 * What it is not: no dispatch, no argument checks, no fallback (all in gemm.c).
 */
#include "gemm_blocked.h"

#if defined(__x86_64__) && defined(__GNUC__)

#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* 16 fp32 pairs of consecutive k (x[0..left-1] of 32) -> 16 words of (bf16 x[2i], bf16 x[2i+1]). */
TARGET_BF16 GEMM_INLINE __m512i cvt_pairs(const float *x, int left) {
    const __m512 a = _mm512_maskz_loadu_ps(gemm_lanes_mask(left), x);
    const __m512 b = _mm512_maskz_loadu_ps(gemm_lanes_mask(left - 16), x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

/* Two rows x, y of 16 fp32 -> 16 lanes of (bf16 x[i], bf16 y[i]): cvtne2ps gives x then y as
 * halves, the word permutation interleaves them. */
TARGET_BF16 GEMM_INLINE __m512i cvt_interleave(__m512 x, __m512 y, __m512i interleave) {
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(y, x));
}

/* Word indices {0,16,1,17,...,15,31}: interleave the two halves of a 32-word vector. */
TARGET_BF16 GEMM_INLINE __m512i interleave_index(void) {
    int16_t idx[32];
    for (int i = 0; i < 16; i++) {
        idx[2 * i] = (int16_t)i;
        idx[2 * i + 1] = (int16_t)(16 + i);
    }
    return _mm512_loadu_si512(idx);
}

/* acc + sum over the pair of (A pair) x (B pairs), 32 products. */
TARGET_BF16 GEMM_INLINE __m512 madd_bf16(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* ---------------------------------------------------------------- packing op(A) */
TARGET_BF16 static void pack_a_rows(uint32_t *dst, const float *A, int lda, int mr, int kc) {
    gemm_pack_a_rows_tmpl(dst, A, lda, mr, kc, 2, cvt_pairs);
}

/* [lo, hi] as one 16-lane vector. */
TARGET_BF16 GEMM_INLINE __m512 join8(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}

/* steps layout, A transposed: op(A)[m][k] = A[k][m], so rows k and k+1 of A give the 8 lanes of
 * a pair directly. */
TARGET_BF16 static void pack_a_steps(uint32_t *dst, const float *A, int lda, int mr, int kc) {
    const __mmask8 mask = (__mmask8)((1u << mr) - 1);
    const __m512i interleave = interleave_index();
    const int kp = (kc + 1) / 2;
    int p = 0;
    /* Two pairs per zmm: rows (k, k+2) in the low/high halves of x, (k+1, k+3) of y. */
    for (; 2 * p + 3 < kc; p += 2) {
        const float *a = A + (size_t)(2 * p) * lda;
        const __m512 x = join8(_mm256_maskz_loadu_ps(mask, a), _mm256_maskz_loadu_ps(mask, a + 2 * (size_t)lda));
        const __m512 y = join8(_mm256_maskz_loadu_ps(mask, a + lda), _mm256_maskz_loadu_ps(mask, a + 3 * (size_t)lda));
        /* interleaving lanes (x[i], y[i]) for i < 16 gives pair p rows 0..7, then pair p+1 */
        _mm512_store_si512(dst + (size_t)p * GEMM_MR, cvt_interleave(x, y, interleave));
    }
    for (; p < kp; p++) {
        const float *a = A + (size_t)(2 * p) * lda;
        const __m512 x = _mm512_zextps256_ps512(_mm256_maskz_loadu_ps(mask, a));
        const __m512 y = 2 * p + 1 < kc ? _mm512_zextps256_ps512(_mm256_maskz_loadu_ps(mask, a + lda))
                                        : _mm512_setzero_ps();
        const __m512i v = cvt_interleave(x, y, interleave);
        _mm256_store_si256((__m256i *)(dst + (size_t)p * GEMM_MR), _mm512_castsi512_si256(v));
    }
}

/* ---------------------------------------------------------------- packing op(B) */
/* B not transposed: rows k, k+1 are contiguous in n, one interleave each. */
TARGET_BF16 static void pack_b_rows(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) {
    const __m512i interleave = interleave_index();
    const __mmask16 m0 = gemm_lanes_mask(nr), m1 = gemm_lanes_mask(nr - 16), m2 = gemm_lanes_mask(nr - 32);
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < kp; p++) {
        const float *b0 = B + (size_t)(2 * p) * ldb, *b1 = b0 + ldb;
        uint32_t *d = dst + (size_t)p * GEMM_NR;
        /* The next strip of these rows: its lines arrive while the kernel works on this one.
         * Without it, each of the kc row segments of a strip starts with a miss. */
        if (prefetch)
            for (int l = 0; l < GEMM_NR; l += 16) {
                _mm_prefetch((const char *)(b0 + GEMM_NR + l), _MM_HINT_T1);
                _mm_prefetch((const char *)(b1 + GEMM_NR + l), _MM_HINT_T1);
            }
        if (2 * p + 1 < kc) {
            _mm512_store_si512(d, cvt_interleave(_mm512_maskz_loadu_ps(m0, b0), _mm512_maskz_loadu_ps(m0, b1),
                                                 interleave));
            _mm512_store_si512(d + 16, cvt_interleave(_mm512_maskz_loadu_ps(m1, b0 + 16),
                                                      _mm512_maskz_loadu_ps(m1, b1 + 16), interleave));
            _mm512_store_si512(d + 32, cvt_interleave(_mm512_maskz_loadu_ps(m2, b0 + 32),
                                                      _mm512_maskz_loadu_ps(m2, b1 + 32), interleave));
        } else {
            const __m512 z = _mm512_setzero_ps();
            _mm512_store_si512(d, cvt_interleave(_mm512_maskz_loadu_ps(m0, b0), z, interleave));
            _mm512_store_si512(d + 16, cvt_interleave(_mm512_maskz_loadu_ps(m1, b0 + 16), z, interleave));
            _mm512_store_si512(d + 32, cvt_interleave(_mm512_maskz_loadu_ps(m2, b0 + 32), z, interleave));
        }
    }
}

TARGET_BF16 static void pack_b_cols(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) {
    gemm_pack_b_cols_tmpl(dst, B, ldb, nr, kc, prefetch, 2, cvt_pairs);
}

/* ---------------------------------------------------------------- kernels and format */
GEMM_KERNELS_DEFINE(kernel_bf16, TARGET_BF16, madd_bf16)

static const gemm_format FORMAT_BF16 = {
    .kw = 2,
    .b_in_place = 0, /* B is rounded to bf16 pairs: always packed */
    /* ~20 us of vdpbf16ps work on one core (~400 GFLOP/s on Zen 5) */
    .thread_min_macs = 4.0e6,
    .pack_a_rows = pack_a_rows,
    .pack_a_steps = pack_a_steps,
    .pack_b_rows = pack_b_rows,
    .pack_b_cols = pack_b_cols,
    .kernel = GEMM_KERNELS_TABLE(kernel_bf16),
};

const gemm_format *df_gemm_format_bf16(void) { return &FORMAT_BF16; }

#else /* not x86-64 with GCC/Clang */
const gemm_format *df_gemm_format_bf16(void) { return NULL; }
#endif
