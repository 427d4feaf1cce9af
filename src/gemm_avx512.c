/* gemm_avx512.c: the AVX512_BF16 path of df_gemm_bf16 (gemm.h): packing and the vdpbf16ps kernel.
 *
 * What it is: a GotoBLAS-style blocked GEMM. Loops, outermost first: panels of C columns (only
 * when K has several blocks, so that C stays in L2 across them), K blocks of <= 384, M blocks of
 * up to 384 KiB of packed A. For each block the threads together pack op(A) into strips of
 * MR = 8 rows (shared, double-buffered so that one barrier per block suffices); then each thread
 * takes its part of a grid of (M strips x 48-column strips of op(B)), packs one B strip at a time
 * into a private stack buffer and runs the 8 x 48 micro-kernel over its M strips.
 * Packing rounds to bf16 (VCVTNE2PS2BF16) and stores pairs of consecutive k in one 32-bit lane,
 * the layout vdpbf16ps takes: lane i of a packed B row holds (B[k][n+i], B[k+1][n+i]); a packed A
 * element (A[m][k], A[m][k+1]) is broadcast. Odd K gets a zero partner. The kernel keeps 24 zmm
 * fp32 accumulators (8 rows x 3 vectors of 16 columns): per k pair 3 loads, 8 broadcasts and 24
 * vdpbf16ps of 64 flops; narrower kernels (16, 32 columns) serve the last strip of N.
 * Each operand is packed in the order its memory gives without a transpose where possible: A
 * not transposed in rows (8 streams), A transposed in pairs; B not transposed by interleaving two
 * rows; only transposed B needs an in-register 16 x 16 transpose.
 * Every function that uses AVX-512 carries a target attribute, so the file compiles for any
 * x86-64 and gemm.c calls it only after checking the CPU. On other architectures it is a stub.
 * What it is not: no dispatch, no argument checks, no fallback (all in gemm.c).
 */
#include "gemm.h"
#include "common.h"
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GEMM_MR 8
#define GEMM_NR 48
#define GEMM_KC_MAX 384 /* even: a block never splits a k pair */
/* The packed A block (MC x KC bf16) stays in L2 while every B strip streams past it; with small K
 * it may hold more rows, so that B is packed fewer times (once per block of M). */
#define GEMM_A_BLOCK_BYTES (384 * 1024)
#define GEMM_C_PANEL_BYTES (512 * 1024)
/* Packed strips hold pairs rounded up to 16: the packers write 16 pairs at a time. */
#define GEMM_PAIRS_PAD(kp) (((size_t)(kp) + 15) & ~(size_t)15)

