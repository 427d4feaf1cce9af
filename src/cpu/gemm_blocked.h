/* gemm_blocked.h: internal to gemm*.c: the blocked, packed, threaded GEMM driver that the bf16
 * (gemm_avx512.c) and fp32 (gemm_f32_avx512.c) AVX-512 paths share, and the AVX-512 templates
 * they build their packers and kernels from.
 *
 * What it is: a format (gemm_format) says how op(A) and op(B) are packed into 32-bit words and
 * which 8 x 48 micro-kernels multiply them; df_gemm_blocked runs the loop nest, the packing of A
 * and the thread split for any format. A packed word holds `kw` consecutive values of k: a bf16
 * pair (kw = 2, the operand of vdpbf16ps) or one fp32 value (kw = 1, the operand of vfmadd).
 * Loops, outermost first: panels of C columns (only when K has several blocks, so that C stays in
 * L2 across them), K blocks of <= GEMM_KC_WORDS words, M blocks of up to GEMM_A_BLOCK_BYTES of
 * packed A. For each block the threads together pack op(A) into strips of GEMM_MR rows (shared,
 * double-buffered so that one barrier per block suffices); then each thread takes its part of a
 * grid of (M strips x GEMM_NR-column strips of op(B)), packs one B strip at a time into a private
 * stack buffer (it stays in L1) and runs the micro-kernel over its M strips (they come from L2).
 * Packed layouts (words; steps = ceil(kc / kw) words of k, spad = steps rounded up to 16):
 *   A strip, rows layout  [GEMM_MR][spad]: row r holds its words in k order (A not transposed: a
 *                         row of A is contiguous in k); the kernel broadcasts from 8 streams.
 *   A strip, steps layout [steps][GEMM_MR]: the 8 rows' words of one step are adjacent (A
 *                         transposed: a row of A is contiguous in m); one stream.
 *   B strip               [steps][GEMM_NR]: one step of 48 columns per 48 words.
 * Rows >= mr and columns >= nr of a strip are zero, so the kernel computes on defined values.
 * In place: when a format's words are the fp32 values themselves (fp32), B not transposed already
 * has the B strip layout with ldb words between steps; a full strip is then read in place when
 * the M block has few strips (packing would be a large share of the work that the strip serves).
 * What it is not: no dispatch, no argument checks, no fallback (gemm.c), no format of its own.
 * The templates below are `static inline` functions with callbacks rather than macros: each
 * format instantiates them with constant arguments and GCC inlines the callbacks.
 */
#ifndef DF_GEMM_BLOCKED_H
#define DF_GEMM_BLOCKED_H

#include <stddef.h>
#include <stdint.h>

#define GEMM_MR 8  /* rows of the register tile */
#define GEMM_NR 48 /* columns of the register tile: 3 vectors of 16 */
/* Words of k per block: the B strip (192 x 48 words = 36 KiB) stays in L1 (48 KiB on Zen 5)
 * while the kernel runs over the A strips of a block. 384 values of k for bf16, 192 for fp32. */
#define GEMM_KC_WORDS 192
/* The packed A block stays in L2 (1 MiB on Zen 5) while every B strip streams past it; with small
 * K it may hold more rows, so that B is packed fewer times (once per block of M). */
#define GEMM_A_BLOCK_BYTES (384 * 1024)
#define GEMM_C_PANEL_BYTES (512 * 1024)
/* Packed strips hold words rounded up to 16: the packers write 16 words at a time. */
#define GEMM_WORDS_PAD(w) (((size_t)(w) + 15) & ~(size_t)15)

/* dst = GEMM_MR rows of op(A) (the caller offsets A to the strip's first element), k = 0..kc-1,
 * rows >= mr zero: pack_a_rows reads A not transposed (rows layout), pack_a_steps A transposed
 * (steps layout). */
typedef void (*gemm_pack_a_fn)(uint32_t *dst, const float *A, int lda, int mr, int kc);
/* dst = GEMM_NR columns of op(B) (offset by the caller), k = 0..kc-1, columns >= nr zero;
 * prefetch != 0: the block of B does not stay in L2, so the packer prefetches ahead. */
typedef void (*gemm_pack_b_fn)(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch);
/* c (mr x nr, row stride ldc) = alpha * a b + beta * c over `steps` words of k; a packed A strip
 * (spad words per row in the rows layout), b a B strip with bstep words between steps (GEMM_NR
 * when packed, ldb in place); beta == 0 does not read c. */
typedef void (*gemm_kernel_fn)(int steps, int spad, const uint32_t *a, const uint32_t *b, int bstep, float *c, int ldc,
                               int mr, int nr, float alpha, float beta);

typedef struct {
    int kw;                 /* values of k per packed word: 2 (bf16 pairs) or 1 (fp32) */
    int b_in_place;         /* 1: full strips of B not transposed may be read in place (fp32) */
    double thread_min_macs; /* below this many multiply-adds one thread runs (see gemm_blocked.c) */
    gemm_pack_a_fn pack_a_rows, pack_a_steps;
    gemm_pack_b_fn pack_b_rows, pack_b_cols; /* B not transposed / transposed */
    /* kernel[rows][nv - 1]: A in the rows (1) or steps (0) layout, nv = 1..3 vectors of 16
     * columns computed (the last strip of N may be 16 or 32 wide). */
    gemm_kernel_fn kernel[2][3];
} gemm_format;

/* C (M,N) = alpha op(A) op(B) + beta C with cblas_sgemm(CblasRowMajor) argument meanings, run in
 * format f. Needs M, N, K > 0, alpha != 0 and workspace of df_gemm_blocked_workspace(f->kw, M, K)
 * bytes (any alignment): two A blocks, at most 2 * GEMM_A_BLOCK_BYTES + 64 whatever the sizes.
 * Each thread also keeps a B strip of 36 KiB on its stack. Threads: OpenMP with omp_get_max_threads() from f->thread_min_macs
 * multiply-adds up, one thread inside an active parallel region. */
void df_gemm_blocked(const gemm_format *f, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc, void *workspace);
size_t df_gemm_blocked_workspace(int kw, int M, int K);

/* The formats: bf16 (gemm_avx512.c, needs AVX512_BF16/BW/VL) and fp32 (gemm_f32_avx512.c, needs
 * AVX-512F). NULL on builds for other architectures; gemm.c runs them only after checking the CPU. */
const gemm_format *df_gemm_format_bf16(void);
const gemm_format *df_gemm_format_f32(void);
/* fp32 kernel, inputs rounded to bf16 as they are packed (AVX-512F without AVX512_BF16). */
const gemm_format *df_gemm_format_bf16r(void);
/* The portable formats (gemm_vec.c): fp32 (bf16 == 0) or rounding to bf16 (bf16 != 0), for the
 * levels generic, avx2 (AVX2 + FMA) and neon; NULL where the architecture has no such level. */
const gemm_format *df_gemm_format_generic(int bf16);
const gemm_format *df_gemm_format_avx2(int bf16);
const gemm_format *df_gemm_format_neon(int bf16);

/* ------------------------------------------------------------------ AVX-512 templates */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* Every function that uses AVX-512 carries a target attribute, so the files compile for any
 * x86-64; gemm.c calls them only after checking the CPU. */
#define GEMM_TARGET_AVX512F __attribute__((target("avx512f")))
#define GEMM_INLINE static inline __attribute__((always_inline))

/* Loads the 16 words that start at x from the values x[0 .. left-1] of one row (values past
 * `left` read as zero): the format's packing of a chunk of k. */
typedef __m512i (*gemm_load16_fn)(const float *x, int left);
/* acc + (the products of) a broadcast A word and 16 B words: the format's multiply-add. */
typedef __m512 (*gemm_madd_fn)(__m512 acc, __m512i a, __m512i b);

/* The lanes 0..n-1 of a 16-lane vector, n clamped to [0, 16]. */
GEMM_INLINE __mmask16 gemm_lanes_mask(int n) {
    if (n <= 0) return 0;
    if (n >= 16) return 0xFFFF;
    return (__mmask16)((1u << n) - 1);
}