/* Balanced block sizes: K = 576 becomes two blocks of 288 rather than 384 + 192. */
static void gemm_block_sizes(int M, int K, int *kc, int *mc) {
    const int nk = (K + GEMM_KC_MAX - 1) / GEMM_KC_MAX;
    const int k = (K + nk - 1) / nk;
    *kc = (k + 1) & ~1;
    const int mc_max = GEMM_A_BLOCK_BYTES / (2 * *kc) / GEMM_MR * GEMM_MR;
    const int nm = (M + mc_max - 1) / mc_max;
    const int m = (M + nm - 1) / nm;
    *mc = (m + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
}

/* Columns of C per panel. With several K blocks, C is read and written once per K block: a panel
 * of C (up to GEMM_C_PANEL_BYTES for an M block) keeps that traffic in L2 across the K blocks, at
 * the price of packing A once per panel. With one K block there is nothing to keep: one panel. */
static int gemm_panel_width(int N, int K, int kc, int mc) {
    if (K <= kc) return N;
    int nc = GEMM_C_PANEL_BYTES / (int)sizeof(float) / mc / GEMM_NR * GEMM_NR;
    if (nc < 4 * GEMM_NR) nc = 4 * GEMM_NR;
    return nc < N ? nc : N;
}

/* Words (uint32 pairs) of one packed A block. */
static size_t gemm_a_block_words(int M, int K) {
    int kc, mc;
    gemm_block_sizes(M, K, &kc, &mc);
    return (size_t)mc * GEMM_PAIRS_PAD(kc / 2);
}

size_t df_gemm_bf16_avx512_workspace(int M, int N, int K) {
    (void)N;
    if (M <= 0 || K <= 0) return 0;
    return 2 * gemm_a_block_words(M, K) * sizeof(uint32_t) + 64; /* two A buffers + alignment slack */
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* Blocks of B larger than this (bytes of fp32 source) are prefetched by software while packing:
 * they come from L3 or memory rather than L2. Prefetched lines go to L2 (T1): a strip's worth is
 * larger than L1. */
#define GEMM_B_PREFETCH_BYTES (512 * 1024)
#define PREFETCH_HINT _MM_HINT_T1

/* The lanes 0..n-1 of a 16-lane vector, n clamped to [0, 16]. */
static inline __mmask16 lanes_mask(int n) {
    if (n <= 0) return 0;
    if (n >= 16) return 0xFFFF;
    return (__mmask16)((1u << n) - 1);
}

/* 16 fp32 pairs of consecutive k (x[0..31], masked) -> 16 lanes of (bf16 x[2i], bf16 x[2i+1]). */
TARGET_BF16 static inline __m512i cvt_pairs(const float *x, __mmask16 lo, __mmask16 hi) {
    const __m512 a = _mm512_maskz_loadu_ps(lo, x), b = _mm512_maskz_loadu_ps(hi, x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

/* Two rows x, y of 16 fp32 -> 16 lanes of (bf16 x[i], bf16 y[i]): cvtne2ps gives x then y as
 * halves, the word permutation interleaves them. */
TARGET_BF16 static inline __m512i cvt_interleave(__m512 x, __m512 y, __m512i interleave) {
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(y, x));
}

/* Word indices {0,16,1,17,...,15,31}: interleave the two halves of a 32-word vector. */
TARGET_BF16 static inline __m512i interleave_index(void) {
    int16_t idx[32];
    for (int i = 0; i < 16; i++) {
        idx[2 * i] = (int16_t)i;
        idx[2 * i + 1] = (int16_t)(16 + i);
    }
    return _mm512_loadu_si512(idx);
}

/* ---------------------------------------------------------------- packing op(A) */
/* Two layouts of a packed A strip (MR rows, kp pairs, kpp = kp rounded up to 16 words per row):
 *   rows  [MR][kpp]: row r holds its pairs in k order; the kernel broadcasts from 8 streams.
 *   pairs [kpp][MR]: the 8 rows' elements of pair p are adjacent; one stream.
 * Each is what the source gives without a transpose: rows when A is not transposed (k runs
 * along a row of A), pairs when it is (m runs along a row of A). */

/* rows layout: dst[r][p] = (A[r][k0+2p], A[r][k0+2p+1]), rows >= mr and k >= kc zero. */
TARGET_BF16 static void pack_a_rows(uint32_t *dst, const float *A, int lda, int mr, int kc) {
    const int kp = (kc + 1) / 2;
    const size_t kpp = GEMM_PAIRS_PAD(kp);
    const int full = kc / 32 * 16; /* pairs in whole chunks of 32 k */
    const int left = kc - 2 * full;
    for (int i = 0; i < GEMM_MR; i++) {
        uint32_t *d = dst + (size_t)i * kpp;
        if (i >= mr) {
            for (int q0 = 0; q0 < kp; q0 += 16) _mm512_store_si512(d + q0, _mm512_setzero_si512());
            continue;
        }
        const float *row = A + (size_t)i * lda;
        for (int q0 = 0; q0 < full; q0 += 16) _mm512_store_si512(d + q0, cvt_pairs(row + 2 * q0, 0xFFFF, 0xFFFF));
        if (left > 0)
            _mm512_store_si512(d + full, cvt_pairs(row + 2 * full, lanes_mask(left), lanes_mask(left - 16)));
    }
}

/* [lo, hi] as one 16-lane vector. */
TARGET_BF16 static inline __m512 join8(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1));
}

/* pairs layout, A transposed: op(A)[m][k] = A[k][m], so rows k and k+1 of A give the 8 lanes of a
 * pair directly. */
TARGET_BF16 static void pack_a_cols(uint32_t *dst, const float *A, int lda, int mr, int kc) {
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
/* dst [pairs][NR] = columns n0..n0+nr-1 of op(B) (the caller offsets B), k = 0..kc-1; columns >= nr
 * and k >= kc are zero. B not transposed: rows k, k+1 are contiguous in n, one interleave each. */
TARGET_BF16 static void pack_b_rows(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) {
    const __m512i interleave = interleave_index();
    const __mmask16 m0 = lanes_mask(nr), m1 = lanes_mask(nr - 16), m2 = lanes_mask(nr - 32);
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < kp; p++) {
        const float *b0 = B + (size_t)(2 * p) * ldb, *b1 = b0 + ldb;
        uint32_t *d = dst + (size_t)p * GEMM_NR;
        /* The next strip of these rows: its lines arrive while the kernel works on this one.
         * Without it, each of the kc row segments of a strip starts with a miss. */
        if (prefetch)
            for (int l = 0; l < GEMM_NR; l += 16) {
                _mm_prefetch((const char *)(b0 + GEMM_NR + l), PREFETCH_HINT);
                _mm_prefetch((const char *)(b1 + GEMM_NR + l), PREFETCH_HINT);
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

/* In-register transpose of a 16 x 16 block of 32-bit lanes: r[i][l] -> r[l][i]. Interleaves of
 * 32- then 64-bit elements within 128-bit lanes give, for each group g of 4 rows and each j < 4,
 * u[4g+j] with lane L = rows 4g..4g+3 at column 4L+j; two rounds of 128-bit lane shuffles then
 * gather lane L of u[j], u[4+j], u[8+j], u[12+j] into output row 4L+j. */
TARGET_BF16 static inline void transpose16(__m512i *r) {
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        const __m512i *tg = t + 4 * g;
        u[4 * g + 0] = _mm512_unpacklo_epi64(tg[0], tg[2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(tg[0], tg[2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(tg[1], tg[3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(tg[1], tg[3]);
    }
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
 * pairs: 16 converted rows, then a 16 x 16 transpose. */
TARGET_BF16 static void pack_b_cols(uint32_t *dst, const float *B, int ldb, int nr, int kc, int prefetch) {
    const int kp = (kc + 1) / 2;
    for (int g = 0; g < GEMM_NR / 16; g++) {
        const int rows = nr - 16 * g;
        if (rows <= 0) { /* a column group past nr: zeros, so the kernel reads defined values */
            for (int p = 0; p < kp; p++) _mm512_store_si512(dst + (size_t)p * GEMM_NR + 16 * g, _mm512_setzero_si512());
            continue;
        }
        for (int q0 = 0; q0 < kp; q0 += 16) {
            const int left = kc - 2 * q0;
            const __mmask16 lo = lanes_mask(left), hi = lanes_mask(left - 16);
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                if (i >= rows) {
                    r[i] = _mm512_setzero_si512();
                    continue;
                }
                const float *row = B + (size_t)(16 * g + i) * ldb + 2 * q0;
                /* The same chunk 16 rows on: the next group, or the next strip's first. Each row
                 * is a short stream (kc floats) that the hardware prefetcher would only pick up
                 * after its first misses. */
                if (prefetch) {
                    _mm_prefetch((const char *)(row + 16 * (size_t)ldb), PREFETCH_HINT);
                    _mm_prefetch((const char *)(row + 16 * (size_t)ldb + 16), PREFETCH_HINT);
                }
                r[i] = cvt_pairs(row, lo, hi);
            }
            transpose16(r);
            for (int q = 0; q < 16; q++) _mm512_store_si512(dst + (size_t)(q0 + q) * GEMM_NR + 16 * g, r[q]);
        }
    }
}

/* ---------------------------------------------------------------- micro-kernel */
/* c (mr x nr, row stride ldc) = alpha * a b + beta * c, with a = packed A strip (rows layout when
 * `rows`, with kpp words per row, else pairs layout) and b = packed B strip [kp][NR]; beta == 0
 * does not read c. Only the first nv vectors of 16 columns are computed (nv = ceil(nr / 16), a
 * constant at each call, so the tails of N cost 1/3 or 2/3 of a full tile); rows >= mr and
 * columns >= nr are computed on zero padding but not stored. */
TARGET_BF16 static inline __attribute__((always_inline)) void kernel_8xv(int nv, int rows, int kp, int kpp,
                                                                         const uint32_t *a, const uint32_t *b,
                                                                         float *c, int ldc, int mr, int nr,
                                                                         float alpha, float beta) {
    __m512 acc[GEMM_MR][3];
#pragma GCC unroll 8
    for (int r = 0; r < GEMM_MR; r++) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
    const int arow = rows ? kpp : 1, apair = rows ? 1 : GEMM_MR;
    int p = 0;
    if (nv == 1) {
        /* 8 accumulators are too few chains to hide the latency of vdpbf16ps: even and odd pairs
         * go to two sets (acc[r][0], acc[r][1]), added at the end. */
        for (; p + 1 < kp; p += 2) {
            const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + GEMM_NR);
#pragma GCC unroll 8
            for (int r = 0; r < GEMM_MR; r++) {
                const __m512bh a0 = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * arow]);
                const __m512bh a1 = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * arow + apair]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a0, b0);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a1, b1);
            }
            a += 2 * apair;
            b += 2 * GEMM_NR;
        }
    }
    for (; p < kp; p++) {
        __m512bh bv[3];
#pragma GCC unroll 3
        for (int j = 0; j < nv; j++) bv[j] = (__m512bh)_mm512_load_si512(b + 16 * j);
#pragma GCC unroll 8
        for (int r = 0; r < GEMM_MR; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)r * arow]);
#pragma GCC unroll 3
            for (int j = 0; j < nv; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
        }
        a += apair;
        b += GEMM_NR;
    }
    if (nv == 1)
#pragma GCC unroll 8
        for (int r = 0; r < GEMM_MR; r++) acc[r][0] = _mm512_add_ps(acc[r][0], acc[r][1]);
    const __mmask16 m[3] = {lanes_mask(nr), lanes_mask(nr - 16), lanes_mask(nr - 32)};
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

typedef void (*gemm_kernel)(int kp, int kpp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr,
                            float alpha, float beta);
#define GEMM_KERNEL(name, nv, rows)                                                                               \
    TARGET_BF16 static void name(int kp, int kpp, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, \
                                 int nr, float alpha, float beta) {                                               \
        kernel_8xv(nv, rows, kp, kpp, a, b, c, ldc, mr, nr, alpha, beta);                                         \
    }
GEMM_KERNEL(kernel_8x48_rows, 3, 1)
GEMM_KERNEL(kernel_8x32_rows, 2, 1)
GEMM_KERNEL(kernel_8x16_rows, 1, 1)
GEMM_KERNEL(kernel_8x48_pairs, 3, 0)
GEMM_KERNEL(kernel_8x32_pairs, 2, 0)
GEMM_KERNEL(kernel_8x16_pairs, 1, 0)

/* The kernel for a strip of nr columns and the A layout. */
static gemm_kernel kernel_for(int nr, int rows) {
    static const gemm_kernel k[2][3] = {{kernel_8x16_pairs, kernel_8x32_pairs, kernel_8x48_pairs},
                                        {kernel_8x16_rows, kernel_8x32_rows, kernel_8x48_rows}};
    return k[rows != 0][nr > 32 ? 2 : nr > 16 ? 1 : 0];
}

/* ---------------------------------------------------------------- driver */
typedef struct {
    int transA, transB, M, N, K, lda, ldb, ldc, kc, mc, nc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    uint32_t *abuf[2];
} gemm_job;

/* Splits the ni x nj tiles of a block over T threads as a tm x tn grid (tm * tn = T): thread
 * (ti, tj) takes M strips [ni*ti/tm, ni*(ti+1)/tm) and column strips [nj*tj/tn, nj*(tj+1)/tn).
 * Cost of a thread, in 8 x 48 kernel calls: for each of its column strips, its M strips plus
 * GEMM_PACK_B_COST for packing the strip (every thread of a column of the grid packs it again),
 * all scaled by the strip's width (the last one may be 16 or 32 columns: 1/3 or 2/3). Picks the
 * grid with the cheapest busiest thread. */
#define GEMM_PACK_B_COST 2.0
static void gemm_grid(int ni, int nj, int last_nv, int T, int *tm, int *tn) {
    double best = 1e300;
    *tm = T;
    *tn = 1;
    for (int n = T; n >= 1; n--) {
        if (T % n) continue;
        const int m = T / n;
        double worst = 0;
        for (int tj = 0; tj < n; tj++) {
            const int j0 = (int)((long)nj * tj / n), j1 = (int)((long)nj * (tj + 1) / n);
            double width = j1 - j0;
            if (j1 == nj && j1 > j0) width -= 1.0 - last_nv / 3.0;
            const double cost = width * ((ni + m - 1) / m + GEMM_PACK_B_COST);
            if (cost > worst) worst = cost;
        }
        if (worst < best) {
            best = worst;
            *tm = m;
            *tn = n;
        }
    }
}

/* Packs MR strip s (rows ic + s*MR ...) of the block (ic, pc) of op(A). */
TARGET_BF16 static void pack_a_strip(const gemm_job *j, uint32_t *dst, int ic, int mcb, int s, int pc, int kcb) {
    const int m0 = ic + s * GEMM_MR, mr = mcb - s * GEMM_MR < GEMM_MR ? mcb - s * GEMM_MR : GEMM_MR;
    if (!j->transA)
        pack_a_rows(dst, j->A + (size_t)m0 * j->lda + pc, j->lda, mr, kcb);
    else
        pack_a_cols(dst, j->A + (size_t)pc * j->lda + m0, j->lda, mr, kcb);
}

/* This thread's B strips of block (ic, pc) within the panel of columns jc..jc+ncb-1, each packed
 * then multiplied with its MR strips. */
TARGET_BF16 static void gemm_block_compute(const gemm_job *j, const uint32_t *ap, uint32_t *bstrip, int jc, int ncb,
                                           int ic, int mcb, int pc, int kcb, float beta, int tid, int T) {
    const int kp = (kcb + 1) / 2;
    const size_t astride = GEMM_PAIRS_PAD(kp) * GEMM_MR;
    const int ni = (mcb + GEMM_MR - 1) / GEMM_MR, nj = (ncb + GEMM_NR - 1) / GEMM_NR;
    int tm, tn;
    const int last_nr = ncb - (nj - 1) * GEMM_NR;
    gemm_grid(ni, nj, (last_nr + 15) / 16, T, &tm, &tn);
    const int ti = tid / tn, tj = tid % tn;
    /* Software prefetch of B only pays when this block of B does not stay in L2 between calls. */
    const int prefetch = (size_t)ncb * kcb * sizeof(float) > GEMM_B_PREFETCH_BYTES;
    const int i0 = (int)((long)ni * ti / tm), i1 = (int)((long)ni * (ti + 1) / tm);
    const int j0 = (int)((long)nj * tj / tn), j1 = (int)((long)nj * (tj + 1) / tn);
    if (i0 >= i1) return;
    for (int js = j0; js < j1; js++) {
        const int n0 = jc + js * GEMM_NR, nr = jc + ncb - n0 < GEMM_NR ? jc + ncb - n0 : GEMM_NR;
        if (!j->transB)
            pack_b_rows(bstrip, j->B + (size_t)pc * j->ldb + n0, j->ldb, nr, kcb, prefetch);
        else
            pack_b_cols(bstrip, j->B + (size_t)n0 * j->ldb + pc, j->ldb, nr, kcb, prefetch);
        const gemm_kernel kernel = kernel_for(nr, !j->transA);
        for (int is = i0; is < i1; is++) {
            const int m0 = ic + is * GEMM_MR, mr = mcb - is * GEMM_MR < GEMM_MR ? mcb - is * GEMM_MR : GEMM_MR;
            kernel(kp, (int)GEMM_PAIRS_PAD(kp), ap + (size_t)is * astride, bstrip, j->C + (size_t)m0 * j->ldc + n0,
                   j->ldc, mr, nr, j->alpha, beta);
        }
    }
}

/* The work of one thread of the team (also the whole work when the team has one thread). The
 * `omp for` over A strips ends in the only barrier of a block: A blocks alternate between two
 * buffers, so packing block b+1 never overwrites the buffer a slower thread still reads for b. */
TARGET_BF16 static void gemm_thread(const gemm_job *j) {
    int tid = 0, T = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    T = omp_get_num_threads();
#endif
    uint32_t bstrip[GEMM_PAIRS_PAD(GEMM_KC_MAX / 2) * GEMM_NR] __attribute__((aligned(64)));
    int blk = 0;
    for (int jc = 0; jc < j->N; jc += j->nc) {
        const int ncb = j->N - jc < j->nc ? j->N - jc : j->nc;
        for (int pc = 0; pc < j->K; pc += j->kc) {
            const int kcb = j->K - pc < j->kc ? j->K - pc : j->kc;
            const size_t astride = GEMM_PAIRS_PAD((kcb + 1) / 2) * GEMM_MR;
            const float beta = pc == 0 ? j->beta : 1.0f;
            for (int ic = 0; ic < j->M; ic += j->mc) {
                const int mcb = j->M - ic < j->mc ? j->M - ic : j->mc;
                const int ni = (mcb + GEMM_MR - 1) / GEMM_MR;
                uint32_t *ap = j->abuf[blk++ & 1];
#pragma omp for schedule(static)
                for (int s = 0; s < ni; s++) pack_a_strip(j, ap + (size_t)s * astride, ic, mcb, s, pc, kcb);
                gemm_block_compute(j, ap, bstrip, jc, ncb, ic, mcb, pc, kcb, beta, tid, T);
            }
        }
    }
}

/* Below this many multiply-adds (~20 us on one core) waking a second thread and the barriers of
 * the blocks cost more than they save. */
#define GEMM_THREAD_MIN_MACS 4.0e6

void df_gemm_bf16_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    gemm_job j = {transA, transB, M, N, K, lda, ldb, ldc, 0, 0, 0, alpha, beta, A, B, C, {NULL, NULL}};
    gemm_block_sizes(M, K, &j.kc, &j.mc);
    j.nc = gemm_panel_width(N, K, j.kc, j.mc);
    const size_t words = gemm_a_block_words(M, K);
    j.abuf[0] = (uint32_t *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    j.abuf[1] = j.abuf[0] + words;
    int nt = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && (double)M * N * K >= GEMM_THREAD_MIN_MACS) nt = omp_get_max_threads();
#endif
#pragma omp parallel num_threads(nt) if (nt > 1)
    gemm_thread(&j);
}

#else /* not x86-64 with GCC/Clang: gemm.c never calls this */
void df_gemm_bf16_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    ASSERT(!"df_gemm_bf16_avx512 called on a build without AVX-512 support");
}
#endif