/* rows layout: dst[r][s] = load16 words of row r of A, rows >= mr zero. Whole chunks of 16 words
 * load without a bound (the constant `left` folds the masks), the tail once. */
GEMM_TARGET_AVX512F GEMM_INLINE void gemm_pack_a_rows_tmpl(uint32_t *dst, const float *A, int lda, int mr, int kc,
                                                           int kw, gemm_load16_fn load16) {
    const int steps = (kc + kw - 1) / kw;
    const size_t spad = GEMM_WORDS_PAD(steps);
    const int full = kc / (16 * kw) * 16; /* words in whole chunks */
    const int left = kc - kw * full;
    for (int i = 0; i < GEMM_MR; i++) {
        uint32_t *d = dst + (size_t)i * spad;
        if (i >= mr) {
            for (int s0 = 0; s0 < steps; s0 += 16) _mm512_store_si512(d + s0, _mm512_setzero_si512());
            continue;
        }
        const float *row = A + (size_t)i * lda;
        for (int s0 = 0; s0 < full; s0 += 16) _mm512_store_si512(d + s0, load16(row + kw * s0, 16 * kw));
        if (left > 0) _mm512_store_si512(d + full, load16(row + kw * full, left));
    }
}

/* In-register transpose of a 16 x 16 block of 32-bit lanes: r[i][l] -> r[l][i]. Interleaves of
 * 32- then 64-bit elements within 128-bit lanes give, for each group g of 4 rows and each j < 4,
 * u[4g+j] with lane L = rows 4g..4g+3 at column 4L+j; two rounds of 128-bit lane shuffles then
 * gather lane L of u[j], u[4+j], u[8+j], u[12+j] into output row 4L+j. */
GEMM_TARGET_AVX512F GEMM_INLINE void gemm_transpose16(__m512i *r) {
    __m512i t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i *tg = t + 4 * g;
        u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m512i x0 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x88), x1 = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xDD);
        const __m512i x2 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x88);
        const __m512i x3 = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_i32x4(x0, x2, 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(x0, x2, 0xDD);
        r[4 + j] = _mm512_shuffle_i32x4(x1, x3, 0x88);
        r[12 + j] = _mm512_shuffle_i32x4(x1, x3, 0xDD);
    }
}

/* B transposed: op(B)[k][n] = B[n][k], k contiguous per column n. Per group of 16 columns and 16
 * words: 16 loaded rows, then a 16 x 16 transpose. Prefetched lines go to L2 (T1): a strip's
 * worth is larger than L1. */
GEMM_TARGET_AVX512F GEMM_INLINE void gemm_pack_b_cols_tmpl(uint32_t *dst, const float *B, int ldb, int nr, int kc,
                                                           int prefetch, int kw, gemm_load16_fn load16) {
    const int steps = (kc + kw - 1) / kw;
    for (int g = 0; g < GEMM_NR / 16; g++) {
        const int rows = nr - 16 * g;
        if (rows <= 0) { /* a column group past nr: zeros, so the kernel reads defined values */
            for (int s = 0; s < steps; s++) _mm512_store_si512(dst + (size_t)s * GEMM_NR + 16 * g, _mm512_setzero_si512());
            continue;
        }
        for (int s0 = 0; s0 < steps; s0 += 16) {
            const int left = kc - kw * s0;
            __m512i r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                if (i >= rows) {
                    r[i] = _mm512_setzero_si512();
                    continue;
                }
                const float *row = B + (size_t)(16 * g + i) * ldb + kw * s0;
                /* The same chunk 16 rows on: the next group, or the next strip's first. Each row
                 * is a short stream (kc floats) that the hardware prefetcher would only pick up
                 * after its first misses. */
                if (prefetch)
                    for (int l = 0; l < 16 * kw; l += 16) _mm_prefetch((const char *)(row + 16 * (size_t)ldb + l), _MM_HINT_T1);
                r[i] = load16(row, left);
            }
            gemm_transpose16(r);
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) _mm512_store_si512(dst + (size_t)(s0 + q) * GEMM_NR + 16 * g, r[q]);
        }
    }
}

/* The micro-kernel (contract: gemm_kernel_fn) for nv vectors of 16 columns (a constant at each
 * instantiation, so the tails of N cost 1/3 or 2/3 of a full tile) and the A layout `rows`; madd
 * is the format's multiply-add. 24 zmm accumulators (8 rows x 3 vectors): per step 3 loads of B,
 * 8 broadcasts of A and 24 multiply-adds. Rows >= mr and columns >= nr are computed on the zero
 * padding but not stored. */
GEMM_TARGET_AVX512F GEMM_INLINE void gemm_kernel_tmpl(int nv, int rows, int steps, int spad, const uint32_t *a,
                                                      const uint32_t *b, int bstep, float *c, int ldc, int mr, int nr,
                                                      float alpha, float beta, gemm_madd_fn madd) {
    __m512 acc[GEMM_MR][3];
#pragma GCC unroll 8
    for (int r = 0; r < GEMM_MR; r++) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    const int arow = rows ? spad : 1, astep = rows ? 1 : GEMM_MR;
    /* Every lane sums its steps in order, one chain per accumulator, whatever the strip's width:
     * a column of C is then the same bits whichever strip (and so whatever N) it falls in, which
     * makes a batched conv's images equal to single-image ones. (Splitting a 16-wide strip's steps
     * into two chains hid more latency but summed those columns in another order.) */
    int s = 0;
    for (; s < steps; s++) {
        __m512i bv[3];
#pragma GCC unroll 3
        for (int j = 0; j < nv; j++) bv[j] = _mm512_loadu_si512(b + 16 * j);
#pragma GCC unroll 8
        for (int r = 0; r < GEMM_MR; r++) {
            const __m512i av = _mm512_set1_epi32((int)a[(size_t)r * arow]);
#pragma GCC unroll 3
            for (int j = 0; j < nv; j++) acc[r][j] = madd(acc[r][j], av, bv[j]);
        }
        a += astep;
        b += bstep;
    }
    const __mmask16 m[3] = {gemm_lanes_mask(nr), gemm_lanes_mask(nr - 16), gemm_lanes_mask(nr - 32)};
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < GEMM_MR; r++) {
        if (r >= mr) break;
        float *cr = c + (size_t)r * ldc;
#pragma GCC unroll 3
        for (int j = 0; j < nv; j++) {
            __m512 v = _mm512_mul_ps(acc[r][j], va);
            if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m[j], cr + 16 * j), v);
            _mm512_mask_storeu_ps(cr + 16 * j, m[j], v);
        }
    }
}

/* The six kernels of a format (3 widths x 2 A layouts) as gemm_kernel_fn, and their table. */
#define GEMM_KERNEL_DEFINE(name, target, madd, nv, rows)                                                       \
    target static void name(int steps, int spad, const uint32_t *a, const uint32_t *b, int bstep, float *c,     \
                            int ldc, int mr, int nr, float alpha, float beta) {                                \
        gemm_kernel_tmpl(nv, rows, steps, spad, a, b, bstep, c, ldc, mr, nr, alpha, beta, madd);               \
    }
#define GEMM_KERNELS_DEFINE(prefix, target, madd)                                                                  \
    GEMM_KERNEL_DEFINE(prefix##_8x16_steps, target, madd, 1, 0)                                                    \
    GEMM_KERNEL_DEFINE(prefix##_8x32_steps, target, madd, 2, 0)                                                    \
    GEMM_KERNEL_DEFINE(prefix##_8x48_steps, target, madd, 3, 0)                                                    \
    GEMM_KERNEL_DEFINE(prefix##_8x16_rows, target, madd, 1, 1)                                                     \
    GEMM_KERNEL_DEFINE(prefix##_8x32_rows, target, madd, 2, 1)                                                     \
    GEMM_KERNEL_DEFINE(prefix##_8x48_rows, target, madd, 3, 1)
#define GEMM_KERNELS_TABLE(prefix)                                                                                 \
    {                                                                                                              \
        {prefix##_8x16_steps, prefix##_8x32_steps, prefix##_8x48_steps},                                           \
        {prefix##_8x16_rows, prefix##_8x32_rows, prefix##_8x48_rows},                                              \
    }

#endif /* x86-64 */
#endif
